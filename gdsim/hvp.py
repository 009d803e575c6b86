"""Exact Hessian-vector products and the top Hessian eigenvalue (sharpness), as Numba kernels.

``H v`` is computed by forward-over-reverse differentiation (Pearlmutter's R-operator [1]_):
the forward pass is run together with its tangent along ``v`` (the directional derivative
of every layer's output), then the backward pass together with its tangent. The result is
the exact ``H v`` up to rounding, at about the cost of two gradients, with no step size to
choose (unlike differences of gradients). ReLU's second derivative is 0, as in torch's
double backward.

The kernels follow :mod:`gdsim.kernels`: the same flat ``theta`` in torch's order, the same
model arguments ``sizes, activation, loss, reduction`` with the layer code last (default
``STANDARD``), every reduction, the same data layout (``Y`` holds the class index as float64
for cross-entropy), no checks and no allocation per call: all scratch lives in a workspace
made once. :func:`lanczos_top` takes the model arguments as one tuple, ``MLP.spec``.

* :func:`sample_hvp` adds one sample's term (scaled like
  :func:`gdsim.kernels.sample_loss_grad`'s ``scale``);
* :func:`batch_hvp` is ``H v`` of the reduced loss of the batch ``X[rows], Y[rows]``
  (mean or sum, as :func:`gdsim.kernels.batch_loss_grad`); :func:`model_hvp` the same for
  a whole model (``model.spec``), with :func:`gdsim.dense.dense_hvp`'s matrix products
  when given their workspace;
* :func:`lanczos_top` is the top eigenvalue of that ``H`` and its eigenvector, by Lanczos
  with full reorthogonalisation [2]_ on a small Krylov space, warm-started from a given vector.

Tracking sharpness in a compiled training loop
----------------------------------------------
Allocate once, before the loop, and keep one start vector per tracked quantity (the
full-batch Hessian and a batch's Hessian are different matrices); ``spec`` is the model's
``(sizes, act, loss, red, layer_code)`` (``model.spec``, a tuple Numba passes as one value)::

    scratch = hvp.new_lanczos_workspace(sizes, n_params, 20)  # Krylov dimension 20
    v_full = np.zeros(n_params)             # zeros: the first call picks a fixed start
    v_batch = np.zeros(n_params)
    all_rows = np.arange(n)
    for step in range(steps):
        if step % every == 0:
            sharp, used = hvp.lanczos_top(theta, spec, X, Y, all_rows, v_full, 1e-6, 200,
                                          scratch)
            batch_sharp, used = hvp.lanczos_top(theta, spec, X, Y, rows, v_batch, 1e-6, 200,
                                                scratch)
        ...  # the gradient step

Each call leaves the unit top eigenvector in its ``v``, the warm start of the next call:
between nearby parameters the eigenvector moves little, so a call then needs a few
products instead of tens. ``scratch`` can be shared by both calls; inside a loop that
already has a :func:`new_workspace` (for :func:`batch_hvp`), pass
``(np.empty((k + 1, n_params)), work)`` instead.
The eigenvalue is NaN when a product is not finite (a diverged run; ``v`` then holds the
last finite unit vector); nothing raises inside the loop. ``v`` must not be a row of
``basis``. Besides the workspace, a call allocates only arrays
of the Krylov dimension (the ``k x k`` tridiagonal matrix and its ``eigh``).

References
----------
.. [1] B. A. Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation
   6(1), 1994.
.. [2] Y. Saad, *Numerical Methods for Large Eigenvalue Problems*, 2nd ed., SIAM, 2011,
   chapter 6 (Lanczos with full reorthogonalisation, restarts, residual bounds).
"""

import math

import numpy as np

from ._jit import jit
from .dense import dense_hvp
from .kernels import (activated_tangent, activation_slope, activation_slope_derivative, averages, has_bias, is_ntk,
                      output_loss_tangent, output_offset, store_row, weight_scale)
from .scalar import STANDARD

#: Rows of the workspace made by :func:`new_workspace`.
ACTS, TANGENT_ACTS, DELTAS, TANGENT_DELTAS = 0, 1, 2, 3


@jit
def new_workspace(sizes):
    """Scratch for :func:`sample_hvp`, :func:`batch_hvp` and :func:`lanczos_top`: float64
    ``[4, sum(sizes)]`` (layer outputs, their tangents, deltas, their tangents).

    Jitted so that training loops compiled with Numba can call it too.
    """
    return np.empty((4, sizes.sum()))


@jit
def new_lanczos_workspace(sizes, n_params, k):
    """Scratch for :func:`lanczos_top` with a Krylov space of dimension ``k`` (up to ~20):
    ``(basis, work)``, the Lanczos vectors plus one work row, float64 ``[k + 1, n_params]``,
    and :func:`new_workspace`'s ``work``. Jitted, for training loops compiled with Numba."""
    return np.empty((k + 1, n_params)), new_workspace(sizes)


@jit
def forward_tangent_sample(theta, sizes, activation, x, v, acts, tangents, layer_code=STANDARD):
    """Forward pass of one sample and its directional derivative along ``v``.

    Parameters
    ----------
    theta, v : float64[n_params]
        Parameters and the direction.
    sizes : int64[n_layers + 1]
    activation : int
    x : float64[n_in]
    acts : float64[sum(sizes)]
        Output, as :func:`gdsim.kernels.forward_sample`: the input, then every layer's
        output (after the activation for hidden layers).
    tangents : float64[sum(sizes)]
        Output: the derivative of each entry of ``acts`` along ``v`` (0 for the input).
    layer_code : int
        As in :func:`gdsim.kernels.forward_sample` (under NTK the weighted sum and its
        tangent are multiplied by ``1/sqrt(fan_in)`` before the bias is added).
    """
    n_layers = sizes.shape[0] - 1
    bias = has_bias(layer_code)
    ntk = is_ntk(layer_code)
    for i in range(sizes[0]):
        acts[i] = x[i]
        tangents[i] = 0.0
    w = 0
    a_in = 0
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
            r = 0.0  # tangent of s: c (dW a + W da) + db, c the NTK scale (1 in the standard one)
            if layer > 0:
                for i in range(fan_in):
                    s += theta[row + i] * acts[a_in + i]
                    r += v[row + i] * acts[a_in + i] + theta[row + i] * tangents[a_in + i]
            else:  # the input does not move with theta
                for i in range(fan_in):
                    s += theta[row + i] * acts[a_in + i]
                    r += v[row + i] * acts[a_in + i]
            bias_s, bias_r = (theta[b + o], v[b + o]) if bias else (0.0, 0.0)
            acts[a_out + o], tangents[a_out + o] = activated_tangent(activation, s, r, scale, bias_s, bias_r, ntk,
                                                                     bias, hidden)
        w = b + fan_out if bias else b
        a_in = a_out


@jit
def backward_tangent_sample(theta, sizes, activation, v, acts, tangents, deltas, tangent_deltas, hv,
                            layer_code=STANDARD):
    """Back-propagate one sample's deltas and their tangents; add ``H v``'s term to ``hv``.

    Parameters
    ----------
    theta, v : float64[n_params]
    sizes : int64[n_layers + 1]
    activation : int
    acts, tangents : float64[sum(sizes)]
        As left by :func:`forward_tangent_sample`.
    deltas, tangent_deltas : float64[sum(sizes)]
        On entry their last ``sizes[-1]`` entries hold the output deltas and their
        tangents (from :func:`output_loss_tangent`); scratch for the hidden layers.
    hv : float64[n_params]
        Accumulated into (``+=``): the tangent of the gradient along ``v``.
    layer_code : int
        As in :func:`gdsim.kernels.backward_sample` (under NTK the deltas and their tangents
        are scaled after the bias term, before the weights' and the layer below's).
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
                tangent_deltas[a_in + i] = 0.0
        for o in range(fan_out):
            d = deltas[a_out + o]
            rd = tangent_deltas[a_out + o]
            if bias:
                hv[b + o] += rd
            if ntk:  # z = c W a + b: W's gradient and the deltas below carry c, and so do their tangents
                d = d * scale
                rd = rd * scale
            row = w + o * fan_in
            if layer > 0:
                # gradient d a^T: tangent rd a^T + d (da)^T; deltas W^T d: tangent dW^T d + W^T rd
                for i in range(fan_in):
                    hv[row + i] += rd * acts[a_in + i] + d * tangents[a_in + i]
                    deltas[a_in + i] += theta[row + i] * d
                    tangent_deltas[a_in + i] += theta[row + i] * rd + v[row + i] * d
            else:
                for i in range(fan_in):
                    hv[row + i] += rd * acts[a_in + i]
        if layer > 0:
            # delta = slope(a) e: tangent slope(a) de + slope'(a) da e
            for i in range(fan_in):
                a = acts[a_in + i]
                e = deltas[a_in + i]
                slope = activation_slope(activation, a)
                tangent_deltas[a_in + i] = (slope * tangent_deltas[a_in + i]
                                            + activation_slope_derivative(activation, a) * tangents[a_in + i] * e)
                deltas[a_in + i] = slope * e
        p = w
        a_out = a_in


@jit
def sample_hvp(theta, sizes, activation, loss, reduction, x, y, scale, v, hv, work, layer_code=STANDARD):
    """Add ``scale`` times the Hessian of one sample's own loss, times ``v``, to ``hv``.

    Parameters
    ----------
    theta : float64[n_params]
    sizes : int64[n_layers + 1]
    activation, loss, reduction : int
        Model codes (see :mod:`gdsim.kernels`).
    x : float64[n_in]
    y : float64[n_out] (MSE) or float64[1] (class index, cross-entropy)
    scale : float
        As in :func:`gdsim.kernels.sample_loss_grad` (``1/B`` for a mean over ``B``).
    v : float64[n_params]
        The direction.
    hv : float64[n_params]
        Accumulated into (``+=``).
    work : float64[4, sum(sizes)]
        Scratch (:func:`new_workspace`).
    layer_code : int
        Layer code (``MLP.layer_code``), as in :func:`gdsim.kernels.forward_sample`.

    Returns
    -------
    float
        The sample's own loss.
    """
    acts = work[ACTS]
    tangents = work[TANGENT_ACTS]
    deltas = work[DELTAS]
    tangent_deltas = work[TANGENT_DELTAS]
    forward_tangent_sample(theta, sizes, activation, x, v, acts, tangents, layer_code)
    a_out = output_offset(sizes)
    own = output_loss_tangent(loss, reduction, acts[a_out:], tangents[a_out:], y, deltas[a_out:],
                              tangent_deltas[a_out:], scale)
    backward_tangent_sample(theta, sizes, activation, v, acts, tangents, deltas, tangent_deltas, hv, layer_code)
    return own


@jit
def batch_hvp(theta, sizes, activation, loss, reduction, X, Y, rows, v, hv, work, layer_code=STANDARD):
    """``H v`` for the reduced loss of the batch ``X[rows], Y[rows]``.

    Parameters
    ----------
    theta, sizes, activation, loss, reduction, X, Y, rows
        As in :func:`gdsim.kernels.batch_loss_grad`.
    v : float64[n_params]
    hv : float64[n_params]
        Output (overwritten): the Hessian of the mean (``mean``, ``half_mean``) or sum
        (``sum``, ``half_sum``) of the samples' own losses, times ``v``.
    work : float64[4, sum(sizes)]
        Scratch (:func:`new_workspace`).
    layer_code : int
        Layer code, as in :func:`gdsim.kernels.batch_loss_grad`.

    Returns
    -------
    float
        The reduced loss of the batch (a by-product).
    """
    hv[:] = 0.0
    mean = averages(reduction)
    scale = 1.0 / rows.shape[0] if mean else 1.0
    total = 0.0
    for r in rows:
        total += sample_hvp(theta, sizes, activation, loss, reduction, X[r], Y[r], scale, v, hv, work, layer_code)
    if mean:
        return total / rows.shape[0]
    return total


@jit
def model_hvp(theta, model, X, Y, rows, v, hv, work, dense):
    """``H v`` of the batch ``rows``' reduced loss into ``hv`` (its loss returned), for a
    whole model ``model`` (:class:`gdsim.models.ModelSpec`): :func:`batch_hvp` with
    ``work`` (:func:`new_workspace`) when ``dense`` is None, else
    :func:`gdsim.dense.dense_hvp` with ``dense`` (its workspace). None is a compile-time
    constant (Numba prunes its ``is None`` branches): a build compiles one of the two
    (compiled on its own: inlined, its branch would not be pruned)."""
    sizes, activation, loss, reduction, layer_code = model
    if dense is None:
        return batch_hvp(theta, sizes, activation, loss, reduction, X, Y, rows, v, hv, work, layer_code)
    return dense_hvp(theta, sizes, activation, loss, reduction, X, Y, rows, v, hv, dense, layer_code)


# ---------------------------------------------------------------------------------------
# Lanczos
# ---------------------------------------------------------------------------------------
@jit
def _dot(a, b):
    s = 0.0
    for i in range(a.shape[0]):
        s += a[i] * b[i]
    return s


@jit
def _default_start(v):
    """A fixed, generic unit start vector (a hash of the index, in ``[-0.5, 0.5)``): not
    orthogonal to the top eigenvector except by accident, and the same on every call."""
    for i in range(v.shape[0]):
        x = math.sin((i + 1) * 12.9898) * 43758.5453
        v[i] = x - math.floor(x) - 0.5


@jit
def lanczos_top(theta, model, X, Y, rows, v, tol, max_iter, scratch, dense=None):
    """Top eigenvalue of the Hessian of the batch loss ``X[rows], Y[rows]`` and its
    eigenvector, by Lanczos with full reorthogonalisation, warm-started from ``v``.

    Builds a Krylov space of dimension up to ``k = basis.shape[0] - 1`` from ``v`` with
    :func:`batch_hvp`, takes the top Ritz pair of its tridiagonal matrix
    (``np.linalg.eigh``) after every product, and stops when the residual
    ``|H y - theta y|`` bound (``beta_j |s_j|``) is at most ``tol |theta|``; when the
    space is full it restarts from the current Ritz vector, up to ``max_iter`` products.

    Parameters
    ----------
    theta : float64[n_params]
    model : gdsim.models.ModelSpec or tuple
        ``(sizes, activation, loss, reduction, layer_code)`` (``MLP.spec``): the model
        arguments of :func:`batch_hvp` in one (as gdsim's loops pass them).
    X, Y, rows
        As in :func:`batch_hvp`.
    v : float64[n_params]
        On entry the start vector (any norm; all zeros, or not finite: a fixed default);
        on exit the unit Ritz vector of the top eigenvalue, the warm start of a next call.
    tol : float
        Relative residual to stop at. The eigenvalue's error is about ``tol**2`` times
        ``|theta|`` over the gap to the next eigenvalue, the vector's angle about ``tol``
        over that gap: ``1e-6`` gives eigenvalues to ~1e-12.
    max_iter : int
        The most Hessian-vector products.
    scratch : (float64[k + 1, n_params], float64[4, sum(sizes)])
        ``(basis, work)`` from :func:`new_lanczos_workspace`: the Lanczos vectors and one
        work row, and :func:`batch_hvp`'s workspace. ``k`` (up to ~20) is the Krylov
        dimension before a restart; more is not needed when warm-started.
    dense : tuple, optional
        :func:`gdsim.dense.new_dense_hvp_workspace`'s scratch, for ``rows.shape[0]`` rows
        or more: the products are then :func:`gdsim.dense.dense_hvp`'s (matrix products,
        faster for wide layers; ``work`` is not used). None: :func:`batch_hvp`'s.

    Returns
    -------
    value : float
        The top eigenvalue (the largest algebraic; NaN when a product is not finite). If
        ``products == max_iter`` it may not have converged: the best Ritz value so far.
    products : int
        How many Hessian-vector products were computed.

    Notes
    -----
    A start vector orthogonal to the top eigenvector (and a Krylov space that breaks down
    before reaching it) gives the top eigenvalue of the space reached instead: Lanczos sees
    only what ``v`` touches. Rounding makes this a non-issue except for exact symmetries.
    """
    basis, work = scratch
    n_params = theta.shape[0]
    k = min(basis.shape[0] - 1, n_params)
    w = basis[k]
    alpha = np.empty(k)
    beta = np.empty(k)
    norm = math.sqrt(_dot(v, v))
    if not (norm > 0.0 and math.isfinite(norm)):
        _default_start(v)
        norm = math.sqrt(_dot(v, v))
    for i in range(n_params):
        v[i] /= norm
    value = math.nan
    products = 0
    while products < max_iter:
        store_row(basis, 0, v)
        converged = False
        j = 0
        ritz = np.ones(1)
        while j < k and products < max_iter:
            q = basis[j]
            model_hvp(theta, model, X, Y, rows, q, w, work, dense)
            products += 1
            product_norm = math.sqrt(_dot(w, w))
            a = _dot(q, w)
            if not (math.isfinite(product_norm) and math.isfinite(a)):
                return math.nan, products
            alpha[j] = a
            # Full reorthogonalisation, twice (Gram-Schmidt loses orthogonality once, rarely twice):
            # it removes alpha q_j and beta q_{j-1} too.
            for _ in range(2):
                for i in range(j + 1):
                    c = _dot(basis[i], w)
                    for m in range(n_params):
                        w[m] -= c * basis[i, m]
            b = math.sqrt(_dot(w, w))
            beta[j] = b
            j += 1
            T = np.zeros((j, j))
            for i in range(j):
                T[i, i] = alpha[i]
                if i + 1 < j:
                    T[i, i + 1] = beta[i]
                    T[i + 1, i] = beta[i]
            values, vectors = np.linalg.eigh(T)
            value = values[j - 1]
            ritz = vectors[:, j - 1].copy()
            # b tiny against |H q|: the Krylov space is invariant, its Ritz values exact.
            if b * abs(ritz[j - 1]) <= tol * abs(value) or b <= 1e-14 * product_norm:
                converged = True
                break
            if j < k:
                for m in range(n_params):
                    basis[j, m] = w[m] / b
        # The Ritz vector y = Q s: the answer, or the start of the restart.
        for m in range(n_params):
            s = 0.0
            for i in range(j):
                s += ritz[i] * basis[i, m]
            v[m] = s
        norm = math.sqrt(_dot(v, v))
        for m in range(n_params):
            v[m] /= norm
        if converged:
            break
    return value, products
