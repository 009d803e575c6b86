"""The chunk store of a running study: finished chunks of runs saved atomically next to a
manifest, so that a study killed at any point resumes to the same result.

A work folder ``results/NAME.partial/`` holds ``manifest.json`` (the study file's hash,
gdsim's version, the target family, the grid and the chunk size) and
``chunk_NNNNNN.npz`` files; a rerun loads the chunks found and runs only the others.
"""

import json
from pathlib import Path

import numpy as np

from .._io import atomic_write, check_folder
from .._validate import ParameterError, check_int
from ..sweeps.targets import TARGETS, get_target
from .runners import run_study_points, study_dataset
from .schema import Study, StudyError


def run_study(study, *, target=None, progress=None, folder=None, chunk_runs=None):
    """Run a study's grid, in chunks saved to ``folder`` if one is given.

    Parameters
    ----------
    study : Study
        From :func:`load_study`.
    target : {"cpu", "parallel", "cuda"}, optional
        Overrides the study's target (sweep runner only); checked by the target registry
        (:func:`gdsim.sweeps.targets.check_target`) before anything runs.
    progress : callable, optional
        Called as ``progress(runs_done, n_runs)``.
    folder : path, optional
        Work folder for a resumable run: each finished chunk of runs is written there
        atomically (``chunk_NNNNNN.npz``) next to a ``manifest.json`` (the study file's hash,
        gdsim's version, the target and the chunk size); a rerun loads the chunks found and
        runs only the others. A folder made for another study file, gdsim version or
        target is refused (:class:`StudyError`). None: run everything at once, in memory.
    chunk_runs : int, optional
        Runs per chunk; default :data:`CHUNK_RUNS` of the runner (a resumed run keeps the
        manifest's). The result does not depend on it (bit for bit).

    Returns
    -------
    xarray.Dataset
        ``gdsim.sweep``'s result (the train runner's has the same layout, plus
        ``epoch_params`` and ``accuracy`` where its figure needs them), with the study in
        its attributes: ``study``, ``study_title``, ``study_sha256``, ``study_file`` (the
        file's text), ``runner``, ``figure``, ``data``, ``data_seed`` and ``random_draws``.
    """
    if not isinstance(study, Study):
        raise ParameterError(f"study must be a Study from gdsim.studies.load_study, got {type(study).__name__}",
                             "study")
    if progress is not None and not callable(progress):
        raise ParameterError(f"progress must be None or a callable progress(runs_done, n_runs), got {progress!r}",
                             "progress")
    if chunk_runs is not None:
        check_chunk_runs(chunk_runs)
    spec = study_spec(study, target)
    if study.runner == "sweep":
        get_target(spec.target).check_available()  # before a work folder is made
    n_runs = spec.n_configs
    if folder is None:
        return study_dataset(study, spec, run_study_points(study, spec, np.arange(n_runs), progress))
    folder = Path(folder)
    check_folder(folder, "the work folder (folder)")
    chunk_runs = _open_work_folder(study, spec, folder, chunk_runs)
    bounds = list(range(0, n_runs, chunk_runs)) + [n_runs]
    parts = []
    for k, (first, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        path = folder / f"chunk_{k:06d}.npz"
        part = _load_chunk(path, stop - first)
        if part is None:
            report = None if progress is None else (lambda done, total, first=first: progress(first + done, n_runs))
            part = run_study_points(study, spec, np.arange(first, stop), report)
            _save_chunk(path, part)
        elif progress is not None:
            progress(stop, n_runs)
        parts.append(part)
    raw = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    return study_dataset(study, spec, raw)


#: Default runs per chunk of a resumable study: sweeps run blocks of 128 runs on every
#: thread; the train runner's runs can each take seconds.
CHUNK_RUNS = {"sweep": 2048, "train": 1}


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


def _manifest(study, spec, chunk_runs):
    from .. import __version__

    return {"study": study.name, "study_sha256": study.sha256, "gdsim_version": __version__, "runner": study.runner,
            "target": target_family(spec.target), "n_runs": int(spec.n_configs), "chunk_runs": int(chunk_runs)}


def target_family(target):
    """The family of ``target`` (:attr:`gdsim.sweeps.targets.Target.family`): targets of
    one family give the same bits, so their results and chunks may be mixed. A name that is
    not registered (read from an old file) is its own family."""
    return TARGETS[target].family if target in TARGETS else str(target)


def check_work_folder(study, spec, folder):
    """The chunk size recorded in ``folder``'s manifest (None if there is no manifest);
    :class:`StudyError` if its chunks cannot be part of this run."""
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists() and not manifest_path.is_symlink():
        return None
    try:
        found = json.loads(manifest_path.read_text())
    except (OSError, ValueError):  # a folder, unreadable, not JSON
        found = None
    if not isinstance(found, dict):
        raise StudyError(f"{folder} holds part of a run of {study.path} that cannot be resumed ({manifest_path} "
                         "cannot be read as a manifest); rerun with --restart to discard it")
    expected = _manifest(study, spec, found.get("chunk_runs", 1))
    what = {"study_sha256": "the study file changed", "gdsim_version": "gdsim's version changed",
            "target": "the target differs", "runner": "the runner differs", "n_runs": "the grid differs"}
    changed = [key for key in what if found.get(key) != expected[key]]
    chunk_runs = found.get("chunk_runs")
    in_the_way = [p.name for p in folder.glob("chunk_*.npz") if not p.is_file()]
    if in_the_way:
        changed.append("in_the_way")
        what["in_the_way"] = f"{in_the_way[0]} is not a file"
    if changed or isinstance(chunk_runs, bool) or not isinstance(chunk_runs, int) or chunk_runs < 1:
        raise StudyError(f"{folder} holds part of a run of {study.path} that cannot be resumed ("
                         f"{', '.join(what[k] for k in changed) or 'its manifest is unreadable'}); "
                         "rerun with --restart to discard it")
    return found["chunk_runs"]


def _open_work_folder(study, spec, folder, chunk_runs):
    """Check the manifest of ``folder``, or create the folder and its manifest; returns the
    chunk size to use (the manifest's when resuming)."""
    found = check_work_folder(study, spec, folder)
    if found is not None:
        return found
    chunk_runs = CHUNK_RUNS[study.runner] if chunk_runs is None else chunk_runs
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_manifest(study, spec, chunk_runs), indent=2) + "\n"
    atomic_write(folder / "manifest.json", lambda tmp: Path(tmp).write_text(text))
    return chunk_runs


def _save_chunk(path, part):
    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **part)

    atomic_write(path, write)


def _load_chunk(path, n):
    """A chunk's arrays if ``path`` holds a complete one of ``n`` runs, else None."""
    if not path.exists():
        return None
    try:
        with np.load(path) as f:
            part = {key: f[key] for key in f.files}
    except Exception:  # unreadable (truncated, garbled: zipfile, numpy and OS errors alike): run it again
        return None
    if "epoch_loss" not in part or any(a.shape[:1] != (n,) for a in part.values()):
        return None
    return part


def chunks_saved(folder):
    """How many chunk files a work folder holds (0 if there is none)."""
    folder = Path(folder)
    return len(list(folder.glob("chunk_*.npz"))) if folder.is_dir() else 0
