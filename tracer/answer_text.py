"""The text of a metric answer: one sentence in the learner's numbers, then the evidence.

Why a sentence first: the S2 learner's whole problem fits in one line, "Keras used slope
0.5, intercept 0 (the weights before the update) -> RMSE 20.07; your sheet used slope
0.658, intercept 0.158 (after the update) -> 18.77". A one-feature dense model's
parameters are called slope and intercept; a small model's are listed by name with
their values; a bigger model's are named by step ("the weights before step 3").
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .display import count, num

if TYPE_CHECKING:
    from .answers import Candidate, MetricAnswer
    from .program import StepProgram
    from .trace import Trace

__all__ = ["render", "weights_text", "describe_candidate", "roles"]

ARROW = "\u2192"
#: a model with at most this many parameter elements has its values written out
SHOWN_ELEMENTS = 6
MATCHES_SHOWN = 8


def roles(trace: Trace, program: StepProgram | None) -> dict:
    """``{param: "slope" | "intercept"}`` for a one-feature linear model ``x·w + b``, else ``{}``."""
    a = trace.arrays()
    if program is None or a.inputs is None or a.inputs.shape[1] != 1 or a.targets.shape[1] != 1:
        return {}
    sizes = {n: int(np.prod(p["shape"], dtype=np.int64)) for n, p in a.params.items()}
    if len(sizes) != 2 or set(sizes.values()) != {1}:
        return {}
    nodes = {n.name: n for n in program.primitive_nodes}
    cone, stack = set(), [program.outputs.get("prediction")]
    while stack:
        name = stack.pop()
        if name in nodes and name not in cone:
            cone.add(name)
            stack += [x for x in nodes[name].args if isinstance(x, str)]
    linear = {"matmul", "mul", "add", "identity", "transpose", "reshape", "flatten", "squeeze", "unsqueeze"}
    if not cone or any(nodes[c].op not in linear for c in cone):
        return {}

    def param_of(x):
        n = nodes.get(x)
        return x if x in sizes else (n.args[0] if n is not None and n.op in ("transpose", "reshape") else None)
    weight = next((param_of(x) for c in cone if nodes[c].op in ("matmul", "mul") for x in nodes[c].args
                   if param_of(x) in sizes), None)
    bias = next((x for c in cone if nodes[c].op == "add" for x in nodes[c].args if x in sizes and x != weight),
                None)
    return {} if weight is None or bias is None else {weight: "slope", bias: "intercept"}


def weights_text(ans: MetricAnswer, step: int, which: str) -> str:
    """``slope 0.5, intercept 0`` / ``W [..], b 0.1`` / ``the weights before step 3``."""
    trace = ans.trace
    a = trace.arrays()
    hit = np.flatnonzero(a.param_step == step)
    total = sum(p.before.shape[1] for p in a.params.values())
    if not hit.size or total > SHOWN_ELEMENTS:
        return f"the weights {which} step {step}"
    named = roles(trace, ans.program)
    parts = []
    for name, p in a.params.items():
        v = p[which][hit[0]].astype(np.float64)
        shown = num(v[0], 3) if v.size == 1 else "[" + ", ".join(num(x, 3) for x in v) + "]"
        parts.append(f"{named.get(name, name)} {shown}")
    return ", ".join(parts)


def _batches_so_far(ans, step: int) -> tuple[int, int]:
    """``(k, first step)``: how many batches of ``step``'s epoch up to it, and the epoch's first step."""
    st = ans.trace.steps
    sub = st[(st["epoch"] == _epoch(ans, step)) & (st["step"] <= step)]
    return len(sub), int(sub["step"].min())


def _epoch(ans, step: int) -> int:
    st = ans.trace.steps
    return int(st.loc[st["step"] == step, "epoch"].iloc[0])


def _at(ans, kind: str, step: int):
    return next((c.value for c in ans.candidates if c.kind == kind and c.step == step), None)


def _logged_at(ans, step: int):
    """What the framework logged after ``step`` (else the recomputed running value)."""
    return ans.logged.get(step, _at(ans, "logged", step))


def describe_candidate(ans: MetricAnswer, c: Candidate) -> str:
    """One computation in words (for the lists of matches and closest values)."""
    m, n = ans.metric, count(ans.n_rows, "row")
    where = f"step {c.step} (epoch {c.epoch}, batch {c.batch})"
    return {
        "logged": f"{where}: running over epoch {c.epoch} so far, weights before each update " + (
                  f"(what {ans.framework} logs as {m.name})" if ans.logged else
                  f"(what Keras would log; this run logged no {m.name})"),
        "batch": f"{where}: this batch alone, weights before the update",
        "mean_of_batches": f"{where}: mean of the per-batch values of epoch {c.epoch} so far",
        "full_before": f"{where}: all {n}, weights before the update",
        "full_after": f"{where}: all {n}, weights after the update",
        "val": f"end of epoch {c.epoch}: val_{m.name} as Keras computes it (validation rows, weights after "
               f"the epoch's last update; here the {count(ans.n_rows, 'training row')})",
    }[c.kind] + f" = {num(c.value, 7)}"


def _user(ans) -> str:
    return num(ans.value, 4) if ans.value is not None else None


def _sentence(ans) -> str:
    """The opening sentence (see the module docstring)."""
    m = ans.metric
    if m.val or (ans.matches and ans.matches[0].kind == "val"):
        return _val_sentence(ans)
    focus = ans.matches[0] if ans.matches else None
    if focus is None:
        first = min(c.step for c in ans.candidates)
        return _explain_logged(ans, first)
    return {"full_after": _after_sentence, "logged": _logged_sentence, "batch": _batch_sentence,
            "mean_of_batches": _mean_sentence, "full_before": _before_sentence}[focus.kind](ans, focus.step)


def _framework_part(ans, s: int) -> str:
    """``Keras used slope 0.5, intercept 0 (the weights before the update) → RMSE 20.07``."""
    m, F = ans.metric, ans.framework
    k, first = _batches_so_far(ans, s)
    logged = _logged_at(ans, s)
    if k == 1:
        return f"{F} used {weights_text(ans, s, 'before')} (the weights before the update) {ARROW} {m.label} " \
               f"{num(logged, 4)}"
    return (f"{F} logged {m.label} {num(logged, 4)} after step {s}: a running value over the {k} batches of "
            f"epoch {_epoch(ans, s)} so far, each predicted with the weights before its update (from "
            f"{weights_text(ans, first, 'before')} to {weights_text(ans, s, 'before')})")


def _after_sentence(ans, s: int) -> str:
    k, _ = _batches_so_far(ans, s)
    rows = "" if k == 1 else f" on all {count(ans.n_rows, 'row')}"
    return (f"{_framework_part(ans, s)}; your sheet used {weights_text(ans, s, 'after')} (after the update"
            f"{'' if k == 1 else f' of step {s}'}){rows} {ARROW} {_user(ans)}.")


def _logged_sentence(ans, s: int) -> str:
    k, _ = _batches_so_far(ans, s)
    over = "the batch rows" if k == 1 else f"every prediction of the {k} batches of this epoch so far"
    return (f"Your {_user(ans)} is what {ans.framework} logs after step {s}: {ans.metric.label} over {over}, "
            f"with {weights_text(ans, s, 'before')} (the weights before the update); the updated model "
            f"({weights_text(ans, s, 'after')}) gives {num(_at(ans, 'full_after', s), 4)} on all "
            f"{count(ans.n_rows, 'row')}.")


def _batch_sentence(ans, s: int) -> str:
    k, _ = _batches_so_far(ans, s)
    return (f"Your {_user(ans)} is the {ans.metric.label} of step {s}'s batch alone, with "
            f"{weights_text(ans, s, 'before')} (the weights before the update); {ans.framework} logged "
            f"{num(_logged_at(ans, s), 4)}: the running value over the {k} batches of the epoch so far.")


def _mean_sentence(ans, s: int) -> str:
    k, _ = _batches_so_far(ans, s)
    return (f"Your {_user(ans)} is the mean of the {k} per-batch {ans.metric.label} values of the epoch up to "
            f"step {s}; {ans.framework} pools every prediction of those batches into one {ans.metric.label}: "
            f"{num(_logged_at(ans, s), 4)}.")


def _before_sentence(ans, s: int) -> str:
    return (f"Your {_user(ans)} used {weights_text(ans, s, 'before')} (the weights before update {s}) on all "
            f"{count(ans.n_rows, 'row')}; {ans.framework} logged {num(_logged_at(ans, s), 4)} from the batch "
            f"rows of the epoch so far.")


def _explain_logged(ans, s: int) -> str:
    after = _at(ans, "full_after", s)
    tail = "" if after is None else (f"; the updated model ({weights_text(ans, s, 'after')}) gives "
                                     f"{num(after, 4)} on all {count(ans.n_rows, 'row')}")
    return f"{_framework_part(ans, s)}{tail}."


def _val_sentence(ans) -> str:
    m, F = ans.metric, ans.framework
    vals = [c for c in ans.candidates if c.kind == "val"]
    if not vals:
        return f"{F} computes val_{m.name} at the end of each epoch; no epoch of this trace can be recomputed."
    c = ans.matches[0] if ans.matches and ans.matches[0].kind == "val" else vals[0]
    k, first = _batches_so_far(ans, c.step)
    logged_val = ans.val_logged.get(c.epoch)
    train = ans.epoch_logged.get(c.epoch, _logged_at(ans, c.step))
    before = (f"{weights_text(ans, first, 'before')} (the weights before the update)" if k == 1 else
              f"the weights before each of the epoch's {k} updates, from {weights_text(ans, first, 'before')}")
    name = m.name if m.name != "loss" else "loss"
    if logged_val is not None:
        head = f"{F} logged val_{name} {num(logged_val, 4)} with {weights_text(ans, c.step, 'after')} (the " \
               f"weights after the update, on the validation rows)"
    else:
        head = (f"This run logged no val_{name} (fit had no validation data); {F} computes it at the end of each "
                f"epoch with the weights after the update: {weights_text(ans, c.step, 'after')} {ARROW} "
                f"{num(c.value, 4)} on the {count(ans.n_rows, 'training row')}")
    return f"{head}; {name} {num(train, 4)} used {before}."


def _val_notes(ans) -> list[str]:
    """What the validation values are and whether the training rows reproduce them."""
    out = []
    for c in (c for c in ans.candidates if c.kind == "val"):
        lv = ans.val_logged.get(c.epoch)
        if lv is None:
            continue
        same = abs(lv - c.value) <= 1e-5 * max(1.0, abs(lv))
        out.append(f"epoch {c.epoch}: val_{ans.metric.name} logged {num(lv, 7)}; on the training rows with the "
                   f"weights after the epoch {num(c.value, 7)}" +
                   (" (equal: the validation data is the training data)" if same else
                    " (different: the validation rows are other rows, which this trace does not hold)"))
    if ans.metric.val and not ans.val_logged:
        out.append("the trace holds no validation rows: the val values here are computed on the training rows; "
                   "to check val values of other data, the trace would need the validation rows "
                   "(fit's validation_data) recorded")
    return out


def render(ans: MetricAnswer) -> str:
    """The whole answer: the sentence, then where the value matches (or the closest), notes."""
    first = _sentence(ans)
    lines = [first[:1].upper() + first[1:], ""]
    m = ans.metric
    n_steps = len({c.step for c in ans.candidates})
    n_ends = len([c for c in ans.candidates if c.kind == "val"])
    searched = f"searched {count(n_steps, 'step')} and {count(n_ends, 'epoch end')}"
    if ans.value is not None:
        if ans.matches:
            lines.append(f"Where {_user(ans)} matches ({m.label}, {searched}):")
            lines += ["  " + describe_candidate(ans, c) for c in ans.matches[:MATCHES_SHOWN]]
            if len(ans.matches) > MATCHES_SHOWN:
                lines.append(f"  ... and {len(ans.matches) - MATCHES_SHOWN} more")
        else:
            lines.append(f"{ans.value!r} matches none of the {m.label} computations ({searched}). Closest:")
            near = sorted(ans.candidates, key=lambda c: abs(c.value - ans.value))[:3]
            lines += ["  " + describe_candidate(ans, c) for c in near]
    lines += _val_table(ans) if m.val else _table(ans)
    for note in _val_notes(ans) + list(ans.notes):
        lines.append(f"Note: {note}")
    return "\n".join(lines)


def _table(ans, limit: int = 12) -> list[str]:
    """Per step: logged, running (recomputed), batch alone, all rows after the update."""
    steps = sorted({c.step for c in ans.candidates})
    if not steps:
        return []
    by = {(c.kind, c.step): c.value for c in ans.candidates}
    shown = steps if len(steps) <= limit else steps[:limit // 2] + [None] + steps[-limit // 2:]
    st = ans.trace.steps.set_index("step")
    lines = ["", f"{ans.metric.label} per step (logged by {ans.framework}: running over the epoch so far, weights "
                 f"before each update):",
             f"  {'step':>5} {'epoch':>5} {'batch':>5}  {'logged':>10} {'recomputed':>10} {'batch alone':>11} "
             f"{'all rows, after':>15}"]
    for s in shown:
        if s is None:
            lines.append("  ...")
            continue
        lines.append(f"  {s:>5} {int(st.loc[s, 'epoch']):>5} {int(st.loc[s, 'batch']):>5}  "
                     f"{num(ans.logged.get(s), 7):>10} {num(by.get(('logged', s)), 7):>10} "
                     f"{num(by.get(('batch', s)), 7):>11} {num(by.get(('full_after', s)), 7):>15}")
    return lines


def _val_table(ans) -> list[str]:
    """Per epoch: the logged val value and the training rows with the weights after the epoch."""
    vals = [c for c in ans.candidates if c.kind == "val"]
    if not vals:
        return []
    lines = ["", f"val_{ans.metric.name} per epoch (Keras: the validation rows, weights after the epoch's last "
                 "update):", f"  {'epoch':>5} {'last step':>9}  {'logged':>10} {'training rows, after':>20}"]
    for c in vals:
        lines.append(f"  {c.epoch:>5} {c.step:>9}  {num(ans.val_logged.get(c.epoch), 7):>10} "
                     f"{num(c.value, 7):>20}")
    return lines
