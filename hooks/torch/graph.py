"""Read a loss's autograd graph: the model, the loss, the batch and the predictions.

Why the graph: raw-tensor training code (S1, S3, S4) has no ``nn.Module`` to inspect,
but every loss carries the computation that produced it. Walking ``loss.grad_fn``
*before* ``backward`` frees the saved tensors gives

- the trained tensors (``AccumulateGrad.variable``, :func:`leaves`),
- a neutral ``dense_stack`` description (matmul / addmm + bias + activation layers,
  :mod:`hooks.torch.graph_model`),
- the batch ``X`` the first layer saw (``MmBackward0._saved_self`` / ``AddmmBackward0._saved_mat1``),
- the loss: torch's loss nodes (``MseLossBackward0`` ...) or a hand-written squared
  error (``sum``/``mean`` of ``pow``/``mul`` of a ``sub``, divided by constants,
  :mod:`hooks.torch.graph_loss`),
- the predictions, read from a saved tensor or recomputed from the last layer's saved
  input with the very op the user ran (so the values are bit-identical).

Anything outside that vocabulary yields ``{"kind": "unsupported", "reason": ...}`` so the
checker says "cannot check" instead of guessing. Only the ``graph*`` modules know node names.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from tracer.errors import UnsupportedModel

from .graph_loss import guess_pred_node, parse_loss, settle_divide_by
from .graph_model import parse_model
from .graph_nodes import leaves

__all__ = ["Graph", "analyze", "leaves", "settle_divide_by", "UnsupportedModel"]


class Graph:
    """What one loss's graph says. Built by :func:`analyze`; all tensors detached.

    Attributes: ``loss`` (neutral spec or None), ``layers`` (list of layer dicts holding
    tensors: ``weight``, ``bias`` (tensor, or None), ``bias_const`` (True when the bias is
    a tensor that receives no gradient), ``transpose``, ``activation``), ``x`` (the
    batch the first layer saw), ``pred`` (a zero-argument function returning the
    predictions), ``target`` (the loss's saved target or None), ``reason`` (why the
    model is unsupported, or None), ``loss_reason``.
    """

    def __init__(self) -> None:
        self.loss = None
        self.loss_reason = None
        self.layers = []
        self.x = None
        self.pred = None
        self.target = None
        self.reason = None
        self.diff = None        # hand-written loss: (saved pred - target, pred side) to rebuild targets


def analyze(loss: torch.Tensor, const_args: dict | None = None, const_by_pos: dict | None = None,
            candidates: Callable[[], list] | None = None) -> Graph:
    """Walk ``loss.grad_fn`` (before backward) and describe model, loss, batch and predictions.

    ``const_args`` maps ``id(grad_fn)`` -> the tensor arguments of the op that made it
    (captured during the first forward pass) so that a bias that receives no gradient
    (S4's ``b1``) can still be named and read. Without that capture, ``candidates`` (a
    function returning tensors from the user's frames) is searched for a tensor that
    reproduces the layer's saved output exactly.
    """
    g = Graph()
    root = loss.grad_fn
    try:
        pred_node, g.loss, pred_fn, g.target = parse_loss(root, g)
    except UnsupportedModel as exc:
        g.loss_reason = str(exc)
        pred_node, pred_fn = guess_pred_node(root), None
    if pred_node is None:
        g.reason = "no prediction found in the loss's graph"
        return g
    holder: list[Any] = []
    try:
        layers, x, last = parse_model(pred_node, const_args or {}, const_by_pos or {}, holder, candidates)
        g.layers, g.x = layers, x
    except UnsupportedModel as exc:
        g.reason = str(exc)
        last = holder[0] if holder else None
    if pred_fn is None and last is not None:
        pred_fn = last
    g.pred = pred_fn
    return g
