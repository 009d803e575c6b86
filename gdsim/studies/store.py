"""A study's result in its Zarr store, ``results/NAME.zarr``: created with the whole
layout, filled region by region as the runs finish, resumed after any interruption (see
:mod:`gdsim.sweeps.store`: each region's record says what it holds, and a region not found
intact is computed again).

A store is keyed on the study's content (:attr:`Study.content_sha256`), gdsim's version and
the target family: a store made otherwise is refused, with ``--restart`` as the way out.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._io import check_folder
from .._jit import num_threads
from .._validate import ParameterError, check_int
from ..sweeps.dataset import LAYOUT, empty_raw, grid_shape
from ..sweeps.executors import dask_client
from ..sweeps.store import RECORD_NAMES, RECORDS, ResultStore, fill, plan_regions
from ..sweeps.targets import TARGETS, get_target
from .runners import run_study_points, study_dataset, study_variables, track_steps, tracked_results
from .schema import Study, StudyError

if TYPE_CHECKING:  # for the annotations only: importing xarray costs time
    import xarray

#: Default runs per region of a study's store: sweeps run blocks of 128 runs on every
#: thread; the train runner's runs can each take seconds.
CHUNK_RUNS = {"sweep": 2048, "train": 1}


def region_threads(runner, chunk_runs):
    """How many regions of a store to compute at a time here: a sweep's region uses every
    thread itself; the train runner's regions of one run (its default) use one each, so as
    many run at once as there are threads (one after another, ``gdsim figures`` kept a core
    idle through its train studies' runs)."""
    if runner != "train":
        return 1
    return max(1, num_threads() // chunk_runs)


def run_study(study: Study, *, target: str | None = None, progress: Callable[[int, int], object] | None = None,
              store: str | os.PathLike | None = None, chunk_runs: int | None = None,
              scheduler: object = None) -> xarray.Dataset:
    """Run a study's grid, streamed region by region to ``store`` if one is given.

    Parameters
    ----------
    study : Study
        From :func:`load_study`.
    target : {"cpu", "parallel", "cuda"}, optional
        Overrides the study's target (sweep runner only); checked by the target registry
        (:func:`gdsim.sweeps.targets.check_target`) before anything runs.
    progress : callable, optional
        Called as ``progress(runs_done, n_runs)``.
    store : path, optional
        The study's Zarr store (``results/NAME.zarr``): created with the result's layout,
        then filled region by region; a rerun computes only the regions not found intact.
        A store made from another study content, gdsim version or target family is
        refused (:class:`StudyError`). None: run everything at once, in memory.
    chunk_runs : int, optional
        Runs per region of a new store; default :data:`CHUNK_RUNS` of the runner (a
        resumed store keeps its own). The result does not depend on it (bit for bit).
    scheduler : distributed.Client or str, optional
        Compute the store's regions as tasks on a Dask cluster (see :func:`gdsim.sweep`);
        needs ``store``.

    Returns
    -------
    xarray.Dataset
        ``gdsim.sweep``'s result (the train runner's has the same layout, plus
        ``epoch_params`` and ``accuracy`` where its figure needs them), with the study in
        its attributes: ``study``, ``study_title``, ``study_sha256``, ``study_file`` (the
        file's text), ``runner``, ``figure``, ``data``, ``data_seed`` and ``random_draws``.
        Opened lazily from the store when there is one.
    """
    if not isinstance(study, Study):
        raise ParameterError(f"study must be a Study from gdsim.studies.load_study, got {type(study).__name__}",
                             "study")
    if progress is not None and not callable(progress):
        raise ParameterError(f"progress must be None or a callable progress(runs_done, n_runs), got {progress!r}",
                             "progress")
    if chunk_runs is not None:
        check_chunk_runs(chunk_runs)
    if scheduler is not None and store is None:
        raise ParameterError("scheduler needs a store: a study on a cluster streams its regions to store=...",
                             "scheduler")
    spec = study_spec(study, target)
    if study.runner == "sweep" and scheduler is None:  # a cluster's workers have their own GPUs (or not)
        get_target(spec.target).check_available()  # before a store is made
    if store is None:
        return study_dataset(study, spec, run_study_points(study, spec, np.arange(spec.n_configs), progress))
    check_folder(Path(store).parent, "the folder of the store (store)")
    result = study_store(study, spec, store)
    with dask_client(scheduler) as client:
        try:
            chunk_runs = CHUNK_RUNS[study.runner] if chunk_runs is None else chunk_runs
            return fill(result, grid_shape(spec), chunk_runs, task=(run_study_points, (study, spec)),
                        variables=study_variables, template=lambda: study_dataset(study, spec, _lazy_raw(study, spec)),
                        progress=progress, client=client, threads=region_threads(study.runner, chunk_runs))
        except ParameterError as error:  # another study's store, or one that cannot be read
            raise StudyError(f"{error}; rerun with --restart to replace it") from None


def study_store(study, spec, path):
    """The :class:`~gdsim.sweeps.store.ResultStore` of ``study`` run as ``spec`` says, at ``path``."""
    from .. import __version__

    family = TARGETS[spec.target].family if study.runner == "sweep" else "cpu"
    identity = {"study_sha256": study.content_sha256, "gdsim_version": __version__, "layout": LAYOUT,
                "target_family": family}
    return ResultStore(path, spec.dims, identity)


def store_state(study, spec, path):
    """What ``path`` holds for this study: None (nothing), "complete" or "partial" (its
    identity matches; "complete" when every region has a record, before any data is
    checked); StudyError naming what differs, or what cannot be read, otherwise."""
    store = study_store(study, spec, path)
    if not Path(path).exists():
        return None
    if not Path(path).is_dir():
        raise StudyError(f"{path}: a file is where the study's result store goes; remove it")
    try:
        found = store.stored_identity()
    except ParameterError as error:
        raise StudyError(f"{error}; rerun with --restart to replace it") from None
    what = {"study_sha256": "the study's content changed", "gdsim_version": f"it was made by gdsim "
            f"{found.get('gdsim_version')}", "target_family": f"it was run on {found.get('target_family')!r}",
            "layout": "its variables are those of another gdsim"}
    changed = [what[key] for key in store.identity if found.get(key) != store.identity[key]]
    if changed:
        raise StudyError(f"{path} is a result of {study.path} that is out of date ({'; '.join(changed)}); "
                         "rerun with --restart to replace it (or --redraw to draw it as it is)")
    chunk_runs = found.get("chunk_runs")
    if isinstance(chunk_runs, bool) or not isinstance(chunk_runs, int) or chunk_runs < 1:
        raise StudyError(f"{path}: its recorded chunk_runs ({chunk_runs!r}) is damaged; rerun with --restart to "
                         "replace it")
    regions = plan_regions(grid_shape(spec), chunk_runs)
    return "complete" if all(store.has_record(r) for r in regions) else "partial"


def _lazy_raw(study, spec):
    """The raw arrays of the whole grid as never-computed Dask zeros: the store's layout."""
    import dask.array as da

    n, epochs, n_params = spec.n_configs, spec.epochs, study.model.n_params
    raw = empty_raw(n, epochs, n_params, spec.dtype, lazy=True)
    if study.keeps_params:
        raw["epoch_params"] = da.zeros((n, epochs + 1, n_params))
        if study.model.loss_name == "cross_entropy":
            raw["accuracy"] = da.zeros((n, epochs + 1))
    steps = track_steps(study, spec)
    for name in tracked_results(study):
        raw[f"track_{name}"] = da.zeros((n, len(steps)) + ((n_params,) if name == "params" else ()))
    return raw


def regions_saved(path: str | os.PathLike) -> int:
    """How many region records a store holds (0 if there is none)."""
    records = Path(path) / RECORDS
    return len(list(records.glob(RECORD_NAMES))) if records.is_dir() else 0


def check_chunk_runs(chunk_runs, name="chunk_runs"):
    """``chunk_runs`` if it is an integer >= 1, else ParameterError naming ``name``."""
    return check_int(name, chunk_runs, minimum=1)


def study_spec(study, target=None):
    """The study's :class:`~gdsim.sweeps.SweepSpec`, on ``target`` if one is given.

    Raises
    ------
    gdsim._validate.ParameterError
        If ``target`` is not a registered target (the registry's message).
    StudyError
        If the train runner is asked for another target than the CPU.
    """
    if target is None:
        return study.spec
    spec = study.spec.with_target(target)
    if study.runner == "train" and target != "cpu":
        raise StudyError(f"{study.path}: target {target!r}: the train runner runs on the CPU only")
    return spec
