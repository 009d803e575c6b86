"""Figures of least squares, the tutorial's regression, against closed-form theory."""

import numpy as np

from .. import theory
from ..batches import steps_per_epoch
from ..plot.panels import figure_legend
from .common import (
    LOSS_CAP,
    SCHEME_WORDS,
    batch_label,
    excess_loss,
    hessian_spectrum,
    integer_ticks,
    least_squares,
    log_series,
    log_ticks,
    mark_overflow,
    new_figure,
    overflow_strip,
    panel_note,
    phase_limits,
    phase_panel,
    sampling_scheme,
    span_epochs,
    suptitle,
)


def tutorial(study, ds):
    """The tutorial reproduced: data and fits; loss per epoch of batch GD and per-sample SGD."""
    fig, (ax_fit, ax_loss) = new_figure(2)
    X, Y = study.X, study.Y
    n = X.shape[0]
    (w_ls, b_ls), optimum = least_squares(X, Y)
    x = np.array([X.min(), X.max()])
    ax_fit.scatter(X[:, 0], Y[:, 0], s=9, color="0.55", label="data: Y = -5 X + 0.4 N(0, 1)")
    ax_fit.plot(x, -5 * x, "k--", lw=1, label="true line y = -5 x")
    ax_fit.plot(x, w_ls * x + b_ls, color="C2", lw=2, label=f"least squares (w {w_ls:.3f}, b {b_ls:.3f})")
    for b, color in zip(ds.batch_size.values, ("C0", "C3", "C1", "C4")):
        w_end, b_end = ds.params.sel(batch_size=b).values
        label = f"{batch_label(b, n)} (w {w_end:.3g}, b {b_end:.3g})"
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
        ax_loss.semilogy(epochs, run.loss.values, "o-", ms=3, color=color, label=batch_label(b, n))
        if bool(run.diverged) and 0 < float(run.diverged_loss) < np.inf:  # a point on the log axis
            step = int(run.diverged_step)
            per_epoch = steps_per_epoch(ds.attrs["n_samples"], int(b), study.spec.drop_last)
            ax_loss.annotate(f"loss > 1e6 x initial\nat step {step} (epoch {step // per_epoch})",
                             xy=(step / per_epoch, float(run.diverged_loss)), xytext=(0.12, 0.5 - 0.18 * arrows),
                             textcoords="axes fraction", fontsize=8, arrowprops={"arrowstyle": "->", "lw": 0.8})
            arrows += 1
    span_epochs(ax_loss, epochs, ds.loss.values)
    panel_note(ax_loss, ds, bool(np.any(np.isfinite(ds.loss.values) & (ds.loss.values > 0))), xy=(0.5, 0.85))
    ax_loss.axhline(optimum, color="C2", ls=":", label=f"least-squares optimum {optimum:.3f}")
    ax_loss.set(xlabel="epoch", ylabel="full-data MSE loss (log scale)",
                title=f"Loss before each epoch, lr = {float(ds.attrs.get('lr', np.nan)):g}")
    integer_ticks(ax_loss.xaxis)
    ax_loss.legend(fontsize=8, loc="center right")
    suptitle(fig, study)
    return fig


def lr_batch(study, ds):
    """Final loss against lr for several batch sizes, with the thresholds of theory: every
    lr, and a zoom on the epoch thresholds, where the curves leave the optimum for good."""
    from matplotlib.lines import Line2D

    fig, (ax, ax_zoom) = new_figure(2, width=5.6, height=4.6)
    X, Y = study.X, study.Y
    n = X.shape[0]
    _, optimum = least_squares(X, Y)
    lrs = ds.lr.values
    batch_sizes = sorted(ds.batch_size.values, reverse=True)
    final = {b: ds.final_loss.sel(batch_size=b).values for b in batch_sizes}
    blown = {b: ~(final[b] <= LOSS_CAP) for b in batch_sizes}
    # The epoch map's threshold (for B = n one GD step: 2 / L) and, below it, the first
    # unstable single step (the same for B = n, so not drawn twice).
    epoch_lr = {b: theory.epoch_critical_lr(study.model, X, batch_size=int(b)) for b in batch_sizes}
    step_lr = {b: theory.step_critical_lr(study.model, X, batch_size=int(b)) for b in batch_sizes if b != n}
    zoom = (0.85 * min(epoch_lr.values()), 1.1 * max(epoch_lr.values()))
    for panel in (ax, ax_zoom):
        strip = overflow_strip(panel, len(batch_sizes)) if any(v.any() for v in blown.values()) else None
        for i, b in enumerate(batch_sizes):
            color = f"C{i}"
            panel.plot(lrs, np.where(blown[b], np.nan, final[b]), color=color, lw=1.8, label=batch_label(b, n))
            if strip is not None:
                mark_overflow(strip, lrs[blown[b]], color, row=i)
            panel.axvline(epoch_lr[b], color=color, ls="--", lw=1.1)
            if b in step_lr:
                panel.axvline(step_lr[b], color=color, ls=":", lw=1.1)
        panel.axhline(optimum, color="0.5", lw=0.8, label="least-squares optimum")
        panel.set_yscale("log")
        panel.set_ylim(optimum / 3, LOSS_CAP)
        panel.set(xlabel="learning rate")
    ax.set_xscale("log")
    ax.set_xlim(lrs.min(), lrs.max())
    log_ticks(ax.xaxis, log_series(lrs.min(), lrs.max()))
    ax.axvspan(*zoom, color="0.85", alpha=0.5, lw=0, zorder=0)
    ax_zoom.set_xlim(*zoom)
    ax.set(ylabel=f"full-data MSE loss after {ds.attrs['epochs']} epochs (log)", title="Every learning rate")
    ax_zoom.set(title=f"Zoom on the shaded lrs, {zoom[0]:.3f}-{zoom[1]:.3f} (linear axis)")
    handles, _ = ax.get_legend_handles_labels()
    crosses = Line2D([], [], color="0.3", marker="x", ls="none", mew=1.2,
                     label="crosses, in the strips above the panels:\na row per batch size, in its colour")
    styles = [crosses, Line2D([], [], color="0.3", ls="--", lw=1.1,
                     label="dashed, each batch's colour: the epoch map turns unstable\n(epoch_critical_lr"
                           + (f"; 2 / L = {epoch_lr[n]:.4f} for batch GD)" if n in epoch_lr else ")")),
              Line2D([], [], color="0.3", ls=":", lw=1.1,
                     label="dotted: a single step turns unstable first\n(step_critical_lr; none for batch GD)")]
    figure_legend(fig, handles + styles, ncols=4)
    for panel in (ax, ax_zoom):
        panel_note(panel, ds, bool(np.any(ds.final_loss.values <= LOSS_CAP)), f"final loss below {LOSS_CAP:.0e}")
    suptitle(fig, study, f"{ds.attrs['epochs']} epochs, {SCHEME_WORDS[sampling_scheme(ds)]}")
    return fig


def momentum_phase(study, ds):
    """Heavy ball and Nesterov: lr x momentum heat maps with the stability boundary."""
    from matplotlib.lines import Line2D

    # A fixed nesterov is an attribute: a bool, or the string netCDF stores it as.
    nesterov_values = list(ds.nesterov.values) if "nesterov" in ds.dims else [ds.attrs["nesterov"] in (True, "True")]
    fig, axes = new_figure(len(nesterov_values), width=5.6, height=4.8)
    _, optimum = least_squares(study.X, study.Y)
    L, mu = hessian_spectrum(study)
    lrs, momenta = ds.lr.values, ds.momentum.values
    # The worst loss of the last quarter of the run, not the last one alone: an oscillating
    # run can pass close to the optimum at the last step by luck of its phase.
    last = max(1, ds.sizes["epoch"] // 4)
    worst = ds.loss.isel(epoch=slice(-last, None)).max("epoch", skipna=False).where(~ds.diverged)  # gray
    worst = worst.transpose(..., "lr", "momentum")
    excess = {nv: excess_loss((worst.sel(nesterov=nv) if "nesterov" in ds.dims else worst).values, optimum)
              for nv in nesterov_values}
    finite = np.concatenate([e[np.isfinite(e)] for e in excess.values()])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)  # a scale for no data
    beta = np.linspace(0, momenta.max(), 200)
    lr_star, beta_star, rate = theory.polyak(L, mu)
    for ax, nv in zip(axes, nesterov_values):
        mesh = phase_panel(ax, lrs, momenta, excess[nv], vmin, vmax)
        boundary = theory.critical_lr(L, beta, nesterov=bool(nv)) if nv else theory.critical_lr(L, beta)
        ax.plot(boundary, beta, "w-", lw=2)
        if not nv:
            ax.plot(lr_star, beta_star, "*", color="C3", ms=14, mec="w",
                    label=f"Polyak's optimum lr = {lr_star:.3f}, beta = {beta_star:.3f}\n(rate {rate:.3f} per step)")
        phase_limits(ax, lrs, momenta)
        ax.set_title("Nesterov" if nv else "heavy ball")
        panel_note(ax, ds, bool(np.isfinite(excess[nv]).any()))
    bar = fig.colorbar(mesh, ax=list(axes), shrink=0.9)
    # The theory's line is white on the map; its legend on white paper shows it in black.
    line = Line2D([], [], color="k", lw=2, label="white line: theory, spectral radius = 1")
    figure_legend(fig, [line, *axes[0].get_legend_handles_labels()[0]], ncols=2)  # the heat map fills the panels
    bar.set_label(f"log10 (loss / optimum - 1), the worst of steps {ds.attrs['epochs'] - last + 1}-"
                  f"{ds.attrs['epochs']}\ngray: diverged")
    suptitle(fig, study)
    return fig


def trajectories(study, ds):
    """Iterates in the (w, b) plane over the loss contours, below, near and above 2 / L."""
    lrs = ds.lr.values
    fig, axes = new_figure(len(lrs), width=4.3, height=4.4)
    X, Y = study.X, study.Y
    (w_ls, b_ls), optimum = least_squares(X, Y)
    L, _ = hessian_spectrum(study)
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
        ax.plot([], [], color="0.6", lw=0.7, label="contours of the loss")
        ax.plot(finite[:, 0], finite[:, 1], "-o", color="C0", ms=3, lw=1, label="(w, b) after each step")
        if len(finite):
            ax.plot(*finite[0], "s", color="k", ms=6, label="start")
        ax.plot(w_ls, b_ls, "*", color="C3", ms=12, label="least-squares minimum")
        ax.set_xlim(w_lo, w_hi)
        ax.set_ylim(b_lo, b_hi)
        verdict = "diverges" if lr > 2 / L else ("oscillates, converges" if lr > 1 / L else "monotone")
        ax.set(xlabel="w", ylabel="b", title=f"lr = {lr:g} = {lr * L / 2:.2f} x 2/L: {verdict}")
        panel_note(ax, ds, len(finite) > 0, "finite parameters", xy=(0.5, 0.8))  # off the minimum, centred
    figure_legend(fig, ncols=3)  # the same marks in every panel: one legend
    suptitle(fig, study)
    return fig
