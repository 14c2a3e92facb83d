"""What the ``transfer`` subcommand does: render a UV-space texture onto every face of an image,
a video or a webcam stream (``tracker.transfer`` has the numerics).

The texture is either a file (``--texture``, e.g. ``tracker/assets/textures/*.png``) or a face
unwrapped from a photo (``--source-face``).  The output is written atomically: an image through
``atomic_write_image``, a video through a temporary file renamed when complete.  When no face is
found (in the source photo, or in any target frame) nothing is written and the error is one line.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from tracker.errors import InputError, UsageError
from tracker.fileio import IMAGE_EXTENSIONS, atomic_write_image, read_image
from tracker.pipeline import FrameResult, Tracker, TrackerConfig
from tracker.transfer import ColorMatch, load_texture, render_texture, unwrap_face
from tracker.video import READ_AHEAD, VIDEO_EXTENSIONS, AtomicVideoWriter, VideoError, open_video, quiet_opencv, read_frames


@dataclass(frozen=True)
class Look:
    """How the texture is blended: strength in [0,1] and colour matching (``match_colors``)."""

    texture: np.ndarray
    strength: float
    match: ColorMatch


def target_kind(target: str) -> str:
    """'webcam', 'image' (by extension) or 'video' (anything else; opening it checks it)."""
    if target == "webcam":
        return "webcam"
    return "image" if Path(target).suffix.lower() in IMAGE_EXTENSIONS else "video"


def apply_look(frame: np.ndarray, result: FrameResult, look: Look) -> np.ndarray:
    """The frame with the texture on every face, least confident first (the best ends on top)."""
    out = frame
    for face in reversed(result.faces):
        out = render_texture(out, face, look.texture, look.strength, look.match)
    return out


def unwrap_source_face(path: Path, tracker: Tracker) -> np.ndarray:
    """The most confident face of a photo as a UV-space texture (holes mirrored and inpainted)."""
    image = read_image(path)
    faces = tracker.track(image).faces
    if not faces:
        raise InputError(f"{path}: no face found in the --source-face photo")
    texture, _ = unwrap_face(image, faces[0])
    return texture


def _check_args(args, kind: str) -> None:
    if not 0.0 <= args.strength <= 1.0:
        raise UsageError(f"--strength {args.strength}: must be between 0 and 1")
    if args.save_texture is not None and args.source_face is None:
        raise UsageError("--save-texture needs --source-face (a --texture is already a file)")
    suffix = args.out.suffix.lower()
    if kind == "image" and suffix not in IMAGE_EXTENSIONS:
        raise UsageError(f"--out {args.out}: the target is an image, so the output must be one ({', '.join(IMAGE_EXTENSIONS)})")
    if kind != "image" and suffix not in VIDEO_EXTENSIONS:
        raise UsageError(f"--out {args.out}: the target is a video, so the output must be one (e.g. .mp4)")


def _webcam_frames(device: int) -> tuple[Iterator[np.ndarray], float, tuple[int, int]]:
    with quiet_opencv():
        cap = cv2.VideoCapture(device)
        ok, first = cap.read() if cap.isOpened() else (False, None)
    if not ok or first is None:
        cap.release()
        raise VideoError(f"webcam {device}: no camera, or it delivers no frames")
    fps = cap.get(cv2.CAP_PROP_FPS)

    def frames() -> Iterator[np.ndarray]:
        frame = first
        try:
            while frame is not None:
                yield frame
                ok, frame = cap.read()
                frame = frame if ok else None
        finally:
            cap.release()

    return frames(), fps if fps and np.isfinite(fps) and fps > 0 else 30.0, (first.shape[1], first.shape[0])


def _open_stream(args, kind: str) -> tuple[Iterator[np.ndarray], float, tuple[int, int]]:
    """(frames, fps, (width, height)) of a video file or the webcam."""
    if kind == "webcam":
        return _webcam_frames(args.device)
    cap, info = open_video(Path(args.target))
    return read_frames(cap, lambda m: print(f"warning: {m}", file=sys.stderr), args.target, READ_AHEAD), info.fps, (info.width, info.height)


def _transfer_video(args, kind: str, stream, look: Look, config: TrackerConfig) -> int:
    frames, fps, size = stream
    if kind == "webcam":
        print("transferring from the webcam; Ctrl-C stops and saves", file=sys.stderr)
    tracker = Tracker(replace(config, mode="video"))
    writer = AtomicVideoWriter(args.out, fps, size)
    total = with_face = 0
    try:
        for frame in frames:
            result = tracker.track(frame)
            writer.write(apply_look(frame, result, look))
            total += 1
            with_face += bool(result.faces)
            if args.max_frames is not None and total >= args.max_frames:
                break
    except KeyboardInterrupt:
        if kind != "webcam":  # a cut-off file is not the output asked for
            writer.abort()
            raise
    except BaseException:
        writer.abort()
        raise
    if with_face == 0:
        writer.abort()
        raise InputError(f"{args.target}: no face found in any of {total} frames; nothing written")
    writer.close()
    print(f"transfer: face in {with_face}/{total} frames -> {args.out} (engine: {tracker.engine.describe()})")
    return 0


def run_transfer(args) -> int:
    kind = target_kind(args.target)
    _check_args(args, kind)
    # The target first: a missing camera or an unreadable file fails before any other work.
    target = read_image(Path(args.target)) if kind == "image" else None
    stream = _open_stream(args, kind) if kind != "image" else None
    config = TrackerConfig.from_args(args, mode="image", visibility=True)
    image_tracker = Tracker(config) if kind == "image" or args.source_face else None
    if args.source_face:
        texture = unwrap_source_face(args.source_face, image_tracker)
        if args.save_texture:
            atomic_write_image(args.save_texture, texture)
    else:
        texture = load_texture(args.texture)
    # A painted texture keeps its colours and takes the target's lighting; a photographed face
    # takes the target's skin tone as well, or it looks pasted on.
    look = Look(texture, args.strength, args.match or ("lab" if args.source_face else "shading"))
    if stream is not None:
        return _transfer_video(args, kind, stream, look, config)
    result = image_tracker.track(target)
    if not result.faces:
        raise InputError(f"{args.target}: no face found in the target image; nothing written")
    atomic_write_image(args.out, apply_look(target, result, look))
    print(f"transfer: {len(result.faces)} face(s) -> {args.out} (engine: {image_tracker.engine.describe()})")
    return 0
