"""``trace_torch`` and :class:`TorchTracer`: the ``with`` block that traces a PyTorch loop.

Why this class is thin: it owns what lasts for the whole block - the patches
(:mod:`hooks.torch.patches`), the DataLoader batches, the capture of a step's forward
pass (:mod:`hooks.torch.capture`), the traces made so far, whether tracing failed - and
hands each event to the current training loop (:class:`hooks.torch.run.TorchRun`),
whose step cycle (:mod:`hooks.torch.step`) opens and closes the steps. A loop that
trains other tensors, or a new optimizer, a reset optimizer state or a changed set of
trained tensors, ends the run and starts another (issue 16).

When the forward pass is watched: from the block's start to the first ``backward``,
and again for one step whenever a new program may be needed (a new run, a step whose
graph matches no program yet, a new optimizer or parameter); otherwise no mode is
active and the user's operations cost nothing extra.
"""
from __future__ import annotations

import sys
import warnings
from types import FrameType
from typing import Any, Callable, TYPE_CHECKING

import numpy as np
import torch

from tracer.errors import TraceInputError
from tracer.recorder import DEFAULT_MAX_BYTES, Recorder
from tracer.store import store_factory
from tracer.trace import Trace

from ..patch import Patch
from . import data as tdata
from . import ddp, gradops, graph, patches
from . import names as tnames
from .build import BuildContext, build_plan
from .capture import Capture
from .placement import LoaderBatches
from .plan import Plan
from .run import TorchRun

if TYPE_CHECKING:  # pragma: no cover
    from tracer.store import StreamStore

__all__ = ["trace_torch", "TorchTracer"]


def trace_torch(*, data: tuple | None = None, names: dict[str, torch.Tensor] | None = None,
                capture: str = "full", every: int = 1, max_bytes: int | None = DEFAULT_MAX_BYTES,
                strict: bool = False, store: StreamStore | Callable[[], StreamStore | None] | None = None) -> TorchTracer:
    """A context manager tracing the PyTorch training loop run inside it.

    Arguments settle what cannot be discovered:

    - ``data``: ``(inputs, targets)`` the batches are cut from (tensors or arrays),
      for loops that draw batches from their own generator; rows are then recovered by
      matching. Usually found by itself (DataLoader, ``features[idx]`` or ``x[a:b]``
      seen in the watched forward pass, or the whole data in a full-batch loop).
    - ``names``: ``{name: tensor}`` to name trained tensors yourself.
    - ``capture``: ``"full"`` (values, gradients, predictions) or ``"summary"`` (per-step
      norms only, cheaper); ``every``: record one step in ``every``; ``max_bytes``: memory
      budget before a full capture falls back to summary.
    - ``strict``: raise tracer errors instead of warning and stopping the trace.
    - ``store``: a :class:`tracer.store.StreamStore` (or a function returning one per
      training loop) the completed steps stream to, so a killed run keeps them; a second
      loop of the block streams to ``PATH.2`` beside the given store's ``PATH``.

    After the block ``.trace`` holds the :class:`tracer.Trace`. A block that runs several
    training loops one after another gives one trace per loop in ``.traces``; ``.trace``
    is then the last one.
    """
    return TorchTracer(data=data, names=names, capture=capture, every=every, max_bytes=max_bytes,
                       strict=strict, store=store)


class TorchTracer:
    """The context manager behind :func:`trace_torch`: ``.trace`` (and ``.traces``, one
    per training loop) after the block; a :class:`tracer.source.TraceSource`. One
    instance may be active at a time."""

    def __init__(self, *, data: tuple | None = None, names: dict[str, torch.Tensor] | None = None,
                 capture: str = "full", every: int = 1, max_bytes: int | None = DEFAULT_MAX_BYTES,
                 strict: bool = False, store=None) -> None:
        # max_bytes=None means "no limit", as for the Recorder and the Keras hook
        self._rec_kwargs = {"every": every, "capture": capture, "max_bytes": max_bytes}
        Recorder(**self._rec_kwargs)         # validates every / capture / max_bytes now
        self._stores = store_factory(store)  # one stream per training loop (None: in memory)
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
        self.capture = Capture(on_error=self._capture_failed, ignored=patches._ignored)
        self._arm_next = False               # watch the next forward pass (decided at a backward)
        self._patch = Patch()                # every patch of the with block, removed on exit
        self.dist: ddp.DistWatch | None = None   # set inside a torch.distributed rank
        self._dist_asked = False             # a process group was found (with or without ranks to watch)
        self.run = self._new_run()

    @property
    def recorder(self) -> Recorder:
        """The recorder of the training loop being traced (for progress displays)."""
        return self.run.recorder

    def _new_run(self) -> TorchRun:
        """Start recording a new training loop: everything discovered so far is per run."""
        self.run = TorchRun({**self._rec_kwargs, "store": self._stores}, self._user_names, self._data_arg)
        self.run.dist = self.dist            # a DDP rank's local gradients (hooks/torch/ddp.py)
        return self.run

    def _close_run(self) -> None:
        """Finish the current loop's trace (another loop starts, or the block ended)."""
        run = self.run
        if run.steps.pending is not None and self.failed is None:
            if run.steps.mode == "optimizer":
                run.folded(run.steps.pending)
                run.steps.pending = None
            else:
                self.guard(run.steps.close_manual)
        run.steps.pending = None
        self.guard(run.flush_deferred)
        run.release()
        if run.recorder.steps_seen:
            self.traces.append(self._finish_trace(run))

    def _finish_trace(self, run: TorchRun) -> Trace:
        """The run's trace; a failure building it still gives the recorded steps, with a warning."""
        try:
            trace = run.build_trace(self.failed, self.capture.failed)
            if self.dist is not None:
                self.dist.annotate(trace)
            return trace
        except Exception as exc:  # the user-script boundary: the recorded steps are kept, with a warning
            if self._strict:
                raise
            if self.failed is None:
                self._stop(f"{type(exc).__name__}: {exc}")
            return run.recorder.trace()

    # ------------------------------------------------------------ enter / exit
    def __enter__(self) -> TorchTracer:
        if patches.active() is not None:
            raise TraceInputError("trace_torch: another trace_torch block is already active")
        self._patch = Patch()
        self._patch.add(patches.activate(self))
        try:
            self._install()
        except BaseException:  # undo a half-made install, then re-raise unchanged
            self._uninstall()
            raise
        return self

    def _install(self) -> None:
        patch = self._patch
        patch.add(patches.patch_backward())
        patch.add(patches.patch_data_setter())
        patch.add(patches.patch_inplace_writes())
        patch.add(gradops.patch_clipping(patches.active, lambda: patches._busy() or patches._ignored()))
        patch.add(tdata.patch_loader(self._on_loader_batch))
        patch.add(patches.patch_optimizer_steps(self._opt_pre, self._opt_post))
        patch.add(patches.patch_new_training(self.announce))
        patch.add(self.capture.disarm)
        self._watch_dist()
        self.capture.arm()

    def _on_loader_batch(self, iterator: Any, indices: Any, data: Any) -> None:
        """A DataLoader batch of the user's loop; one drawn by a framework training on its
        own behalf (Keras's data adapter on the torch backend) is not the user's."""
        if not patches._ignored():
            self.loader.on_batch(iterator, indices, data)
            if self.capture.armed:                 # a watched step: follow what is computed from it
                self.capture.seed(data)

    def _watch_dist(self) -> None:
        """Inside a rank of a process group, record what DDP adds (:mod:`hooks.torch.ddp`);
        asked at entry and at each backward until found (``steptrace run`` enters the block
        when torch is imported, before the script calls ``init_process_group``)."""
        self.dist = ddp.detect()
        self._dist_asked = ddp.initialized()
        if self.dist is not None:
            self.run.dist = self.dist
            self._patch.add(self.dist.remove)

    def _uninstall(self) -> None:
        self._patch.remove(on_error=lambda exc: None)   # restoring must go on past a failed undo

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        try:
            self.capture.disarm()
            steps = self.run.steps
            if steps.pending is not None and self.failed is None and steps.mode != "optimizer":
                self.guard(steps.close_manual)
        finally:
            self._uninstall()
        with np.errstate(all="ignore"):
            self._close_run()
            if not self.traces:
                self.traces.append(self._finish_trace(self.run))
        self.trace = self.traces[-1]
        return False

    def guard(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a tracer step; a failure stops tracing (with a warning and a note) but never
        the user's loop - unless ``strict``."""
        if self.failed is not None:
            return None
        try:
            return fn(*args)
        except Exception as exc:  # the user-script boundary: tracing stops, training goes on
            if self._strict:
                raise
            self._stop(f"{type(exc).__name__}: {exc}")
            return None

    def _stop(self, why: str) -> None:
        self.failed = why
        self.capture.disarm()
        msg = f"steptrace: tracing stopped at step {self.run.recorder.steps_seen + 1}: {why}"
        with warnings.catch_warnings():
            warnings.simplefilter("always", RuntimeWarning)
            warnings.warn(msg, RuntimeWarning, stacklevel=4)
        self.run.recorder.note(msg)

    def _capture_failed(self, why: str) -> None:
        """The watched forward pass failed: programs stop, the steps go on being recorded."""
        msg = f"steptrace: watching the forward pass failed ({why}); steps are recorded but not checked"
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        self.run.recorder.note(msg)

    # ----------------------------------------------------------------- events
    def announce(self) -> None:
        """A new optimizer or parameter: a training loop may start; watch its first step."""
        if self.failed is None and not self.capture.armed:
            self.capture.arm()

    def before_backward(self, loss: torch.Tensor) -> None:
        """Build or match the step's program, settle the open step, open this one."""
        captured = self.capture.armed
        self.capture.disarm()
        records = self.capture.take() if captured else None
        w = graph.walk(loss)
        if not w.params:
            return
        run = self.run
        if records is None and run.steps.short_way(loss, w, self.loader):    # a skipped or summary step
            self._arm_next = False
            if not self._dist_asked and ddp.initialized():
                self._watch_dist()
                if self.dist is not None:
                    self.dist.on_open(run.steps.pending, run.recorder.full)
            return
        if run.trains_other_tensors(w.params):
            self._close_run()
            run = self._new_run()
        if records is not None:
            with np.errstate(all="ignore"):      # the hook's own arithmetic never warns the user
                run.consider(self._build(records, loss, w))
        plan = run.plan if run.plan is not None and run.plan.covers(w.signature, None) else None
        run.attach_waiting()
        run.steps.settle_open_step(w.signature)
        run.steps.open(loss, w, plan, self.loader, run.candidate(w.signature))
        if not self._dist_asked and ddp.initialized():
            self._watch_dist()
        if self.dist is not None:
            self.dist.on_open(run.steps.pending, run.recorder.full)
        self._arm_next = plan is None and run.wants_capture(w.signature)

    def _build(self, records, loss, w) -> Plan:
        cap = self.capture
        if cap.failed is not None:
            return Plan.unsupported("step", f"watching the forward pass failed: {cap.failed}", w.signature)
        run = self.run
        frames = tnames.user_frames(sys._getframe(1))
        ctx = BuildContext(name_params=lambda ts: run.name_params(ts, frames),
                           user_names=lambda ts: tnames.find_names(ts, frames, modules=False),
                           module_names=lambda: tnames.module_names(frames),
                           loader_batch=self.loader.fresh_tensors(), slices=cap.slices,
                           size_values=cap.size_values, overflow=cap.overflow)
        return build_plan(records, loss, w, ctx)

    def after_backward(self) -> None:
        """The gradients are in; watch the next forward pass if a program is still needed."""
        self.run.steps.after_backward()
        if self._arm_next:
            self._arm_next = False
            self.capture.arm()

    def counted(self, tensor: torch.Tensor, is_set: bool) -> bool:
        """Count an in-place write to a trained tensor the short way when that is all
        :meth:`on_write` would do (:meth:`TorchRun.count_write`: a write inside an open step whose
        line is known already), without the frame and the guard; False: take :meth:`on_write`."""
        return self.failed is None and not self.in_optimizer and self.run.count_write(tensor, is_set)

    def on_write(self, tensor: torch.Tensor, frame: FrameType, is_set: bool) -> None:
        """An in-place write to a trained tensor (``frame`` wrote it)."""
        if not self.in_optimizer and id(tensor) in self.run.names:
            self.run.note_write(tensor, frame, is_set)

    def _opt_pre(self, opt, args, kwargs):
        if self.failed is not None:
            return
        self.in_optimizer = True
        if self.run.steps.pending is None:       # another optimizer after the step closed
            if self.run.shared.iteration:
                self.guard(self.run.shared.late_step, opt, self.run.names, self.run.between.steps)
            return
        self.guard(self._before_optimizer, opt)

    def _before_optimizer(self, opt) -> None:
        if self.run.restarts_with(opt):
            pending = self.run.steps.pending
            plan = self.run.candidate(pending.signature)
            self.run.steps.pending = None
            self._close_run()
            self._new_run().take_over(pending, opt, plan)
        self.run.steps.before_optimizer(opt)

    def _opt_post(self, opt, args, kwargs):
        self.in_optimizer = False
        st = self.run.steps.pending
        if st is None or self.failed is not None or st.pre_version is None:
            return
        self.guard(self.run.steps.close_with_optimizer, opt)
