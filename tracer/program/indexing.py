"""Indexing operations: ``x[...]``, gather, class-target helpers, concatenation.

Class targets reach the loss through these (``logp[range(N), y]``, ``one_hot``,
a class-weight lookup), so they must follow NumPy/torch exactly. Integer index
arrays are program values like any other (a target column, a constant ``arange``);
they carry no gradient. Boolean masks select a data-dependent number of elements,
which cannot be stacked over steps, so they are refused (the builder then says
"cannot check").
"""
from __future__ import annotations

import numpy as np

from ..errors import TraceInputError
from .batched import align, rank, step_axis
from .registry import MISSING, Op, register

__all__ = ["Index", "index_tuple"]

_KINDS = ("slice", "int", "new", "ellipsis", "arg")


def _check_items(items, nargs, where):
    if not isinstance(items, list):
        raise TraceInputError(f"{where}op 'index': items must be a list, got {items!r}")
    used = []
    for it in items:
        if not isinstance(it, dict) or len(it) != 1 or next(iter(it)) not in _KINDS:
            raise TraceInputError(f"{where}op 'index': each item is one of {{slice: [a, b, c]}}, {{int: i}}, "
                                  f"{{new: true}}, {{ellipsis: true}}, {{arg: k}}; got {it!r}")
        kind, v = next(iter(it.items()))
        if kind == "slice" and not (isinstance(v, list) and len(v) == 3 and
                                    all(x is None or (isinstance(x, int) and not isinstance(x, bool)) for x in v)):
            raise TraceInputError(f"{where}op 'index': slice must be [start, stop, step], got {v!r}")
        if kind in ("int", "arg") and (not isinstance(v, int) or isinstance(v, bool)):
            raise TraceInputError(f"{where}op 'index': {kind} must be an integer, got {v!r}")
        if kind == "arg":
            used.append(v)
    if sorted(used) != list(range(1, nargs)):
        raise TraceInputError(f"{where}op 'index': index arguments must be 1..{nargs - 1}, each once; got {used}")
    return items


def index_tuple(x: np.ndarray, items: list, idx_arrays: list[np.ndarray]) -> tuple:
    """The NumPy index of per-step ``items`` on stacked ``x``, and where the advanced
    dimensions must move so that the result has the per-step layout.

    Returns ``(index, move)`` where ``move`` is None or ``(count, destination)``.
    """
    r = rank(x)
    n_real = sum(1 for it in items if next(iter(it)) in ("slice", "int", "arg"))
    expanded = []
    for it in items:
        kind, v = next(iter(it.items()))
        if kind == "ellipsis":
            expanded += [{"slice": [None, None, None]}] * (r - n_real)
        else:
            expanded.append(it)
    adv = [i for i, it in enumerate(expanded) if "arg" in it]
    arrays = []
    if adv:
        arrays = align(*[np.asarray(idx_arrays[expanded[i]["arg"] - 1]) for i in adv])
        for a in arrays:
            if a.dtype.kind not in "iu":
                raise TraceInputError("op 'index': index arrays must hold integers (boolean masks are not supported)")
        steps = max(x.shape[0], *[a.shape[0] for a in arrays])
        s_idx = np.arange(steps).reshape((steps,) + (1,) * rank(arrays[0]))
        if x.shape[0] == 1:
            s_idx = np.zeros_like(s_idx)
    index = [s_idx if adv else slice(None)]
    k = 0
    for it in expanded:
        kind, v = next(iter(it.items()))
        if kind == "slice":
            index.append(slice(*v))
        elif kind == "int":
            index.append(int(v))
        elif kind == "new":
            index.append(None)
        else:
            index.append(arrays[k])
            k += 1
    move = None
    if adv and adv == list(range(adv[0], adv[-1] + 1)) and adv[0] > 0:
        before = sum(1 for it in expanded[:adv[0]] if next(iter(it)) in ("slice", "new"))
        if before:
            move = (rank(arrays[0]), before)
    return tuple(index), move


class Index(Op):
    name, linear, doc = "index", True, "x[items], items as in NumPy (integer index arrays are arguments)"
    arity = (1, None)
    defaults = {"items": MISSING}
    differentiable = (0,)

    def normalise(self, attrs: dict, where: str) -> dict:
        attrs["items"] = list(attrs["items"])
        return attrs

    def check_arity(self, n: int, where: str="") -> None:
        super().check_arity(n, where)

    def forward(self, xs: list[np.ndarray], attrs: dict) -> np.ndarray:
        _check_items(attrs["items"], len(xs), "")
        x = xs[0]
        idx, move = index_tuple(x, attrs["items"], xs[1:])
        out = x[idx]
        if move is not None:
            count, dest = move
            out = np.moveaxis(out, list(range(1, 1 + count)), list(range(1 + dest, 1 + dest + count)))
        return out

    def vjp(self, g: np.ndarray, xs: list[np.ndarray], out: np.ndarray, attrs: dict, need: list[bool]) -> list:
        res = [None] * len(xs)
        if not need[0]:
            return res
        x = xs[0]
        idx, move = index_tuple(x, attrs["items"], xs[1:])
        if move is not None:
            count, dest = move
            g = np.moveaxis(g, list(range(1 + dest, 1 + dest + count)), list(range(1, 1 + count)))
        z = np.zeros((g.shape[0],) + x.shape[1:], dtype=g.dtype)
        np.add.at(z, idx, g)
        res[0] = z
        return res

    def text(self, args: list, attrs: dict) -> str:
        parts = []
        for it in attrs["items"]:
            kind, v = next(iter(it.items()))
            if kind == "slice":
                a, b, c = v
                parts.append(f"{'' if a is None else a}:{'' if b is None else b}" + (f":{c}" if c is not None else ""))
            elif kind == "int":
                parts.append(str(v))
            elif kind == "new":
                parts.append("None")
            elif kind == "ellipsis":
                parts.append("...")
            else:
                parts.append(args[v])
        return f"{args[0]}[{', '.join(parts)}]"


class Gather(Op):
    name, linear, doc = "gather", True, "torch.gather(x, dim, index)"
    arity = 2
    defaults = {"dim": MISSING}
    differentiable = (0,)

    def _parts(self, x, ind, dim):
        x, ind = align(x, np.asarray(ind))
        if ind.dtype.kind not in "iu":
            raise TraceInputError("op 'gather': the index must hold integers")
        ax = step_axis(dim, rank(x))
        steps = max(x.shape[0], ind.shape[0])
        grid = list(np.ogrid[tuple(slice(0, s) for s in (steps,) + ind.shape[1:])])
        if x.shape[0] == 1:
            grid[0] = np.zeros_like(grid[0])
        grid[ax] = np.broadcast_to(ind, (steps,) + ind.shape[1:])
        return tuple(grid)

    def forward(self, xs: list[np.ndarray], attrs: dict) -> np.ndarray:
        return xs[0][self._parts(xs[0], xs[1], attrs["dim"])]

    def vjp(self, g: np.ndarray, xs: list[np.ndarray], out: np.ndarray, attrs: dict, need: list[bool]) -> list:
        if not need[0]:
            return [None, None]
        z = np.zeros((g.shape[0],) + xs[0].shape[1:], dtype=g.dtype)
        np.add.at(z, self._parts(z, xs[1], attrs["dim"]), g)
        return [z, None]


def _as_index(a):
    """Integer positions from an index array (float ones, e.g. from ``where``, are rounded)."""
    a = np.asarray(a)
    return a if a.dtype.kind in "iu" else np.rint(a).astype(np.int64)


class Take(Op):
    name, linear, doc = "take", True, "w[index] for a vector w (e.g. class weights by target class)"
    arity = 2
    differentiable = (0,)

    def forward(self, xs: list[np.ndarray], attrs: dict) -> np.ndarray:
        w, ind = xs[0], _as_index(xs[1])
        if rank(w) != 1:
            raise TraceInputError("op 'take': the first argument must be a vector")
        if w.shape[0] == 1:
            return w[0][ind]
        s = np.arange(ind.shape[0]).reshape((-1,) + (1,) * rank(ind))
        return w[s, ind]

    def vjp(self, g: np.ndarray, xs: list[np.ndarray], out: np.ndarray, attrs: dict, need: list[bool]) -> list:
        if not need[0]:
            return [None, None]
        w, ind = xs[0], _as_index(xs[1])
        z = np.zeros((g.shape[0],) + w.shape[1:], dtype=g.dtype)
        s = np.arange(g.shape[0]).reshape((-1,) + (1,) * rank(ind))
        np.add.at(z, (s, np.broadcast_to(ind, g.shape)), g)
        return [z, None]


class OneHot(Op):
    name, doc = "one_hot", "1.0 at the class number, 0 elsewhere (all 0 for ignore_index)"
    arity = 1
    defaults = {"num_classes": MISSING, "ignore_index": None}
    differentiable = ()

    def forward(self, xs: list[np.ndarray], attrs: dict) -> np.ndarray:
        t = np.asarray(xs[0])
        c = int(attrs["num_classes"])
        out = (t[..., None] == np.arange(c)).astype(np.float64)
        if attrs["ignore_index"] is not None:
            out = out * (t != attrs["ignore_index"])[..., None]
        return out

    def vjp(self, g: np.ndarray, xs: list[np.ndarray], out: np.ndarray, attrs: dict, need: list[bool]) -> list:
        return [None]


class Concat(Op):
    name, linear, doc = "concat", True, "join along an existing dim (torch.cat)"
    arity = (1, None)
    defaults = {"dim": 0}

    def _common(self, xs):
        steps = max(x.shape[0] for x in xs)
        return [np.broadcast_to(x, (steps,) + x.shape[1:]) for x in xs]

    def forward(self, xs: list[np.ndarray], attrs: dict) -> np.ndarray:
        xs = self._common(xs)
        return np.concatenate(xs, axis=step_axis(attrs["dim"], rank(xs[0])))

    def vjp(self, g: np.ndarray, xs: list[np.ndarray], out: np.ndarray, attrs: dict, need: list[bool]) -> list:
        ax = step_axis(attrs["dim"], rank(xs[0]))
        cuts = np.cumsum([x.shape[ax] for x in xs])[:-1]
        parts = np.split(g, cuts, axis=ax)
        return [p if n else None for p, n in zip(parts, need)]


class Stack(Op):
    name, linear, doc = "stack", True, "join along a new dim (torch.stack)"
    arity = (1, None)
    defaults = {"dim": 0}

    def forward(self, xs: list[np.ndarray], attrs: dict) -> np.ndarray:
        steps = max(x.shape[0] for x in xs)
        xs = [np.broadcast_to(x, (steps,) + x.shape[1:]) for x in xs]
        r = rank(xs[0]) + 1
        d = attrs["dim"] + r if attrs["dim"] < 0 else attrs["dim"]
        return np.stack(xs, axis=d + 1)

    def vjp(self, g: np.ndarray, xs: list[np.ndarray], out: np.ndarray, attrs: dict, need: list[bool]) -> list:
        r = rank(xs[0]) + 1
        d = attrs["dim"] + r if attrs["dim"] < 0 else attrs["dim"]
        return [np.take(g, i, axis=d + 1) if n else None for i, n in enumerate(need)]


for _cls in (Index, Gather, Take, OneHot, Concat, Stack):
    register(_cls())
