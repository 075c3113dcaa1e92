"""The recorder: the one place hooks hand framework-neutral step records to.

Hooks (``hooks/keras/``, ``hooks/torch/``, ``hooks/numpy/``) turn framework
events into plain NumPy arrays and call :meth:`Recorder.record_step` once per
iteration. The recorder copies each array once into a columnar buffer
(:mod:`tracer.buffers`, :mod:`tracer.capture`) and builds a :class:`tracer.Trace` on
demand. Because everything recorded so far is in those buffers, a run that raises
half-way still yields every completed step: call :meth:`Recorder.trace` in a ``finally``.

Memory: ``every=k`` records one step in k, ``capture="summary"`` keeps only per-step
scalars (loss, lr, gradient and update norms), and ``max_bytes`` is a budget for
everything the recorder holds (:attr:`Recorder.nbytes`: parameter, gradient, state and
prediction buffers with their preallocated space, batch rows, the copied data, the
per-step scalar columns and notes). ``max_bytes=None`` means unlimited and ``0`` means
zero; it is checked *before* a step is copied:

- without a store, a full capture that would pass the budget switches to summary
  capture (with a warning and a note), and data larger than the budget is not copied;
- with a store (:class:`tracer.store.StreamStore`), what is held is flushed to disk
  instead, so full capture goes on with memory bounded by the budget (a zero budget
  writes each step as soon as it is recorded). The per-step scalars of summary capture
  are counted but not bounded without a store (a few dozen bytes a step).

With a store, completed steps also go to disk every ``flush_every`` steps or
``flush_seconds`` seconds; :meth:`Recorder.close` flushes and marks the run finished,
and :meth:`Recorder.trace` reads the trace back from the store.
"""
from __future__ import annotations

import sys
import time
import warnings

import numpy as np

from . import chunk_pool
from .arrays import TraceArrays, as_2d, column_names
from .budget_room import Room, check_max_bytes
from .buffers import RowBuffer, ScalarColumns, scalar_value as _scalar
from .capture import FullBuffers, initial_capacity
from .hot_rows import HotRows
from .errors import TraceInputError
from . import store_slice
from .store import open_store
from .trace import _BUILDERS, Trace, _data_frame

__all__ = ["Recorder", "as_2d", "column_names", "initial_capacity", "CAPTURE_MODES", "DEFAULT_MAX_BYTES"]

CAPTURE_MODES = ("full", "summary")
#: the default memory budget of a recording (2 GiB); None means unlimited, 0 means zero
DEFAULT_MAX_BYTES = 2 * 1024**3
#: what a flushed chunk's tables cost, in their own bytes, when a run is read back and
#: checked (see :mod:`tracer.store_slice`): with a store that does not spill, the budget
#: counts each flushed byte this many times.
READBACK_COPIES = store_slice.READBACK_COPIES
#: ... and each byte still held in the buffers this many times (the same 26 MiB a step for
#: 1.9 MiB of float32 buffers: a value becomes a long-format table row, then the above)
READBACK_FACTOR = 14


class Recorder(HotRows):
    """Collects training steps as columnar buffers and builds a :class:`Trace`.

    Parameters
    ----------
    meta:
        Framework-neutral description of what is trained (see :mod:`tracer.meta`).
    every:
        Record one step in ``every`` (1 = all). Steps are still counted.
    capture:
        ``"full"`` (values, gradients, predictions) or ``"summary"`` (scalars only).
    max_bytes:
        Memory budget of everything recorded (None: unlimited; 0: nothing is kept in
        memory). Past it a full capture spills to ``store``, or without one falls back
        to summary.
    store:
        A :class:`tracer.store.StreamStore` (or a function returning one) that receives
        completed steps as they are flushed; the trace is then the store's directory.
    """

    #: ``steps`` columns the recorder fills itself; ``extra`` may not name them
    RESERVED = frozenset({"epoch", "batch", "step", "batch_size", "loss", "lr"})

    def __init__(self, meta: dict | None = None, *, every: int = 1, capture: str = "full",
                 max_bytes: int | None = DEFAULT_MAX_BYTES, store=None):
        if not isinstance(every, int) or every < 1:
            raise TraceInputError(f"every: expected a positive integer, got {every!r}")
        if capture not in CAPTURE_MODES:
            raise TraceInputError(f"capture: expected one of {CAPTURE_MODES}, got {capture!r}")
        self.meta: dict = dict(meta or {})
        self.every = every
        self.capture = capture
        self.max_bytes = check_max_bytes(max_bytes)
        self.store = store = open_store(store)
        self._flushed_bytes = 0      # bytes of full capture written to the store so far
        self.steps_seen = 0          # every step the run made, recorded or not
        self._inputs = None
        self._targets = None
        self._data_shape: tuple | None = None     # (rows, inputs, targets) once declared
        self._steps = ScalarColumns()
        self._epochs = ScalarColumns()
        chunk = RowBuffer.CHUNK_BYTES if self.max_bytes is None else max(1, min(self.max_bytes, RowBuffer.CHUNK_BYTES))
        self._full = FullBuffers(chunk, chain=every == 1)   # every=k > 1: recorded steps never chain
        self._room = Room()          # the budget check's cached bound (:mod:`tracer.budget_room`)
        self._notes: list[str] = []
        self._notes_bytes = 0
        self._last_epoch: int | None = None
        self._closed = False
        self._started = time.time()
        # how many recorded steps were handed each quantity: a NaN then means a real NaN,
        # not "not recorded" (the buffers use NaN for both)
        self._given = {"loss": 0, "y_pred": 0, "grads": {}}
        if store is not None:
            store.open(self._meta_snapshot())

    # ------------------------------------------------------------------ data
    def set_data(self, inputs: np.ndarray, targets: np.ndarray) -> None:
        """Declare the training rows once: ``inputs`` (n, k) and ``targets`` (n, m).

        With a store the rows go to disk at once and are not kept in memory; without
        one, rows that would pass ``max_bytes`` are not copied (a warning and a note say
        so, and the trace has no data table).
        """
        x = as_2d("inputs", inputs)
        y = as_2d("targets", targets)
        if x.shape[0] != y.shape[0]:
            raise TraceInputError(
                f"inputs and targets: expected the same number of rows, got {x.shape[0]} and {y.shape[0]}")
        self._data_shape = (x.shape[0], x.shape[1], y.shape[1])
        if self.store is not None:
            self.store.write_data(_data_frame(TraceArrays(inputs=x, targets=y), self.meta))
            return
        if self.max_bytes is not None and self.nbytes + x.nbytes + y.nbytes > self.max_bytes:
            self._say(f"steptrace: the training data ({x.nbytes + y.nbytes} bytes) would pass "
                      f"max_bytes={self.max_bytes}; it is not kept (the trace has no data table)", stacklevel=2)
            return
        self._inputs, self._targets = chunk_pool.copy(x), chunk_pool.copy(y)   # fresh pages cost more than the copy

    @property
    def n_rows(self) -> int | None:
        """Number of training rows declared with :meth:`set_data` (None if not declared)."""
        return None if self._data_shape is None else self._data_shape[0]

    # ----------------------------------------------------------------- steps
    def should_record(self, step: int | None = None) -> bool:
        """Whether global step ``step`` (default: the next one) will be recorded.

        Hooks call this before copying anything, so skipped steps cost nothing.
        """
        step = self.steps_seen + 1 if step is None else step
        return (step - 1) % self.every == 0

    @property
    def current_epoch(self) -> int | None:
        """The epoch of the last recorded step (None before the first), for progress lines."""
        return self._last_epoch

    @property
    def full(self) -> bool:
        """True while values, gradients and predictions are captured (not summary)."""
        return self.capture == "full"

    def record_step(self, *, epoch: int, batch: int, params_before: dict, params_after: dict,
                    grads: dict | None = None, rows: np.ndarray | None = None, y_pred: np.ndarray | None = None, loss: float | None = None, lr: float | None = None,
                    batch_size: int | None = None, state: dict | None = None,
                    logs: dict | None = None, extra: dict | None = None, micro: np.ndarray | None = None) -> int:
        """Record one iteration and return its global step number (from 1).

        ``micro`` (gradient accumulation): the micro-step (0, 1, ...) of each batch row
        when the step's gradient accumulated several backward passes; ``rows`` and
        ``y_pred`` then hold every micro-batch's rows in order and ``loss`` the sum of the
        micro-batch losses that were backpropagated.

        ``params_before``/``params_after``/``grads`` map parameter names to arrays;
        ``state`` maps parameter name -> {slot name -> array of the parameter's shape}
        (the optimizer state after the step); ``rows`` are 0-based row positions of
        the batch in the declared data; ``y_pred`` the predictions made before the
        update, one row per batch row; ``logs`` what the framework logged for this
        batch; ``extra`` any other per-step scalars.
        """
        if self._closed:
            raise TraceInputError("record_step: the recorder is closed (Recorder.close() was called)")
        self.steps_seen += 1
        step = self.steps_seen
        if not self.should_record(step):
            return step
        rows = self._check_step(params_before, params_after, rows, extra)
        if batch_size is None:
            batch_size = (rows.size if rows is not None else
                          (np.shape(y_pred)[0] if y_pred is not None and np.ndim(y_pred) else np.nan))
        self._count_given(loss, y_pred, grads)
        row = {"epoch": int(epoch), "batch": int(batch), "step": step, "batch_size": batch_size,
               "loss": np.nan if loss is None else float(loss),
               "lr": np.nan if lr is None else float(lr)}
        if logs:
            for key, value in logs.items():
                row["logged_" + key] = _scalar(value)
        if extra:
            row.update({k: _scalar(v) for k, v in extra.items()})
        if self.capture == "full":
            self._make_room(step, params_before, state, rows, y_pred, micro)
        if self.capture == "full":
            self._full.record(step, params_before, params_after, grads, rows, y_pred, state, micro)
        else:
            self._record_summary(row, params_before, params_after, grads)
        self._steps.add_row(row)
        self._last_epoch = int(epoch)
        if self.store is not None and (self.store.due(self._steps.n) or self._over_budget()):
            self.flush()
        return step

    def _check_step(self, params_before, params_after, rows, extra):
        if extra and not self.RESERVED.isdisjoint(extra):
            raise TraceInputError(f"extra: {sorted(self.RESERVED.intersection(extra))[0]!r} is a steps column "
                                  f"the recorder fills itself; give the value another name")
        if not isinstance(params_before, dict) or not isinstance(params_after, dict):
            raise TraceInputError("params_before and params_after: expected dicts of name -> array")
        if set(params_before) != set(params_after):
            raise TraceInputError(
                f"params_before and params_after: expected the same names, got {sorted(params_before)} "
                f"and {sorted(params_after)}")
        if rows is None:
            return None
        rows = np.asarray(rows).reshape(-1)
        n = self.n_rows
        wide = rows.dtype.kind in "iu" and rows.dtype.itemsize == 8    # one reduction: negatives read unsigned pass n
        if n is not None and rows.size and (rows.view(np.uint64).max() >= n if wide
                                            else rows.min() < 0 or rows.max() >= n):
            raise TraceInputError(f"rows: expected positions in 0..{n - 1}, got {rows.min()}..{rows.max()}")
        return rows

    def _over_budget(self, extra: int = 0) -> bool:
        """Whether what is held in memory (plus ``extra``; with a spilling store, what
        flushing it costs) passes the budget."""
        spilling = self.store is not None and self.store.spill
        return self.max_bytes is not None and (self.kept_bytes if spilling else self.nbytes) + extra > self.max_bytes

    @property
    def kept_bytes(self) -> int:
        """What the budget bounds: without a store, the bytes held; with a store that
        spills, what flushing them costs (their chunk's tables built and written:
        :data:`READBACK_FACTOR` times, measured: a 95 MiB flush of the bench's MLP peaked
        at 925 MiB over the untraced run); with one that does not, also what the flushed
        chunks will cost when the run is read back whole (:data:`READBACK_COPIES` times)."""
        return self._kept(self.nbytes)

    def _kept(self, held: int) -> int:
        """:attr:`kept_bytes` were :attr:`nbytes` ``held`` (monotone in it)."""
        if self.store is None:
            return held
        return held * READBACK_FACTOR + (0 if self.store.spill else self._flushed_bytes)

    @property
    def growth_factor(self) -> int:
        """What one more byte copied adds to :attr:`kept_bytes`: 1 without a store, else
        :data:`READBACK_FACTOR` (its chunk's tables are built and written when flushed)."""
        return 1 if self.store is None else READBACK_FACTOR

    def _make_room(self, step, before, state, rows, y_pred, micro=None) -> None:
        """Before copying a full step: spill to the store, or fall back to summary, when
        the copy would pass the budget (far from it, a cached bound answers: :mod:`.budget_room`)."""
        if self.max_bytes is None or self._room.fits(self, before, state, rows, y_pred, micro):
            return
        growth = self._full.growth(before, state, rows, y_pred)
        if self.kept_bytes + self.growth_factor * growth <= self.max_bytes:
            self._room.learn(self, before, state, rows, y_pred, micro, growth)
            return
        if self.store is not None and self.store.spill:
            self.flush()        # a step larger than the whole budget is flushed right after it is copied
        else:
            self._fall_back_to_summary(step)

    def _record_summary(self, row, before, after, grads):
        for name, value in before.items():
            b = np.asarray(value, dtype=np.float64)
            a = np.asarray(after[name], dtype=np.float64)
            row["value_norm_" + name] = float(np.linalg.norm(b))
            row["update_norm_" + name] = float(np.linalg.norm(a - b))
            g = None if grads is None else grads.get(name)
            row["grad_norm_" + name] = np.nan if g is None else float(np.linalg.norm(np.asarray(g, np.float64)))

    def _fall_back_to_summary(self, step):
        self._say(f"steptrace: recording step {step} in full would pass max_bytes={self.max_bytes}; "
                  f"recording only per-step summaries from step {step} on", stacklevel=4)
        self.capture = "summary"

    def _say(self, msg: str, stacklevel: int) -> None:
        """Warn (pointing at the caller of the public method) and keep the message as a note."""
        warnings.warn(msg, RuntimeWarning, stacklevel=stacklevel + 1)
        self.note(msg)

    def record_epoch(self, epoch: int, logs: dict | None = None) -> None:
        """Record what the framework logged at the end of ``epoch`` (from 1)."""
        row = {"epoch": int(epoch)}
        for key, value in (logs or {}).items():
            row["logged_" + key] = _scalar(value)
        self._epochs.add_row(row)

    def note(self, message: str) -> None:
        """Attach a human-readable note to the trace (kept in ``meta['notes']``)."""
        self._notes.append(message)
        self._notes_bytes += sys.getsizeof(message) + 8

    # ----------------------------------------------------------------- output
    @property
    def nbytes(self) -> int:
        """Bytes held by the recorder: value, state, prediction and row buffers (with their
        preallocated space), the copied data, the per-step scalar columns and the notes."""
        return self._full.nbytes + self._scalar_bytes()

    def _scalar_bytes(self) -> int:
        """:attr:`nbytes` but the full-capture buffers (attributes only: cheap to ask every step)."""
        data = 0 if self._inputs is None else self._inputs.nbytes + self._targets.nbytes
        return self._steps.nbytes + self._epochs.nbytes + self._notes_bytes + data

    def _meta_snapshot(self) -> dict:
        meta = dict(self.meta)
        meta["capture"] = {**(meta.get("capture") or {}), "mode": self.capture, "every": self.every,
                           "steps_seen": self.steps_seen,
                           "given": {"loss": self._given["loss"], "y_pred": self._given["y_pred"],
                                     "grads": dict(self._given["grads"])}}
        if self._notes:
            meta["notes"] = list(meta.get("notes") or []) + self._notes
        if self._data_shape is not None and (self._inputs is not None or self.store is not None):
            n, k, m = self._data_shape
            meta["data"] = {**(meta.get("data") or {}), "n_rows": int(n),
                            "inputs": column_names("x", k), "targets": column_names("y", m)}
        # the recorded shapes, keeping what the hook said of each parameter (e.g. its dtype
        # when the values were widened for recording: bfloat16 kept as float32)
        declared = {p.get("name"): p for p in meta.get("params") or [] if isinstance(p, dict)}
        meta["params"] = [{**declared.get(n, {}), "name": n, "shape": list(shape)}
                          for n, shape in self._full.shapes.items()] or meta.get("params", [])
        return meta

    def _count_given(self, loss, y_pred, grads) -> None:
        given = self._given
        if loss is not None:
            given["loss"] += 1
        if y_pred is not None:
            given["y_pred"] += 1
        for name, g in (grads or {}).items():
            if g is not None:
                given["grads"][name] = given["grads"].get(name, 0) + 1

    def _arrays(self, with_data: bool = True):
        keep = with_data and self._inputs is not None
        return TraceArrays(inputs=self._inputs[:] if keep else None,
                           targets=self._targets[:] if keep else None,
                           steps=self._steps.as_dict(), epochs=self._epochs.as_dict(), **self._full.parts())

    @property
    def held_steps(self) -> int:
        """Steps recorded and not yet flushed to the store: a hook that hands steps over in
        batches reads this to hand them over before a flush falls due, not after it."""
        return self._steps.n

    def flush(self) -> int:
        """Write the steps held in memory to the store as one chunk and forget them.

        Returns the number of steps written (0 without a store or with nothing held).
        A later phase's signal handler calls this before the process exits.
        """
        if self.store is None or (self._steps.n == 0 and self._epochs.n == 0):
            return 0
        arrays, meta = self._arrays(with_data=False), self._meta_snapshot()
        tables = {name: _BUILDERS[name](arrays, meta) for name in ("steps", "samples", "params", "epochs")}
        self.store.write_chunk(tables, meta)
        n = self._steps.n
        # what this chunk costs when the run is read back whole: its tables, held READBACK_COPIES times
        self._flushed_bytes += READBACK_COPIES * int(sum(t.memory_usage(index=False).sum() for t in tables.values()))
        self._full.drain()
        self._steps, self._epochs = ScalarColumns(), ScalarColumns()
        return n

    def close(self) -> None:
        """Flush and mark the store's run finished (no-op without a store). Idempotent."""
        if self.store is not None and not self._closed:
            self.flush()
            self.store.close(self._meta_snapshot())
        self._closed = True

    def trace(self) -> Trace:
        """Build a :class:`tracer.Trace` from everything recorded so far (a snapshot).

        Without a store the trace's arrays are views of the recorder's buffers where they
        can be (no copy of the recording): steps recorded later do not show in it, but
        writing into its arrays writes into the recording.

        With a store, what is held is flushed first and the trace is read back from the
        store's directory (see :meth:`tracer.Trace.load`).
        """
        if self.store is not None:
            if not self._closed:
                self.flush()
            # a spilling store's run is read back within its ``readback_bytes`` (None: whole)
            return Trace.load(self.store.path, max_bytes=self.store.readback_bytes if self.store.spill else None)
        return Trace(arrays=self._arrays(), meta=self._meta_snapshot())
