"""Sweeps: a grid of SGD trainings run at once, returned as a labelled ``xarray.Dataset``.

Rooms, in the order data flows through them:

* :mod:`~gdsim.sweeps.spec`: :func:`check_sweep` -> :class:`SweepSpec` (every checked setting);
* :mod:`~gdsim.sweeps.plan`: a spec and run indices -> flat arrays (:class:`~gdsim.sweeps.plan.Plan`);
* :mod:`~gdsim.sweeps.targets`: the registry of targets and their kernels (CPU, CUDA);
* :mod:`~gdsim.sweeps.dataset`: the result schema and the labelled Dataset;
* :mod:`~gdsim.sweeps.run`: :func:`sweep` and :func:`run_points`, which tie them together.
"""

from .dataset import grid_dataset
from .run import run_points, sweep
from .spec import AXES, DTYPES, SweepSpec, check_sweep
from .targets import TARGETS

__all__ = ["sweep", "check_sweep", "SweepSpec", "run_points", "grid_dataset", "AXES", "DTYPES", "TARGETS"]
