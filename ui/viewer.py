"""The viewer's main window.

Layout: the frame (scaled to fit) with a transport bar under it (step back, play/pause, step
forward, seek slider), and a side panel: source, engine, overlays, face transfer, capture and
the frame rate with per-stage latency.  Tracking runs in ``ui.worker.TrackerThread``; this
window only composes overlays (``ui.overlays.compose``, cheap numpy) and paints, so it stays
responsive whatever the engine costs.  Every failure the user can cause (no camera, unreadable
file, missing engine, unwritable output) ends in the status bar, never in a traceback.
"""
from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PyQt5.QtCore import QRect, Qt, QTimer
from PyQt5.QtGui import QFont, QImage, QKeySequence, QPainter
from PyQt5.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QShortcut,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from engines import NOTES as ENGINE_NOTES
from engines import available_engines
from tracker.assets import ASSETS, DEMO_CLIP, TEXTURE_DIR, AssetError, verified_asset
from tracker.errors import InputError
from tracker.fileio import ImageReadError, atomic_write_image
from tracker.pipeline import TrackerConfig
from tracker.sources import SourceSpec, probe_cameras
from tracker.transfer import COLOR_MATCHES, load_texture
from tracker.video import VIDEO_EXTENSIONS, AtomicVideoWriter
from ui.overlays import OVERLAY_TIPS, OVERLAYS, OverlaySettings, compose
from ui.worker import FramePacket, SourceInfo, TrackerThread

ENGINE_KINDS = ("auto", "onnx", "torch", "tensorrt")
DEFAULT_TEXTURE = TEXTURE_DIR / "facepaint.png"


ERROR_SHOWN_MS = 20000  # how long an error stays in the status bar (information: 8 s)


@dataclass
class RateMeter:
    """Moving averages of the frame rate and of each stage's latency in ms.  A stage that did
    not run on a frame (detection runs every few frames) counts as 0 there, so the averages add
    up to the mean cost per frame."""

    smoothing: float = 0.1
    fps: float = 0.0
    total_ms: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    last: float | None = None
    interval: float = 0.0  # moving average of the time between frames, in seconds

    def update(self, timings: dict[str, float], total_ms: float, now: float) -> None:
        a = self.smoothing
        if self.last is not None and now > self.last:
            # the intervals are averaged, then inverted: an average of 1/interval overstated the
            # rate 1.3-2.7x whenever frame times vary (a detection frame among tracked ones)
            dt = now - self.last
            self.interval = dt if self.interval == 0 else (1 - a) * self.interval + a * dt
            self.fps = 1.0 / self.interval
        self.last = now
        self.total_ms = total_ms if self.total_ms == 0 else (1 - a) * self.total_ms + a * total_ms
        for name in [*self.stages, *(k for k in timings if k not in self.stages)]:  # first-seen order
            value = timings.get(name, 0.0)
            self.stages[name] = value if name not in self.stages else (1 - a) * self.stages[name] + a * value

    def pause(self) -> None:
        """Playback stopped: the wait until it resumes is not a frame interval."""
        self.last = None

    def text(self) -> str:
        lines = [f"{self.fps:5.1f} fps", f"{self.total_ms:5.1f} ms per frame"]
        width = max([10, *(len(name) + 1 for name in self.stages)])  # "template maps" is longer than the rest
        lines += [f"  {name:<{width}}{ms:6.1f} ms" for name, ms in self.stages.items()]
        return "\n".join(lines)


class FrameView(QWidget):
    """A BGR frame scaled to fit the widget, aspect ratio kept, on black."""

    def __init__(self, placeholder: str):
        super().__init__()
        self.placeholder = placeholder
        self.image: QImage | None = None
        self.setMinimumSize(480, 360)

    def set_frame(self, bgr: np.ndarray) -> None:
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        h, w = rgb.shape[:2]
        self.image = QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).copy()  # copy: own the pixels
        self.update()

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), Qt.black)
        if self.image is None:
            painter.setPen(Qt.gray)
            painter.drawText(self.rect(), Qt.AlignCenter, self.placeholder)
            return
        target = QRect(0, 0, 0, 0)
        target.setSize(self.image.size().scaled(self.size(), Qt.KeepAspectRatio))
        target.moveCenter(self.rect().center())
        painter.setRenderHint(QPainter.SmoothPixmapTransform)
        painter.drawImage(target, self.image)


class ViewerWindow(QMainWindow):
    def __init__(self, config: TrackerConfig, texture: Path | None = None, transfer: bool = False, parts_from: str = "template"):
        super().__init__()
        self.parts_from = parts_from
        self.setWindowTitle("DenseReg face tracker")
        self.settings = OverlaySettings(transfer=transfer)
        self.meter = RateMeter()
        self.packet: FramePacket | None = None
        self.composed: np.ndarray | None = None  # what the window shows, full resolution
        self.source_info: SourceInfo | None = None
        self.playing = False
        self.recorder: AtomicVideoWriter | None = None
        self.last_error: str | None = None
        try:
            with np.load(verified_asset("template.npz", config.assets or ASSETS)) as z:
                self.part_map: np.ndarray | None = z["part_map"]
        except (AssetError, OSError) as exc:
            self.part_map = None  # every overlay but the parts still works
            self.show_error(f"parts overlay off: {exc}")

        self.view = FrameView("Open a video, an image folder or a camera (side panel)")
        panel = QWidget()
        column = QVBoxLayout(panel)
        # the frame rate and latencies next to the engine they describe: last, they were below the
        # fold of the window's default size
        for box in (self._source_box(), self._engine_box(config.engine), self._stats_box(), self._overlay_box(),
                    self._transfer_box(texture), self._capture_box()):
            column.addWidget(box)
        column.addStretch(1)
        scroll = QScrollArea()  # on a small screen the panel scrolls instead of growing the window
        scroll.setWidget(panel)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setFixedWidth(panel.sizeHint().width() + scroll.verticalScrollBar().sizeHint().width() + 4)
        self.setCentralWidget(self._central(scroll))
        for key, action in (("Space", self.toggle_play), ("Left", lambda: self.worker.step(-1)), ("Right", lambda: self.worker.step(1)),
                            ("Ctrl+O", self.choose_video), ("Ctrl+S", self.choose_screenshot), ("Ctrl+R", self.record_button.click)):
            QShortcut(QKeySequence(key), self, activated=action)

        self.worker = TrackerThread(config, visibility=transfer, template_maps=self._wants_template_maps())
        self.worker.frameReady.connect(self._on_frame)
        self.worker.sourceOpened.connect(self._on_source)
        self.worker.engineReady.connect(self._on_engine)
        self.worker.failed.connect(self.show_error)
        self.worker.playingChanged.connect(self._on_playing)
        self.worker.start()

    # -- building the window ---------------------------------------------------------------------

    def _central(self, panel: QWidget) -> QWidget:
        self.play_button = QPushButton("Play")
        back, forward = QPushButton("< Step"), QPushButton("Step >")
        self.back_button = back
        self.play_button.clicked.connect(self.toggle_play)
        back.clicked.connect(lambda: self.worker.step(-1))
        forward.clicked.connect(lambda: self.worker.step(1))
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setEnabled(False)
        self.slider.setFocusPolicy(Qt.NoFocus)  # the arrow keys step frames, not the slider
        # Seek on release (and on clicks/keys), not while dragging: each seek restarts tracking
        # with a face detection, far slower than a slider drag produces positions.
        self.slider.sliderReleased.connect(lambda: self.worker.seek(self.slider.value()))
        self.slider.valueChanged.connect(lambda v: None if self.slider.isSliderDown() else self.worker.seek(v))
        self.position_label = QLabel("-")
        transport = QHBoxLayout()
        for w in (back, self.play_button, forward, self.slider, self.position_label):
            transport.addWidget(w)
        left = QVBoxLayout()
        left.addWidget(self.view, 1)
        left.addLayout(transport)
        central = QWidget()
        row = QHBoxLayout(central)
        row.addLayout(left, 1)
        row.addWidget(panel)
        return central

    def _source_box(self) -> QGroupBox:
        box = QGroupBox("Source")
        grid = QFormLayout(box)
        self.camera_combo = QComboBox()
        cameras = probe_cameras()
        for index in cameras or [0]:
            self.camera_combo.addItem(f"camera {index}" + ("" if cameras else " (none detected)"), index)
        webcam = QPushButton("Open camera")
        webcam.clicked.connect(lambda: self.open_source(SourceSpec("webcam", device=self.camera_combo.currentData())))
        video, folder = QPushButton("Open video..."), QPushButton("Open folder...")
        video.clicked.connect(self.choose_video)
        folder.clicked.connect(self.choose_folder)
        grid.addRow(self.camera_combo, webcam)
        grid.addRow(video, folder)
        return box

    def _engine_box(self, engine: str) -> QGroupBox:
        box = QGroupBox("Engine")
        layout = QVBoxLayout(box)
        self.engine_combo = QComboBox()
        reasons = {"auto": None, **available_engines()}
        for i, kind in enumerate(ENGINE_KINDS):
            self.engine_combo.addItem(kind)
            item = self.engine_combo.model().item(i)
            item.setEnabled(reasons.get(kind) is None)  # the combo's model is a QStandardItemModel
            item.setToolTip(reasons.get(kind) or ENGINE_NOTES.get(kind, ""))
        self.engine_combo.setCurrentText(engine)
        self.engine_combo.currentTextChanged.connect(lambda kind: self.worker.set_engine(kind))
        self.engine_label = QLabel("loading...")
        self.engine_label.setWordWrap(True)
        layout.addWidget(self.engine_combo)
        layout.addWidget(self.engine_label)
        return box

    def _overlay_box(self) -> QGroupBox:
        box = QGroupBox("Overlays (key)")
        grid = QGridLayout(box)  # two columns: the panel fits a laptop screen's height
        self.overlay_boxes: dict[str, QCheckBox] = {}
        for i, (attr, label, key) in enumerate(OVERLAYS):
            check = QCheckBox(f"{label} [{key}]")
            check.setToolTip(OVERLAY_TIPS.get(attr, ""))
            check.setChecked(getattr(self.settings, attr))
            check.toggled.connect(lambda on, attr=attr: self.set_overlay(attr, on))
            QShortcut(QKeySequence(key), self, activated=check.toggle)
            grid.addWidget(check, i // 2, i % 2)
            self.overlay_boxes[attr] = check
        return box

    def _transfer_box(self, texture: Path | None) -> QGroupBox:
        box = QGroupBox("Face transfer")
        form = QFormLayout(box)
        self.texture_combo = QComboBox()
        for path in sorted(TEXTURE_DIR.glob("*.png")):
            self.texture_combo.addItem(path.stem, path)
        load = QPushButton("Load texture...")
        load.clicked.connect(self.choose_texture)
        strength = QSlider(Qt.Horizontal)
        strength.setRange(0, 100)
        strength.setValue(round(100 * self.settings.strength))
        strength.valueChanged.connect(lambda v: self._set_transfer(strength=v / 100))
        match = QComboBox()
        match.addItems(COLOR_MATCHES)
        match.setCurrentText(self.settings.match)
        match.currentTextChanged.connect(lambda m: self._set_transfer(match=m))
        form.addRow(self.texture_combo, load)
        form.addRow("strength", strength)
        form.addRow("colour match", match)
        self.texture_combo.currentIndexChanged.connect(lambda _: self.set_texture(self.texture_combo.currentData()))
        self._texture_path: Path | None = None  # the texture in use
        self.set_texture(texture or DEFAULT_TEXTURE)
        if self._texture_path is None:  # a caller's texture that cannot be read: the default, not none at all
            self.set_texture(DEFAULT_TEXTURE)
        return box

    def _capture_box(self) -> QGroupBox:
        box = QGroupBox("Capture")
        row = QHBoxLayout(box)
        self.record_button = QPushButton("Record")
        self.record_button.setCheckable(True)
        self.record_button.clicked.connect(self._record_clicked)
        shot = QPushButton("Screenshot")
        shot.clicked.connect(self.choose_screenshot)
        row.addWidget(self.record_button)
        row.addWidget(shot)
        return box

    def _stats_box(self) -> QGroupBox:
        box = QGroupBox("Performance")
        layout = QVBoxLayout(box)
        self.stats_label = QLabel(self.meter.text())
        self.stats_label.setFont(QFont("monospace", 9))
        layout.addWidget(self.stats_label)
        return box

    # -- actions ---------------------------------------------------------------------------------

    def show_error(self, message: str) -> None:
        self.last_error = message
        # for a while, not for good: it stayed up after the next texture or picture had loaded fine
        self.statusBar().showMessage(f"Error: {message}", ERROR_SHOWN_MS)

    def show_info(self, message: str) -> None:
        self.statusBar().showMessage(message, 8000)

    def open_source(self, spec: SourceSpec) -> None:
        self.show_info(f"opening {spec.label} ...")
        self.worker.open(spec)

    def toggle_play(self) -> None:
        self.worker.play(not self.playing)

    def set_overlay(self, attr: str, on: bool) -> None:
        setattr(self.settings, attr, on)
        if attr == "transfer":
            self.worker.set_visibility(on)  # the occlusion maps only the transfer uses
        if attr in ("parts", "transfer"):
            self.worker.set_template_maps(self._wants_template_maps())
        self._render()

    def _wants_template_maps(self) -> bool:
        """The template fitted to the landmarks costs ~20 ms a face: made only while an overlay reads it."""
        return self.parts_from == "template" and (self.settings.parts or self.settings.transfer)

    def _set_transfer(self, **changes) -> None:
        for name, value in changes.items():
            setattr(self.settings, name, value)
        self._render()

    def set_texture(self, path: Path) -> None:
        """Use ``path`` for the transfer overlay (added to the picker if new).  One that cannot be
        read is an error message, and the picker goes back to the texture in use (it showed the
        failed one as chosen; user test 13)."""
        path = Path(path)
        try:
            self.settings.texture = load_texture(path)
            self._texture_path = path
        except ImageReadError as exc:
            self.show_error(str(exc))
            if self._texture_path is None:
                return
            path = self._texture_path
        # findData compares Python objects by identity under PyQt5: an equal Path was never found
        # and every choice added the texture again (review 26)
        index = next((i for i in range(self.texture_combo.count()) if Path(self.texture_combo.itemData(i)).resolve() == path.resolve()), -1)
        if index < 0:
            self.texture_combo.addItem(path.stem, path)
            index = self.texture_combo.count() - 1
        self.texture_combo.blockSignals(True)  # selecting it must not load it a second time
        self.texture_combo.setCurrentIndex(index)
        self.texture_combo.blockSignals(False)
        self._render()

    def choose_video(self) -> None:
        patterns = " ".join(f"*{ext}" for ext in VIDEO_EXTENSIONS)
        path, _ = QFileDialog.getOpenFileName(self, "Open video", "", f"Videos ({patterns});;All files (*)")
        if path:
            self.open_source(SourceSpec("video", Path(path)))

    def choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open image folder")
        if path:
            self.open_source(SourceSpec("folder", Path(path)))

    def choose_texture(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load UV texture", str(TEXTURE_DIR), "Images (*.png *.jpg *.jpeg *.bmp)")
        if path:
            self.set_texture(Path(path))

    def choose_screenshot(self) -> None:
        default = time.strftime("screenshot-%Y%m%d-%H%M%S.png")
        path, _ = QFileDialog.getSaveFileName(self, "Save screenshot", default, "PNG (*.png)")
        if path and not Path(path).suffix:
            path += ".png"  # the filter's type, which Qt's own dialog does not add
        if path:
            self.save_screenshot(Path(path))

    def save_screenshot(self, path: Path) -> bool:
        """The frame as shown (overlays included, full resolution) as an image file."""
        if self.composed is None:
            self.show_error("nothing to save yet: open a source first")
            return False
        try:
            atomic_write_image(path, self.composed)
        except (OSError, ValueError) as exc:
            self.show_error(f"screenshot not saved: {exc}")
            return False
        self.show_info(f"saved {path}")
        return True

    def _record_clicked(self, checked: bool) -> None:
        if not checked:
            self.stop_recording()
            return
        default = time.strftime("recording-%Y%m%d-%H%M%S.mp4")
        path, _ = QFileDialog.getSaveFileName(self, "Record to", default, "MP4 video (*.mp4)")
        if path and not Path(path).suffix:
            path += ".mp4"  # the filter's type, which Qt's own dialog does not add
        if not path or not self.start_recording(Path(path)):
            self.record_button.setChecked(False)

    def start_recording(self, path: Path) -> bool:
        """Record every frame shown from now on, overlays included (temp file, renamed by stop)."""
        if self.composed is None:
            self.show_error("nothing to record yet: open a source first")
            return False
        self.stop_recording()
        info = self.source_info
        # A file plays at its own rate; a camera's frames are paced by the wall clock (the writer
        # holds a frame until the next came), so the recording lasts as long as it did, at the rate
        # frames are shown: at the camera's, each slow frame was encoded several times on this
        # thread (1080p: the window fell from 8.6 to 4.2 fps while recording).
        live = info is not None and info.live
        if live:
            fps = float(np.clip(self.meter.fps or 30.0, 1.0, 60.0))
        else:
            fps = info.fps if info is not None and info.fps > 0 else 30.0
        h, w = self.composed.shape[:2]
        try:
            self.recorder = AtomicVideoWriter(path, fps, (w, h), paced=live)
        except (InputError, OSError) as exc:  # e.g. not a video container, a read-only folder
            self.show_error(f"cannot record: {exc}")
            return False
        self.recorder.write(self.composed)  # the current frame: a paused recording is still a video
        self.record_button.setChecked(True)
        self.show_info(f"recording to {path}")
        return True

    def stop_recording(self) -> Path | None:
        """Finish the recording (the file appears only now); its path, or None if none ran."""
        recorder, self.recorder = self.recorder, None
        self.record_button.setChecked(False)
        if recorder is None:
            return None
        try:
            recorder.close()
        except OSError as exc:
            self.show_error(f"recording not saved: {exc}")
            return None
        self.show_info(f"saved {recorder.frames} frames to {recorder.path}")
        return recorder.path

    # -- from the worker ---------------------------------------------------------------------------

    def _render(self) -> None:
        if self.packet is None:
            return
        try:
            self.composed = compose(self.packet.frame, self.packet.result, self.settings, self.part_map)
        except (ValueError, IndexError) as exc:  # e.g. a texture that does not fit the overlay
            self.show_error(f"overlay failed: {exc}")
            self.composed = self.packet.frame
        self.view.set_frame(self.composed)

    def _on_frame(self, packet: FramePacket) -> None:
        try:
            self.packet = packet
            if not packet.redraw:  # the same frame with more maps: neither a frame for the rate nor for a recording
                self.meter.update(packet.result.timings, packet.track_ms, time.perf_counter())
            self._render()
            if self.recorder is not None and not packet.redraw:
                (w, h), (rw, rh) = self.composed.shape[1::-1], self.recorder.size
                if (w, h) == (rw, rh):
                    self.recorder.write(self.composed)
                elif (path := self.stop_recording()) is not None:
                    # another source, or a folder's picture of another size: a video has one size, and
                    # stretching the frame would distort the face
                    self.show_info(f"recording stopped: the picture changed from {rw}x{rh} to {w}x{h}; saved {path}")
            self.slider.blockSignals(True)
            self.slider.setValue(packet.index)
            self.slider.blockSignals(False)
            length = f" / {packet.length}" if packet.length > 0 else ""
            faces = len(packet.result.faces)
            self.position_label.setText(f"frame {packet.index + 1}{length}, {faces} face{'s' if faces != 1 else ''}")
            self.stats_label.setText(self.meter.text())
        finally:
            self.worker.frame_consumed()  # always: the worker waits for it before the next frame

    def _on_source(self, info: SourceInfo) -> None:
        # a recording is of one source: another has its own rate and pacing (a camera's frames
        # written once each played too fast)
        saved = self.stop_recording() if self.recorder is not None else None
        self.source_info = info
        self.meter = RateMeter()
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(info.length - 1, 0))
        self.slider.blockSignals(False)
        self.slider.setEnabled(info.seekable)
        self.back_button.setEnabled(info.seekable)  # a camera cannot step back
        self.setWindowTitle(f"DenseReg face tracker - {info.label}")
        self.show_info(f"opened {info.label}" + (f" ({info.length} frames)" if info.length > 1 else "")
                       + (f"; the recording of the source before was stopped and saved to {saved}" if saved else ""))

    def _on_engine(self, description: str) -> None:
        self.engine_label.setText(description)
        self.show_info(f"engine: {description}")

    def _on_playing(self, playing: bool) -> None:
        self.playing = playing
        self.play_button.setText("Pause" if playing else "Play")
        if not playing:
            self.meter.pause()

    def closeEvent(self, event) -> None:
        if self.recorder is not None and self.stop_recording() is None:  # the window is going: its status bar cannot say so
            print(f"error: {self.last_error}", file=sys.stderr)
        self.worker.stop()
        event.accept()


def default_source() -> SourceSpec:
    """The first camera, or the bundled demo clip when there is none (so a first run shows
    something instead of an error)."""
    cameras = probe_cameras()
    return SourceSpec("webcam", device=cameras[0]) if cameras else SourceSpec("video", DEMO_CLIP)


def run_viewer(source: SourceSpec | None = None, config: TrackerConfig | None = None,
               texture: Path | None = None, transfer: bool = False, parts_from: str = "template") -> int:
    """Open the window on ``source`` (default: ``default_source()``) and run Qt until it closes."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = ViewerWindow(config or TrackerConfig(mode="video"), texture, transfer, parts_from)
    window.resize(1280, 760)
    window.show()
    window.open_source(source or default_source())
    interrupted = []

    def on_ctrl_c(*_) -> None:  # close as the window's close button does (a recording is saved)
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C ends the process outright
        interrupted.append(True)
        window.close()

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    # Python runs a signal handler only when it next gets control, which Qt's event loop would
    # not give it while nothing happens (no camera, a paused clip): a timer hands it over.
    wake = QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(200)
    try:
        code = app.exec_()
    finally:
        wake.stop()
        signal.signal(signal.SIGINT, previous)
    return 130 if interrupted else code
