"""CPU sweep kernels: many SGD runs of one model at once, ``BLOCK`` configurations per block.

A block holds ``BLOCK`` configurations (runs) that share the data, the batch size and the
sample order, and differ in their parameters and hyper-parameters. Every per-run array is
stored *struct of arrays* with the run innermost: element ``k`` of run ``c`` is
``a[k, c]`` of a ``[.., BLOCK]`` array. The innermost loops then run over the ``BLOCK`` runs with unit stride,
which LLVM vectorises (``BLOCK`` is a compile-time constant; 64 keeps the loops as vector
loops rather than unrolled scalar code). Each run's arithmetic is the same sequence of
operations as :func:`gdsim.engine.train_loop` makes for it, so a sweep's points equal
``train``'s results.

:func:`run_blocks` loops over blocks serially, :func:`run_blocks_parallel` with ``prange``;
blocks are independent and fixed before the loop, so both give bitwise-equal results
whatever the thread count.
"""

import math

import numpy as np

from .._jit import jit, jit_parallel, prange
from ..kernels import activate, activation_slope, is_diverged
from ..optim import sgd_element
from ..scalar import CROSS_ENTROPY, MEAN

#: Runs per block.
BLOCK = 64


@jit
def _forward(theta, sizes, activation, X, r, acts):
    """Forward pass of sample ``X[r]`` for every run of a block.

    ``acts[a, c]`` receives every layer's outputs for run ``c`` (not the input, which is
    the same for all runs and read from ``X`` directly), the last layer's raw outputs last.
    """
    n_layers = sizes.shape[0] - 1
    w = 0  # row of the layer's weight in theta
    a_in = 0  # row of the layer's input in acts (layers > 0)
    a_out = 0
    for layer in range(n_layers):
        fan_in = sizes[layer]
        fan_out = sizes[layer + 1]
        b = w + fan_in * fan_out
        hidden = layer < n_layers - 1
        for o in range(fan_out):
            out = a_out + o
            row = w + o * fan_in
            for c in range(BLOCK):
                acts[out, c] = 0.0
            for i in range(fan_in):
                if layer == 0:
                    x = X[r, i]
                    for c in range(BLOCK):
                        acts[out, c] += theta[row + i, c] * x
                else:
                    for c in range(BLOCK):
                        acts[out, c] += theta[row + i, c] * acts[a_in + i, c]
            for c in range(BLOCK):
                s = acts[out, c] + theta[b + o, c]
                acts[out, c] = activate(activation, s) if hidden else s
        w = b + fan_out
        a_in = a_out
        a_out += fan_out


@jit
def _output_loss(loss, reduction, n_out, acts, a_out, Y, r, want_grad, deltas, scale, own):
    """Each run's own loss of sample ``r`` into ``own[c]`` and, if ``want_grad``,
    ``scale`` times its gradient with respect to the outputs into ``deltas[a_out:]``.

    Same operations as :func:`gdsim.kernels.output_loss`, one run per lane.
    """
    if loss == CROSS_ENTROPY:
        label = int(Y[r, 0])
        top = a_out  # deltas[a_out] is scratch for the running maximum until the gradient is written
        for c in range(BLOCK):
            deltas[top, c] = acts[a_out, c]
        for k in range(1, n_out):
            for c in range(BLOCK):
                if acts[a_out + k, c] > deltas[top, c]:
                    deltas[top, c] = acts[a_out + k, c]
        for c in range(BLOCK):
            own[c] = 0.0
        for k in range(n_out):
            for c in range(BLOCK):
                own[c] += math.exp(acts[a_out + k, c] - deltas[top, c])
        for c in range(BLOCK):
            own[c] = deltas[top, c] + math.log(own[c])  # log of the softmax's normaliser
        if want_grad:
            for k in range(n_out):
                for c in range(BLOCK):
                    deltas[a_out + k, c] = scale * math.exp(acts[a_out + k, c] - own[c])
            for c in range(BLOCK):
                deltas[a_out + label, c] -= scale
        for c in range(BLOCK):
            own[c] = own[c] - acts[a_out + label, c]
        return
    mean_outputs = 1.0 / n_out if reduction == MEAN else 1.0
    for c in range(BLOCK):
        own[c] = 0.0
    for k in range(n_out):
        y = Y[r, k]
        if want_grad:
            for c in range(BLOCK):
                residual = acts[a_out + k, c] - y
                own[c] += residual * residual
                deltas[a_out + k, c] = scale * 2.0 * mean_outputs * residual
        else:
            for c in range(BLOCK):
                residual = acts[a_out + k, c] - y
                own[c] += residual * residual
    for c in range(BLOCK):
        own[c] = mean_outputs * own[c]


@jit
def _backward(theta, sizes, activation, X, r, acts, deltas, grad):
    """Back-propagate the output deltas of sample ``X[r]`` and add each run's gradient to
    ``grad`` (same operations as :func:`gdsim.kernels.backward_sample`)."""
    n_layers = sizes.shape[0] - 1
    p = theta.shape[0]
    a_out = 0
    for layer in range(1, n_layers):
        a_out += sizes[layer]
    for layer in range(n_layers - 1, -1, -1):
        fan_in = sizes[layer]
        fan_out = sizes[layer + 1]
        b = p - fan_out
        w = b - fan_in * fan_out
        a_in = a_out - fan_in
        if layer > 0:
            for i in range(fan_in):
                for c in range(BLOCK):
                    deltas[a_in + i, c] = 0.0
        for o in range(fan_out):
            d_out = a_out + o
            for c in range(BLOCK):
                grad[b + o, c] += deltas[d_out, c]
            row = w + o * fan_in
            for i in range(fan_in):
                if layer > 0:
                    for c in range(BLOCK):
                        d = deltas[d_out, c]
                        grad[row + i, c] += d * acts[a_in + i, c]
                        deltas[a_in + i, c] += theta[row + i, c] * d
                else:
                    x = X[r, i]
                    for c in range(BLOCK):
                        grad[row + i, c] += deltas[d_out, c] * x
        if layer > 0:
            for i in range(fan_in):
                for c in range(BLOCK):
                    deltas[a_in + i, c] *= activation_slope(activation, acts[a_in + i, c])
        p = w
        a_out = a_in


@jit
def _line_batch_loss(theta, X, Y, order, start, stop, mean, want_grad, grad, total):
    """:func:`_batch_loss` fused into one loop per sample for the model ``y = w x + b``
    (``sizes == [1, 1]``, MSE), the tutorials' model: the same operations in the same
    order, without the layer loops and scratch arrays."""
    scale = 1.0 / (stop - start) if mean else 1.0
    for c in range(BLOCK):
        total[c] = 0.0
    if want_grad:
        for c in range(BLOCK):
            grad[0, c] = 0.0
            grad[1, c] = 0.0
    for j in range(start, stop):
        r = order[j]
        x = X[r, 0]
        y = Y[r, 0]
        if want_grad:
            for c in range(BLOCK):
                # "0.0 + w x" keeps the general path's rounding of the prediction, so the
                # parameters follow it bit for bit; the loss may differ in its last bit
                # (the square is fused into the sum).
                z = 0.0 + theta[0, c] * x
                residual = (z + theta[1, c]) - y
                total[c] += residual * residual
                d = scale * 2.0 * residual
                grad[1, c] += d
                grad[0, c] += d * x
        else:
            for c in range(BLOCK):
                z = 0.0 + theta[0, c] * x
                residual = (z + theta[1, c]) - y
                total[c] += residual * residual
    if mean:
        for c in range(BLOCK):
            total[c] = total[c] / (stop - start)


@jit
def _batch_loss(theta, sizes, activation, loss, reduction, X, Y, order, start, stop, want_grad, grad, acts,
                deltas, own, total):
    """Reduced loss of the batch ``X[order[start:stop]]`` for every run into ``total`` and,
    if ``want_grad``, its gradient into ``grad`` (overwritten)."""
    n_layers = sizes.shape[0] - 1
    n_out = sizes[n_layers]
    if n_layers == 1 and sizes[0] == 1 and n_out == 1 and loss != CROSS_ENTROPY:
        _line_batch_loss(theta, X, Y, order, start, stop, reduction == MEAN, want_grad, grad, total)
        return
    a_out = 0
    for layer in range(1, n_layers):
        a_out += sizes[layer]
    scale = 1.0 / (stop - start) if reduction == MEAN else 1.0
    if want_grad:
        for k in range(grad.shape[0]):
            for c in range(BLOCK):
                grad[k, c] = 0.0
    for c in range(BLOCK):
        total[c] = 0.0
    for j in range(start, stop):
        r = order[j]
        _forward(theta, sizes, activation, X, r, acts)
        _output_loss(loss, reduction, n_out, acts, a_out, Y, r, want_grad, deltas, scale, own)
        for c in range(BLOCK):
            total[c] += own[c]
        if want_grad:
            _backward(theta, sizes, activation, X, r, acts, deltas, grad)
    if reduction == MEAN:
        for c in range(BLOCK):
            total[c] = total[c] / (stop - start)


@jit
def sweep_block(theta, buf, sizes, activation, loss, reduction, X, Y, order, batch_size, drop_last,
                lr, momentum, dampening, weight_decay, nesterov, divergence_factor, stop_diverged,
                epoch_loss, diverged_step, diverged_loss):
    """Train the ``BLOCK`` runs of one block with SGD, in place.

    Parameters
    ----------
    theta : float[n_params, BLOCK]
        Initial parameters of every run (one run per column); final parameters on return.
    buf : float[n_params, BLOCK]
        Momentum buffers (scratch).
    sizes, activation, loss, reduction
        The model (see :mod:`gdsim.kernels`).
    X : float[n, n_in]
    Y : float[n, n_out] or float[n, 1]
    order : int64[epochs, n]
        Sample order of each epoch, shared by the block's runs.
    batch_size : int
    drop_last : bool
    lr : float64[epochs, BLOCK]
        Learning rate of each epoch and run.
    momentum, dampening, weight_decay : float64[BLOCK]
    nesterov : bool[BLOCK]
    divergence_factor : float
        A loss above this factor times the run's initial full-data loss (or non-finite)
        marks divergence.
    stop_diverged : bool
        Stop updating a run once it is marked diverged (its later losses are NaN).
    epoch_loss : float[epochs + 1, BLOCK]
        Output: full-data loss before each epoch and after the last.
    diverged_step : int64[BLOCK]
        Output: the step marked as diverged (as in :func:`gdsim.engine.train_loop`), -1
        if never.
    diverged_loss : float64[BLOCK]
        Output: the loss that marked it (NaN if never).
    """
    n = X.shape[0]
    epochs = order.shape[0]
    width = 0
    for layer in range(1, sizes.shape[0]):
        width += sizes[layer]
    acts = np.empty((width, BLOCK), dtype=theta.dtype)
    deltas = np.empty((width, BLOCK), dtype=theta.dtype)
    grad = np.empty_like(theta)
    own = np.empty(BLOCK, dtype=theta.dtype)
    total = np.empty(BLOCK, dtype=theta.dtype)
    threshold = np.full(BLOCK, np.inf)
    active = np.ones(BLOCK, dtype=np.bool_)
    n_active = BLOCK
    data_order = np.arange(n)
    diverged_step[:] = -1
    diverged_loss[:] = np.nan
    step = 0
    for epoch in range(epochs + 1):
        if n_active > 0:
            _batch_loss(theta, sizes, activation, loss, reduction, X, Y, data_order, 0, n, False, grad, acts,
                        deltas, own, total)
        for c in range(BLOCK):
            if not active[c]:
                epoch_loss[epoch, c] = np.nan
                continue
            value = total[c]
            epoch_loss[epoch, c] = value
            if epoch == 0 and value > 0.0:
                threshold[c] = divergence_factor * value
            if diverged_step[c] < 0 and is_diverged(value, threshold[c]):
                diverged_step[c] = step
                diverged_loss[c] = value
                if stop_diverged:
                    active[c] = False
                    n_active -= 1
        if epoch == epochs or n_active == 0:
            continue  # fill the remaining epochs' losses (NaN once every run stopped)
        epoch_order = order[epoch]
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            if drop_last and stop - start < batch_size:
                break
            _batch_loss(theta, sizes, activation, loss, reduction, X, Y, epoch_order, start, stop, True, grad,
                        acts, deltas, own, total)
            for c in range(BLOCK):
                if active[c] and diverged_step[c] < 0 and is_diverged(total[c], threshold[c]):
                    diverged_step[c] = step
                    diverged_loss[c] = total[c]
                    if stop_diverged:
                        active[c] = False
                        n_active -= 1
            first_step = step == 0
            for k in range(theta.shape[0]):
                for c in range(BLOCK):
                    p, b = sgd_element(theta[k, c], grad[k, c], buf[k, c], lr[epoch, c], momentum[c],
                                       dampening[c], weight_decay[c], nesterov[c], False, first_step)
                    # Selects rather than branches, so that the loop stays vectorised.
                    theta[k, c] = p if active[c] else theta[k, c]
                    buf[k, c] = b if active[c] else buf[k, c]
            step += 1
            if n_active == 0:
                break


def _run_blocks(theta, buf, block_group, sizes, activation, loss, reduction, X, Y, orders, batch_sizes, drop_last,
                lr, momentum, dampening, weight_decay, nesterov, divergence_factor, stop_diverged,
                epoch_loss, diverged_step, diverged_loss):
    """Run every block: block ``k`` uses the order and batch size of group ``block_group[k]``.

    Arrays carry a leading block axis (``theta[k]`` is block ``k``'s ``[n_params, BLOCK]``
    ``theta`` for :func:`sweep_block`); ``orders`` is ``[n_groups, epochs, n]``, ``batch_sizes``
    ``[n_groups]``.
    """
    for k in prange(theta.shape[0]):
        g = block_group[k]
        sweep_block(theta[k], buf[k], sizes, activation, loss, reduction, X, Y, orders[g], batch_sizes[g],
                    drop_last, lr[k], momentum[k], dampening[k], weight_decay[k], nesterov[k],
                    divergence_factor, stop_diverged, epoch_loss[k], diverged_step[k], diverged_loss[k])


#: Serial loop over blocks (``target="cpu"``).
run_blocks = jit(_run_blocks)
#: ``prange`` over blocks (``target="parallel"``).
run_blocks_parallel = jit_parallel(_run_blocks)


def run_plan(model, X, Y, plan, *, drop_last, divergence_factor, stop_diverged, parallel):
    """Run a sweep plan (see :func:`gdsim.sweeps.sweep`) on the CPU.

    Runs are packed into blocks of ``BLOCK`` runs of the same group (same batch size and
    sample order); a group's last block is padded with copies of its last run, whose
    results are the same numbers and are dropped.

    Returns
    -------
    dict
        ``epoch_loss [n_runs, epochs + 1]``, ``params [n_runs, n_params]``,
        ``diverged_step [n_runs]`` (int64), ``diverged_loss [n_runs]``.
    """
    group = plan["group"]
    slots = []  # run index of every lane, block after block
    block_group = []
    for g in np.unique(group):
        runs = np.flatnonzero(group == g)
        n_blocks = -(-runs.size // BLOCK)
        padded = np.concatenate([runs, np.full(n_blocks * BLOCK - runs.size, runs[-1])])
        slots.append(padded.reshape(n_blocks, BLOCK))
        block_group += [g] * n_blocks
    slots = np.concatenate(slots)
    n_blocks = slots.shape[0]
    epochs = plan["lr"].shape[1]

    def lanes(a):
        """Per-run array ``[n_runs, ...]`` -> per-block array ``[n_blocks, ..., BLOCK]``."""
        return np.ascontiguousarray(np.moveaxis(a[slots], 1, -1))

    theta = lanes(plan["theta0"])
    epoch_loss = np.empty((n_blocks, epochs + 1, BLOCK), dtype=theta.dtype)
    diverged_step = np.empty((n_blocks, BLOCK), dtype=np.int64)
    diverged_loss = np.empty((n_blocks, BLOCK))
    loop = run_blocks_parallel if parallel else run_blocks
    loop(theta, np.zeros_like(theta), np.array(block_group, dtype=np.int64), model.sizes_array,
         model.activation_code, model.loss_code, model.reduction_code, X, Y, plan["orders"],
         plan["batch_sizes"], drop_last, lanes(plan["lr"]), lanes(plan["momentum"]), lanes(plan["dampening"]),
         lanes(plan["weight_decay"]), lanes(plan["nesterov"]), divergence_factor, stop_diverged,
         epoch_loss, diverged_step, diverged_loss)

    def runs(a):
        """Per-block array ``[n_blocks, ..., BLOCK]`` -> per-run array ``[n_runs, ...]``
        (a padding lane writes the same values as the run it copies)."""
        out = np.empty((group.shape[0],) + a.shape[1:-1], dtype=a.dtype)
        out[slots] = np.moveaxis(a, -1, 1)
        return out

    return {"epoch_loss": runs(epoch_loss), "params": runs(theta), "diverged_step": runs(diverged_step),
            "diverged_loss": runs(diverged_loss)}
