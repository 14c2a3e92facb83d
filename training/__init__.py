"""Training, ground truth, export and the GPU kit (needs the ``[train]`` extra: torch)."""
from pathlib import Path

from tracker.assets import checkout_root

# Where data/, runs/ and out/ are by default: the checkout; installed from a wheel, the current
# folder, never site-packages (runs were made inside it, and an export without --out-dir replaced
# the installed models; user test 10).
REPO = checkout_root() or Path.cwd()
# Installed from a wheel: the commands that make a shipped asset (export, template, shape PCA,
# landmark targets) need their output named, rather than writing into the installed package.
INSTALLED = checkout_root() is None
