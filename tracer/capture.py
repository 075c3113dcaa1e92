"""The arrays of full capture: parameters, gradients, optimizer state, predictions, rows.

Why apart from the recorder: these buffers are what costs memory. Keeping them in one
object lets the recorder ask, before copying a step, how many bytes recording it would
allocate (:meth:`FullBuffers.growth`), hand what was recorded to a streaming store
(:meth:`FullBuffers.parts`) and then forget it (:meth:`FullBuffers.drain`) while
remembering each parameter's shape and dtype, so later chunks stay aligned.

Layout: :class:`tracer.param_buffers.ParamBuffers` per parameter (before only where a step
does not chain on the one before), one row per recorded step
(a parameter's values flattened in C order); the rows of every batch (``sample_step``,
``sample_row``) and its predictions (``sample_pred``) one row per batch row.
"""
from __future__ import annotations

import numpy as np

from .arrays import as_2d
from .buffers import RowBuffer
from .errors import TraceInputError
from .param_buffers import ParamBuffers, initial_capacity, value_dtype as _value_dtype

__all__ = ["FullBuffers", "ParamBuffers", "initial_capacity"]


class FullBuffers:
    """Everything full capture keeps since the last drain (see the module docstring)."""

    def __init__(self, chunk_bytes: int = RowBuffer.CHUNK_BYTES, chain: bool = True):
        self.chunk_bytes = chunk_bytes     # the largest block one buffer allocates at once
        self.chain = chain                 # store a step's before only where it breaks the chain
        self.params: dict[str, ParamBuffers] = {}
        self.known: dict[str, tuple] = {}  # every parameter seen: name -> (shape, dtype), in order
        self.param_step = self._index()
        self.sample_step = self._index()
        self.sample_row = self._index()
        self.sample_pred: RowBuffer | None = None
        #: micro-step of each batch row (gradient accumulation), created at the first micro > 0
        self.sample_micro: RowBuffer | None = None
        self._pred_dtype: np.dtype | None = None
        #: bumped whenever the bytes a step adds may change other than row by row (a buffer
        #: created or dropped, a chain broken, a drain): what :mod:`tracer.budget_room` keys on
        self.layout = 0

    def _index(self, width: int = 1, dtype=np.int64) -> RowBuffer:
        return RowBuffer(width, dtype, 256, self.chunk_bytes)

    @property
    def nbytes(self) -> int:
        """Bytes held by every buffer, preallocated space included."""
        total = sum(p.nbytes for p in self.params.values())
        total += self.param_step.nbytes + self.sample_step.nbytes + self.sample_row.nbytes
        total += self.sample_micro.nbytes if self.sample_micro is not None else 0
        return total + (self.sample_pred.nbytes if self.sample_pred is not None else 0)

    @property
    def n_steps(self) -> int:
        """Steps held (recorded since the last drain)."""
        return self.param_step.n

    @property
    def shapes(self) -> dict[str, tuple]:
        """Every parameter seen so far (also before a drain) and its shape, in order."""
        return {name: shape for name, (shape, _) in self.known.items()}

    def chained_row(self, name: str) -> np.ndarray | None:
        """The last ``after`` of ``name`` while its steps chain (see :meth:`tracer.recorder.Recorder.chained_row`)."""
        buf = self.params.get(name)
        return None if buf is None else buf.last_after()

    def stage_grad(self, name: str) -> np.ndarray | None:
        """The next gradient row of ``name`` to fill in place (see :meth:`tracer.recorder.Recorder.stage_grad`)."""
        buf = self.params.get(name)
        return None if buf is None else buf.stage_grad()

    def unstage_grad(self, name: str, row: np.ndarray) -> None:
        """Give up a staged gradient row."""
        buf = self.params.get(name)
        if buf is not None:
            buf.grad.unstage(row)

    # ------------------------------------------------------------ budget
    def growth(self, before: dict, state: dict | None, rows: np.ndarray | None, y_pred: np.ndarray | None) -> int:
        """Bytes that recording one step with these arrays would newly allocate."""
        total = self.param_step.growth(1)
        new = {n: (int(np.prod(sh)), dt) for n, (sh, dt) in self.known.items() if n not in self.params}
        new.update({n: (int(np.size(v)), _value_dtype(np.asarray(v).dtype))
                    for n, v in before.items() if n not in self.params and n not in self.known})
        for name, (size, dt) in new.items():   # buffers to create: padded to this step
            n_buffers = 3 + len((state or {}).get(name) or {})
            total += n_buffers * (self.param_step.n + 1) * size * dt.itemsize
        for name in before:
            buf = self.params.get(name)
            if buf is None:
                continue
            total += buf.step_growth() + sum(b.growth(1) for b in buf.slots.values())
            for slot in (state or {}).get(name) or {}:
                if slot not in buf.slots:
                    total += (buf.n + 1) * buf.size * buf.dtype.itemsize
        k = int(np.shape(y_pred)[0]) if y_pred is not None and np.ndim(y_pred) else (
            0 if rows is None else int(np.size(rows)))
        total += self.sample_step.growth(k) + self.sample_row.growth(k)
        if y_pred is not None:
            width = int(np.size(y_pred) // max(k, 1)) if k else 1
            if self.sample_pred is not None:
                total += self.sample_pred.growth(k)
            else:
                total += (self.sample_step.n + k) * max(1, width * 8)
        return total

    # ------------------------------------------------------------ recording
    def record(self, step: int, before: dict, after: dict, grads: dict | None, rows: np.ndarray | None,
               y_pred: np.ndarray | None, state: dict | None, micro: np.ndarray | None = None) -> None:
        """Copy one step's arrays (each once) into the buffers."""
        self.param_step.append(step)
        for name, (shape, dtype) in self.known.items():     # buffers dropped by a drain
            if name not in self.params:
                self._new_param(name, shape, dtype)
        for name, value in before.items():
            self._record_param(name, np.asarray(value), after[name], grads, state)
        for buf in self.params.values():
            if buf.n < self.param_step.n:             # a parameter absent from this step
                buf.pad()
                self.layout += 1
        n0 = self.sample_step.n
        self._record_samples(step, rows, y_pred)
        self._record_micro(micro, self.sample_step.n - n0, n0)

    def _record_micro(self, micro, k: int, before: int) -> None:
        """The micro-step index of the ``k`` batch rows just recorded (0 when not given)."""
        if micro is None and self.sample_micro is None:
            return
        m = np.zeros(k, dtype=np.int64) if micro is None else np.asarray(micro, dtype=np.int64).reshape(-1)
        if m.size != k:
            raise TraceInputError(f"micro: expected one micro-step index per batch row ({k}), got {m.size}")
        if self.sample_micro is None:
            if not m.any():
                return
            self.sample_micro = self._index()
            self.layout += 1
            if before:
                self.sample_micro.extend(np.zeros(before, dtype=np.int64))
        self.sample_micro.extend(m)

    def _record_param(self, name, value, after_value, grads, state) -> None:
        buf = self.params.get(name)
        if buf is None:
            buf = self._new_param(name, value.shape, value.dtype)
        if value.size != buf.size:
            raise TraceInputError(
                f"params_before[{name!r}]: expected {buf.size} values (shape {buf.shape}), got shape {value.shape}")
        after_value = np.asarray(after_value)
        if after_value.size != buf.size:
            raise TraceInputError(f"params_after[{name!r}]: expected shape {buf.shape}, got {after_value.shape}")
        chained = buf.values is not None
        buf.add(value, after_value)
        if chained and buf.values is None:         # the chain broke: its rows were copied apart
            self.layout += 1
        grad = None if grads is None else grads.get(name)
        if grad is None:
            buf.grad.append_fill(np.nan)
        else:
            buf.grad.append(grad)
        for slot, slot_value in ((state or {}).get(name) or {}).items():
            if slot not in buf.slots:
                buf.slots[slot] = buf.new_slot(buf.n - 1)
                self.layout += 1
            buf.slots[slot].append(slot_value)
        for sbuf in buf.slots.values():
            if sbuf.n < buf.n:
                sbuf.append_fill(np.nan)

    def _new_param(self, name: str, shape, dtype) -> ParamBuffers:
        buf = self.params[name] = ParamBuffers(shape, dtype, self.chunk_bytes, self.chain)
        self.layout += 1
        self.known.setdefault(name, (buf.shape, buf.dtype))
        for _ in range(self.param_step.n - 1):     # pad a parameter first seen late
            buf.pad()
        return buf

    def _record_samples(self, step, rows, y_pred) -> None:
        if y_pred is not None:
            pred = as_2d("y_pred", y_pred)
            if rows is not None and rows.size != pred.shape[0]:
                raise TraceInputError(f"y_pred: expected one row per batch row ({rows.size}), got {pred.shape[0]}")
            if self.sample_pred is None:
                if self._pred_dtype is None:
                    self._pred_dtype = _value_dtype(pred.dtype)
                self.sample_pred = self._index(pred.shape[1], self._pred_dtype)
                self.layout += 1
                if self.sample_step.n:     # rows recorded before the first predictions: NaN
                    self.sample_pred.extend(np.full((self.sample_step.n, pred.shape[1]), np.nan))
            self.sample_pred.extend(pred)
            k = pred.shape[0]
            self.sample_step.extend(np.full(k, step, dtype=np.int64))
            self.sample_row.extend(rows if rows is not None else np.full(k, -1, dtype=np.int64))
        elif rows is not None:
            self.sample_step.extend(np.full(rows.size, step, dtype=np.int64))
            self.sample_row.extend(rows)
            if self.sample_pred is not None:
                self.sample_pred.extend(np.full((rows.size, self.sample_pred.width), np.nan))

    # ------------------------------------------------------------ output
    def parts(self) -> dict:
        """The recorded arrays as keyword arguments of :class:`tracer.trace.TraceArrays`."""
        return {
            "sample_step": self.sample_step.to_array()[:, 0],
            "sample_row": self.sample_row.to_array()[:, 0],
            "sample_pred": None if self.sample_pred is None else self.sample_pred.to_array(),
            "sample_micro": None if self.sample_micro is None else self.sample_micro.to_array()[:, 0],
            "param_step": self.param_step.to_array()[:, 0],
            "params": {n: self._param_parts(p) for n, p in self.params.items()},
        }

    @staticmethod
    def _param_parts(p: ParamBuffers) -> dict:
        before, after = p.before_after()
        return {"shape": p.shape, "before": before, "grad": p.grad.to_array(), "after": after,
                "slots": {s: b.to_array() for s, b in p.slots.items()}}

    def drain(self) -> None:
        """Forget the recorded rows (they went to a store); keep the buffers, whose memory
        is already touched, for the next rows, and each parameter's name, shape and dtype
        (:attr:`known`), so later chunks stay aligned."""
        self.layout += 1
        for p in self.params.values():
            p.reset()
        for b in (self.param_step, self.sample_step, self.sample_row, self.sample_pred, self.sample_micro):
            if b is not None:
                b.reset()
