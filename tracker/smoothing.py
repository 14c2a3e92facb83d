"""One Euro filter (Casiez et al., CHI 2012) for landmark trajectories.

A low-pass filter whose cut-off rises with speed: still faces get heavy smoothing (no jitter),
fast motion gets little (no lag).  Speeds are measured in face scales (eye distances) per
second, so the same parameters work for small and large faces.
"""
from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff: float, dt: float) -> float:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuro:
    def __init__(self, min_cutoff: float = 0.5, beta: float = 1.0, d_cutoff: float = 1.0, fps: float = 30.0):
        self.min_cutoff, self.beta, self.d_cutoff, self.fps = min_cutoff, beta, d_cutoff, fps
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def __call__(self, points: np.ndarray, frame: int, scale: float) -> np.ndarray:
        """Filter (N,2) points observed at frame index `frame`; NaN points pass through."""
        x = points
        t = frame / self.fps
        if self._x is None or self._t is None or t <= self._t or self._x.shape != x.shape:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return points.copy()
        dt = t - self._t
        dx = (x - self._x) / dt
        a_d = _alpha(self.d_cutoff, dt)
        dx_hat = np.where(np.isfinite(dx), a_d * dx + (1 - a_d) * self._dx, self._dx)
        speed = np.linalg.norm(dx_hat, axis=-1, keepdims=True) / scale  # eye distances per second
        cutoff = self.min_cutoff + self.beta * speed * 100.0
        tau = 1.0 / (2 * np.pi * cutoff)
        a = 1.0 / (1.0 + tau / dt)
        x_hat = np.where(np.isfinite(x), a * x + (1 - a) * self._x, self._x)
        self._x, self._dx, self._t = x_hat, dx_hat, t
        return x_hat
