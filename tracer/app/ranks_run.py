"""``steptrace run`` under ``torchrun``: each rank saves ``run_N/rank=R/``; rank 0 checks the job.

Why: ``torchrun --nproc_per_node 2 -m tracer.app.cli run train.py`` (or ``torchrun
$(which steptrace) run train.py``) starts one ``steptrace run`` per rank, all with the
same output directory. Each rank is told apart by the ``RANK`` / ``WORLD_SIZE``
environment variables torchrun sets (read here, no framework imported), writes its own
partition ``run_N/rank=R/`` and its own ``index-rank=R.json``, and never removes what
another rank wrote. Rank 0 then waits (bounded) for every rank's trace of each run to
be complete - a trace directory appears atomically - and checks the job as a whole
(:func:`tracer.ranks.check.check_ranks`), writing ``run_N/check.txt``.
"""
from __future__ import annotations

from typing import Callable

import os
import time
from pathlib import Path

__all__ = ["job_rank", "run_path", "index_name", "check_job"]

WAIT_SECONDS = 120.0


def job_rank() -> tuple[int, int] | None:
    """``(rank, world_size)`` when this process is one rank of a launched job, else None."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ["RANK"])
    except (KeyError, ValueError):
        return None
    return (rank, world) if world > 1 else None


def run_path(out: Path, number: int) -> Path:
    """Where run ``number`` is saved: ``out/run_N`` (``out/run_N/rank=R`` in a job)."""
    job = job_rank()
    path = Path(out) / f"run_{number}"
    return path if job is None else path / f"rank={job[0]}"


def index_name(default: str) -> str:
    """This process's own file of a kind: ``index.json`` (``.steptrace.lock``), or in a job
    ``index-rank=R.json`` (``.steptrace-rank=R.lock``)."""
    job = job_rank()
    p = Path(default)
    return default if job is None else f"{p.stem}-rank={job[0]}{p.suffix}"


def check_job(entries: list[dict], say: Callable[..., None], wait: float = WAIT_SECONDS) -> None:
    """On rank 0 of a job: check each saved run over every rank, print and save the summary."""
    job = job_rank()
    if job is None or job[0] != 0:
        return
    from ..ranks.check import check_ranks
    from ..ranks.files import rank_dirs
    for entry in sorted(entries, key=lambda e: e["run"]):
        if not entry.get("saved"):
            continue
        run_dir = Path(entry["path"]).parent
        deadline = time.monotonic() + wait
        while len(rank_dirs(run_dir)) < job[1] and time.monotonic() < deadline:
            time.sleep(0.2)
        found = len(rank_dirs(run_dir))
        if found < job[1]:
            say(f"steptrace: run {entry['run']}: {found} of {job[1]} ranks saved a trace; "
                f"check the job later with: steptrace check {run_dir}")
            continue
        try:
            summary = check_ranks(run_dir).summary()
        except Exception as exc:   # the job's own outcome is never masked
            summary = f"steptrace check (distributed): could not run: {type(exc).__name__}: {exc}"
        (run_dir / "check.txt").write_text(summary + "\n")
        say(f"steptrace: run {entry['run']} over {job[1]} ranks ({run_dir}):",
            *["  " + line for line in summary.splitlines()])
