"""One training run: validate -> plan (flat arrays) -> jitted loop -> :class:`TrainResult`.

:func:`train` runs one training with ``torch.optim.SGD`` semantics; the whole loop over
epochs and batches runs inside Numba (:func:`train_loop`).
"""

import dataclasses
import math

import numpy as np

from ._jit import jit
from ._resources import check_memory
from ._validate import ParameterError, check_bool, check_int, check_seed, is_real_scalar
from .batches import batch_orders, batch_stop, steps_per_epoch
from .kernels import (batch_loss, batch_loss_grad, dense_batch_loss_grad, divergence_threshold, is_diverged,
                      new_workspace)
from .models import check_model
from .optim import DAMPENING, MOMENTUM, NESTEROV, WEIGHT_DECAY, check_optimizer, epoch_lrs, sgd_update


# ---------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------
@jit
def _loss_grad(theta, model, X, Y, rows, want_grad, grad, work, dense):
    """The batch's reduced loss and, if ``want_grad``, its gradient into ``grad``
    (``model``: a :class:`gdsim.models.ModelSpec`; ``work``: the scratch ``(acts, deltas)``)."""
    sizes, activation, loss, reduction, layer_code = model
    acts, deltas = work
    if dense:
        return dense_batch_loss_grad(theta, sizes, activation, loss, reduction, X, Y, rows, want_grad, grad,
                                     layer_code)
    if want_grad:
        return batch_loss_grad(theta, sizes, activation, loss, reduction, X, Y, rows, grad, acts, deltas, layer_code)
    return batch_loss(theta, sizes, activation, loss, reduction, X, Y, rows, acts, layer_code)


def use_dense_kernels(model, batch_size):
    """Whether :func:`train` computes batches with matrix products (BLAS) rather than
    sample by sample: worth it for wide layers and batches of more than a few samples."""
    widest = max(a * b for a, b in zip(model.sizes[:-1], model.sizes[1:]))
    return widest >= 1024 and batch_size >= 8


@jit
def train_loop(theta, buf, model, X, Y, batches, lr, hyper, maximize, divergence_factor, out, dense):
    """Train one model with SGD over ``order.shape[0]`` epochs, in place.

    Parameters
    ----------
    theta : float64[n_params]
        Initial parameters; final parameters on return.
    buf : float64[n_params]
        Momentum buffer (scratch).
    model : gdsim.models.ModelSpec
    X : float64[n, n_in]
    Y : float64[n, n_out] or float64[n, 1]
    batches : (int64[epochs, n], int, bool)
        ``(order, batch_size, drop_last)``: the sample order of each epoch, sliced into
        batches by :func:`gdsim.batches.batch_stop`.
    lr : float64[n_steps]
        Learning rate of each step.
    hyper : float64[N_HYPER]
        The other hyper-parameters, rows :data:`gdsim.optim.HYPER_ROWS`.
    maximize : bool
    divergence_factor : float
        A loss above ``divergence_factor`` times the initial full-data loss counts as
        divergence (``inf``: only NaN/inf do).
    out : (float64[epochs + 1], float64[n_steps], float64[n_steps + 1, n_params])
        Outputs ``(epoch_loss, step_loss, params_history)``: the full-data loss before each
        epoch and after the last; each batch's loss before its update; when it has rows,
        the parameters before the first step and after every step.
    dense : bool
        Compute each batch with matrix products (:func:`gdsim.kernels.dense_batch_loss_grad`)
        instead of sample by sample.

    Returns
    -------
    (int, float)
        The first step whose loss, evaluated before its update (the batch loss, or the
        full-data loss at the start of an epoch), is non-finite or above the threshold,
        and that loss; ``n_steps`` if only the final loss is; ``(-1, nan)`` if none.
        The run always goes on to the end.
    """
    order, batch_size, drop_last = batches
    epoch_loss, step_loss, params_history = out
    momentum, dampening = hyper[MOMENTUM], hyper[DAMPENING]
    weight_decay, nesterov = hyper[WEIGHT_DECAY], hyper[NESTEROV] != 0.0
    n = X.shape[0]
    epochs = order.shape[0]
    work = new_workspace(model.sizes)
    grad = np.empty(theta.shape[0])
    all_rows = np.arange(n)
    record = params_history.shape[0] > 0
    if record:
        params_history[0, :] = theta
    threshold = np.inf
    diverged_step = -1
    diverged_loss = np.nan
    step = 0
    for epoch in range(epochs + 1):
        # Full-batch GD in data order: the first step's batch is the full data, so its loss
        # is the epoch's full-data loss, computed once (with its gradient).
        reuse = epoch < epochs and batch_size >= n and np.all(order[epoch] == all_rows)
        if reuse:
            full = _loss_grad(theta, model, X, Y, all_rows, True, grad, work, dense)
        else:
            full = _loss_grad(theta, model, X, Y, all_rows, False, grad, work, dense)
        epoch_loss[epoch] = full
        if epoch == 0:
            threshold = divergence_threshold(full, divergence_factor)
        if diverged_step < 0 and is_diverged(full, threshold):
            diverged_step = step
            diverged_loss = full
        if epoch == epochs:
            break
        for start in range(0, n, batch_size):
            stop = batch_stop(start, n, batch_size, drop_last)
            if stop == start:
                break
            if reuse:
                value = full
            else:
                value = _loss_grad(theta, model, X, Y, order[epoch, start:stop], True, grad, work, dense)
            step_loss[step] = value
            if diverged_step < 0 and is_diverged(value, threshold):
                diverged_step = step
                diverged_loss = value
            sgd_update(theta, grad, buf, lr[step], momentum, dampening, weight_decay, nesterov, maximize,
                       step == 0)
            step += 1
            if record:
                params_history[step, :] = theta
    return diverged_step, diverged_loss


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, repr=False)
class TrainResult:
    """Outcome of :func:`gdsim.train`.

    Attributes
    ----------
    params : numpy.ndarray (n_params,)
        Final parameters.
    epoch_loss : numpy.ndarray (epochs + 1,)
        Full-data loss before each epoch and after the last.
    step_loss : numpy.ndarray (n_steps,)
        Loss of each step's batch, before its update.
    params_history : numpy.ndarray (n_steps + 1, n_params) or None
        Parameters before the first step and after each step (``record_params=True``).
    diverged_step : int
        First step whose loss (before its update) was non-finite or above
        ``divergence_factor`` times the initial loss; ``n_steps`` if only the final loss
        was; -1 if never.
    diverged_loss : float
        The loss that marked the divergence (NaN if none).
    steps_per_epoch : int
    """

    params: np.ndarray
    epoch_loss: np.ndarray
    step_loss: np.ndarray
    params_history: np.ndarray | None
    diverged_step: int
    diverged_loss: float
    steps_per_epoch: int

    @property
    def diverged(self):
        """True if the run diverged (see :attr:`diverged_step`)."""
        return self.diverged_step >= 0

    @property
    def n_steps(self):
        """Number of updates made."""
        return self.step_loss.shape[0]

    @property
    def epoch_params(self):
        """Parameters before each epoch and after the last, ``(epochs + 1, n_params)``.

        Needs ``record_params=True``.
        """
        if self.params_history is None:
            raise ValueError("epoch_params needs the run to be made with record_params=True")
        return self.params_history[::self.steps_per_epoch]

    def __repr__(self):
        status = (f"diverged at step {self.diverged_step} (loss {self.diverged_loss:.4g})"
                  if self.diverged else "did not diverge")
        return (f"TrainResult({self.n_steps} steps, loss {self.epoch_loss[0]:.6g} -> {self.epoch_loss[-1]:.6g}, "
                f"{status})")


def train(model, X, Y, optimizer, *, epochs, batch_size=None, shuffle=False, seed=0, drop_last=False,
          params0=None, lr_schedule=None, record_params=False, divergence_factor=1e6):
    """Train ``model`` on ``(X, Y)`` with ``optimizer``, like a PyTorch training loop.

    Equivalent to (in float64)::

        for epoch in range(epochs):
            epoch_loss.append(loss(model, X, Y))
            for batch in batches(order[epoch], batch_size, drop_last):
                loss = criterion(model(X[batch]), Y[batch]); loss.backward()
                step_loss.append(loss.item()); opt.step(); opt.zero_grad()
        epoch_loss.append(loss(model, X, Y))

    with the whole loop compiled by Numba.

    Parameters
    ----------
    model : gdsim.Linear or gdsim.MLP
    X : array_like (n, n_in)
    Y : array_like
        Targets ``(n, n_out)`` for MSE, integer labels ``(n,)`` for cross-entropy.
    optimizer : gdsim.SGD
    epochs : int
        Number of passes over the data, ``>= 1``.
    batch_size : int or None, default None
        Samples per step, in ``[1, n]``; None means full batch (``n``).
    shuffle : bool or array_like of int (epochs, n), default False
        Sample order: data order, a fresh permutation per epoch drawn from ``seed``, or
        the order itself (see :func:`gdsim.batches.batch_orders`).
    seed : int, default 0
        Seeds the initial parameters (``model.init(seed)``, when ``params0`` is None)
        and the shuffles.
    drop_last : bool, default False
        Skip the last batch of an epoch when it is smaller than ``batch_size``.
    params0 : array_like (n_params,), optional
        Initial parameters (finite); default ``model.init(seed)``.
    lr_schedule : tuple or array_like, optional
        Learning-rate schedule stepped once per epoch, with torch's closed forms:
        ``("step", step_size, gamma)``, ``("exponential", gamma)``, ``("cosine", T_max,
        eta_min)`` or an array of ``epochs`` factors (see :func:`gdsim.epoch_lrs`).
    record_params : bool, default False
        Keep the parameters after every step in ``params_history``.
    divergence_factor : float or None, default 1e6
        A loss above this factor times the initial full-data loss marks divergence
        (non-finite losses always do); None: only non-finite losses. Divergence is
        recorded, the run goes on to the end.

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError
        For any invalid argument, before any work is done.
    """
    model = check_model(model)
    optimizer = check_optimizer(optimizer)
    X, Y = model.check_data(X, Y)
    n = X.shape[0]
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = n if batch_size is None else check_int("batch_size", batch_size, minimum=1, maximum=n)
    drop_last = check_bool("drop_last", drop_last)
    seed = check_seed("seed", seed)
    record_params = check_bool("record_params", record_params)
    if divergence_factor is None:
        divergence_factor = math.inf
    elif not is_real_scalar(divergence_factor) or not divergence_factor > 0:
        raise ParameterError(f"divergence_factor must be a number > 0 (or None), got {divergence_factor!r}",
                             "divergence_factor")
    per_epoch = steps_per_epoch(n, batch_size, drop_last)
    n_steps = epochs * per_epoch
    history_rows = n_steps + 1 if record_params else 0
    # Everything the run allocates (the schedule included), checked before anything is allocated.
    check_memory(8 * (history_rows * model.n_params + epochs * n + 2 * n_steps + 2 * epochs + 3 * model.n_params),
                 f"a run of {n_steps} steps" + (" with record_params=True" if record_params else ""),
                 "train for fewer epochs" + (" or set record_params=False" if record_params else ""))
    lrs = epoch_lrs(optimizer.lr, lr_schedule, epochs)
    order = batch_orders(n, epochs, shuffle, seed)
    theta = model.init(seed) if params0 is None else model.check_params(params0, "params0").copy()
    params_history = np.empty((history_rows, model.n_params))
    epoch_loss = np.empty(epochs + 1)
    step_loss = np.empty(n_steps)
    lr = np.repeat(lrs, per_epoch)
    diverged_step, diverged_loss = train_loop(
        theta, np.zeros_like(theta), model.spec, X, Y, (order, batch_size, drop_last), lr, optimizer.hyper_table(),
        optimizer.maximize, float(divergence_factor), (epoch_loss, step_loss, params_history),
        use_dense_kernels(model, batch_size))
    return TrainResult(params=theta, epoch_loss=epoch_loss, step_loss=step_loss,
                       params_history=params_history if record_params else None,
                       diverged_step=int(diverged_step), diverged_loss=float(diverged_loss),
                       steps_per_epoch=per_epoch)
