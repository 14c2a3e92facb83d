"""``run_tracker demo``: track the bundled clip (annotated video) and annotate the bundled still
(parts + every stage); needs no webcam and no data."""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from tracker.assets import DEMO_CLIP, DEMO_IMAGE
from tracker.cli.common import engine_args, parts_from_arg, template_maps_wanted
from tracker.draw import STAGE_LEGEND, annotate, annotate_still, frame_part_labels
from tracker.errors import count_of
from tracker.fileio import atomic_write_image, atomic_write_json, check_output_folder, safe_output_path
from tracker.pipeline import Tracker, TrackerConfig
from tracker.sources import ImageSource, VideoSource, track_stream
from tracker.video import READ_AHEAD, AtomicVideoWriter
from tracker.writers import frame_to_json

NAME = "demo"


def register(sub) -> None:
    p = sub.add_parser(NAME, help="track the bundled demo clip and annotate the bundled still (no webcam needed)")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default ./demo_out)")
    engine_args(p)
    parts_from_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    check_output_folder(args.out, "--out")  # before the work: a file or a read-only folder there
    config = TrackerConfig.from_args(args, mode="image", template_maps=template_maps_wanted(args))
    tracker = Tracker(config)
    (still,) = track_stream(tracker, ImageSource([DEMO_IMAGE], str(DEMO_IMAGE)))
    image, result = still.image, still.result
    out = annotate_still(image, result.faces, frame_part_labels(result.faces, tracker.part_map, image.shape), all_stages=True)
    still_path = safe_output_path(args.out, "astronaut_annotated.png")
    atomic_write_image(still_path, out)
    atomic_write_json(safe_output_path(args.out, "astronaut.json"), frame_to_json(result, str(DEMO_IMAGE), image.shape))

    tracker = Tracker(replace(config, mode="video", template_maps=False))  # the clip shows landmarks only
    clip = safe_output_path(args.out, "astronaut_tracked.mp4")
    times, found = [], 0
    with VideoSource(DEMO_CLIP, READ_AHEAD) as source, AtomicVideoWriter(clip, source.fps, source.size) as writer:
        for tracked in track_stream(tracker, source):
            times.append(tracked.track_ms)
            found += bool(tracked.result.faces)
            writer.write(annotate(tracked.image, tracked.result, tracked.fps))
    ms = float(np.mean(times))  # frames over time: the median frame leaves out the face searches
    drawn = ", ".join(STAGE_LEGEND[s] for s in (result.faces[0].stages if result.faces else ()))  # (no MDM with --no-refine)
    print(f"still: {count_of(len(result.faces), 'face')} -> {still_path} (parts; landmarks {drawn or 'none'})")
    print(f"clip: face tracked in {found}/{len(times)} frames, {ms:.1f} ms a frame on average ({1000 / ms:.0f} fps) with "
          f"{tracker.describe()} -> {clip}")
    if not result.faces:
        print("warning: no face found on the still (the shipped network may be an early checkpoint)", file=sys.stderr)
    return 0
