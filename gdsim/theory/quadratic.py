"""Least squares and full-batch gradient descent with momentum: the Hessian, closed-form
thresholds, companion matrices and Polyak's optimum (see :mod:`gdsim.theory`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:  # for the annotations only
    from ..models import Linear

from .._validate import ParameterError, check_real, short_repr
from ..scalar import averages, loss_factor, weight_scale
from .checks import (
    check_broadcast,
    check_eigenvalues,
    check_hyper,
    check_linear_mse,
    check_momentum,
    check_reals,
    safe_product,
)


# ---------------------------------------------------------------------------------------
# Curvature of least squares
# ---------------------------------------------------------------------------------------
def per_sample_curvatures(model, X):
    """``(A, weight)``: the rows ``a_i = (s x_i, 1)`` and the factor such that sample ``i``
    adds ``weight * a_i a_i^T`` to a batch's Hessian block per sample of the batch
    (``2 / n_out`` for "mean", then divided by the batch size; ``2`` for "sum"; half of
    these for "half_mean" and "half_sum").

    ``s`` is 1, or ``1/sqrt(n_in)`` under the NTK parameterization (the model computes
    ``W (s x) + b``); without a bias the rows are ``a_i = s x_i``.

    Refuses ``X`` so large that a sum of ``a_i a_i^T`` or its eigenvalues could overflow.
    """
    X = model.check_inputs(X)
    scale = weight_scale(model.layer_code, model.n_in)
    A = X * scale if scale != 1.0 else X
    if model.bias:
        A = np.hstack([A, np.ones((X.shape[0], 1))])
    weight = 2.0 / model.n_out if averages(model.reduction_code) else 2.0
    weight *= loss_factor(model.reduction_code)
    top = float(np.abs(A).max())
    # Python floats: overflow gives inf, never a warning
    if not weight * A.shape[0] * A.shape[1] * top * top < 1e307:
        limit = math.sqrt(1e307 / (weight * A.shape[0] * A.shape[1]))
        raise ParameterError(f"X must hold values of magnitude below {limit:.3g} here (its Hessian, a sum of "
                             f"x x^T, must be finite in float64), got {top:g}", "X")
    return A, weight


def batch_hessian(model, rows, weight):
    """Hessian block of the loss of a batch with rows ``a_i`` (see :func:`per_sample_curvatures`);
    ``rows`` may be a stack ``(..., batch, d)`` of batches of one size, giving ``(..., d, d)``."""
    scale = weight / rows.shape[-2] if averages(model.reduction_code) else weight
    return scale * (np.swapaxes(rows, -1, -2) @ rows)


def hessian(model: Linear, X: ArrayLike) -> np.ndarray:
    """The Hessian block of each output's ``(w, b)`` for a :class:`gdsim.Linear` model with MSE.

    Parameters
    ----------
    model : gdsim.Linear
        With ``loss="mse"`` (any reduction, with or without bias, either parameterization).
    X : array_like (n, n_in)
        Inputs (the targets do not enter the Hessian of least squares).

    Returns
    -------
    numpy.ndarray (n_in + 1, n_in + 1), or (n_in, n_in) without bias
        ``H = 2/(n n_out) sum_i a_i a_i^T`` ("mean") or ``2 sum_i a_i a_i^T`` ("sum"),
        half of these for "half_mean" and "half_sum", ``a = (x, 1)``: rows and columns
        ordered as the output's weights, then its bias (``a = x`` without a bias; ``x``
        times ``1/sqrt(n_in)`` under the NTK parameterization).
        The full Hessian in torch's flat order has this block once per output.

    Raises
    ------
    gdsim.ParameterError
        ``model`` not a :class:`gdsim.Linear` with MSE; ``X`` of the wrong shape, not
        finite, or so large that the Hessian overflows.
    """
    model = check_linear_mse(model, "hessian")
    return batch_hessian(model, *per_sample_curvatures(model, X))


@dataclass(frozen=True)
class GradientDescent:
    """Full-batch gradient descent (no momentum) on a quadratic with curvatures in ``[mu, L]``.

    Attributes
    ----------
    L, mu : float
        Largest and smallest Hessian eigenvalues.
    critical_lr : float
        ``2 / L``: above it the iterates diverge along the top eigenvector.
    oscillation_lr : float
        ``1 / L``: above it the top component flips sign every step (oscillates) while
        still converging below ``critical_lr``.
    optimal_lr : float
        ``2 / (L + mu)``, the step that minimises the worst-case contraction [2]_.
    optimal_rate : float
        ``(L - mu) / (L + mu)``: the error's contraction per step at ``optimal_lr``
        (1 when ``mu == 0``).
    """

    L: float
    mu: float
    critical_lr: float
    oscillation_lr: float
    optimal_lr: float
    optimal_rate: float


def gradient_descent(H: ArrayLike) -> GradientDescent:
    """Thresholds of full-batch GD for a Hessian ``H`` (:func:`hessian`) or its eigenvalues.

    Parameters
    ----------
    H : array_like
        A finite symmetric matrix, or a 1-d array of its eigenvalues (or one eigenvalue).
        The largest must be > 0; negative ones count as 0 (``mu = max(min, 0)``).

    Returns
    -------
    GradientDescent
        Thresholds too large for float64 (``L`` below about 1e-308) are inf.

    Raises
    ------
    gdsim.ParameterError
        ``param`` "H": not real, not finite, empty, not symmetric, eigenvalues beyond
        float64, or a largest eigenvalue <= 0.

    Examples
    --------
    >>> import numpy as np
    >>> gd = gradient_descent(np.diag([4.0, 1.0]))
    >>> gd.critical_lr, gd.optimal_lr, gd.optimal_rate
    (0.5, 0.4, 0.6)
    """
    lam = check_eigenvalues("H", H)
    L, mu = float(lam.max()), float(lam.min())
    if not L > 0:
        raise ParameterError(f"H's largest eigenvalue must be > 0 (a curvature), got {L!r}", "H")
    mu = max(mu, 0.0)
    # Python floats: 2 / L overflows to inf (no warning); L + mu may overflow, its half not
    total = L + mu
    if math.isinf(total):
        half = 0.5 * L + 0.5 * mu
        optimal_lr, optimal_rate = 1.0 / half, (0.5 * L - 0.5 * mu) / half
    else:
        optimal_lr, optimal_rate = 2.0 / total, (L - mu) / total
    return GradientDescent(L=L, mu=mu, critical_lr=2.0 / L, oscillation_lr=1.0 / L, optimal_lr=optimal_lr,
                           optimal_rate=optimal_rate)


# ---------------------------------------------------------------------------------------
# Momentum on a quadratic: closed forms and companion matrices
# ---------------------------------------------------------------------------------------
def critical_lr(L: ArrayLike, momentum: ArrayLike = 0.0, *, dampening: ArrayLike = 0.0, weight_decay: ArrayLike = 0.0,
                nesterov: bool = False) -> float | np.ndarray:
    """The largest stable learning rate of full-batch GD with momentum, torch's form.

    Parameters
    ----------
    L : float or array_like
        Largest Hessian eigenvalue (:attr:`GradientDescent.L`), finite and > 0.
    momentum, dampening, weight_decay : float or array_like
        Broadcast against each other and ``L``. ``momentum`` in ``[0, 1)``; with heavy
        ball and momentum > 0, ``dampening < 1``.
    nesterov : bool

    Returns
    -------
    float or numpy.ndarray
        Heavy ball: ``2 (1 + beta) / ((1 - tau) (L + wd))`` [3]_; Nesterov:
        ``2 (1 + beta) / ((1 + 2 beta) (L + wd))`` (the Jury conditions of its companion
        matrix); ``beta = 0`` gives GD's ``2 / L``. Above it the iterates diverge. Always
        > 0; inf where it exceeds float64 (``L`` below about 1e-308).

    Raises
    ------
    gdsim.ParameterError
        Naming the argument: ``L`` not finite and > 0; ``momentum``, ``dampening`` or
        ``weight_decay`` outside SGD's rules, ``momentum >= 1`` or (heavy ball)
        ``dampening >= 1``; ``nesterov`` not a bool or with dampening; shapes that do not
        broadcast; a threshold below float64's smallest number (``dampening`` hugely
        negative).

    Examples
    --------
    >>> critical_lr(4.0), critical_lr(4.0, 0.5), critical_lr(4.0, 0.5, nesterov=True)
    (0.5, 0.75, 0.375)
    """
    L = check_reals("L", L, minimum=0.0, strict=True)
    beta, tau, wd, nesterov = check_momentum(momentum, dampening, weight_decay, nesterov, below_one=True)
    check_broadcast(L=L, momentum=beta, dampening=tau, weight_decay=wd)
    if nesterov:
        ratio = (1.0 + beta) / (1.0 + 2.0 * beta)
    else:
        ratio = (1.0 + beta) / (1.0 - np.where(beta > 0, tau, 0.0))  # with beta == 0 torch ignores dampening
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        total = L + wd  # both >= 0: overflows only to +inf, where the halves do not
        out = np.where(np.isinf(total), ratio / (0.5 * L + 0.5 * wd), 2.0 * ratio / np.where(np.isinf(total), 1.0,
                                                                                              total))
    if np.any(out == 0):
        raise ParameterError(f"dampening={short_repr(dampening)} makes the critical learning rate "
                             "2 (1 + momentum) / ((1 - dampening) (L + weight_decay)) smaller than float64's "
                             "smallest number; dampening must be closer to 0", "dampening")
    return float(out) if np.ndim(out) == 0 else out


def companion(lr: ArrayLike, lam: ArrayLike, momentum: ArrayLike = 0.0, *, dampening: ArrayLike = 0.0,
              nesterov: bool = False) -> np.ndarray:
    """The 2 x 2 matrix mapping ``(p, buf)`` to the next step's, for curvature ``lam``.

    Heavy ball (torch): ``buf' = beta buf + (1 - tau) lam p``, ``p' = p - lr buf'``;
    Nesterov: ``buf' = beta buf + lam p``, ``p' = p - lr (lam p + beta buf')``.
    Arguments broadcast; the result has shape ``broadcast + (2, 2)``. ``lr >= 0`` and
    ``lam`` any finite reals; ``momentum`` and ``dampening`` as in :class:`gdsim.SGD`
    (momentum >= 1 allowed). Entries beyond float64 are +-inf, never NaN.

    Raises
    ------
    gdsim.ParameterError
        Naming the argument that is not finite or out of range, or whose shape does not
        broadcast; ``nesterov`` not a bool, or with dampening.
    """
    lr = check_hyper("lr", lr)
    lam = check_reals("lam", lam)
    beta, tau, _, nesterov = check_momentum(momentum, dampening, 0.0, nesterov)
    shape = check_broadcast(lr=lr, lam=lam, momentum=beta, dampening=tau)
    lr, lam, beta, tau = (np.broadcast_to(v, shape) for v in (lr, lam, beta, tau))
    M = np.empty(shape + (2, 2))
    with np.errstate(over="ignore"):
        if nesterov:
            M[..., 0, 0] = 1.0 - safe_product(lr, lam, 1.0 + beta)
            M[..., 0, 1] = -safe_product(lr, beta, beta)
            M[..., 1, 0] = lam
        else:
            g = np.where(beta > 0, 1.0 - tau, 1.0)
            M[..., 0, 0] = 1.0 - safe_product(lr, g, lam)
            M[..., 0, 1] = -safe_product(lr, beta)
            M[..., 1, 0] = safe_product(g, lam)
    M[..., 1, 1] = beta
    return M


def spectral_radius(lr: ArrayLike, eigenvalues: ArrayLike, momentum: ArrayLike = 0.0, *, dampening: ArrayLike = 0.0,
                    weight_decay: ArrayLike = 0.0, nesterov: bool = False) -> float | np.ndarray:
    """Contraction factor per step of full-batch GD with momentum on a quadratic.

    Parameters
    ----------
    lr, momentum, dampening, weight_decay : float or array_like
        Broadcast against each other (e.g. an ``lr`` column against a ``momentum`` row
        for a phase diagram); ``momentum >= 1`` is allowed (and never stable).
    eigenvalues : float or array_like
        The Hessian's eigenvalues (any finite reals), or a symmetric Hessian matrix.
    nesterov : bool

    Returns
    -------
    float or numpy.ndarray
        ``max over eigenvalues`` of the spectral radius of :func:`companion` (with
        ``lam + weight_decay``): the error shrinks like ``rho^t``; ``rho > 1`` diverges;
        inf where it exceeds float64.

    Raises
    ------
    gdsim.ParameterError
        Naming the argument: ``lr``, ``momentum``, ``dampening`` or ``weight_decay``
        outside SGD's rules, ``eigenvalues`` not finite, empty or not symmetric, shapes
        that do not broadcast; ``nesterov`` not a bool, or with dampening.

    Examples
    --------
    >>> round(spectral_radius(0.1, [4.0, 1.0]), 12)          # GD: |1 - lr L|
    0.9
    """
    lr = check_hyper("lr", lr)
    beta, tau, wd, nesterov = check_momentum(momentum, dampening, weight_decay, nesterov)
    lam = check_eigenvalues("eigenvalues", eigenvalues)
    shape = check_broadcast(lr=lr, momentum=beta, dampening=tau, weight_decay=wd)
    lr, beta, tau, wd = (np.broadcast_to(v, shape) for v in (lr, beta, tau, wd))
    g = 1.0 if nesterov else np.where(beta > 0, 1.0 - tau, 1.0)
    rho = np.zeros(shape)
    for value in lam:
        with np.errstate(over="ignore"):
            curvature = value + wd  # overflows only when both are positive: then add the two parts
            k = np.where(np.isinf(curvature), safe_product(lr, g, value) + safe_product(lr, g, wd),
                         safe_product(lr, g, np.where(np.isinf(curvature), 0.0, curvature)))
        rho = np.maximum(rho, companion_radius(k, beta, nesterov))
    return float(rho) if rho.ndim == 0 else rho


def companion_radius(k, beta, nesterov):
    """Spectral radius of the companion matrix with effective curvature ``k`` (``lr`` times
    the gradient's curvature), from its trace ``T`` and determinant ``D``: in the
    coordinates ``(p, lr buf)`` it is ``[[1 - k, -beta], [k, beta]]`` (heavy ball) or
    ``[[1 - (1 + beta) k, -beta^2], [k, beta]]`` (Nesterov). inf when ``T`` or ``D``
    overflows (the radius is at least ``|T| / 2`` and ``sqrt|D|``)."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        if nesterov:
            one_minus_k = 1.0 - k
            trace, det = safe_product(1.0 + beta, one_minus_k), safe_product(beta, one_minus_k)
        else:
            trace, det = 1.0 + beta - k, beta
        # scale by s >= |T|, 2 sqrt|D| so that T^2 - 4D cannot overflow
        s = np.maximum(np.abs(trace), 2.0 * np.sqrt(np.abs(det)))
        safe = np.where((s > 0) & np.isfinite(s), s, 1.0)
        t, d = trace / safe, det / safe / safe
        disc = t * t - 4.0 * d
        scaled = np.where(disc >= 0, 0.5 * (np.abs(t) + np.sqrt(np.abs(disc))), np.sqrt(np.abs(d)))
        rho = safe * scaled
    return np.where(np.isfinite(s), np.where(s > 0, rho, 0.0), np.inf)


def polyak(L: float, mu: float) -> tuple[float, float, float]:
    """Polyak's optimal heavy ball for curvatures in ``[mu, L]``, ``mu > 0`` [1]_.

    In torch's form (``buf <- beta buf + g``, ``p <- p - lr buf``), which is Polyak's
    ``p <- p - lr g + beta (p - p_prev)`` with the same ``lr``.

    Parameters
    ----------
    L, mu : float
        Largest and smallest curvature, finite, ``0 < mu <= L``.

    Returns
    -------
    lr, momentum, rate : float
        ``lr = 4 / (sqrt(L) + sqrt(mu))^2``, ``momentum = ((sqrt(L) - sqrt(mu)) /
        (sqrt(L) + sqrt(mu)))^2`` and the contraction per step ``sqrt(momentum)``;
        ``lr`` is inf where it exceeds float64 (``L`` below about 1e-308).

    Raises
    ------
    gdsim.ParameterError
        ``param`` "L" or "mu": not a finite real number > 0, or ``mu > L``.

    Examples
    --------
    >>> polyak(4.0, 1.0)
    (0.4444444444444444, 0.1111111111111111, 0.3333333333333333)
    """
    L = check_real("L", L, minimum=0.0, strict=True)
    mu = check_real("mu", mu, minimum=0.0, strict=True)
    if mu > L:
        raise ParameterError(f"mu must satisfy 0 < mu <= L, got mu={mu!r} > L={L!r}", "mu")
    # Python floats, squares as products: overflow gives inf, never an exception or warning
    sL, smu = math.sqrt(L), math.sqrt(mu)
    rate = (sL - smu) / (sL + smu)
    half_lr = 2.0 / (sL + smu)
    return half_lr * half_lr, rate * rate, rate
