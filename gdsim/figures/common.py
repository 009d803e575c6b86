"""What every figure of the gallery shares: :class:`FigureKind` (what a figure needs from
its study), the colours and caps, and the drawing helpers."""

from dataclasses import dataclass

import numpy as np

from .. import theory

DPI = 110
DIVERGED_COLOR = "0.25"
#: Losses above this are drawn as crosses along the top edge, like overflows: log axes
#: spanning 1e300 decades are unreadable (and break matplotlib's tick formatter).
LOSS_CAP = 1e30


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
    """Least-squares ``(w, b)`` of a 1-d regression and its MSE."""
    design = np.column_stack([X[:, 0], np.ones(len(X))])
    coef = np.linalg.lstsq(design, Y[:, 0], rcond=None)[0]
    return coef, float(np.mean((design @ coef - Y[:, 0]) ** 2))


def hessian_spectrum(study):
    values = np.linalg.eigvalsh(theory.hessian(study.model, study.X))
    return float(values.max()), float(values.min())


def initial_params(study, ds):
    """The parameters every run started from (``params0``, else ``model.init(seed)``)."""
    params0 = study.spec.params0
    return params0 if params0 is not None else study.model.init(int(ds.attrs.get("seed", 0)))


def mark_overflow(ax, lrs, color, label=None):
    """Mark runs whose loss overflowed with crosses along the top edge of the axes."""
    ax.plot(lrs, np.full(len(lrs), 0.97), "x", color=color, ms=5, transform=ax.get_xaxis_transform(),
            label=label)


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


def suptitle(fig, study):
    fig.suptitle(study.title, fontsize=12)


def batch_label(b, n):
    return "batch GD (B = n)" if b == n else ("per-sample SGD (B = 1)" if b == 1 else f"mini-batch B = {b}")


def excess_loss(final, optimum):
    """log10 of the final loss above the optimum, relative; NaN where a run diverged."""
    with np.errstate(all="ignore"):
        return np.log10(np.clip(final / optimum - 1.0, 1e-14, None))


def phase_panel(ax, fig, lrs, momenta, values, label, vmin, vmax):
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
    ax.set_xlim(*(cell_edges(lrs, log=True) if len(lrs) == 1 else (lrs.min(), lrs.max())))
    ax.set_ylim(*(cell_edges(momenta, log=False) if len(momenta) == 1 else (momenta.min(), momenta.max())))
