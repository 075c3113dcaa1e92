"""``check(trace)``: recompute every recorded step from the step program and compare.

For each recorded step the checker evaluates the run's step program
(:mod:`tracer.program`) from the parameters *before* the step and the step's batch
rows: the predictions, the loss and every gradient; then applies the optimizer's
rule to the gradient the run used and compares the update and the optimizer state.
Steps are grouped by batch size and cut into memory-bounded chunks, sized by what the
first chunk held (:mod:`.step_memory`); each chunk is a few array operations, not a loop
over steps.

What the trace does not declare is identified (the loss among the loss registry,
a plain-SGD learning rate) and said so. What cannot be checked is said too, and the
verdict is ``passed`` only when every recorded quantity of every recorded step was
checked.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import SteptraceError
from . import coverage, identify
from ..program import Evaluation
from .feed import RowBuffers, chunks, leaves, step_groups
from .guards import guard_free, widen_for_guards
from .interpret import name_factor
from .compare import all_nan_rows
from .quantities import check_chunk
from .report import CheckReport, Finding, TableBuilder
from .resolve import resolve_program
from .step_memory import StepMemory
from ..program.scratch import arena
from .tolerance import EPS, FACTOR, run_precision, working_dtype
from .updates import check_updates

if TYPE_CHECKING:
    from ..trace import Trace

__all__ = ["check", "CHUNK_BYTES"]

#: the working memory a chunk of steps may hold (:mod:`.step_memory` measures a step's)
CHUNK_BYTES = 256 * 1024**2


def check(trace: Trace, *, loss: dict | None = None, optimizer: dict | None = None,
          precision: str | None = None) -> CheckReport:
    """Check a trace against the math; returns a :class:`CheckReport`.

    ``loss`` / ``optimizer`` override the trace's declared ones (neutral specs, see
    docs/ARCHITECTURE.md). ``precision`` (``float64``, ``float32``, ``float16``,
    ``bfloat16``) overrides the precision the tolerances assume.
    """
    arrays = trace.arrays()
    # the engine's and comparisons' big arrays: blocks reused from chunk to chunk, and kept
    # for the next check of these arrays while they live (tracer.program.scratch.drop_kept)
    with arena(arrays, _arena_key(arrays)):
        return _check(trace, loss, optimizer, precision)


def _arena_key(arrays) -> tuple:
    """What the kept blocks' sizes follow: the steps, rows and parameter shapes (a trace
    whose arrays changed starts with fresh blocks instead of ones cut for other sizes)."""
    params = tuple((name, getattr(p.before, "shape", None), getattr(p.grad, "shape", None))
                   for name, p in arrays.params.items())
    rows = None if arrays.inputs is None else arrays.inputs.shape
    return params, rows, arrays.sample_step.shape, len(arrays.steps.get("step", ()))


def _check(trace, loss, optimizer, precision):
    arrays = trace.arrays()
    precision = precision or run_precision(trace)
    if precision not in EPS:
        raise SteptraceError(f"precision: expected one of {sorted(EPS)}, got {precision!r}")
    eps, dtype = EPS[precision], working_dtype(precision)
    builder = TableBuilder()
    report = CheckReport(table=None, n_steps=trace.n_steps)
    report.context["precision"] = precision
    if trace.n_steps == 0:
        report.cannot_check.append("the trace has no recorded steps")
    if not arrays.params:
        report.cannot_check.append("no parameter values were recorded (summary capture or no parameters found)")
    resolved = resolve_program(trace, loss)
    report.cannot_check += resolved.reasons
    report.identified.update(resolved.identified)
    program = resolved.program
    recomputed = {"loss": {}, "grads": {}, "grad_mags": {}, "checked": {}}
    if program is not None and arrays.params:
        from .rank_view import local_view     # a DDP rank: the program gives its local gradient
        program = _evaluate(local_view(trace), program, report, builder, eps, dtype, recomputed)
    report.context["program"] = program
    report.context["loss_by_step"] = recomputed["loss"]
    check_updates(trace, report, builder, eps, optimizer or trace.meta.get("optimizer"), recomputed["grads"],
                  recomputed["grad_mags"])
    _logged_and_diagnoses(trace, report, builder, eps, recomputed["loss"], program)
    report.table = builder.build()
    _factor_findings(report, trace)
    coverage.account(trace, report, recomputed["checked"])
    return report


def _evaluate(trace, program, report, builder, eps, dtype, recomputed):
    arrays = trace.arrays()
    groups = step_groups(arrays, needs_rows=bool(program.inputs))
    if not groups:
        report.cannot_check.append("model: no recorded step has both its batch rows and its parameters")
        return program
    recorded_loss = _recorded_loss(arrays)
    if not program.has_loss:
        found, text = identify.identify_loss(program, arrays, groups, dtype, recorded_loss)
        if found is None:
            report.identified["loss"] = text
            report.cannot_check.append("loss: not declared and not identified, so gradients cannot be recomputed")
        else:
            program = found
            report.identified["loss"] = text
    if arrays.sample_micro is not None:             # gradient accumulation: sums per step
        from .accumulated import check_accumulated
        losses, grads, checked = check_accumulated(program, arrays, groups, dtype, eps, builder, recorded_loss,
                                                   report, CHUNK_BYTES)
        recomputed.update({"loss": losses, "grads": grads, "checked": checked})
        return program
    missing = {n for n, p in arrays.params.items() if all_nan_rows(p.grad).any()}
    grads = {n: np.full(arrays.params[n].grad.shape, np.nan) for n in missing}
    gather = RowBuffers()       # each chunk's results are taken out before the next one's rows
    variant = guard_free(program) if missing else None      # hand-written gradients skip log(p + 1e-12)'s guard
    per_step = StepMemory(_bytes_per_step(arrays, program))     # measured on the first chunk
    for sub in chunks(groups, per_step, CHUNK_BYTES):
        mark = per_step.start()
        try:
            lv = leaves(program, arrays, sub, dtype, gather=gather)
            ev = Evaluation(program, lv, dtype)
            res = check_chunk(program, arrays, sub, dtype, eps, builder, recorded_loss, missing, evaluation=ev)[0]
            widen_for_guards(res, variant, lv, dtype, eps)
        except SteptraceError as exc:
            report.cannot_check.append(f"model: {exc}")
            return program
        del ev, lv       # not kept: the next chunk's arrays reuse their memory
        per_step.measure(mark, sub)
        if res.loss is not None:
            recomputed["loss"].update(zip(sub.steps.tolist(), res.loss.tolist()))
        for key, n in res.checked.items():
            recomputed["checked"][key] = recomputed["checked"].get(key, 0) + n
        for name, g in res.grads.items():
            grads[name][sub.param_pos] = g
            if name in res.grad_mags:
                mags = recomputed["grad_mags"].setdefault(name, np.zeros(grads[name].shape))
                mags[sub.param_pos] = res.grad_mags[name]
        for name, rec, got in res.mismatched_grads:
            note = f"grad of {name}: recorded {rec} values, the model gives {got}"
            if note not in report.cannot_check:
                report.cannot_check.append(note)
    recomputed["grads"] = {n: g for n, g in grads.items() if np.isfinite(g).any()}
    return program


def _bytes_per_step(arrays, program) -> int:
    """A generous estimate of one step's working memory (values, gradients, magnitudes)."""
    params = sum(p.before.shape[1] for p in arrays.params.values())
    rows = 0
    if arrays.inputs is not None and arrays.sample_step.size:
        rows = int(np.bincount(np.unique(arrays.sample_step, return_inverse=True)[1]).max())
        rows *= arrays.inputs.shape[1] + arrays.targets.shape[1]
    width = max(1, len(program.primitive_nodes))
    return 8 * (6 * params + 4 * width * max(rows, 1))


def _recorded_loss(arrays) -> dict:
    steps = arrays.steps
    return dict(zip(np.asarray(steps.get("step", []), dtype=np.int64).tolist(),
                    np.asarray(steps.get("loss", []), dtype=np.float64).tolist()))


def _logged_and_diagnoses(trace, report, builder, eps, losses, program):
    from .diagnoses import diagnose
    from .logged import check_logged
    from .recompute import batch_losses
    rtol = max(1e-5, 64 * eps)

    def loss_magnitudes(steps):
        return batch_losses(trace, steps, program, magnitudes=True)
    try:
        rows = check_logged(trace, batch_losses=losses or None,
                            loss_magnitudes=loss_magnitudes if program is not None and program.has_loss else None,
                            rtol=rtol)
    except SteptraceError as exc:
        report.cannot_check.append(f"logged values: {exc}")
        rows = []
    for row in rows:              # against a magnitude, the run's own rounding factor applies
        if row.get("scale") is not None:
            row["rtol"] = FACTOR * eps
    builder.add_rows(rows, rtol=rtol, atol=1e-6 if eps > 1e-10 else 1e-12)
    for f in diagnose(trace, program if program is not None and program.has_loss else None, report.context):
        report.findings.append(Finding(kind=f["kind"], message=f["message"], param=f.get("param"),
                                       step=f.get("step"), failed=f.get("failed", True), fix=f.get("fix"),
                                       evidence=f.get("evidence") or {}))


def _factor_findings(report, trace):
    """Turn the first failed update (then gradient) per parameter into a named diagnosis."""
    fails = report.failures
    if not len(fails):
        return
    arrays = trace.arrays()
    bs = dict(zip(np.asarray(arrays.steps.get("step", []), dtype=np.int64).tolist(),
                  np.asarray(arrays.steps.get("batch_size", []), dtype=np.float64).tolist()))
    seen = {f.param for f in report.findings}
    for quantity in ("update", "grad"):
        sub = fails[fails["quantity"] == quantity]
        for name, rows in sub.groupby("param", sort=False):
            if name in seen:
                continue
            first = rows.iloc[0]
            diagnosis = name_factor(first["factor"], bs.get(int(first["step"])))
            if diagnosis:
                seen.add(name)
                report.findings.append(Finding(
                    kind=f"{quantity}_factor", param=name, step=int(first["step"]),
                    message=f"{name}: {quantity} is {first['factor']:.6g} x the expected one - {diagnosis}"))
