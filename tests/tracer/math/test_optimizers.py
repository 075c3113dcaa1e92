"""Optimizer rules: against hand-written NumPy loops, the real Keras and torch optimizers,
and the S2 golden numbers.

Each hand loop below is written independently from the framework source, one step at a
time in plain NumPy, so a slip in a sympy rule (epsilon inside/outside the root, bias
correction off by one, torch's first momentum step) shows up as a mismatch.
"""
import numpy as np
import pytest

from tracer.errors import TraceInputError, UnsupportedError
from tracer.math import get_loss, get_optimizer
from tracer.math import printing

RNG = np.random.default_rng(7)
P0 = RNG.normal(size=(3, 2))
GRADS = RNG.normal(size=(5, 3, 2))
K = len(GRADS)


# ----------------------------------------------------------------- hand loops
def f32(x):
    """Keras keeps learning_rate in float32 and computes beta**t from float32(beta)."""
    return float(np.float32(x))


def hand_keras(name, lr, hp, p0, grads):
    lr = f32(lr)
    p = p0.copy()
    st = {}
    wd = hp.get("weight_decay", 0.004 if name == "adamw" else None)
    out = []
    for i, g in enumerate(grads):
        it = i + 1
        if wd:
            p = p - p * wd * lr
        if name == "sgd":
            mu = hp.get("momentum", 0.0)
            if mu:
                m = st.get("momentum", np.zeros_like(p))
                m = m * mu - g * lr
                st["momentum"] = m
                p = p + (m * mu - g * lr if hp.get("nesterov") else m)
            else:
                p = p - lr * g
        elif name == "rmsprop":
            rho, mu, eps = hp.get("rho", 0.9), hp.get("momentum", 0.0), hp.get("epsilon", 1e-7)
            v = rho * st.get("velocity", np.zeros_like(p)) + (1 - rho) * g * g
            st["velocity"] = v
            if hp.get("centered"):
                a = rho * st.get("average_gradient", np.zeros_like(p)) + (1 - rho) * g
                st["average_gradient"] = a
                den = v - a * a + eps
            else:
                den = v + eps
            inc = lr * g / np.sqrt(den)
            if mu > 0:
                mm = mu * st.get("momentum", np.zeros_like(p)) + inc
                st["momentum"] = mm
                p = p - mm
            else:
                p = p - inc
        elif name in ("adam", "adamw"):
            b1, b2, eps = hp.get("beta_1", 0.9), hp.get("beta_2", 0.999), hp.get("epsilon", 1e-7)
            m = st.get("m", np.zeros_like(p))
            v = st.get("v", np.zeros_like(p))
            m = m + (g - m) * (1 - b1)
            v = v + (g * g - v) * (1 - b2)
            st["m"], st["v"] = m, v
            alpha = lr * np.sqrt(1 - f32(b2) ** it) / (1 - f32(b1) ** it)
            if hp.get("amsgrad"):
                vh = np.maximum(st.get("vhat", np.zeros_like(p)), v)
                st["vhat"] = vh
                v = vh
            p = p - m * alpha / (np.sqrt(v) + eps)
        elif name == "adagrad":
            acc = st.get("accumulator", np.full_like(p, hp.get("initial_accumulator_value", 0.1)))
            acc = acc + g * g
            st["accumulator"] = acc
            p = p - lr * g / np.sqrt(acc + hp.get("epsilon", 1e-7))
        out.append((p.copy(), {k: v.copy() for k, v in st.items()}))
    return out


def hand_torch(name, lr, hp, p0, grads):
    p = p0.copy()
    st = {}
    out = []
    for i, g in enumerate(grads):
        step = i + 1
        if hp.get("maximize"):
            g = -g
        wd = hp.get("weight_decay", 1e-2 if name == "adamw" else 0.0)
        decoupled = name == "adamw" or hp.get("decoupled_weight_decay", False)
        if wd and not decoupled:
            g = g + wd * p
        if name == "sgd":
            mu, damp = hp.get("momentum", 0.0), hp.get("dampening", 0.0)
            if mu:
                if "momentum_buffer" not in st:
                    buf = g.copy()
                else:
                    buf = mu * st["momentum_buffer"] + (1 - damp) * g
                st["momentum_buffer"] = buf
                g = g + mu * buf if hp.get("nesterov") else buf
            p = p - lr * g
        elif name == "rmsprop":
            al, eps, mu = hp.get("alpha", 0.99), hp.get("eps", 1e-8), hp.get("momentum", 0.0)
            sq = al * st.get("square_avg", np.zeros_like(p)) + (1 - al) * g * g
            st["square_avg"] = sq
            if hp.get("centered"):
                ga = st.get("grad_avg", np.zeros_like(p))
                ga = ga + (1 - al) * (g - ga)
                st["grad_avg"] = ga
                avg = np.sqrt(sq - ga * ga) + eps
            else:
                avg = np.sqrt(sq) + eps
            if mu > 0:
                buf = mu * st.get("momentum_buffer", np.zeros_like(p)) + g / avg
                st["momentum_buffer"] = buf
                p = p - lr * buf
            else:
                p = p - lr * g / avg
        elif name in ("adam", "adamw"):
            b1, b2 = hp.get("betas", (0.9, 0.999))
            eps = hp.get("eps", 1e-8)
            if wd and decoupled:
                p = p * (1 - lr * wd)
            m = st.get("exp_avg", np.zeros_like(p))
            v = st.get("exp_avg_sq", np.zeros_like(p))
            m = m + (1 - b1) * (g - m)
            v = b2 * v + (1 - b2) * g * g
            st["exp_avg"], st["exp_avg_sq"] = m, v
            if hp.get("amsgrad"):
                vm = np.maximum(st.get("max_exp_avg_sq", np.zeros_like(p)), v)
                st["max_exp_avg_sq"] = vm
                v = vm
            denom = np.sqrt(v) / np.sqrt(1 - b2 ** step) + eps
            p = p - (lr / (1 - b1 ** step)) * m / denom
        elif name == "adagrad":
            clr = lr / (1 + (step - 1) * hp.get("lr_decay", 0.0))
            s = st.get("sum", np.full_like(p, hp.get("initial_accumulator_value", 0.0))) + g * g
            st["sum"] = s
            p = p - clr * g / (np.sqrt(s) + hp.get("eps", 1e-10))
        out.append((p.copy(), {k: v.copy() for k, v in st.items()}))
    return out


KERAS_CASES = [
    ("sgd", 0.1, {}), ("sgd", 0.1, {"momentum": 0.9}), ("sgd", 0.05, {"momentum": 0.8, "nesterov": True}),
    ("sgd", 0.1, {"weight_decay": 0.1}),
    ("rmsprop", 0.05, {}), ("rmsprop", 0.01, {"momentum": 0.5}), ("rmsprop", 0.01, {"centered": True, "rho": 0.8}),
    ("rmsprop", 0.01, {"centered": True, "momentum": 0.3, "epsilon": 1e-3}),
    ("adam", 0.01, {}), ("adam", 0.02, {"amsgrad": True, "beta_1": 0.8}), ("adam", 0.01, {"weight_decay": 0.1}),
    ("adamw", 0.01, {}), ("adamw", 0.01, {"weight_decay": 0.05, "amsgrad": True}),
    ("adagrad", 0.1, {}), ("adagrad", 0.1, {"initial_accumulator_value": 0.5, "epsilon": 1e-3}),
]
TORCH_CASES = [
    ("sgd", 0.1, {}), ("sgd", 0.1, {"momentum": 0.9}), ("sgd", 0.1, {"momentum": 0.9, "dampening": 0.3}),
    ("sgd", 0.05, {"momentum": 0.8, "nesterov": True, "weight_decay": 0.1}), ("sgd", 0.1, {"maximize": True}),
    ("rmsprop", 0.01, {}), ("rmsprop", 0.01, {"momentum": 0.5, "weight_decay": 0.1}),
    ("rmsprop", 0.01, {"centered": True, "alpha": 0.9}), ("rmsprop", 0.01, {"centered": True, "momentum": 0.3}),
    ("adam", 0.01, {}), ("adam", 0.01, {"amsgrad": True, "betas": (0.8, 0.99)}), ("adam", 0.01, {"weight_decay": 0.1}),
    ("adam", 0.01, {"weight_decay": 0.1, "maximize": True, "eps": 1e-3}),
    ("adamw", 0.01, {}), ("adamw", 0.01, {"weight_decay": 0.2, "amsgrad": True}),
    ("adagrad", 0.1, {}), ("adagrad", 0.1, {"lr_decay": 0.1, "weight_decay": 0.05, "initial_accumulator_value": 0.2}),
]


def _ids(cases):
    return [f"{n}-{lr}-{'-'.join(f'{k}={v}' for k, v in hp.items())}" for n, lr, hp in cases]


def _check_rule_against(rule, expected):
    """rule.run (sequential) and rule.step (all steps at once, from the hand loop's states)."""
    ps, states = rule.run(P0, GRADS)
    for k, (pk, sk) in enumerate(expected):
        np.testing.assert_allclose(ps[k], pk, rtol=1e-12, atol=1e-14)
        for s, v in sk.items():
            np.testing.assert_allclose(states[s][k], v, rtol=1e-12, atol=1e-14)
    # vectorised: every step at once from the recorded state before each step
    before_p = np.stack([P0] + [e[0] for e in expected[:-1]])
    init = rule.initial_state(P0)
    before_s = {s: np.stack([init[s]] + [e[1].get(s, init[s]) for e in expected[:-1]]) for s in rule.slots}
    p_after, s_after = rule.step(before_p, GRADS, before_s, np.arange(1, K + 1))
    np.testing.assert_allclose(p_after, np.stack([e[0] for e in expected]), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name,lr,hp", KERAS_CASES, ids=_ids(KERAS_CASES))
def test_keras_rules_match_hand_loop(name, lr, hp):
    rule = get_optimizer({"name": name, "convention": "keras", "lr": lr, **hp})
    _check_rule_against(rule, hand_keras(name, lr, hp, P0, GRADS))


@pytest.mark.parametrize("name,lr,hp", TORCH_CASES, ids=_ids(TORCH_CASES))
def test_torch_rules_match_hand_loop(name, lr, hp):
    rule = get_optimizer({"name": name, "convention": "torch", "lr": lr, **hp})
    _check_rule_against(rule, hand_torch(name, lr, hp, P0, GRADS))


def test_plain_sgd():
    rule = get_optimizer({"name": "sgd", "convention": "plain", "lr": 0.02})
    p1, st = rule.step(P0[None], GRADS[:1], {}, np.array([1]))
    np.testing.assert_allclose(p1[0], P0 - 0.02 * GRADS[0], rtol=0, atol=0)
    assert rule.slots == () and st == {}
    assert [n for n, _ in rule.equations()] == ["p"]
    assert "plain SGD" in rule.describe()
    with pytest.raises(TraceInputError, match="lr"):
        get_optimizer({"name": "sgd", "convention": "plain"})


def test_lr_per_step_overrides_default():
    rule = get_optimizer({"name": "sgd", "convention": "plain", "lr": 0.5})
    p1, _ = rule.step(np.zeros((2, 1)), np.ones((2, 1)), {}, np.array([1, 2]), lr_value=np.array([0.1, 0.2]))
    np.testing.assert_allclose(p1[:, 0], [-0.1, -0.2])


def test_slots_are_framework_names_and_aliases_accepted():
    assert get_optimizer({"name": "adam", "convention": "keras", "amsgrad": True}).slots == ("m", "v", "vhat")
    assert get_optimizer({"name": "rmsprop", "convention": "keras", "momentum": 0.1, "centered": True}).slots == \
        ("velocity", "average_gradient", "momentum")
    assert get_optimizer({"name": "adam", "convention": "torch", "amsgrad": True}).slots == \
        ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    assert get_optimizer({"name": "sgd", "convention": "torch", "momentum": 0.9}).slots == ("momentum_buffer",)
    assert get_optimizer({"name": "adagrad", "convention": "torch"}).slots == ("sum",)
    rule = get_optimizer({"name": "adam", "convention": "keras", "lr": 0.1})
    st = {"momentum": np.zeros((1, 2)), "velocity": np.zeros((1, 2))}  # Keras 3 variable names
    p1, s1 = rule.step(np.ones((1, 2)), np.ones((1, 2)), st, np.array([1]))
    np.testing.assert_allclose(p1, 1 - 0.1, rtol=1e-5)
    assert set(s1) == {"m", "v"}


def test_initial_state_values():
    np.testing.assert_allclose(get_optimizer({"name": "adagrad", "convention": "keras"}).initial_state(P0)["accumulator"], 0.1)
    np.testing.assert_allclose(get_optimizer({"name": "adagrad", "convention": "torch", "initial_accumulator_value": 0.3})
                               .initial_state(P0)["sum"], 0.3)
    assert get_optimizer({"name": "adam", "convention": "torch"}).initial_state(P0)["exp_avg"].shape == P0.shape


def test_bad_specs():
    with pytest.raises(UnsupportedError):
        get_optimizer({"name": "lion", "convention": "keras"})
    with pytest.raises(UnsupportedError, match="loss_scale_factor"):
        get_optimizer({"name": "sgd", "convention": "keras", "loss_scale_factor": 128.0})
    with pytest.raises(TraceInputError):
        get_optimizer("sgd")
    with pytest.raises(TraceInputError, match="rho"):
        get_optimizer({"name": "rmsprop", "convention": "keras", "rho": "x"})
    rule = get_optimizer({"name": "rmsprop", "convention": "keras"})
    with pytest.raises(TraceInputError, match="velocity"):
        rule.step(P0[None], GRADS[:1], {}, np.array([1]))
    with pytest.raises(TraceInputError, match="grad"):
        rule.step(P0[None], GRADS[:2], rule.initial_state(P0[None]), np.array([1]))


def test_s2_golden_rmsprop_first_step():
    """SCENARIOS.md S2: kernel 0.5, bias 0, RMSprop(0.05), mse on the 12 rows."""
    x = np.arange(1, 13, dtype=np.float64)
    y = np.array([5.0, 8.8, 9.6, 14.2, 18.8, 19.5, 21.4, 26.8, 28.9, 32.0, 33.8, 38.2])
    loss = get_loss({"name": "mse"})
    yp = (0.5 * x)[None, :, None]
    assert loss.value(yp, y[None, :, None])[0] == pytest.approx(402.9850158691406, rel=1e-7)
    dy = loss.grad(yp, y[None, :, None])[0, :, 0]
    grads = np.array([[(dy * x).sum(), dy.sum()]])
    rule = get_optimizer({"name": "rmsprop", "convention": "keras", "lr": 0.05})
    p1, st = rule.step(np.array([[0.5, 0.0]]), grads, rule.initial_state(np.zeros((1, 2))), np.array([1]))
    np.testing.assert_allclose(p1[0], [0.65811384, 0.15811387], rtol=1e-6)
    # the first RMSprop step is lr / sqrt(1 - rho) in size
    assert p1[0, 1] == pytest.approx(0.05 / np.sqrt(0.1), rel=1e-6)
    # the updated model's loss on the 12 rows
    assert loss.value((p1[0, 0] * x + p1[0, 1])[None, :, None], y[None, :, None])[0] == pytest.approx(352.3351, rel=1e-5)


def test_planted_bug_epsilon_inside_root_is_caught():
    """torch RMSprop puts eps outside the root; a rule with it inside disagrees."""
    rule = get_optimizer({"name": "rmsprop", "convention": "torch", "lr": 0.01, "eps": 1e-2})
    sq = 0.01 * GRADS[0] ** 2
    wrong = P0 - 0.01 * GRADS[0] / np.sqrt(sq + 1e-2)
    p1, _ = rule.step(P0[None], GRADS[:1], rule.initial_state(P0[None]), np.array([1]))
    assert not np.allclose(p1[0], wrong, rtol=1e-6)


def test_equations_print():
    rule = get_optimizer({"name": "adam", "convention": "torch", "lr": 0.001})
    names = [n for n, _ in rule.equations()]
    assert names == ["exp_avg", "exp_avg_sq", "denom", "p"]
    txt = printing.text(rule.equations()[2][1])
    assert "sqrt" in txt and "eps" in txt
    num = rule.equations(numeric=True)
    assert not any(s.name in ("beta_1", "beta_2", "eps") for _, e in num for s in e.free_symbols)
    sgd = get_optimizer({"name": "sgd", "convention": "torch", "momentum": 0.9})
    cells = {s: s.name.upper() for _, e in sgd.equations() for s in e.free_symbols}
    assert printing.excel(sgd.equations()[0][1], cells).startswith("=IF((T=1),G,")


# ----------------------------------------------------------------- real frameworks
@pytest.fixture(scope="module")
def keras_mod():
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    return keras


@pytest.fixture(scope="module")
def torch_mod():
    import torch
    return torch


_KERAS_CLASSES = {"sgd": "SGD", "rmsprop": "RMSprop", "adam": "Adam", "adamw": "AdamW", "adagrad": "Adagrad"}
_TORCH_CLASSES = {"sgd": "SGD", "rmsprop": "RMSprop", "adam": "Adam", "adamw": "AdamW", "adagrad": "Adagrad"}


@pytest.mark.keras
@pytest.mark.parametrize("name,lr,hp", KERAS_CASES, ids=_ids(KERAS_CASES))
def test_keras_rules_match_real_keras(keras_mod, name, lr, hp):
    keras = keras_mod
    var = keras.Variable(P0, dtype="float64")
    opt = getattr(keras.optimizers, _KERAS_CLASSES[name])(learning_rate=lr, **hp)
    rule = get_optimizer({"name": name, "convention": "keras", "lr": lr, **hp})
    ps, states = rule.run(P0, GRADS)
    for k in range(K):
        opt.apply([GRADS[k]], [var])
        # learning_rate is a float32 variable in Keras: 1e-7 relative
        np.testing.assert_allclose(var.numpy(), ps[k], rtol=2e-6, atol=1e-9)
    assert int(opt.iterations.numpy()) == K
    known = ("momentum", "velocity", "velocity_hat", "average_gradient", "accumulator")
    adam_names = {"momentum": "m", "velocity": "v", "velocity_hat": "vhat"}   # docs/ARCHITECTURE.md
    slots = {}
    for v in opt.variables:
        hits = [s for s in known if v.name.endswith("_" + s)]
        if hits:
            s = max(hits, key=len)
            slots[adam_names.get(s, s) if name in ("adam", "adamw") else s] = v.numpy()
    assert set(slots) == set(rule.slots)
    for s in rule.slots:
        np.testing.assert_allclose(slots[s], states[s][-1], rtol=2e-6, atol=1e-9)


@pytest.mark.torch
@pytest.mark.parametrize("name,lr,hp", TORCH_CASES, ids=_ids(TORCH_CASES))
def test_torch_rules_match_real_torch(torch_mod, name, lr, hp):
    torch = torch_mod
    w = torch.nn.Parameter(torch.tensor(P0, dtype=torch.float64))
    opt = getattr(torch.optim, _TORCH_CLASSES[name])([w], lr=lr, **hp)
    rule = get_optimizer({"name": name, "convention": "torch", "lr": lr, **hp})
    ps, states = rule.run(P0, GRADS)
    for k in range(K):
        w.grad = torch.tensor(GRADS[k], dtype=torch.float64)
        opt.step()
        np.testing.assert_allclose(w.detach().numpy(), ps[k], rtol=1e-10, atol=1e-13)
    st = opt.state[w]
    assert set(st) - {"step"} == set(rule.slots)
    for s in rule.slots:
        np.testing.assert_allclose(st[s].numpy(), states[s][-1], rtol=1e-10, atol=1e-13)
