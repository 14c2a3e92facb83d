"""The options that decide a command's outputs, recorded beside them, and the check that a resumed
run reuses only outputs made with its own (``images`` and ``batch300vw``)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tracker.assets import ASSETS
from tracker.errors import UsageError, count_of
from tracker.pipeline import TrackerConfig, uses_fast_network
from tracker.refiner import ONE_STAGE

GIVEN_ONLY = ("assets", "baseline")  # options recorded only when given (their absence: none)


def models_digest(folder: Path) -> str:
    """A short digest of the model folder's ``MANIFEST.json`` (every model's SHA-256): outputs of
    other models are another run's, even with the same flags (session 36 retrained a refiner)."""
    try:
        return hashlib.sha256((Path(folder) / "MANIFEST.json").read_bytes()).hexdigest()[:12]
    except OSError:
        return "none"


def decided_options(config: TrackerConfig) -> dict:
    """The options that decide the landmarks, by the flag that sets each one, as decided (`--flip`
    unset is recorded as what it means in this mode; `--engine auto` as given, as each worker
    resolves it, on a cluster maybe on another machine), and the models.  Not the paths,
    ``--jobs``, ``--threads``, ``--ray`` nor ``-v``: they change where and how fast, not what is made."""
    options = {"engine": config.engine, "refine": config.refine, "max_faces": config.max_faces,
               "one_stage": config.refiners == ONE_STAGE, "flip": config.refine_flip, "dense_flip": config.dense_flip,
               "fast_network": uses_fast_network(config), "int8": config.int8, "models": models_digest(config.assets or ASSETS)}
    if config.assets is not None:  # only when given: runs with the packaged models record what they always did
        options["assets"] = str(config.assets.resolve())
    return options


def check_same_options(out: Path, recorded: dict[str, object], options: dict, items: str, made: str, way_out: str) -> None:
    """Before any work, unless ``--overwrite``: a finished output is reused only if it was made with
    this run's options; otherwise this run would report another run's results as its own (and
    pool them into one summary).  `recorded`: each finished item's name and its recorded options
    (anything but a dict: not recorded, a version that did not record them, refused the same way:
    its results may be those of any options, and redoing it costs only time).  `items`: what an
    item is called ("video"), `made`: how it was made ("tracked")."""
    unknown = [name for name, old in recorded.items() if not isinstance(old, dict)]
    other = [(name, old) for name, old in recorded.items() if isinstance(old, dict) and old != options]
    if other:
        name, old = other[0]
        key = next(k for k in {**options, **old} if old.get(k, "?") != options.get(k, "?"))
        was, now = (json.dumps(o[key]) if key in o else "none" if key in GIVEN_ONLY else "not recorded" for o in (old, options))
        raise UsageError(f"--out {out} holds {count_of(len(other), items)} {made} with other options "
                         f"({name}: {key.replace('_', '-')} {was} -> {now} in this run); {way_out}")
    if unknown:
        raise UsageError(f"--out {out} holds {count_of(len(unknown), items)} (e.g. {unknown[0]}) from an earlier version, "
                         f"which did not record the options they were {made} with; {way_out}")
