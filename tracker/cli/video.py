"""``run_tracker video``: track a video file or a camera into an annotated video, per-frame
``.pts``, a CSV and/or a JSON of every stage.  The ``.pts`` files are written as frames are
tracked; the video, CSV and JSON go to hidden temporary files as frames come, renamed into place
when the run ends (at the source's end, or at a Ctrl-C: the frames done are kept) and deleted if it
fails."""
from __future__ import annotations

import csv
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from tracker.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_ITEMS_FAILED,
    EXIT_OK,
    camera_arg,
    count,
    engine_args,
    note_missing_cnn,
    skipped_frames,
    video_args,
    video_fields,
    warn,
)
from tracker.draw import annotate
from tracker.errors import UsageError, count_of
from tracker.fileio import (
    atomic_file,
    check_output_folder,
    check_outputs_apart,
    check_writable,
    interrupts_held,
    remove_stale_temp_files,
    safe_output_path,
)
from tracker.identity import load_recognizer
from tracker.pipeline import Tracker, TrackerConfig
from tracker.pts import write_pts
from tracker.sources import clip_files, open_video_or_camera, track_stream, until_interrupted
from tracker.video import AtomicVideoWriter, VideoError, check_video_output
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


PROGRESS_EVERY_S = 30.0  # without a terminal (no progress bar), a progress line this often


def _check_no_old_frames(folder: Path) -> None:
    """Refuse a --pts-dir that already holds frame files (000001.pts ...): an earlier run's would
    outlive this one where a frame has no face, and deleting them is not ours to do, since they may
    be a clip's annotations (300VW keeps them under exactly these names)."""
    old = sorted(p.name for p in folder.iterdir() if FRAME_PTS_NAME.fullmatch(p.name) and p.is_file())
    if old:
        raise UsageError(f"--pts-dir {folder} already holds {len(old)} frame files ({old[0]} ...: an earlier run's, or "
                         "annotations); give an empty or new folder, or delete them")


def run(args) -> int:
    from tqdm import tqdm

    if (args.input is None) == (args.camera is None):
        raise UsageError("give a video file or --camera N (one of them)")
    if not (args.out or args.pts_dir or args.csv or args.json):
        raise UsageError("nothing to write: give at least one of --out, --pts-dir, --csv, --json")
    # a check that fails closes the source at once (a camera stayed held, its reader thread in a read; review 36);
    # from the run on, its own `with source` does
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
        tracker = Tracker(TrackerConfig.from_args(args, mode="video", **video_fields(args, source.live)))
        if source.live:
            print(f"tracking {source.label}; Ctrl-C stops and saves", file=sys.stderr)
        # the recogniser for the subject --pts-dir writes and the JSON names (the JSON alone named
        # another subject than with --pts-dir; review 36)
        subject = Subject(recognizer=load_recognizer() if args.pts_dir or args.json else None)
        opened.pop_all()
    t_start = time.perf_counter()
    n = tracked_frames = pts_written = with_face = 0
    # Every output goes to a hidden temporary file as the frames come (an hour's JSON held in memory
    # grew by ~74 KB a frame; user test 10), renamed when the run ends (at the end of the source,
    # or at a Ctrl-C: the frames done are kept), deleted on any failure.
    saved = False
    try:
        with source, ExitStack() as outputs:
            table = csv.writer(outputs.enter_context(atomic_file(args.csv, "w"))) if args.csv else None
            if table:
                table.writerow(CSV_HEADER)
            frames_json = JsonFrames(outputs.enter_context(atomic_file(args.json, "w")), {
                "source": source.label, "coordinates": COORDINATES, "fps": source.fps, "frame_size": list(source.size)}) if args.json else None
            # entered last, closed first: a video that fails to close takes the tables with it
            writer = outputs.enter_context(AtomicVideoWriter(args.out, source.fps, source.size, paced=source.live)) if args.out else None
            with until_interrupted(source) as stop:
                stream = track_stream(tracker, source, limit=args.max_frames)
                bar = sys.stderr.isatty()
                said = t_start
                for tracked in tqdm(stream, total=source.length or None, unit="frame", file=sys.stderr, disable=not bar):
                    result = tracked.result
                    annotated = annotate(tracked.image, result, tracked.fps) if writer else None
                    face = subject.pick(result.faces, tracked.image.shape[1::-1], tracked.image)
                    with interrupts_held():  # a Ctrl-C ends the run after this frame's outputs, not between them
                        n = tracked.index + 1  # frame numbers are 1-based, like the .pts files
                        if writer:
                            writer.write(annotated, at=tracked.index)
                        if args.pts_dir and face is not None:
                            write_pts(safe_output_path(args.pts_dir, frame_pts_name(n)), face.landmarks)
                            pts_written += 1
                        if table:
                            table.writerows(csv_rows(n, result.faces, tracked.time))
                        if frames_json:
                            frames_json.add({"frame": n, "time": None if tracked.time is None else round(tracked.time, 6),
                                             "faces": [face_to_json(f) for f in result.faces],
                                             "subject": None if face is None else face.track_id, "timings_ms": result.timings})
                        tracked_frames += 1
                        with_face += bool(result.faces)
                    if not bar and time.perf_counter() - said >= PROGRESS_EVERY_S:  # a log (nohup, CI) heard nothing until the end
                        said = time.perf_counter()
                        print(f"frame {n}{f' of ~{source.length}' if source.length else ''}, {tracked_frames / (said - t_start):.1f} fps",
                              file=sys.stderr)
            if tracked_frames == 0:  # inside the writers: no empty output is left behind
                if stop.early:
                    raise KeyboardInterrupt
                raise VideoError(f"{source.label}: no decodable frame (corrupt, or not a video)")
            with interrupts_held():  # a second Ctrl-C while the run is saved comes after the saving
                if frames_json:
                    frames_json.close(complete=not stop.early)
                outputs.close()
                saved = True  # (here: a Ctrl-C held meanwhile is raised as the block ends)
    except KeyboardInterrupt:  # the run had ended and its outputs are saved (the camera was closing): reported as done
        if not saved:
            raise
        print("note: interrupted while saving: the outputs were saved first", file=sys.stderr)
    elapsed = time.perf_counter() - t_start
    written = [str(p) for p in (args.out, args.csv, args.json) if p] + ([f"{pts_written} .pts in {args.pts_dir}"] if args.pts_dir else [])
    skipped = skipped_frames(source.skipped)
    # "28 frames, 1 skipped" read as 28 tracked where 27 were (user test 18)
    # (a clip with no face said "150 frames tracked ... 0 .pts" and nothing else; user test 36)
    print(f"{'interrupted' if stop.early else 'done'}: {count_of(tracked_frames, 'frame')} tracked{skipped}, a face in {with_face}, "
          f"in {elapsed:.1f}s "
          f"({tracked_frames / elapsed:.1f} fps, engine {tracker.describe()}); wrote {', '.join(written)}")
    if stop.early:
        print(f"note: interrupted after frame {n}{f' of ~{source.length}' if source.length else ''}: the outputs hold the frames up to "
              "it (the JSON says \"complete\": false); video does not resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_ITEMS_FAILED if source.skipped else EXIT_OK
