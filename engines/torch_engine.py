"""PyTorch backend, for research checkpoints (never needed at run time).

A deployable checkpoint is ``{"arch": NAME, "options": {...}, "state_dict": {...}}`` saved with
``torch.save``; it is loaded with ``weights_only=True`` so that a checkpoint can never execute
code, and the architecture is looked up by NAME in ``training.deploy`` (never guessed from the
tensors).  The module returns the same named outputs as the exported ONNX graph.

Speed: this engine exists for research parity (the same numbers as the checkpoints), not speed.
PyTorch's OpenMP threads spin-wait at every barrier by default; on a busy 2-core machine (the
viewer, a second job) a spinning thread holds the core its partner needs, and 2 threads became
~10x slower than 1 (``benchmarks/bench_torch.py``).  The engine asks OpenMP to sleep instead
(``OMP_WAIT_POLICY=PASSIVE``), which OpenMP reads once, when torch is first imported: so only
when this engine is what imports torch, and never over a value the user set.  oneDNN (mkldnn)
stays on: turning it off was 2.3-3x slower in every configuration measured.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from engines.base import Engine, EngineError, check_inputs, cpu_device
from tracker.errors import install_hint


class TorchEngine(Engine):
    name = "torch"

    def __init__(self, path: Path, threads: int = 2):
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see the module docstring
        try:
            import torch
        except ImportError as exc:
            raise EngineError(f"PyTorch is not installed ({install_hint('train')})") from exc
        from training.deploy import build_deployable

        torch.set_num_threads(max(1, threads))
        try:
            ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise EngineError(f"{path}: not a safe PyTorch checkpoint ({str(exc).splitlines()[0]})") from exc
        if not isinstance(ckpt, dict) or "arch" not in ckpt or "state_dict" not in ckpt:
            raise EngineError(f"{path}: checkpoint lacks 'arch'/'state_dict' (export it with training.export)")
        self.module, self._inputs, self._outputs = build_deployable(ckpt["arch"], ckpt.get("options", {}))
        self.module.load_state_dict(ckpt["state_dict"])
        self.module.eval()
        self._torch = torch
        self.device = cpu_device(threads)

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        arrays = check_inputs(self, inputs)
        with torch.inference_mode():
            outs = self.module(*(torch.from_numpy(arrays[k]) for k in self._inputs))
        return {k: v.numpy() for k, v in zip(self._outputs, outs)}
