"""Overlays on BGR images: landmarks per stage, parts, UV iso-lines, boxes.  Shared by the
demo, the video writer and the viewer."""
from __future__ import annotations

import cv2
import numpy as np

from tracker.metrics import OUTER_EYE_CORNERS, eye_distance
from tracker.parts import PART_COLORS

# BGR per stage name; the final landmarks are green whichever stage they come from (mdm, or smooth in video).
STAGE_COLORS = {"densereg": (0, 165, 255), "pca": (255, 200, 0), "mdm": (0, 255, 0), "smooth": (0, 255, 0), "dlib": (255, 0, 255)}


def point_radius(points: np.ndarray, emphasis: float = 1.0) -> int:
    """Dot radius in pixels for a 68-point face: ~1/30 of its eye distance (dots that do not
    hide the face they mark, at any face size)."""
    iod = eye_distance(points) if len(points) == 68 and np.isfinite(points[list(OUTER_EYE_CORNERS)]).all() else 60.0
    return max(1, int(round(emphasis * iod / 30)))


def draw_points(image: np.ndarray, points: np.ndarray, color, radius: int | None = None) -> None:
    r = radius or point_radius(points)
    for x, y in points[np.isfinite(points).all(axis=1)]:
        cv2.circle(image, (int(round(x * 4)), int(round(y * 4))), r * 4, color, -1, cv2.LINE_AA, shift=2)


def draw_label(image: np.ndarray, text: str, org: tuple[int, int], color, scale: float = 0.45) -> None:
    """Text on a filled dark box (``org``: the text's bottom-left corner).  Not the usual thick
    black outline under thin text: OpenCV 5 draws its font with a different advance per
    thickness, so the two strokes drift apart ("#1 tracked0.900")."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    (w, h), base = cv2.getTextSize(text, font, scale, 1)
    x, y = org
    cv2.rectangle(image, (x - 2, y - h - 2), (x + w + 2, y + base), (0, 0, 0), -1)
    cv2.putText(image, text, (x, y), font, scale, color, 1, cv2.LINE_AA)


def warp_to_image(crop_values: np.ndarray, crop_to_image: np.ndarray, shape: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Map a crop-frame array (S,S[,C]) back to image pixels (H,W[,C]); zeros outside the crop."""
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(crop_values, crop_to_image, (shape[1], shape[0]), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def blend_labels(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Colour part labels over the image where labels > 0."""
    out = image.copy()
    m = labels > 0
    out[m] = (image[m] * (1 - alpha) + PART_COLORS[labels[m]] * alpha).astype(np.uint8)
    return out


def uv_isolines(image: np.ndarray, uv: np.ndarray, face: np.ndarray, step: float = 0.05) -> np.ndarray:
    """Draw the iso-lines of u_h (yellow) and u_v (magenta) every `step` over the face."""
    out = image.copy()
    for ch, color in ((0, (0, 255, 255)), (1, (255, 0, 255))):
        q = np.floor(np.nan_to_num(uv[ch], nan=-1) / step)
        edge = face & ((q != np.roll(q, 1, 0)) | (q != np.roll(q, 1, 1)))
        out[edge] = color
    return out


def uv_colormap(image: np.ndarray, uv: np.ndarray, face: np.ndarray) -> np.ndarray:
    """u_h in red, u_v in green over the face."""
    out = image.copy()
    rgb = np.stack([np.zeros_like(uv[0]), np.clip(uv[1], 0, 1), np.clip(uv[0], 0, 1)], -1) * 255
    out[face] = (0.3 * image[face] + 0.7 * rgb[face]).astype(np.uint8)
    return out


def draw_pose_axes(image: np.ndarray, pose, origin: np.ndarray, length: float) -> None:
    """Head axes at `origin`: x red, y green (up), z blue (towards the viewer)."""
    for axis, color in zip(np.eye(3), ((0, 0, 255), (0, 255, 0), (255, 0, 0))):
        d = (pose.rotation @ axis)[:2] * np.array([1.0, -1.0]) * length
        end = origin + d
        cv2.arrowedLine(image, tuple(int(round(v)) for v in origin), tuple(int(round(v)) for v in end), color, 2, cv2.LINE_AA, tipLength=0.15)
