"""Plain SGD's rate read from a quick sample and proven by the update check
(tracer.checker.update_rules): a rate stands on the quick sample only when every row of
every identified parameter is reproduced bit for bit (or within the quick tolerance element
by element); otherwise the full sample decides, and the check is the one it gives.

Every planted fault (one element off, a wrong rate at one step, a skipped step, an update
applied twice) fails at its step, with the same table as the full sample's check, and its
clean twin passes on the quick sample alone; a rate the quick sample misreads is never kept
(and would be, were the proof skipped)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import tracer
from tracer import Recorder
from tracer.checker import identify, update_rules, updates

LR = 0.0002
EPS32 = float(np.finfo(np.float32).eps)
CHECKS: list[int] = []   # the parameters' update checks of each tracer.check, in order
SIZE = 20000            # more than the quick sample's 8 runs of 512 elements a step


def _trace(steps=6, plant=None, seed=3, with_v=True):
    """A float32 run of ``w`` (SIZE elements) and ``v`` (300) by ``p -= LR * g`` (undeclared:
    the rate is identified); ``plant(k, w, gw, w_next)`` may change step ``k``'s after."""
    rng = np.random.default_rng(seed)
    w, v = ((rng.standard_normal(n) * 0.01).astype(np.float32) for n in (SIZE, 300))
    meta = {"framework": "numpy", "model": {"kind": "unsupported", "reason": "test"}, "optimizer": None}
    rec = Recorder(meta=meta)
    for k in range(1, steps + 1):
        gw, gv = (rng.standard_normal(n).astype(np.float32) for n in (SIZE, 300))
        w2, v2 = w - np.float32(LR) * gw, v - np.float32(LR) * gv
        if plant is not None:
            w2 = plant(k, w, gw, w2)
        keep = ("w", "v") if with_v else ("w",)
        rec.record_step(epoch=1, batch=k, params_before={n: x for n, x in zip(keep, (w, v))},
                        params_after={n: x for n, x in zip(keep, (w2, v2))},
                        grads={n: x for n, x in zip(keep, (gw, gv))}, loss=1.0, batch_size=1)
        w, v = w2, v2
    return rec.trace()


def _checked(trace, monkeypatch, quick=True):
    """``(report, full identifications made)``; ``quick=False``: the full sample only."""
    full, passes = [], []
    real, real_check = update_rules._identified, updates._check_param
    with monkeypatch.context() as m:
        m.setattr(update_rules, "_identified", lambda *a: full.append(1) or real(*a))
        m.setattr(updates, "_check_param", lambda name, *a: passes.append(name) or real_check(name, *a))
        if not quick:
            m.setattr(update_rules, "_quick_rates", lambda *a: None)
        report = tracer.check(trace)
    CHECKS.append(len(passes))
    return report, len(full)


def _updates(report):
    t = report.table
    return t[t["quantity"] == "update"].reset_index(drop=True)


def test_a_clean_run_is_identified_on_the_quick_sample_and_checked_once(monkeypatch):
    report, full = _checked(_trace(), monkeypatch)
    slow, _ = _checked(_trace(), monkeypatch, quick=False)
    assert full == 0 and _updates(report)["passed"].all() and len(_updates(report)) == 12
    assert report.identified["optimizer"] == slow.identified["optimizer"] == \
        "updates match SGD with lr 0.0002 (param -= 0.0002 * grad)"
    pd.testing.assert_frame_equal(report.table, slow.table)
    assert report.verdict == slow.verdict


STEPS = 40
#: a step that neither sample reads (the full sample reads 32 of 40 steps, the quick one 8):
#: a fault there leaves both rates at LR, so the quick pass's check stands; a step the full
#: sample reads moves its rate (a skipped step: the fitted rate), and the check is made again
OUTSIDE = 1 + min(set(range(STEPS)) - set(identify._sample_rows(STEPS).tolist())
                  - set(identify._sample_rows(STEPS, identify.QUICK_ROWS).tolist()))
INSIDE = 1 + int(identify._sample_rows(STEPS, identify.QUICK_ROWS)[2])


def _one_element(at):
    def plant(k, w, gw, w2):
        if k == at:
            w2 = w2.copy()
            w2[12345] = w2[12345] * np.float32(1 + 40 * EPS32)     # 40 units: past the tolerance
        return w2
    return plant


def _wrong_rate(at):
    return lambda k, w, gw, w2: w - np.float32(LR * 1.01) * gw if k == at else w2


def _skipped(at):
    return lambda k, w, gw, w2: w.copy() if k == at else w2


def _twice(at):
    return lambda k, w, gw, w2: w2 - np.float32(LR) * gw if k == at else w2


@pytest.mark.parametrize("at", [OUTSIDE, INSIDE])
@pytest.mark.parametrize("fault", [_one_element, _wrong_rate, _skipped, _twice])
def test_a_planted_fault_fails_its_step_as_the_full_sample_check_does(monkeypatch, fault, at):
    report, full = _checked(_trace(STEPS, plant=fault(at)), monkeypatch)
    slow, _ = _checked(_trace(STEPS, plant=fault(at)), monkeypatch, quick=False)
    rows = _updates(report)
    failing = rows[~rows["passed"]][["step", "param"]].values.tolist()
    assert full == 1                                     # not proven (or no quick rate): the full sample
    assert failing == [[at, "w"]] if at == OUTSIDE else [at, "w"] in failing
    pd.testing.assert_frame_equal(report.table, slow.table)
    assert report.verdict == slow.verdict == "failed"
    assert report.identified["optimizer"] == slow.identified["optimizer"]
    trace = _trace(STEPS, plant=fault(at))
    quick, _ = identify.identify_sgd(trace.arrays(), {n: update_rules.RowsOfGrad(p.grad, None)
                                                      for n, p in trace.arrays().params.items()}, EPS32, quick=True)
    kept = quick is not None and quick["w"] == report.context["rules"]["w"].lr
    assert kept or at == INSIDE                          # outside both samples: the quick pass's check stands
    assert CHECKS[-2] == (2 if kept or quick is None else 4)    # else made again, at the full sample's rate
    twin, full = _checked(_trace(STEPS), monkeypatch)   # the clean twin: quick, and passing
    assert full == 0 and _updates(twin)["passed"].all()


def _quick_columns():
    starts = np.linspace(0, SIZE - identify.QUICK_RUN, identify.QUICK_RUNS).astype(np.int64)
    return (starts[:, None] + np.arange(identify.QUICK_RUN)).reshape(-1)


def _misread(k, w, gw, w2):
    """The quick sample's elements moved at 1.5 times the rate, every step: it reads 0.0003."""
    w2 = w2.copy()
    cols = _quick_columns()
    w2[cols] = w[cols] - np.float32(LR * 1.5) * gw[cols]
    return w2


def test_a_rate_the_quick_sample_misreads_is_not_kept(monkeypatch):
    trace = _trace(plant=_misread, with_v=False)
    grads = {"w": update_rules.RowsOfGrad(trace.arrays().params["w"].grad, None)}
    rates, _ = identify.identify_sgd(trace.arrays(), grads, EPS32, quick=True)
    assert rates["w"] == pytest.approx(LR * 1.5, rel=1e-3)                # misread
    report, full = _checked(trace, monkeypatch)
    assert full == 1 and CHECKS[-1] == 2                                  # made again at the full rate
    slow, _ = _checked(trace, monkeypatch, quick=False)
    assert report.context["rules"]["w"].lr == slow.context["rules"]["w"].lr != rates["w"]
    pd.testing.assert_frame_equal(report.table, slow.table)
    assert report.identified["optimizer"] == slow.identified["optimizer"]
    assert report.verdict == slow.verdict == "failed"


def test_without_the_proof_a_misread_rate_would_stand(monkeypatch):
    """The test above has teeth: with the proof skipped (every row taken as reproduced), the
    quick sample's misread rate would be kept, and the table differ from the full sample's."""
    trace = _trace(plant=_misread, with_v=False)
    slow, _ = _checked(trace, monkeypatch, quick=False)
    monkeypatch.setattr(update_rules, "note_reproduced", lambda every_row: None)
    report, full = _checked(trace, monkeypatch)
    assert full == 0 and report.context["rules"]["w"].lr == pytest.approx(LR * 1.5, rel=1e-3)
    assert not report.table.equals(slow.table)


@pytest.mark.parametrize("where, times", [("quick", 0.8), ("rule", 0.9), ("rule", 1.1)])
def test_an_element_near_the_tolerances_is_decided_as_by_the_full_sample(monkeypatch, where, times):
    """One element of ``w`` at step OUTSIDE moved ``times`` a tolerance: the quick one
    (``FACTOR eps max(|p|) / 4``, compared element by element) at 0.8: not reproduced bit for
    bit, compared alone, passes, and the quick rate is still proven (no full sample); the
    rule's (``FACTOR eps (|p| + lr |g|)``, the rounding magnitudes of ``p - lr g``) at 0.9:
    past the quick one, so the row goes to the ratios and the full sample is read, and it
    passes; at 1.1 it fails at its step and index; each as the full sample's check."""
    from tracer.checker.tolerance import FACTOR

    def plant(k, w, gw, w2):
        if k == OUTSIDE:
            w2 = w2.copy()
            p, u = float(w[777]), float(w2[777])
            tol = FACTOR * EPS32 * (max(abs(p), abs(u)) / 4 if where == "quick" else abs(p) + LR * abs(float(gw[777])))
            w2[777] = np.float32(u + times * tol)
        return w2
    trace = _trace(STEPS, plant=plant)
    report, full = _checked(trace, monkeypatch)
    slow, _ = _checked(trace, monkeypatch, quick=False)
    rows = _updates(report)
    pd.testing.assert_frame_equal(report.table, slow.table)
    assert full == (0 if where == "quick" else 1)
    if times < 1:
        assert rows["passed"].all()
        assert rows[(rows["step"] == OUTSIDE) & (rows["param"] == "w")]["index"].tolist() == [777]
    else:
        assert rows[~rows["passed"]][["step", "param", "index"]].values.tolist() == [[OUTSIDE, "w", 777]]
