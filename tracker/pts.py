"""iBUG ``.pts`` landmark files (300-W convention: 1-based Matlab pixel coordinates).

In memory, points are 0-based pixel centres: ``read_pts`` subtracts ``PTS_ORIGIN`` and
``write_pts`` adds it back.  That is 1 in y and 1.5 in x: 300-W's x sits half a pixel right of
the pixel centres that every mirror flip of the training data (x -> W-1-x) assumes, so no model
trained with mirrored copies can learn it, and each one's x came out half a pixel left of the
annotations: dlib's own model on 362 train faces -0.57 +- 0.05 px, whatever the face's size, and
the tracker on val -1.3 px, its points' mirror images +0.5 px the other way (review 28).  The
annotators' y needs no such care: nothing is flipped upside down, so the networks learn it as
annotated.  Reading and writing both shift, so a file read and written back is unchanged, and
``eval`` (both sides read here) compares any two .pts files as before.
"""
from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import numpy as np

from tracker.errors import InputError
from tracker.fileio import IMAGE_EXTENSIONS, atomic_write_text

PTS_ORIGIN = np.array([1.5, 1.0])  # a .pts file's coordinates of the picture's top-left pixel centre


class PtsError(InputError):
    """A .pts file cannot be used; the message is one line naming the file and the reason."""


def pts_files(folder: Path, recursive: bool = False) -> list[Path]:
    """The ``.pts`` files in `folder` (and below it with `recursive`), sorted, the extension in any
    case: a ``000002.PTS`` was left out of the scores without a word (user test 21)."""
    found = folder.rglob("*") if recursive else folder.glob("*")
    return sorted(p for p in found if p.suffix.lower() == ".pts" and not p.is_dir())


def pts_beside(path: Path) -> Path:
    """The ``.pts`` of `path` (a picture, or a name without its extension: ``without_extension``),
    its extension in any case (``X.PTS``; ``beside``); the lower-case name where there is none."""
    base = without_extension(Path(path))
    return beside(base, (".pts",)) or base.with_name(base.name + ".pts")


def beside(base: Path, extensions: tuple[str, ...]) -> Path | None:
    """The file named `base` plus one of `extensions` (lower-case, in order of preference), its
    extension in any case, named as the folder names it (a case-insensitive disk's a.PTS is not
    a.pts; review 32): the extension as given where that file exists, else the first other-case
    one in name order; None where there is none.  ``img_1.flip.png`` is not ``img_1``'s
    (review 33: ground truth took it for the picture of ``img_1.pts``)."""
    base = Path(base)
    names = _folder_listing(base.parent).get(base.name, ())
    for ext in extensions:
        exact = base.name + ext
        if exact in names:
            return base.with_name(exact)
        other = next((n for n in names if n[len(base.name):].lower() == ext), None)
        if other is not None:
            return base.with_name(other)
    return None


def _folder_listing(folder: Path) -> dict[str, tuple[str, ...]]:
    """Name without its last extension -> the folder's file names with it, in name order.
    Listed once while the folder is unchanged: a glob for each picture made a folder scan
    quadratic, 20 s for 5,000 pictures (review 32).  A folder changed in the last seconds is
    listed afresh: its mtime's granularity (a few ms) may hide a file just written.  (A change
    that leaves the folder's mtime as it was, a copy tool setting it back, is not seen.)"""
    try:
        mtime_ns = folder.stat().st_mtime_ns
    except OSError:  # (no such folder)
        return {}
    if time.time_ns() - mtime_ns < 2_000_000_000:
        return _list_folder(str(folder))
    return _listed_folder(str(folder), mtime_ns)


@functools.lru_cache(maxsize=16)
def _listed_folder(folder: str, mtime_ns: int) -> dict[str, tuple[str, ...]]:
    return _list_folder(folder)


def _list_folder(folder: str) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    try:
        entries = sorted(e.name for e in os.scandir(folder) if not e.is_dir())
    except OSError:  # (gone, or not readable: as a folder without the file)
        return {}
    for name in entries:
        out.setdefault(os.path.splitext(name)[0], []).append(name)
    return {k: tuple(v) for k, v in out.items()}


def without_extension(path: Path) -> Path:
    """`path` without its extension where that is a picture's or ``.pts``, else as it is: a list's
    ``face.v2`` names the picture ``face.v2.jpg``, not ``face`` (user test 23)."""
    path = Path(path)
    return path.with_suffix("") if path.suffix.lower() in IMAGE_EXTENSIONS + (".pts",) else path


def read_pts(path: Path, expected: int | None = None) -> np.ndarray:
    """(N,2) float64 0-based pixel-centre points (``PTS_ORIGIN``) from a .pts file with or without the standard header."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise PtsError(f"{path}: file not found") from None
    except OSError as exc:
        raise PtsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not text.strip():
        raise PtsError(f"{path}: empty file (no points)")
    declared = None
    rows = []
    for raw in text.splitlines():
        line = raw.split("//", 1)[0].split("#", 1)[0].strip()
        if not line or line in ("{", "}"):
            continue
        key, _, value = line.partition(":")
        if _:
            if key.strip().lower() == "n_points":
                try:
                    declared = int(value)
                except ValueError:
                    raise PtsError(f"{path}: bad n_points value {value.strip()!r}") from None
            continue
        fields = line.split()
        try:
            vals = [float(v) for v in fields]
        except ValueError:
            raise PtsError(f"{path}: non-numeric point {line!r}") from None
        if len(vals) != 2 or not np.isfinite(vals).all():
            raise PtsError(f"{path}: expected 'x y' per line, got {line!r}")
        rows.append(vals)
    if not rows:
        raise PtsError(f"{path}: no points")
    if declared is not None and declared != len(rows):
        raise PtsError(f"{path}: header says {declared} points, file has {len(rows)}")
    if expected is not None and len(rows) != expected:
        raise PtsError(f"{path}: {len(rows)} points, expected {expected}")
    return np.asarray(rows, np.float64) - PTS_ORIGIN


def write_pts(path: Path, points: np.ndarray) -> None:
    """Write (N,2) 0-based pixel-centre points as a standard iBUG .pts file (atomically; ``PTS_ORIGIN``)."""
    pts = np.asarray(points, np.float64)
    # Refuse here rather than write a file that read_pts (or Matlab tools) would reject later.
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0 or not np.isfinite(pts).all():
        raise ValueError(f"{path}: need a non-empty (N,2) array of finite points, got shape {pts.shape}")
    pts = pts + PTS_ORIGIN
    body = "".join(f"{x:.3f} {y:.3f}\n" for x, y in pts)
    atomic_write_text(path, f"version: 1\nn_points: {len(pts)}\n{{\n{body}}}\n")
