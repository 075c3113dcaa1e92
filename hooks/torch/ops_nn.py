"""The translation table, continued: linear algebra, shapes, reductions, indexing, losses.

Why these rules need care: they carry the batch. A ``view(64, -1)`` written at batch
size 64 must also describe the last, shorter batch, so a reshape target's batch
dimension becomes ``0`` (ONNX's "copy the input's dimension"); and each loss is the
framework's own definition with its exact arguments (``reduction``, ``weight``,
``pos_weight``, ``ignore_index``, ``label_smoothing``, class-index or probability
targets), emitted as the registry's macro of the same name, so ``explain`` reads
like the user's code. A loss function also tells the builder which of its arguments
is the prediction and which the target (:attr:`Emitter.losses`).
"""
from __future__ import annotations

import numpy as np
import torch

from .emit import Emitter, Unsupported
from .ops import TABLE, rule

__all__ = ["TABLE"]


def _ints(v, what: str) -> list[int]:
    if isinstance(v, torch.Tensor) and v.dim() == 0:
        v = int(v)
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return [int(v)]
    if isinstance(v, (list, tuple, torch.Size)):
        out = []
        for x in v:
            if isinstance(x, torch.Tensor) and x.dim() == 0:
                x = int(x)
            if not isinstance(x, (int, np.integer)) or isinstance(x, bool):
                raise Unsupported(f"{what} {v!r}")
            out.append(int(x))
        return out
    raise Unsupported(f"{what} {v!r}")


def _sizes(e: Emitter, key: str) -> list[int]:
    """A shape given as varargs (``view(2, 3)``), one sequence (``view((2, 3))``) or a keyword."""
    rec = e.record
    rest = list(rec.args[1:])
    if key in rec.kwargs:
        rest = [rec.kwargs[key]]
    elif "size" in rec.kwargs:
        rest = [rec.kwargs["size"]]
    if len(rest) == 1 and not isinstance(rest[0], (int, np.integer)):
        rest = rest[0]
    return _ints(rest, key)


def _batch_target(e: Emitter, x, shape: list[int]) -> list[int]:
    """A reshape target with the batch dimension written ``0`` (see the module docstring)."""
    b = e.batch_size
    if shape and b is not None and e.is_batched(x) and shape[0] == b and x.shape[0] == b:
        return [0] + shape[1:]
    return shape


# --------------------------------------------------------------------- shapes
@rule("view", "reshape")
def _reshape(e: Emitter) -> str:
    x = e.record.args[0]
    if any(isinstance(a, torch.dtype) for a in e.record.args[1:]):
        raise Unsupported("view as another dtype")
    shape = _batch_target(e, x, _sizes(e, "shape"))
    return e.emit("reshape", [e.value(x)], {"shape": shape})


@rule("view_as", "reshape_as")
def _reshape_as(e: Emitter) -> str:
    a = e.bind(("input", "other"))
    shape = _batch_target(e, a["input"], list(a["other"].shape))
    return e.emit("reshape", [e.value(a["input"])], {"shape": shape})


@rule("flatten")
def _flatten(e: Emitter) -> str:
    a = e.bind(("input", "start_dim", "end_dim"), start_dim=0, end_dim=-1)
    return e.emit("flatten", [e.value(a["input"])], {"start": int(a["start_dim"]), "end": int(a["end_dim"])})


@rule("squeeze", "squeeze_")
def _squeeze(e: Emitter) -> str:
    a = e.bind(("input", "dim"), dim=None)
    dims = None if a["dim"] is None else _ints(a["dim"], "squeeze dim")
    return e.emit("squeeze", [e.value(a["input"])], {"dims": dims})


@rule("unsqueeze", "unsqueeze_")
def _unsqueeze(e: Emitter) -> str:
    a = e.bind(("input", "dim"))
    return e.emit("unsqueeze", [e.value(a["input"])], {"dim": int(a["dim"])})


@rule("transpose", "transpose_", "swapaxes", "swapdims")
def _transpose(e: Emitter) -> str:
    rec = e.record
    x = rec.args[0]
    d = list(rec.args[1:]) + [rec.kwargs[k] for k in ("dim0", "dim1", "axis0", "axis1") if k in rec.kwargs]
    if len(d) != 2:
        raise Unsupported("transpose arguments")
    return e.emit("transpose", [e.value(x)], {"dim0": int(d[0]), "dim1": int(d[1])})


@rule("t", "t_", "T", "H", "adjoint")
def _t(e: Emitter) -> str:
    x = e.record.args[0]
    if x.dim() < 2:
        return e.alias(e.record.out, x)
    if x.dim() == 2:
        return e.emit("transpose", [e.value(x)], {"dim0": 0, "dim1": 1})
    return e.emit("permute", [e.value(x)], {"dims": list(range(x.dim() - 1, -1, -1))})


@rule("mT", "mH")
def _mt(e: Emitter) -> str:
    return e.emit("transpose", [e.value(e.record.args[0])], {"dim0": -2, "dim1": -1})


@rule("permute")
def _permute(e: Emitter) -> str:
    return e.emit("permute", [e.value(e.record.args[0])], {"dims": _sizes(e, "dims")})


@rule("movedim", "moveaxis")
def _movedim(e: Emitter) -> str:
    a = e.bind(("input", "source", "destination"))
    if not all(isinstance(a[k], int) for k in ("source", "destination")):
        raise Unsupported("movedim of several dimensions")
    return e.emit("movedim", [e.value(a["input"])], {"source": a["source"], "destination": a["destination"]})


@rule("expand")
def _expand(e: Emitter) -> str:
    x = e.record.args[0]
    shape = _sizes(e, "size")
    if e.is_batched(x) and shape and x.dim() == len(shape) and shape[0] == x.shape[0]:
        shape = [-1] + shape[1:]
    return e.emit("expand", [e.value(x)], {"shape": shape})


@rule("expand_as")
def _expand_as(e: Emitter) -> str:
    a = e.bind(("input", "other"))
    shape = list(a["other"].shape)
    x = a["input"]
    if e.is_batched(x) and x.dim() == len(shape) and shape[0] == x.shape[0]:
        shape = [-1] + shape[1:]
    return e.emit("expand", [e.value(x)], {"shape": shape})


# ----------------------------------------------------------------- reductions
def _reduce(op: str):
    def fn(e: Emitter) -> str:
        a = e.bind(("input", "dim", "keepdim", "dtype"), dim=None, keepdim=False, dtype=None)
        if a["dtype"] is not None and not a["dtype"].is_floating_point:
            raise Unsupported(f"{op} in dtype {a['dtype']}")
        dims = None if a["dim"] is None else _ints(a["dim"], f"{op} dim")
        return e.emit(op, [e.value(a["input"])], {"dims": dims or None, "keepdim": bool(a["keepdim"])})
    return fn


TABLE["sum"] = _reduce("sum")
TABLE["mean"] = _reduce("mean")


@rule("logsumexp")
def _logsumexp(e: Emitter) -> str:
    a = e.bind(("input", "dim", "keepdim"), keepdim=False)
    return e.emit("logsumexp", [e.value(a["input"])],
                  {"dims": _ints(a["dim"], "logsumexp dim"), "keepdim": bool(a["keepdim"])})


def _softmax(op: str):
    def fn(e: Emitter) -> str:
        rec = e.record
        x = rec.args[0]
        dim = rec.args[1] if len(rec.args) > 1 else rec.kwargs.get("dim")
        dtype = rec.kwargs.get("dtype")
        for extra in list(rec.args[2:]):
            if isinstance(extra, torch.dtype):
                dtype = extra
        if dtype is not None and not dtype.is_floating_point:
            raise Unsupported(f"{op} in dtype {dtype}")
        if dim is None:                     # torch's implicit dim (with its deprecation warning)
            dim = 0 if x.dim() in (0, 1, 3) else 1
        return e.emit(op, [e.value(x)], {"dim": int(dim)})
    return fn


TABLE["softmax"] = _softmax("softmax")
TABLE["log_softmax"] = _softmax("log_softmax")


# ------------------------------------------------------------- linear algebra
@rule("matmul", "mm", "bmm", "mv", "dot", "inner", "__matmul__")
def _matmul(e: Emitter) -> str:
    a = e.bind(("input", "other"))
    return e.emit("matmul", [e.value(a["input"]), e.value(a["other"])])


@rule("__rmatmul__")
def _rmatmul(e: Emitter) -> str:
    a = e.bind(("input", "other"))
    return e.emit("matmul", [e.value(a["other"]), e.value(a["input"])])


@rule("addmm")
def _addmm(e: Emitter) -> str:
    a = e.bind(("input", "mat1", "mat2", "beta", "alpha"), beta=1, alpha=1)
    mm = e.emit("matmul", [e.value(a["mat1"]), e.value(a["mat2"])], bind=None)
    if a["alpha"] != 1:
        mm = e.emit("mul", [mm, e.value(a["alpha"])], bind=None)
    bias = e.value(a["input"])
    if a["beta"] != 1:
        bias = e.emit("mul", [bias, e.value(a["beta"])], bind=None)
    return e.emit("add", [bias, mm])


@rule("linear")
def _linear(e: Emitter) -> str:
    a = e.bind(("input", "weight", "bias"), bias=None)
    args = [e.value(a["input"]), e.value(a["weight"])]
    if a["bias"] is not None:
        args.append(e.value(a["bias"]))
    return e.emit("linear", args)


# ------------------------------------------------------------------- indexing
@rule("__getitem__")
def _getitem(e: Emitter) -> str:
    x, idx = e.record.args[0], e.record.args[1]
    items = idx if isinstance(idx, tuple) else (idx,)
    picked = _pick_rows(e, x, items)
    if picked is not None:
        return picked
    spec, args = [], [e.value(x)]
    for it in items:
        if it is None:
            spec.append({"new": True})
        elif it is Ellipsis:
            spec.append({"ellipsis": True})
        elif isinstance(it, (int, np.integer)) and not isinstance(it, bool):
            spec.append({"int": int(it)})
        elif isinstance(it, slice):
            spec.append({"slice": [_opt_int(it.start), _opt_int(it.stop), _opt_int(it.step)]})
        else:
            args.append(_index_arg(e, it))
            spec.append({"arg": len(args) - 1})
    return e.emit("index", args, {"items": spec})


def _pick_rows(e: Emitter, x, items):
    """``x[range(N), t]`` (one entry per row: the hand-written NLL) as ``gather``, which
    holds for any batch size where a constant ``range(N)`` would not."""
    if len(items) != 2 or not isinstance(x, torch.Tensor) or x.dim() != 2:
        return None
    first, t = items
    n = x.shape[0]
    if isinstance(first, range):
        is_arange = first == range(n)
    elif isinstance(first, torch.Tensor) and first.dim() == 1 and not first.is_floating_point():
        is_arange = first.shape[0] == n and bool(torch.equal(first.cpu(), torch.arange(n)))
    else:
        return None
    if not is_arange or not isinstance(t, torch.Tensor) or t.dim() != 1 or t.shape[0] != n:
        return None
    col = e.emit("unsqueeze", [e.value(t)], {"dim": -1}, bind=None)
    got = e.emit("gather", [e.value(x), col], {"dim": 1}, bind=None)
    return e.emit("squeeze", [got], {"dims": [1]})


def _opt_int(v):
    if v is None:
        return None
    if isinstance(v, torch.Tensor):
        v = int(v)
    return int(v)


def _index_arg(e: Emitter, it):
    """An integer index array: a program value (a tensor) or a constant (a list or range)."""
    if isinstance(it, torch.Tensor):
        if it.dtype == torch.bool:
            raise Unsupported("indexing with a boolean mask")
        return e.value(it)
    arr = np.asarray(list(it) if isinstance(it, range) else it)
    if arr.dtype.kind not in "iu":
        raise Unsupported("indexing with a non-integer array")
    return e.const(arr.astype(np.int64), "int")


@rule("gather")
def _gather(e: Emitter) -> str:
    a = e.bind(("input", "dim", "index", "sparse_grad"), sparse_grad=False)
    return e.emit("gather", [e.value(a["input"]), e.value(a["index"])], {"dim": int(a["dim"])})


@rule("index_select")
def _index_select(e: Emitter) -> str:
    a = e.bind(("input", "dim", "index"))
    dim = int(a["dim"]) % max(a["input"].dim(), 1)
    spec = [{"slice": [None, None, None]}] * dim + [{"arg": 1}]
    return e.emit("index", [e.value(a["input"]), e.value(a["index"])], {"items": spec})


def _join(op: str):
    def fn(e: Emitter) -> str:
        a = e.bind(("tensors", "dim"), dim=0)
        return e.emit(op, [e.value(t) for t in a["tensors"]], {"dim": int(a["dim"])})
    return fn


for _n in ("cat", "concat", "concatenate"):
    TABLE[_n] = _join("concat")
TABLE["stack"] = _join("stack")
