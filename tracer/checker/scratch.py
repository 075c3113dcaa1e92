"""Scratch buffers the checker's blocked comparisons reuse, within one call and across calls
of the same check.

Why: a comparison walks 18 million pairs in blocks of 1 MB through a few buffers (see
:mod:`tracer.checker.compare`). A fresh buffer costs its first touch, about 1.3 ms per MB
of page faults here, and glibc hands such sizes back to the system when they are freed,
so every comparison paid it again. While :func:`arena` is active (one ``check`` call), a
released buffer is kept and the next comparison takes it: the arena holds at most what the
comparisons used at once (a few MB), and is dropped when the check returns. Outside an arena
(a comparison called on its own) buffers are plain allocations. Nothing process-wide
(no malloc setting) is changed: ``check`` runs in the user's process.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Scratch", "arena"]

_free: ContextVar[list | None] = ContextVar("steptrace_check_scratch", default=None)


@contextmanager
def arena() -> Iterator[None]:
    """For the duration of the block: buffers a :class:`Scratch` releases serve the next one."""
    token = _free.set([])
    try:
        yield
    finally:
        _free.reset(token)


#: buffers are whole MiB of raw bytes, so that one serves any dtype and block shape that
#: fits (a float32 block then a float64 one): the arena keeps fewer, and holds less
_UNIT = 1 << 20


def _take(n: int, dtype: np.dtype) -> np.ndarray:
    """A flat ``dtype`` view of ``n`` elements on raw bytes: free ones of the arena first."""
    nbytes = -(-n * dtype.itemsize // _UNIT) * _UNIT
    free = _free.get()
    fits = [i for i, raw in enumerate(free or ()) if raw.nbytes >= nbytes]
    raw = free.pop(min(fits, key=lambda i: free[i].nbytes)) if fits else np.empty(nbytes, dtype=np.uint8)
    return raw.view(dtype)


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
        free = _free.get()
        if free is not None:
            free.extend(buf.base if buf.base is not None else buf for buf in self.bufs)
        self.bufs = []

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
