"""The update check's reproduction of plain SGD (tracer.checker.reproduce): rows equal to
``before + g * (-lr)`` in the run's precision pass without ratios, the few elements that
differ are compared one by one, and every other row gets the ratios of every element.

Every verdict must be the one the ratio path gives (checked against it on planted faults
and on random perturbations of every size), each planted fault with a clean twin; the
shortcut must not be taken where it proves nothing (a float32 run checked at float64).
"""
from __future__ import annotations

import numpy as np
import pytest

import tracer
from tracer import Recorder
from tracer.checker import reproduce, updates
from tracer.checker.compare import badness
from tracer.checker.reproduce import reproduced_rows, reproducible
from tracer.checker.tolerance import FACTOR
from tracer.math.optimizers import get_optimizer

EPS32 = float(np.finfo(np.float32).eps)
LR = 0.0002


def _run(steps=6, size=3000, seed=0, lr=LR, torch_like=True):
    """``(before, after, grad)`` of a float32 parameter trained by plain SGD, each step's
    ``after`` computed as a hand-written torch loop does (``p -= 0.01 * g / 50``, the
    rounding of S4) or as ``p - lr * g`` in float32."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal(size) * 0.01).astype(np.float32)
    b, a, g = [], [], []
    for _ in range(steps):
        gk = (rng.standard_normal(size) * 10.0 ** rng.integers(-3, 1, size)).astype(np.float32)
        step = (np.float32(lr * 50) * gk) / np.float32(50) if torch_like else np.float32(lr) * gk
        nxt = w - step
        b.append(w), a.append(nxt), g.append(gk)
        w = nxt
    return np.array(b), np.array(a), np.array(g)


def _rows(b, a, g, lr=LR, eps=EPS32, lr_used=None):
    rule = get_optimizer({"name": "sgd", "convention": "plain", "lr": lr})
    return updates._update_rows(rule, b, a, g, np.arange(1.0, len(b) + 1), lr_used, eps, (b.shape[1],))


def _ratios(b, a, g, lr=LR, eps=EPS32, lr_used=None):
    rule = get_optimizer({"name": "sgd", "convention": "plain", "lr": lr})
    ml = updates._minus_rate(rule, lr_used, len(b), np.dtype(np.float32))
    return updates._ratio_rows(rule, b, a, g, np.arange(1.0, len(b) + 1), lr_used, eps, (b.shape[1],), None, ml)


def _passed(out, eps=EPS32):
    idx, e, act, scale = out[:4]
    return badness(e, act, FACTOR * eps, scale) <= 1.0


def _same_verdicts(b, a, g, **kw):
    """The per-row verdicts, asserted the same with and without the reproduction; a failing
    row always goes to the ratio path, so it reports the same element and numbers."""
    eps = kw.get("eps", EPS32)
    got, want = _rows(b, a, g, **kw), _ratios(b, a, g, **kw)
    assert _passed(got, eps).tolist() == _passed(want, eps).tolist()
    fail = ~_passed(want, eps)
    for k in range(4):
        assert np.array_equal(got[k][fail], want[k][fail])
    return _passed(got, eps)


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Blocks of 1000 elements: rows of 3000 take three blocks, flagged in segments of 128
    (and a tail of 104), rows of 300 share one."""
    monkeypatch.setattr(reproduce, "BLOCK", 1000)
    monkeypatch.setattr(reproduce, "SEGMENT", 128)


@pytest.mark.parametrize("torch_like", [True, False])
@pytest.mark.parametrize("size", [3000, 300, 1])
def test_a_clean_run_is_reproduced_and_every_row_passes_without_ratios(monkeypatch, torch_like, size):
    b, a, g = _run(size=size, torch_like=torch_like)
    ok, ur, uc = reproduced_rows(b, a, g, np.full((len(b), 1), np.float32(-LR)))
    assert ok.all() and ur.size <= len(b) * reproduce.MOST_UNEQUAL
    if not torch_like:
        assert ur.size == 0                          # p - lr * g in float32: every element
    asked = []
    monkeypatch.setattr(updates, "_ratio_rows", lambda *args: asked.append(args) or None)
    out = _rows(b, a, g)
    assert asked == [] and _passed(out).all() and out[5].all() and out[4].size == 0


def test_the_elements_not_reproduced_are_compared_and_a_row_reports_its_worst():
    b, a, g = _run()
    a[2, 1234] = np.nextafter(a[2, 1234], np.float32(np.inf))      # one unit off: within tolerance
    a[2, 2500] = np.nextafter(np.nextafter(a[2, 2500], np.float32(9)), np.float32(9))   # two units: its worst
    ok, ur, uc = reproduced_rows(b, a, g, np.full((len(b), 1), np.float32(-LR)))
    assert ok.all() and {1234, 2500} <= set(uc[ur == 2].tolist())
    out = _rows(b, a, g)
    assert _passed(out).all() and out[0][2] == 2500


@pytest.mark.parametrize("ulps", [40, 400])
def test_one_element_off_by_more_than_the_tolerance_fails_at_its_step_and_index(ulps):
    b, a, g = _run()
    a[3, 2999] = a[3, 2999] * np.float32(1 + ulps * EPS32)        # the last block of the row
    passed = _same_verdicts(b, a, g)
    assert passed.tolist() == [True, True, True, False, True, True]
    assert _rows(b, a, g)[0][3] == 2999
    clean = _run()
    assert _same_verdicts(*clean).all()                              # the clean twin


def test_a_wrong_rate_fails_every_row_and_the_reproduction_gives_up_early(monkeypatch):
    b, a, g = _run(steps=40, lr=LR * 1.01)               # trained at 1% more than the rule says
    seen = []
    real = reproduce._nonzero
    monkeypatch.setattr(reproduce, "_nonzero", lambda part, *rest: seen.append(part.size) or real(part, *rest))
    ok, _, _ = reproduced_rows(b, a, g, np.full((len(b), 1), np.float32(-LR)))
    assert not ok.any() and len(seen) <= reproduce.PROBE_ROWS       # one block a row, then not at all
    assert not _same_verdicts(b, a, g).any()
    assert _same_verdicts(*_run(steps=40)).all()                      # the twin at the rule's rate


def test_a_skipped_update_fails_its_step():
    b, a, g = _run()
    a[4] = b[4]                                                      # the optimizer step never ran
    assert _same_verdicts(b, a, g).tolist() == [True] * 4 + [False, True]


@pytest.mark.parametrize("where", ["after", "grad", "before_and_after_inf"])
def test_nan_and_inf_are_never_reproduced(where):
    b, a, g = _run()
    if where == "after":
        a[1, 10] = np.nan
    elif where == "grad":
        g[1, 10] = np.nan
    else:                                     # inf before and after: equal, and still no update
        b[1, 10] = a[1, 10] = np.inf
    ok, ur, _ = reproduced_rows(b, a, g, np.full((len(b), 1), np.float32(-LR)))
    assert ok.tolist() == [True, False, True, True, True, True] or (ok[1] and 1 in ur.tolist())
    out = _rows(b, a, g)
    assert _passed(out).tolist() == [True, False, True, True, True, True]
    assert not out[5][1]                     # not shown finite


def test_a_float32_run_checked_at_float64_takes_no_shortcut(monkeypatch):
    """Planted misuse: at float64's eps a float32 update is far outside tolerance; a
    reproduction in float32 would pass it (the bound needs eps >= 2 u of the sum's precision)."""
    b, a, g = _run(torch_like=False)
    eps64 = float(np.finfo(np.float64).eps)
    assert not reproducible(np.dtype(np.float32), b, a, g, eps64)
    assert reproducible(np.dtype(np.float32), b, a, g, EPS32)
    assert not _passed(_rows(b, a, g, eps=eps64), eps64).any()
    asked = []                            # the rows that went to the ratios of every element
    real = updates._ratio_rows
    monkeypatch.setattr(updates, "_ratio_rows", lambda *args: asked.append(len(args[1])) or real(*args))
    _rows(b, a, g, eps=eps64)
    assert asked == [6]
    asked.clear()
    monkeypatch.setattr(updates, "reproducible", lambda *args: True)      # wrongly applied: no row would
    assert _passed(_rows(b, a, g, eps=eps64), EPS32).all() and asked == []   # reach them, every one passed


def test_recorded_rates_per_step_are_reproduced_row_by_row():
    b, a, g = _run(torch_like=False, lr=LR)
    lr_used = np.full(len(b), LR)
    lr_used[2] = LR * 3                     # the run's rate at step 3 was not the schedule's
    passed = _same_verdicts(b, a, g, lr_used=lr_used)
    assert passed.tolist() == [True, True, False, True, True, True]


@pytest.mark.parametrize("seed", range(6))
def test_random_perturbations_give_the_ratio_paths_verdicts(seed):
    rng = np.random.default_rng(100 + seed)
    b, a, g = _run(steps=12, seed=seed, torch_like=bool(seed % 2))
    for _ in range(30):                      # some within tolerance, some not, a few rows twice
        r, c = rng.integers(0, 12), rng.integers(0, 3000)
        a[r, c] = a[r, c] * np.float32(1 + float(rng.choice([1, 3, 8, 16, 30, 60, 200])) * EPS32 * rng.choice([-1, 1]))
    passed = _same_verdicts(b, a, g)
    assert 0 < passed.sum() < 12


def test_no_shortcut_while_the_processor_flushes_subnormals_to_zero():
    """Two different subnormals compare equal then: a reproduction would prove nothing."""
    torch = pytest.importorskip("torch")
    b, a, g = _run(torch_like=False)
    if not torch.set_flush_denormal(True):
        pytest.skip("this processor cannot flush subnormals")
    try:
        assert not reproducible(np.dtype(np.float32), b, a, g, EPS32)
    finally:
        torch.set_flush_denormal(False)
    assert reproducible(np.dtype(np.float32), b, a, g, EPS32)


def _two_param_trace(v_lr=LR, declared=True, steps=5):
    """A float32 run of two parameters by plain SGD (``w`` of 3000 elements at :data:`LR`,
    ``v`` of 300 at ``v_lr``), checked end to end (no program: the update check only)."""
    rng = np.random.default_rng(11)
    w, v = ((rng.standard_normal(n) * 0.01).astype(np.float32) for n in (3000, 300))
    meta = {"framework": "numpy", "model": {"kind": "unsupported", "reason": "test"},
            "optimizer": {"name": "sgd", "convention": "plain", "lr": LR} if declared else None}
    rec = Recorder(meta=meta)
    for k in range(1, steps + 1):
        gw, gv = (rng.standard_normal(n).astype(np.float32) for n in (3000, 300))
        w2, v2 = w - np.float32(LR) * gw, v - np.float32(v_lr) * gv
        rec.record_step(epoch=1, batch=k, params_before={"w": w, "v": v}, params_after={"w": w2, "v": v2},
                        grads={"w": gw, "v": gv}, loss=1.0, batch_size=1)
        w, v = w2, v2
    return rec.trace()


@pytest.mark.parametrize("declared", [True, False])
def test_a_wrong_rate_on_one_parameter_fails_that_parameter_only(declared):
    report = tracer.check(_two_param_trace(v_lr=LR * 1.01, declared=declared))
    rows = report.table[report.table["quantity"] == "update"]
    assert not rows[rows["param"] == "v"]["passed"].any() and len(rows[rows["param"] == "v"]) == 5
    assert rows[rows["param"] == "w"]["passed"].all() and len(rows[rows["param"] == "w"]) == 5
    if not declared:
        assert "except v" in report.identified["optimizer"]
    twin = tracer.check(_two_param_trace(declared=declared))
    assert twin.table[twin.table["quantity"] == "update"]["passed"].all()
