"""Build the step program (``meta["program"]``) of a compiled Keras model.

Why from the layers and the loss object: Keras computes a step as a chain of layers,
the compiled loss, and the extra terms of ``model.losses`` (regularisers). Each is
translated with Keras's own formula for the active backend (:mod:`.layers`,
:mod:`.losses`, :mod:`.regularizers`), so the checker, ``explain`` and the reports
recompute exactly what Keras did. The program is built after the first traced step:
Keras builds its compiled loss then, and the step shows the batch's shapes, whether
sample weights came with it and how many loss terms Keras added.

What cannot be translated - a subclassed model, a layer or loss the registry has no
formula for, sample or class weights, an ``add_loss`` term of a user's layer, a model
with several inputs or outputs - is listed in the program's ``unsupported`` entries, and
the checker says "cannot check" instead of guessing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import keras

from .builder import ProgramBuilder, Unsupported
from .layers import emit_layer, source_line
from .losses import emit_loss, resolve_loss
from .regularizers import regularizer_term

__all__ = ["StepShapes", "build_program"]


@dataclass
class StepShapes:
    """What the first traced step showed: per-step shapes (batch first) of the inputs,
    the targets and the predictions, and the predictions' dtype."""

    x: tuple
    y: tuple
    y_pred: tuple
    y_pred_dtype: str = "float32"


@dataclass
class _Context:
    backend: str
    builder: ProgramBuilder
    names_by_id: dict
    training: bool = True
    uses: list = field(default_factory=list)

    def weight(self, variable, base: str) -> str:
        """A recorded parameter, or a constant for a weight that is not trained."""
        name = self.names_by_id.get(id(variable))
        if name is not None:
            return self.builder.param(name)
        return self.builder.const(base, keras.ops.convert_to_numpy(keras.ops.copy(variable.value)))


def build_program(model: keras.Model, names: list[str], shapes: StepShapes, seen: dict,
                  where: str | None = None) -> dict:
    """The JSON step program of ``model`` (``names``: the trace's names of its trainable
    variables); ``seen`` is what the spies saw (``sample_weight``, ``n_losses``)."""
    backend = keras.backend.backend()
    try:
        dtype = str(resolve_loss(model).dtype)
    except Unsupported:
        dtype = keras.config.floatx()
    b = ProgramBuilder(where, dtype)
    outputs = {}
    try:
        outputs = _translate(model, names, shapes, seen, b, backend)
    except Unsupported as exc:
        b.cannot(exc)
    return b.program(outputs, shapes.x[0] if shapes.x else None)


def _translate(model, names, shapes, seen, b, backend) -> dict:
    layers = _chain(model)
    for obj in [model] + layers:
        policy = getattr(obj, "dtype_policy", None)
        if policy is not None and policy.compute_dtype != policy.variable_dtype:
            raise Unsupported("mixed precision", f"{obj.name} computes in {policy.compute_dtype} with "
                              f"{policy.variable_dtype} weights ({policy.name}); the loss is scaled")
    if seen.get("sample_weight"):
        raise Unsupported("sample_weight", "the batches carry sample or class weights, which the program "
                          "does not model")
    loss = resolve_loss(model)
    ctx = _Context(backend, b, {id(v): n for v, n in zip(model.trainable_variables, names)})
    x = b.input("x", "inputs", list(shapes.x[1:]))
    y = b.input("y", "targets", list(shapes.y[1:]), dtype=loss.target_dtype)
    a, shape = _adjust_input_rank(b, model, x, tuple(shapes.x))
    extra = []
    for layer in layers:
        a, shape = emit_layer(b, layer, a, shape, ctx)
        reg = getattr(layer, "activity_regularizer", None)
        if reg is not None:
            extra.append(regularizer_term(b, reg, a, f"{layer.name}/activity_regularizer",
                                          f"{layer.name} activity regulariser", per_row=True))
    if tuple(shape[1:]) != tuple(shapes.y_pred[1:]):
        raise Unsupported("model", f"the layers give predictions of shape {list(shape)}, Keras gave "
                          f"{list(shapes.y_pred)}")
    if shapes.y_pred_dtype != loss.dtype:
        b.logits.clear()             # Keras casts the output for the loss: its logits are lost
    total = emit_loss(b, loss, a, shape, y, tuple(shapes.y), backend)
    for v, name in zip(model.trainable_variables, names):
        reg = getattr(v, "regularizer", None)
        if reg is not None:
            extra.append(regularizer_term(b, reg, ctx.weight(v, name), f"{name}/regularizer",
                                          f"{name} regulariser"))
    n_losses = seen.get("n_losses")
    if n_losses is not None and n_losses != len(extra):
        raise Unsupported("add_loss", f"Keras added {n_losses} terms to the loss (add_loss, regularisers); "
                          f"the layers account for {len(extra)}")
    for term in (t for t in extra if t is not None):
        total = b.add("loss/+regularization", "add", [total, term], label="model.losses")
    total = b.add("loss", "identity", [total], label="total loss (compute_loss)")
    return {"prediction": a, "loss": total, "target": y}


def _adjust_input_rank(b: ProgramBuilder, model, x: str, shape: tuple) -> tuple[str, tuple]:
    """Functional ``_adjust_input_rank``: an input one rank short of the model's ``Input``
    gets a last axis of 1 (S2's feature vector), one rank over loses a last axis of 1."""
    try:
        ref = tuple(model.inputs[0].shape)
    except (AttributeError, IndexError, TypeError, ValueError):
        return x, shape
    if len(shape) == len(ref) - 1 and ref[-1] == 1:
        return b.add("x[..., None]", "unsqueeze", [x], label="model input", dim=-1), shape + (1,)
    if len(shape) == len(ref) + 1 and shape[-1] == 1:
        return b.add("x.squeeze", "squeeze", [x], label="model input", dims=[-1]), shape[:-1]
    return x, shape


def _chain(model) -> list:
    """The model's layers in order, for a Sequential or a functional chain (one input,
    each layer feeding the next, one output); nested Sequential models are unrolled."""
    for method in ("call", "train_step", "compute_loss"):
        if not _keras_own(model, method):
            raise Unsupported(f"{type(model).__name__}.{method}", f"the model overrides {method}(): Python the "
                              "hook cannot read", source_line(model))
    if isinstance(model, keras.Sequential):
        layers = list(model.layers)
    else:
        layers = _functional_chain(model)
    out = []
    for layer in layers:
        if isinstance(layer, keras.Sequential) and _keras_own(layer, "call"):
            out += _chain(layer)
        elif isinstance(layer, keras.Model):
            raise Unsupported(type(layer).__name__, f"nested model {layer.name!r}", source_line(layer))
        else:
            out.append(layer)
    return out


def _functional_chain(model) -> list:
    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if not inputs or not outputs:
        raise Unsupported(type(model).__name__, "a subclassed model: its call() is Python the hook cannot read",
                          source_line(model))
    if len(inputs) != 1 or len(outputs) != 1:
        raise Unsupported(type(model).__name__, f"{len(inputs)} inputs and {len(outputs)} outputs (a chain has one)")
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    try:
        ok = bool(layers) and layers[0].input is inputs[0] and layers[-1].output is outputs[0] and \
            all(b.input is a.output for a, b in zip(layers, layers[1:]))
    except (AttributeError, ValueError):
        ok = False
    if not ok:
        raise Unsupported(type(model).__name__, f"model {model.name!r} is not a plain chain of layers")
    return layers


def _keras_own(obj, method: str) -> bool:
    """Whether ``method`` of ``obj`` is Keras's own (not overridden in a user's class)."""
    for klass in type(obj).__mro__:
        if method in klass.__dict__:
            return klass.__module__.startswith("keras.")
    return True
