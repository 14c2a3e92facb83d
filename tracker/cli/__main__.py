"""``python -m tracker.cli``: the same as ``run_tracker``."""
from tracker.cli.main import main

raise SystemExit(main())
