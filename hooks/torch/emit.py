"""What a translation rule of :mod:`hooks.torch.ops` works with: the call's arguments bound
by name, and an :class:`Emitter` that turns tensors into program names and adds nodes.

Why apart from the table: every rule (``add`` with ``alpha``, ``cross_entropy`` with
``label_smoothing``...) needs the same few services - bind positional and keyword
arguments the way torch does, name an argument (a node, a parameter, a batch input,
a constant or a plain number), add a node with the user's source line - and refuse
anything it does not model with :class:`Unsupported`, never a guess.
"""
from __future__ import annotations

import math
from typing import Any, TYPE_CHECKING

import torch

from tracer.errors import UnsupportedModel

from .capture import Record

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Unsupported", "Emitter", "MISSING"]

MISSING = object()


class Unsupported(UnsupportedModel):
    """An operation (or an argument of one) that the registry cannot express."""


class Emitter:
    """Adds program nodes for one record at a time (see the module docstring).

    ``names`` maps ``id(tensor)`` -> the program name currently holding its value;
    ``batched`` holds the program names whose first dimension is the batch;
    ``batch_size`` is the build step's batch size (None: no batch).
    """

    def __init__(self, names: dict[int, str], literals: dict[int, float], batched: set[str],
                 batch_size: int | None, user_names: dict[int, str]) -> None:
        self.names = names
        self.literals = literals
        self.batched = batched
        self.batch_size = batch_size
        self.user_names = user_names
        self.nodes: list[dict] = []
        self.record: Record | None = None
        self.label: str | None = None
        self.losses: list[tuple[str, Any, Any]] = []      # (node, prediction arg, target arg) of loss functions
        self.consts: list[dict] = []                       # constants made by rules (index lists)
        self.tensor_of: dict[str, Any] = {}                # node name -> the tensor it holds
        self._used: set[str] = set(names.values())
        self._count: dict[str, int] = {}

    # ----------------------------------------------------------- arguments
    def bind(self, params: tuple[str, ...], **defaults: Any) -> dict:
        """The record's arguments by name (positional first, then keywords), with defaults.

        Tensor methods count ``self`` as the first parameter. An argument the rule does
        not know (``out=``...) is unsupported; a missing one without default is too."""
        rec = self.record
        if len(rec.args) > len(params):
            raise Unsupported(f"{len(rec.args)} positional arguments")
        out = dict(zip(params, rec.args))
        for key, value in rec.kwargs.items():
            if key not in params:
                if value is None:
                    continue
                raise Unsupported(f"argument {key}=")
            out[key] = value
        for key in params:
            if key not in out:
                if key not in defaults:
                    raise Unsupported(f"missing argument {key}")
                out[key] = defaults[key]
        return out

    def value(self, x: Any) -> str | float:
        """The program argument for ``x``: a name for a tensor, a number for a Python number."""
        if isinstance(x, torch.Tensor):
            name = self.names.get(id(x))
            if name is not None:
                return name
            lit = self.literals.get(id(x))
            if lit is not None:
                return lit
            raise Unsupported("a tensor the step program does not know")
        if isinstance(x, bool):
            return 1.0 if x else 0.0
        if isinstance(x, (int, float)):
            if not math.isfinite(float(x)):
                raise Unsupported(f"the non-finite number {x!r}")
            return float(x)
        raise Unsupported(f"an argument of type {type(x).__name__}")

    def tracked(self, x: Any) -> bool:
        """Whether ``x`` is a tensor that requires grad."""
        return isinstance(x, torch.Tensor) and x.requires_grad

    def is_batched(self, x: Any) -> bool:
        """Whether ``x``'s first dimension is the batch."""
        return isinstance(x, torch.Tensor) and self.names.get(id(x)) in self.batched

    # --------------------------------------------------------------- nodes
    def emit(self, op: str, args: list, attrs: dict | None = None, *, bind: Any = True,
             batched: bool | None = None) -> str:
        """Add ``name = op(args, **attrs)``; ``bind`` (True: the record's result) is the
        tensor that now holds this value. Returns the node's name."""
        tensor = self.record.out if bind is True else bind
        name = self._fresh(op, tensor)
        node = {"name": name, "op": op, "args": list(args), "attrs": dict(attrs or {})}
        if self.record.where:
            node["where"] = self.record.where
        if self.label:
            node["label"] = self.label
        self.nodes.append(node)
        if isinstance(tensor, torch.Tensor):
            self.names[id(tensor)] = name
            self.tensor_of[name] = tensor
            if batched is None:
                batched = self._looks_batched(tensor, args)
        if batched:
            self.batched.add(name)
        return name

    def const(self, value: np.ndarray, dtype: str) -> str:
        """A constant array made by a rule (an index list such as ``[0, 2]``)."""
        name = self._fresh("const", None)
        self.consts.append({"name": name, "value": value.tolist(), "dtype": dtype})
        return name

    def alias(self, tensor: Any, source: Any) -> str:
        """``tensor`` holds the same value as ``source`` (no node: ``contiguous``, ``requires_grad_``)."""
        name = self.value(source)
        if not isinstance(name, str):
            name = self.emit("identity", [name], bind=tensor)
        else:
            self.names[id(tensor)] = name
            self.tensor_of.setdefault(name, tensor)
        return name

    def _looks_batched(self, tensor: torch.Tensor, args: list) -> bool:
        b = self.batch_size
        return (b is not None and tensor.dim() >= 1 and tensor.shape[0] == b
                and any(isinstance(a, str) and a in self.batched for a in args))

    def _fresh(self, op: str, tensor: Any) -> str:
        user = self.user_names.get(id(tensor)) if tensor is not None else None
        if user and user not in self._used:
            self._used.add(user)
            return user
        while True:
            k = self._count.get(op, 0) + 1
            self._count[op] = k
            name = f"{op}{k}"
            if name not in self._used:
                self._used.add(name)
                return name
