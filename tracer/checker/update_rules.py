"""Which update rule each parameter follows; plain SGD's rate read quickly and proven.

Why: with no optimizer declared (a hand-written loop) the learning rate is read from the
updates (:func:`tracer.checker.identify.identify_sgd`). Its full sample reads 32 whole steps
of every parameter (S4's W1: 49 MB, 3 to 5 ms of a check), while the update check that
follows reads every element anyway, reproducing plain SGD bit for bit
(:mod:`tracer.checker.reproduce`). So where the gradients are recorded, the rate is first
read from a quick sample of a few KB (``identify_sgd(quick=True)``), the update check runs
with it, and then:

- every row of every identified parameter was reproduced (each element equal to
  ``before + g * (-lr)`` in the run's precision, or compared one by one within the quick
  tolerance): the rate is proven, as the check proves any rate: every update of the run is
  plain SGD at that rate within tolerance, so every one of those rows passes whatever the
  sample that suggested the rate; the check stands, with no second read of the run;
- else (a row not reproduced: a planted fault, another rule, a rate the quick sample misread)
  the full sample's identification is made, exactly as without the quick one; the check
  made with the quick rate stands only if the full sample gives the same rate (the same
  float: then it is the check the full sample gives), else it is made again with that rate.

The quick pass writes its table rows and notes aside (:class:`Deferred`, :class:`Aside`) and
hands them over only when they stand, so a check made again leaves no trace of the first.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from ..errors import SteptraceError
from ..math.optimizers import get_optimizer
from . import identify

if TYPE_CHECKING:
    from ..arrays import TraceArrays
    from .report import CheckReport, TableBuilder

__all__ = ["RowsOfGrad", "rules_checked", "note_reproduced", "proving"]


class RowsOfGrad:
    """A gradient as identification reads it: recorded, else recomputed, in float64 -
    converted only on the rows asked for (it samples a few steps), not the whole trace."""

    def __init__(self, recorded: np.ndarray, expected: np.ndarray | None, mags: np.ndarray | None = None) -> None:
        self.recorded, self.expected, self.mags = recorded, expected, mags

    def mag_rows(self, rows: np.ndarray) -> np.ndarray | None:
        """The rounding magnitudes of the recomputed gradient at ``rows`` (0 where it was
        recorded), or None when none were computed."""
        return None if self.mags is None else self.mags[rows]

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        g = self.recorded[rows].astype(np.float64)
        if self.expected is not None:
            g = np.where(np.isnan(g), self.expected[rows], g)
        return g


class _Witness:
    """Whether every row of the parameters ``names`` (checked under :func:`proving`) was
    reproduced."""

    def __init__(self, names) -> None:
        self.names, self.reproduced = set(names), True


#: the witness of the parameter being checked with a quick rate (None: nothing to prove)
_WITNESS: ContextVar[_Witness | None] = ContextVar("steptrace_update_witness", default=None)


def note_reproduced(every_row: bool) -> None:
    """Called by the update check for each block of rows: whether the reproduction settled
    every one of them (a rule it does not apply to settles none)."""
    w = _WITNESS.get()
    if w is not None and not every_row:
        w.reproduced = False


@contextmanager
def proving(witness: _Witness | None, name: str) -> Iterator[None]:
    """The update check of parameter ``name`` inside: its rows go to ``witness`` (when the
    witness asks for that parameter)."""
    token = _WITNESS.set(witness if witness is not None and name in witness.names else None)
    try:
        yield
    finally:
        _WITNESS.reset(token)


class Deferred:
    """A :class:`~tracer.checker.report.TableBuilder` stand-in keeping the ``add`` calls of a
    pass whose rows may not stand, to be replayed in order by :meth:`flush`."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def add(self, **kw: object) -> None:
        """Keep one block of checks (see ``TableBuilder.add``)."""
        self.calls.append(kw)

    def flush(self, builder: TableBuilder) -> None:
        """Add the kept blocks to ``builder``, in order."""
        for kw in self.calls:
            builder.add(**kw)


class Aside:
    """A report stand-in for the update check's notes (``context`` entries of parameters,
    ``cannot_check`` lines), handed to the real report by :meth:`merge`."""

    def __init__(self) -> None:
        self.context: dict = {}
        self.cannot_check: list[str] = []

    def merge(self, report: CheckReport) -> None:
        """Add the notes to ``report`` as the update check would have written them."""
        for key, per_param in self.context.items():
            report.context.setdefault(key, {}).update(per_param)
        report.cannot_check.extend(self.cannot_check)


#: ``run(rules, builder, report, witness)``: the update check of every parameter
Run = Callable[[dict, object, object, "_Witness | None"], None]


def rules_checked(arrays: TraceArrays, report: CheckReport, builder: TableBuilder, opt_spec: dict | None,
                  grads: dict[str, RowsOfGrad], frozen: set[str], eps: float, run: Run) -> dict | None:
    """The rule of every parameter, its updates checked by ``run(rules, builder, report,
    witness)`` (see the module's docstring); None (and a note) when there is none."""
    quick = _quick_rates(arrays, opt_spec, grads, eps)
    if quick is not None:
        rules, deferred, aside, witness = _rules_of(arrays, quick[0], frozen), Deferred(), Aside(), _Witness(quick[0])
        run(rules, deferred, aside, witness)
        full = quick if witness.reproduced else _identified(arrays, grads, eps)
        if full[0] == quick[0]:         # proven, or the rate the full sample gives
            report.identified["optimizer"] = full[1]
            report.context["rules"] = rules
            deferred.flush(builder)
            aside.merge(report)
            return rules
    else:
        full = _identified(arrays, grads, eps) if opt_spec is None else None
    rules = _declared_rules(arrays, report, opt_spec, frozen) if opt_spec is not None else None
    if opt_spec is None:
        if full[0] is None:
            report.cannot_check.append(f"optimizer: {full[1]}")
            return None
        report.identified["optimizer"] = full[1]
        rules = _rules_of(arrays, full[0], frozen)
    if rules is None:
        return None
    report.context["rules"] = rules
    run(rules, builder, report, None)
    return rules


def _quick_rates(arrays, opt_spec, grads, eps):
    """``(rates, text)`` of the quick sample, or None where it does not apply: a declared
    optimizer, a recomputed gradient (never reproduced bit for bit), rates that differ."""
    if opt_spec is not None or not grads or any(g.expected is not None for g in grads.values()):
        return None
    rates, text = identify.identify_sgd(arrays, grads, eps, quick=True)
    return None if rates is None else (rates, text)


def _identified(arrays, grads, eps):
    return identify.identify_sgd(arrays, grads, eps)


def _rules_of(arrays, rates: dict[str, float], frozen: set[str]) -> dict:
    """Plain SGD at the identified rates; frozen and unidentified parameters at rate 0."""
    rules = {name: get_optimizer({"name": "sgd", "convention": "plain", "lr": lr}) for name, lr in rates.items()}
    return _rest_at_zero(arrays, rules, frozen)


def _declared_rules(arrays, report, opt_spec, frozen):
    try:
        rule = get_optimizer(opt_spec)
    except SteptraceError as exc:
        report.cannot_check.append(f"optimizer: {exc}")
        return None
    return _rest_at_zero(arrays, {name: rule for name in arrays.params}, frozen)


def _rest_at_zero(arrays, rules, frozen):
    for name in frozen:
        rules[name] = get_optimizer({"name": "sgd", "convention": "plain", "lr": 0.0})
    for name in arrays.params:
        rules.setdefault(name, get_optimizer({"name": "sgd", "convention": "plain", "lr": 0.0}))
    return rules
