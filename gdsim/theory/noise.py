"""Gradient noise of any model: McCandlish et al.'s noise scales and Wu, Ma & E's linear
stability of SGD at a minimum (see :mod:`gdsim.theory`).

Both need the loss to be a mean over samples (``reduction="mean"`` or ``"half_mean"``):
mini-batch SGD then takes the mean of ``B`` per-sample gradients
(:meth:`gdsim.MLP.per_sample_grads`), an unbiased estimate of the full gradient ``G`` with
covariance ``Sigma / B``. ``half_mean`` halves every sample's loss, gradient and Hessian:
the noise scales (ratios) do not change, the optimal and critical learning rates double,
as they do for the half loss.

References
----------
.. [1] S. McCandlish, J. Kaplan, D. Amodei, OpenAI Dota Team, "An empirical model of
   large-batch training", arXiv:1812.06162, 2018, section 2.2 (``B_simple``,
   ``B_noise``, ``eps_max`` and ``eps_opt(B) = eps_max / (1 + B_noise / B)``).
.. [2] L. Wu, C. Ma, W. E, "How SGD selects the global minima in over-parameterized
   learning: a dynamical stability perspective", NeurIPS 2018, section 3 (sharpness,
   non-uniformity and the mean-square linear stability of SGD at a minimum).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:  # for the annotations only
    from ..models import MLP

from .. import hvp
from .._validate import ParameterError, check_choice, check_int
from ..scalar import averages
from .checks import check_hyper, check_momentum, radius_of
from .sgd import MAX_DRAWN_BATCH, second_moment_map
from .checks import safe_norm
from .sharpness import ExactProduct, check_point, gradient_overflow

#: The most parameters :func:`linear_stability` takes (it forms every per-sample Hessian).
MAX_DENSE_PARAMS = 2000

#: The most entries of the per-sample Hessians ``n * n_params**2`` (8 bytes each).
MAX_HESSIAN_ENTRIES = 5 * 10**7

#: Hessian eigenvalues below this fraction of the largest count as flat (finite
#: differences leave about 1e-9 of it in exactly flat directions).
CURVED_RTOL = 1e-6

#: The largest curved subspace whose mean-square map ((2r)^2 x (2r)^2) is formed.
MAX_CURVED_DIM = 40


class NoiseScales(NamedTuple):
    """McCandlish et al.'s noise scales at one point [1]_.

    Attributes
    ----------
    b_simple : float
        ``tr(Sigma) / |G|^2``: the batch size at which the gradient noise is as large as
        the gradient.
    b_noise : float
        ``tr(H Sigma) / (G^T H G)``: the critical batch size (curvature-weighted); NaN
        where ``G^T H G <= 0`` (no descent step is optimal along ``G``).
    lr_max : float
        ``eps_max = |G|^2 / (G^T H G)``: the optimal step along ``G`` of the local
        quadratic model with the full gradient; inf where ``G^T H G <= 0``.
    lr_opt : float or None
        ``eps_max / (1 + B_noise / B)``: the optimal step with batches of ``batch_size``
        (None when no batch size is given).
    """

    b_simple: float
    b_noise: float
    lr_max: float
    lr_opt: float | None


class LinearStability(NamedTuple):
    """Wu, Ma & E's linear stability of SGD at a minimum [2]_.

    Attributes
    ----------
    sharpness : float
        ``a = lambda_max(H)``.
    non_uniformity : float
        ``s = sqrt(lambda_max(Sigma_H))``, ``Sigma_H = (1/n) sum_i H_i^2 - H^2``.
    sharpness_limit : float
        ``2 / lr`` (``2 (1 + momentum) / lr`` with heavy ball, the full-batch threshold).
    non_uniformity_limit : float
        ``1 / (lr sqrt(c))`` with ``c`` the variance factor of a batch's Hessian: ``1 / B``
        with replacement (``sqrt(B) / lr``), ``(n - B) / (B (n - 1))`` for uniform
        ``B``-subsets (the paper's ``sqrt(B (n - 1) / (n - B)) / lr``); NaN with momentum
        (the paper's bound is for plain SGD).
    criterion : bool or None
        The paper's simple condition ``a <= sharpness_limit and s <= non_uniformity_limit``
        (plain SGD; None with momentum). It is necessary for the paper's sufficient
        condition ``lambda_max((I - lr H)^2 + lr^2 c Sigma_H) <= 1`` (both terms are
        positive semi-definite), and in one dimension for mean-square stability itself;
        ``a > sharpness_limit`` always means instability (already in the mean). The
        deciding number is :attr:`mean_square_radius`.
    mean_square_radius : float
        Spectral radius of the second-moment map of one linearised SGD step
        (:func:`gdsim.theory.sgd.second_moment_map`) restricted to the curved subspace
        (the span of the Hessian's eigenvectors with eigenvalue above ``CURVED_RTOL``
        times the largest): ``< 1`` iff the minimum is linearly stable in mean square.
        1.0 where nothing is curved; NaN where the subspace has more than
        :data:`MAX_CURVED_DIM` dimensions.
    curved_dim : int
        Its dimension ``r``.
    """

    sharpness: float
    non_uniformity: float
    sharpness_limit: float
    non_uniformity_limit: float
    criterion: bool | None
    mean_square_radius: float
    curved_dim: int


def _check_mean(model, what):
    """Refuse ``reduction="sum"`` and ``"half_sum"``: the formulas need a mean over samples."""
    if not averages(model.reduction_code):
        raise ParameterError(f"model must have reduction='mean' or 'half_mean' for {what} (a batch's gradient must "
                             f"be the mean of its samples'), got {model!r}; a 'sum' loss over B samples is the "
                             "'mean' one with lr times B", "model")


def noise_scales(model: MLP, params: ArrayLike, X: ArrayLike, Y: ArrayLike, batch_size: int | None = None) -> NoiseScales:
    """McCandlish et al.'s gradient noise scales and optimal learning rate at ``params`` [1]_.

    ``G`` is the full-batch gradient, ``Sigma = (1/n) sum_i (g_i - G)(g_i - G)^T`` the
    covariance of the per-sample gradients ``g_i`` (uniform sampling of the data set,
    with replacement), ``H`` the Hessian, used only through products
    (:func:`gdsim.theory.hessian_vector_product`: ``min(n, n_params) + 1`` of them).

    Parameters
    ----------
    model : gdsim.MLP or gdsim.Linear
        With ``reduction="mean"`` or ``"half_mean"``.
    params : array_like (n_params,)
    X, Y : array_like
        The data (as in :meth:`gdsim.MLP.loss`).
    batch_size : int, optional
        ``B`` in ``[1, 2**53]``, for :attr:`NoiseScales.lr_opt`.

    Returns
    -------
    NoiseScales

    Raises
    ------
    gdsim.ParameterError
        Naming the argument: ``model`` not a gdsim model or with a sum reduction;
        ``params``, ``X``, ``Y`` of the wrong shape or not finite; ``params`` where the
        gradient is 0 (the scales divide by ``|G|^2``); ``batch_size`` not an integer in
        range; ``params``, ``X`` or ``Y`` (the largest) when the gradient overflows.
    """
    model, params, X, Y = check_point(model, params, X, Y)
    _check_mean(model, "noise_scales")
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, minimum=1, maximum=MAX_DRAWN_BATCH)
    G = model.grad(params, X, Y)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflowed gradient is refused just below
        deviations = model.per_sample_grads(params, X, Y) - G
    if not (np.all(np.isfinite(G)) and np.all(np.isfinite(deviations))):
        gradient_overflow(params, X, Y)
    g2 = safe_norm(G) ** 2
    if g2 == 0:
        raise ParameterError("params: the gradient is 0 there, and the noise scales are ratios to |G|^2; take "
                             "a point before the minimum (for the minimum itself see linear_stability)", "params")
    n, P = deviations.shape
    trace_sigma = float(np.sum(deviations * deviations)) / n
    product = ExactProduct(model, params, X, Y)
    gHg = float(G @ product(G))
    if n <= P:  # one Hessian-vector product per sample
        trace_h_sigma = sum(float(d @ product(d)) for d in deviations) / n
    else:  # fewer from the dense Hessian
        H = np.column_stack([product(e) for e in np.eye(P)])
        trace_h_sigma = float(np.sum((deviations @ (0.5 * H + 0.5 * H.T)) * deviations)) / n
    if not (math.isfinite(gHg) and math.isfinite(trace_h_sigma)):
        gradient_overflow(params, X, Y)
    b_simple = trace_sigma / g2
    if gHg > 0:
        b_noise, lr_max = trace_h_sigma / gHg, g2 / gHg
    else:
        b_noise, lr_max = math.nan, math.inf
    lr_opt = None
    if batch_size is not None:
        lr_opt = lr_max / (1.0 + b_noise / batch_size) if gHg > 0 else math.inf
    return NoiseScales(b_simple=b_simple, b_noise=b_noise, lr_max=lr_max, lr_opt=lr_opt)


def per_sample_hessians(model, params, X, Y):
    """Every sample's Hessian ``(n, n_params, n_params)``: exact products
    (:func:`gdsim.hvp.batch_hvp` on the one-sample batch) along each parameter."""
    P = model.n_params
    _, kernel_Y = model.check_data(X, Y)
    work = hvp.new_workspace(model.sizes_array)
    out = np.empty((X.shape[0], P, P))
    unit = np.zeros(P)
    for i in range(X.shape[0]):
        rows = np.array([i])
        for j in range(P):
            unit[j] = 1.0
            hvp.batch_hvp(params, *model.spec[:4], X, kernel_Y, rows, unit, out[i, :, j], work, model.layer_code)
            unit[j] = 0.0
    if not np.all(np.isfinite(out)):
        gradient_overflow(params, X, Y)
    return 0.5 * out + 0.5 * np.swapaxes(out, 1, 2)


def linear_stability(model: MLP, params: ArrayLike, X: ArrayLike, Y: ArrayLike, lr: float, batch_size: int, *, momentum: float = 0.0,
                     sampling: str = "replacement") -> LinearStability:
    """Linear stability of SGD at a minimum ``params``: Wu, Ma & E's sharpness,
    non-uniformity and criterion, and the mean-square radius of the linearised SGD [2]_.

    Near a minimum, SGD's error follows ``e' = (I - lr H_B) e`` (with heavy ball, the
    companion form of :mod:`gdsim.theory.sgd`), ``H_B`` the mean of the per-sample
    Hessians ``H_i`` over a random batch. Every ``H_i`` is formed (exact Hessian-vector
    products, ``n_params`` per sample), so this is for small models.

    At an interpolating minimum (every sample's loss minimal, e.g. zero MSE) each ``H_i``
    is positive semi-definite with its range inside ``H``'s, so the flat directions of
    ``H`` are left alone by every step and the curved subspace carries the whole
    dynamics. Elsewhere the restriction to it is an approximation.

    Parameters
    ----------
    model : gdsim.MLP or gdsim.Linear
        With ``reduction="mean"`` or ``"half_mean"`` and at most :data:`MAX_DENSE_PARAMS`
        parameters.
    params : array_like (n_params,)
        The minimum (the formulas hold near one; any point is accepted).
    X, Y : array_like
        The data (as in :meth:`gdsim.MLP.loss`); ``n * n_params**2`` at most
        :data:`MAX_HESSIAN_ENTRIES`.
    lr : float
        ``>= 0``.
    batch_size : int
        ``B``: in ``[1, 2**53]`` with replacement, ``[1, n]`` for ``"reshuffle"``.
    momentum : float, default 0
        Heavy ball (torch's form, no dampening), ``>= 0``; ``>= 1`` is never stable.
    sampling : {"replacement", "reshuffle"}, default "replacement"
        ``"replacement"``: ``B`` independent uniform draws per step. ``"reshuffle"``:
        each step's batch a uniform ``B``-subset, independent across steps (the paper's
        model; in a reshuffled epoch the batches are disjoint, which this ignores).

    Returns
    -------
    LinearStability

    Raises
    ------
    gdsim.ParameterError
        Naming the argument: ``model`` not a gdsim model, with a sum reduction or too
        many parameters; ``params``, ``X``, ``Y`` of the wrong shape or not finite, ``X``
        with too many samples for the Hessians; ``lr``, ``momentum`` outside SGD's rules;
        ``batch_size`` out of range; ``sampling`` not one of the two.
    """
    model, params, X, Y = check_point(model, params, X, Y)
    _check_mean(model, "linear_stability")
    P, n = model.n_params, X.shape[0]
    if P > MAX_DENSE_PARAMS:
        raise ParameterError(f"model must have at most {MAX_DENSE_PARAMS} parameters for linear_stability (it forms "
                             f"every per-sample Hessian), got {model!r} with {P}; use a smaller model", "model")
    if n * P * P > MAX_HESSIAN_ENTRIES:
        raise ParameterError(f"X has too many samples for linear_stability with {P} parameters: the per-sample "
                             f"Hessians need n * n_params^2 = {n * P * P} entries, at most {MAX_HESSIAN_ENTRIES}; "
                             f"use at most {MAX_HESSIAN_ENTRIES // (P * P)} samples", "X")
    lr = float(check_hyper("lr", lr, scalar=True))
    beta = float(check_momentum(momentum, 0.0, 0.0, False, scalar=True)[0])
    sampling = check_choice("sampling", sampling, ("replacement", "reshuffle"))
    batch_size = check_int("batch_size", batch_size, minimum=1, maximum=MAX_DRAWN_BATCH if sampling == "replacement"
                           else n)
    # variance factor of the batch mean of the H_i
    noise = 1.0 / batch_size if sampling == "replacement" else (n - batch_size) / (batch_size * (n - 1.0)) if n > 1 \
        else 0.0

    hessians = per_sample_hessians(model, params, X, Y)
    H = hessians.mean(axis=0)
    lam, U = np.linalg.eigh(H)
    a = float(lam[-1])
    sigma_h = np.einsum("nij,njk->ik", hessians, hessians) / n - H @ H
    s = math.sqrt(max(float(np.linalg.eigvalsh(0.5 * sigma_h + 0.5 * sigma_h.T)[-1]), 0.0))

    sharpness_limit = 2.0 * (1.0 + beta) / lr if lr > 0 else math.inf
    if beta > 0:
        non_uniformity_limit, criterion = math.nan, None
    else:
        scale = lr * math.sqrt(noise)
        non_uniformity_limit = 1.0 / scale if scale > 0 else math.inf
        criterion = bool(a <= sharpness_limit and s <= non_uniformity_limit)

    curved = U[:, lam > CURVED_RTOL * max(a, 0.0)] if a > 0 else U[:, :0]
    r = curved.shape[1]
    if r == 0:
        radius = 1.0
    elif r > MAX_CURVED_DIM:
        radius = math.nan
    else:
        with np.errstate(over="ignore", invalid="ignore"):  # a huge lr: inf entries, radius inf
            k = lr * np.einsum("pi,npq,qj->nij", curved, hessians, curved)  # lr U^T H_i U
            radius = radius_of(second_moment_map(k, noise, beta, False))
    return LinearStability(sharpness=a, non_uniformity=s, sharpness_limit=sharpness_limit,
                           non_uniformity_limit=non_uniformity_limit, criterion=criterion,
                           mean_square_radius=radius, curved_dim=r)
