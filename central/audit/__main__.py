"""``python -m central.audit verify EXPORT`` and ``export``: offline checks of audit exports.

``verify`` needs nothing but the file (and, for independence from whoever
produced it, the devices' public keys via ``--public-key ID=FILE``). It prints
OK, or one line per fault naming the position (line), device, sequence number
and reason, and exits 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from central.audit.export import to_csv, to_jsonl
from central.audit.filter import EventFilter
from central.audit.store import AuditStore
from central.audit.verification import verify_export
from central.fleet.registry_store import RegistryStore
from core.audit.checkpoint import public_key_from_bytes
from core.errors import CustodyRfrError


def verify_file(path: Path, pinned: dict[str, Path], allow_unsigned_tail: bool = False) -> tuple[bool, list[str]]:
    """(ok, lines to print) for the export at ``path`` (the same check as the auditors' page)."""
    keys = {device: public_key_from_bytes(key_file.read_bytes()) for device, key_file in pinned.items()}
    result = verify_export(path.read_text(encoding="utf-8"), str(path), keys,
                           {device: str(key_file) for device, key_file in pinned.items()}, allow_unsigned_tail)
    return result.ok, list(result.lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m central.audit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ver = sub.add_parser("verify", help="check an export's hashes, links and signatures offline")
    ver.add_argument("export", type=Path)
    ver.add_argument("--public-key", action="append", default=[], metavar="ID=FILE",
                     help="trust this key for device ID instead of the one inside the export")
    ver.add_argument("--allow-unsigned-tail", action="store_true",
                     help="do not fail on the newest events not yet covered by a checkpoint")
    exp = sub.add_parser("export", help="write an export from a store")
    exp.add_argument("--database", required=True, help="store URL (sqlite:///path or postgresql://...)")
    exp.add_argument("--out", type=Path, required=True, help="file to write (.csv or .jsonl)")
    for name in ("device", "actor", "type", "outcome", "since", "until", "case", "custody-ref"):
        exp.add_argument(f"--{name}")
    args = parser.parse_args(argv)
    try:
        if args.command == "verify":
            pinned = {}
            for item in args.public_key:
                device, _, file = item.partition("=")
                pinned[device] = Path(file)
            ok, lines = verify_file(args.export, pinned, args.allow_unsigned_tail)
            for line in lines:
                print(line)
            return 0 if ok else 1
        store = AuditStore(args.database)
        try:
            registry = RegistryStore(args.database)
            try:
                keys = registry.registered_devices()
            finally:
                registry.close()
            flt = EventFilter(device_id=args.device, actor=args.actor, type=args.type, outcome=args.outcome,
                              since=args.since, until=args.until, case_id=args.case, custody_ref=args.custody_ref)
            writer = to_csv if args.out.suffix == ".csv" else to_jsonl
            with args.out.open("w", encoding="utf-8", newline="") as fh:
                fh.writelines(writer(store.export_records(flt, keys), flt.as_dict()))
        finally:
            store.close()
        print(f"wrote {args.out}")
        return 0
    except CustodyRfrError as e:
        print(f"central.audit: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a missing or unreadable file: say which, without Python's errno wording
        print(f"central.audit: cannot use {e.filename or 'the file'}: {e.strerror or e}.", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
