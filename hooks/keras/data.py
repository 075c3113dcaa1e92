"""The training rows a ``fit`` call was given, read from ``fit``'s own frame; tensors as NumPy.

Why from the frame: a callback is never handed ``x`` and ``y``. The arrays are read
from the ``fit`` call that trains the model (after its ``validation_split`` cut), so
batch rows can be located in them without the user passing anything. Nothing here
imports a backend: Keras may run on TensorFlow or on torch, and the hook must not load
the other one (seconds of import time, and memory) just to recognise a tensor.
"""
from __future__ import annotations

import os
import sys
from types import FrameType
from typing import Any

import numpy as np

__all__ = ["fit_frame", "user_line", "as_array", "as_numpy"]

_LIBRARIES = ("keras", "tensorflow", "torch", "hooks", "tracer", "os")


def fit_frame(model: Any) -> FrameType | None:
    """The frame of the ``fit`` call that is training ``model``, or None."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == "fit" and frame.f_locals.get("self") is model \
                and "epoch_iterator" in frame.f_locals:
            return frame
        frame = frame.f_back
    return None


def user_line(frame: FrameType | None) -> str | None:
    """``file:line`` of the first caller of ``frame`` outside Keras, the backends and
    steptrace itself: the user's own ``fit`` line, which program nodes cite."""
    skip = _library_dirs()
    while frame is not None:
        path = frame.f_code.co_filename
        if not path.startswith("<") and not os.path.abspath(path).startswith(skip):
            return f"{os.path.basename(path)}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def _library_dirs() -> tuple[str, ...]:
    """The folders of the loaded libraries whose frames are not the user's (``os``: the
    standard library)."""
    out = []
    for name in _LIBRARIES:
        path = getattr(sys.modules.get(name), "__file__", None)
        if path:
            out.append(os.path.dirname(os.path.abspath(path)) + os.sep)
    return tuple(out)


def as_array(a: Any) -> np.ndarray | None:
    """``a`` as a NumPy array if it is array-like data (arrays, tensors, lists), else None."""
    if a is None or isinstance(a, (dict, str, bytes)):
        return None
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "detach") and hasattr(a, "cpu"):          # a torch tensor
        return a.detach().cpu().numpy()
    if hasattr(a, "__array__"):
        try:
            return np.asarray(a)
        except (TypeError, ValueError, RuntimeError):
            return None
    if isinstance(a, list):
        try:
            arr = np.asarray(a)
        except (TypeError, ValueError):
            return None
        return arr if arr.dtype != object else None
    return None


def as_numpy(t: Any) -> np.ndarray:
    """A NumPy view of a tensor the step returned, without a defensive copy.

    Safe because every array handed to the recorder is copied by it at once, and the
    tensors are fresh step outputs: graph outputs on TensorFlow, clones or gradients
    nothing writes to before the next step on torch.
    """
    view = getattr(t, "_numpy", None)                        # a TensorFlow eager tensor
    if view is not None:
        return view()
    t = getattr(t, "value", t)                              # a Keras variable
    if hasattr(t, "detach") and hasattr(t, "cpu"):
        return t.detach().cpu().numpy()
    return np.asarray(t)
