"""The update section of ``explain``: the optimizer's equations with this step's numbers.

Why: RMSprop's first step is ``lr/sqrt(1 - rho)`` in size whatever the gradient (S2);
a learner sees that only when the velocity and the denominator are written out with
the step's own numbers, as the page does. The numbers are the checker's: its rule
(:meth:`tracer.math.optimizers.OptimizerRule.assignments`) applied to the recorded
parameter, the gradient the run used (recorded, else the step program's) and the
optimizer state before the step (the rule's initial state at the optimizer's first
step, else the state recorded after the previous step).
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from .display import num
from .math import printing

if TYPE_CHECKING:
    from .checker.report import CheckReport
    from .trace import Trace

__all__ = ["update_lines", "substitute"]

#: parameter elements whose arithmetic is written out
ELEMENTS_SHOWN = 4
_WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")


def substitute(text: str, env: dict, digits: int = 6) -> str:
    """``text`` with every name in ``env`` replaced by its number (negative ones in brackets)."""
    def repl(m):
        v = env.get(m.group(0))
        if v is None or not np.isfinite(v):
            return m.group(0)
        s = num(v, digits)
        return f"({s})" if v < 0 else s
    return _WORD.sub(repl, text)


def _state_before(rule, p: dict, i: int, t: float) -> dict | None:
    """The optimizer state before parameter row ``i``: initial at t = 1, else the recorded state
    after the previous row (None when it was not recorded)."""
    from .checker.updates import _recorded_slot
    size = p.before.shape[1]
    init = rule.initial_state(np.zeros(size))
    out = {}
    for slot in rule.slots:
        if t == 1:
            out[slot] = init[slot]
            continue
        rec = _recorded_slot(p, slot)
        if rec is None or i == 0 or not np.isfinite(rec[i - 1]).all():
            return None
        out[slot] = rec[i - 1].astype(np.float64)
    return out


def _step_numbers(trace, i: int, rule) -> tuple[float, float]:
    """``(t, lr)`` of parameter row ``i`` as the checker takes them."""
    arrays = trace.arrays()
    step = int(arrays.param_step[i])
    tab = arrays.steps
    steps = np.asarray(tab.get("step", []), dtype=np.int64)
    hit = np.flatnonzero(steps == step)

    def col(name):
        c = tab.get(name)
        return float(np.asarray(c, dtype=np.float64)[hit[0]]) if c is not None and hit.size else float("nan")
    t = col("opt_step")
    if not np.isfinite(t):
        t = float(step)
    lr = col("lr") if trace.meta.get("optimizer") is not None else float("nan")
    return t, (lr if np.isfinite(lr) else rule.lr)


def update_lines(trace: Trace, report: CheckReport, pos: np.ndarray,
                 grads: dict[str, np.ndarray] | None = None) -> list[str]:
    """The ``Update:`` section: the rule, its equations (``p ← p − lr·g``) and, per parameter,
    the recorded change and each assignment with this step's numbers."""
    rules = report.context.get("rules") or {}
    if not rules or not pos.size:
        return []
    arrays = trace.arrays()
    i = int(pos[0])
    rule = next(iter(rules.values()))
    eqs = rule.equations()
    names = {n for n, _ in eqs} | set(rule.slots)
    lines = [f"Update: {rule.describe()}"]
    texts = []
    for name, eq in eqs:
        try:
            texts.append((name, printing.readable(eq, first=name, variables=names)))
        except (TypeError, ValueError):   # an equation the printer cannot render is not worth failing over
            texts.append((name, printing.text(eq)))
        lines.append(f"    {name} \u2190 {texts[-1][1]}")
    t, lr = _step_numbers(trace, i, rule)
    for n, p in arrays.params.items():
        before, after = p.before[i].astype(np.float64), p.after[i].astype(np.float64)
        lines.append(f"    {n}: {_fmt(before)} -> {_fmt(after)} (recorded)")
        g = p.grad[i].astype(np.float64)
        if not np.isfinite(g).all() and grads and n in grads:
            g = np.asarray(grads[n][0], dtype=np.float64).reshape(-1)
        r = rules.get(n, rule)
        state = _state_before(r, p, i, t)
        if r is not rule or not np.isfinite(g).all() or state is None:
            continue
        lines += _arithmetic(n, p, r, texts, before, g, state, t, lr)
    return lines


def _arithmetic(name, p, rule, texts, before, g, state, t, lr) -> list[str]:
    """Each assignment with the numbers of the first few elements substituted."""
    values = rule.assignments(before[None], g[None], {s: v[None] for s, v in state.items()}, np.array([t]),
                              np.array([lr]))
    shape = tuple(p["shape"])
    out = []
    for e in range(min(before.size, ELEMENTS_SHOWN)):
        label = name if before.size == 1 else f"{name}[{','.join(map(str, np.unravel_index(e, shape)))}]"
        env = {k: float(v) for k, v in rule.symbols.items()}
        env.update({"p": before[e], "g": g[e], "t": t, "lr": lr})
        env.update({s: float(v[e]) for s, v in state.items()})
        out.append(f"      {label}, with this step's numbers:")
        for (target, text), (_, val) in zip(texts, values):
            v = float(np.asarray(val).reshape(-1)[e])
            out.append(f"        {target} \u2190 {substitute(text, env)} = {num(v, 7)}")
            env[target] = v
    if before.size > ELEMENTS_SHOWN:
        out.append(f"      ({before.size - ELEMENTS_SHOWN} more elements of {name})")
    return out


def _fmt(a) -> str:
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    if a.size == 1:
        return num(a[0], 7)
    from .display import num_list
    return num_list(a, 7)
