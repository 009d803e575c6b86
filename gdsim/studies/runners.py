"""Study runners: compute grid points of a study, and label the result.

``runner = "sweep"`` computes them with :func:`gdsim.sweeps.run_points` (the sweep kernels
on the study's target); ``runner = "train"`` with :func:`gdsim.train`, one call per run (on threads),
keeping the parameters at every epoch (and, for a classifier, the accuracy) when the
study's figure draws them.
"""

import contextlib
import inspect

import numpy as np

from .._jit import kernel_threads, num_threads
from .._threads import end_futures, thread_pool
from ..batches import steps_per_epoch
from ..optim import SGD
from ..sweeps import AXES, grid_dataset, run_points
from ..sweeps.dataset import add_outcomes, grid_variables
from ..tracks import RESULTS, SCALARS, TRACKS, check_track, measured_steps
from ..training import train
from .schema import DATASETS


def _train_points(study, spec, runs, progress=None):
    """Run grid points ``runs`` (flat indices) with :func:`gdsim.train`, one call per run,
    the runs on :func:`gdsim._jit.num_threads` threads (train's loop releases the GIL; each
    run is computed on its own, so the same bits; a run on a thread of the pool cuts its
    matrix products in parts one after the other, :mod:`gdsim.products`): the raw arrays of
    :func:`gdsim.sweeps.run_points`, plus ``epoch_params`` and, for a classifier,
    ``accuracy`` when the figure draws them."""
    model, X, Y = study.model, study.X, study.Y
    fixed = {k: study.settings[k] for k in ("epochs", "shuffle", "drop_last", "params0", "lr_schedule", "track",
                                             "divergence") if k in study.settings}
    keep_params = study.keeps_params  # per-epoch parameters only where the figure draws them
    keys = ["epoch_loss", "diverged_step", "diverged_loss", "params"]
    keys += ["epoch_params"] + (["accuracy"] if model.loss_name == "cross_entropy" else []) if keep_params else []
    steps = track_steps(study, spec)
    tracked = tracked_results(study)
    keys += [f"track_{name}" for name in tracked]
    index = np.unravel_index(runs, spec.shape)

    def run(i):
        """The raw values of run ``i``, by key."""
        p = {name: spec.values[name][index[a][i]] for a, name in enumerate(AXES)}
        optimizer = SGD(lr=float(p["lr"]), momentum=float(p["momentum"]), dampening=float(p["dampening"]),
                        weight_decay=float(p["weight_decay"]), nesterov=bool(p["nesterov"]))
        with kernel_threads(1) if pool else contextlib.nullcontext():
            result = train(model, X, Y, optimizer, batch_size=int(p["batch_size"]), seed=int(p["seed"]),
                           record_params=keep_params, **fixed)
        values = {"epoch_loss": result.epoch_loss, "diverged_step": result.diverged_step,
                  "diverged_loss": result.diverged_loss, "params": result.params}
        if keep_params:
            values["epoch_params"] = result.epoch_params
        for name in tracked:  # on the grid's steps: NaN beyond a shorter run's
            values[f"track_{name}"] = result.tracks[name].reindex(step=steps).values
        if "accuracy" in keys:
            with np.errstate(all="ignore"):  # a blown-up run predicts from NaN logits: 0 accuracy, no warning
                predicted = np.stack([model.predict(t, X).argmax(axis=1) for t in result.epoch_params])
            values["accuracy"] = (predicted == Y[None, :]).mean(axis=1)
        return values

    n_threads = min(num_threads(), len(runs))
    pool = thread_pool(n_threads, "gdsim-train") if n_threads > 1 else None
    futures = [pool.submit(run, i) for i in range(len(runs))] if pool else []
    out = []
    try:
        for i in range(len(runs)):  # in order: the progress counts the runs done before the first still running
            out.append(futures[i].result() if futures else run(i))
            if progress is not None:
                progress(i + 1, len(runs))
    finally:
        end_futures(futures)  # on an error or an interrupt: drop the runs not started, wait for the others
    return add_outcomes({key: np.asarray([values[key] for values in out]) for key in keys}, spec.divergence_rule)


def run_study_points(study, spec, runs, progress=None):
    """The raw arrays of grid points ``runs`` of ``study`` (flat indices, increasing), run
    as ``spec`` says (the study's :class:`~gdsim.sweeps.SweepSpec`, perhaps on another
    target); ``progress(runs_done, len(runs))`` if given."""
    if study.runner == "sweep":
        return run_points(spec, runs, progress)
    return _train_points(study, spec, runs, progress)


def tracked_results(study):
    """The names of the tracked results of a study (``noise_scale`` gives ``b_simple`` and ``b_noise``)."""
    return [result for name in study.settings.get("track", {}) for result in RESULTS[name]]


def track_steps(study, spec):
    """The ``step`` coordinate of a study's tracked observables: every step where any is
    measured in the grid's longest run (None without ``track``)."""
    track = study.settings.get("track")
    if not track:
        return None
    n = study.X.shape[0]
    drop_last = study.settings.get("drop_last", False)
    n_steps = spec.epochs * max(steps_per_epoch(n, int(b), drop_last) for b in spec.values["batch_size"])
    return measured_steps(check_track(track), n_steps)[1]


def study_variables(raw, dims, shape):
    """:func:`gdsim.sweeps.dataset.grid_variables`, plus the train runner's ``epoch_params``
    and ``accuracy`` when ``raw`` has them."""
    variables = grid_variables(raw, dims, shape)
    dims, shape = list(dims), tuple(shape)
    if "epoch_params" in raw:
        variables["epoch_params"] = (dims + ["epoch", "param"], raw["epoch_params"].reshape(
            shape + raw["epoch_params"].shape[1:]), {"long_name": "parameters",
                                                      "description": "before each epoch and after the last"})
    if "accuracy" in raw:
        variables["accuracy"] = (dims + ["epoch"], raw["accuracy"].reshape(shape + raw["accuracy"].shape[1:]),
                                 {"long_name": "training accuracy",
                                  "description": "before each epoch and after the last"})
    for key in raw:
        if key.startswith("track_"):
            name = key[len("track_"):]
            variables[key] = (dims + ["step"] + (["param"] if name == "params" else []),
                              raw[key].reshape(shape + raw[key].shape[1:]),
                              {"long_name": f"{SCALARS.get(name) or TRACKS[name]} (tracked)",
                               "description": "measured before the step's update (gdsim.train's track=); NaN where "
                                              "not measured"})
    return variables


def study_dataset(study, spec, raw):
    """The study's labelled dataset from the raw arrays of all its grid points (NumPy or
    Dask arrays)."""
    ds = grid_dataset(spec, raw, study_variables)
    if "step" in ds.dims:
        ds = ds.assign_coords(step=track_steps(study, spec))
    if study.runner == "train":
        ds.attrs.update(target="cpu (gdsim.train, one call per run, runs on threads)")
    if "file" in study.data:
        source = f"data: the file {study.data['file']} (no random draw)"
    else:
        data_seed = study.data.get("seed",
                                   inspect.signature(DATASETS[study.data["name"]]).parameters["seed"].default)
        source = f"data: gdsim.datasets.{study.data['name']}(seed={data_seed})"
        ds.attrs["data_seed"] = data_seed
    ds.attrs.update(study=study.name, study_title=study.title, study_sha256=study.sha256, study_file=study.text,
                    runner=study.runner, figure=study.figure,
                    data=", ".join(f"{k}={v!r}" for k, v in study.data.items()),
                    random_draws=f"{source}; {ds.attrs['random_draws']}")
    return ds
