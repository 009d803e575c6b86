"""Seeded datasets for the tutorials' experiments.

Every function draws from ``numpy.random.default_rng(seed)`` and returns float64 inputs
``X [n, n_in]`` with targets ``Y [n, n_out]`` (regression) or int64 labels ``[n]``
(classification). Your own data comes from files: :func:`load_table` (CSV, TSV, text)
and :func:`load_arrays` (a pair of ``.npy`` arrays), of :mod:`gdsim.data_files`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._resources import check_memory
from ._validate import check_int, check_real, check_seed
from .data_files import load_arrays, load_table  # noqa: F401  (gdsim.datasets.load_table: a user's data)
from .models import MLP

#: The largest scale (noise, spread, box) a dataset takes: a few standard normals times it
#: must stay finite in float64 (its range ends at 1.8e308).
MAX_SCALE = 1e300


def _check_scale(name, value):
    return check_real(name, value, minimum=0, maximum=MAX_SCALE)


def _check_size(call, n, width):
    """Refuse ``n`` samples of ``width`` floats each (inputs and targets, and the draws
    behind them) that cannot fit in the memory free now; ``call`` names the arguments."""
    check_memory(3 * 8 * n * width, f"{call} ({n} x {width} values)", "ask for fewer samples or features")


def tutorial_line(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The linear-regression tutorial's data: ``Y = -5 X + 0.4 N(0, 1)``.

    ``X = arange(-5, 5, 0.1)`` as a column (100 points), noise drawn with
    ``default_rng(seed).standard_normal((100, 1))``.

    Parameters
    ----------
    seed : int, default 0

    Returns
    -------
    X : numpy.ndarray, float64 (100, 1)
    Y : numpy.ndarray, float64 (100, 1)
    """
    rng = np.random.default_rng(check_seed("seed", seed))
    X = np.arange(-5, 5, 0.1).reshape(-1, 1)
    Y = -5 * X + 0.4 * rng.standard_normal(X.shape)
    return X, Y


def teacher_mlp(n: int = 512, sizes: Sequence[int] = (10, 5, 1), activation: str = "relu", noise: float = 0.1,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Regression data labelled by a random "teacher" MLP, plus Gaussian noise.

    ``X ~ N(0, 1)`` of shape ``(n, sizes[0])``; the teacher's parameters are
    ``MLP(sizes, activation).init`` drawn from the same generator; ``Y = teacher(X) +
    noise * N(0, 1)``.

    Parameters
    ----------
    n : int, default 512
    sizes : sequence of int, default (10, 5, 1)
    activation : str, default "relu"
    noise : float, default 0.1
        Standard deviation of the label noise, ``>= 0``.
    seed : int, default 0

    Returns
    -------
    X : numpy.ndarray, float64 (n, sizes[0])
    Y : numpy.ndarray, float64 (n, sizes[-1])
    """
    n = check_int("n", n, minimum=1)
    noise = _check_scale("noise", noise)
    teacher = MLP(sizes, activation=activation)
    _check_size(f"teacher_mlp(n={n}, sizes={teacher.sizes})", n, teacher.n_in + teacher.n_out + max(teacher.sizes))
    rng = np.random.default_rng(check_seed("seed", seed))
    X = rng.standard_normal((n, teacher.n_in))
    theta = teacher.init(rng)
    Y = teacher.predict(theta, X) + noise * rng.standard_normal((n, teacher.n_out))
    return X, Y


def random_regression(n: int = 74, n_in: int = 900, n_out: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets both pure Gaussian noise, as in the SGD tutorial with the
    900 -> 90 -> 12 MLP (``torch.randn(batch, d_in)``, ``torch.randn(batch, d_out)``).

    Returns
    -------
    X : numpy.ndarray, float64 (n, n_in)
    Y : numpy.ndarray, float64 (n, n_out)
    """
    n = check_int("n", n, minimum=1)
    n_in = check_int("n_in", n_in, minimum=1)
    n_out = check_int("n_out", n_out, minimum=1)
    _check_size(f"random_regression(n={n}, n_in={n_in}, n_out={n_out})", n, n_in + n_out)
    rng = np.random.default_rng(check_seed("seed", seed))
    return rng.standard_normal((n, n_in)), rng.standard_normal((n, n_out))


def blobs(n: int = 300, n_classes: int = 3, n_features: int = 2, spread: float = 1.0, box: float = 5.0,
          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs for classification (like ``sklearn.datasets.make_blobs``).

    Class centres uniform in ``[-box, box]^n_features``; each sample is its centre plus
    ``spread * N(0, 1)``; classes are as balanced as ``n`` allows and rows come in a
    random order.

    Parameters
    ----------
    n : int, default 300
    n_classes : int, default 3
    n_features : int, default 2
    spread : float, default 1.0
    box : float, default 5.0
    seed : int, default 0

    Returns
    -------
    X : numpy.ndarray, float64 (n, n_features)
    labels : numpy.ndarray, int64 (n,), values in ``[0, n_classes)``
    """
    n = check_int("n", n, minimum=1)
    n_classes = check_int("n_classes", n_classes, minimum=2)
    n_features = check_int("n_features", n_features, minimum=1)
    spread = _check_scale("spread", spread)
    box = _check_scale("box", box)
    _check_size(f"blobs(n={n}, n_features={n_features})", n, n_features + 1)
    check_memory(8 * n_classes * n_features, f"blobs(n_classes={n_classes}) ({n_classes} x {n_features} centres)",
                 "ask for fewer classes or features")
    rng = np.random.default_rng(check_seed("seed", seed))
    centres = rng.uniform(-box, box, size=(n_classes, n_features))
    labels = rng.permutation(np.arange(n) % n_classes).astype(np.int64)
    X = centres[labels] + spread * rng.standard_normal((n, n_features))
    return X, labels
