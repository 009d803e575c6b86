"""What every figure of the gallery shares: :class:`FigureKind` (what a figure needs from
its study), the colours and caps, and the drawing helpers."""

import math
from dataclasses import dataclass

import numpy as np

from .. import theory
from ..plot.grid import DPI, stored_flag
from ..plot.panels import CAP as LOSS_CAP  # the figures' name for it
from ..plot.panels import DIVERGED_COLOR

#: :data:`LOSS_CAP` as the figures write it.
CAP_TEXT = f"{LOSS_CAP:.0e}".replace("e+", "e")


@dataclass(frozen=True)
class FigureKind:
    """A figure of the gallery and what it needs from its study."""

    draw: object  #: ``draw(study, ds) -> matplotlib.figure.Figure``
    axes: tuple = ()  #: axes that must be swept
    fixed: tuple = ()  #: axes that must not be swept
    linear: bool = False  #: needs a Linear model with MSE (closed-form theory)
    classifier: bool = False
    params: bool = False  #: needs the parameters at every epoch (only the train runner keeps them)
    tracks: tuple = ()  #: observables it draws, which the study must track (train runner)

    def check(self, study):
        """None if ``study`` can be drawn as this figure, else what is missing."""
        if self.params and study.runner != "train":
            return "needs runner = 'train' (it draws the parameters at every epoch)"
        missing = [a for a in self.axes if a not in study.swept]
        if missing:
            return f"needs [train] {', '.join(missing)} given as lists or ranges (swept), not single values"
        extra = [a for a in self.fixed if a in study.swept]
        if extra:
            return f"draws one value of {', '.join(extra)}; give a single value"
        if self.linear and not study.model.spec.is_least_squares:
            return "needs a linear model with MSE (its theory is closed-form)"
        if self.linear and not study.model.spec.is_torch_default:
            return ("draws the least squares of y = w x + b: needs a linear model with a bias, parameterization "
                    "'standard' and reduction 'mean' or 'sum'")
        if self.linear and self.params and study.model.n_params != 2:
            return "draws the (w, b) plane: needs a linear model with n_in = n_out = 1"
        if self.classifier and study.model.loss_name != "cross_entropy":
            return "needs a classifier (loss = 'cross_entropy')"
        untracked = [name for name in self.tracks if name not in study.settings.get("track", {})]
        if untracked:
            return (f"draws the tracked {', '.join(untracked)}: needs runner = 'train' and [train] track = "
                    f"{{{', '.join(f'{name} = 10' for name in self.tracks)}}} (every how many steps)")
        return None


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------
def new_figure(n_panels, width=5.2, height=4.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_panels, height), dpi=DPI, layout="constrained")
    return fig, fig.subplots(1, n_panels, squeeze=False)[0]


def least_squares(X, Y):
    """Least-squares ``(w, b)`` of a 1-d regression and its MSE, from correctly rounded
    sums: the same bits on every machine. ``numpy.linalg.lstsq`` changed in the last bits
    with OpenBLAS's core type (``OPENBLAS_CORETYPE``), and figure 4's contours, drawn at
    the optimum's loss, moved by pixels with it."""
    x, y = np.asarray(X, dtype=float)[:, 0], np.asarray(Y, dtype=float)[:, 0]
    x_mean, y_mean = math.fsum(x) / len(x), math.fsum(y) / len(y)
    spread = math.fsum((x - x_mean) ** 2)
    w = math.fsum((x - x_mean) * (y - y_mean)) / spread if spread > 0 else 0.0  # one distinct x: the mean
    b = y_mean - w * x_mean
    return np.array([w, b]), math.fsum((w * x + b - y) ** 2) / len(x)


def hessian_spectrum(study):
    values = np.linalg.eigvalsh(theory.hessian(study.model, study.X))
    return float(values.max()), float(values.min())


def initial_params(study, ds):
    """The parameters every run started from (``params0``, else ``model.init(seed)``)."""
    params0 = study.spec.params0
    return params0 if params0 is not None else study.model.init(int(ds.attrs.get("seed", 0)))


def overflow_strip(ax, rows=1, what="final loss"):
    """A strip above ``ax``, sharing its x axis, for the runs whose ``what`` is above
    :data:`LOSS_CAP` or overflowed: off the scale of the values (a cross at the top edge of
    a log axis reads as a value there), labelled, one row per curve (:func:`mark_overflow`)."""
    strip = ax.inset_axes([0.0, 1.02, 1.0, 0.035 + 0.03 * rows], sharex=ax)
    strip.set_ylim(rows - 0.5, -0.5)  # row 0 on top
    strip.tick_params(which="both", left=False, labelleft=False, bottom=False, labelbottom=False)
    strip.set_facecolor("0.95")
    for spine in strip.spines.values():
        spine.set_color("0.7")
    # Inside, on the left: the lrs that overflow are the large ones.
    strip.text(0.01, 0.5, f"{what} above {CAP_TEXT} or overflowed", transform=strip.transAxes, ha="left", va="center", fontsize=7.5, color="0.3")
    return strip


def mark_overflow(strip, lrs, color, row=0):
    """Mark the runs at ``lrs`` with crosses on row ``row`` of an :func:`overflow_strip`."""
    strip.plot(lrs, np.full(len(lrs), row), "x", color=color, ms=4, mew=1.2)


def panel_note(ax, ds, drawn=True, what="finite loss", xy=(0.5, 0.5)):
    """Say on ``ax`` (at ``xy``, in axes fractions) that every run of ``ds`` diverged, and
    that the panel has no ``what`` to draw when ``drawn`` is false; nothing if neither
    holds. On a white box over the data: a diverged result may still show a few points."""
    lines = ["every run diverged"] if bool(ds.diverged.all()) else []
    if not drawn:
        lines.append(f"no {what} to draw")
    if lines:
        ax.text(*xy, ":\n".join(lines), transform=ax.transAxes, ha="center", va="center", fontsize=11,
                color="0.35", zorder=10, bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"})


def span_epochs(ax, epochs, curves):
    """Show every epoch on ``ax`` when no curve of ``curves`` (one a row, NaN where not
    drawn) reaches the last with a finite positive value: the runs stopped or blew up early."""
    last = np.asarray(curves)[..., -1]
    if not np.any(np.isfinite(last) & (last > 0)):
        ax.set_xlim(epochs[0], epochs[-1])


def suptitle(fig, study, detail=None):
    """The figure's one title: the study's, and under it ``detail`` (what the study's title
    leaves out: the scheme, the model). A single panel has no title of its own to repeat it."""
    fig.suptitle(f"{study.title}\n{detail}" if detail else study.title, fontsize=12)
    if hasattr(fig, "align_titles"):  # matplotlib >= 3.9: panel titles level, above a strip or not
        fig.align_titles()


def log_ticks(axis, values):
    """Ticks of the log ``axis`` (``ax.xaxis`` or ``ax.yaxis``) at ``values`` only, written as
    plain numbers (1, 2, 5, 0.01; not 10^0): the batch sizes a study ran, or :func:`log_series`."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    axis.set_major_locator(FixedLocator(np.asarray(values, dtype=float)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def log_series(low, high):
    """Tick values for :func:`log_ticks` in ``[low, high]`` (both > 0): 1, 2, 5 x 10^k
    across up to two decades, the powers of 10 across more."""
    decades = np.arange(np.floor(np.log10(low)), np.ceil(np.log10(high)) + 1)
    mantissas = [1.0, 2.0, 5.0] if high / low <= 100 * (1 + 1e-9) else [1.0]
    values = np.array([float(f"{m * 10.0 ** d:.12g}") for d in decades for m in mantissas])  # 0.1, not 0.1000...02
    return values[(values >= low * (1 - 1e-9)) & (values <= high * (1 + 1e-9))]


def integer_ticks(axis):
    """Ticks of ``axis`` at whole numbers only (epochs, steps)."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))


def attr_flag(ds, name, default=False):
    """A bool attribute of ``ds`` (netCDF and Zarr may keep it as the string ``"True"``)."""
    return stored_flag(ds.attrs.get(name, default))


SCHEMES = {False: "fixed", True: "reshuffle", "replacement": "replacement"}
#: How each sampling scheme's batches are drawn, for the figures' titles.
SCHEME_WORDS = {"fixed": "batches in data order", "reshuffle": "reshuffled every epoch",
                "replacement": "batches drawn with replacement"}


def sampling_scheme(ds):
    """The sampling scheme of a result (``"fixed"``, ``"reshuffle"`` or ``"replacement"``)
    from its ``shuffle`` attribute (a bool, or the string a store may keep it as)."""
    shuffle = ds.attrs.get("shuffle", False)
    return "replacement" if shuffle == "replacement" else SCHEMES[attr_flag(ds, "shuffle")]


def batch_label(b, n):
    return "batch GD (B = n)" if b == n else ("per-sample SGD (B = 1)" if b == 1 else f"mini-batch B = {b}")


def excess_loss(final, optimum):
    """log10 of the final loss above the optimum, relative; NaN where a run diverged."""
    with np.errstate(all="ignore"):
        return np.log10(np.clip(final / optimum - 1.0, 1e-14, None))


def phase_panel(ax, lrs, momenta, values, vmin, vmax):
    """A phase diagram of ``values`` (lr x momentum, NaN drawn gray as diverged) on ``ax``;
    its colour mesh."""
    from matplotlib import colormaps

    cmap = colormaps["viridis"].with_extremes(bad=DIVERGED_COLOR)
    x, y, shading = lrs, momenta, "nearest"
    if len(lrs) == 1 or len(momenta) == 1:  # matplotlib cannot size a cell from one value: give the edges
        x, y, shading = cell_edges(lrs, log=True), cell_edges(momenta, log=False), "flat"
    mesh = ax.pcolormesh(x, y, np.ma.masked_invalid(values.T), cmap=cmap, vmin=vmin, vmax=vmax,
                         shading=shading, rasterized=True)
    ax.set_xscale("log")
    ax.set(xlabel="learning rate", ylabel="momentum")
    return mesh


def cell_edges(values, log):
    """Cell edges around grid values, half-way between neighbours as shading="nearest"
    draws them; around a single value, a factor 1.25 (``log``) or 0.05 either side."""
    if len(values) == 1:
        return values[0] * np.array([0.8, 1.25]) if log else values[0] + np.array([-0.05, 0.05])
    mids = (values[1:] + values[:-1]) / 2
    return np.concatenate([[2 * values[0] - mids[0]], mids, [2 * values[-1] - mids[-1]]])


def phase_limits(ax, lrs, momenta):
    """The axes of a phase diagram span the grid (the cell around a single value)."""
    low, high = cell_edges(lrs, log=True) if len(lrs) == 1 else (lrs.min(), lrs.max())
    ax.set_xlim(low, high)
    if len(log_series(low, high)) > 1:  # else matplotlib's own ticks (a grid of one lr)
        log_ticks(ax.xaxis, log_series(low, high))
    ax.set_ylim(*(cell_edges(momenta, log=False) if len(momenta) == 1 else (momenta.min(), momenta.max())))
