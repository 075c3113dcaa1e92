"""The streaming store: flushed chunks on disk, readable finished or interrupted.

The finished store reads back equal to the same run recorded in memory (the clean twin);
planted damage (a flush in progress, an unreadable chunk, a full disk, a second writer,
a link, a non-empty directory) is survived or refused; a subprocess recording in a loop
is SIGKILLed at a random moment and every step up to its last flush is read back with
the values it recorded.
"""
from __future__ import annotations

import errno
import os
import random
import time

import numpy as np
import pandas.testing as pdt
import pytest

import tracer.store
from _sigkill import kill_at_random
from tracer import Recorder, Trace
from tracer.errors import TraceFileError, TraceInputError
from tracer.store import StreamStore



def _run(rec: Recorder, steps: int = 10) -> Recorder:
    """A run with a parameter that appears at step 5, a state slot from step 7, epochs."""
    rec.set_data(np.arange(20.0).reshape(10, 2), np.arange(10.0))
    for s in range(steps):
        before = {"w": np.full((2, 1), s * 0.5, np.float32)}
        if s >= 4:
            before["late"] = np.array([s * 1.0])
        after = {k: v + 1 for k, v in before.items()}
        rec.record_step(epoch=1 + s // 4, batch=1 + s % 4, params_before=before, params_after=after,
                        grads={k: v * 2 for k, v in before.items()}, rows=[s % 10, (s + 3) % 10],
                        y_pred=np.array([[s], [s + 0.5]]), loss=float(s), lr=0.1,
                        state={"w": {"m": before["w"] * 3}} if s >= 6 else None,
                        logs={"loss": s / 2}, extra={"opt_step": s + 1})
        if s % 4 == 3:
            rec.record_epoch(1 + s // 4, {"loss": float(s)})
    return rec


def test_finished_store_reads_back_equal_to_the_in_memory_run(tmp_path):
    memory = _run(Recorder({"framework": "numpy"})).trace()
    store = StreamStore(tmp_path / "run.trace", flush_every=3, flush_seconds=None)
    rec = _run(Recorder({"framework": "numpy"}, store=store))
    rec.close()
    assert store.chunks == 4 and store.steps_written == 10
    back = Trace.load(tmp_path / "run.trace")
    for name in ("data", "steps", "samples", "params", "epochs"):
        pdt.assert_frame_equal(getattr(back, name), getattr(memory, name))
    np.testing.assert_array_equal(back.param_values("w", "m"), memory.param_values("w", "m"))
    assert back.param_names == ["w", "late"] and back.meta["capture"]["steps_seen"] == 10
    assert "notes" not in back.meta
    pdt.assert_frame_equal(rec.trace().params, back.params)


def test_interrupted_store_reads_up_to_its_last_chunk_and_says_so(tmp_path):
    store = StreamStore(tmp_path / "run.trace", flush_every=4, flush_seconds=None)
    _run(Recorder({"framework": "numpy"}, store=store))          # 10 steps, never closed
    back = Trace.load(tmp_path / "run.trace")
    assert back.steps["step"].tolist() == list(range(1, 9))       # 2 chunks of 4; 2 steps unflushed
    np.testing.assert_array_equal(back.param_values("late", "before")[:, 0], [np.nan] * 4 + [4, 5, 6, 7])
    assert back.meta["notes"][0].startswith(
        "unfinished run (interrupted, or still recording): read 8 recorded steps (up to step 8) from 2 flushed")


def test_time_based_flush(tmp_path):
    store = StreamStore(tmp_path / "run.trace", flush_every=1000, flush_seconds=5)
    assert not store.due(3, now=time.monotonic())
    assert store.due(3, now=time.monotonic() + 6) and not store.due(0, now=time.monotonic() + 6)
    store = StreamStore(tmp_path / "run2.trace", flush_every=1000, flush_seconds=0)
    _run(Recorder({"framework": "numpy"}, store=store), steps=5)
    assert store.chunks == 5


def test_a_flush_in_progress_and_a_damaged_chunk(tmp_path):
    path = tmp_path / "run.trace"
    _run(Recorder({"framework": "numpy"}, store=StreamStore(path, flush_every=2, flush_seconds=None)))
    tmp = path / "chunks" / ".000006.tmp-abc"            # a kill in the middle of a flush
    tmp.mkdir()
    (tmp / "steps.parquet").write_bytes(b"PAR1 half")
    assert Trace.load(path).n_steps == 10
    steps = path / "chunks" / "000004" / "steps.parquet"
    steps.write_bytes(steps.read_bytes()[:40])            # damage: chunk 4 of an interrupted run
    back = Trace.load(path)
    assert back.n_steps == 6 and "stream chunk 000004 is unreadable" in back.meta["notes"][1]


def test_a_damaged_chunk_of_a_finished_run_is_an_error(tmp_path):
    path = tmp_path / "run.trace"
    rec = _run(Recorder({"framework": "numpy"}, store=StreamStore(path, flush_every=5, flush_seconds=None)))
    rec.close()
    (path / "chunks" / "000002" / "params.parquet").write_bytes(b"junk")
    with pytest.raises(TraceFileError, match=r"chunks/000002/params.parquet is corrupt or not Parquet"):
        Trace.load(path)


def test_full_disk_during_a_flush_keeps_earlier_chunks(tmp_path, monkeypatch):
    path = tmp_path / "run.trace"
    store = StreamStore(path, flush_every=3, flush_seconds=None)
    rec = Recorder({"framework": "numpy"}, store=store)
    real = tracer.store.write_table

    def fill_up(frame, file):
        if store.chunks == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(frame, file)
    monkeypatch.setattr(tracer.store, "write_table", fill_up)
    with pytest.raises(TraceFileError, match="^cannot write chunk 3 of .*: No space left on device$"):
        _run(rec)
    assert sorted(os.listdir(path / "chunks")) == ["000001", "000002"]
    assert Trace.load(path).n_steps == 6


def test_the_store_never_writes_over_anything(tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "results.csv").write_text("earlier")
    with pytest.raises(TraceFileError, match="exists and is not empty"):
        Recorder({}, store=StreamStore(taken))
    assert (taken / "results.csv").read_text() == "earlier"
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(TraceFileError, match="symbolic link"):
        Recorder({}, store=StreamStore(link))
    assert not (tmp_path / "elsewhere").exists()
    (tmp_path / "shared").mkdir()
    Recorder({}, store=StreamStore(tmp_path / "shared"))           # an empty directory is fine
    with pytest.raises(TraceFileError, match="another writer holds it|exists and is not empty"):
        Recorder({}, store=StreamStore(tmp_path / "shared"))
    with pytest.raises(TraceInputError, match="flush_every"):
        StreamStore(tmp_path / "x", flush_every=0)


def test_sigkill_at_a_random_moment_keeps_every_flushed_step(tmp_path):
    seed = random.randrange(10**6)
    moment = random.Random(seed).uniform(0.2, 1.2)
    every = 7
    last = kill_at_random(tmp_path / "run.trace", every, moment)
    back = Trace.load(tmp_path / "run.trace")
    n = back.n_steps
    assert last // every * every <= n <= last + every and n % every == 0, (seed, last, n)
    s = np.arange(1, n + 1)
    np.testing.assert_array_equal(back.steps["step"], s)
    np.testing.assert_array_equal(back.steps["loss"], s.astype(float))
    w = back.param_values("w", "before")
    np.testing.assert_array_equal(w[:, 0, 0], s * 0.5)
    np.testing.assert_array_equal(w[:, 1, 0], -s * 0.25)
    np.testing.assert_array_equal(back.param_values("w", "grad")[:, 1, 0], -s * 0.5)
    np.testing.assert_array_equal(back.samples["y_pred"], s * 1.5)
    assert back.data.shape == (10, 4)
    assert back.meta["notes"][0].startswith(f"unfinished run (interrupted, or still recording): read {n} recorded")
