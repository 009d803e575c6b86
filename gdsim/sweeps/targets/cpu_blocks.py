"""CPU sweep blocks: train the ``BLOCK`` runs of a block (:func:`sweep_block`), and the
compiled loops over ranges of blocks (:data:`BLOCK_LOOPS`) that
:mod:`gdsim.sweeps.targets.cpu` runs on threads.

Flags that are constant in a build (``line_model``, ``general``) let Numba and LLVM drop
unused work and keep each build to the kernels it uses. Block arrays are allocated per
block (aligned, thread-local).
"""

import numpy as np

from ..._jit import jit, jit_inline
from ...batches import batch_stop
from ...kernels import averages, divergence_threshold
from ...optim import HYPER_ROWS
from .cpu_lanes import BLOCK, batch_loss, mark_diverged, plain_model, update
from .cpu_line import line_batch_loss, line_sgd_epoch


@jit_inline
def sweep_block(theta, scratch, model, data, batches, lr, hyper, divergence, block_out, line_model, general, plain):
    """Train the ``BLOCK`` runs of one block with SGD, in place.

    Parameters
    ----------
    theta : float[n_params, BLOCK]
        Initial parameters of every run (one run per column); final parameters on return.
    scratch : tuple
        :func:`block_scratch`'s working arrays after ``theta`` (the momentum buffers first),
        reused from block to block: their values on entry do not matter.
    model : gdsim.models.ModelSpec
    data : (float[n, n_in], float[n, n_out] or float[n, 1])
        ``(X, Y)``.
    batches : (int64[epochs, n], int, bool)
        ``(order, batch_size, drop_last)``: the sample order of each epoch, shared by the
        block's runs, sliced by :func:`gdsim.batches.batch_stop`.
    lr : float64[epochs, BLOCK]
        Learning rate of each epoch and run.
    hyper : float64[N_HYPER, BLOCK]
        The other hyper-parameters, rows :data:`gdsim.optim.HYPER_ROWS`.
    divergence : (float, bool)
        ``(divergence_factor, stop_diverged)``: a loss above the factor times the run's
        initial full-data loss (or non-finite) marks divergence; with ``stop_diverged`` the
        run stops updating (its later losses are NaN).
    block_out : (float[epochs + 1, BLOCK], int64[BLOCK], float64[BLOCK])
        Outputs ``(epoch_loss, diverged_step, diverged_loss)``: the full-data loss before
        each epoch and after the last; the step marked as diverged (as in
        :func:`gdsim.training.train_loop`), -1 if never; the loss that marked it (NaN if never).
    line_model : None or True
        True for the model ``y = w x + b`` with MSE (fused kernels of
        :mod:`~gdsim.sweeps.targets.cpu_line`), None for any model (layer loops).
    general : None or True
        True: the full SGD update; None: without weight decay, dampening and Nesterov
        (which none of the block's runs uses), the same numbers with fewer operations.
    plain : None or True
        :func:`~gdsim.sweeps.targets.cpu_lanes.batch_loss`'s ``plain``: True for a
        :func:`~gdsim.sweeps.targets.cpu_lanes.plain_model` (None for the line model).

    ``line_model``, ``general`` and ``plain`` are constants of the compiled caller (see
    :func:`_block_loop`): Numba prunes ``is None`` branches on None or constant arguments
    before compiling, so each build contains only the kernels it uses.
    """
    X, Y = data
    order, batch_size, drop_last = batches
    divergence_factor, stop_diverged = divergence
    epoch_loss, diverged_step, diverged_loss = block_out
    n = X.shape[0]
    epochs = order.shape[0]
    buf, acts, deltas, grad, own, total, threshold, active = scratch
    buf[:] = 0.0
    threshold[:] = np.inf
    active[:] = 1
    work = (acts, deltas, own)
    marks = (threshold, diverged_step, diverged_loss)
    n_active = BLOCK
    data_order = np.empty(n, dtype=np.int64)  # np.arange(n), without compiling np.arange (0.15-0.2 s)
    for i in range(n):
        data_order[i] = i
    mean = averages(model.reduction)  # the line model's reductions: "mean" or "sum"
    diverged_step[:] = -1
    diverged_loss[:] = np.nan
    step = np.int64(0)  # not the literal 0: callees would be compiled for both types
    for epoch in range(epochs + 1):
        if n_active > 0:
            if line_model is None:
                batch_loss(theta, model, X, Y, data_order, np.int64(0), n, np.bool_(False), grad, work, total, plain)
            else:
                line_batch_loss(theta, X, Y, data_order, np.int64(0), n, mean, np.bool_(False), grad, total)
        if epoch == 0:
            for c in range(BLOCK):
                threshold[c] = divergence_threshold(total[c], divergence_factor)
        for c in range(BLOCK):
            epoch_loss[epoch, c] = total[c] if active[c] != 0 else np.nan
        n_active -= mark_diverged(total, step, stop_diverged, active, marks)
        if epoch == epochs or n_active == 0:
            continue  # fill the remaining epochs' losses (NaN once every run stopped)
        lr_epoch = lr[epoch]
        epoch_order = order[epoch]
        if line_model is not None:
            if batch_size == 1:
                step, n_active = line_sgd_epoch(theta, buf, (X, Y, epoch_order), lr_epoch, hyper, general, step,
                                                n_active, active, marks, stop_diverged)
                continue
        for start in range(0, n, batch_size):
            stop = batch_stop(start, n, batch_size, drop_last)
            if stop == start:
                break
            if line_model is None:
                batch_loss(theta, model, X, Y, epoch_order, start, stop, np.bool_(True), grad, work, total, plain)
            else:
                line_batch_loss(theta, X, Y, epoch_order, start, stop, mean, np.bool_(True), grad, total)
            n_active -= mark_diverged(total, step, stop_diverged, active, marks)
            update(theta, grad, buf, lr_epoch, hyper, step == 0, active, general)
            step += 1
            if n_active == 0:
                break


@jit_inline
def block_scratch(model, theta0, epochs):
    """The working arrays of a block, allocated once per range of blocks and reused from
    block to block: ``(theta, block_lr, block_hyper, block_loss, block_step,
    block_diverged_loss)`` and :func:`sweep_block`'s ``scratch``.

    Allocated per block, they cost about a tenth of a small model's time (the allocator's
    calls and fresh pages, block after block; 40,320 per-sample linear runs took 0.107-0.116 s
    against 0.088-0.102 s reused). They are contiguous, 32-byte aligned (no vector load
    straddles two cache lines) and local to the thread that runs the range.
    """
    sizes = model.sizes
    dtype = theta0.dtype
    n_params = theta0.shape[1]
    width = 0
    for layer in range(1, sizes.shape[0]):
        width += sizes[layer]
    block = (np.empty((n_params, BLOCK), dtype=dtype), np.empty((epochs, BLOCK)),
             np.empty((len(HYPER_ROWS), BLOCK)), np.empty((epochs + 1, BLOCK), dtype=dtype),
             np.empty(BLOCK, dtype=np.int64), np.empty(BLOCK))
    # acts and deltas: one [width, BLOCK] array per sample of a group (GROUP, 4): separate
    # arrays, so that batch_loss's loops need no run-time tests that the samples' rows do not overlap
    acts = (np.empty((width, BLOCK), dtype=dtype), np.empty((width, BLOCK), dtype=dtype),
            np.empty((width, BLOCK), dtype=dtype), np.empty((width, BLOCK), dtype=dtype))
    deltas = (np.empty((width, BLOCK), dtype=dtype), np.empty((width, BLOCK), dtype=dtype),
              np.empty((width, BLOCK), dtype=dtype), np.empty((width, BLOCK), dtype=dtype))
    scratch = (np.empty((n_params, BLOCK), dtype=dtype), acts, deltas, np.empty((n_params, BLOCK), dtype=dtype),
               np.empty(BLOCK, dtype=dtype), np.empty(BLOCK, dtype=dtype), np.empty(BLOCK),
               np.empty(BLOCK, dtype=np.int64))  # active: int64 rather than bool, cheaper as a vector mask
    return block, scratch


@jit_inline
def _run_block(k, blocks, model, data, runs, divergence, out, work, line_model, general, plain):
    """Run block ``k``: gather its runs' settings into block arrays, train them with
    :func:`sweep_block`, scatter the results back (arguments: see :func:`_block_loop`;
    ``work``: :func:`block_scratch`; ``line_model``, ``general``, ``plain``: see
    :func:`sweep_block`).
    """
    slots, block_group = blocks
    X, Y, orders, batch_sizes, drop_last = data
    theta0, lr, hyper = runs
    epoch_loss, params, diverged_step, diverged_loss = out
    (theta, block_lr, block_hyper, block_loss, block_step, block_diverged_loss), scratch = work
    n_params = theta0.shape[1]
    epochs = lr.shape[1]
    lanes = slots[k]
    for c in range(BLOCK):
        r = lanes[c]
        for i in range(n_params):
            theta[i, c] = theta0[r, i]
        for e in range(epochs):
            block_lr[e, c] = lr[r, e]
        for h in range(len(HYPER_ROWS)):
            block_hyper[h, c] = hyper[h, r]
    g = block_group[k]
    sweep_block(theta, scratch, model, (X, Y), (orders[g], batch_sizes[g], drop_last), block_lr, block_hyper,
                divergence, (block_loss, block_step, block_diverged_loss), line_model, general, plain)
    for c in range(BLOCK):
        r = lanes[c]
        for i in range(n_params):
            params[r, i] = theta[i, c]
        for e in range(epochs + 1):
            epoch_loss[r, e] = block_loss[e, c]
        diverged_step[r] = block_step[c]
        diverged_loss[r] = block_diverged_loss[c]


def _block_loop(line_model, general, plain):
    """Compile the loop over a range of blocks for one kind of kernel.

    ``line_model``, ``general`` and ``plain`` (None or True, see :func:`sweep_block`) are constants of
    the compiled loop, so that it contains only the kernels it uses: a sweep compiles (or
    loads from the cache) one kind only, which keeps the first sweep's compile time down.

    The loop's arguments, ``run_blocks(first, last, blocks, model, data, runs, divergence,
    out)``:

    * ``first, last``: the blocks to run;
    * ``blocks = (slots, block_group)``: ``slots[k, c]`` is the run in lane ``c`` of block
      ``k``, ``block_group[k]`` the group whose order and batch size block ``k`` uses;
    * ``model``: a :class:`gdsim.models.ModelSpec`;
    * ``data = (X, Y, orders [n_groups, epochs, n], batch_sizes [n_groups], drop_last)``;
    * ``runs = (theta0 [n_runs, n_params], lr [n_runs, epochs], hyper [N_HYPER, n_runs])``;
    * ``divergence = (divergence_factor, stop_diverged)``;
    * ``out = (epoch_loss [n_runs, epochs + 1], params [n_runs, n_params], diverged_step
      [n_runs], diverged_loss [n_runs])``, written per run.

    A lane that repeats a run of its block (padding) writes the same numbers again.
    """
    def run_blocks(first, last, blocks, model, data, runs, divergence, out):
        work = block_scratch(model, runs[0], runs[1].shape[1])
        for k in range(first, last):
            _run_block(k, blocks, model, data, runs, divergence, out, work, line_model, general, plain)

    return jit(run_blocks)


#: Loops over blocks by (line model, general update, plain model; see :func:`block_loop`),
#: each compiled on first use.
BLOCK_LOOPS = {(line, general, plain): _block_loop(True if line else None, True if general else None,
                                                   True if plain else None)
               for line in (False, True) for general in (False, True) for plain in (False, True) if not (line and plain)}


def block_loop(plan):
    """The loop over blocks (of :data:`BLOCK_LOOPS`) that runs sweep plan ``plan``
    (:class:`gdsim.sweeps.plan.Plan`)."""
    line = bool(plan.model.is_line)
    return BLOCK_LOOPS[line, bool(plan.needs_general_update), not line and plain_model(plan.model)]
