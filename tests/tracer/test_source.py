"""tracer.source.TraceSource: the contract every hook offers to the code that drives it."""
from __future__ import annotations

import numpy as np
import pytest

from tracer.source import TraceSource


def _check(source):
    assert isinstance(source, TraceSource)
    assert source.recorder.steps_seen >= 0
    assert isinstance(source.traces, list)


def test_the_numpy_hook_is_a_trace_source():
    from hooks.numpy import NumpyTracer
    tracer = NumpyTracer(params=["w"], inputs=np.ones((3, 1)), targets=np.ones((3, 1)))
    _check(tracer)
    w = np.zeros((1, 1))
    for _ in tracer.range(2):
        w = w + 1
    assert tracer.recorder.steps_seen == 2 and tracer.traces[0].n_steps == 2


def test_the_torch_hook_is_a_trace_source():
    pytest.importorskip("torch")
    from hooks.torch import trace_torch
    _check(trace_torch())


def test_the_keras_hook_is_a_trace_source():
    pytest.importorskip("keras")
    from hooks.keras import TraceCallback
    cb = TraceCallback()
    _check(cb)
    assert cb.traces[0].n_steps == 0


def test_a_plain_object_is_not():
    assert not isinstance(object(), TraceSource)
