"""The one interface every inference backend implements (engines know nothing about faces).

An engine loads one model file and maps named float32 arrays to named float32 arrays:
``infer({"image": x}) -> {"uv": ..., "fg": ..., "depth": ...}``.  Every backend returns the
same names and shapes as the ONNX graph, so the tracker never branches on the backend.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

import numpy as np

from tracker.errors import TrackerError


class EngineError(TrackerError, RuntimeError):
    """A backend cannot load or run a model; the message is one line for the user."""


class Engine(ABC):
    name: str  # "onnx", "torch" or "tensorrt"
    device: str  # human-readable, e.g. "CPU (2 threads)" or "NVIDIA H100 (FP16)"
    _inputs: tuple[str, ...]  # set by each backend from its model
    _outputs: tuple[str, ...]

    @property
    def input_names(self) -> tuple[str, ...]:
        return self._inputs

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._outputs

    @abstractmethod
    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch; inputs and outputs are float32 arrays with a leading batch axis."""

    def describe(self) -> str:
        return f"{self.name} on {self.device}"

    def close(self) -> None:
        """Release what the engine holds beyond its model (worker threads); it stays usable.
        Nothing by default."""
        return None


def cpu_device(threads: int) -> str:
    """The ``Engine.device`` of a CPU backend: "CPU (1 thread)", "CPU (2 threads)"."""
    return f"CPU ({threads} thread{'s' if threads > 1 else ''})"


def in_chunks(run, arrays: Mapping[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """``run`` (one batch -> named outputs) over `arrays` in batches of at most `size`, the
    outputs joined again: for a backend built for a largest batch (TensorRT)."""
    n = next(iter(arrays.values())).shape[0]
    if n <= size:
        return run(arrays)
    parts = [run({k: v[i:i + size] for k, v in arrays.items()}) for i in range(0, n, size)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def check_inputs(engine: Engine, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    missing = set(engine.input_names) - set(inputs)
    if missing:
        raise EngineError(f"{engine.name}: missing inputs {sorted(missing)}")
    return {k: np.ascontiguousarray(inputs[k], dtype=np.float32) for k in engine.input_names}
