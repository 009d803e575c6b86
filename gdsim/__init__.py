"""gdsim: simulate gradient-descent training fast, with PyTorch's semantics.

Public API
----------
Linear, MLP
    Models on one flat float64 parameter vector (torch's parameter order).
SGD
    ``torch.optim.SGD`` hyper-parameters and update.
train
    One training run, the whole loop compiled with Numba; returns a :class:`TrainResult`.
sweep
    A grid of training runs at once (CPU threads or CUDA); returns an ``xarray.Dataset``.
epoch_lrs
    The learning rate of every epoch under an ``lr_schedule``.
datasets
    Seeded datasets of the tutorials.
kernels
    The Numba kernels, importable from users' own ``@njit`` code.
theory
    Where theory says GD converges or diverges: thresholds of GD, heavy ball and
    Nesterov on least squares, SGD's epoch and mean-square stability, MLP sharpness.
ParameterError
    The ``ValueError`` every argument check raises; ``.param`` names the argument.
"""

from importlib.metadata import PackageNotFoundError, version

from . import datasets, kernels, theory
from ._validate import ParameterError
from .training import TrainResult, train
from .models import MLP, Linear
from .optim import SGD, epoch_lrs
from .sweeps import sweep

try:
    __version__ = version("gdsim")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = ["Linear", "MLP", "SGD", "train", "TrainResult", "sweep", "epoch_lrs", "datasets", "kernels", "theory",
           "ParameterError", "__version__"]
