"""The step program the Keras hook builds (``meta["program"]``), on TensorFlow.

Every activation, loss, layer, regulariser and optimizer option the hook models must
check as ``passed`` with nothing "cannot check"; everything it does not model must come
back "cannot check" naming what and where - never FAILED. The other backend is covered
by ``test_keras_backends.py``.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest

import tracer
from _keras_cases import L, data, fit, sequential, verdict
from hooks.keras.layers import ACTIVATIONS
from tracer.program import StepProgram

pytestmark = pytest.mark.keras

R = keras.regularizers
O = keras.optimizers


def traced(layers, loss, kind, optimizer=None, input_shape=(4,), x=None, y=None, compile_kw=None, **fit_kw):
    if x is None:
        x, y = data(kind, n=20)
    model = sequential(layers, input_shape, loss, optimizer=optimizer, **(compile_kw or {}))
    fit_kw = {"epochs": 1, "batch_size": 10, **fit_kw}
    return fit(model, x, y, **fit_kw)[1].trace


def assert_passes(trace):
    v, cannot, bad = verdict(trace)
    assert (v, cannot, bad) == ("passed", [], []), (v, cannot, bad)
    StepProgram.from_dict(trace.meta["program"])          # a valid program, kept as JSON
    return trace.meta["program"]


def assert_cannot_check(trace, *words):
    v, cannot, bad = verdict(trace)
    assert v == "incomplete" and bad == [], (v, cannot, bad)
    text = " ".join(cannot)
    assert all(w in text for w in words), cannot
    return cannot


# ------------------------------------------------------------------------ activations
GROUPS = [ACTIVATIONS[i:i + 6] for i in range(0, len(ACTIVATIONS), 6)]


@pytest.mark.parametrize("names", GROUPS, ids=["-".join(g[:2]) for g in GROUPS])
def test_every_keras_activation_is_modelled(names):
    """Each activation Keras has and the registry can express, after its own Dense layer."""
    layers = [L.Dense(4, activation=a, kernel_initializer=keras.initializers.RandomNormal(stddev=0.3))
              for a in names] + [L.Dense(1)]
    assert_passes(traced(layers, "mse", "reg", optimizer=O.SGD(0.01)))


def test_activation_attributes_follow_keras_defaults():
    program = assert_passes(traced([L.Dense(3, activation="gelu"), L.Dense(3, activation="leaky_relu"),
                                    L.Dense(3, activation="softplus"), L.Dense(1)], "mse", "reg"))
    attrs = {n["op"]: n["attrs"] for n in program["nodes"]}
    assert attrs["gelu"] == {"approximate": "none"}        # Keras 3: approximate=False
    assert attrs["leaky_relu"] == {"alpha": 0.2}            # Keras's slope, not torch's 0.01
    assert attrs["softplus"] == {}                          # TensorFlow's softplus has no threshold


# ------------------------------------------------------------------------------ losses
LOSSES = {
    "mse": ("mse", "reg", None), "mae": ("mae", "reg", None), "huber": (keras.losses.Huber(0.7), "reg", None),
    "log_cosh": ("log_cosh", "reg", None), "mape": ("mape", "pos", "softplus"),
    "msle": ("msle", "pos", "softplus"), "poisson": ("poisson", "pos", "softplus"),
    "kld": ("kld", "prob", "softmax"), "hinge": ("hinge", "bin", None), "hinge_pm1": ("hinge", "pm1", None),
    "squared_hinge": ("squared_hinge", "bin", None),
    "mse_sum": (keras.losses.MeanSquaredError(reduction="sum"), "reg", None),
    "bce": ("binary_crossentropy", "bin", "sigmoid"), "bce_vector_targets": ("binary_crossentropy", "bin1d", "sigmoid"),
    "bce_smoothing": (keras.losses.BinaryCrossentropy(label_smoothing=0.2), "bin", "sigmoid"),
    "bce_from_logits": (keras.losses.BinaryCrossentropy(from_logits=True), "bin", None),
    "bce_probabilities": ("binary_crossentropy", "bin", "hard_sigmoid"),
    "cce": ("categorical_crossentropy", "onehot", "softmax"),
    "cce_smoothing": (keras.losses.CategoricalCrossentropy(label_smoothing=0.1), "onehot", "softmax"),
    "cce_from_logits": (keras.losses.CategoricalCrossentropy(from_logits=True), "onehot", None),
    "cce_probabilities": ("categorical_crossentropy", "onehot", "softplus"),
    "scce": ("sparse_categorical_crossentropy", "labels", "softmax"),
    "scce_from_logits": (keras.losses.SparseCategoricalCrossentropy(from_logits=True), "labels", None),
    "scce_probabilities": ("sparse_categorical_crossentropy", "labels", "softplus"),
    "crossentropy_auto": ("crossentropy", "labels", "softmax"),
}
UNITS = {"reg": 1, "bin": 1, "bin1d": 1, "pos": 2, "pm1": 2, "prob": 3, "onehot": 3, "labels": 3}


@pytest.mark.parametrize("name", list(LOSSES))
def test_every_modelled_loss_checks(name):
    loss, kind, act = LOSSES[name]
    program = assert_passes(traced([L.Dense(5, activation="tanh"), L.Dense(UNITS[kind], activation=act)], loss,
                                   kind))
    ops = [n["op"] for n in program["nodes"]]
    if name in ("bce", "bce_smoothing"):
        assert "bce_logits_term" in ops and "clamp" not in ops     # Keras's hidden-logits path
    if name == "bce_probabilities":
        assert "clamp" in ops                                       # no logits behind hard_sigmoid: clipped
    if name.startswith("scce"):
        y = next(i for i in program["inputs"] if i["name"] == "y")
        assert y["dtype"] == "int"


def test_loss_weight_and_the_sigmoid_false_alarm_of_issue_16():
    """compile(loss_weights=0.5) scales the loss; a saturated sigmoid output is checked
    from its logits (0.1.0 clipped it: "loss: expected 9.67, got 27.98")."""
    x, y = data("bin", n=20)
    trace = traced([L.Dense(5, activation="tanh"), L.Dense(1, activation="sigmoid",
                                                           kernel_initializer=keras.initializers.Constant(20.0))],
                   "binary_crossentropy", None, x=x, y=y, compile_kw={"loss_weights": 0.5})
    program = assert_passes(trace)
    assert program["nodes"][-2]["op"] == "mul" and program["nodes"][-2]["args"][1] == 0.5
    pred = trace.samples["y_pred"].to_numpy()
    assert ((pred == 0) | (pred == 1)).any()                       # saturated in float32: clipping would lie


# ------------------------------------------------------------------------------ layers
def test_activation_layers_are_their_registry_ops():
    """``ReLU()``, ``LeakyReLU``, ``ELU`` and ``Softmax()`` layers (keras.io's examples use them
    in place of ``activation=``) were "cannot check: ReLU"; a ReLU with a threshold still is."""
    program = assert_passes(traced([L.Dense(6), L.ReLU(), L.Dense(6), L.LeakyReLU(negative_slope=0.1), L.Dense(5),
                                     L.ELU(alpha=0.5), L.Dense(4), L.ReLU(max_value=6.0), L.Dense(3), L.Softmax()],
                                    "categorical_crossentropy", "onehot", optimizer=O.Adam(0.01)))
    ops = [(n["op"], n["attrs"].get("alpha")) for n in program["nodes"] if n["op"] in ("relu", "leaky_relu", "elu")]
    assert ops == [("relu", None), ("leaky_relu", 0.1), ("elu", 0.5), ("relu", None)], ops
    assert "softmax" in [n["op"] for n in program["nodes"]] or "cross_entropy" in [n["op"] for n in program["nodes"]]
    assert_cannot_check(traced([L.Dense(4), L.ReLU(threshold=0.5), L.Dense(1)], "mse", "reg"), "ReLU", "threshold")


def test_flatten_reshape_dropout_and_nested_models():
    x = np.random.default_rng(0).normal(size=(20, 2, 3))
    y = x.sum(axis=(1, 2))[:, None]
    program = assert_passes(traced([L.Reshape((6,)), L.Dense(4, activation="relu"), L.Dropout(0.0),
                                    L.Reshape((2, 2)), L.Dense(3), L.Flatten(),
                                    keras.Sequential([L.Dense(3, activation="tanh")]), L.Dense(1)],
                                   "mse", None, input_shape=(2, 3), x=x, y=y))
    assert program["inputs"][0]["shape"] == [2, 3]
    assert [n["attrs"]["shape"] for n in program["nodes"] if n["op"] == "reshape"] == [[0, 6], [0, 2, 2], [0, 6]]


def test_functional_chain_frozen_layer_and_no_bias():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((4,))
    h = L.Dense(5, activation="relu", trainable=False)(inputs)
    h = L.Dense(3, use_bias=False)(h)
    outputs = L.Activation("softmax")(h)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=O.RMSprop(0.01), loss="sparse_categorical_crossentropy")
    x, y = data("labels", n=20)
    trace = fit(model, x, y, epochs=1, batch_size=10)[1].trace
    program = assert_passes(trace)
    assert len(program["consts"]) == 2 and program["params"] == trace.param_names   # the frozen layer


def test_the_input_rank_is_adjusted_as_keras_does():
    """S2's feature is a vector while the model's Input is (1,): Keras adds the axis."""
    x = np.arange(1.0, 13.0)
    y = 3 * x + 1
    program = assert_passes(traced([L.Dense(1)], "mse", None, input_shape=(1,), x=x, y=y, batch_size=4))
    assert program["nodes"][0]["op"] == "unsqueeze"


# ------------------------------------------------------------------------ regularisers
def test_weight_and_activity_regularisers_are_part_of_the_loss():
    trace = traced([L.Dense(4, activation="relu", kernel_regularizer=R.l2(0.01), bias_regularizer=R.l1(0.02),
                            activity_regularizer=R.L1L2(0.01, 0.01)),
                    L.ActivityRegularization(l2=0.05), L.Dense(1, kernel_regularizer=R.L1L2(l1=0.1))], "mse", "reg")
    program = assert_passes(trace)
    assert sum(n["name"].startswith("loss/+regularization") for n in program["nodes"]) == 5
    # the regularisation is a large part of this loss: the logged loss includes it
    assert trace.steps["logged_loss"].iloc[0] == pytest.approx(trace.steps["loss"].iloc[0], rel=1e-6)


# ---------------------------------------------------------------------- unsupported
class AddSum(L.Layer):
    def call(self, inputs):
        self.add_loss(keras.ops.sum(inputs) * 0.1)
        return inputs


def my_loss(y_true, y_pred):
    return keras.ops.mean(keras.ops.square(y_true - y_pred))


class MyLoss(keras.losses.Loss):
    def call(self, y_true, y_pred):
        return keras.ops.mean(keras.ops.square(y_true - y_pred), axis=-1)


@pytest.mark.parametrize("case", ["dropout", "conv", "custom_layer", "custom_loss_fn", "loss_subclass",
                                  "orthogonal", "sample_weight", "class_weight"])
def test_what_is_not_modelled_is_cannot_check_never_failed(case):
    dense = [L.Dense(4, activation="tanh")]
    where = "_keras_cases.py:"                  # Keras's own classes and options: the fit line is cited
    if case == "dropout":
        cannot = assert_cannot_check(traced(dense + [L.Dropout(0.5), L.Dense(1)], "mse", "reg"), "Dropout",
                                     "random mask")
    elif case == "conv":
        cannot = assert_cannot_check(traced([L.Reshape((4, 1)), L.Conv1D(2, 2), L.Flatten(), L.Dense(1)], "mse",
                                            "reg"), "Conv1D")
    elif case == "custom_layer":
        cannot = assert_cannot_check(traced(dense + [AddSum(), L.Dense(1)], "mse", "reg"), "AddSum")
        where = f"{os.path.basename(__file__)}:"       # the user's class, function or Loss: its own line
    elif case == "custom_loss_fn":
        cannot = assert_cannot_check(traced(dense + [L.Dense(1)], my_loss, "reg"), "my_loss")
        where = f"{os.path.basename(__file__)}:"
    elif case == "loss_subclass":
        cannot = assert_cannot_check(traced(dense + [L.Dense(1)], MyLoss(), "reg"), "MyLoss")
        where = f"{os.path.basename(__file__)}:"
    elif case == "orthogonal":
        cannot = assert_cannot_check(traced([L.Dense(4, kernel_regularizer=R.OrthogonalRegularizer()), L.Dense(1)],
                                            "mse", "reg"), "OrthogonalRegularizer")
    elif case == "sample_weight":
        cannot = assert_cannot_check(traced(dense + [L.Dense(1)], "mse", "reg",
                                            sample_weight=np.linspace(0.5, 1.5, 20)), "sample_weight")
    else:
        cannot = assert_cannot_check(traced(dense + [L.Dense(3, activation="softmax")],
                                            "sparse_categorical_crossentropy", "labels",
                                            class_weight={0: 1.0, 1: 2.0, 2: 0.5}), "sample_weight")
    assert where in " ".join(cannot)


def test_subclassed_model_is_cannot_check():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(1)

        def call(self, x):
            return self.d(x) * 2.0

    keras.utils.set_random_seed(0)
    model = Net()
    model.compile(optimizer="sgd", loss="mse")
    x, y = data("reg", n=20)
    assert_cannot_check(fit(model, x, y, epochs=1, batch_size=10)[1].trace, "Net")


# ------------------------------------------------------------------- optimizer options
OPTIONS = {
    "clipnorm": lambda: O.Adam(0.05, clipnorm=0.1), "global_clipnorm": lambda: O.SGD(0.05, global_clipnorm=0.1),
    "clipvalue": lambda: O.RMSprop(0.01, clipvalue=0.05), "ema": lambda: O.Adam(0.01, use_ema=True),
    "ema_overwrite": lambda: O.SGD(0.05, use_ema=True, ema_momentum=0.9, ema_overwrite_frequency=2),
    "adamw": lambda: O.AdamW(0.01, weight_decay=0.1), "sgd_weight_decay": lambda: O.SGD(0.05, weight_decay=0.01),
}


@pytest.mark.parametrize("name", list(OPTIONS))
def test_modelled_optimizer_options_check(name):
    trace = traced([L.Dense(4, activation="relu"), L.Dense(1)], "mse", "reg", optimizer=OPTIONS[name](),
                   epochs=2)
    assert_passes(trace)
    spec = trace.meta["optimizer"]
    if name.startswith("ema"):
        assert spec["use_ema"] is True and "ema" in trace.state_slots(trace.param_names[0])
        assert "ema" in set(tracer.check(trace).table["quantity"])          # the moving average is checked
    if name.startswith(("clip", "global")):
        assert spec[name] == pytest.approx(0.1 if name != "clipvalue" else 0.05)


@pytest.mark.parametrize("option", ["loss_scale_factor", "gradient_accumulation_steps"])
def test_unmodelled_optimizer_options_are_cannot_check(option):
    opt = O.SGD(0.05, **{option: 4.0 if option == "loss_scale_factor" else 2})
    trace = traced([L.Dense(4, activation="relu"), L.Dense(1)], "mse", "reg", optimizer=opt, epochs=2)
    assert_cannot_check(trace, option)
    # the recorded gradient is the loss's own (Keras unscales before the update): still checked
    assert "grad" in set(tracer.check(trace).table["quantity"])
