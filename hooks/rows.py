"""Find which training rows are in a batch, by content: one matcher for every hook.

Why by content: Keras shuffles array inputs inside its compiled ``tf.data`` pipeline
with its own random stream, and a PyTorch loop may slice batches in its own generator
(S3): either way the indices never reach steptrace, and recomputing a shuffle would
mean drawing from the user's random stream (which would change the run). Instead each
batch row is looked up by its bytes (inputs, and targets when the data has them, in the
dtype the batch has) in a table built once from the training data.

Repeated rows: byte-identical rows are interchangeable for every number a framework
computes. With ``repeats="in_turn"`` (Keras) each copy is handed out once per epoch
(:meth:`RowMatcher.new_epoch`), so every epoch's rows still form a permutation of the
data; with ``repeats="first"`` (PyTorch, whose epochs are told apart by repeated rows)
a repeated row is always its first position.

Fast path: rows are hashed to 64 bits with vectorised NumPy (no Python loop per
row) and every hit is verified byte for byte; a batch holding a duplicated row or
a hash collision takes the exact dictionary path instead. Where a few of the rows' 8-byte
words (:data:`SAMPLED_WORDS`, spread over the row) already tell every distinct row of the
data apart - checked once, when the table is built - a batch hashes only those words
(a wide row, such as the bench's 500 inputs, costs 16 words instead of 250 per row); the
byte-for-byte check of every hit is the same.

With no declared data (a ``tf.data.Dataset`` input), the table grows: a row
seen for the first time becomes the next sample, so ``sample`` is the order of
first appearance.
"""
from __future__ import annotations

import numpy as np

from tracer import chunk_pool

__all__ = ["RowMatcher"]


_MIX = np.uint64(0xBF58476D1CE4E5B9)


#: bytes of rows :func:`_hash_rows` hashes at once (its temporaries stay this small)
HASH_BLOCK = 2 << 20


def _row_bytes(x: np.ndarray, y: np.ndarray, pooled: bool = False) -> np.ndarray:
    """``(n, bytes)`` uint8 matrix of each row's inputs then targets; ``pooled``: in the
    chunk pool's already touched memory (the data table, built once per ``fit``: fresh
    pages for it cost more than the copy, :mod:`tracer.chunk_pool`)."""
    xb, yb = x.view(np.uint8).reshape(x.shape[0], -1), y.view(np.uint8).reshape(y.shape[0], -1)
    if not pooled:
        return np.ascontiguousarray(np.concatenate([xb, yb], axis=1))
    out = chunk_pool.chunk(x.shape[0], xb.shape[1] + yb.shape[1], np.uint8)
    out[:, :xb.shape[1]] = xb
    out[:, xb.shape[1]:] = yb
    return out


def _hash_rows(u8: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of a uint8 matrix (vectorised; equal rows, equal hashes),
    :data:`HASH_BLOCK` bytes of rows at a time."""
    n, width = u8.shape
    block = max(1, HASH_BLOCK // max(1, width))
    if n > block:
        return np.concatenate([_hash_rows(u8[i:i + block]) for i in range(0, n, block)])
    pad = (-width) % 8
    if pad:
        u8 = np.concatenate([u8, np.zeros((n, pad), np.uint8)], axis=1)
    words = np.ascontiguousarray(u8).view(np.uint64)
    with np.errstate(over="ignore"):
        words = words ^ (words >> np.uint64(31))
        words = words * _MIX
        mult = (np.arange(1, words.shape[1] + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)
        h = (words * mult).sum(axis=1, dtype=np.uint64)
        h ^= h >> np.uint64(29)
    return h


#: 8-byte words of a row the sampled hash reads (see the module doc)
SAMPLED_WORDS = 16


def _sampled_offsets(width: int) -> np.ndarray | None:
    """Byte offsets of the words the sampled hash reads, as a ``(words * 8,)`` index into a
    row of ``width`` bytes; None when the row is not wider than the sample."""
    words = width // 8
    if words <= SAMPLED_WORDS:
        return None
    starts = np.unique(np.linspace(0, words - 1, SAMPLED_WORDS).astype(np.int64)) * 8
    return (starts[:, None] + np.arange(8)).reshape(-1)


def _sampled_hash(u8: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """:func:`_hash_rows` of the sampled words of each row."""
    return _hash_rows(np.ascontiguousarray(u8[:, offsets]))


def _no_columns(like: np.ndarray) -> np.ndarray:
    """Zero-width targets for rows matched by their inputs alone."""
    return np.zeros((like.shape[0], 0), dtype=np.uint8)


def _rows_2d(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 0:
        a = a.reshape(1, 1)
    elif a.ndim == 1:
        a = a.reshape(-1, 1)
    return np.ascontiguousarray(a.reshape(a.shape[0], -1))


class RowMatcher:
    """Map batch rows to 0-based positions in the training data, by content.

    ``x`` (and ``y``, when batches come with their targets) are the training rows;
    without ``x`` the table grows from the batches (:meth:`seen_data`). ``repeats``:
    ``"in_turn"`` or ``"first"`` (see the module docstring).
    """

    def __init__(self, x: np.ndarray | None = None, y: np.ndarray | None = None, *,
                 repeats: str = "in_turn") -> None:
        if repeats not in ("in_turn", "first"):
            raise ValueError(f"repeats: expected 'in_turn' or 'first', got {repeats!r}")
        self.growable = x is None
        self._x = None if x is None else _rows_2d(x)
        self._y = None if y is None else _rows_2d(y)
        self._in_turn = repeats == "in_turn"
        self._table: dict[bytes, list[int]] | None = None
        self._keys: np.ndarray | None = None
        self._offsets: np.ndarray | None = None   # the sampled words' bytes, when they tell rows apart
        self._used: dict[bytes, int] = {}
        self._dtypes = None
        self.new_x: list[np.ndarray] = []   # growable mode: rows in order of first appearance
        self.new_y: list[np.ndarray] = []

    def new_epoch(self) -> None:
        """Start handing out duplicate rows from their first copy again."""
        self._used.clear()

    def _build(self, bx: np.ndarray, by: np.ndarray) -> None:
        self._dtypes = (bx.dtype, by.dtype)
        self._table = {}
        if self.growable:
            return
        x = self._x.astype(bx.dtype, copy=False)
        y = _no_columns(x) if self._y is None else self._y.astype(by.dtype, copy=False)
        if x.shape[1] != bx.shape[1] or y.shape[1] != by.shape[1]:
            return
        keys = self._keys = _row_bytes(x, y, pooled=True)
        self._offsets = _sampled_offsets(keys.shape[1])
        h = None if self._offsets is None else _sampled_hash(keys, self._offsets)
        if h is None or np.unique(h).size < h.size:     # rows alike in the sample, or repeated rows
            full = _hash_rows(keys)
            if h is None or np.unique(h).size < np.unique(full).size:   # the sample cannot tell them apart
                h, self._offsets = full, None
        self._order = np.argsort(h, kind="stable")
        self._sorted = h[self._order]
        self._table = None           # the exact dictionary, built on first need

    def _dictionary(self) -> dict:
        if self._table is None:
            table = self._table = {}
            for i, key in enumerate(self._keys):
                table.setdefault(key.tobytes(), []).append(i)
        return self._table

    def _fast(self, keys: np.ndarray) -> np.ndarray | None:
        """Rows of a batch whose rows are all unique in the data, by hash; None otherwise."""
        hb = _hash_rows(keys) if self._offsets is None else _sampled_hash(keys, self._offsets)
        srt = self._sorted
        lo = np.searchsorted(srt, hb, "left")
        if lo.size and lo.max() >= srt.size:
            return None
        nxt = np.minimum(lo + 1, srt.size - 1)
        if np.any(srt[lo] != hb) or np.any((srt[nxt] == hb) & (nxt != lo)):    # absent, or not unique
            return None
        rows = self._order[lo]
        if not np.array_equal(self._keys[rows], keys):
            return None
        return rows

    def match(self, bx: np.ndarray, by: np.ndarray | None = None) -> np.ndarray | None:
        """0-based rows of the batch ``(bx, by)``; None if a row is not in the data.

        ``by`` (the batch's targets) counts only when the data was given with targets
        (or the table grows from the batches). The data are compared in the dtype of
        the first batch.
        """
        bx = _rows_2d(bx)
        by = _no_columns(bx) if by is None or (self._y is None and not self.growable) else _rows_2d(by)
        if self._dtypes is None:
            self._build(bx, by)
        if not self.growable and self._keys is None:
            return None
        if (bx.dtype, by.dtype) != self._dtypes:
            bx = bx.astype(self._dtypes[0])
            by = by.astype(self._dtypes[1])
        keys = _row_bytes(bx, by)
        if not self.growable:
            rows = self._fast(keys)
            if rows is not None:
                return rows
        rows = np.empty(bx.shape[0], dtype=np.int64)
        table, used = (self._table if self.growable else self._dictionary()), self._used
        for i, key in enumerate(keys):
            k = key.tobytes()
            hits = table.get(k)
            if hits is None:
                if not self.growable:
                    return None
                hits = table[k] = [len(self.new_x)]
                self.new_x.append(bx[i].copy())
                self.new_y.append(by[i].copy())
            if not self._in_turn:
                rows[i] = hits[0]
                continue
            j = used.get(k, 0)
            if j >= len(hits):
                if self.growable:           # a repeat within the epoch: a new sample
                    hits.append(len(self.new_x))
                    self.new_x.append(bx[i].copy())
                    self.new_y.append(by[i].copy())
                else:
                    j = j % len(hits)
            used[k] = j + 1
            rows[i] = hits[j]
        return rows

    def match_batches(self, batches: list) -> list | None:
        """:meth:`match` of each ``(bx, by)`` of ``batches`` with one hash and one lookup over
        all their rows; None where that shortcut does not apply (then :meth:`match` each).

        Why: the per-batch lookup is a handful of NumPy calls on 50 rows, its cost mostly
        per call (issue 12: ~0.15 ms a batch); a ring read brings K batches at once. The
        shortcut is :meth:`match`'s own first path (every row unique in the data, found by
        hash and confirmed byte for byte), which keeps no state, so the result is the same."""
        if self.growable or self._keys is None or not batches:
            return None
        xs, ys = [], []
        for bx, by in batches:
            bx = _rows_2d(bx)
            by = _no_columns(bx) if by is None or self._y is None else _rows_2d(by)
            if (bx.dtype, by.dtype) != self._dtypes:
                return None
            xs.append(bx)
            ys.append(by)
        rows = self._fast(_row_bytes(np.concatenate(xs), np.concatenate(ys)))
        if rows is None:
            return None
        return np.split(rows, np.cumsum([x.shape[0] for x in xs])[:-1])

    def seen_data(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Growable mode: the rows seen so far, in order of first appearance."""
        if not self.new_x:
            return None
        return np.stack(self.new_x), np.stack(self.new_y)
