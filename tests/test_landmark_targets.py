"""Landmark targets: the UV under the annotated points of the training faces."""
import numpy as np
import pytest

from tracker.assets import ASSETS, verified_asset
from training.landmark_targets import JAW, observed_targets, targets, uv_under_points


def linear_maps(h=60, w=80):
    """uv = (x/w, 1 - y/h) inside a centred ellipse: the UV of any mask pixel is known."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    uv = np.stack([xs / w, 1 - ys / h]).astype(np.float32)
    mask = ((xs - w / 2) / (w / 3)) ** 2 + ((ys - h / 2) / (h / 3)) ** 2 <= 1
    return uv, mask


def test_uv_under_points_reads_inside_snaps_near_and_drops_far():
    uv, mask = linear_maps()
    points = np.array([[40.2, 30.4],  # inside: the rounded pixel
                       [40.0, 8.0],  # 2 px above the ellipse's top (y = 10): snapped onto it
                       [2.0, 2.0],  # far outside
                       [np.nan, np.nan]])
    got = uv_under_points(uv, mask, points, snap=3.0)
    np.testing.assert_allclose(got[0], [40 / 80, 1 - 30 / 60], atol=1e-6)
    np.testing.assert_allclose(got[1], [40 / 80, 1 - 10 / 60], atol=1e-6)
    assert np.isnan(got[2:]).all()
    assert np.isnan(uv_under_points(uv, np.zeros_like(mask), points, snap=3.0)).all()


def test_observed_targets_is_the_median_over_faces_and_counts_them(tmp_path):
    from tracker.fileio import atomic_save_npz

    uv, mask = linear_maps()
    base = np.stack([np.linspace(25, 55, 68), np.full(68, 30.0)], 1)
    (tmp_path / "data" / "splits").mkdir(parents=True)
    names = []
    for i, dy in enumerate([-2, 0, 3]):
        points = base + [0, dy]
        points[5] = [1.0, 1.0] if i == 0 else points[5]  # off the mask in one face: not counted
        # the stem's face second of the picture's two (an AFW picture's): the first is another face's
        other = np.full_like(points, 70.0)
        atomic_save_npz(tmp_path / "gt" / "set" / f"f{i}.npz", uv=uv.astype(np.float16), mask=mask,
                        landmarks=np.stack([other, points]).astype(np.float32), face_index=np.int64(1))
        names.append(f"set/f{i}.jpg")
    names.append("set/missing.jpg")  # a face without ground truth is skipped
    (tmp_path / "data" / "splits" / "train.txt").write_text("\n".join(names))
    median, samples = observed_targets(tmp_path / "gt", tmp_path / "data")
    assert samples[5] == 2 and (np.delete(samples, 5) == 3).all()
    expected = np.stack([np.round(base[:, 0]) / 80, np.full(68, 1 - 30 / 60)], 1)
    expected[5, 1] = 1 - 31.5 / 60  # the two faces that gave point 5: rows 30 and 33
    np.testing.assert_allclose(median, expected, atol=2e-3)  # float16 maps


def test_targets_keep_the_template_jaw():
    template = np.random.default_rng(1).random((68, 2))
    observed = template + 0.01
    t = targets(template, observed)
    np.testing.assert_array_equal(t[JAW], template[JAW])
    np.testing.assert_array_equal(t[17:], observed[17:])


def test_shipped_targets_are_near_the_template_and_used_by_the_tracker():
    with np.load(verified_asset("landmark_targets.npz")) as z:
        target = z["target_uv"].astype(np.float64)
        samples = z["samples"]
    with np.load(ASSETS / "template.npz") as z:
        template = z["landmark_uv"].astype(np.float64)
    shift = np.linalg.norm(target - template, axis=1)
    # a calibration, not a new face: every inner point moves less than a tenth of the eye distance
    assert shift[JAW].max() == 0 and 0 < shift[17:].max() < 0.04
    assert samples[17:].min() > 1000  # the training split has 1,932 faces
    from tracker import Tracker, TrackerConfig

    tracker = Tracker(TrackerConfig(mode="image", refine=False))
    np.testing.assert_array_equal(tracker.lookup.landmark_uv, target)


@pytest.mark.shared_data
def test_observed_targets_on_real_ground_truth_match_the_shipped_asset(data_300w):
    """Rebuilding from a slice of the real ground truth lands close to the shipped medians."""
    from training.landmark_targets import REPO

    gt = REPO / "data" / "gt"
    if not gt.is_dir():
        pytest.skip("data/gt not built (python -m training.groundtruth)")
    with np.load(ASSETS / "landmark_targets.npz") as z:
        shipped = z["observed_uv"].astype(np.float64)
    median, _ = observed_targets(gt, data_300w, split="val")  # 80 faces the asset never saw
    assert np.median(np.linalg.norm(median[17:] - shipped[17:], axis=1)) < 0.005
