"""Memory and disk checks: a request that cannot fit is refused, with an estimate, before
anything is allocated or written; and how many CPUs are free now."""

import contextlib
import contextvars
import os
import shutil
import time
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
        for line in _read(MEMINFO).splitlines():
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
        lines = _read(PROC_CGROUP).splitlines()
    except OSError:
        return None
    rooms = []
    for line in lines:
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        relative = path.strip().lstrip("/")
        if hierarchy == "0" and controllers == "":  # cgroup v2: one unified hierarchy
            root, limit_name, usage_name = os.fspath(CGROUP_ROOT), "memory.max", "memory.current"
        elif "memory" in controllers.split(","):  # cgroup v1: the memory controller's own tree
            root, limit_name, usage_name = (os.path.join(CGROUP_ROOT, "memory"), "memory.limit_in_bytes",
                                            "memory.usage_in_bytes")
        else:
            continue
        # The group and its ancestors: a Slurm job's limit sits on the job, its steps below
        # (plain strings, not pathlib: this runs at every memory check).
        parts = [part for part in relative.split("/") if part]
        for folder in (os.path.join(root, *parts[:k]) for k in range(len(parts), -1, -1)):
            try:
                limit = _read(os.path.join(folder, limit_name)).strip()
                usage = int(_read(os.path.join(folder, usage_name)).strip())
            except (OSError, ValueError):
                continue
            # "max" (v2) or a page-rounded 2**63 (v1): no limit.
            if limit != "max" and int(limit) < 2**62:
                rooms.append(max(int(limit) - usage, 0))
    return min(rooms) if rooms else None


def _read(path):
    """The text of the small file ``path`` (os.read: a third of what open() costs)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("ascii", "replace")


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
    available = _available_for_check()
    if available is not None and nbytes > available:
        raise ParameterError(size_message(what, nbytes, available, "of memory", way_out, "available"))


#: The reading shared by the checks inside :func:`one_memory_reading` (a list, empty until
#: the first check reads it; None outside): per thread and context.
_READING = contextvars.ContextVar("gdsim_memory_reading", default=None)


@contextlib.contextmanager
def one_memory_reading():
    """Within this block, the memory checks (:func:`check_memory`) of this thread read
    :func:`available_memory` once, at the first check, and share that reading: one call
    checks its allocations against one reading (reading the files costs ~0.3 ms a time).
    Nested blocks share the outer block's reading."""
    if _READING.get() is not None:
        yield
        return
    token = _READING.set([])
    try:
        yield
    finally:
        _READING.reset(token)


def _available_for_check():
    """:func:`available_memory`, read once per :func:`one_memory_reading` block."""
    reading = _READING.get()
    if reading is None:
        return available_memory()
    if not reading:
        reading.append(available_memory())
    return reading[0]


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


def idle_cpus(window=0.05):
    """How many of this process's CPUs were idle over the next ``window`` seconds (this
    process sleeps meanwhile, so its own counts), from Linux's ``/proc/stat``; None where
    it cannot be read."""
    try:
        mine = {f"cpu{i}" for i in os.sched_getaffinity(0)}

        def idle_and_total():
            idle = total = 0
            with open("/proc/stat") as stat:
                for line in stat:
                    name, *ticks = line.split()
                    if name in mine:  # user nice system idle iowait irq softirq steal (guest: in user)
                        values = [int(t) for t in ticks[:8]]
                        idle += values[3] + values[4]
                        total += sum(values)
            return idle, total

        idle0, total0 = idle_and_total()
        time.sleep(window)
        idle1, total1 = idle_and_total()
    except (AttributeError, OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return len(mine) * (idle1 - idle0) / (total1 - total0)


def free_cpus():
    """This process's CPUs minus the threads of other processes running or ready to run
    now, at least 0; None where it cannot be read. An instant's reading from Linux's
    ``/proc`` (the machine's running threads, less this process's own: its parallel
    loops' threads may still be spinning after the last loop), without a wait."""
    try:
        cpus = len(os.sched_getaffinity(0))
        with open("/proc/stat") as stat:
            running = next(int(line.split()[1]) for line in stat if line.startswith("procs_running"))
        own = 0
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/stat") as status:
                    own += status.read().rsplit(")", 1)[1].split()[0] == "R"
            except OSError:  # the thread ended meanwhile
                continue
    except (AttributeError, OSError, ValueError, IndexError, StopIteration):
        return None
    return max(0, cpus - max(0, running - own))
