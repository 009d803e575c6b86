"""Threads outside Numba's: gdsim's pools of Python threads for ``nogil`` kernels, and
BLAS's thread count for the blocks that multiply matrices.

(Numba's own threads, for ``prange`` loops, are set in :mod:`gdsim._jit`.)
"""

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

_THREAD_POOLS: dict = {}
# A forked child has none of its parent's threads: it starts pools of its own (a parent's
# pool would take its tasks and never run them).
os.register_at_fork(after_in_child=_THREAD_POOLS.clear)


def thread_pool(n_threads, name):
    """A pool of ``n_threads`` threads named ``name``, kept for the process (starting
    threads for every call costs about 1 ms), for compiled kernels that release the GIL
    (``nogil``). One pool per use: a task of one pool may wait on another pool's tasks."""
    key = (n_threads, name)
    if key not in _THREAD_POOLS:
        _THREAD_POOLS[key] = ThreadPoolExecutor(n_threads, thread_name_prefix=name)
    return _THREAD_POOLS[key]


def end_futures(futures):
    """Cancel the tasks of ``futures`` not started and wait for the others to end: in the
    ``finally`` of a call that submitted them, so that on an error or an interrupt none of
    its work goes on after it returns (a run still inside :func:`one_blas_thread` would
    then restore BLAS's thread count under a later caller's setting)."""
    for future in futures:
        future.cancel()
    wait(futures)


_ONE_BLAS_THREAD = {"lock": threading.Lock(), "users": 0, "limits": None}


@contextlib.contextmanager
def one_blas_thread(needed=True):
    """Run the block with BLAS (NumPy's and SciPy's OpenBLAS; Numba's ``np.dot`` calls
    SciPy's) on one thread, for every thread of the process, and restore its setting after
    the last block that asked for it ends (threads may be inside at once). With ``needed``
    false (a block that multiplies no matrices), leave BLAS alone.

    Why: OpenBLAS splits a matrix product differently with its thread count and rounds the
    sums differently (:func:`gdsim.train`'s matrix path gave other last bits with 1 and 2
    threads), so a result would depend on the machine's cores; and on the products of a
    small network (W4's 74 x 900 x 90) a second thread gained little on a quiet 2-core
    machine and lost many times over when another process held the cores (its threads wait
    for each other by spinning). The matrix path cuts its products itself, by their shape
    (:mod:`gdsim.products`)."""
    if not needed:
        yield
        return
    # threadpoolctl limits the libraries loaded when the limit is set: SciPy's BLAS (which
    # Numba's np.dot calls, and first imports at the first product) is loaded before.
    import scipy.linalg.cython_blas  # noqa: F401
    from threadpoolctl import threadpool_limits

    state = _ONE_BLAS_THREAD
    with state["lock"]:
        if state["users"] == 0:
            state["limits"] = threadpool_limits(limits=1, user_api="blas")
        state["users"] += 1
    try:
        yield
    finally:
        with state["lock"]:
            state["users"] -= 1
            if state["users"] == 0:
                state["limits"].restore_original_limits()
                state["limits"] = None
