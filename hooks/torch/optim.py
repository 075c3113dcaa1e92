"""torch.optim optimizers as neutral specs, and their per-parameter state as arrays.

Why: the checker replays torch's exact update formulas (``tracer.math.optimizers``,
convention ``"torch"``); it needs the optimizer's name and hyperparameters under
torch's own names, and the state slots (``momentum_buffer``, ``exp_avg`` ...) after
each step to check the state and chain it into the next step.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    import numpy as np

_HYPER = {
    "sgd": ("momentum", "dampening", "weight_decay", "nesterov", "maximize"),
    "rmsprop": ("alpha", "eps", "weight_decay", "momentum", "centered"),
    "adam": ("betas", "eps", "weight_decay", "amsgrad"),
    "adamw": ("betas", "eps", "weight_decay", "amsgrad"),
    "adagrad": ("lr_decay", "weight_decay", "initial_accumulator_value", "eps"),
}
_CLASSES = {"SGD": "sgd", "RMSprop": "rmsprop", "Adam": "adam", "AdamW": "adamw", "Adagrad": "adagrad"}


def _plain(v):
    if isinstance(v, torch.Tensor):
        return float(v)
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


def optimizer_spec(opt: torch.optim.Optimizer, group: dict | None = None) -> dict:
    """``{"name": "sgd", "convention": "torch", "lr": ..., hyperparameters}`` (or unsupported),
    from ``group`` (default: the first param group)."""
    cls = type(opt).__name__
    name = _CLASSES.get(cls)
    group = opt.param_groups[0] if group is None else group
    if name is None:
        return {"name": cls.lower(), "convention": "torch", "lr": _plain(group.get("lr")),
                "unsupported": f"optimizer {cls} has no formula"}
    spec = {"name": name, "convention": "torch", "lr": _plain(group["lr"])}
    for key in _HYPER[name]:
        if key in group:
            spec[key] = _plain(group[key])
    if len(opt.param_groups) > 1:
        spec["groups"] = len(opt.param_groups)
    return spec


def spec_for_meta(spec: dict | None, opt: torch.optim.Optimizer | None, params: list[torch.Tensor],
                  names: dict[int, str], meta: dict) -> dict | None:
    """``meta["optimizer"]``: the spec, kept under its own name when it has no formula (NAdam,
    Adamax: the checker then says "cannot check: optimizer" - None would let it fit plain SGD
    and fail), with the parameters of other param groups ``unmodelled`` (:func:`other_groups`)."""
    if spec is None:
        return None
    if "unsupported" in spec:
        meta.setdefault("notes", []).append(spec["unsupported"])
        return spec
    trained = [p for p in params if id(p) in names and opt is not None and group_of(opt, p) is not None]
    if not trained or len(opt.param_groups) < 2:
        return spec
    # each step records the lr of its first parameter's group: the spec is that group's too
    spec = {**spec, **optimizer_spec(opt, group_of(opt, trained[0]))}
    odd = other_groups(opt, trained[0], trained)
    if odd:
        spec["unmodelled"] = {**spec.get("unmodelled", {}), **{names[id(p)]: why for p, why in odd}}
    return spec


def other_groups(opt: torch.optim.Optimizer, first: torch.Tensor,
                 params: list[torch.Tensor]) -> list[tuple[torch.Tensor, str]]:
    """``(param, why)`` for each of ``params`` in a param group whose lr or hyperparameters
    differ from ``first``'s group (whose values the spec and the recorded lr hold): fine-tuning's
    ``[{"params": base}, {"params": head, "lr": 1e-3}]`` or a group without weight decay.
    Their updates are "cannot check", not checked against another group's rule."""
    ref = group_of(opt, first)
    if ref is None or len(opt.param_groups) < 2:
        return []
    keys = ("lr",) + _HYPER.get(_CLASSES.get(type(opt).__name__, ""), ())
    out = []
    for p in params:
        g = group_of(opt, p)
        diff = [k for k in keys if g is not None and g is not ref and _plain(g.get(k)) != _plain(ref.get(k))]
        if diff:
            shown = ", ".join(f"{k} {_plain(g.get(k))} (not {_plain(ref.get(k))})" for k in diff)
            out.append((p, f"its optimizer param group has {shown}; the checker models one group's settings"))
    return out


def group_of(opt: torch.optim.Optimizer, param: torch.Tensor) -> dict | None:
    """The param_group holding ``param`` (None if the optimizer does not train it)."""
    for group in opt.param_groups:
        for p in group["params"]:
            if p is param:
                return group
    return None


def state_arrays(opt: torch.optim.Optimizer, param: torch.Tensor) -> tuple[dict, float | None]:
    """(slot -> NumPy copy, optimizer step count) of ``param``'s state after a step."""
    st = opt.state.get(param)
    if not st:
        return {}, None
    slots = {}
    step = None
    for key, value in st.items():
        if key == "step":
            step = float(value)
        elif isinstance(value, torch.Tensor) and value.shape == param.shape:
            slots[key] = to_numpy(value)
    return slots, step


def step_count(opt: torch.optim.Optimizer, params: list[torch.Tensor]) -> float | None:
    """The optimizer's step count (``state["step"]`` of the first parameter that has one)."""
    for p in params:
        s = opt.state.get(p)
        if s and "step" in s:
            return float(s["step"])
    return None


def param_ids(opt: torch.optim.Optimizer) -> frozenset[int]:
    """The tensors an optimizer trains (every param group), by identity."""
    return frozenset(id(p) for g in opt.param_groups for p in g["params"])


def was_reset(opt: torch.optim.Optimizer, params: list[torch.Tensor], last_step: float | None) -> bool:
    """Whether the optimizer's state restarted since a step that had counted ``last_step``
    (``opt.state`` cleared, or a state loaded with a lower count): training restarts."""
    if last_step is None:
        return False
    now = step_count(opt, params)
    return now is None or now < last_step


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A detached CPU copy as NumPy; bfloat16 (which NumPy has not) as float32."""
    a = t.detach().cpu()
    if a.dtype == torch.bfloat16:
        a = a.float()
    return a.clone().numpy()
