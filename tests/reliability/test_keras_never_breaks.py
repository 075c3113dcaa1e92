"""A Keras ``fit`` whose tracing breaks goes on bit-identically (issue 11 item 1).

Two kinds of case: tracing made to fail on purpose inside ``fit`` (the traced train
step raising while it is traced, a callback hook raising mid-epoch), where the guarded
callback ``steptrace run`` adds must stop tracing with one warning naming the cause and
let Keras's own step run; and real scripts that tracing cannot fully follow (a dict of
inputs with sample weights, a model changed mid-fit), whose output under ``steptrace
run`` must equal the untraced run's.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = pytest.mark.keras

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow",
       "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}


def _fit(callbacks):
    import keras
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 2)).astype("float32")
    y = x @ np.array([[2.0], [-3.4]], dtype="float32") + 4.2
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation="tanh"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False, callbacks=callbacks)
    return history.history["loss"], [w.copy() for w in model.get_weights()]


def _guarded():
    from hooks.autotrace.keras_fit import guarded_callback_class
    return guarded_callback_class()()


def _same(a, b):
    assert a[0] == b[0]                               # every logged loss, bit for bit
    for u, v in zip(a[1], b[1]):
        np.testing.assert_array_equal(u, v)


def test_a_traced_step_that_fails_while_traced_lets_keras_run_the_step(monkeypatch, capfd):
    import hooks.keras.step_tf as step_tf
    plain = _fit([])

    def broken(*args, **kwargs):
        def step(iterator):
            raise NotImplementedError("a layer the traced step cannot follow")
        return step
    monkeypatch.setattr(step_tf, "traced_function", broken)
    cb = _guarded()
    traced = _fit([cb])
    _same(plain, traced)
    err = capfd.readouterr().err
    assert err.count("tracing stopped") == 1 and "NotImplementedError: a layer the traced step" in err, err
    assert cb.failure.startswith("tracing stopped in the traced train step")


def test_a_callback_hook_that_fails_mid_epoch_stops_tracing_only(monkeypatch, capfd):
    from hooks.keras import TraceCallback
    plain = _fit([])
    original = TraceCallback._after_step           # the per-step hook (there is no on_train_batch_end)

    def failing(self, logs, extras, traced):
        if self._batch == 3:
            raise ValueError("planted")
        return original(self, logs, extras, traced)
    monkeypatch.setattr(TraceCallback, "_after_step", failing)
    cb = _guarded()
    traced = _fit([cb])
    _same(plain, traced)
    err = capfd.readouterr().err
    assert err.count("tracing stopped") == 1 and "ValueError: planted" in err
    assert cb.trace.n_steps == 3                       # the steps before the failure are kept


SCRIPTS = {
    "dict-inputs-with-sample-weights": """
        inp = {"a": keras.Input((1,), name="a"), "b": keras.Input((1,), name="b")}
        model = keras.Model(inp, keras.layers.Dense(1)(keras.layers.Concatenate()([inp["a"], inp["b"]])))
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
        h = model.fit({"a": x[:, :1], "b": x[:, 1:]}, y, sample_weight=np.linspace(0.5, 1.5, 64),
                      batch_size=8, epochs=2, verbose=0, shuffle=False)
    """,
    "model-changed-mid-fit": """
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
        class Freeze(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if batch == 3:
                    self.model.layers[0].trainable = False
                    self.model.make_train_function(force=True)
        h = model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False, callbacks=[Freeze()])
    """,
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_scripts_tracing_cannot_follow_print_the_same_under_steptrace_run(tmp_path, name):
    body = textwrap.dedent(SCRIPTS[name])
    script = tmp_path / "train.py"
    script.write_text("import numpy as np, keras\nkeras.utils.set_random_seed(0)\n"
                      "x = np.random.default_rng(0).normal(size=(64, 2)).astype('float32')\n"
                      "y = x @ np.array([[2.0], [-3.4]], dtype='float32') + 4.2\n" + body +
                      "print([repr(v) for v in h.history['loss']])\n"
                      "print([repr(w.ravel().tolist()) for w in model.get_weights()])\n")
    plain = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=ENV, timeout=600)
    traced = subprocess.run([sys.executable, "-m", "tracer", "run", "-o", str(tmp_path / "out"), "--no-csv",
                             "--no-excel", str(script)], capture_output=True, text=True, env=ENV, timeout=600)
    assert plain.returncode == 0 == traced.returncode, traced.stderr
    assert traced.stdout == plain.stdout
    assert "Traceback" not in traced.stderr
