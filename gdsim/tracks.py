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
* ``sharpness``, ``batch_sharpness``: the top eigenvalue of the Hessian of the full-data
  loss and of the step's batch loss (the reduced loss, as the model defines it: compare it
  with ``2 / lr``), by Lanczos on exact Hessian-vector products
  (:func:`gdsim.hvp.lanczos_top`), each warm-started from its previous eigenvector.
* ``noise_scale``: the gradient noise scales of McCandlish et al. (2018) at the full data,
  ``b_simple = tr(S) / |G|^2`` and ``b_noise = tr(H S) / (G^T H G)``, with ``G`` the mean
  of the samples' own gradients ``g_i``, ``S = mean_i (g_i - G)(g_i - G)^T`` their
  covariance over the data set and ``H`` the loss's Hessian. It costs ``n`` Hessian-vector
  products over the whole data (``n^2`` sample products): track it every many steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # for the annotations only: importing xarray costs time
    import xarray

from . import hvp
from ._jit import jit, jit_inline
from ._validate import ParameterError, check_int, closest, short_repr
from .dense import dense_workspace_bytes, model_loss_grad, new_dense_hvp_workspace
from .kernels import per_sample_grads, store_row

#: The observables, in the order of the loop's ``every`` array: name -> description.
TRACKS = {
    "loss": "full-data loss",
    "grad_norm": "norm of the full-data gradient",
    "batch_loss": "loss of the step's batch",
    "batch_grad_norm": "norm of the gradient of the step's batch",
    "params": "parameters",
    "sharpness": "top eigenvalue of the full-data loss's Hessian",
    "batch_sharpness": "top eigenvalue of the Hessian of the step's batch loss",
    "noise_scale": "gradient noise scales (McCandlish et al. 2018)",
}
LOSS, GRAD_NORM, BATCH_LOSS, BATCH_GRAD_NORM, PARAMS, SHARPNESS, BATCH_SHARPNESS, NOISE_SCALE = range(len(TRACKS))
#: The scalar results: one row each of the loop's ``scalars`` output, and their descriptions.
SCALARS = {
    "loss": TRACKS["loss"], "grad_norm": TRACKS["grad_norm"], "batch_loss": TRACKS["batch_loss"],
    "batch_grad_norm": TRACKS["batch_grad_norm"], "sharpness": TRACKS["sharpness"],
    "batch_sharpness": TRACKS["batch_sharpness"],
    "b_simple": "simple noise scale tr(S) / |G|^2", "b_noise": "noise scale tr(H S) / (G^T H G)",
}
#: Rows of ``scalars`` (the observables' own indices are those of :data:`TRACKS`).
(ROW_LOSS, ROW_GRAD_NORM, ROW_BATCH_LOSS, ROW_BATCH_GRAD_NORM, ROW_SHARPNESS, ROW_BATCH_SHARPNESS, ROW_B_SIMPLE,
 ROW_B_NOISE) = range(len(SCALARS))
#: Each tracked observable's results (``noise_scale`` has two).
RESULTS = {name: (name,) for name in TRACKS if name != "noise_scale"} | {"noise_scale": ("b_simple", "b_noise")}
#: Measured on the step's batch (the others on the full data).
BATCH_TRACKS = ("batch_loss", "batch_grad_norm", "batch_sharpness")
#: Lanczos settings of the tracked sharpness: Krylov dimension before a restart, relative
#: residual (eigenvalues to ~1e-12), most products per measurement.
LANCZOS = (20, 1e-6, 500)


def check_track(track: dict[str, int] | None) -> np.ndarray:
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


def _rows(every, n_steps):
    """How many measurements of each observable a run of ``n_steps`` makes (0: not tracked)."""
    return [n_steps // k + 1 if k else 0 for k in every]


def _hessian_tracked(every):
    """Whether an observable of ``every`` takes Hessian-vector products (the sharpnesses
    by Lanczos, the noise scale)."""
    return bool(every[SHARPNESS] or every[BATCH_SHARPNESS] or every[NOISE_SCALE])


def new_tracks(every, n_steps, model, n, dense=False):
    """What the loop needs for ``every``: ``(every, (scalars, params), scratch)``.
    ``scalars``: float64 ``[len(SCALARS), rows]`` (NaN where nothing is measured) and
    ``params`` ``[rows, n_params]``, with room for the measurements of steps ``0 ..
    n_steps``; ``scratch``: the Lanczos start vectors and workspace, the samples' own
    gradients, the indices of the ``n`` samples and, with ``dense`` (the loop's matrix
    path), the workspace of the Hessian's matrix products (:func:`gdsim.dense.dense_hvp`,
    for the sharpness and the noise scale; each None when nothing tracked uses it). Made
    once: the loop allocates nothing per step."""
    rows = _rows(every, n_steps)
    n_params = model.n_params
    scalars = np.full((len(SCALARS), max(rows)), np.nan)
    krylov = LANCZOS[0] if _hessian_tracked(every) else 0
    # The samples' own gradients, None when the noise scale is not tracked: Numba then
    # compiles no noise-scale code (:func:`_measure_noise`; 2-3 s of the first call).
    own = np.empty((n, n_params)) if every[NOISE_SCALE] else None
    basis = np.empty((krylov + 1, n_params)) if krylov else None  # the same for Lanczos (_sharpness)
    products = new_dense_hvp_workspace(model.sizes_array, n) if dense and krylov else None
    scratch = (np.zeros(n_params), np.zeros(n_params), basis, hvp.new_workspace(model.sizes_array), own,
               np.arange(n), products)
    return every, (scalars, np.full((rows[PARAMS], n_params), np.nan)), scratch


def tracks_bytes(every: np.ndarray, n_steps: int, n_params: int, n: int, dense_sizes: tuple | None = None) -> int:
    """The memory of :func:`new_tracks`, in bytes (for the memory check); ``dense_sizes``:
    the model's sizes if the loop takes its matrix path (``dense``), else None."""
    rows = _rows(every, n_steps)
    products = dense_sizes is not None and _hessian_tracked(every)
    return (8 * (len(SCALARS) * max(rows) + rows[PARAMS] * n_params + (LANCZOS[0] + 3) * n_params
                 + (n * n_params if every[NOISE_SCALE] else 0))
            + (dense_workspace_bytes(dense_sizes, n, products=True) if products else 0))


@jit_inline  # inlined: a call with a constant i would compile one version per constant
def _due(every, i, step):
    return every[i] > 0 and step % every[i] == 0


@jit
def _sharpness(theta, model, X, Y, rows, v, basis, work, products):
    """The top Hessian eigenvalue of the batch ``rows``' loss, warm-started from ``v``;
    ``basis`` None (nothing tracked needs Lanczos): never called, and Numba prunes the
    branch, so that a build without sharpness compiles no Lanczos code. ``products``:
    :func:`gdsim.dense.dense_hvp`'s workspace, or None for :func:`gdsim.hvp.batch_hvp`."""
    if basis is None:
        return np.nan
    krylov, tol, max_products = LANCZOS
    return hvp.lanczos_top(theta, model, X, Y, rows, v, tol, max_products, (basis, work), products)[0]


@jit
def _measure_noise(theta, model, X, Y, scratch, own, scalars, row):
    """Store :func:`_noise_scales` in ``row`` of the noise scales' rows of ``scalars``;
    nothing (and nothing compiled: Numba prunes the branch of a None argument) when
    ``own``, the samples' gradients' scratch, is None."""
    if own is None:
        return
    scalars[ROW_B_SIMPLE, row], scalars[ROW_B_NOISE, row] = _noise_scales(theta, model, X, Y, scratch, own)


@jit
def _noise_scales(theta, model, X, Y, scratch, own):
    """``(b_simple, b_noise)`` at ``theta`` (see the module's documentation)."""
    sizes, activation, loss, reduction, layer_code = model
    basis, work, products = scratch[2], scratch[3], scratch[6]
    acts, deltas = work[hvp.ACTS], work[hvp.DELTAS]
    per_sample_grads(theta, sizes, activation, loss, reduction, X, Y, own, acts, deltas, layer_code)
    n = X.shape[0]
    mean, direction, product = basis[0], basis[1], basis[2]  # free rows: no Lanczos runs meanwhile
    mean[:] = 0.0
    for i in range(n):
        mean += own[i]
    mean /= n
    rows = np.arange(n)
    trace, curved = 0.0, 0.0
    for i in range(n):
        for k in range(mean.shape[0]):  # element by element: a slice assignment's shape check compiles slowly
            direction[k] = own[i, k] - mean[k]
        trace += np.sum(direction * direction)
        hvp.model_hvp(theta, model, X, Y, rows, direction, product, work, products)
        curved += np.sum(direction * product)
    hvp.model_hvp(theta, model, X, Y, rows, mean, product, work, products)
    return trace / n / np.sum(mean * mean), curved / n / np.sum(mean * product)


@jit
def track_full(theta, model, X, Y, step, tracks, work, grad, dense):
    """The full-data observables due at ``step`` (``theta``: the parameters before its
    update); ``tracks`` = :func:`new_tracks`' result; ``grad``: scratch; ``work`` and
    ``dense``: :func:`gdsim.dense.model_loss_grad`'s (``dense`` the matrix path's workspace
    or None)."""
    every, (scalars, params), scratch = tracks
    all_rows = scratch[5]
    want_loss, want_norm = _due(every, LOSS, step), _due(every, GRAD_NORM, step)
    if want_loss or want_norm:
        value = model_loss_grad(theta, model, X, Y, all_rows, want_norm, grad, work, dense)
        if want_loss:
            scalars[ROW_LOSS, step // every[LOSS]] = value
        if want_norm:
            scalars[ROW_GRAD_NORM, step // every[GRAD_NORM]] = np.sqrt(np.sum(grad * grad))
    if _due(every, PARAMS, step):
        store_row(params, step // every[PARAMS], theta)
    if _due(every, SHARPNESS, step):
        scalars[ROW_SHARPNESS, step // every[SHARPNESS]] = _sharpness(theta, model, X, Y, all_rows, scratch[0],
                                                                      scratch[2], scratch[3], scratch[6])
    if _due(every, NOISE_SCALE, step):
        _measure_noise(theta, model, X, Y, scratch, scratch[4], scalars, step // every[NOISE_SCALE])


@jit
def track_batch(theta, model, X, Y, rows, step, tracks, value, grad):
    """The batch observables due at ``step``: on its batch ``rows``, whose loss ``value``
    and gradient ``grad`` the step computed."""
    every, (scalars, params), scratch = tracks
    if _due(every, BATCH_LOSS, step):
        scalars[ROW_BATCH_LOSS, step // every[BATCH_LOSS]] = value
    if _due(every, BATCH_GRAD_NORM, step):
        scalars[ROW_BATCH_GRAD_NORM, step // every[BATCH_GRAD_NORM]] = np.sqrt(np.sum(grad * grad))
    if _due(every, BATCH_SHARPNESS, step):
        scalars[ROW_BATCH_SHARPNESS, step // every[BATCH_SHARPNESS]] = _sharpness(theta, model, X, Y, rows,
                                                                                  scratch[1], scratch[2], scratch[3],
                                                                                  scratch[6])


def measured_steps(every: np.ndarray, n_steps: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``{name: the steps where it is measured}`` for the tracked observables of a run of
    ``n_steps``, and the sorted union of those steps (``result.tracks``' ``step``)."""
    measured = {name: np.arange(0, n_steps + (name not in BATCH_TRACKS), every[i])
                for i, name in enumerate(TRACKS) if every[i]}
    return measured, np.unique(np.concatenate(list(measured.values()) + [np.zeros(0, dtype=np.int64)]))


def tracks_dataset(tracks: tuple, n_steps: int) -> xarray.Dataset:
    """``result.tracks``: an ``xarray.Dataset`` over ``step`` (the steps where anything was
    measured) with one variable per tracked result (NaN at steps where it was not)."""
    import xarray as xr

    every, (scalars, params), _ = tracks
    names = list(TRACKS)
    measured, steps = measured_steps(every, n_steps)
    data: dict[str, tuple] = {}
    for name, at in measured.items():
        i = names.index(name)
        where = np.searchsorted(steps, at)
        if name == "params":
            values = np.full((steps.size, params.shape[1]), np.nan)
            values[where] = params[:at.size]
            data[name] = (("step", "param"), values, {"long_name": TRACKS[name], "every": int(every[i])})
            continue
        for result in RESULTS[name]:
            values = np.full(steps.size, np.nan)
            values[where] = scalars[list(SCALARS).index(result), :at.size]
            data[result] = (("step",), values, {"long_name": SCALARS[result], "every": int(every[i])})
    ds = xr.Dataset(data, coords={"step": steps})
    ds["step"].attrs["description"] = "measured before this step's update (n_steps: after the last)"
    return ds
