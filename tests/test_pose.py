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


def test_turning_the_picture_in_its_plane_changes_roll_alone():
    """Roll is the outermost angle: a tilted head (or camera) must not read as yaw or pitch, as it
    did with roll innermost (18 degrees of yaw at 30 degrees of tilt)."""
    with np.load(__import__("tracker.assets", fromlist=["ASSETS"]).ASSETS / "template.npz") as z:
        lm3d = z["landmark_3d"].astype(float)
    model = HeadModel.from_landmarks(lm3d)

    def axis(i: int, degrees: float) -> np.ndarray:  # rotation about model axis i (x, y, z)
        c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
        j, k = [a for a in range(3) if a != i]
        m = np.eye(3)
        m[j, j], m[j, k], m[k, j], m[k, k] = c, -s, s, c
        return m if i != 1 else m.T  # about y the right-handed sign is the other way round

    pts = project(lm3d, Pose(3.0, axis(1, -20) @ axis(0, 25), np.array([200.0, 200.0])))
    for tilt in (-45, -15, 0, 30, 60):
        t = np.radians(tilt)
        turn = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])  # counter-clockwise on the screen (y down)
        np.testing.assert_allclose(head_pose((pts - 200) @ turn.T + 200, model).yaw_pitch_roll(), [-20, 25, tilt], atol=0.5)
    # the convention: R = Rz(roll) Ry(yaw) Rx(pitch); yaw > 0 turns the nose to +x, pitch > 0 looks down
    np.testing.assert_allclose(Pose(1.0, axis(2, 10) @ axis(1, 35) @ axis(0, -15), np.zeros(2)).yaw_pitch_roll(), [35, -15, 10], atol=1e-9)
    np.testing.assert_allclose(axis(1, 90) @ [0, 0, 1], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(axis(0, 90) @ [0, 0, 1], [0, -1, 0], atol=1e-12)
