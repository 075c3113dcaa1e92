"""The patches a ``trace_torch`` block puts on PyTorch, each returned as a :class:`hooks.patch.Patch`.

Why patches: an unmodified loop tells nobody when a step happens. So, for the block only,

- ``Tensor.backward`` is wrapped (:func:`patch_backward`): the tracer reads the loss's
  graph before the engine frees it, and the gradients after;
- ``Tensor.data = ...`` and the in-place operators (``-=``, ``sub_`` ...) are wrapped
  (:func:`patch_data_setter`, :func:`patch_inplace_writes`): writes to a trained tensor
  are counted and the first one's source line kept;
- global ``torch.optim`` step hooks close a step at ``optimizer.step()``
  (:func:`patch_optimizer_steps`);
- creating an optimizer, an ``nn.Parameter`` or calling ``requires_grad_()`` announces
  a training loop that may be new (:func:`patch_new_training`): the next forward pass
  is watched (:mod:`hooks.torch.capture`).

The wrappers forward to the one active tracer (:func:`activate`), and do nothing else
when none is active: nothing draws random numbers, and the arithmetic is untouched.
Each entry point asks :func:`_ignored` first (work a framework does on its own behalf,
such as Keras on its torch backend, is not the user's loop) and is re-entrant safe:
under a ``TorchFunctionMode`` (``torch.set_default_device``) PyTorch dispatches
``Tensor.backward`` a second time through the patched attribute, which must not count
as a second step (issue 16).
"""
from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.optim.optimizer as _optim_module

from .._busy import torch_should_ignore
from ..patch import Patch, set_attr

if TYPE_CHECKING:  # pragma: no cover
    from .block import TorchTracer

_ACTIVE: TorchTracer | None = None   # the one TorchTracer inside its with block
ORIGINAL_BACKWARD = torch.Tensor.backward
_DATA_DESCR = torch._C.TensorBase.__dict__["data"]
_INPLACE = ("__isub__", "__iadd__", "sub_", "add_", "copy_", "mul_", "__imul__",
            # writes a re-initialisation or a hand constraint makes (issue 10: continuity cites them)
            "div_", "clamp_", "fill_", "zero_", "normal_", "uniform_")


class _Inside(threading.local):
    """Per thread: how many entry points are running (made 0 in each thread: asking needs no
    ``getattr`` default, which is slow when the attribute is missing)."""

    def __init__(self) -> None:
        self.depth = 0


_INSIDE = _Inside()                  # re-entry guard of the entry points, per thread


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


# Whether the current PyTorch work is not the user's training loop (a framework working on
# its own behalf, e.g. Keras on its torch backend). Every entry point asks this first; the
# framework-neutral guard is :mod:`hooks._busy` (its function itself: one call less a question).
_ignored = torch_should_ignore


def _busy() -> bool:
    """True while an entry point of this thread is already running (a nested dispatch)."""
    return _INSIDE.depth > 0


class _Entered:
    """``with _ENTERED:`` marks an entry point as running on this thread."""

    def __enter__(self) -> None:
        _INSIDE.depth += 1

    def __exit__(self, *exc: Any) -> None:
        _INSIDE.depth -= 1


_ENTERED = _Entered()


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
    def guarded(fn):
        def hook(opt, args, kwargs):
            if _ignored() or _busy():
                return None
            with _ENTERED:
                return fn(opt, args, kwargs)
        return hook
    patch = Patch()
    patch.add(_optim_module.register_optimizer_step_pre_hook(guarded(pre)).remove)
    patch.add(_optim_module.register_optimizer_step_post_hook(guarded(post)).remove)
    return patch


def patch_new_training(announce: Callable[[], None]) -> Patch:
    """``announce()`` whenever an optimizer or an ``nn.Parameter`` is made, or
    ``requires_grad_()`` is called: a (new) training loop is about to run."""
    patch = Patch()
    opt_init = torch.optim.Optimizer.__dict__["__init__"]

    def __init__(self, *args, **kwargs):
        opt_init(self, *args, **kwargs)
        _announce(announce)
    __init__.__doc__ = opt_init.__doc__
    patch.add(set_attr(torch.optim.Optimizer, "__init__", __init__))
    param_new = torch.nn.Parameter.__dict__["__new__"]
    new_fn = param_new.__func__ if isinstance(param_new, staticmethod) else param_new

    def __new__(cls, *args, **kwargs):
        out = new_fn(cls, *args, **kwargs)
        _announce(announce)
        return out
    patch.add(set_attr(torch.nn.Parameter, "__new__", staticmethod(__new__)))
    orig_rg = torch._C.TensorBase.requires_grad_

    def requires_grad_(self, requires_grad=True):
        out = orig_rg(self, requires_grad)
        if requires_grad:
            _announce(announce)
        return out
    requires_grad_.__doc__ = orig_rg.__doc__
    patch.add(set_attr(torch.Tensor, "requires_grad_", requires_grad_))
    return patch


def _announce(announce: Callable[[], None]) -> None:
    if _ACTIVE is None or _ignored():
        return
    try:
        announce()
    except Exception:  # never the user's problem
        pass


# ------------------------------------------------------------------ wrappers
def _traced_backward(self, *args, **kwargs):
    """``Tensor.backward`` with the tracer reading the graph before and the gradients after."""
    tracer = _ACTIVE
    if tracer is None or tracer.failed is not None or _INSIDE.depth or _ignored() or not self.requires_grad:
        return ORIGINAL_BACKWARD(self, *args, **kwargs)        # (_INSIDE.depth: _busy() without a call)
    with _ENTERED:
        tracer.guard(tracer.before_backward, self)
        out = ORIGINAL_BACKWARD(self, *args, **kwargs)
        tracer.guard(tracer.after_backward)
    return out


def _traced_data_set(self, value):
    tracer = _ACTIVE
    if tracer is not None and id(self) in tracer.run.names and not _INSIDE.depth and not _ignored() \
            and not tracer.counted(self, True):                  # (_INSIDE.depth: _busy() without a call)
        with _ENTERED:
            tracer.guard(tracer.on_write, self, sys._getframe(1), True)
    _DATA_DESCR.__set__(self, value)


def _make_inplace(meth):
    orig = getattr(torch._C.TensorBase, meth)

    def inplace(self, *args, **kwargs):
        tracer = _ACTIVE
        if tracer is not None:
            # the cheap question first: most in-place calls (``p.data -= ...``, ``grad.zero_()``)
            # write no trained tensor and no alias of one
            run = tracer.run
            target = self if id(self) in run.names else run.between.alias_of(self) if run.between.aliases else None
            if target is not None and not tracer.in_optimizer and not _busy() and not _ignored() \
                    and not tracer.counted(target, False):       # (the optimizer's own writes: on_write ignores them)
                with _ENTERED:
                    tracer.guard(tracer.on_write, target, sys._getframe(1), False)
        return orig(self, *args, **kwargs)

    inplace.__name__ = meth
    inplace.__doc__ = orig.__doc__
    return inplace
