"""``steptrace run [options] SCRIPT [ARGS...]``: trace a training script without editing it.

Why: people debug the script they have, often pasted from a tutorial, and will not
edit it to try a tool. This runs the script as ``__main__`` (its own arguments,
working directory, ``sys.path[0]``, output and exit code) with tracing switched on
for whatever it trains (:mod:`hooks.autotrace`): every Keras ``Model.fit`` call,
every PyTorch training loop and, with ``--numpy-params weights,biases``, the NumPy
loop that updates those variables. Each run is saved as soon as it ends, so a script that
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

import json
import re
import shlex
import shutil
import sys
from pathlib import Path

from ..errors import SteptraceError, TraceInputError
from ..progress import ClearingStream, LiveProgress, is_tty
from .exit_codes import EXIT_BAD_INPUT
from . import ranks_run
from .run_options import NUMPY_OPTIONS, build_parser, parse_names, parse_runs, parse_size
from .script import run_script

__all__ = ["main", "build_parser", "parse_runs", "parse_size", "run_script", "default_out_dir"]

INDEX = "index.json"


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
    index = out / ranks_run.index_name(INDEX)
    if not index.is_file():
        return created
    try:
        old = json.loads(index.read_text())
        names = [r["dir"] for r in old.get("runs", [])]
    except (ValueError, KeyError, TypeError, AttributeError):
        return created
    for name in names:
        path = out / str(name)
        if re.fullmatch(r"run_\d+(/rank=\d+)?", str(name)) and path.is_dir() and (path / "meta.json").exists():
            shutil.rmtree(path, ignore_errors=True)
    index.unlink(missing_ok=True)
    return created


class _Saver:
    """Saves each finished run at once (crash safety) and remembers what was saved."""

    def __init__(self, out: Path):
        self.out = out
        self.saved: list[dict] = []

    def __call__(self, run) -> None:
        path = ranks_run.run_path(self.out, run.number)     # run_N/rank=R under torchrun
        entry = {"run": run.number, "framework": run.framework, "label": run.label,
                 "dir": path.relative_to(self.out).as_posix(),
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


def run_label(label: str, trace) -> str:
    """A label a user recognises: a summary capture records no parameters by name, so the
    hook's "training ?" is completed from the tensors whose norms it recorded."""
    if "training ?" not in str(label) or trace is None:
        return label
    names = [c[len("value_norm_"):] for c in trace.steps.columns if str(c).startswith("value_norm_")]
    if names:
        what = ", ".join(names[:4]) + (f", ... ({len(names)} tensors)" if len(names) > 4 else "")
    else:
        opt = (trace.meta.get("optimizer") or {}).get("name")
        what = f"with {opt}" if opt else "(no tensor names recorded)"
    return str(label).replace("training ?", f"training {what}", 1) + " [summary capture: norms and losses]"


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
    entry["label"] = run_label(entry["label"], trace)
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
        (out / ranks_run.index_name(INDEX)).write_text(json.dumps(index, indent=1, default=str))
    except OSError as exc:
        _say(f"steptrace: could not write {out / ranks_run.index_name(INDEX)}: {exc}")


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
                     select=options["select"], frameworks=options["frameworks"], on_finish=saver,
                     numpy=options["numpy"])
    show = args.progress == "on" or (args.progress == "auto" and is_tty(sys.stderr))
    progress = None
    saved_streams = (sys.stdout, sys.stderr)
    if show:
        progress = LiveProgress(auto.progress, sys.stderr)
        sys.stdout = ClearingStream(sys.stdout, progress)
        sys.stderr = ClearingStream(sys.stderr, progress)
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
    options["numpy_status"] = (auto.numpy_arrivals, list(auto.numpy_notes))
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
    numpy = _numpy_loop(args, script)
    out = Path(args.out).resolve() if args.out else default_out_dir(script)
    try:
        created = _prepare_out_dir(out)
    except OSError as exc:
        raise TraceInputError(f"--out: cannot create the output directory {out}: {exc.strerror or exc}") from None
    return {"script": script, "out": out, "created": created, "max_bytes": max_bytes, "select": select,
            "frameworks": ("keras", "torch") if args.framework == "all" else (args.framework,),
            "numpy": numpy}


def _numpy_loop(args, script: Path):
    """``(site, options)`` of the NumPy loop named by ``--numpy-params`` (None without it)."""
    given = [f"--{name.replace('_', '-')}" for name in NUMPY_OPTIONS if getattr(args, name) is not None]
    if args.numpy_params is None:
        if given:
            raise TraceInputError(f"{given[0]}: names a variable of a NumPy loop; give --numpy-params too")
        return None
    for name in NUMPY_OPTIONS:
        value = getattr(args, name)
        if value is not None and not value.isidentifier():
            raise TraceInputError(f"--{name.replace('_', '-')}: expected a variable name, got {value!r}")
    from hooks.autotrace.numpy_loop import find_loop
    from hooks.autotrace.numpy_steps import NumpyOptions
    params = parse_names(args.numpy_params)
    try:
        source = script.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceInputError(f"SCRIPT: cannot read {script}: {exc}") from None
    site = find_loop(source, str(script), params)
    return site, NumpyOptions(params, predictions=args.predictions, loss=args.loss, inputs=args.inputs,
                              targets=args.targets, model=args.numpy_model, loss_fn=args.numpy_loss)


def _nothing_traced(args, options, imported) -> str:
    """Why no run was recorded, in the user's terms."""
    names = {"keras": "Keras", "torch": "PyTorch"}
    if options["numpy"] is not None:
        site = options["numpy"][0]
        arrivals, notes = options["numpy_status"]
        if not arrivals:
            why = f"the NumPy loop at {site.describe()} never ran"
        else:
            why = f"the NumPy loop at {site.describe()} completed no iteration"
        return why + "".join(f"; {n}" for n in notes)
    if not imported:
        return "it imported neither Keras nor PyTorch"
    if not set(imported) & set(options["frameworks"]):
        return (f"it imported {' and '.join(names[f] for f in imported)}, which "
                f"--framework {args.framework} leaves untraced")
    why = f"it imported {' and '.join(names[f] for f in imported)} but no training step was recorded"
    if args.runs != "all":
        why += f" in the selected runs ({args.runs})"
    return why


def _report(args, options, code, error, entries) -> int:
    """After the script: check and export each run, print the summaries, write the index."""
    script, out = options["script"], options["out"]
    # the runner imports no framework, so these are the script's own imports
    imported = [f for f in ("keras", "torch") if f in sys.modules]
    if not entries:
        why = _nothing_traced(args, options, imported)
        _say(f"steptrace: {script.name} trained nothing steptrace can trace ({why}); no trace written.")
        if options["created"] and ranks_run.job_rank() is None:   # another rank may be writing there
            shutil.rmtree(out, ignore_errors=True)      # leave nothing behind for nothing
        else:
            _write_index(out, script, args.args, code, [], imported, error)
        return code
    _say("", f"steptrace: {len(entries)} training run{'s' if len(entries) != 1 else ''} traced "
             f"from {script.name}")
    for entry in sorted(entries, key=lambda e: e["run"]):
        _check_and_export(entry, args)
    if not args.no_check:
        ranks_run.check_job(entries, _say)
    _write_index(out, script, args.args, code, entries, imported, error)
    first = min(entries, key=lambda e: e["run"])
    folder = shlex.quote(str(out))
    pick = f" {first['dir']}" if len(entries) > 1 else ""
    _say(f"steptrace: traces written to {out.as_uri()}",
         *(f"  {e['dir']}: {(out / e['dir']).as_uri()}" for e in sorted(entries, key=lambda e: e["run"])),
         "  next:",
         f"    steptrace explain {folder}{pick} --step 1",
         f"    steptrace report {folder}{pick} --html {shlex.quote(str(out / 'report.html'))}",
         f"    steptrace check {folder}" + ("   (lists the runs; add run_N)" if len(entries) > 1 else ""))
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
