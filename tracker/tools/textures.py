"""The example face-transfer textures, made here from scratch so they are licence-clean.

``python -m tracker.tools.textures`` writes into ``tracker/assets/textures/`` (256x256 PNG, UV
convention of ``tracker.transfer``):

* ``grid.png`` — u_h in red, u_v in green with a line every 1/16 (thick every 1/4): shows
  which template point every face pixel was matched to.
* ``facepaint.png`` — BGRA face paint drawn from the template's part map and landmark UVs
  (``tracker/assets/template.npz``): dark eye rings, red lips, cheek stripes, a forehead
  chevron; transparent elsewhere so skin shows through.
* ``astronaut_unwrapped.png`` — the bundled public-domain astronaut still, unwrapped into UV
  space with the shipped network (``transfer.unwrap_face``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from tracker.assets import DEMO_IMAGE, TEXTURE_DIR, verified_asset
from tracker.fileio import atomic_write_image
from tracker.parts import LEFT_EYE, LOWER_LIP, RIGHT_EYE, UPPER_LIP

SIZE = 256


def to_texel(uv: np.ndarray, size: int = SIZE) -> np.ndarray:
    """(N,2) template UVs -> (N,2) texture pixel positions (x right, y down)."""
    uv = np.asarray(uv, np.float64).reshape(-1, 2)
    return np.stack([uv[:, 0] * size, (1.0 - uv[:, 1]) * size], -1)


def grid_texture(size: int = SIZE, step: int = 16) -> np.ndarray:
    """UV colour ramp (u_h red, u_v green, as the viewer's UV colour map) with grid lines."""
    u = (np.arange(size) + 0.5) / size
    uh, uv = np.meshgrid(u, 1.0 - u)
    tex = np.stack([np.full_like(uh, 0.35), uv, uh], -1) * 255
    tex = tex.astype(np.uint8)
    for i in range(0, size + 1, size // step):
        thick = 2 if i % (size // 4) == 0 else 1
        color = (255, 255, 255) if thick == 2 else (40, 40, 40)
        cv2.line(tex, (i, 0), (i, size), color, thick)
        cv2.line(tex, (0, i), (size, i), color, thick)
    return tex


def facepaint_texture(part_map: np.ndarray, landmark_uv: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Procedural BGRA face paint.  Every stroke is placed by landmark UVs or part labels, so it
    lands on the same facial feature whatever the face's pose."""
    pm = cv2.resize(part_map, (size, size), interpolation=cv2.INTER_NEAREST)
    p = to_texel(landmark_uv, size)
    color = np.zeros((size, size, 3), np.uint8)
    alpha = np.zeros((size, size), np.uint8)

    def paint(mask: np.ndarray, bgr, a: int) -> None:
        color[mask > 0] = bgr
        alpha[mask > 0] = a

    def pts(*idx) -> np.ndarray:
        return np.round(p[list(idx)] * 4).astype(np.int32)  # 2 bits of sub-pixel precision (shift=2)

    # Dark rings around the eyes (the eyes themselves stay clear).
    eyes = np.isin(pm, (LEFT_EYE, RIGHT_EYE)).astype(np.uint8)
    ring = cv2.dilate(eyes, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (19, 15))) - eyes
    paint(ring, (30, 20, 20), 220)
    # Lips.
    paint(np.isin(pm, (UPPER_LIP, LOWER_LIP)).astype(np.uint8), (40, 30, 200), 230)
    # Three stripes on each cheek, from beside the nose out to the jaw line.
    stripes = np.zeros((size, size), np.uint8)
    for nose, jaw in ((31, (2, 3, 4)), (35, (14, 13, 12))):
        for k, j in enumerate(jaw):
            start = p[nose] + (p[j] - p[nose]) * 0.25 + np.array([0.0, -6.0 + 6.0 * k])
            end = p[nose] + (p[j] - p[nose]) * 0.85
            cv2.line(stripes, tuple(np.round(start * 4).astype(int)), tuple(np.round(end * 4).astype(int)), 255, 5, cv2.LINE_AA, shift=2)
    paint(stripes, (220, 140, 20), 210)
    # Forehead chevron above the brows' inner ends, and a line down the nose bridge.
    top = (p[21] + p[22]) / 2 + np.array([0.0, -size * 0.2])
    chevron = np.zeros((size, size), np.uint8)
    brow_line = np.round(np.array([p[19], (p[21] + p[22]) / 2 - [0, 10], p[24]]) * 4).astype(np.int32)
    cv2.polylines(chevron, [brow_line], False, 255, 6, cv2.LINE_AA, shift=2)
    cv2.circle(chevron, tuple(np.round(top * 4).astype(int)), int(size * 0.04 * 4), 255, -1, cv2.LINE_AA, shift=2)
    cv2.polylines(chevron, [pts(27, 28, 29, 30)], False, 255, 3, cv2.LINE_AA, shift=2)
    paint(chevron, (40, 210, 240), 220)
    # Soft edges: the strokes fade over a pixel or two instead of aliasing.
    alpha = cv2.GaussianBlur(alpha, (3, 3), 0)
    return np.dstack([color, alpha])


def astronaut_texture(size: int = SIZE, threads: int = 1) -> np.ndarray:
    """The bundled astronaut's face unwrapped as ``transfer --source-face`` unwraps one (through
    the template fitted to its landmarks)."""
    from tracker.fileio import read_image
    from tracker.pipeline import Tracker, TrackerConfig
    from tracker.transfer import unwrap_face

    tracker = Tracker(TrackerConfig(mode="image", threads=threads, visibility=True, template_maps=True))
    image = read_image(DEMO_IMAGE)
    faces = tracker.track(image).faces
    if not faces:
        raise RuntimeError(f"{DEMO_IMAGE}: no face found, cannot unwrap")
    texture, _ = unwrap_face(image, faces[0], size)
    return texture


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=TEXTURE_DIR)
    args = ap.parse_args(argv)
    with np.load(verified_asset("template.npz")) as z:
        part_map, landmark_uv = z["part_map"], z["landmark_uv"]
    outputs = {
        "grid.png": grid_texture(),
        "facepaint.png": facepaint_texture(part_map, landmark_uv),
        "astronaut_unwrapped.png": astronaut_texture(),
    }
    for name, image in outputs.items():
        atomic_write_image(args.out / name, image)
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
