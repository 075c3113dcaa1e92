"""One run directory for the ranks of a distributed job: ``RUN/rank=0/``, ``RUN/rank=1/``, ...

Why Hive partitioning: each rank is its own process and writes its own trace, with no
coordination (a rank that crashes leaves the others' traces intact). Naming the rank
directories ``rank=N`` makes the run directory a partitioned Parquet dataset as it is:
``pyarrow.dataset``, DuckDB (``read_parquet('RUN/*/steps.parquet', hive_partitioning=true)``)
and Polars (``scan_parquet(..., hive_partitioning=True)``) read one table over all ranks
with a ``rank`` column, and each ``rank=N`` directory is still an ordinary trace
(``Trace.load``). The tables themselves carry no ``rank`` column (the partition does).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import TraceFileError
from ..trace import Trace

if TYPE_CHECKING:
    import pyarrow.dataset

__all__ = ["rank_dir", "save_rank", "rank_dirs", "is_rank_run", "load_ranks", "dataset"]

_RANK = re.compile(r"rank=(\d+)")


def rank_dir(run_dir: str | os.PathLike, rank: int) -> Path:
    """``RUN/rank=N``: where rank ``rank`` of the job writes its trace."""
    return Path(run_dir) / f"rank={int(rank)}"


def save_rank(trace: Trace, run_dir: str | os.PathLike, rank: int | None = None) -> Path:
    """Save ``trace`` as rank ``rank``'s partition of ``run_dir`` (the rank in
    ``trace.meta["distributed"]`` when not given); returns the partition's path."""
    if rank is None:
        rank = (trace.meta.get("distributed") or {}).get("rank")
        if rank is None:
            raise TraceFileError("save_rank: the trace is not a rank's (no meta['distributed']); pass rank=")
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    return trace.save(rank_dir(run_dir, rank))


def rank_dirs(run_dir: str | os.PathLike) -> dict[int, Path]:
    """``{rank: path}`` of the ``rank=N`` trace directories under ``run_dir``, by rank."""
    out = {}
    root = Path(run_dir)
    if not root.is_dir():
        return out
    for child in root.iterdir():
        m = _RANK.fullmatch(child.name)
        if m and child.is_dir() and not child.is_symlink() and (child / "meta.json").is_file():
            out[int(m.group(1))] = child
    return dict(sorted(out.items()))


def is_rank_run(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a run directory of rank partitions (not a trace itself)."""
    return not (Path(path) / "meta.json").exists() and bool(rank_dirs(path))


def load_ranks(run_dir: str | os.PathLike) -> dict[int, Trace]:
    """``{rank: Trace}`` of every rank partition under ``run_dir``."""
    dirs = rank_dirs(run_dir)
    if not dirs:
        raise TraceFileError(f"{run_dir}: no rank=N trace directories")
    return {r: Trace.load(p) for r, p in dirs.items()}


def dataset(run_dir: str | os.PathLike, table: str = "steps") -> pyarrow.dataset.Dataset:
    """A ``pyarrow.dataset`` of ``table`` over every rank, with the ``rank`` partition column."""
    import pyarrow.dataset as ds
    files = [str(p / f"{table}.parquet") for p in rank_dirs(run_dir).values()]
    if not files:
        raise TraceFileError(f"{run_dir}: no rank=N/{table}.parquet files")
    part = ds.partitioning(flavor="hive")
    return ds.dataset(files, format="parquet", partitioning=part, partition_base_dir=str(run_dir))
