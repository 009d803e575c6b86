"""CPU lane kernels fused for the tutorials' model ``y = w x + b`` (``sizes == [1, 1]``, MSE).

The same operations in the same order as the layer kernels of
:mod:`~gdsim.sweeps.targets.cpu_lanes` (so a line sweep equals ``train`` bit for bit),
without their layer loops and scratch arrays; per-sample SGD makes one pass over the runs
per step (:func:`line_sgd_epoch`).
"""

from ..._jit import jit, jit_inline
from ...kernels import is_diverged
from ...optim import DAMPENING, MOMENTUM, NESTEROV, WEIGHT_DECAY, sgd_element
from .cpu_lanes import BLOCK, mark_diverged


@jit
def line_batch_loss(theta, X, Y, order, start, stop, mean, want_grad, grad, total):
    """:func:`gdsim.sweeps.targets.cpu_lanes.batch_loss` fused into one loop per sample for the model ``y = w x + b``
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
def _sample_step(theta, buf, sample, lr, hyper, general, first_step, active, threshold, diverged_step,
                 stop_diverged, own):
    """One per-sample SGD step of the model ``y = w x + b`` (MSE) for every run, fused into
    a single pass over the runs: loss, gradient, divergence check and update.

    The same operations as :func:`line_batch_loss` on the batch of the one ``sample = (x,
    y)`` followed by :func:`gdsim.sweeps.targets.cpu_lanes.update`, so the results are
    bitwise the same. ``general`` as in :func:`gdsim.sweeps.targets.cpu_blocks.sweep_block`;
    ``threshold`` and ``diverged_step`` as in :func:`gdsim.sweeps.targets.cpu_lanes.mark_diverged`
    (passed as arrays, not as the ``marks`` tuple: unpacking a tuple of arrays at every
    step costs reference-count updates, measured ~10% of W2). ``own[c]``
    receives each run's loss. Returns how many runs this step marks as diverged; the caller
    records them (from ``own``). With ``stop_diverged`` they are not updated.
    """
    x, y = sample
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
        momentum = hyper[MOMENTUM, c]
        if general is not None:
            dampening = hyper[DAMPENING, c]
            weight_decay = hyper[WEIGHT_DECAY, c]
            nesterov = hyper[NESTEROV, c] != 0.0
            w_new, w_buf_new = sgd_element(w, 0.0 + d * x, w_buf, lr[c], momentum, dampening, weight_decay,
                                           nesterov, False, first_step)
            b_new, b_buf_new = sgd_element(b, 0.0 + d, b_buf, lr[c], momentum, dampening, weight_decay,
                                           nesterov, False, first_step)
        else:
            w_new, w_buf_new = sgd_element(w, 0.0 + d * x, w_buf, lr[c], momentum, 0.0, 0.0, False, False,
                                           first_step)
            b_new, b_buf_new = sgd_element(b, 0.0 + d, b_buf, lr[c], momentum, 0.0, 0.0, False, False,
                                           first_step)
        theta[0, c] = w_new if run else w
        theta[1, c] = b_new if run else b
        buf[0, c] = w_buf_new if run else w_buf
        buf[1, c] = b_buf_new if run else b_buf
    return n_new


@jit
def line_sgd_epoch(theta, buf, samples, lr, hyper, general, step, n_active, active, marks, stop_diverged, own):
    """One epoch of per-sample SGD (batch size 1) of the model ``y = w x + b`` (MSE) for
    every run, one fused pass (:func:`_sample_step`) per step.

    ``samples`` is ``(X, Y, epoch_order)``; the other arguments as in
    :func:`gdsim.sweeps.targets.cpu_blocks.sweep_block`'s loop. The steps are numbered from
    ``step``; returns the next step number and the number of runs still active. Its own
    function (rather than a branch of ``sweep_block``), so that its loop compiles to
    straight vector code.
    """
    X, Y, epoch_order = samples
    threshold, diverged_step, _ = marks
    for j in range(epoch_order.shape[0]):
        r = epoch_order[j]
        # Constant flags for the common case, so that LLVM drops the unused work: a
        # divergence check that only counts (rather than also gating the update) keeps the
        # pass's dependency chains short, which makes it about 1.5x faster.
        sample = (X[r, 0], Y[r, 0])
        if step == 0:
            n_new = _sample_step(theta, buf, sample, lr, hyper, general, True, active, threshold, diverged_step,
                                 stop_diverged, own)
        elif stop_diverged:
            n_new = _sample_step(theta, buf, sample, lr, hyper, general, False, active, threshold, diverged_step,
                                 True, own)
        else:
            n_new = _sample_step(theta, buf, sample, lr, hyper, general, False, active, threshold, diverged_step,
                                 False, own)
        if n_new > 0:  # rare: record the runs this step marked
            n_active -= mark_diverged(own, step, stop_diverged, active, marks)
        step += 1
        if n_active == 0:
            break
    return step, n_active

