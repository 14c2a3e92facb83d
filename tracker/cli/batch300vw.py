"""``run_tracker batch300vw``: track and evaluate every video of a 300VW-style folder, resumable
(the runner, its layout and outputs: ``tracker.batch``; the scores: ``tracker.evaluation``).
Reads files only: a camera has no annotations to score against (``video --camera`` tracks one)."""
from __future__ import annotations

import dataclasses
import functools
import json
import sys
from contextlib import closing
from pathlib import Path

from tracker.batch import VideoJob, annotations_digest, find_300vw_videos, input_fingerprint, local_outcomes, rescore_300vw_video
from tracker.cli.common import RESUMES, count, engine_args, note_missing_cnn, video_args, video_fields
from tracker.cli.options import check_same_options, decided_options
from tracker.detector import require_dlib_predictor
from tracker.errors import NotAFolderError, UsageError, count_of, install_hint
from tracker.evaluation import result_problem, summarise_300vw
from tracker.fileio import (
    atomic_write_image,
    atomic_write_json,
    check_output_folder,
    discard_dir,
    exclusive_use,
    remove_partial_outputs,
    safe_output_path,
)
from tracker.pipeline import TrackerConfig, TrackerMode, uses_fast_network
from tracker.plots import ced_plot

NAME = "batch300vw"


def register(sub) -> None:
    p = sub.add_parser(NAME, help="track and evaluate every video of a 300VW-style folder (resumable)")
    p.add_argument("root", type=Path, help="folder of NNN/vid.avi|mp4 with NNN/annot/*.pts")
    p.add_argument("--out", type=Path, required=True, help="output folder: NNN/*.pts, NNN/result.json, summary.json, ced.png")
    p.add_argument("--jobs", type=count(1),
                   help="videos tracked in parallel (processes; default 1); with --ray alone: the CPUs the local Ray may use (default: all cores)")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="one Ray task per video (needs the cluster extra): alone, a local Ray started for the run; 'auto', the cluster in "
                        "RAY_ADDRESS or started here by `ray start`; else that cluster's address.  ROOT and OUT must be at the same paths "
                        "on every node.  Each video takes one CPU and one network thread")
    engine_args(p)
    video_args(p)
    p.add_argument("--stills", action="store_true",
                   help="treat every frame as an independent picture (detect each frame, no tracking): the reference for tracking; "
                        "with --cnn-every > 0 the CNN runs on every frame HOG misses (slow)")
    p.add_argument("--baseline", choices=["dlib"],
                   help="also run dlib (HOG detection + 68-point predictor on every frame, the subject by --subject) and score it "
                        "beside the tracker: its frames in OUT/NNN/dlib/, its scores in result.json and summary.json (baseline.dlib), "
                        "its curve in ced.png; needs the cnn extra")
    p.add_argument("--subject", choices=["annotated", "main"], default="annotated",
                   help="which face of a frame the .pts hold and are scored: annotated (default), the face in the box of the first "
                        "annotated face it finds, followed from there without looking at the annotations again (by its track; "
                        "--stills and dlib's: the face nearest it); main, the most prominent face, never looking at the annotations")
    p.add_argument("--overwrite", action="store_true",
                   help="redo every video, those an earlier run finished too (default: resume, which is refused when the "
                        "finished videos were tracked with other options)")
    p.set_defaults(func=run, interrupted=RESUMES)


def output_options(config: TrackerConfig, baseline: str | None = None, subject: str = "main") -> dict:
    """The options that decide the tracked frames and scores (``decided_options``, and this
    command's own).  Recorded in every ``result.json`` and in ``summary.json``; a rerun compares them."""
    video = config.mode is TrackerMode.VIDEO
    options = {"stills": not video, **decided_options(config),
               "smooth": config.smooth and video, "cnn_every": config.video_cnn_every, "detect_lag": config.detect_lag}
    if baseline is not None:  # only when given, as --assets
        options["baseline"] = baseline
    if subject != "main":  # (runs before session 33 took the main face and recorded nothing: those are refused for it)
        options["subject"] = subject
    return options


def _read_result(path: Path) -> dict | None:
    """A finished video's ``result.json``; None when it cannot be read or is not a JSON object."""
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) else None


def _check_same_options(args, names: list[str], options: dict) -> None:
    """``check_same_options`` over the finished videos (a result.json that cannot be read is
    tracked again, with a warning: ``_finished_video``; it stopped the run: user test 19)."""
    recorded = {}
    for name in names:
        path = args.out / name / "result.json"
        if path.exists() and (result := _read_result(path)) is not None:
            recorded[name] = result.get("options")
    check_same_options(args.out, recorded, options, "video", "tracked", "choose another --out, or add --overwrite to redo every video")


def _check_not_foreign(args, names: list[str]) -> None:
    """Before any work: a video's output folder ``OUT/NNN`` is replaced whole when its video is
    redone, and this command's own appear only complete (``result.json`` in them: they are
    filled under a hidden name), so a visible one without it that holds anything is not ours
    (copied annotations, the user's files).  ``--out`` equal to the root would replace the
    videos and their annotations."""
    if args.out.resolve() == args.root.resolve():
        raise UsageError(f"--out {args.out} is the videos' folder: its NNN/ folders would be replaced; choose another folder")
    for name in names:
        folder = args.out / name
        if folder.exists() and not folder.is_dir():  # (found only after tracking the whole video, every rerun; review 36)
            raise UsageError(f"--out {args.out}: {folder} is a file where video {name}'s output folder goes; move it away "
                             "or choose another folder")
        if folder.is_dir() and not (folder / "result.json").exists():
            foreign = sorted(p.name for p in folder.iterdir())
            if foreign:
                raise UsageError(f"--out {args.out}: {folder} has no result.json, so it is no finished video of this command's, and "
                                 f"holds files (e.g. {foreign[0]}) that would be replaced; move them away (or delete the folder to "
                                 "track that video again) or choose another folder")


def run(args) -> int:
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if args.jobs is not None and args.ray not in (None, "local"):
        raise UsageError(f"--jobs does not apply to --ray {args.ray}: the cluster's CPUs decide how many videos run at once")
    if args.ray is not None:
        try:
            from tracker.raybatch import ray_outcomes
        except ImportError:
            raise UsageError(f"--ray needs Ray, which is not installed: {install_hint('cluster')}") from None
        outcomes = functools.partial(ray_outcomes, address=args.ray, cpus=args.jobs)
    else:
        outcomes = functools.partial(local_outcomes, workers=args.jobs or 1)
    if args.baseline == "dlib":
        require_dlib_predictor("--baseline dlib")
    if not args.root.is_dir():  # (the usage errors come before --out is made)
        raise NotAFolderError(f"{args.root}: not a folder")
    left_out: list[str] = []  # folders that look like a video's but are not tracked: the summary is not complete
    # (before --out is made too: a root without videos left an empty one; user test 25)
    videos = find_300vw_videos(args.root, lambda message: print(f"warning: {message}", file=sys.stderr), left_out)
    check_output_folder(args.out, "--out")
    with exclusive_use(args.out, "batch300vw"):
        return _run(args, outcomes, videos, left_out)


def _run(args, outcomes, videos: list[tuple[str, Path]], left_out: list[str]) -> int:
    from tqdm import tqdm

    _check_not_foreign(args, [n for n, _ in videos])
    # --stills: every frame is an independent picture (detection each frame, no tracking, no
    # smoothing): the reference that tracking must match or beat on the same frames.  Compare
    # runs with the same --cnn-every setting (0 for HOG only in both), so that the comparison is
    # about tracking, not about detectors.  With --ray every video task takes one CPU and one
    # network thread: videos in parallel use cores better than threads within a video.
    threads = 1 if args.ray is not None else max(1, args.threads // (args.jobs or 1))
    # Scoring offline: the refiner flipped unless --no-flip (the 30 synthetic clips 0.5521 / FR 3.73% -> 0.5626 / 3.54%, at
    # about two thirds of the frame rate; session 38), as for pictures; `video` keeps the live tracker's speed.
    config = TrackerConfig.from_args(args, mode="video", threads=threads, cnn_fallback=args.cnn_every > 0,
                                     refine_flip=True if args.flip is None else args.flip, **video_fields(args, live=False))
    if args.stills:  # with tracking's networks and flips (they were a picture's: the full network, flipped; review 36)
        config = dataclasses.replace(config, mode="image", fast_network=uses_fast_network(config))
    options = output_options(config, args.baseline, args.subject)
    if not args.overwrite:
        _check_same_options(args, [n for n, _ in videos], options)
    note_missing_cnn(args)
    jobs, rescore, done = [], [], 0
    stale: set[str] = set()  # finished videos tracked again: their old outputs stay until replaced, unscored
    for name, video in videos:
        job = VideoJob(name, video, args.root / name / "annot", safe_output_path(args.out, name), config, options, args.baseline,
                       args.subject)
        action, why = ("track", "") if args.overwrite or not (job.out / "result.json").exists() else _finished_video(job)
        if action == "done":
            done += 1
        elif action == "rescore":
            rescore.append((job, why))
        else:
            if why:
                print(f"warning: {name}: {why}: tracked again", file=sys.stderr)
                stale.add(name)
            else:  # --overwrite: now, not as each is redone, so that none stays behind with other options
                discard_dir(job.out)
            jobs.append(job)
    remove_partial_outputs(args.out)  # what a killed run was writing (a video's folder, summary.json, ced.png)
    failed = unusable = 0
    for job, why in rescore:  # the tracked frames stand; only the scores change (cheap)
        outcome = rescore_300vw_video(job)
        for w in outcome.warnings:
            print(f"warning: {w}", file=sys.stderr)
        if outcome.ok:
            print(f"{job.name}: {why}: {outcome.message}")
        else:  # its old scores must not stay in a summary that says it is complete
            print(f"warning: {job.name}: {why}, and it {outcome.message}: tracked again", file=sys.stderr)
            stale.add(job.name)
            jobs.append(job)
    rescored = len(rescore) - len(stale & {j.name for j, _ in rescore})
    if jobs:
        # The summary says at once that it no longer covers every video: a run killed now leaves
        # one that says so (user test 16: an earlier run's "complete" summary outlived it).
        _write_summary(args, videos, left_out, options, stale)
    bars = {"file": sys.stderr, "disable": not sys.stderr.isatty()}
    try:
        # closing(): on Ctrl-C the runner's generator is closed at once, which stops its workers
        with (tqdm(total=len(jobs), unit="video", position=0, **bars) as video_bar, tqdm(unit="frame", position=1, **bars) as frame_bar,
              closing(outcomes(jobs, frame_bar.update)) as results):
            for outcome in results:
                for w in outcome.warnings:
                    tqdm.write(f"warning: {w}", file=sys.stderr)
                tqdm.write(f"{outcome.name}: {outcome.message}", file=sys.stdout)
                failed += not outcome.ok
                unusable += not outcome.ok and not outcome.retry
                if outcome.ok:
                    stale.discard(outcome.name)
                    # (~10 ms a video: a run killed later leaves a summary of what it finished, not
                    # of nothing; user test 22)
                    _write_summary(args, videos, left_out, options, stale)
                video_bar.update()
    except KeyboardInterrupt:
        if args.ray is None:  # every worker has stopped (a Ray task may not have yet: a rerun clears what it leaves)
            remove_partial_outputs(args.out)  # the videos they were tracking, redone by a rerun
        raise
    remove_partial_outputs(args.out)  # those of attempts that died and were retried
    summary = _write_summary(args, videos, left_out, options, stale)  # (stale: those that failed)
    baselines = summary.get("baseline", {})
    jitter = "" if summary["jitter_static"] is None else f", jitter on still frames {100 * summary['jitter_static']:.2f}% of the eye distance"
    if summary["annotated_frames"]:
        past = sum(v.get("annotations_past_end") or 0 for v in summary["videos"].values())  # ("78 of 75" read as a bug; user test 35)
        overall = (f"{_scores(summary)} over {summary['annotated_frames']} annotated frames (of {summary['frames']} frames)"
                   + (f" ({past} past the videos' ends)" if past else ""))
    elif not summary["videos"]:
        overall = "nothing to score: no video was tracked"
    else:
        overall = f"no annotations (NNN/annot/*.pts): nothing to score; the tracked .pts are in {args.out}"
    # (the videos with annotated frames: a tracked one without annotations was counted; user test 35)
    scored, total = sum(1 for v in summary["videos"].values() if v["annotated_frames"]), len(videos) + len(left_out)
    if summary["annotated_frames"] and scored < total:
        overall = f"(over {scored} of {total} videos) {overall}"
    again = f", {rescored} scored again" if rescored else ""
    # videos with undecodable frames, this run's or an earlier one's (a resumed run said nothing, exit 0; review 38): exit 1, as video's
    damaged = sum(1 for v in summary["videos"].values() if v.get("skipped_frames"))
    undecodable = f"; {damaged} of the videos with undecodable frames passed (their warnings, result.json's skipped_frames)" if damaged else ""
    print(f"done: {count_of(len(jobs) - failed, 'video')} tracked, {done} already done{again}, {failed} skipped or failed{undecodable}"
          f"{_failures(failed, unusable)}; "
          f"overall {overall}, {summary['detections']} detector (re)acquisitions{jitter}"
          + "".join(f"; {m} on the same frames: {_scores(b)}" + ("" if b["jitter_static"] is None else f", jitter {100 * b['jitter_static']:.2f}%")
                    for m, b in baselines.items() if b["annotated_frames"]))
    return 1 if failed or damaged else 0


def _failures(failed: int, unusable: int) -> str:
    """What the closing line says of the videos that failed: a rerun retries them, but not the
    unusable ones ("rerun to retry" after a zero-byte video: every rerun failed again; user test 36)."""
    if not failed:
        return ""
    if unusable == failed:
        return " (unusable videos: the lines above say why)"
    return " (rerun to retry" + (f"; {unusable} of them unusable videos" if unusable else "") + ")"


def _finished_video(job: VideoJob) -> tuple[str, str]:
    """What a video an earlier run finished needs, and why: ("done", ""), ("rescore", why) when
    its annotations changed, or ("track", why) when its video is another one or an earlier
    version tracked it (its .pts have the old x origin and its frames the old models: scored
    again they passed for this version's; review 28c).  A video that cannot be read to check it
    is kept as tracked, with a warning: its outputs are not thrown away for a drive that is not
    mounted."""
    result = _read_result(job.out / "result.json")
    if result is None:
        return "track", "its result.json cannot be read"
    if problem := result_problem(result):  # hand-edited: the summary would stop on it
        return "track", f"its result.json is malformed ({problem})"
    if job.baseline and job.baseline not in (result.get("baseline") or {}):
        return "track", f"its result.json has no {job.baseline} scores"
    try:
        inputs = input_fingerprint(job.video, job.annot)
    except OSError as exc:
        print(f"warning: {job.name}: cannot read {job.video} to check it is the video tracked ({exc.strerror or exc}): "
              "its results are kept as they are", file=sys.stderr)
        return "done", ""
    recorded = result.get("inputs")
    if not isinstance(recorded, dict) or "video" not in recorded:
        # before session 28: other models, another .pts x origin, and no record of its video
        return "track", "tracked by an earlier version, which did not record its inputs"
    if recorded.get("video") != inputs["video"]:
        return "track", f"its video is not the one tracked into {job.out}"
    if recorded.get("annotations") != inputs["annotations"]:
        if job.subject == "annotated":
            picked = recorded.get("subject_annotations")
            try:
                if annotations_digest(job.annot, int(picked["upto"])) != picked["digest"]:
                    return "track", "the annotations that pick the face tracked changed since it was tracked"
            except (TypeError, KeyError, ValueError):  # not recorded: an earlier version's result
                return "track", "annotations changed since it was tracked, and its result.json does not say which picked the face tracked"
        return "rescore", "annotations changed since it was tracked"
    return "done", ""


def _write_summary(args, videos: list[tuple[str, Path]], left_out: list[str], options: dict, stale: set[str] = frozenset()) -> dict:
    """``summary.json`` (and ``ced.png``) over the finished videos under ``--out``, saying in the
    file itself whether they are every video found: one that failed, was skipped, is still to do
    or has no video is left out of the scores, and the file outlives this run's printed lines.
    `stale`: videos whose outputs are an earlier run's of another video or version, left out too
    (kept on disk until replaced: a run stopped before them loses nothing)."""
    summary = summarise_300vw(args.out, [n for n, _ in videos if n not in stale])
    missing = sorted([n for n, _ in videos if n not in summary["videos"]] + left_out)
    summary = {"options": options, "complete": not missing, "missing": missing, **summary}
    atomic_write_json(args.out / "summary.json", summary)
    if summary["curves"]:
        curves = {f"tracker (AUC {summary['auc08']:.3f})": summary["curves"]["all"]}
        curves.update({f"{m} (AUC {b['auc08']:.3f})": b["curves"]["all"] for m, b in summary.get("baseline", {}).items() if b["curves"]})
        atomic_write_image(args.out / "ced.png", ced_plot(curves))
    else:
        (args.out / "ced.png").unlink(missing_ok=True)  # an earlier run's, of videos no longer scored here
    return summary


def _scores(pooled: dict) -> str:
    nme = "-" if pooled["nme_mean"] is None else f"{pooled['nme_mean']:.4f}"  # None: no annotated frame has a face
    return f"AUC@0.08 {pooled['auc08']:.4f}, FR@0.08 {pooled['fr08']:.4f}, NME {nme}"
