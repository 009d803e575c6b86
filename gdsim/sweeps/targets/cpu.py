"""The CPU target, host side: pack a plan's runs into blocks and run ranges of blocks on
one thread (``target="cpu"``) or on a pool of threads (``"parallel"``).

Blocks are independent and fixed before the loop, so the results are bitwise the same
whatever the thread count. The kernels are :mod:`~gdsim.sweeps.targets.cpu_blocks`
(blocks), :mod:`~gdsim.sweeps.targets.cpu_lanes` (layer math) and
:mod:`~gdsim.sweeps.targets.cpu_line` (the fused ``y = w x + b``).
"""

from concurrent.futures import as_completed

import numpy as np

from ..._jit import load_compiler_unless_cached, num_threads
from ..._threads import end_futures, thread_pool
from ...outcomes import compile_classify_aside
from ..dataset import classify_runs, empty_raw, split_tracks
from .cpu_blocks import block_loop
from .cpu_lanes import BLOCK
from .cpu_tracks import stop_tracks, track_runs


def run_plan(plan, progress=None, *, parallel, meanwhile=None):
    """Run a sweep plan (:class:`gdsim.sweeps.plan.Plan`) on the CPU, serially or
    (``parallel``) on :func:`gdsim._jit.num_threads` threads; ``progress(runs_done,
    n_runs)``, if given, is called as blocks of runs finish; ``meanwhile(raw)``, if given
    and without tracks, is called here while the pool's threads compute the runs (before
    them on one thread; :meth:`gdsim.sweeps.targets.Target.run`). Each range of blocks
    classifies its runs as it finishes (:func:`gdsim.sweeps.dataset.classify_runs`).

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
    for g in np.flatnonzero(np.bincount(group)):  # the groups present (np.unique: 10x the time)
        runs = np.flatnonzero(group == g)
        n_blocks = -(-runs.size // BLOCK)
        padded = np.concatenate([runs, np.full(n_blocks * BLOCK - runs.size, runs[-1])])
        slots.append(padded.reshape(n_blocks, BLOCK))
        block_group += [g] * n_blocks
    n_runs = plan.n_runs
    out = empty_raw(n_runs, plan.epochs, plan.theta0.shape[1], plan.theta0.dtype)
    loop = block_loop(plan)
    slots = np.concatenate(slots)
    args = ((slots, np.array(block_group, dtype=np.int64)), plan.model,
            (plan.X, plan.Y, plan.orders, plan.batch_sizes, plan.drop_last), (plan.theta0, plan.lr, plan.hyper),
            (plan.divergence_factor, plan.stop_diverged),
            (out["epoch_loss"], out["params"], out["diverged_step"], out["diverged_loss"]))
    n_blocks = slots.shape[0]
    # Numba's registries (with the GC paused) unless the loop loads from the cache; if it
    # compiles (seconds), the classifier compiles meanwhile in another process
    cached = load_compiler_unless_cached(loop, (np.int64(0), np.int64(0), *args))
    if cached is False:
        compile_classify_aside()
    n_threads = min(num_threads(), n_blocks) if parallel else 1
    # Ranges of blocks: four per thread balance the load; 100 (at most one per block) when progress
    # is reported, so that it moves.
    n_ranges = 4 * n_threads if progress is None else max(4 * n_threads, 100)
    bounds = np.unique(np.linspace(0, n_blocks, n_ranges + 1).round().astype(np.int64))

    names = plan.track[0]
    if names:
        block = np.full((n_runs, len(names), plan.track[2].size), np.nan)

    def run_range(i):
        loop(bounds[i], bounds[i + 1], *args)
        # Each run once (padding repeats a run of its own block); sorted, as np.unique would
        # give them, which took 60 us a range of 1024 lanes (NumPy 2.4), this 6 us.
        lanes = np.sort(slots[bounds[i]:bounds[i + 1]], axis=None)
        runs = lanes[np.concatenate(([True], lanes[1:] != lanes[:-1]))]
        if names:
            track_runs(runs, plan, block)
        classify_runs(out, runs)
        return bounds[i + 1] - bounds[i]

    done = 0
    futures = []
    if n_threads == 1 and cached is not False:
        finished = map(run_range, range(bounds.size - 1))
    else:
        # Threads running the serial loop on ranges of blocks (the kernels release the
        # GIL): the same compiled code as target="cpu", so the results are bitwise the
        # same, and no second, parallel build to compile. This thread only waits (and does
        # meanwhile's work): with it taking ranges too, W2 on the 2-core machine shared
        # with other processes took 23-31 ms against 15-16 ms, for the same CPU time.
        # One thread too when the loop compiles: meanwhile's work (importing xarray, the
        # Dataset) then overlaps the compile, whose LLVM passes release the GIL.
        futures = [thread_pool(n_threads, "gdsim-sweep").submit(run_range, i) for i in range(bounds.size - 1)]
        finished = (future.result() for future in as_completed(futures))
    try:
        if meanwhile is not None and not names:
            meanwhile(out)
        for n_done in finished:
            done += n_done
            if progress is not None:
                progress(int(n_runs * done // n_blocks), n_runs)
    finally:
        end_futures(futures)  # on an error or an interrupt: drop the ranges not started, wait for the others
    if names:
        if plan.stop_diverged:
            stop_tracks(block, names, plan.track[2], out["diverged_step"])
        out |= split_tracks(block, names)
    return out
