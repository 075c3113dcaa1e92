"""``trace_torch`` in real 2-process DDP jobs on CPU (gloo), issue 15.

Each job is ``tests/_ddp_jobs.py``'s small S4-like regression, 2 epochs of 8 steps, spawned
in two processes; each rank writes ``run/rank=N/``. The clean job must check with 0
findings and end bit-identical to the untraced job; each planted bug must be named at
its step and rank.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402

from tracer.ranks import dataset, load_ranks, rank_dirs  # noqa: E402
from tracer.ranks.check import check_ranks  # noqa: E402
from tracer.ranks.merge import merge_ranks  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.slow,
              pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo")]

from _ddp_jobs import BUG_STEP, N_ROWS, spawn_job  # noqa: E402


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    """Every job once per module: the variants traced, the clean one also untraced."""
    cache = {}

    def get(variant, traced=True):
        key = (variant, traced)
        if key not in cache:
            out = tmp_path_factory.mktemp(f"ddp_{variant}_{int(traced)}")
            cache[key] = (out, spawn_job(str(out), variant, traced=traced))
        return cache[key]
    return get


def test_clean_job_bit_identical_and_no_findings(jobs):
    out, traced = jobs("clean")
    _, plain = jobs("clean", traced=False)
    for r in (0, 1):
        for k, v in plain[r]["final"].items():
            assert torch.equal(traced[r]["final"][k], v), (r, k)
        assert traced[r]["hooks_left"] == 0        # the user's model is left as found
        assert traced[r]["comm_hooks"] == 0        # no communication hook left behind
    rep = check_ranks(out / "run")
    assert rep.ok, rep.summary()
    assert rep.failed_findings == []
    assert all(r.ok and r.n_steps == 16 for r in rep.per_rank.values())
    assert [f["kind"] for f in rep.findings] == ["rank_loss"]       # a note only


def test_rank_traces_rows_and_gradients(jobs):
    out, _ = jobs("clean")
    traces = load_ranks(out / "run")
    assert sorted(traces) == [0, 1]
    for r, t in traces.items():
        d = t.meta["distributed"]
        assert (d["rank"], d["world_size"], d["backend"]) == (r, 2, "gloo")
        assert d["sampler"]["shuffle"] and d["sampler"]["num_replicas"] == 2
        assert list(t.steps["sampler_epoch"].unique()) == [0.0, 1.0]
    # the rows are the DistributedSampler's indices: disjoint per step, each epoch the whole data
    for s in range(1, 9):
        a = set(traces[0].samples.query("step == @s")["sample"])
        b = set(traces[1].samples.query("step == @s")["sample"])
        assert len(a) == len(b) == 10 and not a & b
    epoch1 = np.concatenate([t.samples.query("step <= 8")["sample"].to_numpy() for t in traces.values()])
    assert sorted(epoch1) == list(range(N_ROWS))
    # the reduced gradient is the mean of the local ones, identical on both ranks
    g = {r: t.param_values("module.0.weight", "grad") for r, t in traces.items()}
    loc = {r: t.param_values("module.0.weight", "local_grad") for r, t in traces.items()}
    assert np.array_equal(g[0], g[1])
    assert np.allclose(g[0], (loc[0] + loc[1]) / 2, rtol=1e-5, atol=1e-7)
    assert not np.allclose(loc[0], loc[1])


def test_merged_trace_is_the_global_job(jobs):
    out, _ = jobs("clean")
    traces = load_ranks(out / "run")
    m = merge_ranks(traces)
    assert m.meta["distributed"]["merged"] and m.n_steps == 16
    assert (m.steps["batch_size"] == 20).all()
    step1 = m.samples.query("step == 1")["sample"].tolist()
    assert step1 == (traces[0].samples.query("step == 1")["sample"].tolist()
                     + traces[1].samples.query("step == 1")["sample"].tolist())
    assert np.allclose(m.steps["loss"], (m.steps["loss_rank0"] + m.steps["loss_rank1"]) / 2)


def test_run_dir_reads_as_one_table(jobs):
    out, _ = jobs("clean")
    run = out / "run"
    assert sorted(rank_dirs(run)) == [0, 1]
    table = dataset(run, "steps").to_table()
    assert table.num_rows == 32 and sorted(set(table.column("rank").to_pylist())) == [0, 1]
    duckdb = pytest.importorskip("duckdb")
    got = duckdb.sql(f"select rank, count(*) from "
                     f"read_parquet('{run}/*/samples.parquet', hive_partitioning=true) "
                     "group by rank order by rank").fetchall()
    assert [g[:2] for g in got] == [(0, 160), (1, 160)]
    both = duckdb.sql(f"select count(distinct sample) from read_parquet('{run}/*/samples.parquet', "
                      "hive_partitioning=true) where step <= 8").fetchall()[0]
    assert both == (N_ROWS,)                     # epoch 1 over both ranks: every row
    params = duckdb.sql(f"select count(distinct rank) from read_parquet('{run}/*/params.parquet', "
                        "hive_partitioning=true) where param = 'module.0.weight'").fetchall()[0]
    assert params == (2,)


def test_missing_set_epoch_is_named(jobs):
    out, _ = jobs("no_set_epoch")
    rep = check_ranks(out / "run")
    assert not rep.ok
    (f,) = rep.failed_findings
    assert f["kind"] == "set_epoch" and f["step"] == 9
    assert "set_epoch" in f["message"] and "set_epoch(epoch)" in f["fix"]
    assert "the sampler's epoch is still 0" in f["message"]


def test_no_sync_on_one_rank_is_named(jobs):
    out, _ = jobs("no_sync")
    rep = check_ranks(out / "run")
    kinds = {f["kind"]: f for f in rep.failed_findings}
    assert kinds["allreduce"]["step"] == BUG_STEP and kinds["allreduce"]["rank"] == 1
    assert "skipped the all-reduce" in kinds["allreduce"]["message"]
    assert kinds["rank_divergence"]["step"] == BUG_STEP
    assert all(r.ok for r in rep.per_rank.values())     # each rank alone is consistent


def test_parameter_modified_on_one_rank_is_named(jobs):
    out, _ = jobs("modify")
    rep = check_ranks(out / "run")
    (f,) = rep.failed_findings
    assert f["kind"] == "rank_divergence" and f["step"] == BUG_STEP + 1 and f["rank"] == 1
    assert f["param"] == "module.0.weight"
    assert f"between steps {BUG_STEP} and {BUG_STEP + 1}" in f["message"]


def test_user_comm_hook_and_bucket_views_are_traced_too(jobs):
    """The local gradient is read at accumulation, so a user's own communication hook and
    gradients that are views of DDP's buckets change nothing."""
    out, traced = jobs("own_hook")
    _, plain = jobs("own_hook", traced=False)
    for r in (0, 1):
        assert all(torch.equal(traced[r]["final"][k], v) for k, v in plain[r]["final"].items())
        assert traced[r]["comm_hooks"] == 1 and traced[r]["hooks_left"] == 0
    rep = check_ranks(out / "run")
    assert rep.ok and rep.failed_findings == [], rep.summary()


def test_gradient_accumulation_under_no_sync_on_every_rank_is_clean(jobs):
    """DDP's accumulation idiom: the first micro-batch under no_sync() on every rank. The
    local gradient is the accumulated one, the reduced one its mean: no finding, nothing
    failed. (Each rank is "incomplete": the torch hook records no rows for a step of several
    micro-batches yet, so its program is not evaluated - as in one process.)"""
    out, traced = jobs("accumulate")
    rep = check_ranks(out / "run")
    assert rep.failed_findings == [], rep.summary()
    assert all(r.n_steps == 16 and r.verdict != "failed" for r in rep.per_rank.values())
    assert rep.merged.verdict != "failed", rep.summary()
    traces = load_ranks(out / "run")
    g = [t.param_values("module.0.weight", "grad") for t in traces.values()]
    loc = [t.param_values("module.0.weight", "local_grad") for t in traces.values()]
    assert np.array_equal(g[0], g[1]) and np.allclose(g[0], (loc[0] + loc[1]) / 2, rtol=1e-5, atol=1e-7)


def test_only_an_abort_after_the_result_is_run_again(tmp_path):
    """The job runner retries gloo's teardown abort (SIGABRT once the rank's result is written)
    and nothing else: an abort before the result, or an exit code, is a real failure."""
    from _ddp_jobs import _teardown_abort
    import torch.multiprocessing as mp

    def died(signal_name, exit_code=-6):
        return mp.ProcessExitedException("died", error_index=1, error_pid=1, exit_code=exit_code,
                                         signal_name=signal_name)
    assert not _teardown_abort(died("SIGABRT"), str(tmp_path))          # no result yet
    (tmp_path / "final_1.pt").write_bytes(b"")
    assert _teardown_abort(died("SIGABRT"), str(tmp_path))
    assert not _teardown_abort(died("SIGSEGV", -11), str(tmp_path))
    assert not _teardown_abort(died(None, 1), str(tmp_path))
