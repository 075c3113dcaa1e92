"""The options of ``steptrace run``: the parser and the parsing of sizes and run selections.

Why apart from the runner: every option is validated before anything is created or
run, and the help text is the documentation users read; both are easier to keep
right on their own.
"""
from __future__ import annotations

import argparse
import re
from typing import Callable

from ..errors import TraceInputError
from ..recorder import CAPTURE_MODES

__all__ = ["parse_size", "parse_runs", "parse_names", "build_parser", "recording_budget", "NUMPY_OPTIONS",
           "OWN_MODULES_BYTES"]

#: the options that name a NumPy loop's variables (valid only with --numpy-params)
NUMPY_OPTIONS = ("predictions", "loss", "inputs", "targets", "numpy_model", "numpy_loss")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int | None:
    """``"2G"``, ``"512M"``, ``"300k"``, ``"1000000"`` -> bytes; ``"none"``/``"unlimited"`` -> no limit.

    ``"0"`` means zero, as ``"0M"`` and the recorder's ``max_bytes=0`` do (nothing kept in
    memory): no limit is spelled out, never written as a number.
    """
    if str(text).strip().lower() in ("none", "unlimited"):
        return None
    m = _SIZE.match(str(text))
    if not m:
        raise TraceInputError(f"--max-memory: expected a size such as 512M or 2G (or 'none'), got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


#: memory steptrace's own modules hold in the traced process (pandas, pyarrow, sympy, the
#: hooks, the checker: 108 MiB measured with torch 2.13, pandas 3.1, pyarrow 26). The
#: budget of ``steptrace run`` bounds the whole process, so the recorder gets the rest.
OWN_MODULES_BYTES = 112 * 1024**2


def recording_budget(max_bytes: int | None) -> int | None:
    """What the hooks' recorders may keep (and cost when read back and checked) of
    ``--max-memory``: the budget less :data:`OWN_MODULES_BYTES`, at least 0 (None: no limit)."""
    return None if max_bytes is None else max(0, max_bytes - OWN_MODULES_BYTES)


def parse_runs(text: str) -> Callable[[int], bool]:
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


def parse_names(text: str) -> list[str]:
    """``"weights,biases"`` -> ``["weights", "biases"]`` (Python variable names, each once)."""
    names = [n.strip() for n in str(text).split(",")]
    bad = [n for n in names if not n.isidentifier()]
    if bad or len(set(names)) != len(names):
        raise TraceInputError(f"--numpy-params: expected comma-separated variable names such as weights,biases, "
                              f"got {text!r}")
    return names


def _numpy_group(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "NumPy loops", "A hand-written NumPy loop is traced by reading its variables at each arrival at the\n"
                       "loop's first line (sys.settrace on that one frame). Names not given are looked up\n"
                       "among the defaults listed; each guess is noted in the run's summary.")
    g.add_argument("--numpy-params", metavar="NAMES",
                   help="comma-separated names of the parameters the loop updates, e.g. weights,biases: the "
                        "innermost for/while loop whose body assigns all of them is traced, one step per iteration")
    g.add_argument("--predictions", metavar="NAME",
                   help="the loop's variable holding the batch's predictions "
                        "(default: outputs, output, y_pred, predictions, preds, pred, y_hat, yhat, out or A)")
    g.add_argument("--loss", metavar="NAME", help="the loop's variable holding the loss (default: loss, cost or J)")
    g.add_argument("--inputs", metavar="NAME",
                   help="the variable holding all the training inputs, one row per sample "
                        "(default: x, X, inputs, features, x_train or X_train)")
    g.add_argument("--targets", metavar="NAME",
                   help="the variable holding all the targets (default: y, Y, targets, labels, y_train or Y_train)")
    g.add_argument("--numpy-model", metavar="FUNC",
                   help="a function of the script computing the predictions, FUNC(params..., x): its NumPy "
                        "operations become the model the checker recomputes (default: the checker tries a "
                        "linear model and says so)")
    g.add_argument("--numpy-loss", metavar="FUNC",
                   help="a function of the script computing the loss, FUNC(y_pred, y) (default: the checker "
                        "identifies the loss from the recorded values)")


def build_parser() -> argparse.ArgumentParser:
    """The ``steptrace run`` argument parser (exposed for --help and tests)."""
    p = argparse.ArgumentParser(
        prog="steptrace run",
        usage="steptrace run [options] SCRIPT [ARGS...]",
        description="Run a training script unchanged, as `python SCRIPT ARGS...` would, and trace\n"
                    "every Keras Model.fit call and the PyTorch training it does (and, with\n"
                    "--numpy-params, its hand-written NumPy training loop). Each run is saved,\n"
                    "checked step by step against the math, and exported to CSV and Excel. The\n"
                    "script's output and exit code are kept; steptrace's messages go to stderr.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Options go before SCRIPT; everything after SCRIPT is passed to the script.\n"
               "A NumPy script is traced with --numpy-params: steptrace run --numpy-params weights,biases\n"
               "--loss loss train.py (its loop is one run).\n"
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
                     help="memory budget per run, counting steptrace's own modules and everything kept, "
                          "read back and checked; past it the run records per-step summaries: 512M, 2G, "
                          "0 (zero) or unlimited (default: %(default)s)")
    _numpy_group(p)
    after = p.add_argument_group("after the script")
    after.add_argument("--no-check", action="store_true", help="do not check the runs against the math")
    after.add_argument("--no-csv", action="store_true",
                       help="do not write CSV files (by default a large run's CSV holds every K-th step, "
                            "see csv/SUBSET.txt)")
    after.add_argument("--no-excel", action="store_true", help="do not write the Excel workbook")
    after.add_argument("--excel", action="store_true",
                       help="write the Excel workbook whatever the run's size (by default only a small "
                            "run's, up to 50,000 cells; the summary prints the command for the rest)")
    after.add_argument("--progress", choices=["auto", "on", "off"], default="auto",
                       help="progress line while the script trains: auto = only when stderr is a "
                            "terminal (default: %(default)s)")
    return p
