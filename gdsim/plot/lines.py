"""Line plots of a result: the final value against a swept axis (:func:`final`), curves
over epochs or steps (:func:`curves`) and paths in the parameter plane (:func:`trajectories`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:  # for the annotations only: importing them costs time
    import xarray
    from matplotlib.figure import Figure

    from ..models import MLP

from .._validate import ParameterError
from ..theory import hessian
from .grid import (
    LABELS,
    as_list,
    check_dims,
    combinations,
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
    MAX_LEGEND,
    diverged_runs,
    figure_legend,
    positions,
    set_title,
    variable,
)


def _hue_dims(ds, hue, used):
    """The axes whose combinations are the lines: ``hue`` (an axis or a list), default
    every swept axis not otherwise used, except a seed (reduced to the median)."""
    if hue is not None:
        return as_list(hue)
    return [d for d in swept(ds) if d not in used and d != "seed"]


def _lines(ds, hue):
    """The selections of the lines (each combination of the ``hue`` axes' values) and
    their colours: matplotlib's cycle up to 10 lines, then viridis."""
    from matplotlib import colormaps

    lines = combinations(ds, hue)
    n = len(lines)
    return lines, [f"C{i}" for i in range(n)] if n <= 10 else list(colormaps["viridis"](np.linspace(0, 0.95, n)))


def _mark_off_chart(ax, xs, color, label=None):
    """Crosses along the top edge at ``xs``: runs that diverged or left the chart."""
    if len(xs):
        ax.plot(xs, np.full(len(xs), 0.97), "x", color=color, ms=6, mew=1.5, transform=ax.get_xaxis_transform(),
                label=label, clip_on=False)


def _check_lines(ds, x, hue, col, row, what):
    """Check the axes of a line plot (``x``: a swept axis, or None for one over epochs)."""
    check_dims(ds, {"x": x, "hue": as_list(hue), "col": col, "row": row}, what)


def _hue_bar(fig, axes, ds, hue, colors):
    """A colour bar for the lines of one numeric ``hue`` axis too many for a legend."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm, Normalize

    if len(colors) <= MAX_LEGEND or len(hue) != 1 or ds[hue[0]].dtype.kind not in "iuf":
        return
    values = ds[hue[0]].values
    norm = (LogNorm if is_geometric(values) else Normalize)(values.min(), values.max())
    # the lines' colours run along viridis in the axis's order, not by value: the bar names the ends
    bar = fig.colorbar(ScalarMappable(norm, colormaps["viridis"]), ax=axes.ravel().tolist(), shrink=0.9)
    bar.set_label(f"{LABELS[hue[0]]} (line colours in the grid's order)")


def _positive_span(values):
    """Whether finite positive values spanning a factor of 10 or more are better on a log axis."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return v.size > 0 and np.all(v > 0) and v.max() > 10 * v.min()


def final(ds: xarray.Dataset, x: str = "lr", hue: str | None = None, col: str | None = None, row: str | None = None,
          value: str = "final_loss", *, model: MLP | None = None, X: ArrayLike | None = None,
          Y: ArrayLike | None = None, params0: ArrayLike | None = None, theory: bool = True,
          title: str | None = None) -> Figure:
    """``value`` at the end of each run against the swept axis ``x``, a line per ``hue``.

    Parameters
    ----------
    ds : xarray.Dataset
        A result of :func:`gdsim.sweep` or of a study.
    x : str, default "lr"
        A swept axis (booleans at 0 and 1).
    hue : str or list of str, optional
        The axes whose values (combinations) are the lines; default every other swept
        axis but ``col``, ``row`` and a seed (a swept seed left over is reduced to the
        median, and a run counts as diverged in half of the seeds).
    col, row : str, optional
        Axes laid out as columns and rows of panels.
    value : str, default "final_loss"
        A variable over the grid.
    model, X, Y, params0, theory :
        As :func:`gdsim.plot.heatmap`: with the model and its data and ``x = "lr"``, a
        vertical line at the theory's edge for each line's settings, in its colour.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Diverged runs (``ds.diverged``), non-finite values and values above 1e30 are crosses
        along the top edge.
    """
    hue = _hue_dims(ds, hue, [x, col, row])
    _check_lines(ds, x, hue, col, row, "final")
    rest = leftover(ds, [x, col, row, *hue], "final")
    theory_ = make_theory(model, X, Y, params0) if theory else None
    data, diverged = variable(ds, value, rest, (x,)), diverged_runs(ds, rest)
    fig, axes = new_grid(ds, col, row, width=5.0, height=3.9)
    xs, ticks = positions(ds, x)
    lines, colors = _lines(ds, hue)
    logy = _positive_span(data.values[np.abs(data.values) <= CAP]) if data.size else False
    for i, j, selection in facets(ds, col, row):
        ax = axes[i, j]
        for line, color in zip(lines, colors):
            where = {**selection, **line}
            ys = np.asarray(data.sel(where).transpose(x).values, dtype=np.float64)
            bad = ~(np.abs(ys) <= CAP)
            if diverged is not None:
                bad |= np.asarray(diverged.sel(where).transpose(x).values)
            label = (selection_text(line) or None) if len(lines) <= MAX_LEGEND else None
            ax.plot(xs, np.where(bad, np.nan, ys), "o-", ms=3, color=color, label=label)
            _mark_off_chart(ax, xs[bad], color, "x at the top: diverged or off the chart")
            if theory_ is not None and x == "lr":
                draw_lr_line(ax, ds, where, theory_, "x", color=color, lr_range=(xs.min(), xs.max()))
        scale_axis(ax, "x", xs)
        if ticks is not None:
            ax.set_xticks(xs, ticks)
        if logy:
            ax.set_yscale("log")
        ax.set(xlabel=LABELS[x], ylabel=ds[value].attrs.get("long_name", value), title=selection_text(selection)
               or None)
    _hue_bar(fig, axes, ds, hue, colors)
    figure_legend(fig)
    set_title(fig, title, f"{ds[value].attrs.get('long_name', value)} against {LABELS[x]}")
    return fig


def curves(ds: xarray.Dataset, x: str = "epoch", hue: str | None = None, col: str | None = None,
           row: str | None = None, value: str = "loss", *, title: str | None = None) -> Figure:
    """Curves of ``value`` over epochs (``ds[value]``) or steps (``ds["track_" + value]``,
    of a sweep with ``track=``), a line per ``hue``.

    Parameters
    ----------
    ds : xarray.Dataset
    x : {"epoch", "step"}, default "epoch"
    hue : str or list of str, optional
        As :func:`final`.
    col, row : str, optional
    value : str, default "loss"
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Diverged runs are dashed; a curve that leaves the finite range ends with a cross.
    """
    if x not in ("epoch", "step"):
        raise ParameterError(f"x must be 'epoch' or 'step', got {x!r}", "x")
    name = value if x == "epoch" else f"track_{value}"
    if name not in ds.data_vars or x not in ds[name].dims:
        over = [n for n in ds.data_vars if x in ds[n].dims]
        raise ParameterError(f"value={value!r}: the result has no {name!r} over {x!r}; it has {over}"
                             + (" (track observables with sweep(..., track=...))" if x == "step" else ""), "value")
    hue = _hue_dims(ds, hue, [col, row])
    _check_lines(ds, None, hue, col, row, "curves")
    rest = leftover(ds, [col, row, *hue], "curves")
    data, diverged = variable(ds, name, rest, (x,)), diverged_runs(ds, rest)
    fig, axes = new_grid(ds, col, row, width=5.0, height=3.9)
    ts = ds[x].values
    lines, colors = _lines(ds, hue)
    shown = data.values[np.abs(data.values) <= CAP]
    for i, j, selection in facets(ds, col, row):
        ax = axes[i, j]
        for line, color in zip(lines, colors):
            where = {**selection, **line}
            ys = np.asarray(data.sel(where).transpose(x).values, dtype=np.float64)
            ok = np.abs(ys) <= CAP
            gone = bool(diverged.sel(where)) if diverged is not None else False
            label = (selection_text(line) or None) if len(lines) <= MAX_LEGEND else None
            # A track is NaN at the steps where nothing was measured: joined over them. A loss
            # curve is NaN only after an overflow.
            ax.plot(ts[ok], ys[ok], "--" if gone else "-", color=color, lw=1.3, label=label)
            left = np.any(~ok & ~np.isnan(ys)) or (x == "epoch" and np.any(np.isnan(ys)))
            if left:
                last = np.nonzero(ok)[0]
                _mark_off_chart(ax, [ts[last[-1]] if last.size else ts[0]], color,
                                "x: left the chart (overflow or above 1e30)")
        if _positive_span(shown):
            ax.set_yscale("log")
        ax.set(xlabel=x, ylabel=ds[name].attrs.get("long_name", value), title=selection_text(selection) or None)
    if diverged is not None and bool(diverged.any()):
        axes[0, 0].plot([], [], "k--", lw=1.3, label="dashed: diverged")
    _hue_bar(fig, axes, ds, hue, colors)
    figure_legend(fig)
    set_title(fig, title, f"{ds[name].attrs.get('long_name', value)} over {x}s")
    return fig


def trajectories(ds: xarray.Dataset, hue: str | None = None, col: str | None = None, row: str | None = None, *,
                 model: MLP | None = None, X: ArrayLike | None = None, Y: ArrayLike | None = None,
                 title: str | None = None) -> Figure:
    """The paths of a two-parameter model's ``(p0, p1)`` over epochs, a line per ``hue``,
    over the loss's contours and its minimum when the model and data are given.

    Parameters
    ----------
    ds : xarray.Dataset
        With ``epoch_params`` (a study with ``runner = "train"``) over 2 parameters.
    hue, col, row : optional
        As :func:`final`.
    model, X, Y : optional
        A model with two parameters (``gdsim.Linear(1, 1)``: ``(w, b)``) and its data.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    if "epoch_params" not in ds.data_vars:
        raise ParameterError("trajectories draws the parameters at every epoch (epoch_params): a study with "
                             "runner = 'train' keeps them; gdsim.sweep keeps only the final ones", "ds")
    if ds.sizes.get("param") != 2:
        raise ParameterError(f"trajectories draws a plane: the model must have 2 parameters, the result has "
                             f"{ds.sizes.get('param')}", "ds")
    hue = _hue_dims(ds, hue, [col, row])
    _check_lines(ds, None, hue, col, row, "trajectories")
    rest = leftover(ds, [col, row, *hue], "trajectories")
    if rest:
        raise ParameterError("trajectories draws single runs: give the seed as hue, col or row", "hue")
    theory_ = make_theory(model, X, Y, None)
    fig, axes = new_grid(ds, col, row, width=4.4, height=4.2)
    lines, colors = _lines(ds, hue)
    for i, j, selection in facets(ds, col, row):
        ax = axes[i, j]
        corners = []
        for line, color in zip(lines, colors):
            path = np.asarray(ds.epoch_params.sel({**selection, **line}).transpose("epoch", "param").values)
            path = path[np.all(np.isfinite(path), axis=1) & (np.abs(path).max(axis=1) < 1e3)]
            corners.append(path)
            label = (selection_text(line) or None) if len(lines) <= MAX_LEGEND else None
            ax.plot(path[:, 0], path[:, 1], "-o", ms=2.5, lw=1, color=color, label=label)
            if len(path):
                ax.plot(*path[0], "s", color="k", ms=5, label="start")
        if theory_ is not None:
            _contours(ax, theory_, np.vstack(corners + [np.empty((0, 2))]))
        ax.set(xlabel="parameter 0 (w)", ylabel="parameter 1 (b)", title=selection_text(selection) or None)
    figure_legend(fig)
    set_title(fig, title, "Paths of the parameters, one point per epoch")
    return fig


def _contours(ax, theory_, points):
    """The loss's contours around ``points`` and its minimum (a quadratic: the Newton step
    from any point), for a model with 2 parameters."""
    model, X, Y = theory_.model, theory_.X, theory_.Y
    if model.n_params != 2:
        raise ParameterError(f"model must have 2 parameters, got {model.n_params}", "model")
    start = points[0] if len(points) else np.zeros(2)
    minimum = None
    if model.spec.is_least_squares:
        H = hessian(model, X)
        minimum = start - np.linalg.lstsq(H, model.grad(start, X, Y), rcond=None)[0]
    corners = np.vstack([points, minimum[None]] if minimum is not None else [points])
    pad = 0.08 * np.ptp(corners, axis=0).max() + 1.0
    lo, hi = corners.min(axis=0) - pad, corners.max(axis=0) + pad
    P0, P1 = np.meshgrid(np.linspace(lo[0], hi[0], 120), np.linspace(lo[1], hi[1], 120))
    loss = np.array([model.loss(np.array([a, b]), X, Y) for a, b in zip(P0.ravel(), P1.ravel())]).reshape(P0.shape)
    floor = loss.min()
    ax.contour(P0, P1, loss, levels=floor + np.geomspace(1e-2, max(loss.max() - floor, 1.0), 14), colors="0.6",
               linewidths=0.7)
    if minimum is not None:
        ax.plot(*minimum, "*", color="C3", ms=12, label="minimum of the loss")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
