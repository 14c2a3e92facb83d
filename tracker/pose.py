"""Head pose from 2D landmarks: a scaled orthographic camera on a 3D landmark template.

Shared by the ground-truth fitter (``tracker/fitting.py``) and the tracker, which reports each
face's yaw/pitch/roll from its final landmarks and the template's 3D landmark positions
(``landmark_3d`` in ``assets/template.npz``).  Model space: y up, z towards the viewer;
image: 0-based pixels, y down.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FLIP_Y = np.array([1.0, -1.0])


@dataclass(frozen=True)
class Pose:
    """x_img = scale * flip_y(R @ X)[:2] + t.  rotation (3,3) proper, translation (2,)."""

    scale: float
    rotation: np.ndarray
    translation: np.ndarray

    def yaw_pitch_roll(self) -> tuple[float, float, float]:
        """Degrees, with R = Rz(roll) Ry(yaw) Rx(pitch): roll is outermost, so turning the camera
        (or the picture) in its plane changes roll alone; with roll innermost, a tilted head read
        pitch into yaw (18 degrees at 30 degrees of tilt on val faces).  Yaw > 0 when the face
        turns towards the image right, pitch > 0 when it looks down, roll > 0 when the picture
        is turned counter-clockwise (the head tilts to the image left)."""
        r = self.rotation
        yaw = np.degrees(np.arcsin(np.clip(-r[2, 0], -1, 1)))
        pitch = np.degrees(np.arctan2(r[2, 1], r[2, 2]))
        roll = np.degrees(np.arctan2(r[1, 0], r[0, 0]))
        return float(yaw), float(pitch), float(roll)



def project(points: np.ndarray, pose: Pose) -> np.ndarray:
    p = pose.scale * (points @ pose.rotation.T)[:, :2] * FLIP_Y
    return p + pose.translation


def estimate_pose(model_pts: np.ndarray, image_pts: np.ndarray, weights: np.ndarray | None = None) -> Pose:
    """Scaled orthographic pose from 3D-2D correspondences.

    An affine camera is solved by least squares and its 2x3 part projected to the nearest
    scaled rotation, the standard Gold Standard algorithm of Hartley & Zisserman.  Both steps
    are closed forms on 3x3 and 2x2 matrices rather than LAPACK's lstsq and SVD: the same
    answer to rounding, and this runs on every face of every frame, where the LAPACK calls
    (cold in the cache after the networks ran) took ~0.13 ms of a 0.19 ms call.
    """
    w = np.ones(len(model_pts)) if weights is None else weights
    y = image_pts * FLIP_Y
    x_mean = (w @ model_pts) / w.sum()
    y_mean = (w @ y) / w.sum()
    X, Y = model_pts - x_mean, y - y_mean
    WX = X * w[:, None]
    return _pose_from_affine(_solve3(WX.T @ X, WX.T @ Y).T, x_mean, y_mean)


def _pose_from_affine(a: np.ndarray, x_mean: np.ndarray, y_mean: np.ndarray) -> Pose:
    """The scaled rotation nearest the (2,3) affine camera `a` fitted to centred points (model
    centroid `x_mean`, image centroid `y_mean` in y-up coordinates), as a Pose."""
    rows, scale = _nearest_scaled_rotation(a)
    rotation = np.vstack([rows, _cross(rows[0], rows[1])])
    translation = (y_mean - scale * (rotation[:2] @ x_mean)) * FLIP_Y
    return Pose(scale, rotation, translation)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _solve3(m: np.ndarray, b: np.ndarray) -> np.ndarray:
    """m^-1 b for a 3x3 m by its adjugate (lstsq where m is singular: a degenerate point set)."""
    adj = np.array([_cross(m[1], m[2]), _cross(m[2], m[0]), _cross(m[0], m[1])])  # rows: adj(m)^T's columns
    det = float(m[0] @ adj[0])
    if abs(det) <= 1e-12 * max(float(np.abs(m).max()), 1e-300) ** 3:
        return np.linalg.lstsq(m, b, rcond=None)[0]
    return adj.T @ b / det


def _nearest_scaled_rotation(a: np.ndarray) -> tuple[np.ndarray, float]:
    """(rows, scale): the 2x3 matrix with orthonormal rows nearest `a` (the polar factor
    (a a^T)^-1/2 a, i.e. U V^T of its SVD) and the mean of a's two singular values."""
    (p, q), (_, r) = (a @ a.T).tolist()  # symmetric: [[p, q], [q, r]]; scalar maths on floats from here
    root_det = math.sqrt(max(p * r - q * q, 0.0))  # s1 s2
    trace = math.sqrt(p + r + 2 * root_det)  # s1 + s2
    if root_det <= 1e-12 * trace**2:  # rank < 2: no unique polar factor; the SVD picks one
        u, s, vt = np.linalg.svd(a, full_matrices=False)
        return u @ vt, float(s.mean())
    # sqrt(m) = (m + s1 s2 I) / (s1 + s2) for a 2x2 symmetric positive definite m; its inverse
    # is the adjugate over the determinant, s1 s2
    p, r = (p + root_det) / trace, (r + root_det) / trace
    q /= trace
    det = p * r - q * q
    return np.array([[r, -q], [-q, p]]) @ a / det, trace / 2


@dataclass(frozen=True)
class HeadModel:
    """The template's 3D landmarks as ``head_pose`` fits them: the jaw left out (it marches with
    pose, so its frontal template positions would bias yaw), with the least-squares solve for
    the usual case of every other point present done once (``from_landmarks``)."""

    points: np.ndarray  # (68,3) the template's landmarks (``landmark_3d`` in ``assets/template.npz``)
    used: np.ndarray  # (68,) bool: the points the fit uses
    centre: np.ndarray  # (3,) their mean
    solve: np.ndarray  # (3,U): (X^T X)^-1 X^T for the centred used points X

    @classmethod
    def from_landmarks(cls, landmark_3d: np.ndarray) -> HeadModel:
        points = np.asarray(landmark_3d, np.float64)
        used = np.ones(len(points), bool)
        used[:17] = False
        centre = points[used].mean(axis=0)
        X = points[used] - centre
        return cls(points, used, centre, np.linalg.solve(X.T @ X, X.T))


def head_pose(points: np.ndarray, model: HeadModel) -> Pose | None:
    """Pose of a face from its (68,2) landmarks (NaN rows ignored); None with < 6 points."""
    ok = np.isfinite(points).all(axis=1)
    if ok.sum() < 6:
        return None
    if ok[model.used].all():  # every point the fit uses: the precomputed solve
        y = points[model.used] * FLIP_Y
        y_mean = y.mean(axis=0)
        return _pose_from_affine((model.solve @ (y - y_mean)).T, model.centre, y_mean)
    ok &= model.used
    return estimate_pose(model.points[ok], points[ok])
