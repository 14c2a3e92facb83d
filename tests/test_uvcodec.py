"""The quantized UV codec (paper eqs. 2-3) and the dense-map types, on hand-made arrays (no torch)."""
import numpy as np
import pytest

from tracker.densemaps import DenseMaps, RawDenseOutput
from tracker.uvcodec import decode, encode

K = 10


def one_hot_raw(classes: np.ndarray, residual: np.ndarray, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """Confident logits for `classes` and the residual placed in the responsible bin."""
    logits = np.full((2, k + 1) + classes.shape[1:], -10.0, np.float32)
    np.put_along_axis(logits, classes[:, None], 10.0, axis=1)
    res = np.zeros((2, k) + classes.shape[1:], np.float32)
    np.put_along_axis(res, np.maximum(classes - 1, 0)[:, None], residual[:, None], axis=1)
    return logits, res


def flip_raw(logits: np.ndarray, residual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw heads of the mirrored image: 1 - u_h = (K - c) d + (d - r), so bin c <-> K+1-c and
    r <-> d - r for u_h; u_v bins are unchanged; everything is mirrored in x."""
    k = residual.shape[1]
    logits, residual = logits[..., ::-1].copy(), residual[..., ::-1].copy()
    logits[0, 1:] = logits[0, 1:][::-1]
    residual[0] = 1.0 / k - residual[0][::-1]
    return logits, residual


def test_encode_bins_residuals_and_background():
    uv = np.array([[[0.0, 0.1, 0.55, 1.0, np.nan]], [[0.999, 0.3, 0.05, 0.0, 0.5]]], np.float32)  # (2,1,5)
    classes, residual = encode(uv, K)
    assert classes.dtype == np.int64
    np.testing.assert_array_equal(classes[0, 0], [1, 2, 6, 10, 0])  # u = 1 falls in the last bin
    np.testing.assert_array_equal(classes[1, 0], [10, 4, 1, 1, 0])  # a NaN in either coordinate is background
    np.testing.assert_allclose(residual[0, 0], [0.0, 0.0, 0.05, 0.1, 0.0], atol=1e-6)
    np.testing.assert_allclose(residual[1, 0, :4], [0.099, 0.0, 0.05, 0.0], atol=1e-6)


def test_perfect_heads_decode_back_to_uv():
    rng = np.random.default_rng(1)
    uv = rng.uniform(0, 1, (2, 6, 7)).astype(np.float32)
    uv[:, :2] = np.nan
    classes, residual = encode(uv)
    maps = RawDenseOutput(*one_hot_raw(classes, residual), depth=np.full((6, 7), 1.5, np.float32)).decode()
    face = np.isfinite(uv).all(axis=0)
    np.testing.assert_allclose(maps.uv[:, face], uv[:, face], atol=1e-6)
    assert (maps.fg[face] > 0.999).all() and (maps.fg[~face] < 1e-3).all()
    assert maps.uv.dtype == maps.fg.dtype == maps.depth.dtype == np.float32
    assert (maps.depth == 1.0).all()  # clipped to the normalised range, as in the graph
    assert np.isnan(maps.face_uv()[:, ~face]).all() and np.isfinite(maps.face_uv()[:, face]).all()


def test_decode_uses_the_best_face_bin_even_where_background_wins():
    logits = np.zeros((2, K + 1, 1, 1), np.float32)
    logits[:, 0] = 5.0  # background is the most probable class...
    logits[:, 4] = 1.0  # ...but among the face bins, bin 4 (0-based 3) is
    residual = np.full((2, K, 1, 1), 0.02, np.float32)
    uv, fg = decode(logits, residual)
    np.testing.assert_allclose(uv[:, 0, 0], [0.32, 0.32], atol=1e-6)  # so consumers can pick their own threshold
    p_bg = np.exp(5) / (np.exp(5) + np.exp(1) + 9)
    assert fg[0, 0] == pytest.approx(1 - p_bg, abs=1e-6)


def test_fg_averages_the_two_coordinate_classifiers():
    logits = np.zeros((2, K + 1, 1, 1), np.float32)
    logits[0, 0] = 50.0  # u_h says background for sure, u_v says face for sure
    logits[1, 1] = 50.0
    _, fg = decode(logits, np.zeros((2, K, 1, 1), np.float32))
    assert fg[0, 0] == pytest.approx(0.5, abs=1e-6)


def test_decoded_uv_is_flip_equivariant():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(2, K + 1, 5, 6)).astype(np.float32)
    residual = rng.uniform(0, 1 / K, size=(2, K, 5, 6)).astype(np.float32)
    uv, fg = decode(logits, residual)
    uv_f, fg_f = decode(*flip_raw(logits, residual))
    np.testing.assert_allclose(uv_f[0], 1 - uv[0][:, ::-1], atol=1e-6)
    np.testing.assert_allclose(uv_f[1], uv[1][:, ::-1], atol=1e-6)
    np.testing.assert_allclose(fg_f, fg[:, ::-1], atol=1e-6)


def test_encoding_of_a_mirrored_field_is_the_mirrored_encoding():
    ys, xs = np.mgrid[0:9, 0:12]
    uv = np.stack([(xs + 0.5) / 12, (ys + 0.3) / 9]).astype(np.float32)  # no value on a bin edge
    mirrored = np.stack([1 - uv[0][:, ::-1], uv[1][:, ::-1]])
    c, r = encode(uv)
    cm, rm = encode(mirrored)
    lf, rf = flip_raw(*one_hot_raw(c, r))
    np.testing.assert_array_equal(cm, lf.argmax(axis=1))
    np.testing.assert_allclose(rm, np.take_along_axis(rf, (cm - 1)[:, None], axis=1)[:, 0], atol=1e-6)


def test_dense_maps_from_engine_outputs():
    out = {"uv": np.zeros((3, 2, 4, 4), np.float32), "fg": np.ones((3, 1, 4, 4), np.float32),
           "depth": np.full((3, 1, 4, 4), 0.5, np.float32)}
    out["uv"][2] = 0.25
    maps = DenseMaps.from_outputs(out, 2)
    assert maps.uv.shape == (2, 4, 4) and maps.fg.shape == maps.depth.shape == (4, 4)
    assert (maps.uv == 0.25).all()
