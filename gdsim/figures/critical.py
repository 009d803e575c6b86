"""Figure 5: the critical learning rate of SGD against the batch size, under the sampling
scheme of the study (``shuffle``), read against the theory of that very scheme.

* data order (``shuffle = false``): the epoch map is the same every epoch, and the run is
  unstable exactly where its spectral radius passes 1 (:func:`gdsim.theory.epoch_critical_lr`);
* a fresh permutation per epoch (``shuffle = true``) and batches drawn with replacement
  (``shuffle = "replacement"``): the epoch maps are random; a typical run (the median of
  the seeds) grows where the top Lyapunov exponent passes 0 (almost-sure threshold,
  :func:`gdsim.theory.almost_sure_critical_lr`). For replacement the
  mean square ``E |e|^2`` is exact too (:func:`gdsim.theory.mean_square_critical_lr`); it
  diverges earlier, driven by rare orders, and a median of runs does not see it.

The theory never looks at the simulation: its orders are drawn from a seed of its own.
"""

import numpy as np

from .. import theory
from ..plot import grid
from .common import (
    hessian_spectrum,
    log_ticks,
    new_figure,
    panel_note,
    sampling_scheme,
    suptitle,
)

#: The loss of an unstable run, at the end, is above this many times its loss at mid-run.
GROWTH = 10.0

SCHEME_TITLES = {"fixed": "batches in data order (shuffle = false)",
                 "reshuffle": "a fresh permutation every epoch (shuffle = true)",
                 "replacement": "indices drawn with replacement (shuffle = \"replacement\")"}


def run_settings(ds):
    """The settings of the runs that the theory needs, from ``ds``'s attributes:
    ``momentum``, ``dampening``, ``weight_decay``, ``nesterov`` and ``drop_last`` (the
    figure draws one value of each; netCDF may keep a bool as a string)."""
    settings = grid.run_settings(ds)
    return {name: settings[name] for name in ("momentum", "dampening", "weight_decay", "nesterov", "drop_last")}


def unstable_runs(ds):
    """Which runs of ``ds`` were still growing at the end, as a boolean DataArray.

    A run is unstable when its final loss is not finite, or when it is above both its
    initial loss and :data:`GROWTH` times its loss at mid-run. The second test keeps out
    the stable runs that settle at a large loss: per-sample SGD in data order converges
    to a periodic orbit whose loss passes the initial one well below the threshold (on the
    tutorial's data from half of it on); random orders, just below it, to a wide spread of
    losses.
    """
    mid = ds.loss.isel(epoch=ds.sizes["epoch"] // 2)
    with np.errstate(invalid="ignore"):
        growing = (ds.final_loss > ds.loss.isel(epoch=0)) & (ds.final_loss > GROWTH * mid)
    return ~np.isfinite(ds.final_loss) | growing


def simulated_critical(ds):
    """The last stable and first unstable lr of the sweep per batch size, where at least
    half of the seeds are unstable (:func:`unstable_runs`); NaN past either end."""
    unstable = unstable_runs(ds)
    if "seed" in unstable.dims:
        unstable = unstable.mean("seed")
    fraction = unstable.transpose("lr", "batch_size").values
    lrs = ds.lr.values
    lo, hi = [], []
    for j in range(fraction.shape[1]):
        first = np.nonzero(fraction[:, j] >= 0.5)[0]
        k = first[0] if first.size else len(lrs)
        lo.append(lrs[k - 1] if k > 0 else np.nan)
        hi.append(lrs[k] if k < len(lrs) else np.nan)
    return np.array(lo), np.array(hi)


def scheme_theory(study, batch_sizes, scheme, settings=None):
    """The theory's thresholds of ``scheme`` at ``batch_sizes``.

    Parameters
    ----------
    study : gdsim.studies.Study
        A linear model with MSE, and its data.
    batch_sizes : array_like of int
    scheme : {"fixed", "reshuffle", "replacement"}
    settings : dict, optional
        The runs' optimizer settings and ``drop_last`` (:func:`run_settings`).

    Returns
    -------
    dict of str to numpy.ndarray
        ``"epoch"`` (:func:`gdsim.theory.epoch_critical_lr` of the data order) for
        ``"fixed"``; else ``"as"``, ``"as_low"``, ``"as_high"``
        (:func:`gdsim.theory.almost_sure_critical_lr`) and, for ``"replacement"``, ``"mean_square"``
        (:func:`gdsim.theory.mean_square_critical_lr`, which draws every batch with ``B``
        samples: exact when ``B`` divides ``n``).
    """
    model, X = study.model, study.X
    settings = dict(settings or {})
    optimizer = {k: v for k, v in settings.items() if k != "drop_last"}
    L, _ = hessian_spectrum(study)
    if scheme == "fixed":
        return {"epoch": np.array([theory.epoch_critical_lr(model, X, batch_size=int(b), rtol=1e-6, **settings)
                                   for b in batch_sizes])}
    found = np.array([theory.almost_sure_critical_lr(model, X, batch_size=int(b), sampling=scheme, lr_max=10 * 2 / L,
                                                     **settings) for b in batch_sizes])
    out = {"as": found[:, 0], "as_low": found[:, 1], "as_high": found[:, 2]}
    if scheme == "replacement":
        out["mean_square"] = np.array([theory.mean_square_critical_lr(model, X, batch_size=int(b), rtol=1e-6,
                                                                      **optimizer) for b in batch_sizes])
    return out


def critical_batch(study, ds):
    """Critical lr against batch size: simulated under the study's sampling scheme, and the
    theory of that scheme (see :mod:`gdsim.figures.critical`).

    Parameters
    ----------
    study : gdsim.studies.Study
        A linear model with MSE; ``lr`` and ``batch_size`` swept, ``seed`` swept or not.
    ds : xarray.Dataset
        Its result.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, (ax,) = new_figure(1, width=7.5, height=5.2)
    n = study.X.shape[0]
    L, _ = hessian_spectrum(study)
    lrs, batch_sizes = ds.lr.values, ds.batch_size.values
    scheme = sampling_scheme(ds)
    lo, hi = simulated_critical(ds)
    centre = np.sqrt(lo * hi)
    seeds = ds.sizes.get("seed", 1)
    who = f"in half of {seeds} seeds" if seeds > 1 else "(one run)"
    mid = ds.sizes["epoch"] // 2
    ax.errorbar(batch_sizes, centre, yerr=[centre - lo, hi - centre], fmt="o", color="C0", capsize=3, zorder=5,
                label=f"simulated: the loss still grows {who}, i.e. final loss > initial\nand > {GROWTH:g} x "
                      f"the loss at epoch {mid} (bar: last stable to first unstable lr)")
    found = scheme_theory(study, batch_sizes, scheme, run_settings(ds))
    if scheme == "fixed":
        ax.plot(batch_sizes, found["epoch"], "s-", color="C2", ms=4, lw=1.5,
                label="theory: epoch map of the data order has spectral radius 1\n(epoch_critical_lr, exact)")
    else:
        ax.fill_between(batch_sizes, found["as_low"], found["as_high"], color="C3", alpha=0.3, lw=0)
        ax.plot(batch_sizes, found["as"], "s-", color="C3", ms=4, lw=1.5,
                label="theory, a typical run: top Lyapunov exponent = 0\n(almost sure; band: its 95% interval; "
                      f"{theory.sampling.ALMOST_SURE_EPOCHS} epochs of other orders)")
        if scheme == "replacement":
            short = " (last short batch ignored)" if any(n % int(b) for b in batch_sizes) else ""
            ax.plot(batch_sizes, found["mean_square"], "^--", color="C1", ms=4, lw=1.5,
                    label=f"theory, the mean square E|e|^2 diverges{short}\n(mean_square_critical_lr, exact)")
    ax.axhline(2 / L, color="k", ls=":", lw=1.2, label=f"2 / L = {2 / L:.4f} (full-batch GD)")
    ax.set_xscale("log")
    log_ticks(ax.xaxis, batch_sizes)  # the batch sizes run
    ax.set_ylim(lrs.min(), lrs.max())
    ax.set(xlabel="batch size B (log scale)", ylabel="critical learning rate")
    handles, labels = ax.get_legend_handles_labels()  # the simulation (an errorbar: listed last) first
    ax.legend(handles[-1:] + handles[:-1], labels[-1:] + labels[:-1], fontsize=7.5, loc="lower right")
    panel_note(ax, ds, bool(np.isfinite(centre).any()), "critical lr within the sweep")
    suptitle(fig, study, f"{SCHEME_TITLES[scheme]}, {ds.attrs['epochs']} epochs")
    return fig
