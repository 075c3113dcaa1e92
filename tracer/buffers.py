"""Growable columnar NumPy buffers: the recorder's storage.

A training step is a hot path, so recording a value must be one copy into a
preallocated block, never a DataFrame append. Buffers grow by chunks (never copying
what was filled) and hand out views of what was filled, which the Trace turns into
DataFrames only when someone asks.
"""
from __future__ import annotations

import math
import sys

import numpy as np

from . import chunk_pool


class RowBuffer:
    """A 2-D array that grows by rows, in large chunks that are touched only as they fill.

    ``append`` copies one row into the current chunk; a full chunk is kept and a new one
    allocated, so growing never copies what was already recorded (no doubling).

    Why large chunks: a chunk is reserved at its full size (up to ``CHUNK_BYTES``) but the
    operating system gives it memory page by page as rows are written, so a big chunk
    costs no more than the rows it holds, and most recordings fit in one. Then
    :meth:`to_array` hands out a view of the filled rows instead of joining
    chunks (rows once written are never overwritten while a view may see them), and
    :meth:`reset` lets a recorder that spilled its rows to a store write the next ones
    into the same, already touched, memory. :attr:`nbytes` counts the filled rows: what
    the recording holds.
    """

    __slots__ = ("_chunks", "_cur", "_pos", "_chunk_rows", "_width", "_dtype", "_limit", "_filled", "n", "_staged",
                 "_staged_row", "_staged_at", "_ready")

    CHUNK_BYTES = 256 << 20
    #: rows of at least this many bytes are reserved a whole chunk at once
    BIG_ROW = 64 << 10
    #: bytes of a pooled chunk faulted in at once ahead of its big rows (:func:`tracer.chunk_pool.populate`);
    #: small, because what is faulted in ahead is memory the budget does not count yet (a
    #: row larger than this is faulted in alone, just before it is written)
    PREFAULT_BYTES = 2 << 20

    def __init__(self, width: int, dtype=np.float64, capacity: int = 64, chunk_bytes: int | None = None):
        self._width = int(width)
        self._dtype = np.dtype(dtype)
        # a small memory budget asks for small chunks (never less than one row)
        self._limit = int(self.CHUNK_BYTES if chunk_bytes is None else min(chunk_bytes, self.CHUNK_BYTES))
        most = max(1, self._limit // self.row_bytes)
        # big rows (a parameter's values) get the whole chunk at once; small rows start small
        # and double, so that many small buffers do not each reserve (and, with transparent
        # huge pages, touch) a large block
        start = most if self.row_bytes >= self.BIG_ROW else max(1, min(capacity, most))
        self._chunk_rows = int(start)
        self._chunks: list[np.ndarray] = []
        self._cur = chunk_pool.chunk(self._chunk_rows, self._width, self._dtype)
        self._pos = 0
        self._filled = 0       # rows in the kept (full) chunks
        self.n = 0
        self._staged = 0       # address of the next row while a caller holds it (see stage)
        self._staged_row: np.ndarray | None = None    # ... the very array handed out
        self._staged_at = 0                           # ... and the rows held when it was
        self._ready = 0        # rows of the current chunk faulted in ahead (see _prefault)

    @property
    def width(self) -> int:
        """Number of columns of each row."""
        return self._width

    @property
    def row_bytes(self) -> int:
        """Bytes of one row (at least 1)."""
        return max(1, self._width * self._dtype.itemsize)

    @property
    def nbytes(self) -> int:
        """Bytes of the filled rows (the reserved, untouched rest of a chunk holds no memory)."""
        return (self._filled + self._pos) * self._width * self._dtype.itemsize

    def growth(self, k: int) -> int:
        """Bytes that appending ``k`` rows would newly fill.

        Why: a memory budget must be checked before a step is copied, not after.
        """
        return int(k) * self._width * self._dtype.itemsize

    def _next_chunk(self) -> None:
        self._chunks.append(self._cur)
        self._filled += self._pos
        self._chunk_rows = int(max(self._chunk_rows, min(self._chunk_rows * 2, self._limit // self.row_bytes)))
        self._cur = chunk_pool.chunk(self._chunk_rows, self._width, self._dtype)
        self._pos = self._ready = 0

    def _prefault(self) -> None:
        """Fault in the next :data:`PREFAULT_BYTES` of the current chunk at once when its rows
        are big (a parameter's values): the rows are about to be written one by one."""
        rows = max(1, self.PREFAULT_BYTES // self.row_bytes)
        end = min(self._cur.shape[0], self._pos + rows)
        if self.row_bytes >= self.BIG_ROW:
            chunk_pool.populate(self._cur[self._pos:end])
        self._ready = end

    def append(self, row: np.ndarray | float) -> None:
        """Copy one row (anything reshapeable to ``width`` values) into the buffer; a row
        :meth:`stage` handed out and filled in place is taken as it is (no copy)."""
        if self._pos == self._cur.shape[0]:
            self._next_chunk()
        if self._pos >= self._ready:
            self._prefault()
        # the staged row itself, still the next row, is known without its address (~2 us to ask)
        if row is not self._staged_row or self._staged_at != self.n:
            dst = self._cur[self._pos]
            if not (self._staged and isinstance(row, np.ndarray) and row.size == self._width
                    and _address(row) == _address(dst)):
                dst[...] = row.reshape(-1) if type(row) is np.ndarray else np.reshape(row, -1)   # (no dispatch)
        self._staged = 0
        self._staged_row = None
        self._pos += 1
        self.n += 1

    def stage(self) -> np.ndarray | None:
        """The next row, for a caller to fill in place before handing it to :meth:`append`
        (which then copies nothing); None while that row is already handed out.

        Why: a hook that must keep a value anyway (a gradient the loop is about to zero)
        can copy it once, straight into the recording, instead of into a buffer of its own
        and from there into this one. The row stays unrecorded until appended; a caller
        that gives up on it says so with :meth:`unstage`."""
        if self._pos == self._cur.shape[0]:
            self._next_chunk()
        if self._pos >= self._ready:
            self._prefault()
        row = self._cur[self._pos]
        address = _address(row)
        if self._staged == address:
            return None
        self._staged, self._staged_row, self._staged_at = address, row, self.n
        return row

    def unstage(self, row: np.ndarray) -> None:
        """The holder of a staged ``row`` gives it up (it was appended, or will not be)."""
        if self._staged and (row is self._staged_row or _address(row) == self._staged):
            self._staged = 0
            self._staged_row = None

    def append_fill(self, value: float) -> None:
        """Append one row filled with ``value`` (NaN for "not recorded")."""
        if self._pos == self._cur.shape[0]:
            self._next_chunk()
        self._cur[self._pos] = value
        self._pos += 1
        self.n += 1

    def extend(self, block: np.ndarray) -> None:
        """Copy a block of rows (shape ``(k, width)`` or ``(k,)`` for width 1)."""
        block = np.asarray(block)
        k = block.shape[0] if block.ndim else 1
        block = block.reshape(k, self._width)
        done = 0
        while done < k:
            if self._pos == self._cur.shape[0]:
                self._next_chunk()
            take = min(k - done, self._cur.shape[0] - self._pos)
            if self.row_bytes >= self.BIG_ROW and self._pos + take > self._ready:
                chunk_pool.populate(self._cur[self._pos:self._pos + take])    # as append's _prefault
                self._ready = self._pos + take
            self._cur[self._pos:self._pos + take] = block[done:done + take]
            self._pos += take
            done += take
        self.n += k

    def last(self) -> np.ndarray:
        """The last filled row (a view; the buffer must not be empty)."""
        if self._pos:
            return self._cur[self._pos - 1]
        return self._chunks[-1][-1]

    def to_array(self) -> np.ndarray:
        """The filled rows: a view when they are in one chunk (later appends do not change
        it; writing into it changes the recording), else one new array joining the chunks."""
        if not self._chunks:
            return self._cur[: self._pos]
        return np.concatenate(self._chunks + [self._cur[: self._pos]], axis=0)

    def _seen(self) -> bool:
        """Whether an array other than the buffer's own chunk (a view :meth:`to_array` handed
        out) sees the current chunk's memory. Views of a pool block have the block as their
        ``base`` (:mod:`tracer.chunk_pool`), so the block's references are what count."""
        base = self._cur.base
        if base is None:
            return sys.getrefcount(self._cur) > 2       # the attribute and getrefcount's argument
        # the chunk's base link, the local name, getrefcount's argument, the pool's list
        return sys.getrefcount(base) > 3 + chunk_pool.pooled(base)

    def reset(self) -> None:
        """Forget every row; keep the current chunk for the next rows when nothing else
        refers to it (no view handed out by :meth:`to_array` is alive)."""
        self._staged_row = None      # not a view anyone else holds (:meth:`_seen` counts references)
        if self._seen():
            self._cur = chunk_pool.chunk(self._chunk_rows, self._width, self._dtype)
        self._chunks = []
        self._pos = self._filled = self.n = self._staged = self._ready = 0


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


class ScalarColumns:
    """Named per-step scalar columns; a column first seen late is back-filled with NaN."""

    __slots__ = ("_cols", "n", "nbytes")

    #: bytes of one list slot (a pointer); a value adds its own size unless it is the shared NaN
    SLOT_BYTES = 8

    def __init__(self):
        self._cols: dict[str, list] = {}
        self.n = 0
        self.nbytes = 0          # list slots plus the value objects, counted as they come

    def add_row(self, values: dict) -> None:
        """Append one row; missing columns get NaN, new columns are back-filled."""
        cols = self._cols
        added = 0
        for key, value in values.items():
            col = cols.get(key)
            if col is None:
                col = cols[key] = [np.nan] * self.n
                added += self.SLOT_BYTES * self.n + sys.getsizeof(key)
            col.append(value)
            added += self.SLOT_BYTES + (0 if value is np.nan else sys.getsizeof(value))
        self.n += 1
        for col in cols.values():
            if len(col) < self.n:
                col.append(np.nan)
                added += self.SLOT_BYTES
        self.nbytes += added

    def last(self, key: str) -> float | None:
        """The latest value of column ``key`` (None if there is no such column or no row)."""
        col = self._cols.get(key)
        return col[-1] if col else None

    def as_dict(self) -> dict[str, np.ndarray]:
        """The columns as NumPy arrays."""
        return {k: np.asarray(v) for k, v in self._cols.items()}


def scalar_value(value: object) -> float | str:
    """A logged value as a float (a tensor or array: its first element; empty: NaN), or
    its text when it is not a number: what the steps table stores of a log entry."""
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
