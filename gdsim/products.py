"""Matrix products cut into parts by their shape alone, the parts run on Numba's threads.

On a small network one product of :func:`gdsim.train`'s matrix path
(:mod:`gdsim.dense`) takes a fraction of a millisecond: too short for BLAS's own threads
to pay, and BLAS splits a product by its thread count, which changes the last bits
(:func:`gdsim._threads.one_blas_thread`). Here a product of at least :data:`SPLIT_FLOPS` is
cut in two by rows of a layer's weights (or deltas), each half one call of single-threaded
BLAS; the halves run in a ``prange``: on two threads where Numba has them, one after the other
where it has one. The same calls on the same operands, so the same bits for any number
of threads.

A layer's rows go to the same half in the forward product, the weight gradient and the
update (:func:`gdsim.optim.sgd_update_rows`), so each thread finds its half of the
weights in its own cache. (The product that carries deltas down a layer is not cut: on
the networks this serves it is the small one, and a parallel function of its own would
add a second to the first compile.)
"""

import numpy as np

from ._jit import jit_inline, jit_parallel, prange

#: A product of at least this many flops (about 35 microseconds on one core) is computed
#: in two parts.
SPLIT_FLOPS = 1 << 21


@jit_inline
def product_parts(m, n, k):
    """In how many parts a product ``[m, k] @ [k, n]`` is computed, 1 or 2: from its
    shape alone, never from the threads, so that its rounding is the same on any machine
    (symmetric in ``n`` and ``k``: a layer's forward product and weight gradient agree)."""
    return 2 if m >= 2 and 2.0 * m * n * k >= SPLIT_FLOPS else 1


@jit_inline
def part_rows(m, part, parts):
    """The rows ``[lo, hi)`` of part ``part`` of ``parts`` of ``m`` rows (also the rows of a
    layer that :func:`gdsim.optim.sgd_update_rows` updates in that part)."""
    return m * part // parts, m * (part + 1) // parts


@jit_inline
def _rows_part(a, b, transposed, out, part, parts):
    lo, hi = part_rows(a.shape[0], part, parts)
    if transposed:
        np.dot(a[lo:hi], b.T, out[lo:hi])
    else:
        np.dot(a[lo:hi], b, out[lo:hi])


@jit_parallel
def rows_dot(a, b, transposed, out, threads):
    """``out = a @ b`` (``a @ b.T`` if ``transposed``: one compiled function for both, each
    parallel function costing most of a second to compile), by parts of the rows of ``a``
    and ``out`` (:func:`product_parts`), on up to ``threads`` of Numba's threads
    (:func:`gdsim._jit.loop_threads`; 1: none started)."""
    parts = product_parts(a.shape[0], out.shape[1], a.shape[1])
    if parts == 1 or threads == 1:  # no parallel loop to start (each wakes Numba's threads)
        for part in range(parts):
            _rows_part(a, b, transposed, out, part, parts)
    else:
        for part in prange(parts):
            _rows_part(a, b, transposed, out, part, parts)
