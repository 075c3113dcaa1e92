"""The recorder: the one place hooks hand framework-neutral step records to.

Hooks (``hooks/keras/``, ``hooks/torch/``, ``hooks/numpy.py``) turn framework
events into plain NumPy arrays and call :meth:`Recorder.record_step` once per
iteration. The recorder copies each array once into a columnar buffer
(:mod:`tracer.buffers`) and builds a :class:`tracer.Trace` on demand. Because
everything recorded so far is in those buffers, a run that raises half-way still
yields every completed step: call :meth:`Recorder.trace` in a ``finally``.

Memory stays bounded: ``every=k`` records one step in k, ``capture="summary"``
keeps only per-step scalars (loss, lr, gradient and update norms), and
``max_bytes`` switches a full capture to summary, with a warning, when the
buffers would grow past it.
"""
from __future__ import annotations

import math
import time
import warnings

import numpy as np

from .arrays import TraceArrays, as_2d, column_names
from .buffers import RowBuffer, ScalarColumns
from .errors import TraceInputError
from .trace import Trace

CAPTURE_MODES = ("full", "summary")
DEFAULT_MAX_BYTES = 2 * 1024**3


def initial_capacity(size: int, dtype) -> int:
    """Rows to preallocate: 64 for small parameters, fewer for big ones (about 1 MB)."""
    return int(max(1, min(64, (1 << 20) // max(1, size * np.dtype(dtype).itemsize))))


class _ParamBuffers:
    __slots__ = ("shape", "size", "dtype", "before", "grad", "after", "slots")

    def __init__(self, shape, dtype):
        self.shape = tuple(int(s) for s in shape)
        self.size = int(np.prod(self.shape, dtype=np.int64))
        self.dtype = np.dtype(dtype) if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)
        cap = initial_capacity(self.size, self.dtype)
        self.before = RowBuffer(self.size, self.dtype, cap)
        self.grad = RowBuffer(self.size, self.dtype, cap)
        self.after = RowBuffer(self.size, self.dtype, cap)
        self.slots: dict[str, RowBuffer] = {}

    @property
    def nbytes(self) -> int:
        return self.before.nbytes + self.grad.nbytes + self.after.nbytes + sum(
            b.nbytes for b in self.slots.values())


class Recorder:
    """Collects training steps as columnar buffers and builds a :class:`Trace`.

    Parameters
    ----------
    meta:
        Framework-neutral description of what is trained (see ``tracer.meta``).
    every:
        Record one step in ``every`` (1 = all). Steps are still counted.
    capture:
        ``"full"`` (values, gradients, predictions) or ``"summary"`` (scalars only).
    max_bytes:
        Memory budget of the buffers; past it a full capture falls back to summary.
    """

    def __init__(self, meta: dict | None = None, *, every: int = 1, capture: str = "full",
                 max_bytes: int | None = DEFAULT_MAX_BYTES):
        if not isinstance(every, int) or every < 1:
            raise TraceInputError(f"every: expected a positive integer, got {every!r}")
        if capture not in CAPTURE_MODES:
            raise TraceInputError(f"capture: expected one of {CAPTURE_MODES}, got {capture!r}")
        self.meta: dict = dict(meta or {})
        self.every = every
        self.capture = capture
        self.max_bytes = max_bytes
        self.steps_seen = 0          # every step the run made, recorded or not
        self._inputs = None
        self._targets = None
        self._steps = ScalarColumns()
        self._epochs = ScalarColumns()
        self._sample_step = RowBuffer(1, np.int64, 256)
        self._sample_row = RowBuffer(1, np.int64, 256)
        self._sample_pred: RowBuffer | None = None
        self._params: dict[str, _ParamBuffers] = {}
        self._param_step = RowBuffer(1, np.int64, 256)
        self._notes: list[str] = []
        self._started = time.time()
        # how many recorded steps were handed each quantity: a NaN then means a real NaN,
        # not "not recorded" (the buffers use NaN for both)
        self._given = {"loss": 0, "y_pred": 0, "grads": {}}

    # ------------------------------------------------------------------ data
    def set_data(self, inputs, targets) -> None:
        """Declare the training rows once: ``inputs`` (n, k) and ``targets`` (n, m)."""
        x = as_2d("inputs", inputs)
        y = as_2d("targets", targets)
        if x.shape[0] != y.shape[0]:
            raise TraceInputError(
                f"inputs and targets: expected the same number of rows, got {x.shape[0]} and {y.shape[0]}")
        self._inputs = np.array(x, copy=True)
        self._targets = np.array(y, copy=True)

    @property
    def n_rows(self) -> int | None:
        """Number of training rows declared with :meth:`set_data` (None if not declared)."""
        return None if self._inputs is None else self._inputs.shape[0]

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
        epoch = self._steps.last("epoch")
        return None if epoch is None else int(epoch)

    @property
    def full(self) -> bool:
        """True while values, gradients and predictions are captured (not summary)."""
        return self.capture == "full"

    def record_step(self, *, epoch: int, batch: int, params_before: dict, params_after: dict,
                    grads: dict | None = None, rows=None, y_pred=None, loss=None, lr=None,
                    batch_size: int | None = None, state: dict | None = None,
                    logs: dict | None = None, extra: dict | None = None) -> int:
        """Record one iteration and return its global step number (from 1).

        ``params_before``/``params_after``/``grads`` map parameter names to arrays;
        ``state`` maps parameter name -> {slot name -> array of the parameter's shape}
        (the optimizer state after the step); ``rows`` are 0-based row positions of
        the batch in the declared data; ``y_pred`` the predictions made before the
        update, one row per batch row; ``logs`` what the framework logged for this
        batch; ``extra`` any other per-step scalars.
        """
        self.steps_seen += 1
        step = self.steps_seen
        if not self.should_record(step):
            return step
        if not isinstance(params_before, dict) or not isinstance(params_after, dict):
            raise TraceInputError("params_before and params_after: expected dicts of name -> array")
        if set(params_before) != set(params_after):
            raise TraceInputError(
                f"params_before and params_after: expected the same names, got {sorted(params_before)} "
                f"and {sorted(params_after)}")
        if rows is not None:
            rows = np.asarray(rows).reshape(-1)
            if self._inputs is not None and rows.size and (rows.min() < 0 or rows.max() >= self._inputs.shape[0]):
                raise TraceInputError(
                    f"rows: expected positions in 0..{self._inputs.shape[0] - 1}, got {rows.min()}..{rows.max()}")
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
            self._record_full(step, params_before, params_after, grads, rows, y_pred, state)
            if self.max_bytes is not None and self.nbytes > self.max_bytes:
                self._fall_back_to_summary(step)
        else:
            self._record_summary(row, params_before, params_after, grads)
        self._steps.add_row(row)
        return step

    def _count_given(self, loss, y_pred, grads):
        given = self._given
        if loss is not None:
            given["loss"] += 1
        if y_pred is not None:
            given["y_pred"] += 1
        if grads:
            for name, g in grads.items():
                if g is not None:
                    given["grads"][name] = given["grads"].get(name, 0) + 1

    def _record_full(self, step, before, after, grads, rows, y_pred, state):
        self._param_step.append(step)
        for name, value in before.items():
            buf = self._params.get(name)
            value = np.asarray(value)
            if buf is None:
                buf = self._params[name] = _ParamBuffers(value.shape, value.dtype)
                # pad a parameter first seen after step 1 so all stay aligned
                for _ in range(self._param_step.n - 1):
                    for b in (buf.before, buf.grad, buf.after):
                        b.append_fill(np.nan)
            if value.size != buf.size:
                raise TraceInputError(
                    f"params_before[{name!r}]: expected {buf.size} values (shape {buf.shape}), got shape {value.shape}")
            buf.before.append(value)
            after_value = np.asarray(after[name])
            if after_value.size != buf.size:
                raise TraceInputError(
                    f"params_after[{name!r}]: expected shape {buf.shape}, got {after_value.shape}")
            buf.after.append(after_value)
            grad = None if grads is None else grads.get(name)
            if grad is None:
                buf.grad.append_fill(np.nan)
            else:
                buf.grad.append(grad)
            slots = None if state is None else state.get(name)
            if slots:
                for slot, slot_value in slots.items():
                    sbuf = buf.slots.get(slot)
                    if sbuf is None:
                        sbuf = buf.slots[slot] = RowBuffer(buf.size, buf.dtype,
                                                           initial_capacity(buf.size, buf.dtype))
                        for _ in range(buf.before.n - 1):
                            sbuf.append_fill(np.nan)
                    sbuf.append(slot_value)
            for slot, sbuf in buf.slots.items():
                if sbuf.n < buf.before.n:
                    sbuf.append_fill(np.nan)
        for name, buf in self._params.items():
            if buf.before.n < self._param_step.n:      # a parameter absent from this step
                for b in (buf.before, buf.grad, buf.after, *buf.slots.values()):
                    b.append_fill(np.nan)
        if y_pred is not None:
            pred = as_2d("y_pred", y_pred)
            if rows is not None and rows.size != pred.shape[0]:
                raise TraceInputError(
                    f"y_pred: expected one row per batch row ({rows.size}), got {pred.shape[0]}")
            if self._sample_pred is None:
                self._sample_pred = RowBuffer(pred.shape[1], pred.dtype if np.issubdtype(
                    pred.dtype, np.floating) else np.float64, 256)
                if self._sample_step.n:          # rows recorded before the first predictions: NaN
                    self._sample_pred.extend(np.full((self._sample_step.n, pred.shape[1]), np.nan))
            self._sample_pred.extend(pred)
            k = pred.shape[0]
            self._sample_step.extend(np.full(k, step, dtype=np.int64))
            self._sample_row.extend(rows if rows is not None else np.full(k, -1, dtype=np.int64))
        elif rows is not None:
            self._sample_step.extend(np.full(rows.size, step, dtype=np.int64))
            self._sample_row.extend(rows)
            if self._sample_pred is not None:
                self._sample_pred.extend(np.full((rows.size, self._sample_pred.width), np.nan))

    def _record_summary(self, row, before, after, grads):
        for name, value in before.items():
            b = np.asarray(value, dtype=np.float64)
            a = np.asarray(after[name], dtype=np.float64)
            row["value_norm_" + name] = float(np.linalg.norm(b))
            row["update_norm_" + name] = float(np.linalg.norm(a - b))
            g = None if grads is None else grads.get(name)
            row["grad_norm_" + name] = np.nan if g is None else float(np.linalg.norm(np.asarray(g, np.float64)))

    def _fall_back_to_summary(self, step):
        msg = (f"steptrace: buffers passed max_bytes={self.max_bytes} at step {step}; "
               f"recording only per-step summaries from step {step + 1} on")
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        self._notes.append(msg)
        self.capture = "summary"

    def record_epoch(self, epoch: int, logs: dict | None = None) -> None:
        """Record what the framework logged at the end of ``epoch`` (from 1)."""
        row = {"epoch": int(epoch)}
        for key, value in (logs or {}).items():
            row["logged_" + key] = _scalar(value)
        self._epochs.add_row(row)

    def note(self, message: str) -> None:
        """Attach a human-readable note to the trace (kept in ``meta['notes']``)."""
        self._notes.append(message)

    # ----------------------------------------------------------------- output
    @property
    def nbytes(self) -> int:
        """Bytes held by the recording buffers."""
        total = sum(p.nbytes for p in self._params.values())
        total += self._sample_step.nbytes + self._sample_row.nbytes
        if self._sample_pred is not None:
            total += self._sample_pred.nbytes
        return total

    def trace(self) -> Trace:
        """Build a :class:`tracer.Trace` from everything recorded so far (a snapshot)."""
        meta = dict(self.meta)
        meta.setdefault("capture", {})
        meta["capture"] = {**meta.get("capture", {}), "mode": self.capture, "every": self.every,
                           "steps_seen": self.steps_seen,
                           "given": {"loss": self._given["loss"], "y_pred": self._given["y_pred"],
                                     "grads": dict(self._given["grads"])}}
        if self._notes:
            meta["notes"] = list(meta.get("notes", [])) + self._notes
        if self._inputs is not None:
            meta.setdefault("data", {})
            meta["data"] = {**meta["data"], "n_rows": int(self._inputs.shape[0]),
                            "inputs": column_names("x", self._inputs.shape[1]),
                            "targets": column_names("y", self._targets.shape[1])}
        meta["params"] = [{"name": n, "shape": list(p.shape)} for n, p in self._params.items()] or \
            meta.get("params", [])
        arrays = TraceArrays(
            inputs=None if self._inputs is None else self._inputs.copy(),
            targets=None if self._targets is None else self._targets.copy(),
            steps=self._steps.as_dict(),
            epochs=self._epochs.as_dict(),
            sample_step=self._sample_step.to_array()[:, 0],
            sample_row=self._sample_row.to_array()[:, 0],
            sample_pred=None if self._sample_pred is None else self._sample_pred.to_array(),
            param_step=self._param_step.to_array()[:, 0],
            params={n: {"shape": p.shape, "before": p.before.to_array(), "grad": p.grad.to_array(),
                        "after": p.after.to_array(),
                        "slots": {s: b.to_array() for s, b in p.slots.items()}}
                    for n, p in self._params.items()},
        )
        return Trace(arrays=arrays, meta=meta)


def _scalar(value):
    if isinstance(value, (float, int)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        pass
    try:
        return float(np.asarray(value).reshape(-1)[0]) if np.size(value) else math.nan
    except (TypeError, ValueError):
        return str(value)
