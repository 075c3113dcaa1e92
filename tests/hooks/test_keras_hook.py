"""hooks.keras.TraceCallback: what it records, and that it changes nothing.

Compiled mode (the default) throughout. The traced and untraced runs of one seed
must agree bit for bit (weights and history); rows must be the real row
positions, also with shuffle, validation_split and duplicated rows.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest
import tensorflow as tf

import tracer
from hooks.keras import TraceCallback
from tracer.errors import TraceInputError

pytestmark = pytest.mark.keras


def mlp(seed=4, optimizer=None, loss="mse", metrics=("mae",), out_units=1, out_act=None, hidden=6, k=3):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((k,)), keras.layers.Dense(hidden, activation="relu"),
                              keras.layers.Dense(out_units, activation=out_act)])
    model.compile(optimizer=optimizer or keras.optimizers.Adam(0.01), loss=loss, metrics=list(metrics))
    return model


def regression_data(n=50, k=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, k))
    y = x @ np.array([[1.5], [-2.0], [0.5]])[:k] + 0.3 + 0.1 * rng.normal(size=(n, 1))
    return x, y


def run(traced, fit_kwargs, **model_kwargs):
    x, y = regression_data()
    model = mlp(**model_kwargs)
    cb = TraceCallback()
    hist = model.fit(x, y, verbose=0, callbacks=[cb] if traced else [], **fit_kwargs)
    return model, hist.history, cb


@pytest.fixture(scope="module")
def paired_runs():
    kwargs = dict(epochs=3, batch_size=8, shuffle=True, validation_split=0.2)
    return run(False, kwargs), run(True, kwargs)


def test_bit_identical_with_and_without_callback(paired_runs):
    (m0, h0, _), (m1, h1, cb) = paired_runs
    for a, b in zip(m0.get_weights(), m1.get_weights()):
        assert a.tobytes() == b.tobytes()
    for a, b in zip(m0.optimizer.variables, m1.optimizer.variables):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    assert h0 == h1
    assert set(h1) == {"loss", "mae", "val_loss", "val_mae"}       # nothing of ours leaks into history
    assert m1.train_function is not None and "make_train_function" not in m1.__dict__
    assert getattr(m1.train_function, "__name__", "") != "traced_train_function"
    assert len(cb.trace.steps) == 15


def test_validation_split_rows_and_records(paired_runs):
    x, y = regression_data()
    _, (model, hist, cb) = paired_runs
    trace = cb.trace
    assert trace.meta["data"]["n_rows"] == 40                       # the 40 rows before the cut
    # Keras's split hands fit float32 copies: the trace holds the values the model saw
    np.testing.assert_array_equal(trace.data[["x0", "x1", "x2"]].to_numpy(), x[:40].astype(np.float32))
    steps = trace.steps
    assert list(steps["batch_size"]) == [8] * 15
    samples = trace.samples
    for e in range(1, 4):
        rows = samples.loc[samples["step"].isin(steps.loc[steps["epoch"] == e, "step"]), "sample"]
        assert sorted(rows) == list(range(40))
    # each recorded row's prediction is the model's prediction for that row with the pre-update weights
    names = trace.param_names
    for i in (0, 7, 14):
        step = i + 1
        p = {n: trace.param_values(n, "before")[i] for n in names}
        rows = samples.loc[samples["step"] == step, "sample"].to_numpy()
        h = np.maximum(x[rows].astype(np.float32) @ p[names[0]] + p[names[1]], 0)
        pred = h @ p[names[2]] + p[names[3]]
        np.testing.assert_allclose(samples.loc[samples["step"] == step, "y_pred"], pred.ravel(), rtol=1e-5,
                                   atol=1e-6)
    # before of step k+1 is after of step k, and the last after is the model's final weight
    for n, w in zip(names, model.get_weights()):
        np.testing.assert_array_equal(trace.param_values(n, "before")[1:], trace.param_values(n, "after")[:-1])
        assert trace.param_values(n, "after")[-1].tobytes() == w.tobytes()
    assert list(steps["opt_step"]) == list(range(1, 16))
    assert trace.state_slots(names[0]) == ["m", "v"]
    np.testing.assert_allclose(trace.epochs["logged_val_loss"], hist["val_loss"])
    np.testing.assert_allclose(trace.epochs["logged_loss"], hist["loss"])


def test_meta_describes_the_model(paired_runs):
    meta = paired_runs[1][2].trace.meta
    assert meta["framework"] == "keras"
    layers = meta["model"]["layers"]
    assert meta["model"]["kind"] == "dense_stack"
    assert [(l["units"], l["activation"], l["use_bias"], l["transpose"]) for l in layers] == \
        [(6, "relu", True, False), (1, "linear", True, False)]
    model = paired_runs[1][0]
    assert layers[0]["weight"] == model.layers[0].kernel.path == meta["params"][0]["name"]
    assert layers[1]["bias"] == model.layers[1].bias.path
    assert model.layers[0].kernel.path.endswith("/kernel")
    assert meta["loss"] == {"name": "mse", "divide_by": ["n", "m"], "reduction": "sum_over_batch_size",
                            "keras_name": "mse"}
    opt = meta["optimizer"]
    assert opt["name"] == "adam" and opt["convention"] == "keras"
    assert (opt["beta_1"], opt["beta_2"], opt["epsilon"], opt["amsgrad"]) == (0.9, 0.999, 1e-7, False)
    assert opt["lr"] == pytest.approx(0.01)
    assert meta["metrics"] == [{"name": "mae", "kind": "mae", "keras_name": "MeanAbsoluteError"}]
    assert meta["keras_fit"]["validation_split"] == 0.2


def test_duplicated_rows_shuffled():
    x = np.array([[1.0], [2.0], [1.0], [3.0], [2.0], [1.0], [4.0], [5.0]])
    y = np.array([[1.0], [2.0], [1.0], [3.0], [7.0], [1.0], [4.0], [5.0]])   # rows 1 and 4 differ in y only
    keras.utils.set_random_seed(1)
    tf.random.set_seed(None)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="mse")
    cb = TraceCallback()
    model.fit(x, y, epochs=3, batch_size=3, shuffle=True, callbacks=[cb], verbose=0)
    trace = cb.trace
    steps, samples = trace.steps, trace.samples
    assert list(steps["batch_size"]) == [3, 3, 2] * 3
    for e in range(1, 4):
        rows = samples.loc[samples["step"].isin(steps.loc[steps["epoch"] == e, "step"]), "sample"]
        assert sorted(rows) == list(range(8))
    # the recorded rows reproduce each batch's loss exactly (targets distinguish rows 1 and 4)
    for s in steps.itertuples(index=False):
        sub = samples[samples["step"] == s.step]
        err = sub["y_pred"].to_numpy() - y[sub["sample"].to_numpy(), 0]
        assert s.loss == pytest.approx(np.mean(err ** 2), rel=1e-6)
    assert trace.state_slots(trace.param_names[0]) == ["momentum"]
    assert tracer.check(trace).ok


def test_tf_data_dataset_input():
    x, y = regression_data(n=24)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(6)
    model = mlp(optimizer=keras.optimizers.SGD(0.05))
    cb = TraceCallback()
    model.fit(ds, epochs=2, callbacks=[cb], verbose=0, shuffle=False)
    trace = cb.trace
    assert len(trace.steps) == 8
    assert any("first appearance" in n for n in trace.meta["notes"])
    assert trace.meta["data"]["n_rows"] == 24
    assert list(trace.samples["sample"][:24]) == list(range(24))        # an unshuffled dataset: in order
    assert list(trace.samples["sample"][24:]) == list(range(24))
    np.testing.assert_allclose(trace.data[["x0", "x1", "x2"]].to_numpy(), x.astype(np.float32))
    assert tracer.check(trace).ok
    # with data=(x, y) the rows are positions in the user's arrays, also when the dataset shuffles
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(24, seed=3).batch(6)
    model = mlp(optimizer=keras.optimizers.SGD(0.05))
    cb = TraceCallback(data=(x, y))
    model.fit(ds, epochs=1, callbacks=[cb], verbose=0, shuffle=False)
    rows = cb.trace.samples["sample"].to_numpy()
    assert sorted(rows) == list(range(24)) and list(rows) != list(range(24))
    assert tracer.check(cb.trace).ok


class _Boom(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("boom")


def test_trace_survives_an_exception_and_fit_is_restored():
    x, y = regression_data(n=16)
    model = mlp()
    cb = TraceCallback()
    with pytest.raises(RuntimeError, match="boom"):
        model.fit(x, y, epochs=5, batch_size=8, callbacks=[cb, _Boom()], verbose=0)
    trace = cb.trace
    assert len(trace.steps) == 4 and list(trace.steps["epoch"]) == [1, 1, 2, 2]
    assert getattr(model.train_function, "__name__", "") == "guarded_train_function"   # still swapped
    # the next fit (no callback) undoes the swap first; it must match an untraced continuation
    ref = mlp()
    with pytest.raises(RuntimeError):
        ref.fit(x, y, epochs=5, batch_size=8, callbacks=[_Boom()], verbose=0)
    h = model.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    h_ref = ref.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    assert "make_train_function" not in model.__dict__
    assert getattr(model.train_function, "__name__", "") not in ("traced_train_function", "guarded_train_function")
    assert h.history == h_ref.history
    for a, b in zip(model.get_weights(), ref.get_weights()):
        assert a.tobytes() == b.tobytes()
    assert len(cb.trace.steps) == 4                                    # nothing recorded after the error


def test_every_and_summary():
    x, y = regression_data(n=32)
    model = mlp()
    cb = TraceCallback(every=3)
    model.fit(x, y, epochs=2, batch_size=8, callbacks=[cb], verbose=0, shuffle=False)
    trace = cb.trace
    assert list(trace.steps["step"]) == [1, 4, 7]
    assert trace.meta["capture"]["steps_seen"] == 8
    assert list(trace.steps["opt_step"]) == [1, 4, 7]
    ref = mlp()
    ref.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), ref.get_weights()):
        assert a.tobytes() == b.tobytes()
    model = mlp()
    cb = TraceCallback(capture="summary")
    model.fit(x, y, epochs=1, batch_size=8, callbacks=[cb], verbose=0)
    steps = cb.trace.steps
    assert len(steps) == 4 and len(cb.trace.samples) == 0
    kernel, bias = model.layers[0].kernel.path, model.layers[1].bias.path
    assert {"grad_norm_" + kernel, "update_norm_" + bias} <= set(steps.columns)
    assert list(steps["batch_size"]) == [8] * 4 and list(steps["opt_step"]) == [1, 2, 3, 4]
    # the norms (computed inside the graph) agree with a full capture of the same run
    full_model = mlp()
    full = TraceCallback()
    full_model.fit(x, y, epochs=1, batch_size=8, callbacks=[full], verbose=0)
    for a, b in zip(model.get_weights(), full_model.get_weights()):
        assert a.tobytes() == b.tobytes()
    ft = full.trace
    for name, fname in ((kernel, full_model.layers[0].kernel.path), (bias, full_model.layers[1].bias.path)):
        for which, col in (("grad", "grad_norm_"), ("update", "update_norm_"), ("before", "value_norm_")):
            vals = ft.param_values(fname, which).reshape(4, -1).astype(np.float64)
            np.testing.assert_allclose(steps[col + name], np.linalg.norm(vals, axis=1), rtol=1e-5)
    np.testing.assert_allclose(steps["loss"], ft.steps["loss"], rtol=0)



def test_summary_norms_summed_in_pieces_equal_the_norms_of_a_full_capture(monkeypatch):
    """Sums of squares over more than ``SUM_CHUNK`` elements are taken piece by piece (a
    kernel of 18 in pieces of at most 4): each norm still equals the full capture's."""
    from hooks.keras import step_tf
    x, y = regression_data(n=32)
    runs = {}
    for chunk in (4, 10**9):                 # pieces, and the twin summed whole
        monkeypatch.setattr(step_tf, "SUM_CHUNK", chunk)
        model = mlp()
        cb = TraceCallback(capture="summary")
        model.fit(x, y, epochs=1, batch_size=8, callbacks=[cb], verbose=0)
        runs[chunk] = (model, cb.trace.steps.rename(columns=lambda c: c.replace(model.layers[0].kernel.path, "k")))
    full_model = mlp()
    full = TraceCallback()
    full_model.fit(x, y, epochs=1, batch_size=8, callbacks=[full], verbose=0)
    model, steps = runs[4]
    for a, b in zip(model.get_weights(), full_model.get_weights()):
        assert a.tobytes() == b.tobytes()
    for which, col in (("grad", "grad_norm_k"), ("update", "update_norm_k"), ("before", "value_norm_k")):
        vals = full.trace.param_values(full_model.layers[0].kernel.path, which).reshape(4, -1).astype(np.float64)
        np.testing.assert_allclose(steps[col], np.linalg.norm(vals, axis=1), rtol=1e-6)
        np.testing.assert_allclose(steps[col], runs[10**9][1][col], rtol=1e-6)
        assert (steps[col] > 0).all()

def test_bad_arguments_are_named():
    with pytest.raises(TraceInputError, match="every"):
        TraceCallback(every=0)
    with pytest.raises(TraceInputError, match="capture"):
        TraceCallback(capture="all")
    with pytest.raises(TraceInputError, match="data"):
        TraceCallback(data=np.zeros(3))
    x, y = regression_data(n=8)
    model = mlp()
    model.compile(optimizer="sgd", loss="mse", steps_per_execution=2)
    with pytest.raises(TraceInputError, match="steps_per_execution"):
        model.fit(x, y, callbacks=[TraceCallback(strict=True)], verbose=0)
    cb = TraceCallback()                  # by default the fit goes on untraced, with one warning
    with pytest.warns(RuntimeWarning, match="on_train_begin: TraceInputError: model: TraceCallback needs "
                                            "steps_per_execution=1"):
        model.fit(x, y, callbacks=[cb], verbose=0)
    assert cb.failure is not None and cb.trace.n_steps == 0


@pytest.mark.parametrize("mode", ["run_eagerly", "jit_compile", "functional", "dropout"])
def test_other_modes_bit_identical(mode):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = x.sum(axis=1, keepdims=True)

    def build():
        keras.utils.set_random_seed(1)
        if mode == "functional":
            i = keras.Input((3,))
            model = keras.Model(i, keras.layers.Dense(1)(keras.layers.Dense(4, activation="tanh")(i)))
        else:
            mid = [keras.layers.Dropout(0.3)] if mode == "dropout" else []
            model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"), *mid,
                                      keras.layers.Dense(1)])
        kw = {mode: True} if mode in ("run_eagerly", "jit_compile") else {}
        model.compile(optimizer=keras.optimizers.RMSprop(0.01), loss="mse", metrics=["mse"], **kw)
        return model

    m0, m1 = build(), build()
    h0 = m0.fit(x, y, epochs=2, batch_size=16, verbose=0)
    cb = TraceCallback()
    h1 = m1.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[cb])
    assert h0.history == h1.history
    for a, b in zip(m0.get_weights(), m1.get_weights()):
        assert a.tobytes() == b.tobytes()
    trace = cb.trace
    assert len(trace.steps) == 6
    report = tracer.check(trace)
    if mode == "dropout":
        assert trace.meta["model"] == {"kind": "unsupported", "reason": "layer Dropout (dropout)"} or \
            trace.meta["model"]["reason"].startswith("layer Dropout")
        assert not report.ok                                   # cannot check: said so, not a silent pass
    else:
        assert trace.meta["model"]["kind"] == "dense_stack"
        assert report.ok, report
