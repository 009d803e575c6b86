"""Stochastic gradient descent on least squares: the epoch map of a fixed sample order,
the single-step threshold and the mean-square stability of sampling with replacement
(see :mod:`gdsim.theory`)."""

import numpy as np

from .._validate import ParameterError, check_bool, check_int, is_real_scalar
from ..batches import batch_bounds
from ..optim import HYPER_PARAMETERS
from ..scalar import MEAN
from .quadratic import batch_hessian, check_linear_mse, check_momentum, critical_lr, hessian, per_sample_curvatures


# ---------------------------------------------------------------------------------------
# Stochastic gradient descent
# ---------------------------------------------------------------------------------------
def _step_matrix(lr, H, beta, tau, nesterov):
    """The linear part of one SGD step on the state ``(e, buf)`` for a batch Hessian ``H``
    (already including weight decay): a ``2d x 2d`` matrix, or a stack of them for a
    stack of Hessians ``(..., d, d)``."""
    eye = np.broadcast_to(np.eye(H.shape[-1]), H.shape)
    if nesterov:
        blocks = [[eye - lr * (1.0 + beta) * H, -lr * beta * beta * eye], [H, beta * eye]]
    else:
        g = (1.0 - tau) if beta > 0 else 1.0
        blocks = [[eye - lr * g * H, -lr * beta * eye], [g * H, beta * eye]]
    return np.concatenate([np.concatenate(row, axis=-1) for row in blocks], axis=-2)


def _sgd_settings(model, X, lr, momentum, dampening, weight_decay, nesterov, what):
    model = check_linear_mse(model, what)
    nesterov = check_momentum(momentum, dampening, weight_decay, nesterov)
    for name, value in (("lr", lr), ("momentum", momentum), ("dampening", dampening), ("weight_decay", weight_decay)):
        if not is_real_scalar(value):
            raise ParameterError(f"{name} must be a real number here, got {value!r}", name)
    HYPER_PARAMETERS["lr"].check_values(lr)
    A, weight = per_sample_curvatures(model, X)
    return model, nesterov, A, weight


def _epoch_batches(A, batch_size, order, drop_last):
    """The rows of ``A`` of each batch of one epoch in ``order`` (checked first)."""
    n = A.shape[0]
    batch_size = check_int("batch_size", batch_size, minimum=1, maximum=n)
    drop_last = check_bool("drop_last", drop_last)
    order = np.arange(n) if order is None else np.asarray(order)
    if order.dtype.kind not in "iu" or not np.array_equal(np.sort(order), np.arange(n)):
        raise ParameterError(f"order must be a permutation of range({n}), got {order!r}", "order")
    return [A[order[start:stop]] for start, stop in batch_bounds(n, batch_size, drop_last)]


def epoch_spectral_radius(model, X, lr, *, batch_size=1, order=None, drop_last=False, momentum=0.0,
                          dampening=0.0, weight_decay=0.0, nesterov=False):
    """Spectral radius of one epoch of (mini-batch) SGD in a fixed sample order.

    Each step is an affine map of the state ``(p, buf)``; an epoch is their product
    ``M = A_T ... A_1``. Iterates converge (to a cycle that repeats every epoch) when
    ``rho(M) < 1`` and diverge when it is above: this is the exact threshold of per-sample
    SGD in data order, which need not match the full-batch one.

    Parameters
    ----------
    model : gdsim.Linear
        With ``loss="mse"``.
    X : array_like (n, n_in)
    lr : float
    batch_size : int, default 1
        In ``[1, n]``.
    order : array_like of int, optional
        The sample order of the epoch (a permutation of ``range(n)``); default: data order.
    drop_last : bool, default False
    momentum, dampening, weight_decay, nesterov
        As in :class:`gdsim.SGD` (scalars).

    Returns
    -------
    float
        ``rho(M)``; ``rho(M) ** (1 / steps_per_epoch)`` is the mean contraction per step.
    """
    model, nesterov, A, weight = _sgd_settings(model, X, lr, momentum, dampening, weight_decay, nesterov,
                                               "epoch_spectral_radius")
    hessians = _epoch_hessians(model, A, weight, batch_size, order, drop_last, weight_decay)
    return _epoch_radius(hessians, lr, momentum, dampening, nesterov)


def _epoch_hessians(model, A, weight, batch_size, order, drop_last, weight_decay):
    """The Hessian (plus weight decay) of each batch of one epoch, stacked ``(steps, d, d)``."""
    batches = _epoch_batches(A, batch_size, order, drop_last)
    return np.stack([batch_hessian(model, rows, weight) for rows in batches]) + weight_decay * np.eye(A.shape[1])


def _epoch_radius(hessians, lr, momentum, dampening, nesterov):
    """Spectral radius of the product of one epoch's step matrices, last step leftmost."""
    steps = _step_matrix(lr, hessians, momentum, dampening, nesterov)
    if momentum == 0:  # the buffer plays no part (the top-right blocks are 0): the p blocks alone
        d = hessians.shape[-1]
        steps = steps[:, :d, :d]
    M = steps[0]
    for step in steps[1:]:
        M = step @ M
    return float(np.abs(np.linalg.eigvals(M)).max())


def mean_square_spectral_radius(model, X, lr, *, batch_size=1, momentum=0.0, dampening=0.0,
                                weight_decay=0.0, nesterov=False):
    """Spectral radius of the second-moment recursion of SGD with batches drawn with
    replacement (each step ``batch_size`` independent uniform samples) [4]_.

    The state ``z = (p - p*, buf)`` follows ``z' = A_B z + noise`` with a random step
    matrix ``A_B`` that is affine in the batch Hessian ``H_B = (1/B) sum_j h_j``
    (``h_j = weight a_j a_j^T``). Its second moment follows the linear map
    ``E[A_B (x) A_B]``, computed exactly from ``E[H_B (x) H_B] = E[h (x) h] / B
    + (1 - 1/B) H (x) H``; the mean-square error stays bounded when this map's spectral
    radius is below 1 and grows without bound above.

    Parameters are as in :func:`epoch_spectral_radius` (no order: sampling is random).
    The map has size ``(2d)^2`` (``d = n_in + 1``), so ``n_in`` up to a few tens.

    Returns
    -------
    float
    """
    model, nesterov, A, weight = _sgd_settings(model, X, lr, momentum, dampening, weight_decay, nesterov,
                                               "mean_square_spectral_radius")
    n, d = A.shape
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if d > 40:
        raise ValueError(f"mean_square_spectral_radius builds a ({2 * d}^2)^2 matrix; n_in + 1 = {d} is over 40")
    per_sample = weight if model.reduction_code == MEAN else weight * batch_size  # "sum" adds B samples
    h = per_sample * np.einsum("ni,nj->nij", A, A)  # each sample's Hessian block, h_i
    H = h.mean(axis=0) + weight_decay * np.eye(d)
    h_wd = h + weight_decay * np.eye(d)  # the step's Hessian is H_B + wd I: mix wd into each draw
    hh = np.einsum("nij,nkl->ikjl", h_wd, h_wd).reshape(d * d, d * d) / n  # E[h (x) h]
    HH = np.kron(H, H)
    E_HH = hh / batch_size + (1.0 - 1.0 / batch_size) * HH
    # A_B = A0 + P H_B Q with Q = [I, 0]: E[A (x) A] = A0(x)A0 + A0(x)(PHQ) + (PHQ)(x)A0 + (P(x)P) E[H(x)H] (Q(x)Q)
    A_mean = _step_matrix(lr, H, momentum, dampening, nesterov)
    A0 = _step_matrix(lr, np.zeros((d, d)), momentum, dampening, nesterov)
    K = A_mean - A0
    if nesterov:
        P = np.vstack([-lr * (1.0 + momentum) * np.eye(d), np.eye(d)])
    else:
        g = (1.0 - dampening) if momentum > 0 else 1.0
        P = np.vstack([-lr * g * np.eye(d), g * np.eye(d)])
    Q = np.hstack([np.eye(d), np.zeros((d, d))])
    second = np.kron(A0, A0) + np.kron(A0, K) + np.kron(K, A0) + np.kron(P, P) @ E_HH @ np.kron(Q, Q)
    if momentum == 0:  # the buffer plays no part: the p block alone
        keep = (np.arange(2 * d)[:, None] * 2 * d + np.arange(2 * d)[None, :])[:d, :d].ravel()
        second = second[np.ix_(keep, keep)]
    return float(np.abs(np.linalg.eigvals(second)).max())


def _bisect_critical(radius, lr_hi, tol):
    """The smallest ``lr`` in ``(0, lr_hi]`` where ``radius(lr)`` reaches 1: scan a
    geometric grid up from ``lr_hi / 1e6`` to bracket the first crossing, then bisect."""
    grid = np.geomspace(lr_hi * 1e-6, lr_hi, 200)
    below = None
    for lr in grid:
        if radius(lr) >= 1.0:
            if below is None:
                raise ValueError(f"already unstable at lr={lr:g}: no stable learning rate found")
            lo, hi = below, lr
            break
        below = lr
    else:
        return np.inf
    while hi - lo > tol * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if radius(mid) < 1.0 else (lo, mid)
    return 0.5 * (lo + hi)


def _critical_lr(radius, model, X, what, momentum, dampening, weight_decay, nesterov, rtol):
    """:func:`_bisect_critical` of ``radius(lr)`` up to 10 x the full-batch threshold."""
    model = check_linear_mse(model, what)
    check_momentum(momentum, dampening, weight_decay, nesterov, below_one=True)
    L = float(np.linalg.eigvalsh(hessian(model, X)).max())
    lr_hi = 10.0 * critical_lr(L, momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov)
    return _bisect_critical(radius, lr_hi, rtol)


def epoch_critical_lr(model, X, *, batch_size=1, order=None, drop_last=False, momentum=0.0, dampening=0.0,
                      weight_decay=0.0, nesterov=False, rtol=1e-10):
    """The smallest ``lr`` at which :func:`epoch_spectral_radius` reaches 1 (bisection).

    Searched in ``(0, 10 x`` the full-batch heavy-ball threshold ``]``; ``rtol`` is the
    bisection's relative tolerance. Returns ``inf`` if every ``lr`` there is stable.
    """
    model, nesterov, A, weight = _sgd_settings(model, X, 0.0, momentum, dampening, weight_decay, nesterov,
                                               "epoch_critical_lr")
    hessians = _epoch_hessians(model, A, weight, batch_size, order, drop_last, weight_decay)  # the same for every lr
    return _critical_lr(lambda lr: _epoch_radius(hessians, lr, momentum, dampening, nesterov),
                        model, X, "epoch_critical_lr", momentum, dampening, weight_decay, nesterov, rtol)


def step_critical_lr(model, X, *, batch_size=1, order=None, drop_last=False):
    """The largest ``lr`` at which every single step of an epoch is stable on its own:
    ``2 / max_batch lambda_max(H_batch)`` (plain SGD, no momentum).

    Above it some batch's step amplifies the error along that batch's steepest direction
    (``|1 - lr lambda| > 1``), so the loss can grow enormously within an epoch even where
    the epoch as a whole is still contracting (:func:`epoch_critical_lr`); for full batch
    it is the GD threshold ``2 / L``.

    Parameters
    ----------
    model : gdsim.Linear
        With ``loss="mse"``.
    X : array_like (n, n_in)
    batch_size : int, default 1
    order : array_like of int, optional
        The sample order (a permutation of ``range(n)``); default: data order.
    drop_last : bool, default False

    Returns
    -------
    float
    """
    model = check_linear_mse(model, "step_critical_lr")
    A, weight = per_sample_curvatures(model, X)
    top = 0.0
    for rows in _epoch_batches(A, batch_size, order, drop_last):
        top = max(top, float(np.linalg.eigvalsh(batch_hessian(model, rows, weight)).max()))
    return 2.0 / top if top > 0 else np.inf


def mean_square_critical_lr(model, X, *, batch_size=1, momentum=0.0, dampening=0.0, weight_decay=0.0,
                            nesterov=False, rtol=1e-10):
    """The smallest ``lr`` at which :func:`mean_square_spectral_radius` reaches 1 (bisection).

    Searched in ``(0, 10 x`` the full-batch threshold ``]``; returns ``inf`` if every
    ``lr`` there is stable. As ``batch_size`` grows the gradient noise vanishes and it
    tends to the full-batch :func:`critical_lr`; small batches lower it.
    """
    return _critical_lr(lambda lr: mean_square_spectral_radius(
        model, X, lr, batch_size=batch_size, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
        nesterov=nesterov), model, X, "mean_square_critical_lr", momentum, dampening, weight_decay, nesterov, rtol)
