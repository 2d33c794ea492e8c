"""One OpenVINO runtime per process, and a lock-guarded way to run a compiled model.

Compiling is slow and an ``InferRequest`` reuses its output buffers, so each
model is compiled once and its single request is used under a lock: Flask
serves requests on several threads, and two threads sharing one request
unguarded would read each other's outputs. Inference takes about a
millisecond, so the lock costs nothing at a custody desk's request rate.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import openvino as ov

logger = logging.getLogger(__name__)

_core: ov.Core | None = None
_core_lock = threading.Lock()

# Latency matters (one photo at a time at the desk), not throughput.
COMPILE_CONFIG = {"PERFORMANCE_HINT": "LATENCY"}


def core() -> ov.Core:
    """The process-wide OpenVINO Core, created on first use."""
    global _core
    with _core_lock:
        if _core is None:
            _core = ov.Core()
        return _core


class CompiledModel:
    """A model compiled for the CPU with one infer request that is safe to call from many threads."""

    def __init__(self, ir_path: Path, config: dict[str, str] | None = None) -> None:
        """``config`` adds to ``COMPILE_CONFIG`` (a test pins ``INFERENCE_PRECISION_HINT`` to compare runtimes)."""
        self.path = ir_path
        self._compiled = core().compile_model(core().read_model(str(ir_path)), "CPU",
                                              COMPILE_CONFIG | (config or {}))
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()
        # A detector run at each photo's own size (YuNet) has a dynamic input shape.
        self.input_shape = str(self._compiled.input(0).get_partial_shape())
        logger.info("compiled %s (input %s)", ir_path.name, self.input_shape)

    def __call__(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Run the model on one input; the outputs are copies, in the model's output order."""
        with self._lock:
            self._request.infer({0: tensor})
            return [np.array(self._request.get_output_tensor(i).data, copy=True)
                    for i in range(len(self._compiled.outputs))]
