"""The maths of training as sympy expressions: losses, activations, optimizer rules, metrics.

One source of truth: every formula is a sympy expression; derivatives come from
``sympy.diff``; numbers from ``sympy.lambdify`` to NumPy, vectorised over all recorded
steps at once. The checker, the explanations and the Excel export all print from here.
"""
from .losses import Loss, get_loss, squared_error_family
from .activations import Activation, get_activation
from .optimizers import OptimizerRule, get_optimizer
from .metrics import Metric, get_metric
from . import printing

__all__ = ["Loss", "get_loss", "squared_error_family", "Activation", "get_activation",
           "OptimizerRule", "get_optimizer", "Metric", "get_metric", "printing"]
