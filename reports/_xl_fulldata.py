"""The updated model on every data row, as one live array formula per iteration.

Why: the S2 learner's spreadsheet evaluated the *trained* weights on all 12 rows (18.77)
while Keras logged the batch with the weights *before* the update (20.07). The summary
sheet shows both, live: after an edit of the learning rate the "all rows, after the
update" column follows. Each formula is the live sheet's own program inlined: every
per-row column's expression is substituted down to the data sheet's columns and the
parameters' "after" cells of the iteration, sums over the block become ``SUMPRODUCT``
over the data rows and the block's row count becomes the data's. What cannot be inlined
(a gradient, a value shared across rows that is not a sum) raises :class:`NotLive`, and
the column then holds the engine's values with a note.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import sympy as sp

from ._excel_cells import col as letter_of
from ._xl_symbols import N, XSUM, XSUMPRODUCT, plain

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["NotLive", "FullData", "ASUM", "MAX_NODES"]

#: the largest all-rows formula written (nodes of its printed tree): a deep chain of
#: activations grows the inlined expression exponentially (each use of a column repeats it),
#: and Excel stops at 8,192 characters a formula anyway
MAX_NODES = 2000


class NotLive(Exception):
    """The program cannot be written as one formula over the data rows (the message says why)."""


class ASUM(sp.Function):  # noqa: N801 - printed as SUMPRODUCT over the data rows
    """Sum over every data row of an array expression."""

    nargs = 1


def _no_max(e):
    """``Max``/``Min`` as ``IF``: Excel's MAX of two arrays is one number, not one per row."""
    def pair(args, op):
        out = args[0]
        for a in args[1:]:
            out = sp.Piecewise((out, op(out, a)), (a, True))
        return out
    e = e.replace(lambda x: isinstance(x, sp.Max), lambda x: pair(list(x.args), sp.Ge))
    return e.replace(lambda x: isinstance(x, sp.Min), lambda x: pair(list(x.args), sp.Le))


class FullData:
    """Inlines the live sheet's columns (see the module docstring).

    ``an``: the sheet's :class:`reports._excel_formulas.Analysis`; ``n_rows``: data rows;
    ``data_sheet``: the data sheet's name. Parameters become placeholders ``{a<id>}`` that
    :meth:`formula` fills with each iteration's "after" cells.
    """

    def __init__(self, an, n_rows: int, data_sheet: str = "data"):
        self.cols = an.mapped.cols
        self.n = n_rows
        self.data_sheet = data_sheet
        self.memo: dict = {}
        self.sizes: dict = {}              # inlined expression -> nodes of its printed tree
        self.refs: dict = {}               # symbol -> reference text (data ranges, placeholders)
        self.params: dict = {}             # placeholder name -> element label
        for p, (_, labels) in an.labels.items():
            for flat, sym in enumerate(an.mapped.before[p].reshape(-1)):
                if isinstance(sym, sp.Symbol):
                    self.params[f"a{self.cols.of(sym).id}"] = labels[flat]

    def _leaf(self, c):
        if c.role == "input":
            sym = sp.Symbol(f"d{c.id}", real=True)
            L = letter_of(c.data[0])
            self.refs[sym] = f"{self.data_sheet}!${L}$2:${L}${self.n + 1}"
            return sym
        if c.role == "before":
            sym = sp.Symbol(f"a{c.id}", real=True)
            self.refs[sym] = "{a%d}" % c.id
            return sym
        raise NotLive(f"column {c.header!r} ({c.role}) is not computed from the data and the parameters")

    def inline(self, e: sp.Basic | str) -> sp.Basic:
        """``e`` with every column symbol replaced by its expression over the data rows."""
        e = sp.sympify(e)
        if e in self.memo:
            return self.memo[e]
        subs = {}
        for f in e.atoms(XSUM):
            subs[f] = ASUM(self.inline(self.cols.items[int(f.args[0])].symbol))
        for f in e.atoms(XSUMPRODUCT):
            a, b = (self.cols.items[int(i)].symbol for i in f.args)
            subs[f] = ASUM(self.inline(a) * self.inline(b))
        for sym in e.free_symbols:
            if sym == N:
                subs[sym] = sp.Integer(self.n)
                continue
            c = self.cols.of(sym)
            if c is None:
                continue
            subs[sym] = self._leaf(c) if c.expr is None or c.role in ("input", "before") else self.inline(c.expr)
        for f, v in subs.items():
            if isinstance(v, ASUM):
                self.sizes[v] = 1 + self.sizes.get(v.args[0], 1)
        size = self._size(e, subs)
        if size > MAX_NODES:
            raise NotLive(f"the formula over all rows would be too long ({size:,} terms; a deep chain of "
                          "operations repeats each column in every use)")
        out = e.xreplace(subs) if subs else e
        self.memo[e] = out
        self.sizes[out] = size
        return out

    def _size(self, e, subs) -> int:
        """Nodes of ``e`` printed with ``subs`` put in (each use of a column counts its whole tree)."""
        total = 0
        walk = sp.preorder_traversal(e)
        for node in walk:
            if node in subs:
                total += self.sizes.get(subs[node], 1)
                walk.skip()
            else:
                total += 1
        return total

    def scalar(self, e: sp.Basic) -> sp.Basic:
        """A per-iteration number: every data column must sit inside a sum over the rows."""
        out = self.inline(e)
        outside = out.replace(lambda x: isinstance(x, ASUM), lambda x: sp.Integer(0))
        if any(str(s).startswith("d") and s in self.refs for s in getattr(outside, "free_symbols", ())):
            raise NotLive("the value varies by row outside a sum over the rows")
        return out

    def formula(self, e: sp.Basic) -> str:
        """The Excel formula text of a scalar from :meth:`scalar`, with ``{a<id>}`` placeholders."""
        from tracer.math import printing

        def pr(x) -> str:
            x = _no_max(plain(x))
            extra = dict(self.refs)
            for f in x.atoms(ASUM):
                extra[f] = f"SUMPRODUCT({pr(f.args[0])[1:]})"
            return printing.excel(x, extra)
        from tracer.errors import TraceInputError
        try:
            return pr(e)
        except TraceInputError as exc:      # an operation Excel has no word for
            raise NotLive(str(exc)) from None

    def metric(self, kind: str, prediction: Sequence[sp.Basic], target: Sequence[sp.Basic]) -> sp.Expr:
        """RMSE, MSE or MAE of all data rows (Keras: each row's mean over the outputs, then the rows)."""
        preds = [self.inline(p) for p in prediction]
        targets = [self.inline(t) for t in target]
        terms = [(p - t) ** 2 if kind in ("mse", "rmse") else sp.Abs(p - t) for p, t in zip(preds, targets)]
        mean = ASUM(sp.Add(*terms)) / (self.n * len(terms))
        return sp.sqrt(mean) if kind == "rmse" else mean
