"""ONNX Runtime backend: the default wherever no GPU is present."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from engines.base import Engine, EngineError, check_inputs, cpu_device


class OnnxEngine(Engine):
    name = "onnx"

    def __init__(self, path: Path, threads: int = 2, profile_prefix: str | None = None):
        """``profile_prefix``: record ONNX Runtime's per-node profile, written by
        ``end_profiling()`` to ``<profile_prefix>_<date>.json`` (for ``bench --profile``)."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if profile_prefix is not None:
            opts.enable_profiling = True
            opts.profile_file_prefix = profile_prefix
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning worker threads win a little on an idle machine and lose 2x when anything
        # else runs (measured here: 15.2 -> 7.1 ms per crop on 2 busy cores): never spin.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise EngineError(f"{path}: ONNX Runtime cannot load the model ({str(exc).splitlines()[0]})") from exc
        self.device = cpu_device(opts.intra_op_num_threads)
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)  # the graph's metadata_props
        self._inputs = tuple(i.name for i in self.session.get_inputs())
        self._outputs = tuple(o.name for o in self.session.get_outputs())

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.session.run(list(self._outputs), check_inputs(self, inputs))
        return dict(zip(self._outputs, outs))

    def end_profiling(self) -> Path:
        """Stop profiling (``profile_prefix`` given) and return the JSON file ONNX Runtime wrote."""
        return Path(self.session.end_profiling())
