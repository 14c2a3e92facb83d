"""68-point PCA shape model and its robust fit (paper §4.3: "reconstructing the detected
landmarks with a PCA shape model"), pure numpy.

The model lives in a normalised frame (Procrustes-aligned training shapes, centroid 0, RMS
radius 1).  ``fit_shape`` aligns it to observed points with a similarity transform, solves the
shape coefficients by regularised weighted least squares, and re-weights points with Tukey's
biweight on their residuals, so that missing points are filled and outliers are replaced.
The asset is built by ``python -m training.shape_pca``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

ASSET = Path(__file__).resolve().parent / "assets" / "shape_pca.npz"


@dataclass(frozen=True)
class ShapeModel:
    """mean: (68,2); components: (K,68,2) orthonormal; eigenvalues: (K,) variances."""

    mean: np.ndarray
    components: np.ndarray
    eigenvalues: np.ndarray

    def instance(self, coeffs: np.ndarray) -> np.ndarray:
        return self.mean + np.tensordot(coeffs, self.components, axes=1)


@dataclass(frozen=True)
class ShapeFit:
    """points: (68,2) reconstruction in the input frame; residual: (68,) distance between each
    observed point and the reconstruction (NaN where missing); weights: (68,) final robust
    weights (0 = rejected or missing); coeffs: (K,)."""

    points: np.ndarray
    residual: np.ndarray
    weights: np.ndarray
    coeffs: np.ndarray


def load_shape_model(path: Path = ASSET) -> ShapeModel:
    with np.load(path) as z:
        return ShapeModel(z["mean"].astype(np.float64), z["components"].astype(np.float64), z["eigenvalues"].astype(np.float64))


def similarity_align(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """(scale, R (2,2), t) minimising sum w ||scale R src + t - dst||^2.

    In 2D the optimal proper similarity has a closed form (treat points as complex numbers:
    scale*e^{i theta} = sum w conj(s) d / sum w |s|^2), the same answer as Umeyama's SVD
    without the SVD; this runs several times per face per frame.
    """
    w = np.ones(len(src)) if weights is None else weights
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    s0, d0 = src - mu_s, dst - mu_d
    ws = s0 * w[:, None]
    a = float(np.vdot(ws, d0))
    b = float(ws[:, 0] @ d0[:, 1] - ws[:, 1] @ d0[:, 0])
    var_s = max(float(np.vdot(ws, s0)), 1e-12)
    norm = float(np.hypot(a, b))
    R = np.array([[a, -b], [b, a]]) / norm if norm > 0 else np.eye(2)
    scale = norm / var_s
    return scale, R, mu_d - scale * R @ mu_s


def normalise(shape: np.ndarray) -> np.ndarray:
    """Centroid 0, RMS radius 1."""
    c = shape - shape.mean(axis=0)
    return c / np.sqrt((c**2).sum(1).mean())


def _median(x: np.ndarray) -> float:
    """np.median of a short 1-D array, without its ~15 µs of generality (it runs 6 times a face
    a frame)."""
    x = np.sort(x)
    n = len(x)
    return float((x[(n - 1) // 2] + x[n // 2]) / 2)


def fit_shape(
    model: ShapeModel,
    points: np.ndarray,
    confidence: np.ndarray,
    iterations: int = 6,
    prior: float = 1e-3,
    min_points: int = 6,
) -> ShapeFit | None:
    """Robust weighted fit of the PCA model to (68,2) points (NaN = missing).

    Returns None when fewer than `min_points` points are usable: nothing sensible can be said.
    prior: variance of the observation noise in the normalised frame (RMS radius 1).
    """
    valid = np.isfinite(points).all(axis=1) & (confidence > 0)
    if valid.sum() < min_points:
        return None
    obs = np.where(valid[:, None], points, 0.0)
    w = np.where(valid, confidence, 0.0)
    basis = model.components.reshape(len(model.eigenvalues), -1).T  # (136,K)
    mean = model.mean.ravel()
    regulariser = np.diag(prior / model.eigenvalues)
    coeffs = np.zeros(len(model.eigenvalues))
    shape = model.mean
    for _ in range(iterations):
        scale, R, t = similarity_align(shape, obs, w)
        y = ((obs - t) @ R) / scale  # observations in the model frame
        A = basis.T * np.repeat(w, 2)  # (K,136) weighted
        coeffs = np.linalg.solve(A @ basis + regulariser, A @ (y.ravel() - mean))
        shape = (mean + basis @ coeffs).reshape(-1, 2)
        residual = np.linalg.norm(shape - y, axis=1)
        # Tukey's biweight; the scale has a floor so that near-perfect inputs are not rejected.
        sigma = max(1.4826 * _median(residual[valid]), 0.02)
        r = residual / (4.685 * sigma)
        w = np.where(valid & (r < 1), confidence * (1 - r**2) ** 2, 0.0)
        if w.sum() <= 0 or (w > 0).sum() < min_points:
            w = np.where(valid, confidence, 0.0)
    scale, R, t = similarity_align(shape, obs, w)
    fitted = scale * shape @ R.T + t
    res = np.where(valid, np.linalg.norm(fitted - points, axis=1), np.nan)
    return ShapeFit(fitted, res, w, coeffs)
