"""Trace an unmodified PyTorch training loop, ``nn.Module`` + optimizer or raw tensors.

Usage::

    from hooks.torch import trace_torch
    with trace_torch() as tr:
        for epoch in range(epochs):          # the user's loop, unchanged
            for x, y in loader:
                loss = loss_fn(model(x), y)
                loss.backward()
                optimizer.step(); optimizer.zero_grad()
    tr.trace                                 # a tracer.Trace

How the loop is seen (every patch is removed on exit, nothing draws random numbers):

- ``torch.Tensor.backward`` is wrapped: before the engine runs, the loss's autograd
  graph is read (:mod:`hooks._torch_graph`): trained tensors, model layers, the batch,
  the predictions, the loss; the parameters are snapshotted; after it, the gradients.
- DataLoader iterators report the indices of each batch (:mod:`hooks._torch_data`);
  a generator's batches are matched against the dataset they slice (found during the
  first forward pass, or given with ``data=``).
- With an optimizer, global step pre/post hooks close the step (values after, state,
  learning rate). Without one, the step closes at the next ``backward`` (or on exit):
  whatever in-place update the loop made under ``no_grad`` is what changed the values.
- In-place writes to a parameter are counted per step (``_version`` bumps plus
  ``param.data = ...`` assignments) and the first write's source line is kept, so
  "updated twice" and "divides by the batch size again" rest on evidence.

What the trace holds beyond the recorder's tables: ``steps`` columns ``updates_<param>``
(in-place writes in the step), ``stale_grad_<param>`` (1 when backward added to a
gradient an earlier update had used), ``opt_step``; summary capture adds
``value_norm_/update_norm_/grad_norm_<param>``. ``meta["torch"]`` = ``{"mode":
"optimizer"|"manual", "frozen": [constant tensors used as a layer's weight/bias],
"update_source": {param: {"code", "file", "line", "divides_by_batch"?}}, "data":
"dataset"|"indexed"|"matched"|"seen"}``; without an optimizer ``meta["update_rule"]`` =
``{param: {"kind": "sgd"|"none"|"frozen"|"unknown", "lr": ..., "text": "w -= 1e-06 * grad"}}``.
"""
from __future__ import annotations

import ast
import linecache
from collections import deque
import math
import sys
import warnings

import numpy as np
import torch
import torch.optim.optimizer as _optim_module
from torch.overrides import TorchFunctionMode

from tracer import Recorder
from tracer.recorder import DEFAULT_MAX_BYTES
from tracer.errors import TraceInputError

from . import _torch_data as tdata
from . import _torch_graph as tgraph
from . import _torch_names as tnames
from . import _torch_optim as topt
from .patch import Patch, set_attr

__all__ = ["trace_torch", "TorchTracer"]

_ACTIVE = None  # the one TorchTracer inside its with block
_ORIG_BACKWARD = torch.Tensor.backward
_DATA_DESCR = torch._C.TensorBase.__dict__["data"]
_INPLACE = ("__isub__", "__iadd__", "sub_", "add_", "copy_", "mul_", "__imul__")


def trace_torch(*, data=None, names=None, capture: str = "full", every: int = 1,
                max_bytes: int | None = DEFAULT_MAX_BYTES, strict: bool = False) -> "TorchTracer":
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


class _FirstForward(TorchFunctionMode):
    """Sees the ops of the first forward pass only: which constant tensors a layer adds
    (a bias that gets no gradient, S4's ``b1``) and which tensor a batch was sliced
    from (``features[idx]``, S3). Removed at the first ``backward``."""

    def __init__(self):
        super().__init__()
        self.args = {}
        self.slices = deque(maxlen=256)      # the latest fancy-index slices only

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor):
            gf = out.grad_fn
            if gf is not None:
                self.args[id(gf)] = (gf, [a for a in args if isinstance(a, torch.Tensor)])
            elif getattr(func, "__name__", "") == "__getitem__" and len(args) == 2 and isinstance(args[0], torch.Tensor) \
                    and isinstance(args[1], (torch.Tensor, list, np.ndarray)) and out.dim() >= 1:
                self.slices.append((args[0], args[1], out))
        return out


class _Step:
    """What one iteration has shown so far (filled at backward, closed at the update)."""

    __slots__ = ("epoch", "batch", "rows", "pred", "loss", "before", "grads", "v0", "sets",
                 "stale", "B", "record", "lr", "pre_version", "params")

    def __init__(self):
        self.rows = self.pred = None
        self.before = {}
        self.grads = None
        self.v0 = {}
        self.sets = {}
        self.stale = {}
        self.lr = None
        self.pre_version = None


class TorchTracer:
    """The context manager behind :func:`trace_torch`: ``.trace`` (and ``.traces``, one
    per training loop) after the block. One instance may be active at a time."""

    def __init__(self, *, data=None, names=None, capture="full", every=1, max_bytes=DEFAULT_MAX_BYTES,
                 strict=False):
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
        self.traces = []             # one Trace per training loop (run), in order
        self.trace = None
        self._in_opt = False
        self._failed = None
        self._batch = None           # (iterator, indices, batch data, serial, batch number)
        self._n_iters = 0
        self._first = None
        self._fa = None
        self._patch = Patch()        # every patch of the with block, removed on exit
        self._new_run()

    def _new_run(self):
        """Start recording a new training loop: everything discovered so far is per run."""
        self._rec = Recorder(meta={"framework": "torch",
                                   "versions": {"torch": torch.__version__, "numpy": np.__version__}},
                             **self._rec_kwargs)
        self._params = []            # tensors, recording order
        self._names = {}             # id -> name
        self._frozen = set()         # ids of constant tensors used as layer biases
        self._model = None
        self._loss = None
        self._loss_raw = None
        self._loss_reason = None
        self._opt_meta = None
        self._mode = "unknown"       # "optimizer" | "manual"
        self._pending = None
        self._consumed = {}
        self._sources = {}
        self._cols = []              # per recorded step: counts, stale flags, summary norms
        self._last_serial = None
        self._epoch = 0
        self._batch_no = 0
        self._epoch_rows = set()
        self._data_kind = None       # "dataset" | "indexed" | "matched" | "seen"
        self._matcher = None
        self._positions = None
        self._seen = None
        self._const_by_pos = {}
        self._rebuilt_note = False

    def _close_run(self):
        """Finish the current loop's trace (a new loop trains other tensors, or the block ended)."""
        if self._pending is not None and self._failed is None:
            if self._mode == "optimizer":
                self._pending = None
            else:
                self._guard(self._finalize_manual)
        if self._rec.steps_seen:
            self.traces.append(self._build_trace())

    # ------------------------------------------------------------ enter / exit
    def __enter__(self):
        global _ACTIVE
        if _ACTIVE is not None:
            raise TraceInputError("trace_torch: another trace_torch block is already active")
        _ACTIVE = self
        try:
            self._install()
        except BaseException:
            self._uninstall()
            raise
        return self

    def _install(self):
        patch = self._patch = Patch()
        patch.add(set_attr(torch.Tensor, "backward", _traced_backward))
        patch.add(set_attr(torch.Tensor, "data",
                           property(_DATA_DESCR.__get__, _traced_data_set, doc=_DATA_DESCR.__doc__)))
        for meth in _INPLACE:
            patch.add(set_attr(torch.Tensor, meth, _make_inplace(meth)))
        patch.add(tdata.patch_loader(self._on_batch))
        patch.add(_optim_module.register_optimizer_step_pre_hook(self._opt_pre).remove)
        patch.add(_optim_module.register_optimizer_step_post_hook(self._opt_post).remove)
        self._first = _FirstForward()
        self._first.__enter__()
        patch.add(self._drop_first_forward)

    def _uninstall(self):
        global _ACTIVE
        self._patch.remove(on_error=lambda exc: None)   # restoring must go on past a failed undo
        _ACTIVE = None

    def __exit__(self, exc_type, exc, tb):
        global _ACTIVE
        try:
            self._drop_first_forward()
            if self._pending is not None and self._failed is None and self._mode != "optimizer":
                self._guard(self._finalize_manual)
        finally:
            self._uninstall()
        self._pending = None
        self._close_run()
        if not self.traces:
            self.traces.append(self._build_trace())
        self.trace = self.traces[-1]
        return False

    def _drop_first_forward(self):
        mode, self._first = self._first, None
        if mode is None:
            return
        try:
            if torch.overrides._get_current_function_mode() is mode:
                mode.__exit__(None, None, None)
        except Exception:  # pragma: no cover
            pass

    def _guard(self, fn, *args):
        if self._failed is not None:
            return None
        try:
            return fn(*args)
        except Exception as exc:
            if self._strict:
                raise
            self._failed = f"{type(exc).__name__}: {exc}"
            msg = f"steptrace: tracing stopped at step {self._rec.steps_seen + 1}: {self._failed}"
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
            self._rec.note(msg)
            return None

    # ----------------------------------------------------------------- batches
    def _on_batch(self, it, idx, data):
        serial = it.__dict__.get("_steptrace_serial")
        if serial is None:
            self._n_iters += 1
            serial = it.__dict__["_steptrace_serial"] = self._n_iters
        self._batch = (it, idx, data, serial, it._num_yielded)

    def _batch_fresh(self) -> bool:
        """True when a DataLoader batch arrived that no step has used yet."""
        b = self._batch
        return b is not None and self._used_batch != (b[3], b[4])

    def _batch_for(self, x):
        """The loader batch whose inputs the model saw, or None.

        When the graph does not show the model's input (an unsupported layer), the
        latest batch counts if no step has used it yet."""
        if self._batch is None:
            return None
        it, idx, data, serial, num = self._batch
        if not isinstance(data, (list, tuple)) or not data or not isinstance(data[0], torch.Tensor):
            return None
        if x is None:
            fresh = self._used_batch != (serial, num)
            self._used_batch = (serial, num)
            return self._batch if fresh else None
        self._used_batch = (serial, num)
        bx = data[0]
        if bx.shape[0] != x.shape[0]:
            return None
        same = bx.data_ptr() == x.data_ptr() or (bx.numel() == x.numel() and torch.equal(bx.reshape(x.shape), x))
        return self._batch if same else None

    # ---------------------------------------------------------------- backward
    def _before_backward(self, loss):
        """Read the loss's graph, snapshot the parameters, open the step."""
        self._drop_first_forward()
        if self._pending is not None:
            if self._mode == "optimizer":
                self._rec.note(f"step {self._rec.steps_seen + 1}: a second backward before optimizer.step(); "
                               "the earlier one is folded into this step")
                self._pending = None
            else:
                self._mode = "manual"
                self._finalize_manual()
        first, self._fa = self._fa, None
        if self._model is not None and not self._rec.full and self._batch_fresh():
            g = tgraph.Graph()            # summary capture from a DataLoader: step 1's analysis is enough
        else:
            g = tgraph.analyze(loss, first, self._const_by_pos, self._candidates)
        params = tgraph.leaves(loss)
        if not params:
            return
        ids = {id(p) for p in params}
        if self._params and not any(id(p) in ids for p in self._params):
            # a different loop (other tensors trained): close this run, start another
            self._close_run()
            self._new_run()
            g = tgraph.analyze(loss, None, None, self._candidates)
        for i, layer in enumerate(reversed(g.layers)):
            if layer["bias_const"] and layer["bias"] is not None and i not in self._const_by_pos:
                self._const_by_pos[i] = layer["bias"]
                self._frozen.add(id(layer["bias"]))
        params += [t for t in self._const_by_pos.values() if id(t) not in ids]
        self._adopt(params, g)
        rec = self._rec
        st = _Step()
        st.record = rec.should_record()
        ids = {id(p) for p in params}
        st.params = [p for p in self._params if id(p) in ids]
        st.loss = float(loss.detach())
        st.B = int(g.x.shape[0]) if g.x is not None else None
        if st.B is None and self._batch is not None and isinstance(self._batch[2], (list, tuple)) \
                and self._batch[2] and isinstance(self._batch[2][0], torch.Tensor):
            st.B = int(self._batch[2][0].shape[0])
        # gradients left over from a step that already used them
        for p in st.params:
            gr = p.grad
            st.stale[id(p)] = bool(gr is not None and self._consumed.get(id(p)) and _nonzero(gr))
        if st.record:
            st.before = {id(p): p.detach().clone() for p in st.params}
        self._place(st, g)
        self._pending = st

    def _place(self, st, g):
        """Epoch, batch number and (full capture) rows, predictions and data of the step."""
        rec = self._rec
        batch = self._batch_for(g.x)
        if batch is not None:
            it, idx, data, serial, num = batch
            if serial != self._last_serial or num < self._batch_no:   # new iterator, or a reset one
                self._epoch += 1
                self._last_serial = serial
            self._batch_no = num
        if st.record and rec.full:
            self._batch_info(st, g, batch)
        if batch is None and not rec.full and g.x is not None and self._data_kind in (None, "matched"):
            if self._data_kind is None:        # summary capture: rows only to tell the epochs apart
                self._init_matcher(g.x)
            if self._matcher is not None:
                rows = self._matcher.match(tdata.as_rows(g.x))
                if (rows >= 0).all():
                    st.rows = rows
                    self._epoch_by_rows(rows)
        if batch is None and st.rows is None:
            self._epoch = max(self._epoch, 1)
            self._batch_no += 1
        st.epoch, st.batch = max(self._epoch, 1), max(self._batch_no, 1)

    def _after_backward(self):
        st = self._pending
        if st is None:
            return
        for p in st.params:
            self._consumed[id(p)] = False
            st.v0[id(p)] = p._version
        st.sets = {}
        if st.record and self._mode != "optimizer":
            st.grads = self._grab_grads(st.params)

    def _candidates(self):
        """Small tensors that need no gradient in the user's frames: where a constant bias
        (a tensor the user forgot to train) may be found when the first forward pass was
        not watched."""
        out, seen = [], set()
        for frame in tnames.user_frames(sys._getframe(1)):
            for scope in (frame.f_locals, frame.f_globals):
                for value in list(scope.values()):
                    if isinstance(value, torch.Tensor) and not value.requires_grad and id(value) not in seen \
                            and value.dim() <= 2 and 0 < value.numel() <= 4096 and value.is_floating_point():
                        seen.add(id(value))
                        out.append(value)
        return out

    def _adopt(self, params, g):
        new = [p for p in params if all(p is not q for q in self._params)]
        if new:
            frames = tnames.user_frames(sys._getframe(1))
            found = tnames.find_names(new, frames)
            for p in new:
                name = self._user_names.get(id(p)) or found.get(id(p)) or f"param{len(self._params)}"
                if name in self._names.values():
                    name = f"{name}_{len(self._params)}"
                self._names[id(p)] = name
                self._params.append(p)
        if self._model is None:
            self._model = self._describe_model(g)
            self._loss_reason = g.loss_reason
            self._loss_raw = g.loss

    def _describe_model(self, g):
        if g.reason:
            return {"kind": "unsupported", "reason": g.reason}
        layers = []
        for layer in g.layers:
            layers.append({"type": "dense", "weight": self._names[id(layer["weight"])],
                           "bias": None if layer["bias"] is None else self._names[id(layer["bias"])],
                           "transpose": bool(layer["transpose"]), "activation": layer["activation"],
                           "units": layer["units"]})
        return {"kind": "dense_stack", "layers": layers}

    def _batch_info(self, st, g, batch):
        """Rows, inputs, targets and predictions of the batch (full capture only)."""
        x = g.x
        if g.pred is not None:
            with torch.no_grad():
                pred = g.pred()
            st.pred = tdata.as_rows(pred).copy()
        st.B = int(x.shape[0]) if x is not None else (st.pred.shape[0] if st.pred is not None else None)
        if st.B is None and batch is not None:
            st.B = int(batch[2][0].shape[0])
        if self._loss is None and self._loss_raw is not None and st.pred is not None:
            self._loss = tgraph.settle_divide_by(self._loss_raw, st.B, st.pred.shape[1])
        target = g.target
        if target is None and g.diff is not None and st.pred is not None and batch is None:
            d, side = g.diff
            pred = torch.from_numpy(st.pred).reshape(d.shape).to(d.dtype)
            target = pred - d if side == 0 else d + pred     # rebuilt from (pred - y): may differ by 1 ulp
            if not self._rebuilt_note:
                self._rebuilt_note = True
                self._rec.note("targets rebuilt from the loss's saved difference (prediction - target); "
                               "pass data=(inputs, targets) for exact values")
        if batch is not None:
            it, idx, data, serial, num = batch
            if target is None and len(data) > 1 and isinstance(data[1], torch.Tensor):
                target = data[1]
            if idx is not None and self._data_kind in (None, "dataset", "indexed"):
                if self._data_kind is None:
                    self._init_dataset(it)
                if self._data_kind == "dataset":
                    rows = np.asarray(idx, dtype=np.int64)
                    st.rows = rows if self._positions is None else self._positions[rows]
                elif self._data_kind == "indexed" and x is not None:
                    st.rows = np.asarray(idx, dtype=np.int64)
                    self._seen.put(st.rows, tdata.as_rows(x),
                                   None if target is None else tdata.as_rows(target))
        if st.rows is None and x is not None:
            if self._data_kind is None:
                self._init_matcher(x)
            if self._data_kind == "matched":
                rows = self._matcher.match(tdata.as_rows(x))
                if (rows >= 0).all():
                    st.rows = rows
        if st.rows is None and x is not None:
            if self._data_kind in (None, "matched"):
                if self._data_kind == "matched":
                    self._rec.note("some batch rows were not found in the dataset; rows recorded as seen")
                self._data_kind = "seen"
                self._seen = tdata.SeenRows()
            if self._data_kind == "seen":
                y = None if target is None else tdata.as_rows(target)
                st.rows = self._seen.add(tdata.as_rows(x), y)
        if batch is None and st.rows is not None:
            self._epoch_by_rows(st.rows)

    def _epoch_by_rows(self, rows):
        n = self._rec.n_rows
        if self._data_kind == "seen":
            self._epoch = max(self._epoch, 1)
            self._batch_no += 1
            return
        r = set(rows.tolist())
        if self._epoch == 0 or (r & self._epoch_rows) or (n is not None and len(self._epoch_rows) >= n):
            self._epoch += 1
            self._batch_no = 0
            self._epoch_rows = set()
        self._epoch_rows |= r
        self._batch_no += 1

    def _init_dataset(self, it):
        found = tdata.dataset_tensors(it._dataset)
        if found is None:
            try:
                n = len(it._dataset)
            except TypeError:
                n = None
            if n is None:
                self._data_kind = "seen"
                self._seen = tdata.SeenRows()
            else:
                self._data_kind = "indexed"
                self._seen = tdata.IndexedRows(n)
            return
        inputs, targets, self._positions = found
        self._rec.set_data(tdata.as_rows(inputs), tdata.as_rows(targets))
        self._data_kind = "dataset"
        self._rec.meta.setdefault("notes", []).append("batch rows from the DataLoader's sampler")

    def _init_matcher(self, x):
        data = self._data_arg
        how = "data= argument"
        if data is None and self._slices:
            data = self._slice_source(x)
            how = "the tensor the batches are sliced from"
        self._slices = None
        if data is None:
            return
        inputs = tdata.as_rows(torch.as_tensor(data[0]))
        targets = tdata.as_rows(torch.as_tensor(data[1]))
        if inputs.shape[1] != tdata.as_rows(x).shape[1]:
            raise TraceInputError(f"data: inputs have {inputs.shape[1]} columns but the model's batches "
                                  f"have {tdata.as_rows(x).shape[1]}")
        self._rec.set_data(inputs, targets)
        self._matcher = tdata.RowMatcher(inputs)
        self._data_kind = "matched"
        self._rec.meta.setdefault("notes", []).append(f"batch rows recovered by matching against {how}")

    def _slice_source(self, x):
        """(inputs, targets) whose ``[idx]`` produced the batch, from the first forward pass."""
        for src, idx, out in self._slices:
            if out.data_ptr() == x.data_ptr() and out.shape[0] == x.shape[0]:
                for src2, idx2, out2 in self._slices:
                    if idx2 is idx and src2 is not src and src2.shape[0] == src.shape[0]:
                        return src, src2
        return None

    # ---------------------------------------------------------------- optimizer
    def _opt_pre(self, opt, args, kwargs):
        st = self._pending
        if st is None or self._failed is not None:
            return
        self._mode = "optimizer"
        self._optimizer = opt
        self._in_opt = True
        st.pre_version = {id(p): p._version for p in st.params}
        group = topt.group_of(opt, st.params[0]) or opt.param_groups[0]
        st.lr = float(group["lr"])
        if st.record:
            st.grads = self._grab_grads(st.params)

    def _grab_grads(self, params):
        """The gradients as they are now: copies (full capture) or just their norms (summary)."""
        if self._rec.full:
            return {id(p): (None if p.grad is None else p.grad.detach().clone()) for p in params}
        have = [p for p in params if p.grad is not None]
        norms = torch._foreach_norm([p.grad.detach() for p in have]) if have else []
        return {id(p): n for p, n in zip(have, norms)}

    def _opt_post(self, opt, args, kwargs):
        self._in_opt = False
        st = self._pending
        if st is None or self._failed is not None or st.pre_version is None:
            return
        self._guard(self._finalize_optimizer, opt)

    def _finalize_optimizer(self, opt):
        st = self._pending
        self._pending = None
        if self._opt_meta is None:
            self._opt_meta = topt.optimizer_spec(opt)
        counts = {}
        for p in st.params:
            k = id(p)
            outside = st.pre_version[k] - st.v0.get(k, st.pre_version[k]) + st.sets.get(k, 0)
            counts[k] = outside + int(p._version != st.pre_version[k])
        state, opt_step = {}, None
        if st.record and self._rec.full:
            for p in st.params:
                slots, step = topt.state_arrays(opt, p)
                if slots:
                    state[self._names[id(p)]] = slots
                opt_step = step if step is not None else opt_step
        else:
            for p in st.params:
                s = opt.state.get(p)
                if s and "step" in s:
                    opt_step = float(s["step"])
                    break
        self._record(st, counts, state, opt_step)

    def _finalize_manual(self):
        st = self._pending
        self._pending = None
        counts = {id(p): p._version - st.v0.get(id(p), p._version) + st.sets.get(id(p), 0)
                  for p in st.params}
        self._record(st, counts, None, None)

    # ----------------------------------------------------------------- record
    def _record(self, st, counts, state, opt_step):
        rec = self._rec
        names = self._names
        for p in st.params:
            self._consumed[id(p)] = True
        extra = {} if opt_step is None else {"opt_step": opt_step}
        if not st.record:
            rec.record_step(epoch=st.epoch, batch=st.batch, params_before={},
                            params_after={}, loss=st.loss, extra=extra)
            return
        cols = {}
        for p in st.params:
            n = names[id(p)]
            cols["updates_" + n] = counts.get(id(p), 0)
            cols["stale_grad_" + n] = int(st.stale.get(id(p), False))
        grads_t = st.grads or {}
        if rec.full:
            before = {names[k]: t.numpy() for k, t in st.before.items()}
            after = {names[id(p)]: p.detach().numpy() for p in st.params}
            grads = {names[k]: g.numpy() for k, g in grads_t.items() if g is not None}
            rec.record_step(epoch=st.epoch, batch=st.batch, params_before=before, params_after=after,
                            grads=grads, rows=st.rows, y_pred=st.pred, loss=st.loss, lr=st.lr,
                            batch_size=st.B, state=state, extra=extra)
            self._cols.append(cols)
        else:
            with torch.no_grad():
                ps = [p.detach() for p in st.params]
                bs = [st.before[id(p)] for p in st.params]
                gs = [grads_t.get(id(p)) for p in st.params]      # gradient norms already
                have = [g for g in gs if g is not None]
                norms = list(torch._foreach_norm(bs)) + list(torch._foreach_norm(torch._foreach_sub(ps, bs))) + have
                values = torch.stack([v.double() for v in norms]).tolist() if len(norms) > 0 else []
                k = len(ps)
                g_iter = iter(values[2 * k:])
                for i, p in enumerate(st.params):
                    n = names[id(p)]
                    cols["value_norm_" + n] = values[i]
                    cols["update_norm_" + n] = values[k + i]
                    cols["grad_norm_" + n] = math.nan if gs[i] is None else next(g_iter)
            rec.record_step(epoch=st.epoch, batch=st.batch, params_before={},
                            params_after={}, loss=st.loss, lr=st.lr, batch_size=st.B, extra=extra)
            self._cols.append(cols)

    # --------------------------------------------------------- in-place writes
    def _on_write(self, tensor, frame, is_set):
        k = id(tensor)
        if k not in self._names or self._in_opt:
            return
        if is_set and self._pending is not None:
            self._pending.sets[k] = self._pending.sets.get(k, 0) + 1
        name = self._names[k]
        if name not in self._sources:
            self._sources[name] = _source_of(frame, self._pending.B if self._pending is not None else None)

    # ------------------------------------------------------------------ trace
    def _build_trace(self):
        rec = self._rec
        meta = rec.meta
        if self._data_kind in ("seen", "indexed") and self._seen is not None:
            arrays = self._seen.arrays()
            if arrays is not None:
                rec.set_data(*arrays)
                meta.setdefault("notes", []).append(
                    "no dataset found: the data table holds each batch's rows as they were seen"
                    if self._data_kind == "seen" else
                    "the dataset is not a TensorDataset: its rows were filled from the batches the loader drew")
        meta["model"] = self._model
        loss = self._loss
        if loss is None and self._loss_raw is not None:
            loss = tgraph.settle_divide_by(self._loss_raw, 1, 1)
        meta["loss"] = loss
        if loss is None and self._loss_reason:
            meta.setdefault("notes", []).append(f"loss not recognised: {self._loss_reason}")
        if self._opt_meta is not None and "unsupported" not in self._opt_meta:
            meta["optimizer"] = self._opt_meta
        else:
            meta["optimizer"] = None
            if self._opt_meta is not None:
                meta.setdefault("notes", []).append(self._opt_meta["unsupported"])
        frozen = [self._names[id(p)] for p in self._params if id(p) in self._frozen]
        meta["torch"] = {"mode": self._mode if self._mode != "unknown" else "manual",
                         "frozen": frozen, "update_source": dict(self._sources),
                         "data": self._data_kind}
        trace = rec.trace()
        self._add_columns(trace)
        if meta["optimizer"] is None:
            rules = _identify_rules(trace, self._names, self._params, frozen)
            trace.meta["update_rule"] = rules
        if self._failed:
            trace.meta.setdefault("notes", []).append(f"tracing stopped early: {self._failed}")
        return trace

    def _add_columns(self, trace):
        """Append the hook's own per-step columns (kept here, one dict per recorded step,
        so the hot path does not pay the recorder's per-value conversion)."""
        steps = trace.arrays().steps
        n = len(steps.get("step", []))
        rows = self._cols[:n]
        if not rows or len(rows) != n:
            return
        keys = []
        for row in rows:
            for key in row:
                if key not in keys:
                    keys.append(key)
        for key in keys:
            steps[key] = np.array([row.get(key, np.nan) for row in rows], dtype=np.float64)

    _slices = None
    _used_batch = None


# --------------------------------------------------------------------- patches
def _traced_backward(self, *args, **kwargs):
    """``Tensor.backward`` with the tracer reading the graph before and the gradients after."""
    tracer = _ACTIVE
    if tracer is None or tracer._failed is not None or not self.requires_grad or self.grad_fn is None:
        return _ORIG_BACKWARD(self, *args, **kwargs)
    if tracer._first is not None:
        tracer._fa = tracer._first.args
        tracer._slices = tracer._first.slices
    tracer._guard(tracer._before_backward, self)
    out = _ORIG_BACKWARD(self, *args, **kwargs)
    tracer._guard(tracer._after_backward)
    return out


def _nonzero(grad) -> bool:
    """Whether a gradient holds anything: a spread sample of 1024 values decides for big
    tensors (a zeroed gradient is zero everywhere), the whole tensor for small ones."""
    flat = grad.detach().reshape(-1)
    n = flat.numel()
    if n > 4096:
        flat = flat[:: n // 1024]
    return bool(flat.any())


def _traced_data_set(self, value):
    tracer = _ACTIVE
    if tracer is not None and id(self) in tracer._names:
        tracer._on_write(self, sys._getframe(1), True)
    _DATA_DESCR.__set__(self, value)


def _make_inplace(meth):
    orig = getattr(torch._C.TensorBase, meth)

    def inplace(self, *args, **kwargs):
        tracer = _ACTIVE
        if tracer is not None and id(self) in tracer._names:
            tracer._on_write(self, sys._getframe(1), False)
        return orig(self, *args, **kwargs)

    inplace.__name__ = meth
    inplace.__doc__ = orig.__doc__
    return inplace


def _source_of(frame, batch_size):
    """The line that wrote a parameter, and whether it divides by the batch size."""
    try:
        line = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
    except Exception:  # pragma: no cover
        return {}
    out = {"file": frame.f_code.co_filename, "line": frame.f_lineno, "code": line}
    if batch_size:
        try:
            tree = ast.parse(line)
        except SyntaxError:
            return out
        for node in ast.walk(tree):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
                r = node.right
                value = None
                if isinstance(r, ast.Constant) and isinstance(r.value, (int, float)):
                    value, label = r.value, repr(r.value)
                elif isinstance(r, ast.Name):
                    v = frame.f_locals.get(r.id, frame.f_globals.get(r.id))
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        value, label = v, r.id
                if value is not None and value == batch_size:
                    out["divides_by_batch"] = label
                    out["batch_size"] = int(batch_size)
    return out


def _identify_rules(trace, names, params, frozen):
    """Per parameter, the plain-SGD factor ``-update / grad`` that explains every recorded step."""
    rules = {}
    arrays = trace.arrays()
    steps = arrays.steps
    for p in params:
        n = names[id(p)]
        if n in frozen:
            rules[n] = {"kind": "frozen", "text": f"{n} does not require grad: it is never updated"}
            continue
        if n in arrays.params:
            rec = arrays.params[n]
            cols = slice(0, min(rec["before"].shape[1], 2048))   # a sample of elements is plenty
            up = rec["after"][:, cols].astype(np.float64) - rec["before"][:, cols].astype(np.float64)
            g = rec["grad"][:, cols].astype(np.float64)
            ok = np.isfinite(g) & np.isfinite(up)
            up, g = up[ok], g[ok]
        elif "update_norm_" + n in steps:
            up = np.asarray(steps["update_norm_" + n], dtype=np.float64)
            g = -np.asarray(steps["grad_norm_" + n], dtype=np.float64)
            ok = np.isfinite(g) & np.isfinite(up)
            up, g = up[ok], g[ok]
        else:
            continue
        gg = float(np.dot(g, g))
        if not gg:
            rules[n] = {"kind": "unknown", "text": f"{n}: no gradient recorded"}
            continue
        if not np.any(up):
            rules[n] = {"kind": "none", "lr": 0.0, "text": f"{n} is never updated"}
            continue
        lr = -float(np.dot(up, g)) / gg
        resid = float(np.linalg.norm(up + lr * g)) / max(float(np.linalg.norm(up)), 1e-300)
        nice = float(f"{lr:.4g}")
        if abs(nice - lr) <= 1e-3 * abs(lr):
            lr = nice
        if resid < 1e-2:
            rules[n] = {"kind": "sgd", "lr": lr, "text": f"{n} -= {lr:g} * grad"}
        else:
            rules[n] = {"kind": "unknown", "lr": lr,
                        "text": f"{n}: updates are not a fixed multiple of the gradient"}
    return rules
