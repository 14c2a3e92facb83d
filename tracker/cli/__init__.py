"""The ``run_tracker`` command-line app: ``app`` (the parser and the error policy), ``common``
(options shared by commands), and one thin module per command.  Library code never imports this
package; a command parses its options, opens its source and writers, and runs the library."""
from tracker.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
