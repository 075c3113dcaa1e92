"""A Keras run recorded K steps at a time (:meth:`tracer.Recorder.record_steps`, the rings'
blocks) equals the same run recorded step by step, bit for bit: tables, meta, the chain
evidence of each parameter - at the ring's wrap, across a recorder chunk boundary, with an
epoch's end inside the K steps, in a fit interrupted mid-ring, and with a planted write to
the weights between steps (which the block must notice, as the step path does).

Why: the block path is a shortcut of the step path; its twin here is the step path itself
(``_block_fits`` forced False, and each batch's rows matched alone), and each test also
asserts that the shortcuts were taken (the first block makes the buffers: step by step).
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest

from _keras_cases import StopAt
from hooks.keras import TraceCallback, rings
from hooks.rows import RowMatcher
from tracer import step_block
from tracer.buffers import RowBuffer

pytestmark = pytest.mark.keras


def _data(n=44):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, (x @ np.array([[1.5], [-2.0], [0.5]]) + 0.3).astype("float32")


class _Nudge(keras.callbacks.Callback):
    """Writes into the first kernel before global step ``at`` (a write outside the step)."""

    def __init__(self, at):
        super().__init__()
        self.at, self.n = at, 0

    def on_train_batch_begin(self, batch, logs=None):
        self.n += 1
        if self.n == self.at:
            k = self.model.layers[0].kernel
            k.assign(k.numpy() + np.float32(0.25))


def _run(monkeypatch, blocks: bool, callbacks=(), max_rows=5):
    """One traced fit (18 steps of 6 per epoch, the last batch of 4 rows, rings of ``max_rows``
    steps); ``blocks`` False records every step through ``record_step``."""
    taken = []
    real = step_block._block_fits

    def fits(*a):
        ok = blocks and real(*a)
        taken.append(ok)
        return ok

    monkeypatch.setattr(step_block, "_block_fits", fits)
    real_match = RowMatcher.match_batches

    def match_batches(self, batches):
        rows = real_match(self, batches) if blocks else None
        matched.append(rows is not None)
        return rows

    matched: list = []
    monkeypatch.setattr(RowMatcher, "match_batches", match_batches)
    monkeypatch.setattr(rings, "MAX_ROWS", max_rows)
    keras.backend.clear_session()             # the same layer names in both runs
    keras.utils.set_random_seed(4)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    cb = TraceCallback()
    x, y = _data()
    try:
        model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[cb, *callbacks])
    except RuntimeError as exc:
        assert "planted" in str(exc)
    taken.extend(["matched"] * sum(matched))      # blocks whose rows were matched at once
    return cb.trace, taken


def _same(a, b) -> None:
    for name in ("steps", "samples", "params", "epochs"):
        ta, tb = getattr(a, name), getattr(b, name)
        assert list(ta.columns) == list(tb.columns) and ta.shape == tb.shape, name
        for col in ta.columns:
            va, vb = ta[col].to_numpy(), tb[col].to_numpy()
            if va.dtype.kind == "f":
                assert va.tobytes() == vb.tobytes(), (name, col)
            else:
                assert list(va) == list(vb), (name, col)
    for key in ("capture", "notes"):
        assert a.meta.get(key) == b.meta.get(key), key
    assert [p["shape"] for p in a.meta["params"]] == [p["shape"] for p in b.meta["params"]]
    assert a.param_names == b.param_names
    for pa, pb in zip(a.param_names, b.param_names):
        for which in ("before", "after", "grad"):
            assert a.param_values(pa, which).tobytes() == b.param_values(pb, which).tobytes(), (pa, which)


@pytest.mark.parametrize("chunk_bytes", [None, 256])       # 256: four kernel rows per recorder chunk
def test_blocks_equal_steps_at_wraps_chunk_boundaries_and_epoch_ends(monkeypatch, chunk_bytes):
    if chunk_bytes:
        monkeypatch.setattr(RowBuffer, "CHUNK_BYTES", chunk_bytes)
    a, taken = _run(monkeypatch, True)
    b, never = _run(monkeypatch, False)
    assert sum(t is True for t in taken) >= 3 and taken.count("matched") >= 3 and not any(never)
    assert list(a.steps["step"]) == list(range(1, 19))
    _same(a, b)


@pytest.mark.parametrize("at", [4, 8, 13])
def test_a_fit_interrupted_mid_ring_keeps_the_same_steps(monkeypatch, at):
    a, taken = _run(monkeypatch, True, [StopAt(at)])
    b, _ = _run(monkeypatch, False, [StopAt(at)])
    assert list(a.steps["step"]) == list(range(1, at + 1)) and (any(taken) or at < 8)
    _same(a, b)


def test_a_write_between_steps_inside_a_block_breaks_the_chain_as_step_by_step(monkeypatch):
    a, taken = _run(monkeypatch, True, [_Nudge(9)])
    b, _ = _run(monkeypatch, False, [_Nudge(9)])
    clean, _ = _run(monkeypatch, True)
    assert any(taken)
    _same(a, b)
    name = a.param_names[0]
    before, after = a.param_values(name, "before"), a.param_values(name, "after")
    gap = before[8] - after[7]                    # step 9's before is step 8's after plus the write
    np.testing.assert_allclose(gap, 0.25, rtol=1e-5)
    cb_, ca_ = clean.param_values(clean.param_names[0], "before"), clean.param_values(clean.param_names[0], "after")
    assert cb_[1:].tobytes() == ca_[:-1].tobytes()     # the clean twin chains
