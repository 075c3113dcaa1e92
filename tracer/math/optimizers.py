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
import sympy as sp

from ..errors import TraceInputError, UnsupportedError

__all__ = ["OptimizerRule", "get_optimizer", "OPTIMIZER_NAMES"]

OPTIMIZER_NAMES = ("sgd", "rmsprop", "adam", "adamw", "adagrad")


def _s(name):
    return sp.Symbol(name, real=True)


p, g, t, lr = _s("p"), _s("g"), sp.Symbol("t", positive=True), sp.Symbol("lr", positive=True)

# Keras Adam/AdamW slots are named m, v, vhat as in docs/ARCHITECTURE.md (tf.keras 2's names);
# Keras 3 calls the same variables momentum, velocity, velocity_hat: accepted as aliases.
_SLOT_ALIASES = {"m": ("momentum",), "v": ("velocity",), "vhat": ("velocity_hat",)}
# options that change the maths and have no formula here
# (clipping is applied to the gradient before the rule: tracer.math.clipping)
_UNSUPPORTED_OPTIONS = ("gradient_accumulation_steps", "loss_scale_factor")

_KERAS_LR = {"sgd": 0.01, "rmsprop": 0.001, "adam": 0.001, "adamw": 0.001, "adagrad": 0.001}
_TORCH_LR = {"sgd": 0.001, "rmsprop": 0.01, "adam": 0.001, "adamw": 0.001, "adagrad": 0.01}


class OptimizerRule:
    """One optimizer's update rule (framework convention and hyperparameters fixed).

    Attributes: ``name``, ``convention``, ``spec``, ``lr`` (default learning rate; Keras:
    rounded to float32 like Keras's ``learning_rate`` variable), ``slots`` (recorded state
    names: torch's ``state[p]`` keys; Keras's variable names, with Adam's as ``m``, ``v``,
    ``vhat`` per docs/ARCHITECTURE.md), ``hyperparameters`` (framework names -> values as
    given) and ``symbols`` (hyperparameter symbol name -> value used in the equations).
    ``float32_powers`` is True where ``beta**t`` is computed from float32(beta) (Keras).
    """

    def __init__(self, name, convention, spec, lr_value, hyperparameters, symbols, slots, init, equations, title):
        self.name = name
        self.convention = convention
        self.spec = dict(spec)
        self.lr = float(lr_value)
        self.hyperparameters = dict(hyperparameters)
        self.symbols = dict(symbols)
        self.slots = tuple(slots)
        self._init = dict(init)
        self._equations = list(equations)
        self._title = title
        self.float32_powers = convention == "keras"
        subs = {sp.Symbol(k, real=True): sp.Float(v) for k, v in self.symbols.items()}
        subs.update({sp.Symbol(k, positive=True): sp.Float(v) for k, v in self.symbols.items()})
        self._compiled = []
        for target, expr in self._equations:
            if convention == "keras":
                # Keras computes beta**t as ops.power(ops.cast(beta, dtype), t): the Python float
                # goes through float32 first. In 1 - beta_2**t that rounding is amplified
                # (6e-6 relative at t=1 for beta_2=0.999), so the powers use the float32 value;
                # everywhere else the constant's own rounding is below 1e-7 relative.
                expr = expr.replace(
                    lambda x: x.is_Pow and x.base in subs,
                    lambda x: sp.Pow(sp.Float(float(np.float32(float(subs[x.base])))), x.exp))
            e = expr.subs(subs)
            args = sorted(e.free_symbols, key=lambda s: s.name)
            self._compiled.append((target, [s.name for s in args], sp.lambdify(args, e, "numpy")))

    def equations(self, numeric: bool = False):
        """Ordered assignments ``[(name, sympy expr), ...]``; ``numeric=True`` substitutes hyperparameters."""
        if not numeric:
            return list(self._equations)
        subs = {sp.Symbol(k, real=True): sp.Float(v) for k, v in self.symbols.items()}
        subs.update({sp.Symbol(k, positive=True): sp.Float(v) for k, v in self.symbols.items()})
        return [(n, e.subs(subs)) for n, e in self._equations]

    def describe(self) -> str:
        """e.g. ``Keras RMSprop(lr=0.05, rho=0.9, momentum=0, epsilon=1e-7, centered=False)``: numbers
        rounded for reading (a float32 learning rate is not shown as 0.05000000074505806)."""
        from ..display import num

        def show(v):
            if isinstance(v, (tuple, list)):
                return "(" + ", ".join(show(x) for x in v) + ")"
            return num(v, 5) if isinstance(v, (int, float)) and not isinstance(v, bool) else repr(v)
        args = ", ".join(f"{k}={show(v)}" for k, v in self.hyperparameters.items())
        return f"{self._title}({args})"

    def __repr__(self):
        return f"OptimizerRule({self.describe()!r})"

    def initial_state(self, p0):
        """State before the first step: each slot an array shaped like ``p0`` (zeros or the
        framework's initial value, e.g. Keras Adagrad's accumulator 0.1)."""
        p0 = np.asarray(p0, dtype=np.float64)
        return {s: np.full(p0.shape, self._init.get(s, 0.0)) for s in self.slots}

    def _slot(self, state, s):
        if s in state:
            return state[s]
        for alias in _SLOT_ALIASES.get(s, ()):
            if alias in state:
                return state[alias]
        raise TraceInputError(f"state: missing optimizer slot {s!r} (this rule needs {list(self.slots)}); "
                              f"got {sorted(state)}")

    def step(self, p_before, grad, state, t_step, lr_value=None):
        """Apply one update to every recorded step at once.

        ``p_before`` and ``grad`` are ``(S, *shape)``; ``state`` maps each slot to ``(S, *shape)``
        (the state *before* the step); ``t_step`` is ``(S,)``, the 1-based optimizer step;
        ``lr_value`` optionally ``(S,)`` (the recorded learning rate, for schedules), else
        :attr:`lr`. Returns ``(p_after, state_after)``.
        """
        env = self._run(p_before, grad, state, t_step, lr_value, None)
        return np.array(env["p"]), {s: np.array(env[s]) for s in self.slots}

    def assignments(self, p_before, grad, state, t_step, lr_value=None) -> list:
        """The value of every assignment of :meth:`equations`, in order: ``[(name, (S, *shape)), ...]``.

        Same arguments as :meth:`step`; for reports that show each line of the rule with its
        number (the workbook's optimizer columns, the page's substituted update), so the
        equations are compiled once, here, for the checker and every report.
        """
        out: list = []
        self._run(p_before, grad, state, t_step, lr_value, out)
        return out

    def _run(self, p_before, grad, state, t_step, lr_value, record):
        pv = np.asarray(p_before, dtype=np.float64)
        gv = np.asarray(grad, dtype=np.float64)
        if pv.shape != gv.shape or pv.ndim < 1:
            raise TraceInputError(f"grad: expected the shape of p, {pv.shape}, got {gv.shape}")
        S = pv.shape[0]
        bshape = (S,) + (1,) * (pv.ndim - 1)
        tv = np.asarray(t_step, dtype=np.float64)
        if tv.shape not in ((S,), ()):
            raise TraceInputError(f"t: expected the optimizer step numbers shaped ({S},), got {tv.shape}")
        tv = np.broadcast_to(tv, (S,)).reshape(bshape)
        lrv = self.lr if lr_value is None else np.asarray(lr_value, dtype=np.float64)
        lrv = np.broadcast_to(lrv, (S,)).reshape(bshape)
        env = {"p": pv, "g": gv, "t": tv, "lr": lrv}
        for s in self.slots:
            v = np.asarray(self._slot(state or {}, s), dtype=np.float64)
            if v.shape != pv.shape:
                raise TraceInputError(f"state[{s!r}]: expected shape {pv.shape}, got {v.shape}")
            env[s] = v
        with np.errstate(all="ignore"):
            for target, names, fn in self._compiled:
                env[target] = np.broadcast_to(fn(*[env[n] for n in names]), pv.shape)
                if record is not None:
                    record.append((target, np.array(env[target])))
        return env

    def run(self, p0, grads, state=None, t0: int = 1, lr_value=None):
        """Follow one parameter through consecutive steps (``grads`` shaped ``(K, *shape)``).

        Returns ``(params_after (K, *shape), states_after {slot: (K, *shape)})``; for
        explanations and tests, where each step starts from the previous result.
        """
        cur = np.asarray(p0, dtype=np.float64)[None]
        st = {k: np.asarray(v, dtype=np.float64)[None] for k, v in (state or self.initial_state(p0)).items()}
        ps, ss = [], {s: [] for s in self.slots}
        for k, gk in enumerate(np.asarray(grads, dtype=np.float64)):
            lrk = None if lr_value is None else np.atleast_1d(np.asarray(lr_value, dtype=np.float64)[k])
            cur, st = self.step(cur, gk[None], st, np.array([t0 + k]), lrk)
            ps.append(cur[0])
            for s in self.slots:
                ss[s].append(st[s][0])
        return np.array(ps), {s: np.array(v) for s, v in ss.items()}


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


_BUILDERS = {
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
