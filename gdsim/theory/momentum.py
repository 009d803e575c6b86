"""Momentum on a quadratic with curvatures in ``[mu, L]``: the optimal tuning of Nesterov's
method and the phase diagram of heavy ball (see :mod:`gdsim.theory`).

References
----------
.. [1] L. Lessard, B. Recht, A. Packard, "Analysis and design of optimization algorithms
   via integral quadratic constraints", SIAM J. Optim. 26(1), 2016, section 5
   (Nesterov's method tuned for quadratics: ``lr = 4 / (3L + mu)``, ``beta = (sqrt(3 kappa
   + 1) - 2) / (sqrt(3 kappa + 1) + 2)``, rate ``1 - 2 / sqrt(3 kappa + 1)``).
.. [2] F. Pedregosa, "A Hitchhiker's guide to momentum", blog post, 2021
   (http://fa.bianp.net/blog/2021/hitchhiker/): the robust region, the lazy region and
   the knife's edge of heavy ball.
.. [3] G. Goh, "Why momentum really works", Distill, 2017 (the 2 x 2 companion matrices).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from .._validate import ParameterError, check_real
from .checks import check_broadcast, check_hyper, check_reals, safe_product
from .quadratic import companion_radius

#: The regions of :func:`momentum_region`, in the order of the codes it uses internally.
REGIONS = ("robust", "lazy", "knife's edge", "divergent")


class Tuning(NamedTuple):
    """A learning rate and momentum, and the contraction per step they give.

    Attributes
    ----------
    lr, momentum : float
        For :class:`gdsim.SGD` (``nesterov=True`` for :func:`nesterov_optimal`).
    rate : float
        The worst-case spectral radius over curvatures in ``[mu, L]``: the error shrinks
        like ``rate ** t``.
    """

    lr: float
    momentum: float
    rate: float


def nesterov_optimal(L: float, mu: float) -> Tuning:
    """Lessard, Recht and Packard's tuning of Nesterov's method for quadratics [1]_.

    torch's Nesterov (``buf <- beta buf + g``, ``p <- p - lr (g + beta buf)``) is the
    classical ``x' = y - lr grad(y)``, ``y = x' + beta (x' - x)`` with the same ``lr`` and
    ``beta``: on curvature ``lam`` both have the characteristic polynomial
    ``z^2 - (1 + beta)(1 - lr lam) z + beta (1 - lr lam)``. With ``s = sqrt(3 kappa + 1)``,
    ``kappa = L / mu``, this tuning puts a double root ``1 - 2 / s`` at ``mu`` and the roots
    ``-(1 - 2 / s)`` and ``(1 - 2 / s) / 3`` at ``L``.

    Parameters
    ----------
    L, mu : float
        Largest and smallest curvature, finite, ``0 < mu <= L``.

    Returns
    -------
    Tuning
        ``lr = 4 / (3 L + mu)``, ``momentum = (s - 2) / (s + 2)``, ``rate = 1 - 2 / s``
        (slower than Polyak's heavy ball, :func:`gdsim.theory.polyak`, whose rate is
        ``1 - 2 / (sqrt(kappa) + 1)``, but Nesterov's method also converges on
        non-quadratic smooth strongly convex losses). ``lr`` is inf where it exceeds float64.

    Raises
    ------
    gdsim.ParameterError
        ``param`` "L" or "mu": not a finite real number > 0, or ``mu > L``.

    Examples
    --------
    >>> [round(v, 6) for v in nesterov_optimal(4.0, 1.0)]  # s = sqrt(13)
    [0.307692, 0.286422, 0.4453]
    """
    L = check_real("L", L, minimum=0.0, strict=True)
    mu = check_real("mu", mu, minimum=0.0, strict=True)
    if mu > L:
        raise ParameterError(f"mu must satisfy 0 < mu <= L, got mu={mu!r} > L={L!r}", "mu")
    # Python floats; 3 L + mu as 4 (0.75 L + 0.25 mu), which cannot overflow; 2 / s =
    # sqrt(mu lr) never forms kappa (which can): 2 / s = sqrt(4 mu / (3 L + mu)).
    quarter = 0.75 * L + 0.25 * mu
    r = min(math.sqrt(mu / quarter), 1.0)  # 2 / s, at most 1 (mu = L)
    lr = 1.0 / quarter if quarter > 1.0 / 1.7976931348623157e308 else math.inf
    return Tuning(lr=lr, momentum=(1.0 - r) / (1.0 + r), rate=1.0 - r)


def momentum_region(lr: ArrayLike, momentum: ArrayLike, L: ArrayLike, mu: ArrayLike) -> str | np.ndarray:
    """Where heavy ball's ``(lr, momentum)`` lies in its phase diagram on curvatures ``[mu, L]`` [2]_.

    Heavy ball in torch's form without dampening (Polyak's ``p' = p - lr g + beta (p -
    p_prev)``) on curvature ``lam`` has the companion matrix ``[[1 - k, -beta], [k, beta]]``
    in the coordinates ``(p, lr buf)``, ``k = lr lam``: eigenvalues with product ``beta``
    and sum ``1 + beta - k``, complex exactly when ``(1 - sqrt(beta))^2 < k <
    (1 + sqrt(beta))^2``. With ``rho`` the largest modulus over the pairs at ``mu`` and
    ``L`` (over all of ``[mu, L]`` it is attained at an end):

    * ``"divergent"``: ``rho >= 1`` (no convergence; ``lr = 0`` and ``momentum >= 1``
      included);
    * ``"robust"``: both pairs complex or double, ``(1 - sqrt(beta))^2 <= lr mu`` and
      ``lr L <= (1 + sqrt(beta))^2``: ``rho = sqrt(beta)``, whatever ``lr`` in that range;
    * ``"lazy"``: otherwise, when the eigenvalue of largest modulus is real and positive
      (it sits at ``mu``, ``lr mu < (1 - sqrt(beta))^2``): the slow, over-damped, monotone
      decay along the flattest direction;
    * ``"knife's edge"``: when it is real and negative (at ``L``, ``lr L > (1 +
      sqrt(beta))^2``): the steepest direction flips sign every step, just short of
      diverging.

    Pedregosa [2]_ names the regions by the same boundaries in ``lr``; where ``lr mu``
    and ``lr L`` both give real eigenvalues of opposite signs the larger modulus decides
    here (ties count as lazy). Plain GD (``momentum = 0``) is lazy for ``lr <= 2 / (L +
    mu)`` and on the knife's edge above.

    Parameters
    ----------
    lr, momentum, L, mu : float or array_like
        Broadcast against each other (an ``lr`` column against a ``momentum`` row draws
        the diagram). ``lr`` and ``momentum`` by :class:`gdsim.SGD`'s rules (>= 0);
        ``L`` and ``mu`` finite, ``0 < mu <= L``.

    Returns
    -------
    str or numpy.ndarray of str
        One of :data:`REGIONS` per broadcast entry (a str for scalar arguments).

    Raises
    ------
    gdsim.ParameterError
        Naming the argument: not finite or out of range; ``mu > L``; shapes that do not
        broadcast.

    Examples
    --------
    >>> momentum_region([0.1, 0.3, 0.45, 0.6], 0.0, 4.0, 1.0).tolist()
    ['lazy', 'lazy', "knife's edge", 'divergent']
    >>> momentum_region(0.4, 0.25, 4.0, 1.0)   # k in [0.4, 1.6], inside [0.25, 2.25]
    'robust'
    """
    lr = check_hyper("lr", lr)
    beta = check_hyper("momentum", momentum)
    L = check_reals("L", L, minimum=0.0, strict=True)
    mu = check_reals("mu", mu, minimum=0.0, strict=True)
    shape = check_broadcast(lr=lr, momentum=beta, L=L, mu=mu)
    if np.any(mu > L):
        bad = np.broadcast_to(mu > L, shape)
        raise ParameterError(f"mu must satisfy 0 < mu <= L, got mu={float(np.broadcast_to(mu, shape)[bad][0])!r} > "
                             f"L={float(np.broadcast_to(L, shape)[bad][0])!r}", "mu")
    k_mu, k_L = safe_product(lr, mu), safe_product(lr, L)  # inf past float64, never NaN
    rho_mu = companion_radius(k_mu, beta, False)
    rho_L = companion_radius(k_L, beta, False)
    with np.errstate(over="ignore"):
        root = np.sqrt(beta)
        low, high = (1.0 - root) ** 2, (1.0 + root) ** 2
    robust = (k_mu >= low) & (k_L <= high)
    knife = (k_L > high) & (rho_L > rho_mu)  # the real negative pair at L dominates
    code = np.where(np.maximum(rho_mu, rho_L) >= 1.0, 3, np.where(robust, 0, np.where(knife, 2, 1)))
    out = np.asarray(REGIONS)[np.broadcast_to(code, shape)]
    return str(out) if out.ndim == 0 else out
