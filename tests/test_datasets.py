import re

import numpy as np
import pytest

import gdsim
from gdsim import datasets


def test_tutorial_line_recipe():
    X, Y = datasets.tutorial_line(seed=3)
    assert X.shape == Y.shape == (100, 1) and X.dtype == Y.dtype == np.float64
    np.testing.assert_allclose(X[:, 0], -5 + 0.1 * np.arange(100), atol=1e-12)
    noise = (Y + 5 * X) / 0.4
    np.testing.assert_allclose(noise, np.random.default_rng(3).standard_normal((100, 1)), rtol=1e-12, atol=1e-12)


def test_teacher_mlp_targets_come_from_a_teacher():
    X, Y = datasets.teacher_mlp(n=200, sizes=(4, 6, 2), activation="tanh", noise=0.0, seed=1)
    assert X.shape == (200, 4) and Y.shape == (200, 2)
    # Noise-free targets are a smooth function of X: the same X gives the same Y, and the
    # teacher is reproducible from the seed.
    X2, Y2 = datasets.teacher_mlp(n=200, sizes=(4, 6, 2), activation="tanh", noise=0.0, seed=1)
    np.testing.assert_array_equal(Y, Y2)
    _, Y_noisy = datasets.teacher_mlp(n=200, sizes=(4, 6, 2), activation="tanh", noise=0.5, seed=1)
    assert 0.4 < np.std(Y_noisy - Y) < 0.6


def test_blobs_are_balanced_and_separable():
    X, y = datasets.blobs(n=300, n_classes=3, spread=0.3, seed=0)
    assert X.shape == (300, 2) and y.dtype == np.int64
    assert np.bincount(y).tolist() == [100, 100, 100]
    centres = np.array([X[y == k].mean(axis=0) for k in range(3)])
    nearest = np.argmin(((X[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    assert np.mean(nearest == y) > 0.95


def test_random_regression_shapes():
    X, Y = datasets.random_regression(seed=0)
    assert X.shape == (74, 900) and Y.shape == (74, 12)
    assert abs(X.std() - 1) < 0.02


@pytest.mark.parametrize("call, message", [
    (lambda: datasets.tutorial_line(seed=-1), "seed must be an integer in [0, 9223372036854775807], got -1"),
    (lambda: datasets.blobs(n_classes=1), "n_classes must be an integer in [2, inf], got 1"),
    (lambda: datasets.blobs(spread=-1.0), "spread must be a finite real number >= 0 and <= 1e+300, got -1.0"),
    (lambda: datasets.teacher_mlp(noise=float("nan")), "noise must be a finite real number >= 0 and <= 1e+300, got nan"),
    (lambda: datasets.random_regression(n=0), "n must be an integer in [1, inf], got 0"),
])
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        call()


def test_blobs_train_a_classifier():
    X, y = datasets.blobs(n=120, seed=2)
    model = gdsim.MLP((2, 8, 3), loss="cross_entropy")
    result = gdsim.train(model, X, y, gdsim.SGD(lr=0.1, momentum=0.5), epochs=20, batch_size=10, shuffle=True)
    accuracy = np.mean(np.argmax(model.predict(result.params, X), axis=1) == y)
    assert result.epoch_loss[-1] < 0.3 * result.epoch_loss[0] and accuracy > 0.9
