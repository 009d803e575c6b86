"""CPU lane kernels: the layer math of one model for ``BLOCK`` runs at once, one run per lane.

A block holds ``BLOCK`` runs that share the data, the batch size and the sample order,
and differ in their parameters and hyper-parameters. Every per-run array of a block is
stored *struct of arrays* with the run innermost: element ``k`` of run ``c`` is ``a[k, c]``
of a ``[.., BLOCK]`` array. The innermost loops then run over the ``BLOCK`` runs with unit
stride, which LLVM vectorises (``BLOCK`` is a compile-time constant: 128 runs per block
amortise each pass's set-up better than 64, measured 5-10% faster on W2 and W3 of
``benchmarks/bench.py``, while blocks of 8 or 16 get unrolled into scalar code). Each
run's arithmetic is the same sequence of operations as :func:`gdsim.training.train_loop`
makes for it, so a sweep's points equal ``train``'s results.

This module: the forward and backward passes and the loss of a batch
(:func:`batch_loss`), the SGD update of every lane (:func:`update`) and the divergence
marks (:func:`mark_diverged`). :mod:`~gdsim.sweeps.targets.cpu_line` is the fused path of
``y = w x + b``; :mod:`~gdsim.sweeps.targets.cpu_blocks` trains a block with either;
:mod:`~gdsim.sweeps.targets.cpu` schedules blocks on threads.

Performance notes (measured on W2 and W3 of ``benchmarks/bench.py``):

* a call between compiled functions inside a per-step loop costs an atomic
  reference-count update per array argument, so per-step helpers are inlined
  (:func:`gdsim._jit.jit_inline`) or the loop moves into the callee;
* four samples share each pass over the runs in the MLP kernels (:data:`GROUP`);
* a loop whose body selects an activation at run time does not vectorise: ReLU, the
  common case, gets its own loop;
* the model's options (no bias, the NTK parameterization) are tested outside the loops
  over the runs: torch's standard layers run the same loops as before they existed.
"""

import math

from ..._jit import jit_inline, jit_noalias
from ...kernels import activate, activation_slope, averages, has_bias, is_diverged, is_ntk, loss_factor, weight_scale
from ...optim import DAMPENING, MOMENTUM, NESTEROV, WEIGHT_DECAY, sgd_element
from ...scalar import CROSS_ENTROPY, RELU

#: Runs per block.
BLOCK = 128
#: Samples :func:`batch_loss` takes together: their forward passes share each pass over
#: the runs, and so do their back-propagations.
GROUP = 4


@jit_inline
def forward_group(theta, model, X, order, first, group, acts):
    """Forward pass of the ``group`` (1 to :data:`GROUP`) samples ``X[order[first + s]]``
    for every run of a block, all in each pass over the runs.

    ``acts[s, a, c]`` receives every layer's outputs of sample ``s`` for run ``c`` (not the
    input, which is the same for all runs and read from ``X`` directly), the last layer's
    raw outputs last. Each output's sum runs over the inputs in order, as in
    :func:`gdsim.kernels.forward_sample`; the passes, and the loads of the weights, are
    shared by the four samples, four inputs per pass (then two, then one: each output
    is stored once per pass, and the stores, not the multiply-adds, bounded two inputs
    per pass). A group of fewer than :data:`GROUP`
    samples is padded with repeats of its last sample, into ``acts[group:]``, which the
    caller ignores: each sample's numbers are computed on their own, so the real samples'
    are the same, and one loop nest serves every group (compiling a second, one-sample
    forward pass for the tail of a batch cost 0.5-0.9 s of a cold MLP sweep's compile).
    """
    sizes, activation, _, _, layer_code = model
    bias = has_bias(layer_code)
    ntk = is_ntk(layer_code)
    n_layers = sizes.shape[0] - 1
    w = 0
    a_in = 0
    a_out = 0
    last = group - 1
    r0 = order[first]
    r1 = order[first + min(1, last)]
    r2 = order[first + min(2, last)]
    r3 = order[first + min(3, last)]
    for layer in range(n_layers):
        fan_in = sizes[layer]
        fan_out = sizes[layer + 1]
        b = w + fan_in * fan_out
        hidden = layer < n_layers - 1
        scale = weight_scale(layer_code, fan_in)
        for o in range(fan_out):
            out = a_out + o
            row = w + o * fan_in
            for c in range(BLOCK):
                acts[0, out, c] = 0.0
                acts[1, out, c] = 0.0
                acts[2, out, c] = 0.0
                acts[3, out, c] = 0.0
            n4 = fan_in - fan_in % 4
            for i in range(0, n4, 4):  # four inputs per pass: one store per four terms
                t = row + i
                if layer == 0:
                    x00, x01, x02, x03 = X[r0, i], X[r0, i + 1], X[r0, i + 2], X[r0, i + 3]
                    x10, x11, x12, x13 = X[r1, i], X[r1, i + 1], X[r1, i + 2], X[r1, i + 3]
                    x20, x21, x22, x23 = X[r2, i], X[r2, i + 1], X[r2, i + 2], X[r2, i + 3]
                    x30, x31, x32, x33 = X[r3, i], X[r3, i + 1], X[r3, i + 2], X[r3, i + 3]
                    for c in range(BLOCK):
                        t0 = theta[t, c]
                        t1 = theta[t + 1, c]
                        t2 = theta[t + 2, c]
                        t3 = theta[t + 3, c]
                        acts[0, out, c] = (((acts[0, out, c] + t0 * x00) + t1 * x01) + t2 * x02) + t3 * x03
                        acts[1, out, c] = (((acts[1, out, c] + t0 * x10) + t1 * x11) + t2 * x12) + t3 * x13
                        acts[2, out, c] = (((acts[2, out, c] + t0 * x20) + t1 * x21) + t2 * x22) + t3 * x23
                        acts[3, out, c] = (((acts[3, out, c] + t0 * x30) + t1 * x31) + t2 * x32) + t3 * x33
                else:
                    a = a_in + i
                    for c in range(BLOCK):
                        t0 = theta[t, c]
                        t1 = theta[t + 1, c]
                        t2 = theta[t + 2, c]
                        t3 = theta[t + 3, c]
                        acts[0, out, c] = ((((acts[0, out, c] + t0 * acts[0, a, c]) + t1 * acts[0, a + 1, c])
                                             + t2 * acts[0, a + 2, c]) + t3 * acts[0, a + 3, c])
                        acts[1, out, c] = ((((acts[1, out, c] + t0 * acts[1, a, c]) + t1 * acts[1, a + 1, c])
                                             + t2 * acts[1, a + 2, c]) + t3 * acts[1, a + 3, c])
                        acts[2, out, c] = ((((acts[2, out, c] + t0 * acts[2, a, c]) + t1 * acts[2, a + 1, c])
                                             + t2 * acts[2, a + 2, c]) + t3 * acts[2, a + 3, c])
                        acts[3, out, c] = ((((acts[3, out, c] + t0 * acts[3, a, c]) + t1 * acts[3, a + 1, c])
                                             + t2 * acts[3, a + 2, c]) + t3 * acts[3, a + 3, c])
            if fan_in % 4 >= 2:  # two more inputs
                i = n4
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
            if ntk:
                for s in range(GROUP):
                    for c in range(BLOCK):
                        acts[s, out, c] = acts[s, out, c] * scale
            if not bias:
                if hidden:
                    for s in range(GROUP):
                        for c in range(BLOCK):
                            acts[s, out, c] = activate(activation, acts[s, out, c])
            elif not hidden:
                for c in range(BLOCK):
                    b_o = theta[b + o, c]
                    acts[0, out, c] += b_o
                    acts[1, out, c] += b_o
                    acts[2, out, c] += b_o
                    acts[3, out, c] += b_o
            elif activation == RELU:  # the constant code lets this loop vectorise
                for c in range(BLOCK):
                    b_o = theta[b + o, c]
                    acts[0, out, c] = activate(RELU, acts[0, out, c] + b_o)
                    acts[1, out, c] = activate(RELU, acts[1, out, c] + b_o)
                    acts[2, out, c] = activate(RELU, acts[2, out, c] + b_o)
                    acts[3, out, c] = activate(RELU, acts[3, out, c] + b_o)
            else:
                for s in range(GROUP):
                    for c in range(BLOCK):
                        acts[s, out, c] = activate(activation, acts[s, out, c] + theta[b + o, c])
        w = b + fan_out if bias else b
        a_in = a_out
        a_out += fan_out


@jit_inline
def output_loss(model, acts, s, a_out, Y, r, want_grad, deltas, scale, own):
    """Each run's own loss of sample ``r`` into ``own[c]`` and, if ``want_grad``,
    ``scale`` times its gradient with respect to the outputs into ``deltas[s, a_out:]``.

    Same operations as :func:`gdsim.kernels.output_loss`, one run per lane.
    """
    sizes, _, loss, reduction, _ = model
    n_out = sizes[sizes.shape[0] - 1]
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
    factor = loss_factor(reduction)  # 0.5 for the half reductions (1.0 changes no bit)
    mean_outputs = factor / n_out if averages(reduction) else factor
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
def backward(theta, model, X, order, first, group, acts, deltas, grad):
    """Back-propagate the output deltas of the ``group`` (at most :data:`GROUP`) samples
    ``X[order[first + s]]`` and add each run's gradient to ``grad``.

    ``acts[s]`` and ``deltas[s]`` belong to sample ``s``. Every gradient element receives
    the samples' terms in sample order, and every delta its terms in the order of
    :func:`gdsim.kernels.backward_sample`, so the numbers are those of one sample after
    the other; the group's four terms are added in one pass over the runs, keeping the
    partial sum in a register (one store per four terms instead of one per term), and
    four inputs share a pass (each delta loaded once for four gradients). The deltas of
    the layer below also take the four samples in each pass. A group
    of fewer than :data:`GROUP` samples needs ``acts[group:]`` and ``deltas[group:]`` zero
    (see :func:`batch_loss`): a missing sample's terms are then zeros times finite numbers
    (its input row repeats the last sample's; the inputs are finite), and adding a zero
    leaves a sum bit for bit as it is (a sum that starts at +0 is never -0); its deltas
    below, computed too, are zeroed again (an infinite weight times its zero delta is
    NaN). Under the NTK
    parameterization an output's deltas are scaled by ``1/sqrt(fan_in)`` after its bias
    gradient, as in :func:`gdsim.kernels.backward_sample`.
    """
    sizes, activation, _, _, layer_code = model
    bias = has_bias(layer_code)
    ntk = is_ntk(layer_code)
    n_layers = sizes.shape[0] - 1
    p = theta.shape[0]
    a_out = 0
    for layer in range(1, n_layers):
        a_out += sizes[layer]
    last = group - 1
    r0 = order[first]
    r1 = order[first + min(1, last)]
    r2 = order[first + min(2, last)]
    r3 = order[first + min(3, last)]
    for layer in range(n_layers - 1, -1, -1):
        fan_in = sizes[layer]
        fan_out = sizes[layer + 1]
        b = p - fan_out if bias else p
        w = b - fan_in * fan_out
        a_in = a_out - fan_in
        scale = weight_scale(layer_code, fan_in)
        for o in range(fan_out):
            d_out = a_out + o
            row = w + o * fan_in
            if bias:
                for c in range(BLOCK):
                    g = grad[b + o, c]
                    g += deltas[0, d_out, c]
                    g += deltas[1, d_out, c]
                    g += deltas[2, d_out, c]
                    g += deltas[3, d_out, c]
                    grad[b + o, c] = g
            if ntk:
                for s in range(group):
                    for c in range(BLOCK):
                        deltas[s, d_out, c] = deltas[s, d_out, c] * scale
            n4 = fan_in - fan_in % 4
            for i in range(0, n4, 4):  # four inputs per pass: each delta loaded once for four gradients
                if layer == 0:
                    for c in range(BLOCK):
                        d0, d1, d2, d3 = deltas[0, d_out, c], deltas[1, d_out, c], deltas[2, d_out, c], deltas[3, d_out, c]
                        for j in range(4):  # the inputs' loads leave the loop (X is not written)
                            grad[row + i + j, c] = ((((grad[row + i + j, c] + d0 * X[r0, i + j]) + d1 * X[r1, i + j])
                                                     + d2 * X[r2, i + j]) + d3 * X[r3, i + j])
                else:
                    a = a_in + i
                    for c in range(BLOCK):
                        d0, d1, d2, d3 = deltas[0, d_out, c], deltas[1, d_out, c], deltas[2, d_out, c], deltas[3, d_out, c]
                        for j in range(4):
                            grad[row + i + j, c] = ((((grad[row + i + j, c] + d0 * acts[0, a + j, c])
                                                      + d1 * acts[1, a + j, c]) + d2 * acts[2, a + j, c])
                                                    + d3 * acts[3, a + j, c])
            for i in range(n4, fan_in - 1, 2):  # two more inputs (at most one pass)
                if layer == 0:
                    for c in range(BLOCK):
                        d0, d1, d2, d3 = deltas[0, d_out, c], deltas[1, d_out, c], deltas[2, d_out, c], deltas[3, d_out, c]
                        for j in range(2):  # the inputs' loads leave the loop (X is not written)
                            grad[row + i + j, c] = ((((grad[row + i + j, c] + d0 * X[r0, i + j]) + d1 * X[r1, i + j])
                                                     + d2 * X[r2, i + j]) + d3 * X[r3, i + j])
                else:
                    a = a_in + i
                    for c in range(BLOCK):
                        d0, d1, d2, d3 = deltas[0, d_out, c], deltas[1, d_out, c], deltas[2, d_out, c], deltas[3, d_out, c]
                        for j in range(2):
                            grad[row + i + j, c] = ((((grad[row + i + j, c] + d0 * acts[0, a + j, c])
                                                      + d1 * acts[1, a + j, c]) + d2 * acts[2, a + j, c])
                                                    + d3 * acts[3, a + j, c])
            if fan_in % 2 == 1:  # the last input
                i = fan_in - 1
                if layer == 0:
                    for c in range(BLOCK):
                        d0, d1, d2, d3 = deltas[0, d_out, c], deltas[1, d_out, c], deltas[2, d_out, c], deltas[3, d_out, c]
                        for j in range(1):  # the inputs' loads leave the loop (X is not written)
                            grad[row + i + j, c] = ((((grad[row + i + j, c] + d0 * X[r0, i + j]) + d1 * X[r1, i + j])
                                                     + d2 * X[r2, i + j]) + d3 * X[r3, i + j])
                else:
                    a = a_in + i
                    for c in range(BLOCK):
                        d0, d1, d2, d3 = deltas[0, d_out, c], deltas[1, d_out, c], deltas[2, d_out, c], deltas[3, d_out, c]
                        for j in range(1):
                            grad[row + i + j, c] = ((((grad[row + i + j, c] + d0 * acts[0, a + j, c])
                                                      + d1 * acts[1, a + j, c]) + d2 * acts[2, a + j, c])
                                                    + d3 * acts[3, a + j, c])
        if layer > 0:  # deltas of the layer below, the four samples in each pass
            for o in range(fan_out):
                d_out = a_out + o
                row = w + o * fan_in
                for i in range(fan_in):
                    a = a_in + i
                    if o == 0:  # each sum starts at 0.0, as in train
                        for c in range(BLOCK):
                            t = theta[row + i, c]
                            deltas[0, a, c] = 0.0 + t * deltas[0, d_out, c]
                            deltas[1, a, c] = 0.0 + t * deltas[1, d_out, c]
                            deltas[2, a, c] = 0.0 + t * deltas[2, d_out, c]
                            deltas[3, a, c] = 0.0 + t * deltas[3, d_out, c]
                    else:
                        for c in range(BLOCK):
                            t = theta[row + i, c]
                            deltas[0, a, c] += t * deltas[0, d_out, c]
                            deltas[1, a, c] += t * deltas[1, d_out, c]
                            deltas[2, a, c] += t * deltas[2, d_out, c]
                            deltas[3, a, c] += t * deltas[3, d_out, c]
            for i in range(fan_in):
                a = a_in + i
                if activation == RELU:  # the constant code lets this loop vectorise
                    for c in range(BLOCK):
                        deltas[0, a, c] *= activation_slope(RELU, acts[0, a, c])
                        deltas[1, a, c] *= activation_slope(RELU, acts[1, a, c])
                        deltas[2, a, c] *= activation_slope(RELU, acts[2, a, c])
                        deltas[3, a, c] *= activation_slope(RELU, acts[3, a, c])
                else:
                    for s in range(GROUP):
                        for c in range(BLOCK):
                            deltas[s, a, c] *= activation_slope(activation, acts[s, a, c])
            if group < GROUP:  # a missing sample's deltas stay zero (theta * 0 is NaN for an infinite theta)
                deltas[group:, a_in:a_in + fan_in] = 0.0
        p = w
        a_out = a_in


@jit_noalias
def batch_loss(theta, model, X, Y, order, start, stop, want_grad, grad, work, total):
    """Reduced loss of the batch ``X[order[start:stop]]`` for every run into ``total`` and,
    if ``want_grad``, its gradient into ``grad`` (overwritten).

    ``model`` is a :class:`gdsim.models.ModelSpec`; ``work`` the scratch ``(acts, deltas,
    own)``: ``[GROUP, width, BLOCK]`` twice and ``[BLOCK]``. Callers pass ``start`` and
    ``want_grad`` as run-time values (not constants), so that the loss-only and the
    training calls share one compiled function. Compiled with :func:`gdsim._jit.jit_noalias`:
    no two of its arrays may overlap (each is a separate allocation)."""
    sizes = model.sizes
    mean = averages(model.reduction)
    acts, deltas, own = work
    n_layers = sizes.shape[0] - 1
    a_out = 0
    for layer in range(1, n_layers):
        a_out += sizes[layer]
    scale = 1.0 / (stop - start) if mean else 1.0
    if want_grad:
        for k in range(grad.shape[0]):
            for c in range(BLOCK):
                grad[k, c] = 0.0
    for c in range(BLOCK):
        total[c] = 0.0
    for first in range(start, stop, GROUP):
        group = min(GROUP, stop - first)
        forward_group(theta, model, X, order, first, group, acts)
        for s in range(group):
            r = order[first + s]
            output_loss(model, acts, s, a_out, Y, r, want_grad, deltas, scale, own)
            for c in range(BLOCK):
                total[c] += own[c]
        if want_grad:
            if group < GROUP:  # the missing samples' terms: zeros (see backward)
                acts[group:] = 0.0
                deltas[group:] = 0.0
            backward(theta, model, X, order, first, group, acts, deltas, grad)
    if mean:
        for c in range(BLOCK):
            total[c] = total[c] / (stop - start)


@jit_inline
def update(theta, grad, buf, lr, hyper, first_step, active, general):
    """SGD update of every active run (``active[c] != 0``) from its gradient ``grad``.

    ``lr [BLOCK]`` and ``hyper [N_HYPER, BLOCK]`` (rows :data:`gdsim.optim.HYPER_ROWS`) are
    the runs' settings. ``general`` (a constant: see
    :func:`gdsim.sweeps.targets.cpu_blocks.sweep_block`) None compiles the update without
    weight decay, dampening and Nesterov.
    """
    for k in range(theta.shape[0]):
        for c in range(BLOCK):
            p = theta[k, c]
            b = buf[k, c]
            if general is not None:
                p_new, b_new = sgd_element(p, grad[k, c], b, lr[c], hyper[MOMENTUM, c], hyper[DAMPENING, c],
                                           hyper[WEIGHT_DECAY, c], hyper[NESTEROV, c] != 0.0, False, first_step)
            else:
                p_new, b_new = sgd_element(p, grad[k, c], b, lr[c], hyper[MOMENTUM, c], 0.0, 0.0, False, False,
                                           first_step)
            # Selects rather than branches, so that the loop stays vectorised.
            theta[k, c] = p_new if active[c] != 0 else p
            buf[k, c] = b_new if active[c] != 0 else b


@jit_inline
def mark_diverged(total, step, stop_diverged, active, marks):
    """Mark the active, not yet marked runs whose loss ``total[c]`` at ``step`` marks
    divergence; with ``stop_diverged`` deactivate them. Returns how many were deactivated.

    ``marks`` is ``(threshold, diverged_step, diverged_loss)``, each ``[BLOCK]``: each run's
    divergence threshold, and the step and loss that marked it (-1 and NaN until then).
    """
    threshold, diverged_step, diverged_loss = marks
    n_stopped = 0
    for c in range(BLOCK):
        if active[c] != 0 and diverged_step[c] < 0 and is_diverged(total[c], threshold[c]):
            diverged_step[c] = step
            diverged_loss[c] = total[c]
            if stop_diverged:
                active[c] = 0
                n_stopped += 1
    return n_stopped

