"""What happens to the gradients between ``backward`` and ``optimizer.step()``.

Why: the optimizer updates with whatever ``.grad`` holds when it runs. Torch's
``clip_grad_norm_`` / ``clip_grad_value_`` (foreach or not) change it on purpose: the
checker models them (:mod:`tracer.math.clipping`) when it gets the *raw* gradient
(the one backward computed, which the step program recomputes) and the transform in
``meta["grad_transform"]``. Anything else that changes a gradient there - ``p.grad *=
2``, ``p.grad.clamp_(...)``, ``p.grad = ...``, a hand-added weight decay - is not
modelled: the update of that parameter is "cannot check" (``meta["optimizer"]
["unmodelled"]``), never a pass and never a false alarm.

How it is seen: each gradient's identity and ``_version`` are noted after backward; a
clipping call notes the gradients it is about to change (copying the raw ones first)
and re-notes them after; at ``optimizer.step()`` a gradient whose identity or version
moved otherwise was changed by code steptrace does not model. ``clip_grad_norm_`` is
seen through the two helpers torch's own module looks up at each call
(``_get_total_norm``, ``_clip_grads_with_norm_``), so a ``from torch.nn.utils import
clip_grad_norm_`` made before the ``with`` block is seen too; ``clip_grad_value_`` is
patched where torch exposes it.
"""
from __future__ import annotations

import math
import os
import sys
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.utils as _utils
import torch.nn.utils.clip_grad as _cg

from ..patch import Patch, set_attr

if TYPE_CHECKING:  # pragma: no cover
    from .step import Step, StepCycle

__all__ = ["GradOps", "GradOpsLog", "patch_clipping"]

_SKIP = ("torch", "hooks", "tracer", "contextlib", "functools", "typing")


class GradOps:
    """One step's gradient bookkeeping: the noted gradients, the clipping it did, what changed."""

    __slots__ = ("noted", "transforms", "raw", "changed")

    def __init__(self) -> None:
        self.noted: dict[int, tuple] = {}      # id(param) -> (id(grad), grad._version) or None
        self.transforms: list[dict] = []      # clipping calls of this step, in order
        self.raw = False                      # the raw gradients were copied at the first clipping
        self.changed: dict[int, str] = {}     # id(param) -> how its gradient changed, unmodelled


def _mark(p: torch.Tensor):
    g = p.grad
    return None if g is None else (id(g), g._version)


def note(st: Step) -> None:
    """After backward (or a modelled clipping): the gradients as they are now are explained."""
    ops = st.grad_ops
    if ops is None:
        ops = st.grad_ops = GradOps()
    ops.noted = {id(p): _mark(p) for p in st.params}


def check(st: Step, at: str) -> None:
    """Note every gradient changed since it was last explained (``at``: where we look)."""
    ops = st.grad_ops
    if ops is None:
        return
    for p in st.params:
        k = id(p)
        if k in ops.noted and k not in ops.changed and _mark(p) != ops.noted[k]:
            ops.changed[k] = at


def inherit(st: Step, micro: list[Step]) -> None:
    """A gradient clipped or changed between the micro-batches of an accumulated step: the
    step's update used a gradient no transform of the final sum describes."""
    check(micro[-1], "between the backward passes of an accumulated step")
    for m in micro:
        ops = m.grad_ops
        if ops is None:
            continue
        hit = set(ops.changed) | {k for t in ops.transforms for k in t.get("_ids", ())}
        if hit:
            mine = st.grad_ops = st.grad_ops or GradOps()
            for k in hit:
                mine.changed.setdefault(k, "between the micro-batches of an accumulated step")


def before_clip(cycle: StepCycle, params: list[torch.Tensor], t: dict, where: str | None) -> None:
    """A clipping call is about to change ``params``' gradients: keep the raw ones, note the transform."""
    st = cycle.pending
    if st is None or st.grad_ops is None or cycle.mode == "manual":
        return
    check(st, f"before {t['source']}")
    names = cycle.run.names
    clipped = [p for p in params if p.grad is not None]
    if any(id(p) not in names or id(p) in st.grad_ops.changed for p in clipped):
        return                          # not explained: the version check reports it
    ops = st.grad_ops
    if st.record and not ops.raw:
        st.grads = cycle._grab_grads(st)
        ops.raw = True
    t = dict(t, params=[names[id(p)] for p in clipped], _ids=[id(p) for p in clipped])
    if where:
        t["source"] = f"{t['source']} at {where}"
    ops.transforms.append(t)


def after_clip(cycle: StepCycle, params: list[torch.Tensor]) -> None:
    """The clipping call is done: the gradients it changed are explained."""
    st = cycle.pending
    if st is None or st.grad_ops is None or cycle.mode == "manual" or not st.grad_ops.transforms:
        return
    ops = st.grad_ops
    for p in params:
        if id(p) in ops.noted and id(p) not in ops.changed:
            ops.noted[id(p)] = _mark(p)


class GradOpsLog:
    """A run's clipping and unmodelled gradient changes, step by step, turned into meta at the end."""

    def __init__(self) -> None:
        self.configs: dict[tuple, list[dict]] = {}    # transforms' key -> transforms
        self.steps = 0                                # closed optimizer steps seen
        self.clipped_steps = 0
        self.changed: dict[str, str] = {}             # param name -> why it cannot be checked

    def add(self, st: Step, names: dict[int, str], step: int) -> None:
        """A closed optimizer step."""
        ops = st.grad_ops
        if ops is None:
            return
        self.steps += 1
        if ops.transforms:
            self.clipped_steps += 1
            key = tuple(_key(t) for t in ops.transforms)
            self.configs.setdefault(key, [{k: v for k, v in t.items() if k != "_ids"} for t in ops.transforms])
        for k, at in ops.changed.items():
            n = names.get(k)
            if n is not None and n not in self.changed:
                self.changed[n] = (f"its gradient was changed {at} by code steptrace does not model (first at "
                                   f"step {step}): the update cannot be checked against the optimizer's rule")

    def finish(self, meta: dict) -> None:
        """``meta["grad_transform"]`` (one clipping seen at every step) and the unmodelled parameters."""
        unmodelled = dict(self.changed)
        if self.configs:
            if len(self.configs) == 1 and self.clipped_steps == self.steps:
                meta["grad_transform"] = [dict(t) for t in next(iter(self.configs.values()))]
            else:
                why = (f"gradient clipping ran at {self.clipped_steps} of {self.steps} optimizer steps with "
                       f"{len(self.configs)} different setting(s): not modelled, the update cannot be checked")
                for ts in self.configs.values():
                    for t in ts:
                        for n in t["params"]:
                            unmodelled.setdefault(n, why)
        opt = meta.get("optimizer")
        if unmodelled and isinstance(opt, dict):
            opt.setdefault("unmodelled", {}).update(unmodelled)


def _key(t: dict) -> tuple:
    return (t["op"], t.get("max_norm"), t.get("value"), t.get("norm_type"), tuple(t["params"]))


# ------------------------------------------------------------------ patches
def patch_clipping(active: Callable[[], Any], busy: Callable[[], bool]) -> Patch:
    """Wrap torch's clipping so the active tracer sees each call (see the module doc)."""
    patch = Patch()
    total_norm, with_norm, by_value = _cg._get_total_norm, _cg._clip_grads_with_norm_, _cg.clip_grad_value_
    last = {}                                   # norm_type of the total norm just computed

    def _get_total_norm(tensors, norm_type=2.0, error_if_nonfinite=False, foreach=None):
        out = total_norm(tensors, norm_type, error_if_nonfinite, foreach)
        last["norm_type"] = _number(norm_type)
        return out

    def _clip_grads_with_norm_(parameters, max_norm, total, foreach=None):
        params = _listed(parameters)
        norm_type, c = last.pop("norm_type", None), _number(max_norm)
        if norm_type is None or c is None:      # a total norm steptrace did not see computed
            return with_norm(params, max_norm, total, foreach)
        t = {"op": "clip_norm", "scope": "global", "max_norm": c, "convention": "torch",
             "norm_type": norm_type, "source": "clip_grad_norm_"}
        return _around(active, busy, params, t, lambda: with_norm(params, max_norm, total, foreach))

    def clip_grad_value_(parameters, clip_value, foreach=None):
        params = _listed(parameters)
        v = _number(clip_value)
        if v is None:                           # torch raises on it itself, untouched
            return by_value(params, clip_value, foreach)
        t = {"op": "clip_value", "value": v, "source": "clip_grad_value_"}
        return _around(active, busy, params, t, lambda: by_value(params, clip_value, foreach))

    for fn, orig in ((_get_total_norm, total_norm), (_clip_grads_with_norm_, with_norm),
                     (clip_grad_value_, by_value)):
        fn.__doc__, fn.__wrapped__ = orig.__doc__, orig
    patch.add(set_attr(_cg, "_get_total_norm", _get_total_norm))
    patch.add(set_attr(_cg, "_clip_grads_with_norm_", _clip_grads_with_norm_))
    patch.add(set_attr(_cg, "clip_grad_value_", clip_grad_value_))
    if getattr(_utils, "clip_grad_value_", None) is by_value:
        patch.add(set_attr(_utils, "clip_grad_value_", clip_grad_value_))
    return patch


def _number(v) -> float | None:
    """``v`` as a finite-or-inf float, or None (the hook never raises where torch would not)."""
    try:
        out = float(v)
    except (TypeError, ValueError, RuntimeError, OverflowError):   # not a number (None, a many-element tensor, ...)
        return None
    return None if math.isnan(out) else out


def _listed(parameters) -> list[torch.Tensor]:
    return [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)


def _around(active, busy, params, t, call):
    """Run a clipping call with the tracer told before and after (its failures stop tracing only)."""
    tracer = active()
    if tracer is None or tracer.failed is not None or busy() or not math.isfinite(t.get("max_norm", 0.0)):
        return call()
    cycle = tracer.run.steps
    tracer.guard(before_clip, cycle, params, t, _where(sys._getframe(2)))
    out = call()
    tracer.guard(after_clip, cycle, params)
    return out


def _where(frame) -> str | None:
    """``file.py:12`` of the user's line that called the clipping."""
    while frame is not None:
        mod = frame.f_globals.get("__name__", "") or ""
        if not any(mod == m or mod.startswith(m + ".") for m in _SKIP):
            return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"
        frame = frame.f_back
    return None
