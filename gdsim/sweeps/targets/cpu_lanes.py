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
  over the runs: torch's standard layers run the same loops as before they existed;
* LLVM vectorises a loop that writes one array and reads another behind run-time tests
  that they do not overlap, on every entry of the loop: :func:`batch_loss` is compiled
  with :func:`gdsim._jit.jit_noalias`, and each sample of a group has arrays of its own
  (``acts[s]``, ``deltas[s]``), so that the loops over the runs need none (the MLP sweep
  W3 took about 1.2x as long with them).
"""

import math

from ..._jit import jit_inline, jit_noalias
from ...kernels import (activate, activation_slope, averages, has_bias, is_diverged, is_ntk, mse_weight,
                       weight_scale)
from ...optim import DAMPENING, MOMENTUM, NESTEROV, WEIGHT_DECAY, sgd_element
from ...scalar import CROSS_ENTROPY, MSE, RELU, STANDARD

#: Runs per block.
BLOCK = 128
#: Samples :func:`batch_loss` takes together: their forward passes share each pass over
#: the runs, and so do their back-propagations.
GROUP = 4


def plain_model(model):
    """True for the common MLP, which :func:`batch_loss` compiles on its own (``plain``):
    MSE, torch's standard layers with biases, and ReLU hidden layers (or none).

    Parameters
    ----------
    model : gdsim.models.ModelSpec
    """
    relu = model.sizes.shape[0] == 2 or model.activation == RELU
    return bool(model.loss == MSE and model.layer_code == STANDARD and relu)


@jit_inline
def forward_group(theta, model, X, order, first, group, acts, plain):
    """Forward pass of the ``group`` (1 to :data:`GROUP`) samples ``X[order[first + s]]``
    for every run of a block, all in each pass over the runs.

    ``acts[s][a, c]`` receives every layer's outputs of sample ``s`` for run ``c`` (not the
    input, which is the same for all runs and read from ``X`` directly), the last layer's
    raw outputs last. Each output's sum runs over the inputs in order, as in
    :func:`gdsim.kernels.forward_sample`; the passes, and the loads of the weights, are
    shared by the four samples, and each pass takes four inputs (then two, then one),
    the sums in registers between them (one load and store of an output per four terms).
    A group of fewer than :data:`GROUP` samples is padded with repeats of its last
    sample, into ``acts[s]`` for ``s >= group``, which the
    caller ignores: each sample's numbers are computed on their own, so the real samples'
    are the same, and one loop nest serves every group (compiling a second, one-sample
    forward pass for the tail of a batch cost 0.5-0.9 s of a cold MLP sweep's compile).
    """
    sizes, activation, _, _, layer_code = model
    acts0, acts1, acts2, acts3 = acts  # one array per sample
    bias = plain is not None or has_bias(layer_code)  # a plain build calls (compiles) none of the three
    ntk = plain is None and is_ntk(layer_code)
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
        scale = 1.0 if plain is not None else weight_scale(layer_code, fan_in)
        for o in range(fan_out):
            out = a_out + o
            row = w + o * fan_in
            # The inputs in order, four per pass (then two, then one): each output stored once a pass;
            # the first pass starts the sums (no pass of zeros)
            n4 = fan_in - fan_in % 4
            for i in range(0, n4, 4):
                if layer == 0:
                    for c in range(BLOCK):
                        z0, z1, z2, z3 = acts0[out, c], acts1[out, c], acts2[out, c], acts3[out, c]
                        if i == 0:  # each sum starts at 0.0 (a select: the loop stays one loop)
                            z0, z1, z2, z3 = 0.0, 0.0, 0.0, 0.0
                        for j in range(4):  # unrolled by LLVM; the inputs' loads leave the loop over c
                            t = theta[row + i + j, c]
                            z0, z1 = z0 + t * X[r0, i + j], z1 + t * X[r1, i + j]
                            z2, z3 = z2 + t * X[r2, i + j], z3 + t * X[r3, i + j]
                        acts0[out, c], acts1[out, c], acts2[out, c], acts3[out, c] = z0, z1, z2, z3
                else:
                    a = a_in + i
                    for c in range(BLOCK):
                        z0, z1, z2, z3 = acts0[out, c], acts1[out, c], acts2[out, c], acts3[out, c]
                        if i == 0:  # each sum starts at 0.0 (a select: the loop stays one loop)
                            z0, z1, z2, z3 = 0.0, 0.0, 0.0, 0.0
                        for j in range(4):
                            t = theta[row + i + j, c]
                            z0, z1 = z0 + t * acts0[a + j, c], z1 + t * acts1[a + j, c]
                            z2, z3 = z2 + t * acts2[a + j, c], z3 + t * acts3[a + j, c]
                        acts0[out, c], acts1[out, c], acts2[out, c], acts3[out, c] = z0, z1, z2, z3
            for i in range(n4, fan_in - 1, 2):  # at most one pass
                if layer == 0:
                    for c in range(BLOCK):
                        z0, z1, z2, z3 = acts0[out, c], acts1[out, c], acts2[out, c], acts3[out, c]
                        if i == 0:  # each sum starts at 0.0 (a select: the loop stays one loop)
                            z0, z1, z2, z3 = 0.0, 0.0, 0.0, 0.0
                        for j in range(2):  # unrolled by LLVM; the inputs' loads leave the loop over c
                            t = theta[row + i + j, c]
                            z0, z1 = z0 + t * X[r0, i + j], z1 + t * X[r1, i + j]
                            z2, z3 = z2 + t * X[r2, i + j], z3 + t * X[r3, i + j]
                        acts0[out, c], acts1[out, c], acts2[out, c], acts3[out, c] = z0, z1, z2, z3
                else:
                    a = a_in + i
                    for c in range(BLOCK):
                        z0, z1, z2, z3 = acts0[out, c], acts1[out, c], acts2[out, c], acts3[out, c]
                        if i == 0:  # each sum starts at 0.0 (a select: the loop stays one loop)
                            z0, z1, z2, z3 = 0.0, 0.0, 0.0, 0.0
                        for j in range(2):
                            t = theta[row + i + j, c]
                            z0, z1 = z0 + t * acts0[a + j, c], z1 + t * acts1[a + j, c]
                            z2, z3 = z2 + t * acts2[a + j, c], z3 + t * acts3[a + j, c]
                        acts0[out, c], acts1[out, c], acts2[out, c], acts3[out, c] = z0, z1, z2, z3
            if fan_in % 2 == 1:
                i = fan_in - 1
                if layer == 0:
                    for c in range(BLOCK):
                        z0, z1, z2, z3 = acts0[out, c], acts1[out, c], acts2[out, c], acts3[out, c]
                        if i == 0:  # each sum starts at 0.0 (a select: the loop stays one loop)
                            z0, z1, z2, z3 = 0.0, 0.0, 0.0, 0.0
                        for j in range(1):  # unrolled by LLVM; the inputs' loads leave the loop over c
                            t = theta[row + i + j, c]
                            z0, z1 = z0 + t * X[r0, i + j], z1 + t * X[r1, i + j]
                            z2, z3 = z2 + t * X[r2, i + j], z3 + t * X[r3, i + j]
                        acts0[out, c], acts1[out, c], acts2[out, c], acts3[out, c] = z0, z1, z2, z3
                else:
                    a = a_in + i
                    for c in range(BLOCK):
                        z0, z1, z2, z3 = acts0[out, c], acts1[out, c], acts2[out, c], acts3[out, c]
                        if i == 0:  # each sum starts at 0.0 (a select: the loop stays one loop)
                            z0, z1, z2, z3 = 0.0, 0.0, 0.0, 0.0
                        for j in range(1):
                            t = theta[row + i + j, c]
                            z0, z1 = z0 + t * acts0[a + j, c], z1 + t * acts1[a + j, c]
                            z2, z3 = z2 + t * acts2[a + j, c], z3 + t * acts3[a + j, c]
                        acts0[out, c], acts1[out, c], acts2[out, c], acts3[out, c] = z0, z1, z2, z3
            if plain is None and ntk:
                for s in range(GROUP):
                    for c in range(BLOCK):
                        acts[s][out, c] = acts[s][out, c] * scale
            if plain is None and not bias:
                if hidden:
                    for s in range(GROUP):
                        for c in range(BLOCK):
                            acts[s][out, c] = activate(activation, acts[s][out, c])
            elif not hidden:
                for c in range(BLOCK):
                    b_o = theta[b + o, c]
                    acts0[out, c] += b_o
                    acts1[out, c] += b_o
                    acts2[out, c] += b_o
                    acts3[out, c] += b_o
            elif plain is not None or activation == RELU:  # the constant code lets this loop vectorise
                for c in range(BLOCK):
                    b_o = theta[b + o, c]
                    acts0[out, c] = activate(RELU, acts0[out, c] + b_o)
                    acts1[out, c] = activate(RELU, acts1[out, c] + b_o)
                    acts2[out, c] = activate(RELU, acts2[out, c] + b_o)
                    acts3[out, c] = activate(RELU, acts3[out, c] + b_o)
            else:
                for s in range(GROUP):
                    for c in range(BLOCK):
                        acts[s][out, c] = activate(activation, acts[s][out, c] + theta[b + o, c])
        w = b + fan_out if bias else b
        a_in = a_out
        a_out += fan_out


@jit_inline
def output_loss(model, acts, a_out, Y, r, want_grad, deltas, scale, own, plain):
    """Each run's own loss of sample ``r`` into ``own[c]`` and, if ``want_grad``,
    ``scale`` times its gradient with respect to the outputs into ``deltas[a_out:]``
    (``acts`` and ``deltas``: the sample's ``[width, BLOCK]`` arrays).

    Same operations as :func:`gdsim.kernels.output_loss`, one run per lane. ``plain``: see
    :func:`batch_loss`.
    """
    sizes, _, loss, reduction, _ = model
    n_out = sizes[sizes.shape[0] - 1]
    if plain is None and loss == CROSS_ENTROPY:
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
    mean_outputs = mse_weight(reduction, n_out)
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


@jit_inline
def backward(theta, model, X, order, first, group, acts, deltas, grad, plain):
    """Back-propagate the output deltas of the ``group`` (at most :data:`GROUP`) samples
    ``X[order[first + s]]`` and add each run's gradient to ``grad``.

    ``acts[s]`` and ``deltas[s]`` belong to sample ``s``. Every gradient element receives
    the samples' terms in sample order, and every delta its terms in the order of
    :func:`gdsim.kernels.backward_sample`, so the numbers are those of one sample after
    the other; the group's four terms are added in one pass over the runs, keeping the
    partial sum in a register (one store per four terms instead of one per term), and
    four inputs share a pass (each delta loaded once for four gradients). The deltas of
    the layer below also take the four samples in each pass. A group
    of fewer than :data:`GROUP` samples needs ``acts[s]`` and ``deltas[s]`` zero for ``s >= group``
    (see :func:`batch_loss`): a missing sample's terms are then zeros times finite numbers
    (its input row repeats the last sample's; the inputs are finite), and adding a zero
    leaves a sum bit for bit as it is (a sum that starts at +0 is never -0); its deltas
    below, computed too, are zeroed again (an infinite weight times its zero delta is
    NaN). Under the NTK
    parameterization an output's deltas are scaled by ``1/sqrt(fan_in)`` after its bias
    gradient, as in :func:`gdsim.kernels.backward_sample`.
    """
    sizes, activation, _, _, layer_code = model
    acts0, acts1, acts2, acts3 = acts  # one array per sample
    deltas0, deltas1, deltas2, deltas3 = deltas
    bias = plain is not None or has_bias(layer_code)  # a plain build calls (compiles) none of the three
    ntk = plain is None and is_ntk(layer_code)
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
        scale = 1.0 if plain is not None else weight_scale(layer_code, fan_in)
        for o in range(fan_out):
            d_out = a_out + o
            row = w + o * fan_in
            if plain is not None or bias:
                for c in range(BLOCK):
                    g = grad[b + o, c]
                    g += deltas0[d_out, c]
                    g += deltas1[d_out, c]
                    g += deltas2[d_out, c]
                    g += deltas3[d_out, c]
                    grad[b + o, c] = g
            if plain is None and ntk:
                for s in range(group):
                    for c in range(BLOCK):
                        deltas[s][d_out, c] = deltas[s][d_out, c] * scale
            n4 = fan_in - fan_in % 4
            for i in range(0, n4, 4):  # four inputs per pass: each delta loaded once for four gradients
                if layer == 0:
                    for c in range(BLOCK):
                        d0, d1, d2, d3 = deltas0[d_out, c], deltas1[d_out, c], deltas2[d_out, c], deltas3[d_out, c]
                        for j in range(4):  # the inputs' loads leave the loop (X is not written)
                            grad[row + i + j, c] = ((((grad[row + i + j, c] + d0 * X[r0, i + j]) + d1 * X[r1, i + j])
                                                     + d2 * X[r2, i + j]) + d3 * X[r3, i + j])
                else:
                    a = a_in + i
                    for c in range(BLOCK):
                        d0, d1, d2, d3 = deltas0[d_out, c], deltas1[d_out, c], deltas2[d_out, c], deltas3[d_out, c]
                        for j in range(4):
                            grad[row + i + j, c] = ((((grad[row + i + j, c] + d0 * acts0[a + j, c])
                                                      + d1 * acts1[a + j, c]) + d2 * acts2[a + j, c])
                                                    + d3 * acts3[a + j, c])
            for i in range(n4, fan_in - 1, 2):  # two more inputs (at most one pass)
                if layer == 0:
                    for c in range(BLOCK):
                        d0, d1, d2, d3 = deltas0[d_out, c], deltas1[d_out, c], deltas2[d_out, c], deltas3[d_out, c]
                        for j in range(2):  # the inputs' loads leave the loop (X is not written)
                            grad[row + i + j, c] = ((((grad[row + i + j, c] + d0 * X[r0, i + j]) + d1 * X[r1, i + j])
                                                     + d2 * X[r2, i + j]) + d3 * X[r3, i + j])
                else:
                    a = a_in + i
                    for c in range(BLOCK):
                        d0, d1, d2, d3 = deltas0[d_out, c], deltas1[d_out, c], deltas2[d_out, c], deltas3[d_out, c]
                        for j in range(2):
                            grad[row + i + j, c] = ((((grad[row + i + j, c] + d0 * acts0[a + j, c])
                                                      + d1 * acts1[a + j, c]) + d2 * acts2[a + j, c])
                                                    + d3 * acts3[a + j, c])
            if fan_in % 2 == 1:  # the last input
                i = fan_in - 1
                if layer == 0:
                    for c in range(BLOCK):
                        d0, d1, d2, d3 = deltas0[d_out, c], deltas1[d_out, c], deltas2[d_out, c], deltas3[d_out, c]
                        for j in range(1):  # the inputs' loads leave the loop (X is not written)
                            grad[row + i + j, c] = ((((grad[row + i + j, c] + d0 * X[r0, i + j]) + d1 * X[r1, i + j])
                                                     + d2 * X[r2, i + j]) + d3 * X[r3, i + j])
                else:
                    a = a_in + i
                    for c in range(BLOCK):
                        d0, d1, d2, d3 = deltas0[d_out, c], deltas1[d_out, c], deltas2[d_out, c], deltas3[d_out, c]
                        for j in range(1):
                            grad[row + i + j, c] = ((((grad[row + i + j, c] + d0 * acts0[a + j, c])
                                                      + d1 * acts1[a + j, c]) + d2 * acts2[a + j, c])
                                                    + d3 * acts3[a + j, c])
        if layer > 0:  # deltas of the layer below, the four samples in each pass
            relu = plain is not None or activation == RELU
            for o in range(fan_out):
                d_out = a_out + o
                row = w + o * fan_in
                slope = relu and o == fan_out - 1  # ReLU's slope in the last output's pass
                for i in range(fan_in):
                    a = a_in + i
                    for c in range(BLOCK):
                        t = theta[row + i, c]
                        e0, e1, e2, e3 = deltas0[a, c], deltas1[a, c], deltas2[a, c], deltas3[a, c]
                        if o == 0:  # each sum starts at 0.0, as in train
                            e0, e1, e2, e3 = 0.0, 0.0, 0.0, 0.0
                        e0, e1 = e0 + t * deltas0[d_out, c], e1 + t * deltas1[d_out, c]
                        e2, e3 = e2 + t * deltas2[d_out, c], e3 + t * deltas3[d_out, c]
                        if slope:  # the constant code lets this loop vectorise
                            e0, e1 = e0 * activation_slope(RELU, acts0[a, c]), e1 * activation_slope(RELU, acts1[a, c])
                            e2, e3 = e2 * activation_slope(RELU, acts2[a, c]), e3 * activation_slope(RELU, acts3[a, c])
                        deltas0[a, c], deltas1[a, c], deltas2[a, c], deltas3[a, c] = e0, e1, e2, e3
            if plain is None and not relu:
                for i in range(fan_in):
                    for s in range(GROUP):
                        for c in range(BLOCK):
                            deltas[s][a_in + i, c] *= activation_slope(activation, acts[s][a_in + i, c])
            if group < GROUP:  # a missing sample's deltas stay zero (theta * 0 is NaN for an infinite theta)
                for s in range(group, GROUP):
                    deltas[s][a_in:a_in + fan_in] = 0.0
        p = w
        a_out = a_in


@jit_noalias
def batch_loss(theta, model, X, Y, order, start, stop, want_grad, grad, work, total, plain):
    """Reduced loss of the batch ``X[order[start:stop]]`` for every run into ``total`` and,
    if ``want_grad``, its gradient into ``grad`` (overwritten).

    ``model`` is a :class:`gdsim.models.ModelSpec`; ``work`` the scratch ``(acts, deltas,
    own)``: ``acts`` and ``deltas`` each :data:`GROUP` arrays ``[width, BLOCK]`` (one per
    sample of a group), ``own`` ``[BLOCK]``. Callers pass ``start`` and
    ``want_grad`` as run-time values (not constants), so that the loss-only and the
    training calls share one compiled function. Compiled with :func:`gdsim._jit.jit_noalias`:
    no two of its arrays may overlap (each is a separate allocation).

    ``plain`` (a constant: True or None, see :func:`plain_model`) True compiles the kernels
    for a :func:`plain_model` only, without the loops of the other options (cross-entropy,
    no bias, the NTK parameterization, an activation other than ReLU): a third less to
    compile in a cold MLP sweep; None compiles them for any model. Numba prunes the
    ``plain is None`` branches before compiling."""
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
        forward_group(theta, model, X, order, first, group, acts, plain)
        for s in range(group):
            r = order[first + s]
            output_loss(model, acts[s], a_out, Y, r, want_grad, deltas[s], scale, own, plain)
            for c in range(BLOCK):
                total[c] += own[c]
        if want_grad:
            if group < GROUP:  # the missing samples' terms: zeros (see backward)
                for s in range(group, GROUP):
                    acts[s][:] = 0.0
                    deltas[s][:] = 0.0
            backward(theta, model, X, order, first, group, acts, deltas, grad, plain)
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

