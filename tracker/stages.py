"""The landmark stages of the pipeline, by name: no dependencies, so the command line can list
them without loading the pipeline."""
from __future__ import annotations

from collections.abc import Iterable
from enum import Enum


class Stage(str, Enum):
    """The landmark stages, in the order they run.  String-valued: a stage is its name in JSON,
    in ``--stage`` and as a key of ``FaceResult.stages`` (``stages["mdm"]`` works)."""

    DENSEREG = "densereg"  # read from the dense maps (NaN where no pixel voted)
    PCA = "pca"  # the shape model's robust fit: all 68 points
    MDM = "mdm"  # the refiner's output (with ``refine``)
    SMOOTH = "smooth"  # video with ``smooth``: the One Euro filter over frames, on the last stage before it

    def __str__(self) -> str:
        return self.value


def last_stage(stages: Iterable) -> Stage:
    """The last ``Stage`` among the keys of `stages` (a FaceResult's, or one read back from JSON)."""
    return [s for s in Stage if s in stages][-1]
