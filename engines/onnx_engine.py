"""ONNX Runtime backend: the default wherever no GPU is present."""
from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from engines.base import Engine, EngineError, check_inputs, cpu_device, in_chunks


class OnnxEngine(Engine):
    name = "onnx"

    def __init__(self, path: Path, threads: int = 2, profile_prefix: str | None = None, calls: int = 1,
                 one_sample_per_call: bool = False):
        """``threads``: ONNX Runtime's threads inside one call.  ``calls``: a batch is split into up
        to this many parts run side by side (ONNX Runtime releases the GIL): on two cores two
        1-thread calls of one face each beat one 2-thread call of both (the tracker's networks
        are too small at batch 1 to gain from a second thread).  ``profile_prefix``: record ONNX
        Runtime's per-node profile, written by ``end_profiling()`` to
        ``<profile_prefix>_<date>.json`` (for ``bench --profile``).  ``one_sample_per_call``: for
        a graph whose answer for one sample depends on the others in its call (dynamic
        quantization scales the activations by the whole call's range): every sample runs alone,
        so a face's landmarks do not depend on the faces beside it or on ``calls``."""
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
        self.calls = max(1, calls)
        self.one_sample_per_call = one_sample_per_call
        self._pool: ThreadPoolExecutor | None = None  # for the parts beyond the first, made when first needed
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)  # the graph's metadata_props
        self._inputs = tuple(i.name for i in self.session.get_inputs())
        self._outputs = tuple(o.name for o in self.session.get_outputs())

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = check_inputs(self, inputs)
        n = next(iter(arrays.values())).shape[0]
        parts = min(self.calls, n)
        if parts <= 1:
            return self._run_part(arrays)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.calls - 1, thread_name_prefix="onnx-calls")
        bounds = [n * i // parts for i in range(parts + 1)]
        chunks = [{k: v[a:b] for k, v in arrays.items()} for a, b in zip(bounds, bounds[1:])]
        rest = [self._pool.submit(self._run_part, chunk) for chunk in chunks[1:]]
        return self._joined([self._run_part(chunks[0])] + [f.result() for f in rest])

    def _run_part(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One part of a batch: one call, or with ``one_sample_per_call`` one call a sample."""
        return in_chunks(self._run, arrays, 1) if self.one_sample_per_call else self._run(arrays)

    def _joined(self, outs: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {k: np.concatenate([o[k] for o in outs]) for k in self._outputs}

    def _run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self._outputs, self.session.run(list(self._outputs), arrays)))

    def describe(self) -> str:
        if self.calls == 1:
            return f"{self.name} on {self.device}"
        # (not "CPU (1 thread), several faces run as up to 2 parallel calls": read as --threads 2 ignored; user test 25)
        return f"{self.name} on CPU, {self.calls} threads: one face a thread, up to {self.calls} faces at once"

    def close(self) -> None:
        """Stop the threads that run a batch's parts (also stopped when the engine is collected)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def end_profiling(self) -> Path:
        """Stop profiling (``profile_prefix`` given) and return the JSON file ONNX Runtime wrote."""
        return Path(self.session.end_profiling())
