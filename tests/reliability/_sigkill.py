"""Record steps in a child process with a streaming store and SIGKILL it at a chosen moment.

Shared by ``test_store.py`` (one kill at a random moment) and ``bench/sigkill_store.py``
(many kills, counting the steps kept against the steps recorded).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import sys, time
import numpy as np
from tracer import Recorder
from tracer.store import StreamStore
path, every = sys.argv[1], int(sys.argv[2])
rec = Recorder({"framework": "numpy"}, store=StreamStore(path, flush_every=every, flush_seconds=None))
rec.set_data(np.arange(20.0).reshape(10, 2), np.arange(10.0))
for s in range(1, 10**7):
    w = np.array([[s * 0.5], [-s * 0.25]])
    rec.record_step(epoch=1 + (s - 1) // 10, batch=1 + (s - 1) % 10, params_before={"w": w},
                    params_after={"w": w + 1}, grads={"w": w * 2}, rows=[s % 10], y_pred=[[s * 1.5]],
                    loss=float(s), lr=0.1)
    print(s, flush=True)
    time.sleep(0.002)
"""


def kill_at_random(path: Path, every: int, seconds: float) -> int:
    """Start the recording child, SIGKILL it after ``seconds``; return the last step it
    reported as recorded."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(every)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    first = proc.stdout.readline()              # recording has started
    assert first.strip() == "1", proc.stderr.read()
    time.sleep(seconds)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    lines = [first] + out.splitlines()
    return int(lines[-1]) if lines[-1].strip() else int(lines[-2])
