"""Figures of training dynamics measured inside the loop (``track=``): sharpness along runs."""

import numpy as np

from ..plot.panels import figure_legend
from .common import DPI, attr_flag, panel_note, suptitle


def stable_sharpness(lr, momentum, nesterov):
    """The largest curvature at which SGD with ``lr`` and ``momentum`` is stable on a
    quadratic: ``2 / lr`` (gradient descent), ``(2 + 2 beta) / lr`` (heavy ball),
    ``(2 + 2 beta) / ((1 + 2 beta) lr)`` (Nesterov), the edges of the companion matrix's
    stability region (:mod:`gdsim.theory`)."""
    return (2 + 2 * momentum) / ((1 + 2 * momentum) if nesterov else 1) / lr


def edge_of_stability(study, ds):
    """Sharpness along full-batch runs against the threshold of each lr (Cohen et al. 2021):
    one column per momentum, the sharpness above, the loss below."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    momenta = ds.momentum.values if "momentum" in ds.dims else [ds.attrs["momentum"]]
    nesterov = attr_flag(ds, "nesterov")  # one value (the figure's check)
    fig = Figure(figsize=(max(5.4 * len(momenta), 7.5), 7.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(2, len(momenta), squeeze=False, sharex=True)
    steps = ds.step.values
    for column, beta in enumerate(momenta):
        top, bottom = axes[0, column], axes[1, column]
        drawn = False
        for i, lr in enumerate(ds.lr.values):
            point = ds.sel(lr=lr, momentum=beta) if "momentum" in ds.dims else ds.sel(lr=lr)
            sharp = point.track_sharpness.values
            loss = point.track_loss.values if "track_loss" in point else point.loss.values
            limit = stable_sharpness(float(lr), float(beta), nesterov and beta > 0)
            finite = np.isfinite(sharp)
            drawn |= bool(finite.any())
            top.plot(steps[finite], sharp[finite], color=f"C{i}", lw=1.2, label=f"lr = {lr:g}")
            top.axhline(limit, color=f"C{i}", ls="--", lw=1)
            positive = np.isfinite(loss) & (loss > 0)
            x = steps[positive] if "track_loss" in point else ds.epoch.values[positive]
            bottom.plot(x, loss[positive], color=f"C{i}", lw=1)
        if beta == 0:
            kind, rule = "gradient descent", "2 / lr"
        elif nesterov:
            kind, rule = f"Nesterov, momentum {beta:g}", "(2 + 2 beta) / ((1 + 2 beta) lr)"
        else:
            kind, rule = f"heavy ball, momentum {beta:g}", "(2 + 2 beta) / lr"
        heading = f"{kind}; dashed: {rule}"
        top.set(ylabel="sharpness (top Hessian eigenvalue)", title=heading if len(momenta) > 1 else "")
        bottom.set_yscale("log")
        bottom.set(xlabel="step", ylabel="full-data loss")
        panel_note(top, ds, drawn, "finite sharpness")
    handles = axes[0, 0].get_legend_handles_labels()[0]
    handles.append(Line2D([], [], color="0.3", ls="--", lw=1,
                          label="dashed, same colour: where that lr turns unstable on a quadratic"))
    figure_legend(fig, handles, ncols=len(handles))  # the same lrs in every panel: one legend
    suptitle(fig, study, heading if len(momenta) == 1 else None)
    return fig
