"""One Euro filter (Casiez et al., CHI 2012) for landmark trajectories.

A low-pass filter whose cut-off rises with speed: still faces get heavy smoothing (no jitter),
fast motion gets little (no lag).  Speeds are measured in face scales (eye distances) per
second, so the same parameters work for small and large faces.  Time is the frame's own time in
seconds (a video's frame index over its rate, a camera's clock), not a count of frames: a camera
read by a tracker slower than it drops frames, and a count took a 15 fps run for a 30 fps one,
halving every cut-off (more lag on slower machines).

The speed is the faster of each point's smoothed speed (One Euro's) and the whole face's raw
move this frame beyond ``face_deadband``.  The smoothed speed lags: just after a face reverses
direction it passes through zero while the face moves at full speed, so One Euro alone smoothed
hardest exactly then (user test: 17 px off for one frame at a 35 px/frame reversal).  The
face's move, the mean over its 68 points, has far less noise than any point, and the deadband
(1% of the eye distance a frame) keeps it out of still faces' jitter.
"""
from __future__ import annotations

import math

import numpy as np

MIN_DT = 1e-3  # seconds between two frames given the same time
# ``beta`` is per percent of the eye distance a second: the speed (eye distances a second) times
# this, so that beta ~1 is the useful scale (One Euro's paper tunes it in pixels a second).
SPEED_PERCENT = 100.0


def _alpha(cutoff: float, dt: float) -> float:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuro:
    def __init__(self, min_cutoff: float = 0.5, beta: float = 1.0, d_cutoff: float = 1.0,
                 face_deadband: float | None = 0.01):
        """`face_deadband`: eye distances per frame of the face's raw move that do not count
        (None: One Euro alone)."""
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.face_deadband = face_deadband
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def __call__(self, points: np.ndarray, t: float, scale: float) -> np.ndarray:
        """Filter (N,2) points observed at time `t` (seconds); a NaN point keeps its last filtered
        place.  A time before the last one starts the filter again; the same time again is taken
        as MIN_DT later (a coarse clock gives two frames one time: restarting doubled the jitter;
        review 27)."""
        x = points
        if self._x is None or self._t is None or t < self._t or self._x.shape != x.shape:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return points.copy()
        dt = max(t - self._t, MIN_DT)
        # a point missing so far starts where it is first seen (NaN at the start, it stayed NaN; review 35)
        self._x = np.where(np.isfinite(self._x), self._x, x)
        dx = (x - self._x) / dt
        a_d = _alpha(self.d_cutoff, dt)
        dx_hat = np.where(np.isfinite(dx), a_d * dx + (1 - a_d) * self._dx, self._dx)
        speed = np.linalg.norm(dx_hat, axis=-1, keepdims=True) / scale  # eye distances per second
        if self.face_deadband is not None and np.isfinite(dx).any():
            face = np.linalg.norm(np.nanmean(dx, axis=0)) / scale
            speed = np.maximum(speed, face - self.face_deadband / dt)
        cutoff = self.min_cutoff + self.beta * speed * SPEED_PERCENT
        tau = 1.0 / (2 * np.pi * cutoff)
        a = 1.0 / (1.0 + tau / dt)
        x_hat = np.where(np.isfinite(x), a * x + (1 - a) * self._x, self._x)
        self._x, self._dx, self._t = x_hat, dx_hat, t
        return x_hat
