"""``run_tracker`` / ``run_tracker.py`` / ``python -m tracker.cli``: one command line, one
subcommand per use.

Each command is a module of this package with ``register(subparsers)``, which adds its parser and
sets ``func`` (its ``run(args)``); ``main`` turns every expected failure (a
``tracker.errors.TrackerError``: bad input, missing model, bad option) into one line on stderr and
exit status 2, never a traceback; any other exception is a bug: one "internal error" line and
status 1 (the traceback with ``-v``).
"""
from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from tracker.cli import batch300vw, bench, demo, images, transfer, version, video, viewer
from tracker.cli import eval as evaluate
from tracker.cli.common import DOES_NOT_RESUME, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from tracker.cli.version import package_version
from tracker.errors import TrackerError, UsageError
from tracker.fileio import NAME_MAX

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a C tool whose reader went away

# In --help order; `viewer` also registers `webcam` (the viewer on a camera).
COMMANDS = [demo, images, evaluate, video, batch300vw, bench, viewer, transfer, version]


class _Parser(argparse.ArgumentParser):
    # argparse's own error() prints the whole usage block and calls sys.exit(2) from inside
    # parse_args; raising instead lets main() print one line and *return* the exit code.
    def error(self, message: str) -> None:
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _quiet_native_libraries() -> None:
    """FFmpeg and OpenCV print their own multi-line warnings (``moov atom not found``,
    ``[ WARN:0@0.1] ...``) beside the one line the command prints about the same problem, and Qt
    its own (``XDG_RUNTIME_DIR not set``, ``This plugin does not support propagateSizeHints()``:
    user test 25; its errors still come).  OpenCV's FFmpeg backend and Qt read their variables
    when first used; ``-v`` keeps them all."""
    import cv2

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    os.environ.setdefault("QT_LOGGING_RULES", "*.debug=false;*.info=false;*.warning=false")
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


@contextmanager
def sigterm_as_ctrl_c(handler=signal.default_int_handler) -> Iterator[None]:
    """SIGTERM (what ``timeout``, ``docker stop`` and schedulers send) takes Ctrl-C's path, a
    KeyboardInterrupt, so a command cleans up the same way after either; without this Python dies
    on the spot and leaves hidden partial files.  (`handler`: another answer, the viewer's
    ``signal.SIG_DFL``.)  A no-op off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _from_ctrl_c(exc: BaseException) -> bool:
    """Whether `exc` came out of a KeyboardInterrupt: a Ctrl-C (or SIGTERM) inside a native
    library's import (ONNX Runtime's) surfaces as that import's ImportError, or as the command's
    "not installed" error made from it; it is an interruption, not an internal error (user test 14).
    Read from the exception's own chain, not from a flag: a camera run ends with a Ctrl-C that is
    handled, and a later bug must still read as one (review 26)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="run_tracker", description="DenseReg face tracker: dense face correspondence, 68 landmarks, tracking.")
    ap.add_argument("-v", "--verbose", action="store_true", help="log debug information")
    ap.add_argument("--version", action="version", version=f"densereg-tracker {package_version()}",
                    help="print the version and exit (the `version` command also lists the engines)")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")  # sub-parsers inherit _Parser
    for command in COMMANDS:
        command.register(sub)
    for p in sub.choices.values():  # `run_tracker images -v ...` too; SUPPRESS keeps a -v given before the command
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log debug information")
    ap.set_defaults(command_names=tuple(sub.choices))  # every command, `webcam` too, for the no-command error
    return ap


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


@contextmanager
def opencv_threads(threads: int | None) -> Iterator[None]:
    """OpenCV's own thread pool held to ``--threads`` while a command runs: left at its default
    (every core), "1 thread" ran on ~1.3 cores (its resizes and warps; user test 15)."""
    import cv2

    before = cv2.getNumThreads()
    if threads:
        cv2.setNumThreads(threads)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns the process exit code: 0 ok, 1 some inputs failed (or an
    internal error), 2 a bad input or command line (a ``TrackerError``), 130 interrupted."""
    ap = build_parser()
    try:
        args = ap.parse_args(argv)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help: argparse printed it and exits 0
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    if not args.verbose:
        _quiet_native_libraries()
    if not getattr(args, "func", None):
        print(f"error: no command given; one of: {', '.join(args.command_names)} (see --help)", file=sys.stderr)
        return EXIT_USAGE
    try:
        with sigterm_as_ctrl_c(signal.SIG_DFL if getattr(args, "gui", False) else signal.default_int_handler), warnings.catch_warnings(), \
                opencv_threads(getattr(args, "threads", None)):
            warnings.showwarning = _one_line_warning  # the library's warnings, as the commands' own `warning:` lines
            return args.func(args)
    except KeyboardInterrupt:
        print(getattr(args, "interrupted", DOES_NOT_RESUME), file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if _from_ctrl_c(exc):
            print(getattr(args, "interrupted", DOES_NOT_RESUME), file=sys.stderr)
            return EXIT_INTERRUPTED
        return _failed(exc, args.verbose)


def name_too_long(filename) -> str:
    """What is too long in a path the file system refused (ENAMETOOLONG): its longest part, or
    the whole of it."""
    name = os.fsencode(filename or "")
    longest = max(name.split(b"/"), key=len)
    if len(longest) > NAME_MAX:
        return f"{os.fsdecode(name)}: name too long for the file system (a part of it is {len(longest)} bytes; most allow {NAME_MAX})"
    return f"{os.fsdecode(name)}: path too long for the file system ({len(name)} bytes)"


def _failed(exc: Exception, verbose: bool) -> int:
    """The exit status of a command that raised `exc` (not an interruption), said on stderr."""
    if isinstance(exc, TrackerError):  # what the user gave cannot be used: their problem to fix, in one line
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:  # a name the user gave, too long for the file system
        print(f"error: {name_too_long(exc.filename)}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, BrokenPipeError):  # `run_tracker eval ... | head`: the reader has all it wanted
        # Python would report the same error again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    # anything else is a bug: say so, and where to find the details
    if verbose:
        traceback.print_exception(exc)
        print(f"internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
    else:
        print(f"internal error: {type(exc).__name__}: {exc} (rerun with -v for the traceback)", file=sys.stderr)
    return EXIT_INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())
