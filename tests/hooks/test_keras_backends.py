"""Keras traced and checked the same way on every installed backend (issue 9; issue 10 item 10).

The checks of ``tests/_keras_backend_probe.py`` run in-process on TensorFlow and in a
subprocess with ``KERAS_BACKEND=torch`` (Keras picks its backend once, at import). Each
must pass with nothing "cannot check", training must be bit-identical with and without
the callback, and the two backends' traces must hold the same things. Under
``steptrace run`` a Keras-on-torch ``fit`` is one Keras run, never also a torch loop.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import _keras_backend_probe as probe

pytestmark = pytest.mark.keras

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg",
       "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")])}
BACKENDS = ("tensorflow", "torch")
PASSING = ("dense_activation_sigmoid", "dense_activation_softmax", "activation_layers", "dense_softmax_sparse", "diabetes",
           "kernel_regularizer", "add_loss_terms", "clipnorm", "use_ema")


def _torch_probe() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(TESTS / "_keras_backend_probe.py")],
                            env={**ENV, "KERAS_BACKEND": "torch"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)


def _probe_result(proc: subprocess.Popen) -> dict:
    stdout, stderr = proc.communicate(timeout=900)
    line = next((ln for ln in stdout.splitlines() if ln.startswith("PROBE-RESULT ")), None)
    assert proc.returncode == 0 and line, stderr[-4000:]
    out = json.loads(line[len("PROBE-RESULT "):])
    assert out["backend"] == "torch"
    return out["checks"]


@pytest.fixture(scope="module")
def results():
    import keras
    assert keras.backend.backend() == "tensorflow"
    proc = _torch_probe()                   # runs alongside the TensorFlow checks
    try:
        tf_results = probe.run_all()
    except BaseException:
        proc.kill()
        raise
    return {"tensorflow": tf_results, "torch": _probe_result(proc)}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("check", PASSING)
def test_passes_with_nothing_cannot_check(results, backend, check):
    r = results[backend][check]
    assert (r["verdict"], r["cannot"], r["failed"]) == ("passed", [], []), r
    assert r["bit_identical"] is True          # the callback changed nothing in the training


def test_tensorflow_uses_the_hidden_logits_and_torch_clips(results):
    """Keras 3 on TensorFlow computes sigmoid + BCE and softmax + CE from the logits
    (``_keras_logits``); its torch backend clips the probabilities instead."""
    tf_ops, torch_ops = results["tensorflow"], results["torch"]
    assert "bce_logits_term" in tf_ops["dense_activation_sigmoid"]["ops"]
    assert "clamp" not in tf_ops["dense_activation_sigmoid"]["ops"]
    assert {"clamp", "bce_term"} <= set(torch_ops["dense_activation_sigmoid"]["ops"])
    assert "bce_logits_term" not in torch_ops["dense_activation_sigmoid"]["ops"]
    assert "cross_entropy" in tf_ops["dense_activation_softmax"]["ops"]
    assert "clamp" in torch_ops["dense_activation_softmax"]["ops"]
    assert "nll_loss" in torch_ops["dense_softmax_sparse"]["ops"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_options_are_recorded(results, backend):
    assert results[backend]["clipnorm"]["clipnorm"] == 0.2
    ema = results[backend]["use_ema"]
    assert ema["slots"] == ["momentum", "ema"]
    assert ema["optimizer"] == {"use_ema": True, "ema_momentum": 0.8, "ema_overwrite_frequency": 3}


@pytest.mark.parametrize("backend", BACKENDS)
def test_planted_update_fault_is_caught_and_its_clean_twin_passes(results, backend):
    r = results[backend]["planted_update"]
    assert r["clean"] == "passed" and r["tampered"] == "failed"
    assert [4, "update"] in [list(x) for x in r["failed_at"]]


def test_both_backends_record_the_same_trace(results):
    a, b = results["tensorflow"]["content"], results["torch"]["content"]
    assert a["verdict"] == b["verdict"] == "passed"
    for key in ("names", "steps_columns", "epochs_columns", "params_columns", "batch_sizes", "rows",
                "program_params"):
        assert a[key] == b[key], key
    np.testing.assert_allclose(a["y_pred"], b["y_pred"], rtol=1e-5)
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
    np.testing.assert_allclose(a["logged_loss"], b["logged_loss"], rtol=1e-5)
    for name in a["names"]:
        assert a["first_step"][name].keys() == b["first_step"][name].keys()
        for key, values in a["first_step"][name].items():
            np.testing.assert_allclose(values, b["first_step"][name][key], rtol=1e-4, atol=1e-7,
                                       err_msg=f"{name} {key}")


def _steptrace_run(out, *args):
    return subprocess.run([sys.executable, "-m", "tracer", "run", "--no-excel", "--no-csv", "-o", str(out), *args,
                           str(TESTS / "scripts" / "keras_torch_backend.py")], cwd=out.parent,
                          env={**ENV, "KERAS_BACKEND": "torch"}, capture_output=True, text=True, timeout=600)


@pytest.mark.torch
def test_keras_on_torch_is_one_keras_run_under_steptrace_run(tmp_path):
    """Both hooks active: the Keras fit is the Keras hook's run only (no "updated 2 times
    per step" torch run); the torch loop after it is still the torch hook's."""
    out = tmp_path / "out"
    res = _steptrace_run(out)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = json.loads((out / "index.json").read_text())["runs"]
    assert [(r["framework"], r["steps"], r["verdict"]) for r in runs] == [("keras", 6, "passed"),
                                                                          ("torch", 4, "passed")]
    # a fit that is not recorded is still not the torch hook's
    out2 = tmp_path / "out2"
    res = _steptrace_run(out2, "--runs", "2")
    assert res.returncode == 0, res.stderr[-3000:]
    runs = json.loads((out2 / "index.json").read_text())["runs"]
    assert [(r["run"], r["framework"], r["steps"]) for r in runs] == [(2, "torch", 4)]
