"""The face-centred crop that the DenseReg network sees, shared by training and run time.

A ``Roi`` is a square of side ``size`` centred at ``(cx, cy)`` and rotated by ``angle``
(radians, the image x axis turned towards y).  It comes from landmarks (tracking, training) or
from a detector box (the first frame), calibrated so that both give the same crop on average:
the network is trained on exactly what the tracker will feed it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# From the ground truth of the 300-W training faces: relative to the landmark bounding box
# (centre c, side s = max(w,h)), the template's face mask spans x in [-0.5, 0.5] s and
# y in [-0.79, 0.50] s (medians).  The crop centres that and leaves ~15% context around it.
# Checked on 194 training faces: 99.4% of the face-mask pixels fall inside the crop and the
# face reaches 0.82 of the half-side in the median (0.87 at the 90th percentile).
NETWORK_INPUT = 128  # side of the crop the shipped `realtime` network takes (training/model.py)
ROI_SHIFT_UP = 0.15
ROI_SCALE = 1.6
# Per detector: (scale, upward shift) of the crop relative to its box side, calibrated on the
# training split by `python -m training.calibrate_roi --detector hog|cnn`.  A box given by the
# caller ("given") is read as the tight box around the face's 68 landmarks (jaw to jaw, brows to
# chin; what the 300-W bounding-box lists call the ground-truth box), which makes its crop
# exactly the landmark crop of the training data (upright).  Looser detector boxes work too:
# README, "Giving the face boxes yourself", has the measurements.
BOX_CALIBRATION = {"hog": (1.553, 0.053), "cnn": (1.580, -0.018), "given": (ROI_SCALE, ROI_SHIFT_UP)}
MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255  # RGB
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


@dataclass(frozen=True)
class Roi:
    cx: float
    cy: float
    size: float
    angle: float = 0.0


def roi_from_landmarks(pts: np.ndarray) -> Roi:
    """Crop around (68,2) landmarks (NaN rows ignored), rotated with the eye line."""
    good = np.isfinite(pts).all(axis=1)
    p = pts[good]
    lo, hi = p.min(axis=0), p.max(axis=0)
    s = float(max(hi - lo))
    eyes = pts[[36, 45]]
    angle = float(np.arctan2(*(eyes[1] - eyes[0])[::-1])) if np.isfinite(eyes).all() else 0.0
    # Shift "up" in the face's own frame so that rotated faces keep their forehead in view.
    up = np.array([np.sin(angle), -np.cos(angle)])
    c = (lo + hi) / 2 + ROI_SHIFT_UP * s * up
    return Roi(float(c[0]), float(c[1]), ROI_SCALE * s, angle)


def roi_from_box(x0: float, y0: float, x1: float, y1: float, detector: str = "hog", angle: float = 0.0) -> Roi:
    """Crop around a face box, calibrated for the detector that made it; `angle`: the face's
    roll (0: upright; a quarter turn for a face found in a picture turned by one)."""
    scale, shift = BOX_CALIBRATION[detector]
    w = max(x1 - x0, y1 - y0)
    # the calibration's shift is towards the top of the head, in the face's own frame
    return Roi((x0 + x1) / 2 + shift * w * math.sin(angle), (y0 + y1) / 2 - shift * w * math.cos(angle), scale * w, angle)


def prominence(roi: Roi, frame_size: tuple[int, int]) -> float:
    """How much the face in `roi` is the subject of a (w, h) picture: the crop's size, discounted
    by its distance from the picture's centre counted in face sizes (a face its own size away from
    the centre counts half).  On the 12 validation pictures with several faces this picks the
    annotated face 12 times; the largest face 8 times, the best-scoring one 8 times."""
    d = np.hypot(roi.cx - frame_size[0] / 2, roi.cy - frame_size[1] / 2)
    return roi.size / (1.0 + d / max(roi.size, 1e-6))


def most_prominent(rois: list[Roi], frame_size: tuple[int, int]) -> int | None:
    """The index of the subject among a (w, h) picture's face crops (``prominence``; of equal
    ones the first), None without one."""
    return max(range(len(rois)), key=lambda i: prominence(rois[i], frame_size)) if rois else None


def crop_matrix(roi: Roi, out_size: int) -> np.ndarray:
    """(2,3) affine taking image pixel centres to crop pixel centres."""
    s = out_size / roi.size
    c, si = np.cos(roi.angle), np.sin(roi.angle)
    R = np.array([[c, si], [-si, c]]) * s  # rotates the ROI's x axis onto the crop's x axis
    t = (out_size - 1) / 2 - R @ np.array([roi.cx, roi.cy])
    return np.hstack([R, t[:, None]])


def invert(m: np.ndarray) -> np.ndarray:
    """Inverse of a (2,3) affine, or of each of (...,2,3) (closed form: LAPACK's inv on a 2x2,
    cold in the cache, cost ~40 us a call in the per-frame loop)."""
    out = np.empty(np.shape(m))
    det = m[..., 0, 0] * m[..., 1, 1] - m[..., 0, 1] * m[..., 1, 0]
    out[..., 0, 0], out[..., 1, 1] = m[..., 1, 1] / det, m[..., 0, 0] / det
    out[..., 0, 1], out[..., 1, 0] = -m[..., 0, 1] / det, -m[..., 1, 0] / det
    out[..., 2] = -(out[..., :2] @ m[..., 2:])[..., 0]
    return out


@dataclass(frozen=True)
class Patch:
    """The axis-aligned part of an image that an (S,S) crop covers: its top-left corner (x0, y0),
    its (h, w), and ``to_patch``, the crop -> image affine moved into the patch's coordinates.
    Drawing a face's maps on its patch instead of the whole frame costs the face's pixels, not
    the frame's (a 4K frame's overlays held the viewer's window 0.4-3 s a frame)."""

    x0: int
    y0: int
    shape: tuple[int, int]
    to_patch: np.ndarray

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y0 + self.shape[0]), slice(self.x0, self.x0 + self.shape[1])


def crop_patch(crop_to_image: np.ndarray, crop_size: int, image_shape: tuple[int, ...]) -> Patch | None:
    """The ``Patch`` of an image of ``image_shape`` (H, W, ...) that a crop covers; None off the image."""
    e0, e1 = -0.5, crop_size - 0.5  # the crop's outer edges (its pixel centres run 0..S-1; review 35)
    corners = np.array([[e0, e0], [e1, e0], [e0, e1], [e1, e1]], np.float64) @ crop_to_image[:, :2].T + crop_to_image[:, 2]
    # the pixels any part of which it covers (pixel i spans i - 0.5 .. i + 0.5)
    x0, y0 = np.maximum(np.floor(corners.min(0) + 0.5).astype(int), 0)
    x1 = min(int(np.ceil(corners[:, 0].max() + 0.5)), image_shape[1])
    y1 = min(int(np.ceil(corners[:, 1].max() + 0.5)), image_shape[0])
    if x1 <= x0 or y1 <= y0:
        return None
    m = np.asarray(crop_to_image, np.float64).copy()
    m[:, 2] -= (x0, y0)
    return Patch(int(x0), int(y0), (y1 - y0, x1 - x0), m)


def outside_share(roi: Roi, shape) -> float:
    """The share of the crop's area that lies outside a picture of `shape` (H, W, ...)."""
    edges = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])  # a 1-px crop's outer corners
    crop = transform_points(invert(crop_matrix(roi, 1)), edges)
    h, w = shape[:2]
    picture = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])
    inside, _ = cv2.intersectConvexConvex(crop.astype(np.float32), picture.astype(np.float32))
    return float(max(0.0, 1.0 - inside / roi.size**2))


def transform_points(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a (2,3) affine to (N,2) points, or each of (...,2,3) to its (...,N,2)."""
    return pts @ np.swapaxes(m[..., :2], -1, -2) + m[..., None, :, 2]


def warp_points_to_crop(pts: np.ndarray, roi: Roi, out_size: int) -> np.ndarray:
    """(N,2) image pixels -> crop pixels of the `out_size` crop of `roi`."""
    return transform_points(crop_matrix(roi, out_size), pts)


def warp_points_to_image(pts: np.ndarray, roi: Roi, out_size: int) -> np.ndarray:
    """(N,2) crop pixels -> image pixels (inverse of ``warp_points_to_crop``)."""
    return transform_points(invert(crop_matrix(roi, out_size)), pts)


# Crops that shrink more than this are block-averaged down to a zoom of 4 before their blur.
PRESHRINK_ZOOM = 16.0


def warp_image(image: np.ndarray, roi: Roi, out_size: int, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """The ROI resampled to (out_size, out_size); outside the image is black."""
    m = crop_matrix(roi, out_size)
    zoom = roi.size / out_size
    if zoom > 1.5 and interpolation == cv2.INTER_LINEAR:
        # Shrinking a lot with bilinear sampling aliases: pre-blur in proportion to the zoom-out,
        # on the pixels the crop samples only (blurring a whole 8K frame would cost more than
        # the net): the rotated ROI's bounding box, plus the blur's radius and a pixel for the
        # bilinear sampling, so that every sampled pixel is blurred from its true neighbours.
        sigma = 0.4 * zoom
        reach = roi.size / 2 * (abs(np.cos(roi.angle)) + abs(np.sin(roi.angle)))
        half = int(np.ceil(reach + 3 * sigma)) + 3
        x0, y0 = max(int(roi.cx) - half, 0), max(int(roi.cy) - half, 0)
        x1, y1 = min(int(roi.cx) + half, image.shape[1]), min(int(roi.cy) + half, image.shape[0])
        if x1 <= x0 or y1 <= y0:
            return np.zeros((out_size, out_size) + image.shape[2:], image.dtype)
        image, m = image[y0:y1, x0:x1], m.copy()
        m[:, 2] += m[:, :2] @ np.array([x0, y0], float)
        if zoom > PRESHRINK_ZOOM:
            # A blur's cost grows with its sigma: a caller's box 19x a 3000 px photo took minutes
            # (user test 22).  Averaging pixel blocks first (INTER_AREA) leaves a small blur.
            h, w = image.shape[:2]
            k = zoom / 4
            image = cv2.resize(image, (max(1, round(w / k)), max(1, round(h / k))), interpolation=cv2.INTER_AREA)
            scale = np.array([w / image.shape[1], h / image.shape[0]])
            m[:, 2] += m[:, :2] @ ((scale - 1) / 2)  # a small pixel's centre in the region's pixels
            m[:, :2] *= scale
            sigma = 0.4 * zoom / scale.mean()
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    return cv2.warpAffine(image, m, (out_size, out_size), flags=interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


# Every uint8 value's normalised float per RGB channel, (256,3): the same float32 arithmetic as
# (x - MEAN) / STD, done once, so that a crop is normalised by three table lookups (4x faster
# per frame than converting, subtracting, dividing and transposing the crop).
_NORMALISED = (np.arange(256, dtype=np.float32)[:, None] - MEAN) / STD


def to_network_input(crops_bgr: np.ndarray) -> np.ndarray:
    """(N,S,S,3) or (S,S,3) uint8 BGR -> (N,3,S,S) float32 normalised RGB (ImageNet stats)."""
    x = np.asarray(crops_bgr)
    if x.ndim == 3:
        x = x[None]
    if x.dtype != np.uint8:
        x = (x[..., ::-1].astype(np.float32) - MEAN) / STD
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    out = np.empty((x.shape[0], 3) + x.shape[1:3], np.float32)
    for c in range(3):  # RGB channel c is BGR channel 2 - c
        np.take(_NORMALISED[:, c], x[..., 2 - c], out=out[:, c])
    return out
