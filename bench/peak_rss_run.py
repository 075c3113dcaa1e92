"""Peak RSS of ``steptrace run --max-memory SIZE`` against the untraced run (issue 11 item 3).

Why: the memory budget is a promise about the whole process, so it is measured from
outside: the same ~100k-parameter torch script (128-256-256-1 MLP, 99,073 parameters,
Adam, 2,000 rows in DataLoader batches of 32, STEPS steps) runs untraced
(``python script.py``) and under ``steptrace run --max-memory SIZE --no-csv
--no-excel`` (the trace and check.txt, the default reports of a run this size), each
under ``/usr/bin/time -f %M``; it prints both peaks, the budget, and whether

    traced peak <= budget + untraced peak + 10% (of that sum)

holds, the run's verdict line and how many steps were kept in full. ``--phases`` runs it
through ``bench/rss_phases.py`` and prints VmRSS/VmHWM at each phase (which one holds
the peak).

    python bench/peak_rss_run.py --steps 2000 --max-memory 200M
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tracer.app.run_options import parse_size  # noqa: E402

SCRIPT = """
import sys
import torch
from torch.utils.data import DataLoader, TensorDataset
steps = int(sys.argv[1])
torch.manual_seed(0)
X = torch.randn(2000, 128)
y = X[:, :1] * 3 - X[:, 1:2] + 0.1 * torch.randn(2000, 1)
model = torch.nn.Sequential(torch.nn.Linear(128, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                            torch.nn.ReLU(), torch.nn.Linear(256, 1))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
loader = DataLoader(TensorDataset(X, y), batch_size=32, shuffle=True)
done = 0
while done < steps:
    for xb, yb in loader:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(xb), yb)
        loss.backward()
        opt.step()
        done += 1
        if done == steps:
            break
print("params", sum(p.numel() for p in model.parameters()), "final loss", float(loss))
"""


def peak_kib(cmd: list[str], cwd: Path) -> tuple[int, float, subprocess.CompletedProcess]:
    """``(peak RSS in KiB, seconds, result)`` of ``cmd`` under ``/usr/bin/time -f %M``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    start = time.monotonic()
    done = subprocess.run(["/usr/bin/time", "-f", "PEAK_KIB %M", *cmd], cwd=cwd, env=env, capture_output=True,
                          text=True)
    seconds = time.monotonic() - start
    line = [x for x in done.stderr.splitlines() if x.startswith("PEAK_KIB ")][-1]
    return int(line.split()[1]), seconds, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--max-memory", default="200M")
    parser.add_argument("--no-check", action="store_true", help="pass --no-check (the peak of recording alone)")
    parser.add_argument("--untraced-peak", type=float, metavar="MIB",
                        help="the untraced run's peak measured before (skips running it again)")
    parser.add_argument("--phases", action="store_true", help="print VmRSS/VmHWM at each phase of the traced run")
    args = parser.parse_args()
    budget = parse_size(args.max_memory)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        script = work / "mlp100k.py"
        script.write_text(SCRIPT)
        if args.untraced_peak is None:
            base, t0, plain = peak_kib([sys.executable, str(script), str(args.steps)], work)
        else:
            base, t0, plain = int(args.untraced_peak * 1024), 0.0, None
        runner = [str(ROOT / "bench" / "rss_phases.py")] if args.phases else ["-m", "tracer", "run"]
        traced, t1, run = peak_kib([sys.executable, *runner, "-o", str(work / "out"),
                                    "--max-memory", args.max_memory, "--no-csv", "--no-excel",
                                    *(["--no-check"] if args.no_check else []), str(script), str(args.steps)], work)
        plain = plain or run
        if run.returncode != 0 or plain.stdout != run.stdout:
            print(run.stderr[-3000:])
            print("FAILED: the traced run's exit code or output differs from the untraced run's")
            return 1
        summary = [x for x in run.stderr.splitlines() if "steptrace check:" in x or "note:" in x
                   or x.startswith("PHASE") and (args.phases and "flush" not in x)]
    mib = 1024
    bound = (budget / 1024 + base) * 1.10
    print(f"untraced: {plain.stdout.strip()}; peak RSS {base / mib:.0f} MiB in {t0:.0f} s")
    print(f"steptrace run --max-memory {args.max_memory} ({budget / 2**20:.0f} MiB): peak RSS "
          f"{traced / mib:.0f} MiB in {t1:.0f} s")
    print(f"bound (budget + untraced peak) x 1.10 = {bound / mib:.0f} MiB: "
          f"{'HOLDS' if traced <= bound else 'EXCEEDED'} (traced - untraced = {(traced - base) / mib:.0f} MiB)")
    for line in summary:
        print("  " + line.strip()[:300])
    return 0 if traced <= bound else 1


if __name__ == "__main__":
    sys.exit(main())
