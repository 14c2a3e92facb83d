"""``run_tracker version``: the package's version, its libraries' and which engines can run here
(what a bug report needs)."""
from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import tracker
from engines import available_engines
from tracker.assets import ASSETS
from tracker.cli.common import EXIT_OK
from tracker.cli.options import models_digest
from tracker.detector import dlib_models_problem

NAME = "version"
# Distributions read from their metadata (nothing is imported: torch alone takes seconds); the
# first installed name of each group is shown.
LIBRARIES = (("numpy",), ("opencv-python-headless", "opencv-python", "opencv-contrib-python"), ("onnxruntime", "onnxruntime-gpu"),
             ("dlib-bin", "dlib"), ("face-recognition-models",), ("PyQt5",), ("torch",), ("tensorrt",), ("pycuda",), ("ray",))


def register(sub) -> None:
    p = sub.add_parser(NAME, help="print the versions of the tracker, Python and its libraries, and which engines can run")
    p.set_defaults(func=run)


def package_version() -> str:
    return tracker.__version__


def library_versions() -> dict[str, str]:
    """{distribution: version} for the installed ones of ``LIBRARIES``."""
    found = {}
    for names in LIBRARIES:
        for name in names:
            try:
                found[name] = version(name)
                break
            except PackageNotFoundError:
                pass
    return found


def run(args) -> int:
    # where it runs from: two checkouts print the same version (user test 36)
    print(f"densereg-tracker {package_version()} ({Path(tracker.__file__).resolve().parent}; models {models_digest(ASSETS)})")
    print(f"  python {platform.python_version()} ({platform.system()} {platform.machine()})")
    for name, v in library_versions().items():
        print(f"  {name} {v}")
    for kind, reason in available_engines().items():
        print(f"  engine {kind}: {'available' if reason is None else 'unavailable - ' + reason}")
    print(f"  dlib's CNN detector and 68-point model (the [cnn] extra): {dlib_models_problem() or 'available'}")
    return EXIT_OK
