"""Model description: parameter layout (torch's order), init, and argument checks."""

import re

import numpy as np
import pytest

import gdsim


def test_layout_is_torchs():
    model = gdsim.MLP((10, 5, 1))
    assert model.shapes == [(5, 10), (5,), (1, 5), (1,)]
    assert model.n_params == 10 * 5 + 5 + 5 + 1
    theta = np.arange(model.n_params, dtype=float)
    W0, b0, W1, b1 = model.unpack(theta)
    assert W0[1, 0] == 10.0  # row-major [out, in]: row 1 starts after the 10 inputs of row 0
    assert b0[0] == 50.0 and W1[0, 0] == 55.0 and b1[0] == 60.0
    np.testing.assert_array_equal(model.pack([W0, b0, W1, b1]), theta)


def test_init_follows_nn_linear_bounds():
    model = gdsim.MLP((400, 25, 3))
    W0, b0, W1, b1 = model.unpack(model.init(seed=0))
    for arrays, fan_in in (((W0, b0), 400), ((W1, b1), 25)):
        bound = 1 / np.sqrt(fan_in)
        for a in arrays:
            assert np.all(np.abs(a) <= bound)
    # Uniform on [-bound, bound]: the 10000 first-layer weights fill the interval (mean 0, var bound^2/3).
    assert abs(W0.mean()) < 0.05 * 0.05 and W0.std() == pytest.approx(0.05 / np.sqrt(3), rel=0.03)
    assert np.max(np.abs(W0)) > 0.999 * 0.05
    np.testing.assert_array_equal(model.init(seed=0), model.init(seed=0))
    assert not np.array_equal(model.init(seed=0), model.init(seed=1))


def test_linear_is_the_one_layer_mlp():
    lin = gdsim.Linear(3, 2, loss="cross_entropy", reduction="sum")
    mlp = gdsim.MLP((3, 2), loss="cross_entropy", reduction="sum")
    theta = lin.init(0)
    X = np.random.default_rng(0).standard_normal((5, 3))
    y = np.array([0, 1, 1, 0, 1])
    assert lin.loss(theta, X, y) == mlp.loss(theta, X, y)
    assert repr(lin) == "Linear(3, 2, loss='cross_entropy', reduction='sum')"


def test_mse_accepts_1d_targets_for_one_output():
    model = gdsim.Linear(1, 1)
    X, Y = gdsim.datasets.tutorial_line()
    theta = np.array([1.0, 2.0])
    assert model.loss(theta, X, Y[:, 0]) == model.loss(theta, X, Y)


@pytest.mark.parametrize("call, message", [
    (lambda: gdsim.MLP(5), "sizes must be a sequence of layer widths like (10, 5, 1), got 5"),
    (lambda: gdsim.MLP((5,)), "sizes needs at least two widths (n_in, n_out), got (5,)"),
    (lambda: gdsim.MLP((5, 0, 1)), "sizes[1] must be an integer in [1, 2147483647], got 0"),
    (lambda: gdsim.MLP((5, 2.5, 1)), "sizes[1] must be an integer, got 2.5"),
    (lambda: gdsim.MLP((5, 1), activation="rleu"),
     "activation must be one of ['identity', 'relu', 'sigmoid', 'tanh'], got 'rleu' (did you mean 'relu'?)"),
    (lambda: gdsim.MLP((5, 1), loss="mae"), "loss must be one of ['cross_entropy', 'mse'], got 'mae' (did you mean 'mse'?)"),
    (lambda: gdsim.Linear(5, 1, reduction="none"),
     "reduction must be one of ['half_mean', 'half_sum', 'mean', 'sum'], got 'none'"),
    (lambda: gdsim.Linear(5, 1, loss="cross_entropy"),
     "loss='cross_entropy' needs at least 2 outputs (classes), got n_out=1"),
    (lambda: gdsim.Linear(2, 1).pack([np.zeros((1, 2))]), "pack needs 2 arrays (weight and bias per layer), got 1"),
    (lambda: gdsim.Linear(2, 1).pack([np.zeros((2, 1)), np.zeros(1)]),
     "arrays[0] has shape (2, 1), expected (1, 2)"),
    (lambda: gdsim.Linear(2, 1).unpack(np.zeros(4)),
     "theta must have shape (3,) for Linear(2, 1, loss='mse', reduction='mean'), got (4,)"),
    (lambda: gdsim.Linear(2, 1).init(seed=1.5), "seed must be an integer, got 1.5"),
    (lambda: gdsim.Linear(2, 3, loss="cross_entropy").loss(np.zeros(9), np.zeros((2, 2)), np.array([0.0, 1.0])),
     "loss='cross_entropy' needs integer class labels Y, got dtype float64"),
    (lambda: gdsim.Linear(2, 3, loss="cross_entropy").loss(np.zeros(9), np.zeros((2, 2)), np.array([0, 3])),
     "Y labels must lie in [0, 2] (n_out=3 classes), got values from 0 to 3"),
    (lambda: gdsim.Linear(2, 3, loss="cross_entropy").loss(np.zeros(9), np.zeros((2, 2)), np.array([[0], [1]])),
     "Y must have shape (2,) (one class label per row of X), got (2, 1)"),
    (lambda: gdsim.Linear(2, 1).loss(np.zeros(3), np.array([["a", "b"]]), np.zeros(1)),
     "X must be a real array, got dtype <U1"),
    (lambda: gdsim.Linear(2, 1).loss(np.zeros(3), np.zeros((1, 2)), np.array(["a"])),
     "Y must be a real array, got dtype <U1"),
    (lambda: gdsim.Linear(2, 1).grad(np.array(["a"] * 3), np.zeros((1, 2)), np.zeros(1)),
     "theta must be a real array, got dtype <U1"),
])
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        call()
