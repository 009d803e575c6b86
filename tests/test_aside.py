"""Compiling a kernel in another process (gdsim._aside): the cache it fills, when it starts,
and that it never outlives this process; and the idle and free CPUs that it and train's
matrix path look at (gdsim._resources)."""

import io
import os
import subprocess
import sys

from gdsim import _aside, _jit, _resources


def test_a_process_compiled_aside_fills_the_cache_the_caller_loads(tmp_path):
    # A cold sweep compiles the classifier in another process while it compiles its own
    # kernel; the caller then loads it from Numba's cache. Here in a fresh process on an
    # empty cache, as a cold first sweep: the kernel is not in the cache before, is after,
    # and the caller's call loads it (a cache hit, no compile) and gives classify's numbers.
    code = """if True:
        import numpy as np
        from gdsim import _aside, _jit, outcomes
        signature = _jit.numba_types(outcomes._classify_example())
        assert _jit.is_cached(outcomes._classify_runs, signature) is False
        _aside.spare_core = lambda: True  # whatever else this machine runs now
        outcomes.compile_classify_aside()
        (aside,) = outcomes._ASIDE
        outcome, rate = outcomes.classify([[1.0, 0.5, 0.25, 0.125], [1.0, 4.0, 16.0, 64.0]])
        assert aside._process.returncode == 0
        assert list(outcome) == [outcomes.CONVERGING, outcomes.DIVERGED]
        assert np.allclose(rate, [0.5, 4.0], rtol=1e-12)
        assert sum(outcomes._classify_runs.stats.cache_hits.values()) == 1
        assert not outcomes._classify_runs.stats.cache_misses
        assert _jit.is_cached(outcomes._classify_runs, signature) is True
        print("ok")
    """
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.stdout.strip() == "ok", done.stderr


def test_a_process_compiles_aside_only_with_a_core_to_spare(monkeypatch):
    cpus = len(os.sched_getaffinity(0))
    monkeypatch.setattr(_aside, "idle_cpus", lambda: 1.4)  # another process holds the other core
    assert not _aside.spare_core()
    monkeypatch.setattr(_aside, "idle_cpus", lambda: 1.6)
    assert _aside.spare_core() == (cpus > 1)
    monkeypatch.setattr(_aside, "idle_cpus", lambda: None)  # no /proc/stat: the load average
    monkeypatch.setattr(os, "getloadavg", lambda: (cpus - 0.4, 0.0, 0.0))
    assert not _aside.spare_core()
    assert _aside.compile_aside(_jit.num_threads) is None  # not started: its call would never come
    monkeypatch.setattr(os, "getloadavg", lambda: (cpus - 0.6, 0.0, 0.0))
    assert _aside.spare_core() == (cpus > 1)
    monkeypatch.setattr(_aside, "spare_core", lambda: True)
    monkeypatch.setattr(sys, "frozen", True, raising=False)  # an application bundling Python
    assert _aside.compile_aside(_jit.num_threads) is None


def test_a_process_compiling_aside_ends_with_this_one():
    # None outlives the process that started it (at exit: CompileAside.end_all), and
    # wait() ends one that takes too long.
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    aside = _aside.CompileAside(process)
    _aside.CompileAside.end_all()
    assert process.returncode is not None and process not in _aside._ASIDE_PROCESSES
    assert not aside.wait()  # ended: not a success, and no wait
    slow = _aside.CompileAside(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
    slow.TIMEOUT = 0.1
    assert not slow.wait() and slow._process.returncode is not None


def test_idle_and_free_cpus_see_a_busy_process():
    # idle_cpus counts this process's own CPU (it sleeps while it samples); free_cpus counts
    # the running threads of the machine now, this one included.
    cpus = len(os.sched_getaffinity(0))
    idle = _resources.idle_cpus(0.2)
    if idle is None:  # not Linux
        return
    assert 0.0 <= idle <= cpus + 1e-9
    assert 0 <= _resources.free_cpus() <= cpus
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.2)  # started and spinning
        assert _resources.idle_cpus(0.3) <= cpus - 0.7  # one CPU is not idle
        assert _resources.free_cpus() <= cpus - 1
    finally:
        busy.kill()
        busy.wait()


def test_free_cpus_leaves_out_this_process_own_running_threads(monkeypatch):
    # The machine runs 3 threads now, 2 of them this process's (the caller, and a parallel
    # loop's thread still spinning after its loop): 1 other, so 4 - 1 CPUs are free.
    files = {"/proc/stat": "cpu  1 2 3 4\nprocs_running 3\nprocs_blocked 0\n",
             "/proc/self/task/10/stat": "10 (python) R 1 2 3", "/proc/self/task/11/stat": "11 (numba (omp)) R 1 2",
             "/proc/self/task/12/stat": "12 (python) S 1 2 3"}
    monkeypatch.setattr(_resources, "open", lambda path: io.StringIO(files[path]), raising=False)
    monkeypatch.setattr(os, "listdir", lambda path: ["10", "11", "12"] if path == "/proc/self/task" else [])
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert _resources.free_cpus() == 3
    files["/proc/stat"] = "procs_running 9\n"  # busier than there are CPUs: none free
    assert _resources.free_cpus() == 0
    files["/proc/stat"] = "cpu  1 2 3 4\n"  # cannot tell
    assert _resources.free_cpus() is None
