"""``steptrace run [options] SCRIPT [ARGS...]``: trace a training script without editing it.

Why: people debug the script they have, often pasted from a tutorial, and will not
edit it to try a tool. This runs the script as ``__main__`` (its own arguments,
working directory, ``sys.path[0]``, output and exit code) with tracing switched on
for whatever it trains (:mod:`hooks.autotrace`): every Keras ``Model.fit`` call and
every PyTorch training loop. Each run is saved as soon as it ends, so a script that
raises later still leaves it; at the end every run is checked against the math, its
summary printed, and CSV files and an Excel workbook written beside it::

    SCRIPT_DIR/SCRIPT.steptrace/            (or --out DIR)
        index.json                          what ran: runs, steps, verdicts, exit code
        run_1/                              the trace (Trace.load / steptrace check)
            check.txt  csv/  trace.xlsx

steptrace's own messages go to stderr, so the script's stdout is exactly what it
would print without steptrace. The progress line appears only when stderr is a
terminal. This module imports no framework: the hooks load when the script
imports Keras or PyTorch.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import runpy
import shutil
import sys
import threading
import time
from pathlib import Path

from ..errors import SteptraceError, TraceInputError
from ..recorder import CAPTURE_MODES
from .exit_codes import EXIT_BAD_INPUT

INDEX = "index.json"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


# ------------------------------------------------------------------ options
def parse_size(text: str) -> int | None:
    """``"2G"``, ``"512M"``, ``"300k"``, ``"1000000"`` -> bytes; ``"none"`` -> no limit."""
    if str(text).strip().lower() in ("none", "unlimited", "0"):
        return None
    m = _SIZE.match(str(text))
    if not m:
        raise TraceInputError(f"--max-memory: expected a size such as 512M or 2G (or 'none'), got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_runs(text: str):
    """``"all"``, ``"2"``, ``"1,3"``, ``"2-4"``, ``"3-"`` -> a predicate on run numbers (from 1)."""
    text = str(text).strip().lower()
    if text in ("all", "*", ""):
        return lambda n: True
    ranges = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d*))?", part)
        if not m or int(m.group(1)) < 1:
            raise TraceInputError(
                f"--runs: expected 'all' or run numbers from 1 such as 2, 1,3, 2-4 or 3-, got {text!r}")
        lo = int(m.group(1))
        if m.group(2) is None:
            hi = lo
        else:
            hi = int(m.group(2)) if m.group(2) else 10**12
        if hi < lo:
            raise TraceInputError(f"--runs: range {part!r} is empty (the end is before the start)")
        ranges.append((lo, hi))
    return lambda n: any(lo <= n <= hi for lo, hi in ranges)


def build_parser() -> argparse.ArgumentParser:
    """The ``steptrace run`` argument parser (exposed for --help and tests)."""
    p = argparse.ArgumentParser(
        prog="steptrace run",
        usage="steptrace run [options] SCRIPT [ARGS...]",
        description="Run a training script unchanged, as `python SCRIPT ARGS...` would, and trace\n"
                    "every Keras Model.fit call and the PyTorch training it does. Each run is saved,\n"
                    "checked step by step against the math, and exported to CSV and Excel. The\n"
                    "script's output and exit code are kept; steptrace's messages go to stderr.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Options go before SCRIPT; everything after SCRIPT is passed to the script.\n"
               "Each Keras fit call is one run, and so is each PyTorch training loop (a loop that\n"
               "trains other tensors starts a new one; PyTorch runs are numbered when the script\n"
               "ends). Output: DIR/run_N/ (the trace: steptrace check/explain/\n"
               "export take it), with check.txt, csv/ and trace.xlsx; DIR/index.json lists the runs.\n"
               "Example: steptrace run --every 10 --capture summary train.py --epochs 5")
    p.add_argument("script", metavar="SCRIPT", help="the Python script to run (as __main__)")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="the script's own arguments")
    p.add_argument("-o", "--out", metavar="DIR",
                   help="output directory (default: SCRIPT.steptrace next to the script)")
    what = p.add_argument_group("what to record")
    what.add_argument("--runs", default="all", metavar="SPEC",
                      help="which training runs to record, numbered from 1 in the order they start: "
                           "all, 2, 1,3, 2-4, 3- (default: %(default)s)")
    what.add_argument("--framework", choices=["all", "keras", "torch"], default="all",
                      help="trace only this framework's training (default: %(default)s)")
    how = p.add_argument_group("how much to record")
    how.add_argument("--every", type=int, default=1, metavar="K",
                     help="record every K-th training step; the others run untouched (default: %(default)s)")
    how.add_argument("--capture", choices=CAPTURE_MODES, default="full",
                     help="full: batch rows, predictions, gradients, parameters and optimizer state; "
                          "summary: per-step scalars only (loss, lr, norms) (default: %(default)s)")
    how.add_argument("--max-memory", default="2G", metavar="SIZE",
                     help="memory budget per run; past it the run falls back to summary capture, "
                          "e.g. 512M, 2G, none (default: %(default)s)")
    after = p.add_argument_group("after the script")
    after.add_argument("--no-check", action="store_true", help="do not check the runs against the math")
    after.add_argument("--no-csv", action="store_true", help="do not write CSV files")
    after.add_argument("--no-excel", action="store_true", help="do not write the Excel workbook")
    after.add_argument("--progress", choices=["auto", "on", "off"], default="auto",
                       help="progress line while the script trains: auto = only when stderr is a "
                            "terminal (default: %(default)s)")
    return p


# ------------------------------------------------------------------ output
def _say(*lines: str) -> None:
    """steptrace's own messages: stderr, after whatever the script left in stdout."""
    try:
        sys.stdout.flush()
    except Exception:
        pass
    for line in lines:
        print(line, file=sys.stderr)
    sys.stderr.flush()


def default_out_dir(script: Path) -> Path:
    """``SCRIPT_DIR/SCRIPT_STEM.steptrace``: next to the script, named after it."""
    return script.parent / f"{script.stem}.steptrace"


def _prepare_out_dir(out: Path) -> bool:
    """Create ``out``; remove the run directories a previous ``steptrace run`` listed there.

    Only directories named in our own ``index.json`` are removed, so nothing else in
    ``out`` is ever touched. Returns True if ``out`` did not exist before.
    """
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    index = out / INDEX
    if not index.is_file():
        return created
    try:
        old = json.loads(index.read_text())
        names = [r["dir"] for r in old.get("runs", [])]
    except (ValueError, KeyError, TypeError, AttributeError):
        return created
    for name in names:
        path = out / str(name)
        if re.fullmatch(r"run_\d+", str(name)) and path.is_dir() and (path / "meta.json").exists():
            shutil.rmtree(path, ignore_errors=True)
    index.unlink(missing_ok=True)
    return created


class _Saver:
    """Saves each finished run at once (crash safety) and remembers what was saved."""

    def __init__(self, out: Path):
        self.out = out
        self.saved: list[dict] = []

    def __call__(self, run) -> None:
        path = self.out / f"run_{run.number}"
        entry = {"run": run.number, "framework": run.framework, "label": run.label, "dir": path.name,
                 "steps": _n_steps(run.trace), "error": run.error, "notes": list(run.notes),
                 "trace": run.trace, "path": path, "saved": False}
        try:
            run.trace.save(path)
            entry["saved"] = True
            # a script may train many models: keep only what is on disk, reload to check
            entry["trace"] = run.trace = None
        except Exception as exc:
            entry["notes"].append(f"could not save the trace: {exc}")
            _say(f"steptrace: run {run.number}: could not save the trace to {path}: {exc}")
        self.saved.append(entry)


def _n_steps(trace) -> int:
    try:
        return int(trace.n_steps)
    except Exception:
        return 0


# ----------------------------------------------------------------- progress
class _Progress:
    """A one-line progress display on a terminal's stderr, redrawn twice a second.

    Runs in a daemon thread that only reads counters, so training steps pay nothing.
    The script's own writes go through :class:`_ClearingStream`, which erases the line
    first; the line is drawn only while the script's output ends with a newline, so it
    never splits or hides a line the script is writing (nor a Keras progress bar).
    """

    def __init__(self, auto, stream, interval: float = 0.5):
        interval = float(os.environ.get("STEPTRACE_PROGRESS_INTERVAL", interval))
        self.auto = auto
        self.stream = stream
        self.interval = interval
        self.shown = False
        self.at_line_start = True
        self.lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="steptrace-progress", daemon=True)
        self._started = time.monotonic()

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=2)
        self.clear()

    def clear(self):
        with self.lock:
            if self.shown:
                self.shown = False
                try:
                    self.stream.write("\r\x1b[K")
                    self.stream.flush()
                except Exception:
                    pass

    def _loop(self):
        while not self._stop.wait(self.interval):
            text = format_progress(self.auto.progress(), time.monotonic() - self._started)
            if text is None:
                continue
            with self.lock:
                if not self.at_line_start:
                    continue
                try:
                    self.stream.write("\r\x1b[K" + text)
                    self.stream.flush()
                    self.shown = True
                except Exception:
                    return


def format_progress(info: dict | None, elapsed: float | None = None) -> str | None:
    """The progress line for ``AutoTrace.progress()``'s dict (None: nothing to show yet)."""
    if not info or not info.get("steps"):
        return None
    parts = [f"steptrace: {info['framework']}"]
    if info.get("run"):
        parts[0] += f" run {info['run']}"
    if info.get("epoch") is not None:
        parts.append(f"epoch {info['epoch']}")
    if info.get("steps") is not None:
        parts.append(f"{info['steps']} steps recorded")
    if elapsed is not None:
        parts.append(f"{elapsed:.0f}s")
    return " | ".join(parts)


class _ClearingStream:
    """Wraps sys.stdout/sys.stderr while a progress line may be shown: erase it before
    the script writes, and note whether the script's output ends a line. Everything
    else is delegated to the real stream."""

    def __init__(self, stream, progress: _Progress):
        self._stream = stream
        self._progress = progress

    def write(self, text):
        progress = self._progress
        with progress.lock:
            if progress.shown:
                progress.clear()
            n = self._stream.write(text)
            if text:
                progress.at_line_start = text.endswith("\n")
        return n

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def __getattr__(self, name):
        return getattr(self._stream, name)


# ------------------------------------------------------------ running it
def _exit_code(exc: SystemExit) -> int:
    """What ``python script.py`` would exit with for ``SystemExit(code)``."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, bool):
        return int(code)
    if isinstance(code, int):
        return code & 0xFF            # as the operating system reports it (-1 -> 255)
    try:
        print(code, file=sys.stderr)
    except Exception:
        pass
    return 1


def _script_traceback(tb, script: Path):
    """The traceback from the script's first frame on, without steptrace's own frames
    (the runner, runpy, the ``fit`` wrapper): what ``python script.py`` would show."""
    import hooks.autotrace as auto
    ours = (Path(__file__).resolve().parent, Path(auto.__file__).resolve().parent)   # tracer/app, hooks/autotrace
    kept, started = [], False
    while tb is not None:
        path = Path(tb.tb_frame.f_code.co_filename).resolve()
        if not started and path == script:
            started = True
        if started and not any(d in path.parents for d in ours):
            kept.append(tb)
        tb = tb.tb_next
    if not kept:
        return None
    for a, b in zip(kept, kept[1:]):
        a.tb_next = b
    kept[-1].tb_next = None
    return kept[0]


def _print_script_error(exc: BaseException, script: Path) -> None:
    """Print the traceback as Python would, starting at the script's own frames."""
    tb = _script_traceback(exc.__traceback__, script)
    if tb is not None:
        exc.__traceback__ = tb
    try:
        sys.stdout.flush()
    except Exception:
        pass
    sys.excepthook(type(exc), exc, exc.__traceback__)


def run_script(script: Path, args: list[str]) -> tuple[int, BaseException | None]:
    """Run ``script`` as ``__main__`` with ``sys.argv = [script, *args]`` and the script's
    directory first on ``sys.path``, as ``python script args`` does; restores both.

    Returns ``(exit code, exception or None)``; the script's traceback is printed.
    """
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [str(script)] + list(args)
    sys.path.insert(0, str(script.parent))
    error = None
    code = 0
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        code = _exit_code(exc)
        if code != 0:
            error = exc
    except KeyboardInterrupt as exc:
        error = exc
        _print_script_error(exc, script)
        code = 130
    except BaseException as exc:  # the script's own error: report it as Python would
        error = exc
        _print_script_error(exc, script)
        code = 1
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path
    return code, error


def _check_and_export(entry: dict, args) -> None:
    """Check one saved run, print its summary, write check.txt, CSV and Excel."""
    trace, path = entry["trace"], entry["path"]
    if trace is None:
        from ..trace import Trace
        try:
            trace = Trace.load(path)
        except Exception as exc:
            _say(f"steptrace: run {entry['run']}: cannot read back {path}: {exc}")
            entry["verdict"], entry["files"] = "error", []
            return
    steps = entry["steps"]
    lines = [f"steptrace: run {entry['run']} - {entry['label']} - {steps} step{'s' if steps != 1 else ''} recorded"
             + (f" - ended by {entry['error']}" if entry["error"] else "")]
    for note in entry["notes"]:
        lines.append(f"  note: {note}")
    entry["verdict"] = None
    if not args.no_check:
        try:
            from .. import check
            report = check(trace)
            summary = report.summary()
            entry["verdict"] = report.verdict
            if entry["saved"]:
                (path / "check.txt").write_text(summary + "\n")
        except Exception as exc:
            summary = f"steptrace check: could not run: {type(exc).__name__}: {exc}"
            entry["verdict"] = "error"
        lines += ["  " + line for line in summary.splitlines()]
    written = []
    if entry["saved"] and not (args.no_csv and args.no_excel):
        try:
            import reports
        except ImportError as exc:
            lines.append(f"  export skipped: {exc}")
        else:
            if not args.no_csv:
                try:
                    reports.to_csv(trace, path / "csv")
                    written.append("csv/")
                except Exception as exc:
                    lines.append(f"  CSV export failed: {type(exc).__name__}: {exc}")
            if not args.no_excel:
                try:
                    reports.to_excel(trace, path / "trace.xlsx")
                    written.append("trace.xlsx")
                except Exception as exc:
                    lines.append(f"  Excel export failed: {type(exc).__name__}: {exc}")
    entry["files"] = written
    if entry["saved"]:
        lines.append(f"  saved: {path}" + (f" (+ {', '.join(written)})" if written else ""))
    _say(*lines)


def describe_error(exc: BaseException) -> str:
    """How the script ended, in a few words (see :func:`hooks.autotrace.describe_error`)."""
    from hooks.autotrace import describe_error as describe
    return describe(exc)


def _write_index(out: Path, script: Path, argv: list[str], code: int, entries: list[dict],
                 imported: list[str], error) -> None:
    index = {
        "script": str(script), "argv": argv, "exit_code": code, "imported": imported,
        "error": None if error is None else describe_error(error),
        "runs": [{k: v for k, v in e.items() if k not in ("trace", "path")} for e in entries],
    }
    try:
        (out / INDEX).write_text(json.dumps(index, indent=1, default=str))
    except OSError as exc:
        _say(f"steptrace: could not write {out / INDEX}: {exc}")


def main(argv: list[str] | None = None) -> int:
    """``steptrace run``: returns the script's exit code (2 for bad steptrace options)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)          # --help / usage errors exit as argparse does
    try:
        options = _resolve(args)
    except SteptraceError as exc:
        print(f"steptrace run: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    script, out = options["script"], options["out"]

    from hooks.autotrace import AutoTrace   # framework-free; frameworks load when the script imports them

    saver = _Saver(out)
    auto = AutoTrace(every=args.every, capture=args.capture, max_bytes=options["max_bytes"],
                     select=options["select"], frameworks=options["frameworks"], on_finish=saver)
    show = args.progress == "on" or (args.progress == "auto" and _isatty(sys.stderr))
    progress = None
    saved_streams = (sys.stdout, sys.stderr)
    if show:
        progress = _Progress(auto, sys.stderr)
        sys.stdout = _ClearingStream(sys.stdout, progress)
        sys.stderr = _ClearingStream(sys.stderr, progress)
        progress.start()
    auto.install()
    error = None
    try:
        code, error = run_script(script, args.args)
    finally:
        auto.uninstall(error)
        if progress is not None:
            progress.stop()
            sys.stdout, sys.stderr = saved_streams
    return _report(args, options, code, error, saver.saved)


def _resolve(args) -> dict:
    """Validate every option before anything is created or run."""
    script = Path(args.script)
    if not script.is_file():
        raise TraceInputError(f"SCRIPT: can't open file {str(script)!r}: no such file")
    script = script.resolve()
    if args.every < 1:
        raise TraceInputError(f"--every: expected a positive integer, got {args.every}")
    max_bytes = parse_size(args.max_memory)
    select = parse_runs(args.runs)
    out = Path(args.out).resolve() if args.out else default_out_dir(script)
    try:
        created = _prepare_out_dir(out)
    except OSError as exc:
        raise TraceInputError(f"--out: cannot create the output directory {out}: {exc.strerror or exc}") from None
    return {"script": script, "out": out, "created": created, "max_bytes": max_bytes, "select": select,
            "frameworks": ("keras", "torch") if args.framework == "all" else (args.framework,)}


def _report(args, options, code, error, entries) -> int:
    """After the script: check and export each run, print the summaries, write the index."""
    script, out = options["script"], options["out"]
    # the runner imports no framework, so these are the script's own imports
    imported = [f for f in ("keras", "torch") if f in sys.modules]
    if not entries:
        names = {"keras": "Keras", "torch": "PyTorch"}
        if not imported:
            why = "it imported neither Keras nor PyTorch"
        elif not set(imported) & set(options["frameworks"]):
            why = (f"it imported {' and '.join(names[f] for f in imported)}, which "
                   f"--framework {args.framework} leaves untraced")
        else:
            why = f"it imported {' and '.join(names[f] for f in imported)} but no training step was recorded"
            if args.runs != "all":
                why += f" in the selected runs ({args.runs})"
        _say(f"steptrace: {script.name} trained nothing steptrace can trace ({why}); no trace written.")
        if options["created"]:
            shutil.rmtree(out, ignore_errors=True)      # leave nothing behind for nothing
        else:
            _write_index(out, script, args.args, code, [], imported, error)
        return code
    _say("", f"steptrace: {len(entries)} training run{'s' if len(entries) != 1 else ''} traced "
             f"from {script.name}")
    for entry in sorted(entries, key=lambda e: e["run"]):
        _check_and_export(entry, args)
    _write_index(out, script, args.args, code, entries, imported, error)
    first = min(entries, key=lambda e: e["run"])
    _say(f"steptrace: traces written to {out}",
         f"  next: steptrace explain {first['path']} --step 1")
    return code


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:
        return False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
