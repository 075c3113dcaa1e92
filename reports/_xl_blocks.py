"""Write one block of rows per iteration and register every formula cell with its expected value.

Why separate from the layout: this is the only part whose cost grows with the run
(S0: 100 blocks of 1,000 rows), so it is a tight loop over prepared templates; the
expected values are fetched per column and block from the engine as arrays.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ._excel_cells import col as letter_of
from ._excel_formulas import Check, trace_slot
from ._xl_symbols import ROW
from ._xl_values import optimizer_values

if TYPE_CHECKING:
    import sympy as sp

    from tracer.trace import Trace

    from ._excel_formulas import Analysis, FormulaSheet
    from ._xl_symbols import Column

__all__ = ["write_blocks"]

from ._xl_layout import INFO as _INFO  # noqa: E402  (the layout imports this module lazily)
from ._xl_layout import _I  # noqa: E402


def _quantity(name: str, i: int, eqs, rule, recorded) -> str:
    """How the checks name an optimizer cell: ``after``, ``state <slot>`` or ``optimizer <name>``."""
    last = max(k for k, (m, _) in enumerate(eqs) if m == name)
    if i != last:
        return f"optimizer {name}"
    if name == "p":
        return "after"
    if name in rule.slots:
        return f"state {trace_slot(name, recorded) or name}"
    return f"optimizer {name}"


class _Writer:
    """Fills the blocks; holds what every block shares (positions, expected optimizer values)."""

    def __init__(self, trace, an, out, order, groups, eqs, t, lr, lr_const):
        self.trace, self.an, self.out, self.groups = trace, an, out, groups
        self.t, self.lr, self.lr_const = t, lr, lr_const
        self.a = trace.arrays()
        self.pos = {c.id: len(_INFO) + i for i, c in enumerate(order)}
        self.width = len(_INFO) + len(order)
        self.row_cols = [c for c in order if c.kind == ROW]
        self.step_cols = [c for c in order if c.kind != ROW and c.role in ("node", "grad", "helper", "grad_helper")]
        self.last_p = max(i for i, (n, _) in enumerate(eqs) if n == "p")
        n = trace.n_steps
        self.grads = {p: an.values.param_grads(p, n) for p in an.labels}
        self.opt = {p: optimizer_values(trace, an.rule, p, self.grads[p], t, lr) for p in an.labels}
        self.quantity = {p: [_quantity(m, i, eqs, an.rule, self.a.params[p].slots) for i, (m, _) in
                             enumerate(eqs)] for p in an.labels}
        self.loss_col = next(c for c in order if c.quantity == "loss")
        self.n_formulas = 0

    def block(self, s: int, p0: int) -> list:
        """The rows of iteration ``s`` (``p0``: the previous block's first row)."""
        samples = self.an.values.rows(s)
        B = len(samples)
        r0 = len(self.out.rows) + 1
        fmt = {"r0": r0, "r1": r0 + B - 1, "p0": p0}
        steps = self.a.steps
        block = [[None] * self.width for _ in range(B)]
        head = [int(steps["epoch"][s - 1]), int(steps["batch"][s - 1]), s]
        for i, sample in enumerate(samples.tolist()):
            block[i][0:3] = head
            block[i][_I["sample (data row)"]] = sample
        first = block[0]
        first[_I["t (optimizer step)"]] = float(self.t[s - 1])
        first[_I["n (batch rows)"]] = B
        if self.lr_const:
            first[_I["lr"]] = f"={self.out.lr_cell}"
            self._check(f"{letter_of(_I['lr'] + 1)}{r0}", "lr", s, float(self.lr[s - 1]))
        else:
            first[_I["lr"]] = float(self.lr[s - 1])
        for c in self.row_cols:
            self._rows(c, block, fmt, samples, s)
        for c in self.step_cols:
            first[self.pos[c.id]] = c.template.format(r=r0, **fmt)
            self._check(f"{c.letter}{r0}", c.quantity, s, self.an.values.column(c, s))
        self._params(first, fmt, s)
        self.out.loss_cells.append(f"{self.loss_col.letter}{r0}")
        return block

    def _check(self, cell, quantity, s, expected) -> None:
        self.out.checks.append(Check(cell, quantity, s, float(expected)))
        self.n_formulas += 1

    def _rows(self, c, block, fmt, samples, s) -> None:
        k, L, q, r0 = self.pos[c.id], c.letter, c.quantity, fmt["r0"]
        expected = np.asarray(self.an.values.column(c, s), dtype=np.float64).tolist()
        checks = self.out.checks
        if c.role == "input":
            texts = [c.template.format(d=sample + 2) for sample in samples.tolist()]
        else:
            texts = [c.template.format(r=r0 + i, **fmt) for i in range(len(block))]
        for i, (text, e) in enumerate(zip(texts, expected)):
            block[i][k] = text
            checks.append(Check(f"{L}{r0 + i}", q, s, e))
        self.n_formulas += len(block)

    def _params(self, first, fmt, s) -> None:
        r0 = fmt["r0"]
        for p, flat, label, before, grad, eq in self.groups:
            rec = self.a.params[p]
            if s == 1:
                first[self.pos[before.id]] = float(rec.before[0, flat])
            else:
                first[self.pos[before.id]] = f"={eq[self.last_p].letter}{fmt['p0']}"
                self._check(f"{before.letter}{r0}", "before", s, rec.before[s - 1, flat])
            first[self.pos[grad.id]] = grad.template.format(r=r0, **fmt)
            self._check(f"{grad.letter}{r0}", "grad", s, self.grads[p][s - 1, flat])
            for i, c in enumerate(eq):
                first[self.pos[c.id]] = (c.template_first if s == 1 else c.template).format(r=r0, **fmt)
                self._check(f"{c.letter}{r0}", self.quantity[p][i], s, self.opt[p][i][1][s - 1].reshape(-1)[flat])
            self.out.after_cells[label].append(f"{eq[self.last_p].letter}{r0}")


def write_blocks(trace: Trace, an: Analysis, out: FormulaSheet, order: list[Column], groups: list[tuple],
                 eqs: list[tuple[str, sp.Expr]], t: np.ndarray, lr: np.ndarray, lr_const: bool) -> None:
    """Append the iteration blocks to ``out.rows`` and fill ``out.checks``."""
    w = _Writer(trace, an, out, order, groups, eqs, t, lr, lr_const)
    p0 = 0
    epochs = np.asarray(trace.arrays().steps["epoch"])
    for s in range(1, trace.n_steps + 1):
        r0 = len(out.rows) + 1
        out.rows.extend(w.block(s, p0))
        out.blocks.append((r0, len(out.rows)))
        if s == trace.n_steps or epochs[s] != epochs[s - 1]:
            out.epoch_ends.add(len(out.rows))
        p0 = r0
    out.n_formulas = w.n_formulas
