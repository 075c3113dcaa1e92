"""Trace an unmodified PyTorch training loop, ``nn.Module`` + optimizer or raw tensors.

Usage::

    from hooks.torch import trace_torch
    with trace_torch() as tr:
        for epoch in range(epochs):          # the user's loop, unchanged
            for x, y in loader:
                loss = loss_fn(model(x), y)
                loss.backward()
                optimizer.step(); optimizer.zero_grad()
    tr.trace                                 # a tracer.Trace

How the loop is seen (every patch is removed on exit, nothing draws random numbers):

- ``torch.Tensor.backward`` is wrapped: before the engine runs, the loss's autograd
  graph is read (:mod:`hooks.torch.graph`): trained tensors, model layers, the batch,
  the predictions, the loss; the parameters are snapshotted; after it, the gradients.
- DataLoader iterators report the indices of each batch (:mod:`hooks.torch.data`);
  a generator's batches are matched against the dataset they slice (found during the
  first forward pass, or given with ``data=``); :mod:`hooks.torch.sources` holds one
  row source per way.
- With an optimizer, global step pre/post hooks close the step (values after, state,
  learning rate). Without one, the step closes at the next ``backward`` (or on exit):
  whatever in-place update the loop made under ``no_grad`` is what changed the values
  (:mod:`hooks.torch.step`).
- In-place writes to a parameter are counted per step (``_version`` bumps plus
  ``param.data = ...`` assignments) and the first write's source line is kept, so
  "updated twice" and "divides by the batch size again" rest on evidence.

What the trace holds beyond the recorder's tables: ``steps`` columns ``updates_<param>``
(in-place writes in the step), ``stale_grad_<param>`` (1 when backward added to a
gradient an earlier update had used), ``opt_step``; summary capture adds
``value_norm_/update_norm_/grad_norm_<param>``. ``meta["torch"]`` = ``{"mode":
"optimizer"|"manual", "frozen": [constant tensors used as a layer's weight/bias],
"update_source": {param: {"code", "file", "line", "divides_by_batch"?}}, "data":
"dataset"|"indexed"|"matched"|"seen"}``; without an optimizer ``meta["update_rule"]`` =
``{param: {"kind": "sgd"|"none"|"frozen"|"unknown", "lr": ..., "text": "w -= 1e-06 * grad"}}``.

The modules: ``block`` (the ``with`` block, :class:`TorchTracer`), ``run`` (one
training loop), ``step`` (the step state machine), ``placement`` (epochs, batch numbers,
batch contents), ``sources`` (row sources), ``patches`` (what is patched),
``graph``/``graph_loss``/``graph_model``/``graph_nodes`` (the graph reader), ``names``,
``optim``, ``data``, ``rules``.

The package is named after the framework it hooks; ``import torch`` inside it is
absolute, so it never shadows PyTorch.
"""
from .block import TorchTracer, trace_torch

__all__ = ["trace_torch", "TorchTracer"]
