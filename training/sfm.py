"""Reader for the Surrey Face Model (SFM) as distributed with eos.

The eos library serialises its ``MorphableModel`` and ``Blendshape`` objects with cereal's
little-endian binary archive.  The layout used by the files in ``shared/template/sfm`` is:

* ``sfm_shape_3448.bin``: ``uint32`` class version, then the shape ``PcaModel`` (mean,
  orthonormal basis, eigenvalues: each an Eigen matrix written as ``int32 rows, int32 cols``
  followed by column-major ``float32`` data; then the triangle list as ``uint64 n`` and
  ``n x 3 int32``), then an (empty) colour ``PcaModel`` in the same layout, then the texture
  coordinates.
* ``expression_blendshapes_3448.bin``: ``uint64 n``, then per blendshape ``uint64 len``, the
  name in ASCII, and the deformation as an Eigen column vector.

Parsing it ourselves keeps eos optional; ``tests/test_template.py`` checks the parser against
eos-py where it is installed.  The SFM is for non-commercial use only (University of Surrey).
"""
from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np

from tracker.fitting import MorphableModel

N_LANDMARKS = 68


class _Reader:
    def __init__(self, data: bytes, name: str):
        self.data, self.pos, self.name = data, 0, name

    def _take(self, fmt: str):
        try:
            values = struct.unpack_from(fmt, self.data, self.pos)
        except struct.error as exc:
            raise ValueError(f"{self.name}: truncated eos file at byte {self.pos}") from exc
        self.pos += struct.calcsize(fmt)
        return values[0]

    def u32(self) -> int:
        return self._take("<I")

    def u64(self) -> int:
        return self._take("<Q")

    def matrix(self) -> np.ndarray:
        rows, cols = self._take("<i"), self._take("<i")
        if rows < 0 or cols < 0 or self.pos + 4 * rows * cols > len(self.data):
            raise ValueError(f"{self.name}: bad matrix header {rows}x{cols} at byte {self.pos}")
        a = np.frombuffer(self.data, "<f4", rows * cols, self.pos).reshape(cols, rows).T
        self.pos += 4 * rows * cols
        return a.astype(np.float64)

    def triangles(self) -> np.ndarray:
        n = self.u64()
        if self.pos + 12 * n > len(self.data):
            raise ValueError(f"{self.name}: bad triangle count {n}")
        t = np.frombuffer(self.data, "<i4", 3 * n, self.pos).reshape(n, 3)
        self.pos += 12 * n
        return t.astype(np.int32)

    def string(self) -> str:
        n = self.u64()
        s = self.data[self.pos : self.pos + n].decode("ascii")
        self.pos += n
        return s


def read_shape_model(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean (3V,), orthonormal basis (3V,S), eigenvalues (S,), triangles (T,3) of an eos .bin."""
    r = _Reader(Path(path).read_bytes(), str(path))
    version = r.u32()
    if version != 1:
        raise ValueError(f"{path}: unsupported eos MorphableModel version {version}")
    mean, basis, eigenvalues = r.matrix()[:, 0], r.matrix(), r.matrix()[:, 0]
    triangles = r.triangles()
    if basis.shape[0] != mean.shape[0] or basis.shape[1] != eigenvalues.shape[0]:
        raise ValueError(f"{path}: inconsistent shape model dimensions")
    return mean, basis, eigenvalues, triangles


def read_blendshapes(path: Path) -> tuple[tuple[str, ...], np.ndarray]:
    """Names and deformations (3V,E) of an eos blendshapes .bin."""
    r = _Reader(Path(path).read_bytes(), str(path))
    names, columns = [], []
    for _ in range(r.u64()):
        names.append(r.string())
        columns.append(r.matrix()[:, 0])
    return tuple(names), np.stack(columns, axis=1)


def load_sfm(sfm_dir: Path) -> MorphableModel:
    sfm_dir = Path(sfm_dir)
    mean, basis, eigenvalues, triangles = read_shape_model(sfm_dir / "sfm_shape_3448.bin")
    names, expressions = read_blendshapes(sfm_dir / "expression_blendshapes_3448.bin")
    v = mean.shape[0] // 3
    scaled = basis * np.sqrt(eigenvalues)[None, :]
    return MorphableModel(
        mean=mean.reshape(v, 3),
        shape_basis=scaled.reshape(v, 3, -1),
        expression_basis=expressions.reshape(v, 3, -1),
        expression_names=names,
        triangles=triangles,
    )


def read_landmark_mapping(path: Path) -> dict[int, int]:
    """iBUG 1-based landmark number -> SFM vertex index, from eos's TOML mapping file."""
    mapping: dict[int, int] = {}
    section = ""
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "landmark_mappings" and (m := re.fullmatch(r"(\d+)\s*=\s*(\d+)", line)):
            mapping[int(m.group(1))] = int(m.group(2))
    return mapping


def read_contours(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Right and left model-contour vertex lists (from the temple down to the chin)."""
    d = json.loads(Path(path).read_text())["model_contour"]
    return np.array(d["right_contour"], np.int64), np.array(d["left_contour"], np.int64)


def read_reference_symmetry(path: Path) -> np.ndarray:
    """0-based mirror vertex of each of the reference mesh's vertices (first 845 of the SFM)."""
    values = [int(line.split()[0]) for line in Path(path).read_text().splitlines() if line.strip()]
    return np.array(values, np.int64) - 1
