"""The traced train step on Keras's torch backend: the model's own ``train_step``, eagerly,
with what the trace needs read around it.

Why not a graph: on torch Keras's train function is a plain Python call of
``train_step`` per batch (``jit_compile`` off), so the traced step is the same call with
the spies of :mod:`hooks.keras.spies` on, the weights cloned before it (Keras's torch
optimizers update them in place) and everything else read after it. Nothing is added
to the arithmetic: the weights stay bit-identical. The step runs inside
:func:`hooks._busy.framework_busy`, so the PyTorch hook, if active, does not take
Keras's own ``backward`` and in-place updates for a hand-written torch loop.
"""
from __future__ import annotations

from typing import Callable

import keras
import numpy as np
import torch

from .._busy import framework_busy
from .meta import slot_variables
from .spies import spied_train_step

__all__ = ["traced_function"]


def traced_function(model: keras.Model, variables: list, names: list[str], opt_name: str, seen: dict,
                    summary: bool = False) -> Callable:
    """A replacement for Keras's torch train function (called with ``[batch]``) that
    returns ``(logs, extras)``; ``seen`` as in :func:`hooks.keras.step_tf.traced_step`."""
    opt = model.optimizer
    train_step = model.train_step
    unpack = keras.utils.unpack_x_y_sample_weight

    def step(data):
        batch = data[0]
        lr = _scalar(opt.learning_rate)
        before = [v.value.detach().clone() for v in variables]
        with framework_busy("keras"):
            logs, cap = spied_train_step(model, opt, train_step, batch, "apply", seen)
        slots = slot_variables(opt, opt_name, variables, names)
        seen["slots"] = slots
        grads = _gradients(variables, cap, opt.loss_scale_factor)
        extras = {"lr": lr, "iterations": int(_scalar(opt.iterations))}
        after = [v.value.detach().clone() for v in variables]   # other callbacks run before ours
        x, y, _ = unpack(batch)
        loss = cap.get("loss")
        if loss is not None:
            extras["loss"] = _scalar(loss)
        if summary:
            rows = [_norms(b, a, g) for b, a, g in zip(before, after, grads)]
            extras["norms"] = (torch.stack(rows).cpu().numpy() if rows else np.zeros((0, 3)))
            first = next((t for t in keras.tree.flatten(x) if t is not None), None)
            if first is not None:
                extras["batch_size"] = int(first.shape[0])
            return logs, extras
        extras.update({"before": tuple(before), "after": tuple(after), "grads": tuple(grads),
                       "slots": tuple(getattr(s, "value", s).detach().clone() for _, _, s in slots)})
        y_pred = cap.get("y_pred")
        if isinstance(y_pred, torch.Tensor):
            extras["y_pred"] = y_pred.detach()
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            extras["x"], extras["y"] = x.detach(), y.detach()
        return logs, extras

    return step


def _scalar(v) -> float:
    """A Python float of a Keras variable, a torch tensor or a number."""
    v = getattr(v, "value", v)
    if isinstance(v, torch.Tensor):
        return float(v.detach().cpu())
    return float(v)


def _gradients(variables, cap, scale=None):
    """One dense gradient per variable (NaN where the optimizer got none): the gradient of
    the loss, unscaled as the optimizer unscales it (``loss_scale_factor``)."""
    out = []
    for v in variables:
        g = cap.get("grads", {}).get(id(v))
        if g is None:
            out.append(torch.full_like(v.value, float("nan")))
        else:
            out.append(g.detach() if scale is None else g.detach() / scale)
    return out


def _norms(before, after, grad):
    """(value, update, gradient) L2 norms in float64, on the device: summary capture keeps
    only these, and the norms of every parameter go to the host together."""
    b, a, g = (t.detach().to(torch.float64).reshape(-1) for t in (before, after, grad))
    return torch.stack([b.norm(), (a - b).norm(), g.norm()])
