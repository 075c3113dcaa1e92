"""Structural operations: exact NumPy for matmul, shapes, reductions, softmax, indexing.

These are not elementwise, so they are not sympy expressions: each is the NumPy
operation with the semantics of ``numpy``/``torch`` on the per-step shapes (axes count
per step; a value's axis 0 in memory runs over steps, see
:mod:`tracer.program.batched`), plus its vector-Jacobian product. Reshapes follow
ONNX's convention so one program serves every batch size: in a target shape ``0``
copies the input's dimension at that position and ``-1`` is inferred.
"""
from __future__ import annotations

import numpy as np

from ..errors import TraceInputError
from .batched import align, rank, step_axes, step_axis, unbroadcast
from .registry import MISSING, Op, register

__all__ = ["reshape_target"]


def _ints(v, what, where, allow_none=False):
    if v is None and allow_none:
        return None
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return int(v)
    if isinstance(v, (list, tuple)) and all(isinstance(i, (int, np.integer)) and not isinstance(i, bool)
                                            for i in v):
        return [int(i) for i in v]
    raise TraceInputError(f"{where}{what}: expected an integer or a list of integers, got {v!r}")


def dims_list(attrs: dict, what: str, where: str) -> dict:
    """``attrs["dims"]`` as None (all dimensions) or a list of ints: the one spelling every
    op with optional ``dims`` normalises to."""
    d = _ints(attrs["dims"], what, where, allow_none=True)
    attrs["dims"] = [d] if isinstance(d, int) else d
    return attrs


def _int(v, what, where):
    out = _ints(v, what, where)
    if isinstance(out, list):
        raise TraceInputError(f"{where}{what}: expected one integer, got {v!r}")
    return out


from . import matmul  # noqa: E402,F401  (registers matmul, kept in its own module)


# ---------------------------------------------------------------------- shapes
class _Shape(Op):
    """Base of ops that only move values around: linear, gradient = inverse move."""

    linear = True
    differentiable = (0,)
    #: only moves (or repeats) its argument's values, no arithmetic: the rounding magnitude
    #: of a moved leaf is its own ``|value|`` (:func:`tracer.program.engine._plain_nodes`)
    moves_only = True

    def vjp(self, g: np.ndarray, xs: list[np.ndarray], out: np.ndarray, attrs: dict, need: list[bool]) -> list:
        return [self.back(g, xs[0], attrs) if need[0] else None] + [None] * (len(xs) - 1)

    def back(self, g: np.ndarray, x: np.ndarray, attrs: dict) -> np.ndarray:
        return g.reshape((g.shape[0],) + x.shape[1:])


def reshape_target(in_shape: tuple, shape: list) -> tuple:
    """The per-step target shape: ``0`` copies the input dimension, ``-1`` is inferred."""
    out = []
    for i, s in enumerate(shape):
        if s == 0:
            if i >= len(in_shape):
                raise TraceInputError(f"op 'reshape': 0 at position {i} but the input has rank {len(in_shape)}")
            out.append(int(in_shape[i]))
        else:
            out.append(int(s))
    if out.count(-1) > 1:
        raise TraceInputError(f"op 'reshape': more than one -1 in {shape}")
    total = int(np.prod(in_shape, dtype=np.int64))
    if -1 in out:
        known = int(np.prod([s for s in out if s != -1], dtype=np.int64))
        if known == 0 or total % known:
            raise TraceInputError(f"op 'reshape': cannot reshape {tuple(in_shape)} to {shape}")
        out[out.index(-1)] = total // known
    if int(np.prod(out, dtype=np.int64)) != total:
        raise TraceInputError(f"op 'reshape': cannot reshape {tuple(in_shape)} to {shape}")
    return tuple(out)


class Reshape(_Shape):
    name, doc = "reshape", "view/reshape (0 copies the input dimension, -1 is inferred)"
    defaults = {"shape": MISSING}

    def normalise(self, attrs: dict, where: str) -> dict:
        attrs["shape"] = _ints(attrs["shape"], "reshape shape", where)
        if isinstance(attrs["shape"], int):
            attrs["shape"] = [attrs["shape"]]
        return attrs

    def forward(self, xs: list[np.ndarray], attrs: dict) -> np.ndarray:
        x = xs[0]
        return x.reshape((x.shape[0],) + reshape_target(x.shape[1:], attrs["shape"]))


class Flatten(_Shape):
    name, doc = "flatten", "merge dimensions start..end into one"
    defaults = {"start": 0, "end": -1}

    def forward(self, xs: list[np.ndarray], attrs: dict) -> np.ndarray:
        x = xs[0]
        r = rank(x)
        if r == 0:
            return x.reshape(x.shape[0], 1)
        s, e = step_axis(attrs["start"], r), step_axis(attrs["end"], r)
        shape = x.shape[:s] + (int(np.prod(x.shape[s:e + 1], dtype=np.int64)),) + x.shape[e + 1:]
        return x.reshape(shape)


class Squeeze(_Shape):
    name, doc = "squeeze", "drop dimensions of size 1 (all, or the listed ones that have size 1)"
    defaults = {"dims": None}

    def normalise(self, attrs: dict, where: str) -> dict:
        return dims_list(attrs, "squeeze dims", where)

    def forward(self, xs: list[np.ndarray], attrs: dict) -> np.ndarray:
        x = xs[0]
        axes = step_axes(attrs["dims"], rank(x))
        keep = tuple(i for i in axes if x.shape[i] == 1)
        return np.squeeze(x, axis=keep) if keep else x


class Unsqueeze(_Shape):
    name, doc = "unsqueeze", "insert a dimension of size 1"
    defaults = {"dim": MISSING}

    def normalise(self, attrs: dict, where: str) -> dict:
        attrs["dim"] = _int(attrs["dim"], "unsqueeze dim", where)
        return attrs

    def forward(self, xs: list[np.ndarray], attrs: dict) -> np.ndarray:
        x = xs[0]
        r = rank(x)
        d = attrs["dim"]
        if not -r - 1 <= d <= r:
            raise TraceInputError(f"op 'unsqueeze': dim {d} out of range for rank {r}")
        d = d + r + 1 if d < 0 else d
        return np.expand_dims(x, d + 1)


class Transpose(_Shape):
    name, doc = "transpose", "swap two dimensions"
    defaults = {"dim0": -2, "dim1": -1}

    def forward(self, xs: list[np.ndarray], attrs: dict) -> np.ndarray:
        x = xs[0]
        r = rank(x)
        if r < 2:
            return x
        return np.swapaxes(x, step_axis(attrs["dim0"], r), step_axis(attrs["dim1"], r))

    def back(self, g: np.ndarray, x: np.ndarray, attrs: dict) -> np.ndarray:
        return self.forward([g], attrs)

    def text(self, args: list, attrs: dict) -> str:
        return f"{args[0]}.T" if (attrs["dim0"], attrs["dim1"]) in ((0, 1), (-2, -1), (1, 0)) else \
            super().text(args, attrs)


class Permute(_Shape):
    name, doc = "permute", "reorder dimensions"
    defaults = {"dims": MISSING}

    def normalise(self, attrs: dict, where: str) -> dict:
        attrs["dims"] = list(_ints(attrs["dims"], "permute dims", where))
        return attrs

    def _perm(self, x, dims):
        r = rank(x)
        if len(dims) != r:
            raise TraceInputError(f"op 'permute': {len(dims)} dims for a value of rank {r}")
        return (0,) + tuple(step_axis(d, r) for d in dims)

    def forward(self, xs: list[np.ndarray], attrs: dict) -> np.ndarray:
        return np.transpose(xs[0], self._perm(xs[0], attrs["dims"]))

    def back(self, g: np.ndarray, x: np.ndarray, attrs: dict) -> np.ndarray:
        return np.transpose(g, np.argsort(self._perm(x, attrs["dims"])))


class MoveDim(_Shape):
    name, doc = "movedim", "move one dimension to another position"
    defaults = {"source": MISSING, "destination": MISSING}

    def forward(self, xs: list[np.ndarray], attrs: dict) -> np.ndarray:
        x = xs[0]
        r = rank(x)
        return np.moveaxis(x, step_axis(attrs["source"], r), step_axis(attrs["destination"], r))

    def back(self, g: np.ndarray, x: np.ndarray, attrs: dict) -> np.ndarray:
        r = rank(x)
        return np.moveaxis(g, step_axis(attrs["destination"], r), step_axis(attrs["source"], r))


class Expand(_Shape):
    name, doc = "expand", "broadcast to a shape (-1 keeps a dimension)"
    defaults = {"shape": MISSING}

    def normalise(self, attrs: dict, where: str) -> dict:
        attrs["shape"] = list(np.atleast_1d(_ints(attrs["shape"], "expand shape", where)).tolist())
        return attrs

    def forward(self, xs: list[np.ndarray], attrs: dict) -> np.ndarray:
        x = xs[0]
        shape = attrs["shape"]
        r = rank(x)
        if len(shape) < r:
            raise TraceInputError(f"op 'expand': shape {shape} has fewer dims than the input's {r}")
        x = align(x, np.zeros((1,) * (len(shape) + 1)))[0]
        target = tuple(x.shape[i + 1] if s == -1 else s for i, s in enumerate(shape))
        return np.broadcast_to(x, (x.shape[0],) + target)

    def back(self, g: np.ndarray, x: np.ndarray, attrs: dict) -> np.ndarray:
        return unbroadcast(g, x)


for _cls in (Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Permute, MoveDim, Expand):
    register(_cls())
