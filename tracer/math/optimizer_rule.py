"""One optimizer update rule: ordered sympy assignments, compiled once, evaluated on stacks.

:class:`OptimizerRule` holds a rule's assignments (see :mod:`tracer.math.optimizers` for
what they mean and where they come from) and evaluates them in order on arrays shaped
``(S, *param_shape)``: every recorded step at once. The same compiled assignments give
the checker its expected values, the reports each line's number, and (through
:func:`tracer.program.symbolic.magnitude`) the rounding magnitudes the tolerances use.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..errors import TraceInputError
from ..program.numpy_names import numpy_lambdify
from ..program.symbolic import magnitude as _magnitude

__all__ = ["OptimizerRule", "SLOT_ALIASES", "p", "g", "t", "lr"]


def _s(name):
    return sp.Symbol(name, real=True)


p, g, t, lr = _s("p"), _s("g"), sp.Symbol("t", positive=True), sp.Symbol("lr", positive=True)

# Keras Adam/AdamW slots are named m, v, vhat as in docs/ARCHITECTURE.md (tf.keras 2's names);
# Keras 3 calls the same variables momentum, velocity, velocity_hat: accepted as aliases.
SLOT_ALIASES = {"m": ("momentum",), "v": ("velocity",), "vhat": ("velocity_hat",)}


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
        self._compiled_mag = []
        self._delta = None
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
            self._compiled.append((target, [s.name for s in args], numpy_lambdify(args, e)))
            # the rounding magnitude of the assignment (tracer.program.symbolic.magnitude)
            msyms = {a: sp.Symbol("m_" + a.name, nonnegative=True) for a in args}
            m = _magnitude(e, msyms)
            margs = args + [msyms[a] for a in args]
            self._compiled_mag.append((target, [a.name for a in args], numpy_lambdify(margs, m)))

    def equations(self, numeric: bool = False) -> list[tuple[str, sp.Expr]]:
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

    def initial_state(self, p0: np.ndarray) -> dict[str, np.ndarray]:
        """State before the first step: each slot an array shaped like ``p0`` (zeros or the
        framework's initial value, e.g. Keras Adagrad's accumulator 0.1)."""
        p0 = np.asarray(p0, dtype=np.float64)
        return {s: np.full(p0.shape, self._init.get(s, 0.0)) for s in self.slots}

    def _slot(self, state, s):
        if s in state:
            return state[s]
        for alias in SLOT_ALIASES.get(s, ()):
            if alias in state:
                return state[alias]
        raise TraceInputError(f"state: missing optimizer slot {s!r} (this rule needs {list(self.slots)}); "
                              f"got {sorted(state)}")

    def step(self, p_before: np.ndarray, grad: np.ndarray, state: dict, t_step: np.ndarray,
             lr_value: np.ndarray | float | None = None, dtype: type = np.float64) -> tuple[np.ndarray, dict]:
        """Apply one update to every recorded step at once.

        ``p_before`` and ``grad`` are ``(S, *shape)``; ``state`` maps each slot to ``(S, *shape)``
        (the state *before* the step); ``t_step`` is ``(S,)``, the 1-based optimizer step;
        ``lr_value`` optionally ``(S,)`` (the recorded learning rate, for schedules), else
        :attr:`lr`. Returns ``(p_after, state_after)``. ``dtype`` float32 evaluates in float32 (the
        checker's fast pass, whose own rounding its tolerance allows for); float64 is exact.
        """
        env = self._run(p_before, grad, state, t_step, lr_value, None, dtype=dtype)
        return np.array(env["p"]), {s: np.array(env[s]) for s in self.slots}

    def update(self, p_before: np.ndarray, grad: np.ndarray, t_step: np.ndarray,
               lr_value: np.ndarray | float | None = None, dtype: type = np.float32) -> np.ndarray:
        """``p_after - p_before`` of a rule without state, from one expression for the difference
        (``-lr*g`` for plain SGD), so that in float32 it keeps the update's own digits instead of
        rounding it to the precision of ``p``: the checker's fast pass. Arguments as :meth:`step`."""
        if self.slots:
            raise TraceInputError(f"{self.name}: the update of a rule with state needs its state (use step)")
        if self._delta is None:
            self._delta = self._compile_delta()
        names, fn = self._delta
        pv = np.asarray(p_before, dtype=dtype)
        S = pv.shape[0]
        bshape = (S,) + (1,) * (pv.ndim - 1)
        env = {"p": pv, "g": np.asarray(grad, dtype=dtype),
               "t": np.broadcast_to(np.asarray(t_step, dtype=dtype), (S,)).reshape(bshape),
               "lr": np.broadcast_to(np.asarray(self.lr if lr_value is None else lr_value, dtype=dtype),
                                     (S,)).reshape(bshape)}
        with np.errstate(all="ignore"):
            return np.asarray(np.broadcast_to(fn(*[env[n] for n in names]), pv.shape), dtype=dtype)

    def _compile_delta(self):
        """The assignments folded into one expression of ``p_after - p`` (hyperparameters substituted)."""
        env: dict = {}
        for target, expr in self.equations(numeric=True):
            env[sp.Symbol(target, real=True)] = expr.subs(env, simultaneous=True)
        final = env[sp.Symbol("p", real=True)]
        delta = sp.expand(final - p)
        args = sorted(delta.free_symbols, key=lambda s: s.name)
        return [a.name for a in args], numpy_lambdify(args, delta)

    def assignments(self, p_before: np.ndarray, grad: np.ndarray, state: dict, t_step: np.ndarray,
                    lr_value: np.ndarray | float | None = None) -> list:
        """The value of every assignment of :meth:`equations`, in order: ``[(name, (S, *shape)), ...]``.

        Same arguments as :meth:`step`; for reports that show each line of the rule with its
        number (the workbook's optimizer columns, the page's substituted update), so the
        equations are compiled once, here, for the checker and every report.
        """
        out: list = []
        self._run(p_before, grad, state, t_step, lr_value, out)
        return out

    def _run(self, p_before, grad, state, t_step, lr_value, record, mags=None, dtype=np.float64):
        pv = np.asarray(p_before, dtype=dtype)
        gv = np.asarray(grad, dtype=dtype)
        if pv.shape != gv.shape or pv.ndim < 1:
            raise TraceInputError(f"grad: expected the shape of p, {pv.shape}, got {gv.shape}")
        S = pv.shape[0]
        bshape = (S,) + (1,) * (pv.ndim - 1)
        tv = np.asarray(t_step, dtype=dtype)
        if tv.shape not in ((S,), ()):
            raise TraceInputError(f"t: expected the optimizer step numbers shaped ({S},), got {tv.shape}")
        tv = np.broadcast_to(tv, (S,)).reshape(bshape)
        lrv = np.asarray(self.lr if lr_value is None else lr_value, dtype=dtype)
        lrv = np.broadcast_to(lrv, (S,)).reshape(bshape)
        env = {"p": pv, "g": gv, "t": tv, "lr": lrv}
        for s in self.slots:
            v = np.asarray(self._slot(state or {}, s), dtype=dtype)
            if v.shape != pv.shape:
                raise TraceInputError(f"state[{s!r}]: expected shape {pv.shape}, got {v.shape}")
            env[s] = v
        if mags is not None:
            mags.update({k: np.abs(v) for k, v in env.items()})
        with np.errstate(all="ignore"):
            for (target, names, fn), (_, _, fm) in zip(self._compiled, self._compiled_mag):
                if mags is not None:     # before env[target] is replaced: the inputs' values
                    m = fm(*[env[n] for n in names], *[mags[n] for n in names])
                env[target] = np.broadcast_to(fn(*[env[n] for n in names]), pv.shape)
                if mags is not None:
                    mags[target] = np.abs(m)
                if record is not None:
                    record.append((target, np.array(env[target])))
        return env

    def magnitudes(self, p_before: np.ndarray, grad: np.ndarray, state: dict, t_step: np.ndarray,
                   lr_value: np.ndarray | float | None = None) -> dict:
        """Rounding magnitudes of the new parameter and state, ``{"p": ..., slot: ...}``.

        Each assignment's magnitude follows :func:`tracer.program.symbolic.magnitude`
        (``M(v) = |v| + sum |dv/du| M(u)``, the recorded inputs exact): a framework
        computing ``b1*m + (1-b1)*g`` in float32 is off by about
        ``eps * (|b1 m| + |(1-b1) g|)``, not ``eps * |result|`` when the two cancel.
        """
        mags: dict = {}
        env = self._run(p_before, grad, state, t_step, lr_value, None, mags)
        return {k: np.array(np.broadcast_to(mags[k], np.shape(env["p"]))) for k in ("p",) + tuple(self.slots)}

    def run(self, p0: np.ndarray, grads: np.ndarray, state: dict | None = None, t0: int = 1,
            lr_value: np.ndarray | float | None = None) -> tuple[np.ndarray, dict]:
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
