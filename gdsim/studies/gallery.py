"""Many studies at once: check them all (and what ``results/`` holds for them) before the
first runs, run or reuse each, and draw its figure (``gdsim run``, ``gdsim figures``)."""

import os
import shutil
import sys
import time
from pathlib import Path

from .._io import check_file_target, check_folder, load_dataset, read_attrs, save_dataset
from .._resources import free_disk, size_message
from .._validate import ParameterError
from ..sweeps.targets import check_target, get_target
from .schema import StudyError, load_study
from .store import check_chunk_runs, chunks_saved, check_work_folder, run_study, study_spec, target_family


def _result_state(study, nc, target, restart):
    """"current" if ``nc`` holds this study's result, None if there is none (or ``restart``);
    :class:`StudyError` if it was made from another study file, gdsim version or target."""
    from .. import __version__

    if restart or not nc.exists():
        return None
    if not nc.is_file():
        raise StudyError(f"{nc}: a folder is where the study's result file goes; remove it")
    attrs = _read_result(nc, read_attrs)
    problems = []
    if attrs.get("study_sha256") != study.sha256:
        problems.append("the study file changed")
    if attrs.get("gdsim_version") != __version__:
        problems.append(f"it was made by gdsim {attrs.get('gdsim_version')}, this is {__version__}")
    if study.runner == "sweep" and target_family(str(attrs.get("target"))) != target_family(target):
        problems.append(f"it was run on {attrs.get('target')!r}, not {target!r}")
    if problems:
        raise StudyError(f"{nc} is a result of {study.path} that is out of date ({'; '.join(problems)}); "
                         "rerun with --restart to replace it (or --redraw to draw it as it is)")
    return "current"


#: About the largest PNG of the gallery: the disk a figure needs.
FIGURE_BYTES = 400_000


def _preflight(paths, results, figures, target, redraw, restart, chunk_runs, progress):
    """Check everything a run of ``paths`` needs before the first study runs: the flags,
    every study file, what ``results`` holds for each, the output folders, each target's
    availability and the disk the results need. Returns ``[(study, nc, partial,
    override, state)]`` (``override``: the --target that applies to the study, or None); nothing
    is written."""
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
        nc, partial = results / f"{study.name}.nc", results / f"{study.name}.partial"
        check_file_target(figures / f"{study.name}.png", "the figure (--figures)")
        # --target is for sweeps; the train runner runs on the CPU whatever it says.
        override = target if study.runner == "sweep" else None
        run_target = override or study.target
        if redraw:
            if not nc.is_file():
                raise StudyError(f"{nc}: no saved result to redraw; run `gdsim run {study.path}` first")
            if _read_result(nc, read_attrs).get("study_sha256") != study.sha256:
                raise StudyError(f"{nc} was made from another version of {study.path} (hash differs); run it again")
            state = "redraw"
        else:
            spec = study_spec(study, override)
            state = _result_state(study, nc, run_target, restart)
            if state is None:
                check_file_target(nc, "the result (--results)")
                if partial.exists() and not partial.is_dir():
                    raise StudyError(f"{partial}: a file is where the study's work folder goes; remove it")
                if not restart:
                    check_work_folder(study, spec, partial)
                if study.runner == "sweep":
                    _check_available(study, run_target, override)
        plans.append((study, nc, partial, override, state))
    to_run = [p for p in plans if p[4] is None]
    needed = 2 * sum(p[0].result_bytes for p in to_run)  # the chunks and the final file (memory: load_study)
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


def _read_result(nc, read):
    """``read(nc)`` (:func:`read_attrs` or :func:`load_dataset`), or StudyError naming the
    file and the way out if it cannot be read (truncated, foreign, corrupt)."""
    try:
        return read(nc)
    except ParameterError as error:
        raise StudyError(f"cannot read this result file: {error}; rerun with --restart to replace it") from None


def run_studies(paths, *, results, figures, target=None, redraw=False, restart=False, chunk_runs=None,
                progress=None):
    """Check every study file, run each one (resuming from saved chunks) or reuse its
    up-to-date result, and draw its figure.

    Parameters
    ----------
    paths : list of path
        Study files; all of them, and what ``results`` holds for them, are checked
        before the first one runs.
    results, figures : path
        Folders for ``NAME.nc`` (and, while it runs, the chunks in ``NAME.partial/``) and
        for ``NAME.png``.
    target : str, optional
        Overrides the studies' targets (sweep runner).
    redraw : bool
        Draw from the saved results, never run; a result made from another version of the
        study file (its hash differs) is refused.
    restart : bool
        Discard saved results and chunks of these studies and run them from scratch.
    chunk_runs : int, optional
        Runs per chunk (see :func:`run_study`).
    progress : callable, optional
        ``progress(label)`` returns a ``progress(runs_done, n_runs)`` callback (or None)
        for the study named by ``label``. Each study's start and end are printed either way.

    Returns
    -------
    list of (Study, xarray.Dataset)
    """
    from ..figures import draw

    # ---- everything checked before the first run ------------------------------------------
    for name, folder in (("results", results), ("figures", figures)):
        if not isinstance(folder, (str, os.PathLike)):
            raise ParameterError(f"{name} must be a folder's path (str or pathlib.Path), got {folder!r}", name)
    results, figures = Path(results), Path(figures)
    plans = _preflight(paths, results, figures, target, redraw, restart, chunk_runs, progress)

    # ---- run -------------------------------------------------------------------------------
    done = []
    start = time.perf_counter()
    for i, (study, nc, partial, override, state) in enumerate(plans, 1):
        prefix = f"[{i}/{len(plans)}] {study.name}"
        t0 = time.perf_counter()
        if state is not None:
            ds = _read_result(nc, load_dataset)
            what = "redrawn" if state == "redraw" else f"up to date ({nc}; --restart runs it again)"
        else:
            if restart:  # the old result stays until the new one replaces it
                shutil.rmtree(partial, ignore_errors=True)
            resumed = chunks_saved(partial)
            runner = f"{study.n_runs} runs" + (f" on {override or study.target}" if study.runner == "sweep"
                                               else " with gdsim.train")
            print(f"{prefix}: {study.title} ({runner}" + (f"; resuming from {resumed} saved chunks" if resumed
                                                            else "") + ")", flush=True)
            try:
                ds = run_study(study, target=override, progress=progress(prefix) if progress else None,
                               folder=partial, chunk_runs=chunk_runs)
            except KeyboardInterrupt:
                print(f"\n{prefix}: interrupted; {chunks_saved(partial)} finished chunks are saved in {partial}; "
                      "run the same command again to resume", file=sys.stderr, flush=True)
                raise
            save_dataset(ds, nc)
            shutil.rmtree(partial, ignore_errors=True)
            n_diverged = int(ds.diverged.sum())
            what = f"{n_diverged} of {study.n_runs} runs diverged; saved {nc}"
        draw(study, ds, figures / f"{study.name}.png")
        print(f"{prefix}: {what}; drew {figures / study.name}.png ({time.perf_counter() - t0:.1f} s)", flush=True)
        done.append((study, ds))
    print(f"{len(plans)} studies done in {time.perf_counter() - start:.1f} s", flush=True)
    return done
