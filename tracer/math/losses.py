"""Loss functions as sympy expressions, evaluated with NumPy over every recorded step at once.

Why sympy: the checker, the explanation and the Excel sheet must all use *one* formula.
Each loss is written once as a sympy expression of one prediction ``y_pred`` and one
target ``y_true``; its gradient comes from ``sympy.diff``; numbers come from
``sympy.lambdify`` to NumPy over arrays shaped ``(S, B, m)`` (steps, batch rows, outputs).

The batch total is ``sum over rows and outputs of the elementwise loss / prod(divide_by)``
where the factors of ``divide_by`` are numbers or ``"n"`` (batch rows) and ``"m"``
(outputs per row). That one rule covers ``mse`` (``["n", "m"]``), the NumPy tutorial's
``sum(d**2) / 2 / n`` (``[2, "n"]``), d2l's ``(y_hat - y)**2 / 2`` summed (``[2]``)...

Softmax cross-entropies are not elementwise: they are written as a per-element term
that may depend on a row aggregate ``P = sum_k p(y_k)`` (and, for logits, the row maximum
``M``, a constant that makes the exponentials safe and cancels out of the maths). The
gradient is then the chain rule through the aggregate, each piece from ``sympy.diff``.
"""
from __future__ import annotations

import json
from functools import cached_property

import numpy as np
import sympy as sp

from ..errors import TraceInputError, UnsupportedError
from ..program.numpy_names import numpy_lambdify

__all__ = ["Loss", "get_loss", "squared_error_family", "LOSS_NAMES", "y_pred", "y_true"]

#: the symbols every elementwise loss expression is written in
y_pred = sp.Symbol("y_pred", real=True)
y_true = sp.Symbol("y_true", real=True)
#: row aggregate and row maximum used by the softmax cross-entropies
P = sp.Symbol("P", positive=True)
M = sp.Symbol("M", real=True)

KERAS_EPSILON = 1e-7  # keras.config.epsilon(): Keras clips probabilities to [eps, 1 - eps]
TORCH_LOG_CLAMP = -100  # torch BCELoss clamps each log term at -100

LOSS_NAMES = ("squared_error", "mse", "mae", "huber", "bce", "bce_logits", "cce",
              "cce_logits", "scce", "scce_logits", "cross_entropy")
_ROW_LOSSES = {"cce", "cce_logits", "scce", "scce_logits", "cross_entropy"}
_LONG = {
    "squared_error": "sum of squares", "mse": "mean squared error", "mae": "mean absolute error",
    "huber": "Huber loss", "bce": "binary cross-entropy on probabilities",
    "bce_logits": "binary cross-entropy on logits", "cce": "categorical cross-entropy on probabilities",
    "cce_logits": "categorical cross-entropy on logits (softmax inside)",
    "scce": "sparse categorical cross-entropy on probabilities",
    "scce_logits": "sparse categorical cross-entropy on logits (softmax inside)",
}


def _clip(x, lo, hi):
    """clip as a Piecewise: its derivative is 1 inside and 0 outside, like tf.clip_by_value."""
    return sp.Piecewise((lo, x < lo), (hi, x > hi), (x, True))


def _parse_divide_by(divide_by) -> list:
    if divide_by is None:
        return []
    if isinstance(divide_by, (str, int, float)):
        divide_by = [divide_by]
    out = []
    for f in divide_by:
        if isinstance(f, str):
            if f not in ("n", "m"):
                raise TraceInputError(f'loss spec "divide_by": factor {f!r} is not a number, "n" or "m"')
            out.append(f)
        elif isinstance(f, (int, float, np.integer, np.floating)) and not isinstance(f, bool) and f > 0:
            out.append(int(f) if float(f).is_integer() else float(f))
        else:
            raise TraceInputError(f'loss spec "divide_by": factor {f!r} must be a positive number, "n" or "m"')
    return out


def _default_divide_by(name, convention, reduction):
    red = (reduction or "mean").lower()
    if name == "squared_error":
        return []
    row = name in _ROW_LOSSES
    if red in ("mean", "sum_over_batch_size", "auto", "elementwise_mean"):
        return ["n"] if row else ["n", "m"]
    if red == "sum":
        # Keras averages each row over its outputs before the batch reduction; torch does not.
        return [] if (row or convention == "torch") else ["m"]
    raise UnsupportedError(f"loss reduction {reduction!r} (supported: mean, sum_over_batch_size, sum)")


def _describe_divide_by(div) -> str:
    if div == ["n", "m"] or div == ["m", "n"]:
        return "mean over rows and outputs"
    if div == ["n"]:
        return "mean over rows"
    if not div:
        return "sum over rows and outputs"
    return "sum over rows and outputs / " + " / ".join(str(f) for f in div)


class Loss:
    """One loss function: its formula, batch value and gradient with respect to the predictions.

    Build with :func:`get_loss`. ``value`` and ``grad`` take ``y_pred`` and ``y_true`` shaped
    ``(S, B, m)`` (sparse losses: ``y_true`` ``(S, B, 1)`` class numbers) and an optional
    boolean ``mask`` ``(S, B)`` marking real rows when batches of different sizes were
    padded to one array; ``"n"`` is then the count of real rows of each step.
    """

    def __init__(self, spec: dict):
        if not isinstance(spec, dict):
            raise TraceInputError(f"loss spec: expected a dict like {{'name': 'mse'}}, got {type(spec).__name__}")
        name = spec.get("name")
        if name not in LOSS_NAMES:
            raise UnsupportedError(f"loss {name!r}: steptrace has formulas for {', '.join(LOSS_NAMES)}")
        self.spec = dict(spec)
        self.convention = spec.get("convention") or "keras"
        if self.convention not in ("keras", "torch", "plain"):
            raise TraceInputError(f'loss spec "convention": expected "keras", "torch" or "plain", got {self.convention!r}')
        self.name = "scce_logits" if name == "cross_entropy" else name
        self.sparse = self.name in ("scce", "scce_logits")
        self.row_wise = name in _ROW_LOSSES
        if spec.get("divide_by") is not None:
            div = _parse_divide_by(spec["divide_by"])
        else:
            div = _default_divide_by(self.name, self.convention, spec.get("reduction"))
        self.divide_by = div
        self.delta = float(spec.get("delta", 1.0))
        self.epsilon = float(spec.get("epsilon") or KERAS_EPSILON)
        self.label_smoothing = float(spec.get("label_smoothing") or 0.0)
        if not 0.0 <= self.label_smoothing <= 1.0:
            raise TraceInputError(f'loss spec "label_smoothing": expected a number in [0, 1], '
                                  f'got {spec.get("label_smoothing")!r}')
        if self.label_smoothing and self.name not in ("bce", "bce_logits", "cce", "cce_logits", "scce_logits"):
            raise UnsupportedError(f"label_smoothing with loss {self.name!r}")
        if self.name == "huber" and not self.delta > 0:
            raise TraceInputError(f'loss spec "delta": expected a positive number, got {spec.get("delta")!r}')
        self._build()

    # ---------------------------------------------------------------- formulas
    def _build(self):
        yp, yt = y_pred, y_true
        n = self.name
        self.aggregate = None      # per-element contribution to P (row losses with an aggregate)
        self.uses_row_max = False  # True when M (row max of y_pred) appears
        if n in ("squared_error", "mse"):
            e = (yp - yt) ** 2
        elif n == "mae":
            e = sp.Abs(yp - yt)
        elif n == "huber":
            d = sp.Float(self.delta) if not float(self.delta).is_integer() else sp.Integer(int(self.delta))
            err = sp.Abs(yp - yt)
            e = sp.Piecewise((sp.Rational(1, 2) * (yp - yt) ** 2, err <= d), (d * err - d ** 2 / 2, True))
        elif n == "bce":
            if self.convention == "keras":
                eps = sp.Float(self.epsilon)
                c = _clip(yp, eps, 1 - eps)
                e = -(yt * sp.log(c) + (1 - yt) * sp.log(1 - c))
            elif self.convention == "torch":
                lo = sp.Integer(TORCH_LOG_CLAMP)
                l1, l0 = sp.log(yp), sp.log(1 - yp)
                e = -(yt * sp.Piecewise((l1, l1 > lo), (lo, True)) + (1 - yt) * sp.Piecewise((l0, l0 > lo), (lo, True)))
            else:
                e = -(yt * sp.log(yp) + (1 - yt) * sp.log(1 - yp))
        elif n == "bce_logits":
            # stable form used by both tf.nn.sigmoid_cross_entropy_with_logits and torch
            e = sp.Piecewise((yp, yp > 0), (0, True)) - yp * yt + sp.log(1 + sp.exp(-sp.Abs(yp)))
        elif n in ("cce", "scce"):
            if self.convention == "keras":
                # Keras normalises each row to sum 1, then clips to [eps, 1 - eps]
                eps = sp.Float(self.epsilon)
                self.aggregate = yp
                e = -yt * sp.log(_clip(yp / P, eps, 1 - eps))
            else:
                e = -yt * sp.log(yp)
        elif n in ("cce_logits", "scce_logits"):
            # -t * log softmax(y) = -t * (y - M - log(sum_k exp(y_k - M))), M = row max (constant)
            self.aggregate = sp.exp(yp - M)
            self.uses_row_max = True
            e = -yt * (yp - M - sp.log(P))
        else:  # pragma: no cover - guarded by LOSS_NAMES
            raise UnsupportedError(n)
        self._expr = e

    @property
    def elementwise(self) -> tuple[sp.Expr, tuple[sp.Symbol, sp.Symbol]]:
        """``(expr, (y_pred, y_true))``: the per-element loss before summing and dividing.

        For softmax cross-entropies the expression also holds ``P`` (the row aggregate,
        ``sum_k`` of :attr:`aggregate` over the row's outputs) and, on logits, ``M`` (the
        row's largest prediction, a constant that cancels out).
        """
        return self._expr, (y_pred, y_true)

    @cached_property
    def derivative(self) -> sp.Expr:
        """d(elementwise)/d(y_pred), from sympy.diff (P and M held fixed)."""
        return sp.diff(self._expr, y_pred)

    @cached_property
    def _funcs(self):
        args = [y_pred, y_true, P, M]
        f = numpy_lambdify(args, self._expr)
        df = numpy_lambdify(args, self.derivative)
        if self.aggregate is not None:
            agg = numpy_lambdify(args, self.aggregate)
            dagg = numpy_lambdify(args, sp.diff(self.aggregate, y_pred))
            dP = numpy_lambdify(args, sp.diff(self._expr, P))
        else:
            agg = dagg = dP = None
        return f, df, agg, dagg, dP

    # ---------------------------------------------------------------- numbers
    def _prepare(self, yp, yt, mask):
        yp = np.asarray(yp, dtype=np.float64)
        yt = np.asarray(yt, dtype=np.float64)
        if yp.ndim != 3:
            raise TraceInputError(f"y_pred: expected an array shaped (steps, batch, outputs), got shape {yp.shape}")
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != yp.shape[:2]:
                raise TraceInputError(f"mask: expected a boolean array shaped {yp.shape[:2]}, got {mask.shape}")
        if self.sparse:
            if yt.shape != yp.shape[:2] + (1,):
                raise TraceInputError(f"y_true: sparse loss {self.name} expects class numbers shaped "
                                      f"{yp.shape[:2] + (1,)}, got {yt.shape}")
            m = yp.shape[2]
            cls = yt[..., 0]
            ok = np.isfinite(cls) & (cls == np.round(cls)) & (cls >= 0) & (cls < m)
            if mask is not None:
                ok |= ~mask
            if not ok.all():
                raise TraceInputError(f"y_true: class numbers must be integers in [0, {m}), got {cls[~ok][:3]}")
            cls = np.where(np.isfinite(cls), cls, 0).astype(np.int64).clip(0, m - 1)
            yt = (cls[..., None] == np.arange(m)).astype(np.float64)
        elif yt.shape != yp.shape:
            raise TraceInputError(f"y_true: expected shape {yp.shape} (same as y_pred), got {yt.shape}")
        S, B, m = yp.shape
        if self.label_smoothing:
            # Keras and torch smooth the targets: binary towards 1/2, categorical towards 1/m
            ls = self.label_smoothing
            yt = yt * (1 - ls) + (0.5 if self.name.startswith("bce") else 1.0 / m) * ls
        if mask is None:
            n = np.full(S, float(B))
        else:
            n = mask.sum(axis=1).astype(np.float64)
            yp = np.where(mask[..., None], yp, 0.5)
            yt = np.where(mask[..., None], yt, 0.0)
        div = np.ones(S)
        for f in self.divide_by:
            div = div * (n if f == "n" else (float(m) if f == "m" else float(f)))
        return yp, yt, mask, div

    def _row_constants(self, yp, yt):
        f, df, agg, dagg, dP = self._funcs
        Mv = yp.max(axis=-1, keepdims=True) if self.uses_row_max else 0.0
        Pv = agg(yp, yt, 1.0, Mv).sum(axis=-1, keepdims=True) if agg is not None else 1.0
        return Pv, Mv

    def per_element(self, y_pred: np.ndarray, y_true: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """The elementwise loss terms ``(S, B, m)`` (before summing and dividing); padded rows are 0."""
        yp, yt, mask, _ = self._prepare(y_pred, y_true, mask)
        return self._terms(yp, yt, mask)

    def _terms(self, yp, yt, mask):
        with np.errstate(all="ignore"):
            Pv, Mv = self._row_constants(yp, yt)
            out = self._funcs[0](yp, yt, Pv, Mv) * np.ones_like(yp)
            # 0 * log(0) terms (target 0) are 0 by the convention of both frameworks
            out = np.where(yt == 0, np.where(np.isfinite(out), out, 0.0), out) if self.row_wise else out
        if mask is not None:
            out = np.where(mask[..., None], out, 0.0)
        return out

    def value(self, y_pred: np.ndarray, y_true: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Total batch loss of each step, ``(S,)``: sum of :meth:`per_element` / prod(divide_by)."""
        yp, yt, mask, div = self._prepare(y_pred, y_true, mask)
        return self._terms(yp, yt, mask).sum(axis=(1, 2)) / div

    def grad(self, y_pred: np.ndarray, y_true: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """d(total)/d(y_pred), ``(S, B, m)``, from the sympy derivative (chain rule through P)."""
        yp, yt, mask, div = self._prepare(y_pred, y_true, mask)
        f, df, agg, dagg, dP = self._funcs
        with np.errstate(all="ignore"):
            Pv, Mv = self._row_constants(yp, yt)
            g = df(yp, yt, Pv, Mv) * np.ones_like(yp)
            if self.row_wise:
                g = np.where(yt == 0, np.where(np.isfinite(g), g, 0.0), g)
            if agg is not None:
                dl_dP = (dP(yp, yt, Pv, Mv) * np.ones_like(yp)).sum(axis=-1, keepdims=True)
                g = g + dl_dP * dagg(yp, yt, Pv, Mv)
        g = g / div[:, None, None]
        if mask is not None:
            g = np.where(mask[..., None], g, 0.0)
        return g

    def as_logits(self) -> "Loss":
        """The same loss computed from logits (``bce`` -> ``bce_logits``, ``cce`` -> ``cce_logits``...).

        Why: Keras (TensorFlow backend) does not use the probabilities when they come straight
        from a ``sigmoid``/``softmax`` activation: ``_get_logits`` takes the activation's input and
        computes the loss from logits, so no clipping happens. To recompute such a run, apply
        this loss to the last layer's ``z`` instead of its output. Returns ``self`` for losses
        that are already on logits or have no logits form.
        """
        target = {"bce": "bce_logits", "cce": "cce_logits", "scce": "scce_logits"}.get(self.name)
        if target is None:
            return self
        spec = {k: v for k, v in self.spec.items() if k not in ("label",)}
        spec["name"] = target
        spec["divide_by"] = list(self.divide_by)
        return get_loss(spec)

    # ---------------------------------------------------------------- display
    @property
    def label(self) -> str:
        """Short name, e.g. ``"sum of squares / 2 / n"`` or ``"mse"``."""
        if self.spec.get("label"):
            return str(self.spec["label"])
        if self.name == "squared_error":
            return "sum of squares" + "".join(f" / {f}" for f in self.divide_by)
        return self.name

    def describe(self) -> str:
        """One line for people: what is summed and what it is divided by."""
        if self.name == "squared_error":
            return self.label
        conv = ""
        if self.name in ("bce", "cce", "scce"):
            conv = {"keras": f", Keras clipping to [{self.epsilon:g}, 1 - {self.epsilon:g}]",
                    "torch": ", torch clamping each log at -100" if self.name == "bce" else "",
                    "plain": ""}[self.convention]
        if self.label_smoothing:
            conv += f", label smoothing {self.label_smoothing:g}"
        return f"{_LONG[self.name]}{conv} ({_describe_divide_by(self.divide_by)})"

    def __repr__(self):
        return f"Loss({self.describe()!r})"


_LOSS_CACHE: dict = {}


def get_loss(spec: dict) -> Loss:
    """Return the :class:`Loss` for ``meta["loss"]``; an unknown name raises UnsupportedError.

    Losses are cached by spec (building one runs sympy), so asking again is cheap.
    """
    try:
        key = json.dumps(spec, sort_keys=True, default=repr)
    except TypeError:
        return Loss(spec)
    if key not in _LOSS_CACHE:
        _LOSS_CACHE[key] = Loss(spec)
    return _LOSS_CACHE[key]


_FAMILY = ([], [2], ["n"], [2, "n"], ["n", "m"], [2, "n", "m"])


def squared_error_family() -> list:
    """Loss specs that people write by hand for regression, to identify an undeclared loss.

    ``sum(d**2)``, ``sum(d**2)/2``, ``/n``, ``/2/n``, mean over everything, and half of it.
    """
    return [{"name": "squared_error", "divide_by": list(d),
             "label": "sum of squares" + "".join(f" / {f}" for f in d)} for d in _FAMILY]
