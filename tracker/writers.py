"""What the tracker writes: the JSON schema of a face and a frame, the CSV rows of a video, the
dense maps in image pixels, dlib's baseline in the same schema, and which face a ``.pts`` file
holds.  Pure functions and small classes over ``FrameResult``/``FaceResult``; the commands decide
where the files go (always through ``tracker.fileio``'s atomic writes)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import cv2
import numpy as np

from tracker.crop import Roi, most_prominent
from tracker.draw import warp_to_image
from tracker.fileio import atomic_write_json, json_ready
from tracker.identity import SAME_PERSON, distance
from tracker.pipeline import FACE_MIN_QUALITY
from tracker.pts import write_pts

if TYPE_CHECKING:
    from tracker.densemaps import DenseMaps
    from tracker.detector import Detection
    from tracker.identity import FaceRecognizer
    from tracker.pipeline import FaceResult, FrameResult

# Stated in every JSON the tracker writes ("coordinates"), and in the README.
COORDINATES = ("pixels, 0-based: (0,0) is the centre of the top-left pixel, x right, y down "
               "(the .pts files are 1-based, 300-W's x half a pixel to the right: x+1.5, y+1)")
CSV_HEADER = ["frame", "time", "track_id", "score", "quality"] + [f"{a}{i}" for i in range(1, 69) for a in ("x", "y")]


def frame_pts_name(frame_number: int) -> str:
    """The ``.pts`` file of a 1-based video frame (``video --pts-dir``, ``batch300vw``; 300VW's own annotations)."""
    return f"{frame_number:06d}.pts"


# Every name frame_pts_name gives a frame (1-based: 000000.pts is none; it was scored as a missed frame), and only those.
FRAME_PTS_NAME = re.compile(r"(?!0+\.pts)(?:[0-9]{6}|[1-9][0-9]{6,})\.pts", re.IGNORECASE)


def face_to_json(face: FaceResult) -> dict:
    def pts(a):
        return [[None if not np.isfinite(v) else round(float(v), 3) for v in p] for p in a]

    return {
        "track_id": face.track_id,
        "score": round(float(face.score), 4),
        "quality": None if face.quality is None else round(float(face.quality), 4),
        "detected": face.detected,
        "box": None if face.box is None else [round(v, 2) for v in (face.box.x0, face.box.y0, face.box.x1, face.box.y1)],
        "detector": None if face.box is None else face.box.detector,
        "roi": {"cx": face.roi.cx, "cy": face.roi.cy, "size": face.roi.size, "angle": face.roi.angle},
        "runs": face.runs,
        "pose_deg": None if face.pose is None else dict(zip(("yaw", "pitch", "roll"), (round(v, 2) for v in face.pose.yaw_pitch_roll()))),
        "stages": {
            name: {"points": pts(s.points), "confidence": [round(float(c), 3) for c in s.confidence]} for name, s in face.stages.items()
        },
    }


def frame_to_json(result: FrameResult, source: str, shape) -> dict:
    return {
        "source": source,
        "coordinates": COORDINATES,
        "image_size": [int(shape[1]), int(shape[0])],
        "faces": [face_to_json(f) for f in result.faces],
        "timings_ms": {k: round(v, 2) for k, v in result.timings.items()},
    }


class JsonFrames:
    """``video --json``'s file, written frame by frame into ``f``: the ``header``'s fields, then
    ``"frames": [...]`` (``close`` ends the list)."""

    def __init__(self, f: IO[str], header: dict):
        self.f, self.count = f, 0
        f.write(json.dumps(json_ready(header), allow_nan=False)[:-1] + ', "frames": [')

    def add(self, frame: dict) -> None:
        self.f.write(("," if self.count else "") + "\n " + json.dumps(json_ready(frame), allow_nan=False))
        self.count += 1

    def close(self, complete: bool = True) -> None:
        """`complete`: the run reached its source's end (or a camera's stop), not a Ctrl-C on a file."""
        self.f.write(f'\n], "complete": {json.dumps(complete)}}}\n')


def csv_rows(frame_number: int, faces: list[FaceResult], time: float | None = None) -> list[list]:
    """One ``CSV_HEADER`` row per face of a frame (frame numbers as the caller counts them; its
    time in seconds, empty where unknown)."""
    return [[frame_number, "" if time is None else round(time, 6), f.track_id, round(f.score, 4), "" if f.quality is None else round(f.quality, 4)]
            + [round(float(v), 2) for v in f.landmarks.ravel()] for f in faces]


def maps_in_image(face: FaceResult, shape, maps: DenseMaps | None = None) -> dict[str, np.ndarray]:
    """The face's dense maps (DenseReg's ``face.maps``, or `maps` in the same crop, such as
    ``face.template_maps``) warped from its crop to image pixels, as float16 (``uv`` (2,H,W),
    ``fg`` and ``depth`` (H,W)): what ``images --save-maps`` stores (DenseReg's)."""
    shape, maps = shape[:2], face.maps if maps is None else maps
    uv = np.stack([warp_to_image(maps.uv[i], face.crop_to_image, shape) for i in range(2)])
    fg = warp_to_image(maps.fg, face.crop_to_image, shape)
    depth = warp_to_image(maps.depth, face.crop_to_image, shape)
    return {"uv": uv.astype(np.float16), "fg": fg.astype(np.float16), "depth": depth.astype(np.float16)}


def dlib_faces(image: np.ndarray) -> tuple[list[tuple[Detection, np.ndarray]], int | None]:
    """dlib's HOG + 68-point predictor on a BGR picture: (box, (68,2) points) for every face it
    detects, best score first, and which one is the picture's subject by the tracker's rule
    (``prominence``; the most confident one was a bystander in 6 of the 14 val pictures with
    several faces), None without a face."""
    from tracker.detector import detect_faces, detect_faces_finer, dlib_landmarks, merged, usable
    from tracker.pipeline import TrackerConfig

    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    # The tracker's two searches, so that the two are scored on the same faces found (the finer
    # one is dlib's usual detector(img, 1) on pictures up to 1024 px), the finer one run, as the
    # tracker runs it, where the usual one found no usable box (``Tracker._usable``: it was skipped
    # for a weak box, the astronaut's mission patch at 0.035; review 36).  Every box is kept, as
    # dlib's users keep them (its weak boxes are real faces on 2 of the 80 val pictures).
    found = detect_faces(gray)
    if not usable(found, TrackerConfig.min_face, TrackerConfig.detect_threshold):
        found = merged(found, detect_faces_finer(gray))
    faces = [(d, dlib_landmarks(gray, d)) for d in found]
    return faces, most_prominent([d.roi() for d, _ in faces], (image.shape[1], image.shape[0]))


def write_dlib_baseline(image: np.ndarray, stem_path: Path, source: str) -> None:
    """``dlib_faces`` as <stem>.json (same schema as ours, stage 'dlib') and <stem>.pts (the subject)."""
    found, main = dlib_faces(image)
    faces = [{"score": round(d.score, 4), "box": [d.x0, d.y0, d.x1, d.y1],
              "stages": {"dlib": {"points": np.round(pts, 3).tolist(), "confidence": [1.0] * 68}}} for d, pts in found]
    pts_path = stem_path.with_name(stem_path.name + ".pts")
    if main is not None:
        write_pts(pts_path, np.array(faces[main]["stages"]["dlib"]["points"]))
    else:
        pts_path.unlink(missing_ok=True)  # an earlier run's, when the picture had a face then
    atomic_write_json(stem_path.with_name(stem_path.name + ".json"), {"source": source, "coordinates": COORDINATES,
                                                                      "image_size": [int(image.shape[1]), int(image.shape[0])], "faces": faces})


def main_face(faces: list[FaceResult], frame_size: tuple[int, int]) -> FaceResult | None:
    """The subject of a (w, h) picture: the most prominent face (``prominence``) among those that
    fit as a face (``FACE_MIN_QUALITY``), else among all; of equal ones the first.  (HOG's box on
    the badge of a suit, larger and more central than the face, was the subject: user test 37.)"""
    candidates = [f for f in faces if f.quality is None or f.quality >= FACE_MIN_QUALITY] or faces  # (None: a FaceResult made by hand)
    best = most_prominent([f.roi for f in candidates], frame_size)
    return None if best is None else candidates[best]


# A face whose centre is within this fraction of the subject's crop of where the subject was
# last seen is taken for it (two faces side by side are at least about half a crop apart).
SUBJECT_NEAR = 0.5
# A subject missed for a while and found further than that: taken back within this many of its
# crops where every other face is at least twice as far (``NearestSubject``).
RETURN_NEAR = 1.0


@dataclass
class NearestSubject:
    """The subject among the faces found in each frame where there are no tracks (``batch300vw
    --stills`` and its dlib baseline): once ``place`` has put it somewhere (the first annotated
    face), the face nearest where it was last seen, within ``SUBJECT_NEAR`` of its crop, else the
    main face (``prominence``); the place moves only with a face found near it, so that a false
    detection or a bystander, taken while the subject is missed, does not become it (within a whole
    crop, a bystander 185 px from a hidden subject's 281 px crop became it for the rest of a clip:
    user test 35).  A subject that moved further while it was missed is taken back where it is
    the nearest face by far (within ``RETURN_NEAR`` crops, and at most half as far as any other:
    it was locked out for the rest of a clip, the bystander written; review 36), and after
    ``SUBJECT_RETURN_FRAMES`` frames without it the main face becomes the subject, as ``Subject``
    does.  Never placed: the main face of every frame, as before session 33."""

    centre: tuple[float, float] | None = None
    size: float = 0.0
    missed: int = 0  # frames since the subject was last found

    def place(self, roi: Roi) -> None:
        self.centre, self.size, self.missed = (roi.cx, roi.cy), roi.size, 0

    def pick(self, rois: list[Roi], frame_size: tuple[int, int]) -> int | None:
        """The index of the subject among a (w, h) frame's faces (their crops), None without one."""
        if self.centre is not None and rois:
            apart = sorted((float(np.hypot(r.cx - self.centre[0], r.cy - self.centre[1])), k) for k, r in enumerate(rois))
            (nearest, k), others = apart[0], [d for d, _ in apart[1:]]
            if nearest <= SUBJECT_NEAR * self.size or (others and nearest <= RETURN_NEAR * self.size and 2 * nearest <= others[0]):
                self.place(rois[k])
                return k
        self.missed += 1
        main = most_prominent(rois, frame_size)
        if self.centre is not None and main is not None and self.missed > SUBJECT_RETURN_FRAMES:
            self.place(rois[main])
        return main


def pts_face(faces: list[FaceResult], frame_size: tuple[int, int], boxes: list[Detection] | None = None) -> FaceResult | None:
    """The one face a ``.pts`` file holds: the face of the first given box that yielded one,
    else the main face of the (w, h) picture (``main_face``, the rule ``video`` uses too)."""
    for box in boxes or []:
        for face in faces:
            if face.box == box:
                return face
    return main_face(faces, frame_size)


# How long the place where the subject was last seen is kept for it after its track ends (~3 s
# at 30 fps): long enough for a face hidden behind a passer-by or a hand, after which the face
# standing in for it becomes the subject (unless the face recogniser says it is someone else).
SUBJECT_RETURN_FRAMES = 90
SUBJECT_SAMPLE_FRAMES = 100  # a chip of the subject's face kept every this many frames (a few poses)
SUBJECT_SAMPLES = 4
RECHECK_FRAMES = 30  # a face judged not to be the subject is looked at again after this many frames (pose, blur)
MAX_RECHECK_FRAMES = 480
HOP_SHIFT = 0.2  # the subject's crop moving this much of its size in a frame may have jumped onto another face


class Subject:
    """Which face a per-frame ``.pts`` file holds (300VW annotates one subject per video): the
    subject's track while it lasts.  When it ends, a face of a track that began after that (the
    subject found again) is the subject again if the face recogniser (``tracker.identity``, where
    the ``[cnn]`` extra is installed) knows it as the subject, whenever and wherever it comes back;
    or, failing that, if it is near where the subject was last seen (its centre within half the
    subject's crop of the crop's centre, ``SUBJECT_NEAR``) within ``SUBJECT_RETURN_FRAMES`` frames and the recogniser
    does not tell them apart.  Until then a stand-in is written: the main face (``main_face``),
    kept while its track lasts; when that time is up the stand-in becomes the subject, unless the
    recogniser knows it as someone else; and the subject is lost too when the recogniser finds its
    track on someone else (``_hopped``).  Taking the best-scoring face in every frame made the
    output flip between two people; keeping whichever face stood in first kept a bystander, found
    while the subject was hidden for 13 frames, for the rest of the video (user test 8), and by
    place alone, a subject hidden longer or coming back elsewhere (user test 9); a face of a track
    older than the loss is someone else passing by."""

    def __init__(self, recognizer: FaceRecognizer | None = None):
        self.recognizer = recognizer
        self.track_id: int | None = None
        self.seen: Roi | None = None  # the subject's crop when last seen
        self.missing = 0  # frames since then
        self.newest_id = -1  # the highest track id seen (ids only grow)
        self.lost_after = -1  # the highest id when the subject was lost: a returning subject's track is newer
        self.stand_in: int | None = None
        self.frame = 0
        # The subject's face, aligned, at a few moments: [chip, descriptor or None until needed]
        self.samples: list[list] = []
        self.sampled_at = -SUBJECT_SAMPLE_FRAMES
        # track id -> (frame, is the subject, frames until it is looked at again) while the subject is missing
        self.verdicts: dict[int, tuple[int, bool, int]] = {}
        self.hop_checked_at = -RECHECK_FRAMES
        self.hopped_id: int | None = None  # the subject's own track, judged to hold someone else (a verdict can be wrong)

    def pick(self, faces: list[FaceResult], frame_size: tuple[int, int], image: np.ndarray | None = None) -> FaceResult | None:
        """The subject among a (w, h) frame's faces (video mode's: their track ids persist);
        ``image``: the frame, for the face recogniser."""
        self.frame += 1
        same = [f for f in faces if f.track_id == self.track_id]
        hopped = self._hopped(same[0], faces, image) if same else None
        if hopped is not None:
            self.track_id, same, self.hopped_id = None, [], hopped  # its track went on on someone else's face: the subject is lost
        if not same and self.missing == 0:
            self.lost_after = self.newest_id  # the subject's track ended in this frame
            self.verdicts.clear()
            if hopped is not None:
                self.verdicts[hopped] = (self.frame, False, RECHECK_FRAMES)
                # the subject's face may have a track older than this (found while the old track
                # drifted): any track may be the subject's, as the recogniser says
                self.lost_after = -1
        self.newest_id = max([self.newest_id, *(f.track_id for f in faces)])
        face = same[0] if same else self._back(faces, image)
        if face is None:
            self.missing += 1
            kept = [f for f in faces if f.track_id == self.stand_in]
            stand_in = kept[0] if kept else main_face(faces, frame_size)
            self.stand_in = stand_in.track_id if stand_in is not None else None
            if stand_in is None or (self.seen is not None and (self.missing <= SUBJECT_RETURN_FRAMES
                                                               or self._is_subject(stand_in, image) is False)):
                return stand_in
            face = stand_in
            # whoever the stand-in is, it is the one to find from now on
            self.samples, self.sampled_at = [], -SUBJECT_SAMPLE_FRAMES
        if face.track_id != self.track_id:
            self.hopped_id = None
        self.track_id, self.seen, self.missing, self.stand_in = face.track_id, face.roi, 0, None
        self._sample(face, image)
        return face

    def designate(self, face: FaceResult, image: np.ndarray | None = None) -> None:
        """`face` is the subject from now on, as if it had been the first one: a benchmark's first
        annotation says which person a clip is about (``batch300vw --subject annotated``)."""
        self.track_id, self.seen, self.missing, self.stand_in, self.hopped_id = face.track_id, face.roi, 0, None, None
        self.verdicts.clear()
        self.samples, self.sampled_at = [], -SUBJECT_SAMPLE_FRAMES
        self._sample(face, image)

    def _back(self, faces: list[FaceResult], image: np.ndarray | None) -> FaceResult | None:
        """The face of a track newer than the loss that is the subject found again, if any (or the
        subject's own track, judged to have hopped, when the recogniser knows it again)."""
        new = [f for f in faces if f.track_id > self.lost_after]
        if self.seen is None:
            return None
        for f in new + [f for f in faces if f.track_id == self.hopped_id]:
            if self._is_subject(f, image):
                return f
        if not new:
            return None
        if self.missing >= SUBJECT_RETURN_FRAMES:
            return None
        near = min(new, key=lambda f: self._from_seen(f.roi))
        if self._from_seen(near.roi) > SUBJECT_NEAR * self.seen.size:
            return None
        return near if self._is_subject(near, image) is not False else None

    def _hopped(self, face: FaceResult, faces: list[FaceResult], image: np.ndarray | None) -> int | None:
        """The subject's track id when the recogniser says the track now holds someone else: a
        track can move onto a neighbour's face while the subject's is hidden (a synthetic clip's
        subject went on as the woman beside it for 120 frames).  Looked at when the track jumps
        (by ``HOP_SHIFT`` of its crop in a frame) and, with other faces about, at each sample."""
        if self.recognizer is None or image is None or not self.samples or self.seen is None or self.frame - self.hop_checked_at < RECHECK_FRAMES:
            return None
        jumped = self._from_seen(face.roi) > HOP_SHIFT * self.seen.size
        if not jumped and not (len(faces) > 1 and self.frame - self.sampled_at >= SUBJECT_SAMPLE_FRAMES):
            return None
        same = self._recognised(face, image)
        if same is None:
            return None
        self.hop_checked_at = self.frame
        return None if same else face.track_id

    def _from_seen(self, roi: Roi) -> float:
        """How far a crop's centre is from the subject's when last seen (pixels)."""
        return float(np.hypot(roi.cx - self.seen.cx, roi.cy - self.seen.cy))

    def _recognised(self, face: FaceResult, image: np.ndarray) -> bool | None:
        """The recogniser's look at ``face``: whether it is the subject; None without a chip of it."""
        chip = self.recognizer.chip(image, face.landmarks)
        return None if chip is None else self._matches(self.recognizer.descriptor(chip))

    def _matches(self, descriptor: np.ndarray) -> bool:
        """Whether a descriptor is the subject's: near one of its samples that are the person of
        the first (a sample taken after the track drifted onto someone else does not count)."""
        for sample in self.samples:
            if sample[1] is None:
                sample[1] = self.recognizer.descriptor(sample[0])
        first = self.samples[0][1]
        return any(distance(d, descriptor) < SAME_PERSON for _, d in self.samples if distance(d, first) < SAME_PERSON)

    def _sample(self, face: FaceResult, image: np.ndarray | None) -> None:
        """Keep a chip of the subject's face now and then (cheap: describing it waits until needed)."""
        if self.recognizer is None or image is None or self.frame - self.sampled_at < SUBJECT_SAMPLE_FRAMES:
            return
        chip = self.recognizer.chip(image, face.landmarks)
        if chip is not None:  # the first sample is kept: the others are checked against it
            self.samples = self.samples[:1] + (self.samples[1:] + [[chip, None]])[-(SUBJECT_SAMPLES - 1):]
            self.sampled_at = self.frame

    def _is_subject(self, face: FaceResult, image: np.ndarray | None) -> bool | None:
        """Whether the recogniser knows ``face`` as the subject; None where it cannot tell (no
        recogniser, no frame, no chip of the subject or of this face).  A face is looked at again
        ``RECHECK_FRAMES`` frames after its last look, twice as long after each "no" (a bystander
        standing in for long costs a look every 16 s at most, not every second)."""
        if self.recognizer is None or image is None or not self.samples:
            return None
        known = self.verdicts.get(face.track_id)
        if known is not None and self.frame - known[0] < known[2]:
            return known[1]
        same = self._recognised(face, image)
        if same is None:
            return None
        wait = RECHECK_FRAMES if same or known is None else min(2 * known[2], MAX_RECHECK_FRAMES)
        self.verdicts[face.track_id] = (self.frame, same, wait)
        return same
