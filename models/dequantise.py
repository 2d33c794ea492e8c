"""Rewrite a weight-quantised ONNX model as plain fp32, so OpenVINO (and OpenCV) can read it.

OpenCV Zoo's ``*_int8bq.onnx`` files store each weight as int8 blocks, a scale
and a zero point per block, and a ``DequantizeLinear`` node with a
``block_size`` attribute that turns them back into fp32 at run time. OpenVINO
2026.4 does not implement ``block_size``, and the SFace file also declares its
old fp32 weights as graph inputs nothing reads. Since every such node's inputs
are constants, its output is a constant too: this module computes it once with
NumPy, as the ONNX operator defines it, and stores the result in place of the
node. Nothing else in the graph changes, so the network computes what the
publisher's int8bq file computes.

The step is deterministic (same input bytes, same NumPy arithmetic, same
protobuf serialisation), so the output's sha256 is pinned in the manifest
(``[conversion.dequantise] sha256``) and a changed result is refused like a
changed download.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from models.errors import ModelManifestError

logger = logging.getLogger(__name__)


def dequantise_array(quantised: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None,
                     axis: int = 1, block_size: int = 0) -> np.ndarray:
    """``DequantizeLinear`` of constants: ``(x - zero_point) * scale`` in float32.

    Per ONNX opset 21: a scalar scale is per tensor; a 1-D scale without
    ``block_size`` is per slice along ``axis``; with ``block_size`` the scale
    (and zero point) has the input's shape except along ``axis``, where each
    entry covers ``block_size`` consecutive elements (the last block may be short).
    """
    x = quantised.astype(np.int32)
    zp = np.zeros_like(scale, dtype=np.int32) if zero_point is None else zero_point.astype(np.int32)
    scale = scale.astype(np.float32)
    axis = axis % max(x.ndim, 1)
    if block_size > 0:
        length = x.shape[axis]
        scale = np.repeat(scale, block_size, axis=axis).take(range(length), axis=axis)
        zp = np.repeat(zp, block_size, axis=axis).take(range(length), axis=axis)
    elif scale.ndim == 1 and scale.size > 1:
        shape = [1] * x.ndim
        shape[axis] = scale.size
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return ((x - zp).astype(np.float32) * scale).astype(np.float32)


def _attribute(node: onnx.NodeProto, name: str, default: int) -> int:
    for attr in node.attribute:
        if attr.name == name:
            return int(attr.i)
    return default


def dequantise_model(model: onnx.ModelProto) -> int:
    """Fold every constant ``DequantizeLinear`` into an fp32 initializer and drop unused inputs, in place.

    Returns how many nodes were folded. A ``DequantizeLinear`` fed by a
    non-constant (an activation-quantised model) is left alone: that would be
    a different kind of model, and OpenVINO's own reading of it decides.
    """
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    folded: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        inputs = [name for name in node.input]
        if not all(name == "" or name in initializers for name in inputs):
            continue
        x = numpy_helper.to_array(initializers[inputs[0]])
        scale = numpy_helper.to_array(initializers[inputs[1]])
        zero = numpy_helper.to_array(initializers[inputs[2]]) if len(inputs) > 2 and inputs[2] else None
        value = dequantise_array(x, scale, zero, _attribute(node, "axis", 1), _attribute(node, "block_size", 0))
        graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
        folded.append(node)
    for node in folded:
        graph.node.remove(node)
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)
    constant = {t.name for t in graph.initializer}
    for value in [v for v in graph.input if v.name not in used or v.name in constant]:
        graph.input.remove(value)
    return len(folded)


def dequantise_file(source: Path, target: Path) -> int:
    """Write ``source``'s fp32 form to ``target``; returns the number of folded nodes (0 is an error)."""
    model = onnx.load(str(source))
    count = dequantise_model(model)
    if count == 0:
        raise ModelManifestError(
            f"{source.name} has no constant DequantizeLinear nodes, but its manifest asks for "
            f"[conversion.dequantise]. Remove that table or check the model file."
        )
    onnx.checker.check_model(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(model.SerializeToString(deterministic=True))
    logger.info("dequantised %d weight tensors of %s to fp32", count, source.name)
    return count
