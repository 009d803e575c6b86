"""Gradients against central finite differences and against plain-NumPy back-propagation."""

import itertools

import numba
import numpy as np
import pytest

import gdsim
from conftest import ACTIVATIONS, make_data
import naive

LOSSES = ["mse", "cross_entropy"]
REDUCTIONS = ["mean", "sum"]
# (sizes, activation) pairs: every activation on a one- and a two-hidden-layer MLP, plus Linear.
ARCHS = [((3, 4, 3), a) for a in ACTIVATIONS] + [((2, 3, 4, 3), a) for a in ACTIVATIONS] + [((3, 3), "identity")]
CASES = [(s, a, loss, red) for (s, a), loss, red in itertools.product(ARCHS, LOSSES, REDUCTIONS)]


def build(sizes, activation, loss, reduction):
    if len(sizes) == 2:
        return gdsim.Linear(*sizes, loss=loss, reduction=reduction)
    return gdsim.MLP(sizes, activation=activation, loss=loss, reduction=reduction)


def central_differences(f, theta, h=1e-6):
    out = np.empty_like(theta)
    for j in range(theta.size):
        e = np.zeros_like(theta)
        e[j] = h
        out[j] = (f(theta + e) - f(theta - e)) / (2 * h)
    return out


@pytest.mark.parametrize("sizes, activation, loss, reduction", CASES)
def test_grad_matches_finite_differences(sizes, activation, loss, reduction):
    model = build(sizes, activation, loss, reduction)
    X, Y = make_data(model, n=7, seed=1)
    theta = model.init(seed=2)
    fd = central_differences(lambda t: model.loss(t, X, Y), theta)
    g = model.grad(theta, X, Y)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("sizes, activation, loss, reduction", CASES)
def test_loss_and_grad_match_numpy_backprop(sizes, activation, loss, reduction):
    model = build(sizes, activation, loss, reduction)
    X, Y = make_data(model, n=7, seed=3)
    theta = model.init(seed=4)
    value, g = model.loss_and_grad(theta, X, Y)
    ref_value, ref_g = naive.loss_and_grad(model.sizes, activation, loss, reduction, theta, X, Y)
    np.testing.assert_allclose(value, ref_value, rtol=1e-13)
    np.testing.assert_allclose(g, ref_g, rtol=1e-12, atol=1e-15)
    assert model.loss(theta, X, Y) == value


@pytest.mark.parametrize("sizes, activation, loss, reduction", CASES)
def test_per_sample_grads_reduce_to_grad(sizes, activation, loss, reduction):
    model = build(sizes, activation, loss, reduction)
    X, Y = make_data(model, n=6, seed=5)
    theta = model.init(seed=6)
    rows = model.per_sample_grads(theta, X, Y)
    assert rows.shape == (6, model.n_params)
    reduced = rows.mean(axis=0) if reduction == "mean" else rows.sum(axis=0)
    np.testing.assert_allclose(reduced, model.grad(theta, X, Y), rtol=1e-12, atol=1e-15)
    # Row i is the gradient of sample i's own loss: the loss of the one-sample batch.
    for i in (0, 5):
        one = model.grad(theta, X[i:i + 1], Y[i:i + 1])
        np.testing.assert_allclose(rows[i], one, rtol=1e-13, atol=1e-15)


def test_predict_matches_numpy_forward():
    model = gdsim.MLP((3, 5, 2), activation="tanh")
    X, _ = make_data(model, n=4)
    theta = model.init(0)
    np.testing.assert_allclose(model.predict(theta, X), naive.forward(model.sizes, "tanh", theta, X)[-1], rtol=1e-14)


def test_relu_passes_nan_like_torch():
    # torch.relu(nan) is nan: a NaN must not be silently zeroed (it would hide divergence).
    model = gdsim.MLP((1, 2, 1), activation="relu")
    theta = model.init(0)
    theta[0] = np.nan
    assert np.isnan(model.loss(theta, np.ones((1, 1)), np.ones((1, 1))))


def test_cross_entropy_is_stable_for_huge_logits():
    model = gdsim.Linear(1, 2, loss="cross_entropy")
    theta = model.pack([[[1e300], [-1e300]], [0.0, 0.0]])
    # Label 0 has the huge logit: loss 0, not NaN; label 1: loss ~2e300, finite.
    assert model.loss(theta, [[1.0]], [0]) == 0.0
    assert model.loss(theta, [[1.0]], [1]) == pytest.approx(2e300)


def test_kernels_are_callable_from_user_njit_code():
    model = gdsim.MLP((3, 4, 2), activation="sigmoid", loss="cross_entropy", reduction="sum")
    X, labels = make_data(model, n=5, seed=7)
    _, Yk = model.check_data(X, labels)
    theta = model.init(0)

    @numba.njit
    def my_full_batch_gd(theta, sizes, act, loss, red, X, Y, lr, steps):
        acts = np.empty(sizes.sum())
        deltas = np.empty(sizes.sum())
        grad = np.empty(theta.shape[0])
        rows = np.arange(X.shape[0])
        for _ in range(steps):
            gdsim.kernels.batch_loss_grad(theta, sizes, act, loss, red, X, Y, rows, grad, acts, deltas)
            theta -= lr * grad
        return gdsim.kernels.batch_loss(theta, sizes, act, loss, red, X, Y, rows, acts)

    final = my_full_batch_gd(theta.copy(), model.sizes_array, model.activation_code, model.loss_code,
                             model.reduction_code, X, Yk, 0.1, 3)
    ref = theta.copy()
    for _ in range(3):
        ref = ref - 0.1 * naive.loss_and_grad(model.sizes, "sigmoid", "cross_entropy", "sum", ref, X, labels)[1]
    assert final == pytest.approx(naive.loss_and_grad(model.sizes, "sigmoid", "cross_entropy", "sum", ref, X, labels)[0],
                                  rel=1e-12)
