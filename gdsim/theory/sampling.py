"""Stability of SGD on least squares under each sampling scheme: the top Lyapunov exponent
of the random product of epoch maps (almost-sure stability) and a Monte Carlo estimate of
its mean-square radius (see :mod:`gdsim.theory`).

An epoch of SGD is a linear map ``M`` of the state ``(p - p*, lr buf)`` (the step maps of
:mod:`gdsim.theory.sgd`, multiplied over the epoch's batches), random through the sample
order:

* ``"fixed"``: data order every epoch, ``M`` the same each time;
* ``"reshuffle"``: a fresh permutation per epoch, drawn as :func:`gdsim.batches.batch_orders`
  with ``shuffle=True`` draws it;
* ``"replacement"``: each epoch's ``n`` indices drawn i.i.d. uniformly with replacement,
  then sliced into batches by the same rule (:func:`gdsim.batches.batch_bounds`).

The error after ``T`` epochs is ``M_T ... M_1 e_0``. Its growth rate ``(1/T) log |M_T ...
M_1 e_0|`` tends almost surely to the top Lyapunov exponent ``gamma`` [1]_ (per epoch):
``gamma < 0`` means almost every run converges. The mean square ``E |e_T|^2`` grows like
``rho(E[M (x) M])^T`` [2]_; by Jensen's inequality ``gamma <= log(rho) / 2``, so
mean-square stability implies almost-sure stability, not conversely.

References
----------
.. [1] H. Furstenberg, H. Kesten, "Products of random matrices", Ann. Math. Statist. 31,
   1960; G. Benettin, L. Galgani, A. Giorgilli, J.-M. Strelcyn, "Lyapunov characteristic
   exponents for smooth dynamical systems", Meccanica 15, 1980 (the renormalisation
   method used here).
.. [2] L. Wu, C. Ma, W. E, "How SGD selects the global minima in over-parameterized
   learning: a dynamical stability perspective", NeurIPS 2018 (mean-square stability).
.. [3] G. L. Jones, M. Haran, B. S. Caffo, R. Neath, "Fixed-width output analysis for
   Markov chain Monte Carlo", J. Amer. Statist. Assoc. 101, 2006 (batch means).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:  # for the annotations only
    from ..models import Linear

from .._validate import check_bool, check_choice, check_int, check_seed
from ..batches import batch_bounds
from .checks import radius_of
from .quadratic import batch_hessian, critical_lr, hessian
from .sgd import (
    check_drawn_batch,
    effective_curvatures,
    lr_scale,
    sgd_settings,
    step_critical_lr,
    step_matrices,
)

#: The sampling schemes of :func:`lyapunov_exponent` and :func:`mean_square_radius`.
SAMPLINGS = ("fixed", "reshuffle", "replacement")

#: The Lyapunov estimates of :func:`almost_sure_critical_lr`: epochs each (after a burn-in
#: of a tenth of them), and the seed of their orders (not one a simulated run uses by chance).
ALMOST_SURE_EPOCHS, ALMOST_SURE_SEED = 600, 1_000_003

#: Epochs whose maps are built at once (memory: this many ``(2d, 2d)`` matrices per step).
_CHUNK = 256


class Lyapunov(NamedTuple):
    """Top Lyapunov exponent per epoch of SGD's error, with a 95% confidence interval.

    Attributes
    ----------
    exponent : float
        ``< 0``: almost every run converges, the error shrinking like
        ``exp(exponent * epochs)``; ``> 0``: it grows. ``-inf`` when the epoch maps
        annihilate the error (``lr lam = 1`` on a single sample); ``inf`` when a step's
        map exceeds float64.
    low, high : float
        The interval from the spread of ``blocks`` consecutive block means (equal to
        ``exponent`` for ``"fixed"`` once the burn-in has aligned the error).
    """

    exponent: float
    low: float
    high: float


class AlmostSure(NamedTuple):
    """Where a typical run of SGD becomes unstable: the lr at which the top Lyapunov
    exponent passes 0 (:func:`almost_sure_critical_lr`).

    Attributes
    ----------
    lr : float
        Where the exponent's estimate passes 0; inf when nothing up to ``lr_max`` is unstable.
    first, last : float
        Where the upper and the lower end of its 95% interval pass 0: the band within
        which the estimate cannot tell.
    """

    lr: float
    first: float
    last: float


class MeanSquare(NamedTuple):
    """Monte Carlo spectral radius of ``E[M (x) M]`` over random epoch maps ``M``.

    Attributes
    ----------
    radius : float
        ``E |e|^2`` grows (> 1) or shrinks (< 1) by this factor per epoch.
    low, high : float
        95% confidence interval from the radii of ``blocks`` independent groups of
        samples (zero width for ``"fixed"``).
    """

    radius: float
    low: float
    high: float


def _check_sampling(model, X, lr, batch_size, sampling, drop_last, momentum, dampening, weight_decay, nesterov,
                    what):
    """The checked settings shared by both estimators."""
    model, A, weight, lr, beta, tau, wd, nesterov = sgd_settings(
        model, X, lr, momentum, dampening, weight_decay, nesterov, what)
    n = A.shape[0]
    batch_size = check_int("batch_size", batch_size, minimum=1, maximum=n)
    sampling = check_choice("sampling", sampling, SAMPLINGS)
    drop_last = check_bool("drop_last", drop_last)
    return model, A, weight, lr_scale(lr, beta, tau, nesterov), wd, beta, nesterov, batch_bounds(
        n, batch_size, drop_last), sampling


def _orders(sampling, n, count, rng):
    """The sample order of ``count`` epochs, ``(count, n)``; ``rng`` advanced as
    :func:`gdsim.batches.batch_orders` advances it (one ``permutation(n)`` per epoch)."""
    if sampling == "fixed":
        return np.tile(np.arange(n), (count, 1))
    if sampling == "reshuffle":
        return np.stack([rng.permutation(n) for _ in range(count)])
    return np.stack([rng.integers(0, n, size=n) for _ in range(count)])


def _epoch_maps(model, A, weight, orders, bounds, c, wd, beta, nesterov):
    """The epoch maps of ``orders`` as ``(maps, logs)``, ``M_e = exp(logs[e]) maps[e]``
    with ``max |maps[e]| = 1`` (or 0): each partial product rescaled, so that neither a
    long epoch nor a large ``lr`` overflows. ``logs`` is inf where a step's map exceeds
    float64, -inf where the product is 0."""
    maps, logs = None, np.zeros(orders.shape[0])
    for start, stop in bounds:
        K = effective_curvatures(c, batch_hessian(model, A[orders[:, start:stop]], weight), wd)
        step = step_matrices(K, beta, nesterov)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # inf entries: flagged just below
            maps = step if maps is None else step @ maps
            top = np.abs(maps).max(axis=(-2, -1))
            bad = ~np.isfinite(top) | np.isposinf(logs)  # once beyond float64, always
            logs = np.where(bad, np.inf, logs + np.log(top))  # log(0) = -inf: the zero map, for good
            scale = np.where((top > 0) & ~bad, top, 1.0)
            maps = np.where(bad[:, None, None], 0.0, maps / scale[:, None, None])
    return maps, logs


def _batch_means_interval(values, blocks):
    """Half the width of the 95% Student-t interval of the mean of ``values`` (``blocks``
    >= 2 of them)."""
    from scipy.stats import t

    half = t.ppf(0.975, blocks - 1) * float(np.std(values, ddof=1)) / math.sqrt(blocks)
    return half


def lyapunov_exponent(model: Linear, X: ArrayLike, lr: float, *, batch_size: int = 1, sampling: str = "reshuffle",
                      epochs: int = 1000, burn_in: int = 100, blocks: int = 10, seed: int = 0, drop_last: bool = False,
                      momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False) -> Lyapunov:
    """Top Lyapunov exponent per epoch of SGD on least squares under ``sampling`` [1]_.

    A random unit error is carried through ``burn_in + epochs`` epoch maps and
    renormalised after each (the standard method for the top exponent; the top one needs
    a single vector, the full QR method all of them); the exponent is the mean log growth
    over the last ``epochs``, and the confidence interval comes from the means of
    ``blocks`` consecutive blocks of them (batch means [3]_).

    Parameters
    ----------
    model : gdsim.Linear
        With ``loss="mse"``; ``n_in <= 39``.
    X : array_like (n, n_in)
    lr : float
        ``>= 0``.
    batch_size : int, default 1
        In ``[1, n]``.
    sampling : {"fixed", "reshuffle", "replacement"}, default "reshuffle"
        See :mod:`gdsim.theory.sampling`.
    epochs : int, default 1000
        Epochs measured, at least ``blocks``.
    burn_in : int, default 100
        Epochs run first and not measured (aligns the error with the growing direction).
    blocks : int, default 10
        In ``[2, epochs]``.
    seed : int, default 0
        The orders come from ``SeedSequence(seed).spawn(2)[0]`` (for ``"reshuffle"``, the
        permutations of ``gdsim.batches.batch_orders(n, epochs, True, seed)``), the
        starting error from ``spawn(2)[1]``.
    drop_last : bool, default False
    momentum, dampening, weight_decay, nesterov
        As in :class:`gdsim.SGD` (numbers; momentum >= 1 allowed, never stable; heavy
        ball with dampening >= 1 feeds the buffer nothing and never converges either).

    Returns
    -------
    Lyapunov
        Per epoch; divide by the steps per epoch for the exponent per step. Directions of
        zero curvature (fewer distinct samples than parameters) neither grow nor shrink:
        the exponent is then at least 0.

    Raises
    ------
    gdsim.ParameterError
        Naming the argument: as :func:`gdsim.theory.epoch_spectral_radius`; ``sampling``
        not one of :data:`SAMPLINGS`; ``epochs``, ``burn_in``, ``blocks`` or ``seed`` out
        of range.
    """
    model, A, weight, c, wd, beta, nesterov, bounds, sampling = _check_sampling(
        model, X, lr, batch_size, sampling, drop_last, momentum, dampening, weight_decay, nesterov,
        "lyapunov_exponent")
    blocks = check_int("blocks", blocks, minimum=2)
    epochs = check_int("epochs", epochs, minimum=blocks)
    burn_in = check_int("burn_in", burn_in, minimum=0)
    order_seed, start_seed = np.random.SeedSequence(check_seed("seed", seed)).spawn(2)
    rng = np.random.default_rng(order_seed)
    n, total = A.shape[0], burn_in + epochs
    v = np.random.default_rng(start_seed).standard_normal(A.shape[1] * (1 if beta == 0 else 2))
    v /= np.linalg.norm(v)
    growth = np.empty(total)
    for first in range(0, total, _CHUNK):
        maps, logs = _epoch_maps(model, A, weight, _orders(sampling, n, min(_CHUNK, total - first), rng), bounds,
                                 c, wd, beta, nesterov)
        for e, (M, log_scale) in enumerate(zip(maps, logs)):
            if not math.isfinite(log_scale):  # beyond float64, or the zero map
                return Lyapunov(float(log_scale), float(log_scale), float(log_scale))
            w = M @ v
            norm = float(np.linalg.norm(w))
            if norm == 0:  # the error annihilated exactly
                return Lyapunov(-math.inf, -math.inf, -math.inf)
            growth[first + e] = math.log(norm) + log_scale
            v = w / norm
    measured = growth[burn_in:]
    exponent = float(measured.mean())  # = log(|e_T| / |e_burn_in|) / epochs
    half = _batch_means_interval([b.mean() for b in np.array_split(measured, blocks)], blocks)
    return Lyapunov(exponent, exponent - half, exponent + half)


def almost_sure_critical_lr(model: Linear, X: ArrayLike, *, batch_size: int = 1, sampling: str = "reshuffle",
                            lr_max: float | None = None, epochs: int = ALMOST_SURE_EPOCHS, seed: int = ALMOST_SURE_SEED,
                            rtol: float = 2e-3, drop_last: bool = False, momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False) -> AlmostSure:
    """The lr where the top Lyapunov exponent of ``sampling`` passes 0 (a typical run
    grows above it), with the band of its 95% interval.

    Scans up from the single-sample step threshold (below it every plain SGD step is
    non-expanding, so the exponent is at most 0; with momentum, halved until the exponent
    is below 0) by a factor 1.1 to ``lr_max``, then bisects each crossing to ``rtol``.
    Every estimate (:func:`lyapunov_exponent`, ``epochs`` after a burn-in of a tenth of
    them) draws its orders from the same ``seed``, so that the exponent is a smooth
    function of lr.

    Parameters
    ----------
    model : gdsim.Linear
        With ``loss="mse"``.
    X : array_like (n, n_in)
    batch_size : int, default 1
    sampling : {"reshuffle", "replacement", "fixed"}, default "reshuffle"
    lr_max : float, optional
        Where the scan stops; default 10 x the full-batch threshold of these settings.
    epochs, seed, rtol :
        Of each estimate and of the bisections.
    drop_last, momentum, dampening, weight_decay, nesterov :
        As :class:`gdsim.SGD` and the sweep.

    Returns
    -------
    AlmostSure
        ``(lr, first, last)``: the crossing of the estimate and of the upper and lower
        ends of its interval (``first <= lr <= last``); inf where none up to ``lr_max``.
    """
    settings = dict(drop_last=drop_last, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                    nesterov=nesterov)
    if lr_max is None:
        L = float(np.linalg.eigvalsh(hessian(model, X)).max())
        lr_max = 10 * float(critical_lr(L, momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov))
    cache = {}

    def estimate(lr):
        if lr not in cache:
            cache[lr] = lyapunov_exponent(model, X, lr, batch_size=batch_size, sampling=sampling, epochs=epochs,
                                          burn_in=epochs // 10, seed=seed, **settings)
        return cache[lr]

    lo = step_critical_lr(model, X, batch_size=1) * 0.999
    for _ in range(40):  # momentum, weight decay: not every step below it is non-expanding
        if estimate(lo).exponent < 0:
            break
        lo /= 2
    grid = [lo]
    while grid[-1] < lr_max and not estimate(grid[-1]).low >= 0:  # the last to cross
        grid.append(grid[-1] * 1.1)
    crossings = []
    for field in ("high", "exponent", "low"):  # high crosses 0 first, low last
        values = [getattr(estimate(lr), field) >= 0 for lr in grid]
        if not any(values):
            crossings.append(math.inf)
            continue
        k = values.index(True)
        if k == 0:
            crossings.append(grid[0])
            continue
        a, b = grid[k - 1], grid[k]  # a stable, b not
        while b - a > rtol * b:
            mid = 0.5 * (a + b)
            a, b = (mid, b) if getattr(estimate(mid), field) < 0 else (a, mid)
        crossings.append(0.5 * (a + b))
    first, critical, last = crossings
    return AlmostSure(critical, first, last)


def mean_square_radius(model: Linear, X: ArrayLike, lr: float, *, batch_size: int = 1, sampling: str = "reshuffle",
                       samples: int = 1000, blocks: int = 10, seed: int = 0, drop_last: bool = False,
                       momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False) -> MeanSquare:
    """Monte Carlo spectral radius of the second-moment epoch map ``E[M (x) M]`` [2]_.

    ``samples`` epoch maps ``M`` are drawn under ``sampling``; the radius of their mean
    Kronecker square is the estimate, and the radii of ``blocks`` groups of them give the
    confidence interval (their spread over the square root of ``blocks``, Student t).
    ``"fixed"`` gives ``epoch_spectral_radius ** 2`` exactly. For ``"replacement"`` with
    ``n`` a multiple of ``batch_size`` the exact value is
    ``mean_square_spectral_radius(...) ** (n / batch_size)`` (the steps are independent):
    prefer it; this estimate is for ``"reshuffle"``, whose steps within an epoch are not.

    ``M (x) M`` is heavy-tailed near the mean-square threshold (rare orders amplify a lot),
    so there the estimate tends to fall short and the interval, which only sees the spread
    of the samples drawn, is optimistic: on the tutorial data (100 samples, batch 1,
    replacement) at ``lr = 0.05``, 1000 samples gave 1.4e-8 (1.1e-8 to 1.8e-8) for an exact
    2.0e-8, 40000 samples 2.0e-8 (1.7e-8 to 2.3e-8). Far from it (``lr = 0.02``) the
    interval held at 1000 samples.

    Parameters
    ----------
    model, X, lr, batch_size, sampling, seed, drop_last, momentum, dampening, weight_decay, nesterov
        As in :func:`lyapunov_exponent` (the orders come from ``SeedSequence(seed).spawn(2)[0]``).
    samples : int, default 1000
        Epoch maps drawn, at least ``blocks``.
    blocks : int, default 10
        In ``[2, samples]``.

    Returns
    -------
    MeanSquare
        Per epoch; ``< 1``: the mean-square error converges. inf where it exceeds float64.

    Raises
    ------
    gdsim.ParameterError
        As :func:`lyapunov_exponent`, with ``samples`` for ``epochs``.
    """
    model, A, weight, c, wd, beta, nesterov, bounds, sampling = _check_sampling(
        model, X, lr, batch_size, sampling, drop_last, momentum, dampening, weight_decay, nesterov,
        "mean_square_radius")
    check_drawn_batch(model, 1)  # the map is (2d)^2 x (2d)^2: n_in <= 39
    blocks = check_int("blocks", blocks, minimum=2)
    samples = check_int("samples", samples, minimum=blocks)
    rng = np.random.default_rng(np.random.SeedSequence(check_seed("seed", seed)).spawn(2)[0])
    n = A.shape[0]
    chunks = [_epoch_maps(model, A, weight, _orders(sampling, n, min(_CHUNK, samples - first), rng), bounds, c,
                          wd, beta, nesterov) for first in range(0, samples, _CHUNK)]
    maps = np.concatenate([m for m, _ in chunks])
    logs = np.concatenate([g for _, g in chunks])
    if np.any(np.isposinf(logs)):
        return MeanSquare(math.inf, math.inf, math.inf)
    # M (x) M = exp(2 logs) maps (x) maps: weigh each by exp(2 (logs - top)) <= 1, so nothing overflows
    top = float(logs.max())
    if top == -math.inf:  # every epoch map is 0
        return MeanSquare(0.0, 0.0, 0.0)
    weights = np.exp(2.0 * (logs - top))
    D = maps.shape[-1]

    def radius(index):
        square = np.einsum("s,sij,skl->ikjl", weights[index], maps[index], maps[index]).reshape(D * D, D * D)
        return _times_exp(radius_of(square / len(index)), 2.0 * top)

    value = radius(np.arange(samples))
    group_radii = [radius(index) for index in np.array_split(np.arange(samples), blocks)]
    if not all(math.isfinite(r) for r in group_radii + [value]):
        return MeanSquare(value, value, math.inf)
    half = _batch_means_interval(group_radii, blocks)
    return MeanSquare(value, max(value - half, 0.0), value + half)


def _times_exp(value, exponent):
    """``value * exp(exponent)`` for ``value >= 0``: inf past float64, never a warning."""
    if value == 0:
        return 0.0
    total = math.log(value) + exponent
    return math.exp(total) if total < 709.7 else math.inf
