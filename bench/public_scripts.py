"""Run the public-script corpus (issue 16) untraced and under ``steptrace run``, and tabulate.

For every entry of ``tests/scripts/public/MANIFEST.json`` this runs the script twice
in subprocesses from the repository root:

1. untraced, ``python SCRIPT`` (wall time, exit code, stdout);
2. traced, ``python -m tracer run -o TMPDIR SCRIPT`` (wall time, exit code, stdout),

then reads ``TMPDIR/index.json`` (the runs and their verdicts) and each run's
``check.txt``, and says whether the script met its expectation: a clean script has
no FAILED verdict; a buggy one has a FAILED run whose ``check.txt`` names the
expected finding (the finding kind itself, or the sentence the checker writes for
it, see :data:`FINDING_PATTERNS`). It prints one table::

    python bench/public_scripts.py                 # all scripts, default steptrace run
    python bench/public_scripts.py --no-excel      # passed on to steptrace run
    python bench/public_scripts.py --only torch_nn_really --json out.json
    python bench/public_scripts.py --manifest tests/scripts/sweep/MANIFEST.json   # the sweep corpus

It works with whatever the product does today: a missing index, a crash or a
timeout is reported in the table, never raised. ``tests/scenarios/test_public_scripts.py``
uses the same functions.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = ROOT / "tests" / "scripts" / "public"
MANIFEST = PUBLIC / "MANIFEST.json"
DEFAULT_TIMEOUT = 900.0

# What check.txt says for each finding kind today (tracer/checker/diagnoses/*): a
# failing line matches the kind when it names the kind itself or matches one of these.
FINDING_PATTERNS: dict[str, list[str]] = {
    "never_updated": [r"never updated", r"value never changes"],
    "updated_twice": [r"updated \d+ times per step", r"updated twice"],
    "grad_accumulating": [r"gradients are accumulating", r"never zeroed"],
    "double_averaging": [r"already averages", r"divided by the batch size again", r"averag\w* twice"],
    "continuity": [r"outside the recorded update"],
    "dead_gradient": [r"gradient of exactly 0", r"\bdead (?:relu|gradient)"],
    "loss_broadcast": [r"broadcast"],
    "non_finite": [r"first inf or nan", r"\bnon-finite\b"],
    # gradient accumulation over micro-batches (not to be confused with grad_accumulating)
    "accumulation": [r"\baccumulation\b", r"micro-?batch"],
    "logged_mismatch": [r"\blogged\b.*\b(?:mismatch|differs|is not)\b"],
    # a logged value that equals another computation than its name says (tracer/checker/catalogue.py)
    "logged_name": [r"\blogged '[^']+' equals\b"],
    "shared_param": [r"reached twice by the optimizers"],
}
VERDICT_WORDS = {"passed": "OK", "failed": "FAILED", "incomplete": "INCOMPLETE", "error": "ERROR", None: "-"}
_QUANTITY_LINE = re.compile(r"^\s+(\S+)\s+(\d+)/(\d+) passed\s*$")


# ----------------------------------------------------------------- manifest
def load_manifest(path: Path = MANIFEST) -> list[dict]:
    """The manifest entries: ``file``, ``provenance``, ``framework``, ``kind`` (clean/buggy),
    ``expected`` (``"no FAILED verdict"``, a finding kind or a failing quantity), ``runs``
    (training runs the script makes), ``steps`` (optimizer steps of each run) and, for
    a few, ``also_accept`` (other finding kinds that name the same bug). The sweep corpus
    adds ``args`` (options for ``steptrace run``), and for clean scripts ``verdict``
    (every run's) and ``cannot_check`` (what an op outside the registry is called):
    :func:`strict_expectation`."""
    return json.loads(Path(path).read_text())


def select(entries: list[dict], only: list[str] | None) -> list[dict]:
    """Entries whose file name (with or without ``.py``) contains one of ``only``."""
    if not only:
        return list(entries)
    return [e for e in entries if any(o in e["file"] or o == Path(e["file"]).stem for o in only)]


# ------------------------------------------------------------------ running
def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONHASHSEED", "0")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")      # TensorFlow's start-up chatter (stderr only)
    env.setdefault("MPLBACKEND", "Agg")
    env.pop("STEPTRACE_PROGRESS_INTERVAL", None)
    return env


def _run(cmd: list[str], timeout: float) -> dict:
    """Run ``cmd`` from the repository root: exit code, stdout, stderr tail, wall time."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, timeout=timeout)
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, out, err = None, exc.stdout or b"", (exc.stderr or b"") + f"\n[timed out after {timeout:.0f} s]".encode()
    except OSError as exc:
        code, out, err = None, b"", str(exc).encode()
    wall = time.perf_counter() - start
    return {"exit_code": code, "stdout": out.decode("utf-8", "replace"),
            "stderr_tail": err.decode("utf-8", "replace")[-4000:], "wall_s": round(wall, 3)}


def read_index(out: Path) -> dict:
    """``index.json`` and each run's ``check.txt`` as plain data; never raises.

    Returns ``{"index_found", "index_error", "exit_code", "runs": [{"run", "label",
    "steps", "verdict", "check"}]}`` (``check`` is the text of check.txt or None).
    """
    result = {"index_found": False, "index_error": None, "exit_code": None, "runs": []}
    path = out / "index.json"
    if not path.is_file():
        result["index_error"] = "no index.json"
        return result
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        result["index_error"] = f"unreadable index.json: {exc}"
        return result
    result["index_found"] = True
    if not isinstance(index, dict):
        result["index_error"] = "index.json is not an object"
        return result
    result["exit_code"] = index.get("exit_code")
    runs = index.get("runs") or []
    for i, run in enumerate(runs if isinstance(runs, list) else [], start=1):
        if not isinstance(run, dict):
            continue
        name = str(run.get("dir") or f"run_{run.get('run', i)}")
        check_path = out / name / "check.txt"
        try:
            check = check_path.read_text() if check_path.is_file() else None
        except OSError:
            check = None
        verdict = run.get("verdict")
        if verdict is None and check:
            m = re.match(r"steptrace check: (OK|FAILED|INCOMPLETE)", check)
            verdict = {"OK": "passed", "FAILED": "failed", "INCOMPLETE": "incomplete"}[m.group(1)] if m else None
        result["runs"].append({"run": run.get("run", i), "label": run.get("label"), "steps": run.get("steps"),
                               "verdict": verdict, "check": check})
    return result


def run_entry(entry: dict, *, no_excel: bool = False, timeout: float = DEFAULT_TIMEOUT,
              keep: Path | None = None, extra_args: list[str] | None = None, directory: Path = PUBLIC) -> dict:
    """Run one manifest entry untraced and traced; return the facts and the evaluation.

    ``directory`` holds the scripts (the manifest's folder); an entry's ``args`` (a NumPy
    script's ``--numpy-params w,b --numpy-model model``) go to ``steptrace run`` after
    ``extra_args``."""
    script = Path(directory) / entry["file"]
    res: dict = {"file": entry["file"], "kind": entry["kind"], "expected": entry["expected"],
                 "runs_expected": entry.get("runs"), "error": None}
    try:
        res["untraced"] = _run([sys.executable, str(script)], timeout)
        out = Path(tempfile.mkdtemp(prefix="steptrace-public-"))
        try:
            cmd = [sys.executable, "-m", "tracer", "run"] + (["--no-excel"] if no_excel else []) \
                + list(extra_args or []) + list(entry.get("args") or []) + ["-o", str(out / "trace"), str(script)]
            res["traced"] = _run(cmd, timeout)
            res["index"] = read_index(out / "trace")
            if keep is not None:
                dest = Path(keep) / Path(entry["file"]).stem
                shutil.rmtree(dest, ignore_errors=True)
                if (out / "trace").exists():
                    shutil.copytree(out / "trace", dest)
        finally:
            shutil.rmtree(out, ignore_errors=True)
    except Exception as exc:  # the harness reports, it never crashes
        res["error"] = f"{type(exc).__name__}: {exc}"
        res.setdefault("untraced", {"exit_code": None, "stdout": "", "stderr_tail": "", "wall_s": None})
        res.setdefault("traced", {"exit_code": None, "stdout": "", "stderr_tail": "", "wall_s": None})
        res.setdefault("index", {"index_found": False, "index_error": res["error"], "exit_code": None, "runs": []})
    res.update(evaluate(entry, res))
    return res


def run_all(entries: list[dict], *, jobs: int = 1, progress=None, **kwargs) -> list[dict]:
    """:func:`run_entry` on every entry, ``jobs`` at a time; results in manifest order."""
    def one(entry):
        r = run_entry(entry, **kwargs)
        if progress is not None:
            progress(r)
        return r
    if jobs <= 1:
        return [one(e) for e in entries]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, entries))


# --------------------------------------------------------------- evaluation
def failing_lines(check: str | None) -> list[str]:
    """The lines of a check.txt that report a failure: ``[FAIL]`` findings, the first
    failure, and per-quantity counts with fewer passed than checked."""
    out = []
    for line in (check or "").splitlines():
        s = line.strip()
        if s.startswith("[FAIL") or s.startswith("first failure") or "FAIL" in s.split(" ", 1)[0]:
            out.append(s)
            continue
        m = _QUANTITY_LINE.match(line)
        if m and int(m.group(2)) < int(m.group(3)):
            out.append(s)
    return out


def names_finding(check: str | None, expected: str) -> bool:
    """Whether a check.txt's failing lines name ``expected``: a finding kind of
    :data:`FINDING_PATTERNS`, or else a quantity (``logged_rmse``, ``update``...)."""
    lines = failing_lines(check)
    if not lines:
        return False
    token = re.compile(r"(?<![A-Za-z0-9_])" + re.escape(expected) + r"(?![A-Za-z0-9_])", re.IGNORECASE)
    if any(token.search(line) for line in lines):
        return True
    if expected == "logged_mismatch":
        for line in lines:
            m = _QUANTITY_LINE.match("  " + line)
            if m and re.match(r"(?:epoch_)?logged_", m.group(1)):
                return True
            if line.startswith("first failure") and re.search(r", (?:epoch_)?logged_\w+", line):
                return True
    patterns = FINDING_PATTERNS.get(expected)
    if patterns is None:                               # a quantity name: its count line must fail
        return any((m := _QUANTITY_LINE.match("  " + line)) and m.group(1) == expected for line in lines)
    return any(re.search(p, line, re.IGNORECASE) for p in patterns for line in lines)


def evaluate(entry: dict, res: dict) -> dict:
    """The verdicts, the expectation check and the comparisons for one result."""
    runs = res["index"]["runs"]
    verdicts = [r["verdict"] for r in runs]
    unt, tr = res["untraced"], res["traced"]
    stdout_identical = unt["exit_code"] is not None and tr["exit_code"] is not None and unt["stdout"] == tr["stdout"]
    ratio = None
    if unt.get("wall_s") and tr.get("wall_s") is not None and unt["exit_code"] is not None \
            and tr["exit_code"] is not None:
        ratio = round(tr["wall_s"] / unt["wall_s"], 2)
    expected = entry["expected"]
    accept = [expected] + list(entry.get("also_accept") or [])
    if not res["index"]["index_found"]:
        met, why = False, res["index"]["index_error"] or "no index"
    elif not runs:
        met, why = False, "no training run recorded"
    elif entry["kind"] == "clean":
        bad = [str(r["run"]) for r in runs if r["verdict"] in ("failed", "error")]
        met = not bad
        why = "" if met else f"FAILED/ERROR in run {', '.join(bad)}"
        if met and entry.get("verdict"):
            met, why = strict_expectation(entry, runs)
    else:
        failed = [r for r in runs if r["verdict"] == "failed"]
        named = [(r, k) for k in accept for r in failed if names_finding(r["check"], k)]
        met = bool(named)
        if met:
            matched = named[0][1]
            why = "" if matched == expected else f"as {matched}"
        elif failed:
            why = f"FAILED but check.txt does not name {expected}"
        else:
            why = "no FAILED verdict"
    steps_got = [r["steps"] for r in runs]
    steps_ok = None if entry.get("steps") is None else steps_got == list(entry["steps"])
    return {"verdicts": verdicts, "runs_got": len(runs), "expected_met": met, "why": why,
            "steps_expected": entry.get("steps"), "steps_got": steps_got, "steps_ok": steps_ok,
            "stdout_identical": stdout_identical,
            "exit_code_kept": tr["exit_code"] is not None and unt["exit_code"] == tr["exit_code"],
            "ratio": ratio}


def strict_expectation(entry: dict, runs: list[dict]) -> tuple[bool, str]:
    """A clean entry's stricter promise (the sweep corpus): every run's verdict is
    ``entry["verdict"]``; with ``passed`` no check.txt says "cannot check", and an entry
    outside the registry (``incomplete``) names ``entry["cannot_check"]`` in each run's
    "cannot check" lines."""
    want = entry["verdict"]
    off = [f"run {r['run']} {r['verdict']}" for r in runs if r["verdict"] != want]
    if off:
        return False, f"expected {want}: " + ", ".join(off)
    texts = entry.get("cannot_check")
    for i, r in enumerate(runs):
        lines = [ln.strip() for ln in (r["check"] or "").splitlines() if ln.strip().startswith("cannot check")]
        if want == "passed" and lines:
            return False, f"run {r['run']}: {lines[0]}"
        text = texts[i] if isinstance(texts, list) and i < len(texts) else texts
        if text and not any(text in ln for ln in lines):
            return False, f"run {r['run']} does not say 'cannot check: ...{text}...'"
    return True, ""


# -------------------------------------------------------------------- table
def _verdict_text(verdicts: list) -> str:
    if not verdicts:
        return "-"
    words = [VERDICT_WORDS.get(v, str(v)) for v in verdicts]
    if len(words) <= 3:
        return ",".join(words)
    counts: dict[str, int] = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    return " ".join(f"{w}x{n}" for w, n in counts.items())


def _steps_text(steps: list) -> str:
    """Steps per run: ``24+24``, or the total when there are many runs."""
    steps = [int(k or 0) for k in steps]
    return "+".join(map(str, steps)) if len(steps) <= 3 else str(sum(steps))


def table(results: list[dict]) -> str:
    """A plain-text table, one row per script."""
    head = ["script", "kind", "runs (got/expected)", "verdicts", "expected met?", "traced/untraced", "stdout identical"]
    rows = []
    for r in results:
        runs = f"{r['runs_got']}/{r['runs_expected']}" if r.get("runs_expected") is not None else str(r["runs_got"])
        if r.get("steps_ok") is False:
            runs += f" (steps {_steps_text(r['steps_got'])}/{_steps_text(r['steps_expected'])})"
        met = ("yes" if r["expected_met"] else "NO") + (f" ({r['why']})" if r["why"] else "")
        if r["kind"] == "buggy":
            met += f" [{r['expected']}]"
        ut, tt = r["untraced"], r["traced"]
        if r["ratio"] is not None:
            ratio = f"{r['ratio']:.2f} ({tt['wall_s']:.1f}s/{ut['wall_s']:.1f}s)"
        else:
            ratio = f"- (exit {ut['exit_code']}/{tt['exit_code']})"
        same = "yes" if r["stdout_identical"] else "NO"
        if not r["exit_code_kept"]:
            same += f" (exit {ut['exit_code']} -> {tt['exit_code']})"
        rows.append([r["file"], r["kind"], runs, _verdict_text(r["verdicts"]), met, ratio, same])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = lambda row: "| " + " | ".join(str(x).ljust(w) for x, w in zip(row, widths)) + " |"
    lines = [fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [fmt(row) for row in rows]
    clean = [r for r in results if r["kind"] == "clean"]
    buggy = [r for r in results if r["kind"] == "buggy"]
    lines.append("")
    lines.append(f"clean scripts without a FAILED verdict: {sum(r['expected_met'] for r in clean)}/{len(clean)}; "
                 f"buggy scripts whose bug is named: {sum(r['expected_met'] for r in buggy)}/{len(buggy)}; "
                 f"stdout identical: {sum(r['stdout_identical'] for r in results)}/{len(results)}; "
                 f"run counts as expected: {sum(r['runs_got'] == r['runs_expected'] for r in results)}/{len(results)}; "
                 f"step counts as expected: {sum(bool(r.get('steps_ok')) for r in results)}/{len(results)}")
    return "\n".join(lines)


def _json_safe(results: list[dict]) -> list[dict]:
    out = []
    for r in results:
        r = json.loads(json.dumps(r, default=str))
        for side in ("untraced", "traced"):
            r[side]["stdout_lines"] = r[side]["stdout"].count("\n")
        out.append(r)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", metavar="NAME",
                   help="run only scripts whose file name contains NAME (repeatable)")
    p.add_argument("--json", metavar="OUT", help="also write every result (stdout, check.txt...) as JSON")
    p.add_argument("--no-excel", action="store_true", help="passed on to steptrace run")
    p.add_argument("--jobs", type=int, default=1,
                   help="scripts run at the same time (default 1: timings are fairest alone)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per run (default %(default)s)")
    p.add_argument("--keep", metavar="DIR", help="keep each traced output under DIR/SCRIPT_STEM/")
    p.add_argument("--manifest", default=str(MANIFEST),
                   help="the corpus's MANIFEST.json; its scripts are beside it (default: the public corpus; "
                        "tests/scripts/sweep/MANIFEST.json is the sweep's)")
    args = p.parse_args(argv)
    entries = select(load_manifest(Path(args.manifest)), args.only)
    if not entries:
        print("no manifest entry matches --only " + " ".join(args.only or []), file=sys.stderr)
        return 2

    def progress(r):
        print(f"  {r['file']}: {_verdict_text(r['verdicts'])}, expected met: {r['expected_met']}, "
              f"{r['traced']['wall_s']}s traced", file=sys.stderr, flush=True)

    print(f"running {len(entries)} public scripts ({'--no-excel' if args.no_excel else 'default steptrace run'}, "
          f"{args.jobs} at a time)", file=sys.stderr, flush=True)
    results = run_all(entries, jobs=args.jobs, progress=progress, no_excel=args.no_excel, timeout=args.timeout,
                      keep=Path(args.keep) if args.keep else None, directory=Path(args.manifest).parent)
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(_json_safe(results), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
