"""The CPU target, host side: pack a plan's runs into blocks and run ranges of blocks on
one thread (``target="cpu"``) or on a pool of threads (``"parallel"``).

Blocks are independent and fixed before the loop, so the results are bitwise the same
whatever the thread count. The kernels are :mod:`~gdsim.sweeps.targets.cpu_blocks`
(blocks), :mod:`~gdsim.sweeps.targets.cpu_lanes` (layer math) and
:mod:`~gdsim.sweeps.targets.cpu_line` (the fused ``y = w x + b``).
"""

import itertools
from concurrent.futures import as_completed

import numpy as np

from ..._jit import num_threads, thread_pool
from ..dataset import classify_runs, empty_raw, split_tracks
from .cpu_blocks import BLOCK_LOOPS
from .cpu_lanes import BLOCK
from .cpu_tracks import stop_tracks, track_runs

def run_plan(plan, progress=None, *, parallel):
    """Run a sweep plan (:class:`gdsim.sweeps.plan.Plan`) on the CPU, serially or
    (``parallel``) on :func:`gdsim._jit.num_threads` threads; ``progress(runs_done,
    n_runs)``, if given, is called as blocks of runs finish.

    Runs are packed into blocks of ``BLOCK`` runs of the same group (same batch size and
    sample order); a group's last block is padded with copies of its last run, whose
    results are the same numbers. With tracks (``plan.track``), each range of blocks
    then runs its runs again through train's loop (:mod:`~gdsim.sweeps.targets.cpu_tracks`).

    Returns
    -------
    dict
        :data:`gdsim.sweeps.dataset.RAW_ARRAYS`, one row per run.
    """
    group = plan.group
    slots = []  # run index of every lane, block after block
    block_group = []
    for g in np.unique(group):
        runs = np.flatnonzero(group == g)
        n_blocks = -(-runs.size // BLOCK)
        padded = np.concatenate([runs, np.full(n_blocks * BLOCK - runs.size, runs[-1])])
        slots.append(padded.reshape(n_blocks, BLOCK))
        block_group += [g] * n_blocks
    n_runs = plan.n_runs
    out = empty_raw(n_runs, plan.epochs, plan.theta0.shape[1], plan.theta0.dtype)
    loop = BLOCK_LOOPS[bool(plan.model.is_line), bool(plan.needs_general_update)]
    slots = np.concatenate(slots)
    args = ((slots, np.array(block_group, dtype=np.int64)), plan.model,
            (plan.X, plan.Y, plan.orders, plan.batch_sizes, plan.drop_last), (plan.theta0, plan.lr, plan.hyper),
            (plan.divergence_factor, plan.stop_diverged),
            (out["epoch_loss"], out["params"], out["diverged_step"], out["diverged_loss"]))
    n_blocks = slots.shape[0]
    n_threads = min(num_threads(), n_blocks) if parallel else 1
    # Ranges of blocks: without progress, eight per thread, taken by the threads in turn as
    # they finish one (a thread slowed by another process takes fewer); with progress, 100
    # (at most one per block), reported as they finish, so that it moves.
    n_ranges = 8 * n_threads if progress is None else max(4 * n_threads, 100)
    bounds = np.unique(np.linspace(0, n_blocks, n_ranges + 1).round().astype(np.int64))

    names = plan.track[0]
    if names:
        block = np.full((n_runs, len(names), plan.track[2].size), np.nan)

    def run_range(i):
        loop(bounds[i], bounds[i + 1], *args)
        runs = np.unique(slots[bounds[i]:bounds[i + 1]])  # each run once: padding repeats a run of its own block
        if names:
            track_runs(runs, plan, block)
        classify_runs(out, runs)
        return bounds[i + 1] - bounds[i]

    # Threads run the serial loop on ranges of blocks (the kernels release the GIL): the same
    # compiled code as target="cpu", so the results are bitwise the same, and no second,
    # parallel build to compile. Each range's runs are classified where they were computed.
    if progress is None:
        _share(run_range, bounds.size - 1, n_threads)
    else:
        _report(run_range, bounds.size - 1, n_threads, lambda done: progress(int(n_runs * done // n_blocks), n_runs))
    if names:
        if plan.stop_diverged:
            stop_tracks(block, names, plan.track[2], out["diverged_step"])
        out |= split_tracks(block, names)
    return out


def _share(task, n_tasks, n_threads):
    """Run ``task(i)`` for ``i < n_tasks`` on this thread and ``n_threads - 1`` threads of
    a pool, each taking the next task as it finishes one (the kernels release the GIL);
    on an error or an interrupt here, the tasks not yet taken are dropped."""
    taken = itertools.count()
    stop = []

    def take():
        while not stop:
            i = next(taken)  # atomic under the GIL
            if i >= n_tasks:
                return
            task(i)

    others = [thread_pool(n_threads - 1, "gdsim-sweep").submit(take) for _ in range(n_threads - 1)]
    try:
        take()
        for other in others:
            other.result()
    finally:
        stop.append(True)


def _report(task, n_tasks, n_threads, progress):
    """Run ``task(i)`` for ``i < n_tasks`` on ``n_threads`` threads (this one only
    waits) and call ``progress(done)`` here with the sum of the finished tasks' results
    as each finishes; on an error or an interrupt, the tasks not started are dropped."""
    if n_threads == 1:
        finished = map(task, range(n_tasks))
        futures = []
    else:
        futures = [thread_pool(n_threads, "gdsim-sweep").submit(task, i) for i in range(n_tasks)]
        finished = (future.result() for future in as_completed(futures))
    done = 0
    try:
        for n_done in finished:
            done += n_done
            progress(done)
    finally:
        for future in futures:
            future.cancel()
