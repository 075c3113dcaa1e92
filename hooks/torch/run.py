"""One training loop inside a ``trace_torch`` block: what it trains, its program, its trace.

Why a run apart from the block: one block may run several loops one after another (a
loop that trains other tensors, a new optimizer, a reset optimizer state is another
run, with its own trace, checked with its own optimizer). Everything discovered per
loop - the trained tensors and their names, the step program (:class:`Plan`), the
optimizer, where the rows come from, the epoch count, the open step - lives in a
:class:`TorchRun`, which :meth:`TorchRun.build_trace` turns into a
:class:`tracer.Trace` when the loop is over.

Which steps the program covers: a step whose graph signature equals the program's
(and, for a program that baked in its batch size, whose batch has that size). A step
that ran something else is recorded without its rows, so the checker says it was not
checked instead of checking it against the wrong program. A step that ended before
any program was known (the first step of a loop nobody announced) waits, once, for
the next step's program.
"""
from __future__ import annotations

import functools
import sys
from types import FrameType

import numpy as np
import torch

from tracer.recorder import Recorder
from tracer.trace import Trace

from . import micro
from . import names as tnames
from . import optim
from .gradops import GradOpsLog
from .graph import Walk
from .placement import EpochCounter, PredictionsHook, replace
from .plan import Plan
from .rules import identify_rules, source_of
from .shared import SharedLog
from .sources import RowFinder
from .step import Step, StepCycle, recorder_row
from .summary import summary_norms
from .writes import BetweenSteps, user_frame

_MAX_CANDIDATES = 8      # programs kept for other graphs (a run restarting with one adopts it)
_MAX_TRIED = 64          # graphs a capture is asked for, per run (a graph that changes at every step
                         # is not watched at every step)
_DTYPES = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32",
           torch.float64: "float64"}


class TorchRun:
    """One training loop's state: recorder, trained tensors, program, optimizer, rows, steps."""

    def __init__(self, rec_kwargs: dict, user_names: dict[int, str], data_arg: tuple | None) -> None:
        # rec_kwargs["store"], if any, is a factory: each run opens its own stream
        self.recorder = Recorder(meta={"framework": "torch",
                                       "versions": {"torch": torch.__version__, "numpy": np.__version__}},
                                 **rec_kwargs)
        self.params: list[torch.Tensor] = []   # every recorded tensor, recording order
        self.names: dict[int, str] = {}         # id(tensor) -> name
        self.frozen: set[int] = set()           # ids of untracked tensors recorded as parameters
        self.flagged: set[int] = set()          # ... of those, the ones used as a layer's weight/bias
        self.dtypes: dict[str, str] = {}        # name -> torch dtype as recorded
        self.plan: Plan | None = None
        self.covered = 0                        # recorded steps the program covers
        self.uncovered: list[int] = []          # recorded steps it does not
        self.tried: set = set()                 # signatures a capture was asked for
        self.candidates: dict = {}              # signature -> a program built for another graph
        self.deferred = None                    # a closed step waiting for the program
        self.opt = None
        self.opt_ids: frozenset = frozenset()
        self.opt_meta = None
        self.last_opt_step: float | None = None
        self.update_sources: dict[str, dict] = {}   # param name -> the line that first wrote it
        self.step_columns: list[dict] = []      # per recorded step: counts, stale flags, summary norms
        self.pred = PredictionsHook()           # the prediction a loss module's pre-hook saw
        self.accumulated: dict[int, int] = {}  # micro-steps per step -> steps (gradient accumulation)
        self.grad_log = GradOpsLog()            # clipping and unmodelled gradient changes
        self.between = BetweenSteps()           # writes to parameters between steps (continuity)
        self.shared = SharedLog()               # tensors reached twice, optimizers after the close
        self.rows = RowFinder(self.recorder, data_arg)
        self.clock = EpochCounter()
        self.steps = StepCycle(self)
        self._user_names = user_names
        self.dist = None                        # a DDP rank's extras (hooks/torch/ddp.py), set by the block

    # --------------------------------------------------------------- runs
    def trains_other_tensors(self, params: list[torch.Tensor]) -> bool:
        """Whether a loss trains none of this run's tensors (then it is another loop)."""
        ids = {id(p) for p in params}
        return bool(self.params) and not any(id(p) in ids for p in self.params if id(p) not in self.frozen)

    def restarts_with(self, opt: torch.optim.Optimizer) -> bool:
        """Whether ``optimizer.step()`` of ``opt`` restarts training: a new optimizer object,
        another set of trained tensors, or optimizer state reset since the last step."""
        if self.opt is None:
            return False
        if opt is not self.opt or optim.param_ids(opt) != self.opt_ids:
            return True
        pending = self.steps.pending
        return optim.was_reset(opt, pending.params if pending else [], self.last_opt_step)

    def take_over(self, st: Step, opt: torch.optim.Optimizer, plan: Plan | None) -> None:
        """Continue with the step another run had opened (the optimizer showed a restart);
        ``plan`` is the program built for the step's graph, if any."""
        self.name_params(st.params)
        if plan is not None and plan.signature == st.signature:
            self.adopt(plan)
            st.plan = plan
        self.steps.pending = st
        self.steps.mode = "optimizer"
        replace(self, st)

    def use_optimizer(self, opt: torch.optim.Optimizer) -> None:
        """The optimizer that closed a step of this run."""
        if self.opt is None:
            self.opt, self.opt_ids = opt, optim.param_ids(opt)
            self.opt_meta = optim.optimizer_spec(opt)

    # -------------------------------------------------------------- names
    def name_params(self, tensors: list[torch.Tensor], frames: list[FrameType] | None = None) -> dict[int, str]:
        """Names for ``tensors`` (new ones named as the user does); they join the run's recording order."""
        new = list({id(p): p for p in tensors if id(p) not in self.names}.values())
        if new:
            frames = frames if frames is not None else tnames.user_frames(sys._getframe(1))
            found = tnames.find_names(new, frames)
            for p in new:
                name = self._user_names.get(id(p)) or found.get(id(p)) or f"param{len(self.params)}"
                if name in self.names.values():
                    name = f"{name}_{len(self.params)}"
                self.names[id(p)] = name
                self.params.append(p)
        return {id(p): self.names[id(p)] for p in tensors}

    def step_params(self, w: Walk, plan: Plan | None) -> list[torch.Tensor]:
        """The tensors a step records, in the run's order: trained ones, and the program's frozen ones."""
        ps = list(w.params)
        if plan is not None:
            ps += plan.params + plan.frozen
        else:
            ps += [p for p in self.params if id(p) in self.frozen]
        self.name_params(ps)
        ids = {id(p) for p in ps}
        return [p for p in self.params if id(p) in ids]

    # ------------------------------------------------------------ program
    def consider(self, plan: Plan) -> None:
        """A program was built at this run's step: it becomes the run's if it has none, else it
        is kept by signature (a run that restarts at this step adopts it)."""
        if self.plan is not None:
            if plan.signature != self.plan.signature:
                self.candidates[plan.signature] = plan
                while len(self.candidates) > _MAX_CANDIDATES:      # the oldest goes
                    self.candidates.pop(next(iter(self.candidates)))
            return
        self.adopt(plan)

    def candidate(self, signature: tuple) -> Plan | None:
        """The run's program, or a program built for another graph, matching ``signature``."""
        if self.plan is not None and self.plan.signature == signature:
            return self.plan
        return self.candidates.get(signature)

    def adopt(self, plan: Plan) -> None:
        """Make ``plan`` this run's program: its frozen tensors, its data table, its predictions hook."""
        self.plan = plan
        self.candidates.pop(plan.signature, None)
        self.frozen |= {id(t) for t in plan.frozen}
        self.flagged |= plan.flagged
        if plan.ok and plan.layout is not None and plan.layout.kind != "loader":
            self.rows.from_layout(plan.layout)
        if plan.pred_module is not None and self.recorder.full:     # summary capture keeps no predictions
            self.pred.attach(plan.pred_module, plan.pred_arg)     # the step opening now decides again

    def wants_capture(self, signature: tuple) -> bool:
        """Whether to watch the next forward pass: a graph no program was built for yet."""
        if signature in self.tried or self.candidate(signature) is not None or len(self.tried) >= _MAX_TRIED:
            return False
        self.tried.add(signature)
        return True

    def attach_waiting(self) -> None:
        """Give the run's program to the step (and the deferred one) that ran before it was known."""
        plan = self.plan
        for st in (self.deferred[0] if self.deferred else None, self.steps.pending):
            if st is not None and st.plan is None and plan is not None and plan.covers(st.signature, st.batch_size):
                st.plan = plan
                if st.rows is None and plan.layout is not None and plan.layout.kind == "full":
                    st.rows = self.rows.locate(None)
        self.flush_deferred()

    def flush_deferred(self) -> None:
        """Record the step that waited for a program (covered or not)."""
        if self.deferred is not None:
            args, self.deferred = self.deferred, None
            self.record(*args, final=True)

    def folded(self, st: Step) -> None:
        """A backward with no update before the next one: not a step (its gradients carry over;
        the step cycle keeps it as a micro-step of the next one, with its snapshot)."""
        self.recorder.note(f"step {self.recorder.steps_seen + 1}: a backward with no update before the next "
                           "one; folded into the next step")
        if st.plan is not None and st.plan is self.plan and not self.covered and not self.uncovered:
            self.plan = None                    # the program came from that backward: find the next one
            self.tried.discard(st.signature)
            self.release()

    def release(self) -> None:
        """Remove the hook this run put on the user's loss module."""
        self.pred.release()

    # ------------------------------------------------------------- writes
    def count_write(self, tensor: torch.Tensor, is_set: bool) -> bool:
        """:meth:`note_write` of a write in an open step to a tensor whose writing line is known
        (no frame needed); False, having done nothing, for any other write."""
        pending = self.steps.pending
        if pending is None or self.names[id(tensor)] not in self.update_sources:
            return False
        pending.wrote = True
        if is_set:
            k = id(tensor)
            pending.sets[k] = pending.sets.get(k, 0) + 1
        return True

    def note_write(self, tensor: torch.Tensor, frame: FrameType, is_set: bool) -> None:
        """An in-place write to a trained tensor outside the optimizer: count it, keep its line."""
        k = id(tensor)
        pending = self.steps.pending
        if pending is not None:
            pending.wrote = True
            if is_set:
                pending.sets[k] = pending.sets.get(k, 0) + 1
        name = self.names[k]
        if pending is None:
            self.between.saw(name, frame, self.between.steps)
        if name not in self.update_sources:
            self.update_sources[name] = source_of(user_frame(frame), pending.batch_size if pending is not None else None)

    # ------------------------------------------------------------- record
    def _covers(self, st: Step) -> bool:
        plan = self.plan
        if st.micro:
            return st.plan is not None and st.plan is plan and micro.covered(st, plan)
        return st.plan is not None and st.plan is plan and (not plan.needs_rows() or st.rows is not None)

    def record(self, st: Step, counts: dict, state: dict | None, opt_step: float | None,
               final: bool = False) -> None:
        """Record a closed step (or keep it until the program is known, see the module doc)."""
        if self.deferred is not None and self.deferred[0] is not st:
            self.flush_deferred()                # steps are recorded in the order they ran
        rec = self.recorder
        covered = self._covers(st)
        if not covered and not final and self.plan is None and self.deferred is None and st.record:
            self.deferred = (st, counts, state, opt_step)
            return
        if st.micro:                             # once per step (a deferred step comes back here)
            st.loss = micro.total_loss(st)
            self.accumulated[len(st.micro) + 1] = self.accumulated.get(len(st.micro) + 1, 0) + 1
        if opt_step is not None:
            self.last_opt_step = opt_step
        extra = {} if opt_step is None else {"opt_step": opt_step}
        if self.dist is not None:
            state = self.dist.add_to(st, self.names, state, extra)
        try:
            self._record(st, covered, counts, state, extra)
        finally:
            self.steps.release(st)              # the recorder copied what it keeps

    def _record(self, st: Step, covered: bool, counts: dict, state: dict | None, extra: dict) -> None:
        rec = self.recorder
        if not st.record:
            rec.record_step(epoch=st.epoch, batch=st.batch, params_before={}, params_after={}, loss=st.loss,
                            extra=extra)
            return
        if covered:
            self.covered += 1
        else:
            self.uncovered.append(rec.steps_seen + 1)
        names = self.names
        cols = {}
        if st.steady is not None:       # the learned column names (:mod:`.steady`), the same columns
            stale_of = st.stale
            for k, c in zip(st.steady.ids, st.steady.columns):
                cols[c[3]] = counts.get(k, 0)
                cols[c[4]] = int(stale_of.get(k, False))
        else:
            for p in st.params:
                n = names[id(p)]
                updates, stale = _step_columns(n)
                cols[updates] = counts.get(id(p), 0)
                cols[stale] = int(st.stale.get(id(p), False))
                if n not in self.dtypes:
                    self.dtypes[n] = _DTYPES.get(p.dtype) or str(p.dtype).replace("torch.", "")
        if self.accumulated:
            cols["micro_steps"] = len(st.micro) + 1
        if rec.full:
            self._record_full(st, covered, state, extra)
        else:
            cols.update(summary_norms(st, names, st.steady.columns if st.steady is not None else None))
            rec.record_step(epoch=st.epoch, batch=st.batch, params_before={}, params_after={}, loss=st.loss,
                            lr=st.lr, batch_size=st.batch_size, extra=extra)
        self.step_columns.append(cols)

    def _record_full(self, st: Step, covered: bool, state: dict | None, extra: dict) -> None:
        names = self.names
        evaluated = covered or self.plan is None or self.plan.needs_rows()
        before = {names[k]: _np(t, st) for k, t in st.before.items()} if evaluated else {}
        after = {names[id(p)]: _np(p.detach()) for p in st.params} if evaluated else {}
        grads = {names[k]: _np(g, st) for k, g in (st.grads or {}).items() if g is not None}
        rows, pred, index = micro.combined(st) if st.micro else (st.rows, st.pred, None)
        batch_size = None if index is None else int(rows.size)
        self.recorder.record_step(epoch=st.epoch, batch=st.batch, params_before=before, params_after=after,
                                  grads=grads if evaluated else None, rows=rows if covered else None,
                                  y_pred=pred if covered else None, loss=st.loss, lr=st.lr,
                                  batch_size=batch_size or st.batch_size, state=state, extra=extra,
                                  micro=index if covered else None)

    # -------------------------------------------------------------- trace
    def build_trace(self, failed: str | None, capture_failed: str | None = None) -> Trace:
        """The :class:`tracer.Trace` of this loop (``failed``: why tracing stopped, if it did)."""
        with np.errstate(all="ignore"):          # the hook's own arithmetic never warns the user
            return self._build_trace(failed, capture_failed)

    def _build_trace(self, failed: str | None, capture_failed: str | None) -> Trace:
        rec = self.recorder
        meta = rec.meta
        self.rows.apply_collected()
        plan = self.plan or Plan.unsupported(
            "step", f"watching the forward pass failed: {capture_failed}" if capture_failed
            else "the step's forward pass was not watched")
        meta["program"] = plan.program_json()
        meta["loss"] = plan.loss_meta
        self._optimizer_meta(meta)
        self.grad_log.finish(meta)
        frozen = [self.names[id(p)] for p in self.params if id(p) in self.flagged]
        mode = self.steps.mode
        meta["torch"] = {"mode": mode if mode != "unknown" else "manual", "frozen": frozen,
                         "update_source": dict(self.update_sources), "data": self.rows.kind}
        if self.between.first:
            meta["torch"]["between_steps"] = dict(self.between.first)
        self.shared.finish(meta)
        if self.accumulated:
            ks = ", ".join(f"{n} step(s) of {k}" for k, n in sorted(self.accumulated.items()))
            rec.note(f"gradient accumulation: backward passes with no update before the next one were folded "
                     f"into the next step as its micro-steps ({ks} backward passes)")
        if self.uncovered:
            shown = ", ".join(str(s) for s in self.uncovered[:5]) + (" ..." if len(self.uncovered) > 5 else "")
            rec.note(f"{len(self.uncovered)} step(s) ran a computation other than the step program "
                     f"(steps {shown}): recorded, not checked against it")
        if rec.store is not None:
            rec.close()                          # the loop is over: its stream is finished
        trace = rec.trace()
        for p in trace.meta.get("params") or []:
            if p.get("name") in self.dtypes:
                p["dtype"] = self.dtypes[p["name"]]
        self._add_columns(trace)
        all_frozen = [self.names[id(p)] for p in self.params if id(p) in self.frozen]
        if meta["optimizer"] is None:
            trace.meta["update_rule"] = identify_rules(trace, self.names, self.params, all_frozen)
        elif all_frozen:
            trace.meta["update_rule"] = {n: {"kind": "frozen", "text": f"{n} does not require grad: it is "
                                             "never updated"} for n in all_frozen}
        if failed:
            trace.meta.setdefault("notes", []).append(f"tracing stopped early: {failed}")
        return trace

    def _optimizer_meta(self, meta: dict) -> None:
        self.opt_meta = meta["optimizer"] = optim.spec_for_meta(self.opt_meta, self.opt, self.params, self.names,
                                                                meta)

    def _add_columns(self, trace: Trace) -> None:
        """Append the hook's own per-step columns (kept here, one dict per recorded step,
        so the hot path does not pay the recorder's per-value conversion)."""
        n = trace.n_steps          # not trace.arrays(): a trace read back from a stream would copy every table
        rows = self.step_columns[:n]
        if not rows or len(rows) != n:
            return
        keys = []
        for row in rows:
            for key in row:
                if key not in keys:
                    keys.append(key)
        trace.add_step_columns({key: [row.get(key, np.nan) for row in rows] for key in keys})


@functools.lru_cache(maxsize=4096)
def _step_columns(name: str) -> tuple[str, str]:
    """``updates_<name>`` and ``stale_grad_<name>`` (made once, not per step)."""
    return "updates_" + name, "stale_grad_" + name


def _np(t: torch.Tensor, st: Step | None = None) -> np.ndarray:
    """A tensor's values as NumPy (bfloat16, which NumPy has not, as float32); the recorder's
    own row when ``t`` views one (:func:`hooks.torch.step.recorder_row`)."""
    row = None if st is None else recorder_row(st, t)
    return row if row is not None else t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()
