"""How near ordinary frames come to a face change: every tracked face's comparison with its last
frame (``tracker.cuts.face_changed``, which starts a new track) over a set of videos.

    python -m benchmarks.bench_face_changes VIDEO [VIDEO ...] [--json out.json]

e.g. the synthetic clips (``python -m tracker.tools.synth300vw ... --out data/synth_val30_v2``:
``data/synth_val30_v2/*/vid.avi``) and the demo clip, with clips of your own where one person
takes another's place.  Prints the pairs that changed and the ordinary pairs nearest the
thresholds (cells changed, colours changed; ``FACE_CUT_CELLS``, ``FACE_CUT_COLOURS``), and
saves them as JSON.  The tracker runs as in ``video`` (the spy below only records the comparisons
it makes; frames as in the outputs, from 1).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import tracker.pipeline as pipeline
from tracker.cuts import FACE_CUT_CELLS, FACE_CUT_COLOURS, changed_cells, histogram_change
from tracker.fileio import atomic_write_json
from tracker.sources import VideoSource


def comparisons(videos: list[Path]) -> list[dict]:
    """Each comparison the tracker made: video, 0-based frame, cells and colours changed, and
    whether it called the face another one."""
    seen, where = [], {}
    compare = pipeline.face_changed

    def spy(before, after):
        changed = compare(before, after)
        if before is not None and after is not None:
            seen.append({**where, "cells": changed_cells(before, after), "colours": histogram_change(before, after), "changed": changed})
        return changed

    pipeline.face_changed = spy
    try:
        for video in videos:
            tracker = pipeline.Tracker(pipeline.TrackerConfig(mode="video"))
            with VideoSource(video, warn=lambda _: None) as source:
                for frame in source.frames():
                    where.update(video=str(video), frame=frame.index + 1)  # (1-based, as the outputs)
                    tracker.track(frame.image, timestamp=frame.time)
    finally:
        pipeline.face_changed = compare
    return seen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_face_changes", description=__doc__.split("\n")[0])
    ap.add_argument("videos", type=Path, nargs="+")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    seen = comparisons(args.videos)
    # nearness to changing: the smaller of the two measures over its threshold (1 or more: changed)
    for c in seen:
        c["nearness"] = min(c["cells"] / FACE_CUT_CELLS, c["colours"] / FACE_CUT_COLOURS)
    changed = [c for c in seen if c["changed"]]
    nearest = sorted((c for c in seen if not c["changed"]), key=lambda c: -c["nearness"])[:5]
    print(f"{len(seen)} consecutive pairs of tracked faces in {len(args.videos)} videos; {len(changed)} called another face")
    print(f"{'':9} {'video':<40} {'frame':>5} {'cells':>6} {'colours':>8}   (thresholds {FACE_CUT_CELLS} and {FACE_CUT_COLOURS})")
    for kind, rows in (("changed", changed), ("nearest", nearest)):
        for c in rows:
            name = f"{Path(c['video']).parent.name}/{Path(c['video']).name}"
            print(f"{kind:9} {name:<40} {c['frame']:>5} {c['cells']:>6.2f} {c['colours']:>8.2f}")
    if args.json:
        atomic_write_json(args.json, {"pairs": len(seen), "changed": changed, "nearest": nearest,
                                      "cells_max": float(np.max([c["cells"] for c in seen], initial=0.0))})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
