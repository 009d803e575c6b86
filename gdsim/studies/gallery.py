"""Many studies at once: check them all (and what ``results/`` holds for them) before the
first runs, run or reuse each, and draw its figure (``gdsim run``, ``gdsim figures``)."""

import shutil
import sys
import time
from pathlib import Path

from .._io import load_dataset, read_attrs, save_dataset
from .._resources import free_disk
from .._validate import format_bytes
from .schema import StudyError, load_study
from .store import chunks_saved, check_work_folder, run_study, study_spec, target_family


def _result_state(study, nc, target, restart):
    """"current" if ``nc`` holds this study's result, None if there is none (or ``restart``);
    :class:`StudyError` if it was made from another study file, gdsim version or target."""
    from .. import __version__

    if restart or not nc.exists():
        return None
    attrs = read_attrs(nc)
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
    if redraw and restart:
        raise ValueError("--redraw (never run) and --restart (run again) exclude each other")
    if chunk_runs is not None and (isinstance(chunk_runs, bool) or not isinstance(chunk_runs, int) or chunk_runs < 1):
        raise ValueError(f"--chunk-runs must be an integer >= 1, got {chunk_runs!r}")
    studies = [load_study(p) for p in paths]
    names = [s.name for s in studies]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise StudyError(f"two study files named {twice[0]!r}: their results would overwrite each other")
    results, figures = Path(results), Path(figures)
    plans = []
    for study in studies:
        nc, partial = results / f"{study.name}.nc", results / f"{study.name}.partial"
        run_target = target or study.target
        if redraw:
            if not nc.exists():
                raise StudyError(f"{nc}: no saved result to redraw; run `gdsim run {study.path}` first")
            if read_attrs(nc).get("study_sha256") != study.sha256:
                raise StudyError(f"{nc} was made from another version of {study.path} (hash differs); run it again")
            state = "redraw"
        else:
            spec = study_spec(study, target)
            state = _result_state(study, nc, run_target, restart)
            if state is None and not restart:
                check_work_folder(study, spec, partial)
        plans.append((study, nc, partial, run_target, state))
    to_run = [p for p in plans if p[4] is None]
    needed = 2 * sum(p[0].result_bytes for p in to_run)  # the chunks and the final file (memory: load_study)
    if needed:
        free = free_disk(results)
        if needed > free:
            raise StudyError(f"the results need about {format_bytes(needed)} on disk in {results} but only "
                             f"{format_bytes(free)} is free; run fewer points or epochs, or choose --results")

    # ---- run -------------------------------------------------------------------------------
    done = []
    start = time.perf_counter()
    for i, (study, nc, partial, run_target, state) in enumerate(plans, 1):
        prefix = f"[{i}/{len(studies)}] {study.name}"
        t0 = time.perf_counter()
        if state is not None:
            ds = load_dataset(nc)
            what = "redrawn" if state == "redraw" else f"up to date ({nc}; --restart runs it again)"
        else:
            if restart:
                nc.unlink(missing_ok=True)
                shutil.rmtree(partial, ignore_errors=True)
            resumed = chunks_saved(partial)
            runner = f"{study.n_runs} runs" + (f" on {run_target}" if study.runner == "sweep" else " with gdsim.train")
            print(f"{prefix}: {study.title} ({runner}" + (f"; resuming from {resumed} saved chunks" if resumed
                                                            else "") + ")", flush=True)
            try:
                ds = run_study(study, target=target, progress=progress(prefix) if progress else None, folder=partial,
                               chunk_runs=chunk_runs)
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
    print(f"{len(studies)} studies done in {time.perf_counter() - start:.1f} s", flush=True)
    return done
