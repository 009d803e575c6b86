"""The registry of sweep targets: a name -> where and how a sweep's runs are computed.

:func:`check_target` is the one check of a ``target`` argument (``gdsim.sweep``, study
files, ``SweepSpec.with_target``, the CLI's ``--target`` choices); :meth:`Target.run`
binds the name to its module once, as PyLops binds ``engine=`` and xarray its backends.

Targets:

* ``cpu`` and ``parallel``: :mod:`gdsim.sweeps.targets.cpu` on one thread or on all of
  Numba's threads (bitwise the same results: the same compiled code);
* ``cuda``: :mod:`gdsim.sweeps.targets.cuda`, one GPU thread per run (numba-cuda and a
  GPU, or Numba's simulator).

A target module provides ``run_plan(plan, progress=None, **options)`` returning the raw
arrays of :func:`gdsim.sweeps.dataset.empty_raw` for the plan's runs (and, if it can,
takes ``meanwhile``: :meth:`Target.run`).
"""

import dataclasses
import functools
import importlib

from ... import _jit
from ..._validate import check_choice


@dataclasses.dataclass(frozen=True)
class Target:
    """A registered target.

    Attributes
    ----------
    name : str
    module : str
        The module whose ``run_plan`` computes the runs (imported on first use).
    family : str
        Targets of one family give bitwise the same results (``"cpu"``, ``"cuda"``).
    options : tuple of (str, object)
        Keyword arguments of the module's ``run_plan``.
    needs_cuda : bool
        Whether the target needs numba-cuda and a GPU (or the simulator).
    description : str
    meanwhile : bool
        Whether the module's ``run_plan`` takes ``meanwhile`` (see :meth:`run`).
    """

    name: str
    module: str
    family: str
    options: tuple = ()
    needs_cuda: bool = False
    description: str = ""
    meanwhile: bool = False

    def check_available(self):
        """Raise RuntimeError (naming the fix) if this target cannot run on this machine."""
        problem = _unavailable(self.name)
        if problem:
            raise RuntimeError(problem)

    def run(self, plan, progress=None, meanwhile=None):
        """Compute the runs of ``plan`` (a :class:`gdsim.sweeps.plan.Plan`) here.

        ``meanwhile``, if given, is called once on this thread as ``meanwhile(raw)``
        while the runs are computed, by the targets that can (:attr:`meanwhile`: their
        raw arrays are allocated first and filled in place; not with tracks): for work
        that only keeps references to ``raw``'s arrays (``raw`` is complete when this
        returns, and is the dict returned).

        Returns
        -------
        dict
            The raw arrays of :func:`gdsim.sweeps.dataset.empty_raw`, one row per run.
        """
        module = importlib.import_module(self.module)
        options = dict(self.options)
        if self.meanwhile and meanwhile is not None:
            options["meanwhile"] = meanwhile
        return module.run_plan(plan, progress=progress, **options)


#: The targets, by name.
TARGETS = {t.name: t for t in (
    Target("cpu", "gdsim.sweeps.targets.cpu", "cpu", (("parallel", False),),
           description="CPU, one thread (bitwise the same as parallel)", meanwhile=True),
    Target("parallel", "gdsim.sweeps.targets.cpu", "cpu", (("parallel", True),),
           description="CPU, blocks of runs on all of Numba's threads (NUMBA_NUM_THREADS)", meanwhile=True),
    Target("cuda", "gdsim.sweeps.targets.cuda", "cuda", needs_cuda=True,
           description="NVIDIA GPU through numba-cuda, one thread per run"),
)}


def check_target(target):
    """``target`` if it names a registered target, else ParameterError listing them.

    Raises
    ------
    gdsim._validate.ParameterError
        ``param`` "target"; the message lists :data:`TARGETS` and the closest name.
    """
    return check_choice("target", target, TARGETS)


def get_target(target):
    """The :class:`Target` named ``target`` (checked with :func:`check_target`)."""
    return TARGETS[check_target(target)]


@functools.cache
def _unavailable(name):
    """Why target ``name`` cannot run here (None if it can), found once per process."""
    if not TARGETS[name].needs_cuda:
        return None
    try:
        _jit.cuda()  # a function of _jit: the name cuda here is the submodule of this package
    except RuntimeError as error:
        return str(error)
    return None
