"""``python -m central.peer_review review-key --out PATH``: make central's review key and its public half."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from central.peer_review.review_key import make_review_key, public_path
from core.errors import SettingsError
from core.review_probe import review_key_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m central.peer_review", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("review-key", help="make the X25519 key desks seal peer review probes to")
    make.add_argument("--out", type=Path, required=True, help="the private key file (0600); PATH.pub is public")
    args = parser.parse_args(argv)
    try:
        key = make_review_key(args.out)
    except SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"review key {review_key_id(key.public_key())} written to {args.out}; give every desk "
          f"{public_path(args.out)} as [peer_review] central_review_key")
    return 0


if __name__ == "__main__":
    sys.exit(main())
