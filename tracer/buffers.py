"""Growable columnar NumPy buffers: the recorder's storage.

A training step is a hot path, so recording a value must be one copy into a
preallocated block, never a DataFrame append. Buffers grow by doubling (amortised
O(1) per row) and hand out views of what was filled, which the Trace turns into
DataFrames only when someone asks.
"""
from __future__ import annotations

import numpy as np


class RowBuffer:
    """A 2-D array that grows by rows; ``append`` copies one row, ``extend`` a block."""

    __slots__ = ("_buf", "n")

    def __init__(self, width: int, dtype=np.float64, capacity: int = 64):
        self._buf = np.empty((max(capacity, 1), width), dtype=dtype)
        self.n = 0

    @property
    def width(self) -> int:
        """Number of columns of each row."""
        return self._buf.shape[1]

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffer, including unused capacity."""
        return self._buf.nbytes

    def _reserve(self, rows: int) -> None:
        need = self.n + rows
        if need > self._buf.shape[0]:
            cap = max(need, 2 * self._buf.shape[0])
            grown = np.empty((cap, self._buf.shape[1]), dtype=self._buf.dtype)
            grown[: self.n] = self._buf[: self.n]
            self._buf = grown

    def append(self, row) -> None:
        """Copy one row (anything reshapeable to ``width`` values) into the buffer."""
        self._reserve(1)
        self._buf[self.n] = np.reshape(row, -1)
        self.n += 1

    def append_fill(self, value) -> None:
        """Append one row filled with ``value`` (NaN for "not recorded")."""
        self._reserve(1)
        self._buf[self.n] = value
        self.n += 1

    def extend(self, block) -> None:
        """Copy a block of rows (shape ``(k, width)`` or ``(k,)`` for width 1)."""
        block = np.asarray(block)
        k = block.shape[0] if block.ndim else 1
        self._reserve(k)
        self._buf[self.n : self.n + k] = block.reshape(k, self.width)
        self.n += k

    def view(self) -> np.ndarray:
        """The filled rows, as a view (no copy)."""
        return self._buf[: self.n]


class ScalarColumns:
    """Named per-step scalar columns; a column first seen late is back-filled with NaN."""

    __slots__ = ("_cols", "n")

    def __init__(self):
        self._cols: dict[str, list] = {}
        self.n = 0

    def add_row(self, values: dict) -> None:
        """Append one row; missing columns get NaN, new columns are back-filled."""
        cols = self._cols
        for key, value in values.items():
            col = cols.get(key)
            if col is None:
                col = cols[key] = [np.nan] * self.n
            col.append(value)
        self.n += 1
        for col in cols.values():
            if len(col) < self.n:
                col.append(np.nan)

    def as_dict(self) -> dict[str, np.ndarray]:
        """The columns as NumPy arrays."""
        return {k: np.asarray(v) for k, v in self._cols.items()}
