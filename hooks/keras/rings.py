"""Ring buffers in TensorFlow variables: the traced step writes one row per step, the host
reads every ring once every K steps.

Why: handing a step's values out of the compiled step as extra outputs makes TensorFlow
allocate fresh tensors for them every step (and Python free them), slows the compiled
step itself, and needs a host transfer per step. Instead the traced step copies what the
trace needs into ``tf.Variable`` rings allocated once, of shape ``(K, ...)``, at row
``count % K``, and counts the step in a variable; it returns Keras's own logs and nothing
else. The host reads the rings when K steps are waiting (or at an epoch's end, the end of
``fit``, a crash): a read is a view of the variable's buffer, not a copy (:func:`_view`:
a variable written row by row is in TensorFlow's copy-on-read mode, which would copy the
whole ring at every read), so the one copy of each value is the recorder's. Should a view
outlive the read, the next write copies the buffer first (TensorFlow's copy on write), so
a view never changes.

Samples (inputs, targets, predictions) are padded to the ring's batch rows; the step's
real batch size is one of the scalars. A batch larger than the ring keeps its first rows
only (the host then drops the step's rows and predictions).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

__all__ = ["StepRings", "new_rings", "ring_rows"]

#: bytes one step's rings may hold in all (K is chosen from it), and the most steps K
RING_BYTES = 48 << 20
MAX_ROWS = 64
#: batch rows kept per step when neither ``fit`` nor the traced batch tells the batch size
#: (a ``tf.data`` input): a larger batch keeps no rows or predictions (a note says so)
DEFAULT_BATCH = 256


def ring_rows(step_bytes: int, limit: int | None = None) -> int:
    """K: as many steps as :data:`RING_BYTES` holds (at least 1, at most :data:`MAX_ROWS`
    and ``limit``)."""
    k = max(1, min(MAX_ROWS, RING_BYTES // max(1, step_bytes)))
    return max(1, min(k, limit)) if limit else k


def new_rings(recorder: Any, variables: list, xy: tuple | None, summary: bool) -> "StepRings":
    """The rings of a traced ``fit``: K steps, as many as :data:`RING_BYTES` holds, at most
    the store's ``flush_every`` (a killed run then loses no more than the store would);
    samples padded to ``fit``'s batch size."""
    store = recorder.store
    limit = getattr(store, "flush_every", None) if store is not None else None
    batch = recorder.meta.get("keras_fit", {}).get("batch_size")
    batch = batch if isinstance(batch, int) and batch > 0 else None
    if summary:
        return StepRings(ring_rows(8 * (16 + 3 * len(variables)), limit), batch)
    step_bytes = 5 * sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)
    if xy is not None:
        step_bytes += (batch or DEFAULT_BATCH) * (xy[0][:1].nbytes + 2 * xy[1][:1].nbytes)
    return StepRings(ring_rows(step_bytes, limit), batch)


class StepRings:
    """The rings of one traced train function: ``size`` (K) rows each, samples padded to
    ``batch_rows`` rows. Inside the step: :meth:`begin`, then :meth:`put` and
    :meth:`put_sample` (before the update for the weights before it), then :meth:`end`."""

    def __init__(self, size: int, batch_rows: int | None = None):
        self.size = int(size)
        self.batch_rows = batch_rows
        self.rings: dict[str, tf.Variable] = {}
        self.kept: dict[str, tf.Variable] = {}
        self.count: tf.Variable | None = None
        self.sample_rows: dict[str, int] = {}  # rings of batch rows: name -> rows per step
        self.read_so_far = 0                  # steps the host has read

    # ------------------------------------------------------------ in the graph
    def _variable(self, store: dict, name: str, shape, dtype) -> tf.Variable:
        var = store.get(name)
        if var is None:                      # created once, when the step is first traced
            with tf.init_scope():
                var = store[name] = tf.Variable(tf.zeros(shape, dtype), trainable=False)
        return var

    def keep(self, name: str, value: tf.Tensor) -> tf.Variable:
        """A persistent copy of ``value`` (one variable, written every step): the weights
        before the update, for summary norms, without allocating a tensor per step."""
        var = self._variable(self.kept, name, value.shape, value.dtype)
        var.assign(value)
        return var

    def begin(self) -> tf.Tensor:
        """The row this step writes: ``count % K``, as a one-element index."""
        if self.count is None:
            with tf.init_scope():
                self.count = tf.Variable(tf.constant(0, tf.int64), trainable=False)
        return tf.reshape(tf.math.floormod(self.count, self.size), [1])

    def put(self, slot: tf.Tensor, name: str, value: tf.Tensor) -> None:
        """Write ``value`` (a fixed shape) at row ``slot`` of ring ``name``."""
        var = self._variable(self.rings, name, (self.size, *value.shape), value.dtype)
        var.scatter_update(tf.IndexedSlices(tf.expand_dims(value, 0), slot))

    def put_sample(self, slot: tf.Tensor, name: str, value: tf.Tensor) -> None:
        """Write the first :attr:`batch_rows` rows of a ``(batch, ...)`` tensor (left out when
        a dimension past the batch is not known when the step is traced).

        The ring holds ``K * batch_rows`` rows; the step's rows go to ``slot * batch_rows``
        on, as they are (no padded copy of the batch): rows past a short batch keep what an
        earlier step wrote, and the host reads only the step's batch size of them."""
        rest = tuple(value.shape[1:])
        if value.shape.rank is None or any(d is None for d in rest):
            return
        if name not in self.rings:       # sized when first traced: fit's batch size, or the batch's
            known = int(value.shape[0] or 0)
            self.batch_rows = max(self.batch_rows or 0, known) or DEFAULT_BATCH
        b = self.batch_rows
        part = value[:b]
        var = self._variable(self.rings, name, (self.size * b, *rest), value.dtype)
        self.sample_rows[name] = b
        rows = tf.cast(slot[0], tf.int64) * b + tf.range(tf.shape(part, out_type=tf.int64)[0])
        var.scatter_update(tf.IndexedSlices(part, rows))

    def end(self) -> None:
        """The step is written: count it."""
        self.count.assign_add(1)

    # ------------------------------------------------------------ on the host
    @property
    def written(self) -> int:
        """Steps the graph has written so far."""
        return 0 if self.count is None else int(self.count.value()._numpy())

    def read(self, n: int) -> list[dict | None]:
        """The next ``n`` steps the host has not read, oldest first, as dicts of NumPy views
        (valid until the caller drops them; the recorder copies them). A step written but
        overwritten before it was read (more than K behind) comes back as None."""
        if n <= 0:
            return []
        if self.count is None:
            return [None] * n
        out: list[dict | None] = []
        for count, block in self.read_blocks(n):
            out.extend([None] * count if block is None else
                       [{name: v[i] for name, v in block.items()} for i in range(count)])
        return out

    def read_blocks(self, n: int) -> list[tuple[int, dict | None]]:
        """The next ``n`` steps as :meth:`read` gives them, in runs of consecutive ring rows:
        ``(count, {name: view of count rows})``, or ``(count, None)`` for steps lost. Why:
        the recorder stores a run of steps with one copy per parameter
        (:meth:`tracer.Recorder.record_steps`); a run ends where the ring wraps."""
        if n <= 0:
            return []
        if self.count is None:
            return [(n, None)]
        views = {name: _view(var) for name, var in self.rings.items()}
        for name, b in self.sample_rows.items():           # (K * b, ...) -> (K, b, ...)
            views[name] = views[name].reshape(self.size, b, *views[name].shape[1:])
        written = self.written
        out: list[tuple[int, dict | None]] = []
        i, end = self.read_so_far, self.read_so_far + n
        while i < end:
            if i >= written or written - i > self.size:
                j = i + 1
                while j < end and (j >= written or written - j > self.size):
                    j += 1
                out.append((j - i, None))
            else:
                j = min(end, written, i + self.size - i % self.size)   # up to the ring's end
                out.append((j - i, {name: v[i % self.size:(j - 1) % self.size + 1] for name, v in views.items()}))
            i = j
        self.read_so_far = max(written, end)
        return out


def _view(var: tf.Variable) -> np.ndarray:
    """A NumPy view of ``var``'s buffer, without a copy.

    Why not ``var.value()`` alone: a variable written by a sparse update (the rings'
    ``scatter_update``) is in TensorFlow's copy-on-read mode, where every dense read
    copies the whole variable - a ring of K steps per read, into memory the allocator may
    hand out fresh. ``DisableCopyOnRead`` switches the variable to copy-on-write for the
    read (cheap while nothing else holds its buffer); the next ``scatter_update`` switches
    it back, copying the buffer first only if a view is still alive, so a view never
    changes under its holder."""
    tf.raw_ops.DisableCopyOnRead(resource=var.handle)
    return var.value()._numpy()
