"""Logged values that are not what their name says: each planted mislabel is named, its clean twin is not.

The planted values are computed the way the bug computes them (a per-row RMSE metric, a
mean of batch values, the current batch alone, the weights after the update, a 0.5
threshold on logits, an argmax over a single column); the clean twins compute what the
name says, as Keras does. The Keras custom metric is also planted in a real ``model.fit``.
"""
from __future__ import annotations

import numpy as np
import pytest

import tracer

from _program_traces import engine_trace
from _trace_factories import s2_trace


def _finding(trace):
    report = tracer.check(trace)
    found = [f for f in report.findings if f.kind == "logged_name"]
    return report, (found[0] if found else None)


def _pooled_rmse(rs):
    return np.sqrt(np.mean(np.concatenate(rs) ** 2))


PLANTED = {
    "per-row rmse (a function metric on one output)": (
        lambda rs: np.mean(np.sqrt(np.mean(np.concatenate(rs) ** 2, axis=-1))), "running mean absolute error", 1),
    "mean of batch rmses": (lambda rs: np.mean([np.sqrt(np.mean(r ** 2)) for r in rs]),
                            "mean of the per-batch root mean squared error values", 2),
    "batch-size-weighted mean of batch rmses": (
        lambda rs: np.average([np.sqrt(np.mean(r ** 2)) for r in rs], weights=[len(r) for r in rs]),
        "batch-size-weighted mean of the per-batch root mean squared error", 2),
    "current batch alone": (lambda rs: np.sqrt(np.mean(rs[-1] ** 2)), "of the current batch alone", 2),
}


@pytest.mark.parametrize("case", list(PLANTED))
def test_planted_rmse_mislabels_are_named(case):
    fn, words, step = PLANTED[case]
    batch = 12 if step == 1 else 5          # 5: batches of 5, 5, 2 make weighted and unweighted differ
    report, f = _finding(s2_trace(batch_size=batch, custom={"rmse": fn}))
    assert f is not None, report.summary()
    assert f.failed and f.param == "rmse" and f.step == step
    assert words in f.message and "not the running root mean squared error its name says" in f.message
    assert f"at step {step} it logged" in f.message and f.fix
    assert report.verdict == "failed"


def test_clean_twin_has_no_finding():
    report, f = _finding(s2_trace(custom={"rmse": _pooled_rmse, "my_mae": lambda rs: np.mean(np.abs(np.concatenate(rs)))},
                                  validation=True))
    assert f is None and report.ok, report.summary()


def test_validation_values_are_checked_when_the_validation_rows_are_the_training_rows():
    trace = s2_trace(validation=True)
    ep = trace.epochs
    assert tracer.check(trace).ok
    # plant: val RMSE that is the per-row mean (the MAE) of the updated model on all rows
    from tracer.checker.catalogue import val_catalogue
    last = trace.steps.groupby("epoch")["step"].max().to_numpy()
    mae = next(e for e in val_catalogue(trace, tracer.check(trace).context["program"], last)
               if e.key[0] == "mae").values
    ep["logged_val_root_mean_squared_error"] = mae
    trace.arrays().epochs["logged_val_root_mean_squared_error"] = mae
    report, f = _finding(trace)
    assert f is not None and f.param == "val_root_mean_squared_error" and "end of the epoch" in f.message


def _weights_after(history):
    sq = np.concatenate([(p_after - y) ** 2 for _, y, p_after in history])
    return {"mse": float(np.mean(sq))}


def _clean_mse(history):
    return {"mse": float(np.mean(np.concatenate([(p - y) ** 2 for p, y, _ in history])))}


@pytest.mark.parametrize("log_fn,found", [(_weights_after, True), (_clean_mse, False)])
def test_weights_after_the_update(log_fn, found):
    x = np.linspace(-1, 1, 12).reshape(-1, 1)
    meta = {"framework": "keras", "model": {"kind": "dense_stack", "layers": [
        {"type": "dense", "weight": "w", "bias": "b", "activation": "linear"}]},
        "loss": {"name": "mse"}, "optimizer": {"name": "sgd", "convention": "keras", "lr": 0.3},
        "metrics": [{"name": "mse", "kind": "unsupported"}]}
    trace = engine_trace(meta, x, 2 * x + 1, {"w": np.array([[0.2]]), "b": np.array([0.0])}, steps=3,
                         log_fn=log_fn)
    report, f = _finding(trace)
    assert (f is not None) == found, report.summary()
    if found:
        assert "with the weights after the update" in f.message and "before the update" in f.fix


def _binary(log_fn, name="accuracy", kind="unsupported"):
    x = np.linspace(-2, 2, 12).reshape(-1, 1)
    y = (x > 0.3).astype(float)
    meta = {"framework": "keras", "model": {"kind": "dense_stack", "layers": [
        {"type": "dense", "weight": "w", "bias": "b", "activation": "linear"}]},
        "loss": {"name": "bce_logits"}, "optimizer": {"name": "sgd", "convention": "keras", "lr": 0.1},
        "metrics": [{"name": name, "kind": kind}]}
    return engine_trace(meta, x, y, {"w": np.array([[0.9]]), "b": np.array([-0.35])}, steps=3, batch_size=6,
                        log_fn=log_fn)


def _acc(threshold):
    def fn(history):
        hits = np.concatenate([(p > threshold) == (y == 1) for p, y, _ in history])
        return {"accuracy": float(hits.mean())}
    return fn


def test_threshold_on_logits_and_its_clean_twin():
    report, f = _finding(_binary(_acc(0.5)))
    assert f is not None and "0.5 threshold" in f.message and "threshold=0.0" in f.fix, report.summary()
    report, f = _finding(_binary(_acc(0.0)))
    assert f is None, report.summary()


def test_argmax_over_a_single_column():
    def sparse(history):
        return {"accuracy": float(np.mean(np.concatenate([y[:, 0] == 0 for _, y, _ in history])))}
    report, f = _finding(_binary(sparse))
    assert f is not None and "argmax over a single column" in f.message and "BinaryAccuracy" in f.fix


@pytest.mark.keras
@pytest.mark.parametrize("custom,shape", [(True, (12, 1)), (True, (12,)), (False, (12,))])
def test_keras_custom_rmse_metric_is_mae_and_the_builtin_is_clean(custom, shape):
    """Planted in a real fit: a hand-written ``rmse`` metric on one output (Keras averages it per
    row: the MAE; with targets shaped (n,) TensorFlow also broadcasts them against the (n, 1)
    predictions) is named; ``keras.metrics.RootMeanSquaredError(name="rmse")`` is not."""
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    from hooks.keras import TraceCallback

    def rmse(y_true, y_pred):
        return keras.ops.sqrt(keras.ops.mean(keras.ops.square(y_true - y_pred), axis=-1))

    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, kernel_initializer=keras.initializers.Constant(0.5))])
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=0.05), loss="mean_squared_error",
                  metrics=[rmse if custom else keras.metrics.RootMeanSquaredError(name="rmse")])
    cb = TraceCallback()
    x = np.arange(1, 13, dtype=np.float64)
    y = np.array([5.0, 8.8, 9.6, 14.2, 18.8, 19.5, 21.4, 26.8, 28.9, 32.0, 33.8, 38.2]).reshape(shape)
    model.fit(x, y, epochs=2, batch_size=4, shuffle=False, callbacks=[cb], verbose=0)
    report, f = _finding(cb.trace)
    if custom:
        assert f is not None and f.param == "rmse" and f.step == 1, report.summary()
        if shape == (12, 1):
            assert "running mean absolute error" in f.message and "RootMeanSquaredError" in f.fix
        else:
            assert "every prediction against every target" in f.message and "reshape(-1, 1)" in f.fix
    else:
        assert f is None and report.ok, report.summary()
