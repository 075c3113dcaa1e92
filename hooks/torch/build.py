"""Build the step program from one captured forward pass, at the ``backward`` that ends it.

Why at ``backward``: it is the first moment the step is known whole - the loss is the
tensor ``backward`` was called on - and the last moment the autograd graph still
holds what it saved. From the records of :mod:`hooks.torch.capture`:

1. the *cone*: only the calls the loss depends on (a metric computed on the side,
   even with an unsupported op, does not matter);
2. the *leaves*: trained tensors (parameters), the batch, constants, plain numbers
   (:mod:`hooks.torch.layout`);
3. the *nodes*: each call through the translation table (:mod:`hooks.torch.ops`,
   ``ops_nn``, ``ops_loss``), with the user's source line and the module's name;
   a call the table does not model becomes an ``unsupported`` entry, never a guess;
4. the *outputs*: the loss, the prediction (the loss function's tracked argument, or
   for a hand-written loss the tracked operand combined with the target) and the
   target.

The result is a :class:`hooks.torch.plan.Plan`: the program (JSON) plus what each
later step needs to be placed against it (its graph signature, where the batch and
the predictions are saved in the graph).
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from tracer.errors import SteptraceError
from tracer.program import StepProgram

from . import ops_loss, ops_nn  # noqa: F401  (they register their rules)
from .capture import MAX_HELD_BYTES, MAX_RECORDS, Record
from .emit import Emitter, Unsupported
from .graph import Walk, find_saved
from .layout import Layout, OffBatch, classify
from .ops import TABLE
from .plan import Plan

__all__ = ["build_plan", "BuildContext"]

POISON = "\0unsupported"
_COMBINE = {"sub", "__sub__", "rsub", "__rsub__", "add", "__add__", "__radd__", "mul", "__mul__", "__rmul__",
            "div", "__truediv__", "__rtruediv__", "__getitem__", "gather"}


class BuildContext:
    """What the builder needs from the run: names for tensors, the loader batch, the capture."""

    def __init__(self, name_params: Callable[[list], dict], user_names: Callable[[list], dict],
                 module_names: Callable[[], dict], loader_batch: Any, slices, size_values: set,
                 overflow: bool = False) -> None:
        self.name_params = name_params      # tensors -> {id: name} (the run adopts them)
        self.user_names = user_names        # tensors -> {id: variable name in the user's frames}
        self.module_names = module_names    # () -> {id(module): "model.0"}
        self.loader_batch = loader_batch    # the fresh DataLoader batch (a list of tensors) or None
        self.slices = slices
        self.size_values = size_values
        self.overflow = overflow            # the capture dropped its oldest records


def build_plan(records: list[Record], loss: torch.Tensor, w: Walk, ctx: BuildContext) -> Plan:
    """The plan of the step whose forward pass ``records`` hold (see the module docstring).
    The capture's *derived* records (untracked calls on the DataLoader's batch) are left out
    first - a batch used as it is keeps the program it always had - and taken in only when a
    batch tensor is not in the loader's batch: the preprocessing then becomes program nodes
    that recompute the model's input from the recorded raw rows."""
    plain = [r for r in records if not r.derived]
    plan = Plan(signature=w.signature, params=list(w.params))
    try:
        _build(plan, plain, loss, w, ctx)
    except OffBatch as exc:
        if len(plain) < len(records):
            return _with_derived(records, loss, w, ctx, exc)
        plan.fail(exc.reason, getattr(exc, "where", None))
    except Unsupported as exc:
        plan.fail(exc.reason, getattr(exc, "where", None))
    return plan


def _with_derived(records: list[Record], loss: torch.Tensor, w: Walk, ctx: BuildContext, first: OffBatch) -> Plan:
    """The plan again, the batch's preprocessing taken in as nodes. Rows found by content
    (``matched``: ``X[idx] / 255``) are refused: what the graph saves of such a batch is the
    preprocessed tensor, so later steps would be placed by the targets' values alone."""
    plan = Plan(signature=w.signature, params=list(w.params))
    try:
        _build(plan, records, loss, w, ctx)
    except Unsupported as exc:
        plan.fail(exc.reason, getattr(exc, "where", None))
    if plan.layout is not None and plan.layout.kind == "matched":
        plan = Plan(signature=w.signature, params=list(w.params))
        plan.fail(first.reason, getattr(first, "where", None))
    return plan


def _build(plan: Plan, records, loss, w, ctx) -> None:
    trained = {id(p) for p in w.params}
    order, leaves, aliased = _cone(records, loss, trained)
    cone = [records[i] for i in order]
    for i in sorted(aliased):
        plan.fail("an in-place change of a tensor that another view of it is read after", records[i].where,
                  op=records[i].name)
    tracked, untracked = [], []
    for t in leaves:
        (tracked if t.requires_grad else untracked).append(t)
    for t in tracked:
        if id(t) not in trained:
            if _is_leaf(t):
                plan.params.append(t)
                trained.add(id(t))
            elif ctx.overflow:
                raise Unsupported(f"the step runs more operations than steptrace keeps ({MAX_RECORDS}, or "
                                  f"{MAX_HELD_BYTES // 2**20} MB of results): too large to check")
            else:
                raise Unsupported(_untraced_origin(t))
    target, pred = _loss_operands(cone, untracked)
    layout = classify(cone, untracked, target, w, ctx.loader_batch, ctx.slices)
    plan.layout = layout
    plan.batch_size = layout.batch_size
    plan.frozen = [t for t, _ in layout.frozen]
    plan.flagged = {id(t) for t, flag in layout.frozen if flag}
    names = dict(ctx.name_params(plan.params + plan.frozen))
    program_params = [names[id(t)] for t in plan.params + plan.frozen]
    _name_inputs(layout, ctx, set(names.values()))
    for d in layout.inputs:
        names[id(d.tensor)] = d.name
    consts = []
    for k, (t, value, dtype) in enumerate(layout.consts):
        cname = _unique(f"c{k + 1}", set(names.values()))
        names[id(t)] = cname
        consts.append({"name": cname, "value": value.tolist(), "dtype": dtype})
    e = Emitter(names, layout.literals, {d.name for d in layout.inputs}, layout.batch_size,
                ctx.user_names([r.out for r in cone if isinstance(r.out, torch.Tensor)]))
    modules = ctx.module_names()
    for rec in cone:
        _translate(e, rec, modules, plan)
    outputs = _outputs(e, loss, target, pred)
    plan.pred_loc = _pred_locator(w, e, outputs)
    plan.build_pred = e.tensor_of.get(outputs.get("prediction"))
    plan.pred_module, plan.pred_arg = _loss_module(cone)
    plan.loss_meta = _loss_meta(e, outputs)
    if plan.reasons:
        return
    plan.batch_dependent = _batch_dependent(e.nodes, layout.batch_size, ctx.size_values)
    program = {"format": 1, "inputs": [d.program_input() for d in layout.inputs], "consts": consts + e.consts,
               "params": program_params, "nodes": e.nodes, "outputs": outputs}
    if layout.batch_size is not None:
        program["batch_size"] = int(layout.batch_size)
    try:
        StepProgram.from_dict(program)
    except SteptraceError as exc:
        raise Unsupported(f"the program built from the step is not valid: {exc}") from None
    plan.program = program


# ------------------------------------------------------------------- the cone
def _cone(records: list[Record], loss: torch.Tensor, trained: set) -> tuple[list[int], list[torch.Tensor], set]:
    """Indices of the records the loss depends on (in order), the tensors they read that
    no record made (the leaves, in order of first use), and the records that changed a
    tensor in place that another, older view of the same memory is read after (aliasing
    the program cannot follow). A call that returns a trained tensor itself
    (``nn.init.uniform_(w)``, run with grad on) makes nothing: the step reads the
    parameter's value, whatever set it."""
    producer: dict[int, int] = {}
    deps: list[list[int]] = []
    changed: dict[int, tuple[int, int]] = {}       # id(memory base) -> (record, id(tensor changed))
    aliased: set[int] = set()
    for i, rec in enumerate(records):
        d = []
        for t in rec.tensors():
            j = producer.get(id(t), -1)
            if j >= 0:
                d.append(j)
            hit = changed.get(id(_memory(t)))
            if hit is not None and hit[1] != id(t) and j < hit[0]:
                d.append(hit[0])                    # read through another view after an in-place change
                aliased.add(hit[0])
        deps.append(d)
        for t in rec.outs():
            if id(t) not in trained:
                producer[id(t)] = i
            if rec.args and t is rec.args[0]:       # in place: the memory it shares changed
                changed[id(_memory(t))] = (i, id(t))
    root = producer.get(id(loss))
    if root is None:
        raise Unsupported("the loss was not computed by torch functions while the step was watched")
    keep, stack = set(), [root]
    while stack:
        i = stack.pop()
        if i not in keep:
            keep.add(i)
            stack.extend(deps[i])
    order = sorted(keep)
    leaves, seen, made = [], set(), set()
    for i in order:
        rec = records[i]
        for t in rec.tensors():
            if id(t) not in made and id(t) not in seen:
                seen.add(id(t))
                leaves.append(t)
        for t in rec.outs():
            if id(t) not in trained:
                made.add(id(t))
    return order, leaves, aliased & keep


def _memory(t: torch.Tensor) -> torch.Tensor:
    """The tensor whose memory ``t`` views (itself when it is not a view)."""
    base = t._base
    return t if base is None else base


def _untraced_origin(t: torch.Tensor) -> str:
    """Why a tensor that requires grad has no record: a custom autograd Function, or older."""
    try:
        fn = t.grad_fn
    except RuntimeError:
        fn = None
    if isinstance(fn, torch.autograd.function.BackwardCFunction):
        return f"a custom autograd Function ({type(fn).__name__.removesuffix('Backward')})"
    return "a tensor computed before the step's forward pass was watched"


def _is_leaf(t: torch.Tensor) -> bool:
    try:
        return t.grad_fn is None
    except RuntimeError:
        return False


# ------------------------------------------------------------------ the loss
def _loss_operands(cone: list[Record], untracked: list[torch.Tensor]):
    """(target, prediction) of the step: a loss function's untracked and tracked arguments,
    else the last call combining a tracked tensor with an untracked batch tensor."""
    leaf_ids = {id(t) for t in untracked}
    for rec in reversed(cone):
        if rec.name in ops_loss.LOSSES:
            pair = [a for a in (list(rec.args[:2]) + [rec.kwargs.get(k) for k in ("input", "target")])
                    if isinstance(a, torch.Tensor)][:2]
            if len(pair) == 2:
                pred = next((t for t in pair if t.requires_grad), pair[0])
                other = pair[1] if pred is pair[0] else pair[0]
                return (other if not other.requires_grad else None), pred
    for rec in reversed(cone):
        if rec.name not in _COMBINE:
            continue
        ts = list(rec.tensors())
        data = [t for t in ts if id(t) in leaf_ids and t.dim() >= 1]
        live = [t for t in ts if t.requires_grad]
        if data and live:
            return data[-1], live[0]
    return None, None


# ---------------------------------------------------------------- the names
def _name_inputs(layout: Layout, ctx: BuildContext, taken: set) -> None:
    found = ctx.user_names([d.tensor for d in layout.inputs])
    for d in layout.inputs:
        base = found.get(id(d.tensor)) or ("y" if d.source == "targets" else "x")
        d.name = _unique(base, taken)
        taken.add(d.name)


def _unique(base: str, taken: set) -> str:
    if base not in taken:
        return base
    k = 2
    while f"{base}{k}" in taken:
        k += 1
    return f"{base}{k}"


# ----------------------------------------------------------------- the nodes
def _translate(e: Emitter, rec: Record, modules: dict, plan: Plan) -> None:
    e.record = rec
    e.label = None
    if rec.module is not None and id(rec.module) in modules:
        e.label = f"{modules[id(rec.module)]} ({type(rec.module).__name__})"
    fn = TABLE.get(rec.name or "")
    if any(e.names.get(id(t)) == POISON for t in rec.tensors()):
        fn = None                            # downstream of an unsupported call: said once already
    else:
        try:
            if fn is None:
                raise Unsupported("not in steptrace's table of operations")
            fn(e)
            return
        except Unsupported as exc:
            plan.fail(exc.reason, rec.where, op=rec.name or repr(rec.func))
    for t in rec.outs():
        e.names[id(t)] = POISON


def _outputs(e: Emitter, loss, target, pred) -> dict:
    out = {"loss": e.names.get(id(loss), POISON)}
    if e.losses:
        _, x, t = e.losses[-1]
        pair = [x, t]
        p = next((a for a in pair if isinstance(a, torch.Tensor) and a.requires_grad), None)
        q = next((a for a in pair if a is not p), None)
        if p is not None and id(p) in e.names:
            out["prediction"] = e.names[id(p)]
        if isinstance(q, torch.Tensor) and id(q) in e.names:
            out["target"] = e.names[id(q)]
        return out
    if pred is not None and id(pred) in e.names:
        out["prediction"] = e.names[id(pred)]
    if target is not None and id(target) in e.names:
        out["target"] = e.names[id(target)]
    return out


def _pred_locator(w: Walk, e: Emitter, outputs: dict):
    """Where the graph saved the predictions (``MseLossBackward0._saved_self``...), or None."""
    tensor = e.tensor_of.get(outputs.get("prediction"))
    return None if tensor is None else find_saved(w, tensor)


def _loss_module(cone: list[Record]):
    """``(module, position)``: a loss *module* (``nn.MSELoss()``...) whose forward pre-hook
    can hand over each step's predictions, and which positional argument they are."""
    for rec in reversed(cone):
        if rec.name in ops_loss.LOSSES:
            m = rec.module
            if not isinstance(m, torch.nn.Module) or list(m.parameters()) or len(rec.args) < 2:
                return None, 0
            pos = next((i for i, a in enumerate(rec.args[:2]) if isinstance(a, torch.Tensor) and a.requires_grad),
                       None)
            return (m, pos) if pos is not None else (None, 0)
    return None, 0


def _loss_meta(e: Emitter, outputs: dict) -> dict | None:
    """``{name, reduction}`` of the loss for display (the program itself is what is checked)."""
    if e.losses:
        name, _, _ = e.losses[-1]
        node = next(n for n in e.nodes if n["name"] == name)
        red = node["attrs"].get("reduction", "mean")
        meta = {"name": node["op"], "reduction": red}
        if red == "mean":
            # kept for the double-averaging diagnosis, which reads 0.1.0's "divide_by" (n: the
            # batch rows, m: outputs per row); the checker itself evaluates the program
            meta["divide_by"] = ["n"] if node["op"] in ("cross_entropy", "nll_loss") else ["n", "m"]
        return meta
    return {"name": "written by hand", "reduction": None}


def _batch_dependent(nodes: list[dict], b: int | None, sizes: set) -> bool:
    """Whether a number in the program is the build step's batch size (or a multiple read off
    a tensor's shape, as ``/ d.numel()``): then the program holds for that batch size only."""
    if not b or b < 2:
        return False
    for n in nodes:
        for a in n["args"]:
            if isinstance(a, float) and a.is_integer() and a >= b and int(a) % b == 0 and \
                    (int(a) == b or int(a) in sizes):
                return True
        for v in n["attrs"].values():
            if isinstance(v, list) and any(isinstance(x, int) and x == b for x in v):
                return True
    return False
