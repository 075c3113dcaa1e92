"""The cross-rank checks on hand-made rank traces (no processes): tracer.ranks and
tracer/checker/diagnoses/ranks.py, issue 15. The real 2-process jobs are in
tests/hooks/test_torch_ddp.py."""
import numpy as np
import pytest

from tracer.checker.diagnoses.ranks import rank_findings
from tracer.ranks import dataset, is_rank_run, load_ranks, save_rank
from tracer.ranks.merge import merge_ranks
from tracer.recorder import Recorder

N = 8          # rows; 2 ranks x 2 rows per step, 2 steps per epoch


def _job(epochs=2, same_order=False, skip=None, poke=None, lr=0.1):
    """Two rank traces of a 1-parameter model: local grad = mean of the rank's rows' x,
    reduced = the mean over ranks (rank ``skip[1]`` keeps its own at step ``skip[0]``),
    ``poke=(step, rank)`` adds 0.5 to that rank's value before that step."""
    x = np.arange(N, dtype=np.float64)[:, None]
    rng = np.random.default_rng(0)
    orders = [rng.permutation(N) for _ in range(epochs)]
    if same_order:
        orders = [orders[0]] * epochs
    recs = {r: Recorder(meta={"framework": "numpy", "distributed": {"rank": r, "world_size": 2, "sampler":
                                                                    {"shuffle": True}}}) for r in (0, 1)}
    for rec in recs.values():
        rec.set_data(x, x)
    w = {0: 1.0, 1: 1.0}
    step = 0
    for e, order in enumerate(orders, start=1):
        shards = {0: order[0::2], 1: order[1::2]}          # DistributedSampler: rank r takes every 2nd
        for b in range(2):
            step += 1
            if poke and poke[0] == step:
                w[poke[1]] += 0.5
            rows = {r: shards[r][2 * b:2 * b + 2] for r in (0, 1)}
            local = {r: x[rows[r]].mean() for r in (0, 1)}
            reduced = {r: (local[0] + local[1]) / 2 for r in (0, 1)}
            if skip and skip[0] == step:
                reduced[skip[1]] = local[skip[1]]
            for r, rec in recs.items():
                before = w[r]
                w[r] = before - lr * reduced[r]
                rec.record_step(epoch=e, batch=b + 1, params_before={"w": np.array([before])},
                                params_after={"w": np.array([w[r]])}, grads={"w": np.array([reduced[r]])},
                                rows=rows[r], loss=float(local[r]) + r, lr=lr, batch_size=2,
                                state={"w": {"local_grad": np.array([local[r]])}})
    return {r: rec.trace() for r, rec in recs.items()}


def _kinds(findings):
    return [f["kind"] for f in findings if f["failed"]]


def test_clean_job_has_only_the_loss_note():
    found = rank_findings(_job())
    assert _kinds(found) == [] and [f["kind"] for f in found] == ["rank_loss"]


def test_same_rows_every_epoch_names_set_epoch():
    (f,) = [f for f in rank_findings(_job(same_order=True)) if f["failed"]]
    assert f["kind"] == "set_epoch" and f["step"] == 3 and "set_epoch" in f["message"]


def test_unshuffled_sampler_repeating_rows_is_fine():
    traces = _job(same_order=True)
    for t in traces.values():
        t.meta["distributed"]["sampler"]["shuffle"] = False
    assert _kinds(rank_findings(traces)) == []


def test_skipped_allreduce_names_step_and_rank():
    found = [f for f in rank_findings(_job(skip=(2, 1))) if f["failed"]]
    assert [(f["kind"], f["step"], f["rank"]) for f in found][0] == ("allreduce", 2, 1)
    assert "skipped the all-reduce" in found[0]["message"]


def test_poked_rank_names_the_rank_that_moved():
    found = [f for f in rank_findings(_job(poke=(3, 1))) if f["failed"]]
    assert [(f["kind"], f["step"], f["rank"], f["param"]) for f in found] == [("rank_divergence", 3, 1, "w")]
    assert "between steps 2 and 3" in found[0]["message"]


def test_merge_is_the_global_batch(tmp_path):
    traces = _job()
    m = merge_ranks(traces)
    assert m.n_steps == 4 and list(m.steps["batch_size"]) == [4, 4, 4, 4]
    assert sorted(m.samples.query("step <= 2")["sample"]) == list(range(N))
    assert np.allclose(m.steps["loss"], (m.steps["loss_rank0"] + m.steps["loss_rank1"]) / 2)
    assert "local_grad" not in m.params.columns
    for r, t in traces.items():
        save_rank(t, tmp_path / "run")
    assert is_rank_run(tmp_path / "run") and not is_rank_run(tmp_path / "run" / "rank=0")
    assert sorted(load_ranks(tmp_path / "run")) == [0, 1]
    table = dataset(tmp_path / "run", "params").to_table()
    assert sorted(set(table.column("rank").to_pylist())) == [0, 1] and "local_grad" in table.column_names


def test_ranks_drawing_the_same_rows_in_an_epoch_is_named():
    """Rank 1 trains on rank 0's rows one step later: no step overlaps, the epoch does."""
    traces = _job()
    a0, a1 = traces[0].arrays(), traces[1].arrays()
    rolled = np.concatenate([a0.sample_row[a0.sample_step == s] for s in (2, 1, 4, 3)])
    a1.sample_row[:] = rolled
    (f,) = [f for f in rank_findings(traces) if f["failed"]]
    assert f["kind"] == "rank_rows" and f["step"] == 1 and "drawn twice" in f["message"]


def test_two_ranks_on_one_row_in_a_step_is_named():
    traces = _job()
    a0, a1 = traces[0].arrays(), traces[1].arrays()
    a1.sample_row[a1.sample_step == 2] = a0.sample_row[a0.sample_step == 2]
    (f,) = [f for f in rank_findings(traces) if f["failed"]]
    assert (f["kind"], f["step"], f["rank"]) == ("rank_rows", 2, 1)


def test_rank_handing_a_zero_gradient_is_named():
    """A rank whose gradient never reaches the reduction (all zeros) while the other's does."""
    traces = _job()
    a1 = traces[1].arrays()
    a1.params["w"].slots["local_grad"][a1.param_step == 2] = 0.0
    found = [f for f in rank_findings(traces) if f["kind"] == "rank_gradient"]
    assert [(f["step"], f["rank"]) for f in found] == [(2, 1)]
