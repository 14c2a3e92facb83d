"""``run_tracker video``: track a video file or a camera into an annotated video, per-frame
``.pts``, a CSV and/or a JSON of every stage.  The ``.pts`` files are written as frames are
tracked; the video, CSV and JSON go to hidden temporary files as frames come, renamed into place
when the run ends (at the source's end, or at a Ctrl-C: the frames done are kept) and deleted if it
fails."""
from __future__ import annotations

import csv
import sys
from contextlib import ExitStack
from pathlib import Path

from tracker.cli.common import (
    camera_arg,
    count,
    engine_args,
    note_missing_cnn,
    video_args,
    video_fields,
    warn,
)
from tracker.cli.stream import FrameOutputs, run_stream
from tracker.draw import annotate
from tracker.errors import UsageError, count_of, skipped_frames
from tracker.fileio import (
    atomic_file,
    check_output_folder,
    check_outputs_apart,
    check_writable,
    remove_stale_temp_files,
    safe_output_path,
)
from tracker.identity import load_recognizer
from tracker.pipeline import TrackerConfig
from tracker.pts import write_pts
from tracker.sources import FrameSource, TrackedFrame, clip_files, open_video_or_camera
from tracker.video import AtomicVideoWriter, check_video_output
from tracker.writers import COORDINATES, CSV_HEADER, FRAME_PTS_NAME, JsonFrames, Subject, csv_rows, face_to_json, frame_pts_name

NAME = "video"


def register(sub) -> None:
    p = sub.add_parser(NAME, help="track a video file or a camera: annotated video and per-frame outputs")
    p.add_argument("input", type=Path, nargs="?",
                   help="any video OpenCV can read, or numbered pictures as a pattern ('frames/%%06d.jpg'); or --camera N")
    camera_arg(p, "instead of a video file")
    p.add_argument("--max-frames", type=count(1), metavar="N", help="stop after N frames")
    p.add_argument("--out", type=Path, help="annotated video (.mp4)")
    p.add_argument("--pts-dir", type=Path, help="write 000001.pts ... for one subject: the track written last, else the main face "
                   "(a new or empty folder: one that holds 000001.pts ... already is refused)")
    p.add_argument("--csv", type=Path, help="one row per face and frame: frame, time, track_id, score, quality, x1, y1 ... x68, y68")
    p.add_argument("--json", type=Path, help="every face of every frame with all stages and timings")
    engine_args(p)
    video_args(p)
    p.set_defaults(func=run, interrupted="interrupted before the first frame was tracked; no file was written")


def _check_no_old_frames(folder: Path) -> None:
    """Refuse a --pts-dir that already holds frame files (000001.pts ...): an earlier run's would
    outlive this one where a frame has no face, and deleting them is not ours to do, since they may
    be a clip's annotations (300VW keeps them under exactly these names)."""
    old = sorted(p.name for p in folder.iterdir() if FRAME_PTS_NAME.fullmatch(p.name) and p.is_file())
    if old:
        raise UsageError(f"--pts-dir {folder} already holds {len(old)} frame files ({old[0]} ...: an earlier run's, or "
                         "annotations); give an empty or new folder, or delete them")


class _VideoOutputs(FrameOutputs):
    """The annotated video, the .pts of the subject, the CSV rows and the JSON of each frame."""

    def __init__(self, args, subject: Subject):
        self.args, self.subject = args, subject
        self.pts_written = 0
        self.table = self.frames_json = self.writer = None

    def open(self, stack: ExitStack, source: FrameSource) -> None:
        args = self.args
        if args.csv:
            self.table = csv.writer(stack.enter_context(atomic_file(args.csv, "w")))
            self.table.writerow(CSV_HEADER)
        if args.json:
            self.frames_json = JsonFrames(stack.enter_context(atomic_file(args.json, "w")), {
                "source": source.label, "coordinates": COORDINATES, "fps": source.fps or None, "frame_size": list(source.size)})
        # entered last, closed first: a video that fails to close takes the tables with it
        if args.out:
            self.writer = stack.enter_context(AtomicVideoWriter(args.out, source.fps, source.size, paced=source.live))

    def render(self, tracked: TrackedFrame):
        annotated = annotate(tracked.image, tracked.result, tracked.fps) if self.writer else None
        return annotated, self.subject.pick(tracked.result.faces, tracked.image.shape[1::-1], tracked.image)

    def commit(self, tracked: TrackedFrame, rendered) -> None:
        annotated, face = rendered
        n, result = tracked.index + 1, tracked.result  # frame numbers are 1-based, like the .pts files
        if self.writer:
            self.writer.write(annotated, at=tracked.index)
        if self.args.pts_dir and face is not None:
            write_pts(safe_output_path(self.args.pts_dir, frame_pts_name(n)), face.landmarks)
            self.pts_written += 1
        if self.table:
            self.table.writerows(csv_rows(n, result.faces, tracked.time))
        if self.frames_json:
            self.frames_json.add({"frame": n, "time": None if tracked.time is None else round(tracked.time, 6),
                                  "faces": [face_to_json(f) for f in result.faces],
                                  "subject": None if face is None else face.track_id, "timings_ms": result.timings})

    def finish(self, complete: bool) -> None:
        if self.frames_json:
            self.frames_json.close(complete=complete)


def run(args) -> int:
    if (args.input is None) == (args.camera is None):
        raise UsageError("give a video file or --camera N (one of them)")
    if not (args.out or args.pts_dir or args.csv or args.json):
        raise UsageError("nothing to write: give at least one of --out, --pts-dir, --csv, --json")
    # a check that fails closes the source at once (a camera stayed held, its reader thread in a read; review 36);
    # from the run on, run_stream does
    with ExitStack() as opened:
        source = opened.enter_context(open_video_or_camera(args.input, args.camera, warn))
        check_outputs_apart(clip_files(args.input, "the input video"),
                            {"--out": args.out, "--csv": args.csv, "--json": args.json, "--pts-dir": args.pts_dir})
        if args.out is not None:
            check_video_output(args.out, "--out")
        for path in (args.out, args.csv, args.json):
            if path is not None:
                check_writable(path)  # before the run, not after it
                remove_stale_temp_files(path)  # a killed run's (user test 13)
                if path.exists():  # (replaced unsaid, a 150-frame CSV became a 10-frame one; user test 35)
                    print(f"note: {path} exists: this run's output replaces it when the run ends", file=sys.stderr)
        if args.pts_dir:
            check_output_folder(args.pts_dir, "--pts-dir")
            _check_no_old_frames(args.pts_dir)
        note_missing_cnn(args)
        config = TrackerConfig.from_args(args, mode="video", **video_fields(args, source.live))
        if source.live:
            print(f"tracking {source.label}; Ctrl-C stops and saves", file=sys.stderr)
        # the recogniser for the subject --pts-dir writes and the JSON names (the JSON alone named
        # another subject than with --pts-dir; review 36)
        outputs = _VideoOutputs(args, Subject(recognizer=load_recognizer() if args.pts_dir or args.json else None))
        opened.pop_all()
    run = run_stream(source, config, outputs, limit=args.max_frames)
    written = [str(p) for p in (args.out, args.csv, args.json) if p] + ([f"{outputs.pts_written} .pts in {args.pts_dir}"] if args.pts_dir else [])
    # "28 frames, 1 skipped" read as 28 tracked where 27 were (user test 18)
    # (a clip with no face said "150 frames tracked ... 0 .pts" and nothing else; user test 36)
    print(f"{'interrupted' if run.early else 'done'}: {count_of(run.frames, 'frame')} tracked{skipped_frames(source.skipped)}, "
          f"a face in {run.with_face}, in {run.seconds:.1f}s ({run.fps:.1f} fps, engine {run.engine}); wrote {', '.join(written)}")
    if run.early:
        print(f"note: interrupted after {run.at_frame(source)}: the outputs hold the frames up to "
              "it (the JSON says \"complete\": false); video does not resume", file=sys.stderr)
    return run.exit_code(source)
