"""Spies on the two calls of Keras's ``train_step`` that hand over what a trace needs.

Why spies: ``train_step`` computes the predictions, the loss and the gradients as local
values. Two calls receive them: ``model._compute_loss(x, y, y_pred, sample_weight)``
and the optimizer's ``apply_gradients`` (TensorFlow) or ``apply`` (torch). For the
duration of one ``train_step`` both are replaced by wrappers that pass everything on
unchanged and keep a reference; the arithmetic is Keras's own. Shared by the
TensorFlow step (which runs it once, while tracing the graph) and the torch step
(every step, eagerly).
"""
from __future__ import annotations

from typing import Any, Callable

from ..patch import Patch, set_attr

__all__ = ["spied_train_step"]


def spied_train_step(model: Any, opt: Any, train_step: Callable, data: Any, apply_name: str,
                     seen: dict) -> tuple[Any, dict]:
    """Run ``train_step(data)`` with ``_compute_loss`` and ``opt.<apply_name>`` spied on.

    Returns ``(logs, {"y_pred", "loss", "grads": {id(variable): gradient}})``. ``seen``
    gets, at the first call, ``sample_weight`` (whether the batch carried sample
    weights) and ``n_losses`` (how many ``add_loss``/regulariser terms Keras added to the
    compiled loss), which tell the program builder what it must model.
    """
    cap: dict = {}
    compute_loss = model._compute_loss
    apply = getattr(opt, apply_name)

    def spy_loss(*args, **kwargs):
        loss = compute_loss(*args, **kwargs)
        cap["y_pred"] = kwargs.get("y_pred", args[2] if len(args) > 2 else None)
        cap["loss"] = loss
        if "n_losses" not in seen:
            sw = kwargs.get("sample_weight", args[3] if len(args) > 3 else None)
            seen["sample_weight"] = sw is not None
            seen["n_losses"] = len(model.losses)
        return loss

    def spy_apply(grads, *args, **kwargs):
        if apply_name == "apply_gradients":
            grads = list(grads)
            cap["grads"] = {id(v): g for g, v in grads}
        else:
            variables = kwargs.get("trainable_variables", args[0] if args else None)
            if variables is not None:
                cap["grads"] = {id(v): g for g, v in zip(grads, variables)}
        return apply(grads, *args, **kwargs)

    with Patch() as spies:
        spies.add(set_attr(model, "_compute_loss", spy_loss))
        spies.add(set_attr(opt, apply_name, spy_apply))
        logs = train_step(data)
    return logs, cap
