"""``tracer.meta.validate_meta``: every documented field typed, one line naming the field.

Each planted defect must be refused with the exact field path; the metas every builder
and hook shape produce (the clean twins) must pass untouched.
"""
from __future__ import annotations

import copy
import math

import pytest

from tracer.errors import TraceFileError
from tracer.meta import MAX_DEPTH, MAX_TEXT, validate_meta

from _hostile import SCRIPT, clean_trace, hostile_trace
from _trace_factories import long_trace, mlp_trace, s0_trace, s2_trace

TORCH_META = {   # what the torch hook adds (docs/ARCHITECTURE.md), with an update rule
    "framework": "torch",
    "versions": {"torch": "2.13.0", "numpy": "2.4.6"},
    "model": {"kind": "dense_stack", "layers": [{"type": "dense", "weight": "0.weight", "bias": "0.bias",
                                                 "transpose": True, "activation": "linear", "units": 1}]},
    "loss": {"name": "mse", "divide_by": ["n", "m"], "reduction": "mean"},
    "optimizer": {"name": "adam", "convention": "torch", "lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-8,
                  "weight_decay": 0, "amsgrad": False},
    "metrics": [], "params": [{"name": "0.weight", "shape": [1, 3]}, {"name": "0.bias", "shape": [1]}],
    "capture": {"mode": "full", "every": 1, "steps_seen": 7},
    "data": {"n_rows": 10, "inputs": ["x0", "x1", "x2"], "targets": ["y"]},
    "torch": {"mode": "loop", "frozen": [], "data": "dataset",
              "update_source": {"0.weight": {"file": "t.py", "line": 3, "code": "opt.step()", "divides_by_batch": None}}},
    "update_rule": {"0.bias": {"kind": "sgd", "lr": 0.1, "text": "b -= 0.1 * grad"}},
    "keras_fit": {"anything": [1, {"x": None}]},
    "program": {"ops": [{"op": "matmul", "in": ["x", "0.weight"], "attrs": {"transpose": 1}}]},
    "notes": ["a note"],
}


@pytest.mark.parametrize("build", [s0_trace, s2_trace, mlp_trace, lambda: long_trace(30), clean_trace,
                                   lambda: hostile_trace(SCRIPT)],
                         ids=["s0", "s2", "mlp", "long", "clean", "hostile-names"])
def test_metas_the_builders_write_are_valid(build):
    meta = build().meta
    assert validate_meta(copy.deepcopy(meta)) == meta


def test_torch_and_keras_shaped_meta_is_valid_with_non_finite_hyperparameters():
    meta = copy.deepcopy(TORCH_META)
    meta["optimizer"]["lr"] = math.inf           # the run used it: shown, not refused
    meta["optimizer"]["eps"] = math.nan
    assert validate_meta(meta) is meta


BAD = [   # (change to TORCH_META, the field named, words of the expectation)
    (("params", 1, "shape"), "abc", 'meta.params[1].shape: expected a list of non-negative integers, got "abc"'),
    (("params", 0, "shape"), [1, -3], "meta.params[0].shape: expected a list of non-negative integers"),
    (("params", 0, "shape"), [True], "meta.params[0].shape: expected a list of non-negative integers"),
    (("params", 0, "shape"), [2**40, 2**40], "meta.params[0].shape: expected at most 32 dimensions"),
    (("params", 0, "name"), 5, "meta.params[0].name: expected a name"),
    (("params", 1, "name"), "0.weight", "meta.params[1].name: expected a name not used by an earlier parameter"),
    (("params",), {"w": [1]}, "meta.params: expected a list of parameter descriptions"),
    (("data", "n_rows"), -1, "meta.data.n_rows: expected a non-negative integer, got -1"),
    (("data", "n_rows"), math.inf, "meta.data.n_rows: expected a non-negative integer, got Infinity"),
    (("data", "inputs"), "x", 'meta.data.inputs: expected a list of names, got "x"'),
    (("data", "targets"), ["x0"], "meta.data: expected input and target names that differ"),
    (("capture", "every"), 0, "meta.capture.every: expected a positive integer, got 0"),
    (("capture",), None, "meta.capture: expected an object, got null"),
    # found by bench/fuzz_count.py --seed 2: a list here crashed the checker's non-finite diagnosis
    (("capture", "given"), {"grads": ["w"]}, "meta.capture.given.grads: expected an object"),
    (("capture", "given"), {"loss": -1}, "meta.capture.given.loss: expected a non-negative integer, got -1"),
    (("loss", "divide_by"), ["x"], 'meta.loss.divide_by: expected a list of "n", "m" or positive numbers'),
    (("loss", "divide_by"), [0], 'meta.loss.divide_by: expected a list of "n", "m" or positive numbers'),
    (("loss", "delta"), "big", 'meta.loss.delta: expected a number or null, got "big"'),
    (("loss",), "mse", 'meta.loss: expected an object or null, got "mse"'),
    (("optimizer", "lr"), "fast", 'meta.optimizer.lr: expected a number, true/false or null, got "fast"'),
    (("optimizer", "betas"), "x", 'meta.optimizer.betas: expected a list of numbers, got "x"'),
    (("optimizer", "name"), None, "meta.optimizer.name: expected a name"),
    (("metrics",), {"a": 1}, "meta.metrics: expected a list of metric descriptions or null"),
    (("metrics",), [3], "meta.metrics[0]: expected an object, got 3"),
    (("notes",), "x", 'meta.notes: expected a list of strings, got "x"'),
    (("model", "layers", 0, "units"), -1, "meta.model.layers[0].units: expected a non-negative integer or null"),
    (("model", "layers"), {}, "meta.model.layers: expected a list of layers, got {}"),
    (("update_rule",), [], "meta.update_rule: expected an object or null, got []"),
    (("torch", "update_source", "0.weight"), "line", 'meta.torch.update_source["0.weight"]: expected an object'),
    (("torch", "frozen"), "w", 'meta.torch.frozen: expected a list of names, got "w"'),
    (("versions",), [], "meta.versions: expected an object, got []"),
    (("program", "ops", 0, "attrs", "eps"), math.nan, "meta.program.ops[0].attrs.eps: expected a finite number, got NaN"),
    (("unknown key",), 10**30, 'meta["unknown key"]: expected an integer within 64 bits'),
    (("notes",), ["x" * (MAX_TEXT + 1)], "meta.notes[0]: expected a string of at most"),
]


def _set(meta, path, value):
    node = meta
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value


@pytest.mark.parametrize("path, value, message", BAD, ids=[".".join(map(str, b[0])) for b in BAD])
def test_each_planted_defect_is_named_in_one_line(path, value, message):
    meta = copy.deepcopy(TORCH_META)
    _set(meta, path, value)
    with pytest.raises(TraceFileError) as err:
        validate_meta(meta, where="run.trace/meta.json")
    text = str(err.value)
    assert text.startswith("run.trace/meta.json: " + message), text
    assert "\n" not in text and len(text) < 400


def test_deep_nesting_is_refused_without_recursion():
    deep: object = 1
    for _ in range(100_000):
        deep = [deep]
    meta = {"framework": "numpy", "program": deep}
    with pytest.raises(TraceFileError, match=f"at most {MAX_DEPTH} levels of nesting"):
        validate_meta(meta)
    ok: object = 1
    for _ in range(MAX_DEPTH - 2):
        ok = [ok]
    validate_meta({"framework": "numpy", "program": ok})


def test_non_json_values_and_non_dict_meta_are_refused():
    with pytest.raises(TraceFileError, match=r"meta: expected an object \(the meta dict\), got \[\]"):
        validate_meta([])
    with pytest.raises(TraceFileError, match="meta.extra: expected a JSON value"):
        validate_meta({"extra": object()})
