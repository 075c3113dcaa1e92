"""Activations: forward and backward against NumPy, sympy identities and the frameworks."""
import numpy as np
import pytest
import sympy as sp

from tracer.errors import TraceInputError, UnsupportedError
from tracer.math import get_activation
from tracer.math.activations import a, z

RNG = np.random.default_rng(11)
ZV = np.concatenate([RNG.normal(size=(2, 3, 4)) * 3, np.zeros((1, 3, 4))])
UP = RNG.normal(size=ZV.shape)

NUMPY = {
    "linear": (lambda x: x, lambda x: np.ones_like(x)),
    "relu": (lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(float)),
    "maximum0": (lambda x: np.maximum(x, 0), lambda x: np.where(x > 0, 1.0, np.where(x < 0, 0.0, 0.5))),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2),
    "tanh": (np.tanh, lambda x: 1 / np.cosh(x) ** 2),
    "softplus": (lambda x: np.log1p(np.exp(x)), lambda x: 1 / (1 + np.exp(-x))),
    "elu": (lambda x: np.where(x > 0, x, np.expm1(x)), lambda x: np.where(x > 0, 1.0, np.exp(x))),
    "silu": (lambda x: x / (1 + np.exp(-x)),
             lambda x: 1 / (1 + np.exp(-x)) + x * np.exp(-x) / (1 + np.exp(-x)) ** 2),
}


@pytest.mark.parametrize("name", sorted(NUMPY))
def test_elementwise_forward_backward(name):
    act = get_activation(name)
    f, df = NUMPY[name]
    np.testing.assert_allclose(act.f(ZV), f(ZV), rtol=1e-13)
    np.testing.assert_allclose(act.backward(ZV, act.f(ZV), UP), UP * df(ZV), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(act.backward(ZV, None, UP), UP * df(ZV), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["linear", "sigmoid", "tanh"])
def test_derivative_in_a_equals_sympy_diff(name):
    act = get_activation(name)
    assert sp.simplify(act.derivative - act.derivative_in_a.subs(a, act.expr)) == 0


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "softplus", "elu", "silu"])
def test_stable_at_large_inputs(name):
    act = get_activation(name)
    big = np.array([-1000.0, -50.0, 50.0, 1000.0])
    assert np.isfinite(act.f(big)).all()
    assert np.isfinite(act.backward(big, None, np.ones(4))).all()


def test_relu_gradient_at_zero_is_zero_and_sigmoid_is_stable():
    relu = get_activation("relu")
    assert relu.backward(np.zeros(3), None, np.ones(3)).tolist() == [0, 0, 0]
    sig = get_activation("sigmoid")
    big = np.array([-1000.0, 1000.0])
    assert np.isfinite(sig.backward(big, None, np.ones(2))).all()
    np.testing.assert_array_equal(sig.f(big), [0.0, 1.0])


def test_softmax_forward_and_jvp():
    sm = get_activation("softmax")
    av = sm.f(ZV)
    e = np.exp(ZV - ZV.max(-1, keepdims=True))
    np.testing.assert_allclose(av, e / e.sum(-1, keepdims=True), rtol=1e-13)
    # Jacobian-vector product against the explicit Jacobian diag(a) - a a^T
    jac = np.einsum("...i,ij->...ij", av, np.eye(4)) - av[..., :, None] * av[..., None, :]
    np.testing.assert_allclose(sm.backward(ZV, av, UP), np.einsum("...ij,...i->...j", jac, UP), rtol=1e-12, atol=1e-15)


def test_names_and_errors():
    assert get_activation(None).name == "linear"
    assert "tanh" in get_activation("tanh").describe()
    with pytest.raises(UnsupportedError, match="gelu"):
        get_activation("gelu")
    with pytest.raises(TraceInputError, match="upstream"):
        get_activation("relu").backward(ZV, None, UP[0])
    assert z.name == "z"


@pytest.mark.torch
def test_relu_and_sigmoid_match_torch():
    import torch
    x = torch.tensor(ZV, requires_grad=True)
    (torch.relu(x) * torch.tensor(UP)).sum().backward()
    np.testing.assert_allclose(get_activation("relu").backward(ZV, None, UP), x.grad.numpy(), rtol=1e-12)
    x = torch.tensor(ZV, requires_grad=True)
    (torch.max(x, torch.tensor(0.0, dtype=torch.float64)) * torch.tensor(UP)).sum().backward()
    np.testing.assert_allclose(get_activation("maximum0").backward(ZV, None, UP), x.grad.numpy(), rtol=1e-12)
    F = torch.nn.functional
    for name, fn in [("softplus", F.softplus), ("elu", F.elu), ("silu", F.silu), ("sigmoid", torch.sigmoid),
                     ("tanh", torch.tanh)]:
        x = torch.tensor(ZV, requires_grad=True)
        out = fn(x)
        (out * torch.tensor(UP)).sum().backward()
        act = get_activation(name)
        np.testing.assert_allclose(act.f(ZV), out.detach().numpy(), rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose(act.backward(ZV, None, UP), x.grad.numpy(), rtol=1e-9, atol=1e-15)
    x = torch.tensor(ZV, requires_grad=True)
    (torch.softmax(x, -1) * torch.tensor(UP)).sum().backward()
    np.testing.assert_allclose(get_activation("softmax").backward(ZV, None, UP), x.grad.numpy(), rtol=1e-10, atol=1e-15)
