"""Turn a manifest's verified ``.tflite`` into an OpenVINO IR, once, in the artifact cache.

OpenVINO reads ``.tflite`` directly, so no TensorFlow is needed. A model shipped
only as TensorFlow.js weights (manifest ``[conversion.tfjs]``) is rebuilt from
code around its verified weights instead (``models/facerec_resnet.py``). The IR is named
after the model id and the source file's sha256, so a changed source never
reuses an old IR. The source is checked against the manifest's sha256 right
before converting: a file that differs could be corrupt or tampered with, and a
biometric matcher built on it must not be produced.

``python -m models.convert`` prepares every shipped manifest (scripts/setup.sh runs it).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path, PurePosixPath

import numpy as np
import openvino as ov

from models import facerec_resnet
from models.dequantise import dequantise_file
from models.errors import ModelChecksumError, ModelError, ModelManifestError
from models.manifest import ModelManifest, YuNetDecodeSpec, load_manifest, manifest_names
from models.tfjs_weights import read_tfjs_weights
from supply import pinned

logger = logging.getLogger(__name__)


def ir_dir() -> Path:
    """Where converted models live: beside the verified artifacts, so seeding a site copies both."""
    return pinned.cache_dir() / "ir"


def ir_path(manifest: ModelManifest, directory: Path | None = None) -> Path:
    """The IR ``.xml`` path for a manifest (its ``.bin`` sits beside it).

    A graph rebuilt from code also carries the builder's version, so changing the
    builder never reuses an IR built by the old one.
    """
    stem = f"{manifest.id}-{manifest.artifact.sha256[:12]}"
    if manifest.conversion.tfjs is not None:
        stem += f"-g{facerec_resnet.GRAPH_VERSION}"
    if manifest.conversion.dequantise is not None:
        stem += f"-fp32-{manifest.conversion.dequantise.sha256[:8]}"
    return (directory or ir_dir()) / f"{stem}.xml"


def source_path(manifest: ModelManifest) -> Path:
    """The model file from the pinned registry artifact (verified by supply against the catalogue)."""
    return pinned.member(manifest.artifact.key, manifest.artifact.member)


def verify_source(manifest: ModelManifest, path: Path) -> None:
    """Refuse a model file whose sha256 is not the one the manifest pins."""
    actual = pinned.sha256_file(path)
    if actual != manifest.artifact.sha256:
        raise ModelChecksumError(
            f"Model file {path} for {manifest.ref} has sha256 {actual}, but its manifest pins "
            f"{manifest.artifact.sha256}. The file may be corrupt or tampered with and will not be used. "
            f"Delete it and run scripts/setup.sh again to fetch a fresh copy; if the mismatch persists, "
            f"the manifest and supply/catalogue.toml disagree and must be corrected by the model owner."
        )


def _fix_output_batch(model: ov.Model, manifest: ModelManifest) -> None:
    """Make a Reshape that feeds an output keep the batch dimension instead of a baked-in constant."""
    fixed = 0
    for result in model.get_results():
        node = result.input_value(0).get_node()
        if node.get_type_name() != "Reshape":
            continue
        shape_node = node.input_value(1).get_node()
        if shape_node.get_type_name() != "Constant":
            continue
        shape = np.array(shape_node.get_data())
        new_shape = shape.copy()
        new_shape[0] = -1
        node.input(1).replace_source_output(ov.opset13.constant(new_shape).output(0))
        logger.info("%s: output Reshape %s -> %s", manifest.id, shape.tolist(), new_shape.tolist())
        fixed += 1
    if fixed == 0:
        raise ModelManifestError(
            f"Manifest {manifest.ref} asks for conversion.fix_output_batch, but the model has no "
            f"constant Reshape before an output. Set it to false or check the model file."
        )
    model.validate_nodes_and_infer_types()


YUNET_OUTPUTS = ("cls", "obj", "bbox", "kps")


def _check_yunet(model: ov.Model, manifest: ModelManifest, decode: YuNetDecodeSpec) -> None:
    """YuNet takes NCHW photos of any size and gives class, objectness, box and keypoints per stride, in that order."""
    inp = model.input(0).get_partial_shape()
    if inp.rank.get_length() != 4 or not inp[1].is_static or inp[1].get_length() != 3:
        raise ModelManifestError(f"Manifest {manifest.ref} describes an NCHW YuNet, but the model takes {inp}.")
    want = [f"{kind}_{stride}" for kind in YUNET_OUTPUTS for stride in decode.strides]
    names = [o.get_any_name() for o in model.outputs]
    if names != want:
        raise ModelManifestError(
            f"Manifest {manifest.ref} expects YuNet outputs {want}, but the model has {names}. "
            f"Fix [decode] strides in the manifest or check the model file."
        )


def _check_shapes(model: ov.Model, manifest: ModelManifest) -> None:
    """Compare the converted model with the manifest, so a wrong manifest fails at setup, not at the desk."""
    if isinstance(manifest.decode, YuNetDecodeSpec):
        _check_yunet(model, manifest, manifest.decode)
        return
    inp = model.input(0).get_partial_shape()
    want_in = [1, manifest.input.height, manifest.input.width, 3]
    if manifest.input.layout == "NCHW":
        want_in = [1, 3, manifest.input.height, manifest.input.width]
    if not inp.is_static or list(inp.to_shape()) != want_in:
        raise ModelManifestError(
            f"Manifest {manifest.ref} says the input is {want_in}, but the model takes {inp}. "
            f"Fix [input] in the manifest."
        )
    shapes = [list(o.get_partial_shape().to_shape()) for o in model.outputs]
    if manifest.kind == "embedder":
        want = [[1, manifest.output.dim]]
    else:
        want = [[1, manifest.output.anchors, manifest.output.dim], [1, manifest.output.anchors, 1]]
    if shapes != want:
        raise ModelManifestError(
            f"Manifest {manifest.ref} says the outputs are {want}, but the model produces {shapes}. "
            f"Fix [output] in the manifest (output.dim is {manifest.output.dim})."
        )


def _build_from_tfjs(manifest: ModelManifest, source: Path) -> ov.Model:
    """Rebuild a TF.js model whose single weights shard is ``source`` (already verified).

    The JSON that lays the weights out is verified against its own pin: a changed
    layout would shift every tensor and still produce a network that runs.
    """
    tfjs = manifest.conversion.tfjs
    if tfjs is None:
        raise ModelManifestError(f"Manifest {manifest.ref} has no [conversion.tfjs] table.")
    layout = pinned.member(manifest.artifact.key, tfjs.weights_manifest)
    actual = pinned.sha256_file(layout)
    if actual != tfjs.weights_manifest_sha256:
        raise ModelChecksumError(
            f"Weights manifest {layout} for {manifest.ref} has sha256 {actual}, but its manifest pins "
            f"{tfjs.weights_manifest_sha256}. It will not be used; delete it and run scripts/setup.sh again."
        )
    shard_dir = PurePosixPath(tfjs.weights_manifest).parent

    def shard(name: str) -> bytes:
        if str(shard_dir / name) != manifest.artifact.member:
            raise ModelManifestError(
                f"{tfjs.weights_manifest} names weights shard {name}, but {manifest.ref} pins only "
                f"{manifest.artifact.member}. Pin every shard before using this model."
            )
        return source.read_bytes()

    weights = read_tfjs_weights(layout, shard)
    logger.info("%s: rebuilding %s from %d TF.js tensors", manifest.id, tfjs.architecture, len(weights))
    return facerec_resnet.build(weights)


def dequantised_path(manifest: ModelManifest, source: Path | None = None) -> Path:
    """The verified fp32 ONNX form of an int8bq model, written once beside the artifacts.

    Also what a test hands OpenCV as its reference: OpenCV 5 cannot read the
    int8bq file either. ``source`` defaults to the pinned artifact member.
    """
    spec = manifest.conversion.dequantise
    if spec is None:
        raise ModelManifestError(f"Manifest {manifest.ref} has no [conversion.dequantise] table.")
    target = pinned.cache_dir() / "files" / "fp32" / f"{manifest.id}-{spec.sha256[:12]}.onnx"
    if not (target.exists() and pinned.sha256_file(target) == spec.sha256):
        source = source or source_path(manifest)
        verify_source(manifest, source)
        partial = target.with_suffix(".part")
        dequantise_file(source, partial)
        actual = pinned.sha256_file(partial)
        if actual != spec.sha256:
            partial.unlink()
            raise ModelChecksumError(
                f"Dequantising {source.name} for {manifest.ref} gave a file with sha256 {actual}, but its "
                f"manifest pins {spec.sha256}. The onnx or numpy version differs from the locked one, or the "
                f"step changed; the result will not be used. Reinstall from requirements.lock and run setup again."
            )
        os.replace(partial, target)
    return target


def convert(manifest: ModelManifest, source: Path) -> ov.Model:
    """Convert a verified source file to an in-memory OpenVINO model matching the manifest."""
    verify_source(manifest, source)
    if manifest.conversion.tfjs is not None:
        model = _build_from_tfjs(manifest, source)
    elif manifest.conversion.dequantise is not None:
        model = ov.convert_model(str(dequantised_path(manifest, source)))
    else:
        model = ov.convert_model(str(source))
    if manifest.conversion.fix_output_batch:
        _fix_output_batch(model, manifest)
    height, width = manifest.input.height, manifest.input.width
    if isinstance(manifest.decode, YuNetDecodeSpec):
        model.reshape({model.input(0): ov.PartialShape([1, 3, -1, -1])})  # each photo at its own size
    elif manifest.input.layout == "NCHW":
        model.reshape({model.input(0): ov.PartialShape([1, 3, height, width])})
    else:
        model.reshape({model.input(0): ov.PartialShape([1, height, width, 3])})
    _check_shapes(model, manifest)
    return model


def ensure_ir(manifest: ModelManifest, *, source: Path | None = None, directory: Path | None = None) -> Path:
    """The IR ``.xml`` for a manifest, converting the verified source only if the IR is missing.

    ``source`` and ``directory`` default to the pinned artifact and the cache; tests
    pass their own. Files are written under temporary names and renamed, the
    ``.xml`` last, so a crash mid-write never leaves an IR that looks complete.
    """
    target = ir_path(manifest, directory)
    if target.exists() and target.with_suffix(".bin").exists():
        logger.debug("IR for %s already at %s", manifest.ref, target)
        return target
    model = convert(manifest, source or source_path(manifest))
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".convert-") as tmp:
        tmp_xml = Path(tmp) / target.name
        ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
        os.replace(tmp_xml.with_suffix(".bin"), target.with_suffix(".bin"))
        os.replace(tmp_xml, target)
    logger.info("converted %s to %s", manifest.ref, target)
    return target


def main(argv: list[str] | None = None) -> int:
    """Prepare every shipped manifest's IR and say what was done."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    names = argv if argv else manifest_names()
    try:
        for name in names:
            manifest = load_manifest(name)
            existed = ir_path(manifest).exists() and ir_path(manifest).with_suffix(".bin").exists()
            path = ensure_ir(manifest)
            action = "kept" if existed else "converted"
            print(f"  {action:9s} {manifest.ref} ({manifest.licence.grade}) -> {path}")
            if manifest.licence.grade == "evaluation":
                print(f"  warning   {manifest.ref} is evaluation-grade: not for live use")
    except ModelError as e:
        print(f"model conversion failed: {e}", file=sys.stderr)
        return 1
    except pinned.SupplyError as e:
        print(f"model file unavailable: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
