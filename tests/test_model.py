"""DenseReg codec, network, losses, export parity and safe checkpoint loading."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install -e '.[train]')")

from tracker.uvcodec import decode, encode  # noqa: E402
from training.losses import densereg_loss  # noqa: E402
from training.model import CONFIGS, DenseReg, NetConfig, RawOutput, decode_torch  # noqa: E402


@pytest.fixture(autouse=True)
def one_torch_thread():
    """On a 2-core machine already busy (a training run), two OpenMP threads spin against each
    other: 15 small training steps took 84 s instead of 0.8 s.  One thread is fast everywhere."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


def test_hole_weights_mark_an_enclosed_mouth_not_a_notch_open_to_the_border():
    from tracker.templatemaps import face_holes
    from training.losses import hole_weights

    face = np.zeros((12, 12), bool)
    face[2:10, 2:10] = True
    face[5:7, 4:7] = False  # an open mouth: background the face encloses
    face[0:4, 8] = False  # a notch reaching the crop's border: not a hole
    face[2:4, 8] = False
    holes = face_holes(face)
    assert holes.sum() == 6 and holes[5:7, 4:7].all()
    w = hole_weights(face[None], 5.0)[0]
    assert w.dtype == np.float32 and w[5, 5] == 5.0 and w[4, 3] == 5.0  # the hole and its edge (8-neighbours)
    assert w[2, 8] == 1.0 and w[9, 9] == 1.0 and (w == 5.0).sum() == 5 * 4
    assert (hole_weights(np.ones((1, 8, 8), bool), 5.0) == 1.0).all()


def test_part_weights_mark_brows_eyes_and_lips_and_combine_with_hole_weights():
    from tracker.parts import BACKGROUND, LEFT_EYEBROW, LOWER_LIP, NOSE, OTHER, RIGHT_EYE
    from training.losses import ce_weights, part_weights

    parts = np.array([[[BACKGROUND, LEFT_EYEBROW, RIGHT_EYE, LOWER_LIP, NOSE, OTHER]]], np.uint8)
    np.testing.assert_array_equal(part_weights(parts, 3.0), [[[1, 3, 3, 3, 1, 1]]])
    assert part_weights(parts, 3.0).dtype == np.float32
    face = np.zeros((1, 12, 12), bool)
    face[0, 2:10, 2:10] = True
    face[0, 5:7, 4:7] = False  # an open mouth
    lips = np.where(face, OTHER, BACKGROUND).astype(np.uint8)
    lips[0, 4, 2:9] = LOWER_LIP  # a lip row along the mouth's top edge and beyond it
    assert ce_weights(face, lips, 0.0, 0.0) is None  # the paper's loss
    w = ce_weights(face, lips, 5.0, 2.0)[0]
    assert w[5, 5] == 5.0 and w[4, 4] == 5.0  # the hole and its edge: the larger weight
    assert w[4, 8] == 2.0 and w[8, 8] == 1.0  # lip away from the hole; the rest of the face
    np.testing.assert_array_equal(ce_weights(face, lips, 0.0, 2.0), part_weights(lips, 2.0))


def test_weighted_classification_loss():
    """Weights of 1 give the paper's loss; weight 3 on one of 4 pixels adds that pixel's CE twice
    more (the term stays divided by the pixel count)."""
    k = 10
    classes = torch.tensor([[[[0, 3], [6, 10]], [[0, 6], [1, 8]]]])
    uv = torch.zeros(1, 2, 2, 2)
    valid = torch.ones(1, 2, 2, dtype=torch.bool)
    logits = torch.randn(1, 2, k + 1, 2, 2, generator=torch.Generator().manual_seed(0))
    raw = RawOutput(depth=torch.zeros(1, 1, 2, 2), logits=logits, residual=torch.zeros(1, 2, k, 2, 2))
    plain = densereg_loss(raw, classes, uv, torch.zeros(1, 2, 2), valid)["ce"].item()
    assert densereg_loss(raw, classes, uv, torch.zeros(1, 2, 2), valid, torch.ones(1, 2, 2))["ce"].item() == pytest.approx(plain, rel=1e-6)
    w = torch.ones(1, 2, 2)
    w[0, 0, 0] = 3.0
    per_pixel = torch.nn.functional.cross_entropy(logits[0].permute(0, 2, 3, 1).reshape(-1, k + 1), classes[0].reshape(-1), reduction="none")
    extra = 2 * (per_pixel[0] + per_pixel[4]).item() / 8  # pixel (0,0) in both coordinates' maps
    assert densereg_loss(raw, classes, uv, torch.zeros(1, 2, 2), valid, w)["ce"].item() == pytest.approx(plain + extra, rel=1e-5)


def test_foreground_loss_is_the_cross_entropy_of_the_foreground_the_tracker_reads():
    """``--fg-loss W``: W x the binary cross-entropy of ``bins_fg`` against the true mask, over
    valid pixels (weighted like the classification loss); absent at W = 0 (the paper's losses)."""
    from training.model import bins_fg

    k = 10
    classes = torch.tensor([[[[0, 3], [6, 10]], [[0, 6], [1, 8]]]])  # pixel (0,0) background
    uv = torch.zeros(1, 2, 2, 2)
    valid = torch.ones(1, 2, 2, dtype=torch.bool)
    logits = torch.randn(1, 2, k + 1, 2, 2, generator=torch.Generator().manual_seed(0), requires_grad=True)
    raw = RawOutput(depth=torch.zeros(1, 1, 2, 2), logits=logits, residual=torch.zeros(1, 2, k, 2, 2))
    assert "fg_bins" not in densereg_loss(raw, classes, uv, torch.zeros(1, 2, 2), valid)
    fg = bins_fg(logits.detach())[0, 0].numpy()
    truth = np.array([[0.0, 1.0], [1.0, 1.0]])
    bce = -(truth * np.log(fg) + (1 - truth) * np.log(1 - fg))
    terms = densereg_loss(raw, classes, uv, torch.zeros(1, 2, 2), valid, fg_loss=2.0)
    assert terms["fg_bins"].item() == pytest.approx(2.0 * bce.mean(), rel=1e-5)
    plain = densereg_loss(raw, classes, uv, torch.zeros(1, 2, 2), valid)["total"].item()
    assert terms["total"].item() == pytest.approx(plain + terms["fg_bins"].item(), rel=1e-5)
    w = torch.ones(1, 2, 2)
    w[0, 0, 0] = 3.0  # the background pixel counts three times, still divided by 4 pixels
    weighted = densereg_loss(raw, classes, uv, torch.zeros(1, 2, 2), valid, w, fg_loss=2.0)["fg_bins"].item()
    assert weighted == pytest.approx(2.0 * (bce.sum() + 2 * bce[0, 0]) / 4, rel=1e-5)
    terms["fg_bins"].backward()  # it trains the class logits (their background class)
    assert logits.grad[:, :, 0].abs().sum() > 0


def test_depth_weight_scales_the_depth_term_only():
    k = 10
    classes = torch.tensor([[[[0, 3], [6, 10]], [[0, 6], [1, 8]]]])
    raw = RawOutput(depth=torch.zeros(1, 1, 2, 2), logits=torch.zeros(1, 2, k + 1, 2, 2), residual=torch.zeros(1, 2, k, 2, 2))
    args = (raw, classes, torch.zeros(1, 2, 2, 2), torch.full((1, 2, 2), 0.5), torch.ones(1, 2, 2, dtype=torch.bool))
    paper, light = densereg_loss(*args), densereg_loss(*args, depth_weight=2.0)
    assert paper["depth"].item() > 0 and light["depth"].item() == pytest.approx(paper["depth"].item() / 5, rel=1e-6)
    assert light["ce"].item() == paper["ce"].item() and light["residual"].item() == paper["residual"].item()


def test_dense_options_parse_once_and_record_what_differs_from_the_paper():
    """``training.train`` and ``training.gpukit train`` share the options; a checkpoint keeps
    the ones set (``decoder_blocks`` 0, the fast network, included) and the runs made for the
    part transfer keep their best checkpoint by it."""
    import argparse

    from training.densereg_task import PAPER, DenseOptions

    ap = argparse.ArgumentParser()
    DenseOptions.add_arguments(ap)
    assert DenseOptions.from_args(ap.parse_args([])) == PAPER and PAPER.recorded() == {} and not PAPER.for_parts
    o = DenseOptions.from_args(ap.parse_args(["--decoder-blocks", "0", "--fg-loss", "1.5", "--hole-weight", "3"]))
    assert o.recorded() == {"decoder_blocks": 0, "hole_weight": 3.0, "fg_loss": 1.5} and o.for_parts
    assert DenseOptions(decoder_blocks=4).for_parts is False and DenseOptions(fg_stride=2).for_parts is True
    assert DenseOptions.from_args(ap.parse_args(["--best-by-parts"])).for_parts
    assert DenseOptions.from_args(ap.parse_args(["--depth-weight", "2"])).recorded() == {"depth_weight": 2.0}
    aux = DenseOptions.from_args(ap.parse_args(["--aux-parts", "0.5"]))
    assert aux.recorded() == {"aux_parts": 0.5} and aux.for_parts
    more_bins = DenseOptions.from_args(ap.parse_args(["--bins", "20"]))
    assert more_bins.recorded() == {"bins": 20} and more_bins.for_parts and not DenseOptions(bins=10).for_parts


def test_part_transfer_loss_is_low_inside_the_true_part_and_pulls_back_across_a_boundary():
    """Template parts: the left half of the UV square is part 1, the right half part 2.  A pixel
    of part 1 regressed to u_h 0.25 costs ~nothing; regressed to 0.75 (across the boundary) it
    costs a lot, and the gradient moves its residual back towards part 1."""
    from training.losses import part_transfer_loss, soft_part_map

    k = 10
    part_map = np.ones((64, 64), np.uint8)
    part_map[:, 32:] = 2
    soft = soft_part_map(part_map)
    assert soft.shape == (1, 9, 64, 64) and torch.allclose(soft.sum(1), torch.ones(1, 64, 64))

    def loss_at(u_h: float):
        b = int(u_h * k)  # the true bin, as the residual loss reads it: class b + 1
        classes = torch.tensor([[[[b + 1]], [[6]]]])
        residual = torch.zeros(1, 2, k, 1, 1)
        residual[0, 0, b, 0, 0] = u_h - b / k
        residual[0, 1, 5, 0, 0] = 0.05  # u_v 0.55
        residual.requires_grad_(True)
        raw = RawOutput(depth=torch.zeros(1, 1, 1, 1), logits=torch.zeros(1, 2, k + 1, 1, 1), residual=residual)
        loss = part_transfer_loss(raw, classes, torch.zeros(1, 2, 1, 1), torch.tensor([[[1]]]), torch.ones(1, 1, 1, dtype=torch.bool), soft)
        loss.backward()
        return loss.item(), residual.grad[0, 0, b, 0, 0].item()

    inside, grad_inside = loss_at(0.25)
    across, grad_across = loss_at(0.51)  # just across the boundary, within the blur
    assert inside < 1e-3 and abs(grad_inside) < 1e-6
    assert across > 0.5 and grad_across > 0  # descent lowers u_h, back into part 1


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
    loss = densereg_loss(raw, torch.zeros(1, 2, 65, 65, dtype=torch.long), torch.zeros(1, 2, 65, 65), torch.zeros(1, 65, 65),
                         torch.ones(1, 65, 65, dtype=torch.bool))
    loss["total"].backward()
    assert CONFIGS["paper"].input_size == 321


@pytest.mark.parametrize("extra", [{}, {"fg_stride": 2}])
def test_onnx_export_parity(tmp_path, extra):
    pytest.importorskip("onnx", reason="onnx not installed")
    from engines.onnx_engine import OnnxEngine
    from training.deploy import build_deployable, export

    options = {"config": "realtime", "variant": "quantized", **extra}
    module, _, _ = build_deployable("densereg", options)
    state = module.net.state_dict()
    if extra:  # the branch starts at zero: give it weights so that its path is compared too
        state = {k: torch.randn_like(v) * 0.1 if k.startswith("backbone.fg2.out") else v for k, v in state.items()}
    export("densereg", options, state, tmp_path / "m.onnx")
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


# --- training data and the training loop, on a synthetic "face" (an ellipse with a linear uv field)


def synthetic_cache(n: int = 2):
    """A FaceCache whose image colour encodes the uv label (R = 255 u_h, G = 255 u_v), so any
    misalignment between the warped image and the warped labels shows up as a colour error."""
    from training.dataset import CACHE_FACTOR, CACHE_SIZE, FaceCache

    c = (CACHE_SIZE - 1) / 2
    r = CACHE_SIZE / CACHE_FACTOR / 2  # the face fills the landmark ROI, as in the real cache
    ys, xs = np.mgrid[0:CACHE_SIZE, 0:CACHE_SIZE].astype(np.float32)
    face = ((xs - c) / (0.8 * r)) ** 2 + ((ys - c) / r) ** 2 < 1
    uv = np.stack([(xs - c) / (1.6 * r) + 0.5, (ys - c) / (2 * r) + 0.5])
    uv[:, ~face] = np.nan
    image = np.zeros((CACHE_SIZE, CACHE_SIZE, 3), np.uint8)
    image[face, 2] = np.round(255 * uv[0, face])  # BGR: red = u_h
    image[face, 1] = np.round(255 * uv[1, face])
    flags = face.astype(np.uint8)
    flags[: int(c) - int(r) + 10, :] |= 2  # an "unannotated face" strip at the top: ignore
    depth = np.where(face, 1 - ((xs - c) ** 2 + (ys - c) ** 2) / (2 * r * r), np.nan)
    return FaceCache(np.stack([image] * n), np.stack([uv] * n).astype(np.float16), np.stack([depth] * n).astype(np.float16),
                     np.stack([flags] * n), tuple(f"face{i}" for i in range(n)))


def test_crops_keep_exact_labels_and_align_with_the_image():
    from training.dataset import NO_AUGMENT, Augment, sample_crop

    cache = synthetic_cache()
    rng = np.random.default_rng(0)
    known = set(map(tuple, cache.uv[0].reshape(2, -1).T[np.isfinite(cache.uv[0, 0].ravel())].tolist()))
    geometric = Augment(flip=False, photometric=False, occluders=0.0, rotation_sigma_deg=20.0)
    for aug in (NO_AUGMENT, geometric, geometric):
        s = sample_crop(cache, 1, 64, aug, rng)
        face = np.isfinite(s.uv).all(axis=0)
        assert 0.2 < face.mean() < 0.8 and not s.valid.all() and s.valid.any()
        # nearest-neighbour resampling: every label is one of the cache's, never a blend
        assert set(map(tuple, s.uv[:, face].astype(np.float16).T.tolist())) <= known
        inner = cv2_erode(face)
        err = np.abs(s.image[inner][:, [2, 1]] / 255.0 - s.uv[:, inner].T)
        assert np.median(err) < 0.01


def cv2_erode(mask: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)


def test_hflip_mirrors_u_h_and_is_an_involution():
    from training.dataset import NO_AUGMENT, hflip_maps, sample_crop

    s = sample_crop(synthetic_cache(), 0, 48, NO_AUGMENT, np.random.default_rng(0))
    image, uv, depth, valid = hflip_maps(s.image, s.uv, s.depth, s.valid)
    np.testing.assert_array_equal(uv[0], 1 - s.uv[0][:, ::-1])
    np.testing.assert_array_equal(uv[1], s.uv[1][:, ::-1])
    again = hflip_maps(image, uv, depth, valid)
    for a, b in zip(again, (s.image, s.uv, s.depth, s.valid)):
        np.testing.assert_allclose(a, b, atol=1e-6)


class SyntheticTask:
    """The Task protocol of training.train on two synthetic crops; can stop itself with SIGTERM."""

    val_key = "loss"

    def __init__(self, sigterm_at: int = -1):
        from training.dataset import NO_AUGMENT, sample_crop
        from training.densereg_task import dense_batch

        torch.manual_seed(0)
        self.net = DenseReg(NetConfig("realtime", 32))
        cache = synthetic_cache()
        self.data = dense_batch([sample_crop(cache, i, 32, NO_AUGMENT, np.random.default_rng(i)) for i in range(2)], 10)
        self.calls, self.sigterm_at = 0, sigterm_at

    def batch(self, rng):
        import os
        import signal

        self.calls += 1
        if self.calls == self.sigterm_at:
            os.kill(os.getpid(), signal.SIGTERM)
        noise = torch.from_numpy(rng.normal(size=self.data.image.shape).astype(np.float32)) * 0.1
        return dataclasses.replace(self.data, image=self.data.image + noise)

    def loss(self, batch):
        return densereg_loss(self.net(batch.image), batch.classes, batch.uv, batch.depth, batch.valid)

    def evaluate(self):
        self.net.eval()
        with torch.no_grad():
            loss = self.loss(self.data)["total"].item()
        self.net.train()
        return {"loss": loss}


def test_training_stops_on_sigterm_and_resumes_exactly(tmp_path):
    from training.train import Schedule, load_checkpoint, run

    sched = Schedule(steps=6, batch=2, lr=1e-3, warmup=2, checkpoint_minutes=100)
    straight = SyntheticTask()
    run(straight, sched, tmp_path / "a", max_minutes=5, resume=False)

    run(SyntheticTask(sigterm_at=3), sched, tmp_path / "b", max_minutes=5, resume=False)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 3
    resumed = SyntheticTask()
    run(resumed, sched, tmp_path / "b", max_minutes=5, resume=True)
    for name, p in straight.net.state_dict().items():
        torch.testing.assert_close(resumed.net.state_dict()[name], p, msg=name)
    assert len((tmp_path / "b" / "val.jsonl").read_text().splitlines()) == 2
    best = load_checkpoint(tmp_path / "b" / "best.pt")
    assert set(best["model"]) == set(straight.net.state_dict())


def test_the_weights_moving_average_is_what_is_validated_kept_and_resumed(tmp_path):
    """``--ema``: the averaged weights are validated and kept in best.pt (the raw ones stay in
    last.pt to continue training), and a run stopped and resumed averages as one that was not."""
    import json

    from training.train import Schedule, WeightAverage, load_checkpoint, run

    sched = Schedule(steps=6, batch=2, lr=1e-3, warmup=2, checkpoint_minutes=100)
    straight = SyntheticTask()
    run(straight, sched, tmp_path / "a", max_minutes=5, resume=False, ema=0.9)
    run(SyntheticTask(sigterm_at=3), sched, tmp_path / "b", max_minutes=5, resume=False, ema=0.9)
    run(SyntheticTask(), sched, tmp_path / "b", max_minutes=5, resume=True, ema=0.9)
    a, b = (load_checkpoint(tmp_path / r / "last.pt") for r in "ab")
    assert a["ema_updates"] == b["ema_updates"] == 6
    for name, p in a["ema"].items():
        torch.testing.assert_close(b["ema"][name], p, msg=name)
    best_ckpt = load_checkpoint(tmp_path / "a" / "best.pt")
    best = best_ckpt["model"]
    assert best_ckpt["options"] == {"ema": 0.9}  # the export's card says how the weights were chosen
    assert all(torch.equal(best[k], v) for k, v in a["ema"].items())
    assert not torch.equal(best["backbone.head.weight"], a["model"]["backbone.head.weight"])
    check = SyntheticTask()
    check.net.load_state_dict(best)
    logged = json.loads((tmp_path / "a" / "val.jsonl").read_text().splitlines()[-1])
    assert logged["loss"] == pytest.approx(check.evaluate()["loss"], rel=1e-5)

    net = torch.nn.Linear(2, 2)
    average = WeightAverage(net, 0.9)
    w0 = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    average.update(net)
    d = 2 / 11  # the decay's ramp at the first update
    torch.testing.assert_close(average.state["weight"], d * w0 + (1 - d) * (w0 + 1))
    with average.swapped_into(net):
        torch.testing.assert_close(net.weight.detach(), average.state["weight"])
    torch.testing.assert_close(net.weight.detach(), w0 + 1)


def test_training_checkpoint_loader_refuses_pickled_code(tmp_path):
    from tracker.errors import InputError
    from training.train import load_checkpoint, save_checkpoint

    marker = tmp_path / "executed"

    class Bomb:
        def __reduce__(self):
            return (marker.touch, ())

    save_checkpoint(tmp_path / "ok.pt", {"model": {"w": torch.ones(2)}, "step": 1})
    assert load_checkpoint(tmp_path / "ok.pt")["step"] == 1
    torch.save({"model": {}, "payload": Bomb()}, str(tmp_path / "bomb.pt"))
    with pytest.raises(InputError, match="bomb.pt: not a readable checkpoint.*Weights only load failed"):
        load_checkpoint(tmp_path / "bomb.pt")
    assert not marker.exists()
    (tmp_path / "empty.pt").write_bytes(b"")  # a kill before the first byte: an IndexError traceback (user test 23)
    with pytest.raises(InputError, match="empty.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "empty.pt")


def test_result_tables_record_a_pasteable_command():
    """The command printed above a results table must reproduce it verbatim, names with spaces included."""
    import shlex
    from types import SimpleNamespace

    from training.evaluate import _command, _models

    argv = ["parts", "--model", "shipped, 5664 steps=a b/model.onnx", "--split", "val"]
    cmd = _command(SimpleNamespace(argv=argv))
    assert shlex.split(cmd) == ["python", "-m", "training.evaluate", *argv]
    assert _models(SimpleNamespace(model=[argv[2]])) == {"shipped, 5664 steps": "a b/model.onnx"}


def test_validation_curve_shows_each_metric_once():
    """A val key of the form "1-x" (x as a loss, for choosing best.pt) is x again: not a column."""
    from training.export import curve_table

    rows = [{"step": s, "time": 0.0, "uv_mae": 0.02 - 0.001 * i, "miou": 0.6 + 0.01 * i, "1-miou": 0.4 - 0.01 * i}
            for i, s in enumerate((100, 200))]
    table = curve_table(rows)
    assert table.splitlines()[0] == "| step | uv_mae | miou |" and "| 200 | 0.0190 | 0.6100 |" in table


def exported_card(tmp_path: Path, state: dict, **options) -> str:
    """Export a one-checkpoint DenseReg run of these weights and options into tmp_path/assets;
    its card's text."""
    import json

    from training.export import main as export_main
    from training.train import save_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(run / "best.pt", {"model": state, "step": 1, "metrics": {"miou": 0.5},
                                      "options": {"config": "realtime", "variant": "quantized", **options}})
    (run / "val.jsonl").write_text(json.dumps({"step": 1, "time": 0.0, "miou": 0.5}) + "\n")
    assert export_main(["densereg", "--run", str(run), "--out-dir", str(tmp_path / "assets")]) == 0
    return (tmp_path / "assets" / "DENSEREG_REALTIME_CARD.md").read_text()


def test_export_card_names_the_training_only_options(tmp_path):
    """Options that change the loss, not the network, must not reach the network's builder;
    the card says how the weights were trained."""
    card = exported_card(tmp_path, DenseReg(CONFIGS["realtime"]).state_dict(), part_loss=0.5, hole_weight=3.0, part_weight=2.0,
                         fg_loss=1.5, depth_weight=2.0, best_by_parts=True, ema=0.998)
    assert "0.5 x the part-transfer loss" in card and "weighted 3x on the face mask's holes" in card
    assert "weighted 2x on the brows, eyes and lips" in card and "1.5 x a cross-entropy on the foreground" in card
    assert "depth loss weighted 2 instead of 10" in card and "kept by the part transfer's validation mIoU" in card
    assert "moving average (decay 0.998)" in card


def test_the_card_quotes_measured_training_time_only_when_every_session_measured_it(tmp_path):
    """A run begun before training.train measured its time has sessions without it: only the
    rows after a resume say it, and the card quoted seconds for hours (review 30b)."""
    import json

    from training.export import run_summary

    rows = [{"step": 100, "time": 0.0, "miou": 0.5}, {"step": 200, "time": 240.0, "miou": 0.6},
            {"step": 300, "time": 100000.0, "trained_s": 3.0, "miou": 0.7}]
    (tmp_path / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run_summary(tmp_path)["logged_hours"] == pytest.approx((240 + 2 * 300) / 3600)  # the older estimate
    rows[0]["trained_s"], rows[1]["trained_s"], rows[2]["trained_s"] = 100.0, 340.0, 500.0
    (tmp_path / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run_summary(tmp_path)["logged_hours"] == pytest.approx(500 / 3600)
    assert "trained_s" not in run_summary(tmp_path)["curve"]


def test_an_export_that_fails_replaces_nothing(tmp_path, monkeypatch, capsys):
    """The graph, the deployable, the manifest and the card are installed together, once ONNX
    Runtime agrees with PyTorch: a run without its validation log, or a parity failure, left a
    card describing the network the new graph replaced (review 30)."""
    import json

    import training.export as export
    from training.train import save_checkpoint

    state = DenseReg(CONFIGS["realtime"]).state_dict()
    exported_card(tmp_path, state)
    assets = tmp_path / "assets"
    before = {p.name: p.read_bytes() for p in assets.iterdir()}
    run = tmp_path / "run2"
    run.mkdir()
    from training.model import configured

    save_checkpoint(run / "best.pt", {"model": DenseReg(configured("realtime", "plain")).state_dict(), "step": 1, "metrics": {},
                                      "options": {"config": "realtime", "variant": "plain"}})
    capsys.readouterr()
    assert export.main(["densereg", "--run", str(run), "--out-dir", str(assets)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: --run {run}: no val.jsonl (its validation log, which the card quotes) there; "
                                               "give a training run folder (python -m training.train writes best.pt and val.jsonl "
                                               "at its first checkpoint)")
    (run / "val.jsonl").write_text(json.dumps({"step": 1, "time": 0.0, "uv_mae": 0.5}) + "\n")
    monkeypatch.setattr(export, "parity", lambda *a: (1.0, 1.0))
    assert export.main(["densereg", "--run", str(run), "--out-dir", str(assets)]) == 1
    assert "the export was not installed" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in assets.iterdir()} == before  # no staging folder left either
    monkeypatch.undo()
    assert export.main(["densereg", "--run", str(run), "--out-dir", str(assets)]) == 0
    card = (assets / "DENSEREG_REALTIME_CARD.md").read_text()
    assert "by plain regression" in card and "quantized" not in card.split("## Validation")[0].replace("--variant quantized", "")
    from tracker.assets import sha256

    manifest = json.loads((assets / "MANIFEST.json").read_text())
    assert all(manifest[name] == sha256(assets / name) for name in ("densereg_realtime.onnx", "densereg_realtime.pt"))
    # damaged inputs are one line each, and a killed export's staging folder goes (user test 22)
    installed = {p.name: p.read_bytes() for p in assets.iterdir()}
    from tracker.fileio import PARTIAL_DIR

    stale = assets / (PARTIAL_DIR.format(name="export") + "killed1")
    stale.mkdir()
    (run / "val.jsonl").write_text("{not json\n" + json.dumps({"step": 1, "time": 0.0, "uv_mae": 0.5}) + "\n")
    assert export.main(["densereg", "--run", str(run), "--out-dir", str(assets)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {run / 'val.jsonl'}, line 1: not a row of a run's log ('{{not json')"
    (run / "val.jsonl").write_text(json.dumps({"step": 1, "time": 0.0, "uv_mae": 0.5}) + "\n")
    whole = (run / "best.pt").read_bytes()
    (run / "best.pt").write_bytes(whole[:5000])
    assert export.main(["densereg", "--run", str(run), "--out-dir", str(assets)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {run / 'best.pt'}: not a readable checkpoint, damaged or cut short")
    assert {p.name: p.read_bytes() for p in assets.iterdir() if p != stale} == installed and stale.is_dir()
    (run / "best.pt").write_bytes(whole)
    assert export.main(["densereg", "--run", str(run), "--out-dir", str(assets)]) == 0
    assert sorted(p.name for p in assets.iterdir()) == sorted(installed)  # the stale folder gone, nothing else left


@pytest.mark.parametrize("blocks", [1, 0])
def test_fewer_decoder_blocks_keep_the_outputs_and_the_other_weights(blocks):
    """``NetConfig.decoder_blocks`` (speed candidates, ``benchmarks.bench_widths``): the same maps
    and every other weight's name and shape, so a shipped network's weights can start one."""
    from dataclasses import replace

    full = DenseReg(CONFIGS["realtime"])
    cut = DenseReg(replace(CONFIGS["realtime"], decoder_blocks=blocks))
    kept = {k: v.shape for k, v in full.state_dict().items() if not any(k.startswith(f"backbone.fuse4.{i}.") for i in range(blocks, 2))}
    assert {k: v.shape for k, v in cut.state_dict().items()} == kept
    cut.load_state_dict({k: v for k, v in full.state_dict().items() if k in kept})
    raw = cut.eval()(torch.zeros(1, 3, 64, 64))
    assert raw.logits.shape == (1, 2, 11, 64, 64) and raw.residual.shape == (1, 2, 10, 64, 64)


def test_init_from_a_network_with_other_block_counts():
    """``--init-from`` across ``--decoder-blocks``: fewer blocks leave the extra weights out;
    more blocks start as identities (the maps unchanged); any other missing tensor is an error."""
    from dataclasses import replace

    from training.train import load_init_weights

    torch.manual_seed(0)
    full, cut = DenseReg(CONFIGS["realtime"]).eval(), DenseReg(replace(CONFIGS["realtime"], decoder_blocks=1)).eval()
    load_init_weights(cut, full.state_dict())
    assert torch.equal(cut.state_dict()["backbone.head.weight"], full.state_dict()["backbone.head.weight"])
    for p in cut.parameters():  # trained-looking weights, so that an identity is not a coincidence
        p.data.normal_(0.0, 0.1)
    load_init_weights(full, cut.state_dict())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(full(x).logits, cut(x).logits)
    with pytest.raises(ValueError, match="no weights for 1 tensors"):
        load_init_weights(full, {k: v for k, v in cut.state_dict().items() if k != "backbone.head.weight"})


def test_more_bins_start_as_the_network_they_split_and_export_with_their_count(tmp_path):
    """``--bins`` with ``--init-from`` a network of a divisor of K: each bin splits
    (``split_bins``), the decoded maps are the same (ties go to the first sub-bin) and the
    probabilities too; the exported graph decodes K bins and its card says so; K that is not a
    multiple is an error."""
    from dataclasses import replace

    from training.model import split_bins
    from training.train import load_init_weights

    torch.manual_seed(0)
    base = DenseReg(CONFIGS["realtime"]).eval()
    for p in base.backbone.head.parameters():  # bins far from ties, residuals of either sign
        p.data.normal_(0.0, 0.5)
    fine = DenseReg(replace(CONFIGS["realtime"], k=20)).eval()
    load_init_weights(fine, base.state_dict())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        a, b = base(x), fine(x)
        for u, v in zip(decode_torch(a, 10), decode_torch(b, 20)):
            torch.testing.assert_close(u, v, atol=1e-5, rtol=0)
        pa, pb = torch.softmax(a.logits, 2), torch.softmax(b.logits, 2)
        torch.testing.assert_close(pb[:, :, 1:].reshape(2, 2, 10, 2, 64, 64).sum(3), pa[:, :, 1:], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="into 15 bins"):
        split_bins(base.state_dict()["backbone.head.bias"], 15)

    assert "(K=20 bins + residuals)" in exported_card(tmp_path, fine.state_dict(), bins=20)


def test_stride2_foreground_starts_as_the_network_it_extends_and_only_its_branch_learns_the_fg_loss():
    """``NetConfig.fg_stride`` 2: initialised from a stride-4 network, the maps are the same
    (the branch's output starts at zero); the added foreground term trains the branch alone."""
    from dataclasses import replace

    from training.model import Decoded
    from training.train import load_init_weights

    torch.manual_seed(0)
    base = DenseReg(CONFIGS["realtime"]).eval()
    fg2 = DenseReg(replace(CONFIGS["realtime"], fg_stride=2)).eval()
    load_init_weights(fg2, base.state_dict())
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        for a, b in zip(decode_torch(base(x), 10), decode_torch(fg2(x), 10)):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
        exported = Decoded(fg_stride=2).eval()
        exported.load_state_dict(fg2.state_dict())
        uv, fg, depth = exported(x)
        assert uv.shape == (2, 2, 128, 128) and fg.shape == depth.shape == (2, 1, 128, 128)
        assert fg2(x, upsample=False).fg_delta.shape == (2, 1, 64, 64)  # the correction at stride 2

    fg2.train()
    raw = fg2(x)
    classes = torch.zeros(2, 2, 128, 128, dtype=torch.long)
    classes[:, :, 32:96, 32:96] = 3
    terms = densereg_loss(raw, classes, torch.zeros(2, 2, 128, 128), torch.zeros(2, 128, 128), torch.ones(2, 128, 128, dtype=torch.bool))
    assert "fg" in terms and terms["fg"].item() > 0
    terms["fg"].backward()
    learns = {n for n, p in fg2.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert learns and all(n.startswith("backbone.fg2.") for n in learns)
    assert "fg" not in densereg_loss(base(x), classes, torch.zeros(2, 2, 128, 128), torch.zeros(2, 128, 128),
                                     torch.ones(2, 128, 128, dtype=torch.bool))

    with pytest.raises(ValueError, match="RealtimeNet's branch"):
        DenseReg(replace(CONFIGS["paper"], fg_stride=2))
    # the segmenter gets the same branch on its background logit, likewise at zero to begin with
    seg, seg2 = (DenseReg(replace(CONFIGS["realtime"], variant="segment", fg_stride=f)).eval() for f in (4, 2))
    load_init_weights(seg2, seg.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(seg(x).seg_logits, seg2(x).seg_logits, atol=1e-6, rtol=0)


def test_a_training_only_parts_head_learns_from_the_features_and_is_left_out_of_the_export(tmp_path):
    """``NetConfig.aux_parts``: initialised from a network without it, the maps are that
    network's; the segmenter's loss on it trains the head and the shared features, never the
    maps' head; the export drops it (same graph as without it, parity checked) and the card says
    how the weights were trained."""
    from dataclasses import replace

    from training.losses import segment_loss
    from training.train import load_checkpoint, load_init_weights

    torch.manual_seed(0)
    base = DenseReg(CONFIGS["realtime"]).eval()
    aux = DenseReg(replace(CONFIGS["realtime"], aux_parts=True)).eval()
    load_init_weights(aux, base.state_dict())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(decode_torch(base(x), 10), decode_torch(aux(x), 10)):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert base(x).seg_logits is None

    aux.train()
    raw = aux(x)
    assert raw.seg_logits.shape == (2, 9, 64, 64) and raw.depth.shape == (2, 1, 64, 64)
    parts = torch.zeros(2, 64, 64, dtype=torch.long)
    parts[:, 20:40, 20:40] = 7
    segment_loss(raw, parts, torch.ones(2, 64, 64, dtype=torch.bool))["ce"].backward()
    learns = {n.split(".")[1] for n, p in aux.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert {"aux", "stem", "fuse4"} <= learns and "head" not in learns

    for cfg in (CONFIGS["paper"], replace(CONFIGS["realtime"], variant="segment")):
        with pytest.raises(ValueError, match="aux_parts"):
            DenseReg(replace(cfg, aux_parts=True))

    assert "training-only head of part logits, not exported" in exported_card(tmp_path, aux.state_dict(), aux_parts=1.0)
    deployed = load_checkpoint(tmp_path / "assets" / "densereg_realtime.pt")["state_dict"]
    assert set(deployed) == set(base.state_dict())


def test_mask_at_stride_loses_a_thin_gap_and_keeps_a_block():
    from training.evaluate import mask_at_stride

    mask = np.zeros((32, 32), bool)
    mask[4:28, 4:28] = True
    mask[15:17, 8:24] = False  # an open mouth 2 px tall
    assert (mask_at_stride(mask, 1) == mask).all()
    kept = mask_at_stride(mask, 4)
    assert kept[15:17, 12:20].all()  # the gap is gone at stride 4 ...
    assert not mask_at_stride(np.pad(np.ones((8, 8), bool), 12), 4)[:4].any() and kept[8:12, 8:24].all()  # ... the face is not


def test_lip_errors_count_each_kind_of_wrong_lip_pixel():
    from tracker.parts import LOWER_LIP, NOSE, OTHER, UPPER_LIP
    from training.evaluate import lip_errors

    truth = np.array([[OTHER, UPPER_LIP, UPPER_LIP, 0, LOWER_LIP, LOWER_LIP, OTHER, 0, NOSE]])
    holes = np.array([[0, 0, 0, 1, 0, 0, 0, 0, 0]], bool)
    pred = np.array([[UPPER_LIP, UPPER_LIP, LOWER_LIP, UPPER_LIP, OTHER, 0, OTHER, LOWER_LIP, NOSE]])
    valid = np.ones(truth.shape, bool)
    assert lip_errors(pred, truth, holes, valid) == {
        "lip in the mouth's hole": 1, "one lip for the other": 1, "lip for skin": 1, "skin for lip": 1,
        "background for lip": 1, "lip for background, outside holes": 1}
    assert sum(lip_errors(pred, truth, holes, ~valid).values()) == 0  # ignore pixels do not count
    assert sum(lip_errors(truth, truth, holes, valid).values()) == 0


def test_the_bootstrap_resamples_faces_alike_for_every_method():
    from tracker.parts import NOSE, OTHER
    from training.evaluate import bootstrap_mean_iou

    rng = np.random.default_rng(1)
    truth = rng.integers(0, 9, (12, 6, 6)).astype(np.uint8)
    valid = np.ones(truth.shape, bool)
    worse = truth.copy()
    worse[:6][worse[:6] == NOSE] = OTHER  # half the faces lose their nose
    boot = bootstrap_mean_iou({"exact": truth, "worse": worse, "same": truth.copy()}, truth, valid, 200)
    assert boot["exact"].shape == (200,) and (boot["exact"] == 1).all()
    assert (boot["worse"] < 1).all() and np.ptp(boot["worse"]) > 0  # the draws differ ...
    assert (boot["same"] == boot["exact"]).all()  # ... and are the same draws for every method
    again = bootstrap_mean_iou({"worse": worse}, truth, valid, 200)["worse"]
    assert (again == boot["worse"]).all()  # seeded: a rerun reports the same interval


def test_test_time_flipping_brings_a_mirrored_crop_back_to_the_crop():
    from tracker.densemaps import flip_averaged, unflip_outputs
    from tracker.parts import LEFT_EYE, RIGHT_EYE
    from training.evaluate import unflip_part_scores

    # A frontal, left-right symmetric face looks the same mirrored: its maps come back unchanged
    # (reversing the columns alone would send every u_h to its mirror point, left for right).
    uh, uv_ = np.meshgrid(np.linspace(0.2, 0.8, 16), np.linspace(0.8, 0.1, 12))
    ramp = np.tile(np.linspace(0, 1, 16, dtype=np.float32), (12, 1))[None, None]
    maps = {"uv": np.stack([uh, uv_])[None].astype(np.float32), "fg": ramp, "depth": 2 * ramp}
    back = unflip_outputs(maps)
    np.testing.assert_allclose(back["uv"], maps["uv"], atol=1e-6)
    assert (back["fg"] == ramp[..., ::-1]).all() and (back["depth"] == 2 * ramp[..., ::-1]).all()
    rng = np.random.default_rng(0)
    noisy = {"uv": rng.random((3, 2, 12, 16)), "fg": rng.random((3, 1, 12, 16)), "depth": rng.random((3, 1, 12, 16))}
    assert all((unflip_outputs(unflip_outputs(noisy))[k] == v).all() for k, v in noisy.items())  # an involution
    # an exactly equivariant network's answer for the mirrored crop: the average is the crop's own
    mirrored = unflip_outputs({k: v[:1] for k, v in noisy.items()})
    pair = {k: np.concatenate([v[:1], mirrored[k]]) for k, v in noisy.items()}
    assert all(np.allclose(flip_averaged(pair, 1)[k], v[:1]) for k, v in noisy.items())
    scores = np.zeros((9, 4, 6), np.float32)
    scores[LEFT_EYE, 1, 0] = 1  # the left eye at the mirrored crop's left edge ...
    back_scores = unflip_part_scores(scores)
    assert back_scores[RIGHT_EYE, 1, 5] == 1 and back_scores.sum() == 1  # ... is the right eye at the crop's right edge
    assert (unflip_part_scores(back_scores) == scores).all()


def test_the_foreground_is_upsampled_as_a_logit_sharper_than_its_probability_and_as_exported():
    """``upsample_probability``: a face edge between two stride-4 cells stays where it was (0.5
    halfway, for symmetric cells) and is sharper than bilinear probabilities (every pixel between
    the cells further from 0.5); ``Decoded`` (the exported graph) gives ``deployed_maps``."""
    from training.model import Decoded, deployed_maps, upsample_like, upsample_probability

    p = torch.tensor([0.02, 0.02, 0.98, 0.98]).view(1, 1, 1, 4).expand(1, 1, 4, 4)
    like = torch.zeros(1, 1, 16, 16)
    sharp, blur = upsample_probability(p, like)[0, 0, 0], upsample_like(p, like)[0, 0, 0]
    torch.testing.assert_close(sharp[7] + sharp[8], torch.tensor(1.0))  # the edge stays halfway between the cells
    between = slice(6, 10)
    assert ((sharp[between] - 0.5).abs() > (blur[between] - 0.5).abs()).all()
    assert (sharp.diff() >= 0).all() and 0 < sharp.min() and sharp.max() < 1
    torch.manual_seed(0)
    exported = Decoded().eval()
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        for a, b in zip(exported(x), deployed_maps(exported.net, x)):
            torch.testing.assert_close(a, b)


def test_test_time_shifting_moves_each_answer_back_onto_the_crop():
    from training.evaluate import shift_averaged, shifted

    a = np.arange(2 * 5 * 6, dtype=np.float32).reshape(1, 2, 5, 6)
    moved = shifted(a, 1, -2)
    assert (moved[..., 1:, :4] == a[..., :4, 2:]).all()  # content one row down, two columns left
    assert (moved[..., 0, :4] == a[..., 0, 2:]).all() and (moved[..., :, 4:] == moved[..., :, 3:4]).all()  # edges replicated
    assert shifted(a, 0, 0) is a
    # a translation-equivariant network (here: a pixel-wise one) answers every shifted copy with the
    # shifted answer: moved back, each equals the crop's own answer away from the replicated border
    calls = []

    def infer(x):
        calls.append(x.copy())
        return {"maps": 2 * x + 1}

    out = shift_averaged(infer, a, (0, 2))
    assert len(calls) == 4 and {tuple(np.argwhere(c[0, 0] == a[0, 0, 1, 1])[0]) for c in calls} == {(1, 1), (1, 3), (3, 1), (3, 3)}
    np.testing.assert_allclose(out["maps"][..., 2:-2, 2:-2], 2 * a[..., 2:-2, 2:-2] + 1)
    assert (shift_averaged(infer, a)["maps"] == 2 * a + 1).all()  # no offsets: the plain answer
    # an answer that ignores the input (a spike at one place) is moved back by each offset and averaged
    spike = np.zeros((1, 1, 5, 6), np.float32)
    spike[..., 2, 2] = 1
    out = shift_averaged(lambda x: {"maps": spike}, a, (0, 2))["maps"][0, 0]
    assert out[2, 2] == out[0, 2] == out[2, 0] == out[0, 0] == 0.25 and out.sum() == 1
