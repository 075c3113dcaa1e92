"""Cells as sympy symbols: the vocabulary the live sheet's formulas are built from.

Why symbols: every formula of the sheet is one sympy expression printed by
:func:`tracer.math.printing.excel`. A program value becomes an array of *atoms*, one
per element: a number, or the symbol of the cell that holds it. An op's formula is its
registry expression (``op.expr(attrs)``, ``op.derivative(i, attrs)``) with the atoms
of its arguments substituted; when the result is not itself an atom it is
*materialised*: it gets a column, and the column's symbol becomes the atom.

Two kinds of columns: ``row`` columns hold one cell per batch row of an iteration's
block (a value with the batch as its first dimension); ``step`` columns one cell per
iteration, on the block's first row (parameters, sums over the batch, per-step
scalars). Sums over the block's rows are the sympy functions :class:`XSUM` and
:class:`XSUMPRODUCT` of column ids, printed as ``SUM(E7:E10)`` and
``SUMPRODUCT(E7:E10,F7:F10)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import sympy as sp

from tracer.program.symbolic import sigmoid, softplus

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ROW", "STEP", "XSUM", "XSUMPRODUCT", "Column", "Columns", "NotShown", "N", "LR", "T"]

ROW, STEP = "row", "step"


class NotShown(Exception):
    """The trace is outside what the live sheet can show; the message says why."""


class XSUM(sp.Function):  # noqa: N801 - printed as an Excel function
    """Sum of a row column over the iteration's block: ``XSUM(column id)``."""

    nargs = 1
    is_real = True


class XSUMPRODUCT(sp.Function):  # noqa: N801
    """``SUMPRODUCT`` of two row columns over the iteration's block."""

    nargs = 2
    is_real = True


#: the block's number of batch rows, learning rate and optimizer step (cells of the block's first row)
N = sp.Symbol("n_rows", positive=True)
LR = sp.Symbol("lr", positive=True)
T = sp.Symbol("t", positive=True)


@dataclass
class Column:
    """One column of the sheet.

    ``role``: ``input`` (a reference to the data sheet), ``before`` (a parameter before the
    step), ``node`` (a program value), ``helper`` (a log-sum-exp inside a softmax), ``grad``
    (dL/d of a program value), ``grad_helper`` (a per-row term summed into a gradient),
    ``param_grad``, ``opt`` (an optimizer assignment). ``expr``: the formula (None for
    inputs and parameters). ``source``: where the expected value comes from:
    ``("value" | "grad", name, index, batch)`` (the engine's value or gradient of
    ``name``; ``batch`` says whether that array has a batch axis) or ``("fn", callable,
    index, batch)``. ``quantity`` names the cells in the checks.
    """

    id: int
    kind: str
    role: str
    header: str
    expr: object = None
    source: tuple | None = None
    quantity: str = ""
    data: tuple | None = None          # inputs: (data-sheet column, 0-based)
    symbol: sp.Symbol | None = None
    letter: str = ""
    template: str = ""


@dataclass
class Columns:
    """The sheet's columns in creation order, with a symbol per column."""

    items: list = field(default_factory=list)
    by_symbol: dict = field(default_factory=dict)

    def new(self, kind: str, role: str, header: str, expr: sp.Basic | None = None, source: tuple | None = None,
            quantity: str = "", data: tuple | None = None) -> sp.Symbol:
        col = Column(len(self.items), kind, role, header, expr, source, quantity or header, data)
        col.symbol = sp.Symbol(f"cell{col.id}", real=True)
        self.items.append(col)
        self.by_symbol[col.symbol] = col
        return col.symbol

    def of(self, sym: sp.Symbol) -> Column | None:
        return self.by_symbol.get(sym)

    def is_row(self, sym: sp.Basic) -> bool:
        col = self.by_symbol.get(sym)
        return col is not None and col.kind == ROW

    def has_row(self, e: sp.Basic) -> bool:
        """Whether ``e`` varies from row to row (refers to a row cell outside a block sum)."""
        return any(self.is_row(s) for s in getattr(e, "free_symbols", ()))

    # ------------------------------------------------------------ materialise
    def materialise(self, arr: np.ndarray, rows: bool, header: str, source: tuple, quantity: str,
                    role: str = "node") -> np.ndarray:
        """Give every non-atom element of ``arr`` a column; returns the array of atoms.

        ``source`` is ``(kind, name_or_fn, batch)``; each column gets its element index.
        A value with batch rows whose element does not vary by row gets a step column.
        """
        out = np.empty(arr.shape, dtype=object)
        seen: dict = {}
        for idx in np.ndindex(arr.shape):
            e = arr[idx]
            if is_atom(e):
                out[idx] = e
                continue
            if e in seen:
                out[idx] = seen[e]
                continue
            kind = ROW if rows and self.has_row(e) else STEP
            name = header + _suffix(idx, arr.shape)
            out[idx] = seen[e] = self.new(kind, role, name, e, (source[0], source[1], idx, source[2]),
                                          quantity + _suffix(idx, arr.shape) if quantity else name)
        return out

    def row_sum(self, e: sp.Basic) -> sp.Basic | None:
        """The sum over the block's rows of the per-row expression ``e``, or None when it
        needs a column of its own first (more than a product of two row cells)."""
        e = sp.expand_mul(e) if isinstance(e, sp.Mul) else e
        if isinstance(e, sp.Add):
            parts = [self.row_sum(t) for t in e.args]
            return None if any(p is None for p in parts) else sp.Add(*parts)
        if not self.has_row(e):
            return N * e
        row_syms = [s for s in e.free_symbols if self.is_row(s)]
        inv, dep = e.as_independent(*row_syms, as_Add=False)
        factors = []
        for f in sp.Mul.make_args(dep):
            base, exp = f.as_base_exp()
            if not (self.is_row(base) and exp.is_Integer and exp > 0):
                return None
            factors += [base] * int(exp)
        ids = [sp.Integer(self.of(f).id) for f in factors]
        if len(ids) == 1:
            return inv * XSUM(ids[0])
        if len(ids) == 2:
            return inv * XSUMPRODUCT(*ids)
        return None


def is_atom(e: object) -> bool:
    """A number or a single cell: nothing to compute."""
    return isinstance(e, (int, float)) or bool(getattr(e, "is_Number", False)) or isinstance(e, sp.Symbol)


def _suffix(idx, shape) -> str:
    if not shape or int(np.prod(shape)) == 1:
        return ""
    return "[" + ",".join(str(i) for i in idx) + "]"


def d_name(name: str) -> str:
    """``dL/dz1``, or ``dL/d(loss/term)`` for a name that is not one word."""
    return f"dL/d{name}" if name.replace("_", "a").isalnum() else f"dL/d({name})"


def number(v: float) -> sp.Number:
    """A program number as sympy: integers exact, floats with every bit."""
    v = float(v)
    return sp.Integer(int(v)) if v.is_integer() and abs(v) < 2**53 else sp.Float(v)


def plain(expr: sp.Basic | str) -> sp.Basic:
    """``expr`` with the named functions (sigmoid, softplus) written with exp/log and the
    constants (pi) as numbers: what a spreadsheet can compute."""
    expr = sp.sympify(expr)
    if expr.has(sigmoid, softplus):
        expr = expr.replace(lambda f: isinstance(f, sigmoid), lambda f: 1 / (1 + sp.exp(-f.args[0])))
        expr = expr.replace(lambda f: isinstance(f, softplus), lambda f: sp.log(1 + sp.exp(f.args[0])))
    consts = {c: sp.Float(float(c)) for c in expr.atoms(sp.NumberSymbol)}
    return expr.xreplace(consts) if consts else expr


def excel_template(expr: sp.Basic, cells: dict, ranges: Callable[[int], str]) -> str:
    """The Excel formula of ``expr`` (printed by :func:`tracer.math.printing.excel`) with
    ``{r}``, ``{r0}``, ``{r1}`` placeholders for the row, the block's first and last rows.

    ``cells`` maps symbols to references; ``ranges(id)`` gives a column's ``E{r0}:E{r1}``.
    Functions the printer does not know are printed here around their printed argument.
    """
    from tracer.math import printing

    expr = plain(expr)
    extra = dict(cells)
    for f in expr.atoms(XSUM):
        extra[f] = f"SUM({ranges(int(f.args[0]))})"
    for f in expr.atoms(XSUMPRODUCT):
        extra[f] = f"SUMPRODUCT({ranges(int(f.args[0]))},{ranges(int(f.args[1]))})"
    for fn, name in ((sp.erf, "ERF"), (sp.floor, "INT")):
        for f in expr.atoms(fn):
            extra[f] = f"{name}({excel_template(f.args[0], cells, ranges)[1:]})"
    return printing.excel(expr, extra)
