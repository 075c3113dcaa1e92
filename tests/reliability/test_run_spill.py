"""Past ``--max-memory``, ``steptrace run`` keeps every step in full on disk and checks it
slice by slice (issue 11, item 3).

A torch loop under a tiny budget (2 MiB for the recorder): the saved run holds every
step's tables bit for bit as an unbudgeted run of the same script; its end-of-run check
reads only the steps that fit, says INCOMPLETE with how many were checked and prints
``steptrace check RUN --steps A:B`` for the rest; those slices pass; a fault planted in a
later step is caught by the slice that covers it, and not by the clean twin.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tracer import Trace
from tracer.app.run_options import OWN_MODULES_BYTES

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
ENV.pop("STEPTRACE_PROGRESS_INTERVAL", None)
STEPS = 40
#: a 2 MiB recorder budget: steptrace's own modules' allowance plus 2 MiB
_TWO_MIB_OVER = f"{OWN_MODULES_BYTES // 2**20 + 2}M"
SCRIPT = textwrap.dedent(f"""
    import sys
    import torch
    torch.manual_seed(0)
    X = torch.randn(64, 20)
    y = X[:, :1] * 2 - X[:, 1:2]
    model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))
    adam = "adam" in sys.argv
    opt = torch.optim.Adam(model.parameters(), lr=0.01) if adam else torch.optim.SGD(model.parameters(), lr=0.05)
    for step in range({STEPS}):
        i = (step * 16) % 64
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(X[i:i + 16]), y[i:i + 16])
        loss.backward()
        opt.step()
    print("final", float(loss))
""")


def _run(tmp: Path, name: str, budget: str, *extra: str) -> subprocess.CompletedProcess:
    script = tmp / "train.py"
    script.write_text(SCRIPT)
    return subprocess.run([sys.executable, "-m", "tracer", "run", "--max-memory", budget, "--progress", "off",
                           "-o", str(tmp / name), str(script), *extra], cwd=tmp, env=ENV, capture_output=True,
                          text=True, timeout=300)


def _check(path: Path, steps: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tracer", "check", str(path), "--steps", steps], env=ENV,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The script under a 2 MiB recorder budget (steptrace's own OWN_MODULES_BYTES + 2 MiB) and unbudgeted."""
    tmp = tmp_path_factory.mktemp("spill")
    small, whole = _run(tmp, "small", _TWO_MIB_OVER), _run(tmp, "whole", "none")
    assert small.returncode == 0 and whole.returncode == 0, small.stderr + whole.stderr
    assert small.stdout == whole.stdout                       # the script's own output, untouched
    return tmp, small


def _slice_command(stderr: str) -> tuple[int, int]:
    m = re.search(r"steptrace check \S+run_1 --steps (\d+):(\d+)", stderr)
    assert m, stderr
    return int(m.group(1)), int(m.group(2))


def test_every_step_is_kept_in_full_on_disk(runs):
    tmp, _ = runs
    small, whole = Trace.load(tmp / "small" / "run_1"), Trace.load(tmp / "whole" / "run_1")
    assert small.part is None and small.n_steps == STEPS
    assert sorted(set(small.params["step"])) == list(range(1, STEPS + 1))
    for name in ("data", "steps", "samples", "params", "epochs"):
        pd.testing.assert_frame_equal(small.tables()[name], whole.tables()[name], check_exact=True)
    assert len(list((tmp / "small" / "run_1" / "chunks").iterdir())) > 1      # it spilled


def test_end_of_run_check_is_a_bounded_slice_and_says_how_to_check_the_rest(runs):
    tmp, small = runs
    m = re.search(rf"INCOMPLETE - {STEPS} steps recorded, (\d+) checked", small.stderr)
    assert m, small.stderr
    checked = int(m.group(1))
    assert 1 <= checked < STEPS
    first, last = _slice_command(small.stderr)
    assert first == checked + 1 and last - first + 1 == checked
    entry = json.loads((tmp / "small" / "index.json").read_text())["runs"][0]
    assert entry["verdict"] == "incomplete" and entry["loaded_steps"] == [1, checked]
    assert "--steps" in (tmp / "small" / "run_1" / "check.txt").read_text()
    bounded = Trace.load(tmp / "small" / "run_1", max_bytes=2 * 1024**2)
    assert bounded.n_steps == STEPS and sorted(set(bounded.params["step"])) == list(range(1, checked + 1))
    assert any("--steps" in n for n in bounded.meta["notes"])


def test_the_slices_of_the_rest_pass(runs):
    tmp, small = runs
    first, last = _slice_command(small.stderr)
    per = last - first + 1
    for a in range(first, STEPS + 1, per):
        done = _check(tmp / "small" / "run_1", f"{a}:{a + per - 1}")
        assert done.returncode == 0, done.stdout + done.stderr
        n = min(STEPS, a + per - 1) - a + 2                   # and step a-1, for the optimizer state
        assert f"OK - {n} steps recorded, {n} checked" in done.stdout


def _plant(run: Path, step: int) -> None:
    """Nudge one recorded ``after`` value of ``step`` in the chunk that holds it."""
    for chunk in sorted((run / "chunks").iterdir()):
        params = pd.read_parquet(chunk / "params.parquet")
        rows = np.flatnonzero(params["step"].to_numpy() == step)
        if rows.size:
            params.loc[rows[0], "after"] = params.loc[rows[0], "after"] + np.float32(1e-2)
            params.to_parquet(chunk / "params.parquet")
            return
    raise AssertionError(f"step {step} is in no chunk")


def test_a_fault_past_the_first_slice_is_caught_by_its_slice(runs):
    tmp, _ = runs
    clean, bad = tmp / "small" / "run_1", tmp / "tampered"
    shutil.copytree(clean, bad)
    _plant(bad, 30)
    caught = _check(bad, "28:32")
    assert caught.returncode == 1 and "FAILED" in caught.stdout, caught.stdout
    assert "update" in caught.stdout
    twin = _check(clean, "28:32")
    assert twin.returncode == 0 and "OK - 6 steps recorded, 6 checked" in twin.stdout, twin.stdout
    assert _check(bad, "1:20").returncode == 0                 # a slice without it does not alarm


def test_with_a_stateful_optimizer_only_the_step_before_the_slice_has_its_update_unchecked(tmp_path):
    done = _run(tmp_path, "adam", _TWO_MIB_OVER, "adam")
    assert done.returncode == 0, done.stderr
    first, last = _slice_command(done.stderr)
    out = _check(tmp_path / "adam" / "run_1", f"{first}:{last}")
    n = last - first + 2
    assert f"INCOMPLETE - {n} steps recorded, {n} checked" in out.stdout, out.stdout
    assert f"checked at {n - 1} of {n} recorded steps" in out.stdout          # step first-1's own update
    assert "exp_avg_sq" in out.stdout and " 0 failed" in out.stdout


def test_a_slice_keeps_only_the_epochs_it_holds_whole_and_bad_slices_are_refused():
    from tracer.errors import TraceInputError
    from tracer.store_slice import Slice, parse_steps, whole_epochs
    steps = pd.DataFrame({"epoch": [1, 1, 1, 2, 2, 2, 3, 3, 3], "step": np.arange(1, 10)})
    epochs = pd.DataFrame({"epoch": [1, 2, 3], "logged_loss": [0.5, 0.4, 0.3]})
    part = Slice(Path("."), lo=3, hi=9, first=1, last=9, wanted=(4, 9))   # epoch 1 is cut: its end value sums steps 1-3
    assert whole_epochs(epochs, [steps], part)["epoch"].tolist() == [2, 3]
    assert parse_steps("4:6") == (4, 6) and parse_steps("7") == (7, 7) and parse_steps(":3") == (1, 3)
    for bad in ("0:3", "5:2", "a:b", "-1"):
        with pytest.raises(TraceInputError, match="--steps"):
            parse_steps(bad)
