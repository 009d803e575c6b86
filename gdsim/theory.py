"""Where theory says gradient descent converges, oscillates or diverges.

Closed forms and exact linear-algebra computations (float64) for least squares with MSE,
the loss of :class:`gdsim.Linear`, whose Hessian is constant: with ``a = (x, 1)`` and ``n``
samples, every output's ``(w, b)`` block of the Hessian is

    H = 2 / (n * n_out) * sum_i a_i a_i^T      (reduction="mean", torch's MSELoss)
    H = 2 * sum_i a_i a_i^T                     (reduction="sum")

and the outputs decouple, so each output's parameters follow the same linear dynamics.
On a quadratic, SGD in torch's form (:class:`gdsim.SGD`) is a linear map on the state
``(p, buf)`` around the minimiser (plus a constant from the gradient noise of mini-batches,
which does not change stability):

* heavy ball: ``buf <- beta buf + (1 - tau) g``, ``p <- p - lr buf``;
* Nesterov: ``buf <- beta buf + g``, ``p <- p - lr (g + beta buf)``;
* weight decay ``wd`` adds ``wd p`` to ``g``: every curvature ``lambda`` becomes
  ``lambda + wd``.

A run converges when the spectral radius of that map is below 1 and diverges when it is
above. For full-batch GD the map has a 2 x 2 block per Hessian eigenvalue (the companion
matrix of the momentum recursion), which gives the classical closed forms; for SGD in a
fixed sample order it is the product of one epoch's maps; for SGD with replacement it is
the second-moment recursion.

References
----------
.. [1] B. T. Polyak, "Some methods of speeding up the convergence of iteration methods",
   USSR Comput. Math. Math. Phys. 4(5), 1964 (heavy ball, optimal parameters and rate).
.. [2] Y. Nesterov, *Introductory Lectures on Convex Optimization*, Kluwer, 2004,
   sections 1.2.3 and 2.1.5 (gradient descent on smooth strongly convex quadratics:
   step size ``2 / (L + mu)``, rate ``(L - mu) / (L + mu)``).
.. [3] G. Goh, "Why momentum really works", Distill, 2017 (the 2 x 2 companion matrices
   and the stability region ``0 < lr lambda < 2 (1 + beta)``).
.. [4] L. Wu, C. Ma, W. E, "How SGD selects the global minima in over-parameterized
   learning: a dynamical stability perspective", NeurIPS 2018 (linear stability of SGD in
   the mean-square sense, second-moment recursion).
.. [5] J. Cohen et al., "Gradient descent on neural networks typically occurs at the
   edge of stability", ICLR 2021 (sharpness: the top Hessian eigenvalue, against 2 / lr).
"""

from dataclasses import dataclass

import numpy as np

from ._validate import ParameterError, check_bool, check_int, is_real_scalar
from .batches import batch_bounds
from .models import check_model
from .optim import HYPER_PARAMETERS, check_nesterov
from .scalar import MEAN


# ---------------------------------------------------------------------------------------
# Curvature of least squares
# ---------------------------------------------------------------------------------------
def _check_linear_mse(model, what):
    model = check_model(model)
    if not model.spec.is_least_squares:
        raise ParameterError(f"{what} needs a gdsim.Linear model with loss='mse' (a quadratic loss), got {model!r}; "
                         "for an MLP use gdsim.theory.sharpness", "model")
    return model


def _per_sample_curvatures(model, X):
    """``(A, weight)``: the rows ``a_i = (x_i, 1)`` and the factor such that sample ``i``
    adds ``weight * a_i a_i^T`` to a batch's Hessian block per sample of the batch
    (``2 / n_out`` for "mean", then divided by the batch size; ``2`` for "sum")."""
    X = model.check_inputs(X)
    A = np.hstack([X, np.ones((X.shape[0], 1))])
    weight = 2.0 / model.n_out if model.reduction_code == MEAN else 2.0
    return A, weight


def _batch_hessian(model, rows, weight):
    """Hessian block of the loss of a batch with rows ``a_i`` (see :func:`_per_sample_curvatures`)."""
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
    model = _check_linear_mse(model, "hessian")
    return _batch_hessian(model, *_per_sample_curvatures(model, X))


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
def _check_momentum(momentum, dampening, weight_decay, nesterov, below_one=False):
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
    nesterov = _check_momentum(momentum, dampening, weight_decay, nesterov, below_one=True)
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
    nesterov = _check_momentum(momentum, dampening, weight_decay, nesterov)
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
    model = _check_linear_mse(model, what)
    nesterov = _check_momentum(momentum, dampening, weight_decay, nesterov)
    for name, value in (("lr", lr), ("momentum", momentum), ("dampening", dampening), ("weight_decay", weight_decay)):
        if not is_real_scalar(value):
            raise ParameterError(f"{name} must be a real number here, got {value!r}", name)
    HYPER_PARAMETERS["lr"].check_values(lr)
    A, weight = _per_sample_curvatures(model, X)
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
    return np.stack([_batch_hessian(model, rows, weight) for rows in batches]) + weight_decay * np.eye(A.shape[1])


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
    model = _check_linear_mse(model, what)
    _check_momentum(momentum, dampening, weight_decay, nesterov, below_one=True)
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
    model = _check_linear_mse(model, "step_critical_lr")
    A, weight = _per_sample_curvatures(model, X)
    top = 0.0
    for rows in _epoch_batches(A, batch_size, order, drop_last):
        top = max(top, float(np.linalg.eigvalsh(_batch_hessian(model, rows, weight)).max()))
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


# ---------------------------------------------------------------------------------------
# MLPs: sharpness
# ---------------------------------------------------------------------------------------
def hessian_vector_product(model, params, X, Y, v, *, eps=None):
    """``H v`` for the full-batch loss at ``params``, by central differences of the
    gradient kernel: ``(grad(p + h v) - grad(p - h v)) / (2 h)``.

    ``h`` defaults to ``1e-5 * max(1, |params|) / |v|``: the error is ``O(h^2)`` from the
    third derivative plus ``O(1e-16 / h)`` from rounding (about 1e-9 relative for smooth
    losses); a ReLU kink within ``h`` of a sample's pre-activation adds its own error.
    """
    model = check_model(model)
    params = model.check_params(params, "params")
    X, Y = model.check_data(X, Y)
    v = np.asarray(v, dtype=np.float64)
    norm = np.linalg.norm(v)
    if norm == 0:
        return np.zeros_like(v)
    h = 1e-5 * max(1.0, float(np.linalg.norm(params))) / norm if eps is None else float(eps)
    return (model.grad(params + h * v, X, Y) - model.grad(params - h * v, X, Y)) / (2.0 * h)


def sharpness(model, params, X, Y, *, k=1, tol=1e-8):
    """The top Hessian eigenvalue(s) of the full-batch loss at ``params`` [5]_.

    Lanczos (:func:`scipy.sparse.linalg.eigsh`, largest algebraic) on
    :func:`hessian_vector_product`, so only gradients are computed. Gradient descent is
    stable near ``params`` only if ``sharpness < 2 / lr`` (for a quadratic, exactly
    :func:`critical_lr`).

    Parameters
    ----------
    model : gdsim.MLP or gdsim.Linear
    params : array_like (n_params,)
    X, Y : array_like
        The data (as in :meth:`gdsim.MLP.loss`).
    k : int, default 1
        How many of the largest eigenvalues.
    tol : float
        eigsh's relative tolerance.

    Returns
    -------
    float (k == 1) or numpy.ndarray (k,), largest first
    """
    from scipy.sparse.linalg import LinearOperator, eigsh

    model = check_model(model)
    params = model.check_params(params, "params")
    X, Y = model.check_data(X, Y)
    k = check_int("k", k, minimum=1, maximum=model.n_params)
    P = model.n_params
    if P <= 2 * k + 1 or P <= 20:  # tiny problems: the dense Hessian from P products
        H = np.column_stack([hessian_vector_product(model, params, X, Y, e) for e in np.eye(P)])
        values = np.linalg.eigvalsh(0.5 * (H + H.T))[::-1][:k]
    else:
        op = LinearOperator((P, P), matvec=lambda v: hessian_vector_product(model, params, X, Y, v.ravel()),
                            dtype=np.float64)
        values = np.sort(eigsh(op, k=k, which="LA", tol=tol, v0=np.ones(P), return_eigenvectors=False))[::-1]
    return float(values[0]) if k == 1 else values
