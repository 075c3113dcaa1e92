"""``steptrace run`` with its memory sampled at each phase: where is the peak?

Why: ``/usr/bin/time`` gives one number for the whole process; a budget that does not
hold needs to know which phase holds the peak (recording, reading the stream back,
saving, the check). This runs ``steptrace run ARGS`` in this process with the phases
wrapped, and prints to stderr, before (``>``) and after (``<``) each, the process's
``VmRSS`` and ``VmHWM`` (its peak so far) and the bytes Arrow's pool has allocated:

    python bench/rss_phases.py -o OUT --max-memory 200M --no-csv --no-excel train.py ARGS
    python bench/peak_rss_run.py --phases        (the same for its 100k-parameter run)
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def memory() -> dict:
    """``{"VmRSS": MiB, "VmHWM": MiB, "arrow": MiB}`` of this process (Linux)."""
    found = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS", "VmHWM")):
                found[line.split(":")[0]] = int(line.split()[1]) // 1024
    try:
        import pyarrow
        found["arrow"] = pyarrow.total_allocated_bytes() // 2**20
    except ImportError:
        pass
    return found


def _wrap(owner, name: str, label: str | None = None) -> None:
    inner = getattr(owner, name)
    label = label or name

    @functools.wraps(inner)
    def sampled(*args, **kwargs):
        print(f"PHASE > {label:22s} {memory()}", file=sys.stderr, flush=True)
        try:
            return inner(*args, **kwargs)
        finally:
            print(f"PHASE < {label:22s} {memory()}", file=sys.stderr, flush=True)
    setattr(owner, name, sampled)


def main(argv: list[str]) -> int:
    import tracer.app.run as run
    import tracer.recorder as recorder
    import tracer.trace as trace
    _wrap(recorder.Recorder, "flush", "flush (recording)")
    _wrap(recorder.Recorder, "trace", "read back the stream")
    _wrap(run._Saver, "__call__", "save the run")
    _wrap(run, "_commit", "commit")
    _wrap(run, "_check_and_export", "load, check, export")
    _wrap(run, "check_run", "check")
    _wrap(trace, "read_trace", "Trace.load")
    code = run.main(argv)
    print(f"PHASE = {'end':22s} {memory()}", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
