"""Describe a compiled Keras model in steptrace's framework-neutral ``meta``.

The checker never imports Keras, so everything it needs to recompute a step by
hand (the layer stack, the compiled loss and its reduction, the optimizer with
Keras's exact hyperparameters, the metrics behind each logged name) is written
here once, at the start of ``fit``, as plain JSON-able dicts (see
docs/ARCHITECTURE.md, "meta"). Anything we cannot describe exactly becomes
``{"kind": "unsupported", "reason": ...}`` or ``None`` plus a note, never a guess.
"""
from __future__ import annotations

import sys

import keras
import numpy as np

# Keras loss names (strings, functions, classes) -> (neutral name, per-row reduction)
# "mean" over the last axis makes divide_by include "m"; categorical ones sum over classes.
_LOSS_ALIASES = {
    "mse": "mse", "mean_squared_error": "mse", "meansquarederror": "mse",
    "mae": "mae", "mean_absolute_error": "mae", "meanabsoluteerror": "mae",
    "huber": "huber", "huber_loss": "huber",
    "binary_crossentropy": "bce", "bce": "bce", "binarycrossentropy": "bce",
    "categorical_crossentropy": "cce", "categoricalcrossentropy": "cce",
    "sparse_categorical_crossentropy": "scce", "sparsecategoricalcrossentropy": "scce",
}
_MEAN_OVER_OUTPUTS = {"mse", "mae", "huber", "bce"}

# Keras optimizer class -> (neutral name, hyperparameters kept under Keras's own names)
_OPTIMIZERS = {
    "SGD": ("sgd", ("momentum", "nesterov")),
    "RMSprop": ("rmsprop", ("rho", "momentum", "epsilon", "centered")),
    "Adam": ("adam", ("beta_1", "beta_2", "epsilon", "amsgrad")),
    "AdamW": ("adamw", ("beta_1", "beta_2", "epsilon", "amsgrad")),
    "Adagrad": ("adagrad", ("initial_accumulator_value", "epsilon")),
}
# options of every Keras optimizer that change the maths (Keras 3.15 base_optimizer): the
# checker applies clipping (tracer/math/clipping.py) and EMA (slot "ema"); it says
# "cannot check" for loss_scale_factor and gradient_accumulation_steps > 1
_COMMON_OPT_KEYS = ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm", "use_ema",
                    "ema_momentum", "ema_overwrite_frequency", "loss_scale_factor", "gradient_accumulation_steps")
_EMA_KEYS = ("ema_momentum", "ema_overwrite_frequency")

# optimizer attribute holding one slot variable per trainable variable -> slot name.
# Names follow docs/ARCHITECTURE.md (Adam's momentum/velocity are m/v there).
_SLOT_ATTRS = {
    "sgd": (("momentums", "momentum"),),
    "rmsprop": (("_velocities", "velocity"), ("_momentums", "momentum"),
                ("_average_gradients", "average_gradient")),
    "adam": (("_momentums", "m"), ("_velocities", "v"), ("_velocity_hats", "vhat")),
    "adamw": (("_momentums", "m"), ("_velocities", "v"), ("_velocity_hats", "vhat")),
    "adagrad": (("_accumulators", "accumulator"),),
}

_ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh", "softmax")

_METRIC_KINDS = {
    "MeanSquaredError": "mse", "RootMeanSquaredError": "rmse", "MeanAbsoluteError": "mae",
    "BinaryAccuracy": "binary_accuracy", "CategoricalAccuracy": "categorical_accuracy",
    "SparseCategoricalAccuracy": "sparse_categorical_accuracy", "Accuracy": "accuracy",
}
_METRIC_FN_KINDS = {
    "mean_squared_error": "mse", "mean_absolute_error": "mae", "binary_accuracy": "binary_accuracy",
    "categorical_accuracy": "categorical_accuracy",
    "sparse_categorical_accuracy": "sparse_categorical_accuracy", "accuracy": "accuracy",
}


def param_names(model: keras.Model) -> list[str]:
    """Names of the trainable variables (Keras's own ``variable.path``), made unique."""
    names, seen = [], {}
    for v in model.trainable_variables:
        name = getattr(v, "path", None) or v.name
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        else:
            seen[name] = 0
        names.append(name)
    return names


def describe_model(model: keras.Model, names: list[str]) -> dict:
    """``{"kind": "dense_stack", "layers": [...]}`` for a chain of Dense layers, else unsupported."""
    by_id = {id(v): n for v, n in zip(model.trainable_variables, names)}
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if not layers:
        return {"kind": "unsupported", "reason": "the model has no layers"}
    if not isinstance(model, keras.Sequential):
        # a functional model qualifies only if each layer feeds the next one
        try:
            chain = bool(getattr(model, "inputs", None)) and \
                all(b.input is a.output for a, b in zip(layers, layers[1:]))
        except (AttributeError, ValueError):
            chain = False
        if not chain:
            return {"kind": "unsupported", "reason": f"{type(model).__name__} is not a plain chain of layers"}
    if not all(layer.built for layer in layers):
        return {"kind": "unsupported", "reason": "the model is not built yet"}
    out = []
    for layer in layers:
        if type(layer) is not keras.layers.Dense:
            return {"kind": "unsupported", "reason": f"layer {type(layer).__name__} ({layer.name})"}
        act = getattr(layer.activation, "__name__", str(layer.activation))
        if act not in _ACTIVATIONS:
            return {"kind": "unsupported", "reason": f"activation {act!r} in layer {layer.name}"}
        if getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None):
            return {"kind": "unsupported", "reason": f"LoRA/quantized Dense layer {layer.name}"}
        if not layer.trainable:
            return {"kind": "unsupported", "reason": f"frozen layer {layer.name}"}
        kernel = by_id.get(id(layer.kernel))
        bias = by_id.get(id(layer.bias)) if layer.use_bias else None
        out.append({"type": "dense", "name": layer.name, "weight": kernel, "bias": bias,
                    "transpose": False, "activation": act, "units": int(layer.units),
                    "use_bias": bool(layer.use_bias)})
    return {"kind": "dense_stack", "layers": out}


def _loss_key(loss) -> str | None:
    if isinstance(loss, str):
        return loss.lower()
    if isinstance(loss, keras.losses.Loss):
        fn = getattr(loss, "fn", None)
        if type(loss).__name__ != "LossFunctionWrapper":
            return type(loss).__name__.lower()
        return getattr(fn, "__name__", "").lower()
    return getattr(loss, "__name__", "").lower() or None


def describe_loss(model: keras.Model, notes: list) -> dict | None:
    """The compiled loss as ``{"name", "divide_by", "reduction", ...}`` (Keras conventions).

    Keras averages the elementwise loss over the last axis (MSE, MAE, Huber, BCE) or
    sums it over classes (categorical), then divides by the batch rows
    (``sum_over_batch_size``): so ``divide_by`` is ``["n", "m"]`` or ``["n"]``.
    """
    loss = model.loss
    if isinstance(loss, (list, tuple, dict)):
        if len(loss) != 1:
            notes.append("multi-output loss: not described, the checker cannot recompute it")
            return None
        loss = list(loss.values())[0] if isinstance(loss, dict) else loss[0]
    key = _loss_key(loss)
    name = _LOSS_ALIASES.get(key or "")
    if name is None:
        notes.append(f"loss {loss!r}: not one steptrace models (see the step program's unsupported entries)")
        return None
    cfg = {}
    if isinstance(loss, keras.losses.Loss):
        # wrapped losses keep some arguments (Huber's delta) only in _fn_kwargs
        cfg = {**(getattr(loss, "_fn_kwargs", None) or {}), **loss.get_config()}
    reduction = cfg.get("reduction", "sum_over_batch_size") or "sum_over_batch_size"
    from_logits = bool(cfg.get("from_logits", False))
    if name in ("bce", "cce", "scce") and from_logits:
        name += "_logits"
    divide_by = ["m"] if name in _MEAN_OVER_OUTPUTS else []
    if reduction in ("sum_over_batch_size", "mean", "mean_with_sample_weight"):
        divide_by = ["n"] + divide_by
    elif reduction != "sum":
        notes.append(f"loss reduction {reduction!r}: not one steptrace knows")
        return None
    spec = {"name": name, "divide_by": divide_by, "reduction": reduction,
            "keras_name": type(loss).__name__ if not isinstance(loss, str) else loss}
    if name == "huber":
        spec["delta"] = float(cfg.get("delta", 1.0))
    if name in ("bce", "cce", "scce"):
        # Keras clips probabilities to [epsilon, 1 - epsilon] before the log
        spec["epsilon"] = float(keras.config.epsilon())
    if name.startswith(("bce", "cce")) and cfg.get("label_smoothing"):
        spec["label_smoothing"] = float(cfg["label_smoothing"])
    if name in ("cce", "cce_logits", "scce", "scce_logits"):
        axis = cfg.get("axis", -1)
        if axis not in (-1, None):
            notes.append(f"crossentropy over axis {axis}: steptrace assumes the last axis")
    return spec


def describe_optimizer(opt: keras.optimizers.Optimizer, notes: list) -> dict | None:
    """The optimizer with its Keras hyperparameters (``convention: "keras"``)."""
    cls = type(opt).__name__
    cfg = opt.get_config()
    lr = cfg.get("learning_rate")
    spec = {"convention": "keras", "keras_name": cls}
    if cls in _OPTIMIZERS:
        name, keys = _OPTIMIZERS[cls]
        spec["name"] = name
        spec.update({k: jsonable(cfg.get(k)) for k in keys})
    else:
        spec["name"] = cls.lower()
        notes.append(f"optimizer {cls}: not one the checker knows")
    if isinstance(lr, (int, float)):
        spec["lr"] = float(lr)
    else:
        spec["lr"] = None
        spec["lr_schedule"] = jsonable(lr)
        notes.append("the learning rate follows a schedule: the per-step value is in steps.lr")
    for k in _COMMON_OPT_KEYS:
        v = cfg.get(k, getattr(opt, k, None))
        if k in _EMA_KEYS and not cfg.get("use_ema"):
            continue
        if v not in (None, False) or k in ("weight_decay", "use_ema"):
            spec[k] = jsonable(v)
    if cls == "AdamW" and spec.get("weight_decay") is None:
        spec["weight_decay"] = 0.004
    if spec.get("clipvalue") == 0:
        notes.append("clipvalue=0: Keras ignores it (gradients are not clipped)")
    if spec.get("weight_decay") and (getattr(opt, "_exclude_from_weight_decay", None)
                                     or getattr(opt, "_exclude_from_weight_decay_pattern", None)):
        notes.append("some variables are excluded from weight decay: the hand check applies it to all")
    return spec


def unmodelled_updates(opt: keras.optimizers.Optimizer, variables: list, names: list[str]) -> dict:
    """``{param: reason}`` for variables whose update the rule does not describe: a
    constraint (applied after the update) or an exclusion from weight decay. The checker
    then says "cannot check" for those updates instead of failing them."""
    out = {}
    wd = getattr(opt, "weight_decay", None)
    use_wd = getattr(opt, "_use_weight_decay", None)
    for var, name in zip(variables, names):
        constraint = getattr(var, "constraint", None)
        if constraint is not None:
            out[name] = f"a constraint ({type(constraint).__name__}) changes the value after the update"
        elif wd and use_wd is not None:
            try:
                excluded = not use_wd(var)
            except (AttributeError, TypeError, ValueError):
                excluded = False
            if excluded:
                out[name] = "excluded from weight decay (exclude_from_weight_decay)"
    return out


def slot_variables(opt: keras.optimizers.Optimizer, name: str, variables: list,
                   names: list[str]) -> list[tuple[str, str, object]]:
    """``(param name, slot name, optimizer variable)`` for every state slot of every parameter
    (with ``use_ema``, the moving average of each variable as slot ``ema``)."""
    out = []
    attrs = _SLOT_ATTRS.get(name, ())
    if getattr(opt, "use_ema", False):
        attrs = attrs + (("_model_variables_moving_average", "ema"),)
    for attr, slot in attrs:
        slots = getattr(opt, attr, None) or []
        if len(slots) != len(variables):
            continue
        for var, pname in zip(variables, names):
            try:
                idx = opt._get_variable_index(var)
            except (KeyError, AttributeError):
                continue
            out.append((pname, slot, slots[idx]))
    if name not in _SLOT_ATTRS:
        # unknown optimizer: match slot variables by Keras's naming rule "<path>_<slot>"
        for var, pname in zip(variables, names):
            prefix = getattr(var, "path", var.name).replace("/", "_") + "_"
            for ov in opt.variables:
                if ov.name.startswith(prefix):
                    out.append((pname, ov.name[len(prefix):], ov))
    return out


def describe_metrics(model: keras.Model, loss_spec: dict | None) -> list[dict]:
    """One entry per compiled metric: its logged name and the kind the checker recomputes."""
    cm = getattr(model, "_compile_metrics", None)
    out = []
    for m in (cm.metrics if cm is not None else []):
        cls = type(m).__name__
        kind = _METRIC_KINDS.get(cls)
        if kind is None and cls == "MeanMetricWrapper":
            kind = _METRIC_FN_KINDS.get(getattr(getattr(m, "_fn", None), "__name__", ""))
        entry = {"name": m.name, "kind": kind or "unsupported", "keras_name": cls}
        thr = getattr(m, "threshold", None)
        if thr is None and kind == "binary_accuracy":
            thr = getattr(m, "_fn_kwargs", {}).get("threshold", 0.5)
        if thr is not None and kind == "binary_accuracy":
            entry["threshold"] = float(thr)
        out.append(entry)
    return out


def versions() -> dict:
    """Library versions that shaped the numbers: Keras, its backend, NumPy."""
    out = {"keras": keras.__version__, "keras_backend": keras.backend.backend(), "numpy": np.__version__}
    backend = {"tensorflow": "tensorflow", "torch": "torch"}.get(keras.backend.backend())
    module = sys.modules.get(backend) if backend else None
    if module is not None:
        out[backend] = module.__version__
    return out


def jsonable(v: object) -> object:
    """``v`` as plain JSON-able values (NumPy scalars unwrapped, anything else as text)."""
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)
