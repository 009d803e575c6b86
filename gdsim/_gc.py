"""Python's cyclic garbage collector paused while gdsim loads what it needs once per process.

Importing numba, pandas and xarray, and loading Numba's compiler registries (which the
first call of any kernel does, compiled or from the cache), create hundreds of thousands
of long-lived objects and next to no garbage. The collector's passes over them as they
pile up took 0.15 s of a new process's first sweep, a sixth of it once the kernels come
from Numba's cache. It is paused for these steps only, and what they made joins the
oldest generation without a pass, as it would after surviving two: the next full
collection sees it like any other object.
"""

import contextlib
import gc


@contextlib.contextmanager
def gc_paused():
    """Pause the cyclic garbage collector for the block if it runs (``gc.disable``), then
    move every tracked object into the oldest generation (``gc.freeze`` then
    ``gc.unfreeze``: no pass over them; not where objects were frozen before, which stay
    so) and run it again. Within an outer pause, or where it was off, leave it alone."""
    running = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if running:
            if not gc.get_freeze_count():
                gc.freeze()
                gc.unfreeze()
            gc.enable()
