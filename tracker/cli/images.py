"""``run_tracker images``: landmarks (+ parts, dense maps) for every picture of a folder.

Outputs, per image (written atomically; ``<stem>.json`` and then ``<stem>.pts`` last, so their
presence means the image is finished and a rerun skips it, unless an output asked for is missing;
and a ``.pts`` without its ``.json`` is never this command's, but e.g. an annotation it refuses to
replace):

* ``<stem>.pts`` — one face's final landmarks (iBUG, 1-based), the face ``pts_face`` picks;
  absent when no face was found.
* ``<stem>.json`` — every face: box, score, ROI, the 68 points and confidences of every stage
  (``densereg``, ``pca``, ``mdm``), in 0-based pixels (``COORDINATES``, also stated in the
  file); ``"faces": []`` when no face was found.
* ``<stem>_parts.png`` (``--parts``) — uint8 labels 0-8 for programs (values in
  ``tracker/parts.py``; looks black in an image viewer: ``--annotate`` shows them coloured).
* ``<stem>_annotated.jpg`` (``--annotate``) — the picture with every face's landmarks drawn, and
  the parts blended in colour with ``--parts``; written for pictures without a face too.
* ``<stem>_maps.npz`` (``--save-maps``) — ``uv`` (2,H,W), ``fg`` (H,W), ``depth`` (H,W) of the
  ``.pts`` face in image pixels.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from tracker.boxfile import boxes_of_pictures, read_boxes
from tracker.cli.common import count, engine_args, parts_from_arg, template_maps_wanted
from tracker.cli.options import check_same_options, decided_options
from tracker.detector import DETECT_MAX_SIDE, STILL_MAX_SIDE, Detection, cnn_missing_note, require_dlib_predictor
from tracker.draw import annotate_still, frame_part_labels
from tracker.errors import MissingInputError, NotAFolderError, UsageError, count_of
from tracker.fileio import (
    IMAGE_EXTENSIONS,
    IMAGE_KINDS,
    NAME_MAX,
    WriteError,
    atomic_save_npz,
    atomic_write_image,
    atomic_write_json,
    check_output_folder,
    exclusive_use,
    file_digest,
    list_images,
    listed_paths,
    lock_name,
    name_bytes,
    remove_if_empty,
    remove_partial_outputs,
    safe_output_path,
)
from tracker.pipeline import Tracker, TrackerConfig
from tracker.pts import beside, write_pts
from tracker.sources import ImageSource, track_stream
from tracker.video import VIDEO_EXTENSIONS
from tracker.writers import frame_to_json, maps_in_image, pts_face, write_dlib_baseline

NAME = "images"


def register(sub) -> None:
    p = sub.add_parser(NAME, help="landmarks (+ parts, dense maps) for every image in a folder")
    p.add_argument("--input", type=Path, required=True, help=f"folder of images ({IMAGE_KINDS}), or one picture")
    p.add_argument("--out", type=Path, required=True, help="output folder (.pts, .json, ...)")
    p.add_argument("--parts", action="store_true", help="also write <stem>_parts.png: raw labels 0-8 for programs (tracker/parts.py), "
                   "black in an image viewer; with --annotate the parts are also drawn in colour")
    p.add_argument("--annotate", action="store_true",
                   help="also write <stem>_annotated.jpg: the picture with the landmarks (and, with --parts, the parts) drawn")
    p.add_argument("--boxes", type=Path, metavar="FILE",
                   help="face boxes instead of the detector: lines 'STEM X0 Y0 X1 Y1' (or CSV), 0-based pixels, "
                   "several lines for several faces, every one tracked whatever --max-faces; images without a line use the detector "
                   "(README, Usage)")
    parts_from_arg(p)
    p.add_argument("--save-maps", action="store_true", help="also write <stem>_maps.npz (uv, fg, depth in image pixels)")
    p.add_argument("--baseline", choices=["dlib"], help="also write dlib's 68-point results under OUT/dlib/")
    p.add_argument("--recursive", action="store_true", help="include images in sub-folders")
    p.add_argument("--list", type=Path, help="only these images: a text file of paths relative to --input (e.g. splits/val.txt)")
    p.add_argument("--overwrite", action="store_true", help="redo images whose outputs exist (default: resume)")
    p.add_argument("--detect-side", type=count(160), default=DETECT_MAX_SIDE, metavar="PX",
                   help=f"search for faces on the picture shrunk to this long side (default {DETECT_MAX_SIDE}: ~13 ms; "
                        f"{STILL_MAX_SIDE} also finds the small faces of a group photo, ~0.4 s a picture; a larger side keeps what "
                        f"the {DETECT_MAX_SIDE} px search finds too; with --max-faces)")
    engine_args(p)
    p.set_defaults(func=run)  # (its Ctrl-C message: run sets it)


def _output_names(images: list[Path], root: Path) -> dict[Path, str]:
    """Relative output stem per image: its path without the extension, or with it where that
    stem is another image's too (``face.jpg`` and ``face.png``), until every stem is one image's
    (``face.jpg.png``'s own stem is then ``face.jpg``'s: it keeps its extension as well; review 26)."""
    full = {p: p.relative_to(root).as_posix() for p in images}  # distinct: they are distinct files
    names = {p: p.relative_to(root).with_suffix("").as_posix() for p in images}
    while True:
        taken = Counter(names.values())
        shared = [p for p, n in names.items() if taken[n] > 1 and n != full[p]]
        if not shared:
            return names
        for p in shared:
            names[p] = full[p]


def _check_folders(args) -> None:
    """Before any work: the input is a folder, and the outputs cannot overwrite it.  A picture's
    ``<stem>.pts`` beside it is usually its annotation (300-W's layout), which ``--out`` equal to
    ``--input`` would replace with the prediction, and a later ``eval`` would score against itself."""
    if not args.input.is_dir():
        raise NotAFolderError(f"{args.input}: {'not a folder' if args.input.exists() else 'no such file or folder'}")
    if args.out.exists() and not args.out.is_dir():
        raise NotAFolderError(f"--out {args.out}: exists and is not a folder")
    if args.out.resolve() == args.input.resolve():
        raise UsageError(f"--out {args.out} is the input folder: its .pts annotations would be overwritten; "
                         "choose another output folder")


def _one_picture(args) -> list[Path]:
    """``--input photo.jpg``: that picture alone, its folder then the input (face-alignment and
    dlib take one picture; it was "not a folder"; user test 13).  [] for a folder."""
    if not args.input.is_file():
        return []
    if args.input.suffix.lower() in UNREAD_PICTURES:
        raise UsageError(f"--input {args.input}: {args.input.suffix} pictures are not read; convert it to one of {IMAGE_KINDS}")
    if args.input.suffix.lower() in VIDEO_EXTENSIONS:  # (user test 35)
        raise UsageError(f"--input {args.input}: a video: run_tracker video FILE tracks one")
    if args.input.suffix.lower() not in IMAGE_EXTENSIONS:
        raise UsageError(f"--input {args.input}: neither a folder nor a picture ({IMAGE_KINDS})")
    if args.list or args.recursive:
        raise UsageError(f"--input {args.input} is one picture: --list and --recursive choose pictures in a folder")
    picture, args.input = args.input, args.input.parent
    return [picture]


def _select_images(args) -> list[Path]:
    if getattr(args, "list", None):
        if not (listed := listed_paths(args.list, args.input, "--input")):  # (did nothing and exited 0; review 35)
            raise MissingInputError(f"--list {args.list}: lists no pictures")
        # a stem names its picture, as in eval's --list (refused here, taken there; user test 36)
        return [args.input / rel if rel.suffix.lower() in IMAGE_EXTENSIONS else beside(args.input / rel, IMAGE_EXTENSIONS) or args.input / rel
                for rel in listed]
    images = list_images(args.input, recursive=args.recursive)
    if args.recursive:  # an output folder inside the input would feed a rerun its own outputs
        out = args.out.resolve()
        images = [p for p in images if out not in _resolved(p).parents]
        if made := [p for p in images if p.name.endswith(("_annotated.jpg", "_parts.png"))]:  # (read unsaid: user test 35)
            print(f"note: {count_of(len(made), 'picture')} named as this command's outputs (first: {made[0]}) are read as input; "
                  "an older output folder inside the input is: move it out", file=sys.stderr)
    suffixes = {p.suffix.lower() for p in (args.input.rglob("*") if args.recursive else args.input.iterdir()) if p.is_file()}
    if others := sorted(suffixes & set(UNREAD_PICTURES)):  # left out in silence, a .gif looked processed (user test 13)
        print(f"note: pictures in other formats ({', '.join(others)}) are not read; convert them to one of {IMAGE_KINDS}", file=sys.stderr)
    if videos := sorted(suffixes & set(VIDEO_EXTENSIONS)):  # (left out unsaid: user test 25)
        print(f"note: videos ({', '.join(videos)}) are not read by images: run_tracker video FILE tracks one", file=sys.stderr)
    if not images:
        raise MissingInputError(f"{args.input}: no images ({IMAGE_KINDS}) found")
    return images


def _resolved(path: Path) -> Path:
    """`path` resolved, or as it is where it cannot be (a symlink loop: its reading then skips it
    in one line; it stopped ``--recursive`` runs with an internal error, user test 21)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path


# Picture formats a folder may hold that are not read (not every OpenCV build decodes them): said, not skipped unseen.
UNREAD_PICTURES = (".gif", ".heic", ".heif", ".avif", ".jxl", ".jp2", ".pxm", ".svg", ".ico", ".psd",
                   ".dng", ".cr2", ".nef", ".arw", ".raw", ".pic", ".pfm", ".exr", ".sr", ".ras")


# What a redone picture's earlier outputs that follow from the tracker's are named (<stem> + this).
REDONE = (".pts", "_maps.npz", "_annotated.jpg", "_parts.png")


def _names_too_long(images: list[Path], names: dict[Path, str]) -> set[Path]:
    """The pictures whose outputs' names would be longer than a file name can be (their stems
    plus ``_annotated.jpg``), each said in a ``skipped:`` line: writing them stopped the run
    (user test 21)."""
    longest = max(len(s) for s in (*REDONE, ".json"))
    unnamed = {p for p in images if name_bytes(Path(names[p]).name) + longest > NAME_MAX}
    for p in sorted(unnamed):
        print(f"skipped: {p}: its name is too long for its outputs' names ({name_bytes(Path(names[p]).name)} bytes before "
              f"the extension; at most {NAME_MAX - longest}): rename it", file=sys.stderr)
    return unnamed


def _drop_outputs(args, stem: str, *, json_too: bool, dlib: bool) -> None:
    """Delete an earlier run's outputs of `stem`: those that follow from the tracker's (REDONE),
    its ``.json`` with `json_too`, and dlib's (``dlib/<stem>.json``, ``.pts``) with `dlib`."""
    names = [stem + s for s in (*REDONE, *((".json",) if json_too else ()))]
    names += [f"dlib/{stem}{s}" for s in (".json", ".pts")] if dlib else []
    for name in names:
        path = safe_output_path(args.out, name)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # a read-only --out: the one-line "cannot write" (it was an internal error; user test 21)
            raise WriteError(path, exc) from exc


def _record(args, stem: str) -> dict | None:
    """``<stem>.json`` as an earlier run wrote it, read once for every check below; None where
    there is none, or one cut short or not ours (redone anyway)."""
    try:
        record = json.loads(safe_output_path(args.out, f"{stem}.json").read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _changed(record: dict | None, picture: Path) -> bool:
    """Whether the `record` (``<stem>.json``) was made from another file than `picture` is now (its
    ``input``, ``file_digest``; a .json of a version before session 28 has none and counts as this
    one's), or from a picture that cannot be read now (a dangling link: user test 17)."""
    recorded = None if record is None else record.get("input")
    if recorded is None:
        return False  # no .json (nothing to replace), or one cut short (redone anyway)
    try:
        return recorded != file_digest(picture, whole=True)
    except OSError:
        return True


def _boxes_json(given: list[Detection] | None) -> list[list[float]] | None:
    """A picture's --boxes as its ``.json`` records them (None: the detector's faces)."""
    return None if given is None else [[round(float(v), 3) for v in (b.x0, b.y0, b.x1, b.y1)] for b in given]


def _parts_from(args) -> str | None:
    """Where this run's --parts are read from, as each ``.json`` records it (None without --parts)."""
    return ("template" if template_maps_wanted(args) else "network") if args.parts else None


def _finished(args, stem: str, record: dict | None, given: list[Detection] | None) -> bool:
    """``<stem>.json`` (`record`; then its face's ``.pts``) is written last, so it marks a finished
    image, unless an output asked for this time is missing (a rerun adding ``--annotate`` or
    ``--parts`` does those images, as does one adding ``--baseline dlib``, and one after a face's
    ``.pts`` was deleted or emptied redoes it), or it was made from other boxes than this run
    gives it (`given`; its ``boxes``, recorded since session 37: a rerun with a corrected --boxes
    kept the old boxes' faces), or its part labels were read from elsewhere (``parts_from``)."""
    if record is None:
        return False
    if "boxes" in record and record["boxes"] != _boxes_json(given):
        return False
    if args.parts and record.get("parts_from", _parts_from(args)) != _parts_from(args):  # (verify 37: kept the other's labels)
        return False
    if args.annotate and not safe_output_path(args.out, f"{stem}_annotated.jpg").exists():
        return False
    if args.parts and not _nonempty(safe_output_path(args.out, f"{stem}_parts.png")):
        return False
    if args.baseline == "dlib" and not safe_output_path(args.out, f"dlib/{stem}.json").exists():
        return False
    per_face = [".pts"] + (["_maps.npz"] if args.save_maps else [])
    return not record.get("faces") or all(_nonempty(safe_output_path(args.out, stem + s)) for s in per_face)


def _check_no_foreign_pts(args, stems) -> None:
    """Refuse, before any work, to write over a ``<stem>.pts`` that this command did not write: its
    own always has ``<stem>.json`` beside it; one alone is most likely an annotation (an
    --out pointing at a folder of ground truth)."""
    alone = [s for s in stems if safe_output_path(args.out, f"{s}.pts").exists() and not safe_output_path(args.out, f"{s}.json").exists()]
    if alone:
        raise UsageError(f"--out {args.out} holds {count_of(len(alone), '.pts file')} that images did not write (no .json beside them, "
                         f"e.g. {alone[0]}.pts: annotations?) and would replace; choose another output folder (or delete "
                         "those .pts if an earlier run of yours wrote them)")


def _nonempty(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def _load_boxes(args, images: list[Path]) -> dict[Path, list[Detection]]:
    """--boxes of each picture that has lines (``boxes_of_pictures``); warns once about names
    that match no picture, and about a stem several pictures share (``face`` for ``face.jpg`` and
    ``face.png``: its boxes are each one's; user test 13)."""
    if not args.boxes:
        return {}
    rel = {p.relative_to(args.input).as_posix(): p for p in images}
    given, unmatched, shared = boxes_of_pictures(read_boxes(args.boxes), list(rel))
    if unmatched:
        matches = "matches" if len(unmatched) == 1 else "match"
        print(f"warning: {args.boxes}: {count_of(len(unmatched), 'stem')} {matches} no input image, e.g. {sorted(unmatched)[0]!r}",
              file=sys.stderr)
    for name, pictures in shared.items():
        print(f"warning: {args.boxes}: {name!r} is the stem of {len(pictures)} pictures ({', '.join(pictures[:3])}"
              f"{', ...' if len(pictures) > 3 else ''}): its boxes are used for each; name one with its extension "
              f"('{pictures[0]}') to give it its own", file=sys.stderr)
    return {rel[r]: b for r, b in given.items()}


def run(args) -> int:
    # (until its loop starts, below; "finished outputs are kept" where none was written read as a lie: user test 38)
    args.interrupted = "interrupted before any image was done: this run wrote nothing (an earlier run's outputs are kept)"
    one = _one_picture(args)
    _check_folders(args)
    images = one or _select_images(args)
    if args.baseline == "dlib":
        require_dlib_predictor("--baseline dlib")
    # one picture is named as it is in its folder: face.png alone was "face", face.jpg's stem too (review 26)
    names = _output_names(sorted(set(images) | set(list_images(args.input))) if one else images, args.input)
    unnamed = _names_too_long(images, names)
    images = [p for p in images if p not in unnamed]
    names = {p: n for p, n in names.items() if p not in unnamed}
    _check_no_foreign_pts(args, names.values())
    boxes = _load_boxes(args, images)
    detected = [p for p in images if p not in boxes]
    if detected and (note := cnn_missing_note()):  # after the usage checks; not when --boxes gives every face
        print(note, file=sys.stderr)
    if args.parts_from is not None and not args.parts:
        print(f"note: --parts-from {args.parts_from} chooses where --parts are read from; without --parts it does nothing", file=sys.stderr)
    made = [p for p in [args.out, *args.out.parents] if not p.exists()]  # the folders this run makes
    check_output_folder(args.out, "--out")
    try:
        # one run at a time: two started into one --out with other options each took the other's
        # outputs, the first run's replaced unsaid (user test 37)
        with exclusive_use(args.out, "images"):
            return _track_all(args, images, names, unnamed, boxes)
    finally:
        remove_if_empty(made)  # nothing written: no empty folder left, nor its new parents (user test 35, review 37b)


def _track_all(args, images: list[Path], names: dict[Path, str], unnamed: list[Path], boxes: dict[Path, list[Detection]]) -> int:
    tracker = Tracker(TrackerConfig.from_args(args, mode="image", detect_side=args.detect_side,
                                              template_maps=args.parts and template_maps_wanted(args)))
    # the temporary files of writes a killed run left (SIGKILL gives no time to clean up); their
    # outputs are redone below, since only a complete output counts as finished
    for folder in {safe_output_path(args.out, f"{base}{stem}").parent for stem in names.values() for base in ("", "dlib/")}:
        if folder.is_dir():
            remove_partial_outputs(folder)
    records = {p: _record(args, names[p]) for p in images}
    for picture in [p for p in images if _changed(records[p], p)]:
        # An earlier run's outputs of another file of this name (replaced since): not this
        # picture's, even if it cannot be read now (user test 16's batch300vw finding, for stills).
        print(f"note: {picture} changed since {names[picture]}.json was written: done again", file=sys.stderr)
        _drop_outputs(args, names[picture], json_too=True, dlib=True)
        records[picture] = None
    todo = images if args.overwrite else [p for p in images if not _finished(args, names[p], records[p], boxes.get(p))]
    options = {**decided_options(tracker.config), "detect_side": tracker.config.detect_side}
    if not args.overwrite:  # (kept with a note, another run's landmarks passed for this one's: user test 36)
        # every earlier output, not only those kept: a rerun that added --annotate redid them all
        # with its own options, unsaid, where one without it was refused (user test 37)
        check_same_options(args.out, {names[p]: records[p].get("options") for p in images if records[p] is not None}, options,
                           "image", "made", "choose another --out, or add --overwrite to redo every image")
    counts = {"done": 0, "resumed": len(images) - len(todo), "no_face": 0, "failed": 0, "faces": 0, "given": 0, "bad_box": 0}
    try:
        _images_loop(args, tracker, todo, names, boxes, counts, options)
    except WriteError as exc:  # a full disk, a folder made read-only: say what is kept
        raise exc.with_note(f"{count_of(counts['done'], 'image')} finished in this run and {counts['resumed']} before it are complete; "
                            "after fixing that, rerun the same command to resume") from exc
    except KeyboardInterrupt:
        args.interrupted = _kept(counts)
        raise
    args.interrupted = _kept(counts)  # (a Ctrl-C while the closing lines are written)
    given = (f" ({counts['given']} with boxes from {args.boxes}, {counts['bad_box']} skipped for a box outside the picture or far larger)"
             if args.boxes else "")
    unrecorded = sum(1 for p in set(images) - set(todo) if "boxes" not in records[p])  # (an earlier version's outputs)
    if unrecorded and args.boxes:
        print(f"note: {count_of(unrecorded, 'image')} finished by an earlier run kept with that run's boxes; "
              "--overwrite redoes them with this run's", file=sys.stderr)
    too_long = f", {len(unnamed)} with names too long" if unnamed else ""
    written = any(p.name != lock_name("images") for p in args.out.iterdir())  # (user test 35)
    print(
        f"done: {count_of(counts['done'], 'image')} processed{given}, {counts['resumed']} already done, {count_of(counts['faces'], 'face')}, "
        f"{counts['no_face']} without a face, {counts['failed']} unreadable or too small{too_long}; "
        f"{f'outputs in {args.out}' if written else 'nothing written'} "
        f"(engine: {tracker.describe()})"
    )
    return 1 if counts["failed"] or counts["bad_box"] or unnamed else 0


def _kept(counts: dict[str, int]) -> str:
    """What an interrupted run says it leaves."""
    return (f"interrupted; {count_of(counts['done'], 'image')} finished in this run and {counts['resumed']} before it are kept "
            "(rerun the same command to resume)")


def _images_loop(args, tracker: Tracker, images: list[Path], names: dict[Path, str], boxes: dict[Path, list[Detection]],
                 counts: dict[str, int], options: dict) -> None:
    from tqdm import tqdm

    def unreadable(message: str) -> None:
        counts["failed"] += 1
        print(f"skipped: {message}", file=sys.stderr)

    def boxes_for(frame) -> list[Detection] | None:
        given = boxes.get(frame.path)
        if given is None:
            print(f"no box: {frame.path} has no line in {args.boxes}; the detector looks for faces", file=sys.stderr)
        return given

    def bad_boxes(frame, exc) -> None:  # the file's boxes are checked on reading; only their fit to this picture is left
        counts["bad_box"] += 1
        print(f"skipped: {frame.path}: {exc}", file=sys.stderr)

    source = ImageSource(images, str(args.input), warn=unreadable, digests=True)
    stream = track_stream(tracker, source, boxes=boxes_for if args.boxes else None, on_bad_boxes=bad_boxes)
    for tracked in tqdm(stream, total=len(images), unit="img", file=sys.stderr, disable=not sys.stderr.isatty()):
        image, result, given, stem = tracked.image, tracked.result, tracked.boxes, names[tracked.path]
        # An earlier run's, from other options or another picture of this name: kept, a .pts stayed
        # beside "faces": [] (no face now), passed for this run's when a kill came between the new
        # .json and .pts, and an annotated picture (or dlib's outputs) this run does not ask for
        # counted as finished for a later one that does, from the picture before (review 26, user
        # tests 13 and 17).  dlib's, when this run makes them, are written over.
        _drop_outputs(args, stem, json_too=False, dlib=args.baseline != "dlib")
        counts["faces"] += len(result.faces)
        if result.dropped:
            print(f"note: {tracked.path}: {args.max_faces + result.dropped} face boxes found, the {args.max_faces} "
                  f"most prominent that fit as faces kept (--max-faces {args.max_faces}; raise it for them all)", file=sys.stderr)
        counts["given"] += given is not None
        labels = frame_part_labels(result.faces, tracker.part_map, image.shape) if args.parts else None
        if args.parts:  # one mask per picture, all 0 without a face
            atomic_write_image(safe_output_path(args.out, f"{stem}_parts.png"), labels)
        if result.faces:
            face = pts_face(result.faces, image.shape[1::-1], given)
            if args.save_maps:
                atomic_save_npz(safe_output_path(args.out, f"{stem}_maps.npz"), **maps_in_image(face, image.shape))
        else:
            counts["no_face"] += 1
            why = "no face could be fitted in the given box(es)" if given else "the detector found none"
            print(f"no face: {tracked.path} ({why}; {stem}.json lists no faces, no .pts written)", file=sys.stderr)
        if args.annotate:
            atomic_write_image(safe_output_path(args.out, f"{stem}_annotated.jpg"), annotate_still(image, result.faces, labels))
        if args.baseline == "dlib":
            write_dlib_baseline(image, safe_output_path(args.out, f"dlib/{stem}"), str(tracked.path))
        atomic_write_json(safe_output_path(args.out, f"{stem}.json"),
                          {**frame_to_json(result, str(tracked.path), image.shape), "input": source.digests.pop(tracked.path),
                           "options": options, "boxes": _boxes_json(given), "parts_from": _parts_from(args)})
        if result.faces:  # after its .json: a .pts without one is never this command's (``_check_no_foreign_pts``)
            write_pts(safe_output_path(args.out, f"{stem}.pts"), face.landmarks)
        counts["done"] += 1
