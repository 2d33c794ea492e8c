"""An embedder's INT8 form: NNCF post-training quantisation of its fp32 IR, calibrated on registry faces.

Why: on this appliance class (AVX2, no VNNI, no BF16) the two networks of the
default fused template cost most of a probe's time in f32; INT8 roughly halves
each (``docs/model-card.md``, "Measured speed") for a small, measured loss of
accuracy. Why these faces: calibration must not use the development set the
accuracy is measured on, and nothing may come from a hub, so it uses the faces
pinned registry packages carry (``models/registry_faces.py``), each as found and
mirrored, cropped by the embedder's own alignment on the faces its detector finds.

The result is written once beside the fp32 IR under a name that carries the
recipe (the ``[conversion.int8]`` table, the nncf version and the calibration
images' hash), atomically, ``.xml`` last, like ``models.convert``. The
calibration's results differ between CPU instruction sets, so they are pinned
(``models/int8_pins.py``) and the file's hash with them: every machine makes the
same bytes or refuses.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path

import numpy as np
import openvino as ov

from core.errors import CustodyRfrError
from models import int8_pins
from models.detector import DetectedFace
from models.errors import ModelManifestError
from models.image import decode_image
from models.manifest import Int8Spec, ModelManifest
from models.registry_faces import DistractorImage, distractor_images, images_digest
from supply.pinned import sha256_file

logger = logging.getLogger(__name__)

MIN_CALIBRATION_FACES = 16  # fewer and the activation ranges are guesses; the pinned images give 24
MIN_FACE_PX = 40  # as the distractors and the demo library: smaller faces are blurred crops, poor ranges


def _nncf_version() -> str:
    """From the installed package's metadata: importing nncf takes over a second, and every INT8 load names its file."""
    return version("nncf")


def recipe_digest(spec: Int8Spec, images: Sequence[DistractorImage]) -> str:
    """What the INT8 file is made from, apart from the fp32 IR whose name it extends."""
    recipe = f"{spec.model_dump_json()}|nncf {_nncf_version()}|images {images_digest(list(images))}"
    return hashlib.sha256(recipe.encode()).hexdigest()[:8]


def int8_path(fp32_ir: Path, spec: Int8Spec, images: Sequence[DistractorImage]) -> Path:
    return fp32_ir.with_name(f"{fp32_ir.stem}-int8-{recipe_digest(spec, images)}.xml")


def calibration_tensors(images: Sequence[DistractorImage], detect: Callable[[np.ndarray], list[DetectedFace]],
                        align: Callable[[np.ndarray, DetectedFace], np.ndarray],
                        preprocess: Callable[[np.ndarray], np.ndarray]) -> list[np.ndarray]:
    """The embedder's input tensor for every face found in ``images``, as found and mirrored."""
    tensors: list[np.ndarray] = []
    for item in images:
        try:
            image = decode_image(item.data)
        except (CustodyRfrError, ValueError) as e:
            logger.warning("calibration image %s not used: %s", item.source, e)
            continue
        for face in (f for f in detect(image) if min(f.w, f.h) >= MIN_FACE_PX):
            try:
                crop = align(image, face)
            except (CustodyRfrError, ValueError) as e:
                logger.warning("a face in calibration image %s not used: %s", item.source, e)
                continue
            tensors.append(preprocess(crop))
            tensors.append(preprocess(np.ascontiguousarray(crop[:, ::-1])))
    return tensors


def _recipe(manifest: ModelManifest) -> Int8Spec:
    if manifest.conversion.int8 is None:
        raise ModelManifestError(f"{manifest.ref} has no [conversion.int8] recipe, so it cannot run in INT8. "
                                 f"Use precision = \"fp32\" for it, or add a recipe and measure it.")
    return manifest.conversion.int8


def quantise(manifest: ModelManifest, fp32_ir: Path, detect: Callable[[np.ndarray], list[DetectedFace]],
             align: Callable[[np.ndarray, DetectedFace], np.ndarray], preprocess: Callable[[np.ndarray], np.ndarray],
             images: Sequence[DistractorImage]) -> ov.Model:
    """NNCF's INT8 graph of the fp32 IR, its activation ranges and biases calibrated on this CPU."""
    spec = _recipe(manifest)
    import nncf  # heavy: only when a file has to be made (setup), not at every desk start

    tensors = calibration_tensors(images, detect, align, preprocess)
    if len(tensors) < 2 * MIN_CALIBRATION_FACES:
        raise ModelManifestError(
            f"Only {len(tensors) // 2} calibration faces were found for {manifest.ref}'s INT8 form (at least "
            f"{MIN_CALIBRATION_FACES} are needed). The registry packages may be incomplete: run scripts/setup.sh.")
    model = ov.Core().read_model(str(fp32_ir))
    preset = {"mixed": nncf.QuantizationPreset.MIXED, "performance": nncf.QuantizationPreset.PERFORMANCE}[spec.preset]
    return nncf.quantize(model, nncf.Dataset(tensors), subset_size=len(tensors), preset=preset)


def _stable_names(model: ov.Model) -> None:
    """Rename the nodes OpenVINO named from a process-wide counter (``Convert_105421``) by their place in the
    graph, so the ``.xml`` is the same on every machine, not only the ``.bin``."""
    for place, node in enumerate(model.get_ordered_ops()):
        kind = node.get_type_name()
        if re.fullmatch(rf"{kind}_\d+", node.get_friendly_name()):
            node.set_friendly_name(f"{kind}_{place}")


def _save(model: ov.Model, target: Path, check: Callable[[str, str], None]) -> None:
    """Write ``model`` at ``target`` (``.xml`` last, so a crash never leaves one that looks complete) once the
    hashes of its ``.xml`` and ``.bin`` pass ``check``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _stable_names(model)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".quantise-") as tmp:
        tmp_xml = Path(tmp) / target.name
        ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
        check(sha256_file(tmp_xml), sha256_file(tmp_xml.with_suffix(".bin")))
        os.replace(tmp_xml.with_suffix(".bin"), target.with_suffix(".bin"))
        os.replace(tmp_xml, target)


def ensure_int8_ir(manifest: ModelManifest, fp32_ir: Path, detect: Callable[[np.ndarray], list[DetectedFace]],
                   align: Callable[[np.ndarray, DetectedFace], np.ndarray],
                   preprocess: Callable[[np.ndarray], np.ndarray],
                   images: Sequence[DistractorImage] | None = None) -> Path:
    """The INT8 IR of ``manifest``'s embedder, made only if it is missing, with the pinned constants.

    Refused unless its ``.xml`` and ``.bin`` are the files the manifest pins, so a desk and central can
    only ever embed with the same INT8 model.
    """
    spec = _recipe(manifest)
    images = distractor_images() if images is None else images
    target = existing_int8_ir(manifest, fp32_ir, images)
    if target.exists():
        return target
    pins = int8_pins.load(int8_pins.PINS_DIR / spec.pins)
    model = quantise(manifest, fp32_ir, detect, align, preprocess, images)
    int8_pins.apply(model, pins, manifest.ref)

    def pinned(xml_digest: str, bin_digest: str) -> None:
        if (xml_digest, bin_digest) != (spec.xml_sha256, spec.sha256):
            raise ModelManifestError(
                f"The INT8 form of {manifest.ref} made here is not the pinned file (sha256 of .xml {xml_digest[:12]}…, "
                f".bin {bin_digest[:12]}…; pinned {spec.xml_sha256[:12]}…, {spec.sha256[:12]}…), so its templates "
                f"would not match libraries built elsewhere; it was not kept. Install requirements.lock (openvino, "
                f"nncf) and run scripts/setup.sh again, or copy {target.stem}.xml and .bin from the model cache of a "
                f"machine that made them (they are checked against the same hashes).")

    _save(model, target, pinned)
    logger.info("quantised %s to INT8 with its pinned constants: %s", manifest.ref, target)
    return target


def existing_int8_ir(manifest: ModelManifest, fp32_ir: Path, images: Sequence[DistractorImage]) -> Path:
    """Where ``manifest``'s INT8 IR belongs, checked against the pinned hashes if it is there.

    Checked at every load, not only when made: the cache may have been seeded from
    another machine, or damaged, and a file that is not the pinned one would make
    templates no library was built with.
    """
    spec = _recipe(manifest)
    target = int8_path(fp32_ir, spec, images)
    if not (target.exists() and target.with_suffix(".bin").exists()):
        return target
    if (sha256_file(target), sha256_file(target.with_suffix(".bin"))) != (spec.xml_sha256, spec.sha256):
        raise ModelManifestError(
            f"The INT8 model file {target.name} (or its .bin) in the model cache is not the pinned one: it is damaged "
            f"or was not made by this release. Delete {target.stem}.xml and .bin from {target.parent} and run "
            f"scripts/setup.sh to make it again.")
    return target


def measure_pins(manifest: ModelManifest, fp32_ir: Path, detect: Callable[[np.ndarray], list[DetectedFace]],
                 align: Callable[[np.ndarray, DetectedFace], np.ndarray],
                 preprocess: Callable[[np.ndarray], np.ndarray], images: Sequence[DistractorImage],
                 directory: Path) -> tuple[str, str]:
    """Quantise here, write its constants as the pins, and return the ``.xml`` and ``.bin`` hashes to pin.

    For maintainers, when the recipe, nncf or a model changes; the new pins and hash go into
    the repository together, and the accuracy is measured again with them.
    """
    spec = _recipe(manifest)
    model = quantise(manifest, fp32_ir, detect, align, preprocess, images)
    pins = int8_pins.measure(model)
    int8_pins.dump(pins, int8_pins.PINS_DIR / spec.pins, manifest.ref, _nncf_version())
    int8_pins.apply(model, pins, manifest.ref)  # as setup will, so the hash is of the file setup makes
    digests: list[tuple[str, str]] = []
    _save(model, directory / int8_path(fp32_ir, spec, images).name, lambda xml, bin_: digests.append((xml, bin_)))
    return digests[0]
