"""Landmark accuracy metrics (300-W conventions), pure numpy.

NME = mean point-to-point error / outer-eye-corner distance (iBUG points 37 and 46, 1-based).
A face without a prediction counts as a failure (error = inf).
"""
from __future__ import annotations

import numpy as np

OUTER_EYE_CORNERS = (36, 45)  # 0-based indices of iBUG points 37 and 46
INNER_49 = np.r_[17:60, 61:64, 65:68]  # the 49 inner points: no jaw, no inner-mouth corners
# The 68 iBUG points by face region (0-based).
REGIONS = {"jaw": range(0, 17), "brows": range(17, 27), "nose": range(27, 36), "eyes": range(36, 48), "mouth": range(48, 68)}


def eye_distance(points: np.ndarray) -> float:
    """Outer-eye-corner distance of a 68-point shape: the unit of every normalised error here."""
    return float(np.linalg.norm(points[OUTER_EYE_CORNERS[0]] - points[OUTER_EYE_CORNERS[1]]))


def nme(pred: np.ndarray, gt: np.ndarray, points: np.ndarray | slice = slice(None)) -> float:
    """Normalised mean error of (68,2) `pred` against (68,2) `gt` over `points`."""
    return float(np.linalg.norm(pred[points] - gt[points], axis=1).mean() / eye_distance(gt))


def ced(errors: np.ndarray, limit: float = 0.08, steps: int = 161) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: thresholds (steps,) and fraction of faces below each.
    Non-finite errors (faces without prediction) never count as below."""
    e = np.asarray(errors, float)
    x = np.linspace(0.0, limit, steps)
    y = np.array([(e <= t).mean() if len(e) else 0.0 for t in x])
    return x, y


def auc(errors: np.ndarray, limit: float = 0.08) -> float:
    """Area under the CED up to `limit`, normalised to [0,1] (300-W/300VW convention), exactly:
    each face adds 1 - e/limit (0 beyond the limit or without a prediction), the area of its step
    in the CED.  Until session 27 the 161-point CED was integrated by trapezoids, within ±0.0005
    of this (user test 15: 0.6173 printed for 0.6168)."""
    e = np.asarray(errors, float)
    if not len(e):
        return 0.0
    return float(np.mean(np.where(np.isfinite(e), np.clip(1.0 - e / limit, 0.0, 1.0), 0.0)))


def failure_rate(errors: np.ndarray, limit: float = 0.08) -> float:
    """Fraction of faces with error above `limit` (missing predictions included)."""
    e = np.asarray(errors, float)
    return float((~(e <= limit)).mean()) if len(e) else 0.0


def score_faces(pairs) -> dict:
    """Metrics over (prediction or None, truth) pairs of (68,2) arrays; None = failure.

    NME means are over faces with a prediction; AUC and FR count missing faces as failures.
    """
    e, e49, scored = [], [], []
    for pred, truth in pairs:
        # A stage may report some points missing (DenseReg on a profile): score the points it
        # gives when it gives at least half of them, else the face counts as a failure.
        seen = np.isfinite(pred).all(axis=1) if pred is not None else np.zeros(len(truth), bool)
        ok = seen.sum() >= len(truth) // 2
        e.append(nme(pred, truth, np.flatnonzero(seen)) if ok else np.inf)
        if ok:
            scored.append(seen.mean())
        inner = np.intersect1d(INNER_49, np.flatnonzero(seen))
        e49.append(nme(pred, truth, inner) if ok and len(inner) else np.inf)
    # Every score from the errors as stored (5 decimals): scores pooled from the stored errors of
    # several videos then equal their own (the exact AUC moved by 1e-5 between the two).
    e, e49 = np.round(np.array(e, float), 5), np.array(e49, float)
    finite = np.isfinite(e)
    return {
        "faces": len(e),
        "missing": int((~finite).sum()),
        "points_scored": float(np.mean(scored)) if scored else float("nan"),  # mean fraction of the 68
        "nme_mean": float(e[finite].mean()) if finite.any() else float("nan"),
        "nme_median": float(np.median(e)) if len(e) else float("nan"),
        "auc08": auc(e) if len(e) else float("nan"),
        "fr08": failure_rate(e) if len(e) else float("nan"),
        "nme49_mean": float(e49[finite].mean()) if finite.any() else float("nan"),
        "auc08_49": auc(e49) if len(e) else float("nan"),
        "fr08_49": failure_rate(e49) if len(e) else float("nan"),
        "errors": [None if not np.isfinite(x) else float(x) for x in e],
    }
