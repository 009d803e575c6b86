"""Batches: the sample order of every epoch and the one rule that slices it into batches.

Every training loop (``gdsim.train``, the CPU and CUDA sweep kernels) and the theory of
SGD walk an epoch the same way::

    for start in range(0, n, batch_size):
        stop = batch_stop(start, n, batch_size, drop_last)
        if stop == start:   # a short last batch dropped (drop_last)
            break
        ... the batch order[start:stop] ...
"""

import numpy as np

from . import scalar
from ._jit import jit_inline
from ._validate import ParameterError, as_array

#: :func:`gdsim.scalar.batch_stop` compiled for CPU kernels.
batch_stop = jit_inline(scalar.batch_stop)


def batch_orders(n, epochs, shuffle=False, seed=0):
    """Sample order of every epoch, int64 ``[epochs, n]``.

    Parameters
    ----------
    n, epochs : int
    shuffle : bool or array_like of int, shape (epochs, n)
        False: data order every epoch. True: a fresh permutation per epoch, drawn from an
        independent child stream of ``seed`` (``SeedSequence(seed).spawn(1)[0]``), so that
        it is not correlated with ``model.init(seed)``. An array: the order itself, each
        row a permutation of ``range(n)``.
    seed : int

    Returns
    -------
    numpy.ndarray, int64 (epochs, n)
    """
    if isinstance(shuffle, (bool, np.bool_)):
        if not shuffle:
            return np.tile(np.arange(n, dtype=np.int64), (epochs, 1))
        rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
        return np.stack([rng.permutation(n) for _ in range(epochs)]).astype(np.int64)
    order = as_array("shuffle", shuffle)
    if order.dtype.kind not in "iu" or order.shape != (epochs, n):
        raise ParameterError(f"shuffle must be True, False or an integer array of shape (epochs, n) = "
                             f"({epochs}, {n}), got a {order.dtype} array of shape {order.shape}", "shuffle")
    expected = np.arange(n)
    for e in range(epochs):
        if not np.array_equal(np.sort(order[e]), expected):
            raise ParameterError(f"shuffle[{e}] must be a permutation of range({n}) (each sample exactly once)",
                                 "shuffle")
    return np.ascontiguousarray(order, dtype=np.int64)


def batch_bounds(n, batch_size, drop_last):
    """``(start, stop)`` of every batch of an epoch of ``n`` samples (:func:`batch_stop`)."""
    bounds = []
    for start in range(0, n, batch_size):
        stop = scalar.batch_stop(start, n, batch_size, drop_last)
        if stop == start:
            break
        bounds.append((start, stop))
    return bounds


def steps_per_epoch(n, batch_size, drop_last):
    """Number of updates per epoch: ``ceil(n / batch_size)``, or ``floor`` with ``drop_last``."""
    return n // batch_size if drop_last else -(-n // batch_size)
