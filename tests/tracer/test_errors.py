"""tracer.errors: one hierarchy, so the command line and callers can catch by meaning."""
from __future__ import annotations

import pickle

import pytest

from tracer import errors
from tracer.errors import (CannotCheck, SteptraceError, TraceFileError, TraceInputError, UnsupportedError,
                           UnsupportedModel)


def test_every_error_is_a_steptrace_error_and_keeps_its_builtin_meaning():
    assert issubclass(TraceInputError, ValueError) and issubclass(TraceFileError, OSError)
    for cls in (TraceInputError, TraceFileError, CannotCheck, UnsupportedError, UnsupportedModel):
        assert issubclass(cls, SteptraceError)
    for cls in (UnsupportedError, UnsupportedModel):
        assert issubclass(cls, CannotCheck)
    assert set(errors.__all__) == {"SteptraceError", "TraceInputError", "TraceFileError", "CannotCheck",
                                   "UnsupportedError", "UnsupportedModel"}


def test_cannot_check_carries_its_reason_and_survives_pickling():
    exc = UnsupportedModel("layer Conv2D")
    assert exc.reason == "layer Conv2D" == str(exc)
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is UnsupportedModel and back.reason == "layer Conv2D"


def test_the_math_reports_what_it_cannot_check_as_cannot_check():
    from tracer.math import get_loss
    with pytest.raises(CannotCheck, match="hinge") as info:
        get_loss({"name": "hinge"})
    assert "hinge" in info.value.reason


def test_the_torch_program_builder_uses_the_shared_class():
    torch = pytest.importorskip("torch")
    from hooks.torch import trace_torch
    from hooks.torch.emit import Unsupported
    assert issubclass(Unsupported, UnsupportedModel)
    w = torch.ones(2, 1, requires_grad=True)
    with trace_torch(strict=True) as tr:
        torch.cosh(torch.ones(3, 2) @ w).sum().backward()      # cosh is outside the registry
    (entry,) = tr.trace.meta["program"]["unsupported"]
    assert entry["op"] == "cosh" and entry["where"].startswith("test_errors.py:")
