"""The calibration-dependent constants of an INT8 IR, measured once and pinned, so every machine makes the same file.

Why: NNCF's activation ranges (the FakeQuantize limits) and its bias corrections come
from running the fp32 model on the calibration faces, and that inference rounds
differently on different CPU instruction sets. Quantised under AVX instead of AVX2
on the same box, SFace's activation ranges moved by up to 1.3 % and the ``.bin`` hash
changed (``docs/model-card.md``), so central and a desk with another CPU would make
templates with different models. The rest of NNCF's output (the int8 weights and their
scales) is arithmetic on the weights alone and came out identical.

So the ranges and biases are measured once (``python -m models.prepare_int8 --measure``)
and stored beside the manifests; every machine still runs NNCF for the graph, then
writes the pinned values into it, and the result's hash is checked against the
manifest's. A machine whose file differs anyway refuses it rather than making
templates no library was built with.

Values are stored as little-endian float32 in base64: exact, and about a third of the
size of decimal text for SFace's 32,000 numbers.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
from openvino import op

from models.errors import ModelManifestError
from models.manifest import MANIFEST_DIR

FORMAT = 1
PINS_DIR = MANIFEST_DIR / "int8"
# Which inputs hold calibration results: a FakeQuantize's four limits, an Add's bias (fast bias correction).
_PINNED_INPUTS = {"FakeQuantize": (1, 2, 3, 4), "Add": (1,)}

Pins = dict[str, dict[int, np.ndarray]]  # node friendly name -> input index -> float32 constant


def _constant_inputs(model: ov.Model) -> dict[tuple[str, int], tuple[Any, Any]]:
    """Every pinnable place of ``model``: (node name, input index) -> (that node, its Constant source)."""
    found: dict[tuple[str, int], tuple[Any, Any]] = {}
    for node in model.get_ops():
        for index in _PINNED_INPUTS.get(node.get_type_name(), ()):
            if index >= node.get_input_size():
                continue
            source = node.input(index).get_source_output().get_node()
            if source.get_type_name() == "Constant" and source.get_element_type() == ov.Type.f32:
                found[(node.get_friendly_name(), index)] = (node, source)
    return found


def measure(model: ov.Model) -> Pins:
    """The calibration-dependent constants of a freshly quantised model."""
    pins: Pins = {}
    for (name, index), (_, const) in _constant_inputs(model).items():
        pins.setdefault(name, {})[index] = np.array(const.get_data(), dtype=np.float32)
    return pins


def apply(model: ov.Model, pins: Pins, what: str) -> None:
    """Overwrite ``model``'s calibration-dependent constants with ``pins``; refuse any that do not line up.

    Every pinnable constant must have a pin of its shape, and every pin a place: a
    mismatch means another nncf or another fp32 model made the graph, and patching
    part of it would give a file that is neither.
    """
    places = _constant_inputs(model)
    wanted = {(name, index) for name, inputs in pins.items() for index in inputs}
    present = set(places)
    if wanted != present:
        missing, extra = sorted(present - wanted)[:3], sorted(wanted - present)[:3]
        raise ModelManifestError(
            f"The pinned INT8 constants of {what} do not fit the graph NNCF made here (unpinned: {missing}, "
            f"no such place: {extra}). The nncf or model version differs from the one they were measured with; "
            f"install requirements.lock, or measure them again with `python -m models.prepare_int8 --measure`.")
    for name, inputs in pins.items():
        for index, value in inputs.items():
            node, old = places[(name, index)]
            if tuple(old.get_output_shape(0)) != value.shape:
                raise ModelManifestError(f"The pinned INT8 constant {name}[{index}] of {what} has shape {value.shape}, "
                                         f"the graph {tuple(old.get_output_shape(0))}; measure the pins again.")
            node.input(index).replace_source_output(op.Constant(value).output(0))


def dump(pins: Pins, path: Path, model_ref: str, nncf_version: str) -> None:
    doc = {"format": FORMAT, "model": model_ref, "nncf": nncf_version,
           "constants": {name: {str(index): {"shape": list(value.shape),
                                             "f32le": base64.b64encode(value.astype("<f4").tobytes()).decode()}
                                for index, value in sorted(inputs.items())}
                         for name, inputs in sorted(pins.items())}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def load(path: Path) -> Pins:
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != FORMAT:
            raise ModelManifestError(f"{path} has format {doc.get('format')!r}; this code reads {FORMAT}.")
        pins: Pins = {}
        for name, inputs in doc["constants"].items():
            for index, entry in inputs.items():
                value = np.frombuffer(base64.b64decode(entry["f32le"], validate=True), dtype="<f4")
                pins.setdefault(str(name), {})[int(index)] = value.astype(np.float32).reshape(entry["shape"])
        return pins
    except OSError as e:
        raise ModelManifestError(f"The pinned INT8 constants are missing ({e}); the checkout is incomplete.") from e
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ModelManifestError(f"{path} is damaged ({e}); restore it from the repository.") from e
