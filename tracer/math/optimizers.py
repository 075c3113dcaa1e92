"""Optimizer update rules as ordered sympy assignments, evaluated with NumPy over all steps.

Why: "my spreadsheet does not match Keras" is almost always an optimizer detail (where
epsilon sits, bias correction, torch's first momentum step, decoupled weight decay).
Each rule here is the framework's own source (Keras 3.15 ``keras/src/optimizers/*.py``
and ``base_optimizer._apply_weight_decay``; torch 2.13 ``torch/optim/*.py``
``_single_tensor_*``) transcribed into sympy assignments, in the framework's order:

    [("velocity", rho*velocity + (1 - rho)*g**2), ..., ("p", p - increment)]

The list reads like the framework's code: an assignment to a name replaces its value
for the assignments that follow, so ``velocity`` on the right-hand side of a later line
is the *updated* velocity, and the last assignment to ``p`` is the new parameter. Symbols:
``p`` parameter, ``g`` gradient, ``t`` the 1-based optimizer step (Keras
``iterations + 1``, torch ``state["step"]`` after its increment), ``lr`` learning rate,
slot names (the framework's own state names), hyperparameters (``rho``, ``beta_1``...).

Numbers: each assignment is lambdified once (hyperparameters substituted) and the list
is evaluated in order on arrays shaped ``(S, *param_shape)``: every recorded step at once.
"""
from __future__ import annotations

import json

import numpy as np

from ..errors import TraceInputError, UnsupportedError
from .optimizer_formulas import BUILDERS as _BUILDERS, read_lr as _lr
from .optimizer_rule import SLOT_ALIASES, OptimizerRule

__all__ = ["OptimizerRule", "get_optimizer", "OPTIMIZER_NAMES", "SLOT_ALIASES"]

OPTIMIZER_NAMES = ("sgd", "rmsprop", "adam", "adamw", "adagrad")


_RULE_CACHE: dict = {}


def get_optimizer(spec: dict) -> OptimizerRule:
    """Return the :class:`OptimizerRule` for ``meta["optimizer"]``.

    ``spec`` = ``{"name": "rmsprop", "convention": "keras", "lr": 0.05, "rho": 0.9, ...}``
    with hyperparameters under the framework's own names (missing ones take the
    framework's defaults). An unknown name/convention or an option without a formula
    (gradient clipping, EMA...) raises UnsupportedError.
    """
    if not isinstance(spec, dict):
        raise TraceInputError(f"optimizer spec: expected a dict like {{'name': 'sgd', 'lr': 0.01}}, "
                              f"got {type(spec).__name__}")
    try:
        key = json.dumps(spec, sort_keys=True, default=repr)
    except TypeError:
        key = None
    if key is not None and key in _RULE_CACHE:
        return _RULE_CACHE[key]
    rule = _build_rule(spec)
    if key is not None:
        _RULE_CACHE[key] = rule
    return rule


def _build_rule(spec):
    name = str(spec.get("name", "")).lower()
    conv = str(spec.get("convention") or "plain").lower()
    if (conv, name) not in _BUILDERS:
        known = ", ".join(f"{c}/{n}" for c, n in _BUILDERS)
        raise UnsupportedError(f"optimizer {conv}/{name}: steptrace has rules for {known}")
    build, lrs = _BUILDERS[(conv, name)]
    lr_value = _lr(spec, lrs[name])
    r, syms, slots, init, eqs, title = build(spec)
    hp = {"lr": lr_value}
    if conv == "keras":
        # Keras keeps learning_rate in a float32 variable (beta powers: see OptimizerRule.__init__).
        lr_value = float(np.float32(lr_value))
    hp.update({k: v for k, v in r.used.items()})
    return OptimizerRule(name, conv, spec, lr_value, hp, syms, slots, init, eqs, title)
