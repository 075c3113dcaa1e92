"""The ``steptrace`` command line.

Exit codes tell outcomes apart: 0 success (checks passed), 1 checks failed,
2 bad input (a missing or corrupt trace, a bad argument), 3 incomplete (nothing
failed but part of the run could not be checked). ``steptrace run`` exits with the
traced script's own code.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import SteptraceError
from .exit_codes import (EXIT_BAD_INPUT, EXIT_BROKEN_PIPE, EXIT_FAILED, EXIT_INCOMPLETE, EXIT_INTERRUPTED,
                         EXIT_OK, VERDICT_EXIT)
from .runs_dir import say_next

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_FAILED", "EXIT_BAD_INPUT", "EXIT_INCOMPLETE"]


def _load(args, command: str):
    """The trace ``args.trace`` names: a trace folder, or a folder of runs and ``args.run``."""
    from ..trace import Trace
    from .runs_dir import resolve_trace
    path = resolve_trace(args.trace, getattr(args, "run", None), command)
    args.trace = str(path)
    steps = getattr(args, "steps", None)
    if steps is None:
        return Trace.load(path)
    from ..store_slice import parse_steps
    return Trace.load(path, steps=parse_steps(steps))


def _q(path) -> str:
    """A path as typed in a shell (quoted when it holds a space)."""
    import shlex
    return shlex.quote(str(path))


def cmd_demo(args: argparse.Namespace) -> int:
    """Trace the built-in example (S0; S2 in mini-batches with --minibatch), check it, export it."""
    if args.minibatch:
        from .minibatch_demo import run_minibatch_demo
        return run_minibatch_demo(Path(args.out or "steptrace-demo-minibatch"))
    from .. import check
    from .examples import s0_numpy

    out = Path(args.out or "steptrace-demo")
    print("steptrace demo: NumPy full-batch gradient descent on y = 13x + 2 + noise "
          "(1000 rows, 100 iterations, lr 0.02)")
    trace, weights, biases = s0_numpy()
    print(f"  final weights {weights.ravel()}, biases {biases.ravel()}")
    report = check(trace)
    print(report.summary())
    steps = trace.steps
    params = trace.params.pivot_table(index="step", columns="param", values="after", sort=False)
    table = steps.set_index("step")[["epoch", "batch", "loss"]].join(params)
    print("\nfirst and last iterations (parameters after the update):")
    print(table.head(3).to_string())
    print("...")
    print(table.tail(2).to_string())
    saved = trace.save(out / "s0.trace")
    written = [saved]
    try:
        from reports import to_csv
        from reports.excel import write_workbook
        to_csv(trace, out / "csv")
        written.append(out / "csv")
        info = write_workbook(trace, out / "s0.xlsx", formulas=True)
        written.append(info.path)
        _say_formulas(info)
    except ImportError as exc:  # reports is part of the package; say so rather than hide it
        print(f"  (export skipped: {exc})", file=sys.stderr)
    (out / "explain_step1.txt").write_text(_explain_text(trace, 1, report))
    written.append(out / "explain_step1.txt")
    t = _q(out / "s0.trace")
    say_next(written,
             [f"steptrace explain {t} --step 1", f"steptrace report {t} --html {_q(out / 's0.html')} "
              f"--plots {_q(out / 'plots')}", f"steptrace check {t}"])
    return VERDICT_EXIT[report.verdict]


def _explain_text(trace, step, report=None):
    from ..explain import explain
    return explain(trace, step=step, report=report)


def cmd_check(args: argparse.Namespace) -> int:
    """Check a saved trace and print the summary (and the failures with --failures)."""
    from .. import check
    from . import ranks_cli
    if ranks_cli.is_rank_run(args.trace):          # a distributed job: RUN/rank=N/ (tracer/ranks)
        return ranks_cli.check_run(Path(args.trace))
    trace = _load(args, "check")
    report = check(trace)
    print(report.summary())
    if args.failures and len(report.failures):
        print(report.failures.head(args.failures).to_string(index=False))
    if args.table:
        _write_table(report.table, args.table)
    failed = report.failures["step"] if len(report.failures) and "step" in report.failures else []
    step = int(min(failed)) if len(failed) else 1
    t = _q(args.trace)
    say_next([args.table] if args.table else [],
             [f"steptrace explain {t} --step {step}" + ("   (the first failed step)" if len(failed) else ""),
              f"steptrace report {t} --html {_q(Path(args.trace).name + '.html')}"])
    return VERDICT_EXIT[report.verdict]


def _write_table(table, path: str) -> None:
    """Write ``--table`` through a temporary name; a path that cannot be written (``/proc/x.csv``,
    a directory, a full disk) is one error line (exit 2), not a traceback."""
    from ..atomic import reason, replacing_file
    try:
        with replacing_file(Path(path)) as tmp:
            table.to_csv(tmp, index=False)
    except OSError as exc:
        raise SteptraceError(f"--table: cannot write {path}: {reason(exc)}") from None


def _say_formulas(info) -> bool:
    """Print on stderr why a workbook asked to be live holds values; True when it is live."""
    if info.formulas:
        print(f"  {info.path}: live formulas ({info.n_formulas} formula cells; edit the lr cell "
              f"{info.lr_cell} of the iterations sheet to replay the training)")
        return True
    print(f"steptrace: warning: {info.path} holds values, not live formulas: {info.reason}", file=sys.stderr)
    return False


def cmd_export(args: argparse.Namespace) -> int:
    """Export a saved trace to CSV files and/or an Excel workbook (exit 3 when --formulas
    cannot be kept: the workbook then holds values and the reason is printed)."""
    if not args.csv and not args.xlsx:
        raise SteptraceError("export: give --csv DIR and/or --xlsx FILE")
    from reports import to_csv
    from reports.excel import write_workbook
    trace = _load(args, "export")
    written, code = [], EXIT_OK
    if args.csv:
        for p in to_csv(trace, args.csv):
            print(p)
        written.append(args.csv)
    if args.xlsx:
        info = write_workbook(trace, args.xlsx, formulas=args.formulas)
        print(info.path)
        written.append(info.path)
        if args.formulas and not _say_formulas(info):
            code = EXIT_INCOMPLETE
    t = _q(args.trace)
    say_next(written, [f"steptrace report {t} --xlsx {_q(Path(args.trace).name + '.xlsx')}   (live formulas, "
                       "a page and plots)", f"steptrace check {t}"])
    return code


def cmd_explain(args: argparse.Namespace) -> int:
    """Print the hand derivation of one step, or reconcile a logged metric."""
    from ..explain import explain
    if args.value is not None and args.metric is None:
        raise SteptraceError("explain: --value needs --metric (the name of the value, e.g. --metric RMSE)")
    trace = _load(args, "explain")
    print(explain(trace, step=args.step, metric=args.metric, value=args.value))
    t = _q(args.trace)
    step = args.step or 1
    more = ([f"steptrace explain {t} --step {step + 1}"] if step < trace.n_steps and not args.metric else [])
    say_next([], more + [f"steptrace report {t} --html {_q(Path(args.trace).name + '.html')}   (every step, "
                         "to step through)"])
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    """Write the reports people look at: workbook, step-through page, plots."""
    if not (args.xlsx or args.html or args.plots):
        raise SteptraceError("report: give at least one of --xlsx FILE, --html FILE, --plots DIR")
    from reports import build_report

    from . import ranks_cli
    if ranks_cli.is_rank_run(args.trace):          # a distributed job: the merged run + a per-rank sheet
        written = ranks_cli.report_run(Path(args.trace), xlsx=args.xlsx, html=args.html, plots=args.plots)
    else:
        trace = _load(args, "report")
        written = build_report(trace, xlsx=args.xlsx, html=args.html, plots=args.plots,
                               progress=sys.stderr.isatty())
    for note in written.pop("warnings", []):
        print(f"steptrace: warning: {note}", file=sys.stderr)
    files = []
    for kind, paths in written.items():
        for p in (paths if isinstance(paths, (list, tuple)) else [paths]):
            print(f"{kind}: {p}")
            files.append(p)
    if args.plots:
        files = [p for p in files if Path(p).parent != Path(args.plots)] + [args.plots]
    t = _q(args.trace)
    say_next(files, [f"steptrace explain {t} --step 1", f"steptrace check {t}"])
    return EXIT_OK


def _trace_args(p: argparse.ArgumentParser) -> None:
    """TRACE and the optional run_N of a folder of several runs."""
    p.add_argument("trace", help="trace directory written by Trace.save, or a steptrace run output folder")
    p.add_argument("run", nargs="?", help="run_N (or N) when TRACE is a folder of several runs, as "
                                         "steptrace run writes them (TRACE.steptrace/run_1, run_2, ...)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="steptrace", description="Step-by-step training debugger: trace, check, explain, export.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="trace, check and export the built-in example (S0)")
    p.add_argument("--out", default=None,
                   help="output directory (default: steptrace-demo, or steptrace-demo-minibatch)")
    p.add_argument("--minibatch", action="store_true",
                   help="S2's 12 rows in NumPy mini-batches of 4 over 4 epochs (plain SGD): epoch vs batch vs "
                        "iteration, and the running loss Keras logs within an epoch")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("check", help="check a saved trace against the math")
    _trace_args(p)
    p.add_argument("--failures", type=int, default=20, metavar="N", help="show up to N failed checks")
    p.add_argument("--table", metavar="CSV", help="write the whole check table to this CSV file")
    p.add_argument("--steps", metavar="A:B",
                   help="check only steps A to B (A:, :B, or one step A): a run too large to check at once is "
                        "checked slice by slice; step A-1 is read too, for the optimizer state step A starts from")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("export", help="export a trace to CSV and/or Excel")
    _trace_args(p)
    p.add_argument("--csv", metavar="DIR", help="directory for one CSV file per table")
    p.add_argument("--xlsx", metavar="FILE", help="Excel workbook to write")
    p.add_argument("--formulas", action="store_true",
                   help="write the iterations sheet as live formulas; when they cannot be written (model "
                        "too large, loss or optimizer unknown) the workbook holds values, the reason is "
                        "printed and the exit code is 3 (incomplete)")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("explain", help="hand derivation of one step, or reconcile a logged metric")
    _trace_args(p)
    p.add_argument("--step", type=int, default=None,
                   help="global step number, from 1 (default: step 1; with --metric: search every step)")
    p.add_argument("--metric", help="a logged value to explain, any case: loss, rmse, mse, mae, acc, a metric's "
                                    "own name (root_mean_squared_error) or val_<name> (end of epoch)")
    p.add_argument("--value", type=float, help="the number you computed yourself (needs --metric): "
                                               "steptrace names the step and computation that give it")
    p.set_defaults(func=cmd_explain)
    p = sub.add_parser("report", help="workbook with live formulas, step-through HTML page, plots")
    _trace_args(p)
    p.add_argument("--xlsx", metavar="FILE", help="workbook whose iterations sheet is live formulas (values, "
                                                  "with a printed warning, when they cannot be written)")
    p.add_argument("--html", metavar="FILE", help="self-contained step-through page")
    p.add_argument("--plots", metavar="DIR", help="directory for PNG/SVG plots")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("run", help="run a training script unchanged and trace what it trains",
                       add_help=False)
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=None)
    return parser


def quiet_broken_pipe() -> int:
    """The reader of stdout went away (``steptrace check T | head -1``): stop quietly as a
    Unix tool does, with the shell's status for SIGPIPE (128 + 13), and keep Python from
    complaining again when it flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_BROKEN_PIPE


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``steptrace`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run":
        from .run import main as run_main
        return run_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()              # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        return quiet_broken_pipe()
    except SteptraceError as exc:
        print(f"steptrace: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("steptrace: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
