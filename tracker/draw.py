"""Overlays on BGR images: landmarks per stage, parts, UV iso-lines, boxes, and a whole
tracked frame drawn for a picture (``annotate_still``) or a video (``annotate``).  Shared by the
commands, the video writer and the viewer."""
from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from tracker.crop import Patch, crop_patch
from tracker.metrics import OUTER_EYE_CORNERS, eye_distance
from tracker.parts import PART_COLORS, lookup_parts

if TYPE_CHECKING:
    from tracker.densemaps import DenseMaps
    from tracker.pipeline import FaceResult, FrameResult

# BGR per stage name; the final landmarks are green whichever stage they come from (mdm, or smooth in video).
STAGE_COLORS = {"densereg": (0, 165, 255), "pca": (255, 200, 0), "mdm": (0, 255, 0), "smooth": (0, 255, 0), "dlib": (255, 0, 255)}
STAGE_LEGEND = {"densereg": "orange DenseReg", "pca": "cyan PCA", "mdm": "green MDM", "smooth": "green smoothed", "dlib": "magenta dlib"}


def point_radius(points: np.ndarray, emphasis: float = 1.0) -> float:
    """Dot radius in pixels for a 68-point face: ~1/30 of its eye distance (dots that do not
    hide the face they mark, at any face size: down to half a pixel on a tiny face)."""
    iod = eye_distance(points) if len(points) == 68 and np.isfinite(points[list(OUTER_EYE_CORNERS)]).all() else 60.0
    return max(0.5, emphasis * iod / 30)


def draw_points(image: np.ndarray, points: np.ndarray, color, radius: float | None = None) -> None:
    radius = radius or point_radius(points)
    shown = points[np.isfinite(points).all(axis=1)]
    if radius < 1:  # a tiny face: one pixel a point (an anti-aliased circle covers a dozen whatever its radius)
        xy = np.round(shown).astype(int)
        inside = (xy >= 0).all(axis=1) & (xy[:, 0] < image.shape[1]) & (xy[:, 1] < image.shape[0])
        image[xy[inside, 1], xy[inside, 0]] = color
        return
    for x, y in shown:
        cv2.circle(image, (int(round(x * 4)), int(round(y * 4))), int(round(4 * radius)), color, -1, cv2.LINE_AA, shift=2)


def draw_label(image: np.ndarray, text: str, org: tuple[int, int], color, scale: float = 0.45) -> None:
    """Text on a filled dark box (``org``: the text's bottom-left corner), moved inside the picture
    where it would stick out (a face at the top or left edge lost its label: user test 25).  Not
    the usual thick black outline under thin text: OpenCV 5 draws its font with a different
    advance per thickness, so the two strokes drift apart ("#1 tracked0.900")."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    (w, h), base = cv2.getTextSize(text, font, scale, 1)
    x = min(max(int(org[0]), 2), image.shape[1] - w - 2)
    y = max(min(int(org[1]), image.shape[0] - base), h + 2)
    cv2.rectangle(image, (x - 2, y - h - 2), (x + w + 2, y + base), (0, 0, 0), -1)
    cv2.putText(image, text, (x, y), font, scale, color, 1, cv2.LINE_AA)


def warp_to_image(crop_values: np.ndarray, crop_to_image: np.ndarray, shape: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Map a crop-frame array (S,S[,C]) back to image pixels (H,W[,C]); zeros outside the crop.
    Channel-first maps such as ``face.maps.uv`` (2,S,S) are refused (OpenCV read them as a 2-row
    picture of S channels: garbage of shape (H,W,S), user test 10); ``tracker.writers.maps_in_image``
    warps all of a face's maps."""
    if crop_values.ndim == 3 and crop_values.shape[1] == crop_values.shape[2] != crop_values.shape[0]:
        raise ValueError(f"warp_to_image: a (S,S) or (S,S,C) map is expected, got {crop_values.shape} (channel-first? "
                         "warp each channel, np.moveaxis(m, 0, -1), or use tracker.writers.maps_in_image)")
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


def maps_on_patch(maps: DenseMaps, patch: Patch, fg_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uv (2,h,w), face mask (h,w) and depth (h,w) of a face's crop maps on its image patch,
    sampled bilinearly: a large face's parts and overlays follow its outline in image pixels,
    not the crop's (a 128 px crop's labels warped as they were stepped visibly on a 4000 px
    photo; user test 13).  The UV is finite everywhere (the network's at every pixel, the
    template's off the mesh the nearest face pixel's), so the samples at the mask's edge read the
    face's UV."""
    to_patch, shape = patch.to_patch, patch.shape
    uv = warp_to_image(np.ascontiguousarray(maps.uv.transpose(1, 2, 0)), to_patch, shape).transpose(2, 0, 1)
    fg = warp_to_image(maps.fg, to_patch, shape)
    depth = warp_to_image(maps.depth, to_patch, shape)
    return uv, fg > fg_threshold, depth


def part_labels(face: FaceResult, part_map: np.ndarray, shape, fg_threshold: float = 0.5) -> np.ndarray:
    """The face's part labels in image pixels (0 elsewhere), read from its ``part_maps`` on its
    image patch (``maps_on_patch``), as the viewer draws them."""
    labels = np.zeros(shape[:2], np.uint8)
    patch = crop_patch(face.crop_to_image, face.part_maps.fg.shape[0], shape)
    if patch is not None:
        uv, mask, _ = maps_on_patch(face.part_maps, patch, fg_threshold)
        labels[patch.slices] = lookup_parts(uv, part_map, mask)
    return labels


def frame_part_labels(faces: list[FaceResult], part_map: np.ndarray, shape) -> np.ndarray:
    """Part labels of every face in image pixels; where faces overlap, the first face's labels
    win (a picture's best, video's oldest track: ``FrameResult.faces``' order)."""
    labels = np.zeros(shape[:2], np.uint8)
    for face in reversed(faces):
        lab = part_labels(face, part_map, shape[:2])
        labels[lab > 0] = lab[lab > 0]
    return labels


def annotate_still(image: np.ndarray, faces: list[FaceResult], labels: np.ndarray | None = None, all_stages: bool = False) -> np.ndarray:
    """A copy of the picture with part labels blended in colour (when given) and the landmarks
    of every face drawn: the final stage (green), or every stage (orange DenseReg, cyan PCA,
    green MDM; the final one drawn larger)."""
    out = image.copy() if labels is None else blend_labels(image, labels, 0.45)
    for face in faces:
        for stage in face.stages if all_stages else [face.final_stage]:
            draw_points(out, face.stages[stage].points, STAGE_COLORS[stage], point_radius(face.landmarks, 1.0 if stage == face.final_stage else 0.7))
    return out


def annotate(frame: np.ndarray, result: FrameResult, fps: float | None = None) -> np.ndarray:
    """Landmarks (final stage), face ROI and track id, and the tracker's frame rate on this frame
    (``Tracker.track`` alone, labelled so: a run's closing line counts decoding and writing too,
    and "134 fps" beside its "34.8 fps" read as a bug; user test 36)."""
    out = frame.copy() if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    for face in result.faces:
        r = face.roi
        box = cv2.boxPoints(((r.cx, r.cy), (r.size, r.size), np.degrees(r.angle)))
        cv2.polylines(out, [np.round(box).astype(np.int32)], True, (255, 255, 255) if face.detected else (200, 200, 0), 1, cv2.LINE_AA)
        draw_points(out, face.landmarks, STAGE_COLORS[face.final_stage])
        if face.pose is not None and np.isfinite(face.landmarks[30]).all():
            draw_pose_axes(out, face.pose, face.landmarks[30], 0.25 * r.size)
        corner = (int(r.cx - r.size / 2), int(r.cy - r.size / 2) - 4)
        draw_label(out, f"#{face.track_id}", corner, (255, 255, 255), 0.5)
    if fps is not None:
        cv2.putText(out, f"tracker {fps:.0f} fps", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 255), 2, cv2.LINE_AA)
    return out
