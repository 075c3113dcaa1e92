"""tracer.program.legacy: a 0.1.0 trace (a dense stack and a loss spec in meta, no program)
is turned into a step program and checked as before, also after a save and load."""
from __future__ import annotations

import numpy as np
import pandas as pd

import tracer
from tracer.program.legacy import from_dense_stack
from _trace_factories import s0_trace


def test_a_trace_without_a_program_is_checked_from_its_dense_stack(tmp_path):
    trace = s0_trace(iterations=4)
    assert "program" not in trace.meta and trace.meta["model"]["kind"] == "dense_stack"
    report = tracer.check(trace)
    assert report.verdict == "passed" and report.cannot_check == []
    assert set(report.table["quantity"]) >= {"loss", "prediction", "grad", "update"}
    path = trace.save(tmp_path / "old.trace")
    again = tracer.check(tracer.Trace.load(path))
    pd.testing.assert_frame_equal(again.table, report.table)


def test_the_dense_stack_becomes_matmul_add_and_the_declared_loss():
    trace = s0_trace(iterations=1)
    program = from_dense_stack(trace.meta["model"], 1, 1, ["weights", "biases"])
    ops = [n.op for n in program.primitive_nodes]
    assert ops[:2] == ["matmul", "add"]
    assert list(program.params) == ["weights", "biases"]
    assert np.isfinite(tracer.check(trace).table["expected"]).all()
