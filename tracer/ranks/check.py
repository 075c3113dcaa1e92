"""Check a distributed job: every rank on its own, the merged job, and across ranks.

Why three parts: a rank's own trace checks its shard (the step program on its rows gives
its local gradient, the optimizer's rule applied to the reduced gradient gives its
update); the merged trace (:func:`tracer.ranks.merge.merge_ranks`) checks the job as one
run on global batches; what only a comparison of ranks shows (the shards, ``set_epoch``,
the all-reduce, identical parameters) comes from :mod:`tracer.checker.diagnoses.ranks`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..trace import Trace
from .files import load_ranks
from .merge import merge_ranks

__all__ = ["RanksReport", "check_ranks"]


@dataclass
class RanksReport:
    """The verdict on a job: ``per_rank`` and ``merged`` check reports, cross-rank ``findings``."""

    per_rank: dict = field(default_factory=dict)     # rank -> CheckReport
    merged: object = None                             # CheckReport of the merged trace
    findings: list = field(default_factory=list)      # cross-rank finding dicts (``rank`` named)
    merged_trace: Trace | None = None

    @property
    def failed_findings(self) -> list[dict]:
        """The cross-rank findings that fail the job (not the notes)."""
        return [f for f in self.findings if f.get("failed", True)]

    @property
    def ok(self) -> bool:
        """Every rank, the merged job and the cross-rank checks passed."""
        return (all(r.ok for r in self.per_rank.values()) and self.merged is not None and self.merged.ok
                and not self.failed_findings)

    def summary(self) -> str:
        """A few lines: the verdict per rank, of the merged job, and each cross-rank finding."""
        lines = [f"steptrace check (distributed, {len(self.per_rank)} ranks): "
                 + ("OK" if self.ok else "FAILED")]
        for r, rep in self.per_rank.items():
            lines.append(f"  rank {r}: " + rep.summary().splitlines()[0].replace("steptrace check: ", ""))
        if self.merged is not None:
            lines.append("  merged: " + self.merged.summary().splitlines()[0].replace("steptrace check: ", ""))
        for f in self.findings:
            tag = "" if f.get("failed", True) else " (note)"
            lines.append(f"  {f['kind']}{tag}: {f['message']}")
            if f.get("fix"):
                lines.append(f"    fix: {f['fix']}")
        return "\n".join(lines)


def check_ranks(run: str | os.PathLike | dict[int, Trace]) -> RanksReport:
    """Check a job: ``run`` is a run directory of ``rank=N`` traces or ``{rank: Trace}``."""
    from ..checker import check
    from ..checker.diagnoses.ranks import rank_findings
    from ..program.scratch import arena
    traces = run if isinstance(run, dict) else load_ranks(Path(run))
    with arena():       # one arena for the job: a rank's check reuses the last one's blocks, none kept after
        report = RanksReport(per_rank={r: check(t) for r, t in sorted(traces.items())})
        report.merged_trace = merge_ranks(traces)
        report.merged = check(report.merged_trace)
    report.findings = rank_findings(traces)
    return report
