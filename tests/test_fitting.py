"""Known-answer tests of the 3DMM landmark fitter on a synthetic model and on the real SFM."""
import numpy as np
import pytest

from tracker.fitting import FitOptions, LandmarkDefinition, Pose, fit_landmarks, landmark_points, march_jaw, project
from tracker.metrics import nme
from training.sfm import MorphableModel


def rotation(yaw, pitch, roll):
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def synthetic_model(rng):
    """A 68-vertex 'face' on an ellipsoid with a smooth random shape basis; no marching jaw."""
    t = np.linspace(-1.2, 1.2, 68)
    mean = np.stack([60 * np.sin(t * 2.1), 80 * np.cos(t * 5.0), 40 * np.cos(t * 2.1)], 1)
    basis = rng.normal(size=(68, 3, 10)) * 4.0
    expr = rng.normal(size=(68, 3, 6)) * 3.0
    model = MorphableModel(mean, basis, expr, tuple("abcdef"), np.zeros((0, 3), np.int32))
    idx = np.repeat(np.arange(68)[:, None], 3, 1)
    w = np.tile([1.0, 0.0, 0.0], (68, 1))
    return model, LandmarkDefinition(idx, w, np.zeros(0, np.int64), np.zeros((0, 1), np.int64))


@pytest.mark.parametrize("angles", [(0, 0, 0), (35, -10, 15), (-60, 12, -5)])
def test_recovers_known_pose_and_shape(angles):
    rng = np.random.default_rng(0)
    model, definition = synthetic_model(rng)
    shape, expr = rng.normal(size=10), rng.uniform(0, 0.6, size=6)
    pose = Pose(2.5, rotation(*angles), np.array([320.0, 240.0]))
    pts = project(model.instance(shape, expr), pose)
    fit = fit_landmarks(model, definition, pts, FitOptions(n_shape=10, shape_reg=1e-3, expr_reg=1e-3, use_jaw=False))
    assert nme(fit.fitted, pts) < 1e-3
    assert abs(fit.pose.scale - 2.5) / 2.5 < 0.01
    angle = np.degrees(np.arccos(np.clip((np.trace(fit.pose.rotation.T @ pose.rotation) - 1) / 2, -1, 1)))
    assert angle < 1.0
    np.testing.assert_allclose(model.instance(fit.shape_coeffs, fit.expr_coeffs), model.instance(shape, expr), atol=0.05)


def test_real_sfm_known_answer_with_jaw_marching(sfm_model, landmark_definition):
    rng = np.random.default_rng(1)
    for yaw in (-50, -20, 0, 25, 55):
        shape, expr = rng.normal(size=63) * 0.7, rng.uniform(0, 0.5, size=6)
        pose = Pose(3.0, rotation(yaw, 5, 3), np.array([400.0, 300.0]))
        verts = sfm_model.instance(shape, expr)
        idx, w = march_jaw(verts, pose, landmark_definition, landmark_definition.vertices, landmark_definition.weights)
        pts = project(landmark_points(verts, idx, w), pose)
        fit = fit_landmarks(sfm_model, landmark_definition, pts)
        assert nme(fit.fitted, pts) < 0.012, yaw
        assert abs(fit.pose.yaw_pitch_roll()[0] - yaw) < 4.0
        # Scale trades off against the shape's size, so judge the dense result instead: the
        # visible mesh must land where the true one projects (what the ground truth needs).
        mesh = project(sfm_model.instance(fit.shape_coeffs, fit.expr_coeffs), fit.pose)
        true_mesh = project(verts, pose)
        front = (verts @ pose.rotation.T)[:, 2] > np.percentile((verts @ pose.rotation.T)[:, 2], 50)
        iod = np.linalg.norm(pts[36] - pts[45])
        assert np.linalg.norm(mesh - true_mesh, axis=1)[front].mean() / iod < 0.05, yaw

