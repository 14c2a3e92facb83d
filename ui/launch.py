"""Starting the viewer from the command line, without importing Qt until it is known to work.

Qt aborts the whole process (qFatal) when it cannot open a display or load its platform plugin,
and a missing PyQt5 is an ImportError deep in a traceback; ``display_problem`` turns each into
one sentence first.  The plugin check starts Qt in a child process (the child takes the abort);
when it fails, ``ldd`` on the plugin names the missing system libraries and their Debian/Ubuntu
packages (a fresh Debian lacks ``libxcb-icccm4``, ``libxcb-keysyms1``, ``libxcb-xinerama0``...).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

from tracker.errors import install_hint

# Platforms that need no display server.
HEADLESS_PLATFORMS = ("offscreen", "minimal", "vnc", "eglfs", "linuxfb")


def display_problem(environ: dict[str, str] | None = None) -> str | None:
    """Why a Qt window cannot open here, or None when it can."""
    env = os.environ if environ is None else environ
    if find_spec("PyQt5") is None:
        return f"the viewer needs PyQt5: {install_hint('ui')}"
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


PROBE = "from PyQt5.QtGui import QGuiApplication; QGuiApplication([])"


def qt_start_problem(environ: dict[str, str] | None = None, timeout: float = 30.0) -> str | None:
    """Why Qt cannot start its platform here (one line), or None when it can: a QGuiApplication
    is created in a child process with the same environment, so Qt's abort ends the child."""
    env = dict(os.environ if environ is None else environ)
    try:
        probe = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"Qt did not start within {timeout:.0f} s (is the display at DISPLAY={env.get('DISPLAY', '')} answering?)"
    if probe.returncode == 0:
        return None
    platform = env.get("QT_QPA_PLATFORM", "").split(":")[0] or "xcb"  # Qt 5's default on Linux
    missing = missing_libraries(platform_plugin(platform))
    if missing:
        return (f"Qt's '{platform}' platform plugin cannot load: missing system libraries {', '.join(missing)}; "
                f"install them with: sudo apt install {' '.join(debian_package(m) for m in missing)}")
    lines = [ln.strip() for ln in probe.stderr.splitlines() if ln.strip()]
    reason = next((ln for ln in lines if "qt.qpa" in ln or "could not" in ln.lower()), lines[0] if lines else f"exit status {probe.returncode}")
    return f"Qt cannot start on the '{platform}' platform: {reason}"


def platform_plugin(platform: str) -> Path | None:
    """PyQt5's plugin file for a Qt platform (libqxcb.so for xcb), or None."""
    spec = find_spec("PyQt5")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        for plugins in (Path(root) / "Qt5" / "plugins", Path(root) / "Qt" / "plugins"):
            path = plugins / "platforms" / f"libq{platform}.so"
            if path.is_file():
                return path
    return None


def missing_libraries(plugin: Path | None) -> list[str]:
    """Shared libraries the plugin needs that the dynamic linker cannot find (``ldd``'s
    "=> not found", transitive ones included), in order, without repeats; [] when unknown."""
    ldd = shutil.which("ldd")
    if plugin is None or ldd is None:
        return []
    try:
        out = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return list(dict.fromkeys(re.findall(r"^\s*(\S+) => not found", out, flags=re.MULTILINE)))


def debian_package(soname: str) -> str:
    """The Debian/Ubuntu package that ships a library, by Debian's naming rule: libfoo.so.N is
    in libfooN, and in libfoo-N when the name ends in a digit (libxcb-icccm.so.4 ->
    libxcb-icccm4, libxkbcommon-x11.so.0 -> libxkbcommon-x11-0)."""
    m = re.fullmatch(r"(lib[^/]+?)\.so\.(\d+)(?:\..*)?", soname)
    if not m:
        return soname
    name, version = m.group(1).lower(), m.group(2)
    return f"{name}-{version}" if name[-1].isdigit() else f"{name}{version}"


def launch(source=None, config=None, texture: Path | None = None, transfer: bool = False, parts_from: str = "template") -> int:
    """Open the viewer window and run Qt's event loop until it is closed (exit code); `config`:
    a video-mode ``TrackerConfig`` (default: the defaults); `parts_from`: ``--parts-from``."""
    from ui.viewer import run_viewer

    return run_viewer(source, config, texture=texture, transfer=transfer, parts_from=parts_from)
