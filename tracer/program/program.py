"""The step program: what one training step computes, as data.

A :class:`StepProgram` is an ordered list of named assignments over the closed
registry of :mod:`tracer.program.registry`::

    h = matmul(x, W1)      z = add(h, b1)      a = relu(z)    ...    loss = mse_loss(pred, y)

with three kinds of leaves: *inputs* (the batch's rows, read from the trace's data
table: ``source`` ``inputs`` or ``targets``, a column range and a per-row shape),
*params* (the trace's parameters, by name, taken before each step's update) and
*consts* (small arrays stored in the program). It is built by a hook from what the
run shows (a torch autograd graph, Keras layers, a NumPy function), kept in
``meta["program"]`` as JSON (op names, argument names, numbers; nothing is ever
parsed or evaluated as code), and read by the checker, ``explain``, the workbook and
the page: one source for the math of a step.

An op outside the registry does not make loading fail: it is listed in
:attr:`StepProgram.unsupported` and every consumer says "cannot check: <op> at
<file:line>".
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import TraceInputError
from .registry import get_op

__all__ = ["StepProgram", "Node", "Input", "Const", "FORMAT", "MAX_CONST_ELEMENTS"]

FORMAT = 1
MAX_CONST_ELEMENTS = 100_000
MAX_NODES = 20_000
_SOURCES = ("inputs", "targets")
_DTYPES = ("float", "int")


@dataclass
class Node:
    """One assignment ``name = op(args..., **attrs)``; ``where`` is the source line it came from."""

    name: str
    op: str
    args: list
    attrs: dict = field(default_factory=dict)
    where: str | None = None
    label: str | None = None
    group: str | None = None

    def to_dict(self) -> dict:
        d = {"name": self.name, "op": self.op, "args": list(self.args), "attrs": dict(self.attrs)}
        for key in ("where", "label", "group"):
            if getattr(self, key):
                d[key] = getattr(self, key)
        return d


@dataclass
class Input:
    """A per-row leaf: ``columns`` of the trace's ``inputs`` or ``targets``, reshaped to ``shape`` per row."""

    name: str
    source: str
    columns: list | None = None
    shape: list | None = None
    dtype: str = "float"

    def to_dict(self) -> dict:
        d = {"name": self.name, "source": self.source, "dtype": self.dtype}
        if self.columns is not None:
            d["columns"] = list(self.columns)
        if self.shape is not None:
            d["shape"] = list(self.shape)
        return d


@dataclass
class Const:
    """A constant array stored in the program (an exponent vector, class weights...)."""

    name: str
    value: np.ndarray
    dtype: str = "float"

    def to_dict(self) -> dict:
        v = self.value
        return {"name": self.name, "value": v.tolist() if v.ndim else v.item(), "dtype": self.dtype}


class StepProgram:
    """A validated step program (build with :meth:`from_dict` or the constructor)."""

    def __init__(self, *, inputs=(), consts=(), params=(), nodes=(), outputs=None, batch_size=None,
                 unsupported=(), notes=()):
        self.inputs: list[Input] = list(inputs)
        self.consts: list[Const] = list(consts)
        self.params: list[str] = list(params)
        self.nodes: list[Node] = list(nodes)
        self.outputs: dict = dict(outputs or {})
        self.batch_size = batch_size
        self.unsupported: list[dict] = [dict(u) for u in unsupported]
        self.notes: list[str] = list(notes)
        self._primitive = None
        self._validate()

    # ------------------------------------------------------------ validation
    def _validate(self) -> None:
        defined = set()

        def define(name, what):
            if not isinstance(name, str) or not name or len(name) > 300:
                raise TraceInputError(f"program {what}: expected a name (a non-empty string), got {name!r}")
            if name in defined:
                raise TraceInputError(f"program {what}: the name {name!r} is defined twice")
            defined.add(name)

        for i in self.inputs:
            define(i.name, "input")
            if i.source not in _SOURCES:
                raise TraceInputError(f"program input {i.name!r}: source must be one of {_SOURCES}, got {i.source!r}")
            if i.dtype not in _DTYPES:
                raise TraceInputError(f"program input {i.name!r}: dtype must be one of {_DTYPES}, got {i.dtype!r}")
            for key in ("columns", "shape"):
                v = getattr(i, key)
                if v is not None and (not isinstance(v, list) or not all(
                        isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in v)):
                    raise TraceInputError(f"program input {i.name!r}: {key} must be a list of non-negative "
                                          f"integers, got {v!r}")
            if i.columns is not None and (len(i.columns) != 2 or i.columns[0] > i.columns[1]):
                raise TraceInputError(f"program input {i.name!r}: columns must be [start, stop], got {i.columns}")
        for c in self.consts:
            define(c.name, "const")
        for p in self.params:
            define(p, "param")
        if len(self.nodes) > MAX_NODES:
            raise TraceInputError(f"program: {len(self.nodes)} nodes, more than {MAX_NODES}")
        for n in self.nodes:
            where = f"program node {n.name!r}: "
            op = get_op(n.op) if isinstance(n.op, str) else None
            if op is None:
                raise TraceInputError(f"{where}op {n.op!r} is not in the registry")
            if not isinstance(n.args, list):
                raise TraceInputError(f"{where}args must be a list")
            for a in n.args:
                if isinstance(a, str):
                    if a not in defined:
                        raise TraceInputError(f"{where}argument {a!r} is not defined before it is used")
                elif isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a):
                    raise TraceInputError(f"{where}arguments are names or finite numbers, got {a!r}")
            op.check_arity(len(n.args), where)
            if not isinstance(n.attrs, dict):
                raise TraceInputError(f"{where}attrs must be an object")
            n.attrs = op.check_attrs(n.attrs, where)
            define(n.name, "node")
        for key, name in self.outputs.items():
            if key not in ("prediction", "loss", "target"):
                raise TraceInputError(f"program outputs: unknown output {key!r} (prediction, loss, target)")
            if name not in defined:
                raise TraceInputError(f"program outputs: {key} names {name!r}, which is not defined")

    # -------------------------------------------------------------- json
    @classmethod
    def from_dict(cls, d: dict) -> "StepProgram":
        """Parse and validate a program stored as JSON (``meta["program"]``)."""
        if not isinstance(d, dict):
            raise TraceInputError(f"program: expected an object, got {type(d).__name__}")
        if d.get("format", FORMAT) != FORMAT:
            raise TraceInputError(f"program: format {d.get('format')!r} is not supported (expected {FORMAT})")
        try:
            inputs = [Input(name=i["name"], source=i["source"], columns=i.get("columns"), shape=i.get("shape"),
                            dtype=i.get("dtype", "float")) for i in d.get("inputs", [])]
            consts = [_const(c) for c in d.get("consts", [])]
            nodes = [Node(name=n["name"], op=n["op"], args=list(n.get("args", [])), attrs=dict(n.get("attrs") or {}),
                          where=n.get("where"), label=n.get("label"), group=n.get("group"))
                     for n in d.get("nodes", [])]
        except (KeyError, TypeError, AttributeError) as exc:
            raise TraceInputError(f"program: malformed entry ({type(exc).__name__}: {exc})") from None
        unsupported = d.get("unsupported") or []
        if not isinstance(unsupported, list) or not all(isinstance(u, dict) for u in unsupported):
            raise TraceInputError("program unsupported: expected a list of {op, where} objects")
        return cls(inputs=inputs, consts=consts, params=list(d.get("params", [])), nodes=nodes,
                   outputs=d.get("outputs") or {}, batch_size=d.get("batch_size"), unsupported=unsupported,
                   notes=d.get("notes") or [])

    def to_dict(self) -> dict:
        """The JSON form kept in ``meta["program"]``."""
        d = {"format": FORMAT, "inputs": [i.to_dict() for i in self.inputs],
             "consts": [c.to_dict() for c in self.consts], "params": list(self.params),
             "nodes": [n.to_dict() for n in self.nodes], "outputs": dict(self.outputs)}
        if self.batch_size is not None:
            d["batch_size"] = int(self.batch_size)
        if self.unsupported:
            d["unsupported"] = [dict(u) for u in self.unsupported]
        if self.notes:
            d["notes"] = list(self.notes)
        return d

    # ------------------------------------------------------------- views
    @property
    def primitive_nodes(self) -> list[Node]:
        """The nodes with every macro expanded (what the engine evaluates)."""
        if self._primitive is None:
            from .macros import expand_node
            out = []
            for n in self.nodes:
                op = get_op(n.op)
                for e in expand_node(n.to_dict(), op):
                    sub = get_op(e["op"])
                    attrs = sub.check_attrs(e.get("attrs") or {}, f"program node {e['name']!r}: ")
                    out.append(Node(name=e["name"], op=e["op"], args=list(e["args"]), attrs=attrs,
                                    where=n.where, label=n.label, group=e.get("group") or None))
            self._primitive = out
        return self._primitive

    def with_loss(self, tail: list[Node], loss: str) -> "StepProgram":
        """A copy of this program with the loss nodes ``tail`` appended (``loss`` names the last)."""
        return StepProgram(inputs=self.inputs, consts=self.consts, params=self.params,
                           nodes=[Node(**vars(n)) for n in self.nodes] + list(tail),
                           outputs={**self.outputs, "loss": loss}, batch_size=self.batch_size,
                           unsupported=self.unsupported, notes=self.notes)

    @property
    def has_loss(self) -> bool:
        """Whether the program computes the loss (else the checker identifies it)."""
        return "loss" in self.outputs

    def cannot_check(self) -> list[str]:
        """Why the program cannot be evaluated ("<op> at <file:line>"), empty when it can."""
        out = []
        for u in self.unsupported:
            where = f" at {u['where']}" if u.get("where") else ""
            out.append(f"{u.get('op', '?')}{where}" + (f" ({u['reason']})" if u.get("reason") else ""))
        return out

    def lines(self) -> list[str]:
        """The program as the user reads it: one ``name = text`` line per node."""
        out = []
        for n in self.nodes:
            out.append(f"{n.name} = {get_op(n.op).text([_arg(a) for a in n.args], n.attrs)}")
        return out

    def __repr__(self) -> str:
        return f"<StepProgram {len(self.nodes)} nodes, params {self.params}, outputs {self.outputs}>"


def _arg(a) -> str:
    return a if isinstance(a, str) else f"{a:g}"


def _const(c: dict) -> Const:
    dtype = c.get("dtype", "float")
    if dtype not in _DTYPES:
        raise TraceInputError(f"program const {c.get('name')!r}: dtype must be one of {_DTYPES}, got {dtype!r}")
    try:
        value = np.asarray(c["value"], dtype=np.int64 if dtype == "int" else np.float64)
    except (TypeError, ValueError) as exc:
        raise TraceInputError(f"program const {c.get('name')!r}: value is not a numeric array ({exc})") from None
    if value.size > MAX_CONST_ELEMENTS:
        raise TraceInputError(f"program const {c.get('name')!r}: {value.size} elements, more than "
                              f"{MAX_CONST_ELEMENTS}")
    return Const(name=c["name"], value=value, dtype=dtype)
