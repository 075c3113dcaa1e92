"""A Keras ``fit`` whose tracing breaks goes on bit-identically (issue 11 item 1).

Two kinds of case: tracing made to fail on purpose inside ``fit`` (the traced train
step raising while it is traced, the recording raising mid-epoch), where
``TraceCallback`` - used directly in ``model.fit(..., callbacks=[TraceCallback()])`` or
added by ``steptrace run`` - must stop tracing with one warning naming the cause and
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


def _callback(**kwargs):
    from hooks.keras import TraceCallback
    return TraceCallback(**kwargs)


def _same(a, b):
    assert a[0] == b[0]                               # every logged loss, bit for bit
    for u, v in zip(a[1], b[1]):
        np.testing.assert_array_equal(u, v)


def _stopped(record):
    """The 'tracing stopped' warnings of a run."""
    return [str(w.message) for w in record if "tracing stopped" in str(w.message)]


def test_a_traced_step_that_fails_while_traced_lets_keras_run_the_step(monkeypatch):
    import hooks.keras.step_tf as step_tf
    plain = _fit([])

    def broken(*args, **kwargs):
        def step(iterator):
            raise NotImplementedError("a layer the traced step cannot follow")
        return step
    monkeypatch.setattr(step_tf, "traced_function", broken)
    cb = _callback()
    with pytest.warns(RuntimeWarning) as record:
        traced = _fit([cb])
    _same(plain, traced)
    said = _stopped(record)
    assert len(said) == 1 and "NotImplementedError: a layer the traced step" in said[0], said
    assert cb.failure.startswith("tracing stopped in the traced train step")


def _plant_in_recording(monkeypatch, at_step):
    """The recorder raises when asked to record step ``at_step``: a failure inside the
    callback's recording, in the middle of an epoch."""
    from tracer.recorder import Recorder
    original = Recorder.record_step

    def failing(self, *args, **kwargs):
        if self.steps_seen + 1 == at_step:
            raise ValueError("planted")
        return original(self, *args, **kwargs)
    monkeypatch.setattr(Recorder, "record_step", failing)


def test_a_failure_inside_the_recording_stops_tracing_only(monkeypatch):
    """``model.fit(..., callbacks=[TraceCallback()])`` used directly, no ``steptrace run``:
    one warning naming the cause, ``fit`` completes, the losses and weights are bit-identical
    to the untraced twin, the steps before the failure are kept (with a note)."""
    plain = _fit([])
    _plant_in_recording(monkeypatch, at_step=4)
    cb = _callback()
    with pytest.warns(RuntimeWarning) as record:
        traced = _fit([cb])
    _same(plain, traced)
    said = _stopped(record)
    assert len(said) == 1 and "ValueError: planted" in said[0], said
    # where it stopped: the per-step hook, or the read of the ring variables that holds steps
    assert said[0].split("tracing stopped in ")[1].startswith(("_after_step", "reading the traced steps")), said
    assert cb.trace.n_steps == 3                       # the steps before the failure are kept
    assert any("ValueError: planted" in n for n in cb.trace.meta["notes"])


def test_the_clean_twin_is_traced_whole_and_strict_raises(monkeypatch):
    import warnings
    plain = _fit([])
    cb = _callback()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)       # a clean fit warns nothing
        traced = _fit([cb])
    _same(plain, traced)
    assert cb.failure is None and cb.trace.n_steps == 24   # 64 rows / 8 x 3 epochs
    _plant_in_recording(monkeypatch, at_step=4)
    with pytest.raises(ValueError, match="planted"):
        _fit([_callback(strict=True)])


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
