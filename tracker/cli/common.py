"""What several commands share: argument types, the engine and video options, the exit codes and
what Ctrl-C leaves behind."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engines import KINDS, NOTES
from tracker.detector import cnn_missing_note
from tracker.pipeline import LIVE_DETECT_LAG

EXIT_OK, EXIT_ITEMS_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a C tool stopped by Ctrl-C
EXIT_INTERNAL = 1  # a bug (not a TrackerError): the same status as a batch with failed items, as Python itself exits
# What Ctrl-C leaves behind, per command (``set_defaults(interrupted=...)``); only the batch
# commands resume, so only they say so.
RESUMES = "interrupted; finished outputs are kept (rerun the same command to resume)"
DOES_NOT_RESUME = "interrupted; only complete files were written (this command does not resume: rerun it to start again)"
CNN_SILENCE = " (--cnn-every 0: HOG only, without this note)"


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


def existing_folder(text: str) -> Path:
    """argparse type: a folder that exists."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {'not a folder' if path.exists() else 'no such folder'}")
    return path


def engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", default="auto", choices=KINDS,
                   help=f"inference backend (auto: {NOTES['auto']}; torch: {NOTES['torch']})")
    p.add_argument("--threads", type=count(1), default=2,
                   help="CPU threads (default 2); on ONNX Runtime a frame's faces go in up to this many network calls side by side, one thread each")
    p.add_argument("--max-faces", type=count(1), default=4, metavar="N",
                   help="faces tracked per picture or frame (default 4): a picture's most prominent (largest, most central), "
                        "a video's tracks then the detector's best")
    # one or the other: refused while parsing, before a command makes any folder.  The val AUCs below (session 38):
    # python -m benchmarks.val_configs --config '{}' --config '{"refine_flip": false}'
    #     --config '{"refiners": ["mdm_single.onnx"]}' --config '{"int8": false}'
    refiner = p.add_mutually_exclusive_group()
    refiner.add_argument("--no-refine", action="store_true", help="skip the MDM refiner (faster, less accurate)")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="test-time flipping: also refine the mirrored face and average (val AUC 0.626 instead of 0.617; doubles the "
                        "refiner's time). Default: on for pictures and batch300vw, off for video")
    p.add_argument("--dense-flip", action="store_true",
                   help="test-time flipping of DenseReg: its maps for the face and the mirrored face averaged before "
                        "landmarks and parts are read (val parts 69.1 -> 69.6 mean IoU; landmarks no better; one more "
                        "network pass a face)")
    refiner.add_argument("--one-stage", action="store_true", help="one refiner stage instead of two: as fast on one face, ~5%% "
                   "faster on two; val AUC 0.612 instead of 0.626")
    p.add_argument("--fast-network", action=argparse.BooleanOptionalAction, default=None,
                   help="the faster DenseReg (densereg_fast.onnx: 0.8 instead of 1.2 ms a face; a little less accurate "
                        "UV and parts). Default: on for video, off for pictures")
    p.add_argument("--no-int8", action="store_true", help="ONNX Runtime runs the refiners' float graphs instead of their "
                   "int8 variants (~0.2 ms a face slower; the same val AUC, 0.626)")
    p.add_argument("--assets", type=existing_folder, metavar="DIR",
                   help="the models from this folder instead of the packaged tracker/assets: a copy of it with your own "
                        "networks exported into it (python -m training.export ... --out-dir DIR; each file is checked "
                        "against DIR/MANIFEST.json)")


PARTS_FROM = ("template", "network")


def parts_from_arg(p: argparse.ArgumentParser) -> None:
    """``--parts-from``, for the commands that draw parts or textures on faces (read it with
    ``template_maps_wanted``: unset means template, and a command can tell it was given)."""
    p.add_argument("--parts-from", choices=PARTS_FROM,
                   help="where parts and face-transfer textures are read from: template (default) = the 3D template fitted to "
                        "the final landmarks (val parts 74.6 mean IoU; ~20 ms a face); network = DenseReg's own UV "
                        "(69.1; no extra time)")


def template_maps_wanted(args) -> bool:
    """Whether ``--parts-from`` (default: template) asks for the template fitted to the landmarks."""
    return (args.parts_from or PARTS_FROM[0]) == "template"


def video_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-smooth", action="store_true", help="no temporal (One Euro) smoothing of the landmarks")
    p.add_argument("--detect-lag", type=count(0), metavar="N",
                   help="search for new faces in a worker process, using its answer N frames later (0: inline, stalling "
                        "that frame). Default: 3 on a camera, 0 on files (on two cores it saves a file little; worth it on long ones)")
    p.add_argument("--cnn-every", type=count(0), default=30, metavar="N",
                   help="while no face is tracked and HOG finds none, and for a while after a track ended while "
                        "another goes on (until a face comes back where it was), try dlib's CNN detector on 1 frame "
                        "in N (~1 s a call; needs the [cnn] extra; 0: HOG only). Default 30")


def note_missing_cnn(args) -> None:
    """The one ``note:`` line of ``video_args``' commands when ``--cnn-every`` asks for dlib's CNN
    and the ``[cnn]`` extra is missing."""
    if args.cnn_every > 0 and (note := cnn_missing_note(CNN_SILENCE)):
        print(note, file=sys.stderr)


def video_fields(args, live: bool) -> dict:
    """``video_args``' TrackerConfig fields, for a camera (`live`) or a file: the one place
    ``video``, ``transfer`` and ``batch300vw`` read them (transfer tracked without the CNN and
    searched a camera inline; review 36)."""
    return {"smooth": not args.no_smooth, "video_cnn_every": args.cnn_every,
            "detect_lag": args.detect_lag if args.detect_lag is not None else LIVE_DETECT_LAG if live else 0}


def camera_arg(p, what: str = "instead of a file", live: bool = True) -> None:
    """``--camera N``: read camera N; `live`: a command that runs until Ctrl-C or --max-frames
    (``bench`` records a fixed number of frames instead and says so in `what`)."""
    stops = " (stops at Ctrl-C or --max-frames)" if live else ""
    p.add_argument("--camera", type=count(0), metavar="N", help=f"read camera N {what}{stops}")


def warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


