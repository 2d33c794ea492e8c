"""Build dlib's 128-D face descriptor ResNet as an OpenVINO model from its TF.js weights.

OpenVINO cannot read TensorFlow.js weights, and the network is small and fixed,
so it is rebuilt here node by node with OpenVINO's opset, following face-api.js
(``src/faceRecognitionNet`` in npm ``@vladmandic/face-api``) layer for layer:

* the input is the normalised RGB chip, ``(rgb - mean) / 255`` with face-api.js's
  per-channel means; the manifest declares them and the embedder applies them, as
  for every other model, so the graph holds only the network;
* a 7x7 stride-2 ``valid`` convolution and a 3x3 stride-2 max pool, then residual
  blocks at 32, 64, 128 and 256 channels; every convolution is followed by a
  per-channel affine "scale" layer (dlib's frozen batch norm), folded into the
  convolution's weights and bias here, which is exact up to float rounding;
* down-sampling blocks add a 2x2 average-pooled shortcut, zero-padded in channels
  and, when the convolution path came out one pixel smaller, that path is
  zero-padded at the bottom and right (face-api.js's ``residualDown``);
* global average pooling and a 256x128 fully connected layer; the output is not
  normalised (the embedder L2-normalises).
"""

from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from models.errors import ModelManifestError

INPUT_SIZE = 150
DIM = 128
# Part of the IR's file name: bump it when the graph built here changes, so a cached IR is rebuilt.
GRAPH_VERSION = 1

# (block name, output channels, down-sampling?) in network order.
BLOCKS: tuple[tuple[str, int, bool], ...] = (
    ("conv32_1", 32, False), ("conv32_2", 32, False), ("conv32_3", 32, False),
    ("conv64_down", 64, True), ("conv64_1", 64, False), ("conv64_2", 64, False), ("conv64_3", 64, False),
    ("conv128_down", 128, True), ("conv128_1", 128, False), ("conv128_2", 128, False),
    ("conv256_down", 256, True), ("conv256_1", 256, False), ("conv256_2", 256, False),
    ("conv256_down_out", 256, True),
)


def _take(weights: dict[str, np.ndarray], name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    try:
        value = weights[name]
    except KeyError as e:
        raise ModelManifestError(f"The face descriptor weights have no tensor {name!r}.") from e
    if shape is not None and value.shape != shape:
        raise ModelManifestError(f"Tensor {name} has shape {value.shape}, expected {shape}.")
    return value


def _conv(x: ov.Output, weights: dict[str, np.ndarray], prefix: str, stride: int, relu: bool) -> ov.Output:
    """Convolution + bias + per-channel scale (folded), optionally ReLU; TF ``same`` at stride 1, else ``valid``."""
    filters = _take(weights, f"{prefix}/conv/filters")  # HWIO
    out_ch = filters.shape[3]
    bias = _take(weights, f"{prefix}/conv/bias", (out_ch,))
    gamma = _take(weights, f"{prefix}/scale/weights", (out_ch,))
    beta = _take(weights, f"{prefix}/scale/biases", (out_ch,))
    folded = (filters.astype(np.float64) * gamma.astype(np.float64)).transpose(3, 2, 0, 1)  # OIHW
    folded_bias = bias.astype(np.float64) * gamma + beta
    pad = (filters.shape[0] - 1) // 2 if stride == 1 else 0
    y = ops.convolution(x, ops.constant(folded.astype(np.float32)), [stride, stride], [pad, pad], [pad, pad], [1, 1])
    y = ops.add(y, ops.constant(folded_bias.astype(np.float32).reshape(1, out_ch, 1, 1)))
    return ops.relu(y).output(0) if relu else y.output(0)


def _residual(x: ov.Output, weights: dict[str, np.ndarray], prefix: str) -> ov.Output:
    y = _conv(x, weights, f"{prefix}/conv1", 1, relu=True)
    y = _conv(y, weights, f"{prefix}/conv2", 1, relu=False)
    return ops.relu(ops.add(y, x)).output(0)


def _residual_down(x: ov.Output, weights: dict[str, np.ndarray], prefix: str, out_ch: int) -> ov.Output:
    y = _conv(x, weights, f"{prefix}/conv1", 2, relu=True)
    y = _conv(y, weights, f"{prefix}/conv2", 1, relu=False)
    pooled = ops.avg_pool(x, [2, 2], [0, 0], [0, 0], [2, 2], exclude_pad=True, rounding_type="floor")
    in_ch = x.get_partial_shape()[1].get_length()
    side_y = y.get_partial_shape()[2].get_length()
    side_p = pooled.get_output_partial_shape(0)[2].get_length()
    if side_y != side_p:
        y = ops.pad(y, [0, 0, 0, 0], [0, 0, side_p - side_y, side_p - side_y], "constant", 0.0).output(0)
    shortcut = pooled.output(0)
    if in_ch != out_ch:
        shortcut = ops.pad(shortcut, [0, 0, 0, 0], [0, out_ch - in_ch, 0, 0], "constant", 0.0).output(0)
    return ops.relu(ops.add(y, shortcut)).output(0)


def build(weights: dict[str, np.ndarray]) -> ov.Model:
    """The network as an ``ov.Model``: input ``[1,150,150,3]`` normalised RGB (NHWC), output ``[1,128]``."""
    image = ops.parameter([1, INPUT_SIZE, INPUT_SIZE, 3], np.float32, name="image")
    x = ops.transpose(image, ops.constant(np.array([0, 3, 1, 2], dtype=np.int64))).output(0)
    x = _conv(x, weights, "conv32_down", 2, relu=True)
    x = ops.max_pool(x, [2, 2], [1, 1], [0, 0], [0, 0], [3, 3], rounding_type="floor").output(0)
    for name, channels, down in BLOCKS:
        x = _residual_down(x, weights, name, channels) if down else _residual(x, weights, name)
    pooled = ops.reduce_mean(x, ops.constant(np.array([2, 3], dtype=np.int64)), keep_dims=False)
    fc = _take(weights, "fc", (256, DIM))
    out = ops.matmul(pooled, ops.constant(fc), False, False)
    out.output(0).get_tensor().set_names({"descriptor"})
    image.output(0).get_tensor().set_names({"image"})
    return ov.Model([out.output(0)], [image], "dlib_face_recognition_resnet_v1")
