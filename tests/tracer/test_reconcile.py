"""tracer.reconcile: a logged metric explained by the candidates that reproduce it (S2's numbers)."""
from __future__ import annotations

import numpy as np

from tracer.reconcile import reconcile_metric
from _trace_factories import S2_X, S2_Y, s2_trace


def test_s2_one_batch_rmse_is_the_before_update_value_and_the_sheet_is_after():
    trace = s2_trace(epochs=1, batch_size=12, shuffle=False)
    before = float(np.sqrt(np.mean((S2_X * 0.5 - S2_Y) ** 2)))
    assert round(before, 2) == 20.07                              # FRAMEWORK-FACTS / S2
    text = str(reconcile_metric(trace, "rmse", 1))
    assert "20.07" in text and "18.77" in text
    assert "weights after the update" in text


def test_a_value_from_nowhere_matches_no_candidate():
    trace = s2_trace(epochs=1, batch_size=12, shuffle=False)
    text = str(reconcile_metric(trace, "rmse", 1, value=3.0))
    assert "Your value 3.0 matches none of the candidates" in text
