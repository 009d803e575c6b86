"""Python's cyclic garbage collector paused while gdsim loads what it needs once per process.

Importing numba, pandas and xarray, and loading Numba's compiler registries (which the
first call of any kernel does, compiled or from the cache), create hundreds of thousands
of long-lived objects and next to no garbage. The collector's full passes over them as
they pile up took 0.1-0.15 s of a new process's first sweep, a fifth of it once the
kernels come from Numba's cache. It is paused for these steps only; whatever garbage they
leave is collected when it runs next.
"""

import contextlib
import gc


@contextlib.contextmanager
def gc_paused():
    """Pause the cyclic garbage collector for the block if it runs (``gc.disable``), and
    run it again after; within an outer pause (or where it was off), leave it off."""
    running = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if running:
            gc.enable()
