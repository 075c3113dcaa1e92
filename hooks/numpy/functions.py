"""Trace a NumPy model function (and loss function) once into a step program.

Why: a hand-written NumPy model (``def model(w, b, x): return sigmoid(x @ w + b)``)
and loss (``-np.mean(y*np.log(p) + (1-y)*np.log(1-p))``) are plain Python. Called once
with :class:`hooks.numpy.proxy.Traced` values they write the program the checker
evaluates (:mod:`hooks.numpy.builder`). The call happens on the first step's batch,
after the loop has run it, with the user's output and random state put back as they
were, so tracing changes nothing the user sees.

Calling convention of ``model`` (documented in :class:`hooks.numpy.NumpyTracer`):
by name when its parameter names are the tracer's parameter names plus exactly one
other name (which receives the batch's inputs), else positionally: the parameters in
the tracer's ``params`` order, then the inputs. ``loss_fn(y_pred, y)``.

The program is traced at two batch sizes and the two are unified
(:mod:`hooks.numpy.batch_dims`), so ``/ len(y)`` stays right on a shorter last batch.
Before it is kept, the program is evaluated on the batch and compared with what NumPy
computed: a program that does not reproduce the user's own numbers is never stored.
"""
from __future__ import annotations

import contextlib
import inspect
import io
import os
import random
import sys
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from tracer.errors import SteptraceError
from tracer.program import Evaluation, StepProgram

from .batch_dims import unify
from .builder import Builder, user_frames, where_of
from .patterns import fuse
from .proxy import Traced

__all__ = ["Functions", "build_program", "call_model", "linear"]


@dataclass
class Functions:
    """What to trace: the model and loss functions and the names of what they produce."""

    model: object
    loss_fn: object = None
    prediction: str | None = None      # the loop's variable names, to name the program's outputs
    loss: str | None = None


def linear(weight: np.ndarray, bias: np.ndarray | float, x: np.ndarray) -> np.ndarray:
    """The default model, ``x @ weight + bias`` (traced when a loss function is given)."""
    return x @ weight + bias


def call_model(model: Callable, params: dict, x: np.ndarray) -> object:
    """Call ``model`` on the parameters and the inputs (the convention in the module docstring)."""
    try:
        sig = inspect.signature(model)
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        required = [p.name for p in sig.parameters.values() if p.default is p.empty and p.kind in kinds]
        others = [n for n in required if n not in params]
        if set(params) <= set(required) and len(others) == 1:
            return model(**params, **{others[0]: x})
    return model(*params.values(), x)


def _same_rng(a, b) -> bool:
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and a[2:] == b[2:]


@contextlib.contextmanager
def _untouched():
    """The user's stdout/stderr, warnings and random states, as they were before the call.

    Yields a list that receives ``True`` when the call drew random numbers."""
    np_state, py_state = np.random.get_state(), random.getstate()
    drew = []
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), \
                warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            yield drew
    finally:
        if not _same_rng(np.random.get_state(), np_state) or random.getstate() != py_state:
            drew.append(True)
        np.random.set_state(np_state)
        random.setstate(py_state)


def _blame(exc: BaseException) -> str | None:
    """``file:line`` of the user's line an exception came from."""
    tb, where = exc.__traceback__, None
    while tb is not None:
        if user_frames(tb.tb_frame, tb.tb_frame.f_back):
            where = f"{where_of(tb.tb_frame).rsplit(':', 1)[0]}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


def _def_line(fn) -> str | None:
    code = getattr(fn, "__code__", None)
    return None if code is None else f"{os.path.basename(code.co_filename)}:{code.co_firstlineno}"


def trace_once(fns: Functions, params: dict, x: np.ndarray, y: np.ndarray) -> tuple[dict, dict]:
    """The program of one call on the batch ``(x, y)`` (JSON, not yet verified) and the
    values NumPy computed (``prediction``, ``loss``)."""
    b = Builder(batch_size=len(x), stop_frame=sys._getframe(0))
    traced = {name: b.leaf(name, value) for name, value in params.items()}
    names = _leaf_names(params)
    tx, ty = b.leaf(names[0], x), b.leaf(names[1], y)
    pred = loss = None
    with _untouched() as drew:
        try:
            pred = call_model(fns.model, traced, tx)
            if fns.loss_fn is not None:
                loss = fns.loss_fn(pred, ty)
        except Exception as exc:  # the user's function met something the tracer does not handle
            b.refuse("exception", f"{type(exc).__name__}: {exc}", where=_blame(exc))
    if drew:
        b.refuse("numpy.random", "the function draws random numbers, which a program cannot replay",
                 where=_def_line(fns.model))
    outputs = {"target": names[1]}
    if not b.broken:
        outputs.update(_outputs(b, fns, pred, loss))
    if b.broken:
        outputs = {"target": names[1]}
    nodes, outputs = b.finish(outputs, None if b.broken else fuse)
    program = {"format": 1,
               "inputs": [_input(names[0], "inputs", x), _input(names[1], "targets", y)],
               "consts": b.consts, "params": list(params), "nodes": nodes, "outputs": outputs,
               "batch_size": len(x), "unsupported": b.unsupported}
    return program, {"prediction": getattr(pred, "value", None), "loss": getattr(loss, "value", None)}


def _leaf_names(params) -> tuple[str, str]:
    x = next(n for n in ("x", "inputs", "x_data") if n not in params)
    y = next(n for n in ("y", "targets", "y_data") if n not in params)
    return x, y


def _input(name, source, a) -> dict:
    return {"name": name, "source": source, "shape": [int(s) for s in a.shape[1:]],
            "dtype": "int" if a.dtype.kind in "iub" else "float"}


def _outputs(b, fns, pred, loss) -> dict:
    out = {}
    if not isinstance(pred, Traced):
        b.refuse("model", f"the model returned {type(pred).__name__}, not an array computed from the "
                 "parameters and the inputs", where=_def_line(fns.model))
        return out
    b.rename(pred.name, fns.prediction)
    out["prediction"] = pred.name
    if fns.loss_fn is None:
        return out
    if not isinstance(loss, Traced) or loss.value.size != 1:
        what = f"shape {loss.value.shape}" if isinstance(loss, Traced) else type(loss).__name__
        b.refuse("loss function", f"the loss function returned {what}, not one number computed from "
                 "the predictions", where=_def_line(fns.loss_fn))
        return out
    if loss.value.shape != ():
        loss = b.emit("reshape", [loss], loss.value.reshape(()), shape=[])
    b.rename(loss.name, fns.loss)
    out["loss"] = loss.name
    return out


# ------------------------------------------------------------------ the program
def build_program(fns: Functions, params: dict, batch: tuple, other: tuple | None, sizes: tuple,
                  full: int) -> dict:
    """The verified program of ``fns`` (JSON for ``meta["program"]``).

    ``batch`` is the first step's ``(x, y)``; ``other`` the same data at another batch
    size (None when the data has one row); ``sizes`` the batch sizes the run used and
    ``full`` the number of rows of the data. A full-batch run (every step on all the
    rows) keeps the numbers its batch size gives, exactly as the user computed them;
    otherwise a program that depends on the batch size in a way
    :func:`~hooks.numpy.batch_dims.unify` cannot express is kept only when every step
    had the first step's size.
    """
    first, values = trace_once(fns, params, *batch)
    _verify(first, params, batch, values)
    full_batch = len(batch[0]) == full and set(sizes) <= {full}
    if first["unsupported"] or other is None or full_batch:
        return first
    second, values2 = trace_once(fns, params, *other)
    program, reason = unify(first, second, len(batch[0]), len(other[0]))
    if program is not None:
        if program is not first:
            _verify(program, params, batch, values)
            _verify(program, params, other, values2)
        return program
    b = len(batch[0])
    if set(sizes) <= {b}:
        first.setdefault("notes", []).append(
            f"the program holds numbers that depend on the batch size ({reason}); it is exact for "
            f"batches of {b} rows, the only size this run used")
    else:
        first["unsupported"].append({"op": "batch size", "reason": (
            f"the model or loss depends on the batch size in a way the program cannot follow ({reason}); "
            f"this run has batches of {', '.join(str(s) for s in sorted(sizes))} rows")})
    return first


def _leaves(program: StepProgram, params: dict, batch: tuple) -> dict:
    out = {}
    for inp, data in zip(program.inputs, batch):
        a = np.asarray(data)
        out[inp.name] = (np.rint(a).astype(np.int64) if inp.dtype == "int" else a.astype(np.float64))[None]
    for c in program.consts:
        out[c.name] = c.value[None]
    for name, value in params.items():
        out[name] = np.asarray(value, dtype=np.float64)[None]
    return out


def _verify(program: dict, params: dict, batch: tuple, values: dict) -> None:
    """Evaluate ``program`` on ``batch``; unless it gives NumPy's own prediction and loss,
    add the reason to its ``unsupported`` list (so it is never checked against)."""
    if program["unsupported"]:
        return
    low = any(np.asarray(v).dtype.itemsize < 8 for v in [*params.values(), batch[0]]
              if np.asarray(v).dtype.kind == "f")
    rtol = 1e-3 if low else 1e-6
    try:
        prog = StepProgram.from_dict(program)
        ev = Evaluation(prog, _leaves(prog, params, batch), np.float64)
        got = {"prediction": ev.prediction, "loss": ev.loss if prog.has_loss else None}
    except (SteptraceError, ValueError, IndexError, TypeError) as exc:
        program["unsupported"].append({"op": "program", "reason": f"the traced program cannot be evaluated: {exc}"})
        return
    for key, want in values.items():
        if want is None or got.get(key) is None:
            continue
        want = np.asarray(want, dtype=np.float64)
        have = np.asarray(got[key], dtype=np.float64)
        if have.size != want.size:
            program["unsupported"].append({"op": "program", "reason": (
                f"the traced program's {key} has {have.size} values, NumPy computed {want.size}")})
            continue
        have = have.reshape(want.shape)
        finite = want[np.isfinite(want)]
        scale = float(np.max(np.abs(finite))) if finite.size else 0.0
        if not np.allclose(have, want, rtol=rtol, atol=rtol * scale, equal_nan=True):
            worst = float(np.nanmax(np.abs(have - want))) if have.size else 0.0
            program["unsupported"].append({"op": "program", "reason": (
                f"the traced program does not reproduce the function's {key} (largest difference {worst:.3g}); "
                "steptrace's mapping of a NumPy call is wrong here - please report it")})
