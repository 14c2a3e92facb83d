"""Face transfer: paint a texture defined in the template's UV space onto tracked faces, and
unwrap a photographed face into that space (DenseReg paper §4: anything defined on the
template transfers to the image through the regressed UV).

Texture convention (shared with ``tracker.parts``' part map): a texture of W x H pixels has
``x = u_h * W`` (u_h = 0 at the left) and ``y = (1 - u_v) * H`` (the top of the head at row 0),
pixel centres at +0.5.  A 4-channel (BGRA) texture blends by its alpha as well, so a face
paint can leave skin visible between its strokes.

Everything is numpy/OpenCV on one face's ``part_maps`` (``DenseMaps``, crop pixels: the template
fitted to its landmarks with ``TrackerConfig.template_maps``, else DenseReg's own) and
``crop_to_image`` (2,3), which every ``FaceResult`` has.  Paint and unwrapping keep to the
pixels that show the face itself: the foreground mask, times the face's ``visibility`` when the
Tracker computed it (``TrackerConfig.visibility``; ``tracker.occlusion``: not a hand, an object
or hair over the face).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np

from tracker.crop import crop_patch
from tracker.densemaps import DenseMaps
from tracker.errors import InputError
from tracker.fileio import ImageReadError, decode_image, picture_array, quiet_opencv, read_image, to_bgr8, warn_caller
from tracker.parts import uv_cells

if TYPE_CHECKING:
    from tracker.pipeline import FrameResult, Tracker

ColorMatch = Literal["none", "shading", "lab"]
COLOR_MATCHES: tuple[str, ...] = ("none", "shading", "lab")
# Below 1 a little of the real skin shows through, which reads as paint on a face rather than
# a sticker on top of it; the viewer and the `transfer` command share this default.
DEFAULT_STRENGTH = 0.85


@dataclass(frozen=True)
class FaceRegion:
    """A face's dense maps resampled onto an axis-aligned patch of the image.

    x0, y0: the patch's top-left corner in the image; uv: (2,h,w) float32; alpha: (h,w) float32
    blend weight in [0,1] (0 off the face, feathered at its edge)."""

    x0: int
    y0: int
    uv: np.ndarray
    alpha: np.ndarray

    @property
    def slices(self) -> tuple[slice, slice]:
        h, w = self.alpha.shape
        return slice(self.y0, self.y0 + h), slice(self.x0, self.x0 + w)


# -- pure numerics ---------------------------------------------------------------------------


def feathered_alpha(fg: np.ndarray, threshold: float = 0.5, feather: float = 0.06) -> np.ndarray:
    """Blend weight from a foreground probability map (S,S): 0 wherever fg <= threshold, rising
    smoothly to 1 over about ``feather * S`` pixels inside the face's outline.

    The mask is eroded before blurring so the blur's fade stays inside the face; multiplying by
    the hard mask again guarantees nothing outside the face is ever touched, however the
    predicted edge looks.  Only the outline fades: holes inside the face (an open mouth) are
    filled before the erosion and cut out sharply after, since fading from the mouth's edge too
    took the lips with it (the face paint's red lips got ~0.2 of their weight; user test 8)."""
    mask = (np.nan_to_num(fg) > threshold).astype(np.float32)
    radius = max(1, int(round(feather * fg.shape[0])))
    if radius > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        eroded = cv2.erode(fill_mask_holes(mask), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        soft = cv2.GaussianBlur(eroded, (0, 0), radius / 2)
    else:
        soft = mask
    return np.clip(soft, 0.0, 1.0) * mask


def fill_mask_holes(mask: np.ndarray) -> np.ndarray:
    """A 0/1 mask with every background region that does not reach the border set to 1."""
    outside = np.pad(mask.astype(np.uint8), 1)
    cv2.floodFill(outside, None, (0, 0), 2)  # the background connected to the (padded) border
    return (outside[1:-1, 1:-1] != 2).astype(mask.dtype)


def face_region(maps: DenseMaps, crop_to_image: np.ndarray, shape: tuple[int, ...], feather: float = 0.06,
                threshold: float = 0.5, visibility: np.ndarray | None = None) -> FaceRegion | None:
    """Resample UV and blend weight from the crop onto the image patch the crop covers.

    The blend weight is the feathered foreground times ``visibility`` (S,S) when given.
    Sampling the texture at *image* resolution (after warping the smooth UV field) keeps it
    sharp when the face is larger than the network's crop.  None when the crop is off-image."""
    patch = crop_patch(crop_to_image, maps.fg.shape[0], shape)
    if patch is None:
        return None
    m, size = patch.to_patch, patch.shape[::-1]
    uv = cv2.warpAffine(np.ascontiguousarray(np.nan_to_num(maps.uv).transpose(1, 2, 0)), m, size, flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
    weight = feathered_alpha(maps.fg, threshold, feather)
    if visibility is not None:
        weight = weight * visibility
    alpha = cv2.warpAffine(weight, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return FaceRegion(patch.x0, patch.y0, uv.transpose(2, 0, 1), alpha)


def sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Texture colours (h,w,C) float32 at UV coordinates (2,h,w) (bilinear; edges repeat)."""
    th, tw = texture.shape[:2]
    map_x = (uv[0] * tw - 0.5).astype(np.float32)
    map_y = ((1.0 - uv[1]) * th - 0.5).astype(np.float32)
    out = cv2.remap(texture.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out if out.ndim == 3 else out[..., None]


SHADING_SIDE = 256  # the largest side the shading's smoothed lighting is made at (a 640x480 face's patch is smaller)


def match_colors(source: np.ndarray, target: np.ndarray, weight: np.ndarray, mode: ColorMatch) -> np.ndarray:
    """Adapt texture colours ``source`` (h,w,3 BGR float 0..255) to the face in ``target``
    (h,w,3 uint8) over the pixels where ``weight`` (h,w) > 0.5.

    ``lab``: mean and std of each Lab channel of the source become the target's (a photographed
    face texture takes on the target's skin tone and contrast).  ``shading``: the source keeps
    its colours and is multiplied by the target's smoothed relative luminance (paint takes on
    the target's lighting).  ``none``: unchanged."""
    region = weight > 0.5
    if mode == "none" or region.sum() < 16:
        return source
    if mode == "shading":
        # L from the 8-bit conversion (a table lookup, 3x faster than float Lab on a 4K face's
        # patch; within 0.5 of 100 of the float L, and only its smoothed ratio is used)
        lum = cv2.cvtColor(target, cv2.COLOR_BGR2Lab)[..., 0].astype(np.float32) * np.float32(100 / 255)
        # Smooth over ~3% of the patch: lighting and shadows stay, skin texture and edges go.  A
        # field that smooth is made on the patch shrunk to SHADING_SIDE and enlarged again: on a
        # 4K face (a 1,200 px patch) the full-size blurs took 0.3 s a frame.
        h, w = region.shape
        k = min(1.0, SHADING_SIDE / max(h, w))
        size = (max(1, round(w * k)), max(1, round(h * k)))
        def shrunk(a: np.ndarray) -> np.ndarray:
            return a if k == 1.0 else cv2.resize(a, size, interpolation=cv2.INTER_AREA)
        sigma = max(1.0, 0.03 * max(h, w)) * k
        inside = region.astype(np.float32)
        num = cv2.GaussianBlur(shrunk(cv2.multiply(lum, inside)), (0, 0), sigma)
        den = cv2.GaussianBlur(shrunk(inside), (0, 0), sigma)
        smooth = num / np.maximum(den, 1e-3)
        if k < 1.0:
            smooth = cv2.resize(smooth, (w, h), interpolation=cv2.INTER_LINEAR)
        mean = cv2.mean(lum, mask=region.view(np.uint8))[0]  # in C: numpy's lum[region] copied a 4K face's pixels first
        gain = np.clip(smooth / max(mean, 1e-3), 0.2, 2.0)
        return np.clip(source * gain[..., None], 0, 255, out=np.empty(source.shape, np.float32))
    if mode != "lab":
        raise InputError(f"unknown colour matching {mode!r} (choose from {', '.join(COLOR_MATCHES)})")
    src_lab = cv2.cvtColor(np.clip(source, 0, 255).astype(np.float32) / 255.0, cv2.COLOR_BGR2Lab)
    tgt_lab = cv2.cvtColor(target.astype(np.float32) / 255.0, cv2.COLOR_BGR2Lab)
    s, t = src_lab[region], tgt_lab[region]
    scale = t.std(0) / np.maximum(s.std(0), 1e-3)
    out = (src_lab - s.mean(0)) * np.minimum(scale, 3.0) + t.mean(0)  # capped: a flat texture must not explode
    out[..., 0] = np.clip(out[..., 0], 0, 100)
    return np.clip(cv2.cvtColor(out.astype(np.float32), cv2.COLOR_Lab2BGR) * 255.0, 0, 255)


def composite(target: np.ndarray, colors: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """target (h,w,3 uint8) blended towards colors (h,w,3 float) by alpha (h,w) in [0,1]:
    OpenCV's blend in one threaded pass (3x faster than numpy's on a 4K face's patch; it rounds
    to even and divides by the weights' sum + 1e-5: at most 1 grey level apart, on 0.1% of pixels)."""
    a = alpha.astype(np.float32)
    out = cv2.blendLinear(target.astype(np.float32), colors.astype(np.float32, copy=False), 1.0 - a, a)
    return cv2.convertScaleAbs(out)  # rounds and saturates to uint8 (values are >= 0)


def as_texture(texture, name: str = "texture") -> np.ndarray:
    """A caller's texture array as BGR or BGRA uint8 (H,W,3|4), alpha kept: grey expanded, other
    depths read as ``tracker.fileio.picture_array`` reads them (16-bit from 0-65535, warned
    where all of it is under 4096; floats as 0-1 when they lie within it, a resize's overshoot
    included: read as 0-255, a float texture painted the face black, user test 19).  Raises ImageReadError (one line) for what is
    not a channel-last picture: a (3,H,W) array painted meaningless colours (user test 18)."""
    texture = picture_array(texture, name)
    if texture.ndim == 3 and texture.shape[2] == 1:
        texture = texture[:, :, 0]
    return cv2.cvtColor(texture, cv2.COLOR_GRAY2BGR) if texture.ndim == 2 else texture


def render_texture(frame: np.ndarray, face, texture: np.ndarray, strength: float = 1.0, match: ColorMatch = "shading",
                   feather: float = 0.06) -> np.ndarray:
    """A copy of ``frame`` (BGR uint8) with ``texture`` (UV space, BGR or BGRA) rendered on
    ``face`` (a FaceResult), blended by strength x feathered foreground x the face's
    visibility (when it has one) x texture alpha; colours adapted to the face by ``match``
    (see ``match_colors``).  ``frame`` may be anything ``Tracker.track`` takes (grey, BGRA,
    16-bit ...: read as ``tracker.fileio.to_bgr8`` reads it; it crashed or mixed scales; user test 14);
    ``texture`` anything ``as_texture`` takes; ``strength`` in [0, 1] (an InputError otherwise, as
    the command's ``--strength``: NaN painted the whole square white, 5 was read as 1; user test 37)."""
    if not 0.0 <= float(strength) <= 1.0:
        raise InputError(f"strength {strength}: must be between 0 and 1")
    out = to_bgr8(frame, "frame").copy()
    texture = as_texture(texture)
    region = face_region(face.part_maps, face.crop_to_image, out.shape, feather, visibility=face.visibility)
    if region is None or strength <= 0:
        return out
    sampled = sample_texture(texture, region.uv)
    alpha = region.alpha * float(strength)
    if sampled.shape[2] == 4:
        alpha = alpha * np.clip(sampled[..., 3] / 255.0, 0.0, 1.0)
    colors = sampled[..., :3] if sampled.shape[2] >= 3 else np.repeat(sampled, 3, axis=2)
    rows, cols = region.slices
    target = out[rows, cols]
    colors = match_colors(colors, target, region.alpha * (alpha > 0), match)
    out[rows, cols] = composite(target, colors, alpha)
    return out


def unwrap_face(image: np.ndarray, face, size: int = 256, supersample: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Unwrap ``face`` from ``image`` into a (size,size,3) BGR texture in UV space.

    Splats image colours at their predicted UVs (sampled on a grid ``supersample`` x finer than
    the texture so a frontal face leaves few gaps), closes pinholes from neighbours, fills the
    side of the face turned away from the camera from its mirror image (u_h -> 1-u_h: the
    template is symmetric), and inpaints what is left.  Pixels the face's visibility marks as
    not face (hair over the forehead, a hand) are left out, so the texture shows skin there.
    Returns (texture, coverage) where coverage (size,size) bool marks texels seen in the photo
    (after closing pinholes).  ``image``: anything ``Tracker.track`` takes (``to_bgr8``)."""
    size, supersample = _whole(size, "size", MAX_TEXTURE_SIDE), _whole(supersample, "supersample", 8)  # (size 0: a ZeroDivisionError; user test 37)
    image = to_bgr8(image, "image")
    maps, crop_to_image = face.part_maps, face.crop_to_image
    n = size * supersample
    s = maps.fg.shape[0]
    # A regular grid of n x n sample points over the crop: UV and fg by bilinear resize, image
    # colours by remapping the image at the points' image positions.
    grid = (np.arange(n, dtype=np.float32) + 0.5) * (s / n) - 0.5
    gx, gy = np.meshgrid(grid, grid)
    m = crop_to_image.astype(np.float32)
    map_x = m[0, 0] * gx + m[0, 1] * gy + m[0, 2]
    map_y = m[1, 0] * gx + m[1, 1] * gy + m[1, 2]
    colors = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    uv = cv2.resize(np.nan_to_num(maps.uv).transpose(1, 2, 0), (n, n), interpolation=cv2.INTER_LINEAR)
    weight = feathered_alpha(maps.fg, feather=0.02)
    if face.visibility is not None:
        weight = weight * face.visibility
    fg = cv2.resize(weight, (n, n), interpolation=cv2.INTER_LINEAR)
    inside = (fg > 0.5) & (map_x >= 0) & (map_y >= 0) & (map_x <= image.shape[1] - 1) & (map_y <= image.shape[0] - 1)
    texture, seen = splat(uv[..., 0][inside], uv[..., 1][inside], colors[inside].astype(np.float32), size)
    texture, seen = close_pinholes(texture, seen)
    return fill_holes(texture, seen), seen


def _whole(value, name: str, most: int) -> int:
    """`value` as an int from 1 to `most` (a numpy integer or 64.0 too), else an InputError (NaN,
    None, 0; 100,000 would have allocated 149 GiB; verify 37)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not (number.is_integer() and 1 <= number <= most):
        raise InputError(f"unwrap_face: {name} {value!r} must be a whole number from 1 to {most}")
    return int(number)


def splat(u_h: np.ndarray, u_v: np.ndarray, colors: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Average the colours (N,3) that land on each texel of a (size,size) texture.
    Returns (texture float32 with zeros where nothing landed, seen bool)."""
    row, col = uv_cells(u_h, u_v, size)
    idx = row * size + col
    count = np.bincount(idx, minlength=size * size).astype(np.float32)
    sums = np.stack([np.bincount(idx, colors[:, c], minlength=size * size) for c in range(colors.shape[1])], -1)
    seen = count > 0
    texture = np.zeros((size * size, colors.shape[1]), np.float32)
    texture[seen] = sums[seen] / count[seen, None]
    return texture.reshape(size, size, -1), seen.reshape(size, size)


def close_pinholes(texture: np.ndarray, seen: np.ndarray, radius: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Fill texels within ``radius`` of seen ones by normalised convolution (the average of the
    seen neighbours), which removes the sampling gaps of a stretched face without inventing
    large areas."""
    k = 2 * radius + 1
    w = cv2.blur(seen.astype(np.float32), (k, k), borderType=cv2.BORDER_CONSTANT)
    avg = cv2.blur(texture * seen[..., None], (k, k), borderType=cv2.BORDER_CONSTANT) / np.maximum(w, 1e-6)[..., None]
    fill = ~seen & (w > 0.2)  # at least a fifth of the neighbourhood seen
    out = texture.copy()
    out[fill] = avg[fill]
    return out, seen | fill


def fill_holes(texture: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Complete a partial UV texture: mirror (u_h -> 1-u_h) first, inpaint the rest."""
    out = texture.copy()
    mirrored = ~seen & seen[:, ::-1]
    out[mirrored] = texture[:, ::-1][mirrored]
    known = seen | mirrored
    out8 = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if known.all() or not known.any():
        return out8
    return cv2.inpaint(out8, (~known).astype(np.uint8), 5, cv2.INPAINT_TELEA)


MAX_TEXTURE_SIDE = 2048  # a face is rarely 1000 px in a frame: more texels only cost memory (8000 px: ~1 GB)


def load_texture(path) -> np.ndarray:
    """A texture file as BGR or BGRA uint8 (alpha kept: it masks the paint), shrunk to at most
    ``MAX_TEXTURE_SIDE`` on its long side."""
    if not isinstance(path, (str, os.PathLike)):  # (an array raised pathlib's TypeError; user test 38)
        raise InputError(f"load_texture takes a file's path, not {type(path).__name__}: give an array to render_texture as it is")
    path = Path(path)
    data = np.fromfile(str(path), np.uint8) if path.is_file() else None
    if data is None or data.size == 0:
        from tracker.assets import bundled_textures

        raise ImageReadError(f"{path}: texture not found or empty (bundled, by name: {', '.join(bundled_textures())})")
    with quiet_opencv():  # (OpenCV's own [ERROR] line beside ours)
        tex = decode_image(data, cv2.IMREAD_UNCHANGED, path)
    if tex is None:
        raise ImageReadError(f"{path}: not a decodable image")
    tex = as_texture(tex, str(path))
    if tex.shape[2] == 4 and not tex[:, :, 3].any():  # exported by mistake: the transfer "worked" and changed nothing
        warn_caller(f"{path}: the texture is fully transparent (alpha 0 everywhere): nothing will be painted")
    scale = MAX_TEXTURE_SIDE / max(tex.shape[:2])
    if scale < 1:
        tex = cv2.resize(tex, (max(1, round(tex.shape[1] * scale)), max(1, round(tex.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    return tex


@dataclass(frozen=True)
class Look:
    """How the texture is blended: strength in [0,1] and colour matching (``match_colors``)."""

    texture: np.ndarray
    strength: float
    match: ColorMatch


def apply_look(frame: np.ndarray, result: FrameResult, look: Look) -> np.ndarray:
    """The frame (BGR uint8, read as ``to_bgr8`` reads it, with or without a face: review 26) with
    the texture on every face, in reverse order of ``result.faces`` (a picture's best face, or
    video's oldest track, ends on top)."""
    out = to_bgr8(frame, "frame")
    for face in reversed(result.faces):
        out = render_texture(out, face, look.texture, look.strength, look.match)
    return out


def unwrap_source_face(path: Path, tracker: Tracker) -> np.ndarray:
    """The photo's main face (``main_face``: the one ``images`` writes to its .pts; it was the best
    detector score, another person in a group photo: review 36) as a UV-space texture (holes
    mirrored and inpainted)."""
    from tracker.writers import main_face

    image = read_image(path)
    face = main_face(tracker.track(image).faces, image.shape[1::-1])
    if face is None:
        raise InputError(f"{path}: no face found in the --source-face photo")
    texture, _ = unwrap_face(image, face)
    return texture
