"""Where the regions of a result are computed: here, one after another (the target's own
threads inside each), or as tasks on a Dask ``distributed`` cluster.

A task is a :class:`RegionWork` and a region: it computes the region's runs
(``function(*args, runs)``, for a sweep :func:`gdsim.sweeps.run_points` with its
:class:`~gdsim.sweeps.SweepSpec`, which pickles) and, given a store, writes them into it
with their record, so that on a cluster each worker writes its own regions and the client
only schedules. A run's result does not depend on where it ran or with which other runs,
so a task lost with its worker and retried by Dask gives the same bits.
"""

import collections
import contextlib
import os
from concurrent.futures import FIRST_COMPLETED, CancelledError, wait
from dataclasses import dataclass
from itertools import islice

import numpy as np

from .._validate import ParameterError, check_int


@dataclass(frozen=True)
class RegionWork:
    """The work of one region: compute its runs and, with a ``store``, write them there.

    Attributes
    ----------
    function : callable
        ``function(*args, runs)`` -> the raw arrays of those flat run indices (picklable).
    store : gdsim.sweeps.store.ResultStore, optional
        Where the region goes (None: the raw arrays are returned).
    variables : callable, optional
        ``variables(raw, dims, shape)`` -> the variables to store (with ``store``).
    """

    function: object
    store: object = None
    variables: object = None

    def __call__(self, region, *args):
        """The region's raw arrays; with a store, the SHA-256 of what was written instead."""
        raw = self.function(*args, np.arange(region.first, region.stop))
        if self.store is None:
            return raw
        return self.store.write(region, self.variables(raw, self.store.dims, region.shape))

    def unwritten(self):
        """The same work, its regions returned instead of written (for workers that cannot see the store)."""
        return RegionWork(self.function)


def local_results(work, args, regions, threads=1):
    """``(region, work(region, *args))`` for each region, computed here: in order, or with
    ``threads`` > 1 that many regions at a time on a pool of threads (for work that
    releases the GIL and uses one core, such as :func:`gdsim.train`'s runs), each yielded
    as it finishes. A region's result does not depend on the thread that computed it.

    On an error or an interrupt, the regions not started are dropped, and the call returns
    when those running have finished.
    """
    if threads <= 1:
        for region in regions:
            yield region, work(region, *args)
        return
    from .._threads import end_futures, thread_pool

    pool = thread_pool(threads, "gdsim-regions")
    pending = iter(regions)
    running = {}  # future -> region: at most 2 x threads, so that results wait in bounded memory
    try:
        for region in islice(pending, 2 * threads):
            running[pool.submit(work, region, *args)] = region
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                region = running.pop(future)
                following = next(pending, None)
                if following is not None:
                    running[pool.submit(work, following, *args)] = following
                yield region, future.result()
    finally:
        end_futures(running)


def dask_results(client, work, args, regions, in_flight=None):
    """``(region, work(region, *args))`` for each region as its task finishes on
    ``client``'s cluster.

    At most ``in_flight`` tasks (default: twice the cluster's threads) are submitted at a
    time, so that finished results wait for the client in bounded memory; ``args`` are
    sent to the workers once (``scatter``), not with every task. When the workers write the
    regions themselves (``work.store``), a task takes several consecutive regions
    (:func:`task_sizes`), so that the client and its scheduler spend less per region.
    """
    from distributed import as_completed

    threads = cluster_threads(client)
    in_flight = 2 * threads if in_flight is None else in_flight
    sent = client.scatter(list(args), broadcast=True, hash=False)
    regions = list(regions)
    if regions:
        # Warm-up: one run on one worker compiles the kernels into Numba's cache (shared
        # through NUMBA_CACHE_DIR on a cluster), which the other workers then load.
        first = regions[0].first
        client.submit(_run_range, work.function, first, first + 1, *sent, pure=False).result()
    sizes = task_sizes(len(regions), threads if work.store is not None else None)
    pending = (tuple(regions[a:b]) for a, b in sizes)
    batch_of = {}
    retries = collections.Counter()
    finished = as_completed()

    def submit(batch):
        # A region is a few integers: distributed keeps its last 1000 messages, so a task
        # must not carry arrays (an index array in each grew the client by its size per task).
        future = client.submit(_run_regions, work, batch, *sent, pure=False,
                               key=f"gdsim-regions-{batch[0].index}-{batch[-1].index}-{os.urandom(4).hex()}")
        batch_of[future] = batch
        finished.add(future)

    for batch in islice(pending, in_flight):
        submit(batch)
    for future in finished:
        batch = batch_of.pop(future)
        try:
            results = future.result()
        except CancelledError:
            # A worker that died with the only copy of the scattered arguments can cancel
            # the tasks that need them (Dask retries the others): send them again, retry.
            if retries[batch[0].index] >= 3:
                raise
            retries[batch[0].index] += 1
            sent[:] = client.scatter(list(args), broadcast=True, hash=False)
            submit(batch)
            continue
        future.release()
        yield from zip(batch, results)
        following = next(pending, None)
        if following is not None:
            submit(following)


def cluster_threads(client):
    """The worker threads of ``client``'s cluster now (at least 1)."""
    return sum(client.nthreads().values()) or 1


def task_sizes(n_regions, threads=None):
    """``(start, stop)`` of the consecutive regions each task takes, in order.

    With ``threads`` (the cluster's), guided self-scheduling: each task takes a quarter of
    the not yet assigned regions per thread (at least one), so that a sweep of 264 regions
    on 2 threads is 38 tasks, not 264 (the client with a LocalCluster's scheduler spent
    about 7-14 ms of CPU per task, out of the workers' cores), and the last tasks are
    single regions that even out the workers' finishing times. Without: one region each.
    """
    start = 0
    while start < n_regions:
        size = 1 if threads is None else max(1, (n_regions - start) // (4 * threads))
        yield start, start + size
        start += size


def _run_regions(work, regions, *args):
    """``[work(region, *args) for region in regions]``: one task's regions, in order."""
    return [work(region, *args) for region in regions]


def _run_range(function, first, stop, *args):
    """``function(*args, runs)`` for the runs ``[first, stop)`` (the warm-up task)."""
    return function(*args, np.arange(first, stop))


def workers_see(client, path):
    """Whether every worker of ``client``'s cluster sees the file ``path`` made by this
    process (a filesystem shared with the client), so that they can write into the store."""
    path = os.fspath(path)
    return all(client.run(os.path.isfile, path).values())


#: The environment of the worker processes of a ``LocalCluster`` gdsim starts (Dask's
#: ``distributed.nanny.pre-spawn-environ``, updated). Dask's default
#: ``MALLOC_TRIM_THRESHOLD_=65536`` makes glibc hand every freed block of more than 64 KiB
#: back to the system and take fresh pages for the next one: a worker then spent 13-24% more
#: CPU than this process on the same region (planning its runs 4.4x slower), and the Dask
#: path missed equal-core parity by 22-25%. A worker keeps up to 128 MiB of freed memory instead.
WORKER_ENVIRON = {"MALLOC_TRIM_THRESHOLD_": 2**27, "MALLOC_MMAP_THRESHOLD_": 2**25}
#: Dask settings of a ``LocalCluster`` gdsim starts (its scheduler, nannies and workers):
#: no statistical profiler sampling the workers' threads every 10 ms (its use is the
#: dashboard's profile page), and slower housekeeping (event-loop tick 20 ms -> 200 ms,
#: memory monitor 100 ms -> 1 s, system monitor 0.5 s -> 2 s). On this 2-core machine, where
#: the client, its scheduler and two workers share the cores, a 10^5-run MLP sweep on 2
#: workers took 2.45-2.74 s with them (medians of 3, in 4 runs) against 2.69-2.80 s without (2 runs).
CLUSTER_CONFIG = {"distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "200ms",
                  "distributed.worker.memory.monitor-interval": "1s",
                  "distributed.admin.system-monitor.interval": "2s"}


def local_cluster(workers):
    """A new ``distributed.LocalCluster`` of ``workers`` single-threaded worker processes,
    their environment updated with :data:`WORKER_ENVIRON`, Dask's settings with
    :data:`CLUSTER_CONFIG`, the dashboard on a free port (8787 may be another cluster's,
    and a warning). The caller closes it."""
    import dask
    from distributed import LocalCluster

    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **WORKER_ENVIRON}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ, **CLUSTER_CONFIG}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")


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
        from distributed import Client
    except ImportError:
        raise ParameterError("a Dask cluster needs the distributed package: pip install 'gdsim[dask]'",
                             "scheduler") from None
    if isinstance(scheduler, Client):
        yield scheduler
        return
    if workers is not None:
        workers = check_int("workers", workers, minimum=1)
        with local_cluster(workers) as cluster:
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
