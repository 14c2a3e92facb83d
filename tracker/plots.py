"""A CED plot drawn with OpenCV, so `eval --plot` needs nothing beyond the runtime."""
from __future__ import annotations

import cv2
import numpy as np

COLORS = [(200, 80, 0), (0, 140, 255), (0, 170, 0), (180, 0, 180), (0, 0, 220), (120, 120, 0), (90, 90, 90)]


def ced_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], limit: float = 0.08, size=(720, 480),
             xlabel: str = "NME (outer-eye-corner normalised)") -> np.ndarray:
    """curves: label -> (thresholds, fraction).  Returns a BGR image."""
    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    x0, y0, x1, y1 = 60, 20, w - 20, h - 50
    font = cv2.FONT_HERSHEY_SIMPLEX

    def px(x, y):
        return int(x0 + (x1 - x0) * x / limit), int(y1 - (y1 - y0) * y)

    for i in range(5):
        y = i / 4
        cv2.line(img, px(0, y), px(limit, y), (225, 225, 225), 1)
        cv2.putText(img, f"{y:.2f}", (8, px(0, y)[1] + 4), font, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    for i in range(5):
        x = limit * i / 4
        cv2.line(img, px(x, 0), px(x, 1), (225, 225, 225), 1)
        cv2.putText(img, f"{x:.3g}", (px(x, 0)[0] - 14, y1 + 18), font, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 1)
    cv2.putText(img, xlabel, (x0 + 120, h - 10), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for i, (label, (xs, ys)) in enumerate(curves.items()):
        color = COLORS[i % len(COLORS)]
        pts = np.array([px(x, y) for x, y in zip(xs, ys)], np.int32)
        cv2.polylines(img, [pts], False, color, 2, cv2.LINE_AA)
        cv2.line(img, (x0 + 12, y0 + 18 + 20 * i), (x0 + 40, y0 + 18 + 20 * i), color, 2)
        cv2.putText(img, label, (x0 + 46, y0 + 22 + 20 * i), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return img
