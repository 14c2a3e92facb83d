"""Shipped model assets: paths and integrity.

Every file the runtime loads from ``tracker/assets`` is listed with its SHA-256 in
``MANIFEST.json`` (written by the commands that build the assets, quoted in their cards) and
checked when it is loaded: a corrupt, truncated or swapped file gives a clear error instead of
undefined behaviour.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from functools import cache
from pathlib import Path

from tracker.errors import TrackerError

ASSETS = Path(__file__).resolve().parent / "assets"
MANIFEST = ASSETS / "MANIFEST.json"
# Bundled so that every command, the viewer and the tests run without a webcam or data.
DEMO_IMAGE = ASSETS / "demo" / "astronaut.jpg"
DEMO_CLIP = DEMO_IMAGE.with_suffix(".mp4")  # made from the still by tracker.tools.democlip (moves, occluder, face leaves)
TEXTURE_DIR = ASSETS / "textures"  # UV-space textures for face transfer (made by tracker.tools.textures)


def texture_path(name: str | Path) -> Path:
    """A ``--texture`` argument as a file: the path as given where it exists, else a bundled
    texture by its name, with or without ``.png`` (``--texture grid``): the README's
    ``tracker/assets/textures/grid.png`` exists only in a checkout (user test 25)."""
    path = Path(name)
    try:
        if path.exists() or path.parent != Path("."):
            return path
        return next((t for t in (TEXTURE_DIR / path.name, TEXTURE_DIR / f"{path.name}.png") if t.is_file()), path)
    except OSError as exc:  # a name too long for the file system (with .png added too: verify 38): a traceback (review 37b)
        # (argparse says an ArgumentTypeError's own words; a ValueError as "invalid texture_path value")
        raise argparse.ArgumentTypeError(f"{name}: {exc.strerror}") from None


def bundled_textures() -> list[str]:
    return sorted(p.stem for p in TEXTURE_DIR.glob("*.png"))


def checkout_root() -> Path | None:
    """The project checkout this package runs from (the project's pyproject.toml beside the
    package, installed editable or not at all); None when it was installed from a wheel, where
    the folder above the package is site-packages: nothing is to be written there."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() else None


class AssetError(TrackerError, RuntimeError):
    """A model asset is missing or does not match its recorded SHA-256."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(manifest: Path = MANIFEST) -> dict[str, str]:
    return json.loads(manifest.read_text()) if manifest.exists() else {}


def record(path: Path, manifest: Path = MANIFEST) -> str:
    """Add or update a file's SHA-256 in the manifest (used by the asset builders)."""
    from tracker.fileio import atomic_write_json

    entries = read_manifest(manifest)
    digest = sha256(path)
    entries[Path(path).name] = digest
    atomic_write_json(manifest, dict(sorted(entries.items())))
    _verified.cache_clear()
    return digest


def forget(path: Path, manifest: Path = MANIFEST) -> None:
    """Drop a file that is no longer made from the manifest (an asset builder's)."""
    from tracker.fileio import atomic_write_json

    entries = read_manifest(manifest)
    if entries.pop(Path(path).name, None) is not None:
        atomic_write_json(manifest, entries)
    _verified.cache_clear()


@cache
def _verified(path: Path, manifest: Path) -> Path:
    if not path.exists():
        raise AssetError(f"{path}: model asset missing (reinstall, or rebuild it with the command in its card)")
    expected = read_manifest(manifest).get(path.name)
    if expected is None:
        raise AssetError(f"{path}: not listed in {manifest.name}; refusing to load an unverified asset")
    if sha256(path) != expected:
        raise AssetError(f"{path}: SHA-256 mismatch with {manifest.name} (corrupt or replaced file)")
    return path


def verified_asset(name: str, folder: Path = ASSETS) -> Path:
    """Path of an asset after checking its SHA-256 against the folder's manifest."""
    return _verified(Path(folder) / name, Path(folder) / "MANIFEST.json")
