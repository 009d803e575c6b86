"""Least squares and full-batch gradient descent with momentum: the Hessian, closed-form
thresholds, companion matrices and Polyak's optimum (see :mod:`gdsim.theory`)."""

from dataclasses import dataclass

import numpy as np

from .._validate import ParameterError, check_bool, is_real_scalar
from ..models import check_model
from ..optim import HYPER_PARAMETERS, check_nesterov
from ..scalar import MEAN


# ---------------------------------------------------------------------------------------
# Curvature of least squares
# ---------------------------------------------------------------------------------------
def check_linear_mse(model, what):
    model = check_model(model)
    if not model.spec.is_least_squares:
        raise ParameterError(f"{what} needs a gdsim.Linear model with loss='mse' (a quadratic loss), got {model!r}; "
                         "for an MLP use gdsim.theory.sharpness", "model")
    return model


def per_sample_curvatures(model, X):
    """``(A, weight)``: the rows ``a_i = (x_i, 1)`` and the factor such that sample ``i``
    adds ``weight * a_i a_i^T`` to a batch's Hessian block per sample of the batch
    (``2 / n_out`` for "mean", then divided by the batch size; ``2`` for "sum")."""
    X = model.check_inputs(X)
    A = np.hstack([X, np.ones((X.shape[0], 1))])
    weight = 2.0 / model.n_out if model.reduction_code == MEAN else 2.0
    return A, weight


def batch_hessian(model, rows, weight):
    """Hessian block of the loss of a batch with rows ``a_i`` (see :func:`per_sample_curvatures`)."""
    scale = weight / rows.shape[0] if model.reduction_code == MEAN else weight
    return scale * (rows.T @ rows)


def hessian(model, X):
    """The Hessian block of each output's ``(w, b)`` for a :class:`gdsim.Linear` model with MSE.

    Parameters
    ----------
    model : gdsim.Linear
        With ``loss="mse"`` (either reduction).
    X : array_like (n, n_in)
        Inputs (the targets do not enter the Hessian of least squares).

    Returns
    -------
    numpy.ndarray (n_in + 1, n_in + 1)
        ``H = 2/(n n_out) sum_i a_i a_i^T`` ("mean") or ``2 sum_i a_i a_i^T`` ("sum"),
        ``a = (x, 1)``: rows and columns ordered as the output's weights, then its bias.
        The full Hessian in torch's flat order has this block once per output.
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


def gradient_descent(H):
    """Thresholds of full-batch GD for a Hessian ``H`` (:func:`hessian`) or its eigenvalues.

    Returns
    -------
    GradientDescent

    Examples
    --------
    >>> import numpy as np
    >>> gd = gradient_descent(np.diag([4.0, 1.0]))
    >>> gd.critical_lr, gd.optimal_lr, gd.optimal_rate
    (0.5, 0.4, 0.6)
    """
    lam = _eigenvalues(H)
    L, mu = float(lam.max()), float(lam.min())
    if not L > 0:
        raise ValueError(f"the Hessian's largest eigenvalue must be > 0, got {L}")
    mu = max(mu, 0.0)
    return GradientDescent(L=L, mu=mu, critical_lr=2.0 / L, oscillation_lr=1.0 / L, optimal_lr=2.0 / (L + mu),
                           optimal_rate=(L - mu) / (L + mu))


def _eigenvalues(H):
    H = np.asarray(H, dtype=np.float64)
    if H.ndim == 2:
        if H.shape[0] != H.shape[1] or not np.allclose(H, H.T, rtol=1e-12, atol=0.0):
            raise ValueError(f"H must be a symmetric matrix, got shape {H.shape}")
        return np.linalg.eigvalsh(H)
    if H.ndim == 1 and H.size > 0:
        return H
    raise ValueError(f"H must be a symmetric matrix or a 1-d array of its eigenvalues, got shape {H.shape}")


# ---------------------------------------------------------------------------------------
# Momentum on a quadratic: closed forms and companion matrices
# ---------------------------------------------------------------------------------------
def check_momentum(momentum, dampening, weight_decay, nesterov, below_one=False):
    """Validate the momentum settings with SGD's rules (:data:`gdsim.optim.HYPER_PARAMETERS`,
    :func:`gdsim.optim.check_nesterov`; momentum 0 with Nesterov is plain GD here), and
    ``below_one``: a threshold is asked for, which only exists for momentum < 1. Returns
    ``nesterov`` as a bool."""
    for name, value in (("momentum", momentum), ("dampening", dampening), ("weight_decay", weight_decay)):
        HYPER_PARAMETERS[name].check_values(value)
    if below_one and np.any(np.asarray(momentum) >= 1):
        raise ParameterError(f"momentum must be < 1 (no learning rate is stable from 1 on), got {momentum!r}",
                             "momentum")
    nesterov = check_bool("nesterov", nesterov)
    check_nesterov(nesterov, momentum, dampening, require_momentum=False)
    return nesterov


def critical_lr(L, momentum=0.0, *, dampening=0.0, weight_decay=0.0, nesterov=False):
    """The largest stable learning rate of full-batch GD with momentum, torch's form.

    Parameters
    ----------
    L : float
        Largest Hessian eigenvalue (:attr:`GradientDescent.L`).
    momentum, dampening, weight_decay : float or array_like
        Broadcast against each other. ``momentum`` in ``[0, 1)``.
    nesterov : bool

    Returns
    -------
    float or numpy.ndarray
        Heavy ball: ``2 (1 + beta) / ((1 - tau) (L + wd))`` [3]_; Nesterov:
        ``2 (1 + beta) / ((1 + 2 beta) (L + wd))`` (the Jury conditions of its companion
        matrix); ``beta = 0`` gives GD's ``2 / L``. Above it the iterates diverge.

    Examples
    --------
    >>> critical_lr(4.0), critical_lr(4.0, 0.5), critical_lr(4.0, 0.5, nesterov=True)
    (0.5, 0.75, 0.375)
    """
    nesterov = check_momentum(momentum, dampening, weight_decay, nesterov, below_one=True)
    beta = np.asarray(momentum, dtype=np.float64)
    lam = L + np.asarray(weight_decay, dtype=np.float64)
    if nesterov:
        out = 2.0 * (1.0 + beta) / ((1.0 + 2.0 * beta) * lam)
    else:
        # with beta == 0, torch ignores dampening
        tau = np.where(beta > 0, np.asarray(dampening, dtype=np.float64), 0.0)
        out = 2.0 * (1.0 + beta) / ((1.0 - tau) * lam)
    return float(out) if np.ndim(out) == 0 else out


def companion(lr, lam, momentum=0.0, *, dampening=0.0, nesterov=False):
    """The 2 x 2 matrix mapping ``(p, buf)`` to the next step's, for curvature ``lam``.

    Heavy ball (torch): ``buf' = beta buf + (1 - tau) lam p``, ``p' = p - lr buf'``;
    Nesterov: ``buf' = beta buf + lam p``, ``p' = p - lr (lam p + beta buf')``.
    Arguments broadcast; the result has shape ``broadcast + (2, 2)``.
    """
    lr, lam, beta, tau = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64)
                                               for v in (lr, lam, momentum, dampening)))
    M = np.empty(lr.shape + (2, 2))
    if nesterov:
        M[..., 0, 0] = 1.0 - lr * lam * (1.0 + beta)
        M[..., 0, 1] = -lr * beta * beta
        M[..., 1, 0] = lam
    else:
        g = np.where(beta > 0, 1.0 - tau, 1.0) * lam
        M[..., 0, 0] = 1.0 - lr * g
        M[..., 0, 1] = -lr * beta
        M[..., 1, 0] = g
    M[..., 1, 1] = beta
    return M


def spectral_radius(lr, eigenvalues, momentum=0.0, *, dampening=0.0, weight_decay=0.0, nesterov=False):
    """Contraction factor per step of full-batch GD with momentum on a quadratic.

    Parameters
    ----------
    lr, momentum, dampening, weight_decay : float or array_like
        Broadcast against each other (e.g. an ``lr`` column against a ``momentum`` row
        for a phase diagram); ``momentum >= 1`` is allowed (and never stable).
    eigenvalues : array_like
        The Hessian's eigenvalues (or a Hessian matrix).
    nesterov : bool

    Returns
    -------
    float or numpy.ndarray
        ``max over eigenvalues`` of the spectral radius of :func:`companion` (with
        ``lam + weight_decay``): the error shrinks like ``rho^t``; ``rho > 1`` diverges.

    Examples
    --------
    >>> round(spectral_radius(0.1, [4.0, 1.0]), 12)          # GD: |1 - lr L|
    0.9
    """
    nesterov = check_momentum(momentum, dampening, weight_decay, nesterov)
    lam = _eigenvalues(eigenvalues)
    lr, beta, tau, wd = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64)
                                              for v in (lr, momentum, dampening, weight_decay)))
    rho = np.zeros(lr.shape)
    for value in lam:
        M = companion(lr, value + wd, beta, dampening=tau, nesterov=nesterov)
        rho = np.maximum(rho, np.abs(np.linalg.eigvals(M)).max(axis=-1))
    return float(rho) if rho.ndim == 0 else rho


def polyak(L, mu):
    """Polyak's optimal heavy ball for curvatures in ``[mu, L]``, ``mu > 0`` [1]_.

    In torch's form (``buf <- beta buf + g``, ``p <- p - lr buf``), which is Polyak's
    ``p <- p - lr g + beta (p - p_prev)`` with the same ``lr``.

    Returns
    -------
    lr, momentum, rate : float
        ``lr = 4 / (sqrt(L) + sqrt(mu))^2``, ``momentum = ((sqrt(L) - sqrt(mu)) /
        (sqrt(L) + sqrt(mu)))^2`` and the contraction per step ``sqrt(momentum)``.

    Examples
    --------
    >>> polyak(4.0, 1.0)
    (0.4444444444444444, 0.1111111111111111, 0.3333333333333333)
    """
    if not (is_real_scalar(L) and is_real_scalar(mu) and L >= mu > 0):
        raise ValueError(f"polyak needs 0 < mu <= L, got L={L!r}, mu={mu!r}")
    sL, smu = np.sqrt(L), np.sqrt(mu)
    beta = ((sL - smu) / (sL + smu)) ** 2
    return float(4.0 / (sL + smu) ** 2), float(beta), float(np.sqrt(beta))
