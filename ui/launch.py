"""Starting the viewer from the command line, without importing Qt until it is known to work.

Qt aborts the whole process (qFatal) when it cannot open a display, and a missing PyQt5 is an
ImportError deep in a traceback; ``display_problem`` turns both into one sentence first.
"""
from __future__ import annotations

import os
import sys
from importlib.util import find_spec
from pathlib import Path

# Platforms that need no display server.
HEADLESS_PLATFORMS = ("offscreen", "minimal", "vnc", "eglfs", "linuxfb")


def display_problem(environ: dict[str, str] | None = None) -> str | None:
    """Why a Qt window cannot open here, or None when it can."""
    env = os.environ if environ is None else environ
    if find_spec("PyQt5") is None:
        return "the viewer needs PyQt5: pip install -e '.[ui]'"
    platform = env.get("QT_QPA_PLATFORM", "").split(":")[0]
    if platform in HEADLESS_PLATFORMS or not sys.platform.startswith("linux"):
        return None
    if platform == "wayland" or (not platform and env.get("WAYLAND_DISPLAY")):
        return None
    display = env.get("DISPLAY", "")
    if not display:
        return "no display: DISPLAY is not set (run it on a desktop, over ssh -X, or with QT_QPA_PLATFORM=offscreen)"
    if display.startswith(":"):
        # A local X server listens on /tmp/.X11-unix/X<N>; without it Qt would abort.
        number = display[1:].split(".")[0]
        if number.isdigit() and not Path(f"/tmp/.X11-unix/X{number}").exists():
            return f"no display: no X server is running on DISPLAY={display}"
    return None


def launch(source=None, engine: str = "auto", threads: int = 2, refine: bool = True, texture: Path | None = None,
           transfer: bool = False) -> int:
    """Open the viewer window and run Qt's event loop until it is closed (exit code)."""
    from ui.viewer import run_viewer

    return run_viewer(source, engine=engine, threads=threads, refine=refine, texture=texture, transfer=transfer)
