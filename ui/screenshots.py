"""The README's screenshots, rendered offscreen: ``python -m ui.screenshots [--out docs/screenshots]``.

* ``viewer_landmarks.png`` — the viewer on the bundled clip: landmarks of all three stages, face
  box with track state, head-pose axes.
* ``viewer_parts.png`` — the same frame with the 8 parts and the UV iso-lines.
* ``viewer_transfer.png`` — the viewer with the face-transfer overlay (face paint).
* ``transfer.png`` — face transfer: the bundled still, with the grid texture (shows the
  correspondence) and the face paint, the paint on a tilted frame of the clip, and the still's
  face unwrapped into UV space (what ``--source-face`` transfers).

Every frame comes from the shipped models, so the pictures show what they really do today.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2
import numpy as np

from tracker.assets import DEMO_CLIP, DEMO_IMAGE, TEXTURE_DIR
from tracker.draw import draw_label
from tracker.fileio import atomic_write_bytes, read_image
from tracker.pipeline import Tracker, TrackerConfig
from tracker.sources import SourceSpec, VideoSource
from tracker.transfer import DEFAULT_STRENGTH, Look, apply_look, load_texture, unwrap_source_face

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
MAX_BYTES = 300_000  # keep the README light
FRAME = 100  # a frame of the clip where the head is tilted: the pose axes show it


def save_png(path: Path, bgr: np.ndarray) -> None:
    """PNG at the highest compression, scaled down in steps until it fits MAX_BYTES."""
    image = bgr
    while True:
        data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes()
        if len(data) <= MAX_BYTES:
            break
        image = cv2.resize(image, None, fx=0.85, fy=0.85, interpolation=cv2.INTER_AREA)
    atomic_write_bytes(path, data)
    print(f"wrote {path} ({image.shape[1]}x{image.shape[0]}, {len(data) // 1000} KB)")


def _grab(window) -> np.ndarray:
    """The whole window as a BGR array."""
    from PyQt5.QtGui import QImage

    image = window.grab().toImage().convertToFormat(QImage.Format_RGB888)
    w, h = image.width(), image.height()
    rgb = np.frombuffer(image.constBits().asstring(image.bytesPerLine() * h), np.uint8).reshape(h, image.bytesPerLine())
    return cv2.cvtColor(np.ascontiguousarray(rgb[:, : 3 * w].reshape(h, w, 3)), cv2.COLOR_RGB2BGR)


def viewer_shots(out: Path, threads: int) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PyQt5.QtWidgets import QApplication

    from ui.viewer import ViewerWindow

    app = QApplication.instance() or QApplication([])

    def settle(condition, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                raise RuntimeError(f"viewer did not get there in {timeout:.0f} s (last error: {window.last_error})")
            app.processEvents()
            time.sleep(0.01)

    window = ViewerWindow(TrackerConfig(mode="video", threads=threads))
    window.resize(1100, 700)
    window.show()
    try:
        window.open_source(SourceSpec("video", DEMO_CLIP))
        # Play into the clip so the tracker has history (smoothing), then stop on FRAME.
        settle(lambda: window.packet is not None and window.packet.index >= FRAME - 1)
        window.worker.play(False)
        settle(lambda: not window.playing)
        window.worker.seek(FRAME)
        settle(lambda: window.packet.index == FRAME and bool(window.packet.result.faces))
        layouts = {
            "viewer_landmarks.png": ("densereg", "pca", "mdm", "box", "pose"),
            "viewer_parts.png": ("parts", "isolines", "box"),
            "viewer_transfer.png": ("transfer", "box"),
        }
        for name, overlays in layouts.items():
            for attr, check in window.overlay_boxes.items():
                check.setChecked(attr in overlays)
            if {"parts", "transfer"} & set(overlays):
                # FRAME tracked again with what these overlays read (the fitted template; the
                # transfer's occlusion maps), waiting for that packet, not the one already shown
                shown = window.packet
                window.worker.seek(FRAME)
                settle(lambda shown=shown, overlays=overlays: window.packet is not shown and not window.packet.redraw
                       and window.packet.index == FRAME and bool(window.packet.result.faces)
                       and window.packet.result.faces[0].template_maps is not None
                       and ("transfer" not in overlays or window.packet.result.faces[0].visibility is not None))
            app.processEvents()
            save_png(out / name, _grab(window))
    finally:
        window.close()


def _face_tile(picture: np.ndarray, landmarks: np.ndarray, label: str, side: int = 280) -> np.ndarray:
    """A square crop around the face (the pictures are mostly space suit), labelled."""
    cx, cy = np.nanmean(landmarks, axis=0)
    half = int(0.9 * (np.nanmax(landmarks[:, 0]) - np.nanmin(landmarks[:, 0])))
    x0, y0 = max(int(cx) - half, 0), max(int(cy) - int(1.2 * half), 0)
    crop = cv2.resize(picture[y0: y0 + 2 * half, x0: x0 + 2 * half], (side, side), interpolation=cv2.INTER_AREA)
    return _label(crop, label)


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    y = tile.shape[0] - 8
    draw_label(tile, text, (8, y), (255, 255, 255), 0.6)
    return tile


def transfer_shot(out: Path, threads: int) -> None:
    tracker = Tracker(TrackerConfig(mode="image", threads=threads, visibility=True, template_maps=True))
    image = read_image(DEMO_IMAGE)
    with VideoSource(DEMO_CLIP) as clip:
        clip.seek(FRAME)
        clip_frame = clip.read()
    still, turned = tracker.track(image), tracker.track(clip_frame) if clip_frame is not None else None
    if not still.faces or turned is None or not turned.faces:
        raise RuntimeError(f"no face found on {DEMO_IMAGE} or on frame {FRAME} of {DEMO_CLIP}")
    paint = Look(load_texture(TEXTURE_DIR / "facepaint.png"), DEFAULT_STRENGTH, "shading")
    grid = Look(load_texture(TEXTURE_DIR / "grid.png"), DEFAULT_STRENGTH, "shading")
    unwrapped = unwrap_source_face(DEMO_IMAGE, tracker)
    tiles = [
        _face_tile(image, still.faces[0].landmarks, "original"),
        _face_tile(apply_look(image, still, grid), still.faces[0].landmarks, "grid texture"),
        _face_tile(apply_look(image, still, paint), still.faces[0].landmarks, "face paint"),
        _face_tile(apply_look(clip_frame, turned, paint), turned.faces[0].landmarks, f"clip frame {FRAME}"),
        _label(cv2.resize(unwrapped, (280, 280), interpolation=cv2.INTER_AREA), "unwrapped (UV space)"),
    ]
    save_png(out / "transfer.png", np.hstack(tiles))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    transfer_shot(args.out, args.threads)
    viewer_shots(args.out, args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
