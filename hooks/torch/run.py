"""One training loop inside a ``trace_torch`` block: what it trains, and its trace.

Why a run apart from the block: one block may run several loops one after another (a
loop that trains other tensors is another run, with its own trace). Everything that is
discovered per loop - the trained tensors and their names, the model and loss read from
the graph, the optimizer, where the rows come from, the epoch count, the open step -
lives in a :class:`TorchRun`, which :meth:`TorchRun.build_trace` turns into a
:class:`tracer.Trace` when the loop is over.
"""
from __future__ import annotations

import sys
from types import FrameType

import numpy as np
import torch

from tracer.recorder import Recorder
from tracer.trace import Trace

from . import names as tnames
from .graph import Graph, settle_divide_by
from .placement import EpochCounter
from .rules import identify_rules, source_of
from .sources import RowFinder
from .step import StepCycle


class TorchRun:
    """One training loop's state: recorder, trained tensors, model/loss/optimizer, rows, steps."""

    def __init__(self, rec_kwargs: dict, user_names: dict[int, str], data_arg: tuple | None) -> None:
        self.recorder = Recorder(meta={"framework": "torch",
                                       "versions": {"torch": torch.__version__, "numpy": np.__version__}},
                                 **rec_kwargs)
        self.params: list[torch.Tensor] = []   # trained tensors, recording order
        self.names: dict[int, str] = {}         # id(tensor) -> name
        self.frozen: set[int] = set()           # ids of constant tensors used as layer biases
        self.model = None
        self.loss = None
        self.loss_raw = None
        self.loss_reason = None
        self.opt_meta = None
        self.update_sources: dict[str, dict] = {}   # param name -> the line that first wrote it
        self.step_columns: list[dict] = []      # per recorded step: counts, stale flags, summary norms
        self.const_by_pos: dict[int, torch.Tensor] = {}
        self.rebuilt_note = False
        self.rows = RowFinder(self.recorder, data_arg)
        self.clock = EpochCounter()
        self.steps = StepCycle(self)
        self._user_names = user_names

    def trains_other_tensors(self, params: list[torch.Tensor]) -> bool:
        """Whether a loss trains none of this run's tensors (then it is another loop)."""
        ids = {id(p) for p in params}
        return bool(self.params) and not any(id(p) in ids for p in self.params)

    # -------------------------------------------------------------- names
    def adopt(self, params: list[torch.Tensor], g: Graph) -> list[torch.Tensor]:
        """Take in the tensors a loss trains (plus constant biases its layers add); returns
        the step's parameters in recording order. New tensors get names, the first loss
        describes the model."""
        ids = {id(p) for p in params}
        for i, layer in enumerate(reversed(g.layers)):
            if layer["bias_const"] and layer["bias"] is not None and i not in self.const_by_pos:
                self.const_by_pos[i] = layer["bias"]
                self.frozen.add(id(layer["bias"]))
        params = params + [t for t in self.const_by_pos.values() if id(t) not in ids]
        self._name_new(params)
        if self.model is None:
            self.model = self._describe_model(g)
            self.loss_reason = g.loss_reason
            self.loss_raw = g.loss
        ids = {id(p) for p in params}
        return [p for p in self.params if id(p) in ids]

    def _name_new(self, params):
        new = [p for p in params if all(p is not q for q in self.params)]
        if not new:
            return
        frames = tnames.user_frames(sys._getframe(1))
        found = tnames.find_names(new, frames)
        for p in new:
            name = self._user_names.get(id(p)) or found.get(id(p)) or f"param{len(self.params)}"
            if name in self.names.values():
                name = f"{name}_{len(self.params)}"
            self.names[id(p)] = name
            self.params.append(p)

    def _describe_model(self, g):
        if g.reason:
            return {"kind": "unsupported", "reason": g.reason}
        layers = []
        for layer in g.layers:
            layers.append({"type": "dense", "weight": self.names[id(layer["weight"])],
                           "bias": None if layer["bias"] is None else self.names[id(layer["bias"])],
                           "transpose": bool(layer["transpose"]), "activation": layer["activation"],
                           "units": layer["units"]})
        return {"kind": "dense_stack", "layers": layers}

    # ------------------------------------------------------------- writes
    def note_write(self, tensor: torch.Tensor, frame: FrameType, is_set: bool) -> None:
        """An in-place write to a trained tensor outside the optimizer: count it, keep its line."""
        k = id(tensor)
        pending = self.steps.pending
        if is_set and pending is not None:
            pending.sets[k] = pending.sets.get(k, 0) + 1
        name = self.names[k]
        if name not in self.update_sources:
            self.update_sources[name] = source_of(frame, pending.batch_size if pending is not None else None)

    # -------------------------------------------------------------- trace
    def build_trace(self, failed: str | None) -> Trace:
        """The :class:`tracer.Trace` of this loop (``failed``: why tracing stopped, if it did)."""
        rec = self.recorder
        meta = rec.meta
        self.rows.apply_collected()
        meta["model"] = self.model
        loss = self.loss
        if loss is None and self.loss_raw is not None:
            loss = settle_divide_by(self.loss_raw, 1, 1)
        meta["loss"] = loss
        if loss is None and self.loss_reason:
            meta.setdefault("notes", []).append(f"loss not recognised: {self.loss_reason}")
        if self.opt_meta is not None and "unsupported" not in self.opt_meta:
            meta["optimizer"] = self.opt_meta
        else:
            meta["optimizer"] = None
            if self.opt_meta is not None:
                meta.setdefault("notes", []).append(self.opt_meta["unsupported"])
        frozen = [self.names[id(p)] for p in self.params if id(p) in self.frozen]
        mode = self.steps.mode
        meta["torch"] = {"mode": mode if mode != "unknown" else "manual",
                         "frozen": frozen, "update_source": dict(self.update_sources),
                         "data": self.rows.kind}
        trace = rec.trace()
        self._add_columns(trace)
        if meta["optimizer"] is None:
            trace.meta["update_rule"] = identify_rules(trace, self.names, self.params, frozen)
        if failed:
            trace.meta.setdefault("notes", []).append(f"tracing stopped early: {failed}")
        return trace

    def _add_columns(self, trace):
        """Append the hook's own per-step columns (kept here, one dict per recorded step,
        so the hot path does not pay the recorder's per-value conversion)."""
        steps = trace.arrays().steps
        n = len(steps.get("step", []))
        rows = self.step_columns[:n]
        if not rows or len(rows) != n:
            return
        keys = []
        for row in rows:
            for key in row:
                if key not in keys:
                    keys.append(key)
        for key in keys:
            steps[key] = np.array([row.get(key, np.nan) for row in rows], dtype=np.float64)
