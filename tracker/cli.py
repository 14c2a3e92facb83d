"""``run_tracker`` / ``run_tracker.py``: one command line, one subcommand per use.

Each subcommand is a ``register_<name>(subparsers)`` function that adds its parser and sets
``func``; ``main`` turns every expected failure (a ``tracker.errors.TrackerError``: bad input,
missing model, bad option) into one line on stderr and exit status 2, never a traceback; any other
exception is a bug: one "internal error" line and status 1 (the traceback with ``-v``).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from pathlib import Path

from engines import KINDS, NOTES
from tracker.errors import MissingInputError, TrackerError, UsageError
from tracker.stages import Stage

EXIT_OK, EXIT_ITEMS_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERNAL = 1  # a bug (not a TrackerError): the same status as a batch with failed items, as Python itself exits
# What Ctrl-C leaves behind, per command (``set_defaults(interrupted=...)``); only the batch
# commands resume, so only they say so.
RESUMES = "interrupted; finished outputs are kept (rerun the same command to resume)"
DOES_NOT_RESUME = "interrupted; only complete files were written (this command does not resume: rerun it to start again)"


class _Parser(argparse.ArgumentParser):
    # argparse's own error() prints the whole usage block and calls sys.exit(2) from inside
    # parse_args; raising instead lets main() print one line and *return* the exit code.
    def error(self, message: str) -> None:
        raise UsageError(f"{self.prog}: {message} (see --help)")


def count(minimum: int):
    """argparse type: an integer >= minimum (a bad value is a usage error, never silently clamped)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is less than {minimum}")
        return value

    return parse


def _engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", default="auto", choices=KINDS,
                   help=f"inference backend (auto: {NOTES['auto']}; torch: {NOTES['torch']})")
    p.add_argument("--threads", type=count(1), default=2, help="CPU threads for the network (default 2)")
    p.add_argument("--no-refine", action="store_true", help="skip the MDM refiner (faster, less accurate)")
    p.add_argument("--flip", action="store_true", help="test-time flipping: also refine the mirrored face and average "
                   "(val AUC +0.01; doubles the refiner's time)")


def register_images(sub) -> None:
    p = sub.add_parser("images", help="landmarks (+ parts, dense maps) for every image in a folder")
    p.add_argument("--input", type=Path, required=True, help="folder of jpg/png/bmp images")
    p.add_argument("--out", type=Path, required=True, help="output folder (.pts, .json, ...)")
    p.add_argument("--parts", action="store_true", help="also write <stem>_parts.png: raw labels 0-8 for programs (tracker/parts.py), "
                   "black in an image viewer; with --annotate the parts are also drawn in colour")
    p.add_argument("--annotate", action="store_true",
                   help="also write <stem>_annotated.jpg: the picture with the landmarks (and, with --parts, the parts) drawn")
    p.add_argument("--boxes", type=Path, metavar="FILE",
                   help="face boxes instead of the detector: lines 'STEM X0 Y0 X1 Y1' (or CSV), 0-based pixels, "
                   "several lines for several faces; images without a line use the detector (README, Usage)")
    p.add_argument("--save-maps", action="store_true", help="also write <stem>_maps.npz (uv, fg, depth in image pixels)")
    p.add_argument("--baseline", choices=["dlib"], help="also write dlib's 68-point results under OUT/dlib/")
    p.add_argument("--recursive", action="store_true", help="include images in sub-folders")
    p.add_argument("--list", type=Path, help="only these images: a text file of paths relative to --input (e.g. splits/val.txt)")
    p.add_argument("--overwrite", action="store_true", help="redo images whose outputs exist (default: resume)")
    _engine_args(p)

    def run(args) -> int:
        from tracker.commands import run_images

        return run_images(args)

    p.set_defaults(func=run, interrupted=RESUMES)


def register_eval(sub) -> None:
    p = sub.add_parser("eval", help="NME / AUC@0.08 / FR@0.08 / CED of .pts predictions against ground truth")
    p.add_argument("--pred", type=Path, required=True, help="folder with <stem>.json (from `images`) or <stem>.pts")
    p.add_argument("--gt", type=Path, required=True, help="folder with ground-truth <stem>.pts (searched recursively)")
    p.add_argument("--stage", default="final", choices=["final", *(s.value for s in Stage)],
                   help="which stage of <stem>.json to score (final: every stage, the last one last)")
    p.add_argument("--list", type=Path, help="only the stems in this file (e.g. splits/val.txt)")
    p.add_argument("--plot", type=Path, help="write the CED curve here (PNG)")
    p.add_argument("--json", type=Path, help="write the metrics here")

    def run(args) -> int:
        from tracker.commands import run_eval

        return run_eval(args)

    p.set_defaults(func=run)


def register_demo(sub) -> None:
    p = sub.add_parser("demo", help="track the bundled demo clip and annotate the bundled still (no webcam needed)")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default ./demo_out)")
    _engine_args(p)

    def run(args) -> int:
        from tracker.commands import run_demo

        return run_demo(args)

    p.set_defaults(func=run)


def _video_file_args(p) -> None:
    p.add_argument("--no-smooth", action="store_true", help="no temporal (One Euro) smoothing of the landmarks")
    p.add_argument("--cnn-every", type=count(0), default=30, metavar="N",
                   help="while no face is tracked and HOG finds none, try dlib's CNN detector on 1 frame in N "
                        "(~1 s a call; needs the [cnn] extra; 0: HOG only). Default 30")


def register_video(sub) -> None:
    p = sub.add_parser("video", help="track a video file: annotated video and per-frame outputs")
    p.add_argument("input", type=Path, help="any video OpenCV can read")
    p.add_argument("--out", type=Path, help="annotated video (.mp4)")
    p.add_argument("--pts-dir", type=Path, help="write 000001.pts ... for one subject: the track written last, else the largest face")
    p.add_argument("--csv", type=Path, help="one row per face and frame: frame, track_id, score, x1, y1 ... x68, y68")
    p.add_argument("--json", type=Path, help="every face of every frame with all stages and timings")
    _engine_args(p)
    _video_file_args(p)

    def run(args) -> int:
        from tracker.videocommands import run_video

        if not (args.out or args.pts_dir or args.csv or args.json):
            raise UsageError("nothing to write: give at least one of --out, --pts-dir, --csv, --json")
        return run_video(args)

    p.set_defaults(func=run, interrupted="interrupted; no video, CSV or JSON was written, only the per-frame .pts files so far "
                                         "(video does not resume: rerun it to start again)")


def register_batch300vw(sub) -> None:
    p = sub.add_parser("batch300vw", help="track and evaluate every video of a 300VW-style folder (resumable)")
    p.add_argument("root", type=Path, help="folder of NNN/vid.avi|mp4 with NNN/annot/*.pts")
    p.add_argument("--out", type=Path, required=True, help="output folder: NNN/*.pts, NNN/result.json, summary.json, ced.png")
    p.add_argument("--jobs", type=count(1),
                   help="videos tracked in parallel (processes; default 1); with --ray alone: the CPUs the local Ray may use (default: all cores)")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="one Ray task per video (needs the cluster extra): alone, a local Ray started for the run; 'auto', the cluster in "
                        "RAY_ADDRESS or started here by `ray start`; else that cluster's address.  ROOT and OUT must be at the same paths "
                        "on every node.  Each video takes one CPU and one network thread")
    _engine_args(p)
    _video_file_args(p)
    p.add_argument("--stills", action="store_true",
                   help="treat every frame as an independent picture (detect each frame, no tracking): the reference for tracking; "
                        "with --cnn-every > 0 the CNN runs on every frame HOG misses (slow)")

    def run(args) -> int:
        from tracker.videocommands import run_batch300vw

        if args.jobs is not None and args.jobs < 1:
            raise UsageError("--jobs must be at least 1")
        if args.jobs is not None and args.ray not in (None, "local"):
            raise UsageError(f"--jobs does not apply to --ray {args.ray}: the cluster's CPUs decide how many videos run at once")
        return run_batch300vw(args)

    p.set_defaults(func=run, interrupted=RESUMES)


def register_bench(sub) -> None:
    p = sub.add_parser("bench", help="per-stage ms and fps at 640x480, with dlib HOG + 68 points timed in the same run")
    p.add_argument("--video", type=Path, help="clip to time (default: the bundled demo clip)")
    p.add_argument("--frames", type=count(1), default=150, help="frames of the clip to time, from its start (default 150)")
    p.add_argument("--repeats", type=count(1), default=2, help="passes over the clip (tracker and dlib alternate)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--profile", action="store_true",
                   help="also profile every model per ONNX Runtime operator type (%% of time, ms per call), in separate sessions after the timing")
    p.add_argument("--mediapipe-python", type=Path, metavar="PYTHON",
                   help="also time MediaPipe Face Mesh, run by this Python (a separate environment with mediapipe==0.10.21: see README)")
    _engine_args(p)

    def run(args) -> int:
        from tracker.bench import run_bench

        return run_bench(args)

    p.set_defaults(func=run)


def register_viewer(sub) -> None:
    p = sub.add_parser("viewer", help="the Qt viewer: webcam, video or image folder with live overlays (needs the ui extra)")
    p.add_argument("--source", help="'webcam', a video file or an image folder (default: the first camera, else the bundled demo clip)")
    p.add_argument("--device", type=int, help="camera index (implies --source webcam when no source is given)")
    p.add_argument("--texture", type=Path, help="UV texture for the face-transfer overlay (default: tracker/assets/textures/facepaint.png)")
    p.add_argument("--transfer", action="store_true", help="start with the face-transfer overlay on")
    _engine_args(p)

    def run(args) -> int:
        from ui.launch import display_problem, launch, qt_start_problem
        from ui.sources import spec_from_argument

        # Before Qt is imported here: Qt aborts the process without a display or platform plugin.
        problem = display_problem() or qt_start_problem()
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return EXIT_USAGE
        if args.texture is not None and not args.texture.is_file():
            raise MissingInputError(f"{args.texture}: texture not found")
        given = args.source is not None or args.device is not None
        source = spec_from_argument(args.source, args.device or 0) if given else None
        from tracker.pipeline import TrackerConfig

        return launch(source, TrackerConfig.from_args(args, mode="video"), texture=args.texture, transfer=args.transfer)

    p.set_defaults(func=run)
    # `webcam` is the viewer on a camera: one window for live tracking, with every overlay.
    w = sub.add_parser("webcam", help="live tracking from a camera in the viewer (= viewer --source webcam)")
    w.add_argument("--device", type=int, default=0, help="camera index")
    _engine_args(w)
    w.set_defaults(func=run, source="webcam", texture=None, transfer=False)


def register_transfer(sub) -> None:
    from tracker.transfer import COLOR_MATCHES, DEFAULT_STRENGTH

    p = sub.add_parser("transfer", help="render a UV-space texture, or a face unwrapped from a photo, onto the faces of an image, video or webcam")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--texture", type=Path, help="texture in the template's UV space (PNG, BGRA alpha respected; see tracker/assets/textures/)")
    what.add_argument("--source-face", type=Path, help="photo of a face: unwrapped into UV space (holes mirrored, inpainted) and transferred")
    p.add_argument("--target", required=True, help="image, video file, or 'webcam'")
    p.add_argument("--out", type=Path, required=True, help="output image (image target) or video, e.g. .mp4 (video/webcam target)")
    p.add_argument("--match", choices=COLOR_MATCHES, help="colour matching: shading (texture colours, target lighting; default with --texture), "
                   "lab (target skin tone too; default with --source-face), none")
    p.add_argument("--strength", type=float, default=DEFAULT_STRENGTH, help=f"blend weight in [0,1] (default {DEFAULT_STRENGTH})")
    p.add_argument("--save-texture", type=Path, help="with --source-face: also write the unwrapped texture (PNG), reusable with --texture")
    p.add_argument("--device", type=int, default=0, help="camera index with --target webcam")
    p.add_argument("--max-frames", type=count(1), help="stop after N frames (a webcam otherwise runs until Ctrl-C)")
    _engine_args(p)

    def run(args) -> int:
        from tracker.transfercommands import run_transfer

        return run_transfer(args)

    p.set_defaults(func=run)


def register_version(sub) -> None:
    p = sub.add_parser("version", help="print versions and available engines")

    def run(args) -> int:
        from importlib.metadata import PackageNotFoundError, version

        from engines import available_engines

        try:
            print(f"densereg-tracker {version('densereg-tracker')}")
        except PackageNotFoundError:
            print("densereg-tracker (not installed as a package)")
        for kind, reason in available_engines().items():
            print(f"  engine {kind}: {'available' if reason is None else 'unavailable - ' + reason}")
        return EXIT_OK

    p.set_defaults(func=run)


REGISTRY = [register_demo, register_images, register_eval, register_video, register_batch300vw, register_bench, register_viewer,
            register_transfer, register_version]


def _quiet_native_libraries() -> None:
    """FFmpeg and OpenCV print their own multi-line warnings (``moov atom not found``,
    ``[ WARN:0@0.1] ...``) beside the one line the command prints about the same problem.
    OpenCV's FFmpeg backend reads its variable when it is first used; ``-v`` keeps both."""
    import cv2

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="run_tracker", description="DenseReg face tracker: dense face correspondence, 68 landmarks, tracking.")
    ap.add_argument("-v", "--verbose", action="store_true", help="log debug information")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")  # sub-parsers inherit _Parser
    for register in REGISTRY:
        register(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns the process exit code: 0 ok, 1 some inputs failed (or an
    internal error), 2 a bad input or command line (a ``TrackerError``), 130 interrupted."""
    ap = build_parser()
    try:
        args = ap.parse_args(argv)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help: argparse printed it and exits 0
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    if not args.verbose:
        _quiet_native_libraries()
    if not getattr(args, "func", None):
        print(f"error: no command given; one of: {', '.join(r.__name__.removeprefix('register_') for r in REGISTRY)} (see --help)", file=sys.stderr)
        return EXIT_USAGE
    try:
        return args.func(args)
    except TrackerError as exc:  # what the user gave cannot be used: their problem to fix, in one line
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(getattr(args, "interrupted", DOES_NOT_RESUME), file=sys.stderr)
        return 130
    except Exception as exc:  # anything else is a bug: say so, and where to find the details
        if args.verbose:
            traceback.print_exc()
            print(f"internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        else:
            print(f"internal error: {type(exc).__name__}: {exc} (rerun with -v for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())
