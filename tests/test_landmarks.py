"""Landmark extraction from dense UV maps and the robust PCA shape fit."""
import numpy as np
import pytest

from tracker.landmarks import build_lookup, extract_landmarks, extract_landmarks_batch
from tracker.metrics import nme
from tracker.shape_model import fit_shape, fit_shapes, load_shape_model, similarity_align

with np.load(__import__("training.template", fromlist=["ASSET"]).ASSET) as _z:
    LANDMARK_UV = _z["landmark_uv"].astype(np.float64)
LOOKUP = build_lookup(LANDMARK_UV)


def synthetic_maps(size=160, angle=0.3, scale=110.0, offset=(75.3, 82.6)):
    """A UV field that is an exact affine function of pixel position (rotated, scaled), so the
    pixel of every template UV is known analytically."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    c, s = np.cos(angle), np.sin(angle)
    A = np.array([[c, s], [-s, c]]) / scale  # pixel offset -> UV offset (u_v grows upwards)
    A[1] *= -1
    dx, dy = xs - offset[0], ys - offset[1]
    uv = np.stack([A[0, 0] * dx + A[0, 1] * dy + 0.5, A[1, 0] * dx + A[1, 1] * dy + 0.5])
    fg = ((uv >= 0) & (uv <= 1)).all(axis=0).astype(np.float32)
    truth = (np.linalg.solve(A, (LANDMARK_UV - 0.5).T).T + offset)
    return uv, fg, truth


def test_subpixel_accuracy_on_known_uv_field():
    uv, fg, truth = synthetic_maps()
    lm = extract_landmarks(uv, fg, LOOKUP)
    inside = (truth >= 1).all(1) & (truth <= 158).all(1)
    err = np.linalg.norm(lm.points[inside] - truth[inside], axis=1)
    assert np.median(err) < 0.25 and err.max() < 0.75
    assert (lm.confidence[inside] > 0.5).all()


def test_missing_region_gives_missing_landmarks():
    uv, fg, truth = synthetic_maps()
    fg[:, :70] = 0  # hide the left part of the face
    lm = extract_landmarks(uv, fg, LOOKUP)
    hidden = truth[:, 0] < 66
    assert hidden.any() and not lm.visible[hidden].any()
    assert np.isnan(lm.points[hidden]).all()
    assert lm.visible[truth[:, 0] > 74].all()


def test_non_finite_uv_pixels_are_not_face():
    """NaN or inf UV (a broken network output) on face pixels: the same landmarks as those
    pixels marked background."""
    uv, fg, _ = synthetic_maps()
    broken = uv.copy()
    broken[0, 60:90, 40:100] = np.nan
    broken[1, 95:100, :] = np.inf
    masked = fg.copy()
    masked[60:90, 40:100] = 0
    masked[95:100, :] = 0
    got, want = extract_landmarks(broken, fg, LOOKUP), extract_landmarks(uv, masked, LOOKUP)
    np.testing.assert_array_equal(got.points, want.points)
    np.testing.assert_array_equal(got.confidence, want.confidence)


def test_crops_in_one_batch_give_each_crop_alone():
    """Batched extraction and shape fitting (every face of a frame at once) return what each
    crop gives on its own, a crop without a face included."""
    maps = [synthetic_maps(angle=a, offset=o) for a, o in ((0.3, (75.3, 82.6)), (-0.2, (80.1, 70.4)), (0.0, (79.0, 79.0)))]
    uv = np.stack([m[0] for m in maps])
    fg = np.stack([m[1] for m in maps])
    fg[2] = 0  # no face in the third crop
    batch = extract_landmarks_batch(uv, fg, LOOKUP)
    alone = [extract_landmarks(u, g, LOOKUP) for u, g in zip(uv, fg)]
    for b, a in zip(batch, alone):
        np.testing.assert_array_equal(b.points, a.points)
        np.testing.assert_array_equal(b.confidence, a.confidence)
    model = load_shape_model()
    fits = fit_shapes(model, np.stack([a.points for a in alone]), np.stack([a.confidence for a in alone]))
    assert fits[2] is None  # too few points to fit
    for fit, a in zip(fits[:2], alone):
        np.testing.assert_allclose(fit.points, fit_shape(model, a.points, a.confidence).points, atol=1e-9)


def test_the_blob_with_most_weight_wins_over_a_closer_speck():
    """A landmark's candidate pixels in two blobs: one stray pixel whose UV is nearest the
    landmark's, and a 3x3 blob a little farther: the blob (more weight) is the landmark."""
    k = 30  # nose tip
    target, r = LANDMARK_UV[k], LOOKUP.radii[k]
    uv = np.full((2, 64, 64), 5.0)  # far outside the template: no landmark's cell
    fg = np.zeros((64, 64), np.float32)
    uv[:, 10, 10] = target + [0.1 * r, 0.0]  # the speck
    fg[10, 10] = 1
    ys, xs = np.mgrid[40:43, 40:43]
    angle = np.arctan2(ys - 41, xs - 41).ravel()
    uv[:, ys.ravel(), xs.ravel()] = (target[:, None] + 0.3 * r * np.stack([np.cos(angle), np.sin(angle)]))
    fg[40:43, 40:43] = 1
    lm = extract_landmarks(uv, fg, LOOKUP)
    assert lm.visible[k] and np.abs(lm.points[k] - 41).max() < 2


def test_no_face_gives_all_missing():
    uv, fg, _ = synthetic_maps()
    lm = extract_landmarks(uv, np.zeros_like(fg), LOOKUP)
    assert not lm.visible.any()


def test_similarity_align_recovers_transform():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(20, 2))
    th = 0.7
    R = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    dst = 2.5 * src @ R.T + [3.0, -1.0]
    s, R2, t = similarity_align(src, dst)
    assert abs(s - 2.5) < 1e-9 and np.allclose(R2, R) and np.allclose(t, [3, -1])


def _umeyama(src, dst, w):
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    s0, d0 = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd((d0 * w[:, None]).T @ s0)
    D = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    scale = (sig * np.diag(D)).sum() / (w * (s0**2).sum(1)).sum()
    R = u @ D @ vt
    return scale, R, mu_d - scale * R @ mu_s


@pytest.mark.parametrize("mirror", [False, True])
def test_similarity_align_matches_umeyama_on_noisy_weighted_points(mirror):
    """The closed form must give the least-squares proper similarity even for noisy, weighted
    and mirrored (no proper fit exists) correspondences."""
    rng = np.random.default_rng(3)
    src = rng.normal(size=(68, 2))
    dst = 1.7 * src @ np.array([[0.8, -0.6], [0.6, 0.8]]).T + rng.normal(size=(68, 2)) * 0.3
    if mirror:
        dst[:, 0] *= -1
    w = rng.uniform(0, 1, 68)
    for got, want in zip(similarity_align(src, dst, w), _umeyama(src, dst, w)):
        assert np.allclose(got, want, atol=1e-9)

def test_pca_fit_fills_missing_and_rejects_outliers():
    model = load_shape_model()
    rng = np.random.default_rng(1)
    truth = 80 * model.instance(rng.normal(size=len(model.eigenvalues)) * np.sqrt(model.eigenvalues) * 0.8)
    truth = truth @ np.array([[0.96, -0.28], [0.28, 0.96]]).T + [200, 150]
    obs = truth + rng.normal(size=truth.shape) * 0.3
    outliers = np.array([3, 20, 40, 50, 66])
    obs[outliers] += [25.0, -30.0]
    missing = np.array([0, 1, 2, 8, 9])
    obs[missing] = np.nan
    fit = fit_shape(model, obs, np.ones(68))
    assert nme(fit.points, truth) < 0.02
    assert (fit.weights[outliers] == 0).all() and (fit.weights[missing] == 0).all()
    assert np.linalg.norm(fit.points[missing] - truth[missing], axis=1).max() / np.linalg.norm(truth[36] - truth[45]) < 0.06


def test_pca_fit_needs_enough_points():
    model = load_shape_model()
    obs = np.full((68, 2), np.nan)
    obs[:4] = 1.0
    assert fit_shape(model, obs, np.ones(68)) is None


def test_lookup_table_is_the_nearest_covering_landmark():
    """The windowed table build gives exactly the definition: per cell, the nearest landmark
    if the cell lies within that landmark's radius, else -1 (brute force over all landmarks),
    including landmarks near the UV square's edges and twins sharing a representative."""
    rng = np.random.default_rng(3)
    uv = np.vstack([rng.uniform(0, 1, (20, 2)), [[0.001, 0.999], [0.999, 0.5]], LANDMARK_UV[[61, 67]]])
    res = 128
    lookup = build_lookup(uv, res=res)
    reps = np.unique(lookup.rep)
    centres = (np.arange(res) + 0.5) / res
    uh, uvv = np.meshgrid(centres, 1.0 - centres)
    d = np.hypot(uh[..., None] - uv[reps, 0], uvv[..., None] - uv[reps, 1])
    near = d.argmin(-1)
    expected = np.where(d.min(-1) < lookup.radii[reps][near], reps[near], -1)
    np.testing.assert_array_equal(lookup.table, expected)
    assert (lookup.table >= 0).sum() > 100
