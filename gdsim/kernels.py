"""Numba kernels for the models: forward pass, loss, gradients, per-sample gradients.

All kernels work on one flat float64 parameter vector ``theta`` laid out in torch's
order: for each layer ``l`` (``sizes[l]`` inputs, ``sizes[l+1]`` outputs) the weight
``[sizes[l+1], sizes[l]]`` row-major, then the bias ``[sizes[l+1]]`` (none when the
model has ``bias=False``). A ``Linear`` model is the one-layer case ``sizes = [n_in, n_out]``.

They are ordinary ``numba.njit`` functions and can be called from users' own ``@njit``
code; the per-sample and batch ones (:func:`forward_sample` to :func:`batch_loss_grad`)
are inlined into compiled callers (``inline="always"``), so that a loop such as
:func:`gdsim.training.train_loop` compiles as one function instead of a chain of modules
that LLVM optimises again at each level. The model is described by plain arguments, which :class:`gdsim.MLP` provides as
attributes (together they are its ``spec``, a :class:`gdsim.models.ModelSpec`, which
gdsim's internal loops take as one argument):

* ``sizes``: int64 array ``[n_layers + 1]`` of layer widths (``MLP.sizes_array``);
* ``activation``: int code of the hidden-layer activation (``MLP.activation_code``, see
  :mod:`gdsim.scalar`); the last layer is linear;
* ``loss``: int code, ``MSE`` or ``CROSS_ENTROPY`` (``MLP.loss_code``);
* ``reduction``: int code, ``MEAN``, ``SUM``, ``HALF_MEAN`` or ``HALF_SUM``
  (``MLP.reduction_code``; the half ones for MSE only);
* ``layer_code``: int code of the layers (``MLP.layer_code``): ``STANDARD`` (torch's
  ``nn.Linear``, ``z = W a + b``), ``NTK`` (``z = W a / sqrt(fan_in) + b``),
  ``STANDARD_NO_BIAS`` or ``NTK_NO_BIAS`` (the same without ``b``). It comes last in every
  kernel's arguments, with the default ``STANDARD``, so that code written for torch's
  layers needs none.

Targets ``Y`` are float64 ``[n, n_out]`` for MSE and float64 ``[n, 1]`` holding the class
index for cross-entropy (``MLP.check_data`` converts integer labels). Scratch
buffers ``acts`` and ``deltas`` are float64 ``[sum(sizes)]`` (``MLP.workspace()``);
kernels never allocate in their inner loops.

The kernels check nothing: they run inside compiled loops, where a check per call would
cost more than the work, and Numba does not bounds-check arrays. Arguments that do not
fit (rows beyond ``X``, codes that are not in :mod:`gdsim.scalar`, widths that do not
match ``theta``) give wrong numbers, not errors. Check the data once with
:meth:`gdsim.MLP.check_data` and :meth:`gdsim.MLP.check_params` and take the codes from
the model; :class:`gdsim.MLP`'s methods, :func:`gdsim.train` and :func:`gdsim.sweep` do.

Losses follow ``nn.MSELoss`` / ``nn.CrossEntropyLoss``. A sample's *own* loss is the
loss of the one-sample batch: for MSE with reduction ``mean`` that is the mean over the
``n_out`` outputs. The reduced loss of a batch of ``B`` samples is the mean (``mean``)
or the sum (``sum``) of the own losses, exactly torch's definition; ``half_mean`` and
``half_sum`` (MSE) are half of ``mean`` and ``sum``.
"""

import math

import numpy as np

from . import scalar
from ._jit import jit, jit_inline
from .scalar import CROSS_ENTROPY, STANDARD

activate = jit(scalar.activate)
activation_slope = jit(scalar.activation_slope)
activation_slope_derivative = jit(scalar.activation_slope_derivative)
averages = jit(scalar.averages)
loss_factor = jit(scalar.loss_factor)
weight_scale = jit(scalar.weight_scale)
has_bias = jit(scalar.has_bias)
is_ntk = jit(scalar.is_ntk)
is_diverged = jit(scalar.is_diverged)
divergence_threshold = jit(scalar.divergence_threshold)


@jit_inline
def forward_sample(theta, sizes, activation, x, acts, layer_code=STANDARD):
    """Forward pass of one sample.

    Parameters
    ----------
    theta : float64[n_params]
    sizes : int64[n_layers + 1]
    activation : int
        Hidden-layer activation code.
    x : float64[n_in]
        The sample.
    acts : float64[sum(sizes)]
        Output: the input followed by every layer's output (after the activation for
        hidden layers; the last layer's raw outputs, i.e. predictions or logits, last).
    layer_code : int
        Layer code (see the module docstring): with or without biases; under the NTK
        parameterization the weighted sum is multiplied by ``1/sqrt(fan_in)`` before the
        bias is added.
    """
    n_layers = sizes.shape[0] - 1
    bias = has_bias(layer_code)
    ntk = is_ntk(layer_code)
    for i in range(sizes[0]):
        acts[i] = x[i]
    w = 0  # offset of the layer's weight in theta
    a_in = 0  # offset of the layer's input in acts
    for layer in range(n_layers):
        fan_in = sizes[layer]
        fan_out = sizes[layer + 1]
        a_out = a_in + fan_in
        b = w + fan_in * fan_out
        hidden = layer < n_layers - 1
        scale = weight_scale(layer_code, fan_in)
        for o in range(fan_out):
            row = w + o * fan_in
            s = 0.0
            for i in range(fan_in):
                s += theta[row + i] * acts[a_in + i]
            if ntk:
                s = s * scale
            if bias:
                s += theta[b + o]
            acts[a_out + o] = activate(activation, s) if hidden else s
        w = b + fan_out if bias else b
        a_in = a_out


@jit
def output_offset(sizes):
    """Offset of the last layer's outputs in ``acts`` (sum of all widths but the last)."""
    offset = 0
    for layer in range(sizes.shape[0] - 1):
        offset += sizes[layer]
    return offset


@jit_inline
def log_normaliser(out):
    """``log(sum(exp(out)))`` of the logits ``out``, as ``max + log(sum(exp(out - max)))``
    (no overflow): the log of the softmax's normaliser."""
    top = out[0]
    for k in range(1, out.shape[0]):
        if out[k] > top:
            top = out[k]
    total = 0.0
    for k in range(out.shape[0]):
        total += math.exp(out[k] - top)
    return top + math.log(total)


@jit_inline
def mse_weight(reduction, n_out):
    """The factor of the sum of one sample's squared residuals in its own MSE loss: it
    averages over the ``n_out`` outputs under "mean" and "half_mean", and the half
    reductions take half of it (a factor 1.0 changes no bit)."""
    factor = loss_factor(reduction)
    return factor / n_out if averages(reduction) else factor


@jit_inline
def output_loss(loss, reduction, out, y, delta, scale):
    """One sample's own loss from its outputs, and ``scale`` times its gradient.

    Parameters
    ----------
    loss, reduction : int
        Loss and reduction codes (a half reduction halves the MSE loss and its gradient).
    out : float64[n_out]
        Predictions (MSE) or logits (cross-entropy).
    y : float64[n_out] or float64[1]
        Targets (MSE) or the class index (cross-entropy).
    delta : float64[n_out] or empty
        Output: ``scale * d(own loss)/d(out)``; skipped when ``delta`` is empty.
    scale : float
        Factor applied to the gradient (``1/B`` for a mean over a batch of ``B``).

    Returns
    -------
    float
        The sample's own loss.
    """
    n_out = out.shape[0]
    want_grad = delta.shape[0] > 0
    if loss == CROSS_ENTROPY:
        label = int(y[0])
        log_norm = log_normaliser(out)
        if want_grad:
            for k in range(n_out):
                delta[k] = scale * math.exp(out[k] - log_norm)
            delta[label] -= scale
        return log_norm - out[label]
    return mse_loss(reduction, out, y, delta, scale)


@jit_inline
def mse_loss(reduction, out, y, delta, scale):
    """The MSE part of :func:`output_loss`: one sample's own loss and, unless ``delta``
    is empty, ``scale`` times its gradient into ``delta``."""
    n_out = out.shape[0]
    want_grad = delta.shape[0] > 0
    c = mse_weight(reduction, n_out)
    total = 0.0
    for k in range(n_out):
        r = out[k] - y[k]
        total += r * r
        if want_grad:
            delta[k] = scale * 2.0 * c * r
    return c * total


@jit_inline
def activated_tangent(activation, s, r, scale, bias_s, bias_r, ntk, bias, hidden):
    """A layer output and its tangent (derivative along a direction) from its weighted
    sum ``s`` and that sum's tangent ``r``: under NTK (``ntk``) both times ``scale``, then
    (``bias``) the bias ``bias_s`` and its tangent ``bias_r`` added, then in a ``hidden``
    layer the activation, whose tangent is its slope times ``r``. The forward passes of
    the Hessian-vector products (:mod:`gdsim.hvp`, :func:`gdsim.dense.dense_hvp`) share it."""
    if ntk:  # the constant factor of the weighted sum multiplies its tangent too
        s = s * scale
        r = r * scale
    if bias:
        s += bias_s
        r += bias_r
    if hidden:
        a = activate(activation, s)
        return a, activation_slope(activation, a) * r
    return s, r


@jit
def output_loss_tangent(loss, reduction, out, tangent, y, delta, tangent_delta, scale):
    """One sample's own loss, ``scale`` times its gradient in the outputs, and that
    gradient's directional derivative.

    Parameters
    ----------
    loss, reduction : int
        Loss and reduction codes (a half reduction halves the MSE loss, its gradient and
        its Hessian).
    out : float64[n_out]
        Predictions (MSE) or logits (cross-entropy).
    tangent : float64[n_out]
        Derivative of ``out`` along the direction.
    y : float64[n_out] or float64[1]
        Targets (MSE) or the class index (cross-entropy).
    delta, tangent_delta : float64[n_out]
        Output: ``scale * dL/dout`` (as :func:`gdsim.kernels.output_loss`) and
        ``scale * (d2L/dout2) tangent``.
    scale : float

    Returns
    -------
    float
        The sample's own loss.
    """
    n_out = out.shape[0]
    if loss == CROSS_ENTROPY:
        label = int(y[0])
        log_norm = log_normaliser(out)
        # Hessian of log-softmax's loss: diag(p) - p p^T, so H t = p * (t - p.t).
        mean_tangent = 0.0
        for k in range(n_out):
            mean_tangent += math.exp(out[k] - log_norm) * tangent[k]
        for k in range(n_out):
            p = math.exp(out[k] - log_norm)
            delta[k] = scale * p
            tangent_delta[k] = scale * p * (tangent[k] - mean_tangent)
        delta[label] -= scale
        return log_norm - out[label]
    c = mse_weight(reduction, n_out)  # MSE: its Hessian in the outputs is 2 c I
    for k in range(n_out):
        tangent_delta[k] = scale * 2.0 * c * tangent[k]
    return mse_loss(reduction, out, y, delta, scale)


@jit_inline
def backward_sample(theta, sizes, activation, acts, deltas, grad, layer_code=STANDARD):
    """Back-propagate the output deltas of one sample and add its gradient to ``grad``.

    Parameters
    ----------
    theta : float64[n_params]
    sizes : int64[n_layers + 1]
    activation : int
    acts : float64[sum(sizes)]
        As left by :func:`forward_sample`.
    deltas : float64[sum(sizes)]
        On entry its last ``sizes[-1]`` entries hold d(loss)/d(outputs) (from
        :func:`output_loss`); used as scratch for the hidden layers.
    grad : float64[n_params]
        Accumulated into (``+=``), not overwritten.
    layer_code : int
        As in :func:`forward_sample`. Under the NTK parameterization the delta of a
        layer's output is multiplied by ``1/sqrt(fan_in)`` after its bias gradient, before
        its weight gradient and the deltas below, in torch's order for ``mm * scale + b``.
    """
    n_layers = sizes.shape[0] - 1
    bias = has_bias(layer_code)
    ntk = is_ntk(layer_code)
    p = theta.shape[0]
    a_out = output_offset(sizes)
    for layer in range(n_layers - 1, -1, -1):
        fan_in = sizes[layer]
        fan_out = sizes[layer + 1]
        b = p - fan_out if bias else p
        w = b - fan_in * fan_out
        a_in = a_out - fan_in
        scale = weight_scale(layer_code, fan_in)
        if layer > 0:
            for i in range(fan_in):
                deltas[a_in + i] = 0.0
        for o in range(fan_out):
            d = deltas[a_out + o]
            if bias:
                grad[b + o] += d
            if ntk:
                d = d * scale
            row = w + o * fan_in
            if layer > 0:
                for i in range(fan_in):
                    grad[row + i] += d * acts[a_in + i]
                    deltas[a_in + i] += theta[row + i] * d
            else:
                for i in range(fan_in):
                    grad[row + i] += d * acts[a_in + i]
        if layer > 0:
            for i in range(fan_in):
                deltas[a_in + i] *= activation_slope(activation, acts[a_in + i])
        p = w
        a_out = a_in


@jit_inline
def sample_loss_grad(theta, sizes, activation, loss, reduction, x, y, scale, grad, acts, deltas, layer_code=STANDARD):
    """Add ``scale`` times the gradient of one sample's own loss to ``grad``.

    Parameters
    ----------
    theta : float64[n_params]
    sizes : int64[n_layers + 1]
    activation, loss, reduction : int
        Model codes (see the module docstring).
    x : float64[n_in]
    y : float64[n_out] (MSE) or float64[1] (class index, cross-entropy)
    scale : float
    grad : float64[n_params]
        Accumulated into.
    acts, deltas : float64[sum(sizes)]
        Scratch.
    layer_code : int
        As in :func:`forward_sample`.

    Returns
    -------
    float
        The sample's own loss.
    """
    forward_sample(theta, sizes, activation, x, acts, layer_code)
    a_out = output_offset(sizes)
    own = output_loss(loss, reduction, acts[a_out:], y, deltas[a_out:], scale)
    backward_sample(theta, sizes, activation, acts, deltas, grad, layer_code)
    return own


@jit_inline
def batch_loss(theta, sizes, activation, loss, reduction, X, Y, rows, acts, layer_code=STANDARD):
    """Reduced loss of the batch ``X[rows], Y[rows]``.

    Parameters
    ----------
    theta : float64[n_params]
    sizes : int64[n_layers + 1]
    activation, loss, reduction : int
    X : float64[n, n_in]
    Y : float64[n, n_out] or float64[n, 1]
    rows : int64[B]
        Indices of the batch's samples.
    acts : float64[sum(sizes)]
        Scratch.
    layer_code : int
        As in :func:`forward_sample`.

    Returns
    -------
    float
        Mean (reductions ``mean``, ``half_mean``) or sum (``sum``, ``half_sum``) of the
        samples' own losses.
    """
    a_out = output_offset(sizes)
    no_grad = acts[:0]
    total = 0.0
    for r in rows:
        forward_sample(theta, sizes, activation, X[r], acts, layer_code)
        total += output_loss(loss, reduction, acts[a_out:], Y[r], no_grad, 1.0)
    if averages(reduction):
        return total / rows.shape[0]
    return total


@jit_inline
def batch_loss_grad(theta, sizes, activation, loss, reduction, X, Y, rows, grad, acts, deltas, layer_code=STANDARD):
    """Reduced loss of the batch ``X[rows], Y[rows]`` and its gradient.

    Same arguments as :func:`batch_loss`, plus ``grad`` (float64[n_params], output,
    overwritten) and ``deltas`` (float64[sum(sizes)], scratch).

    Returns
    -------
    float
        The reduced loss; ``grad`` holds its gradient with respect to ``theta``.
    """
    grad[:] = 0.0
    mean = averages(reduction)
    scale = 1.0 / rows.shape[0] if mean else 1.0
    total = 0.0
    for r in rows:
        total += sample_loss_grad(theta, sizes, activation, loss, reduction, X[r], Y[r],
                                  scale, grad, acts, deltas, layer_code)
    if mean:
        return total / rows.shape[0]
    return total


@jit
def per_sample_grads(theta, sizes, activation, loss, reduction, X, Y, out, acts, deltas, layer_code=STANDARD):
    """Gradient of each sample's own loss.

    Parameters
    ----------
    theta, sizes, activation, loss, reduction, X, Y, acts, deltas, layer_code
        As in :func:`batch_loss_grad`.
    out : float64[n, n_params]
        Output: row ``i`` is the gradient of sample ``i``'s own loss, so the rows' mean
        (reductions ``mean``, ``half_mean``) or sum (``sum``, ``half_sum``) is the
        gradient of the reduced loss.
    """
    for r in range(X.shape[0]):
        out[r, :] = 0.0
        sample_loss_grad(theta, sizes, activation, loss, reduction, X[r], Y[r], 1.0,
                         out[r], acts, deltas, layer_code)


@jit_inline
def store_row(table, row, values):
    """``table[row, :] = values``, element by element (the same numbers).

    For compiled loops that keep rows of results: the array assignment would compile its
    shape check's error message (number formatting, 1.5-2 s of a first call).

    Parameters
    ----------
    table : float64[rows, n]
    row : int
    values : float64[n]
    """
    for j in range(values.shape[0]):
        table[row, j] = values[j]


@jit
def predict(theta, sizes, activation, X, out, acts, layer_code=STANDARD):
    """Outputs of the last layer (predictions or logits) for every row of ``X``.

    Parameters
    ----------
    theta : float64[n_params]
    sizes : int64[n_layers + 1]
    activation : int
    X : float64[n, n_in]
    out : float64[n, n_out]
        Output.
    acts : float64[sum(sizes)]
        Scratch.
    layer_code : int
        As in :func:`forward_sample`.
    """
    a_out = output_offset(sizes)
    for r in range(X.shape[0]):
        forward_sample(theta, sizes, activation, X[r], acts, layer_code)
        store_row(out, r, acts[a_out:])


@jit
def new_workspace(sizes):
    """Scratch buffers ``(acts, deltas)`` for the kernels, float64 ``[sum(sizes)]`` each.

    Jitted so that training loops compiled with Numba can call it too.
    """
    width = sizes.sum()
    return np.empty(width), np.empty(width)

