"""Train on a borrowed GPU: a self-contained data pack, one time-boxed command, inference speeds.

    python -m training.gpukit pack --out data/gpupack [--faces N] [--max-mib 40] [--jobs 2]
    python -m training.gpukit train --pack data/gpupack --out OUT --minutes 8.5 [--device cuda|cpu]
                                    [--config large] [--refiners mdm,mdm-fine] [--resume-from DIR]
    python -m training.gpukit speed [--device cuda|cpu] [--configs paper,large,realtime] [--json FILE]

**pack** holds what CPU training caches, compressed: per face the DenseReg cache entry
(``training.dataset.cache_item``: the colour crop with its augmentation margin, WebP, and its
dense ground truth u, v, depth, face/ignore flags as one lossless 8-bit WebP) and a grayscale
face-aligned crop with the annotated 68 points for the refiners (at the coarse refiner cache's
72 px per unit of the mean shape, or the photo's own resolution where lower).  Profiled views
(``training.profile``: ``<stem>.npz`` with its image beside it) fill the space left, as DenseReg
training faces.  The pack is built in a temporary folder and replaces OUT only when complete
and within ``--max-mib``.

**train** unpacks into the caches the training tasks read (``training.dataset`` FaceCache,
a 300-W-layout folder for the refiners), then trains DenseReg and each refiner named in
``--refiners`` (any task of ``training.train.TASKS``) one after the other with
``training.train.run``: batches from DataLoader workers on all cores, bf16 autocast, the LR
decaying over the time budget, a checkpoint (with val metrics) every minute.  After each
checkpoint a network's run folder is bundled into ``OUT/<network>.tar`` (best.pt, last.pt,
val.jsonl, log.csv, run.json, and at the end the ONNX export), so a run cut short still returns
its weights; ``OUT/metrics.json`` (val metrics, the shipped model's on the same faces, speeds
of training) and ``OUT/gpukit.log`` are rewritten as it goes.  Every returned file stays under
16 MiB (what a device run returns); a file that would not fit is left out and said so.

**speed** times the exported-graph networks (decoding included) in PyTorch, fp16 on CUDA, at
batch 1 and 8, and writes a table and JSON.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import math
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from tracker.assets import ASSETS, sha256
from tracker.errors import InputError, TrackerError, count_of
from tracker.fileio import IMAGE_EXTENSIONS, atomic_write_json, read_image
from tracker.pts import beside, pts_beside, read_pts, write_pts
from training import REPO, worker_pool
from training.dataset import CACHE_FACTOR, CACHE_SIZE, FaceCache, cache_item, check_views_not_val, save_cache
from training.densereg_task import PAPER, DenseOptions
from training.template import DEFAULT_300W

log = logging.getLogger("gpukit")

PACK_VERSION = 1
PACK_FILES = ("pack.json", "faces.zip")
MIB = 1 << 20
RETURN_LIMIT = 16 * MIB - 64 * 1024  # a device run returns files up to 16 MiB; room for tar headers
RETURNED_MIB = 64  # and this much in all
RETURN_TOTAL = (RETURNED_MIB - 2) * MIB  # room for metrics.json, speed.json and the log to grow
# Refiner crops: the coarse refiner caches faces at 2 x 36 px per unit of the mean shape
# (RMS radius 1), the fine one at 64; every refiner cache spans at most 2.02 units from the
# mean shape's centre (training/mdm.py), so 2.1 units each side holds all of them.
REFINER_PX_PER_UNIT = 72.0
REFINER_HALF_EXTENT = 2.1
QUALITY = 70  # WebP quality of the photos: the 2,012 real faces take ~35.7 MiB at 70, over 40 at 80
# Validation photos are kept nearly intact (80 faces, ~1 MiB more) so that val metrics from the
# pack compare with CPU training's: the shipped DenseReg's uv_mae on the val cache is 0.01303
# uncompressed, 0.01310 at 95 and 0.01324 at 70 (the 8-bit maps alone: 0.01307).
VAL_QUALITY = 95
SPLITS = ("train", "val")


class KitError(RuntimeError):
    """A one-line reason why a kit command cannot go on (bad input, pack over its limit...)."""


# --- encoding (pure) ----------------------------------------------------------------------------


def encode_maps(uv: np.ndarray, depth: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """(2,S,S) uv and (S,S) depth in [0,1] (NaN off the face) and (S,S) flags -> (S,S,4) uint8:
    u, v, depth as 1..255 (0 = NaN; a step of 1/254 is below the +-0.5 px nearest-neighbour
    error the cache's resampling already has: 0.005 at the uv gradient of a face), flags as
    alpha 255-flags (never 0: WebP may rewrite the colour of fully transparent pixels)."""
    planes = [np.where(np.isfinite(a), np.round(np.clip(np.nan_to_num(a.astype(np.float32)), 0, 1) * 254) + 1, 0) for a in (uv[0], uv[1], depth)]
    return np.dstack(planes + [255 - flags.astype(np.int32)]).astype(np.uint8)


def decode_maps(rgba: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of ``encode_maps``: uv (2,S,S) float16, depth (S,S) float16, flags (S,S) uint8."""
    q = rgba[..., :3].astype(np.float32)
    values = np.where(q > 0, (q - 1) / 254, np.nan).astype(np.float16)
    return np.stack([values[..., 0], values[..., 1]]), values[..., 2], (255 - rgba[..., 3]).astype(np.uint8)


def encode_webp(image: np.ndarray, lossless: bool = False, quality: int = QUALITY) -> bytes:
    ok, buf = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, 101 if lossless else quality])
    if not ok:
        raise KitError("OpenCV cannot encode WebP here")
    return buf.tobytes()


def decode_webp(data: bytes, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None:
        raise KitError("a WebP image of the pack does not decode (corrupt pack, or OpenCV without WebP)")
    return image


def refiner_crop(gray: np.ndarray, truth: np.ndarray, mean: np.ndarray, px_per_unit: float = REFINER_PX_PER_UNIT,
                 half_extent: float = REFINER_HALF_EXTENT) -> tuple[np.ndarray, np.ndarray]:
    """The face aligned by its (68,2) truth onto the mean shape at `px_per_unit` (or the photo's
    own resolution where lower: upsampling is left to the refiner's cache), `half_extent` units
    each side of the mean shape's centre; returns (crop (S,S) uint8, truth in crop pixels)."""
    from tracker.crop import transform_points
    from tracker.refiner import canonical_transform
    from tracker.shape_model import similarity_align

    units_per_pixel = similarity_align(truth, mean)[0]
    p = min(px_per_unit, 1.0 / units_per_pixel)
    size = round(2 * half_extent * p)
    m = canonical_transform(truth, mean * p + (size - 1) / 2)
    crop = cv2.warpAffine(gray, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop, transform_points(m, truth)


# --- pack ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackedFace:
    """One face's entries: the DenseReg cache (photo, maps), and for real faces the refiner
    crop with its points; `errors` = (max |uv|, max |depth| quantisation error, mean |pixel| loss)."""

    name: str
    dense_image: bytes
    dense_maps: bytes
    refiner_image: bytes | None
    refiner_points: np.ndarray | None
    errors: tuple[float, float, float]

    @property
    def nbytes(self) -> int:
        return len(self.dense_image) + len(self.dense_maps) + len(self.refiner_image or b"") + 1024  # + zip and index entries


@lru_cache(maxsize=1)
def _mean_shape() -> np.ndarray:
    from tracker.shape_model import load_shape_model

    return load_shape_model().mean


def pack_face(job: tuple[Path, Path, str, bool, int]) -> PackedFace | str:
    """Encode one face (a process-pool job); a string says why the face was skipped."""
    data_root, gt_root, rel, with_refiner, quality = job
    try:
        image, uv, depth, flags = cache_item(data_root, gt_root, rel)
        dense_image, dense_maps = encode_webp(image, quality=quality), encode_webp(encode_maps(uv, depth, flags), lossless=True)
        refiner_image = points = None
        if with_refiner:
            gray = cv2.cvtColor(read_image(data_root / rel), cv2.COLOR_BGR2GRAY)
            crop, points = refiner_crop(gray, read_pts(pts_beside(data_root / rel), expected=68), _mean_shape())
            refiner_image = encode_webp(crop, quality=quality)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:  # missing/corrupt ground truth, unreadable photo or .pts
        return f"{rel}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    uv2, depth2, flags2 = decode_maps(decode_webp(dense_maps))
    if not np.array_equal(flags2, flags) or not np.array_equal(np.isnan(uv2), np.isnan(uv)):
        return f"{rel}: the maps do not survive WebP round-trip (OpenCV's WebP codec is not lossless here)"
    errors = (float(np.nanmax(np.abs(uv2.astype(np.float32) - uv), initial=0.0)),
              float(np.nanmax(np.abs(depth2.astype(np.float32) - depth), initial=0.0)),
              float(np.abs(decode_webp(dense_image).astype(np.float32) - image).mean()))
    return PackedFace(rel, dense_image, dense_maps, refiner_image, None if points is None else points.astype(np.float32), errors)


def profiled_views(folder: Path) -> list[str]:
    """Relative paths of the images under `folder` that have ground truth (`<stem>.npz`) beside them."""
    rels = []
    for npz in sorted(folder.rglob("*.npz")):
        image = beside(npz.with_suffix(""), IMAGE_EXTENSIONS)
        if image is not None:
            rels.append(image.relative_to(folder).as_posix())
    return rels


def subsample(rels: list[str], n: int) -> list[str]:
    """`n` evenly spaced items (all when n <= 0 or n >= len)."""
    if n <= 0 or n >= len(rels):
        return rels
    return [rels[i] for i in np.linspace(0, len(rels) - 1, n).round().astype(int)]


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], check=False, cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return ""


class _PackWriter:
    """faces.zip being written: its entries, the index, and the bytes the pack will take."""

    def __init__(self, path: Path, limit: int):
        self.zip = zipfile.ZipFile(path, "w", zipfile.ZIP_STORED)
        self.limit = limit
        self.used = 8 * 1024  # pack.json; each face carries its own allowance (PackedFace.nbytes)
        self.index: dict[str, list] = {f"{s}_{k}": [] for s in SPLITS for k in ("dense", "refiner", "points")}
        self.errors: list[tuple[float, float, float]] = []

    def fits(self, item: PackedFace) -> bool:
        return self.used + item.nbytes <= self.limit

    def add(self, split: str, item: PackedFace) -> None:
        i = len(self.index[f"{split}_dense"])
        self.zip.writestr(f"dense/{split}/{i:05d}.webp", item.dense_image)
        self.zip.writestr(f"dense/{split}/{i:05d}.maps.webp", item.dense_maps)
        self.index[f"{split}_dense"].append(item.name)
        if item.refiner_image is not None:
            self.zip.writestr(f"refiner/{split}/{len(self.index[f'{split}_refiner']):05d}.webp", item.refiner_image)
            self.index[f"{split}_refiner"].append(item.name)
            self.index[f"{split}_points"].append(item.refiner_points)
        self.errors.append(item.errors)
        self.used += item.nbytes

    def close(self) -> None:
        arrays = {k: np.array(v, dtype=str) for k, v in self.index.items() if not k.endswith("_points")}
        arrays.update({k: np.stack(v) if v else np.zeros((0, 68, 2), np.float32) for k, v in self.index.items() if k.endswith("_points")})
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        self.zip.writestr("index.npz", buf.getvalue())
        self.zip.close()


def pack_size(pack: Path) -> int:
    return sum((pack / f).stat().st_size for f in PACK_FILES)


# What one device call carries: the checkout's tracked and untracked-not-ignored files plus the
# carried paths, 64 MiB in all.  The tree alone is ~43 MiB (the shipped networks, their PyTorch
# twins, the demo clip), so a whole pack (~39 MiB) goes in parts, one per call on the same warm
# machine, where an ignored folder a call brought stays for the next (README, "Training on a GPU").
DEVICE_CARRY_LIMIT = 64 * MIB
CARRY_MARGIN = 1 * MIB  # notes or logs written between packing and the call travel too
PART_SUFFIX = ".part"


def travelling_bytes(repo: Path = REPO) -> int | None:
    """Bytes of the files a device call sends: git's tracked and untracked-not-ignored files;
    None outside a git checkout (a source archive), where the device tool cannot run either."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                                capture_output=True, check=True, timeout=60).stdout.split(b"\0")
    except (OSError, subprocess.SubprocessError):
        return None
    return sum(p.stat().st_size for p in (repo / os.fsdecode(n) for n in listed if n) if p.is_file())


def pack_parts(pack: Path) -> list[Path]:
    """The part folders ``split_pack`` made beside `pack` (``gpupack.part1``, ...), in order."""
    parts = [p for p in pack.parent.glob(f"{pack.name}{PART_SUFFIX}*") if p.name[len(pack.name) + len(PART_SUFFIX):].isdigit()]
    return sorted(parts, key=lambda p: int(p.name[len(pack.name) + len(PART_SUFFIX):]))


def split_pack(pack: Path, part_bytes: int) -> list[Path]:
    """Cut `pack`'s faces.zip into chunks of at most `part_bytes`, one folder each beside it
    (``<pack>.part1`` with pack.json, then ``<pack>.partK``), each chunk's SHA-256 and the whole
    pack's in ``part.json``; older part folders of this pack are replaced.  ``join_pack`` reverses it."""
    manifest = read_manifest(pack)
    data = (pack / "faces.zip").read_bytes()
    chunks = [data[i:i + part_bytes] for i in range(0, len(data), part_bytes)]
    for old in pack_parts(pack):
        shutil.rmtree(old)
    made = []
    for k, chunk in enumerate(chunks, 1):
        part = pack.with_name(f"{pack.name}{PART_SUFFIX}{k}")
        tmp = part.with_name(part.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (tmp / f"faces.zip.{k}").write_bytes(chunk)
        if k == 1:
            shutil.copy2(pack / "pack.json", tmp / "pack.json")
        atomic_write_json(tmp / "part.json", {"part": k, "of": len(chunks), "bytes": len(chunk),
                                              "sha256": hashlib.sha256(chunk).hexdigest(), "pack": manifest["faces_zip_sha256"]})
        tmp.rename(part)
        made.append(part)
    return made


def join_pack(pack: Path) -> None:
    """Put `pack` together from its part folders (``split_pack``): the parts of the pack that part
    1 names, every one present and intact, or a KitError naming the first that is not (parts of
    an older split stay on a warm machine between calls).  The joined faces.zip is checked
    against pack.json's SHA-256 when it is unpacked."""
    parts = pack_parts(pack)
    if not parts:
        raise KitError(f"{pack}: not a pack, and no parts ({pack.name}{PART_SUFFIX}1 ...) beside it")
    infos = [json.loads((p / "part.json").read_text()) for p in parts]
    if infos[0]["part"] != 1:
        raise KitError(f"{pack}: part 1 is missing (each device call brings one: {pack.name}{PART_SUFFIX}1)")
    whole, count = infos[0]["pack"], infos[0]["of"]
    stale = [p.name for p, i in zip(parts, infos) if i["pack"] != whole or i["of"] != count]
    if stale:
        raise KitError(f"{pack}: {', '.join(stale)} {'is' if len(stale) == 1 else 'are'} of another split of the pack than "
                       f"{parts[0].name} (bring this split's parts, each in its own call)")
    missing = [k for k in range(1, count + 1) if k not in {i["part"] for i in infos}]
    if missing:
        raise KitError(f"{pack}: part {missing[0]} of {count} is missing (each device call brings one: "
                       f"{pack.name}{PART_SUFFIX}{missing[0]})")
    tmp = pack.with_name(pack.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with open(tmp / "faces.zip", "wb") as out:
        for part, info in zip(parts, infos):
            chunk = (part / f"faces.zip.{info['part']}").read_bytes()
            if hashlib.sha256(chunk).hexdigest() != info["sha256"]:
                raise KitError(f"{part}: its chunk's SHA-256 differs from part.json (truncated or corrupt copy)")
            out.write(chunk)
    shutil.copy2(parts[0] / "pack.json", tmp / "pack.json")
    if pack.exists():
        shutil.rmtree(pack)
    tmp.rename(pack)


def build_pack(data: Path, gt: Path, out: Path, profiled: Path | None = None, faces: int = 0, max_mib: float = 40.0,
               quality: int = QUALITY, jobs: int = 1, command: str = "") -> dict:
    """Write the pack to `out` (replacing an older one only once the new one is complete);
    returns its manifest.  Raises KitError when the real faces alone exceed `max_mib`."""
    for path, what in ((data / "splits" / "train.txt", "the 300-W split list"), (gt, "the ground-truth folder")):
        if not path.exists():
            raise KitError(f"{path}: {what} is missing")
    splits = {s: (data / "splits" / f"{s}.txt").read_text().split() for s in SPLITS}
    if faces > 0:  # a small pack for dry runs: both splits, in proportion, at least 2 val faces
        n_val = min(len(splits["val"]), max(2, round(faces * len(splits["val"]) / sum(map(len, splits.values())))))
        splits = {"train": subsample(splits["train"], faces - n_val), "val": subsample(splits["val"], n_val)}
    views = profiled_views(profiled) if profiled is not None and profiled.is_dir() else []
    if views:
        check_views_not_val(data, profiled, views)
    np.random.default_rng(0).shuffle(views)  # a pack that cannot hold all views takes a spread of them

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    skipped: list[str] = []
    packed_views = 0
    try:
        writer = _PackWriter(tmp / "faces.zip", int(max_mib * MIB))
        with worker_pool(jobs) as pool:
            for split in SPLITS:
                jobs_ = [(data, gt, rel, True, max(quality, VAL_QUALITY) if split == "val" else quality) for rel in splits[split]]
                for item in tqdm(pool.map(pack_face, jobs_, chunksize=4), total=len(jobs_), desc=f"packing {split}", unit="face"):
                    if isinstance(item, str):
                        skipped.append(item)
                    elif not writer.fits(item):
                        raise KitError(f"the real faces alone exceed --max-mib {max_mib:g} (full after {len(writer.errors)} faces): "
                                       f"lower --quality or pack fewer --faces")
                    else:
                        writer.add(split, item)
            jobs_ = [(profiled, profiled, rel, False, quality) for rel in views]
            for item in tqdm(pool.map(pack_face, jobs_, chunksize=4), total=len(jobs_), desc="packing profiled views", unit="view"):
                if isinstance(item, str):
                    skipped.append(item)
                elif not writer.fits(item):
                    break  # full: the views are shuffled, so the ones packed are a fair sample
                else:
                    writer.add("train", replace(item, name=f"profiled/{item.name}"))
                    packed_views += 1
        writer.close()
        index = writer.index
        if not all(index[f"{s}_refiner"] for s in SPLITS):
            raise KitError(f"no usable faces in one of the splits ({len(skipped)} skipped; first: {skipped[:1]})")
        err = np.array(writer.errors)
        manifest = {
            "version": PACK_VERSION, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "command": command, "git": _git_commit(),
            "source": {"data": str(data), "gt": str(gt), "profiled": str(profiled) if views else None},
            "geometry": {"dense_size": CACHE_SIZE, "dense_factor": CACHE_FACTOR, "refiner_px_per_unit": REFINER_PX_PER_UNIT,
                         "refiner_half_extent": REFINER_HALF_EXTENT, "quality": quality, "val_quality": max(quality, VAL_QUALITY)},
            "counts": {"train": len(index["train_refiner"]), "val": len(index["val_refiner"]), "profiled": packed_views,
                       "profiled_available": len(views), "skipped": len(skipped)},
            "skipped": skipped[:50],
            "quantisation": {"uv_max_abs": float(err[:, 0].max()), "depth_max_abs": float(err[:, 1].max()),
                             "image_mean_abs": float(err[:, 2].mean())},
            "assets": {name: sha256(ASSETS / name) for name in ("template.npz", "shape_pca.npz")},
            "faces_zip_sha256": sha256(tmp / "faces.zip"),
        }
        atomic_write_json(tmp / "pack.json", manifest)
        if pack_size(tmp) > max_mib * MIB:
            raise KitError(f"pack is {pack_size(tmp) / MIB:.1f} MiB, over --max-mib {max_mib:g}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return manifest


# --- unpack -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unpacked:
    """Where the training tasks find the pack's faces: `cache` holds ``densereg_{split}.npz``
    (``training.dataset.FaceCache``), `refiner` is a 300-W-layout folder (splits/, images, .pts)."""

    manifest: dict
    cache: Path
    refiner: Path


def read_manifest(pack: Path) -> dict:
    if not (pack / "pack.json").exists() or not (pack / "faces.zip").exists():
        raise KitError(f"{pack}: not a pack (needs pack.json and faces.zip; build one with `python -m training.gpukit pack`)")
    manifest = json.loads((pack / "pack.json").read_text())
    if manifest.get("version") != PACK_VERSION:
        raise KitError(f"{pack}: pack version {manifest.get('version')} (this kit reads {PACK_VERSION}): re-pack")
    return manifest


def unpack(pack: Path, work: Path, threads: int) -> Unpacked:
    manifest = read_manifest(pack)
    if sha256(pack / "faces.zip") != manifest["faces_zip_sha256"]:
        raise KitError(f"{pack / 'faces.zip'}: SHA-256 differs from pack.json (truncated or corrupt copy)")
    shutil.rmtree(work / "cache", ignore_errors=True)
    shutil.rmtree(work / "refiner", ignore_errors=True)
    with zipfile.ZipFile(pack / "faces.zip") as z, ThreadPoolExecutor(threads) as pool:
        with np.load(io.BytesIO(z.read("index.npz"))) as f:
            index = {k: f[k] for k in f.files}
        # One reader: ZipFile is not safe for concurrent reads; decoding (the cost) is threaded.
        for split in SPLITS:
            names = [str(n) for n in index[f"{split}_dense"]]
            blobs = [(z.read(f"dense/{split}/{i:05d}.webp"), z.read(f"dense/{split}/{i:05d}.maps.webp")) for i in range(len(names))]

            def decode(pair):
                return decode_webp(pair[0], cv2.IMREAD_COLOR), *decode_maps(decode_webp(pair[1]))

            images, uv, depth, flags = zip(*pool.map(decode, blobs))
            save_cache(FaceCache(np.stack(images), np.stack(uv), np.stack(depth), np.stack(flags), tuple(names)),
                       work / "cache" / f"densereg_{split}.npz")
            rels = []
            for j, points in enumerate(index[f"{split}_points"]):
                rel = f"{split}/{j:05d}.webp"
                (work / "refiner" / split).mkdir(parents=True, exist_ok=True)
                (work / "refiner" / rel).write_bytes(z.read(f"refiner/{rel}"))
                write_pts(work / "refiner" / f"{split}/{j:05d}.pts", points.astype(np.float64))
                rels.append(rel)
            (work / "refiner" / "splits").mkdir(parents=True, exist_ok=True)
            (work / "refiner" / "splits" / f"{split}.txt").write_text("\n".join(rels) + "\n")
    return Unpacked(manifest, work / "cache", work / "refiner")




# --- train --------------------------------------------------------------------------------------

CHECKPOINT_MINUTES = 1.0
EXPORT_RESERVE_S = 45.0  # kept at the end of the budget for the ONNX exports and the last bundles
# What a network's returned .tar holds, most important first; a file that would push it past
# RETURN_LIMIT is left out.  The ONNX file comes last: training.export rebuilds it (and checks
# it) from best.pt, while last.pt (weights + optimizer state, to continue) exists only here.
BUNDLE = ("run.json", "val.jsonl", "log.csv", "best.pt", "last.pt", "{name}.onnx")


@dataclass
class Network:
    """One network of a kit run: its task (``training.train.TASKS``), schedule and run folder."""

    name: str  # densereg-<config>, or the refiner task's name: the run folder and OUT/<name>.tar
    task_name: str
    task: object
    schedule: object
    options: dict
    run_dir: Path
    share: float  # of the training time
    resume: bool = False
    init_from: Path | None = None
    start_step: int = 0
    previous_minutes: float = 0.0  # trained before this run (--resume-from)
    batches: object = None  # the DataLoader iterator
    report: dict | None = None


class TaskBatches(torch.utils.data.IterableDataset):
    """Endless ``task.batch(rng)`` batches for a DataLoader; each worker draws from its own seed."""

    def __init__(self, task, seed: tuple[int, ...]):
        super().__init__()
        self.task, self.seed = task, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([*self.seed, info.id if info else 0])
        while True:
            yield self.task.batch(rng)


def make_batches(task, seed: tuple[int, ...], workers: int, pin: bool):
    # fork: the workers share the parent's caches (copy-on-write) instead of unpickling them.
    # They inherit one OpenCV and one torch thread from `train` (set before any pool exists:
    # resizing a thread pool inherited through fork hangs).
    loader = torch.utils.data.DataLoader(TaskBatches(task, seed), batch_size=None, num_workers=workers, pin_memory=pin,
                                         prefetch_factor=4 if workers else None, multiprocessing_context="fork" if workers else None)
    return iter(loader)


def deploy_arch(net) -> str:
    """The ``training.deploy`` architecture that exports a task's network."""
    from training.mdm import MDM
    from training.model import DenseReg

    for cls, arch in ((DenseReg, "densereg"), (MDM, "mdm")):
        if isinstance(net, cls):
            return arch
    raise KitError(f"no deployable architecture for {type(net).__name__} (add it to training.deploy.ARCHS and here)")


def extract_safely(tar: tarfile.TarFile, into: Path) -> None:
    """`tar`'s files and folders into `into`, none outside it: tarfile's "data" filter where
    Python has it (3.10.12, 3.11.4 and later; the keyword was a TypeError before, on a lent
    machine's older Python), else the same refusal by hand."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(into, filter="data")
        return
    for member in tar.getmembers():
        if not (member.isfile() or member.isdir()) or Path(member.name).is_absolute() or ".." in Path(member.name).parts:
            raise InputError(f"{tar.name}: {member.name} is not a plain file or folder inside it; not extracted")
    tar.extractall(into)


def prepare(name: str, task_name: str, ns: argparse.Namespace, share: float, work: Path, resume_from: Path | None,
            batch_mult: float, lr: float, steps: int) -> Network:
    """Build a task by name (as ``python -m training.train`` does) with the GPU's batch size and
    a schedule that decays over the time budget; restore its run folder from `resume_from`."""
    from training.train import SEED, TASKS, load_checkpoint

    torch.manual_seed(SEED)  # before the network is built: its initial weights are part of the run
    task, sched, options = TASKS[task_name](ns)
    task.batch_size = max(1, round(task.batch_size * batch_mult))
    # AdamW: the learning rate grows with the square root of the batch (the task's own is for its CPU batch).
    sched = replace(sched, batch=task.batch_size, lr=lr or sched.lr * math.sqrt(task.batch_size / sched.batch),
                    steps=steps or 10**9, checkpoint_minutes=CHECKPOINT_MINUTES, by_time=True)
    net = Network(name, task_name, task, sched, options, work / name, share)
    shutil.rmtree(net.run_dir, ignore_errors=True)
    previous = resume_from / f"{name}.tar" if resume_from is not None else None
    if previous is not None and previous.exists():
        with tarfile.open(previous) as t:
            extract_safely(t, work)
        net.resume = (net.run_dir / "last.pt").exists()
        if net.resume:
            net.start_step = int(load_checkpoint(net.run_dir / "last.pt")["step"])
        elif (net.run_dir / "best.pt").exists():
            net.init_from = net.run_dir / "best.pt"  # the optimizer state did not fit the bundle: weights only
        if (net.run_dir / "run.json").exists():
            try:
                net.previous_minutes = float(json.loads((net.run_dir / "run.json").read_text()).get("minutes", 0.0))
            except (ValueError, TypeError, AttributeError):  # (a traceback; review 33)
                raise KitError(f"{previous}: its {name}/run.json is damaged; continue from another bundle") from None
        source = f"from last.pt, step {net.start_step}" if net.resume else "weights of best.pt" if net.init_from else "nothing usable in it"
        log.info(f"{name}: continuing {previous} ({source})")
    net.run_dir.mkdir(parents=True, exist_ok=True)
    return net


def shipped_metrics(net: Network, device: torch.device) -> dict | None:
    """The shipped model's val metrics by the same task, on the same faces (None when there is
    no shipped counterpart with the same inputs)."""
    from training.deploy import build_deployable
    from training.export import NAMES, network_options
    from training.train import evaluated_on

    path = ASSETS / f"{NAMES.get(net.task_name, '-')}.pt"
    if not path.exists():
        return None
    ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    shipped, _, _ = build_deployable(ckpt["arch"], ckpt["options"])
    ours, _, _ = build_deployable(deploy_arch(net.task.net), network_options(net.options))
    if [t.shape for t in shipped.example_inputs()] != [t.shape for t in ours.example_inputs()]:
        return None  # another input size: not the same job
    shipped.load_state_dict(ckpt["state_dict"])
    trained = net.task.net
    net.task.net = shipped.net.to(device)  # every deployable wraps the task's network as `.net`
    try:
        with evaluated_on(net.task, device):
            return net.task.evaluate()
    finally:
        net.task.net = trained


def bundle(net: Network, out: Path) -> tuple[list[str], list[str]]:
    """Write OUT/<name>.tar from the run folder within RETURN_LIMIT and within what the other
    files in OUT leave of RETURN_TOTAL (the networks bundled first keep theirs): (files in it,
    files left out)."""
    final = out / f"{net.name}.tar"
    others = sum(p.stat().st_size for p in out.iterdir() if p.is_file() and p != final)
    limit = min(RETURN_LIMIT, RETURN_TOTAL - others)
    included, left_out, total = [], [], 0
    for pattern in BUNDLE:
        path = net.run_dir / pattern.format(name=net.name)
        if not path.exists():
            continue
        size = path.stat().st_size + 1024
        if total + size > limit:
            left_out.append(f"{path.name} ({size / MIB:.1f} MiB more would pass the {limit / MIB:.1f} MiB left to this file: "
                            f"{RETURN_LIMIT / MIB:.0f} MiB a file, {RETURNED_MIB} MiB in all come back)")
            continue
        included.append(path.name)
        total += size
    if final.exists() and "best.pt" not in included:
        # Short of room: the tar there, which may hold the weights, is better than one without.
        with tarfile.open(final) as t:
            kept = [Path(name).name for name in t.getnames()]
        if "best.pt" in kept or not included:
            return kept, [x for x in left_out if x.split(" ", 1)[0] not in kept]
    # Made beside the run, not in OUT: a kill in the middle must not leave a stray file there
    # that comes back in place of the networks'.
    tmp = net.run_dir / f".{net.name}.tar.tmp"
    with tarfile.open(tmp, "w") as t:
        for name in included:
            t.add(net.run_dir / name, arcname=f"{net.name}/{name}")
    try:
        os.replace(tmp, final)
    except OSError:  # OUT on another file system: copied in under a hidden name, then renamed
        staged = out / f".{net.name}.tar.tmp"
        shutil.copyfile(tmp, staged)
        os.replace(staged, final)
        tmp.unlink()
    return included, left_out


def _write_run_json(n: Network, hardware: str, command: str, pack_info: dict, profiled: int, started: float, step: int) -> None:
    """The run folder's run.json (what training.export's card quotes) and the network's report."""
    trained = (time.time() - started) / 60
    atomic_write_json(n.run_dir / "run.json", {
        "hardware": hardware, "command": command, "batch": n.schedule.batch, "lr": n.schedule.lr,
        "minutes": n.previous_minutes + trained, "step": step, "samples_this_run": (step - n.start_step) * n.schedule.batch,
        "data_extra": f", plus {profiled} profiled views (`training.profile`)" if profiled else "", "pack": pack_info})
    n.report.update(steps=step, train_minutes=trained, samples_per_s=(step - n.start_step) * n.schedule.batch / max(trained * 60, 1e-9))


def _refresh(n: Network, out: Path, report: dict) -> None:
    """Bundle the network's run folder into OUT and rewrite OUT/metrics.json."""
    from training.train import load_checkpoint, read_val_log

    n.report["history"] = read_val_log(n.run_dir)
    if (n.run_dir / "best.pt").exists():  # what is returned (a weights-only continuation starts a new best)
        best = load_checkpoint(n.run_dir / "best.pt")
        n.report["best"] = {"step": best["step"], **best["metrics"]}
    n.report["returned"], n.report["left_out"] = bundle(n, out)
    atomic_write_json(out / "metrics.json", report)


def _export(n: Network) -> dict:
    """ONNX export of the best checkpoint, checked against PyTorch in ONNX Runtime."""
    from training.export import export_checked, network_options, parity_ok
    from training.train import load_checkpoint

    best = n.run_dir / "best.pt"
    if not best.exists():
        return {"ok": False, "skipped": "no best.pt: the validation metric was never finite"}
    if n.task_name == "segbaseline":
        return {"ok": True, "skipped": "the segmenter is scored from its best.pt (training.evaluate parts --baseline), not exported"}
    if best.stat().st_size > RETURN_LIMIT:
        return {"ok": True, "skipped": f"best.pt is {best.stat().st_size / MIB:.0f} MiB: its weights cannot come back from a device run"}
    sha, diff, magnitude = export_checked(deploy_arch(n.task.net), network_options(n.options), load_checkpoint(best)["model"],
                                          n.run_dir / f"{n.name}.onnx")
    return {"ok": parity_ok(diff, magnitude), "file": f"{n.name}.onnx", "sha256": sha, "parity_max_abs": diff, "magnitude": magnitude}


# Each refiner's share of training crops under a synthetic occluder (``training.train --occluders``):
# the shipped first stage ended its training with 0.5 (session 21: 0.3, then 0.5, each better under
# occlusion end to end); the fine stage with 0.3 did worse end to end and was not shipped.
REFINER_OCCLUDERS = {"mdm": 0.5}


def check_train_args(pack: Path, device: str, config: str, refiners: tuple[str, ...]) -> None:
    """``train``'s arguments, checked before anything is made (its OUT, its log, WORK)."""
    from training.model import CONFIGS
    from training.train import TASKS

    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise KitError("CUDA is not available here: train on the GPU machine, or give --device cpu for a dry run")
    if config not in CONFIGS:
        raise KitError(f"unknown --config '{config}' (known: {', '.join(sorted(CONFIGS))})")
    known = sorted(set(TASKS) - {"densereg", "segbaseline"})
    for name in refiners:
        if name not in known:
            raise KitError(f"unknown refiner task '{name}' (refiner tasks of training.train: {', '.join(known)})")
    read_manifest(pack)


def train(pack: Path, out: Path, minutes: float, device: str = "cuda", config: str = "large", refiners: tuple[str, ...] = ("mdm", "mdm-fine"),
          refiner_share: float = 0.25, resume_from: Path | None = None, workers: int = 0, batch_mult: float = 4.0, lr: float = 0.0,
          steps: int = 0, amp: bool = True, work: Path = REPO / "runs" / "gpukit", seed: int = 0, command: str = "",
          dense: DenseOptions = PAPER, segmenter: bool = False) -> int:
    """The whole GPU run within `minutes` (unpacking, training, exports); returns 0 when every
    network trained and its export matches PyTorch in ONNX Runtime.  A network that fails is
    logged and the others still train: a lease is not spent on one error.

    `segmenter`: also the directly trained part segmenter of the same configuration (issue 14's
    parts comparison), after DenseReg, with DenseReg's time and stopped at DenseReg's step count
    (its LR schedule decaying over that count), so that the two share a budget."""
    from training.train import StopRequest, run, stopping_on_signals

    t_start = time.time()
    deadline = t_start + minutes * 60
    # This process only feeds the device; the work on the CPU runs in one-threaded data workers.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    dev = torch.device(device)
    check_train_args(pack, device, config, refiners)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    workers = workers or max(1, (os.cpu_count() or 2) - 1)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")  # TF32 for what runs outside autocast (evaluation)
    hardware = (f"one {torch.cuda.get_device_name(dev)} (training.gpukit: bf16 autocast, {workers} data workers)" if dev.type == "cuda"
                else f"a CPU dry run of training.gpukit ({workers} data workers)")
    log.info(f"{command or 'train'}: {hardware}, budget {minutes:g} min")

    data = unpack(pack, work, threads=workers + 1)
    counts = data.manifest["counts"]
    log.info(f"unpacked {pack}: {counts['train']} train + {counts['val']} val faces, {counts['profiled']} profiled views "
             f"({time.time() - t_start:.0f} s)")
    ns = {"gt": pack, "cache": data.cache, "config": config, "variant": "quantized", "batch": 0, "steps": 0, "lr": 0.0,
          # profiled views: in the pack's caches; no tracker starts there
          "gt_extra": [], "tracker_starts": 0.0, "starts_assets": None, "occluders": 0.0, **asdict(dense)}
    dense_share = (1.0 - refiner_share if refiners else 1.0) / (2 if segmenter else 1)
    specs = [(f"densereg-{config}", "densereg", argparse.Namespace(data=pack, **ns), dense_share)]
    if segmenter:
        specs.append((f"segbaseline-{config}", "segbaseline", argparse.Namespace(data=pack, **ns), dense_share))
    specs += [(name, name, argparse.Namespace(data=data.refiner, **{**ns, "occluders": REFINER_OCCLUDERS.get(name, 0.0)}),
               refiner_share / len(refiners)) for name in refiners]
    networks = [prepare(*spec, work, resume_from, batch_mult, lr, steps) for spec in specs]
    pack_info = {"bytes": pack_size(pack), **{k: data.manifest.get(k) for k in ("created", "git", "counts", "quantisation", "faces_zip_sha256")}}
    report = {"command": command, "hardware": hardware, "torch": torch.__version__, "minutes_budget": minutes,
              "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t_start)), "finished": False, "pack": pack_info, "networks": {}}
    for n in networks:
        try:
            shipped = shipped_metrics(n, dev)
        except Exception as exc:  # a reference number: the lease's training must not hang on it
            log.error(f"{n.name}: the shipped model's val metrics failed: {type(exc).__name__}: {exc}")
            shipped = None
        n.report = report["networks"][n.name] = {"task": n.task_name, "options": n.options, "batch": n.schedule.batch, "lr": n.schedule.lr,
                                                 "shipped": shipped}
        log.info(f"{n.name}: batch {n.schedule.batch}, lr {n.schedule.lr:.2g}; shipped model on these val faces: {n.report['shipped']}")
    # SIGTERM (the device's time limit) or Ctrl-C: the network in training checkpoints and
    # returns what it has (training.train.run), and no other network starts after it.
    stopping = StopRequest()
    ok = True
    with stopping_on_signals(stopping):
        for k, n in enumerate(networks):
            if stopping:
                n.report["error"] = f"not trained: stopped by signal {stopping.signum}"
                ok = False
                continue
            left = max(0.0, deadline - time.time() - EXPORT_RESERVE_S)
            budget = left * n.share / sum(m.share for m in networks[k:])
            started = time.time()
            stop_at = 0
            if n.task_name == "segbaseline" and networks[0].report.get("steps"):
                stop_at = networks[0].report["steps"]  # DenseReg's budget in steps
                n.schedule = replace(n.schedule, steps=stop_at)
            log.info(f"{n.name}: training for {budget / 60:.1f} min" + (f", to DenseReg's {stop_at} steps" if stop_at else ""))

            def on_checkpoint(step: int, metrics: dict, n=n, started=started) -> None:
                _write_run_json(n, hardware, command, pack_info, counts["profiled"] if n.task_name == "densereg" else 0, started, step)
                _refresh(n, out, report)
                log.info(f"{n.name} step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))

            try:
                # Made now, not for every network at once: their workers would prefetch beside the
                # first network's training.  Forked data workers never touch CUDA (a process forked
                # after CUDA's initialisation must not).
                n.batches = make_batches(n.task, (seed, n.start_step, k), workers, pin=dev.type == "cuda")
                run(n.task, n.schedule, n.run_dir, budget / 60, n.resume, seed=seed, options=n.options, init_from=n.init_from,
                    stop_at=stop_at, device=device, batches=n.batches, amp=amp and dev.type == "cuda", on_checkpoint=on_checkpoint,
                    stop=stopping)
                log.info(f"{n.name}: {n.report['steps']} steps, {n.report['samples_per_s']:.0f} samples/s")
            except Exception as exc:  # noqa: BLE001 - logged with its traceback; the next network still trains
                log.exception(f"{n.name}: training failed")
                n.report["error"] = f"{type(exc).__name__}: {exc}"
                ok = False
            n.batches = None  # stops this network's workers
            n.task.net.to("cpu")
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    if stopping:  # the kill follows: what each network has is already in OUT
        report.update(finished=False, stopped_by_signal=stopping.signum, wall_minutes=(time.time() - t_start) / 60)
        atomic_write_json(out / "metrics.json", report)
        log.info(f"stopped by signal {stopping.signum} after {report['wall_minutes']:.1f} min: no exports")
        return 1
    for n in networks:
        try:
            n.report["onnx"] = _export(n)
        except Exception as exc:  # noqa: BLE001
            log.exception(f"{n.name}: export failed")
            n.report["onnx"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        ok &= n.report["onnx"]["ok"]
        _refresh(n, out, report)
        log.info(f"{n.name}: onnx {n.report['onnx']}; returned {n.report['returned']}"
                 + (f", left out {n.report['left_out']}" if n.report["left_out"] else ""))
    report.update(finished=True, wall_minutes=(time.time() - t_start) / 60)
    atomic_write_json(out / "metrics.json", report)
    log.info(f"done in {report['wall_minutes']:.1f} min: {', '.join(sorted(p.name for p in out.iterdir()))}")
    return 0 if ok else 1


# --- speed --------------------------------------------------------------------------------------


def speed(device: str, configs: list[str], batches: list[int], runs: int, warmup: int = 10) -> list[dict]:
    """Median time of the deployed graph (network + decoding) per batch; fp16 on CUDA, fp32 on CPU."""
    from training.model import CONFIGS, Decoded

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise KitError("speed measures CUDA inference and there is no CUDA here (--device cpu gives a dry run)")
    half = dev.type == "cuda"
    torch.backends.cudnn.benchmark = True

    def sync():
        if half:
            torch.cuda.synchronize(dev)

    rows = []
    for config in configs:
        torch.manual_seed(0)
        net = Decoded(config).eval().to(dev)  # random weights: the time does not depend on them
        if half:
            net = net.half().to(memory_format=torch.channels_last)
        size = CONFIGS[config].input_size
        for b in batches:
            x = torch.randn(b, 3, size, size, device=dev, dtype=torch.float16 if half else torch.float32)
            if half:
                x = x.contiguous(memory_format=torch.channels_last)
            times = []
            with torch.inference_mode():
                for i in range(warmup + runs):
                    sync()
                    t0 = time.perf_counter()
                    net(x)
                    sync()
                    if i >= warmup:
                        times.append((time.perf_counter() - t0) * 1e3)
            ms = float(np.median(times))
            rows.append({"config": config, "input": size, "batch": b, "precision": "fp16" if half else "fp32", "median_ms": ms,
                         "p90_ms": float(np.percentile(times, 90)), "ms_per_image": ms / b, "images_per_s": 1e3 * b / ms,
                         "weights": sum(p.numel() for p in net.parameters()), "runs": runs})
    return rows


# --- command line -------------------------------------------------------------------------------


def _setup_logging(out: Path | None) -> None:
    for h in list(log.handlers):  # a second command in the same process logs to its own OUT
        log.removeHandler(h)
        h.close()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(out / "gpukit.log"))
    for h in handlers:
        h.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(h)
    log.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "-m", "training.gpukit", *argv])
    ap = argparse.ArgumentParser(prog="python -m training.gpukit", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="build the training pack (<= --max-mib) from ../shared/data and the ground truth")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data", type=Path, default=DEFAULT_300W)
    p.add_argument("--gt", type=Path, default=REPO / "data" / "gt", help="ground truth of training.groundtruth")
    p.add_argument("--profiled", type=Path, default=REPO / "data" / "gt_profiled", help="profiled views (used when present)")
    p.add_argument("--faces", type=int, default=0, help="pack only this many real faces (evenly spaced; dry runs)")
    p.add_argument("--max-mib", type=float, default=40.0)
    p.add_argument("--quality", type=int, default=QUALITY, help="WebP quality of the photos")
    p.add_argument("--jobs", type=int, default=1)
    t = sub.add_parser("train", help="train DenseReg and the refiners from a pack within --minutes, export, write OUT")
    t.add_argument("--pack", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True, help="results: <network>.tar, metrics.json, gpukit.log")
    t.add_argument("--minutes", type=float, required=True, help="wall-clock budget of the whole command")
    t.add_argument("--device", default="cuda")
    t.add_argument("--config", default="large", help="DenseReg configuration (training/model.py CONFIGS)")
    t.add_argument("--refiners", default="mdm,mdm-fine", help="comma-separated refiner tasks of training.train ('' for none)")
    t.add_argument("--refiner-share", type=float, default=0.25, help="fraction of the training time for the refiners together")
    t.add_argument("--resume-from", type=Path, help="a folder with the .tar files of an earlier run: continue them")
    t.add_argument("--workers", type=int, default=0, help="data-loading processes per network (default: all cores but one)")
    t.add_argument("--batch-mult", type=float, default=4.0, help="batch size = the task's CPU batch x this")
    t.add_argument("--lr", type=float, default=0.0, help="default: the task's, x sqrt(--batch-mult)")
    t.add_argument("--steps", type=int, default=0, help="stop each network at this step (dry runs)")
    t.add_argument("--no-amp", action="store_true", help="train in fp32 on CUDA")
    DenseOptions.add_arguments(t)
    t.add_argument("--segmenter", action="store_true",
                   help="also the part segmenter of the same configuration, at DenseReg's budget (half of DenseReg's time each)")
    t.add_argument("--work", type=Path, default=REPO / "runs" / "gpukit", help="run folders and unpacked caches")
    sp = sub.add_parser("split", help="cut a pack into parts that each travel with one device call (beside the tree)")
    sp.add_argument("--pack", type=Path, required=True)
    sp.add_argument("--max-mib", type=float, default=0.0,
                    help="largest part (default: what the 64 MiB of a call leave beside this checkout's files)")
    j = sub.add_parser("join", help="put a pack together from its parts (on the device, before train)")
    j.add_argument("--pack", type=Path, required=True)
    s = sub.add_parser("speed", help="inference speed of the DenseReg configurations (PyTorch; fp16 on CUDA)")
    s.add_argument("--device", default="cuda")
    s.add_argument("--configs", default="paper,large,realtime")
    s.add_argument("--batches", default="1,8")
    s.add_argument("--runs", type=int, default=50)
    s.add_argument("--warmup", type=int, default=10, help="untimed runs first (cuDNN picks its algorithms)")
    s.add_argument("--json", type=Path, default=REPO / "runs" / "gpukit_speed.json")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "pack":
            manifest = build_pack(args.data, args.gt, args.out, args.profiled, args.faces, args.max_mib, args.quality, args.jobs, command)
            c = manifest["counts"]
            print(f"wrote {args.out}: {pack_size(args.out) / MIB:.1f} MiB, {c['train']} train + {c['val']} val faces, "
                  f"{c['profiled']} of {c['profiled_available']} profiled views, {c['skipped']} skipped")
            tree = travelling_bytes()
            if tree is not None and tree + pack_size(args.out) + CARRY_MARGIN > DEVICE_CARRY_LIMIT:
                print(f"note: with this checkout's {tree / MIB:.1f} MiB it is over the 64 MiB one device call carries: "
                      f"`python -m training.gpukit split --pack {args.out}` cuts it into parts, one call each")
            return 0
        if args.cmd == "split":
            if args.max_mib > 0:
                limit = int(args.max_mib * MIB)
            elif (tree := travelling_bytes()) is None:
                raise KitError("not a git checkout: the files a device call sends are unknown here; give --max-mib")
            elif (limit := DEVICE_CARRY_LIMIT - tree - CARRY_MARGIN) < MIB:
                raise KitError(f"parts of {limit / MIB:.2f} MiB beside the checkout's {tree / MIB:.1f} MiB: too small to be "
                               "worth a device call each")
            parts = split_pack(args.pack, limit)
            print(f"wrote {count_of(len(parts), 'part')} of at most {limit / MIB:.1f} MiB: "
                  f"{', '.join(p.name for p in parts)} (one device call each, in this order)")
            return 0
        if args.cmd == "join":
            join_pack(args.pack)
            print(f"joined {args.pack} from {len(pack_parts(args.pack))} parts")
            return 0
        if args.cmd == "train":
            refiners = tuple(r for r in args.refiners.split(",") if r)
            check_train_args(args.pack, args.device, args.config, refiners)  # before the log makes OUT
            _setup_logging(args.out)
            return train(args.pack, args.out, args.minutes, args.device, args.config, refiners,
                         args.refiner_share, args.resume_from, args.workers, args.batch_mult, args.lr, args.steps, not args.no_amp,
                         args.work, command=command, dense=DenseOptions.from_args(args), segmenter=args.segmenter)
        rows = speed(args.device, args.configs.split(","), [int(b) for b in args.batches.split(",")], args.runs, args.warmup)
        device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
        print(f"{'config':<10}{'input':>6}{'batch':>6}{'weights':>12}{'ms/batch':>10}{'ms/image':>10}{'images/s':>10}"
              f"   ({device}, {rows[0]['precision']}, PyTorch {torch.__version__})")
        for r in rows:
            print(f"{r['config']:<10}{r['input']:>6}{r['batch']:>6}{r['weights']:>12,}{r['median_ms']:>10.2f}{r['ms_per_image']:>10.2f}{r['images_per_s']:>10.1f}")
        atomic_write_json(args.json, {"command": command, "device": device, "torch": torch.__version__,
                                      "time": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows})
        print(f"wrote {args.json}")
        return 0
    except (KitError, TrackerError, tarfile.TarError) as exc:  # (a damaged bundle or checkpoint was a traceback; review 32)
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
