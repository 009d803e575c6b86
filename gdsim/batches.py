"""Batches: the sample order of every epoch and the one rule that slices it into batches.

Every training loop (``gdsim.train``, the CPU and CUDA sweep kernels) and the theory of
SGD walk an epoch the same way::

    for start in range(0, n, batch_size):
        stop = batch_stop(start, n, batch_size, drop_last)
        if stop == start:   # a short last batch dropped (drop_last)
            break
        ... the batch order[start:stop] ...
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from . import scalar
from ._jit import jit_inline
from ._validate import ParameterError, as_array, closest, short_repr

#: :func:`gdsim.scalar.batch_stop` compiled for CPU kernels.
batch_stop = jit_inline(scalar.batch_stop)

#: The sampling schemes ``shuffle`` names, and how each draws its orders (for a sweep's
#: ``random_draws`` attribute): an explicit order array aside, the values ``shuffle`` accepts.
SHUFFLES = {
    False: "none (data order)",
    True: "a permutation per epoch from default_rng(SeedSequence(seed).spawn(1)[0])",
    "replacement": "n indices per epoch drawn with replacement, "
                   "default_rng(SeedSequence(seed).spawn(1)[0]).integers(0, n, size=(epochs, n))",
}


def _accepted(shape):
    """The values ``shuffle`` accepts, for messages (``shape``: see :func:`check_shuffle`)."""
    plain = "False (data order), True (a permutation per epoch)"
    drawn = '"replacement" (n indices per epoch drawn with replacement)'
    if shape is None:
        return f"{plain} or {drawn} in a sweep"
    return f"{plain}, {drawn} or an integer array of shape (epochs, n) = {shape}"


def check_shuffle(shuffle: bool | str | ArrayLike, shape: tuple[int, int] | None = None) -> bool | str | np.ndarray:
    """The sampling scheme ``shuffle`` names (a key of :data:`SHUFFLES`), else ParameterError
    listing the accepted values.

    With ``shape = (epochs, n)`` (``gdsim.train``) an explicit order is accepted too: an
    integer array of that shape, each row a permutation of ``range(n)``, returned as int64.
    """
    if isinstance(shuffle, (bool, np.bool_)):
        return bool(shuffle)
    if isinstance(shuffle, str) and shuffle == "replacement":
        return "replacement"
    if isinstance(shuffle, str) or shape is None:
        hint = closest(shuffle, ["replacement"]) if isinstance(shuffle, str) else ""
        raise ParameterError(f"shuffle must be {_accepted(shape)}, got {short_repr(shuffle)}{hint}", "shuffle")
    order = as_array("shuffle", shuffle)
    if order.dtype.kind not in "iu" or order.shape != shape:
        raise ParameterError(f"shuffle must be {_accepted(shape)}, got a {order.dtype} array of shape {order.shape}",
                             "shuffle")
    epochs, n = shape
    expected = np.arange(n)
    for e in range(epochs):
        if not np.array_equal(np.sort(order[e]), expected):
            raise ParameterError(f"shuffle[{e}] must be a permutation of range({n}) (each sample exactly once)",
                                 "shuffle")
    return np.ascontiguousarray(order, dtype=np.int64)


def batch_orders(n: int, epochs: int, shuffle: bool | str | ArrayLike = False, seed: int = 0) -> np.ndarray:
    """Sample order of every epoch, int64 ``[epochs, n]``.

    Parameters
    ----------
    n, epochs : int
    shuffle : bool, "replacement" or array_like of int, shape (epochs, n)
        False: data order every epoch. True: a fresh permutation per epoch. ``"replacement"``:
        each epoch ``n`` indices drawn independently and uniformly from ``range(n)``
        (repeats allowed), exactly ``rng.integers(0, n, size=(epochs, n), dtype=np.int64)``:
        one call, row ``e`` is epoch ``e``. Both random schemes draw from an independent
        child stream of ``seed``, ``rng = numpy.random.default_rng(SeedSequence(seed).spawn(1)[0])``,
        so that they are not correlated with ``model.init(seed)``. An array: the order
        itself, each row a permutation of ``range(n)``. Every scheme is then sliced into
        batches by :func:`batch_stop`.
    seed : int

    Returns
    -------
    numpy.ndarray, int64 (epochs, n)
    """
    scheme = check_shuffle(shuffle, (epochs, n))
    if isinstance(scheme, np.ndarray):
        return scheme
    if scheme is False:
        return np.tile(np.arange(n, dtype=np.int64), (epochs, 1))
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    if scheme == "replacement":
        return rng.integers(0, n, size=(epochs, n), dtype=np.int64)
    return np.stack([rng.permutation(n) for _ in range(epochs)]).astype(np.int64)


def batch_bounds(n: int, batch_size: int, drop_last: bool) -> list[tuple[int, int]]:
    """``(start, stop)`` of every batch of an epoch of ``n`` samples (:func:`batch_stop`)."""
    bounds = []
    for start in range(0, n, batch_size):
        stop = scalar.batch_stop(start, n, batch_size, drop_last)
        if stop == start:
            break
        bounds.append((start, stop))
    return bounds


def steps_per_epoch(n: int, batch_size: int, drop_last: bool) -> int:
    """Number of updates per epoch: ``ceil(n / batch_size)``, or ``floor`` with ``drop_last``."""
    return n // batch_size if drop_last else -(-n // batch_size)
