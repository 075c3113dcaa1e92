"""The false-alarm sweep corpus (issue 9): realistic tutorial-style scripts under ``steptrace run``.

``tests/scripts/sweep/MANIFEST.json`` lists small seeded scripts in the style of public
tutorials (torch, Keras and NumPy; activations, losses and optimizers of the registry,
DataLoaders with more than two tensors, class models slicing their batch, NumPy models
passed as functions), four of them with a planted bug beside their clean twin, and three
that use what the registry does not model (LayerNorm, BatchNormalization, per-group optimizer
settings and NAdam). Each runs untraced and under ``python -m
tracer run`` through ``bench/public_scripts.py``. Asserted, stricter than the public
corpus: a clean script's every run is ``passed`` with no "cannot check" line; a script
outside the registry is ``incomplete`` and names the operation at the user's line (never
FAILED); a buggy one FAILS naming its finding; stdout, exit code, runs and steps are kept.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("_public_scripts_bench_sweep", ROOT / "bench" / "public_scripts.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

SWEEP = ROOT / "tests" / "scripts" / "sweep"
ENTRIES = bench.load_manifest(SWEEP / "MANIFEST.json")
RUN_ARGS = shlex.split(os.environ.get("STEPTRACE_PUBLIC_RUN_ARGS", "--no-excel --no-csv"))
TIMEOUT = float(os.environ.get("STEPTRACE_PUBLIC_TIMEOUT", "300"))
SLOW = [pytest.mark.public, pytest.mark.slow]


def _available(entry) -> bool:
    return importlib.util.find_spec(entry["framework"]) is not None


def _params():
    return [pytest.param(e, id=Path(e["file"]).stem, marks=SLOW) for e in ENTRIES]


@pytest.fixture(scope="module")
def results():
    """Every runnable sweep script, untraced and traced, two at a time."""
    runnable = [e for e in ENTRIES if _available(e)]
    no_excel = "--no-excel" in RUN_ARGS
    extra = [a for a in RUN_ARGS if a != "--no-excel"]
    done = bench.run_all(runnable, jobs=2, no_excel=no_excel, extra_args=extra, timeout=TIMEOUT, directory=SWEEP)
    return {r["file"]: r for r in done}


def _result(results, entry):
    if entry["file"] not in results:
        pytest.skip(f"{entry['framework']} is not installed")
    return results[entry["file"]]


def _checks(r) -> str:
    return "\n".join(f"--- run {run['run']} ({run['verdict']}): {run['label']}\n{run['check'] or '(no check.txt)'}"
                     for run in r["index"]["runs"])


@pytest.mark.parametrize("entry", _params())
def test_sweep_script_untraced_and_traced_alike(results, entry):
    r = _result(results, entry)
    unt, tr = r["untraced"], r["traced"]
    assert unt["exit_code"] == 0, unt["stderr_tail"][-1500:]
    assert tr["exit_code"] == 0, tr["stderr_tail"][-1500:]
    assert tr["stdout"] == unt["stdout"], "steptrace run changed the script's stdout"
    assert r["index"]["index_found"], f"{r['index']['index_error']}:\n{tr['stderr_tail'][-1500:]}"
    assert r["runs_got"] == entry["runs"] and r["steps_got"] == entry["steps"], (r["runs_got"], r["steps_got"])


@pytest.mark.parametrize("entry", _params())
def test_sweep_script_verdict(results, entry):
    r = _result(results, entry)
    assert r["index"]["runs"], f"no training run was recorded:\n{r['traced']['stderr_tail'][-1500:]}"
    assert r["expected_met"], f"{r['why']}\n{_checks(r)}"
    if entry["kind"] == "clean":
        assert entry.get("verdict") in ("passed", "incomplete")
        assert all(run["verdict"] == entry["verdict"] for run in r["index"]["runs"]), _checks(r)


# ------------------------------------------------- the corpus itself (fast)
def test_sweep_manifest_covers_the_corpus():
    """Every script listed once; at least 12, four planted bugs each with a clean twin, the
    three frameworks, and scripts outside the registry that must say "cannot check"."""
    files = sorted(p.name for p in SWEEP.glob("*.py"))
    listed = [e["file"] for e in ENTRIES]
    assert sorted(listed) == files and len(listed) == len(set(listed))
    assert len(files) >= 12
    assert {e["framework"] for e in ENTRIES} == {"torch", "keras", "numpy"}
    buggy = [e for e in ENTRIES if e["kind"] == "buggy"]
    assert len(buggy) >= 4
    by_file = {e["file"]: e for e in ENTRIES}
    for e in buggy:
        twin = by_file[e["twin"]]
        assert twin["kind"] == "clean" and twin["verdict"] == "passed" and twin.get("args") == e.get("args")
    assert sum(e.get("verdict") == "incomplete" for e in ENTRIES) >= 2


@pytest.mark.parametrize("entry", [pytest.param(e, id=Path(e["file"]).stem) for e in ENTRIES])
def test_sweep_manifest_entry_and_header(entry):
    assert set(entry) >= {"file", "provenance", "framework", "kind", "expected", "runs", "steps"}
    if entry["kind"] == "clean":
        assert entry["expected"] == "no FAILED verdict" and entry["verdict"] in ("passed", "incomplete")
        assert (entry["verdict"] == "incomplete") == bool(entry.get("cannot_check"))
    else:
        assert entry["expected"] in bench.FINDING_PATTERNS or re.fullmatch(r"[a-z_]+", entry["expected"])
    text = (SWEEP / entry["file"]).read_text()
    doc = text.split('"""')[1]
    for key in ("Provenance:", "Changes:", "Expected:"):
        assert key in doc, f"{entry['file']}: header lacks {key}"
    assert doc.split("Expected:")[1].strip().startswith(entry["kind"])
    assert "seed" in text


def test_strict_expectation_reads_verdicts_and_cannot_check_lines():
    run = {"run": 1, "verdict": "passed", "check": "steptrace check: OK - 3 steps\n  loss 3/3 passed\n"}
    two = [dict(run, verdict="incomplete", check="  cannot check: update of w: its optimizer param group\n"),
           dict(run, run=2, verdict="incomplete", check="  cannot check: optimizer: optimizer torch/nadam\n")]
    per_run = {"verdict": "incomplete", "cannot_check": ["param group", "torch/nadam"]}
    assert bench.strict_expectation(per_run, two)[0]
    assert not bench.strict_expectation(per_run, two[::-1])[0]
    assert bench.strict_expectation({"verdict": "passed"}, [run]) == (True, "")
    odd = dict(run, verdict="incomplete", check="steptrace check: INCOMPLETE\n  cannot check: model: numpy.max at a.py:3\n")
    met, why = bench.strict_expectation({"verdict": "passed"}, [odd])
    assert not met and "incomplete" in why
    assert bench.strict_expectation({"verdict": "incomplete", "cannot_check": "numpy.max at a.py:"}, [odd])[0]
    assert not bench.strict_expectation({"verdict": "incomplete", "cannot_check": "layer_norm"}, [odd])[0]
    sneaky = dict(run, check=run["check"] + "  cannot check: loss: recorded at 3 steps, checked at 0\n")
    assert not bench.strict_expectation({"verdict": "passed"}, [sneaky])[0]
