"""Many studies at once: check them all (and what ``results/`` holds for them) before the
first runs, run or reuse each, and draw its figure (``gdsim run``, ``gdsim figures``)."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .._io import check_file_target, check_folder, load_dataset, read_attrs
from .._resources import free_disk, size_message
from .._validate import ParameterError, check_int
from ..sweeps.executors import dask_client
from ..sweeps.targets import check_target, get_target
from .jobs import default_jobs, run_in_processes
from .schema import Study, StudyError, load_study

if TYPE_CHECKING:  # for the annotations only: importing xarray costs time
    import xarray
from .store import check_chunk_runs, regions_saved, run_study, store_state, study_spec


#: About the largest PNG of the gallery: the disk a figure needs.
FIGURE_BYTES = 400_000


def _preflight(paths, results, figures, target, redraw, restart, chunk_runs, progress, scheduler=None):
    """Check everything a run of ``paths`` needs before the first study runs: the flags,
    every study file, what ``results`` holds for each, the output folders, each target's
    availability and the disk the results need. Returns ``[(study, zarr, override, state)]``
    (``override``: the --target that applies to the study, or None; ``state``: None,
    "partial", "complete", "redraw" or "redraw stale"); nothing is written."""
    if redraw and restart:
        raise ParameterError("--redraw (never run) and --restart (run again) exclude each other", "redraw")
    if chunk_runs is not None:
        check_chunk_runs(chunk_runs, "--chunk-runs")
    if target is not None:
        check_target(target)
    if progress is not None and not callable(progress):
        raise ParameterError(f"progress must be None or a callable progress(label), got {progress!r}", "progress")
    if isinstance(paths, (str, Path)) or not hasattr(paths, "__len__") or not len(paths):
        raise ParameterError(f"paths must be a non-empty list of study files, got {paths!r}", "paths")
    studies = [load_study(p) for p in paths]
    names = [s.name for s in studies]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise StudyError(f"two study files named {twice[0]!r}: their results would overwrite each other")
    check_folder(figures, "the figures folder (--figures)")
    if not redraw:
        check_folder(results, "the results folder (--results)")
    plans = []
    for study in studies:
        zarr = results / f"{study.name}.zarr"
        check_file_target(figures / f"{study.name}.png", "the figure (--figures)")
        # --target is for sweeps; the train runner runs on the CPU whatever it says.
        override = target if study.runner == "sweep" else None
        if redraw:
            if not zarr.is_dir():
                raise StudyError(f"{zarr}: no saved result to redraw; run `gdsim run {study.path}` first")
            _read_result(zarr, read_attrs)
            try:
                store_state(study, study.spec, zarr)
                state = "redraw"
            except StudyError:  # drawn as it is, and said so
                state = "redraw stale"
        else:
            spec = study_spec(study, override)
            if zarr.exists() and not zarr.is_dir():
                raise StudyError(f"{zarr}: a file is where the study's result store goes; remove it")
            state = None if restart else store_state(study, spec, zarr)
            if state != "complete" and study.runner == "sweep" and scheduler is None:
                _check_available(study, override or study.target, override)
        plans.append((study, zarr, override, state))
    to_run = [p for p in plans if p[3] in (None, "partial")]
    needed = sum(p[0].result_bytes for p in to_run)  # the stores (memory: load_study)
    if needed:
        free = free_disk(results)
        if needed > free:
            raise StudyError(size_message(f"saving the results of {_studies(len(to_run))}", needed, free,
                                          f"on disk in {results}", "run fewer points or epochs, or choose --results"))
    free, needed = free_disk(figures), FIGURE_BYTES * len(plans)
    if needed > free:
        raise StudyError(size_message(f"drawing {len(plans)} figure{'s' * (len(plans) > 1)}", needed, free,
                                      f"on disk in {figures}", "choose --figures"))
    return plans


def _studies(count):
    return f"{count} stud{'ies' if count > 1 else 'y'}"


def _check_available(study, run_target, override):
    """StudyError naming the study file (or --target) if ``run_target`` cannot run here."""
    try:
        get_target(run_target).check_available()
    except RuntimeError as error:
        where = "--target" if override else f"{study.path}: target"
        raise StudyError(f"{where}: {run_target!r} cannot run on this machine: {error}; nothing was run "
                         "(choose another target, e.g. --target parallel)") from None


def _read_result(zarr, read):
    """``read(zarr)`` (:func:`read_attrs` or :func:`load_dataset`), or StudyError naming the
    store and the way out if it cannot be read (damaged, foreign)."""
    try:
        return read(zarr)
    except ParameterError as error:
        raise StudyError(f"cannot read this result: {error}; rerun with --restart to replace it") from None


def run_studies(paths: Sequence[str | os.PathLike], *, results: str | os.PathLike, figures: str | os.PathLike,
                target: str | None = None, redraw: bool = False, restart: bool = False, chunk_runs: int | None = None,
                progress: Callable[[str], Callable[[int, int], object] | None] | None = None, scheduler: object = None,
                workers: int | None = None, quiet: bool = False,
                jobs: int | None = None) -> list[tuple[Study, xarray.Dataset]]:
    """Check every study file, run each one into its store (resuming from the regions
    saved) or check its complete result, and draw its figure.

    Parameters
    ----------
    paths : list of path
        Study files; all of them, and what ``results`` holds for them, are checked
        before the first one runs.
    results, figures : path
        Folders for the stores ``NAME.zarr`` (:func:`run_study`) and for ``NAME.png``.
    target : str, optional
        Overrides the studies' targets (sweep runner).
    redraw : bool
        Draw from the saved results as they are (even out of date), never run.
    restart : bool
        Discard the stores of these studies and run them from scratch.
    chunk_runs : int, optional
        Runs per region of a new store (see :func:`run_study`).
    progress : callable, optional
        ``progress(label)`` returns a ``progress(runs_done, n_runs)`` callback (or None)
        for the study named by ``label``, when the studies run one after another in this
        process. Each study's start and end are printed either way.
    scheduler : distributed.Client or str, optional
        Run the studies' regions as tasks on this Dask cluster (its address).
    workers : int, optional
        Run them on a new ``LocalCluster`` of this many single-threaded worker processes.
    quiet : bool
        Print nothing on stdout (each study's start and end, the total); an interrupted
        study still says on stderr what is saved.
    jobs : int, optional
        How many studies run at once, each in a Python process of its own that runs it
        and draws its figure (:mod:`gdsim.studies.jobs`; without progress bars); 1 runs
        them one after another in this process. Default: one per CPU (at most one per
        study to run), 1 with ``scheduler`` or ``workers`` (the cluster runs the regions).
        The results are the same either way, bit for bit.

    Returns
    -------
    list of (Study, xarray.Dataset)
    """
    # ---- everything checked before the first run ------------------------------------------
    for name, folder in (("results", results), ("figures", figures)):
        if not isinstance(folder, (str, os.PathLike)):
            raise ParameterError(f"{name} must be a folder's path (str or pathlib.Path), got {folder!r}", name)
    results, figures = Path(results), Path(figures)
    if workers is not None:
        check_int("--workers", workers, minimum=1)
    if workers is not None and scheduler is not None:
        raise ParameterError("give --scheduler (an existing cluster) or --workers (a new local one), not both",
                             "workers")
    if jobs is not None:
        check_int("--jobs", jobs, minimum=1)
        if jobs > 1 and (scheduler is not None or workers is not None):
            raise ParameterError("--jobs runs studies in processes of this machine; with --scheduler or --workers "
                                 "the cluster runs the regions: leave --jobs out", "jobs")
    plans = _preflight(paths, results, figures, target, redraw, restart, chunk_runs, progress, scheduler)
    if redraw or scheduler is not None or workers is not None:
        jobs = 1
    jobs = min(default_jobs() if jobs is None else jobs, len(plans))
    with dask_client(scheduler, workers) as client:
        return _run_plans(plans, results, figures, restart, chunk_runs, progress, client, quiet, jobs)


def _run_plans(plans, results, figures, restart, chunk_runs, progress, client, quiet=False, jobs=1):
    """Run (or check, or redraw) each planned study and draw its figure, ``jobs`` at a time
    (see :func:`run_studies`)."""
    from ..figures import draw

    def say(text):
        if not quiet:
            print(text, flush=True)

    def started(plan):
        prefix, study, zarr, override, state = plan
        runner = f"{study.n_runs} runs" + (f" on {override or study.target}" if study.runner == "sweep"
                                           else " with gdsim.train")
        note = {"complete": "; checking the saved result", "partial": f"; resuming from {regions_saved(zarr)} saved "
                "regions"}
        say(f"{prefix}: {study.title} ({runner}{note.get(state, '')})")

    def finished(plan, ds, seconds, what=None):
        prefix, study, zarr, _, state = plan
        what = what or f"{int(ds.diverged.sum())} of {study.n_runs} runs diverged; " + (
            f"up to date ({zarr}; --restart runs it again)" if state == "complete" else f"saved {zarr}")
        say(f"{prefix}: {what}; drew {figures / study.name}.png ({seconds:.1f} s)")

    def interrupted(plan):
        prefix, _, zarr, _, _ = plan
        print(f"\n{prefix}: interrupted; {regions_saved(zarr)} finished regions are saved in {zarr}; "
              "run the same command again to resume", file=sys.stderr, flush=True)

    # ---- run -------------------------------------------------------------------------------
    start = time.perf_counter()
    plans = [(f"[{i}/{len(plans)}] {study.name}", study, zarr, override, state)
             for i, (study, zarr, override, state) in enumerate(plans, 1)]
    if jobs > 1:
        done = run_in_processes(plans, results, figures, restart, chunk_runs, jobs, (started, finished, interrupted))
        say(f"{len(plans)} studies done in {time.perf_counter() - start:.1f} s")
        return [(plan[1], done[plan[0]]) for plan in plans]
    done = []
    for plan in plans:
        prefix, study, zarr, override, state = plan
        t0 = time.perf_counter()
        what = None
        if state.startswith("redraw") if state else False:
            ds = _read_result(zarr, load_dataset)
            what = "redrawn" + (" from an out-of-date result (run it without --redraw to update it)"
                                if state == "redraw stale" else "")
        else:
            if restart:
                shutil.rmtree(zarr, ignore_errors=True)
            started(plan)
            try:
                ds = run_study(study, target=override, progress=progress(prefix) if progress else None,
                               store=zarr, chunk_runs=chunk_runs, scheduler=client)
            except KeyboardInterrupt:
                interrupted(plan)
                raise
        draw(study, ds, figures / f"{study.name}.png")
        finished(plan, ds, time.perf_counter() - t0, what)
        done.append((study, ds))
    say(f"{len(plans)} studies done in {time.perf_counter() - start:.1f} s")
    return done
