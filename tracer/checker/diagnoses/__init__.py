"""Name the training-loop bugs a trace shows, in sentences a user can act on.

Why separate from the numeric check: a failed update says *that* a step is wrong;
a diagnosis says *why*, from evidence the hooks recorded and the step program. Each
diagnosis is one small module over :class:`~tracer.checker.diagnoses.base.Diagnosis`;
:data:`DIAGNOSES` is the list the checker runs. Every finding says the step, the
parameter or quantity, the evidence (numbers, factor) and a one-line fix.
Framework-neutral: reads only ``trace.meta``, the trace's arrays and the program.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Context, Diagnosis, finding
from .accumulation import Accumulation
from .clipping import ClippingEffect
from .bookkeeping import DoubleAveraging, GradAccumulating, NeverUpdated, UpdatedTwice
from .continuity import Continuity
from .dead_gradients import DeadGradients
from .logged_names import LoggedNames
from .loss_scale import LossScale
from .loss_shape import LossBroadcast
from .nonfinite import NonFinite
from .shared_params import SharedParams

if TYPE_CHECKING:
    from ...program import StepProgram
    from ...trace import Trace

__all__ = ["diagnose", "DIAGNOSES", "Context", "Diagnosis", "finding"]

DIAGNOSES: list[Diagnosis] = [NeverUpdated(), UpdatedTwice(), GradAccumulating(), DoubleAveraging(),
                              Continuity(), DeadGradients(), LossBroadcast(), NonFinite(), ClippingEffect(),
                              Accumulation(), LossScale(), SharedParams(), LoggedNames()]


def diagnose(trace: Trace, program: StepProgram | None = None, extras: dict | None = None) -> list[dict]:
    """Findings ``{"kind", "param", "step", "message", "fix", "failed", "evidence"}`` for ``trace``.

    ``program`` is the step program the checker used (None: the diagnoses that need
    one are skipped); ``extras`` what the checker found out (e.g. ``clipping``).
    """
    ctx = Context(trace, program, extras)
    out = []
    for d in DIAGNOSES:
        out += d.run(ctx)
    return out
