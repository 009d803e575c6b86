"""A sweep's plan: the flat arrays a target needs to compute a range of its runs.

:func:`make_plan` turns a :class:`gdsim.sweeps.spec.SweepSpec` and the flat indices of
some of its grid points into a :class:`Plan`: one row per run (initial parameters, learning
rate per epoch, the other hyper-parameters) and one sample order per group of runs that
share a batch size and a seed. All randomness is drawn here, on the host, from the seeds,
so every target, worker and chunking of a grid sees the same numbers.
"""

import dataclasses
import math

import numpy as np

from ..batches import batch_orders
from ..models import ModelSpec
from ..optim import DAMPENING, HYPER_ROWS, NESTEROV, WEIGHT_DECAY, epoch_lrs
from .spec import AXES


@dataclasses.dataclass(frozen=True, eq=False)
class Plan:
    """What a target computes: some runs of a sweep, as flat arrays.

    Attributes
    ----------
    model : gdsim.models.ModelSpec
    X : float [n, n_in]
    Y : float [n, n_out] or float [n, 1]
        The data in the sweep's dtype.
    theta0 : float [k, n_params]
        Initial parameters of each run, in the sweep's dtype.
    lr : float64 [k, epochs]
        Learning rate of each run and epoch.
    hyper : float64 [N_HYPER, k]
        The other hyper-parameters of each run, rows :data:`gdsim.optim.HYPER_ROWS`.
    group : int64 [k]
        The group of each run: runs of a group share ``orders[g]`` and ``batch_sizes[g]``.
    orders : int64 [n_groups, epochs, n]
    batch_sizes : int64 [n_groups]
    drop_last : bool
    divergence_factor : float
    stop_diverged : bool
    track : (tuple of str, int64 [len(TRACKS)], int64 [steps])
        ``(names, every, steps)``: the tracked observables, their periods
        (:func:`gdsim.tracks.check_track`) and the result's ``step`` coordinate; ``names``
        empty without tracks.
    """

    model: ModelSpec
    X: np.ndarray
    Y: np.ndarray
    theta0: np.ndarray
    lr: np.ndarray
    hyper: np.ndarray
    group: np.ndarray
    orders: np.ndarray
    batch_sizes: np.ndarray
    drop_last: bool
    divergence_factor: float
    stop_diverged: bool
    track: tuple = ((), None, None)

    @property
    def n_runs(self):
        """Number of runs."""
        return self.theta0.shape[0]

    @property
    def epochs(self):
        """Number of epochs."""
        return self.lr.shape[1]

    @property
    def needs_general_update(self):
        """Whether some run uses weight decay, dampening or Nesterov (else kernels may
        compile the shorter update, with the same numbers)."""
        return bool(np.any(self.hyper[[DAMPENING, WEIGHT_DECAY, NESTEROV]] != 0))


def make_plan(spec, runs):
    """The :class:`Plan` of grid points ``runs`` of ``spec``.

    Parameters
    ----------
    spec : gdsim.sweeps.spec.SweepSpec
    runs : numpy.ndarray of int
        Flat indices of grid points (C order over :data:`gdsim.sweeps.spec.AXES`), increasing.

    Returns
    -------
    Plan
    """
    model, n, epochs, values = spec.model, spec.n, spec.epochs, spec.values
    index = _grid_index(runs, spec.shape)  # None: an axis of one value (index 0 for every run)
    n_seeds = len(values["seed"])
    group = _at(index["batch_size"], runs.size) * n_seeds + _at(index["seed"], runs.size)  # share batch size, order
    orders = np.stack([batch_orders(n, epochs, spec.shuffle, int(s)) for s in values["seed"]])
    orders = np.concatenate([orders] * len(values["batch_size"]))  # [n_groups, epochs, n]
    inits = np.stack([model.init(int(s)) if spec.params0 is None else spec.params0 for s in values["seed"]])
    lrs = np.take(epoch_lrs(values["lr"], spec.schedule, epochs), _at(index["lr"], runs.size), axis=0)  # [k, epochs]
    hyper = np.empty((len(HYPER_ROWS), runs.size))
    for row, name in zip(hyper, HYPER_ROWS):
        if index[name] is None:
            row.fill(values[name][0])
        else:
            np.take(values[name].astype(np.float64), index[name], out=row)
    return Plan(model=model.spec, X=spec.X.astype(spec.dtype), Y=spec.Y.astype(spec.dtype),
                theta0=np.take(inits, _at(index["seed"], runs.size), axis=0).astype(spec.dtype, copy=False),
                lr=lrs, hyper=hyper,
                group=group, orders=orders, batch_sizes=np.repeat(values["batch_size"], n_seeds),
                drop_last=spec.drop_last, divergence_factor=spec.divergence_factor,
                stop_diverged=spec.stop_diverged,
                track=(tuple(name for name, _ in spec.track), spec.every, spec.track_steps))


def _grid_index(runs, shape):
    """``numpy.unravel_index(runs, shape)`` as a dict over :data:`gdsim.sweeps.spec.AXES`,
    with None for an axis of one value (its index is 0): the divisions only where needed."""
    index, stride = {}, math.prod(shape)
    for name, size in zip(AXES, shape):
        stride //= size
        index[name] = None if size == 1 else (runs // stride) % size
    return index


def _at(index, k):
    """An axis's index of ``k`` runs (:func:`_grid_index`; None: zeros)."""
    return np.zeros(k, dtype=np.int64) if index is None else index
