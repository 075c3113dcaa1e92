"""Folders of several runs, and the lines every command ends with.

Why: ``steptrace run train.py`` writes ``train.steptrace/run_1``, ``run_2``, ... and a
learner then types ``steptrace check train.steptrace``. Rather than "not a trace", the
commands list the runs that folder holds and take ``run_N`` (``steptrace check
train.steptrace run_2``); a folder with one run is that run. Every command then ends by
naming what it wrote as ``file://`` links (a terminal opens them with a click) and the
next commands worth typing.
"""
from __future__ import annotations

from typing import TextIO

import json
import re
from pathlib import Path

from ..errors import TraceInputError

__all__ = ["resolve_trace", "runs_in", "file_link", "say_next"]

_RUN = re.compile(r"run_(\d+)")


def runs_in(folder: Path) -> list[dict]:
    """The runs of a ``steptrace run`` output folder: ``[{dir, path, label, steps, verdict}]``
    in run order (from ``index.json`` when there is one, else the ``run_N`` folders)."""
    info = {}
    try:
        index = json.loads((folder / "index.json").read_text())
        info = {str(r.get("dir")): r for r in index.get("runs", []) if isinstance(r, dict)}
    except (OSError, ValueError, AttributeError):
        pass
    found = []
    for path in folder.iterdir() if folder.is_dir() else []:
        m = _RUN.fullmatch(path.name)
        if m and (path / "meta.json").is_file():
            r = info.get(path.name, {})
            found.append({"number": int(m.group(1)), "dir": path.name, "path": path, "label": r.get("label"),
                          "steps": r.get("steps"), "verdict": r.get("verdict")})
    return sorted(found, key=lambda r: r["number"])


def _listing(folder: Path, runs: list[dict]) -> str:
    lines = []
    for r in runs:
        parts = [r["dir"]] + [str(x) for x in (r["label"], None if r["steps"] is None else f"{r['steps']} steps",
                                               r["verdict"]) if x]
        lines.append("  " + " - ".join(parts))
    return "\n".join(lines)


def resolve_trace(path: str | Path, run: str | None = None, command: str = "check") -> Path:
    """The trace folder meant by ``path`` (a trace, or a folder of runs) and ``run`` (``run_N`` or N).

    A folder of several runs without ``run`` raises :class:`TraceInputError` listing them and
    showing the command to type; an unknown ``run`` lists the ones there are.
    """
    folder = Path(path)
    if (folder / "meta.json").is_file():
        if run is not None:
            raise TraceInputError(f"{folder} is one trace, not a folder of runs: drop {run!r}")
        return folder
    runs = runs_in(folder)
    if not runs:
        if run is not None:
            raise TraceInputError(f"{folder} holds no runs (run_N folders written by steptrace run)")
        return folder              # Trace.load says what is wrong with it
    if run is None:
        if len(runs) == 1:
            return runs[0]["path"]
        raise TraceInputError(f"{folder} holds {len(runs)} runs (steptrace run output); name one:\n"
                              f"{_listing(folder, runs)}\n"
                              f"e.g. steptrace {command} {folder} {runs[0]['dir']}")
    m = re.fullmatch(r"(?:run_)?(\d+)", str(run).strip())
    chosen = [r for r in runs if m and r["number"] == int(m.group(1))]
    if not chosen:
        raise TraceInputError(f"{folder} has no run {run!r}; it holds:\n{_listing(folder, runs)}")
    return chosen[0]["path"]


def file_link(path: str | Path) -> str:
    """``file:///absolute/path`` (spaces and other characters escaped)."""
    return Path(path).resolve().as_uri()


def say_next(written: list, commands: list[str], stream: TextIO | None = None) -> None:
    """Print what a command wrote (``file://`` links) and the next useful commands."""
    import sys
    stream = stream or sys.stdout
    if written:
        print("\nwritten:", file=stream)
        for p in written:
            print(f"  {file_link(p)}", file=stream)
    if commands:
        print("next:" if written else "\nnext:", file=stream)
        for c in commands:
            print(f"  {c}", file=stream)
