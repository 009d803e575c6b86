"""gdsim: simulate gradient-descent training fast, with PyTorch's semantics.

Public API
----------
Linear, MLP
    Models on one flat float64 parameter vector (torch's parameter order).
SGD
    ``torch.optim.SGD`` hyper-parameters and update.
train
    One training run, the whole loop compiled with Numba; returns a :class:`TrainResult`,
    whose :class:`TrainState` continues the run (``train(..., state0=result.state)``).
sweep
    A grid of training runs at once (CPU threads or CUDA); returns an ``xarray.Dataset``.
epoch_lrs
    The learning rate of every epoch under an ``lr_schedule``.
datasets
    Seeded datasets of the tutorials.
kernels
    The Numba kernels, importable from users' own ``@njit`` code.
dense
    Whole-batch kernels with matrix products (BLAS), for wide layers.
hvp
    Exact Hessian-vector products and warm-started Lanczos (sharpness) as Numba kernels.
theory
    Where theory says GD converges or diverges: thresholds of GD, heavy ball and
    Nesterov on least squares, SGD's epoch and mean-square stability, MLP sharpness.
plot
    Figures of any sweep result: heat maps, final losses, curves, trajectories, with the
    theory's thresholds drawn where they apply.
ParameterError
    The ``ValueError`` every argument check raises; ``.param`` names the argument.
"""

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gdsim")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

#: The public names and the module each comes from, imported on first use (PEP 562):
#: ``import gdsim`` stays light, so the ``gdsim`` command installs its signal handlers
#: before numpy, numba and xarray load.
_PUBLIC = {"Linear": "models", "MLP": "models", "SGD": "optim", "epoch_lrs": "optim", "train": "training",
           "TrainResult": "training", "TrainState": "training", "sweep": "sweeps", "ParameterError": "_validate"}
_SUBMODULES = ("datasets", "kernels", "dense", "hvp", "theory", "plot")

__all__ = ["Linear", "MLP", "SGD", "train", "TrainResult", "TrainState", "sweep", "epoch_lrs", "datasets", "kernels",
           "dense", "hvp", "theory", "plot", "ParameterError", "__version__"]


def __getattr__(name):
    if name not in _PUBLIC and name not in _SUBMODULES:
        raise AttributeError(f"module 'gdsim' has no attribute {name!r}")
    from ._gc import gc_paused

    with gc_paused():  # the first use imports numpy, numba, ...
        if name in _PUBLIC:
            value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
        else:
            value = importlib.import_module(f".{name}", __name__)
    globals()[name] = value  # once: later lookups are plain attributes
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
