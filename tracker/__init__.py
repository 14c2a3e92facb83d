"""DenseReg face tracker.

    import cv2
    from tracker import Tracker, TrackerConfig

    tracker = Tracker(TrackerConfig(mode="video"))       # or mode="image" for independent pictures
    result = tracker.track(cv2.imread("face.jpg"))        # FrameResult
    for face in result.faces:                             # [] when there is no face
        face.landmarks                                    # (68,2) final landmarks, image pixels
        face.stages["densereg"].confidence                # per-stage points and confidences
        face.pose.yaw_pitch_roll() if face.pose else None # head pose in degrees
"""
from tracker.pipeline import FaceResult, FrameResult, StageLandmarks, Tracker, TrackerConfig

__all__ = ["FaceResult", "FrameResult", "StageLandmarks", "Tracker", "TrackerConfig"]
