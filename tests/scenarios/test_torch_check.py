"""tracer.check on the PyTorch scenarios: correct loops pass, planted bugs fail where they should.

These exercise the whole chain hooks.torch -> Trace -> checker (recomputed predictions,
losses, gradients and updates) on the traces of tests/_torch_scenarios.py.
"""
import pytest

import tracer
from hooks.torch import trace_torch

import _torch_scenarios as S


def traced(**kwargs):
    return trace_torch(strict=True, **kwargs)


def _report(run, **kw):
    tr, _ = run(traced, **kw)
    return tr.trace, tracer.check(tr.trace)


def test_check_s0t_passes():
    trace, report = _report(S.run_s0t, epochs=2)
    assert report.ok, str(report)


def test_check_s1_passes():
    trace, report = _report(S.run_s1, epochs=10)
    assert report.ok, str(report)


def test_check_s3_passes():
    trace, report = _report(S.run_s3, num_epochs=2)
    assert report.ok, str(report)


def test_check_s4_regression_names_the_double_averaging():
    trace, report = _report(S.run_s4_regression, num_examples=600, n_train=400, num_epochs=1)
    kinds = {f.kind for f in report.findings}
    assert "double_averaging" in kinds
    assert not report.ok
    # apart from the diagnosis, every recomputed number agrees
    assert report.table["passed"].all(), str(report)


def test_check_s4_multiclass_fails_on_b1_and_b2():
    trace, report = _report(S.run_s4_multiclass, n=96, num_epochs=1)
    assert not report.ok
    found = {(f.kind, f.param) for f in report.findings}
    assert ("never_updated", "b1") in found and ("updated_twice", "b2") in found


def test_check_forgotten_zero_grad_first_failure_at_step_2():
    trace, report = _report(S.run_s0t, epochs=1, zero_grad=False)
    assert not report.ok
    assert report.first_failing_step == 2
    assert any(f.kind == "grad_accumulating" and f.step == 2 for f in report.findings)
