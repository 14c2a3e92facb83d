"""`images` then `eval` on the tracker's own output against annotation it did not produce: its
NME and AUC must land in a plausible band (a broken model, a landmark off by several pixels or a
stage mix-up falls out of it; a perfect score means the evaluation compared a file with itself).

The bands are wide on purpose (a few faces, any engine, any CPU); the exact numbers on the whole
validation split are in docs/results/landmarks_val*.md.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from tracker.assets import DEMO_IMAGE
from tracker.cli import main
from tracker.pts import write_pts

VAL_FACES = 3  # the first faces of ../shared/data/300w/splits/val.txt


def _evaluate(tmp_path: Path, images: Path, gt: Path, extra: list[str]) -> dict:
    pred = tmp_path / "pred"
    assert main(["images", "--input", str(images), "--out", str(pred), "--engine", "onnx", *extra]) == 0
    assert main(["eval", "--pred", str(pred), "--gt", str(gt), "--json", str(tmp_path / "m.json"), *extra[:2]]) == 0
    return json.loads((tmp_path / "m.json").read_text())["methods"]


@pytest.mark.shared_data
def test_tracker_scores_on_300w_val_faces(data_300w, tmp_path):
    """Three human-annotated 300-W validation faces, with the boxes of the 300-W protocol (the
    tight box of the ground truth, `tracker.boxfile`): the numbers of docs/results/landmarks_val_gtboxes.md."""
    from tracker.boxfile import main as boxfile

    rels = (data_300w / "splits" / "val.txt").read_text().split()[:VAL_FACES]
    (tmp_path / "list.txt").write_text("\n".join(rels) + "\n")
    assert boxfile(["--pts", str(data_300w), "--list", str(tmp_path / "list.txt"), "--out", str(tmp_path / "boxes.txt")]) == 0
    m = _evaluate(tmp_path, data_300w, data_300w, ["--list", str(tmp_path / "list.txt"), "--boxes", str(tmp_path / "boxes.txt")])
    assert set(m) == {"densereg", "pca", "mdm"}
    for stage, r in m.items():
        assert r["faces"] == VAL_FACES and r["missing"] == 0, (stage, r)
        assert 0.015 < r["nme_mean"] < 0.08, (stage, r["nme_mean"])  # whole split: 0.039-0.054
        assert 0.15 < r["auc08"] < 0.8, (stage, r["auc08"])  # whole split: 0.35-0.52
    assert m["mdm"]["fr08"] == 0 and m["mdm"]["nme49_mean"] < 0.06


def test_tracker_agrees_with_dlib_on_the_demo_still(tmp_path):
    """The demo still annotated by dlib's 68-point predictor (an independent method, ~0.025 NME
    on 300-W): the tracker's final landmarks must agree with it about as well as two good
    methods do, and clearly not perfectly."""
    from tracker.detector import detect_faces, dlib_landmarks, dlib_models_problem

    if dlib_models_problem():
        pytest.skip(f"dlib's 68-point predictor: {dlib_models_problem()} (pip install -e '.[cnn]')")
    gray = cv2.cvtColor(cv2.imread(str(DEMO_IMAGE)), cv2.COLOR_BGR2GRAY)
    truth = dlib_landmarks(gray, detect_faces(gray)[0])
    folder, gt = tmp_path / "images", tmp_path / "gt"
    folder.mkdir()
    gt.mkdir()
    (folder / "astronaut.jpg").write_bytes(DEMO_IMAGE.read_bytes())
    write_pts(gt / "astronaut.pts", truth)
    m = _evaluate(tmp_path, folder, gt, [])
    for stage, worst in (("densereg", 0.07), ("pca", 0.07), ("mdm", 0.04)):  # today: 0.037, 0.030, 0.016
        assert m[stage]["missing"] == 0, stage
        assert 0.005 < m[stage]["errors"][0] < worst, (stage, m[stage]["errors"])


def test_still_frame_jitter_leaves_out_a_malformed_annotation(tmp_path):
    """One malformed annotation among a synthetic clip's still frames threw the whole tracked
    video away (review 26); ``evaluate_video`` leaves that frame out, and so does the jitter."""
    import numpy as np

    from tracker.evaluation import evaluate_video, static_jitter

    annot, pred = tmp_path / "clip" / "annot", tmp_path / "pred"
    annot.mkdir(parents=True)
    pred.mkdir()
    (tmp_path / "clip" / "synth.json").write_text(json.dumps({"static_frames": 4}))
    face = np.random.default_rng(0).uniform(100, 200, (68, 2))
    face[36], face[45] = (100, 150), (200, 150)  # outer eye corners 100 px apart
    for i, shift in zip(range(1, 5), (0.0, 1.0, 1.0, 3.0)):
        write_pts(annot / f"{i:06d}.pts", face)
        write_pts(pred / f"{i:06d}.pts", face + shift)
    (annot / "000004.pts").write_text("garbage")
    assert static_jitter(pred, annot) == pytest.approx((np.sqrt(2) + 0) / 2 / 100)  # frames 1-2 and 2-3 only
    scores = evaluate_video(pred, annot, 4)
    assert scores["annotated_frames"] == 3 and len(scores["malformed_annotations"]) == 1
    (tmp_path / "clip" / "synth.json").write_text("{not json")
    assert static_jitter(pred, annot) is None


def test_an_annotation_named_for_frame_zero_is_listed_not_scored(tmp_path):
    """Frames are numbered from 1: 000000.pts names none, and was scored as a missed frame (review 26)."""
    import numpy as np

    from tracker.evaluation import evaluate_video

    annot, pred = tmp_path / "annot", tmp_path / "pred"
    annot.mkdir()
    pred.mkdir()
    face = np.random.default_rng(0).uniform(100, 200, (68, 2))
    for name in ("000000.pts", "000001.pts"):
        write_pts(annot / name, face)
    write_pts(pred / "000001.pts", face)
    scores = evaluate_video(pred, annot, 1)
    assert scores["annotated_frames"] == 1 and scores["missing"] == 0
    assert "000000.pts" in scores["malformed_annotations"][0] and "not named as a frame's" in scores["malformed_annotations"][0]
