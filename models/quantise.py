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
images' hash), atomically, ``.xml`` last, like ``models.convert``. The weights
it produces may differ in the last bits between CPUs; templates made on two
machines are compared by cosine, where that difference is far below the score
bands' resolution.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import openvino as ov

from core.errors import CustodyRfrError
from models.detector import DetectedFace
from models.errors import ModelManifestError
from models.image import decode_image
from models.manifest import Int8Spec, ModelManifest
from models.registry_faces import DistractorImage, distractor_images, images_digest

logger = logging.getLogger(__name__)

MIN_CALIBRATION_FACES = 16  # fewer and the activation ranges are guesses; the pinned images give 24
MIN_FACE_PX = 40  # as the distractors and the demo library: smaller faces are blurred crops, poor ranges


def _nncf_version() -> str:
    import nncf

    return str(nncf.__version__)


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


def ensure_int8_ir(manifest: ModelManifest, fp32_ir: Path, detect: Callable[[np.ndarray], list[DetectedFace]],
                   align: Callable[[np.ndarray, DetectedFace], np.ndarray],
                   preprocess: Callable[[np.ndarray], np.ndarray],
                   images: Sequence[DistractorImage] | None = None) -> Path:
    """The INT8 IR of ``manifest``'s embedder, quantising the fp32 IR only if it is missing."""
    spec = manifest.conversion.int8
    if spec is None:
        raise ModelManifestError(f"{manifest.ref} has no [conversion.int8] recipe, so it cannot run in INT8. "
                                 f"Use precision = \"fp32\" for it, or add a recipe and measure it.")
    images = distractor_images() if images is None else images
    target = int8_path(fp32_ir, spec, images)
    if target.exists() and target.with_suffix(".bin").exists():
        return target
    import nncf  # heavy: only when a file has to be made (setup), not at every desk start

    tensors = calibration_tensors(images, detect, align, preprocess)
    if len(tensors) < 2 * MIN_CALIBRATION_FACES:
        raise ModelManifestError(
            f"Only {len(tensors) // 2} calibration faces were found for {manifest.ref}'s INT8 form (at least "
            f"{MIN_CALIBRATION_FACES} are needed). The registry packages may be incomplete: run scripts/setup.sh.")
    model = ov.Core().read_model(str(fp32_ir))
    preset = {"mixed": nncf.QuantizationPreset.MIXED, "performance": nncf.QuantizationPreset.PERFORMANCE}[spec.preset]
    quantised = nncf.quantize(model, nncf.Dataset(tensors), subset_size=len(tensors), preset=preset)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".quantise-") as tmp:
        tmp_xml = Path(tmp) / target.name
        ov.save_model(quantised, str(tmp_xml), compress_to_fp16=False)
        os.replace(tmp_xml.with_suffix(".bin"), target.with_suffix(".bin"))
        os.replace(tmp_xml, target)
    logger.info("quantised %s to INT8 on %d calibration crops: %s", manifest.ref, len(tensors), target)
    return target
