"""What every plot of a run shares: epochs marked and labelled, integer iteration ticks that
survive one iteration or 10,000, legends beside the data, lines broken where epochs reset.

Why: a running mean resets at each epoch; a line joining the last batch of epoch 1 to
the first of epoch 2 hides exactly the reset the learner must see. One iteration gives
matplotlib nothing to scale (ticks 0.945-1.050) and a legend inside the axes covers
the only points.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tracer.atomic import replacing_file
from tracer.errors import TraceFileError

if TYPE_CHECKING:
    import os
    from collections.abc import Iterable
    from types import ModuleType

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from numpy.typing import ArrayLike

    from tracer.trace import Trace

__all__ = ["plt", "epoch_marks", "iteration_axis", "legend_outside", "broken", "save", "marker_for"]

#: most epoch labels written along the top of a plot (more epochs: every k-th)
MAX_EPOCH_LABELS = 20
#: most epochs whose boundaries are drawn
MAX_EPOCH_LINES = 60
#: most iterations drawn with a marker per point
MAX_MARKERS = 60


def plt() -> ModuleType:
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as pyplot
    return pyplot


def marker_for(n: int, kind: str = "o") -> str | None:
    """A marker per point for short runs (a single point must be visible), none for long ones."""
    return kind if n <= MAX_MARKERS else None


def _starts(steps) -> tuple[np.ndarray, np.ndarray]:
    """``(epoch numbers, first step of each)`` in step order."""
    ep = steps["epoch"].to_numpy()
    st = steps["step"].to_numpy()
    first = np.r_[True, ep[1:] != ep[:-1]] if len(ep) else np.zeros(0, bool)
    return ep[first], st[first]


def epoch_marks(ax: Axes, trace: Trace, offset: float = 0.5) -> None:
    """Dotted lines between epochs and ``epoch k`` labels along the top (thinned for many epochs).

    ``offset``: where a boundary sits before an epoch's first step (0.5: between iterations;
    1.0 for plots of values after each update, whose x is the step that produced them)."""
    steps = trace.steps
    epochs, starts = _starts(steps)
    if len(epochs) > MAX_EPOCH_LABELS:
        _epoch_axis(ax, epochs, starts)
        return
    if len(epochs) < 1:
        return
    if len(epochs) > 1:
        for i, s in enumerate(starts[1:]):
            ax.axvline(s - offset, color="0.6", lw=0.8, ls=":", label="epoch boundary" if i == 0 else None)
    ends = np.r_[starts[1:] - 1, steps["step"].to_numpy()[-1]]
    trans = ax.get_xaxis_transform()
    for k in range(len(epochs)):
        mid = (starts[k] + ends[k]) / 2
        ax.text(mid, 1.01, f"epoch {int(epochs[k])}", transform=trans, ha="center", va="bottom", fontsize=7,
                color="0.35", clip_on=False)


def _epoch_axis(ax, epochs, starts, n_ticks: int = 8) -> None:
    """Many epochs: an ``epoch`` axis along the top, ticks at the first step of a few epochs."""
    pick = np.unique(np.linspace(0, len(epochs) - 1, n_ticks).round().astype(int))
    top = ax.secondary_xaxis("top")
    top.set_xticks([float(starts[k]) for k in pick], labels=[str(int(epochs[k])) for k in pick])
    top.tick_params(labelsize=7, colors="0.35")
    top.set_xlabel("epoch (tick at its first iteration)", fontsize=7, color="0.35")


def iteration_axis(ax: Axes, x: ArrayLike) -> None:
    """Integer ticks, and limits that make sense for one iteration as for 10,000."""
    from matplotlib.ticker import MaxNLocator
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=10, min_n_ticks=1))
    if x.size:
        lo, hi = float(x.min()), float(x.max())
        pad = 0.5 if hi - lo < 20 else 0.01 * (hi - lo)
        ax.set_xlim(lo - pad, hi + pad)


def legend_outside(ax: Axes, fontsize: int = 8) -> None:
    """The legend to the right of the axes: it never covers a point."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, fontsize=fontsize, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  borderaxespad=0.0, frameon=False)


def broken(x: ArrayLike, y: ArrayLike, epochs: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` with a NaN between epochs: a running value's line stops where it resets."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    epochs = np.asarray(epochs)
    cut = np.flatnonzero(epochs[1:] != epochs[:-1]) + 1
    return np.insert(x, cut, np.nan), np.insert(y, cut, np.nan)


def save(fig: Figure, path: str | os.PathLike, formats: Iterable[str]) -> list[Path]:
    """Write ``fig`` as each of ``formats`` beside ``path`` (atomically) and close it."""
    pyplot = plt()
    out = []
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for fmt in formats:
            p = path.with_suffix("." + fmt)
            with replacing_file(p) as tmp:        # a full disk leaves no partial image
                fig.savefig(tmp, dpi=110, bbox_inches="tight", format=fmt)
            out.append(p)
    except OSError as exc:
        raise TraceFileError(f"cannot write plot {path}: {exc.strerror or exc}") from None
    finally:
        pyplot.close(fig)
    return out
