"""A sweep's settings, checked once: :func:`check_sweep` -> a frozen, picklable :class:`SweepSpec`.

Everything that decides a sweep's numbers is in the spec (model, data, every axis, the
options); nothing else is (no progress callback, no thread count), so a spec can be sent
to another process or machine and run there with the same result.
"""

import dataclasses
import hashlib
import math

import numpy as np

from .._resources import check_memory
from .._validate import SEED_MAX, ParameterError, as_array, short_repr, check_bool, check_int, closest
from ..batches import SHUFFLES, check_shuffle, steps_per_epoch
from ..models import MLP, check_model
from ..outcomes import GROWTH, check_divergence
from ..optim import HYPER_PARAMETERS, check_lr_schedule, check_nesterov, epoch_lrs
from ..tracks import TRACKS, check_track, measured_steps
from .targets import TARGETS, check_target

DTYPES = {"float64": np.float64, "float32": np.float32}
#: The swept axes, in the order of the result's dimensions.
AXES = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "batch_size", "seed")
#: The observables of :data:`gdsim.tracks.TRACKS` a sweep tracks (one number per run and
#: measurement; not ``params`` nor ``noise_scale``), and those the CUDA kernel measures.
SWEEP_TRACKS = ("loss", "grad_norm", "batch_loss", "batch_grad_norm", "sharpness", "batch_sharpness")
CUDA_TRACKS = ("loss", "grad_norm", "batch_loss", "batch_grad_norm")


@dataclasses.dataclass(frozen=True, eq=False)
class SweepSpec:
    """Every checked setting of a sweep (made by :func:`check_sweep`; frozen and picklable).

    Attributes
    ----------
    model : gdsim.Linear or gdsim.MLP
    X, Y : numpy.ndarray
        The data in the kernels' layout (:meth:`gdsim.MLP.check_data`).
    epochs : int
    values : dict of str to numpy.ndarray
        Each axis of :data:`AXES` as a 1-d array (one value when it is not swept).
    swept : dict of str to bool
        Whether the axis was given as an array (a dimension of the result).
    shuffle : bool or str
        The sampling scheme: False, True or ``"replacement"`` (:data:`gdsim.batches.SHUFFLES`).
    drop_last : bool
    schedule : None, tuple or numpy.ndarray
        The checked ``lr_schedule`` (:func:`gdsim.optim.check_lr_schedule`).
    target : str
        A name of the target registry (:data:`gdsim.sweeps.targets.TARGETS`).
    dtype : str
        ``"float64"`` or ``"float32"``.
    divergence_factor : float
        A loss above this factor times the initial loss marks divergence (``inf``: only a
        non-finite loss does).
    stop_diverged : bool
        Whether a run marked diverged stops updating.
    divergence_rule : str
        What ``diverged`` means: ``"growth"``, the run's outcome is diverged
        (:mod:`gdsim.outcomes`); ``"threshold"``, the run was marked.
    params0 : numpy.ndarray or None
        Initial parameters shared by every run, or None for ``model.init(seed)``.
    track : tuple of (str, int)
        The tracked observables and their periods, in :data:`gdsim.tracks.TRACKS` order
        (empty: none).
    """

    model: MLP
    X: np.ndarray = dataclasses.field(repr=False)
    Y: np.ndarray = dataclasses.field(repr=False)
    epochs: int
    values: dict = dataclasses.field(repr=False)
    swept: dict
    shuffle: bool | str
    drop_last: bool
    schedule: object
    target: str
    dtype: str
    divergence_factor: float
    stop_diverged: bool
    params0: np.ndarray | None = dataclasses.field(repr=False)
    divergence_rule: str = "growth"
    track: tuple = ()

    @property
    def n(self):
        """Number of samples."""
        return self.X.shape[0]

    @property
    def shape(self):
        """Number of values of each axis of :data:`AXES`."""
        return tuple(len(self.values[name]) for name in AXES)

    @property
    def n_configs(self):
        """Number of runs (grid points)."""
        return math.prod(self.shape)

    @property
    def dims(self):
        """The swept axes, in :data:`AXES` order: the result's dimensions."""
        return tuple(name for name in AXES if self.swept[name])

    def with_target(self, target):
        """The same sweep on another target of the registry.

        Raises
        ------
        ParameterError
            If ``target`` is not a registered target (the registry's message).
        """
        target = check_target(target)
        check_track_target(dict(self.track), target)
        return dataclasses.replace(self, target=target)

    @property
    def every(self):
        """The tracks' periods, int64 ``[len(TRACKS)]`` (:func:`gdsim.tracks.check_track`)."""
        return check_track(dict(self.track))

    @property
    def track_steps(self):
        """The result's ``step`` coordinate: the steps where some run measures something
        (the union over the batch sizes, whose runs have different numbers of steps)."""
        if not self.track:
            return np.zeros(0, dtype=np.int64)
        every = self.every
        return np.unique(np.concatenate([
            measured_steps(every, self.epochs * steps_per_epoch(self.n, int(b), self.drop_last))[1]
            for b in self.values["batch_size"]]))

    def digest(self):
        """SHA-256 of every setting that decides the sweep's numbers (not the target: a
        target family gives the same bits): what a result store is keyed on."""
        h = hashlib.sha256()
        h.update(repr((self.model, self.epochs, self.swept, self.shuffle, self.drop_last, self.dtype,
                       self.divergence_factor, self.stop_diverged, self.divergence_rule)).encode())
        schedule = self.schedule
        arrays = [self.X, self.Y, self.params0, schedule if isinstance(schedule, np.ndarray) else None]
        arrays += [self.values[name] for name in AXES]
        h.update(repr(schedule if isinstance(schedule, tuple) else None).encode())
        for a in arrays:
            h.update(b"none" if a is None else f"{a.dtype.str}{a.shape}".encode() + np.ascontiguousarray(a).tobytes())
        if self.track:  # only then: an untracked sweep keeps the digest (and stores) it had
            h.update(repr(("track", self.track)).encode())
        return h.hexdigest()

    def random_draws(self):
        """Where the sweep's random numbers come from, for the result's attributes."""
        init = "params0 (given)" if self.params0 is not None else "model.init(seed), numpy default_rng(seed)"
        return (f"initial parameters: {init}; shuffles: {SHUFFLES[self.shuffle]}; "
                "seed: the seed coordinate or attribute")


def _axis_values(name, value, n):
    """The values of one axis as a 1-d array, and whether it is swept (given as an array)."""
    if isinstance(value, (str, bytes, dict, set)):
        raise ParameterError(f"{name} must be a scalar or a 1-d array of values, got {short_repr(value)}", name)
    values = as_array(name, value, dtype=object if name in ("batch_size", "seed") else None)
    swept = values.ndim > 0
    if values.ndim > 1:
        raise ParameterError(f"{name} must be a scalar or a 1-d array of values, got shape {values.shape}", name)
    values = np.atleast_1d(values)
    if values.size == 0:
        raise ParameterError(f"{name} must not be an empty array", name)
    label = name + (" (every value)" if swept else "")
    if name == "nesterov":
        for v in values:
            check_bool(label, v)
        return values.astype(bool), swept
    if name in ("batch_size", "seed"):
        low, high = (1, n) if name == "batch_size" else (0, SEED_MAX)
        return np.array([check_int(label, v, minimum=low, maximum=high) for v in values], dtype=np.int64), swept
    return HYPER_PARAMETERS[name].check_values(values, swept=swept, array_hint=True), swept


def check_dtype(dtype):
    """The name of ``dtype`` (``"float64"`` or ``"float32"``), given as a name numpy knows
    (``"float32"``, ``"f4"``, ``"double"``) or a dtype (``numpy.float32``), else ParameterError."""
    try:
        name = np.dtype(dtype).name if dtype is not None else None
    except (TypeError, ValueError):
        name = None
    if name not in DTYPES:
        raise ParameterError(f"dtype must be one of {sorted(DTYPES)} (or numpy.float64, numpy.float32), got "
                             f"{dtype!r}{closest(dtype, DTYPES) if isinstance(dtype, str) else ''}", "dtype")
    return name


def check_float32_range(dtype, **arrays):
    """Refuse data or parameters that a float32 sweep would turn into inf (values beyond
    float32's range); ``arrays``: name -> array (None: absent)."""
    if dtype != "float32":
        return
    top = float(np.finfo(np.float32).max)
    for name, array in arrays.items():
        if array is None:
            continue
        big = np.abs(array) > top
        if big.any():
            raise ParameterError(f"{name} has values beyond float32's range (+-{top:.4g}, first "
                                 f"{array[np.unravel_index(np.argmax(big), big.shape)]:.4g}) that dtype='float32' "
                                 "would turn into inf; rescale the data or use dtype='float64'", name)


def check_sweep_track(track, target, dtype):
    """``track`` checked for a sweep of ``target`` and ``dtype``: ``((name, every), ...)``
    in :data:`gdsim.tracks.TRACKS` order (empty for None or ``{}``).

    Raises
    ------
    gdsim._validate.ParameterError
        Naming ``track``: what :func:`gdsim.tracks.check_track` refuses, an observable
        that is not in :data:`SWEEP_TRACKS` (or :data:`CUDA_TRACKS` for ``"cuda"``), or
        a dtype other than float64.
    """
    every = check_track(track)
    names = [name for name, k in zip(TRACKS, every) if k]
    refused = [name for name in names if name not in SWEEP_TRACKS]
    if refused:
        raise ParameterError(f"track: a sweep tracks {list(SWEEP_TRACKS)} (one number per run and measurement), "
                             f"not {refused[0]!r}; gdsim.train tracks every observable of gdsim.tracks", "track")
    if names and dtype != "float64":
        raise ParameterError(f"track needs dtype='float64' (the tracks are gdsim.train's float64 observables), "
                             f"got dtype={dtype!r}", "track")
    check_track_target(dict.fromkeys(names), target)
    return tuple((name, int(k)) for name, k in zip(TRACKS, every) if k)


def check_track_target(track, target):
    """Refuse tracked observables (names of ``track``) that ``target``'s kernels do not
    measure: the CUDA kernel measures only :data:`CUDA_TRACKS` (ParameterError naming ``track``)."""
    if TARGETS[target].family != "cuda":
        return
    for name in track:
        if name not in CUDA_TRACKS:
            raise ParameterError(f"track: target={target!r} measures {list(CUDA_TRACKS)}, not {name!r} (its "
                                 "Lanczos iterations run on the CPU targets only): use target='cpu' or 'parallel'",
                                 "track")


def check_sweep(model, X, Y, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                batch_size=None, epochs, shuffle=False, seed=0, params0=None, lr_schedule=None, drop_last=False,
                target="parallel", dtype="float64", divergence=GROWTH, at_once=None, track=None):
    """Check every argument of :func:`gdsim.sweep` (same signature, without ``progress``
    and ``store``) without running anything.

    ``at_once``: the most runs computed and held at once (a store's region), or a function
    of the spec giving it, for the memory check; None: every run (the result in memory).

    Returns
    -------
    SweepSpec

    Raises
    ------
    gdsim._validate.ParameterError
        A ``ValueError`` naming the argument (``error.param``) and what it accepts; also
        when the grid would not fit in the memory free now (``param`` None).
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
    check_nesterov(values["nesterov"], values["momentum"], values["dampening"])
    shuffle = check_shuffle(shuffle)
    drop_last = check_bool("drop_last", drop_last)
    schedule = check_lr_schedule(lr_schedule, epochs)
    target = check_target(target)
    dtype_name = check_dtype(dtype)
    divergence_factor, stop_diverged, divergence_rule = check_divergence(divergence)
    if params0 is not None:
        params0 = model.check_params(params0, "params0")
    check_float32_range(dtype_name, X=X, Y=Y, params0=params0)
    track = check_sweep_track(track, target, dtype_name)
    spec = SweepSpec(model=model, X=X, Y=Y, epochs=epochs, values=values, swept=swept, shuffle=shuffle,
                     drop_last=drop_last, schedule=schedule, target=target, dtype=dtype_name,
                     divergence_factor=divergence_factor, stop_diverged=stop_diverged, params0=params0,
                     divergence_rule=divergence_rule, track=track)
    itemsize = np.dtype(dtype_name).itemsize
    # Plan, working copies, padding to whole blocks and the result, all at once at worst.
    n_groups = len(values["seed"]) * len(values["batch_size"])
    if callable(at_once):
        at_once = at_once(spec)
    held = spec.n_configs if at_once is None else min(spec.n_configs, check_int("at_once", at_once, minimum=1))
    # Tracks: float64 per run, observable and measured step, twice (the target's copy and the result).
    per_run = 4 * model.n_params * itemsize + (2 * epochs + 4) * 8 + 64 + 16 * len(track) * spec.track_steps.size
    check_memory(held * per_run + 8 * epochs * n * n_groups,
                 f"a sweep of {spec.n_configs} runs of {epochs} epochs" + (
                     f", {held} at a time," if held < spec.n_configs else ""),
                 "sweep fewer points or epochs at once (the loss is kept at every epoch" + (
                     ", the tracks at every measured step)" if track else ")") + (
                     ", or stream the result to a store (store='x.zarr')" if at_once is None else ""))
    epoch_lrs(values["lr"], schedule, epochs)  # refuses a schedule whose learning rate overflows
    return spec
