"""Make 300VW-format clips from annotated stills: ``python -m tracker.tools.synth300vw``.

    python -m tracker.tools.synth300vw --images DIR --out ROOT [--list FILE] [--frames 150] [--size 640x480] [--seed 0]

Every annotated image (``<stem>.jpg|png`` + ``<stem>.pts``) becomes ``ROOT/NNN/vid.avi`` with
``ROOT/NNN/annot/000001.pts``...: the picture moves under a smooth random similarity +
perspective motion (sums of sinusoids), with scale changes, a lighting ramp, motion blur when
it moves fast, an occluder sweeping across the face, and a few frames where the face has left
the picture (those frames have no annotation, as in 300VW).  The first ``--static`` frames do not
move at all, so jitter can be measured on them.  ``NNN/synth.json`` (not part of the 300VW
layout) records the number of still frames and the occluder's box per frame.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from tracker.fileio import ImageReadError, atomic_write_json, list_images, read_image
from tracker.pts import PtsError, pts_beside, read_pts, write_pts

OCCLUDER_COLOR = (60, 90, 140)  # BGR, a flat brown


def _smooth(rng: np.random.Generator, n: int, amplitude: float, octaves: int = 3) -> np.ndarray:
    """A smooth random path of n samples within +-amplitude that starts at 0: the motion picks
    up where the still frames left the face (until session 6 it started at a random value, so
    the face jumped by up to a fifth of the frame, 25 degrees and a scale of 1.4 between the
    last still frame and the first moving one: a cut, not motion)."""
    t = np.linspace(0, 1, n)
    out = np.zeros(n)
    for k in range(octaves):
        f = rng.uniform(0.5, 2.0) * (k + 1)
        out += rng.uniform(0.3, 1.0) / (k + 1) * np.sin(2 * np.pi * (f * t + rng.uniform()))
    out -= out[0]
    return amplitude * out / max(np.abs(out).max(), 1e-9)


FILL = (0.25, 0.45)  # range of the share of the frame height the face (its landmarks' extent) spans


def clip_homographies(pts: np.ndarray, size: tuple[int, int], frames: int, static: int, rng: np.random.Generator,
                      fill: tuple[float, float] = FILL) -> list[np.ndarray]:
    """Per-frame 3x3 maps from the still to the video frame."""
    w, h = size
    lo, hi = pts.min(0), pts.max(0)
    face = max(hi - lo)
    centre = (lo + hi) / 2
    base_scale = rng.uniform(*fill) * h / face
    n = frames - static
    tx, ty = _smooth(rng, n, 0.22 * w), _smooth(rng, n, 0.18 * h)
    scale = np.exp(_smooth(rng, n, 0.35))
    rot = _smooth(rng, n, np.radians(25))
    px, py = _smooth(rng, n, 4e-4), _smooth(rng, n, 4e-4)
    # The face leaves the picture for a few frames (tracking must recover).
    leave = rng.integers(n // 3, max(n // 3 + 1, n - 20))
    tx[leave : leave + 6] += w
    hs = []
    for i in range(frames):
        j = max(0, i - static)
        a = 0 if i < static else 1
        s = base_scale * (scale[j] if a else 1.0)
        r = rot[j] * a
        c, si = np.cos(r) * s, np.sin(r) * s
        A = np.array([[c, -si, 0], [si, c, 0], [0, 0, 1.0]])
        T0 = np.array([[1, 0, -centre[0]], [0, 1, -centre[1]], [0, 0, 1.0]])
        T1 = np.array([[1, 0, w / 2 + tx[j] * a], [0, 1, h / 2 + ty[j] * a], [0, 0, 1.0]])
        P = np.array([[1, 0, 0], [0, 1, 0], [px[j] * a, py[j] * a, 1.0]])
        hs.append(T1 @ P @ A @ T0)
    return hs


def occluder_box(points: np.ndarray, t: float) -> tuple[int, int, int, int]:
    """The occluder at time t in [0,1) of its sweep: a bar a quarter of the face wide (about a
    hand) crossing the face's landmark box from left to right; (x0, y0, x1, y1) pixels, ends
    inclusive as cv2.rectangle draws them."""
    lo, hi = points.min(0), points.max(0)
    w = hi[0] - lo[0]
    x = int(lo[0] - 0.3 * w + t * 1.6 * w)
    return x, int(lo[1]), x + int(0.25 * w), int(hi[1])


def render_clip(image: np.ndarray, pts: np.ndarray, size: tuple[int, int], frames: int, static: int, rng: np.random.Generator,
                fill: tuple[float, float] = FILL):
    """Frames (list of BGR), per-frame landmarks (None where the face is out of the picture) and
    per-frame occluder boxes (``occluder_box``; None on frames without the occluder)."""
    w, h = size
    hs = clip_homographies(pts, size, frames, static, rng, fill)
    gain = 1.0 + _smooth(rng, frames, 0.35)
    occ_start = rng.integers(static, max(static + 1, frames - 30))
    occ_len = 25
    out_frames, out_pts, out_occ = [], [], []
    prev = None
    for i, H in enumerate(hs):
        frame = cv2.warpPerspective(image, H, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)  # reflecting would duplicate the face
        p = cv2.perspectiveTransform(pts[None].astype(np.float64), H)[0]
        if prev is not None:
            speed = np.linalg.norm(p - prev, axis=1).mean()
            if speed > 6:  # motion blur along the motion
                k = int(min(15, speed / 2)) | 1
                kernel = np.zeros((k, k), np.float32)
                d = (p - prev).mean(0)
                d /= max(np.linalg.norm(d), 1e-9)
                a, b = (int(k / 2 - d[0] * k / 2), int(k / 2 - d[1] * k / 2)), (int(k / 2 + d[0] * k / 2), int(k / 2 + d[1] * k / 2))
                cv2.line(kernel, a, b, 1.0, 1)
                frame = cv2.filter2D(frame, -1, kernel / max(kernel.sum(), 1e-9))
        prev = p
        if i >= static:
            frame = np.clip(frame.astype(np.float32) * gain[i], 0, 255).astype(np.uint8)
        occ = occluder_box(p, (i - occ_start) / occ_len) if occ_start <= i < occ_start + occ_len else None
        if occ is not None:
            cv2.rectangle(frame, occ[:2], occ[2:], OCCLUDER_COLOR, -1)
        inside = (p[:, 0] >= 0).all() and (p[:, 0] < w).all() and (p[:, 1] >= 0).all() and (p[:, 1] < h).all()
        out_frames.append(frame)
        out_pts.append(p if inside else None)
        out_occ.append(occ)
    return out_frames, out_pts, out_occ


HIDDEN_FRAMES = 13  # how long a board hides the subject wholly in a bystander clip (user test 8's clip)
BOARD_COLOR = (90, 110, 120)


def face_layer(image: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A still's face cut out: the picture and a feathered elliptic alpha (H,W,1) around its landmarks."""
    lo, hi = pts.min(0), pts.max(0)
    c, (fw, fh) = (lo + hi) / 2, hi - lo
    alpha = np.zeros(image.shape[:2], np.float32)
    cv2.ellipse(alpha, (int(c[0]), int(c[1] - 0.1 * fh)), (int(0.8 * fw), int(0.95 * fh)), 0, 0, 360, 1.0, -1)
    return image, cv2.GaussianBlur(alpha, (0, 0), max(2.0, 0.1 * fw))[..., None]


def _place(pts: np.ndarray, height: float, centre: tuple[float, float], angle: float) -> np.ndarray:
    """The (2,3) similarity that puts a face's landmark box `height` px tall, centred at `centre`, turned by `angle`."""
    lo, hi = pts.min(0), pts.max(0)
    s = height / max(hi[1] - lo[1], 1e-6)
    m = cv2.getRotationMatrix2D(tuple(float(v) for v in (lo + hi) / 2), np.degrees(angle), s)
    m[:, 2] += np.asarray(centre) - (lo + hi) / 2
    return m


def render_bystander_clip(image: np.ndarray, pts: np.ndarray, other: np.ndarray, other_pts: np.ndarray, size: tuple[int, int],
                          frames: int, rng: np.random.Generator, hidden: int = HIDDEN_FRAMES, shift: float = 0.0):
    """The subject (its whole still, swaying near the centre) and another person's face that walks
    in from the right and stays; a board hides the subject wholly for ``hidden`` frames from about
    a third of the clip (no annotation there: in 300VW only the subject is annotated, where it
    shows), after which the subject is ``shift`` of the width further left (it moved meanwhile).
    The tracker's output must come back to the subject afterwards, not stay on the other person.
    Frames (BGR), per-frame subject landmarks (None while hidden) and the board's boxes."""
    w, h = size
    layer, alpha = face_layer(other, other_pts)
    hide = min(int(rng.integers(frames // 3, frames // 2)), max(frames - hidden - 1, 0))
    phase = rng.uniform(0, 2 * np.pi, 3)
    out_frames, out_pts, out_board = [], [], []
    for i in range(frames):
        t = i / 30.0
        x0 = (0.4 - (shift if i >= hide else 0.0)) * w
        m = _place(pts, 0.42 * h, (x0 + 20 * np.sin(t + phase[0]), 0.5 * h + 8 * np.sin(0.7 * t + phase[1])),
                   np.radians(6) * np.sin(0.5 * t + phase[2]))
        frame = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        x = float(np.interp(i, [0, frames // 8, frames // 3], [1.3 * w, 1.3 * w, 0.82 * w]))
        mb = _place(other_pts, 0.3 * h, (x, 0.45 * h), np.radians(4) * np.sin(0.8 * t))
        a = cv2.warpAffine(alpha, mb, (w, h))[..., None]
        frame = frame * (1 - a) + cv2.warpAffine(layer, mb, (w, h)).astype(np.float32) * a
        frame = np.clip(frame, 0, 255).astype(np.uint8)
        p = cv2.transform(pts[None].astype(np.float64), m)[0]
        board = None
        if hide <= i < hide + hidden:
            lo, hi = p.min(0), p.max(0)
            pad = 0.35 * (hi - lo)
            board = (int(lo[0] - pad[0]), int(lo[1] - 1.5 * pad[1]), int(hi[0] + pad[0]), int(hi[1] + pad[1]))
            cv2.rectangle(frame, board[:2], board[2:], BOARD_COLOR, -1)
        out_frames.append(frame)
        out_pts.append(None if board is not None else p)
        out_board.append(board)
    return out_frames, out_pts, out_board


def write_clip(folder: Path, frames: list[np.ndarray], pts: list[np.ndarray | None], static: int, fps: float = 30.0,
               occluders: list | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    # Not part of the 300VW layout: tells the evaluation which frames are still (for jitter) and
    # where the occluder is (1-based frame number -> box, for benchmarks/bench_occlusion.py).
    occ = {str(i): list(b) for i, b in enumerate(occluders or [], start=1) if b is not None}
    atomic_write_json(folder / "synth.json", {"static_frames": static, "fps": fps, "occluders": occ})
    h, w = frames[0].shape[:2]
    tmp = folder / ".vid.partial.avi"
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()
    for i, p in enumerate(pts, start=1):
        if p is not None:
            write_pts(folder / "annot" / f"{i:06d}.pts", p)
    tmp.replace(folder / "vid.avi")


# Clockwise quarter turns of a clip: OpenCV's code and where a pixel centre (x, y) of a w x h
# frame goes (a camera on its side, a person lying down).
TURNS = {
    90: (cv2.ROTATE_90_CLOCKWISE, lambda x, y, w, h: (h - 1 - y, x)),
    180: (cv2.ROTATE_180, lambda x, y, w, h: (w - 1 - x, h - 1 - y)),
    270: (cv2.ROTATE_90_COUNTERCLOCKWISE, lambda x, y, w, h: (y, w - 1 - x)),
}


def turn_clip(frames: list[np.ndarray], pts: list[np.ndarray | None], occluders: list | None, degrees: int):
    """A rendered clip turned clockwise by `degrees` (0, 90, 180 or 270): its frames, points
    and occluder boxes."""
    if degrees == 0:
        return frames, pts, occluders
    code, move = TURNS[degrees]
    h, w = frames[0].shape[:2]

    def points(p: np.ndarray) -> np.ndarray:
        return np.stack(move(p[:, 0], p[:, 1], w, h), axis=1)

    def box(b):
        corners = points(np.array([[b[0], b[1]], [b[2], b[3]]], float))
        return tuple(int(v) for v in (*corners.min(0), *corners.max(0)))  # pixels, ends inclusive as before

    return ([cv2.rotate(f, code) for f in frames], [None if p is None else points(p) for p in pts],
            None if occluders is None else [None if b is None else box(b) for b in occluders])


def _annotated(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """A still and its 68 points, or None after a `skipped:` line."""
    try:
        return read_image(path), read_pts(pts_beside(path), expected=68)
    except (ImageReadError, PtsError) as exc:
        print(f"skipped: {exc}", file=sys.stderr)
        return None


STATIC_FRAMES = 20
CLIP_MEMORY = 4 * 2**30  # bytes: the frames of one clip, held while it is rendered


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tracker.tools.synth300vw", description="Make 300VW-format clips from annotated stills.")
    ap.add_argument("--images", type=Path, required=True, help="folder of <stem>.jpg|png + <stem>.pts")
    ap.add_argument("--out", type=Path, required=True, help="300VW-style output root")
    ap.add_argument("--list", type=Path, help="only these images (paths relative to --images, e.g. splits/val.txt)")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--static", type=int, help=f"leading frames without any motion (for jitter; default {STATIC_FRAMES}, or --frames - 1 if fewer)")
    ap.add_argument("--size", default="640x480", help="WIDTHxHEIGHT of the clips (default 640x480)")
    ap.add_argument("--limit", type=int, default=0, help="at most N clips")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bystanders", action="store_true",
                    help="clips of two people instead: the subject and the next image's face walking in beside it; "
                         "the subject hidden for a moment (the output must come back to it)")
    ap.add_argument("--hidden", type=int, help=f"--bystanders: frames the subject is hidden for (default {HIDDEN_FRAMES}, or --frames - 1 if fewer)")
    ap.add_argument("--turn", type=int, choices=sorted([0, *TURNS]), default=0,
                    help="turn every clip clockwise by this many degrees, its annotations with it (a face lying on its side)")
    ap.add_argument("--return-shift", type=float,
                    help="--bystanders: how far left the subject comes back, as a fraction of the width (0 to 0.3; default 0)")
    args = ap.parse_args(argv)
    if args.frames < 1:
        ap.error(f"--frames {args.frames}: a clip needs at least one frame")
    if args.static is None:  # (the error named an option not given: user test 23)
        args.static = min(STATIC_FRAMES, args.frames - 1)
    if not 0 <= args.static < args.frames:  # (an IndexError traceback for --frames 20; user test 22)
        ap.error(f"--static {args.static} must be 0 or more and less than --frames {args.frames}")
    if not args.bystanders and (args.hidden is not None or args.return_shift is not None):  # (given, whatever the value; review 33)
        ap.error("--hidden and --return-shift shape --bystanders clips; without --bystanders they do nothing")
    if args.hidden is None:  # (the error named an option not given: review 33)
        args.hidden = min(HIDDEN_FRAMES, args.frames - 1)
    if not 0 <= args.hidden < args.frames:  # (one message for both options: user test 24)
        ap.error(f"--hidden {args.hidden} must be 0 or more and less than --frames {args.frames}")
    args.return_shift = args.return_shift or 0.0
    if not 0 <= args.return_shift <= 0.3:
        ap.error(f"--return-shift {args.return_shift:g} must be between 0 and 0.3")
    if args.limit < 0:
        ap.error(f"--limit {args.limit}: give a number of clips, 0 for all")
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:  # (a traceback; user test 22)
        ap.error(f"--size {args.size}: give WIDTHxHEIGHT, e.g. 640x480")
    if min(w, h) < 64:
        ap.error(f"--size {args.size}: at least 64 pixels each way")
    if args.frames * w * h * 3 > CLIP_MEMORY:  # a clip is rendered in memory (a MemoryError traceback: user test 24)
        ap.error(f"--size {args.size} with --frames {args.frames}: a clip would take {args.frames * w * h * 3 / 2**30:.1f} GiB "
                 f"of memory (at most {CLIP_MEMORY / 2**30:g} GiB): make it smaller or shorter")
    if args.list:
        images = [args.images / line.strip() for line in args.list.read_text().splitlines() if line.strip()]
    else:
        images = list_images(args.images, recursive=True)
    images = [p for p in images if pts_beside(p).exists()]
    if args.limit:
        images = images[: args.limit]
    if not images:
        print(f"error: {args.images}: no annotated images (<stem>.jpg|png with <stem>.pts)", file=sys.stderr)
        return 2
    made = skipped = 0
    for k, path in enumerate(images, start=1):
        folder = args.out / f"{k:03d}"
        if (folder / "vid.avi").exists():
            continue
        subject = _annotated(path)
        other = _annotated(images[k % len(images)]) if args.bystanders and subject else None  # the next image's face
        if subject is None or (args.bystanders and other is None):
            skipped += 1
            continue
        image, pts = subject
        rng = np.random.default_rng(args.seed * 100003 + k)
        if other is not None:
            frames, fpts, occluders = render_bystander_clip(image, pts, *other, (w, h), args.frames, rng, args.hidden, args.return_shift)
            static = 0
        else:
            frames, fpts, occluders = render_clip(image, pts, (w, h), args.frames, args.static, rng)
            static = args.static
        frames, fpts, occluders = turn_clip(frames, fpts, occluders, args.turn)
        write_clip(folder, frames, fpts, static, occluders=occluders)
        made += 1
    print(f"done: {made} clips written to {args.out}, {skipped} images skipped")
    return 1 if skipped else 0


if __name__ == "__main__":
    raise SystemExit(main())
