"""What every hook is to the code that drives it: a :class:`TraceSource`.

Why a protocol: ``steptrace run`` (through :mod:`hooks.autotrace`) shows progress while
a script trains and collects the traces when it is done, for Keras, PyTorch and NumPy
alike. Instead of probing each hook for attributes it might have, it relies on the
three every hook offers - the recorder of the run being recorded, the latest trace and
all traces - which keeps it framework-free and lets a type checker see the contract.
Implemented by :class:`hooks.numpy.NumpyTracer`, :class:`hooks.keras.TraceCallback`
and :class:`hooks.torch.TorchTracer`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    from .recorder import Recorder
    from .trace import Trace

__all__ = ["TraceSource"]


@runtime_checkable
class TraceSource(Protocol):
    """A hook that records training runs into traces."""

    @property
    def recorder(self) -> Recorder:
        """The recorder of the run being recorded now (its ``steps_seen`` and
        ``current_epoch`` feed progress displays)."""
        ...

    @property
    def trace(self) -> Trace | None:
        """The latest run's trace (None where a hook builds traces only at its end)."""
        ...

    @property
    def traces(self) -> list[Trace]:
        """One trace per training run, in the order the runs started."""
        ...
