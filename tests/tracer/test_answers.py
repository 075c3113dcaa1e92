"""Metric answers: any spelling of a name, every step searched, one sentence in the learner's numbers."""
from __future__ import annotations

import numpy as np
import pytest

import tracer
from tracer.answers import answer_metric
from tracer.errors import TraceInputError
from tracer.metric_names import resolve_metric

from _trace_factories import s0_trace, s2_trace

S2_SENTENCE = ("Keras used slope 0.5, intercept 0 (the weights before the update) \u2192 RMSE 20.07; your sheet used "
               "slope 0.658, intercept 0.158 (after the update) \u2192 18.77.")


@pytest.fixture(scope="module")
def one_batch():
    return s2_trace(epochs=1, batch_size=12, shuffle=False)


@pytest.fixture(scope="module")
def four_by_four():
    return s2_trace(validation=True)


@pytest.mark.parametrize("typed,name,kind,val", [
    ("RMSE", "root_mean_squared_error", "rmse", False), ("rmse", "root_mean_squared_error", "rmse", False),
    ("Root_Mean_Squared_Error", "root_mean_squared_error", "rmse", False), ("LOSS", "loss", "loss", False),
    ("mse", "loss", "loss", False), ("val_root_mean_squared_error", "root_mean_squared_error", "rmse", True),
    ("val_RMSE", "root_mean_squared_error", "rmse", True), ("logged_loss", "loss", "loss", False),
    ("mae", "mae", "mae", False),
])
def test_names_any_case_aliases_and_val(one_batch, typed, name, kind, val):
    m = resolve_metric(one_batch, typed)
    assert (m.name, m.kind, m.val) == (name, kind, val)


def test_unknown_name_lists_what_exists(one_batch):
    with pytest.raises(TraceInputError, match="root_mean_squared_error") as exc:
        resolve_metric(one_batch, "f1")
    assert "val_" in str(exc.value)


def test_s2_learner_value_gets_the_one_sentence_answer(one_batch):
    """S2 (epochs=1, batch_size=12): the learner's 18.77 is the updated model on all 12 rows."""
    ans = answer_metric(one_batch, "RMSE", 18.77)
    text = str(ans)
    assert text.splitlines()[0] == S2_SENTENCE
    assert ans.matches[0].kind == "full_after" and ans.matches[0].step == 1
    assert "searched 1 step and 1 epoch end" in text          # plurals


def test_val_metric_names_both_sets_of_weights(one_batch, four_by_four):
    text = str(answer_metric(one_batch, "val_root_mean_squared_error"))
    first = text.splitlines()[0]
    assert "slope 0.658, intercept 0.158" in first and "18.77" in first
    assert "slope 0.5, intercept 0 (the weights before the update)" in first and "20.07" in first
    assert "logged no val_root_mean_squared_error" in first and "validation rows" in text
    # a run that logged val_* (validation_data = the training rows, as in the S2 thread)
    text = str(answer_metric(four_by_four, "val_root_mean_squared_error"))
    first = text.splitlines()[0]
    assert first.startswith("Keras logged val_root_mean_squared_error 17.28 with slope")
    assert "equal: the validation data is the training data" in text


def test_search_without_step_finds_the_end_of_epoch_value(four_by_four):
    """4x4: a value from the end of epoch 1 is found without --step (the issue's 'matches none')."""
    logged_end = float(four_by_four.epochs["logged_root_mean_squared_error"].iloc[0])
    ans = answer_metric(four_by_four, "rmse", round(logged_end, 2))
    assert ans.matches and ans.matches[0].kind == "logged" and ans.matches[0].step == 3
    assert str(ans).startswith(f"Your {round(logged_end, 2)} is what Keras logs after step 3")
    val = float(four_by_four.epochs["logged_val_root_mean_squared_error"].iloc[1])
    ans = answer_metric(four_by_four, "RMSE", round(val, 3))
    assert {(c.kind, c.step) for c in ans.matches} >= {("full_after", 6), ("val", 6)}


def test_value_that_matches_nowhere_says_so_with_the_closest(four_by_four):
    text = str(answer_metric(four_by_four, "loss", 476.82))
    assert "476.82 matches none of the loss computations (searched 12 steps and 4 epoch ends). Closest:" in text


def test_runs_that_logged_nothing_are_recomputed_and_said_so():
    """S0 (NumPy) logged no RMSE: the answer is steptrace's recomputation, never 'what the run logs'."""
    trace = s0_trace(5)
    ans = answer_metric(trace, "RMSE", float(f"{_rmse_after(trace, 1):.4g}"))
    assert ans.matches[0].kind == "full_after" and ans.matches[0].step == 1
    text = str(ans)
    assert text.startswith("The run used slope -0.0251, intercept 0.0901 (the weights before the update)")
    assert "logged by Keras" not in text


def _rmse_after(trace, step):
    w = trace.param_values("weights", "after")[step - 1].ravel()[0]
    b = trace.param_values("biases", "after")[step - 1].ravel()[0]
    a = trace.arrays()
    return float(np.sqrt(np.mean((a.inputs[:, 0] * w + b - a.targets[:, 0]) ** 2)))


def test_explain_metric_loss_never_calls_its_recomputation_logged(one_batch):
    """Issue 16: the recomputed running value is labelled as a recomputation; the logged value as logged."""
    text = tracer.explain(one_batch, step=1, metric="loss")
    assert "logged by Keras" not in text and "Keras logged 402.985" in text
    assert "(recomputed: what Keras logs)" in text
    numpy_text = tracer.explain(s0_trace(3), step=2, metric="loss")
    assert "not logged by the run" in numpy_text and "Keras logged" not in numpy_text


def test_value_without_metric_is_an_error(one_batch):
    with pytest.raises(TraceInputError, match="value"):
        tracer.explain(one_batch, value=18.77)


def test_cli_metric_answers_and_errors(one_batch, tmp_path, capsys):
    from tracer.app.cli import EXIT_BAD_INPUT, EXIT_OK, main
    path = one_batch.save(tmp_path / "s2.trace")
    assert main(["explain", str(path), "--metric", "RMSE", "--value", "18.77"]) == EXIT_OK
    assert capsys.readouterr().out.splitlines()[0] == S2_SENTENCE
    assert main(["explain", str(path), "--metric", "val_root_mean_squared_error"]) == EXIT_OK
    assert "slope 0.658, intercept 0.158" in capsys.readouterr().out.splitlines()[0]
    assert main(["explain", str(path), "--value", "18.77"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--value needs --metric" in err
