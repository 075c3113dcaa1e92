"""``TraceCallback`` under a real ``tf.distribute.MirroredStrategy`` over two logical CPU
devices (issue 15, item 3): one trace per replica, checked as the ranks of a job.

The fits run once per module in a fresh process (``tests/_mirrored_jobs.py``: TensorFlow
splits the CPU into logical devices only before it first uses one). The clean fit must check
with 0 findings and end bit-identical to the untraced one; the planted bugs must be named at
their step and replica; what is not modelled must say "cannot check", never fail.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("keras")

from tracer.checker import check  # noqa: E402
from tracer.ranks import load_ranks  # noqa: E402
from tracer.ranks.check import check_ranks  # noqa: E402
from tracer.trace import Trace  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from _mirrored_jobs import BATCH, BUG_STEP, N_ROWS  # noqa: E402

STEPS = 2 * N_ROWS // BATCH


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """Every variant, fitted once in one fresh process."""
    d = tmp_path_factory.mktemp("mirrored")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": "tensorflow"}
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "_mirrored_jobs.py"), str(d)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return d


def test_clean_fit_bit_identical_and_no_findings(out):
    traced, plain = np.load(out / "clean" / "final.npz"), np.load(out / "clean_plain" / "final.npz")
    assert all(np.array_equal(traced[k], plain[k]) for k in plain)
    assert json.loads((out / "clean" / "logs.json").read_text()) == json.loads(
        (out / "clean_plain" / "logs.json").read_text())
    assert json.loads((out / "clean" / "left.json").read_text())["spies_left"] == [False, False, False]
    rep = check_ranks(out / "clean" / "run")
    assert rep.ok, rep.summary()
    assert rep.findings == []
    assert all(r.ok and r.n_steps == STEPS for r in rep.per_rank.values())


def test_replica_rows_and_gradients(out):
    traces = load_ranks(out / "clean" / "run")
    assert sorted(traces) == [0, 1]
    for r, t in traces.items():
        d = t.meta["distributed"]
        assert (d["rank"], d["world_size"], d["backend"]) == (r, 2, "tf.distribute.MirroredStrategy")
    for s in range(1, STEPS + 1):                        # each replica: its half of the global batch
        rows = [t.samples.loc[t.samples["step"] == s, "sample"].tolist() for t in traces.values()]
        first = ((s - 1) % (STEPS // 2)) * BATCH
        assert rows == [list(range(first, first + BATCH // 2)), list(range(first + BATCH // 2, first + BATCH))]
    name = next(iter(traces[0].arrays().params))
    g = {r: t.param_values(name, "grad") for r, t in traces.items()}
    loc = {r: t.param_values(name, "local_grad") for r, t in traces.items()}
    assert np.array_equal(g[0], g[1]) and not np.allclose(loc[0], loc[1])
    assert np.allclose(g[0], (loc[0] + loc[1]) / 2, rtol=1e-6, atol=1e-8)
    assert np.array_equal(traces[0].param_values(name, "after"), traces[1].param_values(name, "after"))


def test_callback_trace_is_the_merged_job_with_keras_logs(out):
    t = Trace.load(out / "clean" / "trace")
    assert t.meta["distributed"]["merged"] and (t.steps["batch_size"] == BATCH).all()
    rep = check(t)
    assert rep.ok, rep.summary()
    assert {"logged_loss", "grad", "update", "loss"} <= set(rep.table["quantity"])


def test_unequal_slices_of_a_partial_batch_are_clean(out):
    """35 rows, global batch 10: each epoch's last batch splits 3 / 2. Keras then weighs the
    replicas' mean gradients equally, which is not the global batch's gradient: the merge
    leaves those steps out (with a note), every replica and the cross-replica checks keep them."""
    rep = check_ranks(out / "uneven" / "run")
    assert rep.ok and rep.failed_findings == [], rep.summary()
    assert all(r.n_steps == 8 for r in rep.per_rank.values())
    assert rep.merged.n_steps == 6
    assert any("step(s) 4, 8 left out" in n for n in rep.merged_trace.meta["notes"])
    sizes = [load_ranks(out / "uneven" / "run")[r].steps["batch_size"].tolist() for r in (0, 1)]
    assert sizes == [[5, 5, 5, 3] * 2, [5, 5, 5, 2] * 2]
    assert check(Trace.load(out / "uneven" / "trace")).ok


def test_parameter_modified_on_one_replica_is_named(out):
    rep = check_ranks(out / "modify" / "run")
    (f,) = rep.failed_findings
    assert (f["kind"], f["step"], f["rank"]) == ("rank_divergence", BUG_STEP + 1, 1)
    assert f"between steps {BUG_STEP} and {BUG_STEP + 1}" in f["message"]


def test_one_replicas_gradient_only_is_named(out):
    rep = check_ranks(out / "one_replica" / "run")
    (f,) = rep.failed_findings
    assert (f["kind"], f["step"], f["rank"]) == ("rank_gradient", 1, 1)
    assert "1 of the 2 shards" in f["message"]


def test_unmodelled_compute_loss_says_cannot_check(out):
    """An overridden compute_loss (here one that skips Keras's division by the replicas) is
    Python the hook cannot read: cannot check, never a false pass or a false alarm."""
    rep = check_ranks(out / "unscaled" / "run")
    assert rep.failed_findings == []
    for r in rep.per_rank.values():
        assert r.verdict == "incomplete" and any("compute_loss" in c for c in r.cannot_check)


def test_clipnorm_under_mirrored_says_cannot_check_not_failed(out):
    """Not modelled (Keras clips per replica before the sum): the hook says so with the
    reason; the run is incomplete, never FAILED (the false alarm of the averaged values)."""
    rep = check(Trace.load(out / "clipnorm" / "trace"))
    assert rep.verdict == "incomplete", rep.summary()
    assert any("clipnorm" in c and "MirroredStrategy" in c for c in rep.cannot_check)
    assert not (out / "clipnorm" / "run").exists()


def test_steptrace_run_checks_the_merged_job(tmp_path):
    """``steptrace run`` on an untouched MirroredStrategy script: the script's own output and
    exit code are kept, the run is the merged job and checks OK."""
    script = tmp_path / "keras_mirrored.py"
    script.write_text((ROOT / "tests" / "scripts" / "keras_mirrored.py").read_text())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": "tensorflow"}
    plain = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600,
                           cwd=tmp_path)
    traced = subprocess.run([sys.executable, "-m", "tracer", "run", str(script)], env=env, capture_output=True,
                            text=True, timeout=600, cwd=tmp_path)
    assert plain.returncode == traced.returncode == 0, traced.stderr[-3000:]
    assert plain.stdout.strip().startswith("final loss") and traced.stdout == plain.stdout
    assert "steptrace check: OK" in traced.stderr, traced.stderr[-3000:]
    t = Trace.load(tmp_path / "keras_mirrored.steptrace" / "run_1")
    assert t.meta["distributed"]["merged"] and t.meta["distributed"]["ranks"] == [0, 1]
