"""The optimizer: ``torch.optim.SGD`` semantics on a flat parameter vector.

:data:`HYPER_PARAMETERS` and :func:`check_nesterov` are SGD's rules, declared once:
:class:`SGD`, :func:`gdsim.sweep` and :mod:`gdsim.theory` check their arguments with them.
:data:`HYPER_ROWS` is the table of per-run settings the training kernels take.
:class:`SGD` holds and validates the hyper-parameters (with torch's error messages);
:func:`sgd_update` is the jitted update that every training loop calls. Learning-rate
schedules (:func:`epoch_lrs`) close the module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from . import scalar
from ._jit import jit, jit_parallel, prange
from .products import part_rows
from ._resources import check_memory
from ._validate import (
    SEED_MAX,
    ParameterError,
    as_array,
    check_bool,
    check_choice,
    check_int,
    check_real_array,
    is_real_scalar,
    short_repr,
)

sgd_element = jit(scalar.sgd_element)


@jit
def sgd_update(theta, grad, buf, lr, momentum, dampening, weight_decay, nesterov, maximize, first_step):
    """One ``torch.optim.SGD`` step on a flat parameter vector, in place.

    Parameters
    ----------
    theta : float64[n_params]
        Parameters, updated in place.
    grad : float64[n_params]
        Gradient of the loss at ``theta``.
    buf : float64[n_params]
        Momentum buffer, updated in place (its content is ignored when ``first_step``,
        and it is left untouched when ``momentum == 0``).
    lr, momentum, dampening, weight_decay : float
    nesterov, maximize : bool
    first_step : bool
        True for the optimizer's first step, where torch sets the buffer to the gradient
        (no dampening).

    Notes
    -----
    See :func:`gdsim.scalar.sgd_element` for the order of operations.
    """
    for j in range(theta.shape[0]):
        theta[j], b = sgd_element(theta[j], grad[j], buf[j], lr, momentum, dampening, weight_decay,
                                  nesterov, maximize, first_step)
        if momentum != 0.0:
            buf[j] = b


#: Parameters from which :func:`sgd_update_rows` runs its halves on two threads (for fewer,
#: starting a parallel loop costs more than the update).
SPLIT_UPDATE = 1 << 16


@jit_parallel
def sgd_update_rows(theta, grad, buf, sizes, bias, threads, lr, momentum, dampening, weight_decay, nesterov, maximize,
                    first_step):
    """:func:`sgd_update` by halves of each layer's rows (its weights' and biases'), the
    halves on two of Numba's threads where it has them: element by element, so the same
    numbers. For the matrix path, whose products leave each half of a layer's weights and
    gradient in one thread's cache (:mod:`gdsim.products`).

    ``sizes``: int64[n_layers + 1]; ``bias``: whether each layer has one (torch's order:
    a layer's ``[fan_out, fan_in]`` weights, then its biases); ``threads``: as in
    :func:`gdsim.products.rows_dot`; the rest as in :func:`sgd_update`. Below
    :data:`SPLIT_UPDATE` parameters, or on one thread, one call of :func:`sgd_update`.
    """
    if theta.shape[0] < SPLIT_UPDATE or threads == 1:
        sgd_update(theta, grad, buf, lr, momentum, dampening, weight_decay, nesterov, maximize, first_step)
        return
    for part in prange(2):
        w = 0
        for layer in range(sizes.shape[0] - 1):
            fan_in = sizes[layer]
            fan_out = sizes[layer + 1]
            lo, hi = part_rows(fan_out, part, 2)  # the rows of the layer's products' part
            b = w + fan_in * fan_out
            sgd_update(theta[w + lo * fan_in:w + hi * fan_in], grad[w + lo * fan_in:w + hi * fan_in],
                       buf[w + lo * fan_in:w + hi * fan_in], lr, momentum, dampening, weight_decay, nesterov, maximize,
                       first_step)
            if bias:
                sgd_update(theta[b + lo:b + hi], grad[b + lo:b + hi], buf[b + lo:b + hi], lr, momentum, dampening,
                           weight_decay, nesterov, maximize, first_step)
                b += fan_out
            w = b


# ---------------------------------------------------------------------------------------
# The rule table: SGD's hyper-parameters, declared once for SGD, gdsim.sweep and gdsim.theory
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HyperParameter:
    """One real hyper-parameter of ``torch.optim.SGD`` and the values it accepts.

    Attributes
    ----------
    name : str
    torch_message : str
        The start of torch's error message for a bad value (``"Invalid learning rate"``).
    minimum : float or None
        Smallest accepted value; None: any finite real number.
    """

    name: str
    torch_message: str
    minimum: float | None

    @property
    def accepted(self):
        """What the parameter accepts, for messages: ``"a finite real number >= 0"``."""
        return "a finite real number" + ("" if self.minimum is None else f" >= {self.minimum:g}")

    def _bad(self, value):
        return (not is_real_scalar(value) or not _finite(value)
                or (self.minimum is not None and value < self.minimum))

    def check_torch(self, value):
        """``value`` as a float, else ParameterError starting with torch's message (what
        :class:`SGD` raises: ``"Invalid learning rate: -1 (lr must be >= 0)"``)."""
        if not is_real_scalar(value) or not _finite(value):
            raise ParameterError(
                f"{self.torch_message}: {short_repr(value)} ({self.name} must be a finite real number)", self.name)
        if self._bad(value):  # messages print the value as given, like torch's ("-1", not "-1.0")
            raise ParameterError(f"{self.torch_message}: {value} ({self.name} must be >= {self.minimum:g})",
                                 self.name)
        return float(value)

    def check_values(self, value, *, swept=False, array_hint=False):
        """``value`` (a scalar or an array) as a float64 array, else ParameterError naming
        the parameter and the first bad value.

        ``swept``: ``value`` is a sweep's 1-d array, the message gives the bad value's index;
        ``array_hint``: the message says that an array is accepted too.
        """
        arr = np.asarray(value) if isinstance(value, np.ndarray) else as_array(self.name, value, dtype=object)
        flat = arr.ravel()
        if arr.dtype.kind in "fiu":  # numeric arrays: check them at once, report the first bad value
            bad = ~np.isfinite(flat) | (flat < (-np.inf if self.minimum is None else self.minimum))
            if not bad.any():
                return arr.astype(np.float64)
            flat = flat[: np.argmax(bad) + 1]
        for i, v in enumerate(flat.tolist()):
            if self._bad(v):
                where = f" at index {i}" if swept else ""
                also = " (or a 1-d array of them)" if array_hint else ""
                raise ParameterError(f"{self.name} must be {self.accepted}{also}, got {short_repr(v)}{where}",
                                     self.name)
        return arr.astype(np.float64)


def _finite(value):
    """Whether the real number ``value`` is finite as a float (an int beyond 1.8e308 is not)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


#: SGD's real hyper-parameters, in the order of ``torch.optim.SGD``'s signature.
HYPER_PARAMETERS = {h.name: h for h in (
    HyperParameter("lr", "Invalid learning rate", 0.0),
    HyperParameter("momentum", "Invalid momentum value", 0.0),
    HyperParameter("dampening", "Invalid dampening value", None),
    HyperParameter("weight_decay", "Invalid weight_decay value", 0.0),
)}

#: Rows of the hyper-parameter table that training kernels take (``float64 [N_HYPER]`` for
#: one run, ``[N_HYPER, runs]`` for a sweep): one row per setting the update reads besides
#: ``lr`` (given per step or epoch) and ``maximize`` (a constant of the loop). ``nesterov``
#: is stored as 0.0 or 1.0. A new per-run setting is a new row here plus its use in
#: :func:`gdsim.scalar.sgd_element`.
HYPER_ROWS = ("momentum", "dampening", "weight_decay", "nesterov")
MOMENTUM, DAMPENING, WEIGHT_DECAY, NESTEROV = range(len(HYPER_ROWS))

NESTEROV_RULE = "Nesterov momentum requires a momentum and zero dampening"


def check_nesterov(nesterov, momentum, dampening, *, require_momentum=True):
    """torch's Nesterov rule: with ``nesterov`` (a bool, or an array of them) every
    momentum must be > 0 and every dampening 0.

    Parameters
    ----------
    nesterov : bool or array_like of bool
    momentum, dampening : float or array_like
        Scalars (:class:`SGD`) or every value of a sweep's axes.
    require_momentum : bool, default True
        False for theory, where momentum 0 with Nesterov is plain gradient descent (the
        limit of its formulas); dampening must still be 0.

    Raises
    ------
    ParameterError
        ``param`` "nesterov"; the message starts with torch's (:data:`NESTEROV_RULE`).
    """
    if not np.any(nesterov):
        return
    momentum, dampening = np.asarray(momentum), np.asarray(dampening)
    if not require_momentum:
        if np.any(dampening != 0):
            raise ParameterError("Nesterov momentum needs dampening 0 (as torch.optim.SGD)", "nesterov")
        return
    if np.all(momentum > 0) and np.all(dampening == 0):
        return
    if momentum.ndim == 0 and dampening.ndim == 0:
        raise ParameterError(f"{NESTEROV_RULE} (got momentum={momentum.item()}, dampening={dampening.item()})",
                             "nesterov")
    raise ParameterError(f"{NESTEROV_RULE}: with nesterov=True every momentum must be > 0 and every dampening 0 "
                         f"(got momentum down to {momentum.min()}, dampening {np.unique(dampening)})", "nesterov")


class SGD:
    """Stochastic gradient descent with ``torch.optim.SGD``'s semantics.

    Parameters
    ----------
    lr : float, default 1e-3
        Learning rate, ``>= 0`` (torch's default).
    momentum : float, default 0
        Momentum factor ``>= 0`` (heavy ball: ``buf = momentum * buf + (1 - dampening) * g``).
    dampening : float, default 0
        Dampening of the gradient in the buffer update (not applied on the first step).
    weight_decay : float, default 0
        L2 penalty ``>= 0``, added to the gradient as ``weight_decay * p``.
    nesterov : bool, default False
        Nesterov momentum (``g + momentum * buf``); needs ``momentum > 0`` and
        ``dampening == 0``.
    maximize : bool, default False
        Ascend instead of descend.

    Raises
    ------
    ValueError
        With torch's messages (``Invalid learning rate: -1.0``, ``Invalid momentum value:
        ...``, ``Invalid weight_decay value: ...``, ``Nesterov momentum requires a momentum
        and zero dampening``), followed by the accepted range. gdsim also refuses NaN, inf
        and non-numbers, which torch lets through.

    Notes
    -----
    Update order, as in torch: maximize -> weight decay -> momentum (first step:
    ``buf = g``) -> Nesterov -> ``p -= lr * d``.

    Examples
    --------
    >>> import numpy as np, gdsim
    >>> opt = gdsim.SGD(lr=0.1, momentum=0.9)
    >>> p = np.array([1.0, -2.0])
    >>> buf = opt.step(p, np.array([0.5, 0.5]))
    >>> p
    array([ 0.95, -2.05])
    """

    lr: float  # set from HYPER_PARAMETERS' rules, with torch's checks
    momentum: float
    dampening: float
    weight_decay: float

    def __init__(self, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False, maximize: bool = False) -> None:
        given = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay}
        for name, rule in HYPER_PARAMETERS.items():
            setattr(self, name, rule.check_torch(given[name]))
        self.nesterov = check_bool("nesterov", nesterov)
        self.maximize = check_bool("maximize", maximize)
        check_nesterov(self.nesterov, momentum, dampening)

    def describe(self):
        """The hyper-parameters as a dict (also the keyword arguments to rebuild it)."""
        return {"lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
                "weight_decay": self.weight_decay, "nesterov": self.nesterov, "maximize": self.maximize}

    def hyper_table(self):
        """This optimizer's :data:`HYPER_ROWS`, float64 ``[N_HYPER]`` (what kernels take)."""
        return np.array([float(getattr(self, name)) for name in HYPER_ROWS])

    def __repr__(self):
        return "SGD(" + ", ".join(f"{k}={v!r}" for k, v in self.describe().items()) + ")"

    def step(self, params, grad, momentum_buffer=None):
        """Apply one update to ``params`` in place.

        Parameters
        ----------
        params : numpy.ndarray, float64 (n,), C-contiguous
            Updated in place.
        grad : array_like (n,)
            Gradient at ``params``.
        momentum_buffer : numpy.ndarray or None
            The buffer returned by the previous call; None on the first step.

        Returns
        -------
        numpy.ndarray or None
            The momentum buffer to pass to the next call (None when ``momentum == 0``).
        """
        if not (isinstance(params, np.ndarray) and params.dtype == np.float64 and params.ndim == 1
                and params.flags.c_contiguous and params.flags.writeable):
            raise ParameterError("params must be a writeable, C-contiguous float64 1-d array (it is updated in place)",
                                 "params")
        grad = np.ascontiguousarray(check_real_array("grad", grad, allow_nan=True))
        if grad.shape != params.shape:
            raise ParameterError(f"grad must have the shape of params {params.shape}, got {grad.shape}", "grad")
        first = momentum_buffer is None
        if first:
            momentum_buffer = np.zeros_like(params)
        elif not (isinstance(momentum_buffer, np.ndarray) and momentum_buffer.shape == params.shape
                  and momentum_buffer.dtype == np.float64 and momentum_buffer.flags.c_contiguous):
            raise ParameterError("momentum_buffer must be the array returned by the previous step (or None)",
                                 "momentum_buffer")
        sgd_update(params, grad, momentum_buffer, self.lr, self.momentum, self.dampening,
                   self.weight_decay, self.nesterov, self.maximize, first)
        return momentum_buffer if self.momentum != 0.0 else None


def check_optimizer(optimizer):
    """Raise a clear error unless ``optimizer`` is a :class:`SGD`."""
    if not isinstance(optimizer, SGD):
        raise ParameterError(f"optimizer must be a gdsim.SGD, got {type(optimizer).__name__}", "optimizer")
    return optimizer


#: Learning-rate schedules and the arguments each takes after its name.
SCHEDULES = {"step": ("step_size", "gamma"), "exponential": ("gamma",), "cosine": ("T_max", "eta_min")}


def check_lr_schedule(lr_schedule, epochs):
    """Validate ``lr_schedule`` (see :func:`epoch_lrs`) for a run of ``epochs`` epochs.

    Returns
    -------
    tuple or numpy.ndarray or None
        ``(name, *args)`` with ints/floats, or the float64 factor array.
    """
    if lr_schedule is None:
        return None
    if isinstance(lr_schedule, (tuple, list)) and lr_schedule and isinstance(lr_schedule[0], str):
        name = check_choice("lr_schedule[0] (the schedule's name)", lr_schedule[0], SCHEDULES)
        arg_names = SCHEDULES[name]
        if len(lr_schedule) != 1 + len(arg_names):
            raise ParameterError(f"lr_schedule ({name!r}, ...) needs the arguments {arg_names}, "
                                 f"got {lr_schedule[1:]!r}", "lr_schedule")
        args = []
        for arg_name, value in zip(arg_names, lr_schedule[1:]):
            if arg_name in ("step_size", "T_max"):
                args.append(check_int(f"lr_schedule {arg_name}", value, minimum=1, maximum=SEED_MAX))  # an int64
            elif not is_real_scalar(value) or not _finite(value) or value < 0 or (
                    arg_name == "gamma" and value == 0):
                accepted = "> 0" if arg_name == "gamma" else ">= 0"
                raise ParameterError(f"lr_schedule {arg_name} must be a finite number {accepted}, got {value!r}",
                                     "lr_schedule")
            else:
                args.append(float(value))
        return (name, *args)
    if isinstance(lr_schedule, (str, dict)) or not hasattr(lr_schedule, "__len__"):
        raise ParameterError("lr_schedule must be None, ('step', step_size, gamma), ('exponential', gamma), "
                             f"('cosine', T_max, eta_min) or an array of per-epoch factors, got {lr_schedule!r}",
                             "lr_schedule")
    factors = as_array("lr_schedule", lr_schedule)
    if factors.dtype.kind not in "iuf" or factors.shape != (epochs,):
        raise ParameterError(f"an lr_schedule array must hold one real factor per epoch, shape ({epochs},), "
                             f"got a {factors.dtype} array of shape {factors.shape}", "lr_schedule")
    factors = factors.astype(np.float64)
    if not np.all(np.isfinite(factors)) or np.any(factors < 0):
        raise ParameterError("lr_schedule factors must be finite and >= 0", "lr_schedule")
    return factors


def epoch_lrs(lr: ArrayLike, lr_schedule: object, epochs: int) -> np.ndarray:
    """Learning rate of every epoch, with torch's closed forms, stepped once per epoch.

    Parameters
    ----------
    lr : float or numpy.ndarray
        Base learning rate(s).
    lr_schedule : None, tuple or array_like
        * None: constant ``lr``;
        * ``("step", step_size, gamma)``: ``lr * gamma ** (e // step_size)`` (``StepLR``);
        * ``("exponential", gamma)``: ``lr * gamma ** e`` (``ExponentialLR``);
        * ``("cosine", T_max, eta_min)``: ``eta_min + (lr - eta_min) * (1 + cos(pi e /
          T_max)) / 2`` (``CosineAnnealingLR``; periodic past ``T_max``);
        * an array of ``epochs`` factors ``f``: ``lr * f[e]`` (``LambdaLR``).
    epochs : int

    Returns
    -------
    numpy.ndarray, float64, shape ``np.shape(lr) + (epochs,)``
        Every step of epoch ``e`` uses ``[..., e]``, as when a torch scheduler's
        ``step()`` is called at the end of each epoch.
    """
    base = HYPER_PARAMETERS["lr"].check_values(lr)[..., None]
    epochs = check_int("epochs", epochs, minimum=1)
    schedule = check_lr_schedule(lr_schedule, epochs)
    check_memory(16 * base.size * epochs, f"a schedule of {base.size} x {epochs} learning rates", "use fewer epochs")
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused below, not warned about
        lrs = _scheduled(base, schedule, epochs)
    if not np.all(np.isfinite(lrs)):
        epoch = int(np.argmax(~np.isfinite(lrs)) % epochs)
        raise ParameterError(f"lr_schedule {lr_schedule!r} makes the learning rate overflow (inf) at epoch {epoch}; "
                             "use a smaller gamma or fewer epochs", "lr_schedule")
    return lrs


def _scheduled(lr, schedule, epochs):
    """:func:`epoch_lrs` of checked arguments (``lr`` with a trailing axis of length 1)."""
    e = np.arange(epochs)
    if schedule is None:
        return np.broadcast_to(lr, lr.shape[:-1] + (epochs,)).copy()
    if isinstance(schedule, np.ndarray):
        return lr * schedule
    name, *args = schedule
    if name == "step":
        step_size, gamma = args
        return lr * gamma ** (e // step_size)
    if name == "exponential":
        return lr * args[0] ** e
    t_max, eta_min = args
    return eta_min + (lr - eta_min) * (1 + np.cos(np.pi * e / t_max)) / 2
