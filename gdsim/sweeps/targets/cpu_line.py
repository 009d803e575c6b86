"""CPU lane kernels fused for the tutorials' model ``y = w x + b`` (``sizes == [1, 1]``, MSE).

The same operations in the same order as the layer kernels of
:mod:`~gdsim.sweeps.targets.cpu_lanes` (so a line sweep equals ``train`` bit for bit),
without their layer loops and scratch arrays.

Per-sample SGD (:func:`line_sgd_epoch`) keeps a block's state in struct-of-arrays tables,
one row per quantity and one column per run: the parameters and momentum buffers in two
buffers of the sweep's dtype (a pass reads one and writes the other, so the state before
the pass is still there if a run turns out to have diverged in it), the learning rate, the
other hyper-parameters, the divergence limit and whether the run is watched in
``settings`` (float64, read-only in a pass). LLVM's vectorised loop then needs a few
run-time overlap checks per pass (rather than one for every pair of the ten arrays it would
otherwise touch), one pass over the runs applies two samples (each parameter and buffer is
loaded and stored once per two steps), and the divergence checks only count: the rare pass
in which a run diverges is replayed run by run (:func:`_record`). The full-data loss
(:func:`line_batch_loss`) adds four samples per pass. Every sum keeps the samples' order,
so the numbers are those of the general kernels.
"""

import numpy as np

from ..._jit import jit, jit_inline
from ...optim import DAMPENING, MOMENTUM, NESTEROV, WEIGHT_DECAY, sgd_element
from .cpu_lanes import BLOCK

#: Rows of a state buffer (the sweep's dtype): parameters and momentum buffers.
S_W, S_B, S_BW, S_BB = range(4)
#: Rows of ``settings`` (float64): learning rate, :data:`gdsim.optim.HYPER_ROWS`, the
#: divergence limit (:func:`_limit`) and 1.0 for a run not yet marked as diverged (watched).
H_LR, H_MOMENTUM, H_DAMPENING, H_WEIGHT_DECAY, H_NESTEROV, H_LIMIT, H_WATCHED = range(7)
#: The largest float64: the limit of a run whose threshold is infinite.
BIG = np.finfo(np.float64).max


@jit
def line_batch_loss(theta, X, Y, order, start, stop, mean, want_grad, grad, total):
    """:func:`gdsim.sweeps.targets.cpu_lanes.batch_loss` fused into one loop per sample for the model ``y = w x + b``
    (``sizes == [1, 1]``, MSE), the tutorials' model: the same operations in the same
    order, without the layer loops and scratch arrays (``start`` and ``want_grad`` passed
    as run-time values, as there). Without the gradient, one pass over the runs adds four
    samples' losses (in order)."""
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
        to_dtype = total.dtype.type
        j = start
        while j + 4 <= stop:
            x0, y0 = X[order[j], 0], Y[order[j], 0]
            x1, y1 = X[order[j + 1], 0], Y[order[j + 1], 0]
            x2, y2 = X[order[j + 2], 0], Y[order[j + 2], 0]
            x3, y3 = X[order[j + 3], 0], Y[order[j + 3], 0]
            for c in range(BLOCK):
                w = theta[0, c]
                b = theta[1, c]
                r0 = ((0.0 + w * x0) + b) - y0
                r1 = ((0.0 + w * x1) + b) - y1
                r2 = ((0.0 + w * x2) + b) - y2
                r3 = ((0.0 + w * x3) + b) - y3
                t = total[c]  # rounded to total's dtype after each sample, as stored
                t = to_dtype(t + own_scale * (r0 * r0))
                t = to_dtype(t + own_scale * (r1 * r1))
                t = to_dtype(t + own_scale * (r2 * r2))
                total[c] = t + own_scale * (r3 * r3)
            j += 4
        for i in range(j, stop):
            x, y = X[order[i], 0], Y[order[i], 0]
            for c in range(BLOCK):
                residual = ((0.0 + theta[0, c] * x) + theta[1, c]) - y
                total[c] += own_scale * (residual * residual)
    if mean:
        for c in range(BLOCK):
            total[c] = total[c] / (stop - start)


@jit_inline
def _sample_step(w, b, w_buf, b_buf, sample, settings, c, general, first_step):
    """One SGD step of run ``c`` on one ``sample = (x, y)``: the loss before the update and
    the updated ``(w, b, w_buf, b_buf)``. The operations of :func:`line_batch_loss` on a
    batch of one sample followed by :func:`gdsim.sweeps.targets.cpu_lanes.update`.
    ``general`` as in :func:`gdsim.sweeps.targets.cpu_blocks.sweep_block`."""
    x, y = sample
    z = 0.0 + w * x
    residual = (z + b) - y
    value = 0.0 + residual * residual
    d = 2.0 * residual
    lr = settings[H_LR, c]
    momentum = settings[H_MOMENTUM, c]
    if general is not None:
        dampening = settings[H_DAMPENING, c]
        weight_decay = settings[H_WEIGHT_DECAY, c]
        nesterov = settings[H_NESTEROV, c] != 0.0
        w_new, w_buf_new = sgd_element(w, 0.0 + d * x, w_buf, lr, momentum, dampening, weight_decay, nesterov, False,
                                       first_step)
        b_new, b_buf_new = sgd_element(b, 0.0 + d, b_buf, lr, momentum, dampening, weight_decay, nesterov, False,
                                       first_step)
    else:
        w_new, w_buf_new = _plain_sgd(w, 0.0 + d * x, w_buf, lr, momentum, first_step)
        b_new, b_buf_new = _plain_sgd(b, d, b_buf, lr, momentum, first_step)
    return value, w_new, b_new, w_buf_new, b_buf_new


@jit_inline
def _plain_sgd(p, g, buf, lr, momentum, first_step):
    """:func:`gdsim.scalar.sgd_element` without weight decay, dampening and Nesterov, in
    fewer operations with the same result, for a gradient ``g`` that is never -0: here
    ``0.0 + d x`` or ``d = 2 r`` (a residual ``r = (z + b) - y`` with ``z = 0.0 + w x`` is
    never -0, so ``d`` is ``0.0 + d``, the general kernels' sum of one term).

    sgd_element steps by ``g`` rather than the new buffer when ``momentum == 0``, and keeps
    the buffer. Here the caller keeps the buffer of such a run too (:func:`_kept`, or a
    store only where ``momentum != 0``), so it stays +0 (the sweep starts every buffer at
    0.0), and the new buffer ``momentum * buf + g = +0 + g`` is ``g`` exactly (rounded
    once, also as a fused multiply-add): the step needs no select. Returns the new
    parameter and the new buffer (to keep only where ``momentum != 0``).
    """
    new_buf = g if first_step else momentum * buf + g
    return p - lr * new_buf, new_buf


@jit_inline
def _kept(new_buf, buf, momentum, general):
    """The buffer after a step of :func:`_sample_step` that returned ``new_buf`` from
    ``buf``: with the plain update (``general`` None), ``buf`` itself for a run without
    momentum, as :func:`gdsim.scalar.sgd_element` keeps it (the full update keeps it
    itself)."""
    if general is not None:
        return new_buf
    return new_buf if momentum != 0.0 else buf


@jit_inline
def _stored(state, w, b, w_buf, b_buf):
    """``(w, b, w_buf, b_buf)`` rounded to ``state``'s dtype, as storing them rounds them
    (float32 sweeps compute in float64 and keep the state in float32)."""
    to_dtype = state.dtype.type
    return to_dtype(w), to_dtype(b), to_dtype(w_buf), to_dtype(b_buf)


@jit_inline
def _limit(threshold):
    """The divergence limit of a run's ``threshold``: a loss ``value`` (``>= 0`` or NaN, as
    every loss here: a square plus 0.0) marks divergence exactly when ``not value <=
    limit``, one comparison for :func:`gdsim.kernels.is_diverged` (non-finite or above
    ``threshold``)."""
    return threshold if threshold < BIG else BIG


@jit_inline
def _pass(src, dst, settings, first, second, general, first_step, two):
    """One pass over the runs: the step on sample ``first`` and (``two`` True rather than
    None, a constant) on ``second``, from buffer ``src`` into buffer ``dst``, for every run.

    Returns whether some watched run's loss before one of the steps (rounded to the
    sweep's dtype, as recorded) marks divergence (an "or", cheaper in the loop than a
    count: W2 5% faster); the caller then finds and records those runs
    (:func:`_record`). Runs that no longer train (stopped) are computed too, and dropped
    (:func:`line_sgd_epoch` keeps their state): the loop has no branches and vectorises.
    """
    found = False
    for c in range(BLOCK):
        limit = settings[H_LIMIT, c]
        momentum = settings[H_MOMENTUM, c]
        w_buf0, b_buf0 = src[S_BW, c], src[S_BB, c]
        value, w, b, w_buf, b_buf = _sample_step(src[S_W, c], src[S_B, c], w_buf0, b_buf0, first, settings, c,
                                                 general, first_step)
        new = not (src.dtype.type(value) <= limit)
        if two is not None:
            w, b, w_buf, b_buf = _stored(src, w, b, _kept(w_buf, w_buf0, momentum, general),
                                         _kept(b_buf, b_buf0, momentum, general))
            value, w, b, w_buf, b_buf = _sample_step(w, b, w_buf, b_buf, second, settings, c, general, False)
            new = new | (not (src.dtype.type(value) <= limit))
        dst[S_W, c] = w
        dst[S_B, c] = b
        if general is not None or momentum != 0.0:
            # The plain update keeps a momentum-0 run's buffer, +0 in both state buffers
            # (line_sgd_epoch): a masked store rather than a select.
            dst[S_BW, c] = w_buf
            dst[S_BB, c] = b_buf
        found |= new & (settings[H_WATCHED, c] != 0.0)
    return found


@jit
def _record(src, dst, settings, pair, step, general, stop_diverged, theta_buf, active, marks):
    """After a :func:`_pass` from ``src`` to ``dst`` over ``pair = (first, second, two)``
    (``two`` a bool here; its first step ``step``) that found diverged runs (rare): replay
    the pass run by run for the watched runs, record the step and loss that marked each,
    and (with ``stop_diverged``) stop it, keeping its state from before that step in
    ``theta_buf = (theta, buf)``. Returns how many runs stopped at the first and at the
    second sample."""
    first, second, two = pair
    theta, buf = theta_buf
    _, diverged_step, diverged_loss = marks
    stopped_first = 0
    stopped_second = 0
    for c in range(BLOCK):
        if settings[H_WATCHED, c] == 0.0:
            continue
        limit = settings[H_LIMIT, c]
        w, b, w_buf, b_buf = src[S_W, c], src[S_B, c], src[S_BW, c], src[S_BB, c]
        value, w1, b1, w_buf1, b_buf1 = _sample_step(w, b, w_buf, b_buf, first, settings, c, general, step == 0)
        value = src.dtype.type(value)
        momentum = settings[H_MOMENTUM, c]
        w1, b1, w_buf1, b_buf1 = _stored(src, w1, b1, _kept(w_buf1, w_buf, momentum, general),
                                         _kept(b_buf1, b_buf, momentum, general))
        at = 0 if not value <= limit else -1
        if at < 0 and two:
            value = src.dtype.type(_sample_step(w1, b1, w_buf1, b_buf1, second, settings, c, general, False)[0])
            if not value <= limit:
                at = 1
                w, b, w_buf, b_buf = w1, b1, w_buf1, b_buf1
        if at < 0:
            continue
        diverged_step[c] = step + at
        diverged_loss[c] = value
        settings[H_WATCHED, c] = 0.0
        if stop_diverged:
            active[c] = 0
            theta[0, c], theta[1, c], buf[0, c], buf[1, c] = w, b, w_buf, b_buf
            if at == 0:
                stopped_first += 1
            else:
                stopped_second += 1
    return stopped_first, stopped_second


@jit_inline
def _steps(state, k, settings, pair, general, first_step, step, theta_buf, active, marks, stop_diverged, n_active):
    """:func:`_pass` over ``pair = (first, second, two)`` from ``state[k]`` into
    ``state[1 - k]`` from step ``step`` and, if it found diverged runs, :func:`_record`.
    Returns the number of steps taken (one, or two; one if every run stopped at the first)
    and the runs still active."""
    first, second, two = pair
    src = state[k]
    dst = state[1 - k]
    if not _pass(src, dst, settings, first, second, general, first_step, two):
        return (1 if two is None else 2), n_active
    # ``two`` passed on as a run-time flag: one build of the rare path for both kinds of pass.
    stopped_first, stopped_second = _record(src, dst, settings, (first, second, two is not None), step, general,
                                            stop_diverged, theta_buf, active, marks)
    n_active -= stopped_first
    if n_active == 0 or two is None:
        return 1, n_active
    return 2, n_active - stopped_second


@jit
def line_sgd_epoch(theta, buf, samples, lr, hyper, general, step, n_active, active, marks, stop_diverged):
    """One epoch of per-sample SGD (batch size 1) of the model ``y = w x + b`` (MSE) for
    every run, two samples per pass over the runs (:func:`_pass`).

    ``samples`` is ``(X, Y, epoch_order)``; the other arguments as in
    :func:`gdsim.sweeps.targets.cpu_blocks.sweep_block`'s loop. The steps are numbered from
    ``step``; returns the next step number and the number of runs still active (the
    epoch ends early when none is).
    """
    X, Y, epoch_order = samples
    threshold, diverged_step, _ = marks
    state = np.empty((2, 4, BLOCK), dtype=theta.dtype)
    settings = np.empty((7, BLOCK))
    for c in range(BLOCK):
        state[0, S_W, c] = theta[0, c]
        state[0, S_B, c] = theta[1, c]
        for half in range(2):  # both: a pass does not store a momentum-0 run's buffer (_pass)
            state[half, S_BW, c] = buf[0, c]
            state[half, S_BB, c] = buf[1, c]
        settings[H_LR, c] = lr[c]
        settings[H_MOMENTUM, c] = hyper[MOMENTUM, c]
        settings[H_DAMPENING, c] = hyper[DAMPENING, c]
        settings[H_WEIGHT_DECAY, c] = hyper[WEIGHT_DECAY, c]
        settings[H_NESTEROV, c] = hyper[NESTEROV, c]
        settings[H_LIMIT, c] = _limit(threshold[c])
        settings[H_WATCHED, c] = 1.0 if active[c] != 0 and diverged_step[c] < 0 else 0.0
    n = epoch_order.shape[0]
    k = 0  # the buffer that holds the state
    j = 0
    while j < n and n_active > 0:
        first = (X[epoch_order[j], 0], Y[epoch_order[j], 0])
        if j + 1 < n and step > 0:
            second = (X[epoch_order[j + 1], 0], Y[epoch_order[j + 1], 0])
            taken, n_active = _steps(state, k, settings, (first, second, True), general, False, step, (theta, buf),
                                     active, marks, stop_diverged, n_active)
        else:  # torch's first step (the buffer a copy of the gradient), or an odd last sample: on its own
            taken, n_active = _steps(state, k, settings, (first, first, None), general, step == 0, step,
                                     (theta, buf), active, marks, stop_diverged, n_active)
        step += taken
        k = 1 - k
        j += taken
    for c in range(BLOCK):
        if active[c] != 0:  # a stopped run's state is in theta and buf already
            theta[0, c] = state[k, S_W, c]
            theta[1, c] = state[k, S_B, c]
            buf[0, c] = state[k, S_BW, c]
            buf[1, c] = state[k, S_BB, c]
    return step, n_active
