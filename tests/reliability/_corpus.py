"""A corpus of malformed and foreign trace files, each built from a good trace by one change.

Why a corpus beside the fuzzing: these are the defects the issue's probe met (wrong
types in meta.json, deep nesting, huge numbers, a missing column, truncated Parquet,
foreign files), each named so a failure says which one broke. Every case must give
one TraceFileError line; the untouched trace (the clean twin) must load and check.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd


def _meta_edit(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        header = json.loads((path / "meta.json").read_text())
        change(header)
        (path / "meta.json").write_text(json.dumps(header))
    return apply


def _meta_text(text: str | bytes) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        data = text.encode() if isinstance(text, str) else text
        (path / "meta.json").write_bytes(data)
    return apply


def _table_edit(name: str, change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        file = path / f"{name}.parquet"
        frame = change(pd.read_parquet(file))
        file.unlink()
        frame.to_parquet(file, index=False)
    return apply


def _file_bytes(name: str, make: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        file = path / name
        file.write_bytes(make(file.read_bytes()))
    return apply


def _set(*keys, value):
    def change(header):
        node = header
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return change


def _deep(n: int) -> str:
    return '{"format": "steptrace-trace", "version": 1, "meta": {"program": ' + "[" * n + "]" * n + "}}"


def _replace_with_file(path: Path) -> None:
    shutil.rmtree(path)
    path.write_text("not a trace")


def _dir_as(name: str) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        (path / name).unlink()
        (path / name).mkdir()
        (path / name / "part.parquet").write_bytes(b"PAR1")
    return apply


def _sparse_meta(path: Path) -> None:
    with open(path / "meta.json", "r+b") as fh:
        fh.truncate(300 * 1024**2)        # sparse: larger than MAX_META_BYTES, costs no disk


def _foreign_dir(path: Path) -> None:
    shutil.rmtree(path)
    path.mkdir()
    (path / "README.txt").write_text("somebody else's directory")


def _swap_step(frame):
    frame = frame.copy()
    frame.loc[1, "step"] = frame.loc[0, "step"]
    return frame


CASES: dict[str, Callable[[Path], None]] = {
    # meta.json: not JSON, foreign JSON, wrong header
    "meta-not-json": _meta_text("{"),
    "meta-empty": _meta_text(""),
    "meta-binary": _meta_text(bytes(range(256))),
    "meta-invalid-utf8": _meta_text(b'{"format": "\xff\xfe"}'),
    "meta-array": _meta_text("[1, 2, 3]"),
    "meta-foreign-json": _meta_text('{"name": "package.json", "version": "1.0.0"}'),
    "header-version-string": _meta_edit(_set("version", value="1")),
    "header-version-newer": _meta_edit(_set("version", value=99)),
    "header-no-meta": _meta_edit(lambda h: h.pop("meta")),
    "header-layout-unknown": _meta_edit(_set("layout", value="zip")),
    "meta-is-list": _meta_edit(_set("meta", value=[])),
    # meta.json: wrong types and ranges
    "params-string": _meta_edit(_set("meta", "params", value="abc")),
    "shape-string": _meta_edit(_set("meta", "params", 0, "shape", value="abc")),
    "shape-negative": _meta_edit(_set("meta", "params", 0, "shape", value=[-1])),
    "shape-float": _meta_edit(_set("meta", "params", 0, "shape", value=[1.5])),
    "shape-huge": _meta_edit(_set("meta", "params", 0, "shape", value=[10**30])),
    "shape-wrong-size": _meta_edit(_set("meta", "params", 0, "shape", value=[3, 1])),
    "param-name-number": _meta_edit(_set("meta", "params", 0, "name", value=5)),
    "param-renamed": _meta_edit(_set("meta", "params", 0, "name", value="zz")),
    "n-rows-negative": _meta_edit(_set("meta", "data", "n_rows", value=-3)),
    "n-rows-wrong": _meta_edit(_set("meta", "data", "n_rows", value=7)),
    "inputs-string": _meta_edit(_set("meta", "data", "inputs", value="x")),
    "inputs-unknown-column": _meta_edit(_set("meta", "data", "inputs", value=["nope"])),
    "capture-every-zero": _meta_edit(_set("meta", "capture", "every", value=0)),
    "capture-null": _meta_edit(_set("meta", "capture", value=None)),
    "loss-string": _meta_edit(_set("meta", "loss", value="mse")),
    "divide-by-text": _meta_edit(_set("meta", "loss", "divide_by", value=["x"])),
    "loss-delta-text": _meta_edit(_set("meta", "loss", "delta", value="big")),
    "optimizer-lr-text": _meta_edit(_set("meta", "optimizer", "lr", value="fast")),
    "metrics-dict": _meta_edit(_set("meta", "metrics", value={"a": 1})),
    "notes-dict": _meta_edit(_set("meta", "notes", value={"a": 1})),
    "model-layers-dict": _meta_edit(_set("meta", "model", "layers", value={})),
    "update-rule-list": _meta_edit(_set("meta", "update_rule", value=[])),
    # meta.json: nesting and numbers
    "deep-nesting-100k": _meta_text(_deep(100_000)),
    "deep-nesting-200": _meta_text(_deep(200)),
    "huge-float": _meta_text('{"format": "steptrace-trace", "version": 1, "meta": {"data": {"n_rows": 1e999}}}'),
    "huge-int-literal": _meta_text('{"format": "steptrace-trace", "version": 1, "meta": {"x": ' + "9" * 5000 + "}}"),
    "nan-in-program": _meta_text('{"format": "steptrace-trace", "version": 1, "meta": {"program": [NaN]}}'),
    "meta-over-size-limit": _sparse_meta,
    # tables
    "steps-missing": lambda p: (p / "steps.parquet").unlink(),
    "steps-truncated": _file_bytes("steps.parquet", lambda b: b[: len(b) // 2]),
    "params-truncated-tail": _file_bytes("params.parquet", lambda b: b[:-9]),
    "steps-empty-file": _file_bytes("steps.parquet", lambda b: b""),
    "steps-csv-text": _file_bytes("steps.parquet", lambda b: b"epoch,batch,step\n1,1,1\n"),
    "steps-png": _file_bytes("steps.parquet", lambda b: b"\x89PNG\r\n\x1a\n" + bytes(64)),
    "data-is-directory": _dir_as("data.parquet"),
    "params-before-dropped": _table_edit("params", lambda f: f.drop(columns=["before"])),
    "params-before-text": _table_edit("params", lambda f: f.assign(before=f["before"].astype(str))),
    "params-row-dropped": _table_edit("params", lambda f: f.iloc[1:]),
    "params-index-shuffled": _table_edit("params", lambda f: f.assign(index=f["index"].to_numpy()[::-1])),
    "params-unknown-name": _table_edit("params", lambda f: f.assign(param="stranger")),
    "params-foreign-table": _table_edit("params", lambda f: pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})),
    "steps-step-float": _table_edit("steps", lambda f: f.assign(step=f["step"].astype(float))),
    "steps-step-repeated": _table_edit("steps", _swap_step),
    "steps-loss-text": _table_edit("steps", lambda f: f.assign(loss="high")),
    "steps-epoch-dropped": _table_edit("steps", lambda f: f.drop(columns=["epoch"])),
    "samples-row-out-of-range": _table_edit("samples", lambda f: f.assign(sample=999)),
    "samples-step-unknown": _table_edit("samples", lambda f: f.assign(step=12345)),
    "samples-extra-prediction": _table_edit("samples", lambda f: f.assign(y_pred2=0.0)),
    "data-input-dropped": _table_edit("data", lambda f: f.drop(columns=[c for c in f.columns if c.startswith("x")][:1])),
    "data-input-text": _table_edit("data", lambda f: f.assign(**{f.columns[1]: "a"})),
    "epochs-epoch-dropped": _table_edit("epochs", lambda f: f.drop(columns=["epoch"])),
    # foreign files and directories
    "trace-is-a-file": _replace_with_file,
    "foreign-directory": _foreign_dir,
    "meta-is-directory": _dir_as("meta.json"),
}
if hasattr(os, "mkfifo"):
    def _fifo(path: Path) -> None:
        (path / "steps.parquet").unlink()
        os.mkfifo(path / "steps.parquet")   # reading would block forever: must be refused
    CASES["steps-fifo"] = _fifo


def make_case(good: Path, name: str, where: Path) -> Path:
    """A copy of the trace ``good`` at ``where`` with defect ``name`` applied."""
    shutil.copytree(good, where)
    CASES[name](where)
    return where


def defect_free(path: Path) -> bool:
    """Sanity: a copy with no change loads (used by the clean-twin test)."""
    from tracer import Trace
    return Trace.load(path).n_steps > 0 and bool(np.isfinite(Trace.load(path).steps["loss"]).any())
