"""The check report: every check in one table, like pandera's failure cases.

The checker never stops at the first disagreement: it collects one row per check
(per step, quantity and parameter or sample) into ``table`` and keeps going, so the
report can say both *where the run first disagrees with the math* and *how far the
disagreement spreads*. Findings (a parameter never updated, a loss that could not
be identified...) are sentences attached beside the table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

COLUMNS = ["step", "quantity", "param", "sample", "index", "expected", "actual", "abs_err", "rel_err",
           "factor", "passed", "status"]


@dataclass
class Finding:
    """A sentence about the run that a user can act on (``failed`` ones make the check fail)."""

    kind: str
    message: str
    param: str | None = None
    step: int | None = None
    failed: bool = True
    fix: str | None = None
    evidence: dict = field(default_factory=dict)


@dataclass
class CheckReport:
    """Result of :func:`tracer.check`.

    ``table`` has one row per check: ``step``, ``quantity`` (prediction, loss, grad,
    update, a state slot, or a logged value), ``param``, ``sample``, ``index`` (the
    worst element), ``expected``, ``actual``, ``abs_err``, ``rel_err``, ``factor``
    (actual / expected), ``passed`` and ``status`` (``passed``, ``failed``,
    ``non-finite`` (a NaN or inf, which never passes) or ``cannot check``). ``identified`` holds what the checker found out by itself
    (loss, learning rate); ``findings`` the diagnoses.
    """

    table: pd.DataFrame
    findings: list = field(default_factory=list)
    identified: dict = field(default_factory=dict)
    cannot_check: list = field(default_factory=list)
    n_steps: int = 0
    context: dict = field(default_factory=dict)   # model, loss spec and update rules the check used

    @property
    def verdict(self) -> str:
        """``passed``, ``failed`` (a check or finding failed) or ``incomplete`` (nothing
        failed, but something could not be checked, or nothing was checked at all)."""
        if (len(self.table) and not self.table["passed"].all()) or any(f.failed for f in self.findings):
            return "failed"
        checked = int((self.table["status"] == "passed").sum()) if len(self.table) else 0
        if self.cannot_check or checked == 0:
            return "incomplete"
        return "passed"

    @property
    def ok(self) -> bool:
        """True when every check passed, nothing failed and nothing was left unchecked."""
        return self.verdict == "passed"

    @property
    def failures(self) -> pd.DataFrame:
        """The failed rows of ``table``."""
        return self.table[~self.table["passed"]]

    @property
    def first_failing_step(self) -> int | None:
        """The first step where the run disagrees with the math (None if none)."""
        steps = [int(self.failures["step"].min())] if len(self.failures) else []
        steps += [f.step for f in self.findings if f.failed and f.step is not None]
        return min(steps) if steps else None

    def first_failure(self) -> dict | None:
        """The first failed check (earliest step, then table order), as a dict."""
        fails = self.failures
        if not len(fails):
            return None
        first = fails.sort_values("step", kind="stable").iloc[0]
        return first.to_dict()

    def summary(self) -> str:
        """A readable summary: what was identified, what passed, where it first failed."""
        lines = []
        n_checks = len(self.table)
        n_fail = int((~self.table["passed"]).sum()) if n_checks else 0
        verdict = {"passed": "OK", "failed": "FAILED", "incomplete": "INCOMPLETE"}[self.verdict]
        rec = self.context.get("steps_recorded", self.n_steps)
        done = self.context.get("steps_checked")
        steps = _count(rec, "step") + ("" if done is None else f" recorded, {done} checked")
        lines.append(f"steptrace check: {verdict} - {steps}, {_count(n_checks, 'check')}, {n_fail} failed")
        for key, text in self.identified.items():
            lines.append(f"  identified {key}: {text}")
        for note in self.cannot_check:
            lines.append(f"  cannot check: {note}")
        if n_checks:
            counts = self.table.groupby("quantity", sort=False)["passed"].agg(["size", "sum"])
            for quantity, row in counts.iterrows():
                lines.append(f"  {quantity:<28} {int(row['sum'])}/{int(row['size'])} passed")
        for f in self.findings:
            tag = "FAIL" if f.failed else "note"
            where = f" (step {f.step})" if f.step is not None else ""
            fix = f" Fix: {f.fix}." if f.fix else ""
            lines.append(f"  [{tag}] {f.message}{where}{fix}")
        first = self.first_failure()
        if first is not None:
            lines.append("  first failure: " + describe_row(first))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:  # notebooks
        return "<pre>" + self.summary() + "</pre>"


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def describe_row(row: dict) -> str:
    """One sentence for one failed check: step, quantity, parameter, values, factor."""
    what = row["quantity"]
    if isinstance(row.get("param"), str) and row["param"]:
        what += f" of {row['param']}"
        if row.get("index") is not None and not pd.isna(row.get("index")):
            what += f"[{int(row['index'])}]"
    if row.get("sample") is not None and not pd.isna(row.get("sample")):
        what += f" for sample {int(row['sample'])}"
    text = f"step {int(row['step'])}, {what}: expected {row['expected']:.10g}, got {row['actual']:.10g}"
    factor = row.get("factor")
    if factor is not None and np.isfinite(factor):
        text += f" (actual = {factor:.6g} x expected)"
    return text


class TableBuilder:
    """Collects check rows as columns, then builds one DataFrame.

    Why the work happens in :meth:`build`: a check adds a few dozen blocks of rows (S4:
    one per chunk and quantity, and a block of logged values), and each block's errors,
    factors and statuses cost a dozen small NumPy calls; computed once over all the rows
    they cost those calls once, with the same numbers (every column is elementwise)."""

    def __init__(self):
        self._blocks: list[tuple] = []

    def add(self, *, step: ArrayLike, quantity: str, expected: ArrayLike, actual: ArrayLike,
            scale: ArrayLike | None = None, rtol: float, atol: float, param: str | None = None,
            sample: ArrayLike | None = None, index: ArrayLike | None = None) -> None:
        """Add a block of checks; arrays are broadcast against ``step``.

        ``scale`` is the magnitude errors are measured against (defaults to the
        larger of |expected| and |actual|); a check passes when
        ``|expected - actual| <= atol + rtol * scale``.
        """
        step = np.atleast_1d(np.asarray(step, dtype=np.int64))
        self._blocks.append((step, quantity, param, sample, index, expected, actual, scale, rtol, atol, False))

    def add_cannot_check(self, *, step: ArrayLike, quantity: str, param: str | None = None) -> None:
        """Record that ``quantity`` could not be checked (it neither passes nor fails silently)."""
        step = np.atleast_1d(np.asarray(step, dtype=np.int64))
        self._blocks.append((step, quantity, param, None, None, np.nan, np.nan, None, 0.0, 0.0, True))

    def add_rows(self, rows: list[dict], *, rtol: float, atol: float) -> None:
        """Add plain dict rows (step, quantity, expected, actual, param?, sample?)."""
        if not rows:
            return
        col = {k: [r.get(k) for r in rows] for k in ("quantity", "param", "sample", "scale")}
        self._blocks.append((
            np.array([r["step"] for r in rows], dtype=np.int64), _objects(col["quantity"]), _objects(col["param"]),
            _floats(col["sample"]), None, np.array([r["expected"] for r in rows], dtype=np.float64),
            np.array([r["actual"] for r in rows], dtype=np.float64), _floats(col["scale"], 0.0),
            np.array([r.get("rtol", rtol) for r in rows], dtype=np.float64),
            np.array([r.get("atol", atol) for r in rows], dtype=np.float64), False))

    def build(self) -> pd.DataFrame:
        """The table, sorted by step (stable, so quantities keep their order)."""
        if not self._blocks:
            return pd.DataFrame({c: [] for c in COLUMNS}).astype({"passed": bool})
        sizes = [b[0].size for b in self._blocks]
        n = sum(sizes)

        ends = np.cumsum(sizes).tolist()

        def column(i, dtype, none=np.nan):
            out = np.empty(n, dtype=dtype)
            for b, end, k in zip(self._blocks, ends, sizes):     # a slice assignment broadcasts
                out[end - k:end] = none if b[i] is None else b[i]
            return out
        step = np.concatenate([b[0] for b in self._blocks])
        expected, actual = column(5, np.float64), column(6, np.float64)
        scale = column(7, np.float64, 0.0)            # max(mag, 0) is mag: no scale given
        rtol, atol = column(8, np.float64), column(9, np.float64)
        cannot = np.repeat(np.array([b[10] for b in self._blocks], dtype=bool), sizes)
        abs_err = np.abs(expected - actual)
        mag = np.maximum(np.maximum(np.abs(expected), np.abs(actual)), scale)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel_err = np.where(mag > 0, abs_err / mag, 0.0)
            factor = np.where(expected != 0, actual / expected, np.nan)
        rel_err[cannot] = np.nan
        # NaN or inf never passes: a non-finite value is a finding, even when the math agrees
        finite = np.isfinite(expected) & np.isfinite(actual)
        passed = (finite & (abs_err <= atol + rtol * mag)) | cannot
        status = np.where(passed, "passed", np.where(finite, "failed", "non-finite")).astype(object)
        status[cannot] = "cannot check"
        cols = {"step": step, "quantity": column(1, object), "param": column(2, object, None),
                "sample": column(3, np.float64), "index": column(4, np.float64), "expected": expected,
                "actual": actual, "abs_err": abs_err, "rel_err": rel_err, "factor": factor, "passed": passed,
                "status": status}
        order = np.argsort(step, kind="stable")
        if n and (order[1:] < order[:-1]).any():
            cols = {c: v[order] for c, v in cols.items()}
        frame = pd.DataFrame({c: (_nullable_ints(v) if c in ("sample", "index") else v) for c, v in cols.items()},
                             copy=False)
        return frame


def _objects(values):
    """A list as an object array (strings and None as they are)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _floats(values, none=np.nan):
    """A list of numbers or None as float64 (None: ``none``); None when every entry is None."""
    if all(v is None for v in values):
        return None
    return np.array([none if v is None else v for v in values], dtype=np.float64)


def _nullable_ints(values: np.ndarray) -> pd.arrays.IntegerArray:
    """Float64 values with NaN as pandas' nullable Int64 (what ``astype("Int64")`` gives)."""
    missing = np.isnan(values)
    return pd.arrays.IntegerArray(np.where(missing, 1, values).astype(np.int64), missing)


def _int_col(values, n):
    if values is None:
        return np.full(n, np.nan)
    return np.broadcast_to(np.asarray(values, dtype=np.float64), (n,)).copy()
