"""The project's own errors: one base class, so a caller (the CLI first) can tell a problem with
what the user gave (a file that cannot be read or written, a bad box file, a missing model, a
bad option) from a bug.  ``run_tracker`` prints a ``TrackerError`` as one line and exits 2; any
other exception is a bug: exit 1 with a hint to rerun with ``-v`` for the traceback.

Subclasses also derive from the builtin that callers already catch (``except ValueError`` around
a .pts read, ``except OSError`` around a write), so code written against the builtins keeps
working.  This module imports nothing, so every package (``engines`` too) can use it; it also
holds the two helpers messages share, ``count_of`` and ``install_hint``.
"""
from __future__ import annotations


def count_of(n: int, noun: str) -> str:
    """``3 images``, ``1 image``: a count with its noun in the right number (regular plurals)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def skipped_frames(skipped: int) -> str:
    """The closing line's clause for a source's skipped frames ('' for none): unreadable ones, or
    of another size than a sequence's (counted as unreadable before; user test 14)."""
    return f", {count_of(skipped, 'frame')} skipped (the warnings say why)" if skipped else ""


def install_hint(extra: str) -> str:
    """How to add one of the package's extras, in the form that applies: in a checkout (this
    package beside the project's pyproject.toml, installed editable or not at all) the editable
    form; installed from a wheel, by the package's name, pip taking the extra's dependencies from
    the installed metadata (in a checkout the name would send pip to an index for a project this
    one does not publish).  Not from the installed metadata: a checkout's own egg-info, first on
    the path, looks like an install from an index."""
    from tracker.assets import checkout_root

    return f"pip install -e '.[{extra}]'" if checkout_root() else f"pip install 'densereg-tracker[{extra}]'"


class TrackerError(Exception):
    """Base of every error the project raises on purpose; the message is one line for the user."""


class InputError(TrackerError, ValueError):
    """An input (image, video, annotation, box, option value) cannot be used."""


class ConfigError(InputError):
    """A ``TrackerConfig`` field has a value outside what it allows (the message names them)."""


class MissingInputError(TrackerError, FileNotFoundError):
    """A file or folder the user named does not exist, or holds nothing to work on."""


class NotAFolderError(TrackerError, NotADirectoryError):
    """A path the user gave as a folder is not one."""


class UsageError(InputError):
    """A bad command line (a missing option, options that do not go together)."""


class SourceError(InputError):
    """A frame source (camera, video, picture) cannot be opened or read; one line."""
