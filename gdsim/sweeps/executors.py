"""Where the regions of a store are computed: here, one after another (the target's own
threads inside each), or as tasks on a Dask ``distributed`` cluster.

A task is ``function(*args, runs)`` -> the raw arrays of those runs (for a sweep
:func:`gdsim.sweeps.run_points` with its :class:`~gdsim.sweeps.SweepSpec`, which pickles).
Its result does not depend on where it ran or with which other runs, so a task lost with
its worker and retried by Dask gives the same bits. The client writes every region itself,
so workers need no access to the store.
"""

import collections
import contextlib
import os
from concurrent.futures import CancelledError
from itertools import islice

import numpy as np

from .._validate import ParameterError, check_int


def local_results(task, regions):
    """``(region, raw)`` for each region, computed here in order."""
    function, args = task
    for region in regions:
        yield region, function(*args, np.arange(region.first, region.stop))


def dask_results(client, task, regions, in_flight=None):
    """``(region, raw)`` for each region as its task finishes on ``client``'s cluster.

    At most ``in_flight`` tasks (default: twice the cluster's threads) are submitted at a
    time, so that finished results wait for the client in bounded memory; the task's
    arguments are sent to the workers once (``scatter``), not with every task.
    """
    from distributed import as_completed

    function, args = task
    threads = sum(client.nthreads().values()) or 1
    in_flight = 2 * threads if in_flight is None else in_flight
    args = client.scatter(list(args), broadcast=True, hash=False)
    regions = list(regions)
    if regions:
        # Warm-up: one run on one worker compiles the kernels into Numba's cache (shared
        # through NUMBA_CACHE_DIR on a cluster), which the other workers then load.
        first = regions[0].first
        client.submit(_run_range, function, first, first + 1, *args, pure=False).result()
    pending = iter(regions)
    regions_of = {}
    retries = collections.Counter()
    finished = as_completed()

    def submit(region):
        # The run range travels as two integers: distributed keeps its last 1000 messages,
        # and an index array in each would grow the client by the array's size per task.
        future = client.submit(_run_range, function, region.first, region.stop, *args, pure=False,
                               key=f"gdsim-region-{region.index}-{os.urandom(4).hex()}")
        regions_of[future] = region
        finished.add(future)

    for region in islice(pending, in_flight):
        submit(region)
    for future in finished:
        region = regions_of.pop(future)
        try:
            raw = future.result()
        except CancelledError:
            # A worker that died with the only copy of the scattered arguments can cancel
            # the tasks that need them (Dask retries the others): send them again, retry.
            if retries[region.index] >= 3:
                raise
            retries[region.index] += 1
            args[:] = client.scatter(list(task[1]), broadcast=True, hash=False)
            submit(region)
            continue
        future.release()
        yield region, raw
        following = next(pending, None)
        if following is not None:
            submit(following)


def _run_range(function, first, stop, *args):
    """``function(*args, runs)`` for the runs ``[first, stop)`` (a task on a worker)."""
    return function(*args, np.arange(first, stop))


@contextlib.contextmanager
def dask_client(scheduler=None, workers=None):
    """A ``distributed.Client`` for ``scheduler`` (a Client, or a scheduler's address) or
    for a new ``LocalCluster`` of ``workers`` single-threaded worker processes; None if
    neither is given (compute here). Clients and clusters made here are closed on exit.

    Raises
    ------
    gdsim._validate.ParameterError
        For both given, a bad ``workers``, or ``distributed`` missing.
    """
    if scheduler is None and workers is None:
        yield None
        return
    if scheduler is not None and workers is not None:
        raise ParameterError("give scheduler (an existing cluster) or workers (a new local one), not both",
                             "workers")
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ParameterError("a Dask cluster needs the distributed package: pip install 'gdsim[dask]'",
                             "scheduler") from None
    if isinstance(scheduler, Client):
        yield scheduler
        return
    if workers is not None:
        workers = check_int("workers", workers, minimum=1)
        # The dashboard on a free port: 8787 may be another cluster's (and a warning).
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
            with Client(cluster) as client:
                yield client
        return
    if not isinstance(scheduler, str):
        raise ParameterError(f"scheduler must be a distributed.Client or a scheduler's address "
                             f"('tcp://host:8786'), got {scheduler!r}", "scheduler")
    try:
        client = Client(scheduler, timeout="10s")
    except OSError as error:
        raise ParameterError(f"scheduler {scheduler!r}: cannot connect ({error})", "scheduler") from None
    with client:
        yield client
