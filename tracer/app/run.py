"""``steptrace run [options] SCRIPT [ARGS...]``: trace a training script without editing it.

Why: people debug the script they have, often pasted from a tutorial, and will not
edit it to try a tool. This runs the script as ``__main__`` (its own arguments,
working directory, ``sys.path[0]``, output and exit code) with tracing switched on
for whatever it trains (:mod:`hooks.autotrace`): every Keras ``Model.fit`` call,
every PyTorch training loop and, with ``--numpy-params weights,biases``, the NumPy
loop that updates those variables. Each run's steps stream to disk as they complete
(:mod:`tracer.app.run_dir`: a killed script keeps all but the last few), each run is
saved as soon as it ends, and when the script ends the session's runs replace the
earlier ones in the output directory; then every run is checked against the math, its
summary printed, and reports proportionate to its size written beside it
(:mod:`tracer.app.run_reports`)::

    SCRIPT_DIR/SCRIPT.steptrace/            (or --out DIR; locked while a session writes it)
        index.json                          what ran: runs, steps, verdicts, exit code
        run_1/                              the trace (Trace.load / steptrace check)
            check.txt  csv/  trace.xlsx     (csv/ and trace.xlsx as the run's size allows)

SIGTERM stops the script, saves its runs and ends the process by SIGTERM; an uncaught
Ctrl-C (``KeyboardInterrupt``, with its traceback as Python prints it) does the same with
SIGINT (the checks and reports are then left to ``steptrace check``:
:mod:`tracer.app.signals`).

steptrace's own messages go to stderr, so the script's stdout is exactly what it
would print without steptrace. The progress line appears only when stderr is a
terminal. This module imports no framework: the hooks load when the script
imports Keras or PyTorch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import json
import shlex
import signal
import sys
from pathlib import Path

from ..atomic import replacing_file
from ..errors import SteptraceError, TraceInputError
from .. import chunk_pool
from ..file_format import release_arrow_memory
from ..progress import ClearingStream, LiveProgress, is_tty
from . import ranks_run
from .exit_codes import EXIT_BAD_INPUT
from .run_dir import INDEX, OutputDir
from .run_options import NUMPY_OPTIONS, build_parser, parse_names, parse_runs, parse_size, recording_budget
from .run_reports import check_run, export_run
from .script import run_script
from .signals import Terminated, exit_by_signal, raise_terminated, signal_of, terminate_deferred, terminate_raises

if TYPE_CHECKING:  # pragma: no cover
    from ..trace import Trace

__all__ = ["main", "build_parser", "parse_runs", "parse_size", "run_script", "default_out_dir"]

# ------------------------------------------------------------------ output
def _say(*lines: str) -> None:
    """steptrace's own messages: stderr, after whatever the script left in stdout."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):     # the script closed or broke its stdout: our lines still go out
        pass
    for line in lines:
        print(line, file=sys.stderr)
    sys.stderr.flush()


def default_out_dir(script: Path) -> Path:
    """``SCRIPT_DIR/SCRIPT_STEM.steptrace``: next to the script, named after it."""
    return script.parent / f"{script.stem}.steptrace"


class _Saver:
    """Saves each finished run at once into the session directory (crash safety) and
    remembers what was saved."""

    def __init__(self, outdir: OutputDir):
        self.outdir = outdir
        self.saved: list[dict] = []

    def __call__(self, run) -> None:
        path = self.outdir.run_path(run.number)             # run_N (run_N/rank=R under torchrun)
        entry = {"run": run.number, "framework": run.framework, "label": run.label,
                 "dir": path.relative_to(self.outdir.session).as_posix(),
                 "steps": _n_steps(run.trace), "error": run.error, "notes": list(run.notes),
                 "trace": run.trace, "path": path, "saved": False}
        try:
            part = getattr(run.trace, "part", None)
            if part is not None and not part.whole:     # read back in part: the stream holds every step
                meta = dict(run.trace.meta)
                meta["notes"] = [n for n in meta.get("notes") or [] if n != part.said]
                self.outdir.keep_stream(part.path, run.number, meta, run.trace.steps)
            else:
                run.trace.save(path)
            entry["saved"] = True
            # a script may train many models: keep only what is on disk, reload to check
            entry["trace"] = run.trace = None
        except Exception as exc:  # said once, in the run's summary (the session keeps the earlier results)
            entry["notes"].append(f"could not save the trace: {exc}")
        self.saved.append(entry)


def _n_steps(trace) -> int:
    try:
        return int(trace.n_steps)
    except Exception:  # a run the hook could not finish building: counted as 0 steps, never raised
        return 0


def run_label(label: str, trace: Trace) -> str:
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


def _check_and_export(entry: dict, args, budget: int | None = None) -> None:
    """Check one saved run, print its summary, write check.txt and the reports its size allows.

    A run saved as its stream is read back within ``budget`` (the memory budget of the
    recording): the steps left on disk are named, with the command that checks them."""
    trace, path = entry["trace"], entry["path"]
    release_arrow_memory()      # what the saved runs and the run checked before left in the pools
    chunk_pool.release_free()   # the recorder's blocks, free now that the run is saved
    if trace is None:
        from ..trace import Trace
        try:
            trace = Trace.load(path, max_bytes=budget)
        except Exception as exc:  # one unreadable run is reported in its summary; the others go on
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
        entry["verdict"], summary = check_run(trace, path if entry["saved"] else None)
        lines += ["  " + line for line in summary.splitlines()]
    if trace.part is not None and not trace.part.whole:   # the check's summary says which and how
        entry["loaded_steps"] = [trace.part.lo, trace.part.hi]
    written = []
    excel = "never" if args.no_excel else ("always" if args.excel else "auto")
    if entry["saved"] and not (args.no_csv and excel == "never"):
        try:
            written, said = export_run(trace, path, csv=not args.no_csv, excel=excel)
            lines += ["  " + line for line in said]
        except ImportError as exc:
            lines.append(f"  export skipped: {exc}")
    entry["files"] = written
    if entry["saved"]:
        lines.append(f"  saved: {path}" + (f" (+ {', '.join(written)})" if written else ""))
    _say(*lines)


def describe_error(exc: BaseException) -> str:
    """How the script ended, in a few words (see :func:`hooks.autotrace.describe_error`)."""
    from hooks.autotrace import describe_error as describe
    return describe(exc)


def _index(script: Path, argv: list[str], code: int, entries: list[dict], imported: list[str], error) -> dict:
    return {
        "script": str(script), "argv": argv, "exit_code": code, "imported": imported,
        "error": None if error is None else describe_error(error),
        "runs": [{k: v for k, v in e.items() if k not in ("trace", "path")} for e in entries],
    }


def _write_index(out: Path, index: dict) -> None:
    """``index.json`` through a temporary name: a reader never sees half of it."""
    try:
        with replacing_file(out / ranks_run.index_name(INDEX)) as tmp:
            tmp.write_text(json.dumps(index, indent=1, default=str))
    except OSError as exc:
        _say(f"steptrace: could not write {out / ranks_run.index_name(INDEX)}: {exc}")


def main(argv: list[str] | None = None) -> int:
    """``steptrace run``: returns the script's exit code (2 for bad steptrace options); a
    script stopped by SIGTERM or SIGINT ends the process by that signal, once its runs
    are saved."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)          # --help / usage errors exit as argparse does
    try:
        options = _resolve(args)
        outdir = OutputDir(options["out"], readback_bytes=recording_budget(options["max_bytes"])).open()
    except SteptraceError as exc:
        print(f"steptrace run: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    options["created"] = outdir.created
    signum = None
    for left in outdir.leftovers:
        _say(f"steptrace: an interrupted earlier run left its steps in {left} "
             f"(each stream_N/ is a trace: steptrace check {left / 'stream_1'})")
    try:
        code, error, entries, stop = _trace_script(args, options, outdir)
        signum = signal_of(error) or (stop[0] if stop else None)
        if signum is not None:
            _say_stopped(entries, signum)
        else:
            try:
                with terminate_raises(sigint=raise_terminated):    # the runs are safe: Ctrl-C stops the reports
                    code = _report(args, options, code, error, entries)
            except Terminated as exc:
                signum = exc.signum
    finally:
        outdir.release()
    # an uncaught Ctrl-C ends the process by SIGINT, as Python ends an untraced script (the shell says 130)
    return code if signum is None else exit_by_signal(signum)


def _trace_script(args, options, outdir: OutputDir):
    """Run the script with tracing on; save its runs and swap them into place.

    Returns ``(exit code, error, entries, [signal received while saving])``.
    """
    from hooks.autotrace import AutoTrace   # framework-free; frameworks load when the script imports them

    saver = _Saver(outdir)
    auto = AutoTrace(every=args.every, capture=args.capture, max_bytes=recording_budget(options["max_bytes"]),
                     select=options["select"], frameworks=options["frameworks"], on_finish=saver,
                     numpy=options["numpy"], store=outdir.new_stream)
    show = args.progress == "on" or (args.progress == "auto" and is_tty(sys.stderr))
    progress = None
    saved_streams = (sys.stdout, sys.stderr)
    if show:
        progress = LiveProgress(auto.progress, sys.stderr)
        sys.stdout = ClearingStream(sys.stdout, progress)
        sys.stderr = ClearingStream(sys.stderr, progress)
        progress.start()
    error = None
    # the script's SIGINT handler: Python's KeyboardInterrupt, or what it inherited (ignored under nohup)
    sigint = signal.getsignal(signal.SIGINT) or signal.default_int_handler
    with terminate_deferred() as stop:
        try:
            with terminate_raises(sigint=sigint):
                auto.install()
                code, error = run_script(options["script"], args.args)
        except Terminated as exc:    # arrived between the script and the hooks: the script was stopped
            code, error = 128 + exc.signum, exc
        finally:
            auto.uninstall(error)
            if progress is not None:
                progress.stop()
                sys.stdout, sys.stderr = saved_streams
        options["numpy_status"] = (auto.numpy_arrivals, list(auto.numpy_notes))
        _commit(outdir, options, args, code, error, saver.saved)
    return code, error, saver.saved, stop


def _commit(outdir: OutputDir, options, args, code, error, entries) -> None:
    """Swap the session's saved runs into OUT (earlier results replaced only now), or drop
    the session when nothing was saved (earlier results stay)."""
    imported = [f for f in ("keras", "torch") if f in sys.modules]
    options["imported"] = imported
    saved = [e for e in entries if e["saved"]]
    if not saved:
        outdir.abandon()
        return
    try:
        outdir.commit([e["dir"] for e in saved], _index(options["script"], args.args, code, entries, imported,
                                                        error))
    except OSError as exc:
        _say(f"steptrace: could not put the runs in place in {outdir.out}: {exc.strerror or exc}; "
             f"they are in {outdir.session}")
        return
    for e in saved:
        e["path"] = outdir.out / e["dir"]


def _say_stopped(entries: list[dict], signum: int) -> None:
    """Stopped by a signal: the runs are saved; the checks and reports are left to the user."""
    name = signal.Signals(signum).name
    saved = [e for e in entries if e["saved"]]
    if not saved:
        _say(f"steptrace: stopped by {name}; no training step was recorded.")
        return
    _say(f"steptrace: stopped by {name}; {len(saved)} run{'s' if len(saved) != 1 else ''} saved "
         f"(the steps completed before it), not checked:")
    for e in saved:
        _say(f"  run {e['run']}: {e['steps']} steps in {e['path']}: steptrace check {e['path']}")


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
    return {"script": script, "out": out, "max_bytes": max_bytes, "select": select,
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
    imported = options["imported"]      # the runner imports no framework: these are the script's
    if not entries:
        why = _nothing_traced(args, options, imported)
        _say(f"steptrace: {script.name} trained nothing steptrace can trace ({why}); no trace written.")
        return code
    _say("", f"steptrace: {len(entries)} training run{'s' if len(entries) != 1 else ''} traced "
             f"from {script.name}")
    for entry in sorted(entries, key=lambda e: e["run"]):
        _check_and_export(entry, args, recording_budget(options["max_bytes"]))
    if not args.no_check:
        ranks_run.check_job(entries, _say)
    if any(e["saved"] for e in entries):
        _write_index(out, _index(script, args.args, code, entries, imported, error))
        first = min(entries, key=lambda e: e["run"])
        folder = shlex.quote(str(out))
        pick = f" {first['dir']}" if len(entries) > 1 else ""
        _say(f"steptrace: traces written to {out.as_uri()}",
             *(f"  {e['dir']}: {(out / e['dir']).as_uri()}" for e in sorted(entries, key=lambda e: e["run"])
               if e["saved"]),
             "  next:",
             f"    steptrace explain {folder}{pick} --step 1",
             f"    steptrace report {folder}{pick} --html {shlex.quote(str(out / 'report.html'))}",
             f"    steptrace check {folder}" + ("   (lists the runs; add run_N)" if len(entries) > 1 else ""))
    else:
        _say(f"steptrace: no trace could be saved; {out} is as it was before this run")
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
