"""How much face-transfer paint lands on an occluder: the synthetic 300VW clips' occluder frames.

    python -m tracker.tools.synth300vw --images ../shared/data/300w --list ../shared/data/300w/splits/val.txt --out data/synth_val30 --limit 30
    python -m benchmarks.bench_occlusion --root data/synth_val30 [--json docs/results/occlusion.json]

``tracker.tools.synth300vw`` sweeps a hand-sized brown bar across each face and records where it is
(``synth.json``, ``occluders``).  Every clip is tracked in video mode with the dense maps, as the
``transfer`` command and the viewer do, and on every frame the blend weight of the paint (0..1,
strength 1, an opaque texture) is measured inside the face (the convex hull of the annotated
landmarks): on the occluder's pixels, on the rest of the face in the same frames, and on the
face in frames without the occluder (what the tests cost where there is nothing to hide).
Three blends are compared, in the same run:

* foreground: the network's foreground probability alone (the blend before ``tracker.occlusion``);
* + colour: times the per-picture colour test (what a still image gets);
* + colour + memory: times the tracker's visibility map, with the face's remembered colours
  (what video gets).

Prints a table and, with --json, saves it with per-clip figures.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from tracker.batch import find_300vw_videos
from tracker.crop import warp_image
from tracker.fileio import atomic_write_json
from tracker.occlusion import WORK_SIZE, visibility_map
from tracker.pipeline import FaceResult, Tracker, TrackerConfig
from tracker.pts import read_pts
from tracker.sources import VideoSource, track_stream
from tracker.transfer import face_region

BLENDS = ("foreground", "+ colour", "+ colour + memory")


def paint_weights(face: FaceResult, frame: np.ndarray, tracker: Tracker) -> dict[str, np.ndarray]:
    """The paint's blend weight over the whole frame (H,W) for each blend of ``BLENDS``."""
    colour = visibility_map(warp_image(frame, face.roi, WORK_SIZE), face.maps, tracker.part_map, tracker.config.fg_threshold)
    out = {}
    for name, visibility in zip(BLENDS, (None, colour, face.visibility)):
        weight = np.zeros(frame.shape[:2], np.float32)
        region = face_region(face.maps, face.crop_to_image, frame.shape, visibility=visibility)
        if region is not None:
            weight[region.slices] = region.alpha
        out[name] = weight
    return out


def measure_clip(folder: Path, video: Path, tracker: Tracker) -> dict:
    """Sums of paint weight and pixel counts per blend and area over one clip."""
    occluders = json.loads((folder / "synth.json").read_text()).get("occluders", {})
    sums = {b: {"occluder": 0.0, "visible": 0.0, "clear": 0.0} for b in BLENDS}
    pixels = {"occluder": 0, "visible": 0, "clear": 0}
    frames = {"occluder": 0, "occluder_no_face": 0}
    ms = []
    with VideoSource(video) as source:
        for tracked in track_stream(tracker, source):
            i, frame, result = tracked.index + 1, tracked.image, tracked.result
            ms.append(result.timings.get("visibility", 0.0))
            annot = folder / "annot" / f"{i:06d}.pts"
            if not annot.exists():
                continue
            truth = read_pts(annot, expected=68)
            hull = np.zeros(frame.shape[:2], np.uint8)
            cv2.fillConvexPoly(hull, cv2.convexHull(np.round(truth).astype(np.int32)), 1)
            hull = hull.astype(bool)
            box = occluders.get(str(i))
            occ = np.zeros_like(hull)
            if box is not None:
                occ[max(box[1], 0) : box[3] + 1, max(box[0], 0) : box[2] + 1] = True  # cv2.rectangle's ends are inclusive
            covered = hull & occ
            # A frame where the bar only grazes the face counts as one without it.
            areas = {"occluder": covered, "visible": hull & ~occ} if covered.sum() >= 20 else {"clear": hull & ~occ}
            if "occluder" in areas:
                frames["occluder"] += 1
            # The face painted is the tracker's face nearest the annotated one (there is one per clip).
            face = min(result.faces, key=lambda f: np.linalg.norm(np.nanmean(f.landmarks, 0) - truth.mean(0))) if result.faces else None
            if face is not None and np.linalg.norm(np.nanmean(face.landmarks, 0) - truth.mean(0)) > 0.5 * np.ptp(truth[:, 0]):
                face = None
            if face is None:
                frames["occluder_no_face"] += "occluder" in areas
                continue  # nothing is painted by any blend; the frame does not count
            weights = paint_weights(face, frame, tracker)
            for area, m in areas.items():
                pixels[area] += int(m.sum())
                for b in BLENDS:
                    sums[b][area] += float(weights[b][m].sum())
    return {"sums": sums, "pixels": pixels, "frames": frames, "visibility_ms": float(np.median(ms)) if ms else 0.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_occlusion", description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, required=True, help="synthetic 300VW folder made by python -m tracker.tools.synth300vw")
    ap.add_argument("--limit", type=int, default=0, help="at most N clips")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    clips = [(name, video) for name, video in find_300vw_videos(args.root)
             if "occluders" in json.loads((args.root / name / "synth.json").read_text() if (args.root / name / "synth.json").exists() else "{}")]
    if not clips:
        print(f"error: {args.root}: no clips with recorded occluders (make them with python -m tracker.tools.synth300vw)", file=sys.stderr)
        return 2
    clips = clips[: args.limit] if args.limit else clips
    tracker = Tracker(TrackerConfig(mode="video", visibility=True, threads=args.threads))
    per_clip = {}
    for name, video in clips:
        per_clip[name] = measure_clip(args.root / name, video, tracker)
        print(f"{name}: {per_clip[name]['frames']['occluder']} occluder frames", file=sys.stderr)
    total = {area: sum(c["pixels"][area] for c in per_clip.values()) for area in ("occluder", "visible", "clear")}
    table = {b: {area: sum(c["sums"][b][area] for c in per_clip.values()) / max(total[area], 1) for area in total} for b in BLENDS}
    frames = {k: sum(c["frames"][k] for c in per_clip.values()) for k in ("occluder", "occluder_no_face")}
    ms = float(np.median([c["visibility_ms"] for c in per_clip.values()]))
    lines = [f"{len(clips)} clips, {frames['occluder']} frames with the occluder over the face "
             f"({frames['occluder_no_face']} of them without a tracked face, not counted); mean paint weight (0..1) inside the face:",
             f"{'blend':<20} {'on the occluder':>16} {'rest of the face':>17} {'face, no occluder':>18}"]
    for b in BLENDS:
        r = table[b]
        lines.append(f"{b:<20} {r['occluder']:>16.3f} {r['visible']:>17.3f} {r['clear']:>18.3f}")
    lines.append(f"visibility map: {ms:.1f} ms per frame (median of the clips' medians)")
    print("\n".join(lines))
    if args.json:
        atomic_write_json(args.json, {"root": str(args.root), "clips": len(clips), "frames": frames, "paint_weight": table,
                                      "visibility_ms": ms, "per_clip": per_clip})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
