"""The training rows a ``fit`` call was given, read from ``fit``'s own frame.

Why from the frame: a callback is never handed ``x`` and ``y``. The arrays are read
from the ``fit`` call that trains the model (after its ``validation_split`` cut), so
batch rows can be located in them without the user passing anything.
"""
from __future__ import annotations

import sys
from types import FrameType
from typing import Any

import numpy as np
import tensorflow as tf


def fit_frame(model: Any) -> FrameType | None:
    """The frame of the ``fit`` call that is training ``model``, or None."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == "fit" and frame.f_locals.get("self") is model \
                and "epoch_iterator" in frame.f_locals:
            return frame
        frame = frame.f_back
    return None


def as_array(a: Any) -> np.ndarray | None:
    """``a`` as a NumPy array if it is array-like data (arrays, tensors, lists), else None."""
    if a is None:
        return None
    if isinstance(a, np.ndarray):
        return a
    if isinstance(a, (tf.Tensor, tf.Variable)) or hasattr(a, "__array__") and not isinstance(a, (dict,)):
        try:
            return np.asarray(a)
        except (TypeError, ValueError):
            return None
    if isinstance(a, list):
        try:
            arr = np.asarray(a)
        except (TypeError, ValueError):
            return None
        return arr if arr.dtype != object else None
    return None
