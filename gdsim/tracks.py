"""Observables measured inside the compiled training loop: ``train(..., track={name: k})``
measures ``name`` every ``k`` steps and returns them as ``result.tracks``.

A full-data observable at step ``s`` is measured at the parameters before step ``s``'s
update (``s = 0, k, 2k, ...``, and ``s = n_steps``, the final parameters, when ``k``
divides it); a batch observable at step ``s`` is measured on that step's batch, before its
update (``s < n_steps``). The loop stores the measurement of step ``s`` in row ``s // k``.

* ``loss``, ``grad_norm``: the full-data loss and the Euclidean norm of its gradient.
* ``batch_loss``, ``batch_grad_norm``: the same for the step's batch (free: the step
  computes them anyway). The gradient is the loss's, before weight decay (torch's ``.grad``).
* ``params``: the parameters.
"""

import numpy as np

from ._jit import jit
from ._validate import ParameterError, check_int, closest, short_repr
from .kernels import model_loss_grad

#: The observables, in the order of the loop's ``every`` array: name -> description.
TRACKS = {
    "loss": "full-data loss",
    "grad_norm": "norm of the full-data gradient",
    "batch_loss": "loss of the step's batch",
    "batch_grad_norm": "norm of the gradient of the step's batch",
    "params": "parameters",
}
LOSS, GRAD_NORM, BATCH_LOSS, BATCH_GRAD_NORM, PARAMS = range(len(TRACKS))
#: The scalar observables: one row each of the loop's ``scalars`` output.
SCALARS = ("loss", "grad_norm", "batch_loss", "batch_grad_norm")
#: Measured on the step's batch (the others on the full data).
BATCH_TRACKS = ("batch_loss", "batch_grad_norm")


def check_track(track):
    """``track`` checked: the loop's ``every`` array, int64 ``[len(TRACKS)]`` (0: not tracked).

    Raises
    ------
    gdsim.ParameterError
        Naming ``track`` (not a dict, an unknown name with the closest known one, or a
        period that is not an integer >= 1).
    """
    every = np.zeros(len(TRACKS), dtype=np.int64)
    if track is None:
        return every
    if not isinstance(track, dict):
        raise ParameterError(f"track must be a dict {{name: every k steps}} with names in {list(TRACKS)}, "
                             f"e.g. {{'loss': 1, 'params': 100}}; got {short_repr(track)}", "track")
    names = list(TRACKS)
    for name, k in track.items():
        if name not in TRACKS:
            hint = closest(name, names) if isinstance(name, str) else ""
            raise ParameterError(f"track: unknown observable {short_repr(name)}{hint}; known: {names}", "track")
        every[names.index(name)] = check_int(f"track[{name!r}]", k, minimum=1)
    return every


def new_tracks(every, n_steps, n_params):
    """The loop's outputs for ``every``: ``(scalars, params)``, float64 ``[len(SCALARS),
    rows]`` (NaN where nothing is measured) and ``[rows, n_params]``, with room for the
    measurements of steps ``0 .. n_steps``."""
    rows = [n_steps // k + 1 if k else 0 for k in every]
    scalars = np.full((len(SCALARS), max([rows[i] for i in range(len(SCALARS))] + [0])), np.nan)
    return scalars, np.full((rows[PARAMS], n_params), np.nan)


def tracks_bytes(every, n_steps, n_params):
    """The memory of :func:`new_tracks`' outputs, in bytes (for the memory check)."""
    rows = [n_steps // k + 1 if k else 0 for k in every]
    return 8 * (len(SCALARS) * max(rows[:len(SCALARS)] + [0]) + rows[PARAMS] * n_params)


@jit
def _due(every, i, step):
    return every[i] > 0 and step % every[i] == 0


@jit
def track_full(theta, model, X, Y, step, every, out, work, grad, dense):
    """The full-data observables due at ``step`` (``theta``: the parameters before its
    update); ``out`` = :func:`new_tracks`' ``(scalars, params)``; ``grad``: scratch."""
    scalars, params = out
    want_loss, want_norm = _due(every, LOSS, step), _due(every, GRAD_NORM, step)
    if want_loss or want_norm:
        value = model_loss_grad(theta, model, X, Y, np.arange(X.shape[0]), want_norm, grad, work, dense)
        if want_loss:
            scalars[LOSS, step // every[LOSS]] = value
        if want_norm:
            scalars[GRAD_NORM, step // every[GRAD_NORM]] = np.sqrt(np.sum(grad * grad))
    if _due(every, PARAMS, step):
        params[step // every[PARAMS], :] = theta


@jit
def track_batch(step, every, out, value, grad):
    """The batch observables due at ``step``: its batch's loss ``value`` and gradient ``grad``."""
    scalars = out[0]
    if _due(every, BATCH_LOSS, step):
        scalars[BATCH_LOSS, step // every[BATCH_LOSS]] = value
    if _due(every, BATCH_GRAD_NORM, step):
        scalars[BATCH_GRAD_NORM, step // every[BATCH_GRAD_NORM]] = np.sqrt(np.sum(grad * grad))


def measured_steps(every, n_steps):
    """``{name: the steps where it is measured}`` for the tracked observables of a run of
    ``n_steps``, and the sorted union of those steps (``result.tracks``' ``step``)."""
    measured = {name: np.arange(0, n_steps + (name not in BATCH_TRACKS), every[i])
                for i, name in enumerate(TRACKS) if every[i]}
    return measured, np.unique(np.concatenate(list(measured.values()) + [np.zeros(0, dtype=np.int64)]))


def tracks_dataset(every, out, n_steps):
    """``result.tracks``: an ``xarray.Dataset`` over ``step`` (the steps where anything was
    measured) with one variable per tracked observable (NaN at steps where it was not)."""
    import xarray as xr

    scalars, params = out
    names = list(TRACKS)
    measured, steps = measured_steps(every, n_steps)
    data = {}
    for name, at in measured.items():
        i = names.index(name)
        where = np.searchsorted(steps, at)
        if name == "params":
            values = np.full((steps.size, params.shape[1]), np.nan)
            values[where] = params[:at.size]
            data[name] = (("step", "param"), values, {"long_name": TRACKS[name], "every": int(every[i])})
        else:
            values = np.full(steps.size, np.nan)
            values[where] = scalars[SCALARS.index(name), :at.size]
            data[name] = (("step",), values, {"long_name": TRACKS[name], "every": int(every[i])})
    ds = xr.Dataset(data, coords={"step": steps})
    ds["step"].attrs["description"] = "measured before this step's update (n_steps: after the last)"
    return ds
