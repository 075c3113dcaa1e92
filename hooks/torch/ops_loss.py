"""The translation table, continued: torch's loss functions with their exact arguments.

Why apart: each loss is the framework's own definition - ``reduction`` (and the legacy
``size_average``/``reduce``), element ``weight``, ``pos_weight``, class ``weight``,
``ignore_index``, ``label_smoothing``, class-index or probability targets - emitted as
the registry macro of the same name (``tracer/program/macros.py``), so the checker
recomputes exactly what torch computed, broadcasting included (predictions ``(N, 1)``
against targets ``(N,)`` become ``(N, N)`` in torch and in the program alike). Each
rule also tells the builder which argument is the prediction and which the target.
"""
from __future__ import annotations

import torch
from torch.nn import _reduction

from .emit import Emitter, Unsupported
from .ops import rule

__all__ = ["LOSSES"]

LOSSES = ("mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss", "binary_cross_entropy",
          "binary_cross_entropy_with_logits", "cross_entropy", "nll_loss")


def _reduction_of(a: dict) -> str:
    if a.get("size_average") is not None or a.get("reduce") is not None:
        return _reduction.legacy_get_string(a.get("size_average"), a.get("reduce"))
    red = a["reduction"]
    if red not in ("mean", "sum", "none"):
        raise Unsupported(f"reduction={red!r}")
    return red


def _loss(e: Emitter, op: str, a: dict, extra: list, attrs: dict) -> str:
    args = [e.value(a["input"]), e.value(a["target"])] + [e.value(t) for t in extra]
    name = e.emit(op, args, {"reduction": _reduction_of(a), **attrs})
    e.losses.append((name, a["input"], a["target"]))
    return name


@rule("mse_loss", "l1_loss")
def _mse(e: Emitter) -> str:
    a = e.bind(("input", "target", "size_average", "reduce", "reduction", "weight"),
               size_average=None, reduce=None, reduction="mean", weight=None)
    extra = [] if a["weight"] is None else [a["weight"]]
    return _loss(e, e.record.name, a, extra, {})


@rule("huber_loss")
def _huber(e: Emitter) -> str:
    a = e.bind(("input", "target", "reduction", "delta", "weight"), reduction="mean", delta=1.0, weight=None)
    extra = [] if a["weight"] is None else [a["weight"]]
    return _loss(e, "huber_loss", a, extra, {"delta": float(a["delta"])})


@rule("smooth_l1_loss")
def _smooth_l1(e: Emitter) -> str:
    a = e.bind(("input", "target", "size_average", "reduce", "reduction", "beta"),
               size_average=None, reduce=None, reduction="mean", beta=1.0)
    if float(a["beta"]) == 0.0:                  # torch: smooth_l1 with beta 0 is l1
        return _loss(e, "l1_loss", a, [], {})
    return _loss(e, "smooth_l1_loss", a, [], {"beta": float(a["beta"])})


@rule("binary_cross_entropy")
def _bce(e: Emitter) -> str:
    a = e.bind(("input", "target", "weight", "size_average", "reduce", "reduction"),
               weight=None, size_average=None, reduce=None, reduction="mean")
    extra = [] if a["weight"] is None else [a["weight"]]
    return _loss(e, "binary_cross_entropy", a, extra, {})


@rule("binary_cross_entropy_with_logits")
def _bce_logits(e: Emitter) -> str:
    a = e.bind(("input", "target", "weight", "size_average", "reduce", "reduction", "pos_weight"),
               weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None)
    extra = [t for t in (a["weight"], a["pos_weight"]) if t is not None]
    return _loss(e, "binary_cross_entropy_with_logits", a, extra, {"has_weight": a["weight"] is not None})


@rule("cross_entropy", "nll_loss")
def _cross_entropy(e: Emitter) -> str:
    a = e.bind(("input", "target", "weight", "size_average", "ignore_index", "reduce", "reduction",
                "label_smoothing"), weight=None, size_average=None, ignore_index=-100, reduce=None,
               reduction="mean", label_smoothing=0.0)
    x, t = a["input"], a["target"]
    if not isinstance(x, torch.Tensor) or not isinstance(t, torch.Tensor):
        raise Unsupported("a loss of non-tensors")
    class_dim = 1 if x.dim() >= 2 else 0
    index = not t.is_floating_point()
    attrs = {"num_classes": int(x.shape[class_dim]), "class_dim": class_dim,
             "target": "index" if index else "prob", "ignore_index": int(a["ignore_index"])}
    op = e.record.name
    if op == "cross_entropy":
        attrs["label_smoothing"] = float(a["label_smoothing"])
    elif a["label_smoothing"]:
        raise Unsupported("nll_loss with label_smoothing")
    extra = [] if a["weight"] is None else [a["weight"]]
    return _loss(e, op, a, extra, attrs)
