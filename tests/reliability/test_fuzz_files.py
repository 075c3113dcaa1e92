"""Hypothesis: mutated trace files never crash ``steptrace check``.

One change per case to one file of a good trace: a node of ``meta.json`` replaced,
deleted, added or nested 300 deep; bytes truncated, flipped, inserted or replaced; a
table column dropped, retyped, overwritten, shuffled or added; a file deleted. The
command line (in-process ``tracer.app.cli.main``) must exit 0, 1 or 3 (it loaded and
checked) or 2 with exactly one line on stderr, never raise. The clean twin exits 0.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from _fuzzcases import check_mutated, file_mutations, good_trace_dir


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return good_trace_dir(tmp_path_factory.mktemp("fuzz"))


def test_clean_twin_checks(good):
    with tempfile.TemporaryDirectory() as work:
        assert check_mutated(good, ("meta.json", "none", lambda path: None), Path(work)) == ("ok", "")


@settings(max_examples=100, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mutation=file_mutations())
def test_mutated_files_give_exit_2_and_one_line_or_check(good, mutation):
    with tempfile.TemporaryDirectory() as work:
        result, stderr = check_mutated(good, mutation, Path(work))
        assert result in ("ok", "refused"), (mutation[:2], stderr)
        assert "Traceback" not in stderr


def test_a_parameter_name_that_is_not_utf8_is_refused_in_one_line(good):
    """Damaged bytes in a name of params.parquet: Arrow decodes the names only when the table
    check reads them, which raised UnicodeDecodeError out of ``steptrace check`` (found by
    the fuzz above); now exit 2 and one line naming the column."""
    def damage(path: Path) -> None:
        raw = (path / "params.parquet").read_bytes()
        assert b"dense/bias" in raw                  # stored as plain bytes (dictionary, statistics)
        (path / "params.parquet").write_bytes(raw.replace(b"dense/bias", b"\x9aense/bias"))
    with tempfile.TemporaryDirectory() as work:
        result, stderr = check_mutated(good, ("params.parquet", "bytes", damage), Path(work))
    assert result == "refused", stderr
    assert "params.parquet: column 'param': a name is not UTF-8 text" in stderr
