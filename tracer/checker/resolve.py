"""Which step program checks a trace: the recorded one, a 0.1.0 model, or a guess.

Order: ``meta["program"]`` (built by a hook from what the run showed); else
``meta["model"]`` as 0.1.0 described it (a dense stack) with ``meta["loss"]``; else,
when the parameters' shapes fit ``X W + b``, a linear model (stated as identified, so
a wrong guess is visible). Anything that cannot be checked comes back as reasons
("cannot check: ..."), never as an exception.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import SteptraceError
from ..program import StepProgram
from ..program.legacy import from_dense_stack, loss_tail

if TYPE_CHECKING:
    from ..trace import Trace

__all__ = ["Resolved", "resolve_program"]


@dataclass
class Resolved:
    """The program to check with (None: nothing to evaluate) and what was said about it."""

    program: StepProgram | None
    reasons: list = field(default_factory=list)
    identified: dict = field(default_factory=dict)
    source: str = "program"


def resolve_program(trace: Trace, loss_override: dict | None = None) -> Resolved:
    """The program of ``trace`` (see the module docstring); ``loss_override`` replaces the
    trace's declared loss (a 0.1.0 loss spec)."""
    meta = trace.meta
    arrays = trace.arrays()
    if meta.get("program") is not None:
        try:
            program = StepProgram.from_dict(meta["program"])
        except SteptraceError as exc:
            return Resolved(None, [f"program: {exc}"])
        if program.unsupported:
            return Resolved(None, [f"model: {r}" for r in program.cannot_check()], source="program")
        res = Resolved(program, source="program")
    else:
        res = _legacy(trace, arrays, meta)
        if res.program is None:
            return res
    spec = loss_override if loss_override is not None else (None if res.program.has_loss else meta.get("loss"))
    if spec is not None:
        try:
            res.program = _with_spec(res.program, spec, arrays)
        except SteptraceError as exc:
            res.reasons.append(f"loss: {exc}")
    return res


def _legacy(trace, arrays, meta) -> Resolved:
    if not arrays.params:
        return Resolved(None, [])
    model = meta.get("model")
    res = Resolved(None, source="legacy")
    if model is None:
        from .identify import guess_linear_model
        model = guess_linear_model(trace)
        if model is None:
            res.reasons.append("model: no model description in the trace, and the parameters do not fit "
                               "a linear model y = X W + b")
            return res
        res.identified["model"] = "linear model y = X W + b (from the parameter shapes)"
        res.source = "guessed"
    if arrays.inputs is None:
        res.reasons.append("model: the trace declares no training data")
        return res
    try:
        res.program = from_dense_stack(model, arrays.inputs.shape[1], arrays.targets.shape[1], list(arrays.params))
    except SteptraceError as exc:
        res.reasons.append(f"model: {exc}")
    return res


def _with_spec(program: StepProgram, spec: dict, arrays) -> StepProgram:
    pred, target = program.outputs.get("prediction"), program.outputs.get("target")
    if pred is None or target is None:
        raise SteptraceError("the program names no prediction and target to apply the declared loss to")
    m = arrays.targets.shape[1] if arrays.targets is not None else 1
    if spec.get("name") in ("scce", "scce_logits", "cross_entropy") and arrays.sample_pred is not None:
        m = arrays.sample_pred.shape[1]
    return program.with_loss(loss_tail(spec, pred, target, m), "loss")
