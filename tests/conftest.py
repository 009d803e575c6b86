import numpy as np
import pytest

import gdsim

ACTIVATIONS = ["identity", "relu", "tanh", "sigmoid"]
#: A study file's [model] and [data] tables for the tutorial's line (Linear(1, 1) on tutorial_line(0)).
LINE_STUDY = """
[model]
type = "linear"
n_in = 1
n_out = 1

[data]
name = "tutorial_line"
seed = 0
"""


def make_data(model, n, seed=0):
    """Random inputs and targets of the right kind for ``model``."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, model.n_in))
    if model.loss_name == "cross_entropy":
        Y = rng.integers(0, model.n_out, size=n)
    else:
        Y = rng.standard_normal((n, model.n_out))
    return X, Y


@pytest.fixture
def tutorial():
    X, Y = gdsim.datasets.tutorial_line(0)
    model = gdsim.Linear(1, 1)
    return model, X, Y, np.array([-10.0, -20.0])


def bits(a):
    """An array's floats as their bytes (so NaN == NaN and -0.0 != 0.0)."""
    a = np.ascontiguousarray(a)
    return a.view(np.uint8) if a.dtype.kind == "f" else a


def assert_same_bits(a, b):
    """Two results hold the same variables, dtypes and bits (and the same coordinates)."""
    assert set(a.data_vars) == set(b.data_vars)
    for name in a.data_vars:
        x, y = a[name].values, b[name].values
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert np.array_equal(bits(x), bits(y)), name
    for name in a.coords:
        assert np.array_equal(a[name].values, b[name].values), name
