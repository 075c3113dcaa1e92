"""Start ``steptrace run`` on a test script in a child process and signal it at a chosen step.

Shared by ``test_run_kills.py`` and ``bench/sigkill_run.py``. The scripts
(``tests/scripts/steps_torch.py``, ``steps_keras.py``) print each step number once the
step is done, so the parent knows how far training got when it sent the signal.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "tests" / "scripts"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "Agg", "KERAS_BACKEND": "tensorflow",
       "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


@dataclass
class Killed:
    """What one signalled run left: the steps the script printed, its status and stderr."""

    printed: int
    returncode: int
    stdout: str
    stderr: str


def command(script: str, out: Path, steps: int, pause: float, *options: str) -> list[str]:
    """``python -m tracer run -o OUT [options] SCRIPT STEPS PAUSE``."""
    return [sys.executable, "-m", "tracer", "run", "-o", str(out), "--no-csv", "--no-excel", *options,
            str(SCRIPTS / script), str(steps), str(pause)]


def run(script: str, out: Path, steps: int, pause: float, *options: str) -> subprocess.CompletedProcess:
    """:func:`command` run to its end."""
    return subprocess.run(command(script, out, steps, pause, *options), capture_output=True, text=True,
                          env=ENV, cwd=str(out.parent), timeout=600)


def start(script: str, out: Path, steps: int, pause: float, *options: str) -> subprocess.Popen:
    """:func:`command` started in a child process."""
    return subprocess.Popen(command(script, out, steps, pause, *options), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, cwd=str(out.parent))


def signal_at(proc: subprocess.Popen, at_step: int, signum: int, timeout: float = 300) -> Killed:
    """Send ``signum`` once the script printed step ``at_step``; wait for the process to end."""
    printed, lines = 0, []
    deadline = time.monotonic() + timeout
    while printed < at_step and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.strip().isdigit():
            printed = int(line)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=timeout)
    for line in out.splitlines():        # steps printed between our read and the signal's arrival
        if line.strip().isdigit():
            printed = max(printed, int(line))
    return Killed(printed, proc.returncode, "".join(lines) + out, err)


def unfinished(out: Path) -> list[Path]:
    """The session directories a killed run left in OUT."""
    return sorted(out.glob("unfinished-*"))
