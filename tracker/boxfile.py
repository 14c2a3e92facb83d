"""Face-box files for ``run_tracker images --boxes FILE``: the faces of each image given by the
user instead of the detector.

One box per line, ``STEM X0 Y0 X1 Y1`` (whitespace-separated) or ``STEM,X0,Y0,X1,Y1`` (CSV):

* ``STEM``: the image's path relative to ``--input`` without its extension (``helen/trainset/
  100032540_1``), the output stem; with the extension also works (``photo.jpg``), so may spaces.
  A line with the extension is that picture's only; one without is every picture's of that stem
  (``face`` for both ``face.jpg`` and ``face.png``: said in a warning).
* ``X0 Y0 X1 Y1``: the box in 0-based image pixels, x0 < x1, y0 < y1; read as the tight box
  around the face's 68 landmarks (jaw to jaw, brows to chin), like the ground-truth boxes of the
  300-W bounding-box lists (``tracker.crop.BOX_CALIBRATION``).
* Several lines with the same stem: several faces in that image (the first is the one its
  ``.pts`` holds).  Blank lines and lines starting with ``#`` are ignored, and so is a first
  line naming the columns (``stem,x0,y0,x1,y1``).  A stem with a comma, or starting with ``#``,
  is written CSV-quoted: ``"#1 photo",X0,Y0,X1,Y1``.

Anything else is a ``BoxFileError`` naming the file and line.

``python -m tracker.boxfile --pts DIR [--list FILE] --out boxes.txt`` writes the tight box around
each ground-truth ``.pts`` of a folder (the 300-W protocol of evaluating with given boxes).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from tracker.detector import Detection, given_box
from tracker.errors import InputError, MissingInputError, TrackerError
from tracker.fileio import IMAGE_EXTENSIONS, atomic_write_text, listed_paths
from tracker.pts import PtsError, pts_beside, pts_files, read_pts


class BoxFileError(InputError):
    """A box file cannot be used; one line naming the file, the line number and the reason."""


def box_key(stem: str) -> str:
    """The lookup key of an image: its relative path, '/'-separated, without image extension."""
    key = stem.strip().replace("\\", "/")
    return key[: -len(Path(key).suffix)] if Path(key).suffix.lower() in IMAGE_EXTENSIONS else key


def _image_suffix(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return suffix if suffix in IMAGE_EXTENSIONS else ""


def boxes_of_pictures(boxes: dict[str, list[Detection]], pictures: list[str]) -> tuple[dict[str, list[Detection]], list[str], dict[str, list[str]]]:
    """Which of ``read_boxes``' lines are each picture's (`pictures`: paths relative to
    ``--input``, '/'-separated): those naming it with its extension (in any case, unless one names it
    exactly) and those naming its stem alone, in the order the names first come in the file.  Returns ({picture: boxes} for
    the pictures with lines, the names that are no picture's, {name without extension:
    [pictures]} for one that several pictures share)."""
    by_stem: dict[str, list[str]] = {}
    for name in boxes:
        by_stem.setdefault(box_key(name), []).append(name)
    given, used, sharing = {}, set(), {}
    for picture in pictures:
        names = [n for n in by_stem.get(box_key(picture), []) if _image_suffix(n) in ("", _image_suffix(picture))]
        if any(n.replace("\\", "/") == picture for n in names):  # its own name as it is: not also its other-case lines too
            names = [n for n in names if not _image_suffix(n) or n.replace("\\", "/") == picture]  # (two faces; user test 24)
        if names:
            given[picture] = [b for n in names for b in boxes[n]]
            used.update(names)
        for n in names:
            if not _image_suffix(n):
                sharing.setdefault(n, []).append(picture)
    return given, [n for n in boxes if n not in used], {n: ps for n, ps in sharing.items() if len(ps) > 1}


def read_boxes(path: Path) -> dict[str, list[Detection]]:
    """{name as the file gives it ('/'-separated; with or without the extension): [boxes in file
    order]} from a box file; ``boxes_of_pictures`` says which are each picture's."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # (a Windows editor's byte order mark is not the first stem's)
    except FileNotFoundError:
        raise BoxFileError(f"{path}: box file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BoxFileError(f"{path}: cannot read the box file ({getattr(exc, 'strerror', None) or exc})") from None
    boxes: dict[str, list[Detection]] = {}
    first = True
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in (line.rsplit(",", 4) if "," in line else line.rsplit(None, 4))]
        if "," in line and len(fields[0]) > 1 and fields[0][0] == fields[0][-1] == '"':  # CSV quoting ("a b.jpg")
            fields[0] = fields[0][1:-1].replace('""', '"')
        if first and [f.lower() for f in fields[1:]] == ["x0", "y0", "x1", "y1"]:
            first = False
            continue  # a CSV header
        first = False
        where = f"{path}:{number}"
        if len(fields) != 5 or not fields[0]:
            raise BoxFileError(f"{where}: expected 'STEM X0 Y0 X1 Y1', got {line!r}")
        try:
            coords = [float(v) for v in fields[1:]]
        except ValueError:
            raise BoxFileError(f"{where}: box coordinates must be numbers, got {line!r}") from None
        try:
            box = given_box(*coords)
        except ValueError as exc:
            raise BoxFileError(f"{where}: {exc}") from None
        boxes.setdefault(fields[0].replace("\\", "/"), []).append(box)
    if not boxes:
        raise BoxFileError(f"{path}: no boxes in the file")
    return boxes


def landmark_box(points: np.ndarray) -> Detection:
    """The tight box around (N,2) 0-based landmarks (NaN rows ignored)."""
    p = points[np.isfinite(points).all(axis=1)]
    return given_box(*p.min(axis=0), *p.max(axis=0))


def _box_line(stem: str, b: Detection) -> str:
    """One line of a box file; a stem with a comma makes the line CSV, so that line is written as
    CSV with the stem quoted, which ``read_boxes`` unquotes; so is one starting with ``#``, which
    would make the line a comment (review 26)."""
    if "," in stem or stem.lstrip().startswith("#"):
        return '"' + stem.replace('"', '""') + f'",{b.x0:.2f},{b.y0:.2f},{b.x1:.2f},{b.y1:.2f}\n'
    return f"{stem} {b.x0:.2f} {b.y0:.2f} {b.x1:.2f} {b.y1:.2f}\n"


def write_boxes(path: Path, boxes: dict[str, list[Detection]]) -> None:
    """A box file ``read_boxes`` reads back (atomically)."""
    lines = [_box_line(stem, b) for stem, bs in boxes.items() for b in bs]
    atomic_write_text(path, "# stem x0 y0 x1 y1 (0-based pixels; tracker/boxfile.py)\n" + "".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tracker.boxfile", description="Write the box file of a folder's ground-truth .pts: "
                                 "the tight box around each face's landmarks, for run_tracker images --boxes.")
    ap.add_argument("--pts", type=Path, required=True, help="folder with <stem>.pts (searched recursively)")
    ap.add_argument("--list", type=Path, help="only these images (paths relative to --pts, e.g. splits/val.txt)")
    ap.add_argument("--out", type=Path, required=True, help="the box file to write")
    args = ap.parse_args(argv)
    try:
        return _write_box_file(args)
    except TrackerError as exc:  # an unreadable --list, an --out that cannot be written: one line, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _write_box_file(args) -> int:
    if not args.pts.is_dir() or (args.list and not args.list.is_file()):
        raise MissingInputError(f"{args.pts if not args.pts.is_dir() else args.list}: not found")
    if args.list:
        files = [pts_beside(args.pts / rel) for rel in listed_paths(args.list, args.pts, "--pts")]
    else:
        files = pts_files(args.pts, recursive=True)
    boxes, failed = {}, 0
    for f in files:
        try:
            boxes[f.relative_to(args.pts).with_suffix("").as_posix()] = [landmark_box(read_pts(f))]
        except (PtsError, ValueError) as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            failed += 1
    if not boxes:
        raise MissingInputError(f"{args.pts}: no usable .pts files")
    write_boxes(args.out, boxes)
    print(f"done: {len(boxes)} boxes written to {args.out}, {failed} .pts files skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
