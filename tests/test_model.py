"""DenseReg codec, network, losses, export parity and safe checkpoint loading."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install -e '.[train]')")

from tracker.uvcodec import decode, encode  # noqa: E402
from training.losses import densereg_loss  # noqa: E402
from training.model import CONFIGS, DenseReg, NetConfig, RawOutput, decode_torch  # noqa: E402


def smooth_uv(size=32):
    ys, xs = np.mgrid[0:size, 0:size] / (size - 1)
    uv = np.stack([xs * 0.9 + 0.05, 1 - ys * 0.9 - 0.05]).astype(np.float32)
    face = (xs - 0.5) ** 2 + (ys - 0.5) ** 2 < 0.16
    uv[:, ~face] = np.nan
    return uv, face


def test_encode_decode_round_trip():
    uv, face = smooth_uv()
    classes, residual = encode(uv, 10)
    assert (classes[:, ~face] == 0).all() and (classes[:, face] >= 1).all() and (classes <= 10).all()
    assert residual[:, face].min() >= 0 and residual[:, face].max() < 0.1 + 1e-6
    # Perfect logits/residuals decode back to the input.
    logits = np.full((2, 11) + uv.shape[1:], -10.0)
    np.put_along_axis(logits, classes[:, None], 10.0, axis=1)
    res = np.zeros((2, 10) + uv.shape[1:], np.float32)
    np.put_along_axis(res, np.maximum(classes - 1, 0)[:, None], residual[:, None], axis=1)
    dec, fg = decode(logits, res)
    np.testing.assert_allclose(dec[:, face], uv[:, face], atol=1e-6)
    assert (fg[face] > 0.99).all() and (fg[~face] < 0.01).all()


def test_torch_decoding_matches_numpy_codec():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1, 2, 11, 8, 8)).astype(np.float32)
    residual = rng.uniform(0, 0.1, size=(1, 2, 10, 8, 8)).astype(np.float32)
    raw = RawOutput(depth=torch.zeros(1, 1, 8, 8), logits=torch.from_numpy(logits), residual=torch.from_numpy(residual))
    uv_t, fg_t, _ = decode_torch(raw, 10)
    uv_n, fg_n = decode(logits[0], residual[0])
    np.testing.assert_allclose(uv_t[0].numpy(), uv_n, atol=1e-6)
    np.testing.assert_allclose(fg_t[0, 0].numpy(), fg_n, atol=1e-6)


def test_flip_equivariance_of_codec():
    uv, face = smooth_uv()
    flipped = uv[:, :, ::-1].copy()
    flipped[0] = 1 - flipped[0]
    c1, r1 = encode(uv)
    c2, r2 = encode(flipped)
    # Decoded values of the flipped map are the mirrored decoded values of the original.
    def perfect(c, r):
        logits = np.full((2, 11) + c.shape[1:], -10.0)
        np.put_along_axis(logits, c[:, None], 10.0, axis=1)
        res = np.zeros((2, 10) + c.shape[1:], np.float32)
        np.put_along_axis(res, np.maximum(c - 1, 0)[:, None], r[:, None], axis=1)
        return decode(logits, res)[0]

    a, b = perfect(c1, r1), perfect(c2, r2)
    np.testing.assert_allclose(b[0][:, ::-1][face], 1 - a[0][face], atol=1e-5)
    np.testing.assert_allclose(b[1][:, ::-1][face], a[1][face], atol=1e-6)


def test_loss_values_on_hand_made_tensors():
    k = 10
    # A 1x2x2 image: pixel (0,0) background, the others face with known uv.
    uv = torch.tensor([[[[0.0, 0.25], [0.55, 0.95]], [[0.0, 0.5], [0.05, 0.75]]]])
    classes = torch.tensor([[[[0, 3], [6, 10]], [[0, 6], [1, 8]]]])
    valid = torch.ones(1, 2, 2, dtype=torch.bool)
    logits = torch.zeros(1, 2, k + 1, 2, 2)  # uniform: CE = log(11)
    residual = torch.zeros(1, 2, k, 2, 2)
    raw = RawOutput(depth=torch.zeros(1, 1, 2, 2), logits=logits, residual=residual)
    terms = densereg_loss(raw, classes, uv, torch.zeros(1, 2, 2), valid)
    assert abs(terms["ce"].item() - np.log(11)) < 1e-5
    # residual targets: 0.05, 0.05, 0.05 (u_h) and 0.0, 0.05, 0.05 (u_v); smooth-L1 beta 0.01
    r = np.array([0.05, 0.05, 0.05, 0.0, 0.05, 0.05])
    sl1 = np.where(r < 0.01, 0.5 * r**2 / 0.01, r - 0.005)
    assert abs(terms["residual"].item() - 40 * sl1.sum() / 6) < 1e-5  # 3 face pixels x 2 coordinates
    # Ignored pixels do not count.
    valid[0, 1, 1] = False
    assert densereg_loss(raw, classes, uv, torch.zeros(1, 2, 2), valid)["residual"].item() < terms["residual"].item()


def test_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    net = DenseReg(NetConfig("realtime", 64))
    uv, face = smooth_uv(64)
    classes, _ = encode(uv)
    x = torch.randn(2, 3, 64, 64)
    c = torch.from_numpy(np.stack([classes] * 2))
    u = torch.from_numpy(np.nan_to_num(np.stack([uv] * 2)))
    d = torch.from_numpy(np.stack([face.astype(np.float32)] * 2))
    valid = torch.ones(2, 64, 64, dtype=torch.bool)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    losses = []
    for _ in range(15):
        loss = densereg_loss(net(x), c, u, d, valid)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_paper_config_shapes_and_one_step():
    cfg = NetConfig("paper", 65)
    net = DenseReg(cfg)
    raw = net(torch.randn(1, 3, 65, 65))
    assert raw.logits.shape == (1, 2, 11, 65, 65) and raw.residual.shape == (1, 2, 10, 65, 65) and raw.depth.shape == (1, 1, 65, 65)
    assert net.backbone.body(net.backbone.stem(torch.randn(1, 3, 64, 64))).shape[-1] == 8  # output stride 8
    loss = densereg_loss(raw, torch.zeros(1, 2, 65, 65, dtype=torch.long), torch.zeros(1, 2, 65, 65), torch.zeros(1, 65, 65), torch.ones(1, 65, 65, dtype=torch.bool))
    loss["total"].backward()
    assert CONFIGS["paper"].input_size == 321


def test_onnx_export_parity(tmp_path):
    pytest.importorskip("onnx", reason="onnx not installed")
    from engines.onnx_engine import OnnxEngine
    from training.deploy import build_deployable, export

    module, _, _ = build_deployable("densereg", {"config": "realtime", "variant": "quantized"})
    state = module.net.state_dict()
    export("densereg", {"config": "realtime", "variant": "quantized"}, state, tmp_path / "m.onnx")
    x = np.random.default_rng(0).normal(size=(2, 3, 128, 128)).astype(np.float32)
    got = OnnxEngine(tmp_path / "m.onnx").infer({"image": x})
    module.load_state_dict(state)
    module.eval()
    with torch.no_grad():
        ref = module(torch.from_numpy(x))
    for name, r in zip(("uv", "fg", "depth"), ref):
        assert got[name].shape == tuple(r.shape)
        # argmax ties can flip a bin for a random net: compare where the decision is the same
        assert np.mean(np.abs(got[name] - r.numpy()) < 1e-4) > 0.999


def test_checkpoints_load_without_code_execution(tmp_path):
    from engines.base import EngineError
    from engines.torch_engine import TorchEngine

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"arch": "densereg", "state_dict": {}, "payload": Evil()}, str(path))
    with pytest.raises(EngineError, match="not a safe PyTorch checkpoint"):
        TorchEngine(path)
