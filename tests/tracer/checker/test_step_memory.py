"""The check sizes its chunks of steps by what its first chunk held, not by a formula alone.

A formula of the program's size must be generous (S4: 11 MB a step, where a step holds
1.2 MB), and every chunk costs the same fixed work; so the first chunk is sized by the
formula and measured in the check's arena, and the chunks after it by that measurement.
Here a float32 MLP (torch steps) is checked with a budget that the formula spends on two
steps: the first chunk has two, the next ones more, every chunk holds at most the budget,
and the report is the same, row for row, as with the formula's chunks throughout.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

import tracer  # noqa: E402
import tracer.checker.core as core  # noqa: E402
from tracer.checker.feed import StepGroup  # noqa: E402
from tracer.checker.step_memory import MARGIN, SHRINK, StepMemory  # noqa: E402
from tracer.program.scratch import arena, empty, lent_mark, lent_since  # noqa: E402

from tests._torch_mlp import sgd_mlp_trace  # noqa: E402

STEPS = 24


def _group(steps, batch):
    return StepGroup(np.arange(steps), np.zeros((steps, batch), dtype=np.int64), np.arange(steps))


def test_the_estimate_is_the_formula_until_a_chunk_is_measured_then_the_measurement_per_row():
    est = StepMemory(10_000_000)
    assert est(_group(4, 10)) == 10_000_000
    with arena():
        mark = est.start()
        held = [empty((1 << 18,), np.float32) for _ in range(2)]      # 2 x 1 MiB, held at once
        est.measure(mark, _group(4, 10))
        del held
    per_row = MARGIN * (2 << 20) / 4 / 10
    assert est(_group(4, 10)) == int(np.ceil(per_row * 10))
    assert est(_group(4, 30)) == int(np.ceil(per_row * 30))          # a larger batch: more a step
    assert est(_group(4, 10_000)) == 10_000_000                      # never above the formula
    tiny = StepMemory(10_000_000)
    with arena():
        mark = tiny.start()
        block = empty((40_000,), np.float64)                          # one small block
        tiny.measure(mark, _group(1000, 10))
        del block
    assert tiny(_group(1, 10)) == 10_000_000 // SHRINK                # lowered at most SHRINK times


def test_outside_an_arena_nothing_is_measured():
    est = StepMemory(5000)
    mark = est.start()
    assert mark is None and lent_since(mark) == 0 and lent_mark() is None
    est.measure(mark, _group(3, 2))
    assert est(_group(3, 2)) == 5000


@pytest.fixture(scope="module")
def trace():
    return sgd_mlp_trace(STEPS, 32, 256, 64, 0.01, seed=2, y_scale=16)


def _chunked_check(trace, monkeypatch, budget_steps, measured=True):
    """The check with a budget of ``budget_steps`` steps by the formula: ``(report, the
    steps of each chunk, the arena bytes each chunk held)``."""
    arrays = trace.arrays()
    program = core.resolve_program(trace).program
    monkeypatch.setattr(core, "CHUNK_BYTES", budget_steps * core._bytes_per_step(arrays, program))
    if not measured:
        monkeypatch.setattr(StepMemory, "measure", lambda self, mark, group: None)
    sizes, held = [], []
    real = core.check_chunk

    def spy(program, arrays, sub, *a, **kw):
        mark = lent_mark()
        out = real(program, arrays, sub, *a, **kw)
        sizes.append(len(sub.steps))
        held.append(lent_since(mark))
        return out
    monkeypatch.setattr(core, "check_chunk", spy)
    return tracer.check(trace), sizes, held


def test_chunks_after_the_first_are_sized_by_its_measurement_within_the_budget(trace, monkeypatch):
    report, sizes, held = _chunked_check(trace, monkeypatch, 2)
    assert report.verdict == "passed", report.summary()
    assert sizes[0] == 2 and len(sizes) < STEPS // 2 and max(sizes) > 2 and sum(sizes) == STEPS
    assert max(held) <= core.CHUNK_BYTES          # every chunk within the budget, measured


def test_the_measured_chunks_give_the_same_report_as_the_formula_chunks(trace, monkeypatch):
    measured, sizes, _ = _chunked_check(trace, monkeypatch, 2)
    with monkeypatch.context() as m:
        formula, fixed, _ = _chunked_check(trace, m, 2, measured=False)
    assert fixed == [2] * (STEPS // 2) and sizes != fixed
    pd.testing.assert_frame_equal(measured.table, formula.table)


def test_the_longest_chunk_measured_sizes_the_next_ones():
    est = StepMemory(10 ** 7)
    with arena():
        for steps, mib in ((1, 3), (5, 5), (2, 1)):          # 3 MiB for one step, 1 MiB a step for five
            mark = est.start()
            held = [empty((1 << 18,), np.float32) for _ in range(mib)]
            est.measure(mark, _group(steps, 10))
            del held
    assert est(_group(1, 10)) == int(np.ceil(MARGIN * (5 << 20) / 5))
