"""68 landmarks from dense UV maps (paper §4.3), pure numpy/OpenCV.

For every landmark k with template coordinates l_k, the face pixels whose predicted UV lies
within eps_k of l_k are split into connected components; the component holding the smallest
distance wins (ties broken by size), and the landmark is the distance-weighted centroid of that
component's pixels, which gives sub-pixel positions.  A landmark with no candidate pixel (for
example the far jaw on a profile) is reported missing: NaN position, confidence 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Landmarks:
    """points: (68,2) float64 pixel coordinates in the maps' frame, NaN where missing;
    confidence: (68,) float64 in [0,1], 0 where missing."""

    points: np.ndarray
    confidence: np.ndarray

    @property
    def visible(self) -> np.ndarray:
        return self.confidence > 0


def landmark_radii(landmark_uv: np.ndarray, cap: float = 0.04, fraction: float = 0.5) -> np.ndarray:
    """Per-landmark UV search radius: at most half the distance to the nearest other landmark,
    so that neighbouring landmarks (eye corners, lip points) never share pixels."""
    d = np.linalg.norm(landmark_uv[:, None] - landmark_uv[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return np.minimum(cap, fraction * d.min(axis=1))


def extract_landmarks(
    uv: np.ndarray,
    fg: np.ndarray,
    landmark_uv: np.ndarray,
    radii: np.ndarray,
    fg_threshold: float = 0.5,
) -> Landmarks:
    """uv: (2,H,W) predicted template coordinates; fg: (H,W) foreground probability."""
    n = len(landmark_uv)
    points = np.full((n, 2), np.nan)
    confidence = np.zeros(n)
    face = (fg > fg_threshold) & np.isfinite(uv).all(axis=0)
    ys, xs = np.nonzero(face)
    if len(ys) == 0:
        return Landmarks(points, confidence)
    u = uv[:, ys, xs].T  # (P,2)
    for k in range(n):
        d = np.linalg.norm(u - landmark_uv[k], axis=1)
        near = d < radii[k]
        if not near.any():
            continue
        px, py, dk = xs[near], ys[near], d[near]
        x0, y0 = px.min(), py.min()
        mask = np.zeros((py.max() - y0 + 1, px.max() - x0 + 1), np.uint8)
        mask[py - y0, px - x0] = 1
        n_comp, labels = cv2.connectedComponents(mask, connectivity=8)
        lab = labels[py - y0, px - x0]
        if n_comp > 2:
            # The component that reaches closest to the landmark's UV; its size breaks ties.
            best_d = np.full(n_comp, np.inf)
            np.minimum.at(best_d, lab, dk)
            sizes = np.bincount(lab, minlength=n_comp)
            score = best_d / radii[k] - 0.01 * np.log1p(sizes)
            keep = lab == int(np.argmin(score))
            px, py, dk = px[keep], py[keep], dk[keep]
        w = (1.0 - dk / radii[k]) ** 2 + 1e-6
        points[k] = (np.sum(w * px) / w.sum(), np.sum(w * py) / w.sum())
        # Confident when the closest pixel is near the landmark's UV and the blob is not a sliver.
        confidence[k] = float(np.clip(1.0 - dk.min() / radii[k], 0, 1) * min(1.0, len(dk) / 3.0))
    return Landmarks(points, confidence)
