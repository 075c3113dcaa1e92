"""The value each formula cell must show: the engine's numbers and the checker's rules.

Why: a live sheet is only worth something if every formula cell is known to be right.
Each cell's expected value is taken from what the checker computed, never from a
separate NumPy model: program values and gradients from the engine
(:class:`tracer.program.Evaluation` on each step's batch with the recorded parameters
before the step), optimizer assignments from the rule the checker used
(:meth:`tracer.math.optimizers.OptimizerRule.assignments`, fed the engine's gradient,
the recorded parameter and the recorded optimizer state before the step). The tests
recalculate the workbook in LibreOffice and compare every cell with these numbers.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ._engine import evaluate_steps
from ._xl_symbols import STEP

if TYPE_CHECKING:
    from tracer.math.optimizer_rule import OptimizerRule
    from tracer.trace import Trace

    from ._xl_symbols import Column

__all__ = ["Ctx", "EngineValues", "optimizer_values", "step_t_and_lr", "state_before"]


class Ctx:
    """What a helper column's recipe reads: the engine's values and gradients of one chunk."""

    def __init__(self, ev, grads):
        self.ev, self.grads = ev, grads

    def value(self, a: str | float) -> np.ndarray:
        if isinstance(a, str):
            return self.ev.values[a]
        return np.asarray([a], dtype=np.float64)

    def grad(self, name: str) -> np.ndarray:
        return self.grads[name]


class EngineValues:
    """The engine's evaluation of every recorded step, looked up by global step number."""

    def __init__(self, trace, program):
        self.trace = trace
        self.program = program
        self.chunks = evaluate_steps(trace, program)
        self.where = {}
        for ci, chunk in enumerate(self.chunks):
            for pos, s in enumerate(chunk.group.steps.tolist()):
                self.where[int(s)] = (ci, pos)
        self._fn_cache: dict = {}

    def shapes(self) -> dict:
        """Per value name the set of ``(batch size, per-step shape)`` the engine computed."""
        out: dict = {}
        for chunk in self.chunks:
            b = chunk.group.batch_size
            for name, v in chunk.ev.values.items():
                out.setdefault(name, set()).add((b, tuple(v.shape[1:])))
        return out

    def add_gradients(self, names: list) -> None:
        """Ask the engine for ``dL/d<name>`` of ``names`` (params and nodes) in every chunk."""
        for chunk in self.chunks:
            chunk.grads = chunk.ev.gradients(list(names))

    def rows(self, step: int) -> np.ndarray:
        ci, pos = self.where[step]
        return self.chunks[ci].group.rows[pos]

    def column(self, col: Column, step: int) -> float | np.ndarray:
        """The expected value(s) of a formula column at ``step``: one per batch row for a row
        column, one number for a step column."""
        ci, pos = self.where[step]
        chunk = self.chunks[ci]
        kind, name, idx, batch = col.source
        if kind == "value":
            arr = chunk.ev.values[name]
        elif kind == "grad":
            arr = chunk.grads[name]
        else:
            key = (ci, id(name))
            if key not in self._fn_cache:
                self._fn_cache[key] = np.asarray(name(Ctx(chunk.ev, chunk.grads)))
            arr = self._fn_cache[key]
        a = arr[min(pos, arr.shape[0] - 1)]
        if batch:
            a = a[(slice(None),) + tuple(idx)]
            return float(a[0]) if col.kind == STEP else a
        return float(a[tuple(idx)])

    def param_grads(self, name: str, n_steps: int) -> np.ndarray:
        """The engine's gradient of parameter ``name`` at steps 1..n_steps, ``(S, size)``."""
        out = None
        for s in range(1, n_steps + 1):
            ci, pos = self.where[s]
            g = np.asarray(self.chunks[ci].grads[name][pos], dtype=np.float64).reshape(-1)
            if out is None:
                out = np.empty((n_steps, g.size))
            out[s - 1] = g
        return out


def step_t_and_lr(trace: Trace, rule: OptimizerRule, declared: bool) -> tuple[np.ndarray, np.ndarray]:
    """The optimizer step ``t`` and learning rate of every step, as the checker takes them:
    the recorded ``opt_step`` (else the step number); a declared optimizer's recorded lr
    where there is one, an identified one's own lr."""
    steps = trace.arrays().steps
    n = trace.n_steps
    t = np.asarray(steps.get("opt_step", np.full(n, np.nan)), dtype=np.float64)
    if not np.isfinite(t).all():
        t = np.arange(1, n + 1, dtype=np.float64)
    lr = np.asarray(steps.get("lr", np.full(n, np.nan)), dtype=np.float64) if declared else np.full(n, np.nan)
    return t, np.where(np.isfinite(lr), lr, rule.lr)


def state_before(p: dict, slot: str, init: np.ndarray) -> np.ndarray | None:
    """The optimizer state ``slot`` before each step: ``init`` at the first, then the recorded
    state after the previous step (None when the run did not record that slot)."""
    from ._excel_formulas import trace_slot
    rec = trace_slot(slot, p.slots)
    if rec is None:
        return None
    after = p.slots[rec].astype(np.float64)
    before = np.empty_like(after)
    before[0] = init
    before[1:] = after[:-1]
    return before


def optimizer_values(trace: Trace, rule: OptimizerRule, name: str, grads: np.ndarray, t: np.ndarray,
                     lr: np.ndarray) -> list:
    """Every assignment of ``rule`` for parameter ``name`` at every step: ``[(target, (S, size))]``.

    The state before step 1 is the rule's initial state, later the recorded state after the
    previous step; a state the run did not record is carried from the rule's own previous
    assignment, one step at a time.
    """
    p = trace.arrays().params[name]
    before = p.before.astype(np.float64)
    n, size = before.shape
    init = rule.initial_state(np.zeros(size))
    states = {s: state_before(p, s, init[s]) for s in rule.slots}
    if all(v is not None for v in states.values()):
        return rule.assignments(before, grads, states, t, lr)
    out, state = None, {s: init[s][None] for s in rule.slots}
    for k in range(n):
        vals = rule.assignments(before[k:k + 1], grads[k:k + 1], state, t[k:k + 1], lr[k:k + 1])
        if out is None:
            out = [(target, np.empty((n, size))) for target, _ in vals]
        for (target, arr), (_, v) in zip(out, vals):
            arr[k] = v[0]
        last = {target: v for target, v in vals}
        state = {s: (states[s][k + 1:k + 2] if states[s] is not None and k + 1 < n else last[s])
                 for s in rule.slots}
    return out
