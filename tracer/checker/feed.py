"""Feed recorded steps to the step program: group steps by batch size, build the leaves.

This is the one place that sorts the ``samples`` table by step and slices each step's
rows (the checker, the logged-value check, the reconciliation and the reports all
come here). Steps are grouped by batch size so each group stacks into arrays
``(S, B, ...)``; groups are cut into chunks that bound memory, and a chunk's leaves
are copied in the working precision only when the chunk is evaluated.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import TraceInputError
from ..program.scratch import empty

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from numpy.typing import ArrayLike

    from ..arrays import TraceArrays
    from ..program import StepProgram

__all__ = ["StepGroup", "step_groups", "leaves", "chunks", "rows_of_steps", "positions", "RowBuffers"]


@dataclass
class StepGroup:
    """Steps sharing a batch size: ``steps`` (S,), ``rows`` (S, B) positions in the data
    (None when the program reads no data), ``param_pos`` (S,) positions into the
    parameter arrays (-1 where parameters were not captured), ``micro`` (S,) the
    micro-step of each entry when the run accumulated gradients (an entry is then one
    micro-batch, and several entries share a step), else None."""

    steps: np.ndarray
    rows: np.ndarray | None
    param_pos: np.ndarray
    micro: np.ndarray | None = None

    def subset(self, sel: np.ndarray | slice) -> "StepGroup":
        """The steps picked by ``sel`` (a mask or slice)."""
        return StepGroup(self.steps[sel], None if self.rows is None else self.rows[sel], self.param_pos[sel],
                         None if self.micro is None else self.micro[sel])

    @property
    def keys(self) -> np.ndarray:
        """One key per entry: the step, or (step, micro-step) folded into one integer."""
        return unit_keys(self.steps, self.micro)

    @property
    def batch_size(self) -> int | None:
        return None if self.rows is None else int(self.rows.shape[1])


MICRO_BASE = 1 << 20     # micro-steps per step, at most


def unit_keys(steps: ArrayLike, micro: ArrayLike | None) -> np.ndarray:
    """The step of each entry, or ``step * MICRO_BASE + micro`` when there are micro-steps."""
    steps = np.asarray(steps, dtype=np.int64)
    return steps if micro is None else steps * MICRO_BASE + np.asarray(micro, dtype=np.int64)


def rows_of_steps(arrays: TraceArrays) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(keys, starts, counts, order)``: the samples table sorted by step (and micro-step,
    see :func:`unit_keys`), stable, each key with the start and length of its block of
    rows in ``order``."""
    key = unit_keys(arrays.sample_step, arrays.sample_micro)
    order = np.argsort(key, kind="stable")
    keys, starts, counts = np.unique(key[order], return_index=True, return_counts=True)
    return keys, starts, counts, order


def step_groups(arrays: TraceArrays, needs_rows: bool = True) -> list[StepGroup]:
    """The recorded steps with parameters, grouped by batch size (one group when the
    program reads no data rows). Steps whose rows are unknown are left out."""
    pos_of = {int(s): i for i, s in enumerate(arrays.param_step)}
    if not needs_rows:
        steps = np.asarray(arrays.param_step, dtype=np.int64)
        if not steps.size:
            return []
        return [StepGroup(steps, None, np.arange(steps.size, dtype=np.int64))]
    if arrays.inputs is None or arrays.sample_step.size == 0:
        return []
    keys, starts, counts, order = rows_of_steps(arrays)
    micro = arrays.sample_micro is not None
    steps_of = keys // MICRO_BASE if micro else keys
    s_row = arrays.sample_row[order]
    groups = []
    for size in np.unique(counts):
        sel = counts == size
        idx = starts[sel][:, None] + np.arange(size)[None, :]
        rows = s_row[idx]
        ok = (rows >= 0).all(axis=1)
        if not ok.any():
            continue
        st = steps_of[sel][ok]
        groups.append(StepGroup(st, rows[ok], np.array([pos_of.get(int(s), -1) for s in st], dtype=np.int64),
                                (keys[sel][ok] % MICRO_BASE) if micro else None))
    return groups


def chunks(groups: list[StepGroup], bytes_per_step: int | Callable[[StepGroup], int],
           budget: int = 256 * 1024**2) -> Iterator[StepGroup]:
    """Split groups (only steps with parameters) so one chunk's working arrays stay under
    ``budget``. ``bytes_per_step``: a step's working memory, or a function of the group
    asked before each chunk (an estimate its caller refines as it measures chunks)."""
    for g in groups:
        ok = g.param_pos >= 0
        if not ok.any():
            continue
        g = g.subset(ok)
        start = 0
        while start < len(g.steps):
            per = bytes_per_step(g) if callable(bytes_per_step) else bytes_per_step
            size = max(1, budget // max(1, per))
            yield g.subset(slice(start, start + size))
            start += size


def leaves(program: StepProgram, arrays: TraceArrays, group: StepGroup, dtype: type[np.floating],
           which: str = "before", params: dict[str, np.ndarray] | None = None,
           gather: RowBuffers | None = None) -> dict:
    """The program's leaves for the steps of ``group``: data rows, parameters, constants.

    ``which`` picks the parameter values (``before`` the update, or ``after``);
    ``params`` overrides parameter arrays (name -> stacked array); ``gather`` copies the
    data rows into buffers reused from one chunk to the next (:class:`RowBuffers`).
    """
    out = {}
    for inp in program.inputs:
        table = arrays.inputs if inp.source == "inputs" else arrays.targets
        if table is None or group.rows is None:
            raise TraceInputError(f"program input {inp.name!r}: the trace has no {inp.source} rows")
        c0, c1 = inp.columns if inp.columns is not None else (0, table.shape[1])
        if c1 > table.shape[1]:
            raise TraceInputError(f"program input {inp.name!r}: columns {c0}..{c1} but the data has "
                                  f"{table.shape[1]}")
        block = (table[group.rows] if gather is None else gather(inp.name, table, group.rows))[:, :, c0:c1]
        shape = tuple(inp.shape) if inp.shape is not None else (c1 - c0,)
        if int(np.prod(shape, dtype=np.int64)) != c1 - c0:
            raise TraceInputError(f"program input {inp.name!r}: shape {list(shape)} does not hold {c1 - c0} columns")
        block = block.reshape(block.shape[:2] + shape)
        out[inp.name] = (np.rint(block).astype(np.int64) if inp.dtype == "int" else block.astype(dtype, copy=False))
    for c in program.consts:
        out[c.name] = c.value[None].astype(np.int64 if c.dtype == "int" else dtype, copy=False)
    for name in program.params:
        if params is not None and name in params:
            out[name] = params[name]
            continue
        p = arrays.params.get(name)
        if p is None:
            raise TraceInputError(f"program param {name!r} was not recorded (recorded: {list(arrays.params)})")
        flat = p[which][positions(group.param_pos)]
        out[name] = flat.reshape((len(group.steps),) + tuple(p["shape"])).astype(dtype, copy=False)
    return out


class RowBuffers:
    """Buffers the data rows of one chunk after another are gathered into (one per program
    input), for a caller that is done with a chunk's leaves before it asks for the next.

    Why: a chunk of S4 gathers 2.2 MB of rows; into fresh memory that cost 9.5 ms an epoch
    (the first touch of a page, about 1.3 ms per MB here), into a reused buffer 2 ms. The
    buffers are blocks of the check's arena (:func:`tracer.program.scratch.empty`), kept for
    the next check of the trace with the others and counted in what a chunk holds
    (:mod:`tracer.checker.step_memory`)."""

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}

    def __call__(self, name: str, table: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``table[rows]``, in the buffer of input ``name`` (overwriting the previous chunk's).
        ``np.take`` with ``mode="raise"`` would gather through a temporary of the same size
        (fresh pages again): rows outside the table are left to plain indexing instead."""
        if rows.size and (rows.min() < 0 or rows.max() >= len(table)):
            return table[rows]
        shape = rows.shape + table.shape[1:]
        n = int(np.prod(shape, dtype=np.int64))
        buf = self._bufs.get(name)
        if buf is None or buf.size < n or buf.dtype != table.dtype:
            buf = self._bufs[name] = empty(n, table.dtype)
        return np.take(table, rows, axis=0, out=buf[:n].reshape(shape), mode="clip")


def positions(pos: np.ndarray) -> slice | np.ndarray:
    """A slice when the positions are consecutive (a view, no copy), else the array."""
    if pos.size and pos[-1] - pos[0] == pos.size - 1 and np.all(np.diff(pos) == 1):
        return slice(int(pos[0]), int(pos[-1]) + 1)
    return pos
