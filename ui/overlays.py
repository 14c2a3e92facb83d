"""What the viewer draws over a frame, as one pure function of (frame, result, settings).

No Qt here: the viewer, the recorder and the screenshot script all call ``compose`` so a
recording shows exactly what the window showed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from tracker.crop import crop_patch
from tracker.draw import (
    STAGE_COLORS,
    blend_labels,
    draw_label,
    draw_points,
    draw_pose_axes,
    maps_on_patch,
    point_radius,
    uv_colormap,
    uv_isolines,
)
from tracker.parts import lookup_parts
from tracker.pipeline import FaceResult, FrameResult
from tracker.stages import Stage
from tracker.transfer import DEFAULT_STRENGTH, render_texture

# (attribute, label, shortcut) in the order of the viewer's check boxes.
OVERLAYS: tuple[tuple[str, str, str], ...] = (
    ("densereg", "DenseReg landmarks", "1"),
    ("pca", "PCA landmarks", "2"),
    ("mdm", "MDM landmarks", "3"),
    ("isolines", "UV iso-lines", "I"),
    ("uvmap", "UV colour map", "U"),
    ("parts", "Parts (8 classes)", "P"),
    ("depth", "Depth", "D"),
    ("box", "Face box + track", "B"),
    ("pose", "Head pose axes", "A"),
    ("transfer", "Face transfer", "T"),
)
OVERLAY_TIPS = {
    "mdm": "the refiner's landmarks; in video after temporal smoothing (the 'smooth' stage of exported JSON)",
    "uvmap": "u_h red, u_v green; with Depth on too: these colours, brighter where nearer",
    "depth": "dark = far, yellow = near; with the UV colour map on too: its colours, brighter where nearer",
}


@dataclass
class OverlaySettings:
    """Which overlays are on; ``texture`` (UV space, BGR/BGRA) is used by ``transfer``."""

    densereg: bool = False
    pca: bool = False
    mdm: bool = True
    isolines: bool = False
    uvmap: bool = False
    parts: bool = False
    depth: bool = False
    box: bool = True
    pose: bool = False
    transfer: bool = False
    texture: np.ndarray | None = field(default=None, repr=False)
    strength: float = DEFAULT_STRENGTH
    match: str = "shading"
    fg_threshold: float = 0.5


def depth_relief(depth: np.ndarray, face: np.ndarray) -> np.ndarray:
    """Depth (1 = nearest) stretched to [0,1] over the face's own range (2nd-98th percentile),
    so the relief is visible whatever the absolute values."""
    lo, hi = np.percentile(depth[face], (2, 98))
    return np.clip((depth - lo) / max(hi - lo, 1e-3), 0, 1)


def draw_depth(image: np.ndarray, depth: np.ndarray, face: np.ndarray, alpha: float = 0.65) -> np.ndarray:
    """Depth as a colour ramp over the face (dark = far, bright yellow = near)."""
    out = image.copy()
    if not face.any():
        return out
    colored = cv2.applyColorMap((depth_relief(depth, face) * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    out[face] = (image[face] * (1 - alpha) + colored[face] * alpha).astype(np.uint8)
    return out


def draw_uv_depth(image: np.ndarray, uv: np.ndarray, depth: np.ndarray, face: np.ndarray) -> np.ndarray:
    """UV colour map and depth at once: the UV colours (hue) shaded by depth (brightness,
    nearer = brighter).  Each drawn over the other would hide it: both cover the same pixels."""
    out = uv_colormap(image, uv, face)
    if face.any():
        shade = 0.3 + 0.7 * depth_relief(depth, face)[face]
        out[face] = (out[face] * shade[:, None]).astype(np.uint8)
    return out


def draw_box(image: np.ndarray, face: FaceResult) -> None:
    """The ROI (white: detected this frame, cyan: tracked) with id, state and score."""
    r = face.roi
    box = cv2.boxPoints(((r.cx, r.cy), (r.size, r.size), np.degrees(r.angle)))
    color = (255, 255, 255) if face.detected else (255, 255, 0)
    cv2.polylines(image, [np.round(box).astype(np.int32)], True, color, 1, cv2.LINE_AA)
    state = "detected" if face.detected else "tracked"
    label = f"#{face.track_id} {state} {face.score:.2f}"
    org = (int(box[:, 0].min()), max(int(box[:, 1].min()) - 5, 12))
    draw_label(image, label, org, color)


def compose(frame: np.ndarray, result: FrameResult, settings: OverlaySettings, part_map: np.ndarray | None) -> np.ndarray:
    """The frame with every enabled overlay, drawn face by face (BGR uint8, a new array)."""
    out = frame.copy()
    for face in result.faces:
        if settings.transfer and settings.texture is not None:
            out = render_texture(out, face, settings.texture, settings.strength, settings.match)
        patch = crop_patch(face.crop_to_image, face.maps.fg.shape[0], out.shape)
        if (settings.uvmap or settings.isolines or settings.parts or settings.depth) and patch is not None:
            uv, mask, depth = maps_on_patch(face.maps, patch, settings.fg_threshold)  # the network's maps: what the UV, iso-line and depth views show
            region = out[patch.slices]
            if settings.depth and settings.uvmap:
                region = draw_uv_depth(region, uv, depth, mask)
            elif settings.depth:
                region = draw_depth(region, depth, mask)
            elif settings.uvmap:
                region = uv_colormap(region, uv, mask)
            if settings.parts and part_map is not None:
                part_uv, part_mask = (uv, mask) if face.part_maps is face.maps else maps_on_patch(face.part_maps, patch, settings.fg_threshold)[:2]
                region = blend_labels(region, lookup_parts(part_uv, part_map, part_mask), 0.5)
            if settings.isolines:
                region = uv_isolines(region, uv, mask)
            out[patch.slices] = region
        for stage in (Stage.DENSEREG, Stage.PCA, Stage.MDM):
            if getattr(settings, stage.value) and stage in face.stages:
                # The MDM box shows what is tracked: in video, the refiner's points after smoothing.
                shown = face.stages[Stage.SMOOTH if stage == Stage.MDM and Stage.SMOOTH in face.stages else stage]
                draw_points(out, shown.points, STAGE_COLORS[stage], point_radius(face.landmarks, 1.0 if stage == Stage.MDM else 0.7))
        if settings.pose and face.pose is not None and np.isfinite(face.landmarks[30]).all():
            draw_pose_axes(out, face.pose, face.landmarks[30], 0.25 * face.roi.size)  # from the nose tip
        if settings.box:
            draw_box(out, face)
    return out
