"""Part transfer through UV, IoU bookkeeping, and the directly trained segmentation baseline."""
import numpy as np
import pytest

from tracker import parts as P


def test_label_transfer_on_a_known_uv_map():
    part_map = np.full((4, 4), P.OTHER, np.uint8)
    part_map[0, 0] = P.RIGHT_EYE  # u_h in [0, .25), u_v in (.75, 1]
    part_map[3, 3] = P.LOWER_LIP  # u_h in [.75, 1), u_v in [0, .25)
    uv = np.full((2, 2, 3), np.nan)
    uv[:, 0, 0] = (0.1, 0.9)
    uv[:, 0, 1] = (0.9, 0.1)
    uv[:, 1, 0] = (0.5, 0.5)
    uv[:, 1, 1] = (1.0, 0.0)  # the corner itself stays inside the raster
    labels = P.lookup_parts(uv, part_map)
    assert labels.tolist() == [[P.RIGHT_EYE, P.LOWER_LIP, 0], [P.OTHER, P.LOWER_LIP, 0]]
    face = np.ones((2, 3), bool)
    face[1, 0] = False
    assert P.lookup_parts(uv, part_map, face)[1, 0] == 0


def test_iou_on_hand_made_masks():
    truth = np.zeros((4, 4), np.uint8)
    pred = np.zeros((4, 4), np.uint8)
    truth[:2, :2] = P.NOSE  # 4 px
    pred[:2, :3] = P.NOSE  # 6 px, 4 shared
    pred[3, 3] = P.LEFT_EYE  # a false positive
    r = P.part_iou(pred, truth)
    assert r["nose"] == (4, 6) and r["left_eye"] == (0, 1) and r["upper_lip"] == (0, 0)
    valid = np.ones((4, 4), bool)
    valid[:, 2] = False
    assert P.part_iou(pred, truth, valid)["nose"] == (4, 4)
    # mean over the 8 classes; a class absent from both counts as 0 (the val set has all 8)
    assert P.mean_iou(pred, truth) == pytest.approx((4 / 6) / 8)
    assert P.mean_iou(np.stack([truth, truth]), np.stack([truth, truth])) == pytest.approx(1 / 8)


def test_flipping_labels_swaps_sides():
    assert P.PART_FLIP[P.LEFT_EYE] == P.RIGHT_EYE and P.PART_FLIP[P.NOSE] == P.NOSE
    assert (P.PART_FLIP[P.PART_FLIP] == np.arange(9)).all()


def test_segmentation_baseline_learns_on_two_samples():
    torch = pytest.importorskip("torch", reason="PyTorch not installed")
    from training.losses import segment_loss
    from training.model import DenseReg, NetConfig

    torch.manual_seed(0)
    net = DenseReg(NetConfig("realtime", 64, variant="segment"))
    x = torch.randn(2, 3, 64, 64)
    labels = torch.zeros(2, 64, 64, dtype=torch.long)
    labels[:, 16:48, 16:48] = P.OTHER
    labels[:, 24:30, 20:30] = P.RIGHT_EYE
    labels[:, 24:30, 34:44] = P.LEFT_EYE
    valid = torch.ones(2, 64, 64, dtype=torch.bool)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    losses = []
    for _ in range(12):
        loss = segment_loss(net(x), labels, valid)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]
