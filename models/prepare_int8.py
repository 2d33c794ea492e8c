"""``python -m models.prepare_int8``: make every INT8 part a shipped fused template asks for (setup runs it).

Apart from ``models.convert`` because making an INT8 part needs the pipeline (a detector finds the
calibration faces, the fp32 embedder crops them), and the pipeline needs ``models.convert``. Done at
setup so no desk quantises at its first start.
"""

from __future__ import annotations

import logging
import sys

from models.errors import ModelError
from models.manifest import fused_names, load_fused_manifest
from models.pipeline import make_embedder
from supply import pinned


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        for name in fused_names():
            fused = load_fused_manifest(name)
            if any(c.precision == "int8" for c in fused.components):
                embedder, _ = make_embedder(name)
                parts = ", ".join(c.model.path.name for c in getattr(embedder, "components", []))
                print(f"  ready     {fused.ref} (INT8 parts: {parts})")
    except (ModelError, pinned.SupplyError) as e:
        print(f"INT8 preparation failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
