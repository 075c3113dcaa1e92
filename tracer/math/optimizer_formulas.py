"""The optimizers' formulas: each framework's update rule transcribed into sympy assignments.

Keras 3.15 (``keras/src/optimizers/*.py``, ``base_optimizer._apply_weight_decay`` and its
EMA) and torch 2.13 (``torch/optim/*.py``, the ``_single_tensor_*`` paths), plus plain
SGD for hand-written loops. Each builder reads the hyperparameters it uses from a spec
(the framework's own names and defaults) and returns the assignments
:class:`~tracer.math.optimizer_rule.OptimizerRule` evaluates; :data:`BUILDERS` maps
``(convention, name)`` to its builder and default learning rates.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..errors import TraceInputError, UnsupportedError
from .optimizer_rule import _s, g, lr, p, t

__all__ = ["BUILDERS", "read_lr"]

# options that change the maths and have no formula here
# (clipping is applied to the gradient before the rule: tracer.math.clipping)
_UNSUPPORTED_OPTIONS = ("gradient_accumulation_steps", "loss_scale_factor")

_KERAS_LR = {"sgd": 0.01, "rmsprop": 0.001, "adam": 0.001, "adamw": 0.001, "adagrad": 0.001}
_TORCH_LR = {"sgd": 0.001, "rmsprop": 0.01, "adam": 0.001, "adamw": 0.001, "adagrad": 0.01}


# --------------------------------------------------------------------------- helpers
class _Spec:
    """Reads hyperparameters from a spec with defaults, remembering what was used."""

    def __init__(self, spec):
        self.spec = spec
        self.used = {}
        extra = [k for k in _UNSUPPORTED_OPTIONS if spec.get(k) is not None and spec.get(k) is not False
                 and not (k == "gradient_accumulation_steps" and spec.get(k) in (0, 1))]
        if extra:
            raise UnsupportedError(f"optimizer option {extra[0]}={spec[extra[0]]!r}: no formula for it")

    def get(self, key, default):
        v = self.spec.get(key, default)
        if v is None:
            v = default
        self.used[key] = v
        return v


def _num(v, what):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TraceInputError(f"optimizer spec {what!r}: expected a number, got {v!r}")
    return float(v)


def _lr(spec, default):
    v = spec.get("lr", spec.get("learning_rate"))
    if v is None:
        if default is None:
            raise TraceInputError('optimizer spec "lr": plain SGD needs a learning rate')
        return default
    return _num(v, "lr")


def _wd_keras(eqs, r, default=None):
    """Keras base_optimizer._apply_weight_decay: p -= p * wd * lr, before the update step."""
    wd = r.get("weight_decay", default)
    if wd not in (None, 0, 0.0):
        eqs.append(("p", p - p * _s("wd") * lr))
        return {"wd": _num(wd, "weight_decay")}
    return {}


def _keras_ema(eqs, r, slots):
    """Keras ``use_ema``: after the update, ``ema = m ema + (1 - m) p`` (m = 0 at the first
    step), and every ``ema_overwrite_frequency`` steps the variable becomes the average
    (Keras 3.15 ``_update_model_variables_moving_average`` and
    ``_overwrite_model_variables_with_average_value``)."""
    if not r.get("use_ema", False):
        return {}, tuple(slots)
    m = _num(r.get("ema_momentum", 0.99), "ema_momentum")
    freq = r.get("ema_overwrite_frequency", None)
    mom = sp.Piecewise((0, sp.Eq(t, 1)), (_s("ema_momentum"), True))
    eqs.append(("ema", mom * _s("ema") + (1 - mom) * p))
    if freq:
        eqs.append(("p", sp.Piecewise((_s("ema"), sp.Eq(sp.Mod(t, int(freq)), 0)), (p, True))))
    return {"ema_momentum": m}, tuple(slots) + ("ema",)


def _torch_grad_prelude(eqs, r, coupled=True):
    syms = {}
    if r.get("maximize", False):
        eqs.append(("g", -g))
    wd = _num(r.get("weight_decay", 0.0), "weight_decay")
    if wd != 0 and coupled:
        eqs.append(("g", g + _s("wd") * p))
        syms["wd"] = wd
    return syms, wd


# --------------------------------------------------------------------------- Keras
def _keras_sgd(spec):
    r = _Spec(spec)
    mu = _num(r.get("momentum", 0.0), "momentum")
    nesterov = bool(r.get("nesterov", False))
    eqs, syms = [], {}
    syms.update(_wd_keras(eqs, r))
    slots = ()
    if mu != 0:
        m = _s("momentum")
        syms["mu"] = mu
        eqs.append(("momentum", _s("mu") * m - lr * g))
        eqs.append(("p", p + (_s("mu") * m - lr * g) if nesterov else p + m))
        slots = ("momentum",)
    else:
        eqs.append(("p", p - lr * g))
    ema_syms, all_slots = _keras_ema(eqs, r, slots)
    syms.update(ema_syms)
    return r, syms, all_slots, {}, eqs, "Keras SGD"


def _keras_rmsprop(spec):
    r = _Spec(spec)
    rho = _num(r.get("rho", 0.9), "rho")
    mu = _num(r.get("momentum", 0.0), "momentum")
    eps = _num(r.get("epsilon", 1e-7), "epsilon")
    centered = bool(r.get("centered", False))
    eqs, syms = [], {"rho": rho, "epsilon": eps}
    syms.update(_wd_keras(eqs, r))
    R, E = _s("rho"), _s("epsilon")
    v, ag = _s("velocity"), _s("average_gradient")
    slots = ["velocity"]
    eqs.append(("velocity", R * v + (1 - R) * g ** 2))
    if centered:
        slots.append("average_gradient")
        eqs.append(("average_gradient", R * ag + (1 - R) * g))
        eqs.append(("denominator", v - ag ** 2 + E))
    else:
        eqs.append(("denominator", v + E))
    eqs.append(("increment", lr * g / sp.sqrt(_s("denominator"))))
    if mu > 0:
        slots.append("momentum")
        syms["mu"] = mu
        eqs.append(("momentum", _s("mu") * _s("momentum") + _s("increment")))
        eqs.append(("p", p - _s("momentum")))
    else:
        eqs.append(("p", p - _s("increment")))
    ema_syms, all_slots = _keras_ema(eqs, r, tuple(slots))
    syms.update(ema_syms)
    return r, syms, all_slots, {}, eqs, "Keras RMSprop"


def _keras_adam(spec, adamw=False):
    r = _Spec(spec)
    b1 = _num(r.get("beta_1", 0.9), "beta_1")
    b2 = _num(r.get("beta_2", 0.999), "beta_2")
    eps = _num(r.get("epsilon", 1e-7), "epsilon")
    amsgrad = bool(r.get("amsgrad", False))
    eqs, syms = [], {"beta_1": b1, "beta_2": b2, "epsilon": eps}
    syms.update(_wd_keras(eqs, r, 0.004 if adamw else None))
    B1, B2, E = _s("beta_1"), _s("beta_2"), _s("epsilon")
    m, v, vh = _s("m"), _s("v"), _s("vhat")
    slots = ["m", "v"]
    eqs.append(("alpha", lr * sp.sqrt(1 - B2 ** t) / (1 - B1 ** t)))
    eqs.append(("m", m + (g - m) * (1 - B1)))
    eqs.append(("v", v + (g ** 2 - v) * (1 - B2)))
    if amsgrad:
        slots.append("vhat")
        eqs.append(("vhat", sp.Max(vh, v)))
        eqs.append(("p", p - m * _s("alpha") / (sp.sqrt(vh) + E)))
    else:
        eqs.append(("p", p - m * _s("alpha") / (sp.sqrt(v) + E)))
    ema_syms, all_slots = _keras_ema(eqs, r, tuple(slots))
    syms.update(ema_syms)
    return r, syms, all_slots, {}, eqs, "Keras AdamW" if adamw else "Keras Adam"


def _keras_adagrad(spec):
    r = _Spec(spec)
    init = _num(r.get("initial_accumulator_value", 0.1), "initial_accumulator_value")
    eps = _num(r.get("epsilon", 1e-7), "epsilon")
    eqs, syms = [], {"epsilon": eps}
    syms.update(_wd_keras(eqs, r))
    acc = _s("accumulator")
    eqs.append(("accumulator", acc + g ** 2))
    eqs.append(("p", p - lr * g / sp.sqrt(acc + _s("epsilon"))))
    ema_syms, all_slots = _keras_ema(eqs, r, ("accumulator",))
    syms.update(ema_syms)
    return r, syms, all_slots, {"accumulator": init}, eqs, "Keras Adagrad"


# --------------------------------------------------------------------------- torch
def _torch_sgd(spec):
    r = _Spec(spec)
    mu = _num(r.get("momentum", 0.0), "momentum")
    damp = _num(r.get("dampening", 0.0), "dampening")
    nesterov = bool(r.get("nesterov", False))
    eqs = []
    syms, _ = _torch_grad_prelude(eqs, r)
    slots = ()
    if mu != 0:
        if nesterov and (damp != 0):
            raise TraceInputError("optimizer spec: torch SGD nesterov needs momentum > 0 and dampening 0")
        syms.update({"mu": mu, "dampening": damp})
        buf = _s("momentum_buffer")
        # torch: the buffer is created as a clone of the first gradient (no dampening)
        eqs.append(("momentum_buffer", sp.Piecewise((g, sp.Eq(t, 1)),
                                                    (_s("mu") * buf + (1 - _s("dampening")) * g, True))))
        eqs.append(("g", g + _s("mu") * buf if nesterov else buf))
        slots = ("momentum_buffer",)
    eqs.append(("p", p - lr * g))
    return r, syms, slots, {}, eqs, "torch SGD"


def _torch_rmsprop(spec):
    r = _Spec(spec)
    alpha = _num(r.get("alpha", 0.99), "alpha")
    eps = _num(r.get("eps", 1e-8), "eps")
    mu = _num(r.get("momentum", 0.0), "momentum")
    centered = bool(r.get("centered", False))
    eqs = []
    syms, _ = _torch_grad_prelude(eqs, r)
    syms.update({"alpha": alpha, "eps": eps})
    A, E = _s("alpha"), _s("eps")
    sa, ga = _s("square_avg"), _s("grad_avg")
    slots = ["square_avg"]
    eqs.append(("square_avg", A * sa + (1 - A) * g ** 2))
    if centered:
        slots.append("grad_avg")
        eqs.append(("grad_avg", ga + (g - ga) * (1 - A)))
        eqs.append(("avg", sp.sqrt(sa - ga ** 2) + E))
    else:
        eqs.append(("avg", sp.sqrt(sa) + E))
    if mu > 0:
        slots.append("momentum_buffer")
        syms["mu"] = mu
        eqs.append(("momentum_buffer", _s("mu") * _s("momentum_buffer") + g / _s("avg")))
        eqs.append(("p", p - lr * _s("momentum_buffer")))
    else:
        eqs.append(("p", p - lr * g / _s("avg")))
    return r, syms, tuple(slots), {}, eqs, "torch RMSprop"


def _torch_adam(spec, adamw=False):
    r = _Spec(spec)
    betas = r.get("betas", (0.9, 0.999))
    if not isinstance(betas, (list, tuple)) or len(betas) != 2:
        raise TraceInputError(f'optimizer spec "betas": expected two numbers, got {betas!r}')
    b1, b2 = _num(betas[0], "betas"), _num(betas[1], "betas")
    eps = _num(r.get("eps", 1e-8), "eps")
    amsgrad = bool(r.get("amsgrad", False))
    decoupled = adamw or bool(r.get("decoupled_weight_decay", False))
    eqs = []
    if r.get("maximize", False):
        eqs.append(("g", -g))
    wd = _num(r.get("weight_decay", 1e-2 if adamw else 0.0), "weight_decay")
    syms = {"beta_1": b1, "beta_2": b2, "eps": eps}
    if wd != 0:
        syms["wd"] = wd
        eqs.append(("p", p * (1 - lr * _s("wd"))) if decoupled else ("g", g + _s("wd") * p))
    B1, B2, E = _s("beta_1"), _s("beta_2"), _s("eps")
    m, v, vm = _s("exp_avg"), _s("exp_avg_sq"), _s("max_exp_avg_sq")
    slots = ["exp_avg", "exp_avg_sq"]
    eqs.append(("exp_avg", m + (g - m) * (1 - B1)))
    eqs.append(("exp_avg_sq", B2 * v + (1 - B2) * g ** 2))
    if amsgrad:
        slots.append("max_exp_avg_sq")
        eqs.append(("max_exp_avg_sq", sp.Max(vm, v)))
        eqs.append(("denom", sp.sqrt(vm) / sp.sqrt(1 - B2 ** t) + E))
    else:
        eqs.append(("denom", sp.sqrt(v) / sp.sqrt(1 - B2 ** t) + E))
    eqs.append(("p", p - lr / (1 - B1 ** t) * m / _s("denom")))
    return r, syms, tuple(slots), {}, eqs, "torch AdamW" if adamw else "torch Adam"


def _torch_adagrad(spec):
    r = _Spec(spec)
    lr_decay = _num(r.get("lr_decay", 0.0), "lr_decay")
    init = _num(r.get("initial_accumulator_value", 0.0), "initial_accumulator_value")
    eps = _num(r.get("eps", 1e-10), "eps")
    eqs = []
    syms, _ = _torch_grad_prelude(eqs, r)
    syms.update({"lr_decay": lr_decay, "eps": eps})
    eqs.append(("clr", lr / (1 + (t - 1) * _s("lr_decay"))))
    eqs.append(("sum", _s("sum") + g ** 2))
    eqs.append(("p", p - _s("clr") * g / (sp.sqrt(_s("sum")) + _s("eps"))))
    return r, syms, ("sum",), {"sum": init}, eqs, "torch Adagrad"


def _plain_sgd(spec):
    r = _Spec(spec)
    return r, {}, (), {}, [("p", p - lr * g)], "plain SGD"


BUILDERS = {
    ("keras", "sgd"): (_keras_sgd, _KERAS_LR), ("keras", "rmsprop"): (_keras_rmsprop, _KERAS_LR),
    ("keras", "adam"): (_keras_adam, _KERAS_LR),
    ("keras", "adamw"): (lambda s: _keras_adam(s, adamw=True), _KERAS_LR),
    ("keras", "adagrad"): (_keras_adagrad, _KERAS_LR),
    ("torch", "sgd"): (_torch_sgd, _TORCH_LR), ("torch", "rmsprop"): (_torch_rmsprop, _TORCH_LR),
    ("torch", "adam"): (_torch_adam, _TORCH_LR),
    ("torch", "adamw"): (lambda s: _torch_adam(s, adamw=True), _TORCH_LR),
    ("torch", "adagrad"): (_torch_adagrad, _TORCH_LR),
    ("plain", "sgd"): (_plain_sgd, {"sgd": None}),
}

read_lr = _lr
