"""Hypothesis strategies and case runners shared by the fuzz tests and ``bench/fuzz_count.py``.

Why shared: the tests run a short, CI-sized number of cases and assert that none
crashes; the bench runs as many as asked and prints how many ended in each outcome, so
the closing note can report a count measured by the same code.

Outcomes of one case: ``ok`` (it loaded / round-tripped / checked), ``refused`` (a
steptrace error: TraceFileError, TraceInputError, UnsupportedError, one line) and
``crash`` (anything else: a traceback; the tests require none).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from tracer import Recorder, Trace
from tracer.errors import SteptraceError

from _hostile import FORMULA, MATHTEXT, SCRIPT

PAYLOADS = SCRIPT + FORMULA + MATHTEXT
NAMES = st.one_of(st.text(max_size=10), st.sampled_from(PAYLOADS))
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -1.5, 1e-300, 1e300]))
LOSSES = [None, {"name": "mse", "reduction": "mean"}, {"name": "squared_error", "divide_by": [2, "n"]},
          {"name": "mae"}, {"name": "huber", "delta": 1.0}]
OPTIMIZERS = [None, {"name": "sgd", "convention": "plain", "lr": 0.1},
              {"name": "rmsprop", "convention": "keras", "lr": 0.05, "rho": 0.9, "epsilon": 1e-7},
              {"name": "adam", "convention": "torch", "lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8}]
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**30), 10**30), FLOATS, st.text(max_size=12),
              st.sampled_from(PAYLOADS)),
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)),
    max_leaves=12)


def _values(rng: np.random.Generator, shape: tuple, dtype) -> np.ndarray:
    a = rng.normal(size=shape) * 10.0 ** rng.integers(-3, 4)
    if a.size and rng.random() < 0.3:
        a.flat[rng.integers(a.size)] = rng.choice([np.nan, np.inf, -np.inf])
    return a.astype(dtype)


@st.composite
def traces(draw) -> Trace:
    """A small recorded trace with random names (unicode, script, formula and mathtext
    payloads), shapes (zero-size included), dtypes (float16/32/64) and NaN/inf values."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    names = draw(st.lists(NAMES, min_size=1, max_size=3, unique=True))
    shapes = [tuple(draw(st.lists(st.integers(0, 3), max_size=2))) for _ in names]
    dtypes = [draw(st.sampled_from([np.float16, np.float32, np.float64])) for _ in names]
    meta = {"framework": draw(NAMES), "loss": draw(st.sampled_from(LOSSES)),
            "optimizer": draw(st.sampled_from(OPTIMIZERS)), draw(NAMES): draw(JSON)}
    meta = {k: v for k, v in meta.items() if not (isinstance(v, float) and not math.isfinite(v))}
    rec = Recorder(meta=meta)
    n_rows = draw(st.integers(0, 6))
    m = draw(st.integers(1, 2))
    if n_rows:
        rec.set_data(_values(rng, (n_rows, draw(st.integers(1, 3))), np.float64), _values(rng, (n_rows, m), np.float64))
    slot, logged, extra = draw(NAMES), draw(NAMES), draw(NAMES.filter(lambda n: n not in Recorder.RESERVED))
    for s in range(draw(st.integers(1, 5))):
        before = {n: _values(rng, sh, dt) for n, sh, dt in zip(names, shapes, dtypes)}
        after = {n: v - np.asarray(0.1, v.dtype) for n, v in before.items()}
        rows = rng.integers(0, n_rows, size=draw(st.integers(1, 3))) if n_rows else None
        k = len(rows) if rows is not None else draw(st.integers(1, 3))
        rec.record_step(epoch=1 + s // 2, batch=1 + s % 2, params_before=before, params_after=after,
                        grads={n: v * 2 for n, v in before.items()} if draw(st.booleans()) else None,
                        rows=rows, y_pred=_values(rng, (k, m), np.float64) if draw(st.booleans()) else None,
                        loss=draw(FLOATS), lr=draw(FLOATS), logs={logged: draw(FLOATS)}, extra={extra: draw(FLOATS)},
                        state={names[0]: {slot: before[names[0]] * 2}} if draw(st.booleans()) else None)
    rec.record_epoch(1, {logged: draw(FLOATS)})
    rec.note(draw(NAMES))
    return rec.trace()


def outcome(fn) -> str:
    """Run ``fn``: ``ok``, ``refused`` (a one-line steptrace error) or ``crash``."""
    try:
        fn()
    except SteptraceError as exc:
        return "refused" if "\n" not in str(exc) else "crash"
    except Exception:  # noqa: BLE001 - counting what escapes is the point
        return "crash"
    return "ok"


# ------------------------------------------------------------------ round trips
def round_trip(trace: Trace, work: Path, exports: bool = True) -> None:
    """save -> load -> same tables and meta -> check -> CSV (and xlsx) export."""
    import pandas.testing as pdt

    import reports
    import tracer
    from tracer.trace_files import json_default

    try:
        path = trace.save(work / "t.trace")
    except SteptraceError:          # a meta that could not be read back is refused at save
        assert not (work / "t.trace").exists()
        raise
    back = Trace.load(path)
    for name in ("data", "steps", "samples", "params", "epochs"):
        pdt.assert_frame_equal(getattr(back, name), getattr(trace, name), check_exact=True)
    as_json = json.dumps(trace.meta, default=json_default, sort_keys=True)
    assert json.dumps(back.meta, sort_keys=True) == as_json
    # zero-size parameters included (they once crashed the checker: tests/tracer/checker/test_zero_size.py)
    with contextlib.suppress(SteptraceError):
        tracer.check(back)
    if exports:
        reports.to_csv(back, work / "csv")
        reports.to_excel(back, work / "t.xlsx")


# ------------------------------------------------------------------ mutated files
def _paths(node, prefix=()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def meta_mutations(draw):
    """A function that changes one node of ``meta.json`` (replace, delete, add, nest)."""
    kind = draw(st.sampled_from(["replace", "delete", "add", "nest"]))
    pick, value = draw(st.integers(0, 10**6)), draw(JSON)
    depth = draw(st.integers(1, 300))

    def apply(header: dict) -> dict:
        paths = _paths(header)
        path = paths[pick % len(paths)]
        if not path:
            return value if kind == "replace" else header
        parent = header
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        if kind == "replace":
            parent[key] = value
        elif kind == "delete":
            del parent[key]
        elif kind == "add" and isinstance(parent, dict):
            parent[f"k{pick}"] = value
        else:
            nested = parent[key]
            for _ in range(depth):
                nested = [nested]
            parent[key] = nested
        return header
    return apply


@st.composite
def byte_mutations(draw):
    """A function that damages a file's bytes: truncate, flip bytes, insert, or replace."""
    kind = draw(st.sampled_from(["truncate", "flip", "insert", "replace", "delete"]))
    at, n, junk = draw(st.integers(0, 10**6)), draw(st.integers(1, 8)), draw(st.binary(max_size=64))

    def apply(data: bytes) -> bytes | None:
        if kind == "delete":
            return None
        if kind == "replace":
            return junk
        i = at % (len(data) + 1)
        if kind == "truncate":
            return data[:i]
        if kind == "insert":
            return data[:i] + junk + data[i:]
        buf = bytearray(data)
        for j in range(n):
            if buf:
                buf[(i + 97 * j) % len(buf)] ^= 0xFF
        return bytes(buf)
    return apply


@st.composite
def table_mutations(draw):
    """A function that changes one column of a table: drop, retype, overwrite, shuffle, add."""
    kind = draw(st.sampled_from(["drop", "text", "float", "ints", "shuffle", "add", "empty"]))
    pick, seed, name = draw(st.integers(0, 10**6)), draw(st.integers(0, 2**32 - 1)), draw(NAMES)

    def apply(frame):
        import pandas as pd
        rng = np.random.default_rng(seed)
        col = frame.columns[pick % len(frame.columns)] if len(frame.columns) else None
        if kind == "empty" or col is None:
            return frame.iloc[:0]
        if kind == "drop":
            return frame.drop(columns=[col])
        if kind == "shuffle":
            return frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)
        if kind == "add":
            return frame.assign(**{name: rng.normal(size=len(frame))})
        values = {"text": frame[col].astype(str), "float": pd.to_numeric(frame[col], errors="coerce").astype(float),
                  "ints": rng.integers(-(2**62), 2**62, size=len(frame))}[kind]
        return frame.assign(**{col: values})
    return apply


@st.composite
def file_mutations(draw):
    """``(file name, description, apply(path))``: one change to one file of a trace."""
    target = draw(st.sampled_from(["meta.json", "data.parquet", "steps.parquet", "samples.parquet",
                                   "params.parquet", "epochs.parquet"]))
    if target != "meta.json" and draw(st.booleans()):
        change_table = draw(table_mutations())

        def apply_table(path: Path) -> None:
            import pandas as pd
            frame = change_table(pd.read_parquet(path / target))
            (path / target).unlink()
            frame.to_parquet(path / target, index=False)
        return target, "table", apply_table
    if target == "meta.json" and draw(st.booleans()):
        change = draw(meta_mutations())

        def apply(path: Path) -> None:
            header = change(json.loads((path / target).read_text()))
            (path / target).write_text(json.dumps(header))
        return target, "meta", apply
    change = draw(byte_mutations())

    def apply_bytes(path: Path) -> None:
        new = change((path / target).read_bytes())
        if new is None:
            (path / target).unlink()
        else:
            (path / target).write_bytes(new)
    return target, "bytes", apply_bytes


def check_mutated(good: Path, mutation, work: Path) -> tuple[str, str]:
    """Apply ``mutation`` to a copy of ``good`` and run ``steptrace check`` on it in-process.

    Returns ``(outcome, stderr)``: exit 2 must come with one stderr line.
    """
    from tracer.app.cli import main

    case = work / "case.trace"
    if case.exists():
        shutil.rmtree(case)
    shutil.copytree(good, case)
    mutation[2](case)
    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = main(["check", str(case)])
    except Exception:  # noqa: BLE001
        return "crash", err.getvalue()
    if code == 2:
        return ("refused" if len(err.getvalue().splitlines()) == 1 else "crash"), err.getvalue()
    return ("ok" if code in (0, 1, 3) else "crash"), err.getvalue()


def good_trace_dir(base: Path | None = None) -> Path:
    """A saved trace to mutate (the S2 run: data, RMSprop state, logged metrics, epochs),
    in ``base`` (default: a new temporary directory the caller removes)."""
    from _trace_factories import s2_trace
    base = Path(tempfile.mkdtemp(prefix="steptrace-fuzz-")) if base is None else Path(base)
    return s2_trace(epochs=1).save(base / "good.trace")
