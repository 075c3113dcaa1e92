"""The PyTorch side of autotrace: one ``trace_torch`` session for the whole script.

Why one session: a script's training loops are not marked in any way, so when ``torch``
is loaded one :func:`hooks.torch.trace_torch` block is entered and kept open until the
script ends; it starts a new trace whenever a loop trains other tensors, and each
becomes a run when the script ends. Should the script open its own ``trace_torch``
block, ours closes first (only one may be active): :func:`step_aside`.
"""
from __future__ import annotations

from typing import Any, Callable

from tracer.trace import Trace

from ..patch import Patch, set_attr
from .runs import warn

__all__ = ["open_session", "step_aside", "close_session", "torch_label"]


def open_session(options: dict) -> Any | None:
    """Enter a ``trace_torch(**options)`` block and return it (None, with a warning, if
    PyTorch tracing cannot start)."""
    try:
        from hooks.torch import trace_torch
    except Exception as exc:  # the boundary with the script's torch: it trains untraced
        warn(f"PyTorch training is not traced: hooks.torch failed to import ({exc})")
        return None
    try:
        session = trace_torch(**options)
        session.__enter__()
    except Exception as exc:  # the boundary with the script's torch: it trains untraced
        warn(f"PyTorch training is not traced: {exc}")
        return None
    return session


def step_aside(tracer_cls: type, current: Callable[[], Any], close: Callable[[], None]) -> Patch | None:
    """A script that opens its own ``trace_torch`` block would find ours active (only
    one may be): patch ``tracer_cls.__enter__`` to call ``close()`` (keeping what ours
    recorded as runs) before a block other than ``current()`` (ours, while open) starts."""
    original_enter = tracer_cls.__dict__.get("__enter__")
    if original_enter is None:
        return None

    def __enter__(tracer):
        ours = current()
        if ours is not None and tracer is not ours:
            close()
        return original_enter(tracer)

    __enter__.__doc__ = original_enter.__doc__
    return set_attr(tracer_cls, "__enter__", __enter__, only_if_current=True)


def close_session(session: Any, error: BaseException | None) -> list[tuple[str, Trace]]:
    """Exit the block (passing on the script's ``error``) and return ``[(label, trace)]``,
    one per training loop it traced.

    The session forgets its traces as it hands them over: something outside our patches
    may keep the session alive (torch's ``_SHARDED_OPS`` registry keeps the patched
    ``requires_grad_`` when ``torch.distributed`` is imported inside the session), and a
    trace it kept would stay in memory after ``steptrace run`` saved and dropped it."""
    try:
        if error is None:
            session.__exit__(None, None, None)
        else:
            session.__exit__(type(error), error, error.__traceback__)
    except Exception as exc:  # never mask the script's own outcome
        warn(f"closing the PyTorch trace failed: {exc}")
    traces = list(session.traces)
    session.traces, session.trace = [], None
    return [(torch_label(trace), trace) for trace in traces]


def torch_label(trace: Trace) -> str:
    """``torch loop training w, b (optimizer)``: what a user recognises in the summary."""
    names = list(trace.param_names)
    mode = (trace.meta.get("torch") or {}).get("mode")
    shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    how = {"optimizer": "torch.optim step", "manual": "hand-written update"}.get(mode)
    return "torch loop training " + (shown or "?") + (f" ({how})" if how else "")
