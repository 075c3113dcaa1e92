"""The step program: one data description of a training step, one engine to evaluate it.

- :class:`StepProgram` (``program.py``): named assignments over a closed registry of
  operations, stored in ``meta["program"]`` as JSON.
- :mod:`~tracer.program.registry`: the operations (elementwise ones from sympy in
  ``elementwise.py``; exact NumPy ones in ``structural.py`` and ``indexing.py``;
  composite layers and losses in ``macros.py``).
- :class:`Evaluation` (``engine.py``): values, gradients and rounding magnitudes for a
  stack of steps at once.
"""
from .engine import Evaluation
from .program import Const, Input, Node, StepProgram
from .registry import REGISTRY, get_op

__all__ = ["StepProgram", "Node", "Input", "Const", "Evaluation", "get_op", "REGISTRY"]
