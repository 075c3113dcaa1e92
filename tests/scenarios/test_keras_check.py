"""Keras traces through the checker: S0's Keras variant, an Adam MLP, every supported
loss/optimizer/activation, and planted faults that must be caught.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest

import tracer
from hooks.keras import TraceCallback
from tracer.checker.logged import check_logged
from tracer.app.examples import s0_data

pytestmark = pytest.mark.keras


def failed(report):
    t = report.table
    return t[~t["passed"]]


@pytest.fixture(scope="module")
def s0k():
    """S0k: Dense(1), uniform(-0.1, 0.1) init, SGD(0.02), mse, batch 32, shuffle (3 epochs here).

    By epoch 3 the float32 gradients are sums of terms that nearly cancel: the checker's
    tolerance must scale with the terms, not the result.
    """
    x, targets, _, _ = s0_data()
    keras.utils.set_random_seed(0)
    init = keras.initializers.RandomUniform(-0.1, 0.1)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, kernel_initializer=init,
                                                                   bias_initializer=init)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.02), loss="mse")
    cb = TraceCallback()
    model.fit(x, targets, epochs=3, callbacks=[cb], verbose=0)
    return cb.trace, model, x, targets


def test_s0k_records_and_checks(s0k):
    trace, model, x, targets = s0k
    steps = trace.steps
    assert len(steps) == 3 * 32 and list(steps["batch_size"][:32]) == [32] * 31 + [8]
    assert trace.meta["optimizer"]["name"] == "sgd" and trace.meta["optimizer"]["momentum"] == 0.0
    rows = trace.samples.loc[trace.samples["step"] <= 32, "sample"]
    assert sorted(rows) == list(range(1000))
    kernel = trace.param_names[0]
    assert abs(trace.param_values(kernel, "after")[-1].item() - 13.1) < 0.5      # heading to w = 13.1
    report = tracer.check(trace)
    assert report.ok, report


def test_s0k_planted_learning_rate_fault_is_caught(s0k):
    """An update made with twice the learning rate the optimizer reports."""
    trace = s0k[0]
    import copy
    bad = tracer.Trace(arrays=copy.deepcopy(trace.arrays()), meta=copy.deepcopy(trace.meta))
    p = bad.arrays().params[trace.param_names[0]]
    p["after"][5] = p["before"][5] + 2 * (p["after"][5] - p["before"][5])
    report = tracer.check(bad)
    assert not report.ok
    bad_rows = failed(report)
    assert 6 in set(bad_rows["step"]) and "update" in set(bad_rows["quantity"])


class SGD(keras.optimizers.SGD):
    """A faulty SGD that reports lr but applies 1.5 * lr (named like Keras's to fool the meta)."""

    def update_step(self, gradient, variable, learning_rate):
        return super().update_step(gradient, variable, learning_rate * 1.5)


def test_planted_optimizer_fault_in_keras_is_caught():
    x, targets, _, _ = s0_data(100)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=SGD(learning_rate=0.02), loss="mse")
    cb = TraceCallback()
    model.fit(x, targets, epochs=1, batch_size=50, callbacks=[cb], verbose=0)
    report = tracer.check(cb.trace)
    assert not report.ok
    assert "update" in set(failed(report)["quantity"])


def test_planted_logged_value_fault_is_caught(s0k):
    import copy
    trace = s0k[0]
    bad = tracer.Trace(arrays=copy.deepcopy(trace.arrays()), meta=copy.deepcopy(trace.meta))
    bad.arrays().steps["logged_loss"][3] *= 1.01
    rows = check_logged(bad)
    off = [r for r in rows if abs(r["expected"] - r["actual"]) > 1e-4 * abs(r["expected"])]
    assert [(r["step"], r["quantity"]) for r in off] == [(4, "logged_loss")]


@pytest.fixture(scope="module")
def adam_mlp():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(64, 5))
    y = np.tanh(x @ rng.normal(size=(5, 1))) + 0.05 * rng.normal(size=(64, 1))
    keras.utils.set_random_seed(4)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse",
                  metrics=[keras.metrics.RootMeanSquaredError(), "mae"])
    cb = TraceCallback()
    model.fit(x, y, epochs=3, batch_size=16, callbacks=[cb], verbose=0)
    return cb.trace


def test_adam_mlp_all_checks_pass(adam_mlp):
    trace = adam_mlp
    assert len(trace.steps) == 12
    names = trace.param_names
    assert trace.state_slots(names[0]) == ["m", "v"]
    # Keras's Adam, by hand, for the first step of the first kernel
    g = trace.param_values(names[0], "grad")[0].astype(np.float64)
    m, v = 0.1 * g, 0.001 * g * g
    alpha = 0.01 * np.sqrt(1 - 0.999) / (1 - 0.9)
    expected = trace.param_values(names[0], "before")[0] - alpha * m / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(trace.param_values(names[0], "after")[0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(trace.param_values(names[0], "m")[0], m, rtol=1e-5, atol=1e-9)
    report = tracer.check(trace)
    assert report.ok, report
    quantities = set(report.table["quantity"])
    assert {"logged_loss", "logged_root_mean_squared_error", "logged_mae"} <= quantities


def _classification(kind, n=24, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    score = x @ rng.normal(size=(4, 3))
    labels = score.argmax(axis=1)
    if kind == "binary":
        return x, (score[:, :1] > 0).astype(np.float64)
    if kind == "onehot":
        return x, np.eye(3)[labels]
    return x, labels


CASES = {
    # name: (hidden activation, output units, output activation, loss, optimizer, data kind, metrics)
    "mse-sgd-nesterov": ("tanh", 1, None, "mse", lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                         "regression", ["mse"]),
    "mae-rmsprop-momentum": ("relu", 1, None, "mae", lambda: keras.optimizers.RMSprop(0.01, momentum=0.5),
                             "regression", ["mae"]),
    "huber-rmsprop-centered": ("sigmoid", 1, None, keras.losses.Huber(delta=0.5),
                               lambda: keras.optimizers.RMSprop(0.01, centered=True), "regression", []),
    "bce-adamw": ("relu", 1, "sigmoid", "binary_crossentropy", lambda: keras.optimizers.AdamW(0.01),
                  "binary", ["accuracy"]),
    "bce-logits-adagrad": ("tanh", 1, None, keras.losses.BinaryCrossentropy(from_logits=True),
                           lambda: keras.optimizers.Adagrad(0.1), "binary", []),
    "cce-adam-amsgrad": ("relu", 3, "softmax", "categorical_crossentropy",
                         lambda: keras.optimizers.Adam(0.01, amsgrad=True), "onehot", ["accuracy"]),
    "scce-logits-sgd-momentum": ("relu", 3, None, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                                 lambda: keras.optimizers.SGD(0.1, momentum=0.9), "labels", ["accuracy"]),
    "scce-softmax-rmsprop": ("tanh", 3, "softmax", "sparse_categorical_crossentropy",
                             lambda: keras.optimizers.RMSprop(0.01), "labels", []),
}


@pytest.fixture(scope="module")
def case_traces():
    out = {}
    for name, (hidden, units, out_act, loss, opt, data, metrics) in CASES.items():
        if data == "regression":
            rng = np.random.default_rng(1)
            x = rng.normal(size=(24, 4))
            y = x @ rng.normal(size=(4, 1)) + 0.1
        else:
            x, y = _classification(data)
        keras.utils.set_random_seed(7)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, activation=hidden),
                                  keras.layers.Dense(units, activation=out_act)])
        model.compile(optimizer=opt(), loss=loss, metrics=metrics)
        cb = TraceCallback()
        model.fit(x, y, epochs=2, batch_size=10, callbacks=[cb], verbose=0)
        out[name] = cb.trace
    return out


EXPECTED_META = {
    "mse-sgd-nesterov": ({"name": "mse", "divide_by": ["n", "m"]}, {"name": "sgd", "momentum": 0.9, "nesterov": True}),
    "mae-rmsprop-momentum": ({"name": "mae", "divide_by": ["n", "m"]}, {"name": "rmsprop", "momentum": 0.5}),
    "huber-rmsprop-centered": ({"name": "huber", "delta": 0.5}, {"name": "rmsprop", "centered": True}),
    "bce-adamw": ({"name": "bce", "divide_by": ["n", "m"]}, {"name": "adamw", "weight_decay": 0.004}),
    "bce-logits-adagrad": ({"name": "bce_logits"}, {"name": "adagrad", "initial_accumulator_value": 0.1}),
    "cce-adam-amsgrad": ({"name": "cce", "divide_by": ["n"]}, {"name": "adam", "amsgrad": True}),
    "scce-logits-sgd-momentum": ({"name": "scce_logits", "divide_by": ["n"]}, {"name": "sgd", "momentum": 0.9}),
    "scce-softmax-rmsprop": ({"name": "scce"}, {"name": "rmsprop", "rho": 0.9}),
}
SLOTS = {"sgd": ["momentum"], "rmsprop": ["velocity"], "adam": ["m", "v"], "adamw": ["m", "v"],
         "adagrad": ["accumulator"]}


@pytest.mark.parametrize("name", list(CASES))
def test_supported_combinations_check(case_traces, name):
    trace = case_traces[name]
    loss, opt = EXPECTED_META[name]
    assert loss.items() <= trace.meta["loss"].items()
    assert opt.items() <= trace.meta["optimizer"].items()
    slots = set(trace.state_slots(trace.param_names[0]))
    assert set(SLOTS[opt["name"]]) <= slots
    if name == "cce-adam-amsgrad":
        assert "vhat" in slots
    if name == "huber-rmsprop-centered":
        assert "average_gradient" in slots
    if name == "mae-rmsprop-momentum":
        assert "momentum" in slots
    assert len(trace.steps) == 6 and list(trace.steps["batch_size"]) == [10, 10, 4] * 2
    report = tracer.check(trace)
    assert report.ok, f"{name}:\n{report}\n{failed(report).head(10).to_string()}"
