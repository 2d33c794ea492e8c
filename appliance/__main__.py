"""``python -m appliance serve --config FILE``: run the desk UI and the audit sender.

``python -m appliance accounts add --config FILE --username U --role ROLE [--password-stdin]``
is the device administrator's command for creating accounts, until accounts
arrive in the signed configuration from central.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from pathlib import Path

from core.errors import CustodyRfrError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="Run the desk web UI and sync to central.")
    serve.add_argument("--config", type=Path, required=True, help="Appliance settings (TOML).")
    check = sub.add_parser("check-config", help="Validate a settings file and exit.")
    check.add_argument("--config", type=Path, required=True)
    accounts = sub.add_parser("accounts", help="Device administrator: manage desk accounts.")
    acc_sub = accounts.add_subparsers(dest="accounts_command", required=True)
    add = acc_sub.add_parser("add", help="Create an account.")
    add.add_argument("--config", type=Path, required=True)
    add.add_argument("--username", required=True)
    add.add_argument("--role", required=True, help="custody_officer, detention_officer, inspector, superintendent, "
                                                   "technical_adviser, device_admin or auditor.")
    add.add_argument("--password-stdin", action="store_true", help="Read the password from the first line of stdin.")
    listing = acc_sub.add_parser("list", help="List accounts and roles.")
    listing.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from appliance import settings as settings_mod

    try:
        settings = settings_mod.load(args.config)
        if args.command == "check-config":
            print(f"{args.config}: ok")
            return 0
        if args.command == "accounts":
            return _accounts(args, settings)
        from appliance.web import create_app

        app = create_app(settings)
    except CustodyRfrError as e:
        print(f"appliance cannot start: {e}", file=sys.stderr)
        return 2
    from werkzeug.serving import run_simple

    print(f"appliance {settings.device_id}: http://{settings.web.host}:{settings.web.port}/", flush=True)
    run_simple(settings.web.host, settings.web.port, app, threaded=True, use_reloader=False)
    return 0


def _accounts(args: argparse.Namespace, settings) -> int:  # type: ignore[no-untyped-def]
    """Create or list accounts in the device database; prints one line a person can act on."""
    from appliance.services.accounts import AccountError, AccountService
    from appliance.storage.accounts import AccountStore, SessionStore
    from appliance.storage.device_db import DeviceDatabase

    db = DeviceDatabase(settings.data_dir)
    try:
        service = AccountService(AccountStore(db), SessionStore(db), settings.auth)
        if args.accounts_command == "list":
            for user in service.list():
                print(f"{user.username}\t{user.role.value}")
            return 0
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = getpass.getpass(f"Password for {args.username}: ")
            if getpass.getpass("Same password again: ") != password:
                print("The two passwords differ; no account was created.", file=sys.stderr)
                return 1
        try:
            user = service.add(args.username, args.role, password)
        except AccountError as e:
            print(f"account not created: {e}", file=sys.stderr)
            return 1
        print(f"account {user.username} created with role {user.role.value}")
        return 0
    finally:
        db.close()


if __name__ == "__main__":
    sys.exit(main())
