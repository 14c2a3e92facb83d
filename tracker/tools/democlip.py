"""Make a demo clip from one or more face photos: ``python -m tracker.tools.democlip``.

    python -m tracker.tools.democlip --still A.jpg [--still B.jpg ...] --out CLIP.mp4 [--frames 150] [--seed 0]

The photos are cropped around their most confident face (dlib HOG), scaled to one height and
placed side by side; the picture then moves exactly like a ``tracker.tools.synth300vw`` clip (smooth
random similarity + perspective motion, scale changes, lighting ramp, motion blur, an occluder,
a few frames where the faces leave the picture), steered by the corners of every face box found
on the composite.  No annotations are written: these clips are for ``bench`` and the demos.

The two-face clip of the speed tables (README.md; 2.4 MB, so it is made when needed rather than
shipped) is ``python -m tracker.tools.democlip TWO_FACE_ARGS --out two_faces.mp4``; see TWO_FACE_ARGS.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from tracker.assets import DEMO_IMAGE
from tracker.detector import detect_faces
from tracker.errors import InputError
from tracker.fileio import ImageReadError, read_image
from tracker.tools.synth300vw import FILL, render_clip
from tracker.video import AtomicVideoWriter

DEMO = DEMO_IMAGE.parent
# Two public-domain portraits (sources: README.md, "Licences").  Both faces fill
# more of the frame than synth300vw's one (each is ~70-150 px across), motion starts at the first
# frame (no still lead-in whose end would be a jump), and seed 2 is one where both faces stay
# tracked in most frames (115 of 150 here): the clip is for timing two faces.
TWO_FACE_ARGS = ("--still", str(DEMO / "astronaut.jpg"), "--still", str(DEMO / "grace_hopper.jpg"),
                 "--frames", "150", "--static", "0", "--fill", "0.5,0.7", "--seed", "2")
CONTEXT = 2.6  # crop side / face box side: the head, shoulders and some of the photo's background
HEIGHT = 480  # pixels of each crop on the composite


def face_crop(image: np.ndarray, height: int, context: float = CONTEXT) -> np.ndarray:
    """A square `height` x `height` crop around the image's most confident face."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    faces = detect_faces(gray)
    if not faces:
        raise InputError("no face found (dlib HOG)")
    f = max(faces, key=lambda d: d.score)
    side = context * max(f.x1 - f.x0, f.y1 - f.y0)
    cx, cy = (f.x0 + f.x1) / 2, (f.y0 + f.y1) / 2
    s = height / side
    m = np.array([[s, 0, height / 2 - s * cx], [0, s, height / 2 - s * cy]])
    return cv2.warpAffine(image, m, (height, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)  # (INTER_AREA is bilinear here too)


def face_corners(image: np.ndarray) -> np.ndarray:
    """(4k,2) corners of the k face boxes HOG finds: what steers the motion and the occluder."""
    faces = detect_faces(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    return np.array([(x, y) for d in faces for x in (d.x0, d.x1) for y in (d.y0, d.y1)], np.float64).reshape(-1, 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tracker.tools.democlip", description="Make a demo clip from face photos side by side.")
    ap.add_argument("--still", type=Path, action="append", required=True, help="a face photo (repeat for several faces)")
    ap.add_argument("--out", type=Path, required=True, help="output video (.mp4)")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--static", type=int, default=20, help="leading frames without any motion")
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fill", default=f"{FILL[0]},{FILL[1]}",
                    help="range of the share of the frame height that the faces (together) span, drawn per clip (default: as synth300vw)")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    lo, hi = (float(v) for v in args.fill.split(","))
    crops = []
    for path in args.still:
        try:
            crops.append(face_crop(read_image(path), HEIGHT))
        except ImageReadError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except ValueError as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            return 2
    canvas = np.hstack(crops)
    corners = face_corners(canvas)
    frames, _, _ = render_clip(canvas, corners, (w, h), args.frames, args.static, np.random.default_rng(args.seed), (lo, hi))
    with AtomicVideoWriter(args.out, 30.0, (w, h)) as writer:
        for f in frames:
            writer.write(f)
    print(f"done: {len(frames)} frames, {len(corners) // 4} faces on the composite -> {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
