"""Colour maps of a result over two swept axes (:func:`heatmap`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:  # for the annotations only: importing them costs time
    import xarray
    from matplotlib.figure import Figure

    from ..models import MLP

from .._validate import ParameterError
from .grid import (
    LABELS,
    check_dims,
    facets,
    is_geometric,
    leftover,
    new_grid,
    scale_axis,
    selection_text,
    swept,
)
from .overlays import draw_lr_line, make_theory
from .panels import (
    CAP,
    DIVERGED_COLOR,
    OUTCOME_COLORS,
    cell_edges,
    diverged_runs,
    figure_legend,
    positions,
    set_title,
    variable,
)


def _default_axes(ds, x, y):
    """``x`` default "lr" (else the first swept axis), ``y`` "momentum" (else the next);
    None for ``y`` when one axis only is swept (a single row of cells)."""
    axes = swept(ds)
    if x is None:
        x = "lr" if "lr" in axes else (axes[0] if axes else None)
    if x is None:
        raise ParameterError("a heatmap needs a swept axis; the result is a single run", "x")
    if y is None:
        y = "momentum" if "momentum" in axes and x != "momentum" else next((a for a in axes if a not in (x, "seed")),
                                                                           None)
    return x, y


def heatmap(ds: xarray.Dataset, x: str | None = None, y: str | None = None, value: str = "final_loss",
            col: str | None = None, row: str | None = None, *, model: MLP | None = None, X: ArrayLike | None = None,
            Y: ArrayLike | None = None, params0: ArrayLike | None = None, theory: bool = True,
            title: str | None = None) -> Figure:
    """A colour map of ``value`` over two swept axes, one panel per ``col`` x ``row`` value.

    Parameters
    ----------
    ds : xarray.Dataset
        A result of :func:`gdsim.sweep` or of a study.
    x, y : str, optional
        Swept axes (default ``"lr"`` and ``"momentum"`` where swept, else the first ones).
    value : str, default "final_loss"
        A variable over the grid: ``final_loss`` (log colour scale), ``growth_rate``,
        ``outcome`` (the outcomes' colours), ``diverged_step``, ...
    col, row : str, optional
        Swept axes laid out as columns and rows of panels. A swept ``seed`` left over is
        reduced to the median over seeds (a run counts as diverged in half of them).
    model, X, Y : optional
        The swept model and its data: with them, where ``x`` or ``y`` is the lr, the
        theory's edge of stability is drawn for each panel's settings
        (:mod:`gdsim.plot.overlays`).
    params0 : array_like, optional
        The MLP's initial parameters when the sweep was given ``params0``.
    theory : bool, default True
        False: no theory lines.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Diverged runs (``ds.diverged``) and non-finite values are gray, with a legend entry.
    """
    from matplotlib import colormaps
    from matplotlib.colors import (
        BoundaryNorm,
        Colormap,
        ListedColormap,
        LogNorm,
        Normalize,
    )
    from matplotlib.patches import Patch

    x, y = _default_axes(ds, x, y)
    check_dims(ds, {"x": x, "y": y, "col": col, "row": row}, "heatmap")
    rest = leftover(ds, [x, y, col, row], "heatmap")
    theory_ = make_theory(model, X, Y, params0) if theory else None
    data, diverged = variable(ds, value, rest, (x, y)), diverged_runs(ds, rest)
    categorical = value == "outcome"
    shown = data if categorical or diverged is None else data.where(~diverged)
    finite = np.asarray(shown.values, dtype=np.float64)
    finite = finite[np.isfinite(finite) & (np.abs(finite) <= CAP)]
    cmap: Colormap
    norm: Normalize
    if categorical:
        from ..outcomes import OUTCOMES

        cmap, norm = ListedColormap(OUTCOME_COLORS), BoundaryNorm(np.arange(len(OUTCOMES) + 1) - 0.5, len(OUTCOMES))
    else:
        cmap = colormaps["viridis"].with_extremes(bad=DIVERGED_COLOR)
        lo, hi = (finite.min(), finite.max()) if finite.size else (1.0, 10.0)
        norm = LogNorm(lo, hi) if finite.size and lo > 0 and hi > 10 * lo else Normalize(lo, hi)
    fig, axes = new_grid(ds, col, row, width=4.4, height=3.7)
    (xpos, xticks), (ypos, yticks) = positions(ds, x), (positions(ds, y) if y else (np.zeros(1), [""]))
    xlog, ylog = is_geometric(xpos), is_geometric(ypos)
    mesh = None
    for i, j, selection in facets(ds, col, row):
        ax = axes[i, j]
        panel = np.asarray(shown.sel(selection).transpose(x, *([y] if y else [])).values, dtype=np.float64)
        panel = panel.reshape(len(xpos), len(ypos))
        if not categorical:
            panel = np.where(np.abs(panel) <= CAP, panel, np.nan)
        order = np.ix_(np.argsort(ypos, kind="stable"), np.argsort(xpos, kind="stable"))  # edges ascend
        mesh = ax.pcolormesh(cell_edges(xpos, xlog), cell_edges(ypos, ylog), np.ma.masked_invalid(panel.T[order]),
                             cmap=cmap, norm=norm, rasterized=True)
        for which, pos, ticks in (("x", xpos, xticks), ("y", ypos, yticks)):
            scale_axis(ax, which, pos if ticks is None else pos.astype(int))
            if ticks is not None:
                (ax.set_xticks if which == "x" else ax.set_yticks)(pos, ticks)
        if theory_ is not None and "lr" in (x, y) and y is not None:
            other = y if x == "lr" else x
            lrs = ds.lr.values
            draw_lr_line(ax, ds, selection, theory_, "x" if x == "lr" else "y", along=other,
                         values=ds[other].values, positions=ypos if x == "lr" else xpos,
                         lr_range=(lrs.min(), lrs.max()))
            ax.set_xlim(*cell_edges(xpos, xlog)[[0, -1]])
            ax.set_ylim(*cell_edges(ypos, ylog)[[0, -1]])
        ax.set(xlabel=LABELS[x], ylabel=LABELS[y] if y else "", title=selection_text(selection) or None)
    extra = []
    if categorical:
        from ..outcomes import OUTCOMES

        extra = [Patch(color=c, label=o) for c, o in zip(OUTCOME_COLORS, OUTCOMES)]
    else:
        bar = fig.colorbar(mesh, ax=axes.ravel().tolist(), shrink=0.9)
        bar.set_label(ds[value].attrs.get("long_name", value) + (" (median over seeds)" if "seed" in rest else ""))
        if diverged is not None and bool(diverged.any()):
            extra = [Patch(color=DIVERGED_COLOR, label="gray: diverged")]
    figure_legend(fig, extra=extra)
    set_title(fig, title, f"{ds[value].attrs.get('long_name', value)} over {LABELS[x]}"
              + (f" and {LABELS[y]}" if y else ""))
    return fig
