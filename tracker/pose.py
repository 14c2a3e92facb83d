"""Head pose from 2D landmarks: a scaled orthographic camera on a 3D landmark template.

Shared by the ground-truth fitter (``training/fitting.py``) and the tracker, which reports each
face's yaw/pitch/roll from its final landmarks and the template's 3D landmark positions
(``landmark_3d`` in ``assets/template.npz``).  Model space: y up, z towards the viewer;
image: 0-based pixels, y down.
"""
from __future__ import annotations

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
        """Degrees; yaw > 0 when the face turns towards the image right."""
        r = self.rotation
        yaw = np.degrees(np.arcsin(np.clip(r[0, 2], -1, 1)))
        pitch = np.degrees(np.arctan2(-r[1, 2], r[2, 2]))
        roll = np.degrees(np.arctan2(-r[0, 1], r[0, 0]))
        return float(yaw), float(pitch), float(roll)



def project(points: np.ndarray, pose: Pose) -> np.ndarray:
    p = pose.scale * (points @ pose.rotation.T)[:, :2] * FLIP_Y
    return p + pose.translation


def estimate_pose(model_pts: np.ndarray, image_pts: np.ndarray, weights: np.ndarray | None = None) -> Pose:
    """Scaled orthographic pose from 3D-2D correspondences.

    An affine camera is solved by least squares and its 2x3 part projected to the nearest
    scaled rotation (SVD), the standard Gold Standard algorithm of Hartley & Zisserman.
    """
    w = np.ones(len(model_pts)) if weights is None else weights
    y = image_pts * FLIP_Y
    x_mean = (w[:, None] * model_pts).sum(0) / w.sum()
    y_mean = (w[:, None] * y).sum(0) / w.sum()
    X, Y = (model_pts - x_mean) * np.sqrt(w)[:, None], (y - y_mean) * np.sqrt(w)[:, None]
    A = np.linalg.lstsq(X, Y, rcond=None)[0].T  # (2,3)
    u, s, vt = np.linalg.svd(A, full_matrices=False)
    r2 = u @ vt
    rotation = np.vstack([r2, np.cross(r2[0], r2[1])])
    scale = float(s.mean())
    translation = (y_mean - scale * (rotation[:2] @ x_mean)) * FLIP_Y
    return Pose(scale, rotation, translation)


def head_pose(points: np.ndarray, landmark_3d: np.ndarray) -> Pose | None:
    """Pose of a face from its (68,2) landmarks (NaN rows ignored); None with < 6 points."""
    ok = np.isfinite(points).all(axis=1)
    if ok.sum() < 6:
        return None
    # The jaw marches with pose: its frontal template positions would bias yaw; use the rest.
    ok[:17] = False
    return estimate_pose(landmark_3d[ok], points[ok])
