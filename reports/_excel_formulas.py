"""The live ``iterations`` sheet: every program value, gradient and update is a formula.

Why: the learner of scenario S2 rebuilt Keras in a spreadsheet and got a different
number. This sheet is that spreadsheet done right, and it is *live*: each iteration's
values refer to the data cells and to the previous iteration's parameter cells, so
editing the learning-rate cell (or rho, epsilon...) re-runs the whole training in Excel
or LibreOffice.

The sheet is the checker's step program mapped to cells (:mod:`reports._xl_program`):
the program the checker used (declared by the hook, converted from a 0.1.0 dense stack,
or completed with the loss it identified), its forward pass and its reverse pass, each
formula printed by :func:`tracer.math.printing.excel` from the registry's sympy
expressions, then the optimizer rule the checker used, one column per assignment of
:meth:`tracer.math.optimizers.OptimizerRule.equations`. The expected value of every
formula cell comes from the engine (:mod:`reports._xl_values`).

Limits (documented in docs/REPORTS.md): at most :data:`FORMULA_MAX_LAYERS` matrix
products, :data:`FORMULA_MAX_PARAM_ELEMENTS` parameter elements,
:data:`FORMULA_MAX_ROWS` batch rows over all iterations and
:data:`FORMULA_MAX_COLUMNS` columns; every step recorded, consecutive from 1.
Anything else raises :class:`NotShown` with the reason and a remedy, and the workbook
falls back to values, saying so in the sheet.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import sympy as sp

from ._excel_cells import EXCEL_MAX_ROWS
from ._xl_symbols import NotShown

if TYPE_CHECKING:
    from collections.abc import Collection

    from tracer.math.optimizer_rule import OptimizerRule
    from tracer.trace import Trace

__all__ = ["NotShown", "Check", "FormulaSheet", "Analysis", "analyse", "build", "framework_equations",
           "trace_slot", "FORMULA_MAX_LAYERS", "FORMULA_MAX_PARAM_ELEMENTS", "FORMULA_MAX_ROWS",
           "FORMULA_MAX_COLUMNS"]

#: the largest number of parameter elements (weights + biases) shown as formulas
FORMULA_MAX_PARAM_ELEMENTS = 64
#: the largest number of matrix products (dense layers) shown as formulas
FORMULA_MAX_LAYERS = 3
#: the largest number of batch rows (summed over all iterations) shown as formulas
FORMULA_MAX_ROWS = 250_000
#: the largest number of columns of the live sheet (program values, gradients, optimizer)
FORMULA_MAX_COLUMNS = 2_000

SHEET = "iterations"
DATA_SHEET = "data"


@dataclass
class Check:
    """One formula cell and the value the checker computed for it (for tests and audits)."""

    cell: str
    quantity: str
    step: int
    expected: float


@dataclass
class FormulaSheet:
    """Result of :func:`build`: the rows to write plus where things are."""

    rows: list = field(default_factory=list)            # lists of cell values / formulas
    header_row: int = 0
    checks: list = field(default_factory=list)          # [Check]
    lr_cell: str = ""                                   # the learning-rate cell ($B$5)
    setting_cells: dict = field(default_factory=dict)   # name -> cell
    loss_cells: list = field(default_factory=list)      # per iteration: the batch-loss cell
    after_cells: dict = field(default_factory=dict)     # element label -> [cell per iteration]
    labels: list = field(default_factory=list)          # element labels in order
    n_formulas: int = 0
    widths: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)           # what was identified rather than declared
    blocks: list = field(default_factory=list)          # per iteration: (first row, last row) of its block
    epoch_ends: set = field(default_factory=set)        # rows that end an epoch's last block
    letters: dict = field(default_factory=dict)         # INFO name / column role -> column letter
    analysis: object = None                             # the Analysis the sheet was laid out from


@dataclass
class Analysis:
    """What the sheet is built from: the checker's report, program and rule, the engine's
    values, the program mapped to columns, and the parameter element labels."""

    report: object
    program: object
    rule: object
    declared_optimizer: bool
    values: object
    mapped: object
    labels: dict


def _remedy(trace, what: str) -> str:
    numpy = trace.meta.get("framework") == "numpy"
    if what == "loss":
        return ("declare the loss with NumpyTracer(..., loss_spec={'name': 'squared_error', 'divide_by': "
                "[2, 'n']})" if numpy else "declare the loss in trace.meta['loss'] (docs/ARCHITECTURE.md)")
    return ("declare the learning rate with NumpyTracer(..., lr=0.02) (plain SGD)" if numpy else
            "declare the optimizer in trace.meta['optimizer'] (docs/ARCHITECTURE.md)")


def _gate(trace) -> None:
    """The recording conditions of a live sheet (cheap; before the checker runs)."""
    a = trace.arrays()
    if a.inputs is None:
        raise NotShown("the trace declares no training data (Recorder.set_data was not called)")
    if not a.params or trace.meta.get("capture", {}).get("mode") not in (None, "full"):
        raise NotShown("parameters were not captured in full (summary capture)")
    if trace.meta.get("capture", {}).get("every", 1) != 1:
        raise NotShown("only every k-th step was recorded; a live sheet needs every step")
    n = trace.n_steps
    if n == 0:
        raise NotShown("the trace has no steps")
    if not np.array_equal(a.param_step, np.arange(1, n + 1)) or \
            not np.array_equal(np.asarray(a.steps["step"]), np.arange(1, n + 1)):
        raise NotShown("recorded steps are not consecutive from 1")
    if a.sample_pred is None or not len(a.sample_row) or (a.sample_row < 0).any():
        raise NotShown("the batch rows or predictions of each step were not recorded")
    n_elem = sum(int(np.prod(p["shape"], dtype=np.int64)) for p in a.params.values())
    if n_elem > FORMULA_MAX_PARAM_ELEMENTS:
        raise NotShown(f"{n_elem} parameter elements; live formulas are written for at most "
                       f"{FORMULA_MAX_PARAM_ELEMENTS}")
    if len(a.sample_row) > FORMULA_MAX_ROWS:
        raise NotShown(f"{len(a.sample_row)} batch rows in all; live formulas are written for at most "
                       f"{FORMULA_MAX_ROWS}")
    if a.inputs.shape[0] + 1 > EXCEL_MAX_ROWS:
        raise NotShown("the data does not fit on one sheet")


def _program_and_rule(trace, report):
    program = report.context.get("program")
    if program is None:
        why = "; ".join(r for r in report.cannot_check if r.startswith(("model", "program", "loss"))) or \
            "no model description"
        raise NotShown(f"the checker has no step program for this run ({why})")
    if not program.has_loss:
        raise NotShown(f"the loss is not declared and the checker could not identify it "
                       f"({report.identified.get('loss', 'no loss values')}); remedy: {_remedy(trace, 'loss')}")
    rules = report.context.get("rules")
    if not rules:
        why = "; ".join(r for r in report.cannot_check if r.startswith("optimizer")) or "no update rule"
        raise NotShown(f"the update rule is not declared and the checker could not identify it ({why}); "
                       f"remedy: {_remedy(trace, 'optimizer')}")
    distinct = {id(r): r for r in rules.values()}
    if len(distinct) != 1:
        raise NotShown("the parameters follow different update rules (" +
                       ", ".join(f"{n}: {r.describe()}" for n, r in rules.items()) + "); the sheet writes one")
    layers = sum(1 for n in program.primitive_nodes if n.op == "matmul")
    if layers > FORMULA_MAX_LAYERS:
        raise NotShown(f"the model has {layers} layers (matrix products); live formulas are written for at "
                       f"most {FORMULA_MAX_LAYERS}")
    return program, next(iter(distinct.values()))


def element_labels(trace: Trace) -> dict:
    """Per parameter: its shape and one label per element (``W[0,1]``; the name when scalar)."""
    out = {}
    for name, p in trace.arrays().params.items():
        shape = tuple(p["shape"])
        size = int(np.prod(shape, dtype=np.int64))
        labels = [name if size == 1 else f"{name}[{','.join(str(i) for i in np.unravel_index(k, shape))}]"
                  for k in range(size)]
        out[name] = (shape, labels)
    return out


def analyse(trace: Trace) -> Analysis:
    """Everything the sheet needs (the checker runs once here), or NotShown with the reason."""
    from tracer.errors import SteptraceError

    from ._engine import run_check
    from ._xl_program import map_program
    from ._xl_values import EngineValues

    _gate(trace)
    report, err = run_check(trace)
    if report is None:
        raise NotShown(f"the checker could not run ({err})")
    program, rule = _program_and_rule(trace, report)
    a = trace.arrays()
    labels = element_labels(trace)
    names = {"inputs": trace.input_columns, "targets": trace.target_columns, "n_targets": a.targets.shape[1]}
    try:
        values = EngineValues(trace, program)
        mapped = map_program(program, names, a.inputs.shape[1], labels, values.shapes())
        values.add_gradients(list(program.params) + mapped.grad_names)
    except SteptraceError as exc:
        raise NotShown(f"the step program cannot be evaluated for the sheet ({exc})") from None
    if len(mapped.cols.items) > FORMULA_MAX_COLUMNS:
        raise NotShown(f"the program needs {len(mapped.cols.items)} columns; live formulas are written for at "
                       f"most {FORMULA_MAX_COLUMNS}")
    return Analysis(report, program, rule, trace.meta.get("optimizer") is not None, values, mapped, labels)


def framework_equations(rule: OptimizerRule) -> tuple[list[tuple[str, sp.Expr]], dict[str, float]]:
    """The rule's assignments as the framework evaluates them.

    Keras computes ``beta**t`` from ``float32(beta)`` (``OptimizerRule.float32_powers``; the
    checker does the same). Those powers get their own settings cell ``beta_1_f32`` so the
    sheet agrees with the run to float64 precision. Returns ``(equations, {name: value})``.
    """
    eqs = rule.equations()
    if not getattr(rule, "float32_powers", False):
        return eqs, {}
    hyper = set(rule.symbols)
    f32 = {}

    def swap(x):
        name = x.base.name + "_f32"
        f32[name] = float(np.float32(float(rule.symbols[x.base.name])))
        return sp.Pow(sp.Symbol(name, positive=True), x.exp)
    out = [(n, e.replace(lambda x: x.is_Pow and isinstance(x.base, sp.Symbol) and x.base.name in hyper, swap))
           for n, e in eqs]
    return out, f32


def trace_slot(rule_slot: str, recorded: Collection[str]) -> str | None:
    """The recorded state slot holding the rule's slot ``rule_slot`` (names differ between
    Keras versions: ``m``/``momentum``, ``v``/``velocity``), or None."""
    from tracer.math import optimizers
    aliases = optimizers.SLOT_ALIASES
    names = [rule_slot, *aliases.get(rule_slot, ())]
    names += [k for k, v in aliases.items() if rule_slot in v]
    return next((n for n in names if n in recorded), None)


def build(trace: Trace) -> FormulaSheet:
    """Lay the live sheet out (rows of values and formula strings); NotShown if it cannot."""
    from ._xl_layout import layout
    return layout(trace, analyse(trace))
