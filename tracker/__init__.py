"""DenseReg face tracker.

    import cv2
    from tracker import Stage, Tracker, TrackerConfig

    tracker = Tracker(TrackerConfig(mode="video"))       # or mode="image" (TrackerMode.VIDEO / IMAGE)
    result = tracker.track(cv2.imread("face.jpg"))        # FrameResult
    for face in result.faces:                             # [] when there is no face
        face.landmarks                                    # (68,2) final landmarks, image pixels (face.final: + confidence)
        face.stages[Stage.DENSEREG].confidence            # per-stage points and confidences (Stage: densereg, pca, mdm, smooth)
        face.pose.yaw_pitch_roll() if face.pose else None # head pose in degrees
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tracker.pipeline import FaceResult, FrameResult, StageLandmarks, Tracker, TrackerConfig, TrackerMode
    from tracker.stages import Stage

__all__ = ["FaceResult", "FrameResult", "Stage", "StageLandmarks", "Tracker", "TrackerConfig", "TrackerMode"]


def __getattr__(name: str):
    if name == "__version__":  # from the installed metadata: pyproject.toml is the one place it is written
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("densereg-tracker")
        except PackageNotFoundError:
            return "0+unknown (not installed as a package)"
    # Imported on first use, not with the package: `engines` imports `tracker.errors`, and
    # the pipeline imports `engines`; an eager import here would make that a cycle.
    if name == "Stage":
        from tracker.stages import Stage

        return Stage
    if name in __all__:
        from tracker import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'tracker' has no attribute {name!r}")
