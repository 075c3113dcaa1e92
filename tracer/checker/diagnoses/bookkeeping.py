"""Diagnoses from what the hooks saw of the loop's bookkeeping (0.1.0's four, unchanged).

- ``never_updated``: a parameter whose value never changes although it gets a
  gradient, or a constant tensor used as a layer's weight/bias that never receives a
  gradient (``meta["torch"]["frozen"]``, S4's ``b1``);
- ``updated_twice``: more than one in-place write per step (``updates_<param>``);
- ``grad_accumulating``: backward ran while the gradient still held a value an earlier
  update had already used (``stale_grad_<param>``): nobody zeroed it;
- ``double_averaging``: the loss already averages over the batch and the update line
  divides by the batch size again (``meta["torch"]["update_source"]``).
"""
from __future__ import annotations

import numpy as np

from .base import any_in_blocks, Context, Diagnosis, finding

__all__ = ["NeverUpdated", "UpdatedTwice", "GradAccumulating", "DoubleAveraging"]


def _role(ctx: Context, name: str) -> str | None:
    model = ctx.meta.get("model") or {}
    for i, layer in enumerate(model.get("layers") or [], start=1):
        if layer.get("bias") == name:
            return f"the bias of layer {i}"
        if layer.get("weight") == name:
            return f"the weight of layer {i}"
    return None


class NeverUpdated(Diagnosis):
    kind = "never_updated"

    def run(self, ctx: Context) -> list[dict]:
        out = []
        frozen = set((ctx.meta.get("torch") or {}).get("frozen") or [])
        for name in ctx.trace.param_names or list(ctx.arrays.params):
            if name in frozen:
                role = _role(ctx, name)
                where = f"is used as {role}" if role else "is used by the model"
                out.append(finding(self.kind, (
                    f"{name} {where} but is never updated: it does not require grad, so backward gives it "
                    "no gradient and no update touches it."),
                    f"call {name}.requires_grad_(True) and add it to the parameters you update "
                    "(is it missing from `params`?)", param=name, step=ctx.first_step))
                continue
            if name in ((ctx.meta.get("torch") or {}).get("late_update") or {}):
                continue                # a second optimizer updates it after the recorded step
            moved, has_grad = _moved_and_grad(ctx, name)
            if moved is None or moved or not has_grad:
                continue
            out.append(finding(self.kind, (
                f"{name} gets a non-zero gradient but its value never changes over the {len(ctx.steps)} "
                "recorded steps: the update never touches it."),
                "add it to the optimizer's parameters (or to the list your update loop walks)",
                param=name, step=ctx.first_step))
        return out


def _moved_and_grad(ctx, name):
    p = ctx.arrays.params.get(name)
    if p is not None and len(p.before):
        moved = any_in_blocks(lambda a, b: (a != b) & np.isfinite(a) & np.isfinite(b), p.after, p.before)
        has_grad = any_in_blocks(lambda g: np.isfinite(g) & (g != 0), p.grad)
        return moved, has_grad
    cols = ctx.arrays.steps
    un, gn = cols.get("update_norm_" + name), cols.get("grad_norm_" + name)
    if un is None or gn is None:
        return None, False
    un, gn = np.asarray(un, dtype=np.float64), np.asarray(gn, dtype=np.float64)
    return bool(np.any(un[np.isfinite(un)] != 0)), bool(np.any(np.isfinite(gn) & (gn != 0)))


class UpdatedTwice(Diagnosis):
    kind = "updated_twice"

    def run(self, ctx: Context) -> list[dict]:
        out = []
        cols = ctx.arrays.steps
        sources = (ctx.meta.get("torch") or {}).get("update_source") or {}
        for key in cols:
            if not key.startswith("updates_"):
                continue
            name = key[len("updates_"):]
            counts = np.asarray(cols[key], dtype=np.float64)
            many = np.isfinite(counts) & (counts >= 2)
            if not many.any():
                continue
            k = int(np.nanmax(counts[many]))
            src = sources.get(name, {}).get("code")
            where = f" (by `{src}`)" if src else ""
            out.append(finding(self.kind, (
                f"{name} is updated {k} times per step{where} in {int(many.sum())} of {len(ctx.steps)} recorded "
                f"steps: each step moves it {k} times as far as intended."),
                f"list {name} once in the parameters the update walks (it appears {k} times)",
                param=name, step=int(ctx.steps[many][0]), factor=k))
        return out


class GradAccumulating(Diagnosis):
    kind = "grad_accumulating"

    def run(self, ctx: Context) -> list[dict]:
        names, first = [], None
        for key, col in ctx.arrays.steps.items():
            if not key.startswith("stale_grad_"):
                continue
            stale = np.asarray(col, dtype=np.float64)
            hit = np.isfinite(stale) & (stale > 0)
            if hit.any():
                names.append(key[len("stale_grad_"):])
                s = int(ctx.steps[hit][0])
                first = s if first is None else min(first, s)
        if not names:
            return []
        fix = ("call optimizer.zero_grad() once per step, before backward" if ctx.meta.get("optimizer")
               else "zero each gradient once per step (p.grad.zero_() or p.grad = None), before backward")
        return [finding(self.kind, (
            f"From step {first} on, backward added to gradients that an earlier update had already used "
            f"({', '.join(names)}): gradients are accumulating because they are never zeroed, so each step "
            "uses the sum of all gradients so far."), fix,
            param=names[0] if len(names) == 1 else None, step=first)]


class DoubleAveraging(Diagnosis):
    kind = "double_averaging"

    def run(self, ctx: Context) -> list[dict]:
        loss = ctx.meta.get("loss") or {}
        averages = "n" in (loss.get("divide_by") or []) or _program_averages(ctx.program)
        if not averages:
            return []
        sources = (ctx.meta.get("torch") or {}).get("update_source") or {}
        hits = {n: s for n, s in sources.items() if s.get("divides_by_batch")}
        if not hits:
            return []
        name, src = next(iter(hits.items()))
        b = src.get("batch_size")
        what = loss.get("name", "the loss")
        red = loss.get("reduction")
        loss_text = f"{what} (reduction={red!r})" if red else f"{what} (a mean over the batch)"
        return [finding(self.kind, (
            f"The loss {loss_text} already averages over the batch, and the update `{src.get('code')}` divides "
            f"by the batch size ({src.get('divides_by_batch')} = {b}) again: every step is {b} times smaller than "
            f"intended (effective learning rate lr/{b})."),
            f"drop the division by {src.get('divides_by_batch')}, or sum the loss instead of averaging it",
            step=ctx.first_step, factor=b)]


def _program_averages(program) -> bool:
    """Whether the program's loss takes a mean (a mean over the batch rows is inside it)."""
    if program is None or not program.has_loss:
        return False
    return any(n.op == "mean" for n in program.primitive_nodes)
