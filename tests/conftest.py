"""Shared fixtures.  Tests that need ../shared skip cleanly when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# One OpenMP thread for torch in tests: two threads on a busy 2-core CI box were ~100x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def pytest_runtest_setup(item: pytest.Item) -> None:
    # `@pytest.mark.shared_data` is enough for a test that reads ../shared/data: it skips cleanly
    # on a checkout without the (never committed) training data.
    if item.get_closest_marker("shared_data") and not (SHARED / "data").is_dir():
        pytest.skip("../shared/data not present")
    # `@pytest.mark.shared_template`: the Surrey Face Model of ../shared/template (ground truth, profiling)
    if item.get_closest_marker("shared_template") and not (SHARED / "template" / "sfm" / "sfm_shape_3448.bin").exists():
        pytest.skip("../shared/template/sfm not present")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def data_300w() -> Path:
    path = SHARED / "data" / "300w"
    if not (path / "splits" / "val.txt").exists():
        pytest.skip("../shared/data/300w not present")
    return path


@pytest.fixture(scope="session")
def template_dir() -> Path:
    path = SHARED / "template" / "sfm"
    if not (path / "sfm_shape_3448.bin").exists():
        pytest.skip("../shared/template/sfm not present")
    return path


@pytest.fixture(scope="session")
def sfm_model(template_dir):
    from training.sfm import load_sfm

    return load_sfm(template_dir)


@pytest.fixture(scope="session")
def landmark_definition():
    from tracker.fitting import load_definition

    return load_definition()


@pytest.fixture
def fake_camera(monkeypatch):
    """``fake_camera(n, interrupt=False)``: every camera index opens a live source of the demo
    clip's first ``n`` frames, which then stops delivering (or, with ``interrupt``, the user
    presses Ctrl-C): the camera path of the commands, without a camera."""
    import tracker.sources
    from tracker.assets import DEMO_CLIP
    from tracker.errors import SourceError
    from tracker.sources import ArraySource, VideoSource, load_frames

    def install(n: int, interrupt: bool = False) -> None:
        frames = load_frames(VideoSource(DEMO_CLIP), n)

        class FakeCamera(ArraySource):
            def __init__(self, device, warn=None):
                super().__init__(frames, f"webcam {device}", fps=30.0, live=True)
                self.warn = warn

            def read(self):
                frame = super().read()
                if frame is None:
                    if interrupt:
                        raise KeyboardInterrupt
                    raise SourceError(f"{self.label}: stopped delivering frames")
                return frame

        monkeypatch.setattr(tracker.sources, "CameraSource", FakeCamera)

    return install


@pytest.fixture
def corrupt_mjpeg_clip():
    """Writes a clip with an undecodable frame (``_corrupt_mjpeg_clip``)."""
    return _corrupt_mjpeg_clip


def _corrupt_mjpeg_clip(path: Path, frames: int = 12, bad: int = 6) -> None:
    """An MJPG .avi of `frames` grey frames (level 20 x index) whose frame `bad` (0-based) FFmpeg
    cannot decode: its JPEG zeroed, the next frame's chunk header kept (without it the demuxer
    drops that frame unseen)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]  # each frame's JPEG
    assert len(starts) == frames
    end = starts[bad + 1] - 8
    data[starts[bad]:end] = bytes(end - starts[bad])
    path.write_bytes(bytes(data))
