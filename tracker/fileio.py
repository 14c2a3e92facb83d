"""Safe reading and atomic writing of everything the tracker reads or produces.

Writers go through a temporary file in the destination folder, fsync, then ``os.replace``:
a run killed at any moment leaves either the old file or the new one, never half a file.
``safe_output_path`` keeps every output inside the folder the user chose.
"""
from __future__ import annotations

import errno
import functools
import glob
import hashlib
import io
import json
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO

try:  # POSIX: stand-ins locked by their writer (``locked_temp_file``)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

import cv2
import numpy as np

from tracker.errors import InputError, NotAFolderError, TrackerError, UsageError

# What a folder of pictures is read for (.jfif: what browsers save JPEGs as on Windows; user test 21).
# (the Netpbm family is decoded by OpenCV's own code in every build: FERET ships .ppm; user test 22)
# (Radiance .hdr as well: OpenCV's own decoder, float radiance read as other floats are; user test 24)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm",
                    ".hdr")
IMAGE_KINDS = "jpg, jfif, png, bmp, webp, tif, ppm/pgm/pbm/pnm, hdr"  # the same, for messages
# What a colour picture is written as (PGM and PBM hold grey or bits only, .hdr radiance: an output named so
# failed after the work; user test 23).  A .jfif is written as the JPEG it is.
WRITABLE_IMAGE_EXTENSIONS = tuple(e for e in IMAGE_EXTENSIONS if e not in (".pgm", ".pbm", ".hdr"))
_UMASK = os.umask(0)
os.umask(_UMASK)


class ImageReadError(InputError):
    """An input image cannot be used; the message is one line naming the file and the reason."""


class WriteError(TrackerError, OSError):
    """An output could not be written (read-only folder, full disk...).  One line naming the
    user's file, never the temporary file, with the system's reason and an optional note on
    what was kept.  ``errno`` is the original one (``errno.ENOSPC`` for a full disk)."""

    def __init__(self, path: Path, cause: OSError, note: str = ""):
        super().__init__(cause.errno, cause.strerror or str(cause), str(path))
        self.note = note

    def with_note(self, note: str) -> WriteError:
        err = WriteError(Path(self.filename), self, note)
        err.__cause__ = self.__cause__
        return err

    def __str__(self) -> str:
        return f"{self.filename}: cannot write ({self.strerror})" + (f"; {self.note}" if self.note else "")


# The stand-in of a file being written by atomic_write_bytes.  Named for this program: the clean-up
# of a killed run's (``remove_partial_outputs``) removed a user's own ".notes.draft.tmp" (user test 13).
TEMP_FILE = ".{name}.*.densereg-tmp"


# A file name's longest length in bytes on the usual file systems (ext4, APFS, NTFS: 255).
NAME_MAX = 255


def name_bytes(name: str) -> int:
    """A file name's length as the file system counts it (bytes; a name that is not UTF-8 decoded
    with surrogates, as Python gives it, counted as its own bytes: review 30b)."""
    return len(os.fsencode(name))


def fitting_name(name: str, extra: int) -> str:
    """`name` itself, or, where `extra` more bytes around it would not fit NAME_MAX, its start and
    a digest of the whole: a stand-in's name (``.NAME.XXXXXXXX.densereg-tmp``, a video's
    ``.NAME.XXXXXXXX.densereg-tmp.mp4``) must fit where its output's does (a legal 230-byte picture name stopped
    ``images``: "File name too long"; user test 21)."""
    room = NAME_MAX - extra
    if name_bytes(name) <= room:
        return name
    raw = os.fsencode(name)
    cut = raw[: room - 9]
    try:
        raw.decode("utf-8")
        head = cut.decode("utf-8", "ignore")  # cut at a character's boundary (macOS takes valid UTF-8 only)
    except UnicodeDecodeError:
        head = os.fsdecode(cut)  # not UTF-8: its bytes as they are
    return head + "~" + hashlib.sha1(raw).hexdigest()[:8]


def temp_name(name: str, extension: str = "") -> str:
    """The part of a stand-in's name (``TEMP_FILE``, then `extension`) that names its output (``fitting_name``)."""
    return fitting_name(name, name_bytes(TEMP_FILE.format(name="").replace("*", "x" * 8) + extension))


def locked_temp_file(path: Path, container: bool = False) -> tuple[int, str]:
    """A new stand-in of ``path`` (its descriptor and name), locked while that descriptor is open:
    the clean-up of a killed run's stand-ins (``_abandoned``) leaves a live writer's alone (a
    second ``video`` run of the same --csv deleted the first one's table in progress; review 26).
    `container`: its name ends in ``path``'s extension too (FFmpeg picks a video's container by
    it; a fixed ``.NAME.partial.mp4`` had two writers of one video write into one file, and a
    killed run's stayed for good: review 36)."""
    extension = path.suffix if container else ""
    prefix, suffix = TEMP_FILE.format(name=temp_name(path.name, extension)).split("*")
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix + extension, dir=path.parent)
    # mkstemp makes it 0600; the output it becomes gets the usual mode (a video written through a
    # writer's own file came out 0600, unreadable to others; user test 36)
    os.fchmod(fd, 0o666 & ~_UMASK)
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd, name


def _abandoned(path: Path, name: str = ".+") -> bool:
    """Whether ``path`` is a stand-in (of an output named `name`, a regex) whose writer is gone:
    named as ``locked_temp_file`` names them (mkstemp's 8 characters between name and suffix, so a
    stand-in of ``a.csv.bak`` is not one of ``a.csv``), and not locked by a live writer."""
    prefix, suffix = (re.escape(part) for part in TEMP_FILE.split("{name}.*"))
    if not re.fullmatch(f"{prefix}{name}\\.[a-z0-9_]{{8}}{suffix}(\\.[A-Za-z0-9]+)?", path.name) or not path.is_file():
        return False
    if fcntl is None:
        return True
    try:
        with open(path, "rb") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released as it closes
    except BlockingIOError:
        return False
    except OSError:
        return True  # unreadable: not a live writer's
    return True


class _Output:
    """The file ``atomic_file`` yields: its write errors name the output; an OSError the caller's
    block raises about something else (a camera, an input) passes through as it is."""

    def __init__(self, f: IO, path: Path):
        self._f, self._path = f, path

    def write(self, data):
        with _blamed_on(self._path):
            return self._f.write(data)


@contextmanager
def _blamed_on(path: Path) -> Iterator[None]:
    """An OSError in the block is a WriteError naming ``path`` (the user's file, not a temporary one)."""
    try:
        yield
    except WriteError:
        raise
    except OSError as exc:
        raise WriteError(path, exc) from exc


_holding = False  # inside ``interrupts_held`` (an inner block leaves the delivery to the outermost)


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM held off for the block and delivered when it ends: what the
    block saves (a video's index and rename, a run's tables) is saved whole, in a fraction of a
    second.  A camera's first Ctrl-C ends its run and starts the saving; a second one pressed
    then lost the finished tables and left the video's hidden partial file (review 26).
    Nested blocks deliver at the outermost one's end; a block that raises drops them (its own
    error ends the run); off the main thread (no signal handlers there) a plain block."""
    global _holding
    if _holding or threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    _holding = True
    for s in previous:
        signal.signal(s, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        _holding = False
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
    for s in dict.fromkeys(held):  # (in the order they came, once each) to the program's own handlers
        signal.raise_signal(s)


@contextmanager
def atomic_file(path: Path, mode: str = "wb") -> Iterator[_Output]:
    """A hidden temporary file beside ``path`` to write (``mode`` "wb" or "w": UTF-8 text, no
    newline translation), renamed onto ``path`` when the block ends, deleted on any exception:
    a long output (``video --csv/--json``) is written as it comes, not held in memory."""
    path = Path(path)
    tmp, made = None, []
    try:
        with _blamed_on(path):
            made = make_parents(path)
            fd, tmp = locked_temp_file(path)
            f = os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""}))
        with f:
            yield _Output(f, path)
            with _blamed_on(path):
                f.flush()
                os.fsync(f.fileno())
                if fcntl is not None:  # renamed while still open, so still locked: closed first, another
                    # run's clean-up could take the unlocked stand-in before the rename (review 37)
                    os.replace(tmp, path)
        if fcntl is None:  # (Windows: no locks, and an open file cannot be renamed)
            with _blamed_on(path):
                os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        remove_if_empty(made)
        raise


def make_parents(path: Path) -> list[Path]:
    """Create `path`'s missing folders; those it made, innermost first (``remove_if_empty``)."""
    path = Path(path)
    made = [p for p in path.parents if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    return made


def remove_if_empty(folders: list[Path]) -> None:
    """Remove `folders` (innermost first) while they are empty: a write that failed, or a check,
    leaves no folder it made (transfer with no face left --out's new folder; verify 37)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)


def file_digest(path: Path, whole: bool = False) -> str:
    """A file's size and a digest of its first and last MiB (`whole`: of all of it): what a
    resumed run compares to tell whether an input is still the one its outputs were made from (a
    copy or a move keeps it).  Pictures are hashed whole (~10 ms for 6 MB; an edit in the middle
    of a large one went unseen: user test 17), videos by their ends (hashing one would cost
    seconds).  OSError when the file cannot be read."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if whole:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        else:
            h.update(f.read(1 << 20))
            if size > 1 << 20:
                f.seek(max(1 << 20, size - (1 << 20)))
                h.update(f.read(1 << 20))
    return f"{size}:{h.hexdigest()[:32]}"


def check_writable(path: Path, keep_folder: bool = False) -> None:
    """Raise WriteError now if ``path`` could not be written later: long runs (``bench``) check
    their output before spending minutes.  Leaves no file behind, nor a folder it made unless
    `keep_folder` (the writer makes it when it writes)."""
    path = Path(path)
    made = []
    try:
        if path.is_dir():
            raise WriteError(path, IsADirectoryError(21, "it is a folder"))
        # a file where a folder of the path should be: mkdir says "File exists" (user test 37)
        above = next((p for p in path.parents if p.exists()), None)
        if above is not None and not above.is_dir():
            raise WriteError(path, NotADirectoryError(20, f"{above} is a file, not a folder"))
        made = make_parents(path)
        fd, tmp = locked_temp_file(path)  # as the writer will
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise WriteError(path, exc) from exc
    finally:
        if not keep_folder:
            remove_if_empty(made)


def check_outputs_apart(inputs: dict[str, Path | None], outputs: dict[str, Path | None]) -> None:
    """Raise a UsageError (one line) if an output file is one of the inputs or two outputs are
    one file: ``video clip.mp4 --out clip.mp4`` would replace the clip it reads, ``--out x --csv x``
    keep only the last written.  Keys are the options (``--out``), for the message; None: not given."""
    seen: dict[Path, str] = {Path(p).resolve(): name for name, p in inputs.items() if p is not None}
    given_in = set(seen)
    for name, p in outputs.items():
        if p is None:
            continue
        key = Path(p).resolve()
        if key in given_in:
            raise UsageError(f"{name} {p} is {seen[key]}: writing it would destroy that input; choose another file")
        if key in seen:
            raise UsageError(f"{name} and {seen[key]} are the same file {p}: one would overwrite the other")
        seen[key] = name


def check_output_folder(folder: Path, option: str) -> None:
    """Raise now, in one line naming ``folder``, if files could not be written in it later (it is
    a file, or read-only): not once per file after the work, naming a temporary file.  Creates
    the folder, so it exists even when nothing is written into it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotAFolderError(f"{option} {folder}: not a folder")
    try:
        check_writable(folder / "probe", keep_folder=True)
    except WriteError as exc:
        raise WriteError(folder, exc) from exc


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_ready(obj):
    """`obj` with numpy values as Python ones and every NaN or infinity as None: JSON has no NaN
    (Python writes a bare ``NaN`` that browsers' and most languages' parsers reject), and a
    missing landmark or an unscored metric reads as ``null`` everywhere."""
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_ready(obj.tolist())
    if isinstance(obj, np.generic):
        return json_ready(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(json_ready(obj), indent=1, allow_nan=False) + "\n")


def atomic_save_npz(path: Path, compressed: bool = True, **arrays) -> None:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def atomic_write_image(path: Path, image: np.ndarray) -> None:
    """Encode by the file extension (PNG when none), then write atomically."""
    ext = Path(path).suffix.lower() or ".png"
    ext = ".jpg" if ext == ".jfif" else ext  # (OpenCV's encoders do not know the name)
    try:
        ok, enc = cv2.imencode(ext, image)
    except cv2.error:  # unknown extension or unsupported channels/depth: a ValueError like the rest
        ok = False
    if not ok:
        raise InputError(f"{path}: cannot encode image as {ext}")
    atomic_write_bytes(path, enc.tobytes())


PARTIAL_DIR = ".{name}.densereg-partial-"  # prefix of a folder being filled by atomic_output_dir (named as TEMP_FILE)
PARTIAL_EXTRA = len(PARTIAL_DIR.format(name="")) + 8  # the bytes it and mkdtemp's 8 characters add to a name


@contextmanager
def atomic_output_dir(path: Path) -> Iterator[Path]:
    """A fresh hidden folder beside ``path`` to fill; when the block ends without an exception
    it becomes ``path`` in one rename (replacing an older ``path``), otherwise it is deleted.

    ``path`` is therefore complete or absent: a process killed inside the block leaves only the
    hidden folder, which ``remove_partial_outputs`` clears, and two processes doing the same work
    (a retried task whose first attempt still runs) never write into the same folder.  The
    folder is locked while it is filled, as the stand-ins of files are: a second run's clean-up
    into the same output folder deleted a live one, whose writer re-created it empty and
    finished a video without its first frames (user test 21).
    """
    path = Path(path)
    with partial_dir(path.parent, path.name) as tmp:
        yield tmp
        for attempt in (1, 2):
            if path.exists():
                discard_dir(path)
            try:
                os.rename(tmp, path)
                break
            except OSError as exc:
                # another attempt at the same work (a retried Ray task whose first still ran) put
                # its folder there between the two steps: once more (review 36)
                if attempt == 1 and exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    continue
                raise WriteError(path, exc) from exc  # naming the user's folder, not the hidden one


def discard_dir(path: Path) -> None:
    """Delete the folder ``path`` by first moving it, in one rename, into a hidden folder that
    ``remove_partial_outputs`` clears: deleting it in place, a run killed mid-way left a half-deleted
    video folder that every later run refused, or took for finished (review 35)."""
    path = Path(path)
    if not path.is_dir():
        return
    aside = Path(tempfile.mkdtemp(prefix=PARTIAL_DIR.format(name=fitting_name(path.name, PARTIAL_EXTRA)), dir=path.parent))
    try:
        os.rename(path, aside / "old")
    finally:
        shutil.rmtree(aside, ignore_errors=True)


@contextmanager
def partial_dir(parent: Path, name: str) -> Iterator[Path]:
    """A fresh hidden folder in `parent` for the outputs called `name`, locked while the block
    runs (through renames) and deleted after it, with whatever it still holds; the one a killed
    process leaves, ``remove_partial_outputs`` clears."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=PARTIAL_DIR.format(name=fitting_name(name, PARTIAL_EXTRA)), dir=parent))
    fd = _lock_folder(tmp)
    try:
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp creates 0700; outputs get the usual mode
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after a rename; the remains of a failure otherwise
        if fd is not None:
            os.close(fd)


def _lock_folder(folder: Path) -> int | None:
    """A descriptor holding `folder` locked (through renames: the lock is the folder's), or None
    where folders cannot be locked (no fcntl: Windows, where a folder cannot even be opened; a file
    system that refuses, NFS for one; review 30b): then a second run's clean-up can take it, as
    before.  Blocking: the clean-up's test of a lock holds it a moment."""
    if fcntl is None:
        return None
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
        os.close(fd)
        return None
    return fd


def lock_name(what: str) -> str:
    """The hidden file ``exclusive_use`` locks in a folder for a run of `what`."""
    return f".{what}.lock"


@contextmanager
def exclusive_use(folder: Path, what: str) -> Iterator[None]:
    """`folder` held by this run of `what` for the block (a hidden ``.WHAT.lock`` file, locked);
    another run of it into the same folder is refused in one line.  Two ``batch300vw`` runs with
    other options into one --out each took videos the other tracked as its own (user test 22).
    Where files cannot be locked (no fcntl, NFS), as before: unchecked."""
    folder = Path(folder)
    if fcntl is None:
        yield
        return
    lock = folder / lock_name(what)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(f"{folder} is in use by another {what} run: wait for it to end, or choose another folder") from None
        except OSError:
            break
        try:  # the file locked is still the one named so: a run ending meanwhile unlinks it, and a
            # third run would make and lock a new one beside this one's (review 36)
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        try:
            lock.unlink(missing_ok=True)  # (while still held: nothing of this run's stays behind)
        except OSError:  # a folder made read-only meanwhile: the run's own error is the one to say
            pass
        os.close(fd)


def remove_partial_outputs(folder: Path) -> None:
    """Delete what a killed process left in ``folder`` (not below it): the hidden folders of its
    ``atomic_output_dir`` blocks and the temporary files of its atomic writes; not those a live
    writer holds (locked)."""
    folder = Path(folder)
    for p in folder.glob(PARTIAL_DIR.format(name="*") + "*"):
        if p.is_dir() and not _held(p):
            shutil.rmtree(p, ignore_errors=True)
    _remove_abandoned(folder)


def _held(folder: Path) -> bool:
    """Whether a live ``atomic_output_dir`` block holds `folder` (its lock; not where folders
    cannot be locked, ``_lock_folder``)."""
    if fcntl is None:
        return False
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def remove_stale_temp_files(path: Path) -> None:
    """Delete the hidden stand-ins of ``path`` a killed write left (SIGKILL gives no time to clean
    up): for a command that writes a few named files and does not resume (``video``'s tables),
    where ``remove_partial_outputs`` over a whole folder would be too wide."""
    path = Path(path)
    for name in {temp_name(path.name), temp_name(path.name, path.suffix)}:  # (a video's stand-in's name is cut sooner)
        _remove_abandoned(path.parent, glob.escape(name), re.escape(name))


def _remove_abandoned(folder: Path, name_glob: str = "*", name: str = ".+") -> None:
    """Delete the stand-ins in `folder` of the outputs `name` (a regex; `name_glob` finds them) whose writers are gone."""
    for p in folder.glob(TEMP_FILE.format(name=name_glob) + "*"):  # (a video's stand-in ends in its extension too)
        if _abandoned(p, name):
            p.unlink(missing_ok=True)


def safe_output_path(out_dir: Path, relative: str | os.PathLike) -> Path:
    """`out_dir/relative`, refusing anything that would land outside `out_dir`."""
    rel = str(relative)
    if not rel or PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).is_absolute() or PureWindowsPath(rel).drive:
        raise InputError(f"refusing output name {rel!r}: not a relative path")
    parts = PurePosixPath(rel.replace("\\", "/")).parts
    if any(p in ("..", "") for p in parts):
        raise InputError(f"refusing output name {rel!r}: it would leave the output folder")
    base = Path(out_dir).resolve()
    target = (base / Path(*parts)).resolve()
    if base != target and base not in target.parents:
        raise InputError(f"refusing output name {rel!r}: it would leave the output folder")
    return Path(out_dir) / Path(*parts)


def _jpeg_cut_short(data: np.ndarray) -> bool:
    """True for a JPEG that ends before its end-of-image marker.

    Some OpenCV/libjpeg builds decode a cut JPEG into a half-grey picture with only a warning.
    The file is walked marker by marker from the start, so that bytes after the end-of-image
    marker (a phone's "motion photo" appends a whole MP4 there) are not read as the JPEG's: the
    last FF D9 and FF DA of the whole file were compared before, which rejected about half of
    such photos (review 26).  Inside a scan's entropy-coded data an FF byte is followed by 00
    (stuffing) or a restart marker; anything else ends the scan.  A structure this walk does not
    recognise is left to the decoder (False).
    """
    b = data.tobytes()
    if b[:2] != b"\xff\xd8":
        return False
    i, n = 2, len(b)
    while True:
        if i + 1 >= n:
            return True
        if b[i] != 0xFF:
            return False
        marker = b[i + 1]
        if marker == 0xD9:  # end of image
            return False
        if marker == 0xFF or 0xD0 <= marker <= 0xD8 or marker == 0x01:  # fill byte; markers without a length
            i += 1 if marker == 0xFF else 2
            continue
        if i + 4 > n:
            return True
        i += 2 + (b[i + 2] << 8 | b[i + 3])
        if marker == 0xDA:  # start of scan: its entropy-coded data runs to the next real marker
            while True:
                i = b.find(b"\xff", i)
                if i < 0 or i + 1 >= n:
                    return True
                if b[i + 1] == 0x00 or 0xD0 <= b[i + 1] <= 0xD7:
                    i += 2
                elif b[i + 1] == 0xFF:
                    i += 1
                else:
                    break


_QUIET_LOCK = threading.Lock()
_quiet = {"depth": 0, "level": None}  # how many quiet_opencv blocks are open, and the level before the first


@contextmanager
def quiet_opencv():
    """OpenCV's own warnings off (e.g. one per absent camera index); callers report the
    outcome themselves in one line.  OpenCV's level is one for the process: blocks open at once
    (a read-ahead thread decoding while the main thread does) share it, and the last to close
    puts back the level from before the first (each restoring its own could leave it silenced)."""
    with _QUIET_LOCK:
        if _quiet["depth"] == 0:
            _quiet["level"] = cv2.utils.logging.getLogLevel()
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        _quiet["depth"] += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _quiet["depth"] -= 1
            if _quiet["depth"] == 0:
                cv2.utils.logging.setLogLevel(_quiet["level"])


def decode_image(data: np.ndarray, flags: int, path: Path) -> np.ndarray | None:
    """``cv2.imdecode``, None where it cannot decode; OpenCV raises (not returns None) for a header
    over its 2^30-pixel limit, which stopped whole runs as an internal error (user test 21)."""
    try:
        return cv2.imdecode(data, flags)
    except cv2.error:
        raise ImageReadError(f"{path}: not decodable (OpenCV refused it: corrupt, or its size over OpenCV's limit of 2^30 "
                             "pixels)") from None


def read_image(path: Path, name: str | None = None) -> np.ndarray:
    """Any image file -> BGR uint8 (H,W,3).

    Grayscale is expanded, alpha dropped, 16-bit scaled to 8-bit (a Netpbm file from its declared
    maximum); non-ASCII paths work (decoded from bytes).  Raises ImageReadError with a one-line
    reason otherwise.  `name`: what warnings about its values call it (a numbered sequence's
    pattern, so that a clip warns once, not on every frame: user test 23); errors name the file.
    """
    img = to_bgr8(decode_file(path), name or str(path))
    if min(img.shape[:2]) < 2:
        raise ImageReadError(f"{path}: image too small ({img.shape[1]}x{img.shape[0]})")
    return img


def decode_file(path: Path) -> np.ndarray:
    """An image file decoded, in its own depth and channels (but a Netpbm file declaring another
    maximum than 255 or 65535 scaled from it to 8 bits), upright (EXIF).  Raises ImageReadError (one line) for
    a file that is missing, unreadable, empty, corrupt, or not an image.  What ``read_image`` reads;
    on its own where only the size matters (no conversion, no warnings)."""
    path = Path(path)
    try:
        data = np.fromfile(str(path), np.uint8)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except (IsADirectoryError, PermissionError, OSError) as exc:
        raise ImageReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if data.size == 0:
        raise ImageReadError(f"{path}: empty file")
    # Not IMREAD_UNCHANGED: OpenCV applies a photo's EXIF orientation under every other flag, and
    # a phone's portrait JPEG is stored sideways with the tag saying so.  These flags keep the
    # depth and grey, and drop alpha as ``to_bgr8`` would.
    with quiet_opencv():  # (its [ERROR] line, for a file the retry reads or one said unreadable in one line; user test 24)
        img = decode_image(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR, path)
        if img is None:  # a float BGRA TIFF decodes only unchanged (OpenCV 5.1; user test 24)
            img = decode_image(data, cv2.IMREAD_UNCHANGED, path)
    if img is None or _jpeg_cut_short(data):
        raise ImageReadError(f"{path}: not a decodable image (corrupt, truncated or not an image)")
    if (maxval := netpbm_maxval(data)) not in (None, 255, 65535):
        img = cv2.convertScaleAbs(img, alpha=255.0 / max(maxval, 1))
    return img


# How a picture of another depth is read, from a random sample of its values: floats whose core
# (5th to 95th percentile) lies within UNIT_CORE are 0-1 (numpy's and torch's habit), and so are
# those whose median is within 0-1 and core under DARK_WHITE (HDR highlights); values whose core
# lies within BYTE_CORE are 0-255, unless they are floats whose bulk (STRETCH_PERCENTILES) stays
# under DARK_WHITE, which read as 0-255 come out black (0-1 HDR with bright highlights, radiance
# 0-4: user test 23), and are not whole numbers (a dark 0-255 frame made float is not HDR: read
# so, it was blown out, and a fade-in flipped readings; review 33); otherwise the bulk is stretched to 0-255 (-1 to 1 data, review 30b; 12-bit
# values in int16).  The core, not the bulk: a sharpened 0-1 frame has more than 0.5% of its
# values beyond 0-1, and was stretched (washed out) instead of clipped (user test 23); the
# extremes, never: one hot pixel turned the picture black (user test 21).  The margins hold a
# bicubic resize's overshoot; not more below 0: a low-contrast -1 to 1 picture has only a few
# percent below -0.1, and clipping it at 0 loses its darker half unsaid, while stretching an
# extremely sharpened one (unsharp mask of amount 3) only washes it out, with a warning.  An int 0/1
# mask stays 0-255 (not 0-1).
CORE_PERCENTILES, STRETCH_PERCENTILES = (5.0, 50.0, 95.0), (0.5, 99.5)
UNIT_CORE, BYTE_CORE, DARK_WHITE = (-0.1, 2.0), (-25.5, 280.5), 16.0
# Clipping is said where more than the tails (0.5%) lie beyond a quarter white, or any value
# beyond one white: a resize's or a sharpening's overshoot is clipped unsaid (user test 22).
CLIP_TAIL_WHITES, OVERSHOOT_WHITES = 0.25, 1.0
SAMPLE_VALUES = 65536
# The depths OpenCV's arithmetic takes; the rest (bool, int64, float16...) go through float32.
_CV_DEPTHS = (np.int8, np.int16, np.int32, np.float32, np.float64)
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep  # (a caller's tracker_demo.py is not the package's; review 33)


def warn_caller(message: str) -> None:
    """``warnings.warn`` attributed to the first caller outside this package, however deep the
    call (a fixed stacklevel named the caller's caller for some entry points: user test 23)."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, stacklevel=level)


def netpbm_maxval(data: np.ndarray) -> int | None:
    """The maximum value of the raw values OpenCV returns for a grey or colour Netpbm file, None
    for any other file and for one OpenCV scales itself: it returns a binary PGM's raw values (a
    12-bit one, maxval 4095, read over 0-65535 came out black: user test 23), and an ASCII one's
    (P2/P3) scaled to 0-255 where its maxval is under 256 (scaled again, review 32)."""
    head = re.sub(rb"#[^\n\r]*", b" ", data[:1024].tobytes()).split(maxsplit=4)
    if len(head) >= 4 and head[0] in (b"P2", b"P3", b"P5", b"P6") and head[3].isdigit():
        maxval = int(head[3])
        return None if head[0] in (b"P2", b"P3") and maxval < 256 else maxval
    return None


def picture_array(img, name: str) -> np.ndarray:
    """`img` checked to be a picture, in uint8: 16-bit data scaled from its full range (with a
    warning where nearly all of it is under 4096); other depths as ``read_range`` says, the alpha of a
    4-channel picture on its own (stretched with the colours, transparent texels of a float texture
    came out faintly opaque: user test 22).  Raises ImageReadError (one line, naming `name`) for
    None (what ``cv2.imread`` returns for a file it cannot read), an empty array, or a shape that is
    neither (H,W) nor (H,W,1|3|4), with the transpose to use for a channel-first one.  Warnings
    name `name` and no values, so a video (one name) warns once, not on every frame."""
    if img is None:
        raise ImageReadError(f"{name} is None (cv2.imread returns None for a file it cannot read; "
                             "tracker.fileio.read_image says why)")
    if not isinstance(img, np.ndarray) or img.size == 0 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3, 4)):
        what = f"shape {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        channel_first = isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[0] in (1, 3, 4)
        hint = ("; channels come last: .transpose(1, 2, 0)" if channel_first else
                "; a file is read by tracker.fileio.read_image(path)" if isinstance(img, (str, os.PathLike)) else "")
        raise ImageReadError(f"{name} is not a picture ({what}; expected (H,W), (H,W,1), (H,W,3) or (H,W,4){hint})")
    if img.dtype == np.uint16:
        if np.percentile(_sample(img), STRETCH_PERCENTILES[1]) < 4096:  # (not the maximum: one hot pixel hid it; user test 24)
            warn_caller(f"{name}: 16-bit data below 4096 (8-, 10- or 12-bit values?) is read over 0-65535 and comes out "
                        "nearly black; scale it to the full range first")
        return cv2.convertScaleAbs(img, alpha=1 / 257.0).reshape(img.shape)
    if img.dtype == np.uint8:
        return img
    unit_type = img.dtype.kind in "fb"
    if img.dtype not in _CV_DEPTHS:
        img = img.astype(np.float32)
    low, high = _channel_extremes(img)
    if not (np.isfinite(low).all() and np.isfinite(high).all()):  # NaN and infinities read as 0 (one +inf: review 29c)
        img = np.nan_to_num(img, nan=0.0, posinf=0.0, neginf=0.0)
        low, high = _channel_extremes(img)
    if img.ndim == 3 and img.shape[2] == 4:
        parts = [(img[:, :, :3], low[:3].min(), high[:3].max(), name), (img[:, :, 3], low[3], high[3], f"{name} (alpha)")]
    else:
        parts = [(img, low.min(), high.max(), name)]
    ranges = []
    for values, least, most, label in parts:
        sample = _sample(values)
        # (whole-numbered floats are 0-255 data made float, never 0-1 HDR: a dark one was read as HDR
        # and blown out, and a fade-in flipped readings as it brightened; review 33)
        whole = unit_type and bool(np.all(sample == np.round(sample)))
        lo, hi, warning = read_range(np.percentile(sample, CORE_PERCENTILES + STRETCH_PERCENTILES),
                                     float(least), float(most), unit_type, whole)
        if warning:
            warn_caller(f"{label}: {warning}")
        ranges.append((lo, hi))
    if len(set(ranges)) == 1:  # one pass, rounding and saturating in OpenCV (3x faster than numpy's steps: user test 23)
        lo, hi = ranges[0]
        scale = 255.0 / (hi - lo)
        return cv2.addWeighted(img, scale, img, 0.0, -lo * scale, dtype=cv2.CV_8U).reshape(img.shape)
    (lo, hi), (alpha_lo, alpha_hi) = ranges
    los, spans = np.array([lo] * 3 + [alpha_lo], np.float32), np.array([hi - lo] * 3 + [alpha_hi - alpha_lo], np.float32)
    return np.clip(np.rint((img - los) * (255.0 / spans)), 0, 255).astype(np.uint8)


def read_range(percentiles, low: float, high: float, unit_type: bool, whole: bool = False) -> tuple[float, float, str | None]:
    """The values read as black and white, and a warning or None, for a picture whose values have
    the given CORE_PERCENTILES + STRETCH_PERCENTILES, extremes `low` and `high`, a float or bool
    type (`unit_type`) and, if floats, whole numbers only (`whole`); the rule is at UNIT_CORE."""
    core_lo, median, core_hi, bulk_lo, bulk_hi = (float(v) for v in percentiles)
    # (0-1 HDR whose highlights cover more than 5% of the picture: its median still within 0-1;
    # stretched, it came out 2.5-6x darker, and a clip flipped between the readings mid-way as a
    # highlight grew: user test 24)
    hdr = unit_type and not whole and core_lo >= UNIT_CORE[0] and median <= 1.0 and core_hi < DARK_WHITE
    # (whole numbers above 1 are 0-255: within UNIT_CORE, the darkest frames of a fade were blown
    # out and the reading flipped as it passed 2; review 35.  A 0/1 float mask stays 0-1.)
    readings = ((1.0, UNIT_CORE, unit_type and not (whole and high > 1.0)),
                (255.0, BYTE_CORE, not unit_type or whole or bulk_hi >= DARK_WHITE))
    for white, core, ok in readings:
        if ok and (core[0] <= core_lo and core_hi <= core[1] or white == 1.0 and hdr):
            tail, overshoot = CLIP_TAIL_WHITES * white, OVERSHOOT_WHITES * white
            clipped = bulk_lo < -tail or bulk_hi > white + tail or low < -overshoot or high > white + overshoot
            return 0.0, white, (f"mostly within 0-{white:g}: read as 0-{white:g}, the others clipped "
                                "(HDR highlights? sharpening?)" if clipped else None)
    warning = f"values are not 0-255 (or 0-1): stretched between their {STRETCH_PERCENTILES[0]:g}th and {STRETCH_PERCENTILES[1]:g}th percentiles"
    if bulk_hi - bulk_lo <= 1e-6 * max(1.0, abs(bulk_lo)):  # one value (an opaque alpha of 65535): white if above 0, else black
        return (0.0, bulk_hi, warning) if bulk_hi > 0 else (bulk_lo, bulk_lo + 1.0, warning)  # (a span of 0: review 32)
    return bulk_lo, bulk_hi, warning


def _channel_extremes(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each channel's minimum and maximum of a (H,W) or (H,W,C) array, down its rows first:
    numpy's reductions over one channel's strided view, or over axis 0 of (H*W,C), are 20x slower."""
    rows = np.ascontiguousarray(img).reshape(img.shape[0], -1)
    channels = img.shape[2] if img.ndim == 3 else 1
    return (rows.min(axis=0).reshape(-1, channels).min(axis=0),
            rows.max(axis=0).reshape(-1, channels).max(axis=0))


@functools.lru_cache(maxsize=8)
def _sample_pixels(height: int, width: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    # A random sample (fixed seed): percentiles over every value cost ~10 ms a video frame, and a
    # strided sample aliases with periodic patterns.  Kept per size: a video's frames share it.
    flat = np.random.default_rng(0).integers(0, height * width, count)
    return flat // width, flat % width


def _sample(values: np.ndarray) -> np.ndarray:
    """Up to SAMPLE_VALUES of `values` (H,W) or (H,W,C), a view or not: whole pixels, no copy of the picture."""
    channels = values.shape[2] if values.ndim == 3 else 1
    if values.size <= SAMPLE_VALUES:
        return values.reshape(-1)
    rows, cols = _sample_pixels(values.shape[0], values.shape[1], -(-SAMPLE_VALUES // channels))
    return values[rows, cols].reshape(-1)


def to_bgr8(img, name: str = "image") -> np.ndarray:
    """A decoded picture or a caller's frame -> BGR uint8 (H,W,3): grey expanded, alpha dropped,
    other depths read as ``picture_array`` reads them (16-bit from its full range: 10- or 12-bit
    data in uint16 comes out dark, scale it up first).  Raises ImageReadError (one line, naming
    `name`) for what is not a picture: None (what ``cv2.imread`` returns for a missing or
    unreadable file), an empty array, a shape that is neither (H,W) nor (H,W,1|3|4)."""
    img = picture_array(img, name)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.shape[2] == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    return img


def read_list(path: Path) -> list[str]:
    """The non-empty lines of a list file (``--list``: one relative path a line) that are not
    comments (``#``, as in ``--boxes`` files: ``images`` took one for a picture; user test 36); a
    UTF-8 byte order mark (Windows editors write one) is not part of the first line (review 26)."""
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the list ({getattr(exc, 'strerror', None) or exc})") from exc
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def listed_paths(path: Path, root: Path, root_option: str) -> list[Path]:
    """A list file's entries as paths relative to the folder `root` (outputs and scores are named
    by them), without repeats: relative lines as they are, absolute ones if they lie inside `root`
    (an InputError otherwise).  ``eval`` joined an absolute line to --pred as it was, which is the
    ground-truth file itself: every face scored perfectly (user test 13)."""
    out = {}
    for entry in read_list(path):
        rel = Path(entry)
        if rel.is_absolute():
            rel = _inside(rel, Path(root))
        else:  # (a ../ line was refused only later, as an output name; review 36)
            rel = Path(os.path.normpath(entry))
            rel = None if rel.parts[:1] == ("..",) else rel
        if rel is None:
            raise InputError(f"{path}: {entry} is not inside {root_option} {root} (list paths relative to it)")
        out[rel] = None
    return list(out)


def _inside(path: Path, root: Path) -> Path | None:
    """`path` relative to the folder `root`, as written or with the links of its folders (not of
    the file itself: a linked picture inside `root` is inside it; review 26) resolved; None if not inside."""
    for p, r in ((Path(os.path.abspath(path)), Path(os.path.abspath(root))), (path.parent.resolve() / path.name, root.resolve())):
        try:
            return p.relative_to(r)
        except ValueError:
            pass
    return None


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Sorted image files (``IMAGE_EXTENSIONS``, any case) in a folder; a dangling link with such a
    name is listed too, so that reading it reports it (``file not found``) rather than nothing."""
    folder = Path(folder)
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.suffix.lower() in IMAGE_EXTENSIONS and (p.is_file() or (p.is_symlink() and not p.exists())))
