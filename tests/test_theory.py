"""gdsim.theory against simulation (gdsim.sweep / train, a NumPy Monte Carlo) and finite differences."""

import numpy as np
import pytest

import gdsim
from gdsim import theory

from conftest import make_data


@pytest.fixture(scope="module")
def line():
    X, Y = gdsim.datasets.tutorial_line(seed=0)
    return gdsim.Linear(1, 1), X, Y


def fd_hessian(model, params, X, Y, h=1e-5):
    """Dense Hessian by central differences of the gradient, column by column."""
    P = model.n_params
    H = np.empty((P, P))
    for j in range(P):
        e = np.zeros(P)
        e[j] = h
        H[:, j] = (model.grad(params + e, X, Y) - model.grad(params - e, X, Y)) / (2 * h)
    return 0.5 * (H + H.T)


# ---------------------------------------------------------------------------------------
# Curvature and full-batch thresholds
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_hessian_is_the_gradient_kernels_derivative(reduction):
    model = gdsim.Linear(3, 2, reduction=reduction)
    X, Y = make_data(model, 11, seed=4)
    H = theory.hessian(model, X)
    full = fd_hessian(model, model.init(0), X, Y)
    # torch order: W (2 x 3) row-major, then b (2): output k owns W[k, :] and b[k]
    for k in range(2):
        rows = [3 * k, 3 * k + 1, 3 * k + 2, 6 + k]
        np.testing.assert_allclose(full[np.ix_(rows, rows)], H, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(full[np.ix_([0, 1, 2, 6], [3, 4, 5, 7])], 0.0, atol=1e-8)  # outputs decouple


def test_gradient_descent_summary(line):
    model, X, _ = line
    lam = np.linalg.eigvalsh(theory.hessian(model, X))
    gd = theory.gradient_descent(lam)
    assert gd.L == lam[1] and gd.mu == lam[0] and gd.critical_lr == 2 / lam[1]
    # the optimal step equalises the two extreme contractions |1 - lr lam|
    assert abs(1 - gd.optimal_lr * gd.mu) == pytest.approx(abs(1 - gd.optimal_lr * gd.L), rel=1e-12)
    assert theory.spectral_radius(gd.optimal_lr, lam) == pytest.approx(gd.optimal_rate, rel=1e-12)
    # momentum 1 and above: no learning rate is stable (det of the companion matrix = beta)
    assert np.all(theory.spectral_radius(np.geomspace(1e-4, 1, 20), lam, 1.0) >= 1 - 1e-12)
    assert np.all(theory.spectral_radius(np.geomspace(1e-4, 1, 20), lam, 1.2) > 1)


def run_full_batch(model, X, Y, lr, momentum, nesterov, epochs):
    return gdsim.sweep(model, X, Y, lr=lr, momentum=momentum, nesterov=nesterov, epochs=epochs,
                       params0=[-10.0, -20.0], divergence=None, target="cpu")


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.5, False), (0.9, False), (0.5, True),
                                                (0.9, True)])
def test_critical_lr_brackets_the_simulated_edge(line, momentum, nesterov):
    model, X, Y = line
    L = theory.gradient_descent(theory.hessian(model, X)).L
    lr_c = theory.critical_lr(L, momentum, nesterov=nesterov)
    ds = run_full_batch(model, X, Y, lr_c * np.array([0.95, 1.05]), momentum, nesterov, epochs=4000)
    loss = ds.loss.values
    assert loss[0, -1] < loss[0, 0]  # below: converges
    assert not np.isfinite(loss[1, -1]) or loss[1, -1] > 1e6 * loss[1, 0]  # above: blows up


@pytest.mark.parametrize("lr, momentum, nesterov", [(0.05, 0.0, False), (0.1, 0.0, False), (0.02, 0.8, False),
                                                    (0.15, 0.5, False), (0.05, 0.7, True)])
def test_spectral_radius_is_the_simulated_contraction(line, lr, momentum, nesterov):
    # Noise-free targets, so the loss is exactly quadratic in the error and decays as rho^(2t).
    model, X, _ = line
    Y = 3.0 * X - 1.0
    rho = theory.spectral_radius(lr, np.linalg.eigvalsh(theory.hessian(model, X)), momentum, nesterov=nesterov)
    loss = run_full_batch(model, X, Y, lr, momentum, nesterov, epochs=160).loss.values
    # slope of log(loss) over a late window, where the slowest mode dominates (a fit
    # averages out the oscillation of complex eigenvalues)
    t = np.arange(40, 161)
    t = t[loss[t] > 1e-20 * loss[0]]  # above rounding's floor
    assert t.size >= 20
    measured = np.exp(np.polyfit(t, np.log(loss[t]), 1)[0])
    assert measured == pytest.approx(rho ** 2, rel=0.03)


def test_polyak_is_the_fastest_point(line):
    model, X, Y = line
    gd = theory.gradient_descent(theory.hessian(model, X))
    lr, beta, rate = theory.polyak(gd.L, gd.mu)
    lam = [gd.mu, gd.L]
    assert theory.spectral_radius(lr, lam, beta) == pytest.approx(rate, rel=1e-6)  # double root: loose
    lrs, betas = lr * np.linspace(0.5, 1.5, 101), np.linspace(0.0, 0.9, 91)
    grid = theory.spectral_radius(lrs[:, None], lam, betas[None, :])
    i, j = np.unravel_index(np.argmin(grid), grid.shape)
    assert abs(lrs[i] - lr) <= lr * 0.011 and abs(betas[j] - beta) <= 0.011
    # and in simulation: faster than GD's best and than heavy ball a little off the optimum
    Y0 = 3.0 * X - 1.0
    theta_star = np.array([3.0, -1.0])

    def error(lr_, beta_):
        ds = run_full_batch(model, X, Y0, lr_, beta_, False, epochs=25)
        return np.linalg.norm(ds.params.values - theta_star)

    best = error(lr, beta)
    assert best < 1e-3 * np.linalg.norm([-10.0 - 3.0, -20.0 + 1.0])
    for other in [(gd.optimal_lr, 0.0), (0.7 * lr, beta), (1.3 * lr, beta), (lr, beta + 0.2), (lr, 0.0)]:
        assert error(*other) > 10 * best, other


def test_weight_decay_and_dampening_move_the_threshold(line):
    model, X, Y = line
    L = theory.gradient_descent(theory.hessian(model, X)).L
    lr_wd = theory.critical_lr(L, 0.5, weight_decay=1.0)
    lr_damp = theory.critical_lr(L, 0.5, dampening=0.5)
    assert lr_wd < theory.critical_lr(L, 0.5) < lr_damp
    for lr_c, kw in ((lr_wd, dict(weight_decay=1.0)), (lr_damp, dict(dampening=0.5))):
        ds = gdsim.sweep(model, X, Y, lr=lr_c * np.array([0.95, 1.05]), momentum=0.5, epochs=4000,
                         params0=[-10.0, -20.0], divergence=None, target="cpu", **kw)
        assert ds.loss.values[0, -1] < ds.loss.values[0, 0]
        assert not np.isfinite(ds.loss.values[1, -1]) or ds.loss.values[1, -1] > 1e6 * ds.loss.values[1, 0]


# ---------------------------------------------------------------------------------------
# SGD
# ---------------------------------------------------------------------------------------
def grows(loss, window=50):
    """True if the epoch losses grow without bound (non-finite, or x1e3 over the window)."""
    return not np.isfinite(loss[-1]) or loss[-1] > 1e3 * loss[-1 - window]


@pytest.mark.parametrize("batch_size, momentum", [(1, 0.0), (10, 0.0), (1, 0.5)])
def test_epoch_critical_lr_brackets_sgd_in_data_order(line, batch_size, momentum):
    model, X, Y = line
    lr_c = theory.epoch_critical_lr(model, X, batch_size=batch_size, momentum=momentum)
    full = theory.critical_lr(theory.gradient_descent(theory.hessian(model, X)).L, momentum)
    assert lr_c != pytest.approx(full, rel=1e-3)  # not the full-batch threshold
    ds = gdsim.sweep(model, X, Y, lr=lr_c * np.array([0.97, 1.03]), momentum=momentum, batch_size=batch_size,
                     epochs=400, params0=[-10.0, -20.0], divergence=None, target="cpu")
    below, above = ds.loss.values
    assert np.isfinite(below[-1]) and not grows(below)
    assert grows(above)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_step_critical_lr_is_where_one_step_first_amplifies(line, batch_size):
    model, X, Y = line
    lr_step = theory.step_critical_lr(model, X, batch_size=batch_size)
    if batch_size == 1:  # one sample's Hessian is 2 a a^T, a = (x, 1): top eigenvalue 2 (x^2 + 1)
        assert lr_step == pytest.approx(1.0 / (1.0 + (X[:, 0] ** 2).max()), rel=1e-12)
    # One step of the gradient kernel on the worst batch (targets 0: the minimum at 0)
    # amplifies its steepest direction just above lr_step, and no batch's just below.
    batches = [X[i:i + batch_size] for i in range(0, len(X), batch_size)]
    worst = max(batches, key=lambda rows: np.linalg.eigvalsh(theory.hessian(model, rows)).max())
    for rows in batches:
        top = np.linalg.eigh(theory.hessian(model, rows))[1][:, -1]
        for factor in (0.99, 1.01):
            after = top - factor * lr_step * model.grad(top, rows, np.zeros((len(rows), 1)))
            assert (np.linalg.norm(after) > 1.0) == (factor > 1 and rows is worst)
    assert theory.step_critical_lr(model, X, batch_size=len(X)) == pytest.approx(
        theory.gradient_descent(theory.hessian(model, X)).critical_lr, rel=1e-12)


def test_epoch_spectral_radius_of_full_batch_is_gd(line):
    model, X, _ = line
    lam = np.linalg.eigvalsh(theory.hessian(model, X))
    for lr, momentum in ((0.05, 0.0), (0.1, 0.0), (0.05, 0.6)):
        assert theory.epoch_spectral_radius(model, X, lr, batch_size=100, momentum=momentum) == pytest.approx(
            theory.spectral_radius(lr, lam, momentum), rel=1e-9)


def brute_force_mean_square_rate(X, lr, batch_size, momentum, steps=400):
    """Growth per step of E[z z^T] for SGD with replacement, by iterating the exact
    expectation over every batch (all n^B tuples of samples) on a 2x2-block state."""
    A = np.hstack([X, np.ones((X.shape[0], 1))])
    n, d = A.shape
    h = 2.0 * np.einsum("ni,nj->nij", A, A)
    HB = h
    for _ in range(batch_size - 1):  # every tuple's batch Hessian, as a mean of its samples
        HB = (HB[:, None] + h[None, :]).reshape(-1, d, d)
    HB = HB / batch_size
    eye = np.eye(d)
    M = np.stack([np.block([[eye - lr * H, -lr * momentum * eye], [H, momentum * eye]]) for H in HB])
    S = np.eye(2 * d)
    log_growth = []
    for _ in range(steps):
        S = np.einsum("bij,jk,blk->il", M, S, M) / M.shape[0]
        trace = np.trace(S)
        log_growth.append(np.log(trace))
        S /= trace
    return float(np.exp(np.mean(log_growth[steps // 2:])))


@pytest.mark.parametrize("lr, batch_size, momentum", [(0.05, 1, 0.0), (0.07, 1, 0.0), (0.1, 2, 0.0),
                                                      (0.03, 1, 0.6), (0.08, 2, 0.3)])
def test_mean_square_radius_is_the_exact_expectation(line, lr, batch_size, momentum):
    model, X, _ = line
    X = X[::10]  # 10 samples: 100 tuples for batches of 2
    rho = theory.mean_square_spectral_radius(model, X, lr, batch_size=batch_size, momentum=momentum)
    assert brute_force_mean_square_rate(X, lr, batch_size, momentum) == pytest.approx(rho, rel=1e-6)


def test_mean_square_critical_lr_is_where_the_radius_crosses_one(line):
    model, X, _ = line
    for batch_size in (1, 5):
        lr_c = theory.mean_square_critical_lr(model, X, batch_size=batch_size)
        assert theory.mean_square_spectral_radius(model, X, 0.999 * lr_c, batch_size=batch_size) < 1
        assert theory.mean_square_spectral_radius(model, X, 1.001 * lr_c, batch_size=batch_size) > 1


def test_mean_square_tends_to_full_batch_for_large_batches(line):
    model, X, _ = line
    L = theory.gradient_descent(theory.hessian(model, X)).L
    assert theory.mean_square_critical_lr(model, X, batch_size=10**9) == pytest.approx(2 / L, rel=1e-6)
    small = [theory.mean_square_critical_lr(model, X, batch_size=b) for b in (1, 4, 16)]
    assert small == sorted(small) and small[-1] < 2 / L


# ---------------------------------------------------------------------------------------
# Sharpness
# ---------------------------------------------------------------------------------------
def test_sharpness_of_least_squares_is_the_top_eigenvalue(line):
    model, X, Y = line
    L = theory.gradient_descent(theory.hessian(model, X)).L
    assert theory.sharpness(model, model.init(0), X, Y) == pytest.approx(L, rel=1e-7)


@pytest.mark.parametrize("sizes, activation, loss", [((3, 4, 1), "tanh", "mse"), ((10, 5, 1), "relu", "mse"),
                                                   ((4, 6, 3), "sigmoid", "mse"),
                                                   ((4, 6, 3), "tanh", "cross_entropy")])
def test_sharpness_matches_the_dense_hessian(sizes, activation, loss):
    model = gdsim.MLP(sizes, activation=activation, loss=loss)
    X, Y = make_data(model, 40, seed=3)
    params = model.init(1)
    assert model.n_params > 20  # the Lanczos path
    top = np.linalg.eigvalsh(fd_hessian(model, params, X, Y))[::-1]
    got = theory.sharpness(model, params, X, Y, k=2)
    np.testing.assert_allclose(got, top[:2], rtol=1e-5)


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, message", [
    (lambda m, X: theory.hessian(gdsim.MLP((1, 3, 1)), X), "use gdsim.theory.sharpness"),
    (lambda m, X: theory.polyak(1.0, 2.0), "0 < mu <= L"),
    (lambda m, X: theory.critical_lr(4.0, 1.0), "momentum must be < 1"),
    (lambda m, X: theory.critical_lr(4.0, 0.5, dampening=0.1, nesterov=True), "dampening 0"),
    (lambda m, X: theory.epoch_spectral_radius(m, X, 0.1, order=np.zeros(100, int)), "permutation"),
    (lambda m, X: theory.epoch_spectral_radius(m, X, -0.1), "lr must be a finite real number >= 0"),
    (lambda m, X: theory.mean_square_critical_lr(m, X, batch_size=0), "batch_size must be an integer"),
    (lambda m, X: theory.gradient_descent(np.zeros((2, 3))), "symmetric matrix"),
])
def test_bad_input_is_refused(line, call, message):
    model, X, _ = line
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(model, X)
