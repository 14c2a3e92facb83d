"""Wall time of one 300VW-style folder with ``batch300vw --jobs 1``, ``--jobs 2`` and ``--ray``.

    python -m tracker.tools.synth300vw --images ../shared/data/300w --list ../shared/data/300w/splits/val.txt --limit 4 --frames 150 --out /tmp/vw4
    python -m benchmarks.bench_batch --root /tmp/vw4 [--rounds 3] [--json docs/results/bench_batch.json]

Each round runs every mode once, in turn (interleaved, so that a busy machine slows every mode
alike), as the user would: a fresh ``run_tracker`` process and a fresh output folder.  Recorded
per run: the wall time of the whole command (start-up, models, Ray, summary included) and each
video's tracking time (``seconds`` in its result.json).  The outputs of every run are checked to
be the same frames as the first run's.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tracker.fileio import atomic_write_json

REPO = Path(__file__).resolve().parents[1]
MODES = ["--jobs 1", "--jobs 2", "--ray"]


def frames_written(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.glob("*/*.pts"))}


def run_once(root: Path, out: Path, mode: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO))  # this checkout, in the driver and (inherited) in Ray's workers
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, str(REPO / "run_tracker.py"), "batch300vw", str(root), "--out", str(out), *mode.split()],
                       capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{mode}: exit {p.returncode}: {p.stderr.strip()[-500:]}")
    results = [json.loads(r.read_text()) for r in sorted(out.glob("*/result.json"))]
    return {"wall_s": round(wall, 2), "video_s": [r["seconds"] for r in results], "video_frames": [r["frames"] for r in results],
            "load_avg": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, required=True, help="300VW-style folder (e.g. made by python -m tracker.tools.synth300vw)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", nargs="+", default=MODES, help="batch300vw options per mode (default: %(default)s)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    runs: dict[str, list[dict]] = {m: [] for m in args.modes}
    reference, same = None, True
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for i, mode in enumerate(args.modes):
                out = Path(tmp) / f"r{r}_m{i}"
                runs[mode].append(run_once(args.root, out, mode))
                frames = frames_written(out)
                reference = reference if reference is not None else frames
                same &= frames == reference
                print(f"round {r + 1} {mode:>10}: {runs[mode][-1]['wall_s']:.1f} s (load average {runs[mode][-1]['load_avg']:.1f})", flush=True)
    print(f"\n{'mode':>10} {'wall median':>12} {'min':>7} {'max':>7} {'tracking s/video':>17} {'fps/video':>10}   (medians)")
    rows = {}
    for mode, rs in runs.items():
        walls = [x["wall_s"] for x in rs]
        per_video = statistics.median(s for x in rs for s in x["video_s"])
        fps = statistics.median(f / s for x in rs for f, s in zip(x["video_frames"], x["video_s"]))
        rows[mode] = {"wall_median_s": statistics.median(walls), "wall_min_s": min(walls), "wall_max_s": max(walls),
                      "video_median_s": round(per_video, 2), "video_median_fps": round(fps, 1), "runs": rs}
        print(f"{mode:>10} {rows[mode]['wall_median_s']:>11.1f}s {min(walls):>6.1f}s {max(walls):>6.1f}s {per_video:>16.1f}s {fps:>10.1f}")
    print(f"same frames written by every run: {'yes' if same else 'NO'}")
    if args.json:
        atomic_write_json(args.json, {"root": str(args.root), "videos": len(runs[args.modes[0]][0]["video_s"]), "cpus": os.cpu_count(),
                                      "rounds": args.rounds, "same_outputs": same, "modes": rows})
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
