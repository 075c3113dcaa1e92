"""The forward pass of a step program, as cells: each primitive op's formula per element.

Why one function per kind of op, and no NumPy model: the numbers come from the engine;
this module only decides *where* each value lives and *which formula* computes it.
A value is a :class:`Val`: an object array of atoms (see :mod:`reports._xl_symbols`)
and whether its first dimension is the batch (``rows``: one cell per batch row, the
array holding the remaining dimensions). Elementwise ops substitute the atoms into
their registry expression; ``matmul`` writes the sum of products; reductions over the
batch become ``SUM`` over the block's rows; reshapes, transposes, concatenations and
constant indexing only rearrange atoms (no new cells). What cannot be laid out with the
batch as the first dimension raises :class:`NotShown` with the op and its source line.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import sympy as sp

from tracer.program.batched import step_axes, step_axis
from tracer.program.elementwise import Elementwise

from ._xl_symbols import N, NotShown

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from tracer.program import Node
    from tracer.program.registry import Op

    from ._xl_symbols import Columns

__all__ = ["Val", "align", "forward_node", "REARRANGE", "fibers", "lse", "obj", "obj_array", "dot",
           "reduced_axes", "softmax_axis"]

#: ops that only move elements around (their cells are the argument's cells)
REARRANGE = {"reshape", "flatten", "squeeze", "unsqueeze", "transpose", "permute", "movedim", "expand",
             "concat", "stack", "index", "gather", "take"}
#: ops whose every argument is moved (the others move their first argument to constant positions)
_ALL_MOVED = {"concat", "stack"}
_FAKE_BATCH = 3


@dataclass
class Val:
    """A program value as cells: ``arr`` (object array of atoms) and ``rows`` (batch first)."""

    arr: np.ndarray
    rows: bool = False
    mapping: list | None = None      # rearrangements: (out index, arg, source flat index)

    @property
    def rank(self) -> int:
        return self.arr.ndim + (1 if self.rows else 0)


def _where(node) -> str:
    return f"op {node.op!r} ({node.name}" + (f", {node.where}" if node.where else "") + ")"


def align(vals: list[Val], node: Node) -> tuple[list[np.ndarray], bool]:
    """The arguments' arrays broadcast to the result's per-row shape, and whether it has rows.

    A value with rows must keep the batch as the result's first dimension; a per-step value
    broadcasts over the rows (a leading 1 aligned with the batch is dropped).
    """
    rows = any(v.rows for v in vals)
    r = max(v.rank for v in vals)
    arrs = []
    for v in vals:
        a = v.arr
        if v.rows and v.rank != r:
            raise NotShown(f"{_where(node)}: the batch rows would be broadcast against each other "
                           f"(a per-row value of rank {v.rank} meets one of rank {r}); the sheet keeps "
                           "one batch row per spreadsheet row")
        if rows and not v.rows and a.ndim == r:
            if a.shape[0] != 1:
                raise NotShown(f"{_where(node)}: a per-step value of shape {a.shape} lines up with the batch rows")
            a = a[0]
        arrs.append(a)
    try:
        return list(np.broadcast_arrays(*arrs)), rows
    except ValueError as exc:
        raise NotShown(f"{_where(node)}: {exc}") from None


def elementwise(node: Node, op: Elementwise, vals: list[Val]) -> Val:
    """Each element: the op's sympy expression with the arguments' atoms substituted."""
    arrs, rows = align(vals, node)
    e = op.expr(node.attrs)
    syms = op.symbols
    out = np.empty(arrs[0].shape, dtype=object)
    for idx in np.ndindex(out.shape):
        out[idx] = e.xreplace({s: a[idx] for s, a in zip(syms, arrs)})
    return Val(out, rows)


def dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for 1-D/2-D object arrays of sympy atoms (NumPy's promotion rules)."""
    a2 = a if a.ndim == 2 else a[None, :]
    b2 = b if b.ndim == 2 else b[:, None]
    if a2.shape[1] != b2.shape[0]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align")
    out = np.empty((a2.shape[0], b2.shape[1]), dtype=object)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = sp.Add(*[a2[i, k] * b2[k, j] for k in range(a2.shape[1])])
    if b.ndim == 1:
        out = out[:, 0]
    if a.ndim == 1:
        out = out[0]
    return np.asarray(out, dtype=object) if not isinstance(out, np.ndarray) else out


def matmul(node: Node, a: Val, b: Val) -> Val:
    """Per-row inputs times a parameter matrix (a dense layer), or two per-step values."""
    if a.rows and not b.rows and a.arr.ndim == 1 and b.arr.ndim in (1, 2):
        try:
            return Val(obj(dot(a.arr, b.arr)), True)
        except ValueError as exc:
            raise NotShown(f"{_where(node)}: {exc}") from None
    if not a.rows and not b.rows and a.arr.ndim in (1, 2) and b.arr.ndim in (1, 2):
        return Val(obj(dot(a.arr, b.arr)), False)
    raise NotShown(f"{_where(node)}: a matrix product of per-row values of ranks {a.rank} and {b.rank}; the "
                   "sheet writes products of a (rows, k) value with a (k, u) or (k,) parameter")


def obj(x: object) -> np.ndarray:
    """``x`` as an object array (a single sympy expression becomes a 0-d array)."""
    if isinstance(x, np.ndarray):
        return x
    out = np.empty((), dtype=object)
    out[()] = x
    return out


def obj_array(items: list, shape: tuple) -> np.ndarray:
    """A list of sympy expressions as an object array of ``shape`` (never nested by NumPy)."""
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out.reshape(shape)


def reduced_axes(v: Val, dims: int | Sequence[int] | None) -> tuple[bool, tuple]:
    """``(reduces the batch, reduced axes of the array)`` for per-step ``dims``."""
    per = [a - 1 for a in step_axes(dims, v.rank)]
    if v.rows:
        return 0 in per, tuple(a - 1 for a in per if a > 0)
    return False, tuple(per)


def reduce(node: Node, v: Val, cols: Columns, mean: bool) -> Val:
    """``sum``/``mean``: the cells added along the reduced dimensions; over the batch, a
    ``SUM`` over the block's rows, and the mean divides by the block's ``n`` cell."""
    batch, axes = reduced_axes(v, node.attrs["dims"])
    keep = node.attrs["keepdim"]
    count = int(np.prod([v.arr.shape[a] for a in axes], dtype=np.int64))
    s = obj(np.sum(v.arr, axis=axes, keepdims=keep) if axes else v.arr.copy())
    rows = v.rows
    if batch:
        flat = [cols.row_sum(e) for e in s.reshape(-1)]
        if any(f is None for f in flat):
            raise NotShown(f"{_where(node)}: a sum over the batch of a value that is not in cells")
        s = obj_array(flat, s.shape)
        if keep:
            s = s[None]
        rows = False
    if mean:
        div = count * (N if batch else 1)
        s = obj(np.vectorize(lambda e: e / div, otypes=[object])(s))
    return Val(s, rows)


def fibers(shape: tuple, axis: int) -> Iterator[tuple]:
    """Index tuples of every 1-D fiber of an array along ``axis``."""
    rest = [range(n) for i, n in enumerate(shape) if i != axis]
    for pos in np.ndindex(*[len(r) for r in rest]) if rest else [()]:
        yield tuple(list(pos[:axis]) + [slice(None)] + list(pos[axis:]))


def lse(elems: Iterable[sp.Expr]) -> sp.Expr:
    """``max + log(sum(exp(x - max)))``: the stable log-sum-exp the frameworks compute."""
    elems = list(elems)
    if len(elems) == 1:
        return elems[0]
    m = sp.Max(*elems)
    return m + sp.log(sp.Add(*[sp.exp(e - m) for e in elems]))


def logsumexp(node: Node, v: Val) -> Val:
    batch, axes = reduced_axes(v, node.attrs["dims"])
    if batch or len(axes) != 1:
        raise NotShown(f"{_where(node)}: log-sum-exp is written along one dimension of a row, not over the batch")
    ax = axes[0]
    out_shape = tuple(n for i, n in enumerate(v.arr.shape) if i != ax)
    out = np.empty(out_shape, dtype=object)
    for f in fibers(v.arr.shape, ax):
        out[tuple(i for i in f if not isinstance(i, slice))] = lse(v.arr[f])
    if node.attrs["keepdim"]:
        out = np.expand_dims(out, ax)
    return Val(out, v.rows)


def softmax_axis(node: Node, v: Val) -> int:
    """The array axis a softmax runs along (never the batch)."""
    ax = step_axis(node.attrs["dim"], v.rank) - 1
    if v.rows:
        if ax == 0:
            raise NotShown(f"{_where(node)}: a softmax over the batch rows")
        ax -= 1
    return ax


def one_hot(node: Node, v: Val) -> Val:
    """``IF(class = c, 1, 0)`` per class (0 for every class of an ignored target)."""
    c = int(node.attrs["num_classes"])
    out = np.empty(v.arr.shape + (c,), dtype=object)
    for idx in np.ndindex(v.arr.shape):
        for k in range(c):
            out[idx + (k,)] = sp.Piecewise((1, sp.Eq(v.arr[idx], k)), (0, True))
    return Val(out, v.rows)


def rearrange(node: Node, op: Op, vals: list[Val], consts: list) -> Val:
    """Ops that move elements: run the op itself on element numbers, read where each came from.

    ``vals`` are the moved arguments (all for concat/stack, else the first); ``consts`` the
    numeric values of the other arguments (positions), None where they are not constants.
    """
    if any(c is None for c in consts):
        raise NotShown(f"{_where(node)}: positions that depend on the data (not constants)")
    rows = vals[0].rows
    if any(v.rows != rows for v in vals):
        raise NotShown(f"{_where(node)}: joins per-row and per-step values")
    ids, offsets, off = [], [], 0
    for v in vals:
        k = max(1, v.arr.size)
        shape = ((_FAKE_BATCH,) if rows else ()) + v.arr.shape
        ids.append((off + np.arange(int(np.prod(shape, dtype=np.int64)))).reshape((1,) + shape))
        offsets.append((off, k))
        off += int(np.prod(shape, dtype=np.int64))
    try:
        res = np.asarray(op.forward(ids + [np.asarray(c)[None] for c in consts], node.attrs))[0]
    except Exception as exc:   # the op's own error (bad dims, shapes)
        raise NotShown(f"{_where(node)}: {exc}") from None
    if rows and (res.ndim == 0 or res.shape[0] != _FAKE_BATCH):
        raise NotShown(f"{_where(node)}: the batch would not stay the first dimension")
    return _decode(node, vals, res, offsets, rows)


def _decode(node, vals, res, offsets, rows) -> Val:
    out_shape = res.shape[1:] if rows else res.shape
    out = np.empty(out_shape, dtype=object)
    mapping = []
    for idx in np.ndindex(out_shape):
        src_rows = [int(res[(b,) + idx]) for b in range(_FAKE_BATCH)] if rows else [int(res[idx])]
        k = max(i for i, (o, _) in enumerate(offsets) if o <= src_rows[0])
        o, size = offsets[k]
        local = [s - o for s in src_rows]
        if rows and any(loc // size != b for b, loc in enumerate(local)):
            raise NotShown(f"{_where(node)}: moves elements between batch rows")
        flat = local[0] % size if rows else local[0]
        out[idx] = vals[k].arr.reshape(-1)[flat]
        mapping.append((idx, k, flat))
    return Val(out, rows, mapping)


def forward_node(node: Node, op: Op, args: list, cols: Columns) -> Val:
    """The cells of one primitive node (before materialisation); ``args`` are :class:`Val`."""
    name = node.op
    if isinstance(op, Elementwise):
        return elementwise(node, op, args)
    if name == "matmul":
        return matmul(node, *args)
    if name in ("sum", "mean"):
        return reduce(node, args[0], cols, name == "mean")
    if name == "logsumexp":
        return logsumexp(node, args[0])
    if name == "one_hot":
        return one_hot(node, args[0])
    if name in REARRANGE:
        moved = len(args) if name in _ALL_MOVED else 1
        consts = [_const_value(a) for a in args[moved:]]
        return rearrange(node, op, args[:moved], consts)
    raise NotShown(f"{_where(node)}: the sheet has no cell layout for this op")


def _const_value(v: Val):
    """The numbers of a per-step value made only of numbers (index positions), else None."""
    if v.rows or not all(getattr(e, "is_Number", False) for e in v.arr.reshape(-1)):
        return None
    vals = np.array([float(e) for e in v.arr.reshape(-1)]).reshape(v.arr.shape)
    return np.rint(vals).astype(np.int64) if np.all(vals == np.rint(vals)) else vals
