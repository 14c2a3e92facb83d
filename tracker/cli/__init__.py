"""The ``run_tracker`` command-line app: ``app`` (the parser and the error policy), ``common``
(options shared by commands), and one thin module per command.  Library code never imports this
package; a command parses its options, opens its source and writers, and runs the library.

This module itself stays light: the console script imports it, and ``main`` loads the app (~1 s:
OpenCV, numpy, every command's modules) where a Ctrl-C or SIGTERM can be answered."""
from __future__ import annotations

import signal
import sys
import threading


def main(argv: list[str] | None = None) -> int:
    """``tracker.cli.app.main``.  A Ctrl-C or SIGTERM while the app loads is one line and exit
    status 130, not a traceback or a silent 143 (user test 14)."""
    here = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if here else None
    try:
        from tracker.cli.app import main as run

        return run(argv)  # (each command sets its own answer to SIGTERM while it runs)
    except KeyboardInterrupt:  # while loading or parsing: a command answers one during its run itself
        print("interrupted while starting; nothing was done", file=sys.stderr)
        return 130
    finally:
        if here:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def build_parser():
    """The ``run_tracker`` parser (``tracker.cli.app.build_parser``)."""
    from tracker.cli.app import build_parser as build

    return build()


__all__ = ["build_parser", "main"]
