"""Reductions and the softmax family: sums, means, log-sum-exp, softmax, arg-max picks, sizes.

Exact NumPy on the per-step shapes (axes count per step; axis 0 in memory runs over steps),
each with its vector-Jacobian product and rounding magnitude. Kept apart from the
shape operations in :mod:`tracer.program.structural` so each module holds one concept.
"""
from __future__ import annotations

import numpy as np

from .batched import rank, step_axes, step_axis
from .registry import Op, register
from .structural import dims_list

__all__ = ["Sum", "Mean", "LogSumExp", "Softmax", "LogSoftmax", "AMax", "AMin", "Size"]


class _Reduce(Op):
    defaults = {"dims": None, "keepdim": False}
    differentiable = (0,)

    def normalise(self, attrs: dict, where: str) -> dict:
        dims_list(attrs, f"{self.name} dims", where)
        attrs["keepdim"] = bool(attrs["keepdim"])
        return attrs

    def _axes(self, x, attrs):
        return step_axes(attrs["dims"], rank(x))

    def _expand(self, g, x, attrs):
        axes = self._axes(x, attrs)
        if not attrs["keepdim"]:
            g = np.expand_dims(g, axes)
        return np.broadcast_to(g, (g.shape[0],) + x.shape[1:])

    def text(self, args: list, attrs: dict) -> str:
        d = "" if attrs["dims"] is None else f", dims={attrs['dims']}"
        k = ", keepdim" if attrs["keepdim"] else ""
        return f"{self.name}({args[0]}{d}{k})"


class Sum(_Reduce):
    name, linear, doc = "sum", True, "sum over dims (all when none are given)"

    def forward(self, xs: list[np.ndarray], attrs: dict) -> np.ndarray:
        return np.sum(xs[0], axis=self._axes(xs[0], attrs), keepdims=attrs["keepdim"])

    def vjp(self, g: np.ndarray, xs: list[np.ndarray], out: np.ndarray, attrs: dict, need: list[bool]) -> list:
        return [self._expand(g, xs[0], attrs) if need[0] else None]


class Mean(_Reduce):
    name, linear, doc = "mean", True, "mean over dims (all when none are given)"

    def _count(self, x, attrs):
        return int(np.prod([x.shape[i] for i in self._axes(x, attrs)], dtype=np.int64))

    def forward(self, xs: list[np.ndarray], attrs: dict) -> np.ndarray:
        x = xs[0]
        return np.sum(x, axis=self._axes(x, attrs), keepdims=attrs["keepdim"]) / self._count(x, attrs)

    def vjp(self, g: np.ndarray, xs: list[np.ndarray], out: np.ndarray, attrs: dict, need: list[bool]) -> list:
        return [self._expand(g / self._count(xs[0], attrs), xs[0], attrs) if need[0] else None]


class LogSumExp(_Reduce):
    name, doc = "logsumexp", "log(sum(exp(x))) over dims, computed stably"

    def forward(self, xs: list[np.ndarray], attrs: dict) -> np.ndarray:
        x = xs[0]
        axes = self._axes(x, attrs)
        m = np.max(x, axis=axes, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)
        with np.errstate(all="ignore"):
            out = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
        return out if attrs["keepdim"] else np.squeeze(out, axis=axes)

    def _soft(self, x, out, attrs):
        o = out if attrs["keepdim"] else np.expand_dims(out, self._axes(x, attrs))
        with np.errstate(all="ignore"):
            return np.exp(x - o)

    def vjp(self, g: np.ndarray, xs: list[np.ndarray], out: np.ndarray, attrs: dict, need: list[bool]) -> list:
        return [self._expand(g, xs[0], attrs) * self._soft(xs[0], out, attrs) if need[0] else None]

    def fmag(self, ms: list[np.ndarray], xs: list[np.ndarray], out: np.ndarray, attrs: dict) -> np.ndarray:
        p = self._soft(xs[0], out, attrs)
        return np.abs(out) + np.sum(p * ms[0], axis=self._axes(xs[0], attrs), keepdims=attrs["keepdim"])


class Softmax(Op):
    name, doc = "softmax", "exp(x) / sum(exp(x)) along dim"
    defaults = {"dim": -1}
    differentiable = (0,)

    def forward(self, xs: list[np.ndarray], attrs: dict) -> np.ndarray:
        x = xs[0]
        ax = step_axis(attrs["dim"], rank(x))
        m = np.max(x, axis=ax, keepdims=True)
        with np.errstate(all="ignore"):
            e = np.exp(x - np.where(np.isfinite(m), m, 0))
            return e / np.sum(e, axis=ax, keepdims=True)

    def vjp(self, g: np.ndarray, xs: list[np.ndarray], out: np.ndarray, attrs: dict, need: list[bool]) -> list:
        ax = step_axis(attrs["dim"], rank(xs[0]))
        return [out * (g - np.sum(g * out, axis=ax, keepdims=True)) if need[0] else None]

    def fmag(self, ms: list[np.ndarray], xs: list[np.ndarray], out: np.ndarray, attrs: dict) -> np.ndarray:
        ax = step_axis(attrs["dim"], rank(xs[0]))
        return np.abs(out) * (1 + ms[0] + np.sum(out * ms[0], axis=ax, keepdims=True))

    def bmag(self, gm: np.ndarray, g: np.ndarray, ms: list[np.ndarray], xs: list[np.ndarray], out: np.ndarray,
             attrs: dict, need: list[bool]) -> list:
        ax = step_axis(attrs["dim"], rank(xs[0]))
        ymag = self.fmag(ms, xs, out, attrs)
        first = out * (gm + np.sum(gm * out, axis=ax, keepdims=True))
        second = ymag * (np.abs(g) + np.sum(np.abs(g) * out, axis=ax, keepdims=True))
        return [first + second if need[0] else None]


class LogSoftmax(Softmax):
    name, doc = "log_softmax", "x - logsumexp(x) along dim"

    def forward(self, xs: list[np.ndarray], attrs: dict) -> np.ndarray:
        x = xs[0]
        ax = step_axis(attrs["dim"], rank(x))
        m = np.max(x, axis=ax, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)
        with np.errstate(all="ignore"):
            return x - m - np.log(np.sum(np.exp(x - m), axis=ax, keepdims=True))

    def vjp(self, g: np.ndarray, xs: list[np.ndarray], out: np.ndarray, attrs: dict, need: list[bool]) -> list:
        ax = step_axis(attrs["dim"], rank(xs[0]))
        with np.errstate(all="ignore"):
            p = np.exp(out)
        return [g - p * np.sum(g, axis=ax, keepdims=True) if need[0] else None]

    def fmag(self, ms: list[np.ndarray], xs: list[np.ndarray], out: np.ndarray, attrs: dict) -> np.ndarray:
        ax = step_axis(attrs["dim"], rank(xs[0]))
        with np.errstate(all="ignore"):
            p = np.exp(out)
        return np.abs(out) + ms[0] + np.sum(p * ms[0], axis=ax, keepdims=True)

    def bmag(self, gm: np.ndarray, g: np.ndarray, ms: list[np.ndarray], xs: list[np.ndarray], out: np.ndarray,
             attrs: dict, need: list[bool]) -> list:
        ax = step_axis(attrs["dim"], rank(xs[0]))
        with np.errstate(all="ignore"):
            p = np.exp(out)
        sg = np.sum(np.abs(g), axis=ax, keepdims=True)
        pmag = p * (1 + ms[0] + np.sum(p * ms[0], axis=ax, keepdims=True))
        return [gm + p * np.sum(gm, axis=ax, keepdims=True) + pmag * sg if need[0] else None]


class AMax(_Reduce):
    """Largest value over dims; the gradient goes to the largest elements (split evenly
    between ties, as torch's ``amax``)."""

    name, doc = "amax", "largest value over dims (gradient to the arg-max, ties split)"
    pick = staticmethod(np.max)

    def forward(self, xs: list[np.ndarray], attrs: dict) -> np.ndarray:
        return self.pick(xs[0], axis=self._axes(xs[0], attrs), keepdims=attrs["keepdim"])

    def _mask(self, x, out, attrs):
        o = out if attrs["keepdim"] else np.expand_dims(out, self._axes(x, attrs))
        hit = (x == o).astype(x.dtype if x.dtype.kind == "f" else np.float64)
        return hit / np.sum(hit, axis=self._axes(x, attrs), keepdims=True)

    def vjp(self, g: np.ndarray, xs: list[np.ndarray], out: np.ndarray, attrs: dict, need: list[bool]) -> list:
        return [self._expand(g, xs[0], attrs) * self._mask(xs[0], out, attrs) if need[0] else None]

    def fmag(self, ms: list[np.ndarray], xs: list[np.ndarray], out: np.ndarray, attrs: dict) -> np.ndarray:
        return self.forward([ms[0]], attrs)

    def bmag(self, gm: np.ndarray, g: np.ndarray, ms: list[np.ndarray], xs: list[np.ndarray], out: np.ndarray,
             attrs: dict, need: list[bool]) -> list:
        return [self._expand(gm, xs[0], attrs) * self._mask(xs[0], out, attrs) if need[0] else None]


class AMin(AMax):
    name, doc = "amin", "smallest value over dims (gradient to the arg-min, ties split)"
    pick = staticmethod(np.min)


class Size(Op):
    """The number of elements along dims of a value (a batch size, ``len(x)``), per step.

    A number that depends on the batch (``/ len(y)``) must follow the batch: the last,
    shorter batch divides by its own size. No gradient flows through it."""

    name, arity, doc = "size", 1, "number of elements along dims (all when none are given)"
    defaults = {"dims": None}
    differentiable = ()

    def normalise(self, attrs: dict, where: str) -> dict:
        return dims_list(attrs, "size dims", where)

    def forward(self, xs: list[np.ndarray], attrs: dict) -> np.ndarray:
        x = xs[0]
        axes = step_axes(attrs["dims"], rank(x))
        n = float(np.prod([x.shape[a] for a in axes], dtype=np.int64))
        return np.full(x.shape[0], n)

    def vjp(self, g: np.ndarray, xs: list[np.ndarray], out: np.ndarray, attrs: dict, need: list[bool]) -> list:
        return [None]

    def text(self, args: list, attrs: dict) -> str:
        return f"size({args[0]}" + ("" if attrs["dims"] is None else f", dims={attrs['dims']}") + ")"


for _cls in (Sum, Mean, LogSumExp, Softmax, LogSoftmax, AMax, AMin, Size):
    register(_cls())
