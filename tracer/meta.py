"""The neutral ``meta`` dict: one typed definition and the one validator ``Trace.load`` uses.

Why: ``meta.json`` comes from whoever hands over a trace. The checker, the explanations
and the reports dereference its fields (``meta["loss"]["divide_by"]``,
``meta["params"][i]["shape"]``, ...), so a wrong type there would surface as a Python
traceback deep inside them. :func:`validate_meta` checks every field those readers use,
once, when the file is read, and names the file and the field in one line:

    run.trace/meta.json: meta.params[2].shape: expected a list of non-negative integers, got "abc"

What is checked: the types of every documented key (:class:`Meta` and the TypedDicts
below, matching ``docs/ARCHITECTURE.md``), ranges (sizes and counts are non-negative
integers, ``capture.every`` at least 1, ``loss.divide_by`` positive), unique parameter
and column names, and for the whole document a nesting depth of at most
:data:`MAX_DEPTH`, at most :data:`MAX_NODES` values, strings of at most
:data:`MAX_TEXT` characters (names :data:`MAX_NAME`) and lists of at most
:data:`MAX_ITEMS` items. Hyperparameters may be any number, NaN and infinities
included (the run used them; the reports show them). Keys this module does not know,
and ``meta["program"]`` (the step program, which its own module interprets), are
opaque JSON: only the depth and size limits apply, and their numbers must be finite.
"""
from __future__ import annotations

import math
from typing import Any, TypedDict

from .errors import TraceFileError
from .jsoncheck import (BOOL, COUNT, MAX_COUNT, MAX_DEPTH, MAX_ITEMS, MAX_NAME, MAX_NODES, MAX_TEXT, NAME,
                        NUMBER, OPAQUE, POSITIVE_COUNT, Invalid, check_limits, is_int, is_number, list_of,
                        make, mapping, nullable, record, show, text, Check)

__all__ = ["Meta", "validate_meta", "MAX_DEPTH", "MAX_ITEMS", "MAX_NAME", "MAX_NODES", "MAX_TEXT"]

#: most dimensions of a parameter, and most elements of one
MAX_DIMS, MAX_ELEMENTS = 32, 2**48


# ------------------------------------------------------------ the typed definition
class LayerSpec(TypedDict, total=False):
    """One dense layer: ``z = a @ W + b`` (``transpose``: ``a @ W.T + b``), then ``activation``."""
    type: str
    weight: str | None
    bias: str | None
    transpose: bool
    activation: str
    units: int
    name: str            # Keras layer name
    use_bias: bool       # Keras


class ModelSpec(TypedDict, total=False):
    """``{"kind": "dense_stack", "layers": [...]}`` or ``{"kind": "unsupported", "reason": ...}``."""
    kind: str
    layers: list[LayerSpec]
    reason: str


class LossSpec(TypedDict, total=False):
    """The loss: the total over batch rows and outputs of the elementwise loss, divided by
    ``divide_by`` (numbers, ``"n"`` batch rows, ``"m"`` outputs per row)."""
    name: str
    divide_by: list[float | str]
    delta: float
    reduction: str | None
    convention: str | None
    label: str
    keras_name: str
    epsilon: float
    label_smoothing: float


class OptimizerSpec(TypedDict, total=False):
    """The optimizer and its hyperparameters under the framework's own names;
    ``unmodelled`` maps a parameter to why its update is not the rule's (a constraint,
    an exclusion from weight decay): the checker says "cannot check" for it."""
    name: str
    convention: str
    lr: float | None
    unmodelled: dict[str, str]


class MetricSpec(TypedDict, total=False):
    """A logged metric and the kind the checker recomputes (``rmse``, ``mae``, ...)."""
    name: str
    kind: str | None
    keras_name: str
    threshold: float


class DataSpec(TypedDict, total=False):
    """The declared training rows: their count and the column names of ``data``."""
    n_rows: int
    inputs: list[str]
    targets: list[str]


class ParamSpec(TypedDict):
    """A recorded parameter: its name and shape."""
    name: str
    shape: list[int]


class GivenSpec(TypedDict, total=False):
    """How many recorded steps the hook handed each quantity to (the checker's diagnoses
    read it to tell "not given" from "given and non-finite")."""
    loss: int
    y_pred: int
    grads: dict[str, int]


class CaptureSpec(TypedDict, total=False):
    """How the run was recorded: ``full`` or ``summary``, one step in ``every``."""
    mode: str
    every: int
    steps_seen: int
    given: GivenSpec


class UpdateRuleSpec(TypedDict, total=False):
    """What the torch hook saw update a parameter without an optimizer."""
    kind: str
    lr: float | None
    text: str | None


class UpdateSource(TypedDict, total=False):
    """The source line that updated a parameter (torch); ``after_step`` for a write seen
    between two steps (``between_steps``: after step ``after_step``, before the next)."""
    file: str
    line: int
    code: str
    after_step: int


class TorchSpec(TypedDict, total=False):
    """What the torch hook learnt: loop mode, frozen parameters, update sources, data kind."""
    mode: str
    frozen: list[str]
    update_source: dict[str, UpdateSource]
    between_steps: dict[str, UpdateSource]
    data: str | None


class Meta(TypedDict, total=False):
    """The framework-neutral description of a run (``docs/ARCHITECTURE.md``)."""
    framework: str
    versions: dict[str, str | None]
    model: ModelSpec | None
    loss: LossSpec | None
    optimizer: OptimizerSpec | None
    metrics: list[MetricSpec] | None
    data: DataSpec
    params: list[ParamSpec]
    capture: CaptureSpec
    notes: list[str]
    update_rule: dict[str, UpdateRuleSpec] | None
    torch: TorchSpec | None
    keras_fit: dict[str, Any]
    program: Any          # the step program: opaque JSON here


def _shape(value: object, path: str) -> None:
    expected = "a list of non-negative integers"
    if not isinstance(value, list) or not all(is_int(v) and 0 <= v <= MAX_COUNT for v in value):
        raise Invalid(path, expected, value)
    if len(value) > MAX_DIMS or math.prod(value) > MAX_ELEMENTS:
        raise Invalid(path, f"at most {MAX_DIMS} dimensions and {MAX_ELEMENTS} elements", value)


def _factor(value: object, path: str) -> None:
    ok = value in ("n", "m") or (is_number(value) and math.isfinite(value) and value > 0)
    if not ok:
        raise Invalid(path, '"n", "m" or a positive number', value)


_factor.expected = '"n", "m" or a positive number'  # type: ignore[attr-defined]
_shape.expected = "a list of non-negative integers"  # type: ignore[attr-defined]

HYPER = make("a number, true/false or null", lambda v: v is None or isinstance(v, (bool, int, float)))
NAMES = list_of(NAME, "a list of names")
UNIQUE_NAMES = list_of(NAME, "a list of names", unique=True)

LAYER = record({"type": NAME, "weight": nullable(NAME), "bias": nullable(NAME),
                "transpose": nullable(BOOL), "activation": nullable(NAME), "units": nullable(COUNT),
                "name": nullable(NAME), "use_bias": nullable(BOOL)}, extra=OPAQUE)
MODEL = nullable(record({"kind": NAME, "layers": list_of(LAYER, "a list of layers", objects=True),
                         "reason": text()}, required=("kind",), extra=OPAQUE))
LOSS = nullable(record({"name": NAME, "divide_by": nullable(list_of(_factor, 'a list of "n", "m" or positive numbers')),
                        "delta": nullable(NUMBER), "reduction": nullable(NAME), "convention": nullable(NAME),
                        "label": text(), "keras_name": NAME, "epsilon": nullable(NUMBER),
                        "label_smoothing": nullable(NUMBER)}, required=("name",), extra=OPAQUE))
#: hyperparameters the optimizer formulas read: numbers (any, NaN included), booleans or null
_HYPER_KEYS = ("lr", "learning_rate", "momentum", "nesterov", "rho", "epsilon", "centered", "beta_1",
               "beta_2", "amsgrad", "weight_decay", "initial_accumulator_value", "dampening", "maximize",
               "alpha", "eps", "lr_decay", "gradient_accumulation_steps", "clipnorm", "clipvalue",
               "global_clipnorm", "use_ema", "ema_momentum")
OPTIMIZER = nullable(record({"name": NAME, "convention": nullable(NAME), "keras_name": NAME,
                             "betas": list_of(NUMBER, "a list of numbers"),
                             **{k: HYPER for k in _HYPER_KEYS}}, required=("name",), extra=OPAQUE))
METRIC = record({"name": nullable(NAME), "kind": nullable(NAME), "keras_name": NAME,
                 "threshold": nullable(NUMBER)}, extra=OPAQUE)
DATA = record({"n_rows": COUNT, "inputs": UNIQUE_NAMES, "targets": UNIQUE_NAMES}, extra=OPAQUE)
PARAM = record({"name": NAME, "shape": _shape}, required=("name", "shape"), extra=OPAQUE)
GIVEN = record({"loss": COUNT, "y_pred": COUNT, "grads": mapping(COUNT)}, extra=OPAQUE)
CAPTURE = record({"mode": NAME, "every": POSITIVE_COUNT, "steps_seen": COUNT, "given": GIVEN}, extra=OPAQUE)
UPDATE_RULE = nullable(mapping(record({"kind": nullable(NAME), "lr": nullable(NUMBER), "text": nullable(text())},
                                      extra=OPAQUE)))
TORCH = nullable(record({"mode": nullable(NAME), "frozen": NAMES, "data": nullable(NAME),
                         "update_source": mapping(record({"file": text(), "line": nullable(COUNT),
                                                          "code": text()}, extra=OPAQUE))}, extra=OPAQUE))

#: the schema of every documented key of meta; other keys are opaque JSON
META_FIELDS: dict[str, Check] = {
    "framework": NAME,
    "versions": mapping(nullable(text(MAX_NAME))),
    "model": MODEL, "loss": LOSS, "optimizer": OPTIMIZER,
    "metrics": nullable(list_of(METRIC, "a list of metric descriptions", objects=True)),
    "data": DATA,
    "params": list_of(PARAM, "a list of parameter descriptions", objects=True),
    "capture": CAPTURE,
    "notes": list_of(text(), "a list of strings"),
    "update_rule": UPDATE_RULE, "torch": TORCH,
    "program": OPAQUE,
}
META = record(META_FIELDS, extra=OPAQUE, expected="an object (the meta dict)")


def _consistent(meta: dict) -> None:
    """Cross-field rules: unique parameter names; data columns unique and not ``sample``."""
    params = meta.get("params") or []
    seen: set = set()
    for i, p in enumerate(params):
        if p["name"] in seen:
            raise Invalid(f"meta.params[{i}].name", "a name not used by an earlier parameter", p["name"])
        seen.add(p["name"])
    data = meta.get("data") or {}
    cols = list(data.get("inputs") or []) + list(data.get("targets") or [])
    if "sample" in cols or len(set(cols)) != len(cols):
        raise Invalid("meta.data", "input and target names that differ from each other and from 'sample'", cols)


def validate_meta(meta: object, where: str = "meta.json") -> Meta:
    """Check ``meta`` against :class:`Meta` and the limits of this module; return it.

    Raises :class:`tracer.errors.TraceFileError` with one line naming ``where`` (the
    file) and the field: ``where: meta.params[2].shape: expected ..., got ...``.
    """
    try:
        check_limits(meta, "meta")
        META(meta, "meta")
        _consistent(meta)  # type: ignore[arg-type]
    except Invalid as bad:
        raise TraceFileError(f"{where}: {bad.path}: expected {bad.expected}, got {show(bad.value)}") from None
    return meta  # type: ignore[return-value]
