"""Lay the live sheet out: settings, one column per program cell, one block per iteration.

Why a layout separate from the formulas: the mapped program (:mod:`reports._xl_program`)
says *what* each column computes; here the columns get their letters and order (block
information, inputs, the forward pass, the reverse pass, then per parameter element its
value before the step, its gradient, one column per optimizer assignment and the value
after), each formula is printed once as a template and filled in per row, and each
formula cell is registered with its expected value (:mod:`reports._xl_values`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import sympy as sp

from tracer.display import count

from ._excel_cells import col as letter_of
from ._excel_cells import ref
from ._excel_formulas import DATA_SHEET, FormulaSheet, framework_equations
from ._xl_symbols import LR, ROW, STEP, N, T, excel_template
from ._xl_values import step_t_and_lr

if TYPE_CHECKING:
    from tracer.trace import Trace

    from ._excel_formulas import Analysis

__all__ = ["layout"]

INFO = ["epoch", "batch", "iteration", "t (optimizer step)", "lr", "n (batch rows)", "sample (data row)"]
_I = {h: i for i, h in enumerate(INFO)}
PROGRAM_LINES_SHOWN = 40


def _intro(trace, an, out: FormulaSheet) -> None:
    rows = out.rows
    rep = an.report
    rows.append([f"steptrace: {trace.meta.get('framework', '?')} run, {count(trace.n_steps, 'iteration')} - "
                 f"every computed number below is a live formula"])
    rows.append(["Each iteration is a block of rows (one per batch row). Each column is one variable of the "
                 "step program the checker evaluated (its forward pass, then dL/d of each variable on the way "
                 "back), then per parameter its value before the step, its gradient, the optimizer's "
                 "assignments and its value after. The parameters of an iteration are the previous "
                 "iteration's updated ones: edit a setting below and every later iteration is recomputed."])
    loss = rep.identified.get("loss")
    loss = f"{loss} (identified by the checker)" if loss and "not identified" not in loss else \
        (trace.meta.get("loss") or {}).get("name", "declared by the program")
    opt = an.rule.describe() + ("" if an.declared_optimizer else " (identified by the checker)")
    rows.append([f"loss: {loss}; optimizer: {opt}"])
    if any(p.before.dtype.itemsize <= 4 for p in trace.arrays().params.values()):
        rows.append(["The run computed in float32; this sheet computes in float64, so it agrees with the "
                     "recorded numbers to float32 precision (about 1e-6 relative, less where terms cancel)."])
    for what in ("model", "loss", "optimizer"):
        if rep.identified.get(what):
            out.notes.append(f"{what}: {rep.identified[what]}")
    lines = an.program.lines()
    for i, line in enumerate(lines[:PROGRAM_LINES_SHOWN]):
        rows.append(["program" if i == 0 else "", line])
    if len(lines) > PROGRAM_LINES_SHOWN:
        rows.append(["", f"... ({len(lines) - PROGRAM_LINES_SHOWN} more lines: tracer.explain prints them all)"])


def _settings(trace, an, out: FormulaSheet):
    """The settings block; returns ``(lr per step, whether it is one value, equations, consts)``."""
    rows, rule = out.rows, an.rule
    rows.append(["setting", "value", "what it is"])
    t, lr = step_t_and_lr(trace, rule, an.declared_optimizer)
    lr_const = bool(np.all(lr == lr[0]))
    note = "learning rate" + ("" if an.declared_optimizer else " (identified by the checker)")
    settings = [("lr", float(lr[0]) if lr_const else rule.lr,
                 note + ("" if lr_const else " (the run changed it: the lr column holds the recorded values)"))]
    for name, value in rule.symbols.items():
        settings.append((name, float(value), f"optimizer hyperparameter {name}"))
    eqs, f32 = framework_equations(rule)
    for name, value in f32.items():
        base = name[:-len("_f32")]
        settings.append((name, value, f"{base} rounded to float32: the framework computes {base}^t from "
                                      f"this value (it does not follow edits of {base})"))
    init = rule.initial_state(np.zeros(1))
    for slot in rule.slots:
        settings.append((f"initial {slot}", float(init[slot][0]), f"optimizer state {slot} before step 1"))
    for name, value, what in settings:
        rows.append([name, value, what])
        out.setting_cells[name] = ref(2, len(rows), absolute=True)
    out.lr_cell = out.setting_cells["lr"]
    rows.append([])
    return t, lr, lr_const, eqs


def _param_groups(an, eqs):
    """Per parameter element: ``(param, flat, label, before, grad, [eq columns])``."""
    cols, groups = an.mapped.cols, []
    last_p = max(i for i, (n, _) in enumerate(eqs) if n == "p")
    for p, (shape, labels) in an.labels.items():
        before = an.mapped.before[p].reshape(-1)
        grads = np.asarray(an.mapped.grads[p], dtype=object).reshape(-1)
        for flat, label in enumerate(labels):
            g = cols.new(STEP, "param_grad", f"dL/d({label})", sp.sympify(grads[flat]), ("pgrad", p, flat, False),
                         "grad")
            eq = [cols.new(STEP, "opt", f"{label} after" if i == last_p else f"{label}: {n}",
                           source=("opt", p, flat, i)) for i, (n, _) in enumerate(eqs)]
            groups.append((p, flat, label, cols.of(before[flat]), cols.of(g), [cols.of(e) for e in eq]))
    return groups


def _order(an, groups) -> list:
    items = an.mapped.cols.items
    order = [c for c in items if c.role == "input"]
    order += [c for c in items if c.role in ("node", "helper")]
    order += [c for c in items if c.role in ("grad", "grad_helper")]
    for _, _, _, before, grad, eq in groups:
        order += [before, grad] + eq
    for i, c in enumerate(order, start=len(INFO) + 1):
        c.letter = letter_of(i)
    return order


def _templates(an, order, groups, eqs, out: FormulaSheet):
    """Print every formula once, with ``{r}``/``{r0}``/``{r1}``/``{p0}`` for the rows."""
    info = {h: letter_of(i + 1) for i, h in enumerate(INFO)}
    cells = {c.symbol: (f"{c.letter}{{r}}" if c.kind == ROW else f"${c.letter}${{r0}}") for c in order}
    cells.update({N: f"${info['n (batch rows)']}${{r0}}", LR: f"${info['lr']}${{r0}}",
                  T: f"${info['t (optimizer step)']}${{r0}}"})
    by_id = {c.id: c for c in order}

    def ranges(cid):
        L = by_id[cid].letter
        return f"{L}{{r0}}:{L}{{r1}}"
    for c in order:
        if c.role in ("node", "grad", "helper", "grad_helper", "param_grad"):
            c.template = excel_template(c.expr, cells, ranges)
        elif c.role == "input":
            c.template = f"={DATA_SHEET}!{letter_of(c.data[0])}{{d}}"
    names = [n for n, _ in eqs]
    consts = [k for k in out.setting_cells if k != "lr" and not k.startswith("initial ")]
    for _, _, _, before, grad, eq in groups:
        for first in (True, False):
            env = {"p": cells[before.symbol], "g": cells[grad.symbol], "t": cells[T], "lr": cells[LR]}
            env.update({k: out.setting_cells[k] for k in consts})
            last = {n: i for i, n in enumerate(names)}
            for slot in an.rule.slots:
                env[slot] = out.setting_cells[f"initial {slot}"] if first else f"${eq[last[slot]].letter}${{p0}}"
            tpls = []
            for i, (name, expr) in enumerate(eqs):
                tpls.append(_print_eq(name, expr, env))
                env[name] = f"${eq[i].letter}${{r0}}"
            for c, tpl in zip(eq, tpls):
                setattr(c, "template_first" if first else "template", tpl)


def _print_eq(name, expr, env) -> str:
    from tracer.math import printing
    from ._xl_symbols import NotShown
    cells = {}
    for sym in expr.free_symbols:
        if sym.name not in env:
            raise NotShown(f"optimizer formula {name} uses {sym.name}, which has no cell")
        cells[sym] = env[sym.name]
    return printing.excel(expr, cells)


def layout(trace: Trace, an: Analysis) -> FormulaSheet:
    """The live sheet's rows (see the module docstring)."""
    out = FormulaSheet()
    _intro(trace, an, out)
    t, lr, lr_const, eqs = _settings(trace, an, out)
    groups = _param_groups(an, eqs)
    order = _order(an, groups)
    _templates(an, order, groups, eqs, out)
    out.rows.append(INFO + [c.header for c in order])
    out.header_row = len(out.rows)
    out.analysis = an
    out.letters = {h: letter_of(i + 1) for i, h in enumerate(INFO)}
    out.labels = [g[2] for g in groups]
    out.after_cells = {g[2]: [] for g in groups}
    from ._xl_blocks import write_blocks
    write_blocks(trace, an, out, order, groups, eqs, t, lr, lr_const)
    return out
