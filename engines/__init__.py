"""Inference backends behind one interface (see ``engines.base.Engine``).

``load_engine(onnx_path, kind)`` with kind ``auto`` picks TensorRT when it is usable and
ONNX Runtime on the CPU otherwise.  ``torch`` needs the deployable ``.pt`` beside the ONNX file
(same stem) and PyTorch installed.  ``max_batch`` matters to TensorRT alone (ONNX Runtime and
PyTorch take any batch): the engine is built and optimised for batches up to it, and runs a
larger one in chunks.
"""
from __future__ import annotations

import logging
from pathlib import Path

from engines.base import Engine, EngineError

log = logging.getLogger(__name__)

KINDS = ("auto", "onnx", "torch", "tensorrt")
# Shown wherever an engine is chosen (CLI help, the viewer's tooltip).
NOTES = {
    "auto": "TensorRT when usable, else ONNX Runtime on the CPU (also when a TensorRT build fails)",
    "torch": "for research parity with the PyTorch checkpoints, not for speed: slower than ONNX Runtime on the CPU",
}


def available_engines() -> dict[str, str | None]:
    """kind -> None when usable here, else the reason it is not."""
    from importlib.util import find_spec

    from engines.tensorrt_engine import unavailable_reason

    return {
        "onnx": None if find_spec("onnxruntime") else "onnxruntime is not installed",
        "torch": None if find_spec("torch") else "PyTorch is not installed",
        "tensorrt": unavailable_reason(),
    }


def resolve_kind(kind: str) -> str:
    """The backend `kind` names: ``auto`` becomes ``tensorrt`` when usable, else ``onnx``."""
    if kind not in KINDS:
        raise EngineError(f"unknown engine '{kind}' (choose from {', '.join(KINDS)})")
    if kind != "auto":
        return kind
    reason = available_engines()["tensorrt"]
    if reason is None:
        return "tensorrt"
    log.info("TensorRT not used: %s; using ONNX Runtime on the CPU", reason)
    return "onnx"


def load_engine(onnx_path: Path, kind: str = "auto", threads: int = 2, max_batch: int = 1, calls: int = 1,
                one_sample_per_call: bool = False) -> Engine:
    """Load the model at `onnx_path` with the chosen backend; `max_batch`: TensorRT's largest
    batch; `calls`: ONNX Runtime splits a batch into up to this many calls side by side, each
    on `threads` threads; `one_sample_per_call`: ONNX Runtime runs each sample alone (a
    dynamically quantized graph, ``OnnxEngine``)."""
    onnx_path = Path(onnx_path)
    kind = resolve_kind(kind)
    if kind == "onnx":
        from engines.onnx_engine import OnnxEngine

        return OnnxEngine(onnx_path, threads=threads, calls=calls, one_sample_per_call=one_sample_per_call)
    if kind == "torch":
        from engines.torch_engine import TorchEngine

        pt = onnx_path.with_suffix(".pt")
        if not pt.exists():
            raise EngineError(f"{pt}: no PyTorch checkpoint beside {onnx_path.name}")
        return TorchEngine(pt, threads=threads)
    from engines.tensorrt_engine import TensorRTEngine

    return TensorRTEngine(onnx_path, max_batch=max_batch)


__all__ = ["Engine", "EngineError", "KINDS", "NOTES", "available_engines", "load_engine", "resolve_kind"]
