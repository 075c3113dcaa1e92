"""``trace_torch`` and :class:`TorchTracer`: the ``with`` block that traces a PyTorch loop.

Why this class is thin: it owns what lasts for the whole block - the patches
(:mod:`hooks.torch.patches`), the DataLoader batches, the first forward pass, the traces
made so far, whether tracing failed - and hands each event to the current training loop
(:class:`hooks.torch.run.TorchRun`), whose step cycle (:mod:`hooks.torch.step`) opens
and closes the steps. A loop that trains other tensors ends the run and starts another.
"""
from __future__ import annotations

import warnings
from types import FrameType
from typing import Any, Callable

import torch

from tracer.errors import TraceInputError
from tracer.recorder import DEFAULT_MAX_BYTES, Recorder
from tracer.trace import Trace

from ..patch import Patch
from . import data as tdata
from . import graph
from . import patches
from .names import constant_candidates
from .placement import LoaderBatches
from .run import TorchRun

__all__ = ["trace_torch", "TorchTracer"]


def trace_torch(*, data: tuple | None = None, names: dict[str, torch.Tensor] | None = None,
                capture: str = "full", every: int = 1, max_bytes: int | None = DEFAULT_MAX_BYTES,
                strict: bool = False) -> TorchTracer:
    """A context manager tracing the PyTorch training loop run inside it.

    Arguments settle what cannot be discovered:

    - ``data``: ``(inputs, targets)`` the batches are sliced from (tensors or arrays),
      for loops that draw batches from their own generator; rows are then recovered by
      matching. Usually found by itself (DataLoader, or ``features[idx]`` seen in the
      first forward pass).
    - ``names``: ``{name: tensor}`` to name trained tensors yourself.
    - ``capture``: ``"full"`` (values, gradients, predictions) or ``"summary"`` (per-step
      norms only, cheaper); ``every``: record one step in ``every``; ``max_bytes``: memory
      budget before a full capture falls back to summary.
    - ``strict``: raise tracer errors instead of warning and stopping the trace.

    After the block ``.trace`` holds the :class:`tracer.Trace`. A block that runs several
    training loops one after another (a loop trains tensors the previous one did not)
    gives one trace per loop in ``.traces``; ``.trace`` is then the last one.
    """
    return TorchTracer(data=data, names=names, capture=capture, every=every, max_bytes=max_bytes,
                       strict=strict)


class TorchTracer:
    """The context manager behind :func:`trace_torch`: ``.trace`` (and ``.traces``, one
    per training loop) after the block; a :class:`tracer.source.TraceSource`. One
    instance may be active at a time."""

    def __init__(self, *, data: tuple | None = None, names: dict[str, torch.Tensor] | None = None,
                 capture: str = "full", every: int = 1, max_bytes: int | None = DEFAULT_MAX_BYTES,
                 strict: bool = False) -> None:
        # max_bytes=None means "no limit", as for the Recorder and the Keras hook
        self._rec_kwargs = {"every": every, "capture": capture, "max_bytes": max_bytes}
        Recorder(**self._rec_kwargs)         # validates every / capture / max_bytes now
        if names is not None and not isinstance(names, dict):
            raise TraceInputError("names: expected a dict of name -> tensor")
        for key, value in (names or {}).items():
            if not isinstance(value, torch.Tensor):
                raise TraceInputError(f"names[{key!r}]: expected a tensor, got {type(value).__name__}")
        self._user_names = {id(t): n for n, t in (names or {}).items()}
        self._strict = strict
        self._data_arg = None
        if data is not None:
            if not isinstance(data, (tuple, list)) or len(data) != 2:
                raise TraceInputError("data: expected (inputs, targets)")
            self._data_arg = data
        self.traces: list[Trace] = []        # one Trace per training loop (run), in order
        self.trace: Trace | None = None
        self.failed: str | None = None       # why tracing stopped, once it has
        self.in_optimizer = False            # inside optimizer.step(): its writes are not the user's
        self.loader = LoaderBatches()
        self._first: patches.FirstForward | None = None
        self._first_off: Patch | None = None
        self._first_args = None              # the first forward pass's op arguments, for the graph
        self._slices = None                  # the first forward pass's ``tensor[idx]`` slices
        self._patch = Patch()                # every patch of the with block, removed on exit
        self.run = self._new_run()

    @property
    def recorder(self) -> Recorder:
        """The recorder of the training loop being traced (for progress displays)."""
        return self.run.recorder

    def _new_run(self) -> TorchRun:
        """Start recording a new training loop: everything discovered so far is per run."""
        self.run = TorchRun(self._rec_kwargs, self._user_names, self._data_arg)
        return self.run

    def _close_run(self) -> None:
        """Finish the current loop's trace (a new loop trains other tensors, or the block ended)."""
        steps = self.run.steps
        if steps.pending is not None and self.failed is None:
            if steps.mode == "optimizer":
                steps.pending = None
            else:
                self.guard(steps.close_manual)
        if self.run.recorder.steps_seen:
            self.traces.append(self.run.build_trace(self.failed))

    # ------------------------------------------------------------ enter / exit
    def __enter__(self) -> TorchTracer:
        if patches.active() is not None:
            raise TraceInputError("trace_torch: another trace_torch block is already active")
        self._patch = Patch()
        self._patch.add(patches.activate(self))
        try:
            self._install()
        except BaseException:
            self._uninstall()
            raise
        return self

    def _install(self) -> None:
        patch = self._patch
        patch.add(patches.patch_backward())
        patch.add(patches.patch_data_setter())
        patch.add(patches.patch_inplace_writes())
        patch.add(tdata.patch_loader(self.loader.on_batch))
        patch.add(patches.patch_optimizer_steps(self._opt_pre, self._opt_post))
        self._first = patches.FirstForward()
        self._first_off = patch.add(self._first.start())

    def _uninstall(self) -> None:
        self._patch.remove(on_error=lambda exc: None)   # restoring must go on past a failed undo

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        steps = self.run.steps
        try:
            self._drop_first_forward()
            if steps.pending is not None and self.failed is None and steps.mode != "optimizer":
                self.guard(steps.close_manual)
        finally:
            self._uninstall()
        steps.pending = None
        self._close_run()
        if not self.traces:
            self.traces.append(self.run.build_trace(self.failed))
        self.trace = self.traces[-1]
        return False

    def _drop_first_forward(self) -> None:
        self._first = None
        if self._first_off is not None:
            self._first_off.remove()

    def guard(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a tracer step; a failure stops tracing (with a warning and a note) but never
        the user's loop - unless ``strict``."""
        if self.failed is not None:
            return None
        try:
            return fn(*args)
        except Exception as exc:
            if self._strict:
                raise
            self.failed = f"{type(exc).__name__}: {exc}"
            msg = f"steptrace: tracing stopped at step {self.run.recorder.steps_seen + 1}: {self.failed}"
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
            self.run.recorder.note(msg)
            return None

    # ----------------------------------------------------------------- events
    def take_first_forward(self) -> None:
        """At a backward: keep what the first forward pass showed, for the graph reader."""
        if self._first is not None:
            self._first_args = self._first.args
            self._slices = self._first.slices

    def _take_slices(self):
        slices, self._slices = self._slices, None
        return slices

    def before_backward(self, loss: torch.Tensor) -> None:
        """Read the loss's graph, snapshot the parameters, open the step."""
        self._drop_first_forward()
        run = self.run
        run.steps.settle_open_step()
        first, self._first_args = self._first_args, None
        if run.model is not None and not run.recorder.full and self.loader.fresh():
            g = graph.Graph()            # summary capture from a DataLoader: step 1's analysis is enough
        else:
            g = graph.analyze(loss, first, run.const_by_pos, constant_candidates)
        params = graph.leaves(loss)
        if not params:
            return
        if run.trains_other_tensors(params):
            # a different loop (other tensors trained): close this run, start another
            self._close_run()
            run = self._new_run()
            g = graph.analyze(loss, None, None, constant_candidates)
        run.steps.open(loss, g, params, self.loader, self._take_slices)

    def after_backward(self) -> None:
        """The gradients are in."""
        self.run.steps.after_backward()

    def on_write(self, tensor: torch.Tensor, frame: FrameType, is_set: bool) -> None:
        """An in-place write to a trained tensor (``frame`` wrote it)."""
        if not self.in_optimizer:
            self.run.note_write(tensor, frame, is_set)

    def _opt_pre(self, opt, args, kwargs):
        if self.run.steps.pending is None or self.failed is not None:
            return
        self.in_optimizer = True
        self.run.steps.before_optimizer(opt)

    def _opt_post(self, opt, args, kwargs):
        self.in_optimizer = False
        st = self.run.steps.pending
        if st is None or self.failed is not None or st.pre_version is None:
            return
        self.guard(self.run.steps.close_with_optimizer, opt)
