"""`eval` on small prediction folders made on the fly: its exit status, what it says about bad or
missing predictions, which rows it lists, a baseline folder scored on its own, and a reader
that closes stdout early.  No network, no ../shared data: the faces are random points."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tracker.cli import main
from tracker.pts import write_pts

REPO = Path(__file__).resolve().parents[1]
STEMS = ["a", "b", "c"]
TRACKER_STAGES = ("densereg", "pca", "mdm")  # what `images` writes (no `smooth`: that is video only)


def _face(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(50, 150, (68, 2))


def _tracker_json(points: np.ndarray, stages=TRACKER_STAGES) -> str:
    """A `<stem>.json` as `images` (or `--baseline dlib`, stages=("dlib",)) writes it: only what eval reads."""
    face = {"stages": {s: {"points": (points + 0.5 * i).tolist(), "confidence": [1.0] * 68} for i, s in enumerate(stages)}}
    return json.dumps({"faces": [face]})


@pytest.fixture
def gt(tmp_path) -> Path:
    d = tmp_path / "gt"
    d.mkdir()
    for i, stem in enumerate(STEMS):
        write_pts(d / f"{stem}.pts", _face(i))
    return d


def _pts_folder(root: Path, name: str) -> Path:
    d = root / name
    d.mkdir(parents=True)
    for i, stem in enumerate(STEMS):
        write_pts(d / f"{stem}.pts", _face(i) + 1.0)
    return d


def _json_folder(root: Path, name: str, stages=TRACKER_STAGES) -> Path:
    d = root / name
    d.mkdir(parents=True)
    for i, stem in enumerate(STEMS):
        (d / f"{stem}.json").write_text(_tracker_json(_face(i) + 1.0, stages))
        write_pts(d / f"{stem}.pts", _face(i) + 1.0)
    return d


def _eval(pred: Path, gt: Path, *extra: str, json_out: Path | None = None) -> int:
    return main(["eval", "--pred", str(pred), "--gt", str(gt), *(["--json", str(json_out)] if json_out else []), *extra])


def _rows(stdout: str) -> list[str]:
    """The method names of the printed table (the lines between the rule and the notes)."""
    lines = stdout.splitlines()
    body = lines[lines.index(next(x for x in lines if set(x) == {"-"})) + 1:]
    return [x.split()[0] for x in body if not x.startswith(("NME:", "points:", "With several"))]


def test_a_bystander_is_not_scored_as_the_annotated_face(tmp_path, gt, capsys):
    """Pictures where only another person was found: the annotated face is missing (a failure),
    and the mean NME is not the distance between the two people; the subject found beside a
    bystander is scored, and a poor answer centred on the subject still counts as its answer."""
    pred = tmp_path / "pred"
    pred.mkdir()
    faces = {"a": [_face(0) + 400.0],  # only a bystander, 400 px away
             "b": [_face(1) + 400.0, _face(1) + 1.0],  # the bystander and the subject
             "c": [(_face(2) - _face(2).mean(0)) * 0.3 + _face(2).mean(0)]}  # the subject, badly shrunk: scored
    for stem, points in faces.items():
        (pred / f"{stem}.json").write_text(json.dumps({"faces": [json.loads(_tracker_json(p, ("mdm",)))["faces"][0] for p in points]}))
    assert _eval(pred, gt, json_out=tmp_path / "m.json") == 0
    scores = json.loads((tmp_path / "m.json").read_text())
    m = scores["methods"]["mdm"]
    assert m["missing"] == 1 and m["errors"][0] is None
    assert scores["faces"] == ["a", "b", "c"]  # whose each error is (they were unnamed; user test 36)
    assert m["errors"][1] < 0.05 and m["errors"][2] > 0.1  # the shrunk answer: scored, a failure
    assert m["faces_on_another_face"] == 1
    out, err = capsys.readouterr()
    assert "another person" in out
    assert "note: mdm: 1 face (of 3) scored as missing though predicted: every prediction centred outside the annotated face's box" in err


def test_only_another_persons_faces_say_so_and_leave_no_nan_in_the_table(tmp_path, gt, capsys):
    """User test 38: every prediction another person's (a two-person clip's subject not the
    annotated one): a row of "nan%" and "nan" and no word why."""
    pred = tmp_path / "pred"
    pred.mkdir()
    for i, stem in enumerate(STEMS):
        write_pts(pred / f"{stem}.pts", _face(i) + 400.0)
    assert _eval(pred, gt) == 0
    out, err = capsys.readouterr()
    row = next(line for line in out.splitlines() if line.startswith("pts "))
    assert "nan" not in row and row.split()[1:4] == ["3", "3", "-"], row
    assert err.strip() == ("note: pts: 3 faces (of 3) scored as missing though predicted: every prediction centred outside "
                           "the annotated face's box (another person's face)")


def test_the_face_in_the_annotated_box_is_scored_though_another_lies_nearer():
    """A wide, flat annotated box: a face centred just outside it (nearer the annotation's centre)
    is another person's; the one centred inside, farther off, is the annotated face's answer.
    The same rule picks a video frame's annotated face (``annotated_index`` is both's)."""
    from tracker.evaluation import pick_face

    truth = np.stack([np.linspace(0, 100, 68), np.linspace(40, 60, 68)], axis=1)  # centre (50, 50)
    outside = truth - truth.mean(0) + [50.0, 62.0]  # 12 px from the centre, above the box
    inside = truth * [0.1, 1.0] + [90.0, 0.0]  # centre (95, 50): 45 px away, in the box
    faces = [{"mdm": outside}, {"mdm": inside}]
    assert pick_face(faces, "mdm", truth) is inside
    assert pick_face(faces[:1], "mdm", truth) is None


# -- 7: skipped predictions: exit status 1, one line per file, reasons in words ----------------------

def test_an_unreadable_pts_prediction_is_skipped_with_exit_status_1(tmp_path, gt, capsys):
    pred = _pts_folder(tmp_path, "pred")
    (pred / "a.pts").write_text("garbage\n")
    assert _eval(pred, gt) == 1  # the README: "The exit status is 1 when any input was skipped"
    err = capsys.readouterr().err
    skipped = [x for x in err.splitlines() if x.startswith("skipped:")]
    # the path once, then why (not the path again inside the parentheses)
    assert skipped == [f"skipped: {pred / 'a.pts'}: unreadable prediction (non-numeric point 'garbage')"]


def test_corrupt_json_predictions_are_each_reported_once_in_words(tmp_path, gt, capsys):
    pred = _json_folder(tmp_path, "pred")
    (pred / "a.json").write_text("{bad")
    (pred / "b.json").write_text("[]")
    (pred / "c.json").write_text('{"faces": [{"x": 1}]}')
    (pred / "d.json").write_text(_tracker_json(_face(9)))  # one good prediction: a table to print
    write_pts(gt / "d.pts", _face(9))
    assert _eval(pred, gt) == 1
    err = capsys.readouterr().err
    skipped = sorted(x for x in err.splitlines() if x.startswith("skipped:"))
    assert len(skipped) == 3, err  # once per file, not once per stage
    a, b, c = skipped
    assert "a.json: unreadable prediction (not JSON:" in a
    assert b.endswith("b.json: unreadable prediction (not a tracker JSON: no 'faces' list)")
    assert c.endswith("c.json: unreadable prediction (not a tracker JSON: face 1 has no 'stages')")
    assert "3 unreadable predictions skipped" in err


def test_a_json_stage_with_the_wrong_number_of_points_is_named(tmp_path, gt, capsys):
    pred = _json_folder(tmp_path, "pred")
    doc = json.loads((pred / "a.json").read_text())
    doc["faces"][0]["stages"]["pca"]["points"] = doc["faces"][0]["stages"]["pca"]["points"][:5]
    (pred / "a.json").write_text(json.dumps(doc))
    assert _eval(pred, gt) == 1
    assert "a.json: unreadable prediction (face 1, stage 'pca': 5 points, expected 68)" in capsys.readouterr().err


# -- 8: nothing to score is an error; only the stages the predictions have are listed --------------

def test_an_empty_prediction_folder_is_a_one_line_error(tmp_path, gt, capsys):
    (tmp_path / "empty").mkdir()
    assert _eval(tmp_path / "empty", gt) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("error: ") and "no predictions" in err


def test_a_plot_that_is_not_a_picture_is_refused_before_the_scoring(tmp_path, gt, capsys):
    assert _eval(tmp_path / "nothing here", gt, "--plot", str(tmp_path / "ced.svg")) == 2  # the folder would be an error of its own
    assert "--plot" in capsys.readouterr().err and not (tmp_path / "ced.svg").exists()


def test_predictions_with_no_stem_in_common_with_the_ground_truth_are_an_error(tmp_path, gt, capsys):
    pred = tmp_path / "pred"
    pred.mkdir()
    write_pts(pred / "other.pts", _face(0))
    (pred / "other.json").write_text(_tracker_json(_face(0)))
    assert _eval(pred, gt, json_out=tmp_path / "m.json") == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert "no prediction matches the ground truth" in err and "'other'" in err and "'a'" in err
    assert not (tmp_path / "m.json").exists()


def test_predictions_without_any_face_are_an_error_not_a_table_of_nan(tmp_path, gt, capsys):
    pred = tmp_path / "pred"
    pred.mkdir()
    for stem in STEMS:
        (pred / f"{stem}.json").write_text('{"faces": []}')  # `images` found no face in any picture
    assert _eval(pred, gt) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == f"error: {pred}: nothing to score: no face in the 3 predictions that match the ground truth (0 unreadable)"


def test_a_tracker_that_found_no_face_is_a_row_of_misses_beside_the_baseline(tmp_path, gt, capsys):
    """User test 12: with a `dlib/` folder, the dlib row was printed alone (exit 0), as if the
    tracker's predictions had not been there."""
    pred = tmp_path / "pred"
    pred.mkdir()
    for stem in STEMS:
        (pred / f"{stem}.json").write_text('{"faces": []}')
    _json_folder(pred, "dlib", stages=("dlib",))
    assert _eval(pred, gt, json_out=tmp_path / "m.json") == 0
    assert _rows(capsys.readouterr().out) == ["final", "dlib"]
    methods = json.loads((tmp_path / "m.json").read_text())["methods"]
    assert methods["final"]["missing"] == len(STEMS) and methods["final"]["auc08"] == 0 and methods["dlib"]["missing"] == 0


def test_only_the_stages_the_predictions_have_are_listed(tmp_path, gt, capsys):
    pred = _json_folder(tmp_path, "pred")
    assert _eval(pred, gt, json_out=tmp_path / "m.json") == 0
    assert _rows(capsys.readouterr().out) == list(TRACKER_STAGES)  # no `smooth` row
    assert list(json.loads((tmp_path / "m.json").read_text())["methods"]) == list(TRACKER_STAGES)


def test_a_stage_the_predictions_do_not_have_is_named_not_scored_as_missing(tmp_path, gt, capsys):
    pred = _json_folder(tmp_path, "pred")
    assert _eval(pred, gt, "--stage", "smooth") == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == f"error: --stage smooth: not in the predictions of {pred} (they have: densereg, pca, mdm)"


def test_a_stage_asked_for_is_scored_alone_beside_the_baseline(tmp_path, gt, capsys):
    pred = _json_folder(tmp_path, "pred")
    _json_folder(pred, "dlib", stages=("dlib",))
    assert _eval(pred, gt, "--stage", "mdm") == 0
    assert _rows(capsys.readouterr().out) == ["mdm", "dlib"]


# -- 9: a baseline folder (and plain .pts) scored on its own -----------------------------------------

def test_the_baseline_folder_scores_on_its_own_as_one_dlib_row(tmp_path, gt, capsys):
    pred = _json_folder(tmp_path, "pred")
    dlib = _json_folder(pred, "dlib", stages=("dlib",))
    assert _eval(pred, gt, json_out=tmp_path / "all.json") == 0
    assert _rows(capsys.readouterr().out) == [*TRACKER_STAGES, "dlib"]
    assert _eval(dlib, gt, json_out=tmp_path / "alone.json") == 0
    assert _rows(capsys.readouterr().out) == ["dlib"]
    together = json.loads((tmp_path / "all.json").read_text())["methods"]["dlib"]
    alone = json.loads((tmp_path / "alone.json").read_text())["methods"]["dlib"]
    assert alone == together and alone["missing"] == 0
    # --stage dlib means the same row, whichever folder is given
    for folder in (pred, dlib):
        assert _eval(folder, gt, "--stage", "dlib") == 0
        assert _rows(capsys.readouterr().out) == ["dlib"]
    assert _eval(dlib, gt, "--stage", "mdm") == 2
    assert "(they have: dlib)" in capsys.readouterr().err


def test_plain_pts_predictions_are_one_row_named_pts(tmp_path, gt, capsys):
    pred = _pts_folder(tmp_path, "pred")
    assert _eval(pred, gt, json_out=tmp_path / "m.json") == 0
    assert _rows(capsys.readouterr().out) == ["pts"]
    m = json.loads((tmp_path / "m.json").read_text())["methods"]["pts"]
    assert m["faces"] == 3 and m["missing"] == 0


def test_most_faces_missing_without_a_list_suggests_one(tmp_path, gt, capsys):
    for i in range(3, 8):  # more ground truth than was predicted: a whole data set against a split's run
        write_pts(gt / f"extra{i}.pts", _face(i))
    pred = _pts_folder(tmp_path, "pred")
    assert _eval(pred, gt) == 0
    err = capsys.readouterr().err
    assert "note: 5 of the 8 ground-truth pictures have no prediction file" in err and "--list names those" in err
    assert _eval(pred, gt, "--list", str(_list(tmp_path))) == 0
    assert "note:" not in capsys.readouterr().err


def test_pictures_an_images_run_never_processed_are_named_not_silently_scored_as_misses(tmp_path, gt, capsys):
    """A shorter images --list, or a run cut short: the pictures without any file scored as
    failures without a word (user test 15)."""
    pred = _json_folder(tmp_path, "pred")
    for ext in (".json", ".pts"):
        (pred / f"b{ext}").unlink()
    assert _eval(pred, gt, "--list", str(_list(tmp_path))) == 0
    err = capsys.readouterr().err
    assert f"note: 1 of the 3 ground-truth pictures have no prediction file in {pred} (first: b): not processed by images" in err
    assert "--list names those" not in err


def _list(root: Path) -> Path:
    (root / "list.txt").write_text("\n".join(f"{s}.jpg" for s in STEMS) + "\n")
    return root / "list.txt"


# -- a reader that stops early (`eval ... | head`) -----------------------------------------------------

def test_a_closed_stdout_ends_quietly_and_still_writes_the_json(tmp_path, gt):
    pred = _pts_folder(tmp_path, "pred")
    argv = [sys.executable, str(REPO / "run_tracker.py"), "eval", "--pred", str(pred), "--gt", str(gt), "--json", str(tmp_path / "m.json")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, text=True)
    proc.stdout.close()  # gone before the table is printed, like `head` after its lines
    _, err = proc.communicate(timeout=120)
    assert err == "" and proc.returncode == 141  # as a C tool killed by SIGPIPE (tracker.cli.app)
    assert json.loads((tmp_path / "m.json").read_text())["methods"]["pts"]["faces"] == 3


def test_the_json_and_its_markdown_table_never_replace_each_other(tmp_path, gt, capsys):
    """`--json metrics.md` wrote the JSON, then the table over it (review 26): refused; a .json
    gets its table beside it, as the help says."""
    pred = _pts_folder(tmp_path, "pred")
    assert _eval(pred, gt, json_out=tmp_path / "metrics.md") == 2
    assert "--json" in capsys.readouterr().err and not (tmp_path / "metrics.md").exists()
    assert _eval(pred, gt, json_out=tmp_path / "metrics.json") == 0
    table = capsys.readouterr().out
    assert json.loads((tmp_path / "metrics.json").read_text())["methods"]["pts"]["faces"] == len(STEMS)
    assert (tmp_path / "metrics.md").read_text().splitlines()[1] == table.splitlines()[0]


def test_a_list_of_absolute_paths_scores_the_predictions_not_the_ground_truth(tmp_path, gt, capsys):
    """An absolute --list line was joined to --pred as it was, i.e. the ground truth itself: AUC 1.0
    with any predictions, even none (user test 13).  Absolute lines inside --gt are read as
    relative to it, as images reads them inside --input; one outside is a one-line error."""
    pred = _pts_folder(tmp_path, "pred")
    listed = tmp_path / "list.txt"
    listed.write_text("\ufeff" + "".join(f"{gt / s}.jpg\n" for s in STEMS))  # a BOM, as Windows editors write
    assert _eval(pred, gt, "--list", str(listed), json_out=tmp_path / "abs.json") == 0
    assert _eval(pred, gt, json_out=tmp_path / "rel.json") == 0
    absolute, relative = (json.loads((tmp_path / f).read_text())["methods"]["pts"] for f in ("abs.json", "rel.json"))
    assert absolute == relative and absolute["nme_mean"] > 0
    capsys.readouterr()
    listed.write_text(f"{tmp_path / 'elsewhere' / 'a.jpg'}\n")
    assert _eval(pred, gt, "--list", str(listed)) == 2
    assert "is not inside --gt" in capsys.readouterr().err
    assert _eval(gt, gt) == 2
    assert "is the --gt folder" in capsys.readouterr().err
    # a linked file inside --gt is inside it (it was refused: the link was followed out; review 26)
    (tmp_path / "store").mkdir()
    (gt / "a.pts").rename(tmp_path / "store" / "a.pts")
    (gt / "a.pts").symlink_to(tmp_path / "store" / "a.pts")
    listed.write_text(f"{gt / 'a.jpg'}\n")
    assert _eval(pred, gt, "--list", str(listed)) == 0


def test_ground_truth_in_upper_case_counts_and_coinciding_eye_corners_are_named(tmp_path, gt, capsys):
    """User test 21: an ``X.PTS`` was left out of the scores without a word, and a ground truth
    whose outer eye corners coincide gave numpy's "divide by zero" and a face counted missing."""
    pred = _pts_folder(tmp_path, "pred")
    (gt / "c.pts").rename(gt / "c.PTS")
    assert _eval(pred, gt, json_out=tmp_path / "m.json") == 0
    assert json.loads((tmp_path / "m.json").read_text())["methods"]["pts"]["faces"] == 3
    (tmp_path / "list.txt").write_text("a.pts\nc.jpg\n")  # listed too (user test 22)
    assert _eval(pred, gt, "--list", str(tmp_path / "list.txt"), json_out=tmp_path / "m.json") == 0
    assert json.loads((tmp_path / "m.json").read_text())["methods"]["pts"]["faces"] == 2
    for folder in (pred, gt):  # a listed stem with a dot was looked up as face.pts (user test 23)
        next(folder.glob("b.pts")).rename(folder / "face.v2.pts")
    (tmp_path / "list.txt").write_text("face.v2\n")
    assert _eval(pred, gt, "--list", str(tmp_path / "list.txt"), json_out=tmp_path / "m.json") == 0
    assert json.loads((tmp_path / "m.json").read_text())["methods"]["pts"]["faces"] == 1
    capsys.readouterr()
    flat = _face(0)
    flat[45] = flat[36]
    write_pts(gt / "a.pts", flat)
    assert _eval(pred, gt) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {gt / 'a.pts'}: its outer eye corners (points 37 and 46) are 0 px apart: no error can be normalised by them"
