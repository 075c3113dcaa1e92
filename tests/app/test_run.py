"""``steptrace run``: options, exit codes, errors, progress line, what is left behind.

Fast in-process tests for the option parsing and the runner's pieces, then small
scripts under tests/scripts/ run in subprocesses (``python -m tracer run``): a script
that trains nothing, one that raises half-way, one that calls ``sys.exit(3)``, the
progress line on a real terminal (a pty), and run selection / sampling options.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import tracer.app.run as run
from tracer.app.script import exit_code
from tracer import Trace
from tracer.errors import TraceInputError

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
SCRIPTS = TESTS / "scripts"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "Agg",
       "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
ENV.pop("STEPTRACE_PROGRESS_INTERVAL", None)


def steptrace_run(args, cwd, env=None, prefix=None):
    """``python -m tracer run ARGS`` in ``cwd``; returns the CompletedProcess."""
    cmd = prefix or [sys.executable, "-m", "tracer", "run"]
    return subprocess.run(cmd + [str(a) for a in args], cwd=cwd, env=env or ENV, capture_output=True,
                          text=True, timeout=300)


def index(out: Path) -> dict:
    return json.loads((out / "index.json").read_text())


# --------------------------------------------------------------------- options
def test_parse_runs():
    assert [n for n in range(1, 8) if run.parse_runs("all")(n)] == list(range(1, 8))
    assert [n for n in range(1, 8) if run.parse_runs("2")(n)] == [2]
    assert [n for n in range(1, 8) if run.parse_runs("1,3")(n)] == [1, 3]
    assert [n for n in range(1, 8) if run.parse_runs("2-4")(n)] == [2, 3, 4]
    assert [n for n in range(1, 8) if run.parse_runs("5-")(n)] == [5, 6, 7]
    assert [n for n in range(1, 8) if run.parse_runs(" 1, 6-7 ")(n)] == [1, 6, 7]
    for bad in ("0", "x", "4-2", "1,,2", "-3"):
        with pytest.raises(TraceInputError, match="--runs"):
            run.parse_runs(bad)


def test_parse_size():
    assert run.parse_size("2G") == 2 * 1024**3
    assert run.parse_size("512M") == 512 * 1024**2
    assert run.parse_size("300k") == 300 * 1024
    assert run.parse_size("1.5GiB") == int(1.5 * 1024**3)
    assert run.parse_size("1000") == 1000
    assert run.parse_size("none") is None
    assert run.parse_size("unlimited") is None
    assert run.parse_size("0") == 0 == run.parse_size("0M")      # 0 means zero everywhere
    with pytest.raises(TraceInputError, match="--max-memory"):
        run.parse_size("lots")


def test_help_shows_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as exc:
        run.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "usage: steptrace run [options] SCRIPT [ARGS...]" in text
    for option, default in (("--runs", "all"), ("--every", "1"), ("--capture", "full"),
                            ("--max-memory", "2G"), ("--framework", "all"), ("--progress", "auto")):
        assert option in text
        assert re.search(re.escape(option) + r".*?\(default: " + re.escape(default) + r"\)", text, re.S)
    for option in ("--out", "--no-check", "--no-csv", "--no-excel"):
        assert option in text


@pytest.mark.parametrize("argv, message", [
    (["--every", "0", "x.py"], "--every: expected a positive integer"),
    (["--runs", "two", "x.py"], "--runs: expected"),
    (["--max-memory", "lots", "x.py"], "--max-memory: expected a size"),
    (["missing_script.py"], "SCRIPT: can't open file"),
])
def test_bad_options_exit_2_with_a_plain_message(argv, message, tmp_path, capsys, monkeypatch):
    (tmp_path / "x.py").write_text("print('never run')\n")
    monkeypatch.chdir(tmp_path)
    assert run.main(argv) == 2
    err = capsys.readouterr()
    assert message in err.err and "never run" not in err.out
    assert not any(tmp_path.glob("*.steptrace"))


def test_exit_codes_follow_python():
    assert exit_code(SystemExit()) == 0
    assert exit_code(SystemExit(0)) == 0
    assert exit_code(SystemExit(3)) == 3
    assert exit_code(SystemExit(-1)) == 255
    assert exit_code(SystemExit(True)) == 1
    assert exit_code(SystemExit("bye")) == 1


def test_fit_callbacks_are_added_without_touching_the_users_list():
    from hooks.autotrace.keras_fit import add_callback
    cb = object()
    user = ["a"]
    args, kwargs = add_callback((), {"callbacks": user}, cb)
    assert kwargs["callbacks"] == ["a", cb] and user == ["a"]
    args, kwargs = add_callback(("x", "y"), {}, cb)
    assert kwargs["callbacks"] == [cb] and args == ("x", "y")
    args, kwargs = add_callback(("x", "y", 4, 2, 0, ("b",)), {}, cb)     # callbacks given positionally
    assert args[5] == ["b", cb] and "callbacks" not in kwargs


def test_rerun_replaces_only_its_own_runs(tmp_path):
    out = tmp_path / "s.steptrace"
    (out / "run_1").mkdir(parents=True)
    (out / "run_1" / "meta.json").write_text("{}")
    (out / "run_7").mkdir()
    (out / "run_7" / "meta.json").write_text("{}")        # not listed in the index: not ours
    (out / "notes.txt").write_text("mine")
    (out / "index.json").write_text(json.dumps({"runs": [{"dir": "run_1"}, {"dir": "../elsewhere"}]}))
    session = run.OutputDir(out).open()
    assert (out / "run_1").exists() and (out / "index.json").exists()      # untouched until the end
    session.run_path(1).mkdir()
    (session.run_path(1) / "meta.json").write_text('{"new": 1}')
    session.commit(["run_1"], {"runs": [{"dir": "run_1"}]})
    assert (out / "run_1" / "meta.json").read_text() == '{"new": 1}'
    assert (out / "run_7").exists() and (out / "notes.txt").exists() and (tmp_path / "elsewhere").exists() is False
    assert json.loads((out / "index.json").read_text()) == {"runs": [{"dir": "run_1"}]}
    assert sorted(p.name for p in out.iterdir()) == [".steptrace.lock", "index.json", "notes.txt", "run_1", "run_7"]


def test_post_import_hook_fires_once_after_the_module_ran(tmp_path, monkeypatch):
    from hooks.autotrace.imports import PostImportFinder
    (tmp_path / "steptrace_fake_fw.py").write_text("VALUE = 41\nVALUE += 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = []
    finder = PostImportFinder({"steptrace_fake_fw": lambda m: seen.append(m.VALUE)})
    sys.meta_path.insert(0, finder)
    try:
        import steptrace_fake_fw
        assert seen == [42]
        # the module keeps its real loader; the finder is spent
        assert type(steptrace_fake_fw.__loader__).__name__ == "SourceFileLoader"
        assert steptrace_fake_fw.__spec__.loader is steptrace_fake_fw.__loader__
        assert finder.callbacks == {}
    finally:
        sys.meta_path.remove(finder)
        sys.modules.pop("steptrace_fake_fw", None)


def test_runner_imports_no_framework():
    """tracer.app.run and hooks.autotrace load Keras/PyTorch only when the script does."""
    code = ("import sys, tracer.app.run, hooks.autotrace; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'tensorflow', 'keras'}))")
    res = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=60)
    assert res.stdout.strip() == "[]", res.stderr


# ------------------------------------------------------------- running scripts
def test_script_that_trains_nothing_runs_as_with_python(tmp_path):
    script = SCRIPTS / "no_training.py"
    plain = subprocess.run([sys.executable, str(script), "a", "--flag", "-v"], cwd=tmp_path, env=ENV,
                           capture_output=True, text=True, timeout=60)
    traced = steptrace_run([script, "a", "--flag", "-v"], tmp_path)
    assert traced.returncode == 0 == plain.returncode
    # same argv, __name__, cwd, sys.path[0], __file__ and results
    assert traced.stdout == plain.stdout
    assert "argv ['a', '--flag', '-v']" in traced.stdout and "name __main__" in traced.stdout
    assert "no_training.py trained nothing steptrace can trace (it imported neither Keras nor PyTorch)" \
        in traced.stderr
    assert not (SCRIPTS / "no_training.steptrace").exists()      # nothing left behind for nothing


@pytest.mark.torch
def test_torch_imported_but_nothing_trained(tmp_path):
    script = tmp_path / "just_tensors.py"
    script.write_text("import torch\nprint(float(torch.ones(3).sum()))\n")
    res = steptrace_run(["-o", tmp_path / "out", script], tmp_path)
    assert res.returncode == 0 and res.stdout == "3.0\n"
    assert "trained nothing steptrace can trace (it imported PyTorch but no training step was recorded)" \
        in res.stderr
    assert not (tmp_path / "out").exists()
    res = steptrace_run(["-o", tmp_path / "out", "--framework", "keras", script], tmp_path)
    assert "(it imported PyTorch, which --framework keras leaves untraced)" in res.stderr


@pytest.mark.torch
def test_torch_script_raising_half_way_keeps_its_steps(tmp_path):
    out = tmp_path / "out"
    res = steptrace_run(["-o", out, "--no-excel", SCRIPTS / "torch_raise.py"], tmp_path)
    assert res.returncode == 1, res.stderr
    tb = res.stderr[res.stderr.index("Traceback (most recent call last):"):]
    assert tb.splitlines()[1].strip().startswith(f'File "{SCRIPTS / "torch_raise.py"}", line')
    assert "RuntimeError: stopping in epoch 3" in tb and "tracer/app/" not in tb
    assert "\x1b[K" not in res.stderr                       # no progress line: not a terminal
    idx = index(out)
    assert idx["exit_code"] == 1 and idx["error"] == "RuntimeError: stopping in epoch 3"
    (entry,) = idx["runs"]
    assert entry["steps"] == 12 and entry["verdict"] == "passed" and entry["error"].startswith("RuntimeError")
    trace = Trace.load(out / "run_1")
    assert trace.steps[["epoch", "batch"]].values.tolist()[-3:] == [[2, 5], [3, 1], [3, 2]]
    printed = json.loads(res.stdout.split("w before the error:")[1].strip())
    assert trace.param_values("w", "after")[-1].ravel().tolist() == printed     # bit for bit
    assert sorted(p.name for p in (out / "run_1" / "csv").glob("*.csv")) == \
        ["data.csv", "epochs.csv", "params.csv", "samples.csv", "steps.csv"]


@pytest.mark.torch
def test_exit_code_of_sys_exit_is_kept_and_frameworks_are_restored(tmp_path):
    out = tmp_path / "out"
    code = textwrap.dedent(f"""
        import sys, json, tracer.app.run
        from hooks.autotrace.imports import PostImportFinder
        rc = tracer.app.run.main(["-o", {str(out)!r}, "--no-excel", "--no-csv", {str(SCRIPTS / 'exits_3.py')!r}])
        import torch
        print(json.dumps({{"rc": rc, "argv": sys.argv, "path0": sys.path[0],
                          "finders": sum(isinstance(f, PostImportFinder) for f in sys.meta_path),
                          "backward": torch.Tensor.backward.__module__}}))
    """)
    res = subprocess.run([sys.executable, "-c", code, "wrapper-arg"], cwd=tmp_path, env=ENV,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    state = json.loads(res.stdout.strip().splitlines()[-1])
    assert state["rc"] == 3
    assert state["argv"] == ["-c", "wrapper-arg"] and state["path0"] == ""     # restored
    assert state["finders"] == 0 and state["backward"] == "torch._tensor"
    assert res.stdout.splitlines()[0].startswith("trained ")
    (entry,) = index(out)["runs"]
    assert entry["steps"] == 8 and entry["verdict"] == "passed"


@pytest.mark.torch
def test_two_torch_loops_give_two_traces(tmp_path):
    out = tmp_path / "out"
    res = steptrace_run(["-o", out, "--no-excel", "--no-csv", SCRIPTS / "two_torch_loops.py"], tmp_path)
    assert res.returncode == 0, res.stderr
    runs = index(out)["runs"]
    assert [(r["run"], r["steps"], r["verdict"]) for r in runs] == [(1, 6, "passed"), (2, 9, "passed")]
    first, second = Trace.load(out / "run_1"), Trace.load(out / "run_2")
    assert sorted(first.param_names) == ["bias", "weight"] and sorted(second.param_names) == ["b", "w"]
    assert first.meta["optimizer"]["name"] == "sgd" and "momentum_buffer" in first.state_slots("weight")
    assert first.steps["epoch"].max() == 2 and second.steps["epoch"].max() == 3
    printed = [float(line.split()[-1]) for line in res.stdout.splitlines() if line.startswith("loop ")]
    assert printed == [round(float(first.steps["loss"].iloc[-1]), 6), round(float(second.steps["loss"].iloc[-1]), 6)]


@pytest.mark.torch
def test_script_with_its_own_trace_torch_block_is_not_broken(tmp_path):
    out = tmp_path / "out"
    res = steptrace_run(["-o", out, "--no-excel", "--no-csv", SCRIPTS / "own_trace_torch.py"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "own trace steps 4" in res.stdout
    (entry,) = index(out)["runs"]
    assert entry["steps"] == 3 and entry["verdict"] == "passed"
    trace = Trace.load(out / "run_1")
    assert trace.param_values("w", "before")[0].ravel().tolist() == [0.0, 0.0]
    # run 1 ends where the script's block starts: four more full-batch steps from run 1's
    # last value give the script's final w
    data = trace.data.iloc[:20]
    X, y = data[["x0", "x1"]].to_numpy(np.float64), data[["y"]].to_numpy(np.float64)
    w = trace.param_values("w", "after")[-1].astype(np.float64)
    for _ in range(4):
        w = w - 0.1 * 2 / 20 * X.T @ (X @ w - y)
    printed = json.loads(next(line for line in res.stdout.splitlines() if line.startswith("w "))[2:])
    np.testing.assert_allclose(w.ravel(), printed, rtol=1e-5)


@pytest.mark.torch
def test_progress_line_on_a_terminal(tmp_path):
    """stderr a terminal: a progress line (epoch, steps) redrawn in place, erased before
    each line the script prints, and gone at the end."""
    import pty
    env = {**ENV, "STEPTRACE_PROGRESS_INTERVAL": "0.1"}
    pid, fd = pty.fork()
    if pid == 0:  # child: run steptrace on the terminal
        os.chdir(tmp_path)
        os.execvpe(sys.executable, [sys.executable, "-m", "tracer", "run", "-o", str(tmp_path / "out"),
                                    "--no-excel", "--no-csv", "--no-check",
                                    str(SCRIPTS / "slow_torch.py")], env)
    chunks, deadline = [], time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode()
    assert os.waitstatus_to_exitcode(status) == 0, text
    lines = re.findall(r"steptrace: torch \| epoch (\d) \| (\d+) steps recorded", text)
    assert len(lines) >= 3, text
    epochs = [int(e) for e, _ in lines]
    steps = [int(s) for _, s in lines]
    assert epochs == sorted(epochs) and steps == sorted(steps) and max(steps) <= 18
    for k in (1, 2, 3):                      # the script's lines are never glued to the progress line
        i = text.index(f"epoch {k} loss")
        assert text[i - 4:i] == "\r\x1b[K" or text[i - 1] == "\n", repr(text[i - 80:i + 20])
    summary = text[text.index("steptrace: 1 training run"):]
    assert "steps recorded |" not in summary


@pytest.mark.keras
def test_run_selection_and_sampling_options(tmp_path):
    """--runs 2 leaves the first fit untouched; --every 5 --capture summary records steps
    1, 6 and 11 of the second as scalars only."""
    out = tmp_path / "out"
    res = steptrace_run(["-o", out, "--runs", "2", "--every", "5", "--capture", "summary", "--no-excel",
                         "--no-csv", SCRIPTS / "two_fits.py"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "run 2 slope 1.3996835" in res.stdout            # training unchanged
    (entry,) = index(out)["runs"]
    assert entry["run"] == 2 and entry["steps"] == 3
    assert not (out / "run_1").exists()
    trace = Trace.load(out / "run_2")
    assert trace.steps["step"].tolist() == [1, 6, 11]
    assert {k: trace.meta["capture"][k] for k in ("mode", "every", "steps_seen")} == \
        {"mode": "summary", "every": 5, "steps_seen": 12}
    assert len(trace.params) == 0
    kernel_norm = next(c for c in trace.steps.columns if c.startswith("value_norm_") and c.endswith("kernel"))
    np.testing.assert_allclose(trace.steps[kernel_norm], [0.5, 1.0271562, 1.281273], rtol=1e-6)
