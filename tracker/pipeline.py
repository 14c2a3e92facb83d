"""The per-frame pipeline: ROI -> crop -> DenseReg engine -> landmarks -> PCA -> MDM.

``Tracker.track(frame)`` is the one public entry.  In ``image`` mode every frame is a new
picture: faces are detected each time.  In ``video`` mode faces are detected on the first frame
and after a loss, then followed from the previous landmarks; a search for new faces runs every
``detect_every`` frames.  ``track(frame, boxes=[...])`` takes the faces from the caller instead
of the detector for that frame.  Everything here is numpy/OpenCV: no torch.
"""
from __future__ import annotations

import logging
import math
import numbers
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path

import cv2
import numpy as np

from engines import KINDS, load_engine, resolve_kind
from engines.base import Engine, EngineError
from tracker.assets import ASSETS, AssetError, read_manifest, verified_asset
from tracker.crop import (
    BOX_CALIBRATION,
    NETWORK_INPUT,
    Roi,
    crop_matrix,
    invert,
    outside_share,
    prominence,
    roi_from_landmarks,
    to_network_input,
    transform_points,
    warp_image,
)
from tracker.cuts import face_changed, face_thumbnail, is_cut, thumbnail
from tracker.densemaps import DenseMaps, infer_flip_averaged
from tracker.detector import (
    DETECT_MAX_SIDE,
    GIVEN,
    BoxError,
    DeferredSearch,
    Detection,
    cnn_available,
    confirm_face,
    detect_faces,
    detect_faces_at,
    detect_faces_cnn,
    detect_faces_finer,
    detect_faces_turned,
    given_box,
    load_detector,
    usable,
)
from tracker.errors import ConfigError, InputError, UsageError
from tracker.fileio import to_bgr8
from tracker.landmarks import build_lookup, extract_landmarks_batch
from tracker.metrics import eye_distance
from tracker.occlusion import WORK_SIZE, AppearanceMemory, visibility_map
from tracker.pose import HeadModel, Pose, head_pose
from tracker.refiner import DEFAULT_REFINERS, FLOAT_GRAPH_KEY, FRAMES, ONE_STAGE, RefinerStage, int8_variant, refine_cascade
from tracker.shape_model import fit_shapes, load_shape_model
from tracker.smoothing import OneEuro
from tracker.stages import Stage, last_stage
from tracker.templatemaps import FACE_MODEL, FaceModel, load_face_model, template_maps

log = logging.getLogger(__name__)

DENSEREG_ASSET = "densereg_realtime.onnx"
# The same network without its two stride-4 blocks (``NetConfig.decoder_blocks`` 0, fine-tuned
# from it): 0.77 instead of 1.19 ms a crop, for video, where the frame rate is the point.
FAST_DENSEREG_ASSET = "densereg_fast.onnx"
LANDMARK_TARGETS = "landmark_targets.npz"  # built by python -m training.landmark_targets
# detect_lag for live sources (cameras, the viewer): the periodic search for new faces runs in a
# worker process instead of stalling a frame (~13 ms at 640x480).  Files keep 0: on two cores
# the worker saves a 600-frame file only 1.7% of its wall time for 5.7% more CPU, and batch
# runs already keep both cores busy (benchmarks/bench_detect_lag.py, README).
LIVE_DETECT_LAG = 3
# The turns a face the CNN found is also run at (``Tracker._orient``), radians.
ORIENT_TURNS = (math.pi / 2, -math.pi / 2, math.pi)
# The least ``quality`` of a fit that counts as a face where a search may have found something else:
# the turned search's (``Tracker._plausible``: on the 80 val pictures turned 90 degrees, the
# annotated faces it found fit at 0.53 and more, other people's at 0.50 and more; the review's
# lettering at 0.32, a face painted over at 0.26), and video's finer and turned rounds' for when
# the next comes (``Tracker._next_round``: a box on a blank wall fits at 0.07).
FACE_MIN_QUALITY = 0.45
# Video: frames a new track that does not fit as a face (FACE_MIN_QUALITY) must last before it is
# reported (``Tracker._update_tracks``): the badge's tracks lasted up to 4 (flipped refiner).
UNSURE_FRAMES = 5
# How much better a turned run's quality must be (first runs, before settling: on the 80 val
# faces given their CNN boxes, a margin of 0.02 kept all 80 upright, where 0 turned 2; turned 90
# degrees it kept 41 of the 43 the CNN finds right, as 0 did; 0.05 kept 39).
ORIENT_MARGIN = 0.03
# While video finds no face, the finer search (``detector.detect_faces_finer``) runs every this many
# frames; not for detect_every frames after faces went (lost, or a cut) whose crops, at the usual
# search's scale, were this large (HOG's smallest face, ~80 px, has a crop of ~130 px).
FINER_SEARCH_EVERY = 5
FINER_MAX_GAP = 30  # frames: a small face that comes after a long empty stretch waits at most this (160: 150 frames; review 27c)
FINER_FACE_CROP = 260.0
# The least ``quality`` of a face from a caller's box, once settled: under it, the box holds no face
# that fits.  Boxes 8-12x a face in a large photo gave "faces" of 0.001-0.05, their points off the
# face, written to .pts (user test 23); a real face settled from a box 2x its size fits at 0.19 and
# up (benchmarks/bench_boxes.py), 4-6x at 0.16 and up; a box on the background at 0.004 and up.
GIVEN_MIN_QUALITY = 0.1
# A caller's box whose larger side is more than this many times its face's (the box around its
# landmarks) is searched with HOG for the face nearest its centre (``Tracker._search_given_boxes``):
# a tight box is 1x, a detector's 1.1-1.3x; from 1.5-2x a group photo's box settled on the neighbour
# in 3 of 10 pictures (user test 24).
LOOSE_BOX = 1.4
# ... and one whose face came out larger than this many times the box: a box is drawn around the
# face it means, and a face settled from a loose box that grew past it took in what was around the
# face (a 3x box on one of two people: a 349 px "face" from a 279 px box; session 36).
OVERGROWN_FACE = 1.25
# HOG's box against the span of the same face's landmarks (larger side): 0.85-1.25 on the 75 val faces it finds
# (``_confirms``); wider, so that only another face, not another box of this one, is no match.
CONFIRM_SIZE = (0.4, 2.0)
CHECK_FACE_PX = 100.0  # the face's size in that check's search (HOG finds faces from ~80 px)
# Degrees of yaw and roll beyond which HOG's frontal detector misses faces: a box's face turned
# further is not checked (a face rolled 55 degrees, unseen, lost its box to a stranger's; review 37b)
HOG_SEES = (40.0, 25.0)
# A caller's face box larger than this many times the picture's long side is refused (a face cut
# by the picture's edge has a box at most a few times its size).
MAX_BOX_FACTOR = 20.0
# The rate frames are taken at when track() is given no timestamp (the smoothing works in seconds).
DEFAULT_FPS = 30.0
# After a track ends while others go on, video searches every this many frames for the next
# detect_every frames (a face behind another comes back within this many frames, not detect_every).
LOST_SEARCH_EVERY = 5
# How long after a track ends dlib's CNN may look every video_cnn_every frames where HOG finds
# nothing new while other faces are tracked (about 3 s at 30 fps, writers.SUBJECT_RETURN_FRAMES as
# well); after that ever more rarely (``Tracker._cnn_after_loss_due``).
LOST_CNN_FRAMES = 90
# A new track this near where a lost one was last (in crop sizes) is that face back: the loss is over.
RETURN_DISTANCE = 1.0
# The frame number of what has not happened yet (a loss, a CNN call, a finer search): far enough
# back that "frames since" is never small.
NEVER = -(1 << 30)
# Two faces whose crops' centres are closer than this fraction of the larger crop are one face
# (two tracks, or a track and a detection, that converged on it); two real faces side by side
# are at least about half a crop apart.
DUPLICATE_DISTANCE = 0.3
# A tracked face's quality is its landmark confidence, scaled down while less of its crop than
# this is face: a well-framed face fills 0.34-0.46 of the crop (the demo clip), so less means
# the crop is sliding off the face.
FULL_QUALITY_FG_FRACTION = 0.3
# A new face (a still's, a caller's box, a video's new track) is re-run from its landmarks'
# crop (``Tracker._settle``) while that crop is this much larger or smaller, its centre this far
# off (in crop sizes), or it is turned by more than this (radians).  On the val faces turned 60
# degrees, 5 / 10 / 20 degrees gave AUC@0.08 0.517 / 0.500 / 0.483, upright 0.617 / 0.616 / 0.615
# (a throwaway sweep, not in the repository, its pictures' edges reflected where
# benchmarks/bench_roll.py grows the canvas).
SETTLE_SIZE_RATIO = 1.2
SETTLE_SHIFT = 0.1
SETTLE_ANGLE = math.radians(5)
# ...except, for a face cut by the picture's edge (more than this share of its landmarks outside
# the picture), into a crop further outside the picture than the one it was run in (by more than
# SETTLE_OUTSIDE of its area): that crop is centred on the part outside, the face squeezed into
# what is left (review of session 25: val faces with 35% cut off, AUC@0.08 0.175 in one pass,
# 0.161 settled).  Not for every face: in a tight picture a turned face's crop sticks out at the
# corners (val turned 60 degrees: 0.503 settled, 0.477 when every face was held back).
SETTLE_CUT = 0.05
SETTLE_OUTSIDE = 0.02
# The confidence of a point the shape model filled in or overrode: a guess, so below the points
# the network placed well, but not 0, since the fit puts it where a face has it.
FILLED_CONFIDENCE = 0.3
# The least eye distance (pixels) that steps and the One Euro filter are scaled by: it keeps a
# degenerate shape (all points in one place) from dividing by zero.
MIN_EYE_DISTANCE = 1.0


class TrackerMode(str, Enum):
    """How the frames given to ``Tracker.track`` relate.  String-valued, so the strings
    "image" and "video" are accepted and compare equal."""

    IMAGE = "image"  # independent pictures: detect the faces in each
    VIDEO = "video"  # a sequence: follow each face from its landmarks in the previous frame

    def __str__(self) -> str:
        return self.value


def _count(value, least: int) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= least


def _real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


# TrackerConfig's numeric fields: field, test, what it allows (the error message's words).
_FIELD_RULES = (
    ("threads", lambda v: _count(v, 1), "a whole number >= 1"),
    ("max_faces", lambda v: _count(v, 1), "a whole number >= 1"),
    ("detect_every", lambda v: _count(v, 1), "a whole number >= 1"),
    ("detect_lag", lambda v: _count(v, 0), "a whole number >= 0 (frames; 0: search inline)"),
    ("min_face", lambda v: _count(v, 0), "a whole number >= 0 (pixels)"),
    ("detect_side", lambda v: _count(v, 160), "a whole number >= 160 (pixels)"),
    ("video_cnn_every", lambda v: _count(v, 0), "a whole number >= 0 (0: never)"),
    ("box_passes", lambda v: _count(v, 0), "a whole number >= 0 (0: a box is used as given)"),
    ("detect_threshold", _real, "a finite number"),
    ("fg_threshold", lambda v: _real(v) and 0 < v < 1, "a number in (0, 1)"),
    ("lost_fg_fraction", lambda v: _real(v) and 0 <= v <= 1, "a number in [0, 1]"),
    ("lost_confidence", lambda v: _real(v) and 0 <= v <= 1, "a number in [0, 1]"),
    ("lost_refiner_step", lambda v: _real(v) and v >= 0, "a number >= 0"),
    ("lost_inside", lambda v: _real(v) and 0 <= v <= 1, "a number in [0, 1]"),
    ("smooth_min_cutoff", lambda v: _real(v) and v > 0, "a number > 0 (Hz)"),
    ("smooth_beta", lambda v: _real(v) and v >= 0, "a number >= 0"),
) + tuple((name, lambda v: isinstance(v, (bool, np.bool_)), "True or False")  # "no" would be truthy
          for name in ("cnn_fallback", "refine", "int8", "refine_flip", "dense_flip", "visibility", "template_maps", "smooth",
                       "box_search"))


def _check(name: str, value, valid: bool, rule: str) -> None:
    if not valid:
        raise ConfigError(f"TrackerConfig.{name}={value!r}: must be {rule}")


@dataclass(frozen=True)
class TrackerConfig:
    """Everything a user can tune; the CLI maps its flags onto these fields.  Checked on
    construction: a bad value raises ``tracker.errors.ConfigError`` (a ``ValueError``) naming
    the field and what it allows."""

    mode: TrackerMode = TrackerMode.IMAGE  # "image" or "video" are accepted too
    engine: str = "auto"  # auto | onnx | torch | tensorrt (``engines.KINDS``); every network runs on it
    threads: int = 2  # CPU cores to use: on ONNX Runtime, a frame's faces split into this many network calls side by side (``parallelism``)
    max_faces: int = 4  # faces tracked per frame, the detector's best first (boxes the caller gives all count)
    # Pictures: the long side HOG first searches at.  640 is ~13 ms; 2048 (~0.4 s) also finds the
    # small faces of a group photo, which the second, finer pass only looks for where 640 found none.
    detect_side: int = DETECT_MAX_SIDE
    detect_every: int = 30  # video: look for new faces every N frames (a full-frame HOG pass costs ~1.5 tracked frames)
    detect_lag: int = 0  # video: 0 searches inline (stalls that frame); N > 0 in a worker process, the answer used N frames later
    min_face: int = 24  # pixels; smaller detections are ignored (the crop would be mostly upsampling)
    # dlib HOG score.  On the 300-W pictures all 23 detections scoring 0.1-0.2 are faces (0.2
    # lost 2 of the 80 val faces); below 0.1 non-faces appear (the demo's mission patch at
    # 0.04, a plant at 0.07), so dlib's own default, 0, is too low.
    detect_threshold: float = 0.1
    cnn_fallback: bool = True  # image mode: dlib's CNN detector when HOG finds nothing (~1 s; needs face-recognition-models)
    video_cnn_every: int = 0  # video: while nothing is tracked and HOG finds nothing, the CNN on 1 frame in N (0: never; offline use)
    fg_threshold: float = 0.5  # a crop pixel is face when its foreground probability exceeds this (the network's decision boundary)
    refine: bool = True
    refiners: tuple[str, ...] = DEFAULT_REFINERS  # refiner stages (assets), applied in order
    int8: bool = True  # ONNX Runtime runs the refiners' int8 variants (``refiner.int8_variant``; False: the float graphs)
    # Test-time flipping: also refine the mirrored face and average.  None: on in image mode (val
    # AUC 0.613 instead of 0.602; no measurable cost per picture, where decoding and detection dominate), off in
    # video (it doubles the refiner's time a frame).
    refine_flip: bool | None = None
    # Test-time flipping of DenseReg: its maps for the crop and the mirrored crop averaged
    # (``densemaps.infer_flip_averaged``) before the landmarks and parts are read from them.  Off: the
    # parts gain (val mean IoU 69.1 -> 69.6), the landmarks do not (final AUC 0.6134 vs 0.6132).
    dense_flip: bool = False
    # The faster DenseReg (``FAST_DENSEREG_ASSET``).  None: on in video where the asset folder has
    # it, off for pictures (their UV and parts are the full network's; see docs/RESULTS.md, Speed).
    fast_network: bool | None = None
    # A new face (a still's, a caller's box, a video's new track) is re-run from the crop its
    # landmarks give, turned with it, at most this many times (``Tracker._settle``: loose boxes,
    # turned heads; 0 uses every box as it is, as stills did before session 25).
    box_passes: int = 3
    # A still's caller box that yields no face, none that fits as one, or one much larger than its
    # face is searched with HOG for the face nearest its centre (``Tracker._search_given_boxes``;
    # off as before session 32).  Either way a given box's face under GIVEN_MIN_QUALITY is none.
    box_search: bool = True
    visibility: bool = False  # FaceResult.visibility: the occlusion map (~2.5 ms a face a frame; the dense maps are always there)
    # FaceResult.template_maps: the 3D template fitted to the final landmarks, rendered in the
    # face's crop (``tracker.templatemaps``, ~20 ms a face): parts and face transfer read it
    # instead of DenseReg's maps (val parts mean IoU 74.6 instead of 69.1).
    template_maps: bool = False
    lost_fg_fraction: float = 0.15  # video: face lost when less of the crop is face than this...
    lost_confidence: float = 0.2  # ...or the mean landmark confidence falls below this
    # ...or the refiner's last update exceeds this x eye distance.  0.08 until session 21, whose
    # first stage, trained to hold points under occluders, moves less on a face that has gone
    # (0.076 on synthetic clip 014's first frame without it): on the 30 synthetic clips 0.06 gives
    # AUC 0.5206 / FR 7.7%, 0.05 0.5186 / 8.2%, 0.08 0.5177 / 8.1% (a track kept on background).
    lost_refiner_step: float = 0.06
    # ...or less than this share of its points lies in the frame: a face leaving the picture was
    # kept, its points ever wider of the truth (NME 0.13 with half of it inside, 0.28 with a fifth;
    # user test, round 7), where a still's detector had dropped it at four fifths.
    lost_inside: float = 0.5
    smooth: bool = True  # video: One Euro filter on the final landmarks
    smooth_min_cutoff: float = 0.5  # Hz; with beta, chosen by benchmarks/bench_smoothing.py
    smooth_beta: float = 1.0
    assets: Path | None = None  # folder with the model files (default: the packaged ones); a str is accepted

    def __post_init__(self) -> None:
        modes = tuple(m.value for m in TrackerMode)
        _check("mode", self.mode, isinstance(self.mode, str) and self.mode in modes, f"one of {', '.join(modes)}")
        object.__setattr__(self, "mode", TrackerMode(self.mode))  # frozen: normalised here, once (a string becomes the enum)
        _check("engine", self.engine, self.engine in KINDS, f"one of {', '.join(KINDS)}")
        _check("refiners", self.refiners, not isinstance(self.refiners, str) and all(r in FRAMES for r in self.refiners),
               f"a tuple of refiner stages from {', '.join(FRAMES)}")
        object.__setattr__(self, "refiners", tuple(self.refiners))
        if self.refine_flip is None:
            object.__setattr__(self, "refine_flip", self.mode is TrackerMode.IMAGE)
        _check("assets", self.assets, self.assets is None or isinstance(self.assets, (str, os.PathLike)), "a folder (str or Path) or None")
        if self.assets is not None:
            object.__setattr__(self, "assets", Path(self.assets))
        _check("fast_network", self.fast_network, self.fast_network is None or isinstance(self.fast_network, bool),
               "True, False or None (None: on in video)")
        for name, valid, rule in _FIELD_RULES:
            _check(name, getattr(self, name), valid(getattr(self, name)), rule)

    @classmethod
    def from_args(cls, args, **fields) -> TrackerConfig:
        """The command line's common options (``--engine``, ``--threads``, ``--max-faces``, ``--no-refine``,
        ``--flip``, ``--dense-flip``, ``--one-stage``, ``--no-int8``, ``--fast-network``, ``--assets``) and what the command sets
        itself: the one place CLI flags become a config."""
        if args.no_refine and args.one_stage:
            raise UsageError("--one-stage chooses the refiner that --no-refine turns off: give one of them")
        common = {"engine": args.engine, "threads": args.threads, "max_faces": args.max_faces, "refine": not args.no_refine, "refine_flip": args.flip,
                  "dense_flip": args.dense_flip, "refiners": ONE_STAGE if args.one_stage else DEFAULT_REFINERS, "int8": not args.no_int8,
                  "fast_network": args.fast_network, "assets": args.assets}
        config = cls(**{**common, **fields})
        if config.assets is not None and uses_fast_network(config) and packaged_fast_network_only(config.assets):
            print(f"note: {config.assets} holds your own {DENSEREG_ASSET} but the packaged {FAST_DENSEREG_ASSET}, which video runs "
                  f"by default: export yours as densereg-fast, or pass --no-fast-network", file=sys.stderr)
        return config


@dataclass(frozen=True)
class StageLandmarks:
    """points: (68,2) image pixels (NaN = missing); confidence: (68,) in [0,1]."""

    points: np.ndarray
    confidence: np.ndarray


@dataclass(frozen=True)
class FaceResult:
    """One face in one frame.

    roi: the crop the network saw; box: the detector's (or the caller's) box on detection
    frames, None when tracked; quality: the fit's quality, 0-1, whatever found the face (mean
    DenseReg landmark confidence x foreground fraction, capped: a caller's box on no face scores
    ~0.2, real faces ~0.5-0.7); score: the detector's score on detection frames (HOG ~0-3, the
    CNN's ~0-1.5), else (tracked, or a box the caller gave) ``quality``: two scales in one field
    (the order of a frame's faces: ``FrameResult``), so compare frames by ``quality``;
    track_id: video: the face's number, 0, 1, ... in the order faces are first reported, the same
    while it is tracked (another face in its place is numbered anew: ``tracker.cuts.face_changed``); stages: the landmarks of every
    ``Stage`` that ran, in order ('densereg', 'pca', 'mdm' with the refiner, 'smooth' in video
    with smoothing), ``final`` the last of them; all coordinates are 0-based image pixels (pixel centres);
    maps: the dense maps in crop pixels (S,S), always set; crop_to_image: (2,3) affine from crop
    to image pixels; visibility: with ``TrackerConfig.visibility`` (else None), (S,S) float32
    in [0,1], how surely each crop pixel shows the face itself rather than an occluder or hair
    over it (``tracker.occlusion``; the network's foreground covers occluders); pose: head pose (``pose.yaw_pitch_roll()`` in degrees) or None;
    template_maps: with ``TrackerConfig.template_maps`` (else None), the 3D template fitted to the
    final landmarks, rendered in the same crop as ``maps`` (``tracker.templatemaps``); runs: how
    many times the networks ran on this face this frame (more than 1 where a new face was run
    again from its landmarks' crop, ``Tracker._settle``; the frame's timings add them up).
    """

    roi: Roi
    score: float
    track_id: int
    stages: dict[Stage, StageLandmarks]
    detected: bool
    maps: DenseMaps
    crop_to_image: np.ndarray
    box: Detection | None = None
    pose: Pose | None = None  # head pose from the final landmarks (scaled orthographic)
    visibility: np.ndarray | None = None
    template_maps: DenseMaps | None = None
    runs: int = 1
    quality: float | None = None  # (None only in a FaceResult made by hand)

    @property
    def part_maps(self) -> DenseMaps:
        """The maps parts and face-transfer textures are read from: ``template_maps`` when the
        tracker made them (``TrackerConfig.template_maps``), else DenseReg's ``maps``."""
        return self.template_maps if self.template_maps is not None else self.maps

    @property
    def final_stage(self) -> Stage:
        """The last stage that ran: 'smooth' in smoothed video, else 'mdm', or 'pca' without the refiner."""
        return last_stage(self.stages)

    @property
    def final(self) -> StageLandmarks:
        """The final landmarks and confidences: those of the last stage that ran."""
        return self.stages[self.final_stage]

    @property
    def landmarks(self) -> np.ndarray:
        """The final landmarks, (68,2) image pixels."""
        return self.final.points

    def __repr__(self) -> str:
        # (the dataclass's printed every stage's arrays and the maps: hundreds of lines; user test 25)
        points = self.landmarks[np.isfinite(self.landmarks).all(axis=1)]
        where = (f"landmarks in x {points[:, 0].min():.1f}-{points[:, 0].max():.1f}, y {points[:, 1].min():.1f}-{points[:, 1].max():.1f}"
                 if len(points) else "no landmarks")
        quality = "None" if self.quality is None else f"{self.quality:.3f}"
        return (f"FaceResult(track_id={self.track_id}, score={self.score:.3f}, quality={quality}, detected={self.detected}, "
                f"stages={[s.value for s in self.stages]}, {where})")


@dataclass(frozen=True)
class FrameResult:
    """faces: best score first (video: by track id, so that a face keeps its place from frame
    to frame: two faces' rows swapped as their scores crossed, user test 25; a caller's boxes:
    in their order); [] when there is none.  timings: ms per stage.  dropped: faces
    the detector found beyond ``TrackerConfig.max_faces``, not kept (a still keeps its most
    prominent ones, ``tracker.crop.prominence``, that fit as faces, ``FACE_MIN_QUALITY``; video
    its tracks, then the best detections).  Video keeps a new face the detector found only if it
    survives a run from its own landmarks' crop (``Tracker._surviving``), and reports it from its
    first frame where it fits as one (``FACE_MIN_QUALITY``; a caller's box always), else once it
    has lasted ``UNSURE_FRAMES``."""

    faces: list[FaceResult]
    timings: dict[str, float]
    frame_index: int = 0
    dropped: int = 0

    def __repr__(self) -> str:
        return (f"FrameResult(frame_index={self.frame_index}, {sum(self.timings.values()):.1f} ms in all, dropped={self.dropped}, "
                f"faces={self.faces!r})")


@dataclass
class _Track:
    track_id: int
    filter: OneEuro | None
    age: int = 0
    appearance: AppearanceMemory | None = None  # with config.visibility: the face's colours seen so far
    roi: Roi | None = None  # the crop its last landmarks give: where the next frame looks for the face
    velocity: tuple[float, float] = (0.0, 0.0)  # that crop's centre's move over the last frame, pixels
    # The id it is reported by (``FaceResult.track_id``), given when it is first reported
    # (``Tracker._update_tracks``): reported faces are numbered 0, 1, ... without gaps.
    number: int | None = None
    region: np.ndarray | None = None  # thumbnail of its face's region on its last frame (``tracker.cuts.face_changed``)


@dataclass
class _Timer:
    ms: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, t0: float) -> float:
        now = time.perf_counter()
        self.ms[name] = self.ms.get(name, 0.0) + 1000 * (now - t0)
        return now


def packaged_fast_network_only(folder: Path) -> bool:
    """Whether an asset folder (``--assets``) has its own DenseReg but the packaged fast one: a
    copy of ``tracker/assets`` with one network exported into it, where video silently ran the
    fast network the copy came with (user test 8)."""
    try:
        own, packaged = read_manifest(folder / "MANIFEST.json"), read_manifest()
    except (OSError, ValueError):
        return False  # the folder's own check says what is wrong with it
    return own.get(DENSEREG_ASSET) != packaged.get(DENSEREG_ASSET) and own.get(FAST_DENSEREG_ASSET) == packaged.get(FAST_DENSEREG_ASSET)


def uses_fast_network(config: TrackerConfig) -> bool:
    """``fast_network`` as decided: unset means on in video where the model folder has the fast network."""
    if config.fast_network is not None:
        return config.fast_network
    return config.mode is TrackerMode.VIDEO and ((config.assets or ASSETS) / FAST_DENSEREG_ASSET).exists()


class Tracker:
    """Face landmarks and dense correspondence for images and video frames."""

    def __init__(self, config: TrackerConfig = TrackerConfig()):
        self.config = config
        timer, t = _Timer(), time.perf_counter()
        folder = config.assets or ASSETS
        kind = resolve_kind(config.engine)
        refiner_names = config.refiners if config.refine else ()
        self.densereg_asset = FAST_DENSEREG_ASSET if uses_fast_network(config) else DENSEREG_ASSET
        names = (self.densereg_asset, "shape_pca.npz", "template.npz", LANDMARK_TARGETS)
        paths = {name: verified_asset(name, folder) for name in names}
        t = timer.add("verify assets", t)  # SHA-256 of each file, once per process (the refiners' as they load)
        self.shape_model = load_shape_model(paths["shape_pca.npz"])
        try:
            self._load_networks(kind, folder, refiner_names)
        except EngineError as exc:
            if config.engine != "auto" or kind == "onnx":
                raise
            # TensorRT looked usable but failed on this model or device: auto means "what runs here"
            log.warning("%s; auto runs ONNX Runtime on the CPU instead", exc)
            self._load_networks("onnx", folder, refiner_names)
        t = timer.add("network sessions", t)
        with np.load(paths["template.npz"]) as z:
            self.head_model = HeadModel.from_landmarks(z["landmark_3d"])
            self.part_map = z["part_map"]
            self.flip_permutation = z["flip_permutation"] if config.refine_flip else None
        self._template_path = paths["template.npz"]
        self.face_model: FaceModel | None = None  # loaded when template maps are first asked for
        self.set_template_maps(config.template_maps)
        with np.load(paths[LANDMARK_TARGETS]) as z:  # where annotators put the points, not the template's vertices
            self.lookup = build_lookup(z["target_uv"].astype(np.float64))
        t = timer.add("template + UV table", t)
        load_detector()
        timer.add("face detector", t)
        self.load_ms: dict[str, float] = timer.ms  # where construction time went (bench's start-up row)
        self.input_size = NETWORK_INPUT
        self._tracks: list[_Track] = []
        self._track_ended = False
        self._lost_at = NEVER  # the frame the last track ended on, while one is still missing
        self._missing: list[Roi] = []  # where ended tracks were last, until a new track starts there
        # The frame faces last went (tracks ended, or a cut left them behind) and their smallest
        # crop in pixels: whether video's finer search is worth it (``_finer_due``).
        self._gone_at, self._gone_size = NEVER, 0.0
        self._cnn_at = NEVER  # the frame the CNN last looked after a loss
        self._next_id = 0  # tracks' own ids
        self._next_number = 0  # the ids faces are reported by (``_Track.number``)
        self._frame = 0
        self._finer_at = NEVER  # the frame video last ran the finer search on
        self._finer_gap = FINER_SEARCH_EVERY  # frames from it to the next (``_finer_due``)
        self._turned_next = False  # whether video's next such round is the turned search's
        self._time = 0.0  # this frame's, seconds (the smoothing's clock)
        self._thumbnail: np.ndarray | None = None  # the last frame's, for the scene-cut test (video)
        self._search = DeferredSearch(config.detect_lag, background=config.detect_lag > 0, max_side=config.detect_side)

    def _load_networks(self, kind: str, folder: Path, refiner_names: Sequence[str]) -> None:
        """DenseReg's and the refiners' engines of backend `kind` (``onnx``, ``torch`` or
        ``tensorrt``) from the model folder; on failure the engines made so far are closed and
        the error raised."""
        config = self.config
        # ONNX Runtime runs each refiner's int8 variant, where the folder has one (an older
        # export may not); TensorRT and torch the float graph.
        refiner_files = {name: int8_variant(name) if kind == "onnx" and config.int8 and (folder / int8_variant(name)).exists() else name
                         for name in refiner_names}
        paths = {name: verified_asset(name, folder) for name in (self.densereg_asset, *refiner_files.values())}
        manifest = read_manifest(folder / "MANIFEST.json")
        densereg_batch, refiner_batch = engine_batches(config)
        calls, session_threads = parallelism(config, kind)
        self._engines: list[Engine] = []
        self.refiners: list[RefinerStage] = []
        try:
            self.engine: Engine = load_engine(paths[self.densereg_asset], kind, session_threads, densereg_batch, calls)
            self._engines.append(self.engine)
            for name in refiner_names:
                # int8: each face alone, or its landmarks would depend on the faces beside it and on --threads
                engine = load_engine(paths[refiner_files[name]], kind, session_threads, refiner_batch, calls,
                                     one_sample_per_call=refiner_files[name] != name)
                self._engines.append(engine)
                if refiner_files[name] != name and engine.metadata.get(FLOAT_GRAPH_KEY) != manifest.get(name):
                    raise AssetError(f"{paths[refiner_files[name]]}: made from another {name} than the one beside it (re-export both: "
                                     f"python -m training.export ... --regraph), or run the float graph with --no-int8")
                self.refiners.append(RefinerStage(engine.infer, FRAMES[name], FRAMES[name].reference(self.shape_model)))
        except BaseException:
            for engine in self._engines:
                engine.close()
            raise
        # the files the networks were loaded from, DenseReg first (the op profile loads them again)
        self.model_files: list[Path] = [paths[self.densereg_asset], *(paths[refiner_files[name]] for name in refiner_names)]

    def describe(self) -> str:
        """The backend, for logs and the viewer: e.g. "onnx on CPU, 2 threads: one face a thread,
        up to 2 faces at once"."""
        return self.engine.describe()

    def reset(self) -> None:
        """Forget all tracks (a new video)."""
        self._search.cancel()
        self._tracks, self._frame, self._track_ended, self._lost_at, self._cnn_at = [], 0, False, NEVER, NEVER
        self._missing = []
        self._finer_at, self._finer_gap, self._gone_at, self._gone_size = NEVER, FINER_SEARCH_EVERY, NEVER, 0.0
        self._thumbnail, self._turned_next = None, False
        self._next_number = 0  # a new video's faces are numbered from 0

    def close(self) -> None:
        """Stop the background face search's worker process, if one was started (it also stops
        when the tracker is garbage-collected or the program exits)."""
        self._search.close()
        for engine in self._engines:
            engine.close()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- public ------------------------------------------------------------------------------

    def track(self, frame: np.ndarray, boxes: Sequence[Detection | Sequence[float]] | None = None,
              timestamp: float | None = None) -> FrameResult:
        """Process one frame: BGR, grey or BGRA, 8- or 16-bit (``tracker.fileio.to_bgr8``); None
        (what ``cv2.imread`` gives for a file it cannot read) or an array that is not a picture
        raises ``ImageReadError`` (an ``InputError``, a ValueError) with a one-line message.

        timestamp: the frame's time in seconds (video mode's smoothing works in time): its
        time in the video file (``CAP_PROP_POS_MSEC``: a variable-frame-rate video's frames are
        not evenly spaced), or a camera's clock when it was taken
        (``time.monotonic()``); None: the frames are taken as consecutive at 30 fps.
        ``tracker.sources`` gives each frame's (``SourceFrame.time``).

        boxes: the faces of this frame given by the caller, replacing the detector (as
        face-alignment's ``detected_faces``): ``(x0, y0, x1, y1)`` in pixels, or
        ``Detection``s (``tracker.detector.given_box`` makes one).  A given box is read as the
        tight box around the face's landmarks (``tracker.crop.BOX_CALIBRATION``); a
        ``Detection`` of another detector ('hog', 'cnn') keeps that detector's calibration.
        Every box is processed; in image mode the faces come back in the boxes' order (a box
        where no face could be fitted is left out; ``face.box`` says which box a face came
        from).  In video mode a box over a tracked face continues that track (unless another face has
        taken its place), others start new ones, and a track no box covers ends.
        ``boxes=[]`` means no face (the detector does not run).  A degenerate box, or one
        entirely outside the frame, raises ``BoxError`` (a ValueError) before anything is done.
        """
        timer = _Timer()
        t = time.perf_counter()
        image = to_bgr8(frame, "frame")
        self._time = self._frame / DEFAULT_FPS if timestamp is None else _seconds(timestamp)
        given = None if boxes is None else _given_boxes(boxes, image.shape)
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        video = self.config.mode is TrackerMode.VIDEO
        cut = False
        if video:
            thumb = thumbnail(image)
            if given is None and self._tracks and is_cut(self._thumbnail, thumb):
                # A new shot: its faces are not the tracked ones, even where they stand in the same
                # place (tracks carried on onto them; user test 10).  Searched as a first frame.
                self._search.cancel()  # (an answer under way is about the old shot)
                self._gone([tr for tr in self._tracks if tr.number is not None])
                cut = True
                self._tracks, self._track_ended, self._missing, self._lost_at = [], False, [], NEVER
            self._thumbnail = thumb
        tracked = [(tr, tr.roi) for tr in self._tracks] if video else []
        detections: list[Detection] = []
        round_kind: bool | None = None  # video's finer (True) or turned (False) search ran on this frame
        if given is None and video and tracked:
            # Tracked faces: new ones are searched for every detect_every frames, and on the frame
            # after a track ended while others go on (lost behind another face for a frame, it would
            # wait for the next round), then every LOST_SEARCH_EVERY frames for detect_every frames (a
            # face behind another for longer came back up to detect_every frames late), then every 3x
            # that up to 4 x detect_every frames (one hidden 90 frames came back 25 frames late: user
            # test 14; 8 two-person clips, the subject hidden 120 frames: AUC@0.08 0.4635 -> 0.4695,
            # the others unchanged); the answer is used detect_lag frames later.
            since_lost = self._frame - self._lost_at
            every = LOST_SEARCH_EVERY if since_lost < self.config.detect_every else 3 * LOST_SEARCH_EVERY
            searched = (self._frame % self.config.detect_every == 0 or self._track_ended
                        or (since_lost < 4 * self.config.detect_every and since_lost % every == 0))
            if searched and self._search.start(self._frame, gray):
                self._track_ended = False  # (kept while another search is still under way: the next frame asks again)
            found = self._search.due(self._frame)
            if searched or found is not None:
                detections = self._usable(found or [])
                if found is not None and self._cnn_after_loss_due(detections, tracked) and cnn_available():
                    detections = self._cnn_faces(image)
                    self._cnn_at = self._frame
                t = timer.add("detect", t)
        else:
            self._search.cancel()  # no tracks to add to, or the caller's boxes: an answer under way is stale
            self._track_ended = False  # (and a loss's search is this frame's own)
            if given is not None:
                detections = given
            else:
                found = detect_faces_at(gray, self.config.detect_side)
                detections = self._usable(found)
                # (the cut's frame too: a new shot's faces can be any size; after a close-up, a
                # wide shot's small face waited detect_every frames for it)
                search = not detections and (not video or cut or self._finer_due(gray.shape))
                # Video's rounds take turns, the finer search and the turned one (~0.1 s each: both
                # at once stalled a camera with nobody in front of it ~0.2 s a second); a cut's
                # frame has a finer one.  A still has both.
                finer = search and (not video or cut or not self._turned_next)
                if finer:
                    # A still has time for a finer search, and video while no face is found: HOG at
                    # 640 px misses faces under ~1/8 of the long side (a 4000 px photo's 300 px face;
                    # a 1080p video's 160 px one, a 45 px one in a 640 px picture: user test 15).
                    found = detect_faces_finer(gray, self.config.detect_side) or found
                    detections = self._usable(found)
                if not video and self.config.cnn_fallback and cnn_available():
                    detections += self._confirmed(image, found, detections)
                turned = []
                if not detections and search and not (video and finer):
                    # A face lying on its side or upside down (a photo turned without its EXIF
                    # tag, a person lying down): the CNN finds 43 of the 80 val faces turned 90
                    # degrees, this 74 (bench_roll).
                    turned = self._plausible(image, gray, self._usable(detect_faces_turned(gray, self.config.detect_side)))
                if video and search:
                    round_kind = finer  # (what comes next depends on whether a face came of it: below)
                if not detections and self._cnn_due(video, tracked) and cnn_available():
                    # still, beside turned faces: the picture's subject may be a face only the CNN
                    # finds (a profile), next to a small one lying down (review 28c)
                    detections = [d for d in self._cnn_faces(image) if not any(d.centred_in(f) for f in turned)]
                detections = turned + detections
                t = timer.add("detect", t)
        if given is None:
            tracked = [(tr, roi, None) for tr, roi in tracked]
            # A detection overlapping a tracked face is that face: keep the track's ROI.
            detections = [d for d in detections if not any(_inside(d, roi) for _, roi, _ in tracked)]
        else:
            # The caller's boxes say where the faces are: a track no box covers has ended, one a
            # box covers continues (and reports that box), one box to one track; the other boxes
            # are new faces.
            pairs = _match_boxes(given, [roi for _, roi in tracked])
            tracked = [(tr, roi, given[pairs[i]]) for i, (tr, roi) in enumerate(tracked) if i in pairs]
            detections = [d for j, d in enumerate(given) if j not in pairs.values()]
        items = tracked + [(None, d.roi(), d) for d in detections]
        dropped, spare = 0, []
        if given is None:  # max_faces caps what the detector adds; the caller's boxes all count
            if not video:
                # A still keeps its most prominent faces, the subject among them: by the detector's
                # score, a group photo's subject could be dropped while its .pts holds a bystander
                # (user test 13).  Video keeps the tracks, then the best detections.
                size = (image.shape[1], image.shape[0])
                items.sort(key=lambda item: -prominence(item[1], size))
            dropped = max(0, len(items) - self.config.max_faces)
            items, spare = items[: self.config.max_faces], items[self.config.max_faces:]
        faces = self._process(image, gray, items, timer) if items else []
        if round_kind is not None:
            self._next_round(round_kind, found=any(f.quality >= FACE_MIN_QUALITY for f in faces))
        if video and given is None and tracked and not faces and not detections:
            # Every track was lost on this frame (the face gone; a cut cleared the tracks above):
            # HOG searches it now, rather than report no face until the next frame's search.
            self._search.cancel()
            t = time.perf_counter()
            detections = self._usable(detect_faces_at(gray, self.config.detect_side))[: self.config.max_faces]
            t = timer.add("detect", t)
            items = [(None, d.roi(), d) for d in detections]
            faces = self._process(image, gray, items, timer) if items else []
        if video:
            faces = self._split_changed(image, faces)
        # New faces (a still's, a caller's box, a video's new track) settle in their landmarks'
        # crop; a tracked face's next frame starts from that crop anyway.
        faces = self._settle(image, gray, self._orient(image, gray, faces, timer), timer)
        if video and given is None:
            faces = self._surviving(image, gray, faces, timer)
        if spare and not video:
            faces = self._fitting_first(image, gray, faces, spare, timer)
        if given is not None and not video and self.config.box_search:
            faces = self._search_given_boxes(image, gray, given, faces, timer)
        faces = [f for f in faces if f.track_id >= 0 or f.box is None or f.box.detector != GIVEN or f.quality >= GIVEN_MIN_QUALITY]
        keep_order = given is not None and not video  # each of the caller's boxes, in their order, even overlapping ones
        if given is None:  # the caller's boxes are one face each, even overlapping ones
            expected = {tr.track_id: (roi.cx + tr.velocity[0], roi.cy + tr.velocity[1]) for tr, roi, _ in tracked}
            faces = _drop_duplicates(faces, expected)
        if video:
            faces = self._update_tracks(image, faces, timer)
        else:  # numbered in the order returned (numbered before the sort, faces[0] could be "#2"; review 35)
            if not keep_order:
                faces.sort(key=lambda f: -f.score)
            faces = [replace(f, track_id=i) for i, f in enumerate(faces)]
        if self.config.visibility:
            faces = self._add_visibility(image, faces, timer)
        if self.config.template_maps:
            faces = self._add_template_maps(faces, timer)
        self._frame += 1
        if video:
            faces.sort(key=lambda f: f.track_id)
        return FrameResult(faces, timer.ms, self._frame - 1, dropped)

    # -- internals -----------------------------------------------------------------------------

    def _finer_due(self, shape) -> bool:
        """Video's finer search, while no face is found: FINER_SEARCH_EVERY frames after the last
        one, twice as long after each that found nothing (FINER_MAX_GAP at most), but not for
        detect_every frames after faces went that the usual search finds when they come back (it
        cost a VGA clip ~120 ms a call for a face gone a few frames)."""
        if self._frame - self._finer_at < self._finer_gap:
            return False
        coarse = min(1.0, self.config.detect_side / max(shape[:2]))
        return self._frame - self._gone_at >= self.config.detect_every or self._gone_size * coarse < FINER_FACE_CROP

    def _next_round(self, finer: bool, found: bool) -> None:
        """When video's next finer or turned search comes, after a round of `finer` that `found`
        a face or not.  A fruitless round hands over to the other kind, and after both the wait
        doubles (a camera with nobody in front of it stalled ~120 ms every 5 frames: review 27),
        up to half of FINER_MAX_GAP, so that each kind comes at most that far apart (review 29c: a
        small face came 59 frames late); a round that found a face keeps its kind first (a
        video's faces are mostly alike: small ones, or lying down).  Found means a face that fits
        as one came of it (FACE_MIN_QUALITY), not a box: a box on a pattern on a wall made every
        round a finer one, every 5 frames (review 29c)."""
        self._finer_at, self._turned_next = self._frame, finer != found
        if found:
            self._finer_gap = FINER_SEARCH_EVERY
        elif not finer:
            self._finer_gap = min(2 * self._finer_gap, FINER_MAX_GAP // 2)

    def _note_missing(self, ended: list[_Track], started: list[_Track]) -> None:
        """Keep where ended tracks were until a new track starts within a crop of there (the face
        came back); with none left missing, the loss is over: its searches and CNN calls stop (the
        only face lost for a moment and found again had dlib's CNN run ~1 s at 3 later frames;
        review 36)."""
        self._missing += [tr.roi for tr in ended if tr.roi is not None]
        for tr in started:
            near = [k for k, roi in enumerate(self._missing)
                    if math.hypot(roi.cx - tr.roi.cx, roi.cy - tr.roi.cy) < RETURN_DISTANCE * max(roi.size, tr.roi.size)]
            if near:
                del self._missing[near[0]]
        if not self._missing:
            self._lost_at = NEVER

    def _gone(self, tracks: list[_Track]) -> None:
        """Note `tracks`, ended or cut away on this frame, for ``_finer_due``: the faces of a
        video, and of its next shot, are mostly as large as the last ones."""
        if tracks:
            self._gone_at = self._frame
            self._gone_size = min(tr.roi.size if tr.roi is not None else 0.0 for tr in tracks)

    def _usable(self, detections: list[Detection]) -> list[Detection]:
        return usable(detections, self.config.min_face, self.config.detect_threshold)

    def _cnn_faces(self, image: np.ndarray) -> list[Detection]:
        """dlib's CNN detector's faces of at least ``min_face`` (its scores are on another scale
        than HOG's ``detect_threshold``)."""
        return [d for d in detect_faces_cnn(image) if d.width >= self.config.min_face]

    def _confirmed(self, image: np.ndarray, found: list[Detection], sure: list[Detection]) -> list[Detection]:
        """A still's HOG detections under ``detect_threshold`` that the CNN confirms (its box).
        Dropped unseen, they lost a photo's subject under JPEG blocks or a hand over the mouth
        (HOG 0.001-0.09) while a bystander was found, so the .pts held the bystander; non-faces
        score there too (0.035 for the demo's mission patch), and the tracker's own tests pass
        them, the CNN does not (~0.3 s a box; all 13 such subjects among the val faces
        transformed by user testing confirmed, the patch not)."""
        weak = [d for d in found if d.width >= self.config.min_face and d.score < self.config.detect_threshold
                and not any(d.centred_in(s) for s in sure)]
        # at most max_faces checks (the best first): a busy scene's many weak boxes would cost seconds
        return [c for c in (confirm_face(image, d) for d in weak[: self.config.max_faces]) if c is not None]

    def _plausible(self, image, gray, detections: list[Detection]) -> list[Detection]:
        """The turned search's detections whose face fits as a face (``quality`` at least
        FACE_MIN_QUALITY): lettering turned a quarter turn scores like a face to HOG (0.31-0.34;
        review 28b).  The faces kept are run again as the picture's faces (~15 ms each, beside
        the searches' ~100 ms; this run's time counts as the search's, not as the stages')."""
        if not detections:
            return []
        faces = self._process(image, gray, [(None, d.roi(), d) for d in detections[: self.config.max_faces]], _Timer())
        good = {id(f.box) for f in faces if f.quality >= FACE_MIN_QUALITY}
        return [d for d in detections if id(d) in good]

    def _cnn_due(self, video: bool, tracked: list) -> bool:
        """HOG misses rotated and profile faces; the CNN finds them at ~1 s a call, affordable
        per picture, and in video only now and then while no face is tracked."""
        if not video:
            return self.config.cnn_fallback
        every = self.config.video_cnn_every
        return every > 0 and not tracked and self._frame % every == 0

    def _cnn_after_loss_due(self, detections: list[Detection], tracked: list) -> bool:
        """The CNN, when HOG finds nothing new after a track ended while another goes on: a face HOG
        had trouble with comes back from behind a hand or a board where the CNN sees it (a subject
        HOG missed for the rest of a clip while a bystander was tracked; user test 8's clips).  At
        most once in ``video_cnn_every`` frames for ``LOST_CNN_FRAMES`` after the loss (the first
        call often still sees what hid the face), then ever more rarely, at most once in half the
        time since the loss (a subject behind a board for 120 frames was not looked for when it
        came out: session 23's clips; a face gone for good costs a few calls, ~1 s each)."""
        every = self.config.video_cnn_every
        if self._lost_at == NEVER:  # no track has ended: nothing to look again for (it ran ~1 s at frame 30 of every clip)
            return False
        new_faces = [d for d in detections if not any(_inside(d, roi) for _, roi in tracked)]
        since = self._frame - self._lost_at
        gap = every if since < LOST_CNN_FRAMES else max(every, since // 2)
        return every > 0 and not new_faces and self._frame - self._cnn_at >= gap

    def _orient(self, image, gray, faces: list[FaceResult], timer: _Timer) -> list[FaceResult]:
        """A new face the CNN found (HOG finds upright faces only) is also run from its box's
        crop turned by a quarter and a half turn; the turned run of the best ``quality`` replaces
        the upright one when it beats it by ORIENT_MARGIN.  The networks were trained on faces
        turned up to ~45 degrees: run upright, a face lying on its side came out wrong and
        settled wrong (val pictures turned 90 degrees: the CNN found 43 of 80 faces, 5 of them
        right; with this 41, AUC@0.08 0.038 -> 0.341; at 60 degrees 0.503 -> 0.539, FR 20% ->
        12.5%; ``benchmarks/bench_roll.py``).  ~15 ms a face beside the CNN's ~1 s."""
        turn = {i for i, f in enumerate(faces) if f.track_id < 0 and f.box is not None and f.box.detector == "cnn"}
        if not turn:
            return faces
        items = [(None, replace(faces[i].roi, angle=faces[i].roi.angle + a), faces[i].box) for i in sorted(turn) for a in ORIENT_TURNS]
        runs: dict[int, list[FaceResult]] = {}
        for f in self._process(image, gray, items, timer):
            runs.setdefault(id(f.box), []).append(f)
        out = []
        for i, f in enumerate(faces):
            best = max(runs.get(id(f.box), []) if i in turn else [], key=lambda r: r.quality, default=None)
            # A turned run replaces the upright one only by a clear margin: on upright faces a
            # sideways run scored up to ~0.012 more and came out wrong (2 of the 80 val faces
            # given CNN boxes; review 27c); a lying face's right turn leads by more.
            chosen = best if best is not None and best.quality > f.quality + ORIENT_MARGIN else f
            out.append(replace(chosen, runs=f.runs + len(runs.get(id(f.box), []))) if i in turn else chosen)  # (all of them counted)
        return out

    def _search_given_boxes(self, image, gray, given: list[Detection], faces: list[FaceResult], timer: _Timer) -> list[FaceResult]:
        """A still's caller box keeps its face where that fits as one (FACE_MIN_QUALITY), is about
        the box's size (LOOSE_BOX, OVERGROWN_FACE) and is either turned further than HOG finds
        faces (``_hog_could_see``) or found by HOG where it is (``_hog_sees``, ``_confirms``).
        Any other box is searched with HOG (upsampled once: faces down to ~1/16 of the box): the
        face found nearest the box's centre is run there, and of the two faces the box's is the
        one that fits nearest its centre (``_box_choice``), or HOG's where the box's own face is
        none HOG finds and HOG's fits better or lies nearer the centre; it keeps the caller's box.  A box many times the face (a person
        detector's, a generous crop) left the face a few pixels in the crop: boxes 8-12x a face
        gave points off the face (user test 23); a loose box in a group photo settled on the
        neighbour, or HOG's best face in it was the neighbour (user test 24); a head box 3.5x the
        face, off its centre, gave a face the box's size spread over hair, suit and background
        that fit at 0.53 (user test 37)."""
        items, unconfirmed = [], set()
        for box in given:
            own = next((f for f in faces if f.box is box and f.quality >= FACE_MIN_QUALITY), None)
            sized = own is not None and _box_side(box) / LOOSE_BOX <= _face_side(own) <= OVERGROWN_FACE * _box_side(box)
            visible = own is not None and _hog_could_see(own)
            if sized and not visible:
                continue  # (a face turned or lying further than HOG finds: its absence says nothing; review 37b)
            t = time.perf_counter()
            seen = sized and self._hog_sees(gray, own)
            timer.add("detect", t)
            if seen:
                continue
            t = time.perf_counter()
            # the box and a tenth of it around (HOG needs the face's surroundings)
            found = [d for d in self._usable(_detect_around(gray, (box.x0, box.y0, box.x1, box.y1), 0.1 * _box_side(box), upsample=1,
                                                            max_side=self.config.detect_side)) if d.centred_in(box)]
            timer.add("detect", t)
            confirmed = own is not None and any(_confirms(d, own) for d in found)
            if sized and (confirmed or not found):
                continue  # (HOG finds no face there, a profile say: the box's own face stands)
            if found:
                nearest = min(found, key=lambda d: _off_centre(((d.x0 + d.x1) / 2, (d.y0 + d.y1) / 2), box))
                items.append((None, nearest.roi(), box))
                if visible and not confirmed:
                    unconfirmed.add(id(box))
        if not items:
            return faces
        again = {id(f.box): f for f in self._settle(image, gray, self._process(image, gray, items, timer), timer)}
        out = []
        for box in given:
            first, second = next((f for f in faces if f.box is box), None), again.get(id(box))
            choices = [f for f in (first, second) if f is not None]
            if choices:
                runs = sum(f.runs for f in choices)  # (the networks ran on both; the pick kept its own count only)
                # HOG's face over the box's own one it could not confirm where it fits better or lies
                # nearer the box's centre: not any face HOG found in the box (a face it misses, turned
                # 55 degrees, lost to a stranger's in the box's corner; review 37b)
                prefer_hog = (id(box) in unconfirmed and second is not None and second.quality >= FACE_MIN_QUALITY
                              and (second.quality > first.quality
                                   or _off_centre(second.landmarks.mean(axis=0), box) < _off_centre(first.landmarks.mean(axis=0), box)))
                out.append(replace(second if prefer_hog else _box_choice(choices, box), runs=runs))
        return out

    def _hog_sees(self, gray, face: FaceResult) -> bool:
        """Whether HOG finds `face` where its landmarks are, searched at the scale that makes it
        ~CHECK_FACE_PX: ~1-2 ms, where a search of its box upsampled costs ~30 ms on a val face."""
        side = _face_side(face)
        (x0, y0), (x1, y1) = face.landmarks.min(axis=0), face.landmarks.max(axis=0)
        scale = min(1.0, CHECK_FACE_PX / max(side, 1.0))
        found = _detect_around(gray, (x0, y0, x1, y1), 0.3 * side, upsample=0 if side * scale >= 80 else 1, scale=scale)
        return any(_confirms(d, face) for d in found)

    def _settle(self, image, gray, faces: list[FaceResult], timer: _Timer) -> list[FaceResult]:
        """A new face whose landmarks give another crop than the one it was run in is run again
        from that crop, as video's next frame would be, until they agree (``_agree``).

        A box's crop is upright and sized by the box, where the networks were trained on crops
        around the landmarks, turned with the face.  A caller's loose box (a head or person
        detector's, a generous crop) left the face small in the crop and its landmarks wrong
        (val faces, boxes 2x the tight one: AUC@0.08 0.248, FR 50%; settled 0.543, FR 12.5%;
        user test 10; ``benchmarks/bench_boxes.py``).  A detector's upright box on a turned head
        did the same to stills (val faces turned 40 / 60 degrees: 0.529 / 0.143, FR 7.5 / 69%;
        settled 0.583 / 0.503, FR 5.0 / 20%; upright 0.6146 -> 0.6173, 1.5 runs a face;
        ``benchmarks/bench_roll.py``).  A face cut by the picture's edge is not moved into a
        crop further outside the picture (``SETTLE_CUT``)."""
        for _ in range(self.config.box_passes):
            redo = {i: roi_from_landmarks(f.landmarks) for i, f in enumerate(faces) if f.track_id < 0}
            redo = {i: roi for i, roi in redo.items() if _run_again(faces[i].roi, roi, faces[i].landmarks, image.shape)}
            if not redo:
                break
            again = {id(f.box): f for f in self._process(image, gray, [(None, roi, faces[i].box) for i, roi in redo.items()], timer)}
            faces = [replace(again[id(f.box)], runs=f.runs + 1) if i in redo and id(f.box) in again else f  # (a failed re-run keeps its face)
                     for i, f in enumerate(faces)]
        return faces

    def _surviving(self, image, gray, faces: list[FaceResult], timer: _Timer) -> list[FaceResult]:
        """Video: the new faces that would survive their next frame: run again from the crop their
        landmarks give, as that frame runs them, they are not lost (``TrackerConfig.lost_*``).  HOG's
        weak box on a suit's badge fit as a face with the full network, flipped or one refiner
        stage (quality 0.55) and was lost on its next frame every time, searched for at once and
        found again: face #1, #2, ... every other frame (verify 38).  One more run a new face."""
        new = [f for f in faces if f.track_id < 0]
        if not new:
            return faces
        crops = [roi_from_landmarks(f.landmarks) for f in new]
        kept = {id(f.roi) for f in self._process(image, gray, [(None, roi, None) for roi in crops], timer)}  # (the lost ones left out)
        lost = {id(f) for f, roi in zip(new, crops) if id(roi) not in kept}
        return [f for f in faces if id(f) not in lost]

    def _fitting_first(self, image, gray, faces: list[FaceResult], spare: list, timer: _Timer) -> list[FaceResult]:
        """A still's `max_faces` faces that fit as faces (FACE_MIN_QUALITY, once settled: a first
        run's fit can pass where the settled one does not) among its boxes in order of
        prominence: a box that is no face (HOG's on the badge of a suit, larger and more
        central than the face) is replaced by the next box, else it kept the face out and became
        the picture's subject (user test 37)."""
        fitting = [f for f in faces if f.quality >= FACE_MIN_QUALITY]
        others = [f for f in faces if f.quality < FACE_MIN_QUALITY]
        spare = spare[: self.config.max_faces]  # at most twice the boxes tried (a crowd of HOG's boxes on a pattern)
        while spare and len(fitting) < self.config.max_faces:
            more, spare = spare[: self.config.max_faces - len(fitting)], spare[self.config.max_faces - len(fitting):]
            for face in self._settle(image, gray, self._orient(image, gray, self._process(image, gray, more, timer), timer), timer):
                (fitting if face.quality >= FACE_MIN_QUALITY else others).append(face)
        return (fitting + others)[: self.config.max_faces]

    def _process(self, image, gray, items, timer: _Timer) -> list[FaceResult]:
        """The faces in `items` (track, roi, detection): every stage takes all of them at once
        (one engine call per network; numpy's per-call overhead, not arithmetic, is the cost of
        the numeric stages, so a second face adds little)."""
        t = time.perf_counter()
        s = self.input_size
        mats = [crop_matrix(roi, s) for _, roi, _ in items]
        crops = np.stack([warp_image(image, roi, s) for _, roi, _ in items])
        t = timer.add("crop", t)
        x = to_network_input(crops)
        out = infer_flip_averaged(self.engine.infer, x) if self.config.dense_flip else self.engine.infer({"image": x})
        t = timer.add("network", t)
        found = extract_landmarks_batch(out["uv"], out["fg"][:, 0], self.lookup, self.config.fg_threshold)
        backs = invert(np.stack(mats))  # (F,2,3) crop -> image
        image_points = transform_points(backs, np.stack([lm.points for lm in found]))
        dense = [StageLandmarks(p, lm.confidence) for p, lm in zip(image_points, found)]
        t = timer.add("landmarks", t)
        fits = fit_shapes(self.shape_model, np.stack([d.points for d in dense]), np.stack([d.confidence for d in dense]))
        t = timer.add("pca", t)
        fg_fractions = (out["fg"] > self.config.fg_threshold).mean(axis=(1, 2, 3))  # how much of each crop is face
        fitted = []
        for i, ((track, roi, det), back, d, fit) in enumerate(zip(items, backs, dense, fits)):
            if fit is None:
                continue  # too few landmarks: not a face (or lost)
            stages = {Stage.DENSEREG: d, Stage.PCA: StageLandmarks(fit.points, _pca_confidence(fit, d))}
            fitted.append((track, roi, det, back, DenseMaps.from_outputs(out, i), float(fg_fractions[i]), stages))
        refined = [[]] * len(fitted)
        if self.refiners and fitted:
            # every face in one engine call per stage
            cascade = refine_cascade(self.refiners, gray, np.stack([st[Stage.PCA].points for *_, st in fitted]), self.flip_permutation)
            refined = [[stage[i] for stage in cascade] for i in range(len(fitted))]
            t = timer.add("mdm", t)
        faces = []
        for (track, roi, det, back, maps, fg_fraction, stages), steps in zip(fitted, refined):
            confidence = float(np.mean(stages[Stage.DENSEREG].confidence))
            refiner_step = 0.0
            if steps:
                # The loss test was calibrated on the first stage's last update.
                refiner_step = steps[0].last_step / max(eye_distance(steps[-1].points), MIN_EYE_DISTANCE)
                stages[Stage.MDM] = StageLandmarks(steps[-1].points, stages[Stage.PCA].confidence)
            quality = confidence * min(1.0, fg_fraction / FULL_QUALITY_FG_FRACTION)
            final = stages[last_stage(stages)].points
            inside = float(np.mean(_in_picture(final, gray.shape)))
            lost = (
                fg_fraction < self.config.lost_fg_fraction
                or confidence < self.config.lost_confidence
                or refiner_step > self.config.lost_refiner_step
                or inside < self.config.lost_inside
            )
            if lost and det is None:
                continue
            faces.append(
                FaceResult(
                    # Video mode smooths the points afterwards and takes the pose from those.
                    pose=None if self.config.mode is TrackerMode.VIDEO else head_pose(final, self.head_model),
                    roi=roi,
                    score=det.score if det is not None and det.detector != GIVEN else quality,
                    track_id=track.track_id if track is not None else -1,
                    stages=stages,
                    detected=det is not None,
                    box=det,
                    maps=maps,
                    crop_to_image=back,
                    quality=quality,
                )
            )
        return faces

    def _split_changed(self, image: np.ndarray, faces: list[FaceResult]) -> list[FaceResult]:
        """Video: a tracked face whose region shows another face than the track's last frame
        (``tracker.cuts.face_changed``: another person in its place, the frame no cut) is a new
        face, settled in its own crop and numbered anew; that track ends."""
        tracks = {tr.track_id: tr for tr in self._tracks}

        def changed(f: FaceResult) -> bool:
            return f.track_id in tracks and face_changed(tracks[f.track_id].region, face_thumbnail(image, f.final.points))

        return [replace(f, track_id=-1) if changed(f) else f for f in faces]

    def _update_tracks(self, image: np.ndarray, faces: list[FaceResult], timer: _Timer) -> list[FaceResult]:
        t = time.perf_counter()
        by_id = {tr.track_id: tr for tr in self._tracks}
        tracks, out, started = [], [], []
        for f in faces:
            if f.track_id >= 0 and f.track_id in by_id:
                tr = by_id[f.track_id]
            else:
                tr = _Track(self._next_id, self._make_filter())
                self._next_id += 1
            tr.region = face_thumbnail(image, f.final.points)
            stages, raw = dict(f.stages), f.final
            if tr.filter is not None:  # its own stage: stages["mdm"] stay the refiner's output
                scale = max(eye_distance(raw.points), MIN_EYE_DISTANCE)
                stages[Stage.SMOOTH] = StageLandmarks(tr.filter(raw.points, self._time, scale), raw.confidence)
            pts = stages[last_stage(stages)].points
            roi = roi_from_landmarks(pts)
            if tr.roi is not None:
                tr.velocity = (roi.cx - tr.roi.cx, roi.cy - tr.roi.cy)
            tr.roi, tr.age = roi, tr.age + 1
            # A new track is reported from its first frame where it fits as a face (or is a caller's
            # box), else once it has lasted UNSURE_FRAMES: HOG's weak box on a suit's badge (fit
            # 0.26-0.41) started tracks that ended after 1-4 frames, drawn and painted as faces
            # (verify 37, 38), while a hard real face (dark, half hidden) that fits under that at
            # first stays and is reported that much later.
            if tr.number is None and (tr.age >= UNSURE_FRAMES or f.quality >= FACE_MIN_QUALITY or (f.box is not None and f.box.detector == GIVEN)):
                tr.number, self._next_number = self._next_number, self._next_number + 1
                started.append(tr)
            tracks.append(tr)
            if tr.number is not None:
                out.append(replace(f, track_id=tr.number, stages=stages, pose=head_pose(pts, self.head_model)))
        kept = {tr.track_id for tr in tracks}
        # a track that ended unreported is no loss to search for, nor one starting the face back
        ended = [tr for i, tr in by_id.items() if i not in kept and tr.number is not None]
        # (kept until a search starts: a loss while the last search was still under way was looked
        # for only at the next LOST_SEARCH_EVERY frame; review 35)
        self._track_ended = self._track_ended or bool(ended)
        if ended:
            self._lost_at = self._frame
            self._gone(ended)
        self._note_missing(ended, started)
        self._tracks = tracks
        if any(tr.age > 1 for tr in tracks):  # a face tracked: the next loss is searched for promptly again
            self._finer_gap = FINER_SEARCH_EVERY  # (not one that ends on its first frame: a box on a wall's pattern)
        timer.add("smooth", t)
        return out

    def set_visibility(self, on: bool) -> None:
        """Occlusion maps on or off from the next frame (the viewer's transfer overlay): one of
        the config's two fields that may change between frames (``set_template_maps`` the other),
        since nothing is built from them."""
        self.config = replace(self.config, visibility=on)

    def set_template_maps(self, on: bool) -> None:
        """Template maps on or off from the next frame (the viewer's parts and transfer overlays),
        like ``set_visibility``; the shape model is loaded the first time."""
        if on and self.face_model is None:
            # The shape model does not change with the networks: a folder of models exported before it shipped uses the packaged one.
            folder = self.config.assets or ASSETS
            model = verified_asset(FACE_MODEL, folder if (folder / FACE_MODEL).exists() else ASSETS)
            self.face_model = load_face_model(model, self._template_path)
        self.config = replace(self.config, template_maps=bool(on))

    def _add_visibility(self, image: np.ndarray, faces: list[FaceResult], timer: _Timer) -> list[FaceResult]:
        """Each face's visibility map: its colours against its own parts' colours and, in video,
        against the colours its track showed before (``tracker.occlusion``)."""
        t = time.perf_counter()
        tracks = {tr.number: tr for tr in self._tracks if tr.number is not None} if self.config.mode is TrackerMode.VIDEO else {}
        out = []
        for f in faces:
            track = tracks.get(f.track_id)
            if track is not None and track.appearance is None:
                track.appearance = AppearanceMemory()
            crop = warp_image(image, f.roi, WORK_SIZE)  # the crop the network saw, at the tests' resolution
            vis = visibility_map(crop, f.maps, self.part_map, self.config.fg_threshold, track.appearance if track else None)
            out.append(replace(f, visibility=vis))
        timer.add("visibility", t)
        return out

    def add_template_maps(self, result: FrameResult) -> FrameResult:
        """`result` with template maps on every face (after ``set_template_maps(True)``): for a
        frame already tracked without them (the viewer's paused frame when an overlay comes on),
        the same maps as tracking it with them, the tracker's state untouched."""
        if self.face_model is None:
            raise ConfigError("add_template_maps: call set_template_maps(True) first (it loads the shape model)")
        timer = _Timer()
        faces = self._add_template_maps(result.faces, timer)
        return replace(result, faces=faces, timings={**result.timings, **timer.ms})

    def _add_template_maps(self, faces: list[FaceResult], timer: _Timer) -> list[FaceResult]:
        """Each face's template, fitted to its final landmarks, rendered in its crop."""
        t = time.perf_counter()
        out = []
        for f in faces:
            points = transform_points(invert(f.crop_to_image), f.landmarks)
            out.append(replace(f, template_maps=template_maps(self.face_model, points, f.maps.fg.shape[0])))
        timer.add("template maps", t)
        return out

    def _make_filter(self) -> OneEuro | None:
        c = self.config
        return OneEuro(c.smooth_min_cutoff, c.smooth_beta) if c.smooth else None


def parallelism(config: TrackerConfig, kind: str) -> tuple[int, int]:
    """(network calls a batch is split into, side by side; threads per call) for the resolved
    engine `kind`.  On the CPU (ONNX Runtime) a frame's faces are split into up to
    ``config.threads`` calls, each on one thread: one face's networks are too small to gain from
    a second thread (at batch 1 the same time on 1 or 2 threads, and in the pipeline slower on
    2), while two faces on two cores take little more than one.  A GPU, and the research-only
    torch engine, take every face in one call on ``config.threads`` threads."""
    return (config.threads, 1) if kind == "onnx" else (1, config.threads)


def engine_batches(config: TrackerConfig) -> tuple[int, int]:
    """The largest batch each network is built for (TensorRT's optimisation profile; ONNX Runtime
    and PyTorch take any batch): each network sees one crop per face and, with ``dense_flip``
    (DenseReg) or ``refine_flip`` (the refiner), the mirrored crop too.  A larger batch (the caller's own boxes are not
    capped by ``max_faces``) still runs, in chunks."""
    return config.max_faces * (2 if config.dense_flip else 1), config.max_faces * (2 if config.refine_flip else 1)


def _drop_duplicates(faces: list[FaceResult], expected: dict[int, tuple[float, float]] | None = None) -> list[FaceResult]:
    """Faces that are one face now (two tracks, or a track and a detection, that converged on
    it): keep a track over a new detection; of two tracks, the one that landed nearest where it
    was expected (`expected`: track id -> its crop centre moved on by its last frame's move; else
    where it was): it was on that face, the other drifted onto it; of two detections, the
    better score.  Keeping the better score, a face passing behind another kept the track that
    had drifted onto the front face, which then carried the hidden face's identity (user test,
    round 7); keeping the track that moved least, a face walking fast in front of a still one
    lost its identity to the still one's track (review)."""
    expected = expected or {}
    now = {id(f): roi_from_landmarks(f.landmarks) for f in faces}

    def rank(f: FaceResult) -> tuple[bool, float]:
        if f.track_id < 0:
            return True, -f.score
        x, y = expected.get(f.track_id, (f.roi.cx, f.roi.cy))  # f.roi: where the track was
        return False, float(np.hypot(now[id(f)].cx - x, now[id(f)].cy - y)) / f.roi.size

    kept: list[FaceResult] = []
    for f in sorted(faces, key=rank):
        a = now[id(f)]
        if all(np.hypot(a.cx - now[id(k)].cx, a.cy - now[id(k)].cy) > DUPLICATE_DISTANCE * max(a.size, now[id(k)].size) for k in kept):
            kept.append(f)
    return kept


def _given_boxes(boxes, shape) -> list[Detection]:
    """The caller's boxes as Detections, each checked (BoxError naming the bad box)."""
    h, w = shape[:2]
    flat = isinstance(boxes, (Sequence, np.ndarray)) and len(boxes) in (4, 5) and all(isinstance(v, numbers.Real) for v in boxes)
    if isinstance(boxes, Detection) or flat:
        raise BoxError(f"boxes={boxes!r}: a list of boxes is expected, e.g. boxes=[(x0, y0, x1, y1)] for one face")
    if isinstance(boxes, np.ndarray):
        if boxes.dtype == bool:
            raise BoxError(f"face boxes: need numbers x0 y0 x1 y1, got a {boxes.dtype} array")
        if boxes.size and (boxes.ndim != 2 or boxes.shape[1] not in (4, 5)):
            raise BoxError(f"face boxes: need an (N,4) array of x0 y0 x1 y1 (or (N,5) with a score), got shape {boxes.shape}")
        boxes = boxes.reshape(-1, boxes.shape[1] if boxes.ndim == 2 else 4).tolist()
    out = []
    for b in boxes:
        if isinstance(b, Detection):
            given_box(b.x0, b.y0, b.x1, b.y1)  # the same checks, whichever detector made it
            if b.detector not in BOX_CALIBRATION:  # (a raw KeyError later; user test 14)
                raise BoxError(f"face box {(b.x0, b.y0, b.x1, b.y1)}: detector {b.detector!r} has no box calibration (one of "
                               f"{', '.join(map(repr, BOX_CALIBRATION))}); give another detector's box as (x0, y0, x1, y1), "
                               "read as the tight box around the face")
            d = b
        elif all(callable(getattr(b, k, None)) for k in ("left", "top", "right", "bottom")):  # a dlib.rectangle
            d = given_box(b.left(), b.top(), b.right() + 1, b.bottom() + 1)  # (its right and bottom are inclusive)
        else:
            coords = tuple(b) if isinstance(b, (Sequence, np.ndarray)) else (b,)
            if len(coords) not in (4, 5):
                raise BoxError(f"face box {coords!r}: need 4 numbers x0 y0 x1 y1 (a fifth, a detector's score, is ignored)")
            d = given_box(*coords[:4])  # (x0, y0, x1, y1, score): face-alignment's detected_faces (user test 24)
        if d.x1 <= 0 or d.y1 <= 0 or d.x0 >= w or d.y0 >= h:
            raise BoxError(f"face box {(d.x0, d.y0, d.x1, d.y1)}: entirely outside the {w}x{h} image")
        if _box_side(d) > MAX_BOX_FACTOR * max(w, h):
            # its crop's anti-aliasing blur grows with it: minutes a picture, then an OpenCV error (user test 21)
            raise BoxError(f"face box {(d.x0, d.y0, d.x1, d.y1)}: over {MAX_BOX_FACTOR:g} times the {w}x{h} image's size: "
                           "no face box in it")
        out.append(d)
    return out


def _box_side(box: Detection) -> float:
    return max(box.x1 - box.x0, box.y1 - box.y0)


def _face_side(face: FaceResult) -> float:
    """The larger side of the box around a face's landmarks (what a tight box is)."""
    return float(np.ptp(face.landmarks, axis=0).max())


def _off_centre(point, box: Detection) -> float:
    """How far `point` (x, y) lies from `box`'s centre, in box sides."""
    return float(np.hypot(point[0] - (box.x0 + box.x1) / 2, point[1] - (box.y0 + box.y1) / 2)) / max(_box_side(box), 1e-6)


def _detect_around(gray: np.ndarray, box: tuple[float, float, float, float], margin: float, upsample: int,
                   max_side: int | None = None, scale: float = 1.0) -> list[Detection]:
    """HOG's faces in `box` (x0, y0, x1, y1) and `margin` pixels around it (HOG needs the face's
    surroundings), cut to the picture, searched at most `max_side` px a side (default: the cut
    region's own long side times `scale`), in the picture's pixels."""
    left, top = max(int(box[0] - margin), 0), max(int(box[1] - margin), 0)
    region = gray[top:min(int(box[3] + margin) + 1, gray.shape[0]), left:min(int(box[2] + margin) + 1, gray.shape[1])]
    side = max_side if max_side is not None else max(int(max(region.shape) * scale), 1)
    return [replace(d, x0=d.x0 + left, x1=d.x1 + left, y0=d.y0 + top, y1=d.y1 + top) for d in detect_faces(region, side, upsample=upsample)]


def _hog_could_see(face: FaceResult) -> bool:
    """Whether HOG's frontal detector finds a face so turned (HOG_SEES: yaw, roll), so that not
    finding it means something."""
    if face.pose is None:
        return True
    yaw, _, roll = face.pose.yaw_pitch_roll()
    return abs(yaw) <= HOG_SEES[0] and abs(roll) <= HOG_SEES[1]


def _confirms(detection: Detection, face: FaceResult) -> bool:
    """Whether HOG's `detection` is the face whose landmarks are `face`'s: about its size (a HOG
    box is 0.85-1.25x the annotated landmarks' span on the val faces) and centred in it."""
    side, centre = _face_side(face), face.landmarks.mean(axis=0)
    d_side = _box_side(detection)
    return (CONFIRM_SIZE[0] * side <= d_side <= CONFIRM_SIZE[1] * side
            and np.hypot((detection.x0 + detection.x1) / 2 - centre[0], (detection.y0 + detection.y1) / 2 - centre[1]) <= 0.5 * side)


def _box_choice(faces: list[FaceResult], box: Detection) -> FaceResult:
    """Of a caller box's candidate faces, the one nearest its centre among those that fit as a
    face (FACE_MIN_QUALITY; a box is centred on the face it means), else the best fitting."""
    fitting = [f for f in faces if f.quality >= FACE_MIN_QUALITY]
    if fitting:
        return min(fitting, key=lambda f: _off_centre(f.landmarks.mean(axis=0), box))
    return max(faces, key=lambda f: f.quality)


def _agree(used: Roi, wanted: Roi) -> bool:
    """Whether the crop a face was run in is near enough the one its landmarks give (``_settle``)."""
    ratio = max(used.size, wanted.size) / max(min(used.size, wanted.size), 1e-6)
    turn = abs((used.angle - wanted.angle + math.pi) % (2 * math.pi) - math.pi)
    return (ratio <= SETTLE_SIZE_RATIO and np.hypot(used.cx - wanted.cx, used.cy - wanted.cy) <= SETTLE_SHIFT * used.size
            and turn <= SETTLE_ANGLE)


def _seconds(timestamp) -> float:
    """A frame's timestamp as seconds; InputError (one line) for what is not a finite number (a NaN
    made every later frame's points NaN: user test 15)."""
    try:
        seconds = float(timestamp)
    except (TypeError, ValueError):
        raise InputError(f"timestamp must be a number of seconds, got {timestamp!r}") from None
    if not math.isfinite(seconds):
        raise InputError(f"timestamp must be a finite number of seconds, got {timestamp!r}")
    return seconds


def _run_again(used: Roi, wanted: Roi, points: np.ndarray, shape) -> bool:
    """Whether ``_settle`` runs a face again from `wanted`, the crop its (68,2) landmarks `points`
    give, after running it in `used` (in a picture of `shape`)."""
    if _agree(used, wanted):
        return False
    cut = 1.0 - np.mean(_in_picture(points, shape))
    return cut <= SETTLE_CUT or outside_share(wanted, shape) <= outside_share(used, shape) + SETTLE_OUTSIDE


def _in_picture(points: np.ndarray, shape) -> np.ndarray:
    """(N,) whether each of (N,2) points lies in a picture of `shape` (H, W, ...); NaN does not."""
    h, w = shape[:2]
    return (points >= -0.5).all(axis=1) & (points[:, 0] < w - 0.5) & (points[:, 1] < h - 0.5)


def _offset(det: Detection, roi: Roi) -> float:
    """How far the crop a detection gives is from `roi`, in ROI sizes (comparing like with like)."""
    crop = det.roi()
    return max(abs(crop.cx - roi.cx), abs(crop.cy - roi.cy)) / roi.size


def _inside(det: Detection, roi: Roi) -> bool:
    """Whether a detection is the face tracked in `roi`.  A detector's: as near as two tracks on
    one face (``_drop_duplicates``); anywhere in the ROI (1.5 face widths) was too far: a second
    face beside a tracked one was taken for it and never acquired.  The caller's boxes, one per
    face by contract: anywhere in the ROI, so that a face moving fast between two boxes keeps its
    track (``_match_boxes`` then pairs them one to one)."""
    return _offset(det, roi) < (0.5 if det.detector == GIVEN else DUPLICATE_DISTANCE)


def _match_boxes(boxes: list[Detection], rois: list[Roi]) -> dict[int, int]:
    """{track index: box index}: each tracked face (its `rois`) continues with at most one of the
    caller's boxes, and each box continues at most one face, the nearest pairs first.  Each track
    used to take the first box near it: two faces overlapping took the same box, and the other
    box was dropped (user test: one face in 11 of 60 frames for two boxes)."""
    pairs = sorted((_offset(b, roi), i, j) for i, roi in enumerate(rois) for j, b in enumerate(boxes) if _inside(b, roi))
    matched: dict[int, int] = {}
    for _, i, j in pairs:
        if i not in matched and j not in matched.values():
            matched[i] = j
    return matched


def _pca_confidence(fit, dense: StageLandmarks) -> np.ndarray:
    """Points the robust fit kept keep their DenseReg confidence (at least FILLED_CONFIDENCE);
    points it filled in or rejected are the shape model's guesses: FILLED_CONFIDENCE."""
    c = np.where(fit.weights > 0, dense.confidence, 0.0)
    return np.clip(np.maximum(c, FILLED_CONFIDENCE), 0.0, 1.0)
