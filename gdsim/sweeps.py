"""Sweeps: a grid of SGD trainings run at once, returned as a labelled ``xarray.Dataset``.

Data flow: validate every argument -> plan (one row per grid point: initial parameters,
hyper-parameters, learning rate per epoch, which sample order) -> target kernel
(:mod:`gdsim.targets.cpu` serial or parallel, :mod:`gdsim.targets.cuda`) -> Dataset.
"""

import math
import sys
import time
from types import SimpleNamespace

import numpy as np

from ._validate import check_bool, check_choice, check_int, is_real_scalar
from .engine import _check_memory, batch_orders, steps_per_epoch
from .models import check_model
from .optim import check_lr_schedule, epoch_lrs

TARGETS = ("cpu", "parallel", "cuda")
DTYPES = {"float64": np.float64, "float32": np.float32}
#: The swept axes, in the order of the result's dimensions.
AXES = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "batch_size", "seed")


def _axis_values(name, value, n):
    """The values of one axis as a 1-d array, and whether it is swept (given as an array)."""
    swept = np.ndim(value) > 0
    if isinstance(value, (str, bytes, dict, set)) or np.ndim(value) > 1:
        raise ValueError(f"{name} must be a scalar or a 1-d array of values, got {value!r}")
    values = np.atleast_1d(np.asarray(value, dtype=object if name in ("batch_size", "seed") else None))
    if values.size == 0:
        raise ValueError(f"{name} must not be an empty array")
    if name == "nesterov":
        for v in values:
            check_bool(f"{name}" + (" (every value)" if swept else ""), v)
        return values.astype(bool), swept
    if name in ("batch_size", "seed"):
        low, high = (1, n) if name == "batch_size" else (0, None)
        return np.array([check_int(f"{name}" + (" (every value)" if swept else ""), v, minimum=low, maximum=high)
                         for v in values], dtype=np.int64), swept
    minimum = None if name == "dampening" else 0.0
    accepted = "a finite real number" + ("" if minimum is None else " >= 0")
    if values.dtype.kind in "fiu":  # numeric arrays: check them at once, report the first bad value
        bad = ~np.isfinite(values) | (values < (-np.inf if minimum is None else minimum))
        if not bad.any():
            return values.astype(np.float64), swept
        values = values[: np.argmax(bad) + 1]
    for i, v in enumerate(values.tolist()):
        if not is_real_scalar(v) or not math.isfinite(v) or (minimum is not None and v < minimum):
            where = f" at index {i}" if swept else ""
            raise ValueError(f"{name} must be {accepted} (or a 1-d array of them), got {v!r}{where}")
    return values.astype(np.float64), swept


def _check_dtype(dtype):
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    return check_choice("dtype", name, DTYPES)


def _check_divergence(divergence):
    if divergence is None:
        return 1e6, False
    if not is_real_scalar(divergence) or not divergence > 1:
        raise ValueError(f"divergence must be a number > 1 (a factor of the initial loss) or None, "
                         f"got {divergence!r}")
    return float(divergence), True


def _progress_line(what, every=0.5):
    """A ``progress(done, total)`` callback writing one status line to stderr, rewritten
    at most every ``every`` seconds and once at the end."""
    start = time.perf_counter()
    last = [start]

    def report(done, total):
        now = time.perf_counter()
        if done < total and now - last[0] < every:
            return
        last[0] = now
        elapsed = now - start
        left = f", about {elapsed * (total - done) / done:.0f} s left" if 0 < done < total else ""
        print(f"\r{what}: {done}/{total} runs done ({100 * done / total:.0f}%), {elapsed:.1f} s{left}   ",
              end="\n" if done >= total else "", file=sys.stderr, flush=True)

    return report


def check_sweep(model, X, Y, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                batch_size=None, epochs, shuffle=False, seed=0, params0=None, lr_schedule=None, drop_last=False,
                target="parallel", dtype="float64", divergence=1e6, progress=False):
    """Check every argument of :func:`sweep` (same signature) without running anything.

    Returns
    -------
    types.SimpleNamespace
        The checked values: ``model, X, Y, n, epochs``, ``values`` (each axis's 1-d
        array) and ``swept`` (whether it was given as an array), ``shuffle, drop_last,
        schedule, target, dtype`` (the name), ``divergence_factor, stop_diverged,
        progress, params0`` and ``n_configs``.

    Raises
    ------
    ValueError
        Naming the argument and what it accepts; also when the grid would not fit in
        the memory free now.
    """
    model = check_model(model)
    X, Y = model.check_data(X, Y)
    n = X.shape[0]
    epochs = check_int("epochs", epochs, minimum=1)
    given = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay,
             "nesterov": nesterov, "batch_size": n if batch_size is None else batch_size, "seed": seed}
    values, swept = {}, {}
    for name in AXES:
        values[name], swept[name] = _axis_values(name, given[name], n)
    if values["nesterov"].any() and (values["momentum"].min() <= 0 or np.any(values["dampening"] != 0)):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening: with nesterov=True every "
                         f"momentum must be > 0 and every dampening 0 (got momentum down to "
                         f"{values['momentum'].min()}, dampening {np.unique(values['dampening'])})")
    if not isinstance(shuffle, (bool, np.bool_)):
        raise ValueError(f"shuffle must be True or False in a sweep, got {shuffle!r}")
    drop_last = check_bool("drop_last", drop_last)
    schedule = check_lr_schedule(lr_schedule, epochs)
    target = check_choice("target", target, TARGETS)
    dtype_name = _check_dtype(dtype)
    divergence_factor, stop_diverged = _check_divergence(divergence)
    if not (isinstance(progress, (bool, np.bool_)) or callable(progress)):
        raise ValueError(f"progress must be True, False or a callable progress(runs_done, n_runs), got {progress!r}")
    if params0 is not None:
        params0 = model.check_params(params0, "params0")
    shape = tuple(len(values[name]) for name in AXES)
    n_configs = math.prod(shape)
    itemsize = np.dtype(dtype_name).itemsize
    # Plan, working copies, padding to whole blocks and the result, all at once at worst.
    n_groups = len(values["seed"]) * len(values["batch_size"])
    _check_memory(n_configs * (4 * model.n_params * itemsize + (2 * epochs + 4) * 8 + 64) + 8 * epochs * n
                  * n_groups, f"a sweep of {n_configs} runs", "sweep fewer points at once")
    return SimpleNamespace(model=model, X=X, Y=Y, n=n, epochs=epochs, values=values, swept=swept,
                           shuffle=bool(shuffle), drop_last=drop_last, schedule=schedule, target=target,
                           dtype=dtype_name, divergence_factor=divergence_factor, stop_diverged=stop_diverged,
                           progress=progress, params0=params0, n_configs=n_configs, shape=shape)


def sweep(model, X, Y, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, batch_size=None,
          epochs, shuffle=False, seed=0, params0=None, lr_schedule=None, drop_last=False, target="parallel",
          dtype="float64", divergence=1e6, progress=False):
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
    shuffle : bool, default False
        False: data order; True: a fresh permutation per epoch drawn from ``seed`` (the
        same as ``train`` draws).
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
        ``"parallel"``: threads over blocks of runs; ``"cpu"``: one thread (bitwise the
        same results); ``"cuda"``: one GPU thread per run (needs numba-cuda and a GPU,
        or ``NUMBA_ENABLE_CUDASIM=1`` for the simulator).
    dtype : {"float64", "float32"}, default "float64"
        Precision of the data, parameters and losses.
    divergence : float or None, default 1e6
        A run whose loss (each batch's loss before its update, and the full-data loss
        before each epoch and after the last) is non-finite or above ``divergence``
        times its initial full-data loss is marked diverged at that step and stops
        updating: its parameters stay as they were before that step and its later
        ``loss`` entries are NaN. None: runs are still marked (at 1e6 times the initial
        loss) but all go on to the end, as ``train`` does.
    progress : bool or callable, default False
        True: a status line on stderr (runs done, time elapsed and left) as blocks of
        runs finish; a callable: called as ``progress(runs_done, n_runs)`` instead.
        ``"cuda"`` reports once, at the end (the runs are one kernel launch).

    Returns
    -------
    xarray.Dataset
        Dimensions: one per swept argument (those given as arrays), in the order
        ``lr, momentum, dampening, weight_decay, nesterov, batch_size, seed``, with
        their values as coordinates, plus ``epoch`` (``0..epochs``) and ``param``.
        Variables:

        * ``loss`` (..., epoch): full-data loss before each epoch and after the last;
        * ``final_loss`` (...): ``loss`` after the last epoch (NaN for a stopped run);
        * ``diverged`` (...): bool; ``diverged_step`` (...): the step marked, -1 if none
          (``steps_per_epoch * epochs`` when only the final loss was);
          ``diverged_loss`` (...): the loss that marked it;
        * ``params`` (..., param): final parameters, flat in torch's order.

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
    >>> bool(ds.diverged.sel(lr=0.1, momentum=0.0))  # the tutorial's per-sample SGD blows up
    True
    >>> bool(ds.diverged.sel(lr=0.001, momentum=0.0))
    False
    """
    # ---- validate everything before any work -------------------------------------------
    c = check_sweep(model, X, Y, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                    nesterov=nesterov, batch_size=batch_size, epochs=epochs, shuffle=shuffle, seed=seed,
                    params0=params0, lr_schedule=lr_schedule, drop_last=drop_last, target=target, dtype=dtype,
                    divergence=divergence, progress=progress)
    if c.target == "cuda":
        from ._jit import cuda
        cuda()  # raises the clear error if there is no GPU / numba-cuda
    report = (_progress_line(f"sweep of {c.n_configs} runs") if progress is True or progress is np.True_
              else progress if callable(progress) else None)
    return grid_dataset(c, run_grid_points(c, np.arange(c.n_configs), report))


def run_grid_points(c, runs, progress=None):
    """Run some points of a checked sweep.

    Parameters
    ----------
    c : types.SimpleNamespace
        From :func:`check_sweep`.
    runs : numpy.ndarray of int
        Flat indices of grid points (C order over :data:`AXES`), increasing.
    progress : callable, optional
        ``progress(runs_done, len(runs))``.

    Returns
    -------
    dict
        ``epoch_loss [k, epochs + 1]``, ``diverged_step [k]``, ``diverged_loss [k]``,
        ``params [k, n_params]``: each run's result does not depend on which other runs
        share the call (the kernels treat runs independently), so chunks of a grid
        concatenate to the whole grid's result bit for bit.
    """
    model, n, epochs, values = c.model, c.n, c.epochs, c.values
    index = dict(zip(AXES, np.unravel_index(runs, c.shape)))
    n_seeds = len(values["seed"])
    group = index["batch_size"] * n_seeds + index["seed"]  # runs sharing batch size and order
    orders = np.stack([batch_orders(n, epochs, c.shuffle, int(s)) for s in values["seed"]])
    orders = np.concatenate([orders] * len(values["batch_size"]))  # [n_groups, epochs, n]
    group_batch = np.repeat(values["batch_size"], n_seeds)
    inits = np.stack([model.init(int(s)) if c.params0 is None else c.params0 for s in values["seed"]])
    lrs = np.take(epoch_lrs(values["lr"], c.schedule, epochs), index["lr"], axis=0)  # [k, epochs]
    plan = dict(theta0=np.take(inits, index["seed"], axis=0).astype(c.dtype), lr=lrs,
                momentum=np.take(values["momentum"], index["momentum"]),
                dampening=np.take(values["dampening"], index["dampening"]),
                weight_decay=np.take(values["weight_decay"], index["weight_decay"]),
                nesterov=np.take(values["nesterov"], index["nesterov"]),
                group=group, orders=orders, batch_sizes=group_batch)
    if c.target == "cuda":
        from .targets import cuda as kernels
    else:
        from .targets import cpu as kernels
    return kernels.run_plan(model, c.X.astype(c.dtype), c.Y.astype(c.dtype), plan, drop_last=c.drop_last,
                            divergence_factor=c.divergence_factor, stop_diverged=c.stop_diverged,
                            parallel=c.target == "parallel", progress=progress)


def random_draws(c):
    """Where a checked sweep's random numbers come from, for the result's attributes."""
    init = "params0 (given)" if c.params0 is not None else "model.init(seed), numpy default_rng(seed)"
    shuffles = ("a permutation per epoch from default_rng(SeedSequence(seed).spawn(1)[0])" if c.shuffle
                else "none (data order)")
    return f"initial parameters: {init}; shuffles: {shuffles}; seed: the seed coordinate or attribute"


def grid_dataset(c, raw):
    """The labelled result of a checked sweep (see :func:`sweep`) from the raw arrays of
    every grid point (:func:`run_grid_points`, in order)."""
    import xarray as xr  # imported here: only sweeps need it

    from . import __version__

    model, values, swept = c.model, c.values, c.swept
    dims = [name for name in AXES if swept[name]]
    grid_shape = tuple(len(values[name]) for name in dims)
    coords = {name: values[name] for name in dims}
    coords["epoch"] = np.arange(c.epochs + 1)
    coords["param"] = np.arange(model.n_params)

    def grid(a):
        return a.reshape(grid_shape + a.shape[1:])

    epoch_loss = grid(raw["epoch_loss"])
    diverged_step = grid(raw["diverged_step"])
    ds = xr.Dataset(
        {
            "loss": (dims + ["epoch"], epoch_loss,
                     {"long_name": "full-data loss", "description": "before each epoch and after the last"}),
            "final_loss": (dims, epoch_loss[..., -1], {"long_name": "final loss"}),
            "diverged": (dims, diverged_step >= 0, {"long_name": "diverged"}),
            "diverged_step": (dims, diverged_step,
                              {"long_name": "step marked as diverged", "description": "-1 if never"}),
            "diverged_loss": (dims, grid(raw["diverged_loss"]), {"long_name": "loss that marked divergence"}),
            "params": (dims + ["param"], grid(raw["params"]),
                       {"long_name": "final parameters", "description": "flat, in torch's order"}),
        },
        coords=coords,
    )
    ds.epoch.attrs["description"] = "loss[epoch] is measured before that epoch; loss[epochs] after the last"
    fixed = {name: (values[name][0].item()) for name in AXES if not swept[name]}
    schedule = c.schedule
    ds.attrs.update(
        model=repr(model), n_params=model.n_params, n_samples=c.n, n_in=model.n_in, n_out=model.n_out,
        epochs=c.epochs, shuffle=c.shuffle, drop_last=c.drop_last,
        params0="given" if c.params0 is not None else "model.init(seed)",
        lr_schedule="none" if schedule is None else repr(schedule if isinstance(schedule, tuple) else schedule.tolist()),
        divergence_factor=c.divergence_factor, stop_diverged=c.stop_diverged, target=c.target, dtype=c.dtype,
        gdsim_version=__version__, random_draws=random_draws(c), **fixed)
    if not swept["batch_size"]:
        ds.attrs["steps_per_epoch"] = steps_per_epoch(c.n, int(values["batch_size"][0]), c.drop_last)
    return ds
