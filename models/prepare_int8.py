"""``python -m models.prepare_int8``: make every INT8 part a shipped fused template asks for (setup runs it).

Apart from ``models.convert`` because making an INT8 part needs the pipeline (a detector finds the
calibration faces, the fp32 embedder crops them), and the pipeline needs ``models.convert``. Done at
setup so no desk quantises at its first start.

``--measure`` is for maintainers: it calibrates on this machine, writes the pins
(``models/manifests/int8/``) and prints the ``sha256`` each manifest's ``[conversion.int8]``
must then pin (``xml_sha256``, ``sha256``). Measure the accuracy again after it (``python -m models.evaluate``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from models.errors import ModelError
from models.manifest import fused_names, load_fused_manifest, load_manifest
from models.pipeline import int8_calibration, make_embedder
from models.quantise import measure_pins
from models.registry_faces import distractor_images
from supply import pinned


def _int8_parts() -> dict[str, str]:
    """Every embedder some shipped fused template runs in INT8, with the detector it is calibrated on."""
    parts: dict[str, str] = {}
    for name in fused_names():
        fused = load_fused_manifest(name)
        for component in fused.components:
            if component.precision == "int8":
                parts[component.embedder] = fused.part_detector(component)
    return parts


def _measure() -> None:
    images = distractor_images()
    for name, detector in sorted(_int8_parts().items()):
        manifest = load_manifest(name)
        with tempfile.TemporaryDirectory() as tmp:
            xml, bin_ = measure_pins(manifest, *int8_calibration(manifest, detector), images, Path(tmp))
        print(f"  measured  {manifest.ref}: pins written; in models/manifests/{name}.toml [conversion.int8] set\n"
              f"            xml_sha256 = \"{xml}\"\n            sha256 = \"{bin_}\"")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.prepare_int8", description=__doc__.splitlines()[0])
    parser.add_argument("--measure", action="store_true",
                        help="maintainers: calibrate here and write new pins instead of using the pinned ones")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        if args.measure:
            _measure()
            return 0
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
