"""One parameter's recorded values: before, gradient, after and optimizer state, one row
per step, with each step's ``before`` stored only where it differs from the ``after`` of
the step before.

Why: consecutive steps chain - the ``after`` of step k is the ``before`` of step k+1 - so
storing both copies every step writes every parameter twice, and on the machines
steptrace runs on fresh memory is what a recording pays for (about 1.3 ms per MB on
first touch). While the steps chain, one buffer holds the first step's ``before``
followed by every step's ``after``, and ``before``/``after`` are two views of it, shifted
by one row (no copy). The first step whose ``before`` is not, bit for bit, the previous
``after`` (a write outside the step, a skipped step with ``every=k``, a parameter absent
from a step) turns the buffer into separate ``before`` and ``after`` buffers for good, so
the evidence of the discontinuity (what the continuity diagnosis reads) is kept as is.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .buffers import RowBuffer

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

__all__ = ["ParamBuffers", "initial_capacity", "value_dtype", "same_bytes"]


def initial_capacity(size: int, dtype: DTypeLike, limit: int = 1 << 20) -> int:
    """Rows to preallocate: 64 for small parameters, fewer for big ones (about ``limit``
    bytes, 1 MB by default), never less than one."""
    return int(max(1, min(64, min(limit, 1 << 20) // max(1, size * np.dtype(dtype).itemsize))))


def value_dtype(dtype: DTypeLike) -> np.dtype:
    """Floating parameters keep their dtype (float16/32/64); anything else is float64."""
    return np.dtype(dtype) if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


class ParamBuffers:
    """Before, gradient, after and state slots of one parameter (see the module doc).

    ``chain=False`` starts with separate before/after buffers (``every=k`` with k > 1:
    recorded steps never chain)."""

    __slots__ = ("shape", "size", "dtype", "values", "before", "grad", "after", "slots", "chunk_bytes", "n",
                 "_handed")

    def __init__(self, shape, dtype, chunk_bytes: int = RowBuffer.CHUNK_BYTES, chain: bool = True):
        self.shape = tuple(int(s) for s in shape)
        self.size = int(np.prod(self.shape, dtype=np.int64))
        self.dtype = value_dtype(dtype)
        self.chunk_bytes = chunk_bytes
        self.grad = self._buffer()
        #: while chained: the first step's before, then each step's after (else None)
        self.values: RowBuffer | None = self._buffer() if chain else None
        self.before: RowBuffer | None = None if chain else self._buffer()
        self.after: RowBuffer | None = None if chain else self._buffer()
        self.slots: dict[str, RowBuffer] = {}
        self.n = 0                 # steps held
        self._handed: tuple | None = None   # (the view last_after gave out, n then)

    def _buffer(self) -> RowBuffer:
        cap = initial_capacity(self.size, self.dtype, self.chunk_bytes)
        return RowBuffer(self.size, self.dtype, cap, self.chunk_bytes)

    def _values_buffers(self) -> tuple:
        return (self.values,) if self.values is not None else (self.before, self.after)

    @property
    def nbytes(self) -> int:
        """Bytes held by this parameter's buffers."""
        return sum(b.nbytes for b in (self.grad, *self._values_buffers(), *self.slots.values()))

    def step_growth(self) -> int:
        """Bytes one more step's before, after and gradient would fill (at most)."""
        rows = 3 if self.values is None or self.n == 0 else 2
        return rows * self.grad.growth(1)

    def add(self, before: np.ndarray, after: np.ndarray) -> None:
        """One step's values (the gradient and slots are the caller's)."""
        if self.values is not None:
            if self.n == 0:
                self.values.append(before)
            elif not self._is_handed(before) and not _same_bits(before, self.values.last()):
                self._unchain()
        if self.values is not None:
            self.values.append(after)
        else:
            self.before.append(before)
            self.after.append(after)
        self.n += 1

    def _is_handed(self, value) -> bool:
        """Whether ``value`` is the very view :meth:`last_after` gave out, still the last row
        (then it chains without a compare: asking two arrays' addresses costs ~2 us each)."""
        handed = self._handed
        return handed is not None and handed[0] is value and handed[1] == self.n

    def last_after(self) -> np.ndarray | None:
        """While the steps chain, the last step's ``after`` (a view): the ``before`` the next
        step must repeat bit for bit to stay in the chain. None when not chained or empty."""
        if self.values is None or self.n == 0:
            return None
        view = self.values.last()
        self._handed = (view, self.n)
        return view

    def stage_grad(self) -> np.ndarray | None:
        """The next gradient row, to fill in place (:meth:`tracer.buffers.RowBuffer.stage`)."""
        return self.grad.stage()

    def pad(self) -> None:
        """A step this parameter was absent from: NaN everywhere (the chain ends)."""
        if self.values is not None:
            self._unchain()
        for b in (self.before, self.grad, self.after, *self.slots.values()):
            b.append_fill(np.nan)
        self.n += 1

    def _unchain(self) -> None:
        """From here on, separate before and after buffers (the rows so far copied once)."""
        rows = self.values.to_array()
        self.values = self._handed = None
        self.before, self.after = self._buffer(), self._buffer()
        if self.n:
            self.before.extend(rows[:-1])
            self.after.extend(rows[1:])

    def before_after(self) -> tuple[np.ndarray, np.ndarray]:
        """``(before, after)``, one row per step: while chained, two views of one array."""
        if self.values is None:
            return self.before.to_array(), self.after.to_array()
        rows = self.values.to_array()
        if self.n == 0:
            return rows[:0], rows[:0]
        return rows[:-1], rows[1:]

    def new_slot(self, rows_before: int) -> RowBuffer:
        """A state-slot buffer, NaN for the ``rows_before`` steps recorded before it appeared."""
        sbuf = self._buffer()
        for _ in range(rows_before):
            sbuf.append_fill(np.nan)
        return sbuf

    def reset(self) -> None:
        """Forget every step (they went to a store); keep the buffers for the next ones."""
        self._handed = None
        for b in (self.grad, *self._values_buffers(), *self.slots.values()):
            b.reset()
        self.n = 0


def _same_bits(value, row: np.ndarray) -> bool:
    """Whether ``value``, as the buffer would store it, is ``row`` bit for bit (NaN and
    -0.0 included: a chained ``before`` must be exactly the value given). ``value`` may be
    ``row`` itself (a hook that checked the chain already hands back :meth:`ParamBuffers.last_after`)."""
    v = np.ascontiguousarray(value, dtype=row.dtype).reshape(-1)
    r = np.ascontiguousarray(row).reshape(-1)
    if v.shape != r.shape:
        return False
    return same_bytes(v, r)


def _load_memcmp():
    try:
        import ctypes
        fn = ctypes.CDLL(None).memcmp
    except (OSError, AttributeError, TypeError):  # no C library to call (e.g. Windows): NumPy compares
        return None
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    return fn


_MEMCMP = _load_memcmp()


def same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two C-contiguous arrays of as many bytes hold the same bytes. Why ``memcmp``:
    it reads both once and allocates nothing (NumPy's ``array_equal`` allocates a mask as big
    as the row, fresh memory at every step), a few times faster on a parameter's row."""
    n = a.nbytes
    if n != b.nbytes:
        return False
    pa, pb = a.__array_interface__["data"][0], b.__array_interface__["data"][0]
    if pa == pb:
        return True
    if _MEMCMP is not None and n >= 256:
        return _MEMCMP(pa, pb, n) == 0
    as_int = np.dtype(f"u{a.dtype.itemsize}")
    return bool(np.array_equal(a.reshape(-1).view(as_int), b.reshape(-1).view(as_int)))
