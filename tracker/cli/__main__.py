"""``python -m tracker.cli``: the same as ``run_tracker``."""
from tracker.cli import main

raise SystemExit(main())
