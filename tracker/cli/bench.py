"""``run_tracker bench``: per-stage ms and fps at 640x480, with dlib HOG + 68 points (and
optionally MediaPipe) timed in the same run; ``tracker.timing`` does the timing."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tracker.assets import DEMO_CLIP
from tracker.cli.common import camera_arg, count, engine_args, warn
from tracker.detector import CNN_EXTRA, dlib_models_problem
from tracker.errors import UsageError, count_of
from tracker.fileio import atomic_write_json, check_outputs_apart, check_writable
from tracker.opprofile import profile_lines
from tracker.pipeline import TrackerConfig, parallelism
from tracker.sources import clip_files, load_frames, open_video_or_camera
from tracker.timing import benchmark, open_mediapipe, print_result
from tracker.video import VideoError

NAME = "bench"
SIZE = (640, 480)  # every contender times the same frames at this size


def register(sub) -> None:
    p = sub.add_parser(NAME, help="per-stage ms and fps at 640x480, with dlib HOG + 68 points timed in the same run")
    p.add_argument("--video", type=Path, help="clip to time (default: the bundled demo clip); its frames are resized to 640x480 "
                   "(aspect ratio not kept) so that every row times the same pictures")
    camera_arg(p, "instead of a clip: its first --frames frames are recorded, then timed", live=False)
    p.add_argument("--frames", type=count(1), default=150, help="frames of the clip to time, from its start (default 150)")
    p.add_argument("--repeats", type=count(1), default=2, help="passes over the clip (tracker and dlib alternate; default 2)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--profile", action="store_true",
                   help="also profile every model per ONNX Runtime operator type (%% of time, ms per call), in separate sessions after the timing")
    p.add_argument("--mediapipe-python", type=Path, metavar="PYTHON",
                   help="also time MediaPipe Face Mesh, run by this Python (a separate environment with mediapipe==0.10.21: see README)")
    engine_args(p)

    p.set_defaults(func=run)


def run(args) -> int:
    if args.video is not None and args.camera is not None:
        raise UsageError("give --video or --camera, not both")
    check_outputs_apart(clip_files(args.video, "the --video clip"), {"--json": args.json})
    if args.json:
        check_writable(args.json)  # now, not after minutes of timing
    if args.mediapipe_python is not None and shutil.which(args.mediapipe_python) is None:  # a path, or a name on PATH
        raise UsageError(f"--mediapipe-python {args.mediapipe_python}: no such program")
    source = open_video_or_camera(args.video or (DEMO_CLIP if args.camera is None else None), args.camera, warn)
    frames = load_frames(source, args.frames, SIZE)
    if not frames:
        raise VideoError(f"{source.label}: no decodable frame")
    if len(frames) < args.frames:
        print(f"note: {source.label} has {count_of(len(frames), 'frame')}, fewer than --frames {args.frames}: all of them are timed", file=sys.stderr)
    with_dlib = dlib_models_problem() is None
    if not with_dlib:
        print(f"note: dlib not timed (its 68-point predictor comes with {CNN_EXTRA}); the tracker alone", file=sys.stderr)
    config = TrackerConfig.from_args(args, mode="video")
    mediapipe = open_mediapipe(args.mediapipe_python, config.max_faces)
    result = benchmark(config, frames, source.label, args.repeats, with_dlib, mediapipe, args.profile)
    print_result(result)
    if args.profile:
        print("\n".join(profile_lines(result["profile"], parallelism(config, "onnx")[1])))
    if args.json:
        atomic_write_json(args.json, result)
    return 0
