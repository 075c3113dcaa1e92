"""NumPy's ufuncs and functions, mapped one by one onto the step program's registry.

Why a closed table: the checker must never guess, so a NumPy call is either listed
here with the registry op it means (``np.exp`` -> ``exp``, ``np.dot`` of matrices ->
``matmul``, ``np.sum(axis=1, keepdims=True)`` -> ``sum(dims=[1], keepdim=True)``...)
or it is recorded as unsupported ("cannot check: numpy.prod at train.py:12").

Every handler first gets the concrete result of the real NumPy call (so the user's
code goes on with real values), then emits the node. Axes are the user's own: the
program's ops count axes per step exactly as NumPy does (docs/PROGRAM.md).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import numpy as np

from .proxy import Traced

if TYPE_CHECKING:  # pragma: no cover
    from .builder import Builder

__all__ = ["on_ufunc", "on_function", "index", "astype", "concrete"]

_NO = np._NoValue

#: ufunc name -> registry op (one node each)
ELEMENTWISE = {
    "add": "add", "subtract": "sub", "multiply": "mul", "divide": "div", "negative": "neg",
    "float_power": "pow", "exp": "exp", "expm1": "expm1", "log": "log", "log1p": "log1p", "sqrt": "sqrt",
    "square": "square", "absolute": "abs", "fabs": "abs", "maximum": "maximum", "minimum": "minimum",
    "tanh": "tanh", "sin": "sin", "cos": "cos", "sign": "sign", "floor": "floor", "reciprocal": "reciprocal",
    "greater": "gt", "greater_equal": "ge", "less": "lt", "less_equal": "le", "equal": "eq",
    "not_equal": "ne", "matmul": "matmul",
}
#: ufunc.reduce -> registry reduction (``np.add.reduce`` is np.sum's, ``np.maximum.reduce`` np.max's)
_REDUCTIONS = {np.add: "sum", np.maximum: "amax", np.minimum: "amin"}
#: exponents NumPy computes by a dedicated routine (``x**2`` is ``square(x)``)
_POWERS = {2.0: "square", 0.5: "sqrt", -1.0: "reciprocal"}


def concrete(v: object) -> object:
    """``v`` with every traced value replaced by its NumPy value (lists and tuples too)."""
    if isinstance(v, Traced):
        return v.value
    if isinstance(v, (list, tuple)):
        return type(v)(concrete(x) for x in v)
    if isinstance(v, dict):
        return {k: concrete(x) for k, x in v.items()}
    return v


# ------------------------------------------------------------------ ufuncs
def on_ufunc(b: Builder, ufunc: np.ufunc, method: str, inputs: tuple, kwargs: dict) -> object:
    """``ufunc.method(*inputs, **kwargs)`` on traced values (NumPy's ``__array_ufunc__``)."""
    value = getattr(ufunc, method)(*concrete(inputs), **concrete(kwargs))
    name = f"numpy.{ufunc.__name__}"
    if "out" in kwargs or kwargs.get("where", True) is not True:
        return b.refuse(name, "out= or where= (an in-place or masked ufunc)", value)
    dtype = kwargs.get("dtype")
    if dtype is not None and np.dtype(dtype).kind != "f":
        return b.refuse(name, f"dtype={dtype}", value)
    extra = sorted(set(kwargs) - {"dtype", "where", "axis", "keepdims"})
    if extra:
        return b.refuse(name, f"keyword arguments {extra}", value)
    if method == "reduce" and ufunc in _REDUCTIONS:
        return _reduce(b, _REDUCTIONS[ufunc], value, inputs[0], kwargs.get("axis", 0), kwargs.get("keepdims", False))
    if method != "__call__":
        return b.refuse(f"{name}.{method}", None, value)
    if ufunc is np.positive:
        return inputs[0] if isinstance(inputs[0], Traced) else value
    if ufunc is np.power:
        exponent = inputs[1]
        if not isinstance(exponent, Traced) and np.ndim(exponent) == 0 and float(exponent) in _POWERS:
            return b.emit(_POWERS[float(exponent)], [inputs[0]], value)
        return b.emit("pow", list(inputs), value)
    if ufunc is np.maximum:
        zero = [i for i, v in enumerate(inputs) if not isinstance(v, Traced) and np.ndim(v) == 0 and v == 0]
        if zero:      # max(z, 0): relu, whose derivative at 0 is 0 as in hand-written backprop (z > 0)
            return b.emit("relu", [inputs[1 - zero[0]]], value)
    op = ELEMENTWISE.get(ufunc.__name__)
    if op is None:
        return b.refuse(name, "not in steptrace's registry of operations", value)
    if op == "matmul" and any(np.ndim(concrete(x)) == 0 for x in inputs):
        return b.refuse(name, "matmul of a scalar", value)
    return b.emit(op, list(inputs), value)


# --------------------------------------------------------------- functions
def on_function(b: Builder, func: Callable, args: tuple, kwargs: dict) -> object:
    """``func(*args, **kwargs)`` with traced arguments (NumPy's ``__array_function__``)."""
    value = func(*concrete(args), **concrete(kwargs))
    handler = FUNCTIONS.get(func)
    if handler is None:
        return b.refuse(f"numpy.{func.__name__}", "not in steptrace's registry of operations", value)
    try:
        return handler(b, value, *args, **kwargs)
    except TypeError as exc:        # an argument form the handler does not take
        return b.refuse(f"numpy.{func.__name__}", f"arguments not supported ({exc})", value)


def _dims(axis):
    if axis is None:
        return None
    if isinstance(axis, (tuple, list)):
        return [int(a) for a in axis]
    return [int(axis)]


def _reduce(b, op, value, a, axis, keepdims):
    keep = False if keepdims is _NO else bool(keepdims)
    return b.emit(op, [a], value, dims=_dims(axis), keepdim=keep)


def _sum(b, value, a, axis=None, dtype=None, out=None, keepdims=_NO, initial=_NO, where=_NO):
    if out is not None or initial is not _NO or where is not _NO:
        return b.refuse("numpy.sum", "out=, initial= or where=", value)
    return _reduce(b, "sum", value, a, axis, keepdims)


def _mean(b, value, a, axis=None, dtype=None, out=None, keepdims=_NO, *, where=_NO):
    if out is not None or where is not _NO:
        return b.refuse("numpy.mean", "out= or where=", value)
    return _reduce(b, "mean", value, a, axis, keepdims)


def _average(b, value, a, axis=None, weights=None, returned=False, *, keepdims=_NO):
    if weights is not None or returned:
        return b.refuse("numpy.average", "weights= or returned=", value)
    return _reduce(b, "mean", value, a, axis, keepdims)


def _extreme(op):
    """np.max / np.amax / np.min / np.amin (and ``x.max()``): the registry's ``amax`` / ``amin``
    (the stable softmax's ``z - np.max(z, axis=1, keepdims=True)``)."""
    def handler(b, value, a, axis=None, out=None, keepdims=_NO, initial=_NO, where=_NO):
        if out is not None or initial is not _NO or where is not _NO:
            return b.refuse(f"numpy.{'max' if op == 'amax' else 'min'}", "out=, initial= or where=", value)
        return _reduce(b, op, value, a, axis, keepdims)
    return handler


def _dot(b, value, a, c, out=None):
    if out is not None:
        return b.refuse("numpy.dot", "out=", value)
    ra, rc = np.ndim(concrete(a)), np.ndim(concrete(c))
    if ra == 0 or rc == 0:
        return b.emit("mul", [a, c], value)
    if ra > 2 or rc > 2:
        return b.refuse("numpy.dot", "np.dot of arrays with more than 2 dimensions (it is not matmul there)",
                        value)
    return b.emit("matmul", [a, c], value)


def _bound(v):
    """A clip bound as a clamp attribute: a finite number, or None for no bound."""
    if v is None or v is _NO:
        return None
    if isinstance(v, Traced) or np.ndim(v) != 0:
        raise ValueError("array bound")
    f = float(v)
    return None if math.isinf(f) else f


def _clip(b, value, a, a_min=_NO, a_max=_NO, out=None, *, min=_NO, max=_NO, **kwargs):
    if out is not None or kwargs:
        return b.refuse("numpy.clip", "out= or other keyword arguments", value)
    lo = a_min if a_min is not _NO else min
    hi = a_max if a_max is not _NO else max
    try:
        return b.emit("clamp", [a], value, min=_bound(lo), max=_bound(hi))
    except ValueError:             # array bounds: maximum then minimum, as np.clip computes them
        low = a
        if lo is not None and lo is not _NO:
            low = b.emit("maximum", [a, lo], np.maximum(concrete(a), concrete(lo)))
        if hi is None or hi is _NO:
            return low
        return b.emit("minimum", [low, hi], value)


def _where(b, value, condition, x=_NO, y=_NO):
    if x is _NO or y is _NO:
        return b.refuse("numpy.where", "np.where with one argument (positions of non-zero elements)", value)
    return b.emit("where", [condition, x, y], value)


def _transpose(b, value, a, axes=None):
    r = np.ndim(concrete(a))
    if axes is None:
        if r < 2:
            return a
        if r == 2:
            return b.emit("transpose", [a], value, dim0=-2, dim1=-1)
        return b.emit("permute", [a], value, dims=list(range(r - 1, -1, -1)))
    return b.emit("permute", [a], value, dims=[int(i) for i in axes])


def _target_shape(b, a, shape) -> list:
    """A reshape target for the program: the batch dimension written as ``0`` (docs/PROGRAM.md)."""
    shape = [int(s) for s in (shape if isinstance(shape, (tuple, list)) else [shape])]
    in_shape = np.shape(concrete(a))
    if shape and in_shape and shape[0] == in_shape[0] == b.batch_size and shape[0] > 0:
        shape[0] = 0
    return shape


def _reshape(b, value, a, shape=None, order="C", *, newshape=None, copy=None):
    if order != "C":
        return b.refuse("numpy.reshape", f"order={order!r}", value)
    shape = newshape if shape is None else shape
    return b.emit("reshape", [a], value, shape=_target_shape(b, a, shape))


def _ravel(b, value, a, order="C"):
    if order != "C":
        return b.refuse("numpy.ravel", f"order={order!r}", value)
    return b.emit("reshape", [a], value, shape=[-1])


def _squeeze(b, value, a, axis=None):
    return b.emit("squeeze", [a], value, dims=_dims(axis))


def _expand_dims(b, value, a, axis):
    if isinstance(axis, (tuple, list)):
        return b.refuse("numpy.expand_dims", "several axes at once", value)
    return b.emit("unsqueeze", [a], value, dim=int(axis))


def _concatenate(b, value, arrays, axis=0, out=None, **kwargs):
    if axis is None or out is not None or kwargs:
        return b.refuse("numpy.concatenate", "axis=None, out= or dtype=", value)
    return b.emit("concat", list(arrays), value, dim=int(axis))


def _stack(b, value, arrays, axis=0, out=None, **kwargs):
    if out is not None or kwargs:
        return b.refuse("numpy.stack", "out= or dtype=", value)
    return b.emit("stack", list(arrays), value, dim=int(axis))


def _filled(fill):
    def like(b, value, a, dtype=None, order="K", subok=True, shape=None, **kwargs):
        if shape is not None or (dtype is not None and np.dtype(dtype).kind != "f"):
            return b.refuse("numpy.zeros_like/ones_like", "shape= or a non-float dtype", value)
        zero = b.emit("mul", [a, 0.0], np.zeros_like(concrete(a), dtype=value.dtype))
        return zero if fill == 0 else b.emit("add", [zero, fill], value)
    return like


def _full_like(b, value, a, fill_value, dtype=None, order="K", subok=True, shape=None, **kwargs):
    if isinstance(fill_value, Traced) or np.ndim(fill_value) != 0:
        return b.refuse("numpy.full_like", "an array fill value", value)
    return _filled(float(fill_value))(b, value, a, dtype=dtype, shape=shape)


def _same(b, value, a, *args, **kwargs):
    """np.copy: the same program value."""
    return a


def _plain(b, value, *args, **kwargs):
    """np.shape, np.ndim, np.size: a plain Python value, nothing to trace."""
    return value


FUNCTIONS = {
    np.sum: _sum, np.mean: _mean, np.average: _average, np.dot: _dot, np.clip: _clip, np.where: _where,
    np.transpose: _transpose, np.reshape: _reshape, np.ravel: _ravel, np.squeeze: _squeeze,
    np.expand_dims: _expand_dims, np.concatenate: _concatenate, np.stack: _stack,
    np.zeros_like: _filled(0.0), np.ones_like: _filled(1.0), np.full_like: _full_like, np.copy: _same,
    np.shape: _plain, np.ndim: _plain, np.size: _plain,
    np.max: _extreme("amax"), np.amax: _extreme("amax"), np.min: _extreme("amin"), np.amin: _extreme("amin"),
}


# --------------------------------------------------------- indexing, astype
def index(b: Builder, x: Traced, key: object) -> Traced | None:
    """``x[key]``: the registry's ``index`` op (basic indexing and integer index arrays)."""
    value = x.value[concrete(key)]
    keys = key if isinstance(key, tuple) else (key,)
    items, args = [], [x]
    for k in keys:
        if isinstance(k, slice):
            bounds = [k.start, k.stop, k.step]
            if not all(v is None or (isinstance(v, (int, np.integer)) and not isinstance(v, bool)) for v in bounds):
                return b.refuse("indexing", "a slice with computed bounds", value)
            items.append({"slice": [None if v is None else int(v) for v in bounds]})
        elif k is None:
            items.append({"new": True})
        elif k is Ellipsis:
            items.append({"ellipsis": True})
        elif isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)):
            items.append({"int": int(k)})
        else:
            arr = concrete(k)
            kind = np.asarray(arr).dtype.kind
            if kind == "b":
                return b.refuse("indexing", "a boolean mask (it selects a data-dependent number of "
                                "elements)", value)
            if kind not in "iu":
                return b.refuse("indexing", f"an index of dtype {np.asarray(arr).dtype}", value)
            args.append(k)
            items.append({"arg": len(args) - 1})
    return b.emit("index", args, value, items=items)


def astype(b: Builder, x: Traced, dtype: np.dtype | type | str) -> Traced:
    """``x.astype(dtype)``: comparisons are already 0/1 numbers in the program."""
    value = x.value.astype(dtype)
    kind, source = value.dtype.kind, x.value.dtype.kind
    if kind == "f" or (kind in "iu" and source in "biu"):
        return Traced(b, x.name, value, x.opaque)
    if kind in "iu":
        return b.emit("cast", [x], value, dtype="int")
    if kind == "b":
        return b.emit("cast", [x], value, dtype="bool")
    return b.refuse("astype", f"dtype {value.dtype}", value)
