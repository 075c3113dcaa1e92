"""The hand-written elementwise rules (tracer.program.kernels) give the lambdified numbers bit
for bit, into the check's arena, and step aside where they do not apply."""
from __future__ import annotations

import numpy as np
import pytest

from tracer.program.registry import get_op
from tracer.program.scratch import arena

SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, 0.5, np.nan, np.inf, -np.inf, 1e-40, -1e-40, 3.0e38], dtype=np.float32)


def _data(dtype, shape=(3, 40, 64), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    x.flat[:SPECIAL.size] = SPECIAL.astype(dtype)
    x.flat[SPECIAL.size:SPECIAL.size + 50] = 0.0           # ReLU ties with the constant 0
    return x


def _args(dtype, y_const, shape=(3, 40, 64)):
    x = _data(dtype, shape)
    y = np.asarray([0.0], dtype=dtype).reshape(1, 1, 1) if y_const else _data(dtype, shape, seed=1)
    if not y_const:
        y.flat[:SPECIAL.size] = SPECIAL[::-1].astype(dtype)
    m_x, m_y = np.abs(_data(dtype, shape, seed=2)), np.abs(y) * dtype(0.5)
    g, m_g = _data(dtype, shape, seed=3), np.abs(_data(dtype, shape, seed=4))
    g.flat[:SPECIAL.size] = SPECIAL[::-1].astype(dtype)
    return x, y, m_x, m_y, g, m_g


def _same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("y_const", [True, False])
@pytest.mark.parametrize("in_arena", [True, False])
def test_maximum_rules_equal_the_lambdified_ones_bit_for_bit(dtype, y_const, in_arena):
    f, fm, d, dm = get_op("maximum")._compiled({})
    x, y, m_x, m_y, g, m_g = _args(dtype, y_const)
    with arena() if in_arena else np.errstate():
        with np.errstate(all="ignore"):
            _same_bits(f(x, y), f.__wrapped__(x, y))
            _same_bits(fm(x, y, m_x, m_y), fm.__wrapped__(x, y, m_x, m_y))
            for i in range(2):
                _same_bits(d[i](x, y), d[i].__wrapped__(x, y))
                _same_bits(dm[i](x, y, m_x, m_y, g, m_g), dm[i].__wrapped__(x, y, m_x, m_y, g, m_g))


@pytest.mark.parametrize("name", ["add", "sub"])
def test_sum_magnitudes_equal_the_lambdified_ones(name):
    fm = get_op(name)._compiled({})[1]
    x, y, m_x, m_y, _, _ = _args(np.float32, False)
    with arena(), np.errstate(all="ignore"):
        _same_bits(fm(x, y, m_x, m_y), fm.__wrapped__(x, y, m_x, m_y))
        _same_bits(fm(x, y[:, :1], m_x, m_y[:, :1]), fm.__wrapped__(x, y[:, :1], m_x, m_y[:, :1]))


def test_the_kernels_run_in_the_arena_and_step_aside_for_mixed_dtypes():
    f, fm, d, dm = get_op("maximum")._compiled({})
    x, y, m_x, m_y, g, m_g = _args(np.float32, True, shape=(4, 64, 256))     # 256 KiB: arena-sized
    assert f.__wrapped__ is not f                       # a hand-written rule is in front
    with arena(), np.errstate(all="ignore"):
        out = dm[0](x, y, m_x, m_y, g, m_g)
        assert out.base is not None                     # laid on an arena block, not fresh
    y64 = y.astype(np.float64)                          # mixed dtypes: the lambdified rule decides
    with np.errstate(all="ignore"):
        _same_bits(dm[0](x, y64, m_x, m_y, g, m_g), dm[0].__wrapped__(x, y64, m_x, m_y, g, m_g))
        assert f(x, y64).dtype == np.float64
    # a rule with attributes (none has a hand-written form) is the lambdified one itself
    rule = get_op("clamp")._compiled({"min": 0.0, "max": None})[3][0]
    assert not hasattr(rule, "__wrapped__")


def test_a_relu_written_as_maximum_still_gets_its_gradient_and_magnitudes():
    """Through the op's own methods (what the engine calls): the tie at 0 splits, the
    magnitude is |H| (m_g + |g|) where it is clean."""
    op = get_op("maximum")
    z = np.array([[[-1.0, 0.0, 2.0]]], dtype=np.float32)
    zero = np.asarray([0.0], dtype=np.float32)
    g = np.array([[[1.0, 1.0, -3.0]]], dtype=np.float32)
    with arena():
        gz, _ = op.vjp(g, [z, zero], None, {}, [True, False])
        m, _ = op.bmag(np.full_like(g, 2.0), g, [np.abs(z), np.abs(zero)], [z, zero], z, {}, [True, False])
    assert gz.tolist() == [[[0.0, 0.5, -3.0]]]
    assert m.tolist() == [[[0.0, 1.5, 5.0]]]


def test_add_passes_a_contiguous_gradient_on_and_multiplies_out_a_broadcast_one():
    """add's derivative is exactly 1: a C-contiguous gradient goes on as it is (the same
    bits as g * 1); a broadcast one is still multiplied into a contiguous array, so that a
    product reading it takes the same path as before."""
    op = get_op("add")
    x, y = np.ones((3, 4, 5), np.float32), np.ones((3, 1, 5), np.float32)
    g = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    gx, gy = op.vjp(g, [x, y], None, {}, [True, True])
    assert gx is g
    np.testing.assert_array_equal(gy, g.sum(axis=1, keepdims=True))
    wide = np.broadcast_to(g[:, :1], g.shape)
    gx, _ = op.vjp(wide, [x, y], None, {}, [True, False])
    assert gx is not wide and gx.flags.c_contiguous and np.array_equal(gx, wide)
