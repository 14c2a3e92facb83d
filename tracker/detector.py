"""Face detection (dlib HOG) and the dlib 68-point baseline, behind small typed functions.

The detector runs on a downscaled copy of large frames (dlib's HOG cost grows with the pixel
count and 80 px faces are plenty for it) and upsamples small ones so that faces down to ~40 px
are found.

HOG only sees near-frontal, upright faces.  Where a second per call is affordable,
``detect_faces_cnn`` (dlib's MMOD CNN, shipped by the optional face-recognition-models package)
is the fallback when HOG finds nothing: on every still image, and in video files now and then
while no face is tracked (``TrackerConfig.video_cnn_every``).  On the validation split it finds
all 6 of the 80 faces HOG misses (rotated and profile faces).
"""
from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import threading
import warnings
import weakref
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing.connection import Connection
from pathlib import Path

import cv2
import numpy as np

from tracker.crop import Roi, roi_from_box
from tracker.errors import InputError, UsageError, install_hint

DETECT_MAX_SIDE = 640  # frames larger than this are downscaled before HOG
UPSAMPLED_BELOW = 400  # a picture under this long side (after the downscale) is searched upsampled 2x
STILL_MAX_SIDE = 2048  # a still where nothing was found at DETECT_MAX_SIDE is searched again at up to this (~0.4 s)
CNN_MAX_SIDE = 400  # the CNN costs ~1 s at this size on 2 cores; faces under ~40 px are lost
CNN_THRESHOLD = 0.3  # MMOD confidence; true faces score ~1, background rarely above 0
GIVEN = "given"  # Detection.detector of a box the caller supplied instead of the detector

log = logging.getLogger(__name__)


class BoxError(InputError):
    """A face box cannot be used (degenerate, not numbers, outside the picture); one line."""


@dataclass(frozen=True)
class Detection:
    """A face box in image pixels (x0,y0 inclusive; x1,y1 exclusive), the detector score and
    which detector found it ('hog', 'cnn', or 'given' for a box the caller supplied: each
    frames a face differently, see ``tracker.crop.BOX_CALIBRATION``)."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float
    detector: str = "hog"
    angle: float = 0.0  # the face's roll, radians: a quarter or half turn for ``detect_faces_turned``'s faces

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    def roi(self) -> Roi:
        """The crop around this box, calibrated for the detector that made it (``roi_from_box``)."""
        return roi_from_box(self.x0, self.y0, self.x1, self.y1, self.detector, self.angle)

    def centred_in(self, box: Detection) -> bool:
        """Whether this box's centre lies in `box`: the same face, found twice."""
        return box.x0 <= (self.x0 + self.x1) / 2 <= box.x1 and box.y0 <= (self.y0 + self.y1) / 2 <= box.y1


def given_box(x0: float, y0: float, x1: float, y1: float) -> Detection:
    """A face box supplied by the caller (``Tracker.track(frame, boxes=...)``, ``images
    --boxes``): pixels, x0 < x1 and y0 < y1.  Raises BoxError (one line) for anything else."""
    try:
        v = [float(c) for c in (x0, y0, x1, y1)]
    except (TypeError, ValueError):
        raise BoxError(f"face box {(x0, y0, x1, y1)!r}: coordinates must be numbers") from None
    if not np.isfinite(v).all():
        raise BoxError(f"face box {tuple(v)}: coordinates must be finite")
    if v[2] - v[0] < 1 or v[3] - v[1] < 1:
        raise BoxError(f"face box {tuple(v)}: degenerate, need x0 < x1 and y0 < y1 (corners x0 y0 x1 y1, not x y w h; at least 1 pixel each way)")
    return Detection(*v, score=1.0, detector=GIVEN)


@lru_cache(maxsize=1)
def _hog():
    import dlib

    return dlib.get_frontal_face_detector()


def load_detector() -> None:
    """Build dlib's HOG detector now (~0.5-1 s of CPU, once per process) rather than inside the
    first frame's search, where it counted as tracking time (a short clip's fps)."""
    _hog()


# dlib's detectors keep scratch buffers in the object: one shared by threads returns other
# frames' boxes.  Building one per thread costs ~0.75 s (the model is deserialised), so threads
# take turns instead (a HOG pass is ~13 ms; the networks, most of a frame, still run side by side).
_hog_lock = threading.Lock()


def _downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w, 1))
    if scale == 1.0:
        return image, scale
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA), scale


def detect_faces(gray: np.ndarray, max_side: int = DETECT_MAX_SIDE, upsample: int | None = None) -> list[Detection]:
    """All faces found by dlib's HOG detector, best score first; [] when there is none.
    `upsample`: dlib's pyramid doublings (None: 1 for a picture under 400 px after the downscale,
    else 0); HOG finds faces down to ~80 px, ~40 px after one doubling (~4x the time)."""
    small, scale = _downscale(gray, max_side)
    if upsample is None:
        upsample = 1 if max(small.shape) < UPSAMPLED_BELOW else 0
    if min(small.shape[:2]) < 20:
        return []
    with _hog_lock:
        rects, scores, _ = _hog().run(np.ascontiguousarray(small), upsample, 0.0)
    dets = [
        Detection(r.left() / scale, r.top() / scale, (r.right() + 1) / scale, (r.bottom() + 1) / scale, float(s))
        for r, s in zip(rects, scores)
    ]
    return sorted(dets, key=lambda d: -d.score)


def detect_faces_at(gray: np.ndarray, max_side: int = DETECT_MAX_SIDE) -> list[Detection]:
    """``detect_faces`` at `max_side`; above the usual side, merged with the usual search: a larger
    one is asked for to add small faces, not to lose one the usual search finds (HOG's marginal
    detections differ between scales: a tilted group photo, 950 px, 2 faces at 640 px, none at its
    own size; user test 12).  Every search of a frame runs this (video's periodic and lost-track
    searches ran the larger one alone; review 36)."""
    found = detect_faces(gray, max_side)
    if max_side > DETECT_MAX_SIDE and max(gray.shape) > DETECT_MAX_SIDE:
        found = merged(found, detect_faces(gray, DETECT_MAX_SIDE))
    return found


def usable(detections: list[Detection], min_face: int, threshold: float) -> list[Detection]:
    """The detections the tracker runs: at least `min_face` px wide and scoring `threshold` or more
    (HOG's weakest boxes are mostly no face; ``TrackerConfig.detect_threshold``)."""
    return [d for d in detections if d.width >= min_face and d.score >= threshold]


def merged(found: list[Detection], more: list[Detection]) -> list[Detection]:
    """`found` and the detections of `more` centred in none of its boxes, best score first."""
    return sorted(found + [d for d in more if not any(d.centred_in(f) for f in found)], key=lambda d: -d.score)


def detect_faces_finer(gray: np.ndarray, searched_at: int = DETECT_MAX_SIDE) -> list[Detection]:
    """HOG once more where the usual search (at `searched_at` px) found no face: a picture whose
    long side doubled stays within STILL_MAX_SIDE upsampled 2x (dlib's usual ``detector(img, 1)``:
    faces down to ~40 px; ~120 ms at 640x480), a larger one at its own size up to STILL_MAX_SIDE;
    [] where neither looks finer than the usual search did."""
    long = max(gray.shape[:2])
    if UPSAMPLED_BELOW <= long and 2 * long <= STILL_MAX_SIDE:
        return detect_faces(gray, long, upsample=1)
    if long > searched_at and searched_at < STILL_MAX_SIDE:
        return detect_faces(gray, STILL_MAX_SIDE)
    return []


# A picture turned by each of these (cv2.rotate codes) -> how its pixel-edge coordinates map back
# to the picture's, given the picture's (w, h), and the roll of a face upright in it.
TURNS = {
    cv2.ROTATE_90_CLOCKWISE: (lambda x, y, w, h: (y, h - x), -math.pi / 2),
    cv2.ROTATE_90_COUNTERCLOCKWISE: (lambda x, y, w, h: (w - y, x), math.pi / 2),
    cv2.ROTATE_180: (lambda x, y, w, h: (w - x, h - y), math.pi),
}


def detect_faces_turned(gray: np.ndarray, max_side: int = DETECT_MAX_SIDE) -> list[Detection]:
    """HOG on the picture turned by a quarter turn each way and a half turn: faces lying on their
    side or upside down, which the upright search cannot see, as boxes in the picture with their
    roll (``Detection.angle``), best score first; ~3 usual searches."""
    h, w = gray.shape[:2]
    found = []
    for code, (back, angle) in TURNS.items():
        for d in detect_faces(cv2.rotate(gray, code), max_side):
            (ax, ay), (bx, by) = back(d.x0, d.y0, w, h), back(d.x1, d.y1, w, h)
            found.append(Detection(min(ax, bx), min(ay, by), max(ax, bx), max(ay, by), d.score, d.detector, angle))
    return sorted(found, key=lambda d: -d.score)


class DeferredSearch:
    """Video's periodic search for new faces, answered `lag` frames after the frame it looked at.

    With `background`, dlib's HOG runs in a worker process (dlib holds the GIL while it
    searches, so a thread would not overlap it with tracking): the full-frame pass (~13 ms
    at 640x480) no longer stalls the frame it starts on, and uses the core the tracker's Python
    leaves idle.  The answer is used exactly `lag` frames later whether it ran in the worker
    or inline, so a clip tracks the same way every time (waiting for the worker if it is
    late).  A worker that cannot start or dies is replaced by inline searches, with one log line.
    """

    def __init__(self, lag: int, background: bool = True, max_side: int = DETECT_MAX_SIDE):
        self.lag = lag
        self.max_side = max_side  # (the caller's detect_side: the periodic search ran at the default; review 35)
        self._background = background
        self._worker: _DetectorProcess | None = None
        self._pending: tuple[int, list[Detection] | None] | None = None  # (due frame, inline answer)
        # Started now, not at the first search: its imports (~0.3 s) then overlap loading the
        # models and the first frames instead of stalling the frame that waits for its answer.
        self._start_worker()

    def _start_worker(self) -> None:
        if self._background and self._worker is None:
            try:
                self._worker = _DetectorProcess()
            except OSError as exc:
                self._fall_back(f"cannot start ({exc})")

    def start(self, frame_index: int, gray: np.ndarray) -> bool:
        """Search `gray` (frame `frame_index`) unless a search is already under way (False)."""
        if self._pending is not None:
            return False
        self._start_worker()  # after a close()
        if self._worker is not None:
            try:
                self._worker.submit(gray, self.max_side)
                self._pending = (frame_index + self.lag, None)
                return True
            except OSError as exc:
                self._fall_back(f"stopped ({exc})")
        self._pending = (frame_index + self.lag, detect_faces_at(gray, self.max_side))
        return True

    def due(self, frame_index: int) -> list[Detection] | None:
        """The answer of the search started `lag` frames before `frame_index`, else None."""
        if self._pending is None or frame_index < self._pending[0]:
            return None
        _, found = self._pending
        self._pending = None
        return found if found is not None else self._collect()

    def cancel(self) -> None:
        """Drop a search under way (the tracks it was for are gone)."""
        if self._pending is not None and self._pending[1] is None:
            self._collect()
        self._pending = None

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def _collect(self) -> list[Detection]:
        try:
            return self._worker.result()
        except (OSError, EOFError) as exc:
            self._fall_back(f"stopped ({exc or type(exc).__name__})")
            return []  # that one search is lost; the next runs inline

    def _fall_back(self, why: str) -> None:
        log.warning("background face detector %s; searching for new faces inline from now on", why)
        if self._worker is not None:
            self._worker.close()
        self._worker, self._background = None, False


class _DetectorProcess:
    """A worker process answering ``detect_faces`` requests over a pair of pipes, one at a time.

    A plain ``python -c`` subprocess rather than ``multiprocessing``: a spawned multiprocessing
    child re-imports the user's main script (running it again when it lacks an ``if __name__ ==
    "__main__"`` guard), and a forked one would inherit ONNX Runtime's and OpenCV's thread locks.
    """

    def __init__(self):
        if os.name != "posix":
            raise OSError("needs POSIX pipes")
        to_child, to_worker = os.pipe()
        from_worker, from_child = os.pipe()
        # The worker imports this package from where this process found it.
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
        # SIGINT ignored before the imports too: a Ctrl-C while the worker starts must not print its traceback
        code = ("import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); import sys; "
                "from tracker.detector import _detector_worker; _detector_worker(int(sys.argv[1]), int(sys.argv[2]))")
        try:
            # Its own session: a terminal's Ctrl-C (sent to the whole foreground group) reached a worker
            # still starting up, before it could ignore it, and Python printed its traceback (CI under
            # load); the worker ends when the tracker closes the pipe, or dies.
            self._process = subprocess.Popen([sys.executable, "-c", code, str(to_child), str(from_child)], env=env,
                                             pass_fds=(to_child, from_child), stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            os.close(to_child)
            os.close(from_child)
        self._requests = Connection(to_worker, readable=False)
        self._answers = Connection(from_worker, writable=False)
        self.close = weakref.finalize(self, _stop_worker, self._process, self._requests, self._answers)

    def submit(self, gray: np.ndarray, max_side: int) -> None:
        self._requests.send((np.ascontiguousarray(gray), max_side))

    def result(self) -> list[Detection]:
        answer = self._answers.recv()
        if isinstance(answer, Exception):
            raise OSError(f"{type(answer).__name__}: {answer}")
        return answer


def _detector_worker(requests_fd: int, answers_fd: int) -> None:
    # A terminal's Ctrl-C reaches the whole process group: the tracker handles it and closes
    # the pipe, which ends this loop; the worker's own KeyboardInterrupt would only print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests, answers = Connection(requests_fd, writable=False), Connection(answers_fd, readable=False)
    # Import dlib and build the detector before the first request (~0.5-1 s), while the tracker
    # loads its models and tracks its first frames: a request sent to a worker still importing
    # would stall the tracker (the frame fills the pipe until the worker reads it).
    load_detector()
    while True:
        try:
            request = requests.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        try:
            answer = detect_faces_at(*request)
        except Exception as exc:  # reported to the tracker, which falls back to inline searches
            answer = exc
        try:
            answers.send(answer)
        except OSError:  # the tracker closed the pipe while this search ran (Ctrl-C, a window closed)
            return


def _stop_worker(process: subprocess.Popen, requests: Connection, answers: Connection) -> None:
    try:
        requests.send(None)
    except OSError:
        pass
    requests.close()
    answers.close()
    try:
        process.wait(timeout=2)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# The one install hint for everything that comes with face-recognition-models.
CNN_EXTRA = f"the [cnn] extra: {install_hint('cnn')}"


def dlib_model_file(locator: str) -> Path:
    """A model file shipped by the face-recognition-models package (ImportError without it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the package imports the deprecated pkg_resources
        import face_recognition_models

    return Path(getattr(face_recognition_models, locator)())


def dlib_predictor_path() -> Path:
    """The 68-point model shipped by the face-recognition-models package."""
    return dlib_model_file("pose_predictor_model_location")


@lru_cache(maxsize=1)
def dlib_models_problem() -> str | None:
    """Why dlib's CNN detector and 68-point predictor (both shipped by face-recognition-models)
    cannot be used here, in a few words; None when they can.  The plain runtime install lacks
    them: callers turn this into one line instead of an ImportError deep in a traceback."""
    try:
        files = [dlib_model_file("cnn_face_detector_model_location"), dlib_predictor_path()]
    except ImportError as exc:  # also pkg_resources missing (setuptools >= 81)
        return f"face-recognition-models is not usable ({exc})"
    missing = [f.name for f in files if not f.is_file()]
    return f"face-recognition-models lacks {', '.join(missing)}" if missing else None


def cnn_available() -> bool:
    return dlib_models_problem() is None


def cnn_missing_note(silence: str = "") -> str | None:
    """The one line a command prints when its CNN fallback is on but cannot run here (it
    changes results: faces HOG misses stay missed); None when the CNN is there."""
    if cnn_available():
        return None
    return (f"note: dlib's CNN face detector is not installed, so faces HOG misses (rotated, profile) are not searched for; "
            f"install {CNN_EXTRA}{silence}")


def require_dlib_predictor(what: str) -> None:
    """Raise a one-line error (UsageError: exit status 2) when the 68-point predictor is missing."""
    problem = dlib_models_problem()
    if problem:
        raise UsageError(f"{what} needs dlib's 68-point predictor from {CNN_EXTRA} ({problem})")


@lru_cache(maxsize=1)
def _cnn():
    import dlib

    return dlib.cnn_face_detection_model_v1(str(dlib_model_file("cnn_face_detector_model_location")))


_cnn_lock = threading.Lock()  # as _hog_lock


def detect_faces_cnn(image: np.ndarray, max_side: int = CNN_MAX_SIDE, threshold: float = CNN_THRESHOLD) -> list[Detection]:
    """Faces found by dlib's MMOD CNN detector on a BGR image, best first (slow: ~1 s a call)."""
    small, scale = _downscale(image, max_side)
    if min(small.shape[:2]) < 20:
        return []
    rgb = np.ascontiguousarray(small[:, :, ::-1])
    with _cnn_lock:
        found = _cnn()(rgb, 0)
    dets = [
        Detection(d.rect.left() / scale, d.rect.top() / scale, (d.rect.right() + 1) / scale, (d.rect.bottom() + 1) / scale,
                  float(d.confidence), "cnn")
        for d in found
        if d.confidence >= threshold
    ]
    return sorted(dets, key=lambda d: -d.score)


CONFIRM_MAX_SIDE = 200  # the window (twice the box) the CNN looks at: the face ~100 px in it, ~0.3 s


def confirm_face(image: np.ndarray, det: Detection, threshold: float = CNN_THRESHOLD) -> Detection | None:
    """The CNN's box for the face a weak detection may be: the CNN searches a window twice the
    box around it; its best detection there whose centre lies in the box, else None."""
    cx, cy, w = (det.x0 + det.x1) / 2, (det.y0 + det.y1) / 2, det.x1 - det.x0
    x0, y0 = int(max(0, cx - w)), int(max(0, cy - w))
    window = image[y0 : int(min(image.shape[0], cy + w)), x0 : int(min(image.shape[1], cx + w))]
    if min(window.shape[:2]) < 2:
        return None  # the box lies outside the picture
    # The CNN sees faces from ~80 px: a small one's window is enlarged to CONFIRM_MAX_SIDE too.
    zoom = CONFIRM_MAX_SIDE / max(window.shape[:2])
    window = cv2.resize(window, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC if zoom > 1 else cv2.INTER_AREA)
    for d in detect_faces_cnn(window, CONFIRM_MAX_SIDE, threshold):  # best first
        box = Detection(d.x0 / zoom + x0, d.y0 / zoom + y0, d.x1 / zoom + x0, d.y1 / zoom + y0, d.score, d.detector)
        if box.centred_in(det):
            return box
    return None


@lru_cache(maxsize=1)
def _predictor():
    import dlib

    return dlib.shape_predictor(str(dlib_predictor_path()))


def dlib_landmarks(gray: np.ndarray, det: Detection) -> np.ndarray:
    """(68,2) 0-based landmarks from dlib's ensemble-of-regression-trees predictor."""
    import dlib

    rect = dlib.rectangle(int(round(det.x0)), int(round(det.y0)), int(round(det.x1)) - 1, int(round(det.y1)) - 1)
    shape = _predictor()(np.ascontiguousarray(gray), rect)
    return np.array([[p.x, p.y] for p in shape.parts()], np.float64)
