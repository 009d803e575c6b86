"""Scalar math written once: activations, their slopes, the divergence test and threshold,
the SGD update of one element and the batch-slicing rule.

These are plain Python functions of scalars, compiled for the CPU by :mod:`gdsim.kernels`,
:mod:`gdsim.optim` and :mod:`gdsim.batches` (and callable from users' own ``@njit`` code
through the compiled versions there) and for CUDA GPUs by
:mod:`gdsim.sweeps.targets.cuda_kernels`. They follow PyTorch's definitions, including what
happens at kinks and with NaN, so that trajectories match ``torch`` in float64.
"""

import math

# Activation codes used by the kernels (``MLP.activation_code``).
IDENTITY = 0
RELU = 1
TANH = 2
SIGMOID = 3
ACTIVATIONS = {"identity": IDENTITY, "relu": RELU, "tanh": TANH, "sigmoid": SIGMOID}

# Loss codes (``MLP.loss_code``) and reduction codes (``MLP.reduction_code``). The "half"
# reductions (MSE only) are half of torch's: ``1/2 mean`` and ``1/2 sum`` of the squares.
MSE = 0
CROSS_ENTROPY = 1
LOSSES = {"mse": MSE, "cross_entropy": CROSS_ENTROPY}
MEAN = 0
SUM = 1
HALF_MEAN = 2
HALF_SUM = 3
REDUCTIONS = {"mean": MEAN, "sum": SUM, "half_mean": HALF_MEAN, "half_sum": HALF_SUM}

# Layer codes (``MLP.layer_code``): how every layer computes its outputs ``z`` from its
# inputs ``a``: the parameterization ("standard": torch's ``nn.Linear``; "ntk": the weights
# times ``1/sqrt(fan_in)``) with or without a bias.
STANDARD = 0  # z = W a + b
NTK = 1  # z = W a / sqrt(fan_in) + b
STANDARD_NO_BIAS = 2  # z = W a
NTK_NO_BIAS = 3  # z = W a / sqrt(fan_in)
PARAMETERIZATIONS = ("standard", "ntk")
#: The layer code of each ``(parameterization, bias)``.
LAYERS = {("standard", True): STANDARD, ("ntk", True): NTK, ("standard", False): STANDARD_NO_BIAS,
          ("ntk", False): NTK_NO_BIAS}


def has_bias(layer):
    """True if layer code ``layer`` has a bias."""
    return layer == STANDARD or layer == NTK


def is_ntk(layer):
    """True if layer code ``layer`` is in the NTK parameterization."""
    return layer == NTK or layer == NTK_NO_BIAS


def averages(reduction):
    """True if reduction code ``reduction`` averages (``mean``, ``half_mean``), False if it
    adds (``sum``, ``half_sum``)."""
    return reduction == MEAN or reduction == HALF_MEAN


def loss_factor(reduction):
    """The factor reduction code ``reduction`` puts in front of the loss: 0.5 for the half
    reductions, 1.0 for torch's."""
    return 0.5 if reduction == HALF_MEAN or reduction == HALF_SUM else 1.0


def weight_scale(layer, fan_in):
    """The factor of the weights of a layer (code ``layer``) with ``fan_in`` inputs in its
    forward pass: ``1/sqrt(fan_in)`` under the NTK parameterization, 1.0 in torch's
    standard one (where kernels skip the product)."""
    # The test of is_ntk written out: these functions are compiled one by one, a call from
    # one to another would not compile.
    return 1.0 / math.sqrt(fan_in) if layer == NTK or layer == NTK_NO_BIAS else 1.0


def activate(code, z):
    """Activation ``code`` applied to the pre-activation ``z``.

    ReLU is written ``0 if z <= 0 else z`` so that, like ``torch.relu``, it passes NaN
    through instead of turning it into 0 (a NaN must stay visible to divergence checks).
    """
    if code == RELU:
        return 0.0 if z <= 0.0 else z
    if code == TANH:
        return math.tanh(z)
    if code == SIGMOID:
        return 1.0 / (1.0 + math.exp(-z))
    return z


def activation_slope(code, a):
    """Derivative of activation ``code`` written in terms of its output ``a``.

    Uses the output, as torch's backward does (``threshold_backward`` for ReLU, so the
    slope at exactly 0 is 0; ``1 - a*a`` for tanh; ``a * (1 - a)`` for sigmoid).
    """
    if code == RELU:
        return 0.0 if a <= 0.0 else 1.0
    if code == TANH:
        return 1.0 - a * a
    if code == SIGMOID:
        return a * (1.0 - a)
    return 1.0


def activation_slope_derivative(code, a):
    """Derivative of :func:`activation_slope` with respect to the activation's output ``a``.

    The tangent of the slope along a direction is this times the tangent of ``a``, which is
    what Hessian-vector products need (``-2a`` for tanh, ``1 - 2a`` for sigmoid). ReLU's
    and identity's slopes are piecewise constant: 0, as torch's double backward gives away
    from (and at) the kink.
    """
    if code == TANH:
        return -2.0 * a
    if code == SIGMOID:
        return 1.0 - 2.0 * a
    return 0.0


def is_diverged(value, threshold):
    """True if a loss ``value`` marks divergence: non-finite, or above ``threshold``."""
    return not math.isfinite(value) or value > threshold


def sgd_element(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, maximize, first_step):
    """One ``torch.optim.SGD`` step for one parameter element.

    Parameters
    ----------
    p, g, buf : float
        Parameter, its gradient, and its momentum buffer (ignored when ``momentum == 0``
        or ``first_step``).
    lr, momentum, dampening, weight_decay : float
        Hyper-parameters as in ``torch.optim.SGD``.
    nesterov, maximize, first_step : bool
        ``first_step`` is True on the first update, when torch creates the buffer as a
        copy of the gradient (no dampening).

    Returns
    -------
    (float, float)
        The updated parameter and momentum buffer.

    Notes
    -----
    Order as in torch: maximize -> weight decay -> momentum -> Nesterov -> ``p -= lr*d``.
    The buffer is not scaled by ``lr``, so ``lr`` may change from step to step.
    """
    # Written as selects between values computed unconditionally (no branch around a
    # store), so that a loop over runs with different hyper-parameters stays vectorised.
    d = -g if maximize else g
    d = d + weight_decay * p if weight_decay != 0.0 else d
    new_buf = d if first_step else momentum * buf + (1.0 - dampening) * d
    new_buf = new_buf if momentum != 0.0 else buf
    step = (d + momentum * new_buf if nesterov else new_buf) if momentum != 0.0 else d
    return p - lr * step, new_buf


def divergence_threshold(initial_loss, factor):
    """The loss above which a run counts as diverged: ``factor`` times its initial full-data
    loss, or ``inf`` (only non-finite losses count) when that loss is not positive."""
    return factor * initial_loss if initial_loss > 0.0 else math.inf


def batch_stop(start, n, batch_size, drop_last):
    """End (exclusive) of the batch that starts at sample ``start`` of an epoch of ``n``:
    ``min(start + batch_size, n)``, or ``start`` (an empty batch: the epoch ends) for a
    last batch smaller than ``batch_size`` under ``drop_last``, as torch's ``DataLoader``."""
    stop = min(start + batch_size, n)
    return start if drop_last and stop - start < batch_size else stop
