import numpy as np
import pytest

import gdsim

ACTIVATIONS = ["identity", "relu", "tanh", "sigmoid"]


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
