import numpy as np

from tracker.pose import Pose, estimate_pose, head_pose, project


def rot(yaw, pitch, roll):
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def test_head_pose_recovers_yaw_pitch_roll_from_template_landmarks():
    with np.load(__import__("tracker.assets", fromlist=["ASSETS"]).ASSETS / "template.npz") as z:
        lm3d = z["landmark_3d"].astype(float)
    for angles in ((0, 0, 0), (30, 0, 0), (-20, 10, 5), (0, -15, -20)):
        pose = Pose(2.0, rot(*angles), np.array([300.0, 200.0]))
        pts = project(lm3d, pose)
        est = head_pose(pts, lm3d)
        np.testing.assert_allclose(est.yaw_pitch_roll(), pose.yaw_pitch_roll(), atol=0.5)
    pts[:, :] = np.nan
    assert head_pose(pts, lm3d) is None


def test_yaw_sign_convention():
    pts3 = np.random.default_rng(0).normal(size=(20, 3))
    p = estimate_pose(pts3, project(pts3, Pose(1.0, rot(25, 0, 0), np.zeros(2))))
    assert p.yaw_pitch_roll()[0] > 20
