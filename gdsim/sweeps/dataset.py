"""The result schema of a sweep, in one place: the raw arrays targets fill, and the
labelled ``xarray.Dataset`` built from them.

A new recorded quantity is a new entry of :data:`RAW_ARRAYS` (and of :func:`grid_dataset`'s
variables) plus the kernels that fill it. The tracks (``sweep(..., track=)``) are one raw
array per tracked observable, named :data:`TRACK_PREFIX` + its name, over the ``step`` axis.
"""

import numpy as np

from ..batches import steps_per_epoch
from ..outcomes import DIVERGED, cf_attrs, classify, classify_into
from ..tracks import SCALARS, TRACKS
from .spec import AXES

#: The raw arrays of a range of runs: name -> (the axes after the run axis, dtype), where
#: "float" is the sweep's dtype, "epoch" has ``epochs + 1`` entries and "param" ``n_params``.
#: The targets fill the first four (the CPU targets also ``outcome`` and ``growth_rate``,
#: :func:`classify_runs`); :func:`add_outcomes` the others, from them.
RAW_ARRAYS = {
    "epoch_loss": (("epoch",), "float"),
    "params": (("param",), "float"),
    "diverged_step": ((), np.int64),
    "diverged_loss": ((), np.float64),
    "outcome": ((), np.int8),
    "growth_rate": ((), np.float64),
    "diverged": ((), np.bool_),
}
#: The variables a result store holds, part of its identity: a store of another layout
#: (made by an older gdsim) is not resumed or taken as up to date.
LAYOUT = " ".join(RAW_ARRAYS)


def add_outcomes(raw, divergence_rule):
    """Add to ``raw`` (the targets' arrays of some runs) each run's ``outcome`` and
    ``growth_rate`` (:func:`gdsim.outcomes.classify`; kept if ``raw`` has them: the CPU
    targets classify each range of runs as it finishes, :func:`classify_runs`) and its
    ``diverged`` flag: the outcome "diverged" under ``divergence_rule`` "growth", marked by
    the threshold under "threshold", written into ``raw["diverged"]`` if it is there. Returns ``raw``."""
    if "outcome" not in raw or "growth_rate" not in raw:
        raw["outcome"], raw["growth_rate"] = classify(raw["epoch_loss"])
    diverged = (raw["outcome"] == DIVERGED) if divergence_rule == "growth" else raw["diverged_step"] >= 0
    if "diverged" in raw:  # in place: a Dataset built on raw's arrays as they were computed holds it too
        raw["diverged"][...] = diverged
    else:
        raw["diverged"] = diverged
    return raw


def classify_runs(raw, runs):
    """Fill ``raw["outcome"]`` and ``raw["growth_rate"]`` of the rows ``runs`` (increasing,
    distinct) from ``raw["epoch_loss"]`` (:func:`gdsim.outcomes.classify_into`, on this
    thread): for a target that classifies its runs as it computes them."""
    if runs.size == 0:
        return
    first, stop = runs[0], runs[-1] + 1
    if stop - first == runs.size:  # consecutive rows (a sweep's usual range): views, no copies
        classify_into(raw["epoch_loss"][first:stop], raw["outcome"][first:stop], raw["growth_rate"][first:stop])
        return
    outcome, rate = np.empty(runs.size, dtype=np.int8), np.empty(runs.size)
    classify_into(raw["epoch_loss"][runs], outcome, rate)
    raw["outcome"][runs], raw["growth_rate"][runs] = outcome, rate


#: The raw array of each tracked observable (``track=``): ``TRACK_PREFIX + name``, float64
#: ``[n_runs, steps]`` over the result's ``step`` coordinate (NaN where a run measured nothing).
TRACK_PREFIX = "track_"


def split_tracks(block, names):
    """The raw arrays of the tracks ``names`` from one float64 array ``[n_runs,
    len(names), steps]`` (views)."""
    return {TRACK_PREFIX + name: block[:, i] for i, name in enumerate(names)}


def grid_shape(spec):
    """The result's shape over its dimensions (the swept axes, :attr:`SweepSpec.dims`)."""
    return tuple(len(spec.values[name]) for name in spec.dims)


def empty_raw(n_runs, epochs, n_params, dtype, lazy=False, tracks=((), 0)):
    """Uninitialised :data:`RAW_ARRAYS` for ``n_runs`` runs, each ``[n_runs, ...]``
    (``lazy``: Dask arrays of zeros that are never computed, for a store's layout), and
    with ``tracks = (names, steps)`` the tracked observables' arrays over ``steps``
    measured steps (NaN-filled: a run fills only the steps it measures)."""
    sizes = {"epoch": epochs + 1, "param": n_params}
    if lazy:
        import dask.array as da

    new = da.zeros if lazy else np.empty
    raw = {name: new((n_runs,) + tuple(sizes[a] for a in axes), dtype=dtype if kind == "float" else kind)
           for name, (axes, kind) in RAW_ARRAYS.items()}
    names, steps = tracks
    if lazy:
        return raw | {TRACK_PREFIX + name: da.zeros((n_runs, steps)) for name in names}
    return raw | split_tracks(np.full((n_runs, len(names), steps), np.nan), names)


def grid_variables(raw, dims, shape):
    """The result's variables from the raw arrays of the runs of a grid (or of a
    rectangular region of it) of ``shape`` over ``dims``, in C order: name -> (dims,
    array, attrs), the tracks' raw arrays as they are (over ``step``). NumPy or Dask arrays alike."""
    def grid(a):
        return a.reshape(tuple(shape) + a.shape[1:])

    dims = list(dims)
    epoch_loss = grid(raw["epoch_loss"])
    diverged_step = grid(raw["diverged_step"])
    return {
        "loss": (dims + ["epoch"], epoch_loss,
                 {"long_name": "full-data loss", "description": "before each epoch and after the last"}),
        "final_loss": (dims, epoch_loss[..., -1], {"long_name": "final loss"}),
        "outcome": (dims, grid(raw["outcome"]), cf_attrs()),
        "growth_rate": (dims, grid(raw["growth_rate"]),
                        {"long_name": "growth rate of the loss per epoch", "description": "fitted over the last half "
                         "of the epochs (gdsim.outcomes)"}),
        "diverged": (dims, grid(raw["diverged"]), {"long_name": "diverged"}),
        "diverged_step": (dims, diverged_step, {"long_name": "step marked as diverged", "description": "-1 if never"}),
        "diverged_loss": (dims, grid(raw["diverged_loss"]), {"long_name": "loss that marked divergence"}),
        "params": (dims + ["param"], grid(raw["params"]),
                   {"long_name": "final parameters", "description": "flat, in torch's order"}),
    } | {key: _track_variable(key[len(TRACK_PREFIX):], grid(raw[key]), dims)
         for key in raw if key.startswith(TRACK_PREFIX)}


def _track_variable(name, array, dims):
    """The variable of a tracked result: ``sweep``'s scalars, or also the train runner's
    (:mod:`gdsim.studies.runners`: ``params`` over ``param``, ``noise_scale``'s results)."""
    return (dims + ["step"] + (["param"] if name == "params" else []), array,
            {"long_name": SCALARS.get(name) or TRACKS[name]})


def grid_dataset(spec, raw, variables=grid_variables):
    """The labelled result of a sweep (see :func:`gdsim.sweep`) from the raw arrays of
    every grid point (:func:`gdsim.sweeps.run_points`, in order).

    Parameters
    ----------
    spec : gdsim.sweeps.spec.SweepSpec
    raw : dict
        :data:`RAW_ARRAYS` of every run, in the grid's flat (C) order (NumPy or Dask arrays).
    variables : callable, optional
        ``variables(raw, dims, shape)`` -> the variables (default :func:`grid_variables`;
        a study adds its own).

    Returns
    -------
    xarray.Dataset
    """
    from .. import __version__
    from .._gc import gc_paused

    with gc_paused():  # the first import of xarray (and pandas)
        import xarray as xr  # imported here: only sweeps need it

    model, values, swept = spec.model, spec.values, spec.swept
    dims = list(spec.dims)
    coords = {name: values[name] for name in dims}
    # The coordinates' attributes given with them (setting them on the Dataset after costs
    # a DataArray each).
    coords["epoch"] = ("epoch", np.arange(spec.epochs + 1),
                       {"description": "loss[epoch] is measured before that epoch; loss[epochs] after the last"})
    coords["param"] = np.arange(model.n_params)
    if spec.track:
        coords["step"] = ("step", spec.track_steps, {
            "description": "track_* measured before this step's update (a run's n_steps: after its last); NaN where "
                           "a run measured nothing"})
    ds = xr.Dataset({name: _variable(*v) for name, v in variables(raw, dims, grid_shape(spec)).items()},
                    coords={name: _coordinate(name, c) for name, c in coords.items()})
    for name, every in spec.track:
        ds[TRACK_PREFIX + name].attrs["every"] = every
    fixed = {name: (values[name][0].item()) for name in AXES if not swept[name]}
    schedule = spec.schedule
    ds.attrs.update(
        model=repr(model), n_params=model.n_params, n_samples=spec.n, n_in=model.n_in, n_out=model.n_out,
        epochs=spec.epochs, shuffle=spec.shuffle, drop_last=spec.drop_last,
        params0="given" if spec.params0 is not None else "model.init(seed)",
        lr_schedule="none" if schedule is None else repr(schedule if isinstance(schedule, tuple) else schedule.tolist()),
        divergence_factor=spec.divergence_factor, stop_diverged=spec.stop_diverged,
        divergence_rule=spec.divergence_rule, target=spec.target,
        dtype=spec.dtype, gdsim_version=__version__, random_draws=spec.random_draws(), **fixed)
    if not swept["batch_size"]:
        ds.attrs["steps_per_epoch"] = steps_per_epoch(spec.n, int(values["batch_size"][0]), spec.drop_last)
    return ds


# xarray checks whether each NumPy array it is given is a Dask array, which imports Dask
# (0.15-0.2 s, a fifth of a new process's first sweep); arrays it is given as a Variable
# made with ``fastpath`` (data: taken as it is) and an index given as a ``pandas.Index``
# skip those checks. The result is the same Dataset: xarray converts other arrays to these.
def _variable(dims, data, attrs=None):
    """A result variable from ``(dims, data, attrs)``: NumPy data (not of object, datetime
    or timedelta dtype, which xarray converts) in an ``xarray.Variable`` as it is; the tuple
    for xarray to convert otherwise (Dask arrays)."""
    import xarray as xr

    if type(data) is np.ndarray and data.dtype.kind not in "OMm":
        return xr.Variable(dims, data, attrs, fastpath=True)
    return (dims, data, attrs)


def _coordinate(name, coordinate):
    """The coordinate ``name`` of a result from its values, or ``(dim, values, attrs)``: its
    values as a ``pandas.Index`` of the same dtype where pandas keeps it (numbers, bools)."""
    import pandas as pd

    dim, values, attrs = coordinate if isinstance(coordinate, tuple) else (name, coordinate, None)
    if type(values) is np.ndarray and values.ndim == 1 and dim == name:
        index = pd.Index(values)
        if index.dtype == values.dtype:
            return (dim, index, attrs)
    return (dim, values, attrs)
