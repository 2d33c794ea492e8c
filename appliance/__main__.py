"""``python -m appliance serve --config FILE``: run the desk UI (gunicorn, HTTPS only) and the audit sender.

``python -m appliance accounts add --config FILE --username U --role ROLE [--password-stdin]
[--trained-on YYYY-MM-DD --search-authorised-until YYYY-MM-DD --business-area AREA]``
is the device administrator's command for creating accounts, until accounts
arrive in the signed configuration from central. Officers and approving ranks
can search only with the three authorisation options (Authorised RFR Users);
``accounts authorise`` renews (or with ``--remove`` withdraws) the authorisation
of an account made on the desk, and ``accounts list`` shows each one.

``python -m appliance selftest --config FILE [--probe PHOTO --expect SUBJECT] [--mqtt-timeout S]``
is the update agent's health check of a newly installed release (``appliance.services.selftest``):
one line per check, exit 1 if any failed. It reads the device's data and never writes to it.

``python -m appliance retention purge --config FILE`` destroys, once, the retained images of every viable
match older than central's retention period (``appliance.services.retention``; the running desk does this
itself at start and hourly): one line per purged case, or "nothing to purge". It refuses while the desk
service is running, since the service purges by itself (``appliance.storage.service_lock``).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import ssl
import sys
from pathlib import Path

from core.errors import CustodyRfrError
from core.log_format import configure_logging, set_process_ids
from webserver.server import check_tls, https_url, serve


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
    authorise = acc_sub.add_parser("authorise", help="Record, renew or remove an account's authorisation to search.")
    authorise.add_argument("--config", type=Path, required=True)
    authorise.add_argument("--username", required=True)
    authorise.add_argument("--remove", action="store_true", help="Withdraw the authorisation: no more searches.")
    for command in (add, authorise):
        command.add_argument("--trained-on", metavar="YYYY-MM-DD", help="The day the officer completed RFR training.")
        command.add_argument("--search-authorised-until", metavar="YYYY-MM-DD",
                             help="The last day the officer may search (after the training, at most five years on).")
        command.add_argument("--business-area", metavar="AREA",
                             help="The business area granted permission, e.g. 'Custody, North division'.")
    listing = acc_sub.add_parser("list", help="List accounts, roles and authorisations to search.")
    listing.add_argument("--config", type=Path, required=True)
    selftest = sub.add_parser("selftest", help="Health check of this release: models, library, search, MQTT.")
    selftest.add_argument("--config", type=Path, required=True)
    selftest.add_argument("--probe", type=Path, help="A known photo of an enrolled subject (with --expect); "
                                                     "without it a stored template searches for itself.")
    selftest.add_argument("--expect", metavar="SUBJECT_REF", help="The subject the probe must find at rank 1.")
    selftest.add_argument("--mqtt-timeout", type=float, default=10.0, metavar="S",
                          help="Seconds to wait for the broker (default 10).")
    retention = sub.add_parser("retention", help="Viable matches' retention period (central's signed configuration).")
    ret_sub = retention.add_subparsers(dest="retention_command", required=True)
    purge = ret_sub.add_parser("purge", help="Destroy now the retained images of viable matches past the period "
                                             "(with the desk service stopped).")
    purge.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "selftest" and (args.probe is None) != (args.expect is None):
        parser.error("give --probe and --expect together")
    # One JSON object per line on stderr (journald stores it as it is): core.log_format.
    configure_logging("appliance", logging.WARNING if args.command == "selftest" else logging.INFO)
    if args.command == "selftest":
        return _selftest(args)

    from appliance import settings as settings_mod

    try:
        settings = settings_mod.load(args.config)
        if args.command == "check-config":
            print(f"{args.config}: ok")
            return 0
        if args.command == "accounts":
            return _accounts(args, settings)
        if args.command == "retention":
            return _retention_purge(settings)
        context = check_tls(settings.web)
        set_process_ids(device_id=settings.device_id)  # on every line this desk logs
    except CustodyRfrError as e:
        print(f"appliance cannot start: {e}", file=sys.stderr)
        return 2
    return _serve(settings, context)


def _serve(settings, context: ssl.SSLContext) -> int:  # type: ignore[no-untyped-def]
    """The desk under gunicorn over HTTPS: ONE worker process, since the device database, its audit chain and
    the MQTT link have one writer per process; ``[web] threads`` threads serve the desk's people at once."""
    from appliance.web import create_app

    def close_desk(app) -> None:  # type: ignore[no-untyped-def]
        desk = app.extensions.get("desk")
        if desk is not None:
            desk.close()

    # Served, the desk is HTTPS only: its session cookie is always Secure, whatever the settings file says.
    served = settings.model_copy(update={"auth": settings.auth.model_copy(update={"secure_cookie": True})})
    logging.getLogger("appliance").info("appliance %s: %s", settings.device_id, https_url(settings.web),
                                        extra={"event": "serving"})
    return serve(lambda: create_app(served), settings.web, context, workers=1, name="appliance",
                 on_worker_exit=close_desk)


def _selftest(args: argparse.Namespace) -> int:
    """Settings and imports first (nothing else can run without them), then the service's checks."""
    from appliance import settings as settings_mod

    try:
        settings = settings_mod.load(args.config)
    except CustodyRfrError as e:
        return _selftest_failed([f"settings: FAILED: {e}"])
    print(f"settings: ok ({args.config}, device {settings.device_id})", flush=True)
    try:
        # The runtime and the web layer import everything the service needs (Flask, the services, storage,
        # comms, updates): a release missing a dependency fails here rather than after the switch. Imported
        # here, not in the selftest service, because nothing below them may import either.
        import appliance.runtime
        import appliance.web
    except Exception as e:  # an import error of any kind is the finding
        return _selftest_failed([f"service: FAILED: the desk application does not import: {type(e).__name__}: {e}"])
    print(f"service: ok (desk application imports from {Path(appliance.__file__).parent})", flush=True)
    from appliance.services.selftest import run_selftest

    results = run_selftest(settings, probe=args.probe, expect=args.expect, mqtt_timeout_s=args.mqtt_timeout)
    failed = [r for r in results if not r.ok]
    if failed:
        return _selftest_failed([r.line() for r in failed], printed=True)
    print("selftest: ok (all checks passed)", flush=True)
    return 0


def _selftest_failed(lines: list[str], *, printed: bool = False) -> int:
    """Exit 1 with the failures on stdout (one line per check) and as the last line of stderr: the update
    agent quotes only the last line of stderr (of stdout when stderr is empty) when it refuses a version."""
    if not printed:
        for line in lines:
            print(line, flush=True)
    names = ", ".join(line.split(":", 1)[0] for line in lines)
    print(f"selftest: FAILED: {names}", flush=True)
    print("selftest FAILED: " + "; ".join(line.replace(": FAILED:", ":", 1) for line in lines), file=sys.stderr,
          flush=True)
    return 1


def _accounts(args: argparse.Namespace, settings) -> int:  # type: ignore[no-untyped-def]
    """Create or list accounts in the device database; prints one line a person can act on."""
    from appliance.runtime import open_records
    from appliance.services.accounts import AccountError, AccountService
    from appliance.storage.accounts import AccountStore
    from appliance.storage.desk_config import DeskConfigStore
    from core.desk_config import SEARCH_ROLES

    verb = "account not created" if args.accounts_command == "add" else "authorisation not recorded"
    try:
        authorisation = _authorisation_args(args) if args.accounts_command != "list" else None
    except AccountError as e:
        print(f"{verb}: {e}", file=sys.stderr)
        return 1
    # Opened as the desk opens it (the TPM where there is one), with the audit chain: who may search is
    # decided here, so every change is recorded for central as the desk's own changes are.
    records = open_records(settings)
    db, audit = records.db, records.audit
    try:
        service = AccountService(AccountStore(db), settings.auth)
        if args.accounts_command == "list":
            for user in service.list():
                auth = service.authorisation(user.username)
                shown = (f"\ttrained {auth.trained_on}, authorised until {auth.authorised_until}, {auth.business_area}"
                         if auth else ("\tno authorisation to search" if user.role.value in SEARCH_ROLES else ""))
                print(f"{user.username}\t{user.role.value}{shown}")
            return 0
        if args.accounts_command == "authorise":
            return _authorise(args, service, DeskConfigStore(db), authorisation, audit)
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = getpass.getpass(f"Password for {args.username}: ")
            if getpass.getpass("Same password again: ") != password:
                print("The two passwords differ; no account was created.", file=sys.stderr)
                return 1
        try:
            user = service.add(args.username, args.role, password, authorisation)
        except AccountError as e:
            print(f"account not created: {e}", file=sys.stderr)
            return 1
        audit.record(ACCOUNT_AUDIT, _shell_actor(), "account_created", username=user.username, role=user.role.value,
                     **_authorisation_details(authorisation))
        until = f", authorised to search until {authorisation.authorised_until}" if authorisation else ""
        print(f"account {user.username} created with role {user.role.value}{until}")
        if authorisation is None and user.role.value in SEARCH_ROLES:
            print(f"{user.username} cannot start a request or search until an authorisation to search is recorded "
                  "(accounts authorise --trained-on ... --search-authorised-until ... --business-area ...).")
        return 0
    finally:
        db.close()


#: Accounts changed by the device administrator's command are changes to the desk's configuration.
ACCOUNT_AUDIT = "config_change"


def _shell_actor() -> str:
    """Who ran the command: the device administrator's login on the desk (no desk account signs in here)."""
    try:
        return f"shell:{getpass.getuser()}"
    except Exception:  # no login name at all (a bare service environment): still recorded, as unknown
        return "shell:unknown"


def _authorisation_details(authorisation) -> dict[str, str | None]:  # type: ignore[no-untyped-def]
    """The dates an audit event records (the business area is free text: kept on the desk, not sent)."""
    return {"trained_on": authorisation.trained_on.isoformat() if authorisation else None,
            "authorised_until": authorisation.authorised_until.isoformat() if authorisation else None}


def _authorisation_args(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The authorisation the three options give (all three or none), or None; ``AccountError`` if half given."""
    from appliance.services.accounts import AccountError, search_authorisation

    given = (args.trained_on, args.search_authorised_until, args.business_area)
    if getattr(args, "remove", False):
        if any(v is not None for v in given):
            raise AccountError("Give --remove alone, or the three authorisation options without it.")
        return None
    if all(v is None for v in given):
        if args.accounts_command == "authorise":
            raise AccountError("Give --trained-on, --search-authorised-until and --business-area (or --remove).")
        return None
    if any(v is None for v in given):
        raise AccountError("Give all three of --trained-on, --search-authorised-until and --business-area, "
                           "or none of them.")
    return search_authorisation(*given)


def _authorise(args: argparse.Namespace, service, configs, authorisation, audit) -> int:  # type: ignore[no-untyped-def]
    """Record an authorisation on an account made on this desk, audited (it decides who may search); central's
    accounts are central's to change."""
    from appliance.services.accounts import AccountError

    applied = configs.applied()
    if applied is not None and any(a.username == args.username.strip() for a in applied.config.accounts):
        print(f"authorisation not recorded: {args.username} is one of central's accounts (signed configuration "
              f"version {applied.version}); ask the RFR team to record the authorisation there.", file=sys.stderr)
        return 1
    try:
        service.set_authorisation(args.username, authorisation)
    except AccountError as e:
        print(f"authorisation not recorded: {e}", file=sys.stderr)
        return 1
    audit.record(ACCOUNT_AUDIT, _shell_actor(), "search_authorisation_removed" if authorisation is None
                 else "search_authorisation_recorded", username=args.username.strip(),
                 **_authorisation_details(authorisation))
    if authorisation is None:
        print(f"{args.username}: authorisation to search removed; they can sign in but not search")
    else:
        print(f"{args.username}: authorised to search until {authorisation.authorised_until} "
              f"(trained {authorisation.trained_on}, {authorisation.business_area})")
    return 0


def _retention_purge(settings) -> int:  # type: ignore[no-untyped-def]
    """Run the retention purge once against the device database; one line per case (stdout)."""
    from appliance.runtime import open_records
    from appliance.services.clock_guard import ClockGuard
    from appliance.services.retention import NO_PERIOD, RetentionError, RetentionService
    from appliance.storage.cases import CaseStore
    from appliance.storage.desk_config import DeskConfigStore
    from appliance.storage.device_db import DB_NAME
    from appliance.storage.service_lock import ServiceLock

    if not (settings.data_dir / DB_NAME).exists():  # never create an empty device database here
        print(f"retention purge not run: there is no device database in {settings.data_dir}.", file=sys.stderr)
        return 2
    lock = ServiceLock(settings.data_dir)
    if not lock.acquire():
        print("retention purge not run: the desk service is running on this device and purges by itself "
              "(at start and every hour); stop the service to run it by hand.", file=sys.stderr)
        return 1
    try:
        records = open_records(settings)  # the device database and audit chain, opened as the desk opens them
        db, audit = records.db, records.audit
        try:
            clock = ClockGuard.from_log(records.outbox)  # a doubt the desk recorded holds this purge back too
            if clock.doubt is not None:
                print(f"retention purge not run: this desk's clock is not trusted ({clock.doubt}), so images could "
                      "be destroyed before their time. Start the desk service so central's time can confirm the "
                      "clock (it purges by itself then), or call the RFR helpdesk.", file=sys.stderr)
                return 1
            service = RetentionService(CaseStore(db), DeskConfigStore(db), audit, clock_doubt=lambda: clock.doubt)
            if service.period_days() is None:
                print(f"nothing to purge: {NO_PERIOD}")
                return 0
            try:
                purged = service.purge()
            except RetentionError as e:
                for case in e.purged:
                    print(case.line())
                if e.purged:
                    audit.checkpoint()
                print(f"retention purge incomplete: {e}", file=sys.stderr)
                return 1
            for case in purged:
                print(case.line())
            if purged:
                audit.checkpoint()  # sign the new events now, as the service does when it stops
            else:
                print(f"nothing to purge (retention period {service.period_days()} days)")
            return 0
        finally:
            db.close()
    finally:
        lock.release()


if __name__ == "__main__":
    sys.exit(main())
