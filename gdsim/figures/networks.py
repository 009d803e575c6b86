"""Figures of MLPs and classifiers: phase diagrams and thresholds from the sharpness at initialisation."""

import numpy as np

from .. import theory
from .common import (
    LOSS_CAP,
    initial_params,
    mark_overflow,
    new_figure,
    panel_note,
    phase_limits,
    phase_panel,
    span_epochs,
    suptitle,
)


def mlp_phase(study, ds):
    """The MLP's lr x momentum phase diagram, with the quadratic-model boundary at init."""
    fig, (ax,) = new_figure(1, width=7.2, height=5.2)
    model, X, Y = study.model, study.X, study.Y
    theta0 = initial_params(study, ds)
    sharp = theory.sharpness(model, theta0, X, Y)
    loss0 = float(ds.loss.isel(epoch=0).values.flat[0])
    with np.errstate(all="ignore"):
        values = np.log10(ds.final_loss.where(~ds.diverged).transpose("lr", "momentum").values / loss0)  # gray
    # Runs that end 10x above their initial loss are as good as diverged: saturate the colours there.
    mesh = phase_panel(ax, fig, ds.lr.values, ds.momentum.values, values, "", None, 1.0)
    beta = np.linspace(0, ds.momentum.values.max(), 200)
    ax.plot(theory.critical_lr(sharp, beta), beta, "w-", lw=2,
            label=f"2 (1 + beta) / sharpness at init ({sharp:.3g})")
    phase_limits(ax, ds.lr.values, ds.momentum.values)
    batch = ds.attrs.get("batch_size", "?")
    ax.set_title(f"{model.sizes} {model.activation} MLP, batch {batch}, {ds.attrs['epochs']} epochs")
    ax.legend(fontsize=8, loc="lower left")
    panel_note(ax, ds, bool(np.isfinite(values).any()))
    bar = fig.colorbar(mesh, ax=ax, extend="max")
    bar.set_label("log10 (final loss / initial loss); gray: diverged")
    suptitle(fig, study)
    return fig


def lr_threshold(study, ds):
    """A big MLP: final loss against lr, the threshold from the sharpness at init, and
    the loss curves of a few learning rates."""
    fig, (ax, ax_curves) = new_figure(2, width=5.6, height=4.6)
    model, X, Y = study.model, study.X, study.Y
    momentum = float(ds.attrs.get("momentum", 0.0))
    theta0 = initial_params(study, ds)
    sharp = theory.sharpness(model, theta0, X, Y)
    threshold = theory.critical_lr(sharp, momentum)
    lrs = ds.lr.values
    loss0 = float(ds.loss.isel(epoch=0).values.flat[0])
    with np.errstate(all="ignore"):
        ratio = ds.final_loss.values / loss0
    ok = ratio <= LOSS_CAP
    ax.loglog(lrs[ok], ratio[ok], "o-", color="C0", ms=4, label="final / initial loss")
    mark_overflow(ax, lrs[~ok], "C3", label=f"above {LOSS_CAP:.0e} or overflowed")
    ax.axvline(threshold, color="k", ls="--", lw=1.2,
               label=f"2 (1 + {momentum:g}) / sharpness at init = {threshold:.3g}")
    if "lr" in ds.dims and np.any(np.isclose(lrs, 0.2)):
        ax.axvline(0.2, color="C3", ls=":", lw=1.2, label="the tutorial's lr = 0.2")
    ax.set(xlabel="learning rate", ylabel=f"loss after {ds.attrs['epochs']} steps / initial loss (log)",
           title=f"{model.sizes} {model.activation} MLP, MSE {model.reduction}, momentum {momentum:g}")
    ax.legend(fontsize=7.5, loc="lower left")
    panel_note(ax, ds, bool(ok.any()), f"final loss below {LOSS_CAP:.0e} x initial")

    picks = [lrs[np.argmin(np.abs(np.log(lrs / target)))] for target in (threshold / 40, threshold / 1.5,
                                                                           threshold * 1.5, threshold * 2.5, 0.2)]
    curves = []
    for lr, color in zip(dict.fromkeys(picks), ("C0", "C2", "C1", "C4", "C3")):
        with np.errstate(all="ignore"):
            curve = ds.loss.sel(lr=lr).values / loss0
        curves.append(np.where(curve <= LOSS_CAP, curve, np.nan))
        ax_curves.semilogy(ds.epoch.values, curves[-1], color=color,
                           label=f"lr = {lr:.3g} ({lr / threshold:.2g} x threshold)")
    span_epochs(ax_curves, ds.epoch.values, curves)
    panel_note(ax_curves, ds, bool(np.any(np.array(curves) > 0)), f"loss below {LOSS_CAP:.0e} x initial")
    ax_curves.set(xlabel="step (full batch)", ylabel="loss / initial loss (log)", title="Loss curves")
    ax_curves.legend(fontsize=7.5)
    suptitle(fig, study)
    return fig


def classifier(study, ds):
    """A cross-entropy classifier: loss and accuracy over epochs for several lrs."""
    fig, (ax_loss, ax_acc) = new_figure(2)
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
        span_epochs(ax, ds.epoch.values, curves)
    panel_note(ax_loss, ds, bool(np.any((ds.loss.values > 0) & (ds.loss.values < 1e3))), "loss below 1e3")
    panel_note(ax_acc, ds, bool(np.isfinite(ds.accuracy.values).any()), "finite accuracy")
    suptitle(fig, study)
    return fig
