"""Figures of MLPs and classifiers: the lr threshold from the sharpness at initialisation, and a
classifier's loss and accuracy."""

import numpy as np

from .. import theory
from ..plot import grid
from ..plot.panels import figure_legend
from .common import (
    LOSS_CAP,
    SCHEME_WORDS,
    attr_flag,
    initial_params,
    integer_ticks,
    mark_overflow,
    new_figure,
    overflow_strip,
    panel_note,
    sampling_scheme,
    span_epochs,
    suptitle,
)


def optimizer_attrs(ds):
    """The fixed ``dampening`` and ``weight_decay`` of ``ds``'s runs, for :func:`gdsim.theory.critical_lr`."""
    settings = grid.run_settings(ds)
    return {name: settings[name] for name in ("dampening", "weight_decay")}


def lr_threshold(study, ds):
    """A big MLP: final loss against lr, the threshold from the sharpness at init, and
    the loss curves of a few learning rates."""
    fig, (ax, ax_curves) = new_figure(2, width=5.6, height=4.6)
    model, X, Y = study.model, study.X, study.Y
    momentum = float(ds.attrs.get("momentum", 0.0))
    nesterov = attr_flag(ds, "nesterov")
    theta0 = initial_params(study, ds)
    sharp = theory.sharpness(model, theta0, X, Y)
    threshold = theory.critical_lr(sharp, momentum, nesterov=nesterov, **optimizer_attrs(ds))
    rule = f"2 (1 + {momentum:g}) / " + (f"((1 + 2 x {momentum:g}) sharpness)" if nesterov and momentum else "sharpness")
    lrs = ds.lr.values
    loss0 = float(ds.loss.isel(epoch=0).values.flat[0])
    with np.errstate(all="ignore"):
        ratio = ds.final_loss.values / loss0
    ok = ratio <= LOSS_CAP
    ax.loglog(lrs[ok], ratio[ok], "o-", color="C0", ms=4, label="final / initial loss")
    if not ok.all():
        mark_overflow(overflow_strip(ax, what="final / initial loss"), lrs[~ok], "C3")
    ax.axvline(threshold, color="k", ls="--", lw=1.2, label=f"{rule} at init = {threshold:.3g}")
    if "lr" in ds.dims and np.any(np.isclose(lrs, 0.2)):
        ax.axvline(0.2, color="C3", ls=":", lw=1.2, label="the tutorial's lr = 0.2")
    ax.set(xlabel="learning rate", ylabel=f"loss after {ds.attrs['epochs']} steps / initial loss (log)",
           title="Final loss vs learning rate")
    figure_legend(fig, ax.get_legend_handles_labels()[0], ncols=3)
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
    integer_ticks(ax_curves.xaxis)
    panel_note(ax_curves, ds, bool(np.any(np.array(curves) > 0)), f"loss below {LOSS_CAP:.0e} x initial")
    ax_curves.set(xlabel="step (full batch)", ylabel="loss / initial loss (log)", title="Loss curves")
    ax_curves.legend(fontsize=7.5, loc="upper right")
    nesterov_text = "Nesterov " if nesterov and momentum else ""
    suptitle(fig, study, f"{model.activation} MLP, MSE {model.reduction}, {nesterov_text}momentum {momentum:g}")
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
        ax_acc.plot(ds.epoch.values, 100 * run.accuracy.values, color=f"C{i}")
    # The reference lines are named on the line, the lrs under the panels: no legend on the data.
    ax_loss.axhline(np.log(n_classes), color="k", ls=":", lw=1)
    ax_loss.text(1.0, np.log(n_classes), f"uniform guess, log {n_classes} ", transform=ax_loss.get_yaxis_transform(),
                 ha="right", va="bottom", fontsize=8)
    ax_acc.axhline(100 / n_classes, color="k", ls=":", lw=1)
    ax_acc.text(1.0, 100 / n_classes, "chance ", transform=ax_acc.get_yaxis_transform(), ha="right", va="bottom",
                fontsize=8)
    ax_loss.set(xlabel="epoch", ylabel="full-data cross-entropy (log)", title="Loss")
    lowest = float(ds.loss.where(np.isfinite(ds.loss) & (ds.loss > 0)).min())
    if not lowest < 1e3:  # no finite loss under the top: the axis goes down to the uniform guess's
        lowest = np.log(n_classes)
    ax_loss.set_ylim(lowest / 2, 1e3)  # a blow-up would squash every other curve
    ax_acc.set(xlabel="epoch", ylabel="training accuracy (%)", ylim=(0, 102), title="Accuracy")
    figure_legend(fig, ax_loss.get_legend_handles_labels()[0], ncols=5)
    for ax, curves in ((ax_loss, np.where(ds.loss.values < 1e3, ds.loss.values, np.nan)),
                       (ax_acc, 1 + ds.accuracy.values)):  # 1 +: a zero accuracy is drawn too
        span_epochs(ax, ds.epoch.values, curves)
    panel_note(ax_loss, ds, bool(np.any((ds.loss.values > 0) & (ds.loss.values < 1e3))), "loss below 1e3")
    panel_note(ax_acc, ds, bool(np.isfinite(ds.accuracy.values).any()), "finite accuracy")
    suptitle(fig, study, f"batches of {ds.attrs.get('batch_size', '?')}, {SCHEME_WORDS[sampling_scheme(ds)]}")
    return fig
