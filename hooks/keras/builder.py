"""A small writer of step programs (``meta["program"]``) for the Keras hook.

Why a writer: the layer, loss and regulariser translators each add a few nodes; they
share the bookkeeping here - unique node names, the parameters and constants the nodes
use, the user's source line on every node, and the list of what could not be
translated. Anything unsupported empties the program (``cannot check``): a program
that computes only part of the step would be a guess.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ProgramBuilder", "Unsupported"]


class Unsupported(Exception):
    """Raised by a translator that meets something the registry has no formula for."""

    def __init__(self, op: str, reason: str, where: str | None = None):
        super().__init__(f"{op}: {reason}")
        self.op, self.reason, self.where = op, reason, where


class ProgramBuilder:
    """Collects the inputs, parameters, constants and nodes of one program."""

    def __init__(self, where: str | None = None, dtype: str = "float32"):
        self.where = where                  # the user's fit line, cited by every node
        self.dtype = np.dtype(dtype)        # the dtype Keras computed the loss in
        self.inputs: list[dict] = []
        self.consts: list[dict] = []
        self.params: list[str] = []
        self.nodes: list[dict] = []
        self.unsupported: list[dict] = []
        self.logits: dict[str, str] = {}    # node -> the logits it is the sigmoid/softmax of
        self._names: set[str] = set()

    # ------------------------------------------------------------- names
    def fresh(self, base: str) -> str:
        """``base``, or ``base_2``, ``base_3``... if taken."""
        name, k = base, 1
        while name in self._names:
            k += 1
            name = f"{base}_{k}"
        self._names.add(name)
        return name

    def input(self, name: str, source: str, shape: list[int], dtype: str = "float") -> str:
        """A per-row leaf reading all columns of the data table ``source``."""
        name = self.fresh(name)
        self.inputs.append({"name": name, "source": source, "shape": [int(d) for d in shape], "dtype": dtype})
        return name

    def param(self, name: str) -> str:
        """A recorded trainable parameter, by the trace's name."""
        if name not in self.params:
            if name in self._names:
                raise Unsupported("parameter", f"the name {name!r} is used twice")
            self._names.add(name)
            self.params.append(name)
        return name

    def const(self, base: str, value: Any) -> str:
        """A constant array stored in the program (a frozen layer's weights)."""
        arr = np.asarray(value, dtype=np.float64)
        if arr.size > 100_000:
            raise Unsupported("constant", f"{base} has {arr.size} elements, more than a program stores")
        name = self.fresh(base)
        self.consts.append({"name": name, "value": arr.tolist() if arr.ndim else arr.item(), "dtype": "float"})
        return name

    def num(self, value: float) -> float:
        """``value`` rounded to the dtype Keras computes in (a clip bound, a coefficient)."""
        return float(self.dtype.type(value))

    # ------------------------------------------------------------- nodes
    def add(self, base: str, op: str, args: list, label: str | None = None, **attrs: object) -> str:
        """Append ``name = op(args, **attrs)`` and return the (unique) name."""
        name = self.fresh(base)
        node = {"name": name, "op": op, "args": list(args), "attrs": attrs}
        if self.where:
            node["where"] = self.where
        if label:
            node["label"] = label
        self.nodes.append(node)
        return name

    def cannot(self, exc: Unsupported) -> None:
        """Record what could not be translated."""
        entry = {"op": exc.op, "reason": exc.reason}
        where = exc.where or self.where
        if where:
            entry["where"] = where
        self.unsupported.append(entry)

    # ------------------------------------------------------------ result
    def program(self, outputs: dict, batch_size: int | None) -> dict:
        """The JSON program; with anything unsupported, only the ``unsupported`` list."""
        out: dict = {"format": 1, "inputs": [], "consts": [], "params": [], "nodes": [], "outputs": {}}
        if batch_size is not None:
            out["batch_size"] = int(batch_size)
        if self.unsupported:
            out["unsupported"] = list(self.unsupported)
            return out
        out.update(inputs=self.inputs, consts=self.consts, params=self.params, nodes=self.nodes,
                   outputs=dict(outputs))
        return out
