"""Training, ground truth, export and the GPU kit (needs the ``[train]`` extra: torch)."""
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tracker.assets import checkout_root

# Where data/, runs/ and out/ are by default: the checkout; installed from a wheel, the current
# folder, never site-packages (runs were made inside it, and an export without --out-dir replaced
# the installed models; user test 10).
REPO = checkout_root() or Path.cwd()
# Installed from a wheel: the commands that make a shipped asset (export, template, shape PCA,
# landmark targets) need their output named, rather than writing into the installed package.
INSTALLED = checkout_root() is None


class _Inline:
    """The executor interface, run in this process (``--jobs 1``: no process to start)."""

    def map(self, fn, items, chunksize=1):
        return map(fn, items)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def worker_pool(jobs: int):
    """An executor of `jobs` worker processes, or this process for one.  The workers are
    spawned, not forked: forking a process whose OpenCV or torch threads run may deadlock
    (Python 3.12 warns of it at every pool; user test 20), and the workers take nothing from
    this process but their arguments."""
    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) if jobs > 1 else _Inline()
