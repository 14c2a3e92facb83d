"""Every available engine pair agrees on the shipped models; TensorRT skips without a GPU."""
import numpy as np
import pytest

from engines import available_engines, load_engine
from engines.base import EngineError
from tracker.assets import ASSETS, AssetError, verified_asset

MODELS = {"densereg_realtime.onnx": {"image": (1, 3, 128, 128)}, "mdm_refiner.onnx": {"image": (1, 1, 128, 128), "init": (1, 68, 2)},
          "mdm_fine.onnx": {"image": (1, 1, 208, 208), "init": (1, 68, 2)}, "mdm_single.onnx": {"image": (1, 1, 208, 208), "init": (1, 68, 2)}}
# Agreement tolerance per model: the DenseReg maps are in [0,1]; the refiner outputs crop pixels
# (0-128) after 4 recurrent steps of bilinear patch sampling, where float32 rounding in the two
# runtimes drifts by a few thousandths of a pixel.
TOLERANCE = {"densereg_realtime.onnx": 1e-3, "mdm_refiner.onnx": 1e-2, "mdm_fine.onnx": 1e-2, "mdm_single.onnx": 1e-2}
# FP16 keeps ~3 significant digits: 2e-2 on the maps, half a pixel on the refined points.
FP16_TOLERANCE = {"densereg_realtime.onnx": 2e-2, "mdm_refiner.onnx": 0.5, "mdm_fine.onnx": 0.5, "mdm_single.onnx": 0.5}


def inputs_for(name):
    rng = np.random.default_rng(0)
    out = {k: rng.normal(size=s).astype(np.float32) for k, s in MODELS[name].items()}
    if "init" in out:
        side = MODELS[name]["image"][-1]  # points inside the crop, away from its border
        out["init"] = (rng.uniform(0.25 * side, 0.75 * side, size=(1, 68, 2))).astype(np.float32)
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnx_and_torch_engines_agree(name):
    if available_engines()["torch"]:
        pytest.skip("PyTorch not installed")
    path = verified_asset(name)
    x = inputs_for(name)
    a = load_engine(path, "onnx").infer(x)
    b = load_engine(path, "torch").infer(x)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].shape == b[k].shape
        # argmax ties can flip a UV bin at a handful of pixels; everything else is equal
        assert np.mean(np.abs(a[k] - b[k]) < TOLERANCE[name]) > 0.998, k


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(MODELS))
def test_tensorrt_fp16_matches_onnx(name, tmp_path):
    reason = available_engines()["tensorrt"]
    if reason:
        pytest.skip(f"TensorRT unavailable here: {reason}")
    from engines.tensorrt_engine import TensorRTEngine

    path = verified_asset(name)
    x = inputs_for(name)
    ref = load_engine(path, "onnx").infer(x)
    trt = TensorRTEngine(path, cache_dir=tmp_path)
    got = trt.infer(x)
    for k in ref:
        assert np.mean(np.abs(got[k] - ref[k]) < FP16_TOLERANCE[name]) > 0.99, k
    # A batch of 3 on an engine built for 2: the dynamic profile, then a chunk of 1.
    three = {k: np.concatenate([v, v[:, ::-1] if k == "image" else v + 1.0, v]) for k, v in x.items()}
    ref3, got3 = load_engine(path, "onnx").infer(three), TensorRTEngine(path, max_batch=2, cache_dir=tmp_path).infer(three)
    for k in ref3:
        assert got3[k].shape == ref3[k].shape and np.mean(np.abs(got3[k] - ref3[k]) < FP16_TOLERANCE[name]) > 0.99, k
    # The cache is reused, and rebuilt when corrupt.
    assert trt.cache_file.exists()
    trt.cache_file.write_bytes(b"garbage")
    again = TensorRTEngine(path, cache_dir=tmp_path).infer(x)
    assert np.allclose(again[list(ref)[0]], got[list(ref)[0]], atol=FP16_TOLERANCE[name])


def test_cache_key_changes_with_model_gpu_and_version():
    from engines.tensorrt_engine import cache_key

    k = cache_key(b"model", "NVIDIA H100", (9, 0), "10.3", 4)
    assert k != cache_key(b"model2", "NVIDIA H100", (9, 0), "10.3", 4)
    assert k != cache_key(b"model", "NVIDIA A100", (8, 0), "10.3", 4)
    assert k != cache_key(b"model", "NVIDIA H100", (9, 0), "10.4", 4)


def test_auto_falls_back_to_onnx_without_tensorrt():
    if available_engines()["tensorrt"] is None:
        pytest.skip("TensorRT is usable here")
    assert load_engine(verified_asset("mdm_refiner.onnx"), "auto").name == "onnx"


def _fake_tensorrt(monkeypatch, fp16: bool = True, builder_error: Exception | None = None) -> list[str]:
    """tensorrt and pycuda stand-ins (this machine has neither): what the engine asks of them
    up to its build; the returned list records the CUDA context's calls."""
    import sys
    import types

    calls: list[str] = []
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "11.4.0" if not fp16 else "10.16.1"
    trt.BuilderFlag = types.SimpleNamespace(**({"FP16": 1} if fp16 else {}))
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})

    def builder(logger):
        raise builder_error

    trt.Builder = builder
    context = types.SimpleNamespace(**{name: (lambda name=name: calls.append(name)) for name in ("push", "pop", "detach")})
    device = types.SimpleNamespace(make_context=lambda: calls.append("make") or context, name=lambda: "Fake GPU",
                                   compute_capability=lambda: (9, 0))
    driver = types.ModuleType("pycuda.driver")
    driver.init = lambda: None
    driver.Device = type("Device", (), {"count": staticmethod(lambda: 1), "__new__": lambda cls, i: device})
    pycuda = types.ModuleType("pycuda")
    pycuda.driver = driver
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    return calls


def test_tensorrt_11_is_not_taken_for_usable_and_auto_runs_onnx(monkeypatch):
    """TensorRT 11 dropped the FP16 builder flag the engine is built with: `auto` must not pick
    it (an AttributeError stopped every command, and the viewer aborted; review 27)."""
    _fake_tensorrt(monkeypatch, fp16=False)
    reason = available_engines()["tensorrt"]
    assert reason is not None and "TensorRT 11.4.0 has no FP16 builder flag" in reason and "<11" in reason
    assert load_engine(verified_asset("mdm_refiner.onnx"), "auto").name == "onnx"
    with pytest.raises(EngineError, match="no FP16 builder flag"):
        load_engine(verified_asset("mdm_refiner.onnx"), "tensorrt")


def test_a_tensorrt_failure_is_one_engine_error_and_frees_its_cuda_context(monkeypatch, tmp_path):
    from engines.tensorrt_engine import TensorRTEngine

    calls = _fake_tensorrt(monkeypatch, builder_error=RuntimeError("out of memory\nmore detail"))
    with pytest.raises(EngineError, match=r"^TensorRT 10.16.1 cannot load mdm_refiner.onnx \(RuntimeError: out of memory\); "
                                          r"--engine onnx runs on the CPU$"):
        TensorRTEngine(verified_asset("mdm_refiner.onnx"), cache_dir=tmp_path)
    assert calls == ["make", "pop", "push", "pop", "detach"]  # current after make; released inside it, then freed


def test_unknown_engine_and_missing_torch_checkpoint(tmp_path):
    with pytest.raises(EngineError, match="unknown engine"):
        load_engine(ASSETS / "mdm_refiner.onnx", "cuda-magic")
    (tmp_path / "m.onnx").write_bytes((ASSETS / "mdm_refiner.onnx").read_bytes())
    with pytest.raises(EngineError, match="no PyTorch checkpoint"):
        load_engine(tmp_path / "m.onnx", "torch")


def test_corrupt_onnx_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x01garbage")
    with pytest.raises(EngineError, match="cannot load"):
        load_engine(bad, "onnx")


def test_asset_checksums(tmp_path):
    import shutil

    for name in ("template.npz", "shape_pca.npz", "densereg_realtime.onnx", "mdm_refiner.onnx"):
        verified_asset(name)  # every shipped asset matches the manifest
    shutil.copy(ASSETS / "MANIFEST.json", tmp_path / "MANIFEST.json")
    data = bytearray((ASSETS / "template.npz").read_bytes())
    data[100] ^= 0xFF
    (tmp_path / "template.npz").write_bytes(bytes(data))
    with pytest.raises(AssetError, match="SHA-256 mismatch"):
        verified_asset("template.npz", tmp_path)
    with pytest.raises(AssetError, match="missing"):
        verified_asset("shape_pca.npz", tmp_path)
    (tmp_path / "extra.onnx").write_bytes(b"x")
    with pytest.raises(AssetError, match="not listed"):
        verified_asset("extra.onnx", tmp_path)


@pytest.mark.parametrize("user_value", [None, "ACTIVE"])
def test_torch_engine_asks_openmp_to_sleep_unless_the_user_chose(user_value):
    """OpenMP reads OMP_WAIT_POLICY when torch is imported; spinning threads made 2 threads ~10x
    slower on a busy machine (benchmarks/bench_torch.py).  A fresh process, so that the engine
    is what imports torch, as in the CLI."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    if available_engines()["torch"]:
        pytest.skip("PyTorch not installed")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if user_value:
        env["OMP_WAIT_POLICY"] = user_value
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    code = ("import os, sys\n"
            "from engines import load_engine\nfrom tracker.assets import verified_asset\n"
            "assert 'torch' not in sys.modules\n"
            "load_engine(verified_asset('densereg_realtime.onnx'), 'torch', 1)\n"
            "print(os.environ['OMP_WAIT_POLICY'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == (user_value or "PASSIVE")


@pytest.mark.parametrize("calls", [1, 2])
def test_a_dynamically_quantized_graph_answers_each_sample_as_alone(calls):
    """The int8 refiner scales a call's activations by the whole call's range, so in one call a
    sample's answer depends on its batch-mates; ``one_sample_per_call`` runs each alone."""
    path = verified_asset("mdm_refiner_int8.onnx")
    rng = np.random.default_rng(0)
    batch = {"image": rng.normal(size=(3, 1, 128, 128)).astype(np.float32) * [[[[1.0]]], [[[4.0]]], [[[0.3]]]],
             "init": rng.uniform(32, 96, size=(3, 68, 2)).astype(np.float32)}
    alone = [load_engine(path, "onnx", threads=1).infer({k: v[i:i + 1] for k, v in batch.items()}) for i in range(3)]
    each = load_engine(path, "onnx", threads=1, calls=calls, one_sample_per_call=True).infer(batch)
    together = load_engine(path, "onnx", threads=1).infer(batch)
    for name in each:
        np.testing.assert_array_equal(each[name], np.concatenate([a[name] for a in alone]))
    assert any(not np.array_equal(together[k], each[k]) for k in each)  # what the option is for


def test_a_tensorrt_engine_built_but_not_cached_is_still_used(tmp_path, caplog):
    """A cache folder that cannot be written (a read-only home, a full disk) threw the engine just
    built away: `auto` fell back to the CPU, `--engine tensorrt` stopped (review 36)."""
    import types

    from engines.tensorrt_engine import TensorRTEngine

    class Anything:  # each builder object: any call answers another, the network has no inputs
        num_inputs = 0

        def __getattr__(self, name):
            return lambda *a, **k: Anything()

    trt = types.SimpleNamespace(
        Builder=lambda logger: types.SimpleNamespace(create_network=lambda flags: Anything(), create_builder_config=Anything,
                                                     create_optimization_profile=Anything,
                                                     build_serialized_network=lambda network, config: b"serialized"),
        OnnxParser=lambda network, logger: types.SimpleNamespace(parse=lambda data: True),
        MemoryPoolType=types.SimpleNamespace(WORKSPACE=0), BuilderFlag=types.SimpleNamespace(FP16=1),
        Runtime=lambda logger: types.SimpleNamespace(deserialize_cuda_engine=lambda data: ("engine", data)))
    engine = object.__new__(TensorRTEngine)
    engine._trt, engine._logger = trt, None
    (tmp_path / "file").write_text("not a folder")
    engine.cache_file = tmp_path / "file" / "model.engine"  # its folder cannot be made
    assert engine._build(b"onnx", 4) == ("engine", b"serialized")
    assert "TensorRT engine not cached" in caplog.text
