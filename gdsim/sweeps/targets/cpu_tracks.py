"""The CPU targets' tracks (``sweep(..., track=...)``): each run trained again, alone, by
:func:`gdsim.training.train_loop`, the compiled loop of :func:`gdsim.train`, which measures
the tracks on the way.

The loop is called as :func:`gdsim.train` calls it, with arguments of the same types, so it
is the very machine code train runs (one compiled specialization, shared through Numba's
cache) on the same inputs: the tracks are train's, bit for bit, Lanczos included. (A loop
over runs compiled around it would inline it and could round differently.) The block
kernels' results (``loss``, ``params``, ...) stay what they are without tracks, bit for
bit. The price: a tracked run is computed twice, the second time at train's speed (one run
per thread, no lanes), plus the measurements themselves (a full-data loss per measured
step). Runs are independent, so the results do not depend on the thread count.
"""

import types

import numpy as np

from ..._threads import one_blas_thread
from ...batches import steps_per_epoch
from ...tracks import BATCH_TRACKS, SCALARS, measured_steps, new_tracks
from ...training import train_loop, use_dense_kernels


def track_runs(runs, plan, out):
    """Train each run of ``runs`` (rows of ``plan``, a :class:`gdsim.sweeps.plan.Plan`)
    with :func:`~gdsim.training.train_loop` as :func:`gdsim.train` does, and write its
    tracks into ``out``, float64 ``[n_runs, len(names), steps]`` (NaN on entry), at the
    positions of their steps in the result's ``step`` coordinate."""
    names, every, steps = plan.track
    n, n_params = plan.X.shape[0], plan.theta0.shape[1]
    shape = types.SimpleNamespace(n_params=n_params, sizes_array=plan.model.sizes)  # what new_tracks reads
    rows = [list(SCALARS).index(name) for name in names]
    for r in runs:
        g = plan.group[r]
        batch_size = int(plan.batch_sizes[g])
        per_epoch = steps_per_epoch(n, batch_size, plan.drop_last)
        n_steps = plan.epochs * per_epoch
        dense = 1 if use_dense_kernels(plan.model, batch_size) else None  # one thread: the sweep's threads run runs
        tracks = new_tracks(every, n_steps, shape, n, dense is not None)
        # train's arguments, types included (Python bools and floats, contiguous arrays), and its BLAS setting.
        with one_blas_thread(dense is not None):
            train_loop((plan.theta0[r].copy(), np.zeros(n_params), False, False, np.nan), plan.model, plan.X, plan.Y,
                       (plan.orders[g], batch_size, bool(plan.drop_last)), np.repeat(plan.lr[r], per_epoch),
                       np.ascontiguousarray(plan.hyper[:, r]), False, (float(plan.divergence_factor), False),
                       (np.empty(plan.epochs + 1), np.empty(n_steps), np.empty((0, n_params))), dense, tracks)
        scalars = tracks[1][0]
        measured = measured_steps(every, n_steps)[0]
        for j, name in enumerate(names):
            at = measured[name]
            out[r, j, np.searchsorted(steps, at)] = scalars[rows[j], :at.size]


def stop_tracks(block, names, steps, diverged_step):
    """Blank the tracks of the runs a divergence stopped (a ``divergence`` that stops) where the
    sweep did not compute them, as their ``loss`` is: a run stopped at step ``d`` keeps its
    full-data observables up to ``d`` (its final parameters), its batch observables before
    ``d`` (step ``d``'s batch marked it, or was never reached: no update made)."""
    batch = np.array([name in BATCH_TRACKS for name in names])
    stopped = (diverged_step >= 0)[:, None, None]
    after = steps[None, None, :] > diverged_step[:, None, None] - batch[None, :, None]
    block[stopped & after] = np.nan
