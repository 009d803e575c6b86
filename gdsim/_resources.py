"""Memory and disk checks: a request that cannot fit is refused, with an estimate, before
anything is allocated or written."""

import os
import shutil
from pathlib import Path

from ._validate import ParameterError, format_bytes


def check_memory(nbytes, what, way_out):
    """Refuse an allocation larger than the memory free now, before making it.

    Parameters
    ----------
    nbytes : int
        What the work would allocate at most.
    what : str
        The work, for the message ("a sweep of 512 runs").
    way_out : str
        What the user can do instead.

    Raises
    ------
    ParameterError
        :func:`size_message` (``param`` None).
    """
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on every platform
        return
    if nbytes > available:
        raise ParameterError(size_message(what, nbytes, available, "of memory", way_out))


def size_message(what, needed, available, where, way_out):
    """The one wording of every size refusal, an estimate and a way out:
    ``"{what} needs about X {where} but only Y is free; {way_out}"``."""
    return (f"{what} needs about {format_bytes(needed)} {where} but only {format_bytes(available)} is free; "
            f"{way_out}")


def free_disk(folder):
    """Bytes free on the file system that holds ``folder`` (or its nearest existing parent)."""
    folder = Path(folder)
    existing = next(f for f in (folder, *folder.resolve().parents) if f.exists())
    return shutil.disk_usage(existing).free
