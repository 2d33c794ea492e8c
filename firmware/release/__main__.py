"""``python -m firmware.release init|build|publish|withdraw|refresh-timestamp|status``.

Each command prints one line; errors print one line starting ``release:`` and exit 1.

    python -m firmware.release init --repo R --root-keys-dir /media/offline/root --release-keys-dir /media/rel
    python -m firmware.release build --version 1.4.0 [--min-from 1.2.0] --out DIR
    python -m firmware.release publish --repo R --bundle DIR/custody-rfr-appliance-1.4.0.tar.gz \\
        --release-key rel-1.pem --release-key rel-2.pem
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from firmware.bundle import extract_bundle
from firmware.errors import FirmwareError
from firmware.release.build import build_bundle
from firmware.release.repository import ReleaseRepository, init_release_repository
from firmware.version import Version


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m firmware.release", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="Create the release repository and its keys.")
    init.add_argument("--repo", type=Path, required=True)
    init.add_argument("--root-keys-dir", type=Path, required=True)
    init.add_argument("--release-keys-dir", type=Path, required=True)
    init.add_argument("--release-threshold", type=int, default=2)
    build = sub.add_parser("build", help="Build a release bundle from this checkout.")
    build.add_argument("--version", required=True)
    build.add_argument("--min-from", help="Oldest installed version this release may be installed over.")
    build.add_argument("--out", type=Path, required=True)
    build.add_argument("--wheel", type=Path, action="append", help="Use a prebuilt wheel instead of pip wheel.")
    publish = sub.add_parser("publish", help="Sign and publish a bundle.")
    publish.add_argument("--repo", type=Path, required=True)
    publish.add_argument("--bundle", type=Path, required=True)
    publish.add_argument("--release-key", type=Path, action="append", required=True)
    withdraw = sub.add_parser("withdraw", help="Stop offering a release.")
    withdraw.add_argument("--repo", type=Path, required=True)
    withdraw.add_argument("--version", required=True)
    withdraw.add_argument("--release-key", type=Path, action="append", required=True)
    refresh = sub.add_parser("refresh-timestamp", help="Re-sign snapshot/timestamp (hourly cron).")
    refresh.add_argument("--repo", type=Path, required=True)
    status = sub.add_parser("status", help="List the published releases.")
    status.add_argument("--repo", type=Path, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "init":
            init_release_repository(args.repo, args.root_keys_dir, args.release_keys_dir,
                                    release_threshold=args.release_threshold)
            print(f"release repository created in {args.repo}; move {args.root_keys_dir} offline and give each "
                  f"key in {args.release_keys_dir} to a different release signer.")
        elif args.command == "build":
            min_from = Version(args.min_from) if args.min_from else None
            out, manifest = build_bundle(Version(args.version), args.out, min_from=min_from, wheels=args.wheel)
            print(f"built {out} ({len(manifest.files)} files, version {manifest.version})")
        elif args.command == "publish":
            repo = ReleaseRepository(args.repo)
            with tempfile.TemporaryDirectory(prefix="rfr-release-check-") as tmp:
                manifest = extract_bundle(args.bundle, Path(tmp))  # version comes from the bundle, not the CLI
            target = repo.publish(args.bundle, manifest.version, manifest.min_from,
                                  [ReleaseRepository.load_signer(k) for k in args.release_key])
            print(f"published {target.path} (version {manifest.version}, {target.length} bytes)")
        elif args.command == "withdraw":
            repo = ReleaseRepository(args.repo)
            repo.withdraw(Version(args.version), [ReleaseRepository.load_signer(k) for k in args.release_key])
            print(f"withdrew {args.version}")
        elif args.command == "refresh-timestamp":
            ReleaseRepository(args.repo).refresh()
            print("timestamp re-signed")
        else:
            published = ReleaseRepository(args.repo).published()
            print(", ".join(f"{c['version']}" for c in published.values()) or "no releases published")
    except FirmwareError as e:
        print(f"release: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
