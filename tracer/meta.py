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

import json
import math
import re
from typing import Any, Callable, TypedDict

from .errors import TraceFileError

#: deepest nesting of lists and dicts accepted anywhere in meta
MAX_DEPTH = 64
#: most values (dict entries and list items, counted recursively) in one meta
MAX_NODES = 2_000_000
#: longest string anywhere in meta (notes, source lines)
MAX_TEXT = 1_000_000
#: longest name (parameter, column, metric, slot)
MAX_NAME = 4096
#: longest list anywhere in meta
MAX_ITEMS = 1_000_000
#: largest integer accepted as a size or count
MAX_COUNT = 2**62
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
    """The optimizer and its hyperparameters under the framework's own names."""
    name: str
    convention: str
    lr: float | None


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


class CaptureSpec(TypedDict, total=False):
    """How the run was recorded: ``full`` or ``summary``, one step in ``every``."""
    mode: str
    every: int
    steps_seen: int


class UpdateRuleSpec(TypedDict, total=False):
    """What the torch hook saw update a parameter without an optimizer."""
    kind: str
    lr: float | None
    text: str | None


class UpdateSource(TypedDict, total=False):
    """The source line that updated a parameter (torch)."""
    file: str
    line: int
    code: str


class TorchSpec(TypedDict, total=False):
    """What the torch hook learnt: loop mode, frozen parameters, update sources, data kind."""
    mode: str
    frozen: list[str]
    update_source: dict[str, UpdateSource]
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


# ------------------------------------------------------------ checking machinery
class _Bad(Exception):
    def __init__(self, path: str, expected: str, value: object):
        super().__init__(path)
        self.path, self.expected, self.value = path, expected, value


Check = Callable[[object, str], None]


def _show(value: object) -> str:
    try:
        text = json.dumps(value, ensure_ascii=True, default=repr)
    except (ValueError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _make(expected: str, test: Callable[[object], bool]) -> Check:
    def check(value: object, path: str) -> None:
        if not test(value):
            raise _Bad(path, expected, value)
    check.expected = expected  # type: ignore[attr-defined]
    return check


def text(max_len: int = MAX_TEXT, expected: str = "a string") -> Check:
    return _make(expected, lambda v: isinstance(v, str) and len(v) <= max_len)


NAME = text(MAX_NAME, f"a name (a string of at most {MAX_NAME} characters)")
BOOL = _make("true or false", lambda v: isinstance(v, bool))
NUMBER = _make("a number", _is_number)
COUNT = _make("a non-negative integer", lambda v: _is_int(v) and 0 <= v <= MAX_COUNT)
POSITIVE_COUNT = _make("a positive integer", lambda v: _is_int(v) and 1 <= v <= MAX_COUNT)
HYPER = _make("a number, true/false or null", lambda v: v is None or isinstance(v, (bool, int, float)))


def nullable(check: Check) -> Check:
    def inner(value: object, path: str) -> None:
        if value is not None:
            try:
                check(value, path)
            except _Bad as bad:
                if bad.path == path:
                    raise _Bad(path, bad.expected + " or null", value) from None
                raise
    inner.expected = check.expected + " or null"  # type: ignore[attr-defined]
    return inner


def list_of(item: Check, expected: str, unique: bool = False, objects: bool = False) -> Check:
    """A list of ``item``; a bad item is reported as the whole list (``expected a list of
    names, got [...]``), or, for lists of ``objects``, at the item's own path."""
    def inner(value: object, path: str) -> None:
        if not isinstance(value, list):
            raise _Bad(path, expected, value)
        for i, v in enumerate(value):
            try:
                item(v, f"{path}[{i}]")
            except _Bad as bad:
                if bad.path == f"{path}[{i}]" and not objects:
                    raise _Bad(path, expected, value) from None
                raise
        if unique and len(set(value)) != len(value):
            dup = next(v for i, v in enumerate(value) if v in value[:i])
            raise _Bad(path, expected + " without repeats", dup)
    inner.expected = expected  # type: ignore[attr-defined]
    return inner


def _key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) else f"{path}[{json.dumps(key)}]"


def record(fields: dict[str, Check], required: tuple = (), extra: Check | None = None,
           expected: str = "an object") -> Check:
    """A dict whose known keys follow ``fields``; other keys follow ``extra`` (opaque)."""
    def inner(value: object, path: str) -> None:
        if not isinstance(value, dict):
            raise _Bad(path, expected, value)
        for key in required:
            if key not in value:
                raise _Bad(_key_path(path, key), "a value (the key is required)", None)
        for key, v in value.items():
            check = fields.get(key, extra)
            if check is not None:
                check(v, _key_path(path, key))
    inner.expected = expected  # type: ignore[attr-defined]
    return inner


def mapping(value_check: Check, expected: str = "an object") -> Check:
    """A dict from names to values that follow ``value_check``."""
    def inner(value: object, path: str) -> None:
        if not isinstance(value, dict):
            raise _Bad(path, expected, value)
        for key, v in value.items():
            NAME(key, _key_path(path, key))
            value_check(v, _key_path(path, key))
    inner.expected = expected  # type: ignore[attr-defined]
    return inner


def _opaque(value: object, path: str) -> None:
    """Opaque JSON: finite numbers only (sizes are checked once for the whole document)."""
    stack = [(value, path)]
    while stack:
        v, p = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            raise _Bad(p, "a finite number", v)
        if isinstance(v, dict):
            stack.extend((x, _key_path(p, k)) for k, x in v.items())
        elif isinstance(v, list):
            stack.extend((x, f"{p}[{i}]") for i, x in enumerate(v))


OPAQUE: Check = _opaque


def _shape(value: object, path: str) -> None:
    expected = "a list of non-negative integers"
    if not isinstance(value, list) or not all(_is_int(v) and 0 <= v <= MAX_COUNT for v in value):
        raise _Bad(path, expected, value)
    if len(value) > MAX_DIMS or math.prod(value) > MAX_ELEMENTS:
        raise _Bad(path, f"at most {MAX_DIMS} dimensions and {MAX_ELEMENTS} elements", value)


def _factor(value: object, path: str) -> None:
    ok = value in ("n", "m") or (_is_number(value) and math.isfinite(value) and value > 0)
    if not ok:
        raise _Bad(path, '"n", "m" or a positive number', value)


_factor.expected = '"n", "m" or a positive number'  # type: ignore[attr-defined]
_shape.expected = "a list of non-negative integers"  # type: ignore[attr-defined]

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
CAPTURE = record({"mode": NAME, "every": POSITIVE_COUNT, "steps_seen": COUNT}, extra=OPAQUE)
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


def _limits(meta: object) -> None:
    """Depth, size, string length, JSON types and integer range for the whole document,
    iteratively (a deeply nested file must not exhaust Python's recursion)."""
    stack: list[tuple[object, str, int]] = [(meta, "meta", 0)]
    nodes = 0
    while stack:
        v, path, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise _Bad("meta", f"at most {MAX_NODES} values in all", "(more)")
        if isinstance(v, (dict, list)):
            if depth >= MAX_DEPTH:
                raise _Bad(path, f"at most {MAX_DEPTH} levels of nesting", v)
            if len(v) > MAX_ITEMS:
                raise _Bad(path, f"at most {MAX_ITEMS} items", f"{len(v)} items")
            if isinstance(v, dict):
                for k, x in v.items():
                    if not isinstance(k, str) or len(k) > MAX_NAME:
                        raise _Bad(path, f"keys that are strings of at most {MAX_NAME} characters", str(k))
                    stack.append((x, _key_path(path, k), depth + 1))
            else:
                stack.extend((x, f"{path}[{i}]", depth + 1) for i, x in enumerate(v))
        elif isinstance(v, str):
            if len(v) > MAX_TEXT:
                raise _Bad(path, f"a string of at most {MAX_TEXT} characters", f"{len(v)} characters")
        elif _is_int(v):
            if abs(v) > 2**63:
                raise _Bad(path, "an integer within 64 bits", v)
        elif not (v is None or isinstance(v, (bool, float))):
            raise _Bad(path, "a JSON value", type(v).__name__)


def _consistent(meta: dict) -> None:
    """Cross-field rules: unique parameter names; data columns unique and not ``sample``."""
    params = meta.get("params") or []
    seen: set = set()
    for i, p in enumerate(params):
        if p["name"] in seen:
            raise _Bad(f"meta.params[{i}].name", "a name not used by an earlier parameter", p["name"])
        seen.add(p["name"])
    data = meta.get("data") or {}
    cols = list(data.get("inputs") or []) + list(data.get("targets") or [])
    if "sample" in cols or len(set(cols)) != len(cols):
        raise _Bad("meta.data", "input and target names that differ from each other and from 'sample'", cols)


def validate_meta(meta: object, where: str = "meta.json") -> Meta:
    """Check ``meta`` against :class:`Meta` and the limits of this module; return it.

    Raises :class:`tracer.errors.TraceFileError` with one line naming ``where`` (the
    file) and the field: ``where: meta.params[2].shape: expected ..., got ...``.
    """
    try:
        _limits(meta)
        META(meta, "meta")
        _consistent(meta)  # type: ignore[arg-type]
    except _Bad as bad:
        raise TraceFileError(f"{where}: {bad.path}: expected {bad.expected}, got {_show(bad.value)}") from None
    return meta  # type: ignore[return-value]
