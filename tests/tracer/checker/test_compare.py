"""The checker's blocked comparison (tracer.checker.compare) and the fast update check.

The fast pass computes in the run's precision, block by block; it must give the same
verdicts as the float64 definition (``badness``) on every row, name the same worst element
wherever that element is not a near-tie, and catch a single planted element in a
parameter wider than one block (each planted fault with a clean twin).
"""
from __future__ import annotations

import numpy as np

import tracer
from tracer import Recorder
from tracer.checker import compare
from tracer.checker.compare import all_nan_rows, badness, nonfinite_rows, worst_per_row, worst_rows
from tracer.math.optimizers import get_optimizer

RTOL = 32 * float(np.finfo(np.float32).eps)


def _pair(rows, cols, seed=0):
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((rows, cols)).astype(np.float32)
    a = (e * (1 + 2e-7 * rng.standard_normal((rows, cols)))).astype(np.float32)
    return e, a


def _exact(e, a, scale=None):
    bad = badness(e, a, RTOL, scale)
    worst, _ = worst_per_row(bad)
    return worst, bad[np.arange(len(worst)), worst]


def test_worst_rows_agrees_with_the_float64_definition_across_blocks():
    e, a = _pair(6, 3 * compare.BLOCK + 17)         # rows wider than a block: several column blocks
    a[1, 2 * compare.BLOCK + 5] = e[1, 2 * compare.BLOCK + 5] * 1.001     # planted: outside tolerance
    e[2, 7] = np.nan                                                   # planted: NaN counts as worst
    a[3, compare.BLOCK + 1] = np.inf
    e[4], a[4] = 0, 0                                                  # exact zeros: badness 0
    idx, bad = worst_rows(e, a, RTOL)
    want_idx, want_bad = _exact(e, a)
    assert (idx == want_idx).all() and (bad == want_bad).all()
    assert idx[1] == 2 * compare.BLOCK + 5 and bad[1] > 1
    assert idx[2] == 7 and np.isinf(bad[2]) and idx[3] == compare.BLOCK + 1
    assert bad[4] == 0 and (bad[[0, 5]] <= 1).all()                    # the clean twins


def test_worst_rows_with_a_scale_and_many_short_rows():
    e, a = _pair(500, 3, seed=1)
    scale = np.abs(e) * 10
    a[17, 1] = e[17, 1] + 1.0
    idx, bad = worst_rows(e, a, RTOL, scale)
    want_idx, want_bad = _exact(e, a, scale)
    assert (idx == want_idx).all() and (bad == want_bad).all()
    assert bad[17] > 1 and (np.delete(bad, 17) <= 1).all()


def test_rows_left_unsettled_are_not_recomputed_when_only_failing_matters():
    e, a = _pair(4, 10, seed=2)
    a[0, 3] = e[0, 3] * 2                      # clearly outside: keeps its fast badness
    idx, bad = worst_rows(e, a, RTOL, exact_fails=False)
    assert bad[0] > 1 and idx[0] == 3
    assert (bad[1:] <= 1).all()


def test_row_scans_find_nan_and_inf_rows_without_a_whole_mask():
    g = np.ones((5, 7), dtype=np.float32)
    g[1] = np.nan                               # not recorded
    g[2, 3] = np.nan                            # recorded, one NaN
    g[3, 6] = -np.inf
    big = np.full((1, 4), 3e38, dtype=np.float32)   # finite, but the row sum overflows
    assert nonfinite_rows(g).tolist() == [False, True, True, True, False]
    assert all_nan_rows(g).tolist() == [False, True, False, False, False]
    assert nonfinite_rows(big).tolist() == [False]


def test_stateless_rules_give_their_update_from_its_own_expression():
    rng = np.random.default_rng(3)
    p = rng.standard_normal((3, 5)).astype(np.float32)
    g = rng.standard_normal((3, 5)).astype(np.float32)
    for spec in ({"name": "sgd", "convention": "plain", "lr": 2e-4},
                 {"name": "sgd", "convention": "torch", "lr": 1e-3, "weight_decay": 0.1}):
        rule = get_optimizer(spec)
        new, _ = rule.step(p, g, {}, np.arange(1, 4))
        delta = rule.update(p, g, np.arange(1, 4))
        assert delta.dtype == np.float32
        np.testing.assert_allclose(delta, new - p.astype(np.float64), rtol=1e-6, atol=1e-12)


def _wide_sgd_trace(plant=None, steps=3, size=2 * compare.BLOCK + 100, lr=0.01, nan_grad_step=None):
    """A float32 'model' with one wide parameter updated by plain SGD from a recorded gradient
    (no program: only the update check runs); ``plant(step, after)`` edits what is recorded."""
    rng = np.random.default_rng(4)
    w = rng.standard_normal(size).astype(np.float32)
    meta = {"framework": "numpy", "model": {"kind": "unsupported", "reason": "test"},
            "optimizer": {"name": "sgd", "convention": "plain", "lr": lr}}
    rec = Recorder(meta=meta)
    for k in range(1, steps + 1):
        g = rng.standard_normal(size).astype(np.float32)
        after = (w - np.float32(lr) * g).astype(np.float32)
        if k == nan_grad_step:
            g[size // 2] = np.nan
        if plant:
            after = plant(k, after.copy())
        rec.record_step(epoch=1, batch=k, params_before={"w": w}, params_after={"w": after}, grads={"w": g},
                        loss=1.0, batch_size=1)
        w = after
    return rec.trace()


def _update_rows(report):
    t = report.table
    return t[t["quantity"] == "update"]


def test_a_single_wrong_element_of_a_wide_parameter_fails_its_step_only():
    spot = 2 * compare.BLOCK + 50                    # in the last column block

    def plant(step, after):
        if step == 2:
            after[spot] += np.float32(1e-3)
        return after
    rows = _update_rows(tracer.check(_wide_sgd_trace(plant)))
    assert rows["passed"].tolist() == [True, False, True]
    assert int(rows.iloc[1]["index"]) == spot
    clean = _update_rows(tracer.check(_wide_sgd_trace()))
    assert clean["passed"].all() and len(clean) == 3


def test_a_nan_value_after_the_update_fails_its_step():
    def plant(step, after):
        if step == 3:
            after[:] = np.nan
        return after
    rows = _update_rows(tracer.check(_wide_sgd_trace(plant)))
    assert rows["step"].tolist() == [1, 2, 3] and rows["passed"].tolist() == [True, True, False]
    assert rows.iloc[2]["status"] == "non-finite"


def test_a_step_whose_gradient_holds_a_nan_is_left_out_of_the_update_check():
    report = tracer.check(_wide_sgd_trace(nan_grad_step=2))
    rows = _update_rows(report)
    assert rows["step"].tolist() == [1, 3] and rows["passed"].all()
    assert report.context["partial_updates"]["w"] == (2, 3)


def test_the_pair_pass_skips_the_quick_ratio_of_rows_known_to_fail_and_keeps_every_verdict():
    from tracer.checker.compare import PROBE, worst_rows_pair
    e, a = _pair(5, 3 * PROBE + 11, seed=5)
    scale = (np.abs(e) * 1e-3).astype(np.float32)
    a[0, 5] = e[0, 5] * 1.01                     # fails |value| in its first elements: the probe settles it
    a[1, 3 * PROBE] = e[1, 3 * PROBE] * 1.01     # fails only past the probe: the whole row is compared
    e[2, 2 * PROBE] = np.nan                     # a NaN past the probe
    a[3, 1] = np.inf                             # an inf in the probe
    (i1, b1), (i2, b2) = worst_rows_pair(e, a, RTOL, scale, RTOL / 2)
    want1 = worst_rows(e, a, RTOL, exact_fails=False)
    want2 = worst_rows(e, a, RTOL / 2, scale, exact_fails=False)
    assert ((b1 > 1) == (want1[1] > 1)).all() and (b1 > 1).tolist() == [True, True, True, True, False]
    assert i1[4] == want1[0][4] and b1[4] == want1[1][4] <= 1          # the clean twin: its worst element
    assert (i2 == want2[0]).all() and ((b2 > 1) == (want2[1] > 1)).all()    # the second comparison: unchanged
    assert np.array_equal(b2[b2 <= 1], want2[1][b2 <= 1])   # (a clear failure's fast badness leaves out |a|)
    assert i2[2] == 2 * PROBE and np.isinf(b2[2]) and i2[3] == 1


def test_the_pair_pass_leaves_the_recorded_value_out_of_its_scales_only_below_its_tolerance():
    """``|e - a| / max(|e|, s)`` decides as the definition while the tolerance is small: a row
    just inside its tolerance passes, one just outside fails, an inf or a NaN fails. At a
    float16 run's tolerance the shortcut would fail a row the definition passes (``|a|`` is
    then far above ``|e|``), so it is not taken there."""
    from tracer.checker.compare import OWN_RTOL, worst_rows_pair
    e, a = _pair(6, 5000, seed=7)
    scale = np.zeros_like(e)
    a[0, 9] = e[0, 9] * (1 + 0.9 * RTOL)          # inside, by the definition's ratio
    a[1, 9] = e[1, 9] * (1 + 1.2 * RTOL)          # outside
    a[2, 9], a[3, 9] = np.inf, np.nan
    a[4, 9] = -e[4, 9]                            # a wrong sign
    (_, b1), (i2, b2) = worst_rows_pair(e, a, RTOL, scale, RTOL / 2)
    want1, want2 = worst_rows(e, a, RTOL), worst_rows(e, a, RTOL / 2, scale)
    assert RTOL < OWN_RTOL
    assert (b1 > 1).tolist() == (want1[1] > 1).tolist() == [False, True, True, True, True, False]
    assert (b2 > 1).tolist() == (want2[1] > 1).tolist() == [True, True, True, True, True, False]
    assert (i2[1:5] == 9).all()
    big = 0.03                                    # a float16 run's 32 * eps
    e16 = np.ones((2, 5000), dtype=np.float32)
    a16 = e16.copy()
    a16[0, 9] = 1.0305                            # |e - a| / max(|e|, |a|) = 0.0296: passes
    a16[1, 9] = 1.0325                            # 0.0315: fails
    (_, c1), _ = worst_rows_pair(e16, a16, big, np.zeros_like(e16), big / 2)
    assert big > OWN_RTOL and (c1 > 1).tolist() == [False, True]


def _non_finite(report):
    return [(f.step, f.message.split("recorded ")[1].split(".")[0]) for f in report.findings if f.kind == "non_finite"]


def test_rows_the_update_check_shows_finite_are_not_scanned_again_and_planted_nans_are_still_found():
    clean = tracer.check(_wide_sgd_trace())
    proven = clean.context["finite_rows"]["w"]
    assert proven["after"].tolist() == [True] * 3 and proven["grad"].tolist() == [True] * 3
    assert _non_finite(clean) == []                                    # the clean twin
    nan_grad = tracer.check(_wide_sgd_trace(nan_grad_step=2))
    assert nan_grad.context["finite_rows"]["w"]["grad"].tolist() == [True, False, True]
    assert _non_finite(nan_grad) == [(2, "gradient of w")]

    def plant(step, after):
        if step == 3:
            after[7] = np.inf
        return after
    inf_after = tracer.check(_wide_sgd_trace(plant))
    assert inf_after.context["finite_rows"]["w"]["after"].tolist() == [True, True, False]
    assert _non_finite(inf_after) == [(3, "value after the update of w")]


def test_an_update_rule_that_is_not_minus_lr_times_grad_shows_no_gradient_finite():
    trace = _wide_sgd_trace(steps=2, size=50)
    report = tracer.check(trace, optimizer={"name": "sgd", "convention": "torch", "lr": 0.01, "weight_decay": 0.1})
    proven = report.context["finite_rows"]["w"]       # (the update fails: the run had no weight decay)
    assert proven["after"].all() and not proven["grad"].any()


def test_first_blocks_and_small_buffers_keep_the_worst_elements_and_their_nans(monkeypatch):
    """A row's first block is taken as it is and later blocks fold in (a NaN stays the
    worst); short rows run on plain buffers, not the arena: the result is the one of the
    float64 definition, one block per row or many, with a planted fault and a clean twin."""
    e, a = _pair(9, 300, seed=3)
    a[1, 250] = e[1, 250] * 1.001                  # planted: outside tolerance, in a later block
    e[2, 40], a[3, 299] = np.nan, np.inf           # NaN in a first block, inf in the last
    e[4, 5], e[4, 260] = np.nan, 1e30              # a NaN first, a huge ratio after: the NaN stays
    e[5], a[5] = 0, 0
    want_idx, want_bad = _exact(e, a)
    results = [worst_rows(e, a, RTOL)]
    monkeypatch.setattr(compare, "BLOCK", 64)      # 5 column blocks a row: the folding path
    results.append(worst_rows(e, a, RTOL))
    for idx, bad in results:
        np.testing.assert_array_equal(bad > 1, want_bad > 1)
        assert bad[6] <= 1 and bad[0] <= 1         # the clean twins pass
        for r in (1, 2, 3):
            assert idx[r] == want_idx[r]
        assert idx[4] == 5 and bad[4] == np.inf
    fast = compare._fast_worst(9, 300, lambda r0, r1, c0, c1: (e[r0:r1, c0:c1], a[r0:r1, c0:c1], None), None)
    assert np.isnan(fast[1][4]) and fast[0][4] == 5 and np.isnan(fast[1][2]) and fast[0][2] == 40
    assert isinstance(compare._buffers(np.dtype(np.float32), 9, 300), compare._Plain)
    assert not isinstance(compare._buffers(np.dtype(np.float32), 2, 1 << 18), compare._Plain)   # 2 MB: arena
