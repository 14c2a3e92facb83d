"""``run_tracker eval``: NME / AUC@0.08 / FR@0.08 / CED of predictions against ground truth
(``tracker.evaluation`` does the scoring)."""
from __future__ import annotations

import sys
from pathlib import Path

from tracker.cli.common import EXIT_ITEMS_FAILED, EXIT_OK
from tracker.errors import UsageError, count_of
from tracker.evaluation import BASELINE, FINAL, absent_predictions, ced_curves, evaluate_predictions, ground_truth_files, score_table
from tracker.fileio import WRITABLE_IMAGE_EXTENSIONS, atomic_write_image, atomic_write_json, atomic_write_text
from tracker.plots import ced_plot
from tracker.stages import Stage

NAME = "eval"


def register(sub) -> None:
    p = sub.add_parser(NAME, help="NME / AUC@0.08 / FR@0.08 / CED of .pts predictions against ground truth")
    p.add_argument("--pred", type=Path, required=True,
                   help=f"folder with <stem>.json (from `images`) or <stem>.pts; its {BASELINE}/ subfolder (images --baseline) is scored too")
    p.add_argument("--gt", type=Path, required=True, help="folder with ground-truth <stem>.pts (searched recursively)")
    p.add_argument("--stage", default=FINAL, choices=[FINAL, *(s.value for s in Stage), BASELINE],
                   help="which stage of <stem>.json to score (final: every one the predictions have, the last one last; "
                        "plain .pts are one row, 'pts')")
    p.add_argument("--list", type=Path, help="only the stems in this file (e.g. splits/val.txt)")
    p.add_argument("--plot", type=Path, help="write the CED curve here (a picture: .png, .jpg ...)")
    p.add_argument("--json", type=Path, help="write the metrics here, and the printed table beside it as Markdown (the same name with .md)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.plot and args.plot.suffix.lower() not in WRITABLE_IMAGE_EXTENSIONS:  # checked before the scoring, not after it
        raise UsageError(f"--plot {args.plot}: the plot is a picture; give one of {', '.join(WRITABLE_IMAGE_EXTENSIONS)}")
    if args.pred.resolve() == args.gt.resolve():  # every face would score perfectly (user test 13)
        raise UsageError(f"--pred {args.pred} is the --gt folder: the ground truth would be scored against itself; "
                         "give the folder images wrote (its --out)")
    if args.json and args.json.suffix.lower() == ".md":  # the table goes there: it replaced the JSON (review 26)
        raise UsageError(f"--json {args.json}: the table is written beside the JSON as .md; give the JSON another name (e.g. .json)")
    gt = ground_truth_files(args.gt, args.list)
    rows, skipped = evaluate_predictions(args.pred, gt, args.stage)
    lines = score_table(rows)
    # The files first: a reader that leaves early (`eval ... | head`) ends the command at the print.
    if args.plot:
        atomic_write_image(args.plot, ced_plot(ced_curves(rows)))
    if args.json:
        # "faces": whose each method's "errors" are, in their order (they were unnamed; user test 36)
        atomic_write_json(args.json, {"gt": str(args.gt), "pred": str(args.pred), "faces": list(gt), "methods": rows})
        # The same table for people reading the repository (docs/results/*.md).
        atomic_write_text(args.json.with_suffix(".md"), "```\n" + "\n".join(lines) + "\n```\n")
    absent, tracker_run = absent_predictions(args.pred, gt)
    if absent:  # said before the table: after it, a table of 2,000 missing faces read as the result (user test 25)
        # Scored as missing faces, they lowered the scores without a word (a shorter images --list,
        # a run cut short; user test 15).
        why = "not processed by images (it writes a .json for every picture)" if tracker_run else "no face, or not processed"
        hint = ("; if the predictions cover only some of --gt's pictures, --list names those (e.g. splits/val.txt)"
                if not args.list and len(absent) > len(gt) / 2 else "")
        print(f"note: {len(absent)} of the {len(gt)} ground-truth pictures have no prediction file in {args.pred} "
              f"(first: {absent[0]}): {why}; scored as missing faces{hint}", file=sys.stderr)
    others: dict[int, list[str]] = {}  # (every face "missing" without a word why; user test 38)
    for name, r in rows.items():
        if r["faces_on_another_face"]:
            others.setdefault(r["faces_on_another_face"], []).append(name)
    for count, names in others.items():
        print(f"note: {', '.join(names)}: {count_of(count, 'face')} (of {len(gt)}) scored as missing though predicted: every "
              "prediction centred outside the annotated face's box (another person's face)", file=sys.stderr)
    print("\n".join(lines), flush=True)
    if skipped:
        print(f"{count_of(skipped, 'unreadable prediction')} skipped (scored as missing faces)", file=sys.stderr)
        return EXIT_ITEMS_FAILED
    return EXIT_OK
