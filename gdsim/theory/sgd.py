"""Stochastic gradient descent on least squares: the epoch map of a fixed sample order,
the single-step threshold and the mean-square stability of sampling with replacement
(see :mod:`gdsim.theory`).

The step maps are written in the coordinates ``(p - p*, lr buf)``, where they depend on
``lr`` only through the effective curvature ``K = lr g (H + wd I)`` (``g = 1 - dampening``
for heavy ball with momentum, else 1): the same spectra as in ``(p, buf)``, and a tiny
``lr`` with a huge curvature gives moderate numbers instead of an overflow.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:  # for the annotations only
    from ..models import Linear

from .._validate import ParameterError, check_int
from ..batches import batch_bounds
from ..scalar import averages
from .checks import (
    check_batches,
    check_hyper,
    check_linear_mse,
    check_momentum,
    check_rtol,
    radius_of,
    safe_product,
    times_power_of_two,
)
from .quadratic import batch_hessian, critical_lr, per_sample_curvatures

#: Radii up to ``1 + STABLE_SLACK`` count as stable in the searches for a critical lr:
#: directions of zero curvature (data with fewer distinct rows than parameters) keep the
#: radius at 1 up to rounding, and neither converge nor diverge.
STABLE_SLACK = 1e-12

#: The largest batch drawn with replacement: beyond it ``1 / batch_size`` is below
#: float64's resolution next to 1 (and Python ints may not even convert to a float).
MAX_DRAWN_BATCH = 2**53


# ---------------------------------------------------------------------------------------
# Stochastic gradient descent
# ---------------------------------------------------------------------------------------
def sgd_settings(model, X, lr, momentum, dampening, weight_decay, nesterov, what, search=False):
    """Every argument of one SGD run checked: ``(model, A, weight, lr, beta, tau, wd,
    nesterov)`` with Python floats; ``search``: the caller searches for a threshold (no
    ``lr``; momentum < 1, dampening < 1)."""
    model = check_linear_mse(model, what)
    lr = None if search else float(check_hyper("lr", lr, scalar=True))
    beta, tau, wd, nesterov = check_momentum(momentum, dampening, weight_decay, nesterov, below_one=search,
                                             scalar=True)
    A, weight = per_sample_curvatures(model, X)
    return model, A, weight, lr, float(beta), float(tau), float(wd), nesterov


def lr_scale(lr, beta, tau, nesterov):
    """``lr g``: the factor of the curvature in every step (inf when it overflows)."""
    g = (1.0 - tau) if beta > 0 and not nesterov else 1.0
    return float(safe_product(lr, g))


def effective_curvatures(c, hessians, wd):
    """``K = c (H + wd I)`` for a stack of Hessians, as ``c H + (c wd) I`` so that a
    small ``c`` never meets an overflowed ``H + wd``."""
    with np.errstate(over="ignore", invalid="ignore"):
        K = safe_product(c, hessians)
        diagonal = np.arange(hessians.shape[-1])
        K[..., diagonal, diagonal] += float(safe_product(c, wd))
    return K


def step_matrices(K, beta, nesterov):
    """The linear part of one SGD step on ``(e, lr buf)`` for effective curvatures ``K``
    (``(..., d, d)``): ``[[I - K, -beta I], [K, beta I]]`` (heavy ball) or
    ``[[I - (1 + beta) K, -beta^2 I], [K, beta I]]`` (Nesterov); just ``I - K`` without
    momentum (the buffer plays no part)."""
    eye = np.broadcast_to(np.eye(K.shape[-1]), K.shape)
    if beta == 0:
        return eye - K
    with np.errstate(over="ignore", invalid="ignore"):
        top_left = eye - (1.0 + beta) * K if nesterov else eye - K
        corner = beta * beta if nesterov else beta
        blocks = [[top_left, -corner * eye], [K, beta * eye]]
        return np.concatenate([np.concatenate(row, axis=-1) for row in blocks], axis=-2)


def _product_radius(steps):
    """Spectral radius of ``steps[-1] @ ... @ steps[0]``: every factor and partial product
    scaled by a power of two (exact), the exponents kept apart, so that no entry
    overflows unless a step itself did (then inf: that step's map is beyond float64)."""
    tops = np.abs(steps).max(axis=(-2, -1))
    if not np.all(np.isfinite(tops)):
        return math.inf
    exponents = np.frexp(tops)[1]
    scaled = np.ldexp(steps, -exponents[:, None, None])
    exponent = int(exponents.sum())
    M = scaled[0]
    for step in scaled[1:]:
        M = step @ M
        top = float(np.abs(M).max())
        if top == 0:
            return 0.0
        shift = math.frexp(top)[1]
        M = np.ldexp(M, -shift)
        exponent += shift
    return times_power_of_two(radius_of(M), exponent)


def epoch_spectral_radius(model: Linear, X: ArrayLike, lr: float, *, batch_size: int = 1, order: ArrayLike | None = None,
                          drop_last: bool = False, momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False) -> float:
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
        ``>= 0``.
    batch_size : int, default 1
        In ``[1, n]``.
    order : array_like of int, optional
        The sample order of the epoch (a permutation of ``range(n)``); default: data order.
    drop_last : bool, default False
    momentum, dampening, weight_decay, nesterov
        As in :class:`gdsim.SGD` (numbers; momentum >= 1 allowed, never stable).

    Returns
    -------
    float
        ``rho(M)``; ``rho(M) ** (1 / steps_per_epoch)`` is the mean contraction per step.
        inf where it exceeds float64.

    Raises
    ------
    gdsim.ParameterError
        Naming the argument: ``model`` not a :class:`gdsim.Linear` with MSE; ``X`` of the
        wrong shape, not finite or overflowing the Hessian; ``lr``, ``momentum``,
        ``dampening``, ``weight_decay`` not single numbers within SGD's rules;
        ``batch_size``, ``order``, ``drop_last`` or ``nesterov`` invalid.
    """
    model, A, weight, lr, beta, tau, wd, nesterov = sgd_settings(
        model, X, lr, momentum, dampening, weight_decay, nesterov, "epoch_spectral_radius")
    hessians = _epoch_hessians(model, A, weight, *check_batches(batch_size, order, drop_last, A.shape[0]))
    return _epoch_radius(hessians, lr_scale(lr, beta, tau, nesterov), wd, beta, nesterov)


def _epoch_hessians(model, A, weight, batch_size, order, drop_last):
    """The Hessian of each batch of one epoch, stacked ``(steps, d, d)``."""
    return np.stack([batch_hessian(model, A[order[start:stop]], weight)
                     for start, stop in batch_bounds(A.shape[0], batch_size, drop_last)])


def _epoch_radius(hessians, c, wd, beta, nesterov):
    """Spectral radius of the product of one epoch's step matrices, last step leftmost,
    for the gradient scale ``c = lr g`` (:func:`lr_scale`)."""
    return _product_radius(step_matrices(effective_curvatures(c, hessians, wd), beta, nesterov))


def mean_square_spectral_radius(model: Linear, X: ArrayLike, lr: float, *, batch_size: int = 1,
                                momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False) -> float:
    """Spectral radius of the second-moment recursion of SGD with batches drawn with
    replacement (each step ``batch_size`` independent uniform samples) [4]_.

    The state ``z = (p - p*, buf)`` follows ``z' = A_B z + noise`` with a random step
    matrix ``A_B`` that is affine in the batch Hessian ``H_B = (1/B) sum_j h_j``
    (``h_j = weight a_j a_j^T``). Its second moment follows the linear map
    ``E[A_B (x) A_B]``, computed exactly from ``E[H_B (x) H_B] = E[h (x) h] / B
    + (1 - 1/B) H (x) H``; the mean-square error stays bounded when this map's spectral
    radius is below 1 and grows without bound above.

    Parameters are as in :func:`epoch_spectral_radius` (no order: sampling is random;
    ``batch_size`` any integer in ``[1, 2**53]``). The map has size ``(2d)^2``
    (``d = n_in + 1``, or ``n_in`` without a bias), so ``d`` up to 40.

    Returns
    -------
    float
        inf where it exceeds float64.

    Raises
    ------
    gdsim.ParameterError
        As :func:`epoch_spectral_radius`; ``model`` with ``d > 40``.
    """
    model, A, weight, lr, beta, tau, wd, nesterov = sgd_settings(
        model, X, lr, momentum, dampening, weight_decay, nesterov, "mean_square_spectral_radius")
    batch_size = check_drawn_batch(model, batch_size)
    return _mean_square_radius(model, A, weight, batch_size, lr_scale(lr, beta, tau, nesterov), wd, beta, nesterov)


def check_drawn_batch(model, batch_size):
    """``batch_size`` of batches drawn with replacement, and a model small enough for the map."""
    batch_size = check_int("batch_size", batch_size, minimum=1, maximum=MAX_DRAWN_BATCH)
    d = model.n_in + 1 if model.bias else model.n_in
    if d > 40:
        limit = "n_in <= 39" if model.bias else "n_in <= 40"
        raise ParameterError(f"model must have {limit} here (the mean-square map is a ({2 * d}^2)^2 matrix), "
                             f"got {model!r}", "model")
    return batch_size


def _mean_square_radius(model, A, weight, batch_size, c, wd, beta, nesterov):
    """:func:`mean_square_spectral_radius` for the gradient scale ``c = lr g``."""
    n, d = A.shape
    per_sample = weight if averages(model.reduction_code) else weight * batch_size  # "sum" adds B samples
    # each draw's effective curvature k_i = c (h_i + wd I): the step's K_B is their mean
    k = effective_curvatures(float(safe_product(c, per_sample)), np.einsum("ni,nj->nij", A, A), 0.0)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        k[:, np.arange(d), np.arange(d)] += float(safe_product(c, wd))
    return radius_of(second_moment_map(k, 1.0 / batch_size, beta, nesterov))


def second_moment_map(k, noise, beta, nesterov):
    """``E[A_B (x) A_B]``: the linear map of ``E[z z^T]`` (flattened) under one SGD step whose
    effective curvature ``K_B`` is the mean over a random batch of per-sample ones ``k``
    (``(n, d, d)``, uniform over the samples), with ``Cov(K_B) = noise Cov(k)``: ``noise =
    1 / B`` for ``B`` draws with replacement, ``(n - B) / (B (n - 1))`` for a uniform
    ``B``-subset. Shared by :func:`mean_square_spectral_radius` and
    :func:`gdsim.theory.linear_stability`."""
    n, d = k.shape[:2]
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        K = k.mean(axis=0)
        kk = np.einsum("nij,nkl->ikjl", k, k).reshape(d * d, d * d) / n  # E[k (x) k]
        E_KK = noise * kk + (1.0 - noise) * np.kron(K, K)
        # A_B = A0 + P K_B Q with Q = [I, 0]: E[A (x) A] = A0(x)A0 + A0(x)(PKQ) + (PKQ)(x)A0 + (P(x)P) E[K(x)K] (Q(x)Q)
        eye = np.eye(d)
        A0 = step_matrices(np.zeros((d, d)), beta, nesterov)
        if beta == 0:  # the buffer plays no part: the e block alone
            P, Q = -eye, eye
        else:
            P = np.vstack([-(1.0 + beta) * eye if nesterov else -eye, eye])
            Q = np.hstack([eye, np.zeros((d, d))])
        KQ = P @ K @ Q
        return np.kron(A0, A0) + np.kron(A0, KQ) + np.kron(KQ, A0) + np.kron(P, P) @ E_KK @ np.kron(Q, Q)


def _bisect_critical(radius, lr_hi, rtol):
    """The smallest ``lr`` in ``(0, lr_hi]`` where ``radius(lr)`` exceeds ``1 +
    STABLE_SLACK``: scan a geometric grid up from ``lr_hi / 1e6`` (lower if that is
    already unstable) to bracket the first crossing, then bisect to ``rtol``."""
    def stable(lr):
        return radius(lr) < 1.0 + STABLE_SLACK

    lr_hi = min(lr_hi, 1e300)
    start = lr_hi * 1e-6
    for _ in range(40):  # for data whose SGD threshold lies far below the full-batch one
        if stable(start):
            break
        start *= 1e-6
    if not (start > 0 and stable(start)):  # a convex quadratic is stable for small enough lr
        raise ValueError(f"no stable learning rate found down to {start:g}")
    below = None
    for lr in np.geomspace(start, lr_hi, 200):
        if not stable(lr):
            lo, hi = below, float(lr)
            break
        below = float(lr)
    else:
        return math.inf
    while hi - lo > rtol * hi:
        mid = 0.5 * (lo + hi)
        if not lo < mid < hi:  # float64's resolution reached before rtol
            break
        lo, hi = (mid, hi) if stable(mid) else (lo, mid)
    return 0.5 * (lo + hi)


def _search_range(model, A, weight, beta, tau, wd, nesterov):
    """10 x the full-batch :func:`critical_lr`: where the searches stop."""
    L = float(np.linalg.eigvalsh(batch_hessian(model, A, weight)).max())
    return 10.0 * critical_lr(L, beta, dampening=tau, weight_decay=wd, nesterov=nesterov)


def epoch_critical_lr(model: Linear, X: ArrayLike, *, batch_size: int = 1, order: ArrayLike | None = None,
                      drop_last: bool = False, momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False, rtol: float = 1e-10) -> float:
    """The smallest ``lr`` at which :func:`epoch_spectral_radius` exceeds 1 (bisection).

    Searched in ``(0, 10 x`` the full-batch heavy-ball threshold ``]``; ``rtol`` in
    ``(0, 1)`` is the bisection's relative tolerance. Returns ``inf`` if every ``lr``
    there is stable. Directions of zero curvature (fewer distinct samples than
    parameters) keep the radius at 1 and do not count as unstable.

    Raises
    ------
    gdsim.ParameterError
        As :func:`epoch_spectral_radius` (no ``lr``); ``momentum >= 1``, heavy ball with
        ``dampening >= 1``, or ``rtol`` outside ``(0, 1)``.
    """
    model, A, weight, _, beta, tau, wd, nesterov = sgd_settings(
        model, X, None, momentum, dampening, weight_decay, nesterov, "epoch_critical_lr", search=True)
    hessians = _epoch_hessians(model, A, weight, *check_batches(batch_size, order, drop_last, A.shape[0]))
    rtol = check_rtol(rtol)
    lr_hi = _search_range(model, A, weight, beta, tau, wd, nesterov)
    return _bisect_critical(lambda lr: _epoch_radius(hessians, lr_scale(lr, beta, tau, nesterov), wd, beta,
                                                     nesterov), lr_hi, rtol)


def step_critical_lr(model: Linear, X: ArrayLike, *, batch_size: int = 1, order: ArrayLike | None = None,
                     drop_last: bool = False) -> float:
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
        In ``[1, n]``.
    order : array_like of int, optional
        The sample order (a permutation of ``range(n)``); default: data order.
    drop_last : bool, default False

    Returns
    -------
    float

    Raises
    ------
    gdsim.ParameterError
        Naming ``model``, ``X``, ``batch_size``, ``order`` or ``drop_last``.
    """
    model = check_linear_mse(model, "step_critical_lr")
    A, weight = per_sample_curvatures(model, X)
    hessians = _epoch_hessians(model, A, weight, *check_batches(batch_size, order, drop_last, A.shape[0]))
    top = float(np.linalg.eigvalsh(hessians).max())
    return 2.0 / top if top > 0 else math.inf


def mean_square_critical_lr(model: Linear, X: ArrayLike, *, batch_size: int = 1, momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False,
                            rtol: float = 1e-10) -> float:
    """The smallest ``lr`` at which :func:`mean_square_spectral_radius` exceeds 1 (bisection).

    Searched in ``(0, 10 x`` the full-batch threshold ``]``; returns ``inf`` if every
    ``lr`` there is stable. Small batches lower it. Each step draws its ``batch_size``
    samples independently, so the gradient noise falls as ``1 / batch_size`` but never
    vanishes (not even at ``batch_size = n``): the threshold tends to the full-batch
    :func:`critical_lr` only as ``batch_size -> inf``. On the tutorial's data it is 0.11902
    at ``batch_size = n = 100``, against ``2 / L = 0.11997``.

    Raises
    ------
    gdsim.ParameterError
        As :func:`mean_square_spectral_radius` (no ``lr``); ``momentum >= 1``, heavy ball
        with ``dampening >= 1``, or ``rtol`` outside ``(0, 1)``.
    """
    model, A, weight, _, beta, tau, wd, nesterov = sgd_settings(
        model, X, None, momentum, dampening, weight_decay, nesterov, "mean_square_critical_lr", search=True)
    batch_size = check_drawn_batch(model, batch_size)
    rtol = check_rtol(rtol)
    lr_hi = _search_range(model, A, weight, beta, tau, wd, nesterov)
    return _bisect_critical(lambda lr: _mean_square_radius(model, A, weight, batch_size,
                                                           lr_scale(lr, beta, tau, nesterov), wd, beta, nesterov),
                            lr_hi, rtol)
