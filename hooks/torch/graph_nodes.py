"""The vocabulary of autograd node names the graph reader understands, and graph walks.

Why apart: the loss reader (:mod:`hooks.torch.graph_loss`) and the model reader
(:mod:`hooks.torch.graph_model`) both walk ``grad_fn`` nodes by their class names;
only these modules know those names.
"""
from __future__ import annotations

from typing import Any

import torch

VIEWS = {"ViewBackward0", "ReshapeAliasBackward0", "UnsafeViewBackward0", "SqueezeBackward0",
         "SqueezeBackward1", "SqueezeBackward2", "UnsqueezeBackward0", "CloneBackward0"}
"""Nodes that only reshape: walked through as if absent."""
ACTIVATIONS = {"ReluBackward0": "relu", "SigmoidBackward0": "sigmoid", "TanhBackward0": "tanh",
               "SoftmaxBackward0": "softmax"}
"""Activation nodes -> the neutral activation name."""
REDUCTIONS = {0: "none", 1: "mean", 2: "sum"}
"""torch's saved ``reduction`` enum -> its name."""


def node_name(node: Any) -> str:
    """The class name of an autograd node (``"MmBackward0"``): what the readers match on."""
    return type(node).__name__


def strip_views(node: Any) -> Any:
    """The first node below ``node`` that is not a pure reshape (``node`` itself if it is not)."""
    while node is not None and node_name(node) in VIEWS:
        node = node.next_functions[0][0]
    return node


def depends_on_params(node: Any, _memo: dict | None = None) -> bool:
    """True if some AccumulateGrad lies below ``node`` (the prediction side)."""
    if node is None:
        return False
    memo = {} if _memo is None else _memo
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = False
    if hasattr(node, "variable"):
        memo[key] = True
        return True
    out = any(depends_on_params(n, memo) for n, _ in node.next_functions)
    memo[key] = out
    return out


def leaves(loss: torch.Tensor) -> list[torch.Tensor]:
    """The leaf tensors that receive gradients from ``loss``, in graph order (deduplicated)."""
    out, seen, stack, visited = [], set(), [loss.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in visited:
            continue
        visited.add(id(node))
        var = getattr(node, "variable", None)
        if var is not None:
            if id(var) not in seen:
                seen.add(id(var))
                out.append(var)
            continue
        stack.extend(n for n, _ in reversed(node.next_functions))
    return out
