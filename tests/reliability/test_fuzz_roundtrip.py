"""Hypothesis: random small traces survive save -> load -> check -> export.

Names are random unicode text and script, formula and mathtext payloads; shapes include
zero-size parameters; values are float16/32/64 with NaN and infinities. Saving either
refuses with one steptrace error line (a meta that could not be read back) or round-trips
the tables and meta exactly; the checker and the exports never raise anything but a
steptrace error. ``bench/fuzz_count.py`` runs more cases and prints the outcome counts.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from _fuzzcases import outcome, round_trip, traces

FAST = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
WITH_EXPORTS = settings(FAST, max_examples=25)


@FAST
@given(traces())
def test_save_load_check_round_trip(trace):
    with tempfile.TemporaryDirectory() as work:
        assert outcome(lambda: round_trip(trace, Path(work), exports=False)) in ("ok", "refused")


@WITH_EXPORTS
@given(traces())
def test_csv_and_xlsx_exports_of_random_traces(trace):
    with tempfile.TemporaryDirectory() as work:
        result = outcome(lambda: round_trip(trace, Path(work), exports=True))
        assert result in ("ok", "refused")
        leftovers = [p.name for p in Path(work).iterdir() if p.name.endswith(".partial") or ".tmp-" in p.name]
        assert leftovers == []
