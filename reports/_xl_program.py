"""Map a step program onto the sheet's columns: leaves, forward nodes, gradients.

Why a separate pass before any row is written: the sheet's layout is the same for every
iteration (one block of rows each), so the program is mapped once, symbolically, into
columns whose formulas are sympy expressions of other columns; the layout then prints
each column's formula once and fills in row numbers per block.

Every program variable the engine computes becomes cells (its elements that are not
just another cell or a number): inputs reference the data sheet, parameters are the
block's "before" cells, each primitive node's elements are formulas (see
:mod:`reports._xl_forward`), and the reverse pass gives every node on the way from the
loss back to the parameters its ``dL/d<node>`` cells (see :mod:`reports._xl_reverse`).
The per-step shapes the engine computed are compared with the layout, so a value whose
batch rows cannot be one spreadsheet row each is refused rather than mislaid.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import sympy as sp

from tracer.program import get_op

from ._xl_forward import REARRANGE, Val, fibers, forward_node, lse, obj, softmax_axis
from ._xl_reverse import full_contribution, vjp_node
from ._xl_symbols import ROW, STEP, Columns, NotShown, d_name, number

if TYPE_CHECKING:
    from tracer.program import StepProgram

__all__ = ["Mapped", "map_program"]


@dataclass
class Mapped:
    """The program as columns: ``cols``; per parameter the "before" atoms and the gradient
    expressions; the loss atom; the names whose engine gradients the checks need."""

    cols: Columns
    before: dict = field(default_factory=dict)
    grads: dict = field(default_factory=dict)
    loss: object = None
    grad_names: list = field(default_factory=list)
    prediction: object = None          # the prediction's atoms per output (object array), or None
    target: object = None              # the targets' atoms per output, or None


def _needed(program) -> list:
    """The primitive nodes the engine evaluates (ancestors of the loss and the prediction)."""
    nodes = program.primitive_nodes
    by_name = {n.name: n for n in nodes}
    wanted = [program.outputs[k] for k in ("loss", "prediction") if k in program.outputs]
    seen, stack = set(), [w for w in wanted if w in by_name]
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack += [a for a in by_name[name].args if isinstance(a, str) and a in by_name]
    return [n for n in nodes if n.name in seen]


def _leaves(program, cols: Columns, names: dict, k: int, labels) -> dict:
    """Inputs (data-sheet references, one row column per element), constants (numbers)
    and parameters (one "before" step column per element)."""
    vals = {}
    for inp in program.inputs:
        n_cols = k if inp.source == "inputs" else names["n_targets"]
        c0, c1 = inp.columns if inp.columns is not None else (0, n_cols)
        shape = tuple(inp.shape) if inp.shape is not None else (c1 - c0,)
        arr = np.empty(shape, dtype=object)
        heads = names["inputs" if inp.source == "inputs" else "targets"]
        base = 2 if inp.source == "inputs" else 2 + k
        for flat, idx in enumerate(np.ndindex(shape)):
            c = c0 + flat
            arr[idx] = cols.new(ROW, "input", heads[c] if c < len(heads) else f"{inp.name}{c}",
                                source=("value", inp.name, idx, True),
                                quantity="x" if inp.source == "inputs" else "y", data=(base + c,))
        vals[inp.name] = Val(arr, True)
    for c in program.consts:
        vals[c.name] = Val(np.vectorize(number, otypes=[object])(c.value) if c.value.ndim else
                           obj(number(c.value.item())), False)
    for p in program.params:
        shape = labels[p][0]
        arr = np.empty(shape, dtype=object)
        for flat, idx in enumerate(np.ndindex(shape)):
            arr[idx] = cols.new(STEP, "before", f"{labels[p][1][flat]} before", source=("before", p, flat, False),
                                quantity="before")
        vals[p] = Val(arr, False)
    return vals


def _arg(vals, a) -> Val:
    return vals[a] if isinstance(a, str) else Val(obj(number(a)), False)


def _check_shape(node, v: Val, shapes: dict):
    for b, shape in shapes.get(node.name, ()):
        want = ((b,) if v.rows else ()) + v.arr.shape
        if tuple(shape) != want:
            raise NotShown(f"op {node.op!r} ({node.name}{', ' + node.where if node.where else ''}): per-step "
                           f"shape {tuple(shape)} at batch size {b}; the sheet lays it out as {want}")


def _softmax(node, v: Val, cols: Columns) -> Val:
    """Softmax and log-softmax with a helper column per row for the log-sum-exp."""
    ax = softmax_axis(node, v)
    shape = tuple(n for i, n in enumerate(v.arr.shape) if i != ax)
    helper = np.empty(shape, dtype=object)
    for f in fibers(v.arr.shape, ax):
        helper[tuple(i for i in f if not isinstance(i, slice))] = lse(v.arr[f])
    dim, arg = node.attrs["dim"], node.args[0]

    def recipe(ctx):
        return get_op("logsumexp").forward([ctx.value(arg)], {"dims": [dim], "keepdim": False})
    atoms = cols.materialise(helper, v.rows, f"logsumexp({arg})", ("fn", recipe, v.rows), "", role="helper")
    out = np.empty(v.arr.shape, dtype=object)
    for f in fibers(v.arr.shape, ax):
        m = atoms[tuple(i for i in f if not isinstance(i, slice))]
        out[f] = [(x - m) if node.op == "log_softmax" else sp.exp(x - m) for x in v.arr[f]]
    return Val(out, v.rows)


def _forward(program, nodes, vals, cols, shapes):
    for node in nodes:
        op = get_op(node.op)
        args = [_arg(vals, a) for a in node.args]
        if node.op in ("softmax", "log_softmax"):
            v = _softmax(node, args[0], cols)
        else:
            v = forward_node(node, op, args, cols)
        if node.op not in REARRANGE:
            v = Val(cols.materialise(v.arr, v.rows, node.name, ("value", node.name, v.rows), ""), v.rows, v.mapping)
        _check_shape(node, v, shapes)
        vals[node.name] = v


def _label_outputs(program, vals, cols):
    """The prediction's and the loss's cells get their names (and check quantities)."""
    pred = program.outputs.get("prediction")
    if pred in vals:
        for e in vals[pred].arr.reshape(-1):
            col = cols.of(e)
            if col is not None and col.role in ("node", "input"):
                col.quantity = "prediction"
                col.header = f"prediction ({col.header})"
    loss = vals[program.outputs["loss"]]
    if loss.rows or loss.arr.shape != ():
        raise NotShown(f"the loss {program.outputs['loss']!r} is not one number per step")
    col = cols.of(loss.arr[()])
    if col is None or col.role != "node":
        raise NotShown("the loss is not computed by the program")
    col.quantity = "loss"
    col.header = f"batch loss ({col.header})"
    return loss.arr[()]


def _requires(program, nodes) -> set:
    req = set(program.params)
    for n in nodes:
        op = get_op(n.op)
        if any(isinstance(a, str) and a in req and op.can_differentiate(i) for i, a in enumerate(n.args)):
            req.add(n.name)
    return req


def _reverse(program, nodes, vals, cols, req):
    """``dL/d<name>`` for every node between the parameters and the loss; returns the
    parameters' gradient expressions and the nodes given gradient cells."""
    loss = program.outputs["loss"]
    acc = {loss: obj(sp.Integer(1))}
    visited = []
    for node in reversed(nodes):
        if node.name not in req or node.name not in acc:
            continue
        out = vals[node.name]
        g = acc[node.name]
        if node.op not in REARRANGE:        # a rearrangement passes its gradient on, cell for cell
            g = cols.materialise(g, out.rows, d_name(node.name), ("grad", node.name, out.rows), "", role="grad")
            visited.append(node.name)
        op = get_op(node.op)
        need = [isinstance(a, str) and a in req and op.can_differentiate(i) for i, a in enumerate(node.args)]
        if not any(need):
            continue
        args = [_arg(vals, a) for a in node.args]
        contribs = vjp_node(node, op, args, out, g, need, cols, _helper_factory(node, op, cols))
        for a, c, nd in zip(node.args, contribs, need):
            if nd and c is not None:
                acc[a] = c if a not in acc else acc[a] + c
    return {p: acc.get(p, np.zeros(vals[p].arr.shape, dtype=object)) for p in program.params}, visited


def _helper_factory(node, op, cols):
    """A per-row helper column for argument ``i``'s term at result element ``idx``; its
    expected values are the engine's VJP of ``node`` before the sum over the rows."""
    def helper(i, idx, expr):
        def recipe(ctx):
            xs = [ctx.value(a) for a in node.args]
            return full_contribution(op, node, xs, ctx.value(node.name), ctx.grad(node.name), i)
        suffix = "" if idx == () else "[" + ",".join(str(j) for j in idx) + "]"
        return cols.new(ROW, "grad_helper", f"{d_name(node.args[i])}{suffix} per row (via {node.name})", expr,
                        ("fn", recipe, idx, True))
    return helper


def map_program(program: StepProgram, names: dict, k: int, labels: dict, shapes: dict) -> Mapped:
    """The columns of ``program`` (see the module docstring).

    ``names``: data column names (``inputs``, ``targets``, ``n_targets``); ``k``: input
    columns; ``labels``: per parameter ``(shape, element labels)``; ``shapes``: per node
    the ``(batch size, per-step shape)`` pairs the engine computed.
    """
    cols = Columns()
    vals = _leaves(program, cols, names, k, labels)
    nodes = _needed(program)
    _forward(program, nodes, vals, cols, shapes)
    loss = _label_outputs(program, vals, cols)
    grads, visited = _reverse(program, nodes, vals, cols, _requires(program, nodes))
    before = {p: vals[p].arr for p in program.params}
    pred, target = (vals.get(program.outputs.get(k)) for k in ("prediction", "target"))
    return Mapped(cols, before, grads, loss, visited,
                  None if pred is None or not pred.rows else pred.arr.reshape(-1),
                  None if target is None or not target.rows else target.arr.reshape(-1))
