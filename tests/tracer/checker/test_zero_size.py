"""A parameter with no elements has nothing to compare: the checker skips it, never crashes.

Why: found by the fuzz suite (``bench/fuzz_count.py --zero-size``): ``tracer.check`` of
a trace with a ``(0,)`` parameter raised ``ValueError: attempt to get argmax of an empty
sequence``. The other parameters are still checked: a planted wrong update of the
weights is caught, and its clean twin passes.
"""
import numpy as np

import tracer
from tests._trace_factories import S0_META, s0_data
from tracer.recorder import Recorder


def _trace(plant: float = 0.0, steps: int = 5, lr: float = 0.02):
    x, targets, weights, biases = s0_data()
    n = x.shape[0]
    rec = Recorder(meta={**S0_META, "optimizer": {**S0_META["optimizer"], "lr": lr}})
    rec.set_data(x, targets)
    empty = np.zeros((0,))
    for i in range(steps):
        outputs = x @ weights + biases
        d = (outputs - targets) / n
        g_w, g_b = x.T @ d, np.sum(d, axis=0)
        new_w, new_b = weights - lr * g_w + (plant if i == 2 else 0.0), biases - lr * g_b
        rec.record_step(epoch=i + 1, batch=1, params_before={"weights": weights, "biases": biases, "empty": empty},
                        params_after={"weights": new_w, "biases": new_b, "empty": empty},
                        grads={"weights": g_w, "biases": g_b, "empty": empty}, rows=np.arange(n),
                        y_pred=outputs, loss=np.sum((outputs - targets) ** 2) / 2 / n, lr=lr, batch_size=n)
        weights, biases = new_w, new_b
    return rec.trace()


def test_a_zero_size_parameter_does_not_crash_the_check_and_the_others_are_checked():
    report = tracer.check(_trace())
    assert report.verdict == "passed", report.summary()
    planted = tracer.check(_trace(plant=1e-3))
    assert planted.verdict == "failed", planted.summary()
