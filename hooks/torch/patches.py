"""The patches a ``trace_torch`` block puts on PyTorch, each returned as a :class:`hooks.patch.Patch`.

Why patches: an unmodified loop tells nobody when a step happens. So, for the block only,

- ``Tensor.backward`` is wrapped (:func:`patch_backward`): the tracer reads the loss's
  graph before the engine frees it, and the gradients after;
- ``Tensor.data = ...`` and the in-place operators (``-=``, ``sub_`` ...) are wrapped
  (:func:`patch_data_setter`, :func:`patch_inplace_writes`): writes to a trained tensor
  are counted and the first one's source line kept;
- global ``torch.optim`` step hooks close a step at ``optimizer.step()``
  (:func:`patch_optimizer_steps`);
- a ``TorchFunctionMode`` watches the first forward pass only (:class:`FirstForward`).

The wrappers forward to the one active tracer (:func:`activate`), and do nothing else
when none is active: nothing draws random numbers, and the arithmetic is untouched.
"""
from __future__ import annotations

import sys
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
import torch.optim.optimizer as _optim_module
from torch.overrides import TorchFunctionMode

from .._busy import torch_should_ignore
from ..patch import Patch, set_attr

if TYPE_CHECKING:  # pragma: no cover
    from .block import TorchTracer

_ACTIVE: TorchTracer | None = None   # the one TorchTracer inside its with block
ORIGINAL_BACKWARD = torch.Tensor.backward
_DATA_DESCR = torch._C.TensorBase.__dict__["data"]
_INPLACE = ("__isub__", "__iadd__", "sub_", "add_", "copy_", "mul_", "__imul__")


def active() -> TorchTracer | None:
    """The tracer whose ``with`` block is running, or None."""
    return _ACTIVE


def activate(tracer: TorchTracer) -> Patch:
    """Make ``tracer`` the one the wrappers report to; the Patch clears it again."""
    global _ACTIVE
    _ACTIVE = tracer

    def clear() -> None:
        global _ACTIVE
        _ACTIVE = None
    return Patch(clear)


def patch_backward() -> Patch:
    """``Tensor.backward`` with the tracer reading the graph before and the gradients after."""
    return set_attr(torch.Tensor, "backward", _traced_backward)


def patch_data_setter() -> Patch:
    """``tensor.data = value`` reports writes to trained tensors (S4's ``param.data -= ...``)."""
    return set_attr(torch.Tensor, "data",
                    property(_DATA_DESCR.__get__, _traced_data_set, doc=_DATA_DESCR.__doc__))


def patch_inplace_writes() -> Patch:
    """The in-place operators a hand-written update uses report writes to trained tensors."""
    patch = Patch()
    for meth in _INPLACE:
        patch.add(set_attr(torch.Tensor, meth, _make_inplace(meth)))
    return patch


def patch_optimizer_steps(pre: Callable[..., Any], post: Callable[..., Any]) -> Patch:
    """Global ``torch.optim`` hooks around every ``optimizer.step()``."""
    patch = Patch()
    patch.add(_optim_module.register_optimizer_step_pre_hook(pre).remove)
    patch.add(_optim_module.register_optimizer_step_post_hook(post).remove)
    return patch


class FirstForward(TorchFunctionMode):
    """Sees the ops of the first forward pass only: which constant tensors a layer adds
    (a bias that gets no gradient, S4's ``b1``) and which tensor a batch was sliced
    from (``features[idx]``, S3). Removed at the first ``backward``."""

    def __init__(self) -> None:
        super().__init__()
        self.args = {}
        self.slices = deque(maxlen=256)      # the latest fancy-index slices only

    def start(self) -> Patch:
        """Enter the mode; the Patch leaves it (if it is still the current one)."""
        self.__enter__()
        return Patch(self._leave)

    def _leave(self) -> None:
        try:
            if torch.overrides._get_current_function_mode() is self:
                self.__exit__(None, None, None)
        except Exception:  # pragma: no cover - the mode stack is torch's; leaving is best effort
            pass

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor) and not torch_should_ignore():
            gf = out.grad_fn
            if gf is not None:
                self.args[id(gf)] = (gf, [a for a in args if isinstance(a, torch.Tensor)])
            elif getattr(func, "__name__", "") == "__getitem__" and len(args) == 2 and isinstance(args[0], torch.Tensor) \
                    and isinstance(args[1], (torch.Tensor, list, np.ndarray)) and out.dim() >= 1:
                self.slices.append((args[0], args[1], out))
        return out


# ------------------------------------------------------------------ wrappers
def _traced_backward(self, *args, **kwargs):
    """``Tensor.backward`` with the tracer reading the graph before and the gradients after."""
    tracer = _ACTIVE
    if tracer is None or torch_should_ignore() or tracer.failed is not None or not self.requires_grad \
            or self.grad_fn is None:
        return ORIGINAL_BACKWARD(self, *args, **kwargs)
    tracer.take_first_forward()
    tracer.guard(tracer.before_backward, self)
    out = ORIGINAL_BACKWARD(self, *args, **kwargs)
    tracer.guard(tracer.after_backward)
    return out


def _traced_data_set(self, value):
    tracer = _ACTIVE
    if tracer is not None and id(self) in tracer.run.names and not torch_should_ignore():
        tracer.on_write(self, sys._getframe(1), True)
    _DATA_DESCR.__set__(self, value)


def _make_inplace(meth):
    orig = getattr(torch._C.TensorBase, meth)

    def inplace(self, *args, **kwargs):
        tracer = _ACTIVE
        if tracer is not None and id(self) in tracer.run.names and not torch_should_ignore():
            tracer.on_write(self, sys._getframe(1), False)
        return orig(self, *args, **kwargs)

    inplace.__name__ = meth
    inplace.__doc__ = orig.__doc__
    return inplace
