"""Memory and disk checks: a request that cannot fit is refused, with an estimate, before
anything is allocated or written."""

import os
import shutil
from pathlib import Path

from ._validate import ParameterError, format_bytes


#: Where Linux says how much memory a new allocation can have (MemAvailable: free pages
#: plus the caches and buffers it can reclaim), and the control groups' limits.
MEMINFO = Path("/proc/meminfo")
PROC_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def available_memory():
    """Bytes this process can allocate now, or None where that is not known.

    ``MemAvailable`` of ``/proc/meminfo`` (free pages are fewer: the kernel hands its caches
    back on demand), capped by the memory limit of the process's control group (cgroup v2
    ``memory.max`` or v1 ``memory.limit_in_bytes``, less what the group uses) where one is
    set, as in a container or a Slurm job. Elsewhere: the free physical pages.
    """
    found = []
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
                break
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
        except (ValueError, OSError, AttributeError):  # not on every platform
            pass
    limit = _cgroup_room()
    if limit is not None:
        found.append(limit)
    return min(found) if found else None


def _cgroup_room():
    """The memory limit of this process's control group less its usage, or None (no limit
    set, or no cgroup file readable)."""
    try:
        lines = PROC_CGROUP.read_text().splitlines()
    except OSError:
        return None
    rooms = []
    for line in lines:
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        relative = path.strip().lstrip("/")
        if hierarchy == "0" and controllers == "":  # cgroup v2: one unified hierarchy
            root, limit_name, usage_name = CGROUP_ROOT, "memory.max", "memory.current"
        elif "memory" in controllers.split(","):  # cgroup v1: the memory controller's own tree
            root, limit_name, usage_name = CGROUP_ROOT / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes"
        else:
            continue
        # The group and its ancestors: a Slurm job's limit sits on the job, its steps below.
        parts = Path(relative).parts
        for folder in (root.joinpath(*parts[:k]) for k in range(len(parts), -1, -1)):
            try:
                limit = (folder / limit_name).read_text().strip()
                usage = int((folder / usage_name).read_text().strip())
            except (OSError, ValueError):
                continue
            # "max" (v2) or a page-rounded 2**63 (v1): no limit.
            if limit != "max" and int(limit) < 2**62:
                rooms.append(max(int(limit) - usage, 0))
    return min(rooms) if rooms else None


def check_memory(nbytes, what, way_out):
    """Refuse an allocation larger than the memory available now (:func:`available_memory`),
    before making it.

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
    available = available_memory()
    if available is not None and nbytes > available:
        raise ParameterError(size_message(what, nbytes, available, "of memory", way_out, "available"))


def size_message(what, needed, available, where, way_out, state="free"):
    """The one wording of every size refusal, an estimate and a way out:
    ``"{what} needs about X {where} but only Y is {state}; {way_out}"``."""
    return (f"{what} needs about {format_bytes(needed)} {where} but only {format_bytes(available)} is {state}; "
            f"{way_out}")


def free_disk(folder):
    """Bytes free on the file system that holds ``folder`` (or its nearest existing parent)."""
    folder = Path(folder)
    existing = next(f for f in (folder, *folder.resolve().parents) if f.exists())
    return shutil.disk_usage(existing).free
