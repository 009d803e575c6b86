"""Plots of any result: a Dataset of :func:`gdsim.sweep` or of a study.

Each function draws into a new matplotlib Figure (object API: no pyplot, no display
needed) and returns it; ``fig.savefig("x.png")`` saves it.

* :func:`heatmap` ``(ds, x, y, value=..., col=..., row=...)``: a colour map over two swept
  axes, the theory's edge of stability drawn where one of them is the lr;
* :func:`final` ``(ds, x, hue=...)``: the final loss (or any per-run value) against a swept axis;
* :func:`curves` ``(ds, x="epoch"|"step", hue=...)``: loss (or tracked) curves;
* :func:`trajectories` ``(ds, ...)``: paths of a two-parameter model in its plane;
* :func:`auto` ``(ds)``: one of them, chosen from the swept axes.

Shared conventions: geometric axes (lr grids, batch sizes) on log scales, with ticks at
the values used where they are few integers; diverged runs (``ds.diverged``) gray on maps,
dashed or crosses along the top edge on line plots, and named in the legend; a swept seed
not placed on an axis is reduced to the median over seeds. Given ``model=, X=, Y=`` (the
sweep's), the theory's thresholds are drawn where they apply (:mod:`gdsim.plot.overlays`).

Examples
--------
>>> import numpy as np, gdsim
>>> X, Y = gdsim.datasets.tutorial_line()
>>> model = gdsim.Linear(1, 1)
>>> ds = gdsim.sweep(model, X, Y, lr=np.geomspace(0.01, 0.3, 30), momentum=[0.0, 0.5, 0.9],
...                  batch_size=100, epochs=20, params0=[-10.0, -20.0])
>>> fig = gdsim.plot.heatmap(ds, "lr", "momentum", model=model, X=X, Y=Y)
>>> fig = gdsim.plot.final(ds, "lr", hue="momentum", model=model, X=X, Y=Y)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from numpy.typing import ArrayLike

if TYPE_CHECKING:  # for the annotations only: importing them costs time
    import xarray
    from matplotlib.figure import Figure

    from ..models import MLP

from .._validate import ParameterError
from .grid import swept
from .lines import curves, final, trajectories
from .maps import heatmap

__all__ = ["heatmap", "final", "curves", "trajectories", "auto", "PLOTS"]


def auto(ds: xarray.Dataset, *, model: MLP | None = None, X: ArrayLike | None = None, Y: ArrayLike | None = None,
         params0: ArrayLike | None = None, theory: bool = True, title: str | None = None) -> Figure:
    """The plot that fits the swept axes of ``ds``.

    ``lr`` and ``momentum`` swept: :func:`heatmap` over them, the next two swept axes as
    columns and rows; ``lr`` swept: :func:`final` against it, the next axes as hue,
    columns and rows; else :func:`curves` over epochs, the swept axes as hue, columns and
    rows. A swept seed is reduced to the median over seeds.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    gdsim.ParameterError
        When the result sweeps more axes than the plot has places for (name them in a
        study's ``[figure]`` table, or select values with ``ds.sel``).
    """
    axes = swept(ds)
    others = [a for a in axes if a not in ("lr", "momentum", "seed")]
    lines: dict[str, Any] = dict(model=model, X=X, Y=Y, params0=params0, theory=theory, title=title)
    if "lr" in axes and "momentum" in axes:
        _fits(others, 2, "a heatmap of lr x momentum")
        return heatmap(ds, "lr", "momentum", col=_at(others, 0), row=_at(others, 1), **lines)
    if "lr" in axes:
        _fits(others, 3, "the final loss against lr")
        return final(ds, "lr", hue=_at(others, 0), col=_at(others, 1), row=_at(others, 2), **lines)
    others = [a for a in axes if a != "seed"]
    _fits(others, 3, "loss curves")
    return curves(ds, hue=_at(others, 0), col=_at(others, 1), row=_at(others, 2), title=title)


def _at(items, k):
    return items[k] if k < len(items) else None


def _fits(others, places, what):
    if len(others) > places:
        raise ParameterError(f"the result sweeps {others}: {what} has places for {places} more axes; choose a plot "
                             "and its axes (a study's [figure] table, or gdsim.plot's functions)", "figure")


#: The plots a study's ``[figure]`` table may name (``plot = "heatmap"``).
PLOTS = {"heatmap": heatmap, "final": final, "curves": curves, "trajectories": trajectories, "auto": auto}
