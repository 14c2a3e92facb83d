"""``run_tracker viewer`` (and ``webcam``, the viewer on a camera): the Qt viewer on a camera, a
video or an image folder with live overlays.  Qt is imported only here, after the display has
been checked (Qt aborts the process without a display or platform plugin)."""
from __future__ import annotations

import sys

from tracker.assets import bundled_textures, texture_path
from tracker.cli.common import EXIT_USAGE, count, engine_args, parts_from_arg, template_maps_wanted
from tracker.errors import MissingInputError, UsageError
from tracker.pipeline import TrackerConfig
from tracker.sources import CAMERA, is_numbered, open_source, spec_from_argument
from tracker.transfer import load_texture

NAME = "viewer"


def register(sub) -> None:
    p = sub.add_parser(NAME, help="the Qt viewer: webcam, video or image folder with live overlays (needs the ui extra)")
    p.add_argument("--source", help="'webcam', a video file or an image folder (default: the first camera, else the bundled demo clip)")
    p.add_argument("--device", type=count(0), metavar="N", help="camera index (implies --source webcam when no source is given)")
    _window_args(p)
    # gui: SIGTERM keeps its default action (the process ends): a Python handler would wait for
    # Qt's event loop to return to Python, which an idle window may not do (tracker.cli.app)
    p.set_defaults(func=run, gui=True)
    # `webcam` is the viewer on a camera: one window for live tracking, with every overlay.
    w = sub.add_parser("webcam", help="live tracking from a camera in the viewer (= viewer --source webcam)")
    w.add_argument("--device", type=count(0), default=0, metavar="N", help="camera index")
    _window_args(w)
    w.set_defaults(func=run, gui=True, source=CAMERA)


def _window_args(p) -> None:
    p.add_argument("--texture", type=texture_path,
                   help=f"UV texture for the face-transfer overlay, a file or a bundled one by name ({', '.join(bundled_textures())}; "
                        "default facepaint)")
    p.add_argument("--transfer", action="store_true", help="start with the face-transfer overlay on")
    engine_args(p)
    parts_from_arg(p)


def run(args) -> int:
    from ui.launch import display_problem, launch, qt_start_problem

    if args.texture is not None:
        load_texture(args.texture)  # one line now (ImageReadError), as transfer says it: in the window the message was soon replaced
    given = args.source is not None or args.device is not None
    source = spec_from_argument(args.source, args.device or 0) if given else None
    if source is not None and source.kind != CAMERA:
        # said here in one line, not later in the window's status bar
        if args.device is not None:
            raise UsageError(f"--device {args.device} names a camera; --source {args.source} is not one (--source webcam is)")
        if not is_numbered(source.path) and not source.path.exists():
            raise MissingInputError(f"{source.path}: file not found")
    if source is not None and source.kind == CAMERA:
        # a missing camera is one line here, as in `video --camera`: in the window it was an empty
        # picture with the reason in the status bar, and `webcam` never ended
        open_source(source).close()
    # after the inputs: a missing file said "no display" first (user test 25)
    problem = display_problem() or qt_start_problem()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    parts_from = "template" if template_maps_wanted(args) else "network"
    return launch(source, TrackerConfig.from_args(args, mode="video"), texture=args.texture, transfer=args.transfer, parts_from=parts_from)
