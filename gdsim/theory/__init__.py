"""Where theory says gradient descent converges, oscillates or diverges.

Closed forms and exact linear-algebra computations (float64) for least squares with MSE,
the loss of :class:`gdsim.Linear`, whose Hessian is constant: with ``a = (x, 1)`` and ``n``
samples, every output's ``(w, b)`` block of the Hessian is

    H = 2 / (n * n_out) * sum_i a_i a_i^T      (reduction="mean", torch's MSELoss)
    H = 2 * sum_i a_i a_i^T                     (reduction="sum")

(half of these for "half_mean" and "half_sum"; ``a = x`` for a model without bias, and
``x / sqrt(n_in)`` in place of ``x`` under the NTK parameterization)
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
the second-moment recursion (simulated by ``gdsim.train`` / ``gdsim.sweep`` with
``shuffle="replacement"``).

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
.. [6] L. Lessard, B. Recht, A. Packard, "Analysis and design of optimization algorithms
   via integral quadratic constraints", SIAM J. Optim. 26(1), 2016 (Nesterov's method
   tuned for quadratics: :func:`nesterov_optimal`).
.. [7] F. Pedregosa, "A Hitchhiker's guide to momentum", 2021 (the regions of heavy ball's
   phase diagram: :func:`momentum_region`).
.. [8] S. McCandlish, J. Kaplan, D. Amodei et al., "An empirical model of large-batch
   training", arXiv:1812.06162, 2018 (gradient noise scales: :func:`noise_scales`).
.. [9] H. Furstenberg, H. Kesten, "Products of random matrices", Ann. Math. Statist. 31,
   1960 (the top Lyapunov exponent of random products: :func:`lyapunov_exponent`).

Modules: :mod:`.quadratic` (full-batch GD and momentum [1]_ [2]_ [3]_), :mod:`.momentum`
(Nesterov's tuning [6]_, heavy ball's regions [7]_), :mod:`.sgd` (epoch maps, mean-square
stability with replacement [4]_), :mod:`.sampling` (Lyapunov exponents [9]_, the almost-sure
threshold and mean-square radii of each sampling scheme), :mod:`.sharpness` (any model's
Hessian, sharpness [5]_), :mod:`.noise` (gradient noise scales [8]_, linear stability of SGD
at a minimum [4]_).
"""

from .momentum import REGIONS, Tuning, momentum_region, nesterov_optimal
from .noise import LinearStability, NoiseScales, linear_stability, noise_scales
from .quadratic import (
    GradientDescent,
    companion,
    critical_lr,
    gradient_descent,
    hessian,
    polyak,
    spectral_radius,
)
from .sampling import (
    SAMPLINGS,
    AlmostSure,
    Lyapunov,
    MeanSquare,
    almost_sure_critical_lr,
    lyapunov_exponent,
    mean_square_radius,
)
from .sgd import (
    epoch_critical_lr,
    epoch_spectral_radius,
    mean_square_critical_lr,
    mean_square_spectral_radius,
    step_critical_lr,
)
from .sharpness import hessian_vector_product, sharpness

__all__ = [
    "REGIONS",
    "SAMPLINGS",
    "AlmostSure",
    "GradientDescent",
    "LinearStability",
    "Lyapunov",
    "MeanSquare",
    "NoiseScales",
    "Tuning",
    "almost_sure_critical_lr",
    "companion",
    "critical_lr",
    "epoch_critical_lr",
    "epoch_spectral_radius",
    "gradient_descent",
    "hessian",
    "hessian_vector_product",
    "linear_stability",
    "lyapunov_exponent",
    "mean_square_critical_lr",
    "mean_square_radius",
    "mean_square_spectral_radius",
    "momentum_region",
    "nesterov_optimal",
    "noise_scales",
    "polyak",
    "sharpness",
    "spectral_radius",
    "step_critical_lr",
]
