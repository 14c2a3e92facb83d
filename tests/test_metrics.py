"""The scores every table reports (``tracker.metrics``): AUC@0.08 is the exact area under the
CED, a face without a prediction a failure."""
from __future__ import annotations

import numpy as np
import pytest

from tracker.metrics import auc, ced, failure_rate


def test_auc_is_the_exact_area_under_the_ced():
    assert auc(np.array([0.0])) == 1.0 and auc(np.array([0.04])) == pytest.approx(0.5) and auc(np.array([0.08])) == 0.0
    assert auc(np.array([0.02, 0.06, np.inf, np.nan])) == pytest.approx((0.75 + 0.25) / 4)  # no prediction: 0
    assert auc(np.array([])) == 0.0
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # (numpy < 2 has only trapz)
    errors = np.random.default_rng(0).gamma(2.0, 0.015, 500)
    x = np.linspace(0, 0.08, 80001)
    assert auc(errors) == pytest.approx(trapezoid(ced(errors, 0.08, len(x))[1], x) / 0.08, abs=2e-5)
    # The 161-point trapezoid used until session 27 is off by up to half a step for each face:
    # one face at 0.0002 (exactly 0.9975) read 0.9969.
    close = np.array([0.0002])
    assert auc(close) == pytest.approx(0.9975) and trapezoid(*ced(close)[::-1]) / 0.08 == pytest.approx(0.996875)


def test_failure_rate_counts_faces_without_a_prediction():
    assert failure_rate(np.array([0.01, 0.09, np.inf, np.nan])) == 0.75 and failure_rate(np.array([])) == 0.0
