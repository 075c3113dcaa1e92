"""The check's arena: memory for the big arrays one check makes, reused from chunk to chunk
and, for the same trace, from one check to the next.

Why: a check walks the trace in chunks of steps, and each chunk makes arrays of the same
sizes (S4: a dozen of 1-11 MB). Fresh memory costs its first touch, about 1.3 ms per MB of
page faults here, and glibc hands big freed arrays back to the system until its own
thresholds have grown, so a process's first check paid the faults again in every chunk
(S4: 26,000 minor faults, 7,000 with the arena). While :func:`arena` is active (one
``check`` call), :func:`empty` and :class:`Scratch` lay arrays of :data:`ARENA_MIN` bytes or
more on blocks of the arena. The rule: a block is reused once nothing but the arena refers
to it (its reference count), so a value a caller still holds is never written over.
Outside an arena these are plain allocations. Nothing process-wide (no malloc setting) is
changed: ``check`` runs in the user's process.

Whose blocks: an arena opened for an ``owner`` (``check`` passes the trace's arrays) keeps,
when it ends, the blocks this check handed out (at most what the check itself held at
once, S4: 166 MB for a 151 MB trace, its first chunk's blocks and the larger chunk's
after it, :mod:`tracer.checker.step_memory`) for the next arena of the same owner and ``key`` (the
same trace, unchanged in shape): a repeated check then touches no fresh page (S4: 3,400
minor faults less). One owner's blocks are kept at a time: opening an arena for another
owner, or the same owner with another key (its arrays changed), frees them first; the
owner going (a weak reference) frees them; :func:`drop_kept` frees them on demand;
:func:`kept_bytes` says how much is kept. Only raw memory is kept, never a value: every
array handed out is written before it is read, so what the last check left in a block
plays no part in the next one.

Why malloc's memory and no huge pages: blocks of 1 MB or more mapped on their own in 2 MiB
pages (``MADV_HUGEPAGE``) made a check from fresh blocks cheaper (S4: 3,392 faults -> 17,
cpu best 158.5 -> 150.7 ms), but a repeated check then took 9,700 faults: the check's other
big temporaries (NumPy results not laid on the arena, ~1.1 MB each) come from malloc's heap,
and with no kept block at its top glibc trimmed and grew it again in every chunk (strace:
44 ``brk`` calls a check, none with malloc's blocks). ``MADV_POPULATE_WRITE`` on a new
block did not help either (it touches the block's unused tail too: more faults, no less cpu).
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

import math
import sys
import threading
import weakref

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Hashable, Iterator

__all__ = ["Scratch", "arena", "empty", "ARENA_MIN", "drop_kept", "kept_bytes", "lent_mark", "lent_since"]


class _Pool(list):
    """The blocks of one arena; ``log``: the position of the block each request of this
    arena got, in order (the blocks worth keeping are those it names); ``plan``: the log of
    the last arena of the same trace, which this one replays (see :func:`_block`)."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[int] = []
        self.plan: list[int] = []


_pool: ContextVar[_Pool | None] = ContextVar("steptrace_check_scratch", default=None)

#: arrays from this size up come from the arena (smaller ones: malloc's own free lists
#: keep them, and the bookkeeping would cost more than the pages)
ARENA_MIN = 128 << 10
#: block sizes round up to this, so that a chunk's arrays fit the blocks of the last one
_GRAIN = 64 << 10

#: the blocks kept after an owner's arena: (weak reference to the owner, key, pool), or None
_kept: tuple | None = None
#: reentrant: the weak reference's callback (:func:`_forget`) may run from a garbage
#: collection that an allocation made while the lock is held sets off, in the same thread
_kept_lock = threading.RLock()


def _refs(pool: list, i: int) -> int:
    """References to block ``i`` of ``pool``, read the same way for every block."""
    return sys.getrefcount(pool[i])


def _idle() -> int:
    pool = _Pool()
    pool.append(np.empty(1))
    return _refs(pool, 0)


#: the count :func:`_refs` reads for a block that nothing but the pool refers to (measured,
#: not assumed: how many references the call itself holds is the interpreter's business)
_IDLE = _idle()


@contextmanager
def arena(owner: object | None = None, key: Hashable = None) -> Iterator[None]:
    """For the duration of the block (one check): big arrays of :func:`empty` and
    :class:`Scratch` come from blocks that no live array uses any more. Without an
    ``owner`` the blocks are dropped when the block ends. With one (``check`` passes the
    trace's arrays), the blocks kept by the last arena of the same ``owner`` and ``key``
    are reused, and the blocks this arena handed out are kept for the next one (see the
    module's docstring). Inside an active arena it opens none of its own: the checks of
    one outer block (several traces checked in a row) share its blocks."""
    if _pool.get() is not None:
        yield
        return
    pool = _adopt(owner, key)
    token = _pool.set(pool)
    try:
        yield
    finally:
        _pool.reset(token)
        if owner is not None:
            _keep(owner, key, pool)


def _adopt(owner: object | None, key: Hashable) -> _Pool:
    """The pool an arena starts with: the kept one when it is ``owner``'s under ``key``
    (taken out, so that two threads checking one trace never share blocks), else a new one;
    any other owner's kept blocks are freed here, before this check allocates its own."""
    global _kept
    with _kept_lock:
        kept, _kept = _kept, None
    if owner is not None and kept is not None and kept[0]() is owner and kept[1] == key:
        return kept[2]
    return _Pool()


def _keep(owner: object, key: Hashable, pool: _Pool) -> None:
    """Keep the blocks ``pool`` handed out in this arena (at most what the check held at
    once) for ``owner``'s next arena; the others are freed."""
    global _kept
    place = {old: new for new, old in enumerate(sorted(set(pool.log)))}
    pool[:] = [pool[old] for old in place]
    pool.plan, pool.log = [place[old] for old in pool.log], []
    if not pool:
        return
    try:
        ref = weakref.ref(owner, _forget)
    except TypeError:       # an owner that cannot be weakly referenced keeps nothing
        return
    entry = (ref, key, pool)      # made before the lock is taken (see _kept_lock)
    with _kept_lock:
        _kept = entry


def _forget(ref: weakref.ref) -> None:
    """The owner is gone: its kept blocks go too."""
    global _kept
    with _kept_lock:
        if _kept is not None and _kept[0] is ref:
            _kept = None


def drop_kept() -> int:
    """Free the blocks kept since the last check (a caller done checking that trace, e.g.
    ``steptrace run`` before its exports); returns the bytes dropped. A block a caller still
    views is freed when that view goes."""
    global _kept
    with _kept_lock:
        kept, _kept = _kept, None
    return 0 if kept is None else sum(block.nbytes for block in kept[2])


def kept_bytes() -> int:
    """Bytes of the blocks kept for the next check of the last trace checked (0: none)."""
    kept = _kept
    return 0 if kept is None else sum(block.nbytes for block in kept[2])


def lent_mark() -> int | None:
    """A mark of the active arena's requests so far, for :func:`lent_since` (None outside
    an arena)."""
    pool = _pool.get()
    return None if pool is None else len(pool.log)


def lent_since(mark: int | None) -> int:
    """Bytes of the distinct blocks the active arena handed out since ``mark``: the arena
    memory the work since then held at once, about (a block is handed out again once it is
    idle). 0 outside an arena or without a mark. Why: the checker sizes its chunks of steps
    from what its first chunk really used (:mod:`tracer.checker.core`)."""
    pool = _pool.get()
    if pool is None or mark is None:
        return 0
    return sum(pool[i].nbytes for i in set(pool.log[mark:]))


def _block(nbytes: int) -> np.ndarray:
    """Raw bytes of at least ``nbytes``: the block the same request got in the last check
    of this trace (its ``plan``) when that one is idle and big enough, else the smallest
    idle block of the arena that holds them (a last, shorter chunk fits the blocks of the
    full ones), else a new one.

    Why the plan: a repeated check makes the same requests in the same order, and replaying
    the first check's choices needs exactly its blocks. Best fit alone does not: with all
    the kept blocks there from the start, a small request takes a small block that the
    first check had not made yet (it had lent a bigger one), and a bigger request later finds
    its block lent out (the kept-arena test saw one new 128 KiB block a repeated check).

    A block is idle when nothing but the arena refers to it: every array handed out is a
    view whose ``base`` is its block, so a value a caller still holds (a recomputed gradient
    kept after its chunk, the report's context) keeps its block busy, and it is never
    written over. That test is why reuse needs no explicit "give back"."""
    pool = _pool.get()
    nbytes = -(-nbytes // _GRAIN) * _GRAIN
    if pool is None:
        return np.empty(nbytes, dtype=np.uint8)
    log, plan = pool.log, pool.plan
    if len(log) < len(plan):
        i = plan[len(log)]
        if nbytes <= pool[i].nbytes and _refs(pool, i) <= _IDLE:
            log.append(i)
            return pool[i]
    best = None
    for i in range(len(pool)):
        size = pool[i].nbytes
        if nbytes <= size and (best is None or size < pool[best].nbytes) and _refs(pool, i) <= _IDLE:
            best = i
    if best is None:
        pool.append(np.empty(nbytes, dtype=np.uint8))
        best = len(pool) - 1
    log.append(best)
    return pool[best]


def empty(shape: tuple, dtype: np.dtype | type) -> np.ndarray:
    """``np.empty(shape, dtype)``; within an :func:`arena`, an array of ``ARENA_MIN`` bytes
    or more is laid on an idle block already touched by an earlier chunk, so it costs no
    page faults (fresh pages cost about 1.3 ms per MB here, and glibc hands big freed
    arrays back to the system until its thresholds have grown). Nothing process-wide (no
    malloc setting) is changed: a check runs in the user's process."""
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else shape
    nbytes = int(math.prod(shape)) * dtype.itemsize      # math.prod: np.prod costs ~5 us a call
    if nbytes < ARENA_MIN or _pool.get() is None:
        return np.empty(shape, dtype=dtype)
    return np.ndarray(shape, dtype, buffer=_block(nbytes))     # its base is the block


def _take(n: int, dtype: np.dtype) -> np.ndarray:
    """A flat ``dtype`` array of ``n`` elements on a block of the arena (or a new block)."""
    return _block(n * dtype.itemsize)[:n * dtype.itemsize].view(dtype)


class Scratch:
    """Flat buffers of one dtype, viewed in the shape of each block: reused block after block,
    and given back to the check's :func:`arena` by :meth:`release` (or leaving a ``with``)."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype, self.bufs = np.dtype(dtype), []

    def views(self, shape: tuple[int, int], count: int) -> list[np.ndarray]:
        """``count`` distinct scratch arrays shaped ``shape`` (contents undefined)."""
        n = shape[0] * shape[1]
        if len(self.bufs) < count or self.bufs[0].size < n:
            self.release()
            self.bufs = [_take(n, self.dtype) for _ in range(count)]
        return [buf[:n].reshape(shape) for buf in self.bufs[:count]]

    def release(self) -> None:
        """Give the buffers back (to the arena when one is active); views must be done with."""
        self.bufs = []      # their blocks turn idle (see _block)

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
