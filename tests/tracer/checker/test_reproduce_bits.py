"""The reproduction's flagging of unequal elements by bit pattern (tracer.checker.reproduce:
``_odd_parts`` takes the largest unsigned-integer view of a part instead of ``any``): every
nonzero element, NaN, inf and subnormal is still found, a ``-0.0`` (a set sign bit) is
searched and lists nothing, and a block of +0.0 flags nothing; a float without an unsigned
integer of its width (long double) is tested by ``!= 0``."""
from __future__ import annotations

import numpy as np
import pytest

from tracer.checker import reproduce
from tracer.checker.compare import badness
from tracer.checker.reproduce import _odd_parts, reproduced_rows

LR = 0.0002


def _listed(d: np.ndarray) -> list[tuple[int, int]]:
    """``(row, column)`` of the nonzero elements that the parts of ``d`` hold, as the search
    (``!= 0``) lists them."""
    out = []
    for r, c, part in _odd_parts(d):
        out += [(r, c + j) for j in np.flatnonzero(part != 0).tolist()]
    return sorted(out)


def _planted(dtype, rows, cols, seed):
    rng = np.random.default_rng(seed)
    d = np.zeros((rows, cols), dtype=dtype)
    specials = [np.nan, np.inf, -np.inf, -0.0, 1.0, -3.5, np.finfo(dtype).smallest_subnormal, np.finfo(dtype).tiny]
    for _ in range(6):
        d[rng.integers(0, rows), rng.integers(0, cols)] = specials[rng.integers(0, len(specials))]
    return d


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.longdouble])
@pytest.mark.parametrize("shape", [(1, 3000), (3, 3000), (5, 300), (1, 100)])
@pytest.mark.parametrize("seed", range(4))
def test_every_nonzero_element_is_in_a_flagged_part(monkeypatch, dtype, shape, seed):
    monkeypatch.setattr(reproduce, "SEGMENT", 128)     # rows of 3000: 23 segments and a tail of 56
    d = _planted(dtype, *shape, seed)
    want = sorted(zip(*[x.tolist() for x in np.nonzero(d != 0)]))
    assert _listed(d) == want
    d[:] = 0
    assert _odd_parts(d) == []                          # +0.0 everywhere: nothing flagged


def test_a_negative_zero_is_flagged_and_lists_nothing(monkeypatch):
    monkeypatch.setattr(reproduce, "SEGMENT", 128)
    d = np.zeros((1, 3000), np.float32)
    d[0, 700] = -0.0
    parts = _odd_parts(d)
    assert [(r, c) for r, c, _ in parts] == [(0, 640)] and _listed(d) == []


def test_an_after_of_negative_zero_is_reproduced_with_nothing_listed():
    """``after = -0.0`` against a sum of +0.0 (equal numbers): the row is reproduced, as with
    ``after - sum == 0``; the clean twin likewise, and one unit off is listed."""
    b = np.array([[1.0, 2.0, 0.0]], np.float32)
    g = np.array([[0.0, 0.0, 0.0]], np.float32)
    ml = np.full((1, 1), np.float32(-LR))
    for last, listed in ((-0.0, []), (0.0, []), (np.float32(np.finfo(np.float32).smallest_subnormal), [2])):
        a = b.copy()
        a[0, 2] = last
        ok, ur, uc = reproduced_rows(b, a, g, ml)
        assert ok.tolist() == [True] and uc.tolist() == listed


@pytest.mark.parametrize("seed", range(3))
def test_each_reported_element_has_the_values_of_the_rule_evaluated_at_it_alone(seed):
    """The update check evaluates the rule once for the unequal elements and the first element
    of every other row: each row's reported values are bit for bit those of a call for that
    element alone (as two calls gave them), for rows reproduced, rows with unequal elements
    within tolerance (a row past it reports the ratio path's element, as before)."""
    from tracer.checker import updates
    from tracer.checker.tolerance import FACTOR
    from tracer.math.optimizers import get_optimizer
    rng = np.random.default_rng(seed)
    eps = float(np.finfo(np.float32).eps)
    b = (rng.standard_normal((8, 3000)) * 0.01).astype(np.float32)
    g = rng.standard_normal((8, 3000)).astype(np.float32)
    a = ((np.float32(LR * 50) * g) / np.float32(50)).astype(np.float32)
    a = (b - a).astype(np.float32)
    for r, ulps in ((1, 1), (3, 2), (5, 400), (5, 1)):
        c = int(rng.integers(0, 3000))
        a[r, c] = a[r, c] * np.float32(1 + ulps * eps)
    rule = get_optimizer({"name": "sgd", "convention": "plain", "lr": LR})
    t = np.arange(1.0, 9.0)
    idx, e, act, scale, *_ = updates._update_rows(rule, b, a, g, t, None, eps, (3000,))
    passed = badness(e, act, FACTOR * eps, scale) <= 1.0
    assert passed.tolist() == [True] * 5 + [False] + [True] * 2
    f = 8 * eps / (FACTOR * eps)
    for r in np.flatnonzero(passed):          # (the failing row reports the ratio path's values)
        want = updates._exact_at(rule, b, a, g, t, None, np.array([r]), np.array([idx[r]]), f)
        assert [x[0] for x in want] == [e[r], act[r], scale[r]]
