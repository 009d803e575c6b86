"""The optimizer: ``torch.optim.SGD`` semantics on a flat parameter vector.

:class:`SGD` holds and validates the hyper-parameters (with torch's error messages);
:func:`sgd_update` is the jitted update that every training loop calls.
"""

import math

import numpy as np

from . import scalar
from ._jit import jit
from ._validate import check_bool, check_choice, check_int, is_real_scalar

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


def _check_hyper(value, name, message):
    """A finite real ``value``, else ValueError starting with torch's ``message``."""
    if not is_real_scalar(value) or not math.isfinite(value):
        raise ValueError(f"{message}: {value!r} ({name} must be a finite real number)")
    return float(value)


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

    def __init__(self, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False):
        # Messages print the value as given, like torch does (``-1`` -> "Invalid learning rate: -1").
        for value, name, message in ((lr, "lr", "Invalid learning rate"),
                                     (momentum, "momentum", "Invalid momentum value"),
                                     (weight_decay, "weight_decay", "Invalid weight_decay value")):
            if _check_hyper(value, name, message) < 0.0:
                raise ValueError(f"{message}: {value} ({name} must be >= 0)")
        _check_hyper(dampening, "dampening", "Invalid dampening value")
        nesterov = check_bool("nesterov", nesterov)
        maximize = check_bool("maximize", maximize)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening "
                             f"(got momentum={momentum}, dampening={dampening})")
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.dampening = float(dampening)
        self.weight_decay = float(weight_decay)
        self.nesterov = nesterov
        self.maximize = maximize

    def describe(self):
        """The hyper-parameters as a dict (also the keyword arguments to rebuild it)."""
        return {"lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
                "weight_decay": self.weight_decay, "nesterov": self.nesterov, "maximize": self.maximize}

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
            raise ValueError("params must be a writeable, C-contiguous float64 1-d array (it is updated in place)")
        grad = np.ascontiguousarray(grad, dtype=np.float64)
        if grad.shape != params.shape:
            raise ValueError(f"grad must have the shape of params {params.shape}, got {grad.shape}")
        first = momentum_buffer is None
        if first:
            momentum_buffer = np.zeros_like(params)
        elif not (isinstance(momentum_buffer, np.ndarray) and momentum_buffer.shape == params.shape
                  and momentum_buffer.dtype == np.float64 and momentum_buffer.flags.c_contiguous):
            raise ValueError("momentum_buffer must be the array returned by the previous step (or None)")
        sgd_update(params, grad, momentum_buffer, self.lr, self.momentum, self.dampening,
                   self.weight_decay, self.nesterov, self.maximize, first)
        return momentum_buffer if self.momentum != 0.0 else None


def check_optimizer(optimizer):
    """Raise a clear error unless ``optimizer`` is a :class:`SGD`."""
    if not isinstance(optimizer, SGD):
        raise ValueError(f"optimizer must be a gdsim.SGD, got {type(optimizer).__name__}")
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
    if isinstance(lr_schedule, tuple) and lr_schedule and isinstance(lr_schedule[0], str):
        name = check_choice("lr_schedule[0] (the schedule's name)", lr_schedule[0], SCHEDULES)
        arg_names = SCHEDULES[name]
        if len(lr_schedule) != 1 + len(arg_names):
            raise ValueError(f"lr_schedule ({name!r}, ...) needs the arguments {arg_names}, "
                             f"got {lr_schedule[1:]!r}")
        args = []
        for arg_name, value in zip(arg_names, lr_schedule[1:]):
            if arg_name in ("step_size", "T_max"):
                args.append(check_int(f"lr_schedule {arg_name}", value, minimum=1))
            elif not is_real_scalar(value) or not math.isfinite(value) or value < 0 or (
                    arg_name == "gamma" and value == 0):
                accepted = "> 0" if arg_name == "gamma" else ">= 0"
                raise ValueError(f"lr_schedule {arg_name} must be a finite number {accepted}, got {value!r}")
            else:
                args.append(float(value))
        return (name, *args)
    if isinstance(lr_schedule, (str, dict)) or not hasattr(lr_schedule, "__len__"):
        raise ValueError("lr_schedule must be None, ('step', step_size, gamma), ('exponential', gamma), "
                         f"('cosine', T_max, eta_min) or an array of per-epoch factors, got {lr_schedule!r}")
    factors = np.asarray(lr_schedule)
    if factors.dtype.kind not in "iuf" or factors.shape != (epochs,):
        raise ValueError(f"an lr_schedule array must hold one real factor per epoch, shape ({epochs},), "
                         f"got a {factors.dtype} array of shape {factors.shape}")
    factors = factors.astype(np.float64)
    if not np.all(np.isfinite(factors)) or np.any(factors < 0):
        raise ValueError("lr_schedule factors must be finite and >= 0")
    return factors


def epoch_lrs(lr, lr_schedule, epochs):
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
    lr = np.asarray(lr, dtype=np.float64)[..., None]
    schedule = check_lr_schedule(lr_schedule, epochs)
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
