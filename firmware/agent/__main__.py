"""``python -m firmware.agent --config FILE check|status|confirm|boot|install-local --bundle B``.

check          one update check (the custody-rfr-update.timer runs it)
boot           count a start of a pending version; roll back when it has had its chances (ExecStartPre)
confirm        the running version started and passed its checks (ExecStartPost)
status         the active slot, version, previous version and pending state
install-local  first install from a bundle on the image (provisioning only)

Each command prints one line. Exit 0 when the desk runs a good version, 1 when
an update was refused, failed its health check or was rolled back, 2 when the
agent could not run (settings, damaged slots).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from core.errors import CustodyRfrError
from firmware.agent.agent import UpdateAgent
from firmware.agent.config import load_config
from firmware.errors import UpdateUnavailableError

_OK = {"installed", "up_to_date", "confirmed", "pending"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware.agent", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("/etc/custody-rfr/update-agent.toml"))
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("check", "boot", "confirm", "status"):
        sub.add_parser(name)
    local = sub.add_parser("install-local")
    local.add_argument("--bundle", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        agent = UpdateAgent(load_config(args.config))
        if args.command == "status":
            print(json.dumps(asdict(agent.status()), sort_keys=True))
            return 0
        result = {"check": agent.check, "boot": agent.boot, "confirm": agent.confirm}.get(args.command)
        outcome = result() if result else agent.install_local(args.bundle)
    except UpdateUnavailableError as e:
        print(f"update: {e}", file=sys.stderr)
        return 0
    except CustodyRfrError as e:
        print(f"update agent cannot run: {e}", file=sys.stderr)
        return 2
    print(f"{outcome.outcome}: {outcome.message}", file=sys.stdout if outcome.outcome in _OK else sys.stderr)
    return 0 if outcome.outcome in _OK else 1


if __name__ == "__main__":
    sys.exit(main())
