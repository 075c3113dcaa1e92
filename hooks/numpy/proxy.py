""":class:`Traced`: the value a NumPy model or loss function receives while it is traced.

Why a proxy: a plain Python function written with NumPy (``sigmoid(x @ w + b)``) says
nothing about itself until it runs. Run once on ``Traced`` values, every NumPy call it
makes comes back to steptrace through NumPy's own override protocols -
``__array_ufunc__`` for ufuncs (``np.exp``, ``+``, ``@``, comparisons) and
``__array_function__`` for functions (``np.sum``, ``np.dot``, ``np.where``) - and so do
Python's operators, indexing and the ndarray methods people use (``.T``, ``.sum``,
``.mean``, ``.reshape``). :mod:`hooks.numpy.mapping` turns each call into a node of the
step program. Each ``Traced`` also holds the concrete NumPy result, so shapes are real
and the user's code runs exactly as it would on arrays.

What a program cannot follow - a traced value turned into a Python number
(``float(loss)``, ``if x.mean() > 0:``), into a plain array (``np.asarray``), iterated
row by row or assigned into - is recorded as unsupported where it happens, and the
function goes on with the plain value, so every such place is listed.
"""
from __future__ import annotations

import numpy as np

__all__ = ["Traced"]


def _binary(ufunc):
    def op(self, other):
        return ufunc(self, other)

    def rop(self, other):
        return ufunc(other, self)
    return op, rop


class Traced:
    """A program value (node, input or parameter ``name``) with its NumPy value."""

    __slots__ = ("builder", "name", "value", "opaque")
    __array_priority__ = 1000.0
    __hash__ = object.__hash__

    def __init__(self, builder, name: str, value: np.ndarray, opaque: bool = False):
        self.builder = builder
        self.name = name
        self.value = value
        self.opaque = opaque

    # ------------------------------------------------------- the protocols
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return mapping.on_ufunc(self.builder, ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return mapping.on_function(self.builder, func, args, kwargs)

    def __array__(self, dtype=None, copy=None):
        self.builder.refuse("numpy.asarray", "a traced value was turned into a plain array "
                            "(np.array, np.asarray, or a list of arrays)")
        return self.value if dtype is None else self.value.astype(dtype)

    # --------------------------------------------------------------- shape
    @property
    def shape(self) -> tuple:
        return self.value.shape

    @property
    def ndim(self) -> int:
        return self.value.ndim

    @property
    def size(self) -> int:
        return self.value.size

    @property
    def dtype(self) -> np.dtype:
        return self.value.dtype

    def __len__(self) -> int:
        return len(self.value)

    @property
    def T(self) -> Traced:
        return np.transpose(self)

    # ----------------------------------------------------------- operators
    __add__, __radd__ = _binary(np.add)
    __sub__, __rsub__ = _binary(np.subtract)
    __mul__, __rmul__ = _binary(np.multiply)
    __truediv__, __rtruediv__ = _binary(np.divide)
    __floordiv__, __rfloordiv__ = _binary(np.floor_divide)
    __mod__, __rmod__ = _binary(np.remainder)
    __pow__, __rpow__ = _binary(np.power)
    __matmul__, __rmatmul__ = _binary(np.matmul)
    __and__, __rand__ = _binary(np.bitwise_and)
    __or__, __ror__ = _binary(np.bitwise_or)
    __lt__ = _binary(np.less)[0]
    __le__ = _binary(np.less_equal)[0]
    __gt__ = _binary(np.greater)[0]
    __ge__ = _binary(np.greater_equal)[0]
    __eq__ = _binary(np.equal)[0]
    __ne__ = _binary(np.not_equal)[0]

    def __neg__(self):
        return np.negative(self)

    def __pos__(self):
        return np.positive(self)

    def __abs__(self):
        return np.absolute(self)

    def __invert__(self):
        return np.invert(self)

    # ------------------------------------------------------------- methods
    def sum(self, axis: int | tuple | None = None, dtype: object = None, out: object = None,
            keepdims: bool = False, **kwargs: object) -> Traced:
        return np.sum(self, axis=axis, dtype=dtype, out=out, keepdims=keepdims, **kwargs)

    def mean(self, axis: int | tuple | None = None, dtype: object = None, out: object = None,
             keepdims: bool = False, **kwargs: object) -> Traced:
        return np.mean(self, axis=axis, dtype=dtype, out=out, keepdims=keepdims, **kwargs)

    def max(self, *args: object, **kwargs: object) -> Traced:
        return np.max(self, *args, **kwargs)

    def min(self, *args: object, **kwargs: object) -> Traced:
        return np.min(self, *args, **kwargs)

    def prod(self, *args: object, **kwargs: object) -> Traced:
        return np.prod(self, *args, **kwargs)

    def std(self, *args: object, **kwargs: object) -> Traced:
        return np.std(self, *args, **kwargs)

    def var(self, *args: object, **kwargs: object) -> Traced:
        return np.var(self, *args, **kwargs)

    def argmax(self, *args: object, **kwargs: object) -> Traced:
        return np.argmax(self, *args, **kwargs)

    def cumsum(self, *args: object, **kwargs: object) -> Traced:
        return np.cumsum(self, *args, **kwargs)

    def reshape(self, *shape: int | tuple, order: str = "C") -> Traced:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return np.reshape(self, shape, order=order)

    def transpose(self, *axes: int | tuple) -> Traced:
        if len(axes) == 1 and (axes[0] is None or isinstance(axes[0], (tuple, list))):
            axes = axes[0]
        return np.transpose(self, axes or None)

    def dot(self, other: object) -> Traced:
        return np.dot(self, other)

    def clip(self, min: object = None, max: object = None, **kwargs: object) -> Traced:
        return np.clip(self, min, max, **kwargs)

    def squeeze(self, axis: int | tuple | None = None) -> Traced:
        return np.squeeze(self, axis=axis)

    def ravel(self, order: str = "C") -> Traced:
        return np.ravel(self, order=order)

    def flatten(self, order: str = "C") -> Traced:
        return np.ravel(self, order=order)

    def copy(self, order: str = "C") -> Traced:
        return np.copy(self)

    def astype(self, dtype: object, *args: object, **kwargs: object) -> Traced:
        return mapping.astype(self.builder, self, dtype)

    # ----------------------------------------- what a program cannot follow
    def __getitem__(self, key):
        return mapping.index(self.builder, self, key)

    def __setitem__(self, key, item):
        self.builder.refuse("assignment into an array", "x[...] = ... changes a traced value in place")
        value = np.array(self.value, copy=True)
        value[mapping.concrete(key)] = mapping.concrete(item)
        self.value = value

    def __iter__(self):
        self.builder.refuse("iteration over an array", "a loop over the rows of a traced value")
        return iter(self.value)

    def _number(self, kind, convert):
        self.builder.refuse(f"{kind}()", "a traced value used as a Python number (the program cannot "
                            "follow a value out of NumPy)")
        return convert(self.value)

    def __bool__(self):
        return self._number("bool", bool)

    def __float__(self):
        return self._number("float", float)

    def __int__(self):
        return self._number("int", int)

    def __index__(self):
        return self._number("int", lambda v: int(np.asarray(v).item()))

    def item(self, *args: int) -> object:
        return self._number("item", lambda v: v.item(*args))

    def tolist(self) -> object:
        return self._number("tolist", lambda v: v.tolist())

    def __getattr__(self, name):
        raise AttributeError(f"steptrace's traced arrays do not support the ndarray attribute {name!r}")

    def __repr__(self) -> str:
        return f"Traced({self.name}, shape={self.value.shape}, dtype={self.value.dtype})"


from . import mapping  # noqa: E402  (mapping imports Traced)
