"""S2 in Keras: the learner who could not reproduce Keras by hand.

Golden numbers from SCENARIOS.md / FRAMEWORK-FACTS.md; every other value is
recomputed here with plain NumPy (independent of tracer.math): predictions,
batch loss, gradients, RMSprop's accumulator and update, and the running
loss/RMSE Keras logs.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

import keras

import tracer
from hooks.keras import TraceCallback
from tracer.reconcile import FULL_AFTER, LOGGED, reconcile_metric

pytestmark = pytest.mark.keras

FEATURE = np.arange(1, 13, dtype=np.float64)
LABEL = np.array([5.0, 8.8, 9.6, 14.2, 18.8, 19.5, 21.4, 26.8, 28.9, 32.0, 33.8, 38.2])
LR, RHO, EPS = 0.05, 0.9, 1e-7


def s2_model():
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(
        units=1, kernel_initializer=keras.initializers.Constant(0.5))])
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=LR), loss="mean_squared_error",
                  metrics=[keras.metrics.RootMeanSquaredError()])
    return model


def fit_s2(epochs, batch_size, shuffle, seed=True):
    model = s2_model()
    if not seed:
        import tensorflow as tf
        tf.random.set_seed(None)   # Keras repeats one shuffle order per epoch under a global seed
    cb = TraceCallback()
    history = model.fit(FEATURE, LABEL, epochs=epochs, batch_size=batch_size, shuffle=shuffle,
                        callbacks=[cb], verbose=0)
    return cb.trace, model, history


@pytest.fixture(scope="module")
def one_batch():
    return fit_s2(1, 12, True)


@pytest.fixture(scope="module")
def four_by_four():
    return fit_s2(4, 4, False)


@pytest.fixture(scope="module")
def four_by_four_shuffled():
    return fit_s2(4, 4, True, seed=False)


def test_s2_golden_first_step(one_batch):
    trace, model, history = one_batch
    steps = trace.steps
    assert len(steps) == 1
    s = steps.iloc[0]
    assert s["logged_loss"] == pytest.approx(402.9850, abs=5e-5)
    assert s["logged_root_mean_squared_error"] == pytest.approx(20.0745, abs=5e-5)
    assert s["loss"] == pytest.approx(402.9850158691406, rel=1e-7)
    assert s["opt_step"] == 1 and s["lr"] == pytest.approx(LR)
    kernel, bias = trace.param_names
    assert trace.param_values(kernel, "before")[0, 0, 0] == 0.5
    assert trace.param_values(bias, "before")[0, 0] == 0.0
    assert trace.param_values(kernel, "after")[0, 0, 0] == pytest.approx(0.65811384, abs=1e-7)
    assert trace.param_values(bias, "after")[0, 0] == pytest.approx(0.15811387, abs=1e-7)
    # weights in the trace are the model's weights
    assert trace.param_values(kernel, "after")[0].tobytes() == model.get_weights()[0].tobytes()
    assert sorted(trace.samples["sample"]) == list(range(12))
    assert history.history["loss"][0] == pytest.approx(402.9850158691406, rel=1e-7)


def test_s2_hand_check_of_rmsprop_first_step(one_batch):
    trace = one_batch[0]
    kernel, bias = trace.param_names
    w, b = 0.5, 0.0
    err = w * FEATURE + b - LABEL
    g_w, g_b = 2 * np.mean(err * FEATURE), 2 * np.mean(err)
    np.testing.assert_allclose(trace.param_values(kernel, "grad")[0].ravel(), [g_w], rtol=1e-6)
    np.testing.assert_allclose(trace.param_values(bias, "grad")[0].ravel(), [g_b], rtol=1e-6)
    v_w, v_b = (1 - RHO) * g_w ** 2, (1 - RHO) * g_b ** 2
    np.testing.assert_allclose(trace.param_values(kernel, "velocity")[0].ravel(), [v_w], rtol=1e-6)
    np.testing.assert_allclose(trace.param_values(bias, "velocity")[0].ravel(), [v_b], rtol=1e-6)
    w1 = w - LR * g_w / np.sqrt(v_w + EPS)
    b1 = b - LR * g_b / np.sqrt(v_b + EPS)
    assert w1 - w == pytest.approx(LR / np.sqrt(1 - RHO), rel=1e-6)     # lr / sqrt(1 - rho)
    np.testing.assert_allclose(trace.param_values(kernel, "after")[0].ravel(), [w1], rtol=1e-6)
    np.testing.assert_allclose(trace.param_values(bias, "after")[0].ravel(), [b1], rtol=1e-6)
    # the updated model on all 12 rows: what the learner's spreadsheet computed
    full = (w1 * FEATURE + b1 - LABEL) ** 2
    assert full.mean() == pytest.approx(352.3351, abs=5e-4)
    assert np.sqrt(full.mean()) == pytest.approx(18.7706, abs=5e-5)


def test_s2_checker_passes(one_batch):
    report = tracer.check(one_batch[0])
    assert report.ok, report


def test_s2_reconciliation_names_the_updated_weights(one_batch):
    trace = one_batch[0]
    loss = reconcile_metric(trace, "loss", 1, 352.3351)
    assert loss.match == FULL_AFTER
    cands = loss.candidates.set_index("name")["value"]
    assert cands[FULL_AFTER] == pytest.approx(352.3351, abs=5e-4)
    assert cands[LOGGED] == pytest.approx(402.9850, abs=5e-4)
    text = str(loss)
    assert "full data, weights after the update" in text and "352.335" in text
    rmse = reconcile_metric(trace, "root_mean_squared_error", 1, 18.7706)
    assert rmse.match == FULL_AFTER
    assert reconcile_metric(trace, "rmse", 1, 20.0745).match == LOGGED
    assert reconcile_metric(trace, "loss", 1, 476.82).match is None


def _hand_replay(trace):
    """Replay RMSprop over the recorded batches with NumPy; compare every recorded value."""
    kernel, bias = trace.param_names
    steps = trace.steps
    samples = trace.samples
    w, b, vw, vb = 0.5, 0.0, 0.0, 0.0
    run_loss = run_sq = run_n = 0.0
    epoch = None
    for i, s in enumerate(steps.itertuples(index=False)):
        if s.epoch != epoch:
            epoch, run_loss, run_sq, run_n = s.epoch, 0.0, 0.0, 0.0
        rows = samples.loc[samples["step"] == s.step, "sample"].to_numpy()
        x, y = FEATURE[rows], LABEL[rows]
        pred = w * x + b
        np.testing.assert_allclose(samples.loc[samples["step"] == s.step, "y_pred"], pred, rtol=2e-6, atol=1e-5)
        err = pred - y
        loss = np.mean(err ** 2)
        gw, gb = 2 * np.mean(err * x), 2 * np.mean(err)
        vw, vb = RHO * vw + (1 - RHO) * gw ** 2, RHO * vb + (1 - RHO) * gb ** 2
        w_new, b_new = w - LR * gw / np.sqrt(vw + EPS), b - LR * gb / np.sqrt(vb + EPS)
        run_loss, run_sq, run_n = run_loss + loss * len(rows), run_sq + np.sum(err ** 2), run_n + len(rows)
        assert s.loss == pytest.approx(loss, rel=2e-6)
        assert s.logged_loss == pytest.approx(run_loss / run_n, rel=2e-6)
        assert s.logged_root_mean_squared_error == pytest.approx(np.sqrt(run_sq / run_n), rel=2e-6)
        assert s.opt_step == i + 1
        np.testing.assert_allclose(trace.param_values(kernel, "before")[i].ravel(), [w], rtol=2e-6)
        np.testing.assert_allclose(trace.param_values(bias, "before")[i].ravel(), [b], rtol=2e-6, atol=1e-6)
        np.testing.assert_allclose(trace.param_values(kernel, "grad")[i].ravel(), [gw], rtol=2e-5, atol=1e-4)
        np.testing.assert_allclose(trace.param_values(bias, "grad")[i].ravel(), [gb], rtol=2e-5, atol=1e-4)
        np.testing.assert_allclose(trace.param_values(kernel, "velocity")[i].ravel(), [vw], rtol=5e-5)
        np.testing.assert_allclose(trace.param_values(kernel, "after")[i].ravel(), [w_new], rtol=2e-6)
        np.testing.assert_allclose(trace.param_values(bias, "after")[i].ravel(), [b_new], rtol=2e-6, atol=1e-6)
        # continue from Keras's float32 values so rounding does not accumulate
        w = float(trace.param_values(kernel, "after")[i].ravel()[0])
        b = float(trace.param_values(bias, "after")[i].ravel()[0])
        vw = float(trace.param_values(kernel, "velocity")[i].ravel()[0])
        vb = float(trace.param_values(bias, "velocity")[i].ravel()[0])


def test_s2_four_by_four_every_value_by_hand(four_by_four):
    trace, model, history = four_by_four
    steps = trace.steps
    assert len(steps) == 12
    assert list(steps["epoch"]) == [1] * 3 + [2] * 3 + [3] * 3 + [4] * 3
    assert list(steps["batch"]) == [1, 2, 3] * 4
    groups = trace.samples.groupby("step")["sample"].apply(list)
    assert [groups[s] for s in range(1, 4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    golden_loss = [73.885, 187.73184, 325.36114, 48.24874, 136.83186, 252.76921, 39.48581, 113.57014,
                   211.38586, 33.02761, 96.15235, 179.49981]
    golden_kernel = [0.6581139, 0.8133439, 0.95879096, 0.9698953, 1.0271562, 1.1329172, 1.1410482,
                     1.1846774, 1.274396, 1.281273, 1.3188599, 1.3996835]
    np.testing.assert_allclose(steps["logged_loss"], golden_loss, rtol=1e-6)
    np.testing.assert_allclose(trace.param_values(trace.param_names[0], "after").ravel(), golden_kernel,
                               rtol=1e-6)
    _hand_replay(trace)
    np.testing.assert_allclose(trace.epochs["logged_loss"], history.history["loss"], rtol=0)


def test_s2_four_by_four_shuffled(four_by_four_shuffled):
    trace = four_by_four_shuffled[0]
    steps = trace.steps
    assert len(steps) == 12
    samples = trace.samples
    per_epoch = []
    for e in range(1, 5):
        st = steps.loc[steps["epoch"] == e, "step"]
        rows = samples.loc[samples["step"].isin(st), "sample"].to_numpy()
        assert sorted(rows) == list(range(12))           # each epoch a permutation of all 12 rows
        assert samples.loc[samples["step"].isin(st)].groupby("step").size().tolist() == [4, 4, 4]
        per_epoch.append(tuple(rows))
    assert len(set(per_epoch)) > 1                        # the order differs between epochs
    assert per_epoch[0] != tuple(range(12))
    _hand_replay(trace)


def test_s2_checker_passes_on_twelve_steps(four_by_four, four_by_four_shuffled):
    for trace in (four_by_four[0], four_by_four_shuffled[0]):
        report = tracer.check(trace)
        assert report.ok, report


def test_s2_running_values_reconciled(four_by_four):
    trace = four_by_four[0]
    r = reconcile_metric(trace, "root_mean_squared_error", 5)
    assert r.match == LOGGED
    cands = r.candidates.set_index("name")["value"]
    # batch 2 of epoch 2 alone, and the mean of the two batch RMSEs, both differ from what Keras logs
    batch_rmse = trace.steps.set_index("step")["logged_root_mean_squared_error"]
    assert cands[LOGGED] == pytest.approx(batch_rmse[5], rel=1e-6)
    assert abs(cands["current batch only, weights before the update"] - batch_rmse[5]) > 1
    user_value = round(float(cands["mean of per-batch values so far"]), 3)
    assert reconcile_metric(trace, "root_mean_squared_error", 5, user_value).match == \
        "mean of per-batch values so far"


def test_s2_trace_survives_save_and_load(four_by_four, tmp_path):
    trace = four_by_four[0]
    loaded = tracer.Trace.load(trace.save(tmp_path / "s2"))
    assert reconcile_metric(loaded, "loss", 12).match == LOGGED
    assert tracer.check(loaded).ok


def test_reconcile_bad_input_is_named(four_by_four):
    from tracer.errors import TraceInputError
    trace = four_by_four[0]
    with pytest.raises(TraceInputError, match="metric"):
        reconcile_metric(trace, "accuracy", 1)
    with pytest.raises(TraceInputError, match="step"):
        reconcile_metric(trace, "loss", 13)
    with pytest.raises(TraceInputError, match="value"):
        reconcile_metric(trace, "loss", 1, "abc")
    r = reconcile_metric(trace, "logged_loss", 3, 325.36)
    assert r.match == LOGGED
    assert "mean of per-batch values so far" in str(r)        # equal batch sizes: the two coincide


def test_cli_explain_metric(one_batch, tmp_path, capsys):
    from tracer.app.cli import main
    path = one_batch[0].save(tmp_path / "s2")
    assert main(["explain", str(path), "--metric", "loss", "--step", "1", "--value", "352.3351"]) == 0
    out = capsys.readouterr().out
    assert "Your value 352.3351 is the 'full data, weights after the update' value." in out
    assert main(["explain", str(path), "--metric", "root_mean_squared_error", "--step", "1",
                 "--value", "18.7706"]) == 0
    assert "'full data, weights after the update'" in capsys.readouterr().out
    assert main(["explain", str(path), "--metric", "nope", "--step", "1"]) != 0
    assert "metric" in capsys.readouterr().err
