"""The reverse pass of a step program, as cells: each op's vector-Jacobian product per element.

Why printed from the registry: the sheet's gradients must be the math the checker
uses. For an elementwise op the gradient of argument ``i`` is ``g * d expr / d arg_i``
with the derivative from :meth:`tracer.program.elementwise.Elementwise.derivative`
(``sympy.diff``, or the framework's own backward formula where it differs); ``sum`` and
``mean`` broadcast ``g`` back (divided by the count); ``matmul`` gives per-row sums of
products for its per-row operand and ``SUMPRODUCT`` over the block for the parameter;
rearrangements send each ``g`` back to where its element came from; softmax and
log-softmax use their closed forms. A per-step argument that was broadcast over the
batch rows receives the sum over the rows: ``SUM``/``SUMPRODUCT`` of existing columns
when that is possible, else a *helper* column holding the per-row term (its expected
value is the engine's own VJP of that op, evaluated without the final sum).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import sympy as sp

from tracer.program.batched import align as align_stacked
from tracer.program.elementwise import Elementwise

from ._xl_forward import Val, align, dot, fibers, obj, obj_array, reduced_axes, softmax_axis
from ._xl_symbols import N, NotShown

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from tracer.program import Node
    from tracer.program.registry import Op

    from ._xl_symbols import Columns

__all__ = ["vjp_node"]


def _sum_to(arr: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum an object array down to ``shape`` (the chain rule of broadcasting)."""
    extra = arr.ndim - len(shape)
    if extra > 0:
        arr = obj(np.sum(arr, axis=tuple(range(extra))))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and arr.shape[i] != 1)
    if axes:
        arr = obj(np.sum(arr, axis=axes, keepdims=True))
    return np.broadcast_to(arr, shape).copy() if arr.shape != tuple(shape) else arr


def _to_arg(contrib: np.ndarray, rows: bool, arg: Val, cols, helper) -> np.ndarray:
    """A contribution laid out like the result, brought to the argument's layout.

    Over the batch (a per-step argument of a per-row result) each element is summed over
    the block's rows; ``helper(idx)`` gives the symbol of a per-row helper column for the
    elements that are not a sum of existing columns.
    """
    if rows and not arg.rows:
        summed = np.empty(contrib.shape, dtype=object)
        for idx in np.ndindex(contrib.shape):
            s = cols.row_sum(contrib[idx])
            summed[idx] = s if s is not None else cols.row_sum(helper(idx, contrib[idx]))
        contrib = summed
    target = arg.arr.shape
    lead = rows and not arg.rows and arg.arr.ndim == contrib.ndim + 1   # a leading 1 under the batch
    out = _sum_to(contrib, target[1:] if lead else target)
    return out[None] if lead else out


def elementwise_vjp(node: Node, op: Elementwise, args: list[Val], out: Val, g: np.ndarray, need: Sequence[bool],
                    cols: Columns, helper: Callable[[int, tuple, sp.Expr], sp.Symbol]) -> list[np.ndarray | None]:
    arrs, rows = align(args, node)
    res = []
    for i, arg in enumerate(args):
        if not need[i]:
            res.append(None)
            continue
        d = op.derivative(i, node.attrs)
        contrib = np.empty(arrs[0].shape, dtype=object)
        for idx in np.ndindex(contrib.shape):
            subs = {s: a[idx] for s, a in zip(op.symbols, arrs)}
            term = g[idx] * d.xreplace(subs)
            fwd, y = op.expr(node.attrs).xreplace(subs), out.arr[idx]
            if isinstance(y, sp.Symbol) and not isinstance(fwd, sp.Symbol) and not fwd.is_Number:
                term = term.xreplace({fwd: y})     # tanh' = 1 - a^2 with a the output's cell
            contrib[idx] = term
        res.append(_to_arg(contrib, rows, arg, cols, lambda idx, e, i=i: helper(i, idx, e)))
    return res


def matmul_vjp(node: Node, a: Val, b: Val, g: np.ndarray, need: Sequence[bool],
               cols: Columns) -> list[np.ndarray | None]:
    """``g @ b.T`` and ``a.T @ g`` (1-D operands promoted as NumPy does); for per-row ``a`` the
    parameter's gradient is summed over the block's rows."""
    A = a.arr if a.arr.ndim == 2 else a.arr[None, :]
    B = b.arr if b.arr.ndim == 2 else b.arr[:, None]
    G = np.asarray(g, dtype=object).reshape(A.shape[0], B.shape[1])
    da = dot(G, B.T).reshape(a.arr.shape) if need[0] else None
    db = None
    if need[1]:
        db = dot(A.T, G).reshape(b.arr.shape)
        if a.rows:
            flat = [cols.row_sum(e) for e in db.reshape(-1)]
            if any(f is None for f in flat):
                raise NotShown(f"op 'matmul' ({node.name}): its gradient is not a sum of cells")
            db = obj_array(flat, db.shape)
    return [da, db]


def reduce_vjp(node: Node, v: Val, g: np.ndarray, mean: bool) -> list[np.ndarray]:
    batch, axes = reduced_axes(v, node.attrs["dims"])
    count = int(np.prod([v.arr.shape[a] for a in axes], dtype=np.int64))
    if batch and node.attrs["keepdim"]:
        g = g[0]
    if not node.attrs["keepdim"] and axes:
        g = np.expand_dims(g, axes)
    g = np.broadcast_to(g, v.arr.shape)
    div = count * (N if batch else 1)
    return [np.vectorize(lambda e: e / div if mean else e, otypes=[object])(g) if g.size else g.copy()]


def logsumexp_vjp(node: Node, v: Val, out: Val, g: np.ndarray) -> list[np.ndarray]:
    _, axes = reduced_axes(v, node.attrs["dims"])
    ax = axes[0]
    res = np.empty(v.arr.shape, dtype=object)
    o = out.arr if not node.attrs["keepdim"] else np.squeeze(out.arr, ax)
    gg = g if not node.attrs["keepdim"] else np.squeeze(g, ax)
    for f in fibers(v.arr.shape, ax):
        at = tuple(i for i in f if not isinstance(i, slice))
        res[f] = [gg[at] * sp.exp(x - o[at]) for x in v.arr[f]]
    return [res]


def softmax_vjp(node: Node, v: Val, out: Val, g: np.ndarray, log: bool) -> list[np.ndarray]:
    ax = softmax_axis(node, v)
    res = np.empty(v.arr.shape, dtype=object)
    for f in fibers(v.arr.shape, ax):
        gs, os_ = list(g[f]), list(out.arr[f])
        if log:
            total = sp.Add(*gs)
            res[f] = [gc - sp.exp(oc) * total for gc, oc in zip(gs, os_)]
        else:
            dot = sp.Add(*[gc * oc for gc, oc in zip(gs, os_)])
            res[f] = [oc * (gc - dot) for gc, oc in zip(gs, os_)]
    return [res]


def rearrange_vjp(args: list[Val], out: Val, g: np.ndarray, need: Sequence[bool]) -> list[np.ndarray | None]:
    res = [np.zeros(a.arr.shape, dtype=object) if n else None for a, n in zip(args, need)]
    for idx, k, flat in out.mapping:
        if k < len(res) and res[k] is not None:
            view = res[k].reshape(-1)
            view[flat] = view[flat] + g[idx]
    return res + [None] * (len(need) - len(res))


def vjp_node(node: Node, op: Op, args: list[Val], out: Val, g: np.ndarray, need: Sequence[bool], cols: Columns,
             helper: Callable[[int, tuple, sp.Expr], sp.Symbol]) -> list[np.ndarray | None]:
    """Contributions to each argument's gradient (None where not needed), laid out like the
    arguments. ``helper(i, idx, expr)`` materialises a per-row term of argument ``i``."""
    name = node.op
    if isinstance(op, Elementwise):
        return elementwise_vjp(node, op, args, out, g, need, cols, helper)
    if name == "matmul":
        return matmul_vjp(node, args[0], args[1], g, need, cols)
    if name in ("sum", "mean"):
        return reduce_vjp(node, args[0], g, name == "mean")
    if name == "logsumexp":
        return logsumexp_vjp(node, args[0], out, g)
    if name in ("softmax", "log_softmax"):
        return softmax_vjp(node, args[0], out, g, name == "log_softmax")
    if out.mapping is not None:
        return rearrange_vjp(args, out, g, need)
    raise NotShown(f"op {name!r} ({node.name}): the sheet has no gradient cells for it")


def full_contribution(op: Op, node: Node, xs: list, out: np.ndarray, g: np.ndarray, i: int) -> np.ndarray:
    """The engine's VJP of argument ``i`` before it is summed over broadcast dimensions:
    the expected values of a helper column (``xs``, ``out``, ``g`` stacked engine arrays)."""
    like = np.broadcast_to(align_stacked(xs[i], out)[0], out.shape)
    xs = list(xs)
    xs[i] = like
    need = [k == i for k in range(len(xs))]
    return op.vjp(g, xs, out, node.attrs, need)[i]
