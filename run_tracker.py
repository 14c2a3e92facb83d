"""Command-line entry point: the same as the `run_tracker` console script."""
from tracker.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
