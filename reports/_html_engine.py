"""The page's derivation values, from the checker's own evaluation of each step.

Why: the page shows, per iteration, the batch's predictions, each gradient as a sum of
per-row terms and the optimizer's update with its numbers. Those numbers must be the
ones the checker computed: the engine's values of the checker's program (declared, or
with the loss it identified) on that step's batch with the recorded parameters before
the step (:mod:`reports._engine`), and the checker's optimizer rule
(:meth:`tracer.math.optimizers.OptimizerRule.assignments`) fed the gradient the run used
(recorded, or the engine's where the run kept none, as the checker does).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tracer.errors import SteptraceError
from tracer.program import get_op

from ._engine import evaluate_steps

if TYPE_CHECKING:
    from collections.abc import Callable

    from numpy.typing import ArrayLike

    from tracer.arrays import TraceArrays
    from tracer.math.optimizer_rule import OptimizerRule
    from tracer.program import Node, StepProgram
    from tracer.trace import Trace

    from ._engine import StepEvaluation

__all__ = ["dense_view", "EngineView", "update_values", "UPDATE_VALUES_LIMIT"]

#: parameter elements for which each optimizer assignment's value is embedded
UPDATE_VALUES_LIMIT = 64


def _consumers(nodes, name):
    return [n for n in nodes if name in n.args]


def _linear_chain(program, nodes, start):
    """The node the prediction is, following identity nodes from ``start``."""
    cur = start
    while cur != program.outputs.get("prediction"):
        nxt = _consumers(nodes, cur)
        if len(nxt) != 1 or nxt[0].op != "identity":
            return None
        cur = nxt[0].name
    return cur


def dense_view(program: StepProgram, k: int) -> dict | None:
    """One dense layer ``act(x W + b)`` on the data columns, as the page draws it:
    ``{weight, bias, transpose, activation, z}`` (``z``: the node before the activation),
    or None for any other model."""
    nodes = program.primitive_nodes
    mats = [n for n in nodes if n.op == "matmul"]
    inputs = {i.name: i for i in program.inputs}
    if len(mats) != 1 or mats[0].args[0] not in inputs:
        return None
    mm, x = mats[0], inputs[mats[0].args[0]]
    if x.source != "inputs" or x.columns not in (None, [0, k]) or x.shape not in (None, [k]):
        return None
    w, transpose = mm.args[1], False
    if w not in program.params:
        tn = next((n for n in nodes if n.name == w and n.op == "transpose"), None)
        if tn is None or tn.args[0] not in program.params:
            return None
        w, transpose = tn.args[0], True
    z, bias = mm.name, None
    after = _consumers(nodes, z)
    if len(after) == 1 and after[0].op == "add" and any(a in program.params for a in after[0].args):
        bias = next(a for a in after[0].args if a in program.params)
        z = after[0].name
    if sum(1 for n in nodes for a in n.args if a in (w, bias)) != 1 + (bias is not None):
        return None
    if _linear_chain(program, nodes, z):
        act = "linear"
    else:
        nxt = _consumers(nodes, z)
        if len(nxt) != 1 or not _linear_chain(program, nodes, nxt[0].name) or len(nxt[0].args) != 1:
            return None
        act = nxt[0].op
    return {"weight": w, "bias": bias, "transpose": transpose, "activation": act, "z": z}


class EngineView:
    """The program evaluated on every recorded step, laid out like the page's arrays:
    per sample row (the samples table sorted by step) and per parameter row."""

    def __init__(self, trace, program, wrt: list):
        self.trace = trace
        self.program = program
        self.chunks = evaluate_steps(trace, program, wrt=wrt if program.has_loss else None)
        a = trace.arrays()
        order = np.argsort(a.sample_step, kind="stable")
        s_step = a.sample_step[order]
        self.lo = {int(s): int(i) for s, i in zip(*np.unique(s_step, return_index=True))}
        self.param_pos = {int(s): i for i, s in enumerate(a.param_step)}
        self.n_samples = len(s_step)

    def per_sample(self, value: Callable[[StepEvaluation], ArrayLike]) -> np.ndarray | None:
        """``value(chunk)`` (stacked ``(S, B, ...)``) as ``(samples, width)`` in the page's order."""
        out = None
        for c in self.chunks:
            v = np.asarray(value(c), dtype=np.float64)
            v = v.reshape(v.shape[0], v.shape[1], -1) if v.ndim >= 2 else None
            if v is None:
                return None
            if out is None:
                out = np.full((self.n_samples, v.shape[2]), np.nan)
            for j, s in enumerate(c.group.steps.tolist()):
                lo = self.lo.get(int(s))
                if lo is not None and v.shape[1] == len(c.group.rows[j]):
                    out[lo:lo + v.shape[1]] = v[j]
        return out

    def per_param(self, name: str) -> np.ndarray:
        """The engine's gradient of ``name`` per recorded parameter row (NaN where none)."""
        p = self.trace.arrays().params[name]
        out = np.full(p.grad.shape, np.nan)
        for c in self.chunks:
            g = c.grads.get(name)
            if g is None:
                continue
            for j, s in enumerate(c.group.steps.tolist()):
                k = self.param_pos.get(int(s))
                if k is not None:
                    out[k] = np.asarray(g[j], dtype=np.float64).reshape(-1)
        return out


def engine_view(trace: Trace, program: StepProgram | None) -> tuple[EngineView | None, dict | None]:
    """An :class:`EngineView` with every gradient the page shows, or None when the engine
    cannot evaluate the program (the page then shows only what was recorded)."""
    if program is None:
        return None, None
    dense = dense_view(program, trace.arrays().inputs.shape[1]) if trace.arrays().inputs is not None else None
    wrt = list(program.params) + ([dense["z"]] if dense else [])
    try:
        return EngineView(trace, program, wrt), dense
    except (SteptraceError, ValueError, IndexError):
        return None, None


def update_values(trace: Trace, rule: OptimizerRule, declared: bool, view: EngineView | None) -> dict | None:
    """Each optimizer assignment's value per step and element, from the checker's rule:
    ``{param: {"eq": [flat values per assignment], "prev": {slot: flat state before}}}``."""
    from ._xl_values import optimizer_values, state_before, step_t_and_lr

    a = trace.arrays()
    if not a.params or sum(p.before.shape[1] for p in a.params.values()) > UPDATE_VALUES_LIMIT:
        return None
    if len(a.param_step) != trace.n_steps or not np.array_equal(a.param_step, np.arange(1, trace.n_steps + 1)):
        return None
    t, lr = step_t_and_lr(trace, rule, declared)
    out = {}
    for name, p in a.params.items():
        g = p.grad.astype(np.float64)
        if view is not None and not np.isfinite(g).all():
            g = np.where(np.isfinite(g), g, view.per_param(name))
        values = optimizer_values(trace, rule, name, g, t, lr)
        init = rule.initial_state(np.zeros(p.before.shape[1]))
        prev = {}
        for slot in rule.slots:
            before = state_before(p, slot, init[slot])
            if before is None:
                last = [v for target, v in values if target == slot][-1]
                before = np.concatenate([init[slot][None], last[:-1]])
            prev[slot] = before
        out[name] = {"eq": [v for _, v in values], "prev": prev}
    return out


def op_text(node: Node) -> str:
    """``name = text`` of a primitive node, as :func:`tracer.explain` prints it."""
    args = [a if isinstance(a, str) else f"{a:g}" for a in node.args]
    return f"{node.name} = {get_op(node.op).text(args, node.attrs)}"


def loss_formulas(program: StepProgram, arrays: TraceArrays) -> dict:
    """The program's loss as the page prints it: the elementwise term in ``y_pred`` and
    ``y_true`` and its derivative (printed from the registry's sympy expression), and the
    divisors of the sum (``n`` batch rows, ``m`` outputs, numbers). Empty parts are None."""
    import sympy as sp

    from tracer.math import printing
    from tracer.program.elementwise import Elementwise, X, Y

    loss = program.outputs["loss"]
    nodes = {n.name: n for n in program.primitive_nodes if n.group == loss or n.name == loss}
    pair = [program.outputs.get("prediction"), program.outputs.get("target")]
    term = nodes.get(f"{loss}/term")
    out = {"loss": f"{loss} (the program's loss)", "loss_term": None, "loss_grad": None, "divide_by": None}
    if term is None or not isinstance(get_op(term.op), Elementwise) or list(term.args) != pair:
        return out
    op = get_op(term.op)
    names = {X: sp.Symbol("y_pred"), Y: sp.Symbol("y_true")}
    out["loss_term"] = printing.text(op.expr(term.attrs).xreplace(names))
    out["loss_grad"] = printing.text(op.derivative(0, term.attrs).xreplace(names))
    factors = []
    mean = next((n for n in nodes.values() if n.op == "mean"), None)
    if mean is not None:
        src = nodes.get(mean.args[0])
        per_row = src is not None and src.op == "sum" and src.attrs.get("dims") == [-1]
        m = arrays.sample_pred.shape[1] if arrays.sample_pred is not None else 1
        factors += ["n"] if per_row or m == 1 else ["n", "m"]
    last = nodes.get(loss)
    if last is not None and last.op == "div" and not isinstance(last.args[1], str):
        factors.append(f"{last.args[1]:g}")
    out["divide_by"] = factors
    return out
