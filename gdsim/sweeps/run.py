"""Running a sweep: :func:`sweep` checks its arguments into a spec, plans the runs,
hands them to the target's kernels and labels the result.

Data flow: :func:`gdsim.sweeps.spec.check_sweep` -> :func:`gdsim.sweeps.plan.make_plan`
-> the target (:mod:`gdsim.sweeps.targets`) -> :func:`gdsim.sweeps.dataset.grid_dataset`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:  # for the annotations only: importing them costs time
    import xarray

    from ..models import MLP

from .._io import check_folder
from .._progress import progress_bar
from .._resources import one_memory_reading
from .._validate import ParameterError, as_array, check_int, short_repr
from ..outcomes import document_divergence
from .dataset import (
    LAYOUT,
    add_outcomes,
    empty_raw,
    grid_dataset,
    grid_shape,
    grid_variables,
)
from .executors import RegionWork, cluster_threads, dask_client, dask_results
from .plan import make_plan
from .spec import SweepSpec, check_sweep
from .store import ResultStore, fill, plan_regions
from .targets import get_target


@document_divergence
def sweep(model: MLP, X: ArrayLike, Y: ArrayLike, *, lr: ArrayLike, momentum: ArrayLike = 0.0,
          dampening: ArrayLike = 0.0, weight_decay: ArrayLike = 0.0, nesterov: bool | Sequence[bool] = False,
          batch_size: int | str | Sequence[int | str] | None = None, epochs: int, shuffle: bool | str = False,
          seed: int | Sequence[int] = 0, params0: ArrayLike | None = None, lr_schedule: object = None,
          drop_last: bool = False, target: str = "parallel", dtype: str = "float64",
          divergence: str | float | None = "growth", progress: bool | Callable[[int, int], object] = False,
          store: str | os.PathLike | None = None, chunk_runs: int | None = None, scheduler: object = None,
          track: dict[str, int] | None = None) -> xarray.Dataset:
    """Train ``model`` on ``(X, Y)`` for every point of a grid of SGD settings, at once.

    Every hyper-parameter takes a scalar or a 1-d array; the grid is the Cartesian
    product of the arrays, and each grid point is the run ``gdsim.train`` makes with
    those settings (``torch.optim.SGD`` semantics).

    Parameters
    ----------
    model : gdsim.Linear or gdsim.MLP
    X : array_like (n, n_in)
        Finite inputs.
    Y : array_like
        Targets ``(n, n_out)`` for MSE, integer labels ``(n,)`` for cross-entropy.
    lr : float or 1-d array
        Learning rates, ``>= 0``.
    momentum : float or 1-d array, default 0
        Heavy-ball momentum factors, ``>= 0``.
    dampening : float or 1-d array, default 0
    weight_decay : float or 1-d array, default 0
        ``>= 0``.
    nesterov : bool or 1-d array of bool, default False
        Needs ``momentum > 0`` and ``dampening == 0`` at every grid point where it is True.
    batch_size : int, 1-d array of int, or None, default None
        Samples per step, in ``[1, n]``; None: full batch.
    epochs : int
        Passes over the data, ``>= 1``.
    shuffle : bool or "replacement", default False
        False: data order; True: a fresh permutation per epoch drawn from ``seed``;
        ``"replacement"``: ``n`` indices per epoch drawn with replacement from ``seed``
        (the same as ``train`` draws, :func:`gdsim.batches.batch_orders`).
    seed : int or 1-d array of int, default 0
        Seeds the initial parameters (``model.init(seed)``, unless ``params0`` is given)
        and the shuffles; an array repeats the grid over seeds.
    params0 : array_like (n_params,), optional
        Initial parameters shared by every run.
    lr_schedule : tuple or array_like, optional
        Per-epoch learning-rate schedule, as in :func:`gdsim.train`
        (``("step", step_size, gamma)``, ``("exponential", gamma)``,
        ``("cosine", T_max, eta_min)`` or an array of ``epochs`` factors), applied to
        every ``lr`` of the grid.
    drop_last : bool, default False
    target : {"parallel", "cpu", "cuda"}, default "parallel"
        A name of the target registry (:data:`gdsim.sweeps.targets.TARGETS`):
        ``"parallel"``: threads over blocks of runs; ``"cpu"``: one thread (bitwise the
        same results); ``"cuda"``: one GPU thread per run (needs numba-cuda and a GPU,
        or ``NUMBA_ENABLE_CUDASIM=1`` for the simulator).
    dtype : {"float64", "float32"}, default "float64"
        Precision of the data, parameters and losses.
    divergence : "growth", float, "nonfinite" or None, default "growth"
        See :data:`gdsim.outcomes.DIVERGENCE_DOC`.
    progress : bool or callable, default False
        True: a status line on stderr (runs done, time elapsed and left) as blocks of
        runs finish; a callable: called as ``progress(runs_done, n_runs)`` instead.
        ``"cuda"`` reports once, at the end (the runs are one kernel launch). Progress is
        not part of the sweep's settings (:class:`gdsim.sweeps.SweepSpec`).
    store : str or pathlib.Path, optional
        A Zarr store (``"x.zarr"``) to stream the result to, region by region (see
        :mod:`gdsim.sweeps.store`); the result is never whole in memory and is returned
        opened lazily. A store of the same sweep (same settings, gdsim version and target
        family) is resumed: only the regions not found intact are computed. A store of
        another sweep is refused. None: the result is computed in memory.
    chunk_runs : int, optional
        Runs per region of a new store, or per task on a cluster (default: about 8 MiB of
        results per region); the result does not depend on it.
    scheduler : distributed.Client or str, optional
        Compute the regions as tasks on a Dask ``distributed`` cluster (a Client, or the
        scheduler's address): each task is the pickled spec and a range of runs, and the
        result is the same bits as here (:mod:`gdsim.sweeps.executors`). The target runs
        on the workers (``"cuda"`` on GPU workers), so its availability is not checked
        here. None: the target's threads here.
    track : dict, optional
        Observables measured during every run, ``{name: every k steps}``, as
        ``gdsim.train(..., track=)`` measures them (:mod:`gdsim.tracks`): ``"loss"`` and
        ``"grad_norm"`` of the full data before steps ``0, k, 2k, ...`` (and after the
        last step when ``k`` divides the run's steps), ``"batch_loss"`` and
        ``"batch_grad_norm"`` of each step's batch, and on ``"cpu"``/``"parallel"``
        ``"sharpness"`` and ``"batch_sharpness"`` (Lanczos: for small models). Not
        ``"params"`` nor ``"noise_scale"``; ``dtype="float64"`` only. On the CPU targets
        each tracked run is trained once more by ``train``'s own compiled loop, which
        measures them (the tracks are ``train``'s bits, the other results unchanged, and
        a tracked run costs about what ``train`` costs); on ``"cuda"`` the sweep kernel
        measures them. Tracks are part of a store's identity and regions.

    Returns
    -------
    xarray.Dataset
        Dimensions: one per swept argument (those given as arrays), in the order
        ``lr, momentum, dampening, weight_decay, nesterov, batch_size, seed``, with
        their values as coordinates, plus ``epoch`` (``0..epochs``) and ``param``.
        Variables:

        * ``loss`` (..., epoch): full-data loss before each epoch and after the last;
        * ``final_loss`` (...): ``loss`` after the last epoch (NaN for a stopped run);
        * ``outcome`` (...): int8 codes of :data:`gdsim.outcomes.OUTCOMES` (converged,
          converging, oscillating, bounded orbit, diverged; CF ``flag_values`` and
          ``flag_meanings`` in its attributes), read from ``loss``;
          ``growth_rate`` (...): the factor the loss grows by per epoch over the last half
          of the epochs (:func:`gdsim.outcomes.classify`);
        * ``diverged`` (...): bool, by the rule of ``divergence``; ``diverged_step`` (...):
          the step the run was marked (stopped, unless ``divergence`` is None or
          ``"nonfinite"``), -1 if none
          (``steps_per_epoch * epochs`` when only the final loss was);
          ``diverged_loss`` (...): the loss that marked it;
        * ``params`` (..., param): final parameters, flat in torch's order;
        * with ``track``: ``track_NAME`` (..., step) per tracked observable, over the
          ``step`` coordinate of every step where some run measures something (the
          union over batch sizes); NaN where a run measures nothing (other steps, or
          beyond its own last step). Each run holds what ``train(..., track=)`` gives
          at its settings (``result.tracks``); a run stopped by ``divergence`` holds
          its full-data tracks up to its ``diverged_step`` (its final parameters), its
          batch tracks before it (that step's update is not made), NaN after, like
          its ``loss``. ``attrs["every"]``: the period.

        ``attrs`` hold the model, the data's shape and every fixed setting.

    Raises
    ------
    ValueError
        For any invalid argument, before any work is done.
    RuntimeError
        For ``target="cuda"`` without numba-cuda or a GPU (the message names the fix).

    Examples
    --------
    >>> import numpy as np, gdsim
    >>> X, Y = gdsim.datasets.tutorial_line()
    >>> ds = gdsim.sweep(gdsim.Linear(1, 1), X, Y, lr=[0.001, 0.01, 0.1], momentum=[0.0, 0.9],
    ...                  epochs=5, batch_size=1, params0=[-10.0, -20.0])
    >>> ds.final_loss.dims
    ('lr', 'momentum')
    >>> from gdsim.outcomes import OUTCOMES
    >>> [OUTCOMES[code] for code in ds.outcome.sel(momentum=0.0).values]
    ['converging', 'converging', 'bounded orbit']
    >>> bool(ds.diverged.sel(lr=0.1, momentum=0.9))  # with heavy ball it blows up
    True
    """
    if chunk_runs is not None:
        chunk_runs = check_int("chunk_runs", chunk_runs, minimum=1)
    # One reading of the free memory for the checks of this call (the spec's, the plan's)
    # in memory; a store or a cluster plans its regions later, each with its own reading.
    with one_memory_reading():
        spec = check_sweep(model, X, Y, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                           nesterov=nesterov, batch_size=batch_size, epochs=epochs, shuffle=shuffle, seed=seed,
                           params0=params0, lr_schedule=lr_schedule, drop_last=drop_last, target=target, dtype=dtype,
                           divergence=divergence, at_once=None if store is None else chunk_runs or _region_runs,
                           track=track)
        if not (isinstance(progress, (bool, np.bool_)) or callable(progress)):
            raise ParameterError(f"progress must be True, False or a callable progress(runs_done, n_runs), "
                                 f"got {progress!r}", "progress")
        if scheduler is None:  # a cluster's workers have their own GPUs (or not)
            get_target(spec.target).check_available()  # raises the clear error if there is no GPU / numba-cuda
        report = (progress_bar(f"sweep of {spec.n_configs} runs", always=True)
                  if progress is True or progress is np.True_ else progress if callable(progress) else None)
        if store is None and scheduler is None:
            if chunk_runs is not None:
                raise ParameterError("chunk_runs is for a store (store='x.zarr') or a cluster (scheduler=...); without "
                                     "them the sweep runs at once", "chunk_runs")
            return _sweep_here(spec, report)
    if store is not None:
        _check_store(store)
    with dask_client(scheduler) as client:
        if chunk_runs is None:
            chunk_runs = _region_runs(spec, None if client is None else cluster_threads(client))
        if store is None:
            return _sweep_on_cluster(spec, client, chunk_runs, report)
        return _sweep_to_store(spec, store, chunk_runs, report, client)


def _sweep_here(spec, report):
    """:func:`sweep` in memory, here: the Dataset is built on the raw arrays while the
    target computes them (where it can: :meth:`gdsim.sweeps.targets.Target.run`), which
    hides its cost behind the runs on a machine with a free core."""
    built = []
    raw = run_points(spec, np.arange(spec.n_configs), report,
                     meanwhile=lambda raw: built.append(grid_dataset(spec, raw)))
    return built[0] if built else grid_dataset(spec, raw)


def _check_store(store):
    """Refuse a ``store`` argument that cannot be a store's path, before any work."""
    if not isinstance(store, (str, os.PathLike)):
        raise ParameterError(f"store must be the path of a Zarr store (str or pathlib.Path), got {store!r}", "store")
    check_folder(Path(store).parent, "the folder of the store (store)")
    if Path(store).exists() and not Path(store).is_dir():
        raise ParameterError(f"{store}: the store (store) is a file, not a Zarr store", "store")


def _sweep_on_cluster(spec, client, chunk_runs, report):
    """:func:`sweep` in memory, its regions computed as tasks on ``client``'s cluster."""
    raw = empty_raw(spec.n_configs, spec.epochs, spec.model.n_params, spec.dtype, tracks=_track_layout(spec))
    done = 0
    for region, part in dask_results(client, RegionWork(run_points), (spec,), plan_regions(grid_shape(spec), chunk_runs)):
        for name, array in part.items():
            raw[name][region.first:region.stop] = array
        done += region.stop - region.first
        if report is not None:
            report(done, spec.n_configs)
    return grid_dataset(spec, raw)


#: The size of a store's region when chunk_runs is not given: big enough that a region's
#: overhead (a task, a record, a few files) is small, small enough to stream.
REGION_BYTES = 8 * 2**20
#: On a cluster, regions are made smaller (down to REGION_BYTES / 8) until each worker
#: thread has this many: the last regions then even out the workers' finishing times.
REGIONS_PER_THREAD = 8


def _region_runs(spec, threads=None):
    """Runs per region (a multiple of 128, at least 128): about :data:`REGION_BYTES` of
    results, or on a cluster of ``threads`` worker threads, fewer runs where that gives each
    thread :data:`REGIONS_PER_THREAD` regions."""
    per_run = (np.dtype(spec.dtype).itemsize * (spec.epochs + 1 + spec.model.n_params) + 34
               + 8 * len(spec.track) * spec.track_steps.size)
    runs = REGION_BYTES // per_run
    if threads:
        runs = min(runs, max(REGION_BYTES // 8 // per_run, -(-spec.n_configs // (REGIONS_PER_THREAD * threads))))
    return max(128, runs // 128 * 128)


def _sweep_to_store(spec, store, chunk_runs, report, client):
    """:func:`sweep` with ``store``: checked, then :func:`gdsim.sweeps.store.fill`."""
    from .. import __version__

    identity = {"sweep_sha256": spec.digest(), "gdsim_version": __version__, "layout": LAYOUT,
                "target_family": get_target(spec.target).family}
    n, epochs, n_params = spec.n_configs, spec.epochs, spec.model.n_params
    return fill(ResultStore(store, spec.dims, identity), grid_shape(spec), chunk_runs,
                task=(run_points, (spec,)), variables=grid_variables,
                template=lambda: grid_dataset(spec, empty_raw(n, epochs, n_params, spec.dtype, lazy=True,
                                                              tracks=_track_layout(spec))),
                progress=report, client=client)


def _track_layout(spec):
    """The ``tracks`` argument of :func:`gdsim.sweeps.dataset.empty_raw` for ``spec``."""
    return tuple(name for name, _ in spec.track), spec.track_steps.size


def run_points(spec, runs, progress=None, meanwhile=None):
    """Run some points of a sweep on its target.

    Parameters
    ----------
    spec : gdsim.sweeps.spec.SweepSpec
    runs : numpy.ndarray of int
        Flat indices of grid points (C order over :data:`gdsim.sweeps.spec.AXES`), increasing.
    progress : callable, optional
        ``progress(runs_done, len(runs))``.
    meanwhile : callable, optional
        ``meanwhile(raw)``, called on this thread while the runs compute by the targets
        that can (:meth:`gdsim.sweeps.targets.Target.run`): ``raw`` is the dict returned,
        its arrays complete only then.

    Returns
    -------
    dict
        :data:`gdsim.sweeps.dataset.RAW_ARRAYS` (and the tracks' arrays), one row per run: each run's result does
        not depend on which other runs share the call (the kernels treat runs
        independently), so chunks of a grid concatenate to the whole grid's result bit for bit.
    """
    if not isinstance(spec, SweepSpec):
        raise ParameterError(f"spec must be a SweepSpec from gdsim.sweeps.check_sweep, got {type(spec).__name__}",
                             "spec")
    runs = as_array("runs", runs)
    inside = runs.size and runs.min() >= 0 and runs.max() < spec.n_configs
    if runs.ndim != 1 or runs.dtype.kind not in "iu" or not inside or np.any(np.diff(runs) <= 0):
        raise ParameterError(f"runs must be increasing integer indices of the grid's {spec.n_configs} points (0 to "
                             f"{spec.n_configs - 1}), got {short_repr(runs)}", "runs")
    if progress is not None and not callable(progress):
        raise ParameterError(f"progress must be None or a callable progress(runs_done, n_runs), got {progress!r}",
                             "progress")
    return add_outcomes(get_target(spec.target).run(make_plan(spec, runs.astype(np.int64)), progress, meanwhile),
                        spec.divergence_rule)
