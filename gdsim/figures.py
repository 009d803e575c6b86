"""The gallery: one figure per study, each with the theory it should be read against.

Every figure is drawn from a study (:class:`gdsim.studies.Study`, for the model and the
data) and its result dataset, with matplotlib's object API (no pyplot, no global state,
no display needed), and saved as a PNG. :data:`FIGURES` maps the name a study file gives
in ``figure = "..."`` to the drawing function and to what it needs from the study.
"""

import warnings
from dataclasses import dataclass

import numpy as np

from . import theory
from ._io import atomic_write, check_file_target
from .batches import batch_orders, steps_per_epoch

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
        return None


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------
def _new_figure(n_panels, width=5.2, height=4.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_panels, height), dpi=DPI, layout="constrained")
    return fig, fig.subplots(1, n_panels, squeeze=False)[0]


def _least_squares(X, Y):
    """Least-squares ``(w, b)`` of a 1-d regression and its MSE."""
    design = np.column_stack([X[:, 0], np.ones(len(X))])
    coef = np.linalg.lstsq(design, Y[:, 0], rcond=None)[0]
    return coef, float(np.mean((design @ coef - Y[:, 0]) ** 2))


def _hessian_spectrum(study):
    values = np.linalg.eigvalsh(theory.hessian(study.model, study.X))
    return float(values.max()), float(values.min())


def _initial_params(study, ds):
    """The parameters every run started from (``params0``, else ``model.init(seed)``)."""
    params0 = study.spec.params0
    return params0 if params0 is not None else study.model.init(int(ds.attrs.get("seed", 0)))


def _mark_overflow(ax, lrs, color, label=None):
    """Mark runs whose loss overflowed with crosses along the top edge of the axes."""
    ax.plot(lrs, np.full(len(lrs), 0.97), "x", color=color, ms=5, transform=ax.get_xaxis_transform(),
            label=label)


def _note(ax, ds, drawn=True, what="finite loss", xy=(0.5, 0.5)):
    """Say on ``ax`` (at ``xy``, in axes fractions) that every run of ``ds`` diverged, and
    that the panel has no ``what`` to draw when ``drawn`` is false; nothing if neither
    holds. On a white box over the data: a diverged result may still show a few points."""
    lines = ["every run diverged"] if bool(ds.diverged.all()) else []
    if not drawn:
        lines.append(f"no {what} to draw")
    if lines:
        ax.text(*xy, ":\n".join(lines), transform=ax.transAxes, ha="center", va="center", fontsize=11,
                color="0.35", zorder=10, bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"})


def _span_epochs(ax, epochs, curves):
    """Show every epoch on ``ax`` when no curve of ``curves`` (one a row, NaN where not
    drawn) reaches the last with a finite positive value: the runs stopped or blew up early."""
    last = np.asarray(curves)[..., -1]
    if not np.any(np.isfinite(last) & (last > 0)):
        ax.set_xlim(epochs[0], epochs[-1])


def _title(fig, study):
    fig.suptitle(study.title, fontsize=12)


def _batch_label(b, n):
    return "batch GD (B = n)" if b == n else ("per-sample SGD (B = 1)" if b == 1 else f"mini-batch B = {b}")


# ---------------------------------------------------------------------------------------
# The figures
# ---------------------------------------------------------------------------------------
def tutorial(study, ds):
    """The tutorial reproduced: data and fits; loss per epoch of batch GD and per-sample SGD."""
    fig, (ax_fit, ax_loss) = _new_figure(2)
    X, Y = study.X, study.Y
    n = X.shape[0]
    (w_ls, b_ls), optimum = _least_squares(X, Y)
    x = np.array([X.min(), X.max()])
    ax_fit.scatter(X[:, 0], Y[:, 0], s=9, color="0.55", label="data: Y = -5 X + 0.4 N(0, 1)")
    ax_fit.plot(x, -5 * x, "k--", lw=1, label="true line y = -5 x")
    ax_fit.plot(x, w_ls * x + b_ls, color="C2", lw=2, label=f"least squares (w {w_ls:.3f}, b {b_ls:.3f})")
    for b, color in zip(ds.batch_size.values, ("C0", "C3", "C1", "C4")):
        w_end, b_end = ds.params.sel(batch_size=b).values
        label = f"{_batch_label(b, n)} (w {w_end:.3g}, b {b_end:.3g})"
        if abs(w_end) < 100:
            ax_fit.plot(x, w_end * x + b_end, color=color, lw=1.5, label=label)
        else:
            ax_fit.plot([], [], color=color, lw=1.5, label=label + ": off the chart")
    ax_fit.set_ylim(top=Y.max() + 0.4 * np.ptp(Y))  # room for the legend above the data
    ax_fit.set(xlabel="x", ylabel="y", title=f"Data and the lines after {ds.attrs['epochs']} epochs")
    ax_fit.legend(fontsize=7.5, loc="upper right")

    epochs = ds.epoch.values
    arrows = 0
    for b, color in zip(ds.batch_size.values, ("C0", "C3", "C1", "C4")):
        run = ds.sel(batch_size=b)
        ax_loss.semilogy(epochs, run.loss.values, "o-", ms=3, color=color, label=_batch_label(b, n))
        if bool(run.diverged) and 0 < float(run.diverged_loss) < np.inf:  # a point on the log axis
            step = int(run.diverged_step)
            per_epoch = steps_per_epoch(ds.attrs["n_samples"], int(b), study.spec.drop_last)
            ax_loss.annotate(f"loss > 1e6 x initial\nat step {step} (epoch {step // per_epoch})",
                             xy=(step / per_epoch, float(run.diverged_loss)), xytext=(0.12, 0.5 - 0.18 * arrows),
                             textcoords="axes fraction", fontsize=8, arrowprops={"arrowstyle": "->", "lw": 0.8})
            arrows += 1
    _span_epochs(ax_loss, epochs, ds.loss.values)
    _note(ax_loss, ds, bool(np.any(np.isfinite(ds.loss.values) & (ds.loss.values > 0))), xy=(0.5, 0.85))
    ax_loss.axhline(optimum, color="C2", ls=":", label=f"least-squares optimum {optimum:.3f}")
    ax_loss.set(xlabel="epoch", ylabel="full-data MSE loss (log scale)",
                title=f"Loss before each epoch, lr = {float(ds.attrs.get('lr', np.nan)):g}")
    ax_loss.legend(fontsize=8, loc="center right")
    _title(fig, study)
    return fig


def lr_batch(study, ds):
    """Final loss against lr for several batch sizes, with the thresholds of theory."""
    fig, (ax,) = _new_figure(1, width=8.0, height=5.0)
    X, Y = study.X, study.Y
    n = X.shape[0]
    _, optimum = _least_squares(X, Y)
    L, _ = _hessian_spectrum(study)
    lrs = ds.lr.values
    batch_sizes = sorted(ds.batch_size.values, reverse=True)
    for i, b in enumerate(batch_sizes):
        color = f"C{i}"
        final = ds.final_loss.sel(batch_size=b).values
        blown = ~(final <= LOSS_CAP)
        ax.loglog(lrs, np.where(blown, np.nan, final), color=color, lw=1.8, label=_batch_label(b, n))
        _mark_overflow(ax, lrs[blown], color)
        if b != n:
            lr_epoch = theory.epoch_critical_lr(study.model, X, batch_size=int(b))
            ax.axvline(lr_epoch, color=color, ls="--", lw=1)
            lr_step = theory.step_critical_lr(study.model, X, batch_size=int(b))
            ax.axvline(lr_step, color=color, ls=":", lw=1)
    ax.axvline(2 / L, color="k", ls="--", lw=1.2, label=f"2 / L = {2 / L:.4f} (GD threshold)")
    ax.axhline(optimum, color="0.5", lw=0.8, label="least-squares optimum")
    ax.plot([], [], "k--", lw=1, label="dashed: epoch map unstable (epoch_critical_lr)")
    ax.plot([], [], "k:", lw=1, label="dotted: some single step unstable (step_critical_lr)")
    ax.plot([], [], "kx", ms=4, label=f"final loss above {LOSS_CAP:.0e} or overflowed")
    ax.set(xlabel="learning rate", ylabel=f"full-data MSE loss after {ds.attrs['epochs']} epochs (log)",
           title="Final loss vs learning rate, batches in data order")
    ax.legend(fontsize=8, loc="upper left")
    _note(ax, ds, bool(np.any(ds.final_loss.values <= LOSS_CAP)), f"final loss below {LOSS_CAP:.0e}")
    _title(fig, study)
    return fig


def _excess_loss(final, optimum):
    """log10 of the final loss above the optimum, relative; NaN where a run diverged."""
    with np.errstate(all="ignore"):
        return np.log10(np.clip(final / optimum - 1.0, 1e-14, None))


def _phase_panel(ax, fig, lrs, momenta, values, label, vmin, vmax):
    from matplotlib import colormaps

    cmap = colormaps["viridis"].with_extremes(bad=DIVERGED_COLOR)
    x, y, shading = lrs, momenta, "nearest"
    if len(lrs) == 1 or len(momenta) == 1:  # matplotlib cannot size a cell from one value: give the edges
        x, y, shading = _cell_edges(lrs, log=True), _cell_edges(momenta, log=False), "flat"
    mesh = ax.pcolormesh(x, y, np.ma.masked_invalid(values.T), cmap=cmap, vmin=vmin, vmax=vmax,
                         shading=shading, rasterized=True)
    ax.set_xscale("log")
    ax.set(xlabel="learning rate", ylabel="momentum")
    return mesh


def _cell_edges(values, log):
    """Cell edges around grid values, half-way between neighbours as shading="nearest"
    draws them; around a single value, a factor 1.25 (``log``) or 0.05 either side."""
    if len(values) == 1:
        return values[0] * np.array([0.8, 1.25]) if log else values[0] + np.array([-0.05, 0.05])
    mids = (values[1:] + values[:-1]) / 2
    return np.concatenate([[2 * values[0] - mids[0]], mids, [2 * values[-1] - mids[-1]]])


def _phase_limits(ax, lrs, momenta):
    """The axes of a phase diagram span the grid (the cell around a single value)."""
    ax.set_xlim(*(_cell_edges(lrs, log=True) if len(lrs) == 1 else (lrs.min(), lrs.max())))
    ax.set_ylim(*(_cell_edges(momenta, log=False) if len(momenta) == 1 else (momenta.min(), momenta.max())))


def momentum_phase(study, ds):
    """Heavy ball and Nesterov: lr x momentum heat maps with the stability boundary."""
    # A fixed nesterov is an attribute: a bool, or the string netCDF stores it as.
    nesterov_values = list(ds.nesterov.values) if "nesterov" in ds.dims else [ds.attrs["nesterov"] in (True, "True")]
    fig, axes = _new_figure(len(nesterov_values), width=5.6, height=4.8)
    _, optimum = _least_squares(study.X, study.Y)
    L, mu = _hessian_spectrum(study)
    lrs, momenta = ds.lr.values, ds.momentum.values
    # The worst loss of the last quarter of the run, not the last one alone: an oscillating
    # run can pass close to the optimum at the last step by luck of its phase.
    last = max(1, ds.sizes["epoch"] // 4)
    worst = ds.loss.isel(epoch=slice(-last, None)).max("epoch", skipna=False).transpose(..., "lr", "momentum")
    excess = {nv: _excess_loss((worst.sel(nesterov=nv) if "nesterov" in ds.dims else worst).values, optimum)
              for nv in nesterov_values}
    finite = np.concatenate([e[np.isfinite(e)] for e in excess.values()])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)  # a scale for no data
    beta = np.linspace(0, momenta.max(), 200)
    lr_star, beta_star, rate = theory.polyak(L, mu)
    for ax, nv in zip(axes, nesterov_values):
        mesh = _phase_panel(ax, fig, lrs, momenta, excess[nv], "", vmin, vmax)
        boundary = theory.critical_lr(L, beta, nesterov=bool(nv)) if nv else theory.critical_lr(L, beta)
        ax.plot(boundary, beta, "w-", lw=2, label="theory: spectral radius = 1")
        if not nv:
            ax.plot(lr_star, beta_star, "*", color="C3", ms=14, mec="w",
                    label=f"Polyak's optimum lr = {lr_star:.3f}, beta = {beta_star:.3f}\n(rate {rate:.3f} per step)")
        _phase_limits(ax, lrs, momenta)
        ax.set_title("Nesterov" if nv else "heavy ball")
        ax.legend(fontsize=7.5, loc="lower left")
        _note(ax, ds, bool(np.isfinite(excess[nv]).any()))
    bar = fig.colorbar(mesh, ax=list(axes), shrink=0.9)
    bar.set_label(f"log10 (loss / optimum - 1), the worst of steps {ds.attrs['epochs'] - last + 1}-"
                  f"{ds.attrs['epochs']}; gray: diverged")
    _title(fig, study)
    return fig


def trajectories(study, ds):
    """Iterates in the (w, b) plane over the loss contours, below, near and above 2 / L."""
    lrs = ds.lr.values
    fig, axes = _new_figure(len(lrs), width=4.3, height=4.4)
    X, Y = study.X, study.Y
    (w_ls, b_ls), optimum = _least_squares(X, Y)
    L, _ = _hessian_spectrum(study)
    x, y = X[:, 0], Y[:, 0]
    for ax, lr in zip(axes, lrs):
        path = ds.epoch_params.sel(lr=lr).values
        finite = path[np.all(np.isfinite(path), axis=1) & (np.abs(path).max(axis=1) < 1e3)]
        # No finite iterate at all: a window around the minimum, for the contours.
        pad = 0.08 * np.ptp(finite, axis=0).max() + 1.0 if len(finite) else 1.0
        corners = np.vstack([finite, [[w_ls, b_ls]]])
        (w_lo, b_lo), (w_hi, b_hi) = corners.min(axis=0) - pad, corners.max(axis=0) + pad
        W, B = np.meshgrid(np.linspace(w_lo, w_hi, 200), np.linspace(b_lo, b_hi, 200))
        loss = ((W[..., None] * x + B[..., None] - y) ** 2).mean(axis=-1)
        levels = optimum + np.geomspace(1e-2, max(loss.max() - optimum, 1.0), 14)
        ax.contour(W, B, loss, levels=levels, colors="0.6", linewidths=0.7)
        ax.plot(finite[:, 0], finite[:, 1], "-o", color="C0", ms=3, lw=1)
        if len(finite):
            ax.plot(*finite[0], "s", color="k", ms=6, label="start")
        ax.plot(w_ls, b_ls, "*", color="C3", ms=12, label="least-squares minimum")
        ax.set_xlim(w_lo, w_hi)
        ax.set_ylim(b_lo, b_hi)
        verdict = "diverges" if lr > 2 / L else ("oscillates, converges" if lr > 1 / L else "monotone")
        ax.set(xlabel="w", ylabel="b", title=f"lr = {lr:g} = {lr * L / 2:.2f} x 2/L: {verdict}")
        ax.legend(fontsize=7.5, loc="lower right")
        _note(ax, ds, len(finite) > 0, "finite parameters", xy=(0.5, 0.8))  # off the minimum, centred
    _title(fig, study)
    return fig


def critical_batch(study, ds):
    """Critical lr against batch size: simulated (shuffled SGD) and the theories."""
    fig, (ax,) = _new_figure(1, width=7.5, height=5.0)
    X = study.X
    n = X.shape[0]
    L, _ = _hessian_spectrum(study)
    lrs = ds.lr.values
    batch_sizes = ds.batch_size.values
    # A run is unstable when its loss grew over the run (the stable ones end near the
    # noise floor, far below the initial loss); the transients of small batches do not count.
    # A NaN or inf final loss counts as grown, even from an inf initial loss.
    grew = ~(np.isfinite(ds.final_loss) & (ds.final_loss <= ds.loss.isel(epoch=0)))
    fraction = grew.mean("seed").transpose("lr", "batch_size").values
    lo, hi = [], []
    for j in range(len(batch_sizes)):
        unstable = np.nonzero(fraction[:, j] >= 0.5)[0]
        k = unstable[0] if unstable.size else len(lrs)
        lo.append(lrs[k - 1] if k > 0 else np.nan)
        hi.append(lrs[k] if k < len(lrs) else np.nan)
    lo, hi = np.array(lo), np.array(hi)
    centre = np.sqrt(lo * hi)
    ax.errorbar(batch_sizes, centre, yerr=[centre - lo, hi - centre], fmt="o", color="C0", capsize=3,
                label=f"simulated: the loss grows in half of {ds.sizes['seed']} shuffled runs\n(bar: from the last "
                      "stable to the first unstable lr of the sweep)")
    b_theory = np.unique(np.geomspace(1, n, 40).astype(int))
    ms = [theory.mean_square_critical_lr(study.model, X, batch_size=int(b), rtol=1e-6) for b in b_theory]
    ax.plot(b_theory, ms, "C1-", lw=2, label="mean-square theory (batches drawn with replacement)")
    # The epoch map of each seed's first shuffle: the theory of these very orders.
    n_epochs = int(ds.attrs["epochs"])
    first_orders = [batch_orders(n, n_epochs, True, int(seed))[0] for seed in ds.seed.values]
    per_order = np.array([[theory.epoch_critical_lr(study.model, X, batch_size=int(b), order=order, rtol=1e-6)
                           for order in first_orders] for b in batch_sizes])
    ax.fill_between(batch_sizes, per_order.min(axis=1), per_order.max(axis=1), color="C2", alpha=0.25, lw=0)
    ax.plot(batch_sizes, np.median(per_order, axis=1), "C2-", lw=1.5,
            label="epoch theory of each seed's first shuffle (median, range)")
    ax.axhline(2 / L, color="k", ls="--", lw=1.2, label=f"2 / L = {2 / L:.4f} (full-batch GD)")
    ax.set_xscale("log")
    ax.set(xlabel="batch size B (log scale)", ylabel="critical learning rate",
           title=f"Where SGD becomes unstable: final loss above initial after {ds.attrs['epochs']} epochs")
    ax.legend(fontsize=8, loc="lower right")
    _note(ax, ds, bool(np.isfinite(centre).any()), "critical lr within the sweep")
    _title(fig, study)
    return fig


def mlp_phase(study, ds):
    """The MLP's lr x momentum phase diagram, with the quadratic-model boundary at init."""
    fig, (ax,) = _new_figure(1, width=7.2, height=5.2)
    model, X, Y = study.model, study.X, study.Y
    theta0 = _initial_params(study, ds)
    sharp = theory.sharpness(model, theta0, X, Y)
    loss0 = float(ds.loss.isel(epoch=0).values.flat[0])
    with np.errstate(all="ignore"):
        values = np.log10(ds.final_loss.transpose("lr", "momentum").values / loss0)
    # Runs that end 10x above their initial loss are as good as diverged: saturate the colours there.
    mesh = _phase_panel(ax, fig, ds.lr.values, ds.momentum.values, values, "", None, 1.0)
    beta = np.linspace(0, ds.momentum.values.max(), 200)
    ax.plot(theory.critical_lr(sharp, beta), beta, "w-", lw=2,
            label=f"2 (1 + beta) / sharpness at init ({sharp:.3g})")
    _phase_limits(ax, ds.lr.values, ds.momentum.values)
    batch = ds.attrs.get("batch_size", "?")
    ax.set_title(f"{model.sizes} {model.activation} MLP, batch {batch}, {ds.attrs['epochs']} epochs")
    ax.legend(fontsize=8, loc="lower left")
    _note(ax, ds, bool(np.isfinite(values).any()))
    bar = fig.colorbar(mesh, ax=ax, extend="max")
    bar.set_label("log10 (final loss / initial loss); gray: diverged")
    _title(fig, study)
    return fig


def lr_threshold(study, ds):
    """A big MLP: final loss against lr, the threshold from the sharpness at init, and
    the loss curves of a few learning rates."""
    fig, (ax, ax_curves) = _new_figure(2, width=5.6, height=4.6)
    model, X, Y = study.model, study.X, study.Y
    momentum = float(ds.attrs.get("momentum", 0.0))
    theta0 = _initial_params(study, ds)
    sharp = theory.sharpness(model, theta0, X, Y)
    threshold = theory.critical_lr(sharp, momentum)
    lrs = ds.lr.values
    loss0 = float(ds.loss.isel(epoch=0).values.flat[0])
    with np.errstate(all="ignore"):
        ratio = ds.final_loss.values / loss0
    ok = ratio <= LOSS_CAP
    ax.loglog(lrs[ok], ratio[ok], "o-", color="C0", ms=4, label="final / initial loss")
    _mark_overflow(ax, lrs[~ok], "C3", label=f"above {LOSS_CAP:.0e} or overflowed")
    ax.axvline(threshold, color="k", ls="--", lw=1.2,
               label=f"2 (1 + {momentum:g}) / sharpness at init = {threshold:.3g}")
    if "lr" in ds.dims and np.any(np.isclose(lrs, 0.2)):
        ax.axvline(0.2, color="C3", ls=":", lw=1.2, label="the tutorial's lr = 0.2")
    ax.set(xlabel="learning rate", ylabel=f"loss after {ds.attrs['epochs']} steps / initial loss (log)",
           title=f"{model.sizes} {model.activation} MLP, MSE {model.reduction}, momentum {momentum:g}")
    ax.legend(fontsize=7.5, loc="lower left")
    _note(ax, ds, bool(ok.any()), f"final loss below {LOSS_CAP:.0e} x initial")

    picks = [lrs[np.argmin(np.abs(np.log(lrs / target)))] for target in (threshold / 40, threshold / 1.5,
                                                                           threshold * 1.5, threshold * 2.5, 0.2)]
    curves = []
    for lr, color in zip(dict.fromkeys(picks), ("C0", "C2", "C1", "C4", "C3")):
        with np.errstate(all="ignore"):
            curve = ds.loss.sel(lr=lr).values / loss0
        curves.append(np.where(curve <= LOSS_CAP, curve, np.nan))
        ax_curves.semilogy(ds.epoch.values, curves[-1], color=color,
                           label=f"lr = {lr:.3g} ({lr / threshold:.2g} x threshold)")
    _span_epochs(ax_curves, ds.epoch.values, curves)
    _note(ax_curves, ds, bool(np.any(np.array(curves) > 0)), f"loss below {LOSS_CAP:.0e} x initial")
    ax_curves.set(xlabel="step (full batch)", ylabel="loss / initial loss (log)", title="Loss curves")
    ax_curves.legend(fontsize=7.5)
    _title(fig, study)
    return fig


def classifier(study, ds):
    """A cross-entropy classifier: loss and accuracy over epochs for several lrs."""
    fig, (ax_loss, ax_acc) = _new_figure(2)
    n_classes = study.model.n_out
    for i, lr in enumerate(ds.lr.values):
        run = ds.sel(lr=lr)
        peak = float(run.loss.max())
        note = f" (peak {peak:.0e}, off the chart)" if peak > 1e3 else ""
        ax_loss.semilogy(ds.epoch.values, run.loss.values, color=f"C{i}", label=f"lr = {lr:g}{note}")
        ax_acc.plot(ds.epoch.values, 100 * run.accuracy.values, color=f"C{i}", label=f"lr = {lr:g}")
    ax_loss.axhline(np.log(n_classes), color="k", ls=":", lw=1, label=f"log {n_classes}: uniform guess")
    ax_acc.axhline(100 / n_classes, color="k", ls=":", lw=1, label="chance")
    batch = ds.attrs.get("batch_size", "?")
    ax_loss.set(xlabel="epoch", ylabel="full-data cross-entropy (log)",
                title=f"Mini-batch SGD, batch {batch}, shuffled each epoch")
    lowest = float(ds.loss.where(np.isfinite(ds.loss) & (ds.loss > 0)).min())
    if not lowest < 1e3:  # no finite loss under the top: the axis goes down to the uniform guess's
        lowest = np.log(n_classes)
    ax_loss.set_ylim(lowest / 2, 1e3)  # a blow-up would squash every other curve
    ax_acc.set(xlabel="epoch", ylabel="training accuracy (%)", ylim=(0, 102), title="Accuracy")
    ax_loss.legend(fontsize=8)
    ax_acc.legend(fontsize=8, loc="lower right")
    for ax, curves in ((ax_loss, np.where(ds.loss.values < 1e3, ds.loss.values, np.nan)),
                       (ax_acc, 1 + ds.accuracy.values)):  # 1 +: a zero accuracy is drawn too
        _span_epochs(ax, ds.epoch.values, curves)
    _note(ax_loss, ds, bool(np.any((ds.loss.values > 0) & (ds.loss.values < 1e3))), "loss below 1e3")
    _note(ax_acc, ds, bool(np.isfinite(ds.accuracy.values).any()), "finite accuracy")
    _title(fig, study)
    return fig


#: The figures a study can name, and what each needs.
FIGURES = {
    "tutorial": FigureKind(tutorial, axes=("batch_size",),
                           fixed=("lr",), linear=True, params=True),
    "lr_batch": FigureKind(lr_batch, axes=("lr", "batch_size"),
                           fixed=("momentum", "seed"), linear=True),
    "momentum_phase": FigureKind(momentum_phase, axes=("lr", "momentum"), fixed=("batch_size", "seed"), linear=True),
    "trajectories": FigureKind(trajectories, axes=("lr",),
                               fixed=("momentum", "batch_size"), linear=True, params=True),
    "critical_batch": FigureKind(critical_batch, axes=("lr", "batch_size", "seed"), fixed=("momentum",), linear=True),
    "mlp_phase": FigureKind(mlp_phase, axes=("lr", "momentum"),
                            fixed=("batch_size", "seed", "nesterov")),
    "lr_threshold": FigureKind(lr_threshold, axes=("lr",),
                               fixed=("momentum", "batch_size", "seed")),
    "classifier": FigureKind(classifier, axes=("lr",),
                             fixed=("batch_size", "momentum"), classifier=True, params=True),
}


def draw(study, ds, path):
    """Draw ``study``'s figure from its dataset and save it as a PNG at ``path``, atomically.

    Returns
    -------
    pathlib.Path
    """
    check_file_target(path, "the figure (path)")  # before the drawing, not after
    with warnings.catch_warnings():
        # A title in a script the font lacks (CJK, emoji) is drawn with boxes: not worth a warning per glyph.
        warnings.filterwarnings("ignore", "Glyph .* missing from font", UserWarning)
        fig = FIGURES[study.figure].draw(study, ds)
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    return path
