"""One walk of a loss's autograd graph per step: its trained tensors, its shape, saved tensors.

Why a walk: ``backward`` is the one moment a PyTorch loop shows its step, and the
loss's graph (``loss.grad_fn`` through ``next_functions``) is what the step computed.
Walking it once per step, before the engine frees it, gives

- the trained tensors (``AccumulateGrad.variable``, in the order the walk meets them);
- a *signature*: every node's type and inputs, in the walk's order. Two steps with
  the same signature ran the same computation, so the step program captured once
  (:mod:`hooks.torch.build`) describes every step that has it; a step with another
  signature does not (:class:`hooks.torch.plan.Plan`);
- the nodes in that order, so that a tensor autograd saved for backward (the batch a
  ``matmul`` saw, the predictions an ``mse_loss`` saw) is found again at each step at
  the place it was found once (a :data:`Locator`: node position and attribute name).

The walk reads only what autograd exposes for backward (node types, ``next_functions``,
``variable``, ``_saved_*``); it never runs anything and never changes the graph.
"""
from __future__ import annotations

from typing import Any

import torch

__all__ = ["Walk", "walk", "find_saved", "read_saved", "Locator"]

Locator = tuple[int, str]
"""Where a saved tensor sits: (position of the node in the walk, ``_saved_`` attribute name)."""

_SAVED_ATTRS: dict[type, tuple[str, ...]] = {}


class Walk:
    """The graph of one loss: ``nodes`` (walk order), ``params`` (trained leaves, walk
    order) and ``signature`` (hashable: equal for steps that computed the same thing)."""

    __slots__ = ("nodes", "params", "signature")

    def __init__(self, nodes: list, params: list[torch.Tensor], signature: tuple) -> None:
        self.nodes = nodes
        self.params = params
        self.signature = signature


def walk(loss: torch.Tensor) -> Walk:
    """Walk ``loss.grad_fn`` depth first (first input first), in one pass: the signature is
    the walk itself written down (each node's type and input count, ``None`` for an input
    that needs no gradient, a back reference for a node met again, the position of each
    trained tensor). Written for speed (it runs at every step, skipped ones included): the
    ``(type, inputs)`` pairs are made once per pair (:data:`_PAIRS`: equal signatures then
    compare by identity, element by element), a node type is asked once whether it is
    ``AccumulateGrad``, and a node's inputs are pushed without a generator."""
    nodes: list = []
    params: list[torch.Tensor] = []
    index: dict[int, int] = {}
    leaf_pos: dict[int, int] = {}
    sig: list = []
    stack = [loss.grad_fn]
    pairs, leaf_types = _PAIRS, _LEAF_TYPES
    while stack:
        node = stack.pop()
        if node is None:
            sig.append(None)
            continue
        k = id(node)
        seen = index.get(k)
        if seen is not None:
            sig.append(-seen - 1)
            continue
        index[k] = len(nodes)
        nodes.append(node)
        t = type(node)
        acc = leaf_types.get(t)
        if acc is None:
            acc = leaf_types[t] = t.__name__ == "AccumulateGrad"
        if acc:
            var = node.variable
            pos = leaf_pos.setdefault(id(var), len(leaf_pos))
            if pos == len(params):
                params.append(var)
            sig.append(pos)
            continue
        nexts = node.next_functions
        n = len(nexts)
        pair = pairs.get((t, n))
        if pair is None:
            pair = pairs.setdefault((t, n), (t, n))
        sig.append(pair)
        if n == 2:
            stack.append(nexts[1][0])
            stack.append(nexts[0][0])
        else:
            stack.extend([f for f, _ in reversed(nexts)])
    return Walk(nodes, params, tuple(sig))


_PAIRS: dict[tuple, tuple] = {}     # (node type, inputs) -> that pair, one object per pair
_LEAF_TYPES: dict[type, bool] = {}  # node type -> whether it accumulates a leaf's gradient


def saved_attrs(node: Any) -> tuple[str, ...]:
    """The ``_saved_*`` tensor attributes of a node type (cached per type)."""
    t = type(node)
    names = _SAVED_ATTRS.get(t)
    if names is None:
        names = tuple(a for a in dir(node) if a.startswith("_saved_") and not a.endswith(("_sym_sizes",
                                                                                           "_sym_strides")))
        _SAVED_ATTRS[t] = names
    return names


def find_saved(w: Walk, tensor: torch.Tensor) -> Locator | None:
    """Where the walk's graph saved ``tensor`` (same memory, shape and strides), or None."""
    ptr, shape, stride = tensor.data_ptr(), tuple(tensor.shape), tensor.stride()
    for i, node in enumerate(w.nodes):
        if getattr(node, "variable", None) is not None:
            continue
        for attr in saved_attrs(node):
            try:
                v = getattr(node, attr)
            except Exception:  # a saved value that cannot be read (freed, or not a tensor)
                continue
            if isinstance(v, torch.Tensor) and v.data_ptr() == ptr and tuple(v.shape) == shape \
                    and v.stride() == stride:
                return i, attr
    return None


def read_saved(w: Walk, loc: Locator | None) -> torch.Tensor | None:
    """The tensor at ``loc`` in this step's graph (None when it is not there)."""
    if loc is None or loc[0] >= len(w.nodes):
        return None
    try:
        v = getattr(w.nodes[loc[0]], loc[1])
    except Exception:  # freed or absent
        return None
    return v if isinstance(v, torch.Tensor) else None
