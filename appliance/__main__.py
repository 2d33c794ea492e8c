"""``python -m appliance serve --config FILE``: run the desk UI and the audit sender."""

from __future__ import annotations

import argparse
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from appliance import settings as settings_mod

    try:
        settings = settings_mod.load(args.config)
        if args.command == "check-config":
            print(f"{args.config}: ok")
            return 0
        from appliance.web import create_app

        app = create_app(settings)
    except CustodyRfrError as e:
        print(f"appliance cannot start: {e}", file=sys.stderr)
        return 2
    from werkzeug.serving import run_simple

    print(f"appliance {settings.device_id}: http://{settings.web.host}:{settings.web.port}/", flush=True)
    run_simple(settings.web.host, settings.web.port, app, threaded=True, use_reloader=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
