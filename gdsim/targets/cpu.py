"""CPU sweep kernels: many SGD runs of one model at once, ``BLOCK`` configurations per block.

A block holds ``BLOCK`` configurations (runs) that share the data, the batch size and the
sample order, and differ in their parameters and hyper-parameters. Every per-run array of
a block is stored *struct of arrays* with the run innermost: element ``k`` of run ``c`` is
``a[k, c]`` of a ``[.., BLOCK]`` array. The innermost loops then run over the ``BLOCK``
runs with unit stride, which LLVM vectorises (``BLOCK`` is a compile-time constant: 128
runs per block amortise each pass's set-up better than 64, measured 5-10% faster on W2
and W3 of ``benchmarks/bench.py``, while blocks of 8 or 16 get unrolled into scalar
code). Each run's arithmetic is the same sequence of operations as
:func:`gdsim.engine.train_loop` makes for it, so a sweep's points equal ``train``'s
results.

:data:`BLOCK_LOOPS` (any model, or fused kernels for the tutorials' ``y = w x + b``)
loop over a range of blocks; :func:`run_plan` runs them on one thread or several. Blocks
are independent and fixed before the loop, so the results are bitwise the same whatever
the thread count.

Performance notes (measured on W2 and W3 of ``benchmarks/bench.py``):

* a call between compiled functions inside a per-step loop costs an atomic
  reference-count update per array argument, so per-step helpers are inlined
  (:func:`gdsim._jit.jit_inline`) or the loop moves into the callee;
* flags that are constant in a build (``line_model``, ``general``, ``stop_diverged``) let
  Numba or LLVM drop unused work, and keep each build to the kernels it uses;
* block arrays are allocated per block (aligned, thread-local); four samples share each
  pass over the runs in the MLP kernels (:data:`GROUP`);
* a loop whose body selects an activation at run time does not vectorise: ReLU, the
  common case, gets its own loop.
"""

import math
from concurrent.futures import ThreadPoolExecutor, as_completed

import numpy as np

from .._jit import jit, jit_inline, num_threads
from ..kernels import activate, activation_slope, is_diverged
from ..optim import sgd_element
from ..scalar import CROSS_ENTROPY, MEAN, RELU

#: Runs per block.
BLOCK = 128
#: Samples :func:`_batch_loss` takes together: their forward passes share each pass over
#: the runs, and so do their back-propagations.
GROUP = 4


@jit_inline
def _forward(theta, sizes, activation, X, r, acts, s):
    """Forward pass of sample ``X[r]`` for every run of a block (the samples of a batch
    that do not fill a group of :data:`GROUP`; see :func:`_forward_group`).

    ``acts[s, a, c]`` receives every layer's outputs for run ``c`` (not the input, which is
    the same for all runs and read from ``X`` directly), the last layer's raw outputs last.
    Each output's sum runs over the inputs in order, as in
    :func:`gdsim.kernels.forward_sample`.
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
                acts[s, out, c] = 0.0
            for i in range(fan_in):
                if layer == 0:
                    x = X[r, i]
                    for c in range(BLOCK):
                        acts[s, out, c] += theta[row + i, c] * x
                else:
                    for c in range(BLOCK):
                        acts[s, out, c] += theta[row + i, c] * acts[s, a_in + i, c]
            for c in range(BLOCK):
                z = acts[s, out, c] + theta[b + o, c]
                acts[s, out, c] = activate(activation, z) if hidden else z
        w = b + fan_out
        a_in = a_out
        a_out += fan_out


@jit_inline
def _forward_group(theta, sizes, activation, X, order, first, acts):
    """:func:`_forward` of the :data:`GROUP` samples ``X[order[first + s]]`` into
    ``acts[s]``, all four in each pass over the runs.

    Each sample's sums run over the inputs in order, as in :func:`_forward`, so the numbers
    are the same; the passes, and the loads of the weights, are shared by the four samples
    (two inputs per pass).
    """
    n_layers = sizes.shape[0] - 1
    w = 0
    a_in = 0
    a_out = 0
    r0 = order[first]
    r1 = order[first + 1]
    r2 = order[first + 2]
    r3 = order[first + 3]
    for layer in range(n_layers):
        fan_in = sizes[layer]
        fan_out = sizes[layer + 1]
        b = w + fan_in * fan_out
        hidden = layer < n_layers - 1
        for o in range(fan_out):
            out = a_out + o
            row = w + o * fan_in
            for c in range(BLOCK):
                acts[0, out, c] = 0.0
                acts[1, out, c] = 0.0
                acts[2, out, c] = 0.0
                acts[3, out, c] = 0.0
            for i in range(0, fan_in - 1, 2):
                t = row + i
                if layer == 0:
                    x00 = X[r0, i]
                    x01 = X[r0, i + 1]
                    x10 = X[r1, i]
                    x11 = X[r1, i + 1]
                    x20 = X[r2, i]
                    x21 = X[r2, i + 1]
                    x30 = X[r3, i]
                    x31 = X[r3, i + 1]
                    for c in range(BLOCK):
                        t0 = theta[t, c]
                        t1 = theta[t + 1, c]
                        acts[0, out, c] = (acts[0, out, c] + t0 * x00) + t1 * x01
                        acts[1, out, c] = (acts[1, out, c] + t0 * x10) + t1 * x11
                        acts[2, out, c] = (acts[2, out, c] + t0 * x20) + t1 * x21
                        acts[3, out, c] = (acts[3, out, c] + t0 * x30) + t1 * x31
                else:
                    a = a_in + i
                    for c in range(BLOCK):
                        t0 = theta[t, c]
                        t1 = theta[t + 1, c]
                        acts[0, out, c] = (acts[0, out, c] + t0 * acts[0, a, c]) + t1 * acts[0, a + 1, c]
                        acts[1, out, c] = (acts[1, out, c] + t0 * acts[1, a, c]) + t1 * acts[1, a + 1, c]
                        acts[2, out, c] = (acts[2, out, c] + t0 * acts[2, a, c]) + t1 * acts[2, a + 1, c]
                        acts[3, out, c] = (acts[3, out, c] + t0 * acts[3, a, c]) + t1 * acts[3, a + 1, c]
            if fan_in % 2 == 1:  # the last input
                t = row + fan_in - 1
                if layer == 0:
                    x0 = X[r0, fan_in - 1]
                    x1 = X[r1, fan_in - 1]
                    x2 = X[r2, fan_in - 1]
                    x3 = X[r3, fan_in - 1]
                    for c in range(BLOCK):
                        t0 = theta[t, c]
                        acts[0, out, c] += t0 * x0
                        acts[1, out, c] += t0 * x1
                        acts[2, out, c] += t0 * x2
                        acts[3, out, c] += t0 * x3
                else:
                    a = a_in + fan_in - 1
                    for c in range(BLOCK):
                        t0 = theta[t, c]
                        acts[0, out, c] += t0 * acts[0, a, c]
                        acts[1, out, c] += t0 * acts[1, a, c]
                        acts[2, out, c] += t0 * acts[2, a, c]
                        acts[3, out, c] += t0 * acts[3, a, c]
            if not hidden:
                for c in range(BLOCK):
                    bias = theta[b + o, c]
                    acts[0, out, c] += bias
                    acts[1, out, c] += bias
                    acts[2, out, c] += bias
                    acts[3, out, c] += bias
            elif activation == RELU:  # the constant code lets this loop vectorise
                for c in range(BLOCK):
                    bias = theta[b + o, c]
                    acts[0, out, c] = activate(RELU, acts[0, out, c] + bias)
                    acts[1, out, c] = activate(RELU, acts[1, out, c] + bias)
                    acts[2, out, c] = activate(RELU, acts[2, out, c] + bias)
                    acts[3, out, c] = activate(RELU, acts[3, out, c] + bias)
            else:
                for s in range(GROUP):
                    for c in range(BLOCK):
                        acts[s, out, c] = activate(activation, acts[s, out, c] + theta[b + o, c])
        w = b + fan_out
        a_in = a_out
        a_out += fan_out


@jit_inline
def _output_loss(loss, reduction, n_out, acts, s, a_out, Y, r, want_grad, deltas, scale, own):
    """Each run's own loss of sample ``r`` into ``own[c]`` and, if ``want_grad``,
    ``scale`` times its gradient with respect to the outputs into ``deltas[s, a_out:]``.

    Same operations as :func:`gdsim.kernels.output_loss`, one run per lane.
    """
    if loss == CROSS_ENTROPY:
        label = int(Y[r, 0])
        top = a_out  # deltas[s, a_out] is scratch for the running maximum until the gradient is written
        for c in range(BLOCK):
            deltas[s, top, c] = acts[s, a_out, c]
        for k in range(1, n_out):
            for c in range(BLOCK):
                if acts[s, a_out + k, c] > deltas[s, top, c]:
                    deltas[s, top, c] = acts[s, a_out + k, c]
        for c in range(BLOCK):
            own[c] = 0.0
        for k in range(n_out):
            for c in range(BLOCK):
                own[c] += math.exp(acts[s, a_out + k, c] - deltas[s, top, c])
        for c in range(BLOCK):
            own[c] = deltas[s, top, c] + math.log(own[c])  # log of the softmax's normaliser
        if want_grad:
            for k in range(n_out):
                for c in range(BLOCK):
                    deltas[s, a_out + k, c] = scale * math.exp(acts[s, a_out + k, c] - own[c])
            for c in range(BLOCK):
                deltas[s, a_out + label, c] -= scale
        for c in range(BLOCK):
            own[c] = own[c] - acts[s, a_out + label, c]
        return
    mean_outputs = 1.0 / n_out if reduction == MEAN else 1.0
    for c in range(BLOCK):
        own[c] = 0.0
    for k in range(n_out):
        y = Y[r, k]
        if want_grad:
            for c in range(BLOCK):
                residual = acts[s, a_out + k, c] - y
                own[c] += residual * residual
                deltas[s, a_out + k, c] = scale * 2.0 * mean_outputs * residual
        else:
            for c in range(BLOCK):
                residual = acts[s, a_out + k, c] - y
                own[c] += residual * residual
    for c in range(BLOCK):
        own[c] = mean_outputs * own[c]


@jit_inline
def _backward(theta, sizes, activation, X, order, first, group, acts, deltas, grad):
    """Back-propagate the output deltas of the ``group`` (at most :data:`GROUP`) samples
    ``X[order[first + s]]`` and add each run's gradient to ``grad``.

    ``acts[s]`` and ``deltas[s]`` belong to sample ``s``. Every gradient element receives
    the samples' terms in sample order, and every delta its terms in the order of
    :func:`gdsim.kernels.backward_sample`, so the numbers are those of one sample after
    the other; a full group adds its four terms in one pass over the runs, keeping the
    partial sum in a register (one store per four terms instead of one per term).
    """
    n_layers = sizes.shape[0] - 1
    p = theta.shape[0]
    a_out = 0
    for layer in range(1, n_layers):
        a_out += sizes[layer]
    full = group == GROUP
    for layer in range(n_layers - 1, -1, -1):
        fan_in = sizes[layer]
        fan_out = sizes[layer + 1]
        b = p - fan_out
        w = b - fan_in * fan_out
        a_in = a_out - fan_in
        for o in range(fan_out):
            d_out = a_out + o
            row = w + o * fan_in
            if full:
                for c in range(BLOCK):
                    g = grad[b + o, c]
                    g += deltas[0, d_out, c]
                    g += deltas[1, d_out, c]
                    g += deltas[2, d_out, c]
                    g += deltas[3, d_out, c]
                    grad[b + o, c] = g
            else:
                for s in range(group):
                    for c in range(BLOCK):
                        grad[b + o, c] += deltas[s, d_out, c]
            for i in range(fan_in):
                if layer == 0 and full:
                    x0 = X[order[first + 0], i]
                    x1 = X[order[first + 1], i]
                    x2 = X[order[first + 2], i]
                    x3 = X[order[first + 3], i]
                    for c in range(BLOCK):
                        g = grad[row + i, c]
                        g += deltas[0, d_out, c] * x0
                        g += deltas[1, d_out, c] * x1
                        g += deltas[2, d_out, c] * x2
                        g += deltas[3, d_out, c] * x3
                        grad[row + i, c] = g
                elif layer == 0:
                    for s in range(group):
                        x = X[order[first + s], i]
                        for c in range(BLOCK):
                            grad[row + i, c] += deltas[s, d_out, c] * x
                elif full:
                    a = a_in + i
                    for c in range(BLOCK):
                        g = grad[row + i, c]
                        g += deltas[0, d_out, c] * acts[0, a, c]
                        g += deltas[1, d_out, c] * acts[1, a, c]
                        g += deltas[2, d_out, c] * acts[2, a, c]
                        g += deltas[3, d_out, c] * acts[3, a, c]
                        grad[row + i, c] = g
                else:
                    for s in range(group):
                        for c in range(BLOCK):
                            grad[row + i, c] += deltas[s, d_out, c] * acts[s, a_in + i, c]
        if layer > 0:  # deltas of the layer below, sample by sample
            for s in range(group):
                for i in range(fan_in):
                    for c in range(BLOCK):
                        deltas[s, a_in + i, c] = 0.0
                for o in range(fan_out):
                    d_out = a_out + o
                    row = w + o * fan_in
                    for i in range(fan_in):
                        for c in range(BLOCK):
                            deltas[s, a_in + i, c] += theta[row + i, c] * deltas[s, d_out, c]
                for i in range(fan_in):
                    if activation == RELU:  # the constant code lets this loop vectorise
                        for c in range(BLOCK):
                            deltas[s, a_in + i, c] *= activation_slope(RELU, acts[s, a_in + i, c])
                    else:
                        for c in range(BLOCK):
                            deltas[s, a_in + i, c] *= activation_slope(activation, acts[s, a_in + i, c])
        p = w
        a_out = a_in


@jit
def _line_batch_loss(theta, X, Y, order, start, stop, mean, want_grad, grad, total):
    """:func:`_batch_loss` fused into one loop per sample for the model ``y = w x + b``
    (``sizes == [1, 1]``, MSE), the tutorials' model: the same operations in the same
    order, without the layer loops and scratch arrays (``start`` and ``want_grad`` passed
    as run-time values, as there)."""
    scale = 1.0 / (stop - start) if mean else 1.0
    # A sample's own loss is own_scale * r^2 with own_scale = 1 / n_out = 1, a run-time
    # value as in gdsim.kernels.output_loss: LLVM cannot drop it, so the square is rounded
    # before it is summed ("0.0 + r r" would not do: r r is never -0, so 0.0 + is dropped
    # and the square fused into the sum).
    own_scale = 1.0 / Y.shape[1]
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
                # "0.0 + w x" rounds the product on its own (no fused multiply-add), as the
                # general path and gdsim.kernels do, and so does the square times own_scale
                # (see below): parameters and loss follow them bit for bit.
                z = 0.0 + theta[0, c] * x
                residual = (z + theta[1, c]) - y
                total[c] += own_scale * (residual * residual)
                d = scale * 2.0 * residual
                grad[1, c] += d
                grad[0, c] += d * x
        else:
            for c in range(BLOCK):
                z = 0.0 + theta[0, c] * x
                residual = (z + theta[1, c]) - y
                total[c] += own_scale * (residual * residual)
    if mean:
        for c in range(BLOCK):
            total[c] = total[c] / (stop - start)


@jit_inline
def _line_sample_step(theta, buf, x, y, lr, momentum, dampening, weight_decay, nesterov, general, first_step,
                      active, threshold, diverged_step, stop_diverged, own):
    """One per-sample SGD step of the model ``y = w x + b`` (MSE) for every run, fused into
    a single pass over the runs: loss, gradient, divergence check and update.

    The same operations as :func:`_line_batch_loss` on a batch of one sample followed by
    :func:`_update`, so the results are bitwise the same. ``general`` as in
    :func:`sweep_block`. ``own[c]`` receives each run's loss. Returns how many runs this step
    marks as diverged; the caller records them (from ``own``). With ``stop_diverged`` they
    are not updated.
    """
    n_new = 0
    for c in range(BLOCK):
        # Every operand is loaded before the selects below, so that they need no branches
        # and the loop stays vectorised.
        w = theta[0, c]
        b = theta[1, c]
        w_buf = buf[0, c]
        b_buf = buf[1, c]
        z = 0.0 + w * x
        residual = (z + b) - y
        value = 0.0 + residual * residual
        own[c] = value
        d = 2.0 * residual
        new = (active[c] != 0) & (diverged_step[c] < 0) & is_diverged(value, threshold[c])
        n_new += new
        run = (active[c] != 0) & (not (new & stop_diverged))
        if general is not None:
            w_new, w_buf_new = sgd_element(w, 0.0 + d * x, w_buf, lr[c], momentum[c], dampening[c],
                                           weight_decay[c], nesterov[c] != 0, False, first_step)
            b_new, b_buf_new = sgd_element(b, 0.0 + d, b_buf, lr[c], momentum[c], dampening[c], weight_decay[c],
                                           nesterov[c] != 0, False, first_step)
        else:
            w_new, w_buf_new = sgd_element(w, 0.0 + d * x, w_buf, lr[c], momentum[c], 0.0, 0.0, False, False,
                                           first_step)
            b_new, b_buf_new = sgd_element(b, 0.0 + d, b_buf, lr[c], momentum[c], 0.0, 0.0, False, False,
                                           first_step)
        theta[0, c] = w_new if run else w
        theta[1, c] = b_new if run else b
        buf[0, c] = w_buf_new if run else w_buf
        buf[1, c] = b_buf_new if run else b_buf
    return n_new


@jit
def _line_sgd_epoch(theta, buf, X, Y, epoch_order, lr, momentum, dampening, weight_decay, nesterov, general,
                    step, active, n_active, threshold, diverged_step, diverged_loss, stop_diverged, own):
    """One epoch of per-sample SGD (batch size 1) of the model ``y = w x + b`` (MSE) for
    every run, one fused pass (:func:`_line_sample_step`) per step.

    The steps are numbered from ``step``; returns the next step number and the number of
    runs still active. Its own function (rather than a branch of :func:`sweep_block`), so
    that its loop compiles to straight vector code.
    """
    for j in range(epoch_order.shape[0]):
        r = epoch_order[j]
        # Constant flags for the common case, so that LLVM drops the unused work: a
        # divergence check that only counts (rather than also gating the update) keeps the
        # pass's dependency chains short, which makes it about 1.5x faster.
        if step == 0:
            n_new = _line_sample_step(theta, buf, X[r, 0], Y[r, 0], lr, momentum, dampening, weight_decay,
                                      nesterov, general, True, active, threshold, diverged_step, stop_diverged,
                                      own)
        elif stop_diverged:
            n_new = _line_sample_step(theta, buf, X[r, 0], Y[r, 0], lr, momentum, dampening, weight_decay,
                                      nesterov, general, False, active, threshold, diverged_step, True, own)
        else:
            n_new = _line_sample_step(theta, buf, X[r, 0], Y[r, 0], lr, momentum, dampening, weight_decay,
                                      nesterov, general, False, active, threshold, diverged_step, False, own)
        if n_new > 0:  # rare: record the runs this step marked
            n_active -= _mark_diverged(own, threshold, step, stop_diverged, active, diverged_step, diverged_loss)
        step += 1
        if n_active == 0:
            break
    return step, n_active


@jit_inline
def _update(theta, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first_step, active, general):
    """SGD update of every active run (``active[c] != 0``) from its gradient ``grad``.

    ``general`` (a constant: see :func:`sweep_block`) None compiles the update without
    weight decay, dampening and Nesterov.
    """
    for k in range(theta.shape[0]):
        for c in range(BLOCK):
            p = theta[k, c]
            b = buf[k, c]
            if general is not None:
                p_new, b_new = sgd_element(p, grad[k, c], b, lr[c], momentum[c], dampening[c], weight_decay[c],
                                           nesterov[c] != 0, False, first_step)
            else:
                p_new, b_new = sgd_element(p, grad[k, c], b, lr[c], momentum[c], 0.0, 0.0, False, False,
                                           first_step)
            # Selects rather than branches, so that the loop stays vectorised.
            theta[k, c] = p_new if active[c] != 0 else p
            buf[k, c] = b_new if active[c] != 0 else b


@jit
def _batch_loss(theta, sizes, activation, loss, reduction, X, Y, order, start, stop, want_grad, grad, acts,
                deltas, own, total):
    """Reduced loss of the batch ``X[order[start:stop]]`` for every run into ``total`` and,
    if ``want_grad``, its gradient into ``grad`` (overwritten). ``acts`` and ``deltas`` are
    scratch ``[GROUP, width, BLOCK]``. Callers pass ``start`` and ``want_grad`` as run-time
    values (not constants), so that the loss-only and the training calls share one
    compiled function."""
    n_layers = sizes.shape[0] - 1
    n_out = sizes[n_layers]
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
    for first in range(start, stop, GROUP):
        group = min(GROUP, stop - first)
        if group == GROUP:
            _forward_group(theta, sizes, activation, X, order, first, acts)
        for s in range(group):
            r = order[first + s]
            if group < GROUP:
                _forward(theta, sizes, activation, X, r, acts, s)
            _output_loss(loss, reduction, n_out, acts, s, a_out, Y, r, want_grad, deltas, scale, own)
            for c in range(BLOCK):
                total[c] += own[c]
        if want_grad:
            _backward(theta, sizes, activation, X, order, first, group, acts, deltas, grad)
    if reduction == MEAN:
        for c in range(BLOCK):
            total[c] = total[c] / (stop - start)


@jit_inline
def _mark_diverged(total, threshold, step, stop_diverged, active, diverged_step, diverged_loss):
    """Mark the active, not yet marked runs whose loss ``total[c]`` at ``step`` marks
    divergence; with ``stop_diverged`` deactivate them. Returns how many were deactivated."""
    n_stopped = 0
    for c in range(BLOCK):
        if active[c] != 0 and diverged_step[c] < 0 and is_diverged(total[c], threshold[c]):
            diverged_step[c] = step
            diverged_loss[c] = total[c]
            if stop_diverged:
                active[c] = 0
                n_stopped += 1
    return n_stopped


@jit_inline
def sweep_block(theta, buf, sizes, activation, loss, reduction, X, Y, order, batch_size, drop_last,
                lr, momentum, dampening, weight_decay, nesterov, divergence_factor, stop_diverged,
                epoch_loss, diverged_step, diverged_loss, line_model, general):
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
    nesterov : int64[BLOCK]
        Nonzero for Nesterov momentum (int64 rather than bool: cheaper in vector loops).
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
    line_model : None or True
        True for the model ``y = w x + b`` with MSE (fused kernels), None for any model
        (layer loops).
    general : None or True
        True: the full SGD update; None: without weight decay, dampening and Nesterov
        (which none of the block's runs uses), the same numbers with fewer operations.

    ``line_model`` and ``general`` are constants of the compiled caller (see
    :func:`_block_loop`): Numba prunes ``is None`` branches on None or constant arguments
    before compiling, so each build contains only the kernels it uses.
    """
    n = X.shape[0]
    epochs = order.shape[0]
    width = 0
    for layer in range(1, sizes.shape[0]):
        width += sizes[layer]
    acts = np.empty((GROUP, width, BLOCK), dtype=theta.dtype)
    deltas = np.empty((GROUP, width, BLOCK), dtype=theta.dtype)
    grad = np.empty_like(theta)
    own = np.empty(BLOCK, dtype=theta.dtype)
    total = np.empty(BLOCK, dtype=theta.dtype)
    threshold = np.full(BLOCK, np.inf)
    active = np.ones(BLOCK, dtype=np.int64)  # int64 rather than bool: cheaper as a vector mask
    n_active = BLOCK
    data_order = np.arange(n)
    mean = reduction == MEAN
    diverged_step[:] = -1
    diverged_loss[:] = np.nan
    step = np.int64(0)  # not the literal 0: callees would be compiled for both types
    for epoch in range(epochs + 1):
        if n_active > 0:
            if line_model is None:
                _batch_loss(theta, sizes, activation, loss, reduction, X, Y, data_order, np.int64(0), n,
                            np.bool_(False), grad, acts, deltas, own, total)
            else:
                _line_batch_loss(theta, X, Y, data_order, np.int64(0), n, mean, np.bool_(False), grad, total)
        if epoch == 0:
            for c in range(BLOCK):
                if total[c] > 0.0:
                    threshold[c] = divergence_factor * total[c]
        for c in range(BLOCK):
            epoch_loss[epoch, c] = total[c] if active[c] != 0 else np.nan
        n_active -= _mark_diverged(total, threshold, step, stop_diverged, active, diverged_step, diverged_loss)
        if epoch == epochs or n_active == 0:
            continue  # fill the remaining epochs' losses (NaN once every run stopped)
        lr_epoch = lr[epoch]
        epoch_order = order[epoch]
        if line_model is not None:
            if batch_size == 1:
                step, n_active = _line_sgd_epoch(theta, buf, X, Y, epoch_order, lr_epoch, momentum, dampening,
                                                 weight_decay, nesterov, general, step, active, n_active, threshold,
                                                 diverged_step, diverged_loss, stop_diverged, total)
                continue
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            if drop_last and stop - start < batch_size:
                break
            if line_model is None:
                _batch_loss(theta, sizes, activation, loss, reduction, X, Y, epoch_order, start, stop,
                            np.bool_(True), grad, acts, deltas, own, total)
            else:
                _line_batch_loss(theta, X, Y, epoch_order, start, stop, mean, np.bool_(True), grad, total)
            n_active -= _mark_diverged(total, threshold, step, stop_diverged, active, diverged_step, diverged_loss)
            _update(theta, grad, buf, lr_epoch, momentum, dampening, weight_decay, nesterov, step == 0, active,
                    general)
            step += 1
            if n_active == 0:
                break


@jit_inline
def _run_block(k, slots, block_group, sizes, activation, loss, reduction, X, Y, orders, batch_sizes, drop_last,
               theta0, lr, momentum, dampening, weight_decay, nesterov, divergence_factor, stop_diverged,
               epoch_loss, params, diverged_step, diverged_loss, line_model, general):
    """Run block ``k``: gather its runs' settings into block arrays, train them with
    :func:`sweep_block`, scatter the results back (arguments: see :func:`_block_loop`).

    The block arrays are allocated here: contiguous, 32-byte aligned (so that no vector
    load straddles two cache lines) and local to the thread that runs the block.
    """
    n_params = theta0.shape[1]
    epochs = lr.shape[1]
    lanes = slots[k]
    theta = np.empty((n_params, BLOCK), dtype=theta0.dtype)
    buf = np.zeros((n_params, BLOCK), dtype=theta0.dtype)
    block_lr = np.empty((epochs, BLOCK))
    block_momentum = np.empty(BLOCK)
    block_dampening = np.empty(BLOCK)
    block_weight_decay = np.empty(BLOCK)
    block_nesterov = np.empty(BLOCK, dtype=np.int64)
    for c in range(BLOCK):
        r = lanes[c]
        for i in range(n_params):
            theta[i, c] = theta0[r, i]
        for e in range(epochs):
            block_lr[e, c] = lr[r, e]
        block_momentum[c] = momentum[r]
        block_dampening[c] = dampening[r]
        block_weight_decay[c] = weight_decay[r]
        block_nesterov[c] = 1 if nesterov[r] else 0
    block_loss = np.empty((epochs + 1, BLOCK), dtype=theta0.dtype)
    block_step = np.empty(BLOCK, dtype=np.int64)
    block_diverged_loss = np.empty(BLOCK)
    g = block_group[k]
    sweep_block(theta, buf, sizes, activation, loss, reduction, X, Y, orders[g], batch_sizes[g], drop_last,
                block_lr, block_momentum, block_dampening, block_weight_decay, block_nesterov, divergence_factor,
                stop_diverged, block_loss, block_step, block_diverged_loss, line_model, general)
    for c in range(BLOCK):
        r = lanes[c]
        for i in range(n_params):
            params[r, i] = theta[i, c]
        for e in range(epochs + 1):
            epoch_loss[r, e] = block_loss[e, c]
        diverged_step[r] = block_step[c]
        diverged_loss[r] = block_diverged_loss[c]


def _block_loop(line_model, general):
    """Compile the loop over a range of blocks for one kind of kernel.

    ``line_model`` and ``general`` (None or True, see :func:`sweep_block`) are constants of
    the compiled loop, so that it contains only the kernels it uses: a sweep compiles (or
    loads from the cache) one kind only, which keeps the first sweep's compile time down.

    The loop's arguments: ``first, last`` (the blocks to run), ``slots[k, c]`` (the run in
    lane ``c`` of block ``k``), ``block_group[k]`` (the group whose order and batch size
    block ``k`` uses: ``orders [n_groups, epochs, n]``, ``batch_sizes [n_groups]``), the
    model and the data, ``drop_last``; per run: ``theta0 [n_runs, n_params]``, ``lr
    [n_runs, epochs]``, ``momentum``, ``dampening``, ``weight_decay``, ``nesterov`` (bool)
    ``[n_runs]``; ``divergence_factor``, ``stop_diverged``; outputs per run: ``epoch_loss
    [n_runs, epochs + 1]``, ``params [n_runs, n_params]``, ``diverged_step``,
    ``diverged_loss [n_runs]``. A lane that repeats a run of its block (padding) writes the
    same numbers again.
    """
    def run_blocks(first, last, slots, block_group, sizes, activation, loss, reduction, X, Y, orders, batch_sizes,
                   drop_last, theta0, lr, momentum, dampening, weight_decay, nesterov, divergence_factor,
                   stop_diverged, epoch_loss, params, diverged_step, diverged_loss):
        for k in range(first, last):
            _run_block(k, slots, block_group, sizes, activation, loss, reduction, X, Y, orders, batch_sizes,
                       drop_last, theta0, lr, momentum, dampening, weight_decay, nesterov, divergence_factor,
                       stop_diverged, epoch_loss, params, diverged_step, diverged_loss, line_model, general)

    return jit(run_blocks)


#: Loops over blocks by (line model, general update); each compiles on first use.
BLOCK_LOOPS = {(line, general): _block_loop(True if line else None, True if general else None)
               for line in (False, True) for general in (False, True)}


_THREAD_POOLS = {}


def _thread_pool(n_threads):
    """A pool of ``n_threads`` threads kept for the process (starting threads for every
    sweep cost about 1 ms)."""
    if n_threads not in _THREAD_POOLS:
        _THREAD_POOLS[n_threads] = ThreadPoolExecutor(n_threads, thread_name_prefix="gdsim-sweep")
    return _THREAD_POOLS[n_threads]


def run_plan(model, X, Y, plan, *, drop_last, divergence_factor, stop_diverged, parallel, progress=None):
    """Run a sweep plan (see :func:`gdsim.sweeps.sweep`) on the CPU, serially or (``parallel``)
    on :func:`gdsim._jit.num_threads` threads; ``progress(runs_done, n_runs)``, if given,
    is called as blocks of runs finish.

    Runs are packed into blocks of ``BLOCK`` runs of the same group (same batch size and
    sample order); a group's last block is padded with copies of its last run, whose
    results are the same numbers.

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
    theta0 = plan["theta0"]
    n_runs, epochs = plan["lr"].shape
    out = {"epoch_loss": np.empty((n_runs, epochs + 1), dtype=theta0.dtype),
           "params": np.empty_like(theta0),
           "diverged_step": np.empty(n_runs, dtype=np.int64),
           "diverged_loss": np.empty(n_runs)}
    line_model = model.sizes == (1, 1) and model.loss_code != CROSS_ENTROPY
    general = bool(np.any(plan["weight_decay"] != 0) or np.any(plan["dampening"] != 0) or np.any(plan["nesterov"]))
    loop = BLOCK_LOOPS[line_model, general]
    slots = np.concatenate(slots)
    args = (slots, np.array(block_group, dtype=np.int64), model.sizes_array, model.activation_code,
            model.loss_code, model.reduction_code, X, Y, plan["orders"], plan["batch_sizes"], drop_last, theta0,
            plan["lr"], plan["momentum"], plan["dampening"], plan["weight_decay"], plan["nesterov"],
            divergence_factor, stop_diverged, out["epoch_loss"], out["params"], out["diverged_step"],
            out["diverged_loss"])
    n_blocks = slots.shape[0]
    n_threads = min(num_threads(), n_blocks) if parallel else 1
    # Ranges of blocks: four per thread balance the load; 100 (at most one per block) when progress
    # is reported, so that it moves.
    n_ranges = 4 * n_threads if progress is None else max(4 * n_threads, 100)
    bounds = np.unique(np.linspace(0, n_blocks, n_ranges + 1).round().astype(np.int64))

    def run_range(i):
        loop(bounds[i], bounds[i + 1], *args)
        return bounds[i + 1] - bounds[i]

    done = 0
    futures = []
    if n_threads == 1:
        finished = map(run_range, range(bounds.size - 1))
    else:
        # Threads running the serial loop on ranges of blocks (the kernels release the
        # GIL): the same compiled code as target="cpu", so the results are bitwise the
        # same, and no second, parallel build to compile.
        futures = [_thread_pool(n_threads).submit(run_range, i) for i in range(bounds.size - 1)]
        finished = (future.result() for future in as_completed(futures))
    try:
        for n_done in finished:
            done += n_done
            if progress is not None:
                progress(int(n_runs * done // n_blocks), n_runs)
    finally:
        for future in futures:  # on an error or an interrupt, drop the ranges not started
            future.cancel()
    return out
