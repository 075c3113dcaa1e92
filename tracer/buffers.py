"""Growable columnar NumPy buffers: the recorder's storage.

A training step is a hot path, so recording a value must be one copy into a
preallocated block, never a DataFrame append. Buffers grow by doubling (amortised
O(1) per row) and hand out views of what was filled, which the Trace turns into
DataFrames only when someone asks.
"""
from __future__ import annotations

import sys

import numpy as np



class RowBuffer:
    """A 2-D array that grows by rows, in fixed-size chunks.

    ``append`` copies one row into the current chunk; a full chunk is kept and a
    new one allocated, so growing never copies what was already recorded (no
    doubling). :meth:`to_array` joins the chunks once, when a Trace is built.
    """

    __slots__ = ("_chunks", "_cur", "_pos", "_chunk_rows", "_width", "_dtype", "_limit", "n")

    CHUNK_BYTES = 8 << 20

    def __init__(self, width: int, dtype=np.float64, capacity: int = 64, chunk_bytes: int | None = None):
        self._width = int(width)
        self._dtype = np.dtype(dtype)
        # a small memory budget asks for small chunks (never less than one row)
        self._limit = int(self.CHUNK_BYTES if chunk_bytes is None else min(chunk_bytes, self.CHUNK_BYTES))
        row_bytes = max(1, self._width * self._dtype.itemsize)
        self._chunk_rows = int(max(1, min(max(capacity, 1), self._limit // row_bytes)))
        self._chunks: list[np.ndarray] = []
        self._cur = np.empty((self._chunk_rows, self._width), dtype=self._dtype)
        self._pos = 0
        self.n = 0

    @property
    def width(self) -> int:
        """Number of columns of each row."""
        return self._width

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffer, including the unused part of the current chunk."""
        return self._cur.nbytes + sum(c.nbytes for c in self._chunks)

    def growth(self, k: int) -> int:
        """Bytes that appending ``k`` rows would newly allocate (0 while the chunk has room).

        Why: a memory budget must be checked before a step is copied, not after.
        """
        free = self._cur.shape[0] - self._pos
        if k <= free:
            return 0
        k -= free
        row_bytes = max(1, self._width * self._dtype.itemsize)
        rows, total = self._chunk_rows, 0
        while k > 0:
            rows = int(max(rows, min(rows * 2, self._limit // row_bytes)))
            total += rows * self._width * self._dtype.itemsize
            k -= rows
        return total

    def _next_chunk(self) -> None:
        self._chunks.append(self._cur)
        # later chunks may be larger (up to CHUNK_BYTES) to keep their count low
        row_bytes = max(1, self._width * self._dtype.itemsize)
        self._chunk_rows = int(max(self._chunk_rows, min(self._chunk_rows * 2, self._limit // row_bytes)))
        self._cur = np.empty((self._chunk_rows, self._width), dtype=self._dtype)
        self._pos = 0

    def append(self, row) -> None:
        """Copy one row (anything reshapeable to ``width`` values) into the buffer."""
        if self._pos == self._cur.shape[0]:
            self._next_chunk()
        self._cur[self._pos] = np.reshape(row, -1)
        self._pos += 1
        self.n += 1

    def append_fill(self, value) -> None:
        """Append one row filled with ``value`` (NaN for "not recorded")."""
        if self._pos == self._cur.shape[0]:
            self._next_chunk()
        self._cur[self._pos] = value
        self._pos += 1
        self.n += 1

    def extend(self, block) -> None:
        """Copy a block of rows (shape ``(k, width)`` or ``(k,)`` for width 1)."""
        block = np.asarray(block)
        k = block.shape[0] if block.ndim else 1
        block = block.reshape(k, self._width)
        done = 0
        while done < k:
            if self._pos == self._cur.shape[0]:
                self._next_chunk()
            take = min(k - done, self._cur.shape[0] - self._pos)
            self._cur[self._pos:self._pos + take] = block[done:done + take]
            self._pos += take
            done += take
        self.n += k

    def to_array(self) -> np.ndarray:
        """The filled rows as one new array (a copy: later appends do not change it)."""
        parts = self._chunks + [self._cur[: self._pos]]
        if len(parts) == 1:
            return parts[0].copy()
        return np.concatenate(parts, axis=0)


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

    def last(self, key: str):
        """The latest value of column ``key`` (None if there is no such column or no row)."""
        col = self._cols.get(key)
        return col[-1] if col else None

    def as_dict(self) -> dict[str, np.ndarray]:
        """The columns as NumPy arrays."""
        return {k: np.asarray(v) for k, v in self._cols.items()}
