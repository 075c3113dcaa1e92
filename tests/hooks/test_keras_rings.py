"""The TensorFlow step's ring variables (hooks/keras/rings.py): the trace does not depend
on how many steps the rings hold, a fit interrupted at step k keeps steps 1..k, and the
callback leaves Keras's asynchronous batch ends alone.

Why: the rings are read every K steps, so every read boundary (a full ring, an epoch's end,
a crash, the end of fit) is a place where a step could be lost, doubled or shifted. Each
test compares against a twin run with rings that never wrap (K = 64) or without tracing.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest

import tracer
from _keras_cases import StopAt
from hooks.keras import TraceCallback, rings

pytestmark = pytest.mark.keras


def _model(seed=4):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    return model


def _data(n=44):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, (x @ np.array([[1.5], [-2.0], [0.5]]) + 0.3).astype("float32")


def _traced(monkeypatch, max_rows, callbacks=(), **cb_kw):
    monkeypatch.setattr(rings, "MAX_ROWS", max_rows)
    x, y = _data()
    model = _model()
    cb = TraceCallback(**cb_kw)
    hist = None
    try:
        hist = model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[cb, *callbacks])
    except RuntimeError as exc:
        assert "planted" in str(exc)
    return model, cb, hist


def _tables(trace):
    """The tables without parameter names (Keras numbers each new model's layers)."""
    return [t.drop(columns=["param"], errors="ignore").set_axis(range(t.shape[1] - ("param" in t)), axis=1)
            for t in (trace.steps, trace.samples, trace.params)]


@pytest.mark.parametrize("capture,every", [("full", 1), ("summary", 1), ("full", 4)])
def test_the_trace_does_not_depend_on_the_ring_size(monkeypatch, capture, every):
    _, small, _ = _traced(monkeypatch, 3, capture=capture, every=every)     # 18 steps through rings of 3
    _, large, _ = _traced(monkeypatch, 64, capture=capture, every=every)
    assert (small._ring_rows, large._ring_rows) == (3, 64) and small._rings is None   # freed at the end
    a, b = small.trace, large.trace
    assert a.meta["capture"]["steps_seen"] == b.meta["capture"]["steps_seen"] == 18
    assert list(a.steps["step"]) == list(range(1, 19, every))
    for ta, tb in zip(_tables(a), _tables(b)):
        assert ta.equals(tb)
    if capture == "full" and every == 1:
        assert tracer.check(a).ok


def test_logged_values_and_steps_match_keras(monkeypatch):
    model, cb, hist = _traced(monkeypatch, 5)
    steps = cb.trace.steps
    assert list(steps["epoch"]) == [1] * 6 + [2] * 6 + [3] * 6
    assert list(steps["batch"]) == list(range(1, 7)) * 3
    assert list(steps["batch_size"]) == [8] * 5 + [4] + [8] * 5 + [4] + [8] * 5 + [4]
    last = steps.groupby("epoch").tail(1)          # the running values at the epoch's end
    np.testing.assert_array_equal(last["logged_loss"], np.float32(hist.history["loss"]))
    np.testing.assert_array_equal(last["logged_mae"], np.float32(hist.history["mae"]))
    assert list(steps["opt_step"]) == list(range(1, 19))
    kernel = model.layers[0].kernel
    np.testing.assert_array_equal(cb.trace.param_values(kernel.path, "after")[-1].reshape(kernel.shape),
                                  kernel.numpy())


@pytest.mark.parametrize("at", [4, 7])
def test_a_fit_interrupted_at_step_k_keeps_steps_1_to_k(monkeypatch, at):
    _, whole, _ = _traced(monkeypatch, 3)
    model, cut, hist = _traced(monkeypatch, 3, callbacks=[StopAt(at)])
    assert hist is None                               # the fit raised
    a = cut.trace
    assert list(a.steps["step"]) == list(range(1, at + 1))
    steps, samples, params = _tables(a)
    ref_steps, ref_samples, ref_params = _tables(whole.trace)
    for got, ref, col in ((params, ref_params, 0), (samples, ref_samples, 0), (steps, ref_steps, 2)):
        assert got.equals(ref[ref[col] <= at].reset_index(drop=True))
    x, y = _data()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)            # the next fit runs Keras's own step
    assert len(cut.trace.steps) == at


def test_the_callback_has_no_batch_end_so_keras_may_dispatch_batch_ends_asynchronously(monkeypatch):
    """A callback defining on_train_batch_end stops Keras from dispatching batch ends to a
    thread (on backends Keras deems thread-safe; TensorFlow is not one in Keras 3.15, so
    there every batch end is synchronous anyway). The TraceCallback has none: its train
    function records."""
    from keras.src import backend
    monkeypatch.setattr(backend, "IS_THREAD_SAFE", True)
    model = _model()
    for callbacks, expected in (([TraceCallback()], True), ([StopAt(1)], False)):
        assert keras.callbacks.CallbackList(callbacks, model=model)._async_train is expected


@pytest.mark.parametrize("flush_every,flush_seconds", [(5, None), (100, 0.0)])
def test_a_streamed_fit_reads_back_equal_to_the_run_in_memory(monkeypatch, tmp_path, flush_every, flush_seconds):
    """With a store the rings hold at most ``flush_every`` steps, and are read whenever the
    store's ``flush_seconds`` have passed (0: every step), so a killed fit loses no more than
    the store alone would; the stream reads back equal to the same fit kept in memory."""
    from tracer import Trace
    from tracer.store import StreamStore
    _, memory, _ = _traced(monkeypatch, 64)
    store = StreamStore(tmp_path / "run", flush_every=flush_every, flush_seconds=flush_seconds)
    _, streamed, _ = _traced(monkeypatch, 64, store=store)
    assert streamed._ring_rows == min(64, flush_every)
    back = Trace.load(tmp_path / "run")
    for got, ref in zip(_tables(back), _tables(memory.trace)):
        assert got.equals(ref)


@pytest.mark.parametrize("default_batch", [256, 16])
def test_a_dataset_of_unknown_batch_size_keeps_its_rows_up_to_the_rows_kept(monkeypatch, default_batch):
    """A ``tf.data`` input does not tell the batch size when the step is traced: the rings
    keep DEFAULT_BATCH rows per step. Batches of 40 fit in 256 (rows found, the check
    passes); with 16 (planted) they do not: no rows, no predictions, a note, the rest kept."""
    import tensorflow as tf
    monkeypatch.setattr(rings, "DEFAULT_BATCH", default_batch)
    x, y = _data(80)
    model = _model()
    cb = TraceCallback(data=(x, y))
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(40), epochs=2, verbose=0, shuffle=False,
              callbacks=[cb])
    trace = cb.trace
    assert list(trace.steps["batch_size"]) == [40] * 4 and len(trace.params)
    if default_batch == 256:
        assert sorted(trace.samples["sample"][trace.samples["step"] == 1]) == list(range(40))
        assert tracer.check(trace).ok
    else:
        assert len(trace.samples) == 0
        assert any("larger than the 16 rows kept" in n for n in trace.meta["notes"])


def test_a_ring_is_read_as_a_view_of_its_buffer_and_a_held_view_never_changes():
    import tensorflow as tf
    ring = rings.StepRings(4)

    @tf.function
    def step(value):
        ring.put(ring.begin(), "v", value)
        ring.end()

    for k in range(3):
        step(tf.fill((2, 3), float(k)))
    address = lambda a: a.__array_interface__["data"][0]
    var = ring.rings["v"]
    plain = [var.value()._numpy() for _ in range(2)]         # the twin: a sparse-written variable
    assert address(plain[0]) != address(plain[1])            # copies on every dense read
    del plain
    first, second = rings._view(var), rings._view(var)
    assert address(first) == address(second)                 # no copy
    assert first[:3, 0, 0].tolist() == [0.0, 1.0, 2.0]
    step(tf.fill((2, 3), 7.0))                               # written while a view is alive
    assert first[3, 0, 0] == 0.0 and rings._view(var)[3, 0, 0] == 7.0
    assert [row["v"][0, 0] for row in ring.read(4)] == [0.0, 1.0, 2.0, 7.0]
