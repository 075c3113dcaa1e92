"""Memory for the recorder's big chunks, kept by the process and handed out again once no
array sees it any more.

Why: the first write to fresh memory is what a full capture pays for on the machines
steptrace runs on - the kernel faults in and zeroes every page, about 1.3 ms per MB, and
with transparent huge pages the fault may also wait for compaction (measured between 0.2
and 20 ms per MB on the same VM). A loop that keeps a ``clone()`` per step gets memory
the allocator recycled from earlier work for free; a recorder whose big chunks come
straight from ``mmap`` never does. So big chunks (at least :data:`POOL_MIN_BYTES`) are
carved from raw blocks this pool keeps: when every array that viewed a block is gone
(the trace was dropped, the recorder with it), the block - its pages already touched -
serves the next recording in the same process instead of fresh memory.

How "no array sees it" is known: every NumPy view of a block, however derived, has the
block itself as its ``base`` (NumPy collapses view chains to the array that owns the
memory), so the block's reference count is the pool's own reference plus one per live
view. A block is reused only when that count says nobody else holds it; otherwise it is
left alone, so values a trace still reads are never overwritten.

What it costs: the pages of a block stay with the process while the block is free (at
most :data:`POOL_BYTES` of blocks are kept; more are allocated as before and returned to
the system when their arrays go).

Why no transparent huge pages: NumPy asks for them on every allocation of 4 MiB or more,
and where the kernel compacts memory on such a fault (``defrag`` set to ``madvise``, the
default) one fault can stall for milliseconds. Measured on a traced Keras ``fit`` of the
bench's MLP (about 1 MB recorded per step, fresh pool): 2.0-2.3 ms of system time per step
with huge pages, 0.6 ms with plain 4 KiB pages (``bench/profile_keras.py``). A block is
therefore advised ``MADV_NOHUGEPAGE`` before anything touches it.
"""
from __future__ import annotations

import ctypes
import mmap
import sys
import threading

import numpy as np

__all__ = ["POOL_BYTES", "POOL_MIN_BYTES", "take", "pooled", "chunk", "copy", "release_free"]

#: chunks at least this big come from the pool (the size NumPy starts asking for huge pages)
POOL_MIN_BYTES = 4 << 20
#: bytes of blocks (reserved, used or free) the pool keeps at most
POOL_BYTES = 2 << 30

_blocks: list[np.ndarray] = []       # raw uint8 blocks, owning their memory
_lock = threading.Lock()
_FREE_REFS = 3                       # a free block: the list's slot, the loop variable, getrefcount's argument


def take(nbytes: int) -> np.ndarray:
    """A raw block of at least ``nbytes`` bytes nobody views: a free pooled one (the smallest
    that fits), else a new one (pooled while the pool has room)."""
    with _lock:
        best = None
        for raw in _blocks:
            if raw.nbytes >= nbytes and sys.getrefcount(raw) <= _FREE_REFS:
                if best is None or raw.nbytes < best.nbytes:
                    best = raw
        if best is not None:
            return best
        raw = np.empty(nbytes, dtype=np.uint8)
        no_huge_pages(raw)
        _populated[_address(raw)] = 0     # fresh pages (an earlier block's address reused)
        if sum(b.nbytes for b in _blocks) + nbytes <= POOL_BYTES:
            _blocks.append(raw)
        return raw


def _madvise():
    """libc's ``madvise`` (None where there is none, or no ``MADV_NOHUGEPAGE``)."""
    if not hasattr(mmap, "MADV_NOHUGEPAGE"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):      # no C library to ask: blocks keep the default
        return None
    fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn


_MADVISE = _madvise()


def no_huge_pages(raw: np.ndarray) -> bool:
    """Advise the whole pages of ``raw``'s memory ``MADV_NOHUGEPAGE`` (before they are
    touched: see the module doc). Returns whether the kernel took the advice; the values
    never depend on it."""
    if _MADVISE is None:
        return False
    page = mmap.PAGESIZE
    start = raw.__array_interface__["data"][0]
    first = -(-start // page) * page
    end = (start + raw.nbytes) // page * page
    return end > first and _MADVISE(first, end - first, mmap.MADV_NOHUGEPAGE) == 0


#: ``madvise`` advice that faults a range in for writing in one call (Linux 5.14; not in
#: Python 3.11's ``mmap``)
MADV_POPULATE_WRITE = 23
_populate = [True]                   # cleared when the kernel refuses the advice
#: a block's address -> bytes from its start :func:`populate` faulted in (a reused block's
#: pages are present: asking again would only walk its page table, ~0.1 ms per 2 MiB)
_populated: dict[int, int] = {}


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def populate(view: np.ndarray) -> bool:
    """Fault in the pages under ``view`` in one call, before its rows are written.

    Why: a chunk is touched row by row, each 4 KiB page then costs one fault (a trap, the
    zeroing, the return); faulting a few MiB in at once does the same zeroing without the
    traps (measured: 0.21 ms per fresh 512 KiB row against 0.29-0.43 row by row). Pages
    already present cost a walk of their page table. Returns whether the kernel took it;
    the values never depend on it."""
    if _MADVISE is None or not _populate[0] or view.nbytes == 0:
        return False
    page = mmap.PAGESIZE
    start, stop = _address(view), _address(view) + view.nbytes
    origin = _address(view.base) if isinstance(view.base, np.ndarray) else None
    done = None if origin is None else _populated.get(origin)
    if done is not None:                 # a pool block, filled from its start: skip what is present
        if stop <= origin + done:
            return True
        start = max(start, origin + done)
    first = start // page * page
    end = -(-stop // page) * page
    if _MADVISE(first, end - first, MADV_POPULATE_WRITE) == 0:
        if done is not None:
            _populated[origin] = max(done, stop - origin)
        return True
    _populate[0] = False             # an older kernel (EINVAL): rows fault in as they are written
    return False


def pooled(raw: np.ndarray) -> bool:
    """Whether ``raw`` is one of the pool's blocks (the pool holds a reference to it)."""
    return any(b is raw for b in _blocks)


def chunk(rows: int, width: int, dtype: np.dtype) -> np.ndarray:
    """An uninitialised ``(rows, width)`` array of ``dtype``: carved from a pool block when
    it is big (see the module doc), else a plain ``np.empty``."""
    dtype = np.dtype(dtype)
    nbytes = rows * width * dtype.itemsize
    if nbytes < POOL_MIN_BYTES:
        return np.empty((rows, width), dtype=dtype)
    raw = take(nbytes)
    return raw[:nbytes].view(dtype).reshape(rows, width)


def copy(a: np.ndarray) -> np.ndarray:
    """A C-ordered copy of a 2-D array, in a pool block when it is big: what a recording
    copies once per run (its data table) reuses the pages an earlier recording touched."""
    out = chunk(a.shape[0], a.shape[1], a.dtype)
    np.copyto(out, a)
    return out


def release_free() -> int:
    """Give the free blocks (no array views them) back to the system; returns their bytes.

    Why: between phases that do not record - ``steptrace run`` checking the runs it saved -
    the touched pages of free blocks would only add to the process's peak RSS, which the
    memory budget promises to bound."""
    with _lock:
        keep, released = [], 0
        for raw in _blocks:                  # a plain loop: the references _FREE_REFS counts
            if sys.getrefcount(raw) <= _FREE_REFS:
                released += raw.nbytes
                _populated.pop(_address(raw), None)
            else:
                keep.append(raw)
        raw = None
        _blocks[:] = keep
    return released
