"""The compiled Keras loss as step-program nodes: Keras 3.15's own formula on the active backend.

Why so literal: the loss a learner reads is what Keras computed, and Keras is not a
textbook. ``LossFunctionWrapper.call`` first squeezes or expands the target's last axis
(``squeeze_or_expand_to_same_rank``); each loss function averages its elementwise
terms over the last axis (crossentropies sum over classes); the ``Loss`` object then
reduces over everything left (``sum_over_batch_size``: sum divided by the number of
values). Probabilities are clipped to ``[epsilon, 1 - epsilon]`` in the loss's dtype,
and on TensorFlow a crossentropy of a sigmoid or softmax output does not use the
output at all but its logits (``_keras_logits``, ``backend/tensorflow/nn.py``
``_get_logits``); the torch backend has no such path and clips. Sources:
``keras/src/losses/losses.py`` and ``loss.py``, ``backend/*/nn.py``.

Anything else (a user's loss function or ``Loss`` subclass, ``ignore_class``, a loss
Keras has but the registry cannot express) raises :class:`Unsupported`.
"""
from __future__ import annotations

import math

import keras

from .builder import ProgramBuilder, Unsupported
from .layers import source_line

__all__ = ["resolve_loss", "emit_loss", "KerasLoss"]

# Keras loss function -> the emitter below (matched by identity)
_FUNCTIONS = {
    "mean_squared_error": "mse", "mean_absolute_error": "mae", "huber": "huber", "log_cosh": "log_cosh",
    "mean_absolute_percentage_error": "mape", "mean_squared_logarithmic_error": "msle", "poisson": "poisson",
    "kl_divergence": "kld", "hinge": "hinge", "squared_hinge": "squared_hinge",
    "binary_crossentropy": "bce", "categorical_crossentropy": "cce",
    "sparse_categorical_crossentropy": "scce",
}
_MEAN_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")


class KerasLoss:
    """One compiled loss, resolved: ``kind`` (a key of the emitters), its keyword
    arguments, the ``Loss`` object's reduction and dtype, and its weight."""

    def __init__(self, kind: str, kwargs: dict, reduction: str, dtype: str, weight: float | None, label: str):
        self.kind, self.kwargs, self.reduction, self.dtype = kind, kwargs, reduction, dtype
        self.weight, self.label = weight, label

    @property
    def target_dtype(self) -> str:
        """``int`` for class numbers (sparse categorical crossentropy), else ``float``."""
        return "int" if self.kind == "scce" else "float"


def resolve_loss(model: keras.Model) -> KerasLoss:
    """The model's one compiled loss (``model._compile_loss``, built by the first step)."""
    compiled = getattr(model, "_compile_loss", None)
    flat = getattr(compiled, "_flat_losses", None)
    if compiled is None or not flat:
        raise Unsupported("loss", "no compiled loss found (compile(loss=...) was not given one)")
    if len(flat) != 1 or tuple(flat[0].path or ()) != ():
        raise Unsupported("loss", f"{len(flat)} compiled losses (a multi-output model)")
    entry = flat[0]
    loss = entry.loss
    from keras.src.losses.losses import LossFunctionWrapper
    if not isinstance(loss, LossFunctionWrapper) or type(loss).call is not LossFunctionWrapper.call:
        raise Unsupported(f"loss {type(loss).__name__}", "a Loss subclass with its own call()", source_line(loss))
    fn = loss.fn
    name = getattr(fn, "__name__", "")
    if name not in _FUNCTIONS or getattr(keras.losses, name, None) is not fn:
        raise Unsupported(f"loss {name or type(fn).__name__}", "not one of Keras's loss functions the step "
                          "program has", source_line(fn))
    if loss.reduction not in _MEAN_REDUCTIONS + ("sum",):
        raise Unsupported(f"loss {name}", f"reduction {loss.reduction!r} leaves a loss per row")
    kind = _FUNCTIONS[name]
    weight = entry.loss_weights
    label = f"{type(loss).__name__ if type(loss) is not LossFunctionWrapper else name} (Keras loss)"
    return KerasLoss(kind, dict(loss._fn_kwargs or {}), loss.reduction, str(loss.dtype),
                     None if weight is None else float(weight), label)


def emit_loss(b: ProgramBuilder, loss: KerasLoss, pred: str, pred_shape: tuple, y: str, y_shape: tuple,
              backend: str) -> str:
    """The nodes of the compiled loss of ``pred`` against the target ``y``; returns the
    scalar. Shapes are per step, batch first."""
    lab = loss.label
    y, pred, moved = _same_rank(b, y, tuple(y_shape), pred, tuple(pred_shape), lab)
    logits = None
    if backend == "tensorflow" and not moved:
        logits = b.logits.get(pred)          # Keras's _keras_logits: the crossentropies use them
    emit = _EMITTERS.get(loss.kind)
    values = emit(b, loss, pred, y, logits, y_shape, pred_shape, backend)
    op = "sum" if loss.reduction == "sum" else "mean"
    total = b.add("loss/" + ("sum" if op == "sum" else "sum_over_batch_size"), op, [values], label=lab)
    if loss.weight is not None:
        total = b.add("loss/weighted", "mul", [total, b.num(loss.weight)], label=lab)
    return total


def _same_rank(b, y, ys, p, ps, lab):
    """``squeeze_or_expand_to_same_rank(y_true, y_pred)``; ``moved`` says y_pred changed."""
    if len(ys) == len(ps) + 1 and ys[-1] == 1:
        if len(ps) == 1:
            return y, b.add("loss/y_pred[..., None]", "unsqueeze", [p], label=lab, dim=-1), True
        return b.add("loss/y_true.squeeze", "squeeze", [y], label=lab, dims=[-1]), p, False
    if len(ps) == len(ys) + 1 and ps[-1] == 1:
        if len(ys) == 1:
            return b.add("loss/y_true[..., None]", "unsqueeze", [y], label=lab, dim=-1), p, False
        return y, b.add("loss/y_pred.squeeze", "squeeze", [p], label=lab, dims=[-1]), True
    return y, p, False


def _mean_last(b, t, lab, axis=-1):
    return b.add("loss/mean_over_last_axis", "mean", [t], label=lab, dims=[axis])


def _eps(b):
    return b.num(keras.config.epsilon())


# ------------------------------------------------------------------ regression losses
def _mse(b, loss, p, y, logits, ys, ps, backend):
    return _mean_last(b, b.add("loss/squared_error", "squared_error", [p, y], label=loss.label), loss.label)


def _mae(b, loss, p, y, logits, ys, ps, backend):
    return _mean_last(b, b.add("loss/absolute_error", "absolute_error", [p, y], label=loss.label), loss.label)


def _huber(b, loss, p, y, logits, ys, ps, backend):
    delta = b.num(loss.kwargs.get("delta", 1.0))
    return _mean_last(b, b.add("loss/huber", "huber_term", [p, y], label=loss.label, delta=delta), loss.label)


def _log_cosh(b, loss, p, y, logits, ys, ps, backend):
    lab = loss.label
    e = b.add("loss/error", "sub", [p, y], label=lab)
    extra = {"threshold": 20.0} if backend == "torch" else {}
    sp = b.add("loss/softplus(-2e)", "softplus", [b.add("loss/-2e", "mul", [e, -2.0], label=lab)], label=lab,
               **extra)
    t = b.add("loss/log_cosh", "sub", [b.add("loss/e+softplus", "add", [e, sp], label=lab), b.num(math.log(2.0))],
              label=lab)
    return _mean_last(b, t, lab)


def _mape(b, loss, p, y, logits, ys, ps, backend):
    lab = loss.label
    denom = b.add("loss/max(|y|,eps)", "maximum", [b.add("loss/|y|", "abs", [y], label=lab), _eps(b)], label=lab)
    diff = b.add("loss/|(y-p)/y|", "abs", [b.add("loss/(y-p)/y", "div", [b.add("loss/y-p", "sub", [y, p], label=lab),
                                                                          denom], label=lab)], label=lab)
    return b.add("loss/100*mean", "mul", [100.0, _mean_last(b, diff, lab)], label=lab)


def _msle(b, loss, p, y, logits, ys, ps, backend):
    lab = loss.label

    def log1(v, what):
        m = b.add(f"loss/max({what},eps)", "maximum", [v, _eps(b)], label=lab)
        return b.add(f"loss/log({what}+1)", "log", [b.add(f"loss/{what}+1", "add", [m, 1.0], label=lab)], label=lab)
    d = b.add("loss/log_diff", "sub", [log1(p, "p"), log1(y, "y")], label=lab)
    return _mean_last(b, b.add("loss/square", "square", [d], label=lab), lab)


def _poisson(b, loss, p, y, logits, ys, ps, backend):
    lab = loss.label
    logp = b.add("loss/log(p+eps)", "log", [b.add("loss/p+eps", "add", [p, _eps(b)], label=lab)], label=lab)
    return _mean_last(b, b.add("loss/poisson", "sub", [p, b.add("loss/y*log", "mul", [y, logp], label=lab)],
                               label=lab), lab)


def _kld(b, loss, p, y, logits, ys, ps, backend):
    lab = loss.label
    yc = b.add("loss/y_clipped", "clamp", [y], label=lab, min=_eps(b), max=1.0)
    pc = b.add("loss/p_clipped", "clamp", [p], label=lab, min=_eps(b), max=1.0)
    t = b.add("loss/y*log(y/p)", "mul", [yc, b.add("loss/log(y/p)", "log", [b.add("loss/y/p", "div", [yc, pc],
                                                                                     label=lab)], label=lab)],
              label=lab)
    return b.add("loss/sum_over_last_axis", "sum", [t], label=lab, dims=[-1])


def _hinge(b, loss, p, y, logits, ys, ps, backend, squared=False):
    lab = loss.label
    # convert_binary_labels_to_hinge: 0/1 labels become -1/1 when *every* label of the batch is 0 or 1
    other = b.add("loss/not_0_or_1", "mul", [b.add("loss/y!=0", "ne", [y, 0.0], label=lab),
                                             b.add("loss/y!=1", "ne", [y, 1.0], label=lab)], label=lab)
    binary = b.add("loss/binary", "eq", [b.add("loss/n_other", "sum", [other], label=lab), 0.0], label=lab)
    signed = b.add("loss/2y-1", "sub", [b.add("loss/2y", "mul", [y, 2.0], label=lab), 1.0], label=lab)
    y = b.add("loss/y_hinge", "where", [binary, signed, y], label=lab)
    margin = b.add("loss/1-y*p", "sub", [1.0, b.add("loss/y*p", "mul", [y, p], label=lab)], label=lab)
    t = b.add("loss/hinge", "maximum", [margin, 0.0], label=lab)
    if squared:
        t = b.add("loss/squared_hinge", "square", [t], label=lab)
    return _mean_last(b, t, lab)


# ----------------------------------------------------------------- crossentropies
def _bce(b, loss, p, y, logits, ys, ps, backend):
    lab, kw = loss.label, loss.kwargs
    ls = float(kw.get("label_smoothing") or 0.0)
    if ls:
        y = b.add("loss/y_smoothed", "add", [b.add("loss/y*(1-ls)", "mul", [y, b.num(1.0 - ls)], label=lab),
                                             b.num(0.5 * ls)], label=lab)
    from_logits = bool(kw.get("from_logits", False))
    z = logits if logits is not None else (p if from_logits else None)
    if z is not None:
        t = b.add("loss/bce_with_logits", "bce_logits_term", [z, y], label=lab)
    else:
        q = b.add("loss/p_clipped", "clamp", [p], label=lab, min=_eps(b), max=b.num(1.0 - keras.config.epsilon()))
        if backend == "torch":
            t = b.add("loss/bce", "bce_term", [q, y], label=lab)
        else:
            pos = b.add("loss/y*log(p)", "mul", [y, b.add("loss/log(p)", "log", [q], label=lab)], label=lab)
            log1mq = b.add("loss/log(1-p)", "log", [b.add("loss/1-p", "sub", [1.0, q], label=lab)], label=lab)
            neg = b.add("loss/(1-y)*log(1-p)", "mul", [b.add("loss/1-y", "sub", [1.0, y], label=lab), log1mq],
                        label=lab)
            t = b.add("loss/bce", "neg", [b.add("loss/sum", "add", [pos, neg], label=lab)], label=lab)
    return _mean_last(b, t, lab, int(kw.get("axis", -1)))


def _clipped_probabilities(b, p, lab, normalise=True):
    if normalise:
        total = b.add("loss/sum_p", "sum", [p], label=lab, dims=[-1], keepdim=True)
        p = b.add("loss/p_normalised", "div", [p, total], label=lab)
    return b.add("loss/p_clipped", "clamp", [p], label=lab, min=_eps(b), max=b.num(1.0 - keras.config.epsilon()))


def _cce(b, loss, p, y, logits, ys, ps, backend):
    lab, kw = loss.label, loss.kwargs
    if int(kw.get("axis", -1)) not in (-1, len(ps) - 1):
        raise Unsupported("loss categorical_crossentropy", f"axis={kw.get('axis')} (only the last axis is modelled)")
    classes = int(ps[-1])
    ls = float(kw.get("label_smoothing") or 0.0)
    if ls:
        y = b.add("loss/y_smoothed", "add", [b.add("loss/y*(1-ls)", "mul", [y, b.num(1.0 - ls)], label=lab),
                                             b.num(ls / classes)], label=lab)
    z = logits if logits is not None else (p if kw.get("from_logits") else None)
    if z is not None:
        return b.add("loss/cross_entropy", "cross_entropy", [z, y], label=lab, num_classes=classes, class_dim=-1,
                     target="prob", reduction="none")
    logq = b.add("loss/log(p)", "log", [_clipped_probabilities(b, p, lab)], label=lab)
    return b.add("loss/cce", "neg", [b.add("loss/sum(y*log(p))", "sum", [b.add("loss/y*log(p)", "mul", [y, logq],
                                                                                label=lab)], label=lab, dims=[-1])],
                 label=lab)


def _scce(b, loss, p, y, logits, ys, ps, backend):
    lab, kw = loss.label, loss.kwargs
    if kw.get("ignore_class") is not None:
        raise Unsupported("loss sparse_categorical_crossentropy", f"ignore_class={kw['ignore_class']!r}")
    if int(kw.get("axis", -1)) not in (-1, len(ps) - 1):
        raise Unsupported("loss sparse_categorical_crossentropy", f"axis={kw.get('axis')}")
    if len(ys) == len(ps) and ys[-1] == 1:
        y = b.add("loss/class", "squeeze", [y], label=lab, dims=[-1])
    classes = int(ps[-1])
    attrs = dict(num_classes=classes, class_dim=-1, target="index", reduction="none")
    z = logits if logits is not None else (p if kw.get("from_logits") else None)
    if z is not None:
        return b.add("loss/cross_entropy", "cross_entropy", [z, y], label=lab, **attrs)
    if backend == "torch":          # normalise, clip, log, nll_loss
        logq = b.add("loss/log(p)", "log", [_clipped_probabilities(b, p, lab)], label=lab)
        return b.add("loss/nll", "nll_loss", [logq, y], label=lab, **attrs)
    # TensorFlow: clip, log, then sparse_softmax_cross_entropy_with_logits of the log-probabilities
    logq = b.add("loss/log(p)", "log", [_clipped_probabilities(b, p, lab, normalise=False)], label=lab)
    return b.add("loss/cross_entropy", "cross_entropy", [logq, y], label=lab, **attrs)


_EMITTERS = {"mse": _mse, "mae": _mae, "huber": _huber, "log_cosh": _log_cosh, "mape": _mape, "msle": _msle,
             "poisson": _poisson, "kld": _kld, "hinge": _hinge,
             "squared_hinge": lambda *a: _hinge(*a, squared=True), "bce": _bce, "cce": _cce, "scce": _scce}
