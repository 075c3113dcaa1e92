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

- One forward pass is watched by a ``TorchFunctionMode`` (:mod:`hooks.torch.capture`):
  from the block's start to the first ``backward``, and again when a new program may
  be needed. At that ``backward`` the calls the loss depends on become the *step
  program* (:mod:`hooks.torch.build`, translated by the table in ``ops*.py``), stored
  in ``meta["program"]`` for the checker. Otherwise no mode is active.
- ``torch.Tensor.backward`` is wrapped: before the engine runs, one walk of the loss's
  graph (:mod:`hooks.torch.graph`) gives the trained tensors and a signature that
  tells whether the step ran the program's computation; the parameters are
  snapshotted; after it, the gradients.
- DataLoader iterators report the indices of each batch (:mod:`hooks.torch.data`);
  without a loader the program's batch tensor, found again in each step's graph, gives
  the rows: views ``x[a:b]``, ``features[idx]`` matched by content, or the whole data of
  a full-batch loop, stored once (:mod:`hooks.torch.sources`).
- With an optimizer, global step pre/post hooks close the step (values after, state,
  learning rate); a new optimizer, a reset state or a changed set of trained tensors
  starts a new run. Without one, the step closes at the next ``backward`` (or on
  exit): whatever in-place update the loop made under ``no_grad`` is what changed the
  values (:mod:`hooks.torch.step`). A ``backward`` with no update before the next one
  is folded into the next step.
- In-place writes to a parameter are counted per step (``_version`` bumps plus
  ``param.data = ...`` assignments) and the first write's source line is kept, so
  "updated twice" and "divides by the batch size again" rest on evidence.

What the trace holds beyond the recorder's tables: ``meta["program"]`` (the step
program), ``meta["loss"]`` (``{name, reduction}`` for display), ``meta["params"][i]
["dtype"]`` (the torch dtype: bfloat16 values are kept as float32); ``steps`` columns
``updates_<param>`` (in-place writes in the step), ``stale_grad_<param>`` (1 when
backward added to a gradient an earlier update had used), ``opt_step``; summary capture
adds ``value_norm_/update_norm_/grad_norm_<param>``. ``meta["torch"]`` = ``{"mode":
"optimizer"|"manual", "frozen": [plain tensors used as a layer's weight/bias that nobody
trains], "update_source": {param: {"code", "file", "line", "divides_by_batch"?}}, "data":
"dataset"|"indexed"|"seen"|"matched"|"sliced"|"full"}``; ``meta["update_rule"]`` =
``{param: {"kind": "sgd"|"none"|"frozen"|"unknown", "lr": ..., "text": ...}}`` without
an optimizer (with one: the frozen tensors only).

Issue 10 (:mod:`micro`, :mod:`gradops`, :mod:`writes`, :mod:`shared`): backward passes
before one update are micro-steps of that step (``samples.micro``, summed loss,
``steps.micro_steps``); ``clip_grad_norm_``/``clip_grad_value_`` give
``meta["grad_transform"]`` with the raw gradient recorded, any other change to
``.grad`` before the update ``meta["optimizer"]["unmodelled"]``; writes between steps
``meta["torch"]["between_steps"]`` (``{param: {after_step, file, line, code}}``); a
tensor reached twice by the optimizers ``meta["shared_params"]``, and parameters a
second optimizer updated after the step closed ``meta["torch"]["late_update"]``.

The modules: ``block`` (the ``with`` block, :class:`TorchTracer`), ``run`` (one
training loop), ``step`` (the step state machine), ``placement`` (epochs, batch numbers,
rows, predictions), ``sources`` (row sources), ``patches`` (what is patched), ``capture``
(the watched forward pass), ``build`` / ``emit`` / ``layout`` / ``plan`` (the program),
``ops`` / ``ops_nn`` / ``ops_loss`` (the translation table), ``graph`` (the per-step
walk), ``names``, ``optim``, ``data``, ``rules``, ``summary``.

The package is named after the framework it hooks; ``import torch`` inside it is
absolute, so it never shadows PyTorch.
"""
from .block import TorchTracer, trace_torch

__all__ = ["trace_torch", "TorchTracer"]
