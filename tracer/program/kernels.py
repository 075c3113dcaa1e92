"""Hand-written forms of the hottest elementwise rules: the lambdified numbers, bit for bit,
written into arrays of the check's arena.

Why: a lambdified rule such as ``maximum``'s gradient magnitude, ``m_g*x0 + x0*abs(g)``,
makes a fresh NumPy temporary per operation. On S4's hidden layer (a ReLU written
``torch.max(z, 0)``: 22 x 50 x 256 per chunk) that is five new 1.1 MB arrays a chunk, whose
first touch costs page faults (about 1.3 ms per MB here) on top of the passes. The forms
below run the same operations, in the same order and precision (so the same numbers:
``tests/tracer/program/test_kernels.py`` compares them with the lambdified rules on ties,
signed zeros, NaN and inf), into :func:`tracer.program.scratch.empty` arrays. A rule is
taken only where every argument is a float array of one dtype (the lambdified rule decides
otherwise, e.g. a float64 constant against float32 values).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .scratch import empty
from .symbolic import _np_heaviside

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["kernels", "hand_written"]


def _out(*arrays):
    return empty(np.broadcast_shapes(*[a.shape for a in arrays]), arrays[0].dtype)


def _same(fn):
    """``fn`` where every argument is a float ndarray of one dtype, else None (the caller
    falls back to the lambdified rule)."""
    def run(*args):
        dt = args[0].dtype if isinstance(args[0], np.ndarray) else None
        if dt is None or dt.kind != "f" or any(not isinstance(a, np.ndarray) or a.dtype != dt for a in args):
            return None
        return fn(*args)
    return run


def _max_forward(x, y):                      # reduce(maximum, [x, y])
    return np.maximum(x, y, out=_out(x, y))


def _max_fmag(x, y, m_x, m_y):               # reduce(maximum, [m_x, m_y])
    return np.maximum(m_x, m_y, out=_out(m_x, m_y))


def _step(a, b):
    """``heaviside_(a - b, 1/2)``; the difference in an arena array (``-x + y`` is ``y - x``
    bit for bit: negation is exact and addition commutes). Against a constant 0 (a ReLU
    written ``max(z, 0)``) the step of ``a`` itself: ``a - 0`` is ``a`` but for the sign of
    a zero, and the step reads 1/2 at either zero."""
    if b.size == 1 and b.ndim <= a.ndim and not b.reshape(-1)[0]:
        return _np_heaviside(a, 0.5)
    return _np_heaviside(np.subtract(a, b, out=_out(a, b)), 0.5)


def _max_bmag(h, g, m_g):
    """``m_g*x0 + x0*abs(g)`` with ``x0 = abs(h)``; ``h`` (0, 1/2 or 1, never -0) is its
    own absolute value. The same products and sum, two arrays instead of five."""
    u = np.abs(g, out=_out(g, h))
    np.multiply(h, u, out=u)
    t = h if h.shape == np.broadcast_shapes(m_g.shape, u.shape) else _out(m_g, h, g)   # h: made here
    np.multiply(m_g, h, out=t)
    return np.add(t, u, out=t)


def _magnitude_sum(x, y, m_x, m_y):          # m_x + m_y (add's and sub's magnitude)
    return np.add(m_x, m_y, out=_out(m_x, m_y))


_MAXIMUM = {
    "forward": _max_forward, "fmag": _max_fmag,
    "d": (lambda x, y: _step(x, y), lambda x, y: _step(y, x)),
    "dm": (lambda x, y, m_x, m_y, g, m_g: _max_bmag(_step(x, y), g, m_g),
           lambda x, y, m_x, m_y, g, m_g: _max_bmag(_step(y, x), g, m_g)),
}

#: op name -> its rules by kind (``forward``, ``fmag``: one callable; ``d``, ``dm``: one per
#: argument); each returns None where :func:`_same` declines
_TABLE: dict[str, dict] = {"maximum": _MAXIMUM, "add": {"fmag": _magnitude_sum}, "sub": {"fmag": _magnitude_sum}}


def kernels(name: str) -> dict[str, Callable | tuple]:
    """The hand-written rules of op ``name`` (empty when it has none), each wrapped to
    decline (None) arguments that are not float arrays of one dtype."""
    out = {}
    for kind, fn in _TABLE.get(name, {}).items():
        out[kind] = tuple(_same(f) for f in fn) if isinstance(fn, tuple) else _same(fn)
    return out


def with_fallback(kernel: Callable | None, rule: Callable | None) -> Callable | None:
    """``kernel`` where it applies, else the lambdified ``rule``."""
    if kernel is None or rule is None:
        return rule

    def run(*args):
        out = kernel(*args)
        return rule(*args) if out is None else out
    run.__wrapped__ = rule
    return run


def hand_written(name: str, attrs: dict, f: Callable, fm: Callable, d: list, dm: list) -> tuple:
    """An op's compiled rules ``(forward, magnitude, derivatives, gradient magnitudes)`` with
    the hand-written forms of :func:`kernels` in front (the lambdified rule wherever one
    declines). Only attribute-free rules have such forms."""
    k = {} if attrs else kernels(name)
    if not k:
        return f, fm, d, dm
    each = [(k.get("d") or (None,) * len(d)), (k.get("dm") or (None,) * len(dm))]
    return (with_fallback(k.get("forward"), f), with_fallback(k.get("fmag"), fm),
            [with_fallback(a, b) for a, b in zip(each[0], d)], [with_fallback(a, b) for a, b in zip(each[1], dm)])
