"""``run_tracker version``: the package version and which engines can run here."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from engines import available_engines
from tracker.cli.common import EXIT_OK

NAME = "version"


def register(sub) -> None:
    p = sub.add_parser(NAME, help="print versions and available engines")
    p.set_defaults(func=run)


def package_version() -> str:
    try:
        return version("densereg-tracker")
    except PackageNotFoundError:
        return "(not installed as a package)"


def run(args) -> int:
    print(f"densereg-tracker {package_version()}")
    for kind, reason in available_engines().items():
        print(f"  engine {kind}: {'available' if reason is None else 'unavailable - ' + reason}")
    return EXIT_OK
