"""MediaPipe Face Mesh as a baseline for ``bench --mediapipe-python PATH``, in another Python.

The MediaPipe release that still ships the Face Mesh models and its ``solutions`` API
(mediapipe 0.10.21) requires numpy < 2, which this project's environment cannot have; later
releases have neither (their Tasks API needs a ``face_landmarker.task`` download).  So Face Mesh
runs in a separate virtual environment: this file is also the worker script that Python runs
(``PATH tracker/mediapipe_baseline.py``), importing only the standard library, numpy and
mediapipe there.  ``bench`` sends it the same frames over a pipe and it times each
``FaceMesh.process`` call itself, so the pipe is not counted, just as reading frames is not
counted for the tracker or dlib.

Protocol (little-endian): request = 4-byte command + height, width, channels (uint32) +
the BGR uint8 pixels for ``FRAM``; ``RSET`` starts a new FaceMesh (a new clip), ``QUIT`` ends.
The worker first writes one JSON line (``{"ready": ...}`` or ``{"error": ...}``), then per frame
a float64 milliseconds + uint32 face count, per reset ``b"OK"``.
"""
from __future__ import annotations

import json
import os
import select
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

if __name__ == "__main__":  # the worker, in MediaPipe's own environment: no tracker package there
    class TrackerError(Exception):
        """A stand-in for ``tracker.errors.TrackerError``: the worker never raises ``MediaPipeError``."""
else:
    from tracker.errors import TrackerError

HEADER = struct.Struct("<4sIII")
REPLY = struct.Struct("<dI")
START_TIMEOUT_S = 120.0  # importing mediapipe and building its graph: a few seconds, more on a busy machine
FRAME_TIMEOUT_S = 60.0


class MediaPipeError(TrackerError, RuntimeError):
    """The MediaPipe worker cannot start or stopped answering; one line for the user."""


class MediaPipeFaceMesh:
    """Face Mesh (468 points, video mode: its detector runs only when tracking is lost, like
    the tracker's) in a worker process started with ``python``."""

    def __init__(self, python: Path, max_faces: int = 4):
        self._stderr = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen([str(python), str(Path(__file__).resolve()), str(max_faces)], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self._stderr, env=_clean_env())
        except OSError as exc:
            self._stderr.close()
            raise MediaPipeError(f"{python}: cannot run ({exc.strerror or exc})") from None
        line = self._read_line(START_TIMEOUT_S)
        try:
            hello = json.loads(line)
        except ValueError:
            hello = {"error": f"unexpected answer {line[:80]!r}"}
        if "ready" not in hello:
            self.close()
            raise MediaPipeError(f"{python}: {hello.get('error', 'no answer')}")
        self.version = hello["ready"]

    def process(self, frame: np.ndarray) -> tuple[float, int]:
        """(milliseconds Face Mesh took on this BGR frame, faces found)."""
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"MediaPipe baseline: expected a BGR frame, got shape {frame.shape}")
        frame = np.ascontiguousarray(frame, np.uint8)
        self._send(HEADER.pack(b"FRAM", frame.shape[0], frame.shape[1], 3) + frame.tobytes())
        ms, faces = REPLY.unpack(self._read(REPLY.size, FRAME_TIMEOUT_S))
        return ms, faces

    def reset(self) -> None:
        """Forget the faces tracked so far (a new clip)."""
        self._send(HEADER.pack(b"RSET", 0, 0, 0))
        if self._read(2, START_TIMEOUT_S) != b"OK":
            raise MediaPipeError("MediaPipe worker: unexpected answer to a reset")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._send(HEADER.pack(b"QUIT", 0, 0, 0))
                self.proc.wait(timeout=10)
            except (MediaPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:  # a frame still buffered for a worker that has died
                pass
        self._stderr.close()

    def __enter__(self) -> MediaPipeFaceMesh:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- pipe --------------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise MediaPipeError(f"MediaPipe worker exited{self._last_error()}") from None

    def _read(self, n: int, timeout: float) -> bytes:
        out = b""
        fd = self.proc.stdout.fileno()
        while len(out) < n:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                self.proc.kill()
                raise MediaPipeError(f"MediaPipe worker did not answer within {timeout:.0f} s")
            chunk = os.read(fd, n - len(out))
            if not chunk:
                raise MediaPipeError(f"MediaPipe worker exited{self._last_error()}")
            out += chunk
        return out

    def _read_line(self, timeout: float) -> str:
        out = b""
        while not out.endswith(b"\n"):
            try:
                out += self._read(1, timeout)
            except MediaPipeError:
                if out:
                    break
                raise
        return out.decode("utf-8", "replace").strip()

    def _last_error(self) -> str:
        """The worker's last line on stderr (e.g. the exception that ended it)."""
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return ""
        self._stderr.seek(0)
        lines = [line for line in self._stderr.read().decode("utf-8", "replace").splitlines() if line.strip()]
        return f" ({lines[-1].strip()})" if lines else ""


def _clean_env() -> dict[str, str]:
    # The other Python must not see this environment's packages (numpy 2 would shadow its own).
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


# -- worker side: runs in the MediaPipe environment ---------------------------------------------

def _worker(max_faces: int) -> int:
    import time

    out = sys.stdout.buffer
    try:
        import mediapipe as mp

        face_mesh = mp.solutions.face_mesh  # absent from mediapipe >= 0.10.30
    except Exception as exc:  # ImportError, or numpy 2 against a wheel built for numpy 1
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        out.write((json.dumps({"error": f"no usable mediapipe with Face Mesh ({type(exc).__name__}: {first_line})"}) + "\n").encode())
        out.flush()
        return 1

    def new_mesh():
        return face_mesh.FaceMesh(static_image_mode=False, max_num_faces=max_faces, refine_landmarks=False)

    mesh = new_mesh()
    out.write((json.dumps({"ready": f"mediapipe {mp.__version__}, numpy {np.__version__}"}) + "\n").encode())
    out.flush()
    inp = sys.stdin.buffer
    while True:
        header = inp.read(HEADER.size)
        if len(header) < HEADER.size:
            return 0
        cmd, h, w, c = HEADER.unpack(header)
        if cmd == b"QUIT":
            return 0
        if cmd == b"RSET":
            mesh.close()
            mesh = new_mesh()
            out.write(b"OK")
        elif cmd == b"FRAM":
            frame = np.frombuffer(inp.read(h * w * c), np.uint8).reshape(h, w, c)
            t = time.perf_counter()
            rgb = np.ascontiguousarray(frame[:, :, ::-1])  # MediaPipe takes RGB
            result = mesh.process(rgb)
            ms = 1000 * (time.perf_counter() - t)
            out.write(REPLY.pack(ms, len(result.multi_face_landmarks or ())))
        else:
            return 2
        out.flush()


if __name__ == "__main__":
    raise SystemExit(_worker(int(sys.argv[1]) if len(sys.argv) > 1 else 4))
