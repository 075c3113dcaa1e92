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


def optimizer_spec(opt: torch.optim.Optimizer) -> dict:
    """``{"name": "sgd", "convention": "torch", "lr": ..., hyperparameters}`` (or unsupported)."""
    cls = type(opt).__name__
    name = _CLASSES.get(cls)
    group = opt.param_groups[0]
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
