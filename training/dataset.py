"""Training samples for the DenseReg network: face-centred crops with augmentation.

Each annotated face is cached once around its landmark ROI (``tracker.crop.roi_from_landmarks``,
CACHE_FACTOR times larger, at CACHE_SIZE px): image, uv, depth, face mask and ignore mask.  A
training sample then only warps the cache with a jittered ROI (scale, shift, rotation up to
±30°, horizontal flip with u_h -> 1-u_h), which is what the tracker's own ROI errors look like,
and adds colour, blur, noise and synthetic occluders.  Occluders keep the true UV labels: the
network learns to see through a hand or hair, as DenseReg does, so landmarks survive occlusion.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from tracker.crop import Roi, crop_matrix, roi_from_landmarks
from tracker.errors import MissingInputError, UsageError
from tracker.fileio import atomic_save_npz, read_image
from tracker.pts import pts_beside, read_pts

CACHE_SIZE = 288
CACHE_FACTOR = 2.2


@dataclass(frozen=True)
class FaceCache:
    """images (N,C,C,3) uint8 BGR; uv (N,2,C,C) float16 (NaN off the face); depth (N,C,C)
    float16; flags (N,C,C) uint8 (bit 0 = face, bit 1 = ignore); names: the stems."""

    images: np.ndarray
    uv: np.ndarray
    depth: np.ndarray
    flags: np.ndarray
    names: tuple[str, ...]


def cache_roi(roi: Roi) -> Roi:
    return Roi(roi.cx, roi.cy, roi.size * CACHE_FACTOR, roi.angle)


def _cache_one(image: np.ndarray, gt, roi: Roi):
    m = crop_matrix(cache_roi(roi), CACHE_SIZE)
    size = (CACHE_SIZE, CACHE_SIZE)
    # Bilinear, unfiltered: what the shipped networks were trained on (INTER_AREA, asked for here
    # when shrinking until session 28, is bilinear in warpAffine: bit-identical; review 28).  The
    # runtime's crop is pre-blurred when it shrinks over 1.5x (``warp_image``): a retrain with the
    # same filter is untried.
    img = cv2.warpAffine(image, m, size, flags=cv2.INTER_LINEAR)
    near = dict(flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
    uv = np.stack([cv2.warpAffine(gt["uv"][i].astype(np.float32), m, size, borderValue=np.nan, **near) for i in range(2)])
    depth = cv2.warpAffine(gt["depth"].astype(np.float32), m, size, borderValue=np.nan, **near)
    flags = gt["mask"].astype(np.uint8) | (gt["ignore"].astype(np.uint8) << 1)
    flags = cv2.warpAffine(flags, m, size, borderValue=0, **near)
    return img, uv.astype(np.float16), depth.astype(np.float16), flags


# How far (px) a ground truth's landmarks may lie from its .pts file as read now (float32 storage).
GT_POINTS_TOLERANCE = 0.01


def ground_truth_offset(npz: Path, pts: Path) -> np.ndarray | None:
    """The mean (dx, dy) of a ground-truth file's face's landmarks from its ``.pts`` as
    ``read_pts`` reads it now, None where they agree (or there is no .pts to compare): ground truth
    made before session 28's .pts x origin lies +0.5 px in x, and nothing else told it apart
    (review 30)."""
    if not pts.is_file():
        return None
    with np.load(npz) as z:
        points = z["landmarks"][int(z["face_index"])].astype(np.float64)
    d = points - read_pts(pts)
    return d.mean(axis=0) if np.abs(d).max() > GT_POINTS_TOLERANCE else None


def check_ground_truth(npz: Path, pts: Path) -> None:
    """Refuse ground truth whose landmarks are not its .pts file's (``ground_truth_offset``)."""
    if (offset := ground_truth_offset(npz, pts)) is not None:
        raise MissingInputError(f"{npz}: its landmarks lie ({offset[0]:+.2f}, {offset[1]:+.2f}) px from {pts} as read now (made "
                                "with another .pts convention, before session 28, or from another annotation): run "
                                "python -m training.groundtruth again on the same --out (it redoes such files)")


def cache_item(data_root: Path, gt_root: Path, rel: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One face's cache entry (image, uv, depth, flags) from `data_root/rel` and its ground
    truth `gt_root/rel` (.npz of ``training.groundtruth``), checked against its .pts."""
    npz = (gt_root / rel).with_suffix(".npz")
    check_ground_truth(npz, pts_beside(data_root / rel))
    with np.load(npz) as z:
        gt = {k: z[k] for k in ("uv", "depth", "mask", "ignore", "landmarks", "face_index")}
    roi = roi_from_landmarks(gt["landmarks"][int(gt["face_index"])].astype(np.float64))
    return _cache_one(read_image(data_root / rel), gt, roi)


def save_cache(cache: FaceCache, out: Path) -> None:
    # (a unique stand-in: two runs building one cache at once raced on a fixed temporary name; review 30)
    atomic_save_npz(out, compressed=False, images=cache.images, uv=cache.uv, depth=cache.depth, flags=cache.flags,
                    names=np.array(cache.names))


def split_faces(data_root: Path, split: str) -> list[str]:
    """The faces of a split: ``DATA/splits/<split>.txt``, one path relative to DATA a line."""
    listing = data_root / "splits" / f"{split}.txt"
    if not listing.is_file():
        raise MissingInputError(f"{listing}: no {split} split list in the data folder")
    faces = listing.read_text().split()
    if not faces:  # (a TypeError or "need at least one array to stack" after the others were cached; review 30)
        raise MissingInputError(f"{listing}: lists no faces")
    return faces


def check_views_not_val(data_root: Path, views: Path, rels: list[str] | None = None) -> None:
    """Refuse a folder of ``training.profile`` views any of which was rendered from a face of
    `data_root`'s val split (each view's ``.npz`` records its ``source``): trained on, that face's
    validation would no longer be of a face never seen (review 30).  `rels`: the views' images
    (default: the folder's ``splits/train.txt``)."""
    if not (data_root / "splits" / "val.txt").is_file():
        return
    val = set(split_faces(data_root, "val"))
    for rel in rels if rels is not None else split_faces(views, "train"):
        npz = (views / rel).with_suffix(".npz")
        if not npz.is_file():
            continue
        with np.load(npz) as z:
            source = str(z["source"]) if "source" in z.files else None
        if source in val:
            raise UsageError(f"{views}: its view {rel} was rendered from {source}, a face of {data_root / 'splits' / 'val.txt'}: "
                             "profile the training split only (python -m training.profile reads splits/train.txt)")


def cache_path(cache_dir: Path, data_root: Path, gt_root: Path, split: str) -> Path:
    """Where a split's face cache lives: named by a digest of what it is built from (the data
    and ground-truth folders, the split's faces), so that other data or ground truth gets its
    own cache instead of silently reusing one.  A ``training.gpukit`` pack (``pack.json``, no
    split lists) is not cached from: its faces are unpacked under the plain name.  Any other
    folder without its split list is an error: the plain name would take whatever cache of it
    sits in `cache_dir` (a misspelt ``--gt-extra`` silently doubled a training set; review 30)."""
    if (data_root / "pack.json").is_file() and not (data_root / "splits").is_dir():
        return cache_dir / f"densereg_{split}.npz"
    faces = split_faces(data_root, split)
    # the ground truth's times too: ground truth made again in the same folder is other data
    times = [f.stat().st_mtime_ns if f.exists() else 0 for f in ((gt_root / rel).with_suffix(".npz") for rel in faces)]
    made_from = [str(data_root.resolve()), str(gt_root.resolve()), faces, max(times, default=0)]
    digest = hashlib.sha1(json.dumps(made_from).encode()).hexdigest()[:10]
    return cache_dir / f"densereg_{split}_{digest}.npz"


def build_cache(data_root: Path, gt_root: Path, split: str, out: Path) -> FaceCache:
    """Cache every face of a split (once; reused from `out` afterwards, see ``cache_path``)."""
    if out.exists():
        with np.load(out) as z:
            return FaceCache(z["images"], z["uv"], z["depth"], z["flags"], tuple(z["names"]))
    rels = split_faces(data_root, split)
    # checked before caching any: a missing one would otherwise stop the run after minutes of work
    missing = [rel for rel in rels if not (gt_root / rel).with_suffix(".npz").exists()]
    if missing:
        raise MissingInputError(f"{(gt_root / missing[0]).with_suffix('.npz')}: no ground truth for {len(missing)} of the "
                                f"{len(rels)} {split} faces (run python -m training.groundtruth --images {data_root} --out {gt_root})")
    items = [cache_item(data_root, gt_root, rel) for rel in tqdm(rels, desc=f"caching {split}", unit="face")]
    cache = FaceCache(*(np.stack(a) for a in zip(*items)), tuple(rels))
    save_cache(cache, out)
    return cache


def concat_caches(caches: list[FaceCache]) -> FaceCache:
    """One cache of several (e.g. the real faces and their profiled views, training.profile)."""
    if len(caches) == 1:
        return caches[0]
    return FaceCache(*(np.concatenate([getattr(c, f) for c in caches]) for f in ("images", "uv", "depth", "flags")),
                     tuple(n for c in caches for n in c.names))


@dataclass(frozen=True)
class Augment:
    scale_sigma: float = 0.12
    shift_sigma: float = 0.08
    rotation_sigma_deg: float = 12.0
    rotation_max_deg: float = 30.0
    flip: bool = True
    photometric: bool = True
    occluders: float = 0.3  # probability of a synthetic occluder
    # When set, the zoom is drawn from these factors instead (the paper's {0.5, ..., 1.5}:
    # zoom 2 shows the face twice as large); the cache holds context down to 1/CACHE_FACTOR.
    zoom_choices: tuple[float, ...] = ()


NO_AUGMENT = Augment(0.0, 0.0, 0.0, 0.0, False, False, 0.0)
PAPER_AUGMENT = Augment(scale_sigma=0.0, zoom_choices=(0.5, 0.75, 1.0, 1.25, 1.5))


@dataclass(frozen=True)
class Sample:
    """One crop: image (S,S,3) uint8 BGR, uv (2,S,S) float32 NaN off the face, depth (S,S),
    valid (S,S) bool (False on ignore pixels)."""

    image: np.ndarray
    uv: np.ndarray
    depth: np.ndarray
    valid: np.ndarray


def sample_crop(cache: FaceCache, i: int, size: int, aug: Augment, rng: np.random.Generator) -> Sample:
    c = (CACHE_SIZE - 1) / 2
    base = CACHE_SIZE / CACHE_FACTOR
    scale = float(np.exp(np.clip(rng.normal() * aug.scale_sigma, -0.3, 0.3))) if aug.scale_sigma else 1.0
    if aug.zoom_choices:
        scale = 1.0 / float(rng.choice(aug.zoom_choices))
    shift = rng.normal(size=2) * aug.shift_sigma * base if aug.shift_sigma else np.zeros(2)
    rot = np.radians(np.clip(rng.normal() * aug.rotation_sigma_deg, -aug.rotation_max_deg, aug.rotation_max_deg)) if aug.rotation_sigma_deg else 0.0
    roi = Roi(c + shift[0], c + shift[1], base * scale, rot)
    m = crop_matrix(roi, size)
    dsize = (size, size)
    near = dict(flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
    image = cv2.warpAffine(cache.images[i], m, dsize, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    uv = np.stack([cv2.warpAffine(cache.uv[i, k].astype(np.float32), m, dsize, borderValue=np.nan, **near) for k in range(2)])
    depth = cv2.warpAffine(cache.depth[i].astype(np.float32), m, dsize, borderValue=np.nan, **near)
    flags = cv2.warpAffine(cache.flags[i], m, dsize, borderValue=0, **near)
    face = (flags & 1).astype(bool) & np.isfinite(uv).all(axis=0)
    uv[:, ~face] = np.nan
    valid = (flags & 2) == 0
    if aug.flip and rng.random() < 0.5:
        image, uv, depth, valid = hflip_maps(image, uv, depth, valid)
    if aug.photometric:
        image = photometric(image, rng)
    if aug.occluders and rng.random() < aug.occluders:
        image = occlude(image, rng)
    return Sample(np.ascontiguousarray(image), uv, np.ascontiguousarray(depth), np.ascontiguousarray(valid))


def val_crop_matrix(landmarks: np.ndarray, size: int = 128) -> np.ndarray:
    """(2,3) affine from the picture to a face's crop as ``sample_crop`` cuts it without
    augmentation (the validation crops): the cache's crop around the (68,2) landmarks, then its
    middle."""
    c = (CACHE_SIZE - 1) / 2
    inner = np.vstack([crop_matrix(Roi(c, c, CACHE_SIZE / CACHE_FACTOR, 0.0), size), [0, 0, 1]])
    outer = np.vstack([crop_matrix(cache_roi(roi_from_landmarks(landmarks)), CACHE_SIZE), [0, 0, 1]])
    return (inner @ outer)[:2]


def hflip_maps(image: np.ndarray, uv: np.ndarray, depth: np.ndarray, valid: np.ndarray):
    """Mirror a crop and its maps: the template is symmetric about u_h = 1/2 (to ~0.001 in u_h),
    so u_h -> 1 - u_h.

    No part labels are flipped here: the networks' part labels are read off the UV through the
    template's part map (``tracker.parts.lookup_parts``), which is mirror-symmetric
    (``training.template.rasterise_parts``), so the left/right swap follows from mirroring u_h.
    The refiner flips its points itself (``training.mdm.sample``)."""
    uv = uv[:, :, ::-1].copy()
    uv[0] = 1.0 - uv[0]
    return image[:, ::-1], uv, depth[:, ::-1], valid[:, ::-1]


def photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = image.astype(np.float32)
    x = x * rng.uniform(0.6, 1.4) + rng.uniform(-30, 30)  # contrast, brightness
    x = x * rng.uniform(0.85, 1.15, size=3)  # white balance
    if rng.random() < 0.15:
        x = np.repeat(x.mean(axis=2, keepdims=True), 3, axis=2)
    if rng.random() < 0.3:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.5, 2.0))
    if rng.random() < 0.3:
        x = x + rng.normal(size=x.shape).astype(np.float32) * rng.uniform(2, 10)
    return np.clip(x, 0, 255).astype(np.uint8)


def occlude(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random polygon of random colour/texture over part of the face (hand, hair, mic...);
    `image` (S,S,3) or (S,S) grey, 0..255, any dtype."""
    s = image.shape[0]
    centre = rng.uniform(0.25 * s, 0.75 * s, size=2)
    radius = rng.uniform(0.08, 0.25) * s
    angles = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(3, 8)))
    pts = centre + radius * rng.uniform(0.5, 1.0, (len(angles), 1)) * np.stack([np.cos(angles), np.sin(angles)], 1)
    out = image.copy()
    if rng.random() < 0.5:
        fill = np.full_like(image, rng.integers(0, 255, image.shape[2:], dtype=np.uint8))
    else:
        fill = cv2.GaussianBlur(rng.integers(0, 255, image.shape, dtype=np.uint8), (0, 0), rng.uniform(1, 4))
    mask = np.zeros((s, s), np.uint8)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    out[mask > 0] = fill[mask > 0]
    return out
