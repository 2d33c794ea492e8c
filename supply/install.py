"""Fetch and verify every pinned artifact: ``python -m supply.install``.

Run by scripts/setup.sh. Idempotent: verified files already in the cache are
checked and kept.
"""

from __future__ import annotations

import logging
import sys

from supply.pinned import SupplyError, cache_dir, fetch, load_catalogue, member


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        for key, art in load_catalogue().items():
            fetch(key)
            for name in art.members:
                member(key, name)
            print(f"  ok  {art.name} {art.version}")
    except SupplyError as e:
        print(f"setup failed: {e}", file=sys.stderr)
        return 1
    print(f"artifacts verified in {cache_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
