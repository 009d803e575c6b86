"""The one place for Numba compilation options.

Every kernel in gdsim is compiled through :func:`jit`, so the fastmath policy, the
on-disk cache and the floating-point error model are decided here and nowhere else
(``tests/test_jit_policy.py`` checks that no other module passes its own options).
"""

import numba

#: LLVM fast-math flags allowed in gdsim kernels. Only ``contract`` (fused multiply-add):
#: it is what torch's CPU kernels do for ``add(x, alpha=...)``. The other flags are left
#: out on purpose: ``nnan``/``ninf`` (and so ``fastmath=True``) delete the NaN/inf checks
#: that divergence detection relies on; ``reassoc``, ``arcp`` and ``afn`` change results
#: against the PyTorch reference and would let the serial and parallel builds of one
#: loop round differently.
FASTMATH = frozenset({"contract"})

#: Options shared by every CPU kernel. ``error_model="numpy"``: a float division by zero
#: gives inf/NaN (recorded as divergence) instead of raising ZeroDivisionError.
JIT_OPTIONS = {
    "cache": True,
    "nogil": True,
    "error_model": "numpy",
    "fastmath": set(FASTMATH),
}


def jit(function):
    """Compile ``function`` for the CPU with gdsim's options (see :data:`JIT_OPTIONS`)."""
    return numba.njit(**JIT_OPTIONS)(function)
