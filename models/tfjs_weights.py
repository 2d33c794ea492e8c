"""Read a TensorFlow.js weights manifest and its shards into float32 numpy arrays, without TensorFlow.

npm ``@vladmandic/face-api`` ships dlib's face descriptor network this way: a
JSON manifest naming each tensor (shape, dtype, optional uint8/uint16
quantisation with ``scale`` and ``min``) and binary shards holding the values
back to back in manifest order. Quantised values are restored as
``q * scale + min`` in double precision then stored as float32, as tfjs-core's
``decodeWeights`` does, so the
rebuilt network sees the same weights as face-api.js in a browser.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from models.errors import ModelManifestError

_DTYPES: dict[str, type[np.generic]] = {
    "float32": np.float32,
    "int32": np.int32,
    "uint8": np.uint8,
    "uint16": np.uint16,
    "float16": np.float16,
}


def _dtype(name: str, where: str) -> type[np.generic]:
    try:
        return _DTYPES[name]
    except KeyError as e:
        raise ModelManifestError(f"{where}: TF.js dtype {name!r} is not supported.") from e


def read_tfjs_weights(manifest_path: Path, shard: Callable[[str], bytes]) -> dict[str, np.ndarray]:
    """All tensors of a TF.js weights manifest as float32 arrays, keyed by tensor name.

    ``shard`` returns the bytes of a shard named in the manifest's ``paths`` (the
    caller verifies them: this module only decodes). A manifest whose tensors do
    not add up to exactly the shard bytes is refused, since a silent offset
    error would give a network that runs but matches nobody.
    """
    groups = json.loads(manifest_path.read_text(encoding="utf-8"))
    tensors: dict[str, np.ndarray] = {}
    for group in groups:
        data = b"".join(shard(path) for path in group["paths"])
        offset = 0
        for spec in group["weights"]:
            name, shape = spec["name"], [int(d) for d in spec["shape"]]
            count = int(np.prod(shape, dtype=np.int64))
            quant = spec.get("quantization")
            stored = _dtype(quant["dtype"] if quant else spec["dtype"], f"{manifest_path.name}:{name}")
            size = count * np.dtype(stored).itemsize
            if offset + size > len(data):
                raise ModelManifestError(
                    f"{manifest_path.name}: tensor {name} runs past the end of its shards "
                    f"({offset + size} > {len(data)} bytes)."
                )
            raw = np.frombuffer(data, dtype=stored, count=count, offset=offset)
            offset += size
            if quant:
                values = (raw.astype(np.float64) * float(quant["scale"]) + float(quant["min"])).astype(np.float32)
            else:
                values = raw.astype(np.float32)
            tensors[name] = values.reshape(shape)
        if offset != len(data):
            raise ModelManifestError(
                f"{manifest_path.name}: the manifest describes {offset} bytes but its shards hold {len(data)}."
            )
    return tensors
