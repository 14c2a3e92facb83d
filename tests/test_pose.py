import numpy as np

from tracker.pose import HeadModel, Pose, estimate_pose, head_pose, project


def rot(yaw, pitch, roll):
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def test_head_pose_recovers_yaw_pitch_roll_from_template_landmarks():
    with np.load(__import__("tracker.assets", fromlist=["ASSETS"]).ASSETS / "template.npz") as z:
        lm3d = z["landmark_3d"].astype(float)
    model = HeadModel.from_landmarks(lm3d)
    for angles in ((0, 0, 0), (30, 0, 0), (-20, 10, 5), (0, -15, -20)):
        pose = Pose(2.0, rot(*angles), np.array([300.0, 200.0]))
        pts = project(lm3d, pose)
        est = head_pose(pts, model)
        np.testing.assert_allclose(est.yaw_pitch_roll(), pose.yaw_pitch_roll(), atol=0.5)
        # the precomputed solve (every point present) is the general fit on the points it uses
        general = estimate_pose(lm3d[model.used], pts[model.used])
        np.testing.assert_allclose(est.rotation, general.rotation, atol=1e-12)
        np.testing.assert_allclose([est.scale, *est.translation], [general.scale, *general.translation], rtol=1e-12)
        missing = pts.copy()
        missing[[30, 48]] = np.nan  # some points gone: the general fit on the rest
        np.testing.assert_allclose(head_pose(missing, model).yaw_pitch_roll(), pose.yaw_pitch_roll(), atol=0.5)
    pts[:, :] = np.nan
    assert head_pose(pts, model) is None


def test_closed_forms_match_least_squares_and_svd():
    """The affine camera by 3x3 normal equations and the nearest scaled rotation by the 2x2
    polar formula are lstsq's and the SVD's answers, weighted or not."""
    rng = np.random.default_rng(1)
    for i in range(200):
        model = rng.normal(size=(30, 3)) * [1, 1, 0.3]
        image = model[:, :2] * [3, -3] + rng.normal(size=(30, 2)) * (0.1 if i % 2 else 40)
        w = rng.random(30) if i % 3 else np.ones(30)
        y = image * [1, -1]
        xm, ym = (w @ model) / w.sum(), (w @ y) / w.sum()
        sw = np.sqrt(w)[:, None]
        a = np.linalg.lstsq((model - xm) * sw, (y - ym) * sw, rcond=None)[0].T
        u, sv, vt = np.linalg.svd(a, full_matrices=False)
        got = estimate_pose(model, image, w)
        np.testing.assert_allclose(got.rotation[:2], u @ vt, atol=1e-9)
        np.testing.assert_allclose(got.scale, sv.mean(), rtol=1e-9)


def test_yaw_sign_convention():
    pts3 = np.random.default_rng(0).normal(size=(20, 3))
    p = estimate_pose(pts3, project(pts3, Pose(1.0, rot(25, 0, 0), np.zeros(2))))
    assert p.yaw_pitch_roll()[0] > 20
