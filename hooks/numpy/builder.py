"""Write a step program while a NumPy function runs on traced values.

Why a builder apart from the proxy: the proxy (:mod:`hooks.numpy.proxy`) only forwards
what the user's code does to NumPy; this module decides what becomes of it in the
program - a node over the registry, a constant, a plain number in an argument, or an
entry in ``unsupported`` - and where each came from (the user's ``file:line``, read
from the call-site frame). Every value also carries its concrete NumPy result, so the
user's code sees real shapes (``x.shape[0]``, ``len(y)``) and the program can be
verified against what NumPy computed.

Names: a node gets the name of the user's local variable that holds it (``z``, ``h``,
``p``), read from the user's frames while the function runs, else ``t1``, ``t2``...;
so ``explain`` reads like the user's code.
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from types import FrameType
from typing import Callable

import numpy as np

from tracer.program.program import MAX_CONST_ELEMENTS

from .proxy import Traced

__all__ = ["Builder", "NotTraceable", "user_frames", "where_of"]

_OURS = str(Path(__file__).resolve().parent) + os.sep
_NUMPY = str(Path(np.__file__).resolve().parent) + os.sep


class NotTraceable(Exception):
    """A value the program cannot hold (raised inside the builder, turned into ``unsupported``)."""


_KNOWN: dict[str, bool] = {}


def _is_ours(filename: str) -> bool:
    """Whether a frame runs steptrace's tracing code or NumPy's own (cached per file name)."""
    known = _KNOWN.get(filename)
    if known is None:
        try:
            path = str(Path(filename).resolve())
        except (OSError, ValueError):
            path = filename
        known = _KNOWN[filename] = path.startswith(_OURS) or path.startswith(_NUMPY)
    return known


def user_frames(start: FrameType | None = None, stop: FrameType | None = None) -> list[FrameType]:
    """The frames of the user's code from ``start`` outwards (ours and NumPy's skipped),
    innermost first, up to (not including) ``stop``."""
    frame = start or sys._getframe(1)
    out = []
    while frame is not None and frame is not stop:
        if not _is_ours(frame.f_code.co_filename):
            out.append(frame)
        frame = frame.f_back
    return out


def where_of(frame: FrameType) -> str:
    """``file:line`` of a frame, as programs print it."""
    return f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}"


class Builder:
    """Collects the nodes, constants and unsupported operations of one traced call.

    ``batch_size`` is the number of rows of the batch the function runs on (reshapes
    write ``0`` for it, as docs/PROGRAM.md asks of builders). ``stop_frame`` is the
    frame that called the user's function: frames from there outwards are not the
    user's function any more and are neither named from nor blamed.
    """

    def __init__(self, batch_size: int, stop_frame=None):
        self.batch_size = int(batch_size)
        self.nodes: list[dict] = []
        self.consts: list[dict] = []
        self.unsupported: list[dict] = []
        self.taken: set[str] = set()
        self.alias: dict[str, str] = {}          # temp node name -> the user's variable name
        self.temps: set[str] = set()             # names of nodes that may still be renamed
        self._counter = 0
        self._const_ids: dict[int, str] = {}
        self._keep: list = []                    # arrays turned into consts stay alive (ids stay unique)
        self._stop = stop_frame
        self.broken = False                      # after the first unsupported op no node is added

    # ------------------------------------------------------------ frames
    def frames(self) -> list:
        """The user's frames of the running function, innermost first."""
        return user_frames(sys._getframe(1), self._stop)

    def site(self) -> tuple[str | None, str | None]:
        """``(where, function name)`` of the user's line that is running now."""
        frames = self.frames()
        if not frames:
            return None, None
        f = frames[0]
        name = f.f_code.co_name
        return where_of(f), (None if name.startswith("<") else name)

    def name_locals(self) -> None:
        """Give temporary nodes the names of the user's variables that hold them."""
        for f in self.frames():
            for var, value in list(f.f_locals.items()):
                if isinstance(value, Traced) and value.builder is self and value.name in self.temps:
                    if value.name in self.alias or not var.isidentifier():
                        continue
                    if var in self.taken or var in self.alias.values():
                        continue
                    self.alias[value.name] = var

    # ------------------------------------------------------------ leaves
    def leaf(self, name: str, value: np.ndarray | float) -> Traced:
        """A program leaf (input or parameter) holding ``value``."""
        self.taken.add(name)
        return Traced(self, name, np.asarray(value))

    def const(self, value: np.ndarray) -> str:
        """The name of a constant holding ``value`` (an array the function closed over)."""
        key = id(value)
        if key in self._const_ids:
            return self._const_ids[key]
        if value.size > MAX_CONST_ELEMENTS:
            raise NotTraceable(f"an array of shape {value.shape} that is not an argument of the function "
                               f"(constants hold at most {MAX_CONST_ELEMENTS} numbers; pass data as the "
                               "function's argument)")
        if value.dtype.kind == "b":
            data, dtype = value.astype(np.float64), "float"
        elif value.dtype.kind in "iu":
            data, dtype = value.astype(np.int64), "int"
        elif value.dtype.kind == "f":
            data, dtype = value.astype(np.float64), "float"
        else:
            raise NotTraceable(f"an array of dtype {value.dtype}")
        if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
            raise NotTraceable("an array holding NaN or infinity")
        name = self._fresh("c")
        self.consts.append({"name": name, "value": data.tolist() if data.ndim else data.item(), "dtype": dtype})
        self._const_ids[key] = name
        self._keep.append(value)
        return name

    def arg(self, v: object) -> str | float:
        """A node argument: a name (traced value or constant) or a plain number."""
        if isinstance(v, Traced):
            if v.builder is not self:
                raise NotTraceable("a value traced by another call")
            return v.name
        if isinstance(v, (bool, np.bool_)):
            return float(v)
        if isinstance(v, (int, float, np.integer, np.floating)):
            f = float(v)
            if not math.isfinite(f):
                raise NotTraceable(f"the number {v!r}")
            return f
        if isinstance(v, (list, tuple)):
            v = np.asarray(v)
        if isinstance(v, np.ndarray):
            if v.ndim == 0 and v.dtype.kind in "biuf":
                return self.arg(v.item())
            return self.const(v)
        raise NotTraceable(f"a {type(v).__name__} argument")

    # ------------------------------------------------------------- nodes
    def _fresh(self, prefix: str) -> str:
        while True:
            self._counter += 1
            name = f"{prefix}{self._counter}"
            if name not in self.taken:
                self.taken.add(name)
                return name

    def emit(self, op: str, args: list, value: np.ndarray, **attrs: object) -> Traced:
        """Add ``op(args, **attrs)`` (its NumPy result is ``value``) and return it traced."""
        self.name_locals()
        value = np.asarray(value)
        try:
            names = [self.arg(a) for a in args]
        except NotTraceable as exc:
            return self.refuse(op, str(exc), value)
        name = self._fresh("t")
        if not self.broken:
            where, label = self.site()
            node = {"name": name, "op": op, "args": names, "attrs": attrs}
            self.temps.add(name)
            if where:
                node["where"] = where
            if label:
                node["label"] = label
            self.nodes.append(node)
        return Traced(self, name, value)

    def refuse(self, what: str, reason: str | None, value: object = None,
               where: str | None = None) -> Traced | None:
        """Record ``what`` as unsupported; the call goes on with the plain NumPy value."""
        if where is None:
            where, label = self.site()
            if label and reason:
                reason = f"{reason} (in {label})"
            elif label:
                reason = f"in {label}"
        entry = {"op": what}
        if where:
            entry["where"] = where
        if reason:
            entry["reason"] = reason
        if entry not in self.unsupported:
            self.unsupported.append(entry)
        self.broken = True
        if value is None:
            return None
        return Traced(self, self._fresh("t"), np.asarray(value), opaque=True)

    # ---------------------------------------------------------- the end
    def rename(self, name: str, wanted: str | None) -> None:
        """Give temporary node ``name`` the name ``wanted`` (the loop's variable for an output),
        unless the user's function already named it or ``wanted`` is taken."""
        if name in self.alias or name not in self.temps:
            return
        if wanted and wanted.isidentifier() and wanted not in self.taken and wanted not in self.alias.values():
            self.alias[name] = wanted

    def finish(self, outputs: dict, transform: Callable | None = None) -> tuple[list[dict], dict]:
        """The nodes (JSON, ready for a program) and ``outputs`` with the final names.

        ``transform(nodes, outputs)`` may rewrite the nodes first (:func:`hooks.numpy.patterns.fuse`);
        then the user's names replace temporaries and the remaining temporaries are
        numbered ``t1, t2, ...`` in program order."""
        nodes = [dict(n, args=list(n["args"])) for n in self.nodes]
        if transform is not None:
            nodes = transform(nodes, outputs)
        reserved = (self.taken - self.temps) | set(self.alias.values())
        ren, k = {}, 0
        for n in nodes:
            name = n["name"]
            if name in self.alias:
                ren[name] = self.alias[name]
            elif name in self.temps:
                k += 1
                while f"t{k}" in reserved:
                    k += 1
                ren[name] = f"t{k}"
        for n in nodes:
            n["name"] = ren.get(n["name"], n["name"])
            n["args"] = [ren.get(a, a) if isinstance(a, str) else a for a in n["args"]]
        return nodes, {key: ren.get(v, v) for key, v in outputs.items()}
