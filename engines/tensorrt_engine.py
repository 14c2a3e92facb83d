"""TensorRT FP16 backend: builds an engine from the ONNX file, caches it, runs it with pycuda.

The serialised engine is cached next to the user's cache folder under a key made of the ONNX
file's SHA-256, the GPU name and compute capability, and the TensorRT version: a new model, a
different GPU or a TensorRT upgrade all trigger a rebuild, and so does a cache file that fails
to deserialise (truncated or corrupt).  Buffers are page-locked host arrays plus device arrays,
copied and executed on one CUDA stream.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from engines.base import Engine, EngineError, check_inputs, in_chunks
from tracker.fileio import atomic_write_bytes

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path(os.environ.get("DENSEREG_CACHE", Path.home() / ".cache" / "densereg-tracker"))


def unavailable_reason() -> str | None:
    """Why TensorRT cannot run here, or None when it can."""
    try:
        import tensorrt
    except Exception as exc:
        return f"tensorrt is not installed ({type(exc).__name__})"
    if not hasattr(tensorrt.BuilderFlag, "FP16"):
        # TensorRT 11 builds FP16 only from strongly typed networks (an FP16 ONNX graph).
        return f"TensorRT {tensorrt.__version__} has no FP16 builder flag (TensorRT 10 is needed: pip install 'tensorrt>=10,<11')"
    try:
        import pycuda.driver as cuda

        cuda.init()
        if cuda.Device.count() == 0:
            return "no CUDA device"
    except Exception as exc:
        return f"CUDA/pycuda unusable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    return None


def cache_key(onnx_bytes: bytes, gpu_name: str, compute_capability: tuple[int, int], trt_version: str, max_batch: int) -> str:
    h = hashlib.sha256(onnx_bytes).hexdigest()[:16]
    gpu = "".join(c if c.isalnum() else "_" for c in gpu_name)
    return f"{h}-{gpu}-sm{compute_capability[0]}{compute_capability[1]}-trt{trt_version}-b{max_batch}-fp16"


class TensorRTEngine(Engine):
    name = "tensorrt"

    def __init__(self, path: Path, max_batch: int = 1, cache_dir: Path = DEFAULT_CACHE):
        """`max_batch`: the largest batch the engine is built for (its optimisation profile, and
        part of the cache key); ``infer`` runs a larger batch in chunks of it."""
        if max_batch < 1:
            raise EngineError(f"TensorRT max_batch must be at least 1, got {max_batch}")
        reason = unavailable_reason()
        if reason:
            raise EngineError(f"TensorRT unavailable: {reason}")
        import pycuda.driver as cuda
        import tensorrt as trt

        self._cuda, self._trt = cuda, trt
        try:
            cuda.init()
            dev = cuda.Device(0)
            self._ctx = dev.make_context()
        except Exception as exc:  # (a device taken, out of memory): one line that names --engine onnx
            raise EngineError(f"TensorRT: no CUDA context on GPU 0 ({type(exc).__name__}: {exc}); --engine onnx runs on the CPU") from exc
        try:
            self._logger = trt.Logger(trt.Logger.WARNING)
            onnx_bytes = Path(path).read_bytes()
            key = cache_key(onnx_bytes, dev.name(), dev.compute_capability(), trt.__version__, max_batch)
            self.cache_file = Path(cache_dir) / f"{key}.engine"
            self.engine = self._load_cached() or self._build(onnx_bytes, max_batch)
            self.context = self.engine.create_execution_context()
            self.stream = cuda.Stream()
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            mode = trt.TensorIOMode.INPUT
            self._inputs = tuple(n for n in names if self.engine.get_tensor_mode(n) == mode)
            self._outputs = tuple(n for n in names if self.engine.get_tensor_mode(n) != mode)
            self.max_batch = max_batch
            self._buffers: dict[str, tuple[np.ndarray, object]] = {}
            self.device = f"{dev.name()} (FP16)"
        except Exception as exc:
            self._ctx.pop()
            self._release()
            if isinstance(exc, EngineError):
                raise
            # TensorRT's and pycuda's own errors: one line that names --engine onnx (`auto` falls back to ONNX Runtime on it: Tracker)
            raise EngineError(f"TensorRT {trt.__version__} cannot load {Path(path).name} ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}); --engine onnx runs on the CPU") from exc
        self._ctx.pop()

    def _load_cached(self):
        if not self.cache_file.exists():
            return None
        runtime = self._trt.Runtime(self._logger)
        try:
            engine = runtime.deserialize_cuda_engine(self.cache_file.read_bytes())
        except Exception:
            engine = None
        if engine is None:
            log.warning("TensorRT cache %s is unreadable; rebuilding", self.cache_file)
        return engine

    def _build(self, onnx_bytes: bytes, max_batch: int):
        trt = self._trt
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)  # explicit batch is the only mode in TensorRT >= 10
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse(onnx_bytes):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EngineError(f"TensorRT cannot parse the ONNX model: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
        config.set_flag(trt.BuilderFlag.FP16)  # layers without an FP16 kernel stay FP32
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            inp = network.get_input(i)
            shape = tuple(inp.shape)
            one = (1,) + shape[1:]
            profile.set_shape(inp.name, one, one, (max_batch,) + shape[1:])
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise EngineError("TensorRT engine build failed")
        # (a file of its own for each writer: through one fixed temporary name, two batch workers
        # building the same engine raced, and the loser fell back to the CPU; review 35)
        try:
            atomic_write_bytes(self.cache_file, bytes(serialized))
        except OSError as exc:  # a read-only home, a full disk: the engine built is good, only not kept (review 36)
            log.warning("TensorRT engine not cached (%s): it is built again next time", exc)
        return trt.Runtime(self._logger).deserialize_cuda_engine(serialized)

    def _buffer(self, name: str, shape: tuple[int, ...]):
        """Page-locked host array + device allocation, reused while the shape is unchanged."""
        cur = self._buffers.get(name)
        if cur is None or cur[0].shape != shape:
            dtype = self._trt.nptype(self.engine.get_tensor_dtype(name))
            host = self._cuda.pagelocked_empty(shape, dtype)
            cur = (host, self._cuda.mem_alloc(host.nbytes))
            self._buffers[name] = cur
        return cur

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return in_chunks(self._run, check_inputs(self, inputs), self.max_batch)

    def _run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One batch of at most max_batch."""
        cuda = self._cuda
        self._ctx.push()
        try:
            for name, arr in arrays.items():
                self.context.set_input_shape(name, arr.shape)
                host, dev = self._buffer(name, arr.shape)
                host[...] = arr  # converts if the engine wants another input type
                cuda.memcpy_htod_async(dev, host, self.stream)
                self.context.set_tensor_address(name, int(dev))
            outs = {}
            for name in self._outputs:
                host, dev = self._buffer(name, tuple(self.context.get_tensor_shape(name)))
                self.context.set_tensor_address(name, int(dev))
                outs[name] = host
            if not self.context.execute_async_v3(self.stream.handle):
                raise EngineError("TensorRT execution failed")
            for name, host in outs.items():
                cuda.memcpy_dtoh_async(host, self._buffers[name][1], self.stream)
            self.stream.synchronize()
            return {k: v.copy() for k, v in outs.items()}
        finally:
            self._ctx.pop()

    def _release(self) -> None:
        """Free the engine's CUDA objects inside its context (not current), then the context
        (freed after it, the buffers and the engine outlived the context they belong to)."""
        ctx, self._ctx = getattr(self, "_ctx", None), None
        if ctx is None:
            return
        pushed = False
        try:
            ctx.push()
            pushed = True
            self._buffers, self.context, self.engine, self.stream = {}, None, None, None
        except Exception:
            pass
        finally:
            try:
                if pushed:
                    ctx.pop()
                ctx.detach()
            except Exception:
                pass

    def __del__(self):
        self._release()
