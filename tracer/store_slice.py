"""Reading a bounded part of a stream: the parameter rows of a slice of steps.

Why: past its memory budget a run spills every step in full to its stream directory
(:mod:`tracer.store`), so reading it back whole to check it would cost many times the
budget. ``Trace.load(path, steps=(A, B), max_bytes=N)`` reads the small tables
(``steps``, ``samples``, ``epochs``) whole and the ``params`` rows only of steps
``A-1 .. B`` (``A-1``: the checker takes a stateful optimizer's state before step ``A``
from the slots recorded after step ``A-1``), and of those only as many steps as their
estimated cost when checked fits in ``max_bytes``. The rows left on disk are named in
``meta["notes"]`` with the command that checks them, ``steptrace check PATH --steps A:B``.

The cost of a step is estimated from each chunk's Parquet footer (rows times the byte
width of each column, spread evenly over the chunk's steps), times
:data:`READBACK_COPIES`: what a byte of table costs while it is loaded and checked.
"""
from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import TraceInputError

#: what a chunk's tables cost, in their own bytes, when read back and checked (Arrow's
#: buffers and pandas' frame while loading, then the checker's float64 arrays and
#: recomputations). Measured with ``bench/peak_rss_run.py`` (a 99,073-parameter Adam MLP):
#: 26 MiB of peak RSS per step kept in full, whose tables hold 4.7 MiB.
READBACK_COPIES = 6


@dataclass
class Slice:
    """The part of a stream that was read in full: parameter rows of steps ``lo .. hi``
    (``hi < lo``: none) of recorded steps ``first .. last``."""
    path: Path
    lo: int
    hi: int
    first: int
    last: int
    wanted: tuple[int, int]
    said: str = ""          # the note added to the loaded trace's meta (left out when it is saved)

    @property
    def whole(self) -> bool:
        """True when every recorded step's parameter rows were read."""
        return self.lo <= self.first and self.hi >= self.last

    def note(self, path: Path | None = None, max_bytes: int | None = None) -> str:
        """What was left on disk and the command that checks it (``path``: where the run
        is now, when it moved since it was read)."""
        where = shlex.quote(str(path or self.path))
        loaded = f"steps {self.lo}-{self.hi}" if self.hi >= self.lo else "no step"
        per = max(1, self.hi - self.lo + 1)
        if self.hi < self.lo:
            rest = [(self.first, self.last)]
        else:
            rest = [(a, b) for a, b in ((self.first, self.lo - 1), (self.hi + 1, self.last)) if b >= a]
        nxt = self.hi + 1 if self.hi >= self.lo and self.hi < self.last else rest[0][0]
        why = "" if max_bytes is None else f" (what fits in the memory budget, {max_bytes:,} bytes)"
        return (f"read in part: the parameter values of {loaded} were loaded{why}; those of steps "
                f"{', '.join(f'{a}-{b}' for a, b in rest)} are on disk, not loaded. Check them slice by slice: "
                f"steptrace check {where} --steps {nxt}:{nxt + per - 1} (and on, {per} step{'s' if per != 1 else ''}"
                f" a slice)")


def parse_steps(text: str) -> tuple[int, int]:
    """``"A:B"``, ``"A:"``, ``":B"`` or ``"A"`` -> ``(A, B)`` (steps from 1; an open end is
    the run's first or last step)."""
    head, sep, tail = str(text).strip().partition(":")
    try:
        lo = int(head) if head.strip() else 1
        hi = (int(tail) if tail.strip() else 2**62) if sep else lo
    except ValueError:
        raise TraceInputError(f"--steps: expected A:B, A: or :B with step numbers from 1, got {text!r}") from None
    if lo < 1 or hi < lo:
        raise TraceInputError(f"--steps: expected 1 <= A <= B, got {text!r}")
    return lo, hi


def _width(field) -> int:
    """Bytes a value of this Parquet column holds in memory (8: a pointer, for text)."""
    try:
        return max(1, field.type.bit_width // 8)
    except ValueError:
        return 8


def chunk_cost(file: Path) -> int:
    """Estimated in-memory bytes of a chunk's ``params`` table, from its footer only."""
    import pyarrow.parquet as pq
    try:
        md = pq.read_metadata(file)
        schema = md.schema.to_arrow_schema()
    except Exception:  # a corrupt footer: the read itself reports it; count it as free here
        return 0
    return int(md.num_rows) * sum(_width(f) for f in schema)


def plan(path: Path, step_parts: list[pd.DataFrame], costs: list[int], steps: tuple[int, int] | None,
         max_bytes: int | None) -> Slice:
    """Which steps' parameter rows to read: from ``A-1`` (``A``: the first wanted) on,
    while their cost times :data:`READBACK_COPIES` fits in ``max_bytes``."""
    numbers = [np.asarray(p["step"], dtype=np.int64) if len(p) else np.zeros(0, np.int64) for p in step_parts]
    every = np.concatenate(numbers) if numbers else np.zeros(0, np.int64)
    first, last = (int(every.min()), int(every.max())) if every.size else (1, 0)
    want_lo, want_hi = steps or (first, last)
    lo = max(first, want_lo - 1) if want_lo > first else want_lo
    hi, total = lo - 1, 0.0
    for nums, cost in zip(numbers, costs):
        inside = nums[(nums >= lo) & (nums <= want_hi)]
        if not inside.size:
            continue
        each = READBACK_COPIES * cost / max(1, nums.size)
        if max_bytes is not None:
            fits = int(math.floor((max_bytes - total) / each)) if each > 0 else inside.size
            inside = inside[:max(0, fits)]
        if inside.size:
            hi, total = int(inside[-1]), total + each * inside.size
        if max_bytes is not None and inside.size < (nums[(nums >= lo) & (nums <= want_hi)]).size:
            break
    return Slice(Path(path), lo, hi, first, last, (want_lo, min(want_hi, last)))


def in_slice(frame: pd.DataFrame, part: Slice) -> pd.DataFrame:
    """The rows of ``frame`` whose step is in ``part``."""
    if not len(frame) or "step" not in frame.columns:
        return frame
    s = frame["step"].to_numpy()
    keep = (s >= part.lo) & (s <= part.hi)
    return frame if keep.all() else frame[keep].reset_index(drop=True)


def whole_epochs(epochs: pd.DataFrame, step_parts: list[pd.DataFrame], part: Slice) -> pd.DataFrame:
    """The ``epochs`` rows whose every step is in ``part``: a value logged at an epoch's
    end sums up all its batches, so a slice that cuts an epoch cannot check it."""
    frames = [p[["epoch", "step"]] for p in step_parts if len(p) and {"epoch", "step"} <= set(p.columns)]
    if not len(epochs) or "epoch" not in epochs.columns or not frames:
        return epochs
    st = pd.concat(frames, ignore_index=True)
    s = st["step"].to_numpy()
    cut = set(st["epoch"].to_numpy()[(s < part.lo) | (s > part.hi)].tolist())
    keep = ~epochs["epoch"].isin(cut).to_numpy()
    return epochs if keep.all() else epochs[keep].reset_index(drop=True)
