"""Compiling kernels in another process while this one compiles others.

Numba compiles one function at a time in a process (its compiler lock), so threads
cannot compile two kernels at once; a second Python process can, into Numba's on-disk
cache, from which this process then loads them (:func:`compile_aside`). gdsim uses it for a
cold first sweep or training, whose classifier (:func:`gdsim.outcomes.compile_classify_aside`)
does not depend on the loop that compiles for seconds meanwhile. :func:`python_argv` is
the command of such a process (also that of each study of ``gdsim figures --jobs``).
"""

import atexit
import os
import subprocess
import sys
import threading

from ._resources import idle_cpus

#: The processes of :func:`compile_aside` not waited for yet (ended at exit).
_ASIDE_PROCESSES: set = set()


class CompileAside:
    """A Python process that compiles kernels into Numba's cache while this one compiles
    others (:func:`compile_aside`); :meth:`wait` before calling them, and they load from
    the cache."""

    #: Seconds :meth:`wait` waits before it ends the process (this one then compiles itself).
    TIMEOUT = 120.0

    def __init__(self, process):
        self._process = process
        self._lock = threading.Lock()
        _ASIDE_PROCESSES.add(process)

    def wait(self):
        """Wait until the process has finished (ending it after :attr:`TIMEOUT` s);
        returns whether it succeeded. Cheap once it has finished; any thread may call it."""
        with self._lock:
            if self._process in _ASIDE_PROCESSES:
                try:
                    self._process.wait(self.TIMEOUT)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
                _ASIDE_PROCESSES.discard(self._process)
        return self._process.returncode == 0

    @classmethod
    def end_all(cls):
        """End the processes still running (at exit: none outlives this process)."""
        for process in list(_ASIDE_PROCESSES):
            process.kill()
            process.wait()
            _ASIDE_PROCESSES.discard(process)


atexit.register(CompileAside.end_all)


def spare_core():
    """Whether a core of this process's CPUs is likely idle besides the one it runs on:
    two CPUs or more, and 1.5 of them idle over 50 ms (:func:`idle_cpus`; this process's
    own included); where that cannot be read, the 1-minute load average below their
    number minus a half (which lags: a machine just done with other work looks busy for a
    minute), and where neither can, two CPUs or more (as on Windows)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = os.cpu_count() or 1
    if cpus < 2:
        return False
    idle = idle_cpus()
    if idle is not None:
        return idle >= 1.5
    try:
        return os.getloadavg()[0] < cpus - 0.5
    except (AttributeError, OSError):  # pragma: no cover - no load average
        return True


def compile_aside(function):
    """Call ``function`` (a module-level function of gdsim, without arguments, that
    compiles kernels) in a new Python process, with this process's environment (Numba's
    cache directory) and module path, so that it compiles them into the cache on another
    core while this process compiles others. Returns a :class:`CompileAside`, or None if
    no process could be started.

    For a first call that must compile kernels that do not depend on each other: Numba
    compiles one function at a time in a process (its compiler lock), so threads cannot.
    The kernels compiled there are the same (same source, options and machine); if the
    process fails or is slow, this process compiles them itself as it would have. None
    either where no core is spare (:func:`spare_core`): the other process would then
    take its time from this one, and it spends more (it imports Numba) than it saves.
    """
    if not spare_core() or getattr(sys, "frozen", False) or not sys.executable:
        return None  # (a frozen application's executable is not a Python to start)
    code = f"import importlib; getattr(importlib.import_module({function.__module__!r}), {function.__name__!r})()"
    try:  # its output is of no use here
        process = subprocess.Popen(python_argv(code), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
    except OSError:
        return None
    return CompileAside(process)


def python_argv(code):
    """The command that runs the Python statements ``code`` (``sys`` imported) in a new
    process of this Python, importing this gdsim and its dependencies from where this
    process does: its module path, without site hooks (``-S``, quicker to start)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the folder holding this gdsim
    return [sys.executable, "-S", "-c", f"import sys; sys.path[:] = {[root, *sys.path]!r}; {code}"]
