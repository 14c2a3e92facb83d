"""MDM-style recurrent landmark refiner (Trigeorgis et al., CVPR 2016), sized for CPU.

At each of ``steps`` iterations: a patch around every current landmark is sampled from the
face crop (``grid_sample``, so the whole loop is one ONNX graph), a small CNN shared by all
landmarks turns each patch into a feature, the 68 features are concatenated into one vector,
a GRU carries the memory across steps ("mnemonic"), and a linear layer outputs the shape
update.  The loss is the outer-eye-corner-normalised point error summed over the steps.

Everything happens in a canonical frame: the image is warped with the similarity that maps
the *initial* shape onto the PCA mean shape (``tracker.refiner.canonical_transform``), so the
refiner never sees the initial error's global pose; that is also what the runtime does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tracker.metrics import auc, eye_distance
from tracker.refiner import COARSE, FINE, CanonicalFrame, normalise_crop
from tracker.shape_model import similarity_align
from training.dataset import check_views_not_val, occlude, split_faces


@dataclass(frozen=True)
class MDMConfig:
    """`encoder`: "pooled" (the coarse stage: patch features pooled to 2x2) or "positional"
    (the fine stage: 6x6 feature maps kept whole, so the features say where inside the patch an
    edge lies, then a per-point projection to `point_features`)."""

    steps: int = 4
    patch: int = COARSE.patch
    crop: int = COARSE.crop
    channels: tuple[int, int, int] = (16, 32, 8)
    features: int = 256
    hidden: int = 256
    n_points: int = 68
    encoder: str = "pooled"
    point_features: int = 32


FINE_CONFIG = MDMConfig(steps=3, patch=FINE.patch, crop=FINE.crop, channels=(8, 16, 8), encoder="positional")


def sample_patches(image: torch.Tensor, points: torch.Tensor, patch: int) -> torch.Tensor:
    """(N,1,S,S) image, (N,L,2) pixel coordinates -> (N*L,1,P,P) bilinear patches centred on
    the points, zeros outside the image: exactly ``F.grid_sample(..., align_corners=False)``.

    Every patch is an axis-aligned translate (the canonical crop has already removed rotation
    and scale), so it is one integer window gathered from a zero-padded image plus a 2-tap blend
    by the point's fractional position: in ONNX Runtime that costs a fraction of GridSample and
    of the broadcast that builds its sampling grid (together 60% of the first refiner's time).
    """
    # Sizes as Python ints and -1 for the batch: traced into the ONNX graph as constants, so
    # ONNX Runtime runs no Shape/Gather/Concat chains to rebuild them at every step.
    s, k = int(image.shape[-1]), int(points.shape[1])
    pad = patch + 1  # a window clamped to the border then holds only padding, as grid_sample's zeros
    w = s + 2 * pad
    padded = F.pad(image, (pad, pad, pad, pad)).reshape(-1, w * w)
    start = (points - ((patch - 1) / 2 - pad)).clamp(0, w - patch - 1)  # first sample, padded pixels
    origin = torch.floor(start)
    frac = start - origin  # (N,L,2), same for every sample of a patch
    # The flat index in integers: up to ~44k, where float16 (TensorRT's FP16 mode may pick it for
    # float layers) spaces integers 32 apart and moved 88-95% of the patches (review 27).
    corner = origin.long()
    base = corner[..., 1:] * w + corner[..., :1]  # (N,L,1) flat index
    side = torch.arange(patch + 1, device=image.device)
    window = (side[:, None] * w + side[None, :]).reshape(-1)  # ((P+1)^2,) offsets in the flat image
    win = torch.gather(padded, 1, (base + window).reshape(-1, k * (patch + 1) ** 2)).reshape(-1, k, patch + 1, patch + 1)
    fx, fy = frac[..., 0, None, None], frac[..., 1, None, None]
    rows = win[:, :, :-1] + fy * (win[:, :, 1:] - win[:, :, :-1])
    out = rows[..., :-1] + fx * (rows[..., 1:] - rows[..., :-1])
    return out.reshape(-1, 1, patch, patch)


class PatchEncoder(nn.Module):
    """(B,1,P,P) -> (B, c3*4): a strided conv and a pool take 16x16 to 4x4 at once (CPU-cheap),
    two convs, then a 2x2 average pool to 2x2 (keeps coarse position inside the patch)."""

    def __init__(self, channels: tuple[int, int, int]):
        super().__init__()
        c1, c2, c3 = channels
        self.net = nn.Sequential(
            nn.Conv2d(1, c1, 3, stride=2, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(inplace=True), nn.AvgPool2d(2),  # 4x4 -> 2x2 (a fixed-size pool: exportable)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class PositionalEncoder(nn.Module):
    """(B,1,P,P) -> (B, point_features): two strided convs take P to P/4 (24 -> 6), a third
    conv, then a linear layer over the whole map (shared by all landmarks) keeps the position
    of what it sees instead of pooling it away."""

    def __init__(self, channels: tuple[int, int, int], patch: int, out: int):
        super().__init__()
        c1, c2, c3 = channels
        side = -(-patch // 4)
        self.net = nn.Sequential(
            nn.Conv2d(1, c1, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(inplace=True),
            nn.Flatten(), nn.Linear(c3 * side * side, out), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MDM(nn.Module):
    def __init__(self, config: MDMConfig = MDMConfig()):
        super().__init__()
        self.config = config
        if config.encoder == "positional":
            feat = config.point_features
            self.encoder = PositionalEncoder(config.channels, config.patch, feat)
        else:
            feat = config.channels[2] * 4
            self.encoder = PatchEncoder(config.channels)
        # Project the concatenated patch features first: at batch 1 the cost is reading the
        # weights, and a GRU straight on 68*feat inputs would read 3x as many per step.
        self.project = nn.Sequential(nn.Linear(feat * config.n_points, config.features), nn.ReLU(inplace=True))
        self.point_features = feat
        self.gru = nn.GRU(config.features, config.hidden)
        self.head = nn.Linear(config.hidden, 2 * config.n_points)
        nn.init.zeros_(self.head.weight)  # start as the identity refinement
        nn.init.zeros_(self.head.bias)

    def patches(self, image: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        return sample_patches(image, points, self.config.patch)

    def forward(self, image: torch.Tensor, init: torch.Tensor) -> torch.Tensor:
        """image: (N,1,S,S) normalised crop; init: (N,L,2) -> (N,steps,L,2) shape per step."""
        k = self.config.n_points
        points, hidden, out = init, None, []
        for _ in range(self.config.steps):
            feats = self.project(self.encoder(self.patches(image, points)).reshape(-1, k * self.point_features))
            # a one-step nn.GRU (not GRUCell): one ONNX GRU node instead of ~20 elementwise ones
            state, hidden = self.gru(feats[None], hidden)
            points = points + self.head(state[0]).reshape(-1, k, 2)
            out.append(points)
        return torch.stack(out, dim=1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints before the one-step nn.GRU name the GRUCell's weights without "_l0".
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            old = f"{prefix}gru.{name}"
            if old in state_dict:
                state_dict[f"{old}_l0"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def mdm_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over steps of the mean point error normalised by the outer-eye-corner distance."""
    iod = torch.linalg.norm(target[:, 36] - target[:, 45], dim=-1).clamp_min(1.0)  # (N,)
    err = torch.linalg.norm(pred - target[:, None], dim=-1).mean(-1)  # (N,steps)
    return (err / iod[:, None]).mean(0).sum()



# --- data -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CacheGeometry:
    """How training faces are cached: aligned by their truth at `zoom` x the refiner frame's
    resolution, `margin` extra pixels each side.  The coarse stage caches at 2x (it samples
    perturbed frames that differ by ~5% in scale); the fine stage caches at its own resolution,
    so a training crop is warped from the photo the way the runtime warps it."""

    zoom: float
    margin: int

    def reference(self, frame: CanonicalFrame, model) -> np.ndarray:
        return frame.reference(model) * self.zoom + self.margin

    def size(self, frame: CanonicalFrame) -> int:
        return int(frame.crop * self.zoom) + 2 * self.margin


CACHE = {COARSE: CacheGeometry(zoom=2.0, margin=0), FINE: CacheGeometry(zoom=1.0, margin=16)}


# The shape model's prior where training expresses a clean shape (an annotation, or an
# initialisation being measured) in the model: a faithful fit, the prior every shipped refiner
# was trained with.  The tracker's fit of noisy DenseReg landmarks uses a stronger one
# (``tracker.shape_model.NOISE_VARIANCE``).
CLEAN_SHAPE_PRIOR = 1e-3


@dataclass(frozen=True)
class Perturbation:
    """How initial shapes are drawn around the truth (units: fraction of the outer-eye-corner
    distance, degrees, relative scale).  ``fit_perturbation`` estimates them from real
    DenseReg+PCA initialisations so that training sees the errors the tracker makes."""

    # Measured with fit_perturbation on the DenseReg+PCA output (network at step 841) for every
    # 10th training face: scale 0.048, rotation 3.2 deg, translation 0.045, shape 1.10.  The
    # defaults cover that with some margin; per-point noise stays small because the PCA output
    # is itself a model shape (its residual is counted in `shape`).
    scale: float = 0.05
    rotation_deg: float = 5.0
    translation: float = 0.05
    shape: float = 1.0  # multiplies sqrt(eigenvalue) of each PCA coefficient
    point: float = 0.02


# The fine stage starts from the coarse stage's output: on the 80 val faces the shipped
# tracker's NME is 3.75% median.  These draw initialisations of 5.2% median, 6.6% p90 NME
# (the similarity terms from fit_perturbation on that output: scale 0.017, rotation 1.5 deg,
# translation 0.012; its shape and point terms, 0.75 and 0.035, overstate the error: drawn
# together they give 8.4% median).
FINE_PERTURBATION = Perturbation(scale=0.02, rotation_deg=2.0, translation=0.015, shape=0.4, point=0.02)


# A single refiner stage starts from the DenseReg+PCA output itself: fit_perturbation on the
# 80 val faces' PCA output of the shipped tracker gives scale 0.042, rotation 2.3 deg, shape
# 0.85, point 0.044 (its translation, 0.22, is the RMS of a few failures; the median face is
# off by ~0.03).  The first stage's Perturbation() (init 11.8% mean NME) trained a single
# stage that was worse on val than one never retrained (AUC 0.506 vs 0.524).
SINGLE_PERTURBATION = Perturbation(scale=0.035, rotation_deg=3.0, translation=0.03, shape=0.7, point=0.025)


def fit_perturbation(inits: np.ndarray, truths: np.ndarray, model) -> Perturbation:
    """Error statistics of real initialisations (N,68,2) against the truth (N,68,2)."""
    from tracker.shape_model import fit_shape, normalise

    scales, rots, trans, coeffs, point = [], [], [], [], []
    for init, gt in zip(inits, truths):
        iod = eye_distance(gt)
        s, R, t = similarity_align(gt, init)
        scales.append(np.log(s))
        rots.append(np.degrees(np.arctan2(R[1, 0], R[0, 0])))
        trans.append(np.linalg.norm(init.mean(0) - gt.mean(0)) / iod)
        fit_init = fit_shape(model, normalise(init), np.ones(68), prior=CLEAN_SHAPE_PRIOR)
        fit_gt = fit_shape(model, normalise(gt), np.ones(68), prior=CLEAN_SHAPE_PRIOR)
        if fit_init is not None and fit_gt is not None:
            coeffs.append((fit_init.coeffs - fit_gt.coeffs) / np.sqrt(model.eigenvalues))
            aligned = s * gt @ R.T + (init.mean(0) - s * gt.mean(0) @ R.T)
            point.append(np.linalg.norm(init - aligned, axis=1).mean() / iod)
    return Perturbation(
        scale=float(np.std(scales)),
        rotation_deg=float(np.std(rots)),
        translation=float(np.sqrt(np.mean(np.square(trans)) / 2)),
        shape=float(np.std(coeffs)) if coeffs else Perturbation.shape,
        point=float(np.median(point)) if point else Perturbation.point,
    )


def perturb(gt: np.ndarray, model, p: Perturbation, rng: np.random.Generator) -> np.ndarray:
    """A plausible initial shape around the (68,2) truth."""
    from tracker.shape_model import fit_shape

    iod = eye_distance(gt)
    fit = fit_shape(model, gt, np.ones(68), iterations=2, prior=CLEAN_SHAPE_PRIOR)
    coeffs = fit.coeffs + rng.normal(size=fit.coeffs.shape) * p.shape * np.sqrt(model.eigenvalues)
    s, R, t = similarity_align(model.instance(fit.coeffs), fit.points)
    shape = s * model.instance(coeffs) @ R.T + t
    c = shape.mean(0)
    th = np.radians(rng.normal() * p.rotation_deg)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    shape = (shape - c) @ rot.T * np.exp(rng.normal() * p.scale) + c
    shape += rng.normal(size=2) * p.translation * iod
    return shape + rng.normal(size=shape.shape) * p.point * iod


def cache_face(gray: np.ndarray, gt: np.ndarray, reference: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Face region aligned by its truth onto `reference` in a `size` crop (``CacheGeometry``),
    and that alignment, (2,3) image -> cache coordinates."""
    from tracker.refiner import canonical_transform

    m = canonical_transform(gt, reference)
    # bilinear (warpAffine's INTER_AREA, asked for when shrinking until session 28, is the same: review 28)
    crop = cv2.warpAffine(gray, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop, m


def sample(cached: np.ndarray, gt: np.ndarray, model, reference: np.ndarray, p: Perturbation, rng, flip: bool,
           start: np.ndarray | None = None, gain: float = 1.0, *, size: int, occluder: np.random.Generator | None = None):
    """(crop (S,S) float32 normalised, init (68,2), target (68,2)) in the canonical frame of
    `reference` and `size`.  The initial shape is drawn by `p` around the truth, or, given a
    `start` (a real initialisation in cache coordinates), is ``gt + gain * (start - gt)``: the
    tracker's own error, scaled.  With an `occluder` generator, a synthetic occluder
    (``training.dataset.occlude``) is drawn over the crop; the target stays the true shape, so
    the refiner learns to hold points it cannot see instead of following the occluder's edges."""
    from tracker.crop import transform_points
    from tracker.refiner import canonical_crop, canonical_transform
    from training.template import FLIP_PERMUTATION

    if flip:
        cached = cached[:, ::-1]
        gt, start = (None if q is None else q[FLIP_PERMUTATION] * [-1, 1] + [cached.shape[1] - 1, 0] for q in (gt, start))
    init = perturb(gt, model, p, rng) if start is None else gt + gain * (start - gt)
    m = canonical_transform(init, reference)
    crop = canonical_crop(np.ascontiguousarray(cached), m, size).astype(np.float32)
    if occluder is not None:
        crop = occlude(crop, occluder)
    if rng is not None:
        # Clipped as a camera saturates: unclipped, the gain and offset were exactly undone by
        # normalise_crop (differences ~2e-7; review 30).
        crop = np.clip(crop * rng.uniform(0.6, 1.4) + rng.uniform(-40, 40), 0, 255)
        if rng.random() < 0.3:
            crop = cv2.GaussianBlur(crop, (0, 0), rng.uniform(0.5, 1.5))
        crop = crop + rng.normal(size=crop.shape).astype(np.float32) * rng.uniform(0, 6)
    return normalise_crop(crop), transform_points(m, init), transform_points(m, gt)


# --- training ---------------------------------------------------------------------------------


def build_cache(data_root, split: str, reference: np.ndarray, size: int, starts: dict[str, np.ndarray] | None = None):
    """(crops (N,S2,S2) uint8, truths (N,68,2), starts (N,68,2)) for every face of a split, in
    cache coords (`reference`, `size`: ``CacheGeometry``); `starts` (``tracker_starts``) are
    mapped along, NaN where a face has none."""
    from tracker.crop import transform_points
    from tracker.fileio import read_image
    from tracker.pts import pts_beside, read_pts

    crops, truths, moved = [], [], []
    for rel in split_faces(Path(data_root), split):
        image = read_image(data_root / rel)
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        gt = read_pts(pts_beside(data_root / rel), expected=68)
        crop, m = cache_face(gray, gt, reference, size)
        crops.append(crop)
        truths.append(transform_points(m, gt))
        moved.append(transform_points(m, (starts or {}).get(rel, np.full((68, 2), np.nan))))
    return np.stack(crops), np.stack(truths), np.stack(moved)


# Tracker starts are scaled by a gain drawn from this range, so that training sees errors like
# the tracker's but not only those exact ones.  The first stage's output is hardly better on the
# faces the networks were trained on than on new ones (detector boxes, median / mean NME:
# 3.45% / 3.72% on 1,790 train faces, 3.56% / 3.76% on the 80 val faces).
START_GAIN = (0.8, 1.3)


def tracker_starts(data_root, split: str, refiners: tuple[str, ...], cache_dir=None, assets=None) -> dict[str, np.ndarray]:
    """What the tracker (its models from `assets`, default the shipped ones) hands the stage
    after `refiners` (``()``: the DenseReg+PCA output), for every face of a split, run as a
    user runs it on the picture (detector box and all): {relative path: (68,2) image points};
    a face the detector missed (no prediction within 25% NME) is left out.  Cached in
    `cache_dir` by data folder, split and its faces, configuration and models."""
    import hashlib
    import json

    from tracker import Tracker, TrackerConfig
    from tracker.assets import read_manifest
    from tracker.metrics import nme
    from tracker.pts import pts_beside, read_pts
    from tracker.sources import ImageSource, track_stream

    rels = split_faces(Path(data_root), split)
    assets = None if assets is None else Path(assets)
    # Without test-time flipping (video's setting; pictures flip, which moves the starts a little).
    config = TrackerConfig(mode="image", threads=1, refine=bool(refiners), refiners=refiners or ("mdm_refiner.onnx",), assets=assets,
                           refine_flip=False)
    manifest = read_manifest() if assets is None else read_manifest(assets / "MANIFEST.json")
    # the data folder and its faces too: another dataset's starts, under the same relative names, are not these
    made_from = [str(Path(data_root).resolve()), split, rels, str(config), manifest]
    key = hashlib.sha256(json.dumps(made_from, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = None if cache_dir is None else cache_dir / f"starts_{split}_{key}.npz"
    if path is not None and path.exists():
        with np.load(path) as z:
            return {rel: z[rel] for rel in z.files}
    tracker = Tracker(config)
    starts = {}
    for rel, tracked in zip(rels, track_stream(tracker, ImageSource([data_root / r for r in rels], split))):
        gt = read_pts(pts_beside(tracked.path), expected=68)
        errors = [nme(f.landmarks, gt) for f in tracked.result.faces]
        if errors and min(errors) < 0.25:
            starts[rel] = tracked.result.faces[int(np.argmin(errors))].landmarks
    tracker.close()
    if path is not None:
        import io

        from tracker.fileio import atomic_write_bytes

        buffer = io.BytesIO()
        np.savez(buffer, **starts)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue())
    return starts


def make_batch(crops, truths, model, reference, p: Perturbation, rng, batch: int, size: int, starts=None, start_share: float = 0.0,
               occluders: float = 0.0):
    """`start_share` of the faces that have a tracker start (``starts``, NaN where none) begin
    from it, scaled by a gain in ``START_GAIN``; the rest from `p`.  `occluders`: the share of
    crops with a synthetic occluder drawn over them."""
    idx = rng.integers(0, len(crops), batch)
    items = []
    for i in idx:
        real = starts is not None and not np.isnan(starts[i]).any() and rng.random() < start_share
        items.append(sample(crops[i], truths[i], model, reference, p, rng, flip=bool(rng.random() < 0.5),
                            start=starts[i] if real else None, gain=rng.uniform(*START_GAIN) if real else 1.0, size=size,
                            occluder=rng if occluders and rng.random() < occluders else None))
    image = torch.from_numpy(np.stack([it[0] for it in items])[:, None])
    init = torch.from_numpy(np.stack([it[1] for it in items]).astype(np.float32))
    target = torch.from_numpy(np.stack([it[2] for it in items]).astype(np.float32))
    return image, init, target


def fixed_validation(crops, truths, model, reference, p: Perturbation, size: int, seed: int = 1234, starts=None,
                     occluded: bool = False):
    """The same initialisations at every evaluation, without photometric noise: the tracker's
    own starts where given (``starts``, NaN where none), else drawn by `p` with a fixed seed.
    `occluded`: every crop with a synthetic occluder, the same ones at every evaluation."""
    rng = np.random.default_rng(seed)
    items = []
    for i, (crop, gt) in enumerate(zip(crops, truths)):
        drawn = perturb(gt, model, p, rng)  # drawn for every face, so a face's draw does not depend on the others' starts
        real = starts is not None and not np.isnan(starts[i]).any()
        items.append(sample(crop, gt, model, reference, p, None, flip=False, start=starts[i] if real else drawn, size=size,
                            occluder=np.random.default_rng([seed, i]) if occluded else None))
    return (
        torch.from_numpy(np.stack([it[0] for it in items])[:, None]),
        torch.from_numpy(np.stack([it[1] for it in items]).astype(np.float32)),
        torch.from_numpy(np.stack([it[2] for it in items]).astype(np.float32)),
    )


def evaluate(net: MDM, val, prefix: str = "val") -> dict[str, float]:
    image, init, target = val
    net.eval()
    with torch.no_grad():
        pred = net(image, init)
    net.train()
    iod = torch.linalg.norm(target[:, 36] - target[:, 45], dim=-1)
    e_init = (torch.linalg.norm(init - target, dim=-1).mean(-1) / iod).numpy()
    e_final = (torch.linalg.norm(pred[:, -1] - target, dim=-1).mean(-1) / iod).numpy()
    return {f"{prefix}_nme_init": float(e_init.mean()), f"{prefix}_nme_refined": float(e_final.mean()),
            f"{prefix}_auc08_refined": float(auc(e_final))}


class MDMTask:
    """A refiner stage's training task for ``training.train``: initialisations around the truth
    (``Perturbation``, and with `starts_after` the tracker's own, see ``tracker_starts``), the
    summed-over-steps normalised error, val NME/AUC.

    `starts_after`: the refiner stages that run before this one in the tracker (``()``: it
    starts from the DenseReg+PCA output); then `start_share` of the training faces start where
    the tracker (models from `assets`, default the shipped ones) leaves them, and validation runs
    from the tracker's val starts, so its numbers are this stage's inside the tracker.

    `occluders`: the share of training crops with a synthetic occluder (``sample``); with it,
    validation also reports the same faces each under an occluder (``val_occluded_*``), from the
    same starts (the tracker's on the clean picture: it measures holding points the occluder
    hides, not the earlier stages under occlusion, which ``benchmarks.robustness`` measures); the
    best checkpoint is still chosen on the clean faces."""

    val_key = "val_nme_refined"

    def __init__(self, data_root, batch_size: int, perturbation: Perturbation = Perturbation(),
                 config: MDMConfig = MDMConfig(), frame: CanonicalFrame = COARSE, extra_train: tuple = (),
                 starts_after: tuple[str, ...] | None = None, start_share: float = 0.5, cache_dir=None, assets=None,
                 occluders: float = 0.0):
        from tracker.shape_model import load_shape_model

        assert (config.crop, config.patch) == (frame.crop, frame.patch), "network and frame disagree"
        self.net = MDM(config)
        self.batch_size = batch_size
        self.perturbation = perturbation
        self.start_share = start_share if starts_after is not None else 0.0
        self.occluders = occluders
        self.size = frame.crop
        self.model = load_shape_model()
        self.reference = frame.reference(self.model)
        cache = CACHE[frame]
        cached = (cache.reference(frame, self.model), cache.size(frame))

        def starts(split):
            return None if starts_after is None else tracker_starts(data_root, split, starts_after, cache_dir, assets)

        # extra_train: folders laid out like data_root (e.g. training.profile's views): more train
        # faces (no tracker starts there: they draw theirs from the perturbation).
        for views in extra_train:
            check_views_not_val(Path(data_root), Path(views))
        parts = [build_cache(root, "train", *cached, starts("train") if root == data_root else None) for root in (data_root, *extra_train)]
        self.crops, self.truths, self.starts = (np.concatenate(arrays) for arrays in zip(*parts))
        val_crops, val_truths, val_starts = build_cache(data_root, "val", *cached, starts("val"))
        val = (val_crops, val_truths, self.model, self.reference, perturbation)
        self.val = fixed_validation(*val, size=self.size, starts=val_starts)
        self.val_occluded = fixed_validation(*val, size=self.size, starts=val_starts, occluded=True) if occluders else None

    def batch(self, rng: np.random.Generator):
        return make_batch(self.crops, self.truths, self.model, self.reference, self.perturbation, rng, self.batch_size, self.size,
                          self.starts, self.start_share, self.occluders)

    def loss(self, batch) -> dict[str, torch.Tensor]:
        image, init, target = batch
        return {"total": mdm_loss(self.net(image, init), target)}

    def evaluate(self) -> dict[str, float]:
        metrics = evaluate(self.net, self.val)
        if self.val_occluded is not None:
            metrics |= evaluate(self.net, self.val_occluded, "val_occluded")
        return metrics
