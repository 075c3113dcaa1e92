"""The iterator a traced ``for`` statement asks for items: each ``next`` is a step boundary.

Why an iterator: a NumPy loop has no event to hook, but the ``for`` statement calls
``next`` exactly between two iterations. At that moment the loop's frame holds the
parameters after the iteration that just ended (= before the next one), and the
predictions and loss that iteration left behind.
"""
from __future__ import annotations

import sys

import numpy as np

__all__ = ["LoopIterator", "batch_order"]


def batch_order(n: int, batch_size: int, shuffle: bool, seed: int | None, epoch: int,
                drop_last: bool) -> list[np.ndarray]:
    """The row positions of each batch of one epoch (a private random stream, never the user's)."""
    if shuffle:
        rng = np.random.default_rng(None if seed is None else [int(seed), epoch])
        order = rng.permutation(n)
    else:
        order = np.arange(n)
    stop = n - n % batch_size if drop_last else n
    return [order[i:i + batch_size] for i in range(0, stop, batch_size)]


class LoopIterator:
    """Wraps the loop's items; each ``next`` closes one step and opens the next.

    ``full_batch``: each item is one epoch of one batch (all rows); otherwise each
    item is the row positions of one batch of the current epoch.
    """

    __slots__ = ("_tracer", "_items", "_full_batch")

    def __init__(self, tracer, items, full_batch: bool):
        self._tracer = tracer
        self._items = items
        self._full_batch = full_batch

    def __iter__(self):
        return self

    def __next__(self):
        frame = sys._getframe(1)
        tracer = self._tracer
        try:
            current = self._guard(self._close, frame)
            try:
                item = next(self._items)
            except StopIteration:
                if not self._full_batch:
                    self._guard(tracer.end_epoch)
                raise
            if current is not None:
                self._guard(self._open, item, current)
            return item
        finally:
            del frame

    def _guard(self, fn, *args):
        """Run a tracer step; its failure stops tracing (one warning) but never the loop:
        the items are the loop's whatever happens here."""
        if self._tracer.failed is not None:
            return None
        try:
            return fn(*args)
        except Exception as exc:  # the boundary with the user's loop: tracing stops, the loop goes on
            self._tracer.stop(exc)
            return None

    def _close(self, frame):
        current = self._tracer.read_params(frame)
        self._tracer.close_step(frame, current)
        return current

    def _open(self, item, current) -> None:
        tracer = self._tracer
        if self._full_batch:
            tracer.open_step(tracer.epoch + 1, 1, None, current)
        else:
            epoch = tracer.epoch + 1 if tracer.batch == 0 else tracer.epoch
            tracer.open_step(epoch, tracer.batch + 1, item, current)
