"""Gradient clipping before the update: torch's clip_grad_norm_/clip_grad_value_ and Keras's
clipnorm/global_clipnorm/clipvalue, applied by the checker exactly as the frameworks do.

A clipped run passes its update check; the same run checked without being told about
the clipping fails (the planted twin); the factors equal torch's own.
"""
import numpy as np
import pytest
import torch

import tracer
from tracer import Recorder
from tracer.arrays import ParamArrays
from tracer.math.clipping import Clipping, transforms_of

RNG = np.random.default_rng(5)


def _grads(n_steps=4):
    return {"w": RNG.normal(size=(n_steps, 6)) * 3, "b": RNG.normal(size=(n_steps, 2))}


def _param(before, grad):
    return ParamArrays(shape=before.shape[1:], before=before, grad=grad, after=before)


def _factors_vs_torch(transform, torch_clip):
    grads = _grads()
    params = {k: _param(np.zeros_like(v), v) for k, v in grads.items()}
    clip = Clipping([transform], params, 4, lambda n, i0, i1: grads[n][i0:i1])
    for s in range(4):
        tg = {k: torch.tensor(v[s]) for k, v in grads.items()}
        ps = [torch.zeros_like(t, requires_grad=True) for t in tg.values()]
        for p, g in zip(ps, tg.values()):
            p.grad = g.clone()
        torch_clip(ps)
        for (name, _), p in zip(tg.items(), ps):
            np.testing.assert_allclose(clip.apply(name, s, s + 1, grads[name][s:s + 1])[0], p.grad.numpy(),
                                       rtol=1e-12)


def test_clip_grad_norm_matches_torch():
    _factors_vs_torch({"op": "clip_norm", "scope": "global", "max_norm": 1.5, "convention": "torch"},
                      lambda ps: torch.nn.utils.clip_grad_norm_(ps, 1.5))


def test_clip_grad_norm_with_another_norm_type_matches_torch():
    _factors_vs_torch({"op": "clip_norm", "scope": "global", "max_norm": 2.0, "norm_type": 1.0,
                       "convention": "torch"}, lambda ps: torch.nn.utils.clip_grad_norm_(ps, 2.0, norm_type=1.0))


def test_clip_grad_value_matches_torch():
    _factors_vs_torch({"op": "clip_value", "value": 0.7}, lambda ps: torch.nn.utils.clip_grad_value_(ps, 0.7))


def test_keras_options_become_transforms_and_zero_is_ignored_as_keras_does():
    keras = {"name": "sgd", "convention": "keras", "lr": 0.1}
    assert transforms_of({**keras, "clipnorm": 1.0}, {})[0]["scope"] == "param"
    assert transforms_of({**keras, "global_clipnorm": 1.0}, {})[0]["scope"] == "global"
    assert transforms_of({**keras, "clipvalue": 0.5}, {})[0]["op"] == "clip_value"
    assert transforms_of({**keras, "clipvalue": 0}, {}) == []


def test_keras_clipnorm_formula():
    g = np.array([[3.0, 4.0]])                 # norm 5
    params = {"w": _param(np.zeros((1, 2)), g)}
    clip = Clipping([{"op": "clip_norm", "scope": "param", "max_norm": 1.0, "convention": "keras"}], params, 1,
                    lambda n, i0, i1: g[i0:i1])
    np.testing.assert_allclose(clip.apply("w", 0, 1, g), [[0.6, 0.8]])


def _clipped_run(transform, record_transform=True):
    X = RNG.normal(size=(16, 2))
    Y = X @ np.array([[2.0], [-1.0]])
    meta = {"framework": "torch", "optimizer": {"name": "sgd", "convention": "torch", "lr": 0.1},
            "model": {"kind": "dense_stack", "layers": [{"type": "dense", "weight": "w", "bias": None,
                                                        "transpose": False, "activation": "linear"}]},
            "loss": {"name": "mse", "convention": "torch", "reduction": "mean"}}
    if record_transform:
        meta["grad_transform"] = [transform]
    rec = Recorder(meta=meta)
    rec.set_data(X, Y)
    w = np.zeros((2, 1))
    for step in range(3):
        pred = X @ w
        g = 2 * X.T @ (pred - Y) / len(X)
        params = {"w": _param(w[None].reshape(1, -1), g.reshape(1, -1))}
        clip = Clipping([transform], params, 1, lambda n, i0, i1: g.reshape(1, -1))
        new = w - 0.1 * clip.apply("w", 0, 1, g.reshape(1, -1)).reshape(w.shape)
        rec.record_step(epoch=1, batch=step + 1, params_before={"w": w}, params_after={"w": new}, grads={"w": g},
                        rows=np.arange(len(X)), y_pred=pred, loss=float(np.mean((pred - Y) ** 2)),
                        extra={"opt_step": step + 1})
        w = new
    return rec.trace()


@pytest.mark.parametrize("transform", [
    {"op": "clip_norm", "scope": "global", "max_norm": 0.5, "convention": "torch"},
    {"op": "clip_value", "value": 0.3}])
def test_a_clipped_run_passes_and_its_unclipped_reading_fails(transform):
    report = tracer.check(_clipped_run(transform))
    assert report.ok, report.summary()
    assert report.context["clipping"]["active_steps"] == 3
    planted = tracer.check(_clipped_run(transform, record_transform=False))
    assert planted.verdict == "failed"
    assert (planted.failures["quantity"] == "update").all()


def test_keras_clipvalue_zero_is_named_and_constant_clipping_is_a_note():
    trace = _clipped_run({"op": "clip_value", "value": 0.3})
    report = tracer.check(trace)
    (note,) = [f for f in report.findings if f.kind == "clipping"]
    assert note.failed is False and "every one of the 3" in note.message
    trace.meta["optimizer"] = {"name": "sgd", "convention": "keras", "lr": 0.1, "clipvalue": 0}
    trace.meta.pop("grad_transform")
    found = [f for f in tracer.check(trace).findings if f.kind == "clipping"]
    assert any(f.failed and "clipvalue=0" in f.message for f in found)
