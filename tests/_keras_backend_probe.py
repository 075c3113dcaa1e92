"""The Keras checks that must hold on every backend, as one function per check.

Run in-process on TensorFlow by ``tests/hooks/test_keras_backends.py`` and, with
``KERAS_BACKEND=torch``, in a subprocess (``python tests/_keras_backend_probe.py``), which
prints ``{check name: result}`` as JSON. Each result is plain data: the verdict, the
reasons it could not check, failed rows, whether training was bit-identical with and
without tracing, and the few program or trace facts the tests compare across backends.
"""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

if __name__ == "__main__":
    _TESTS = Path(__file__).resolve().parent
    sys.path[:0] = [str(_TESTS.parent), str(_TESTS)]

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tracer  # noqa: E402
from _keras_cases import L, bit_identical, data, diabetes_like, diabetes_model, fit, sequential, verdict  # noqa: E402


def _traced_and_plain(build, x, y, **fit_kw):
    """Train ``build()`` twice, untraced then traced, from the same weights and seed:
    ``(trace, bit-identical)``. (The first ``fit`` of a process may draw from the global
    generators once more than later ones, so the weights are copied, not re-drawn.)"""
    m0 = build()
    weights = m0.get_weights()
    keras.utils.set_random_seed(99)
    h0, _ = fit(m0, x, y, traced=False, **fit_kw)
    m1 = build()
    m1.set_weights(weights)
    keras.utils.set_random_seed(99)
    h1, cb = fit(m1, x, y, **fit_kw)
    return cb.trace, bit_identical(m0, m1) and h0 == h1


def _result(trace, same=None) -> dict:
    v, cannot, bad = verdict(trace)
    program = trace.meta.get("program") or {}
    out = {"verdict": v, "cannot": cannot, "failed": bad, "steps": int(len(trace.steps)),
           "ops": [n["op"] for n in program.get("nodes", [])]}
    if same is not None:
        out["bit_identical"] = same
    return out


def dense_activation_sigmoid() -> dict:
    """Dense + Activation layers, a sigmoid output, binary cross-entropy."""
    x, y = data("bin")
    build = lambda: sequential([L.Dense(6), L.Activation("relu"), L.Dense(1), L.Activation("sigmoid")], (4,),
                               "binary_crossentropy", metrics=["accuracy"])
    return _result(*_traced_and_plain(build, x, y))


def dense_activation_softmax() -> dict:
    """Dense + Activation layers, a softmax output, categorical cross-entropy (one-hot)."""
    x, y = data("onehot")
    build = lambda: sequential([L.Dense(6, activation="tanh"), L.Dense(3), L.Activation("softmax")], (4,),
                               "categorical_crossentropy", metrics=["accuracy"])
    return _result(*_traced_and_plain(build, x, y))


def activation_layers() -> dict:
    """The activation layers ReLU (plain and max_value=6), LeakyReLU, ELU and a Softmax output."""
    x, y = data("onehot")
    build = lambda: sequential([L.Dense(6), L.ReLU(), L.Dense(6), L.LeakyReLU(negative_slope=0.1), L.Dense(5),
                                L.ELU(alpha=0.5), L.Dense(4), L.ReLU(max_value=6.0), L.Dense(3), L.Softmax()],
                               (4,), "categorical_crossentropy")
    return _result(*_traced_and_plain(build, x, y))


def dense_softmax_sparse() -> dict:
    """Dense(softmax) output, sparse categorical cross-entropy on class numbers."""
    x, y = data("labels")
    build = lambda: sequential([L.Dense(6, activation="gelu"), L.Dense(3, activation="softmax")], (4,),
                               "sparse_categorical_crossentropy")
    return _result(*_traced_and_plain(build, x, y))


def diabetes() -> dict:
    """The first-network tutorial shape: unscaled inputs, 12-8-1, sigmoid, BCE, Adam."""
    x, y = diabetes_like()
    return _result(*_traced_and_plain(diabetes_model, x, y, epochs=3, batch_size=10))


def kernel_regularizer() -> dict:
    x, y = data("reg")
    build = lambda: sequential([L.Dense(5, activation="relu", kernel_regularizer=keras.regularizers.l2(0.01),
                                        bias_regularizer=keras.regularizers.L1L2(0.01, 0.02)),
                                L.Dense(1, kernel_regularizer=keras.regularizers.l1(0.05))], (4,), "mse")
    return _result(*_traced_and_plain(build, x, y))


def add_loss_terms() -> dict:
    """Terms Keras adds with add_loss: an activity regulariser and an ActivityRegularization layer."""
    x, y = data("labels")
    build = lambda: sequential([L.Dense(5, activation="relu", activity_regularizer=keras.regularizers.l2(0.01)),
                                L.ActivityRegularization(l1=0.01), L.Dense(3)], (4,),
                               keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return _result(*_traced_and_plain(build, x, y))


def clipnorm() -> dict:
    x, y = data("reg")
    build = lambda: sequential([L.Dense(5, activation="relu"), L.Dense(1)], (4,), "mse",
                               optimizer=keras.optimizers.Adam(0.05, clipnorm=0.2))
    trace, same = _traced_and_plain(build, x, y)
    out = _result(trace, same)
    out["clipnorm"] = trace.meta["optimizer"].get("clipnorm")
    return out


def use_ema() -> dict:
    x, y = data("reg")
    build = lambda: sequential([L.Dense(5, activation="relu"), L.Dense(1)], (4,), "mse",
                               optimizer=keras.optimizers.SGD(0.02, momentum=0.5, use_ema=True, ema_momentum=0.8,
                                                              ema_overwrite_frequency=3))
    trace, same = _traced_and_plain(build, x, y)
    out = _result(trace, same)
    out["slots"] = trace.state_slots(trace.param_names[0])
    out["optimizer"] = {k: trace.meta["optimizer"].get(k) for k in ("use_ema", "ema_momentum",
                                                                      "ema_overwrite_frequency")}
    return out


def planted_update() -> dict:
    """A recorded update tampered with after the run is caught at its step; the clean twin passes."""
    x, y = diabetes_like(60)
    trace, _ = _traced_and_plain(diabetes_model, x, y, epochs=1, batch_size=10)
    bad = tracer.Trace(arrays=copy.deepcopy(trace.arrays()), meta=copy.deepcopy(trace.meta))
    p = bad.arrays().params[trace.param_names[2]]
    p["after"][3] = p["before"][3] + 1.5 * (p["after"][3] - p["before"][3])
    report = tracer.check(bad)
    table = report.table
    failed = table[~table["passed"]]
    return {"clean": verdict(trace)[0], "tampered": report.verdict,
            "failed_at": sorted({(int(r.step), r.quantity) for r in failed.itertuples()})[:4]}


def content() -> dict:
    """One fixed model and batch order, for comparing what each backend's trace holds."""
    x, y = data("bin", n=12)
    # a named model and layers: Keras numbers unnamed ones per process ("dense_7"), so the
    # TensorFlow side, run after other tests in the same process, would name them otherwise
    model = sequential([L.Dense(3, activation="relu", name="hidden"), L.Dense(1, activation="sigmoid", name="out")],
                       (4,), "binary_crossentropy", optimizer=keras.optimizers.RMSprop(0.01), metrics=["accuracy"],
                       name="content")
    rng = np.random.default_rng(5)
    model.set_weights([rng.normal(size=w.shape).astype("float32") * 0.5 for w in model.get_weights()])
    _, cb = fit(model, x, y, epochs=2, batch_size=5, shuffle=False)
    t = cb.trace
    names = t.param_names
    first = {n: {k: np.asarray(t.param_values(n, k)[0], dtype=float).ravel().tolist()
                 for k in ["before", "grad", "after"] + t.state_slots(n)} for n in names}
    return {"names": names, "steps_columns": sorted(t.steps.columns), "epochs_columns": sorted(t.epochs.columns),
            "params_columns": sorted(t.params.columns), "batch_sizes": t.steps["batch_size"].tolist(),
            "rows": t.samples["sample"].tolist(), "y_pred": t.samples["y_pred"].tolist()[:5],
            "loss": t.steps["loss"].tolist(), "logged_loss": t.steps["logged_loss"].tolist(),
            "first_step": first, "verdict": verdict(t)[0], "program_params": t.meta["program"]["params"]}


CHECKS = [dense_activation_sigmoid, dense_activation_softmax, activation_layers, dense_softmax_sparse, diabetes, kernel_regularizer,
          add_loss_terms, clipnorm, use_ema, planted_update, content]


def run_all() -> dict:
    """``{check name: result}`` on the current backend."""
    return {fn.__name__: fn() for fn in CHECKS}


if __name__ == "__main__":
    result = {"backend": keras.backend.backend(), "checks": run_all()}
    print("PROBE-RESULT " + json.dumps(result, default=str))
