"""``steptrace run`` killed at random moments (real subprocesses, a torch loop and a Keras fit).

Why real processes and real signals: what is on disk when the kernel ends a process
is the only evidence that matters. SIGKILL must keep every step up to the last flush
(in ``OUT/unfinished-*/stream_1``, which ``Trace.load`` reads); SIGTERM must save the
run, put it in place and end the process by SIGTERM; earlier results in OUT must
survive both; a second concurrent run into OUT gets a lock error.
"""
from __future__ import annotations

import json
import random
import signal
import subprocess
import textwrap
import time

import numpy as np
import pytest

from tracer import Trace
from tracer.app.run_dir import FLUSH_EVERY

from _kills import ENV, SCRIPTS, command, run, signal_at, start, unfinished

SEED = random.randrange(10**6)


def _earlier(out, script, steps=12) -> Trace:
    """A complete earlier session in OUT: the results a later killed session must not destroy."""
    done = run(script, out, steps, 0)
    assert done.returncode == 0, done.stderr
    return Trace.load(out / "run_1")


def _assert_earlier_intact(out, earlier: Trace) -> None:
    back = Trace.load(out / "run_1")
    assert back.n_steps == earlier.n_steps
    np.testing.assert_array_equal(back.params["after"].to_numpy(), earlier.params["after"].to_numpy())
    assert json.loads((out / "index.json").read_text())["runs"][0]["steps"] == earlier.n_steps


def _kept_prefix(trace: Trace) -> int:
    steps = trace.steps["step"].tolist()
    assert steps == list(range(1, len(steps) + 1))          # a prefix of the run, no hole
    assert np.isfinite(trace.steps["loss"]).all()
    return len(steps)


@pytest.mark.parametrize("script", ["steps_torch.py", pytest.param("steps_keras.py", marks=pytest.mark.keras)])
def test_sigkill_at_a_random_moment_keeps_all_but_the_last_flush(tmp_path, script):
    out = tmp_path / "out"
    earlier = _earlier(out, script)
    at = random.Random(SEED).randrange(FLUSH_EVERY + 5, 4 * FLUSH_EVERY)
    killed = signal_at(start(script, out, 1000, 0.005), at, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (session,) = unfinished(out)
    kept = _kept_prefix(Trace.load(session / "stream_1"))
    assert killed.printed - FLUSH_EVERY - 2 <= kept <= killed.printed + 1, (SEED, at, killed.printed, kept)
    _assert_earlier_intact(out, earlier)
    again = run(script, out, 8, 0)
    assert again.returncode == 0 and f"left its steps in {session}" in again.stderr, again.stderr
    assert Trace.load(out / "run_1").n_steps == 8 and Trace.load(session / "stream_1").n_steps == kept


@pytest.mark.keras
def test_keras_sigkill_just_after_a_flush_falls_due_keeps_the_flushed_steps(tmp_path):
    """Keras hands its steps over from the rings K at a time; they must be handed over before a
    flush falls due. Killed 3 steps after the 2nd flush was due, the run keeps its 100 steps
    (it kept 50 when the rings were read only when full, K steps later)."""
    out = tmp_path / "out"
    at = 2 * FLUSH_EVERY + 3
    killed = signal_at(start("steps_keras.py", out, 1000, 0.005), at, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (session,) = unfinished(out)
    kept = _kept_prefix(Trace.load(session / "stream_1"))
    assert 2 * FLUSH_EVERY <= kept <= killed.printed + 1, (killed.printed, kept)


@pytest.mark.parametrize("script", ["steps_torch.py", pytest.param("steps_keras.py", marks=pytest.mark.keras)])
def test_sigterm_saves_the_run_and_ends_by_sigterm(tmp_path, script):
    out = tmp_path / "out"
    earlier = _earlier(out, script)
    at = random.Random(SEED + 1).randrange(5, 3 * FLUSH_EVERY)
    killed = signal_at(start(script, out, 1000, 0.005), at, signal.SIGTERM)
    assert killed.returncode == -signal.SIGTERM, killed.stderr
    assert "Traceback" not in killed.stderr and "stopped by SIGTERM" in killed.stderr, killed.stderr
    assert not unfinished(out) and not list(out.glob(".replaced-*"))
    kept = _kept_prefix(Trace.load(out / "run_1"))
    assert killed.printed - 2 <= kept <= killed.printed + 1, (SEED, at, killed.printed, kept, earlier.n_steps)
    index = json.loads((out / "index.json").read_text())
    assert index["exit_code"] == 128 + signal.SIGTERM and index["runs"][0]["steps"] == kept


def test_untraced_sigterm_status_is_the_same(tmp_path):
    """The status steptrace ends with is the one the script gives without it."""
    import sys
    proc = subprocess.Popen([sys.executable, str(SCRIPTS / "steps_torch.py"), "1000", "0.005"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    killed = signal_at(proc, 5, signal.SIGTERM)
    assert killed.returncode == -signal.SIGTERM and killed.stderr == ""


def test_a_second_concurrent_run_into_one_out_gets_a_lock_error(tmp_path):
    out = tmp_path / "out"
    first = start("steps_torch.py", out, 1000, 0.03)           # 30 s: still running when the second starts
    assert first.stdout.readline().strip() == "1"
    second = run("steps_torch.py", out, 10, 0)
    assert second.returncode == 2 and second.stdout == ""            # the script did not run
    assert second.stderr.count("\n") == 1 and "being written by another steptrace run" in second.stderr
    rest, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert Trace.load(out / "run_1").n_steps == 1000 and not unfinished(out)


def test_runs_into_different_outs_at_once_do_not_meet(tmp_path):
    procs = [start("steps_torch.py", tmp_path / f"out{i}", 40, 0.005) for i in range(3)]
    for p in procs:
        p.communicate(timeout=300)
        assert p.returncode == 0
    for i in range(3):
        assert Trace.load(tmp_path / f"out{i}" / "run_1").n_steps == 40


def test_a_full_disk_leaves_the_earlier_results_and_no_session(tmp_path, monkeypatch, capsys):
    """Saving every run fails (ENOSPC): the earlier session's results stay in place, the
    new session's directory is gone, and each failure is one line."""
    import errno

    import tracer.app.run as run_app
    from tracer.errors import TraceFileError

    out = tmp_path / "out"
    script = SCRIPTS / "s0_numpy.py"
    argv = ["-o", str(out), "--numpy-params", "weights,biases", "--loss", "loss", "--no-csv", "--no-excel",
            str(script)]
    assert run_app.main(argv) == 0
    earlier = Trace.load(out / "run_1")
    capsys.readouterr()

    def full(self, path):
        raise TraceFileError(f"cannot write the trace to {path}: {errno.errorcode[errno.ENOSPC]} "
                             f"No space left on device")
    monkeypatch.setattr(Trace, "save", full)
    assert run_app.main(argv) == 0                   # the script's own outcome
    err = capsys.readouterr().err
    assert len([line for line in err.splitlines() if "could not save" in line]) == 1, err
    assert f"no trace could be saved; {out} is as it was before this run" in err
    assert "Traceback" not in err
    monkeypatch.undo()
    _assert_earlier_intact(out, earlier)
    assert not unfinished(out) and not list(out.glob(".replaced-*"))


def _interrupt(script: str, out, steps: int, at: int, *options: str):
    """``steptrace run`` (or, without ``out``, the script alone) sent SIGINT at step ``at``,
    with SIGINT at its default in the child, as a terminal's Ctrl-C finds it."""
    import sys
    cmd = (command(script, out, steps, 0.005, *options) if out is not None else
           [sys.executable, str(SCRIPTS / script), str(steps), "0.005"])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            cwd=str(SCRIPTS), preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return signal_at(proc, at, signal.SIGINT)


def test_sigint_keeps_every_step_and_ends_as_the_untraced_script(tmp_path):
    """An uncaught Ctrl-C: the script's KeyboardInterrupt traceback as Python prints it, the
    steps up to the interrupt saved, no check, and the process ends by SIGINT - the status
    the untraced script gets (the shell reports 130)."""
    at = random.Random(SEED + 2).randrange(5, 3 * FLUSH_EVERY)
    plain = _interrupt("steps_torch.py", None, 1000, at)
    assert plain.returncode == -signal.SIGINT and plain.stderr.rstrip().endswith("KeyboardInterrupt")
    out = tmp_path / "out"
    killed = _interrupt("steps_torch.py", out, 1000, at)
    assert killed.returncode == -signal.SIGINT, killed.stderr
    assert "KeyboardInterrupt" in killed.stderr and "stopped by SIGINT" in killed.stderr, killed.stderr
    assert "steptrace check:" not in killed.stderr            # the checks are left to the user
    assert not unfinished(out)
    kept = _kept_prefix(Trace.load(out / "run_1"))
    assert killed.printed - 2 <= kept <= killed.printed + 1, (SEED, at, killed.printed, kept)
    index = json.loads((out / "index.json").read_text())
    assert index["exit_code"] == 130 and index["runs"][0]["steps"] == kept


def test_a_script_that_catches_ctrl_c_ends_as_it_chooses(tmp_path):
    """The script catches KeyboardInterrupt and exits 3: so does steptrace run, after the
    usual check of every step recorded up to the interrupt."""
    script = tmp_path / "catches.py"
    script.write_text(textwrap.dedent("""
        import sys, time, torch
        from torch.utils.data import DataLoader, TensorDataset
        torch.manual_seed(0)
        X = torch.randn(64, 2)
        y = X @ torch.tensor([[2.0], [-3.4]]) + 4.2
        model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        done = 0
        try:
            while done < int(sys.argv[1]):
                for xb, yb in DataLoader(TensorDataset(X, y), batch_size=8, shuffle=True):
                    opt.zero_grad()
                    torch.nn.functional.mse_loss(model(xb), yb).backward()
                    opt.step()
                    done += 1
                    print(done, flush=True)
                    time.sleep(float(sys.argv[2]))
        except KeyboardInterrupt:
            print("caught", done, flush=True)
            sys.exit(3)
    """))
    killed = _interrupt(str(script), tmp_path / "out", 1000, 20)
    assert killed.returncode == 3, killed.stderr
    caught = int(killed.stdout.split("caught")[1].split()[0])
    assert "Traceback" not in killed.stderr and "steptrace check:" in killed.stderr, killed.stderr
    assert Trace.load(tmp_path / "out" / "run_1").n_steps == caught
