"""Several studies at once, in job slots: Python processes of their own (``gdsim figures
--jobs``).

Numba compiles one kernel at a time in a process (its compiler lock), and much of a
gallery study's time is compiling or one thread's work (theory, drawing), so that one
study after another leaves a core idle. A :class:`JobSlot` runs ``gdsim run STUDY -q``
commands one after another (:func:`run_in_processes` hands them out), writing each study's
store and figure itself; the results are the same bit for bit (the kernels do not depend
on the process). The studies of one kind (:func:`kernel_family`) go to one slot, which
compiles their kernels once.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time

from .._aside import python_argv
from .._io import load_dataset


def default_jobs():
    """Studies to run at once by default: one per CPU this process may use (POSIX; 1
    elsewhere, where a child cannot be stopped as cleanly, and in a frozen application,
    whose executable is not a Python to start)."""
    if os.name != "posix" or getattr(sys, "frozen", False) or not sys.executable:  # pragma: no cover
        return 1
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


def study_argv(study, results, figures, override, restart, chunk_runs):
    """``gdsim run STUDY -q`` with the options that apply to ``study``: the command a job
    slot runs for it."""
    argv = ["run", str(study.path), "--results", str(results), "--figures", str(figures), "-q"]
    argv += ["--target", override] if override else []
    argv += ["--restart"] if restart else []
    argv += ["--chunk-runs", str(chunk_runs)] if chunk_runs is not None else []
    return argv


def kernel_family(study):
    """What decides the kernels a study compiles: its runner and its model's class (a
    sweep of the line model and one of an MLP compile different loops)."""
    return study.runner, type(study.model).__name__


def next_study(families, running_families, previous):
    """The plan to start next from ``families`` (``{family: [plans left]}``): the next of
    ``previous``'s family if any is left, so that a job slot runs the studies of one family
    one after another, each loading the kernels the one before compiled; else the first of
    the family with the most studies left that no running study belongs to (or of the
    family with the most left): two processes compiling the same kernels at once would
    each take the time."""
    if families.get(previous):
        family = previous
    else:
        free = [f for f in families if families[f] and f not in running_families]
        family = max(free or [f for f in families if families[f]], key=lambda f: len(families[f]))
    return family, families[family].pop(0)


#: The thread-count variables of BLAS and OpenMP libraries that :class:`JobSlot` sets
#: (where the environment does not) to the slot's share of the CPUs, as joblib's workers do.
BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: OpenMP's threads (Numba's parallel loops: the halves of ``train``'s matrix products)
#: sleep when they wait, instead of spinning, in a slot (where the environment does not
#: set it): slots share the CPUs, and a spinning thread takes a CPU another slot needs
#: (W4 took 4x the time of one thread beside a busy process, 1.1x waiting passively).
SLOT_OPENMP = {"OMP_WAIT_POLICY": "PASSIVE"}


class JobSlot:
    """A Python process that runs study commands one after another
    (:func:`gdsim.cli.serve_jobs`): kernels compiled or loaded for one study stay loaded
    for the next, and Python, Numba and gdsim are imported once. It runs in a session of
    its own, so that a terminal's Ctrl-C reaches it once, from :meth:`interrupt`.

    ``blas_threads``: the threads of its BLAS (:data:`BLAS_THREADS`), so that the slots'
    matrix products do not take more threads than there are CPUs (their waiting threads
    spin); gdsim's own kernels keep Numba's threads, which wait without spinning. The
    datasets do not depend on it (``train``'s matrix path runs on one BLAS thread and cuts
    its products itself: :mod:`gdsim.products`)."""

    def __init__(self, blas_threads):
        self.log = tempfile.TemporaryFile()  # its stderr: the message of a command that fails
        env = {name: str(blas_threads) for name in BLAS_THREADS} | SLOT_OPENMP | dict(os.environ)  # the user's first
        self.process = subprocess.Popen(python_argv("from gdsim.cli import serve_jobs; serve_jobs()"),
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                        start_new_session=True, text=True, env=env)
        self.family = None  # of the study it runs or ran last
        self.plan = None  # the study it runs
        self.start = 0.0

    def run(self, plan, argv):
        """Start the command ``argv`` (a list) for ``plan``."""
        self.plan, self.start = plan, time.perf_counter()
        self.process.stdin.write(json.dumps(argv) + "\n")
        self.process.stdin.flush()

    def result(self):
        """The exit status of the command it ran (after :meth:`fileno` was readable): 0
        done; else what it said last on stderr, without its command's name."""
        line = self.process.stdout.readline()
        if line.strip() == "0":
            return 0
        self.log.seek(0)
        said = [text.strip() for text in self.log.read().decode(errors="replace").splitlines() if text.strip()]
        text = said[-1] if said else f"its process ended (status {self.process.poll()})"
        return text.split(": ", 1)[1] if text.startswith("gdsim run: ") else text

    def fileno(self):
        """Readable when the command ends (for :mod:`selectors`)."""
        return self.process.stdout.fileno()

    def interrupt(self):
        """Stop the command as Ctrl-C does (it keeps its finished regions)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)

    def close(self):
        """End the process once its command has ended (or stopped) and wait for it."""
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        self.process.wait()
        self.process.stdout.close()
        self.log.close()


def run_in_processes(plans, results, figures, restart, chunk_runs, jobs, lines):
    """Run the planned studies (``[(prefix, study, zarr, override, state)]``, see
    :func:`gdsim.studies.gallery.run_studies`), ``jobs`` at a time, each by a
    :class:`JobSlot`, which runs it and draws its figure; returns ``{prefix: dataset}`` of
    the studies as their stores now hold them. The studies of one :func:`kernel_family`
    run one after another in one slot (:func:`next_study`).

    ``lines = (started, finished, interrupted)``: ``started(plan)`` as a study starts,
    ``finished(plan, dataset, seconds)`` as one ends, ``interrupted(plan)`` for each one
    stopped early. A study that fails stops the others (they keep what they saved) and
    raises RuntimeError with its message; Ctrl-C (or SIGTERM, raised as KeyboardInterrupt
    here) is passed on to the slots as Ctrl-C, each keeps its finished regions, and the
    interruption is raised again once they have stopped.
    """
    started, finished, interrupted = lines
    families = {}
    for plan in plans:
        families.setdefault(kernel_family(plan[1]), []).append(plan)
    slots = [JobSlot(max(1, default_jobs() // jobs)) for _ in range(jobs)]
    done = {}
    with selectors.DefaultSelector() as selector:
        try:
            while True:
                for slot in slots:
                    if slot.plan is None and any(families.values()):
                        busy = {other.family for other in slots if other.plan is not None}
                        slot.family, plan = next_study(families, busy, slot.family)
                        started(plan)
                        slot.run(plan, study_argv(plan[1], results, figures, plan[3], restart, chunk_runs))
                        selector.register(slot, selectors.EVENT_READ)
                if all(slot.plan is None for slot in slots):
                    break
                for key, _ in selector.select():
                    slot = key.fileobj
                    selector.unregister(slot)
                    status, plan = slot.result(), slot.plan
                    slot.plan = None
                    if status != 0:
                        raise RuntimeError(f"{plan[0]} failed: {status}")
                    done[plan[0]] = load_dataset(plan[2])
                    finished(plan, done[plan[0]], time.perf_counter() - slot.start)
        except BaseException:
            for slot in slots:
                if slot.plan is not None:
                    slot.interrupt()
            for slot in slots:
                slot.close()
                if slot.plan is not None and slot.process.returncode != 0:  # not one that had just finished
                    interrupted(slot.plan)
            raise
    for slot in slots:
        slot.close()
    return done
