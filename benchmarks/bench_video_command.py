"""Wall time of the whole ``run_tracker video`` command, start-up included, next to dlib's loop.

    python -m benchmarks.bench_video_command [--clip CLIP] [--rounds 3] [--repo OTHER_CHECKOUT] [--json docs/results/bench_video_command.json]

The clip (default: the bundled demo clip played four times, 600 frames at 640x480, written to a
temporary file) is processed in turn, round after round (interleaved, so that a busy machine
slows every contender alike), each in a fresh process as a user would run it:

* ``run_tracker video CLIP --csv OUT``: import, model load, decoding, tracking, the CSV;
* dlib's per-frame loop (``--dlib-loop``, below): import, dlib's 68-point predictor loaded,
  each frame decoded with OpenCV, HOG + 68 points on every face (``tracker.timing.time_dlib``'s
  work), the same CSV;
* with ``--repo``: the same video command from another checkout (e.g. before a change).

Then, in this process, the video command's frame loop alone (decode + track, one Tracker) with
and without the read-ahead thread (``VideoSource(..., read_ahead=)``), alternating per round: what
decoding in the background changes, without the start-up's noise.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOOPS = 4  # demo clip plays: 4 x 150 = 600 frames


def make_clip(out: Path, loops: int = LOOPS) -> int:
    """The demo clip played `loops` times (mp4v, as shipped); returns the frame count."""
    import cv2

    from tracker.assets import DEMO_CLIP
    from tracker.sources import VideoSource, load_frames
    from tracker.video import AtomicVideoWriter

    source = VideoSource(DEMO_CLIP)
    frames = load_frames(source)
    with AtomicVideoWriter(out, source.fps, source.size) as writer:
        for _ in range(loops):
            for f in frames:
                writer.write(f)
    return int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT))


def dlib_loop(clip: Path, out_csv: Path) -> int:
    """What a dlib user's script does per frame: decode, HOG, 68 points on every face; then a CSV."""
    import cv2

    from tracker.detector import detect_faces, dlib_landmarks

    cap = cv2.VideoCapture(str(clip))
    rows, n = [], 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n += 1
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        for i, d in enumerate(detect_faces(gray)):
            pts = dlib_landmarks(gray, d)
            rows.append([n, i, round(d.score, 4)] + [round(float(v), 2) for v in pts.ravel()])
    cap.release()
    with open(out_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["frame", "face", "score"] + [f"{a}{i}" for i in range(1, 69) for a in ("x", "y")])
        w.writerows(rows)
    return n


def frame_loop(clip: Path, ahead: int, threads: int) -> float:
    """Seconds for decode + track of every frame, as in the ``video`` command (a fresh clip, a reset Tracker)."""
    from tracker.sources import VideoSource, track_stream

    tracker = _loop_tracker(threads)
    t0 = time.perf_counter()
    with VideoSource(clip, ahead) as source:
        for _ in track_stream(tracker, source):
            pass
    return time.perf_counter() - t0


_trackers: dict = {}


def _loop_tracker(threads: int):
    from tracker.pipeline import Tracker, TrackerConfig

    if threads not in _trackers:
        _trackers[threads] = Tracker(TrackerConfig(mode="video", threads=threads, video_cnn_every=30))
    return _trackers[threads]


def run_once(argv: list[str], repo: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(repo))
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, cwd=repo, check=False)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])}: exit {p.returncode}: {p.stderr.strip()[-500:]}")
    return {"wall_s": round(wall, 3), "load_avg": round(os.getloadavg()[0], 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clip", type=Path, help="video to process (default: the demo clip x4, 600 frames)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="the video command's --threads")
    ap.add_argument("--repo", type=Path, help="also time the video command of this checkout (e.g. before a change)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--dlib-loop", nargs=2, type=Path, metavar=("CLIP", "CSV"), help=argparse.SUPPRESS)  # the child process
    args = ap.parse_args(argv)
    if args.dlib_loop:
        dlib_loop(*args.dlib_loop)
        return 0
    from tracker.detector import dlib_models_problem
    from tracker.fileio import atomic_write_json

    if problem := dlib_models_problem():
        raise SystemExit(f"dlib's loop cannot run: {problem}")
    with tempfile.TemporaryDirectory() as tmp:
        clip = args.clip or Path(tmp) / "demo_x4.mp4"
        frames = make_clip(clip) if args.clip is None else None
        video = ["run_tracker.py", "video", str(clip), "--threads", str(args.threads), "--csv", str(Path(tmp) / "video.csv")]
        contenders = {"run_tracker video (this checkout)": (video, REPO),
                      "dlib loop (HOG + 68 points)": (["-m", "benchmarks.bench_video_command", "--dlib-loop", str(clip), str(Path(tmp) / "dlib.csv")],
                                                      REPO)}
        if args.repo:
            contenders[f"run_tracker video ({args.repo})"] = (video, args.repo.resolve())
        runs: dict[str, list[dict]] = {k: [] for k in contenders}
        for r in range(args.rounds):
            for name, (cmd, repo) in contenders.items():
                runs[name].append(run_once(cmd, repo))
                print(f"round {r + 1} {name:<40} {runs[name][-1]['wall_s']:7.2f} s (load average {runs[name][-1]['load_avg']:.1f})", flush=True)
        if frames is None:
            import cv2

            frames = int(cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FRAME_COUNT))
        from tracker.sources import ArraySource, VideoSource, load_frames, track_stream
        from tracker.video import READ_AHEAD

        warm = _loop_tracker(args.threads)
        for _ in track_stream(warm, ArraySource(load_frames(VideoSource(clip), 5))):  # first calls allocate
            pass
        loops: dict[int, list[float]] = {0: [], READ_AHEAD: []}
        for r in range(args.rounds):
            for ahead in loops:
                loops[ahead].append(frame_loop(clip, ahead, args.threads))
                print(f"round {r + 1} frame loop, read-ahead {ahead}: {loops[ahead][-1]:7.2f} s", flush=True)
    rows = {}
    dlib_wall = statistics.median(x["wall_s"] for x in runs["dlib loop (HOG + 68 points)"])
    print(f"\n{frames} frames of {args.clip or 'the demo clip x4'}, medians over {args.rounds} rounds")
    print(f"{'':<42}{'wall s':>8}{'min':>8}{'max':>8}{'fps':>8}{'vs dlib':>9}")
    for name, rs in runs.items():
        walls = [x["wall_s"] for x in rs]
        med = statistics.median(walls)
        rows[name] = {"wall_median_s": med, "wall_min_s": min(walls), "wall_max_s": max(walls), "fps": frames / med,
                      "speedup_vs_dlib_loop": dlib_wall / med, "runs": rs}
        print(f"{name:<42}{med:>8.2f}{min(walls):>8.2f}{max(walls):>8.2f}{frames / med:>8.1f}{dlib_wall / med:>8.2f}x")
    loop_rows = {}
    print(f"\nframe loop in this process (decode + track), medians over {args.rounds} rounds")
    for ahead, walls in loops.items():
        med = statistics.median(walls)
        loop_rows[f"read_ahead_{ahead}"] = {"wall_median_s": med, "ms_per_frame": 1000 * med / frames, "runs_s": [round(w, 3) for w in walls]}
        print(f"read-ahead {ahead}: {med:7.2f} s, {1000 * med / frames:.2f} ms per frame")
    if args.json:
        atomic_write_json(args.json, {"clip": str(args.clip or "demo clip x4"), "frames": frames, "rounds": args.rounds, "threads": args.threads,
                                      "cpus": os.cpu_count(), "load_average_end": list(os.getloadavg()), "contenders": rows,
                                      "frame_loop": loop_rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
