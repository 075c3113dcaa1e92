"""The update check's shortcuts give the numbers of the general path, and the scratch arena
reuses buffers without ever handing one out twice."""
import numpy as np
import pytest

from tracer.program.scratch import Scratch, arena
from tracer.checker.updates import _minus_rate
from tracer.math.optimizers import get_optimizer


@pytest.mark.parametrize("gdtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("recorded_lr", [False, True])
def test_plain_sgd_update_is_bit_for_bit_the_rules(gdtype, recorded_lr):
    rng = np.random.default_rng(0)
    rule = get_optimizer({"name": "sgd", "convention": "plain", "lr": 0.0003})
    before = rng.standard_normal((6, 50)).astype(np.float32)
    g = (rng.standard_normal((6, 50)) * 10.0 ** rng.integers(-8, 3, (6, 50))).astype(gdtype)
    g[0, 0] = np.nan
    lr = np.linspace(1e-4, 0.3, 6) if recorded_lr else None
    dt = np.result_type(before.dtype, g.dtype, np.float32)
    want = rule.update(before, g, np.arange(1.0, 7.0), lr, dtype=dt)
    got = np.empty(g.shape, dt)
    np.multiply(g, _minus_rate(rule, lr, 6, dt), out=got, casting="unsafe")
    assert got.dtype == want.dtype
    num = ~np.isnan(want)           # bit for bit (zeros' signs too); a NaN stays a NaN (its sign bit aside)
    assert np.array_equal(got.view(np.uint8).reshape(6, 50, -1)[num], want.view(np.uint8).reshape(6, 50, -1)[num])
    assert np.array_equal(np.isnan(got), ~num) and (~num).sum() == 1


def test_only_plain_sgd_takes_the_shortcut():
    assert _minus_rate(get_optimizer({"name": "sgd", "convention": "torch", "lr": 0.1}), None, 2, np.float32) \
        .tolist() == [[np.float32(-0.1)]] * 2
    for spec in ({"name": "sgd", "convention": "torch", "lr": 0.1, "momentum": 0.9},
                 {"name": "sgd", "convention": "torch", "lr": 0.1, "weight_decay": 0.01}):
        assert _minus_rate(get_optimizer(spec), None, 2, np.float32) is None
        assert _minus_rate(get_optimizer(spec), None, 2, np.float32) is None       # the cached answer too
    rule = get_optimizer({"name": "sgd", "convention": "plain", "lr": 0.5})
    for _ in range(2):                  # asked again (cached): the rates of the rows, not the first call's
        assert _minus_rate(rule, np.array([0.25, 2.0]), 2, np.float64).tolist() == [[-0.25], [-2.0]]


def test_scratch_buffers_are_distinct_and_reused_within_an_arena():
    with arena():
        with Scratch(np.float32) as s:
            a, b, c = s.views((2, 10), 3)
            assert len({x.__array_interface__["data"][0] for x in (a, b, c)}) == 3
            first = {x.__array_interface__["data"][0] for x in (a, b, c)}
            a2, b2 = s.views((1, 5), 2)          # smaller: the same buffers
            assert {a2.__array_interface__["data"][0], b2.__array_interface__["data"][0]} <= first
        del a, b, c, a2, b2         # a block a live view still uses is never handed out again
        with Scratch(np.float32) as t, Scratch(np.float32) as u:
            got = [x.__array_interface__["data"][0] for x in t.views((2, 10), 2) + u.views((2, 10), 2)]
            assert len(set(got)) == 4 and len(set(got) & first) == 3   # the released three, one new
        with Scratch(np.float64) as w:               # another dtype: not one of them
            assert w.views((2, 10), 1)[0].dtype == np.float64
    with Scratch(np.float32) as s:                  # no arena: plain buffers, nothing kept
        assert s.views((3, 4), 2)[1].shape == (3, 4)
