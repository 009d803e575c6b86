"""Whole-batch kernels: a batch's loss and gradient with matrix products (BLAS), for wide
layers, and :func:`model_loss_grad`, the kernel gdsim's training loops call; the Hessian
of a batch's loss times a vector the same way (:func:`dense_hvp`).

The model is described by the same plain arguments as in :mod:`gdsim.kernels` (flat
``theta`` in torch's order, ``sizes``, the activation, loss, reduction and layer codes).
The products are NumPy's ``np.dot`` compiled by Numba, which calls SciPy's BLAS: they sum
in BLAS's order, so the results equal the per-sample kernels' up to rounding, and BLAS
decides their last bits (:func:`gdsim.train` runs them on one BLAS thread:
:func:`gdsim._threads.one_blas_thread`). :func:`dense_loss_grad` keeps a layer's outputs and
deltas feature by feature (``[width, batch]``) and cuts its large products in halves of a
layer's rows (:mod:`gdsim.products`), run on two of Numba's threads.

A training loop allocates the scratch once (:func:`new_dense_workspace`) and calls
:func:`dense_loss_grad` at each step: each layer's product writes into the workspace or
straight into the gradient, and a batch of consecutive rows (data order) is read from
``X`` in place, so a step allocates nothing.
"""

import numpy as np

from ._jit import jit, jit_inline
from .kernels import (
    activate,
    activated_tangent,
    activation_slope,
    activation_slope_derivative,
    averages,
    batch_loss,
    batch_loss_grad,
    has_bias,
    is_ntk,
    output_loss,
    output_loss_tangent,
    weight_scale,
)
from .products import rows_dot
from .scalar import STANDARD


@jit
def layer_buffers(sizes, rows):
    """Every layer's outputs and the deltas of two adjacent layers for batches of up to
    ``rows`` samples: ``(float64[rows * sum(sizes)], float64[2 * rows * max(sizes[1:])])``
    (the outputs' first ``rows * sizes[0]`` hold the inputs when the batch's rows are not
    consecutive)."""
    widest = 0
    for layer in range(1, sizes.shape[0]):
        widest = max(widest, sizes[layer])
    return np.empty(rows * sizes.sum()), np.empty(2 * rows * widest)


@jit
def new_dense_workspace(sizes, rows, threads=1):
    """Scratch for :func:`dense_loss_grad` on batches of up to ``rows`` samples.

    Parameters
    ----------
    sizes : int64[n_layers + 1]
    rows : int
        The largest batch the workspace serves.
    threads : int, default 1
        On how many of Numba's threads the products' parts may run
        (:func:`gdsim.products.rows_dot`; 1: none started). The results do not depend on it.

    Returns
    -------
    tuple
        ``(acts, deltas, outputs, threads)``: :func:`layer_buffers`, the network's outputs
        and their deltas sample by sample (``2 * rows * sizes[-1]`` floats), and
        ``threads``. Jitted, for training loops compiled with Numba.
    """
    acts, deltas = layer_buffers(sizes, rows)
    return acts, deltas, np.empty(2 * rows * sizes[-1]), threads


@jit_inline
def _rows_view(buffer, start, rows, columns):
    """``buffer[start:start + rows * columns]`` as a C-contiguous ``[rows, columns]`` array."""
    return buffer[start:start + rows * columns].reshape((rows, columns))


@jit_inline
def _column_sums(table, out):
    """``out[o]`` = the sum of ``table[:, o]``, over the rows in order (a bias's gradient
    from the batch's deltas)."""
    for o in range(table.shape[1]):
        out[o] = 0.0
    for j in range(table.shape[0]):
        for o in range(table.shape[1]):
            out[o] += table[j, o]


@jit_inline
def _batch_inputs(X, rows, acts):
    """The batch's inputs ``X[rows]``, ``[B, n_in]``: a view of ``X`` when the rows are
    consecutive, else copied into the start of ``acts``."""
    batch = rows.shape[0]
    first = rows[0] if batch > 0 else 0
    consecutive = True
    for j in range(batch):
        if rows[j] != first + j:
            consecutive = False
            break
    if consecutive:
        return X[first:first + batch]
    inputs = _rows_view(acts, 0, batch, X.shape[1])
    for j in range(batch):  # element by element: an array assignment compiles a shape check's message
        for i in range(X.shape[1]):
            inputs[j, i] = X[rows[j], i]
    return inputs


@jit
def dense_loss_grad(theta, sizes, activation, loss, reduction, X, Y, rows, want_grad, grad, work, layer_code=STANDARD):
    """:func:`gdsim.kernels.batch_loss_grad` (or :func:`gdsim.kernels.batch_loss` when not
    ``want_grad``) computed with matrix products over the whole batch: faster for wide
    layers, equal up to the rounding of the sums (BLAS sums in its own order).

    Parameters
    ----------
    theta, sizes, activation, loss, reduction, X, Y, rows, layer_code
        As in :func:`gdsim.kernels.batch_loss_grad`; ``X`` C-contiguous.
    want_grad : bool
    grad : float64[n_params]
        Output (overwritten) when ``want_grad``.
    work : tuple
        Scratch from :func:`new_dense_workspace` for at least ``rows.shape[0]`` rows.

    Returns
    -------
    float
        The reduced loss of the batch.
    """
    n_layers = sizes.shape[0] - 1
    n_out = sizes[n_layers]
    bias = has_bias(layer_code)
    ntk = is_ntk(layer_code)
    batch = rows.shape[0]
    acts, delta_space, outputs, threads = work
    inputs = _batch_inputs(X, rows, acts)
    # Forward, feature-major: layer l's outputs [fan_out, batch] at batch * sum(sizes[:l + 1])
    # in acts, so that a part of a product is a block of a layer's weight rows.
    previous = _rows_view(acts, 0, 0, batch)  # the layer below's outputs (after layer 0)
    start = batch * sizes[0]
    w = 0
    for layer in range(n_layers):
        fan_in = sizes[layer]
        fan_out = sizes[layer + 1]
        b = w + fan_in * fan_out
        out = _rows_view(acts, start, fan_out, batch)
        weight = theta[w:b].reshape((fan_out, fan_in))
        if layer == 0:
            rows_dot(weight, inputs, True, out, threads)
        else:
            rows_dot(weight, previous, False, out, threads)
        hidden = layer < n_layers - 1
        scale = weight_scale(layer_code, fan_in)
        for o in range(fan_out):
            for j in range(batch):
                s = out[o, j]
                if ntk:
                    s = s * scale
                if bias:
                    s += theta[b + o]
                out[o, j] = activate(activation, s) if hidden else s
        previous = out
        start += batch * fan_out
        w = b + fan_out if bias else b
    # The loss sample by sample, and d(loss)/d(outputs), from sample-major copies.
    predictions = _rows_view(outputs, 0, batch, n_out)
    output_deltas = _rows_view(outputs, batch * n_out, batch, n_out)
    for j in range(batch):
        for k in range(n_out):
            predictions[j, k] = previous[k, j]
    no_grad = outputs[:0]
    mean = averages(reduction)
    scale = 1.0 / batch if mean else 1.0
    total = 0.0
    for j in range(batch):
        total += output_loss(loss, reduction, predictions[j], Y[rows[j]], output_deltas[j] if want_grad else no_grad,
                             scale)
    if want_grad:
        half = delta_space.shape[0] // 2
        side = 0  # which half of delta_space holds deltas
        deltas = _rows_view(delta_space, 0, n_out, batch)
        for k in range(n_out):
            for j in range(batch):
                deltas[k, j] = output_deltas[j, k]
        p = theta.shape[0]
        start_out = start - batch * n_out
        for layer in range(n_layers - 1, -1, -1):
            fan_in = sizes[layer]
            fan_out = sizes[layer + 1]
            b = p - fan_out if bias else p
            w = b - fan_in * fan_out
            start_in = start_out - batch * fan_in
            if bias:
                _column_sums(deltas.T, grad[b:b + fan_out])
            if ntk:
                scale = weight_scale(layer_code, fan_in)
                for o in range(fan_out):
                    for j in range(batch):
                        deltas[o, j] *= scale
            weight_grad = grad[w:b].reshape((fan_out, fan_in))
            if layer == 0:
                rows_dot(deltas, inputs, False, weight_grad, threads)
            else:
                below = _rows_view(acts, start_in, fan_in, batch)
                rows_dot(deltas, below, True, weight_grad, threads)
                side = 1 - side
                lower = _rows_view(delta_space, side * half, fan_in, batch)
                np.dot(theta[w:b].reshape((fan_out, fan_in)).T, deltas, lower)
                for i in range(fan_in):
                    for j in range(batch):
                        lower[i, j] *= activation_slope(activation, below[i, j])
                deltas = lower
            p = w
            start_out = start_in
    if mean:
        return total / batch
    return total


@jit
def dense_batch_loss_grad(theta, sizes, activation, loss, reduction, X, Y, rows, want_grad, grad, layer_code=STANDARD):
    """:func:`dense_loss_grad` with scratch of its own (allocated at each call): for a
    call now and then; a loop allocates :func:`new_dense_workspace` once instead.

    Parameters
    ----------
    theta, sizes, activation, loss, reduction, X, Y, rows, want_grad, grad, layer_code
        As in :func:`dense_loss_grad`.

    Returns
    -------
    float
        The reduced loss of the batch.
    """
    return dense_loss_grad(theta, sizes, activation, loss, reduction, X, Y, rows, want_grad, grad,
                           new_dense_workspace(sizes, rows.shape[0]), layer_code)


@jit
def new_dense_hvp_workspace(sizes, rows):
    """Scratch for :func:`dense_hvp` on batches of up to ``rows`` samples: two
    :func:`layer_buffers` (the layers' outputs and deltas, then their tangents) and
    a float64 array for one layer's weights or one layer's deltas of the batch.
    Jitted, for training loops compiled with Numba."""
    largest = 0
    for layer in range(1, sizes.shape[0]):
        largest = max(largest, sizes[layer] * max(sizes[layer - 1], rows))
    return layer_buffers(sizes, rows), layer_buffers(sizes, rows), np.empty(largest)


def dense_workspace_bytes(sizes, rows, products=False):
    """The bytes of :func:`new_dense_workspace` (or, with ``products``, of
    :func:`new_dense_hvp_workspace`) for ``sizes`` (a sequence) and ``rows``: for the
    memory checks made before a run allocates them."""
    one = rows * sum(sizes) + 2 * rows * max(sizes[1:])
    if not products:
        return 8 * (one + 2 * rows * sizes[-1])
    return 8 * (2 * one + max(sizes[k] * max(sizes[k - 1], rows) for k in range(1, len(sizes))))


@jit
def dense_hvp(theta, sizes, activation, loss, reduction, X, Y, rows, v, hv, work, layer_code=STANDARD):
    """:func:`gdsim.hvp.batch_hvp` computed with matrix products over the whole batch:
    the same forward-over-reverse products, faster for wide layers, equal up to the
    rounding of the sums (BLAS sums in its own order).

    Parameters
    ----------
    theta, sizes, activation, loss, reduction, X, Y, rows, v, layer_code
        As in :func:`gdsim.hvp.batch_hvp`; ``X`` C-contiguous.
    hv : float64[n_params]
        Output (overwritten): the Hessian of the batch's reduced loss, times ``v``.
    work : tuple
        Scratch from :func:`new_dense_hvp_workspace` for at least ``rows.shape[0]`` rows.

    Returns
    -------
    float
        The reduced loss of the batch (a by-product).
    """
    n_layers = sizes.shape[0] - 1
    bias = has_bias(layer_code)
    ntk = is_ntk(layer_code)
    batch = rows.shape[0]
    (acts, delta_space), (tangents, tangent_space), extra = work
    inputs = _batch_inputs(X, rows, acts)
    # Forward, with each output's tangent c (dW a + W da) + db (c: the NTK scale, else 1).
    a_in = inputs
    t_in = inputs  # the inputs' tangents are 0: layer 0 does not read them
    start = batch * sizes[0]
    w = 0
    for layer in range(n_layers):
        fan_in = sizes[layer]
        fan_out = sizes[layer + 1]
        b = w + fan_in * fan_out
        out = _rows_view(acts, start, batch, fan_out)
        t_out = _rows_view(tangents, start, batch, fan_out)
        carried = _rows_view(delta_space, 0, batch, fan_out)  # free until the backward pass
        weight = theta[w:b].reshape((fan_out, fan_in))
        np.dot(a_in, weight.T, out)
        np.dot(a_in, v[w:b].reshape((fan_out, fan_in)).T, t_out)
        if layer > 0:
            np.dot(t_in, weight.T, carried)
        hidden = layer < n_layers - 1
        scale = weight_scale(layer_code, fan_in)
        for j in range(batch):
            for o in range(fan_out):
                s = out[j, o]
                r = t_out[j, o]
                if layer > 0:
                    r += carried[j, o]
                bias_s, bias_r = (theta[b + o], v[b + o]) if bias else (0.0, 0.0)
                out[j, o], t_out[j, o] = activated_tangent(activation, s, r, scale, bias_s, bias_r, ntk, bias, hidden)
        a_in = out
        t_in = t_out
        start += batch * fan_out
        w = b + fan_out if bias else b
    # The loss, the output deltas and their tangents into the first halves.
    half = delta_space.shape[0] // 2
    n_out = sizes[n_layers]
    deltas = _rows_view(delta_space, 0, batch, n_out)
    t_deltas = _rows_view(tangent_space, 0, batch, n_out)
    mean = averages(reduction)
    scale = 1.0 / batch if mean else 1.0
    total = 0.0
    for j in range(batch):
        total += output_loss_tangent(loss, reduction, a_in[j], t_in[j], Y[rows[j]], deltas[j], t_deltas[j], scale)
    # Backward: the gradient's tangent is rd a^T + d (da)^T for the weights, rd for the
    # biases; the deltas below W^T d have the tangent W^T rd + dW^T d, then the slope's.
    p = theta.shape[0]
    side = 0  # which half of delta_space and tangent_space holds the deltas
    start_out = start - batch * n_out
    for layer in range(n_layers - 1, -1, -1):
        fan_in = sizes[layer]
        fan_out = sizes[layer + 1]
        b = p - fan_out if bias else p
        w = b - fan_in * fan_out
        start_in = start_out - batch * fan_in
        below = inputs if layer == 0 else _rows_view(acts, start_in, batch, fan_in)
        if bias:
            _column_sums(t_deltas, hv[b:b + fan_out])
        if ntk:
            scale = weight_scale(layer_code, fan_in)
            for j in range(batch):
                for o in range(fan_out):
                    deltas[j, o] *= scale
                    t_deltas[j, o] *= scale
        hv_weights = hv[w:b].reshape((fan_out, fan_in))
        np.dot(t_deltas.T, below, hv_weights)
        if layer > 0:
            t_below = _rows_view(tangents, start_in, batch, fan_in)
            more = extra[:fan_out * fan_in].reshape((fan_out, fan_in))
            np.dot(deltas.T, t_below, more)
            for o in range(fan_out):
                for i in range(fan_in):
                    hv_weights[o, i] += more[o, i]
            side = 1 - side
            lower = _rows_view(delta_space, side * half, batch, fan_in)
            t_lower = _rows_view(tangent_space, side * half, batch, fan_in)
            moved = extra[:batch * fan_in].reshape((batch, fan_in))
            weight = theta[w:b].reshape((fan_out, fan_in))
            np.dot(deltas, weight, lower)
            np.dot(t_deltas, weight, t_lower)
            np.dot(deltas, v[w:b].reshape((fan_out, fan_in)), moved)
            for j in range(batch):
                for i in range(fan_in):
                    a = below[j, i]
                    e = lower[j, i]
                    slope = activation_slope(activation, a)
                    t_lower[j, i] = (slope * (t_lower[j, i] + moved[j, i])
                                     + activation_slope_derivative(activation, a) * t_below[j, i] * e)
                    lower[j, i] = slope * e
            deltas = lower
            t_deltas = t_lower
        p = w
        start_out = start_in
    if mean:
        return total / batch
    return total


@jit
def model_loss_grad(theta, model, X, Y, rows, want_grad, grad, work, dense):
    """The reduced loss of the batch ``rows`` and, if ``want_grad``, its gradient into
    ``grad``: the kernel gdsim's training loops call for a whole model.

    ``model`` is a :class:`gdsim.models.ModelSpec`, ``work`` the scratch ``(acts, deltas)``
    of the per-sample kernels (:func:`gdsim.kernels.new_workspace`). ``dense`` is the
    scratch of :func:`dense_loss_grad` (:func:`new_dense_workspace`, for at least
    ``rows.shape[0]`` rows), which it then computes with, or None for the sample-by-sample
    kernels: a None argument is a compile-time constant (Numba prunes its ``is None``
    branches), so each build compiles one of them.
    """
    sizes, activation, loss, reduction, layer_code = model
    acts, deltas = work
    if dense is not None:
        return dense_loss_grad(theta, sizes, activation, loss, reduction, X, Y, rows, want_grad, grad, dense,
                               layer_code)
    if want_grad:
        return batch_loss_grad(theta, sizes, activation, loss, reduction, X, Y, rows, grad, acts, deltas, layer_code)
    return batch_loss(theta, sizes, activation, loss, reduction, X, Y, rows, acts, layer_code)
