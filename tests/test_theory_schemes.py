"""gdsim.theory's momentum tunings, phase regions, noise scales, sampling schemes and linear
stability against independent answers: the papers' numbers, closed forms, plain NumPy
(companion matrices, enumerated permutations, finite-difference Hessians)."""

import itertools

import numpy as np
import pytest
from conftest import make_data

import gdsim
from gdsim import theory
from gdsim.batches import batch_orders
from gdsim.theory.sampling import _orders


@pytest.fixture(scope="module")
def line():
    X, Y = gdsim.datasets.tutorial_line(seed=0)
    return gdsim.Linear(1, 1), X, Y


def extremes(model, X):
    lam = np.linalg.eigvalsh(theory.hessian(model, X))
    return float(lam[-1]), float(lam[0])


def fd_hessian(model, params, X, Y, h=1e-5):
    """Dense Hessian by central differences of model.grad, column by column."""
    P = model.n_params
    H = np.empty((P, P))
    for j in range(P):
        e = np.zeros(P)
        e[j] = h
        H[:, j] = (model.grad(params + e, X, Y) - model.grad(params - e, X, Y)) / (2 * h)
    return 0.5 * (H + H.T)


def rows_of(X):
    return np.column_stack([X, np.ones(len(X))])


def step_map(H, lr, beta):
    """One SGD step on (e, buf), torch's heavy ball: buf' = beta buf + H e, e' = e - lr buf'."""
    d = H.shape[0]
    I = np.eye(d)
    if beta == 0:
        return I - lr * H
    return np.block([[I - lr * H, -lr * beta * I], [H, beta * I]])


def epoch_map(A, order, lr, batch_size, beta=0.0):
    """Product of one epoch's step maps (Linear(n_in, 1), MSE mean): H_b = 2/|b| sum a a^T."""
    M = None
    for start in range(0, len(order), batch_size):
        rows = A[order[start:start + batch_size]]
        S = step_map(2.0 / len(rows) * rows.T @ rows, lr, beta)
        M = S if M is None else S @ M
    return M


def radius(M):
    return float(np.abs(np.linalg.eigvals(M)).max())


# ---------------------------------------------------------------------------------------
# Nesterov's tuning (Lessard, Recht & Packard 2016)
# ---------------------------------------------------------------------------------------
def test_nesterov_optimal_on_the_tutorial_matches_the_issue(line):
    model, X, _ = line
    L, mu = extremes(model, X)
    got = theory.nesterov_optimal(L, mu)
    # the numbers quoted in issue 14 for this data, to 5 digits
    assert abs(got.lr - 0.07691) < 5e-6 and abs(got.momentum - 0.43666) < 5e-6 and abs(got.rate - 0.60788) < 5e-6
    lr, beta, rate = got  # unpacks like polyak
    # classical Nesterov x' = (1 + beta)(1 - k) x - beta (1 - k) x_prev, k = lr lam: companion in plain NumPy
    def companion_radius(lam):
        k = lr * lam
        return radius(np.array([[(1 + beta) * (1 - k), -beta * (1 - k)], [1.0, 0.0]]))

    assert companion_radius(mu) == pytest.approx(rate, rel=1e-6)  # a double root: loose
    assert companion_radius(L) == pytest.approx(rate, rel=1e-12)
    assert max(companion_radius(lam) for lam in np.linspace(mu, L, 201)) <= rate * (1 + 1e-6)
    assert theory.spectral_radius(lr, [mu, L], beta, nesterov=True) == pytest.approx(rate, rel=1e-6)
    # between GD's best and Polyak's heavy ball
    assert theory.polyak(L, mu)[2] < rate < (L - mu) / (L + mu)


def test_nesterov_optimal_closed_form():
    kappa = 4.0
    s = np.sqrt(3 * kappa + 1)
    got = theory.nesterov_optimal(4.0, 1.0)
    np.testing.assert_allclose(got, [4 / 13, (s - 2) / (s + 2), 1 - 2 / s], rtol=1e-14)
    assert theory.nesterov_optimal(2.0, 2.0) == (0.5, 0.0, 0.0)  # kappa = 1: GD with lr 1/L, one step


# ---------------------------------------------------------------------------------------
# Heavy ball's regions (Pedregosa 2021)
# ---------------------------------------------------------------------------------------
def expected_region(lr, beta, L, mu):
    """The region from the companion matrices' eigenvalues (numpy.linalg.eigvals), or None
    within 1e-9 of a boundary."""
    eig = np.concatenate([np.linalg.eigvals(np.array([[1 - lr * lam, -beta], [lr * lam, beta]])) for lam in (mu, L)])
    mod = np.abs(eig)
    rho = mod.max()
    disc = [(1 + beta - lr * lam) ** 2 - 4 * beta for lam in (mu, L)]
    if abs(rho - 1) < 1e-9 or min(abs(d) for d in disc) < 1e-9:
        return None
    if rho >= 1:
        return "divergent"
    if all(d < 0 for d in disc):
        return "robust"
    top = np.argsort(mod)[::-1]
    if mod[top[0]] - mod[top[1]] < 1e-9 and abs(eig[top[0]] - eig[top[1]]) > 1e-9:  # a tie of distinct roots
        return None
    dominant = eig[top[0]]
    assert abs(dominant.imag) < 1e-12  # outside the robust region the largest root is real
    return "lazy" if dominant.real > 0 else "knife's edge"


def test_momentum_region_matches_the_companion_eigenvalues(line):
    model, X, _ = line
    L, mu = extremes(model, X)
    lrs = np.linspace(0.0, 0.3, 61)[1:]
    betas = np.linspace(0.0, 0.99, 45)
    got = theory.momentum_region(lrs[:, None], betas[None, :], L, mu)
    assert got.shape == (60, 45)
    checked = 0
    for i, lr in enumerate(lrs):
        for j, beta in enumerate(betas):
            expected = expected_region(lr, beta, L, mu)
            if expected is not None:
                assert got[i, j] == expected, (lr, beta)
                checked += 1
    assert checked > 0.95 * got.size
    assert set(got.ravel()) == set(theory.REGIONS)


def test_momentum_region_scalars_and_boundaries(line):
    model, X, _ = line
    L, mu = extremes(model, X)
    assert theory.momentum_region(1.0 / L, 0.0, L, mu) == "lazy"  # GD below 2 / (L + mu)
    assert theory.momentum_region(2.1 / (L + mu), 0.0, L, mu) == "knife's edge"
    assert theory.momentum_region(2.01 / L, 0.0, L, mu) == "divergent"
    lr, beta, _ = theory.polyak(L, mu)
    assert theory.momentum_region(lr, beta + 0.01, L, mu) == "robust"  # Polyak's optimum borders it
    assert theory.momentum_region(0.1, 1.0, L, mu) == "divergent"
    assert theory.momentum_region(0.0, 0.5, L, mu) == "divergent"  # lr 0: radius 1, no convergence


# ---------------------------------------------------------------------------------------
# Noise scales (McCandlish et al. 2018)
# ---------------------------------------------------------------------------------------
def expected_noise_scales(G, g, H, B):
    D = g - G
    sigma = D.T @ D / len(g)
    g2, gHg = G @ G, G @ H @ G
    b_noise = np.trace(H @ sigma) / gHg
    return np.trace(sigma) / g2, b_noise, g2 / gHg, g2 / gHg / (1 + b_noise / B)


def test_noise_scales_of_least_squares_match_the_closed_form():
    model = gdsim.Linear(3, 2)
    X, Y = make_data(model, 20, seed=5)
    params = model.init(2)
    W, b = model.unpack(params)
    R = X @ W.T + b - Y  # residuals (n, 2)
    A = rows_of(X)
    # sample i's loss (1/2) sum_o r_io^2: gradient (2/2) r_io (x_i, 1) for output o, torch order W then b
    g = np.concatenate([np.einsum("no,ni->noi", R, X).reshape(20, -1), R], axis=1)
    G = g.mean(axis=0)
    block = A.T @ A / 20  # 2/(n n_out) sum a a^T with n_out = 2
    H = np.zeros((8, 8))
    for o in range(2):
        idx = [3 * o, 3 * o + 1, 3 * o + 2, 6 + o]
        H[np.ix_(idx, idx)] = block
    got = theory.noise_scales(model, params, X, Y, batch_size=4)
    np.testing.assert_allclose(got, expected_noise_scales(G, g, H, 4), rtol=1e-7)


@pytest.mark.parametrize("n, loss", [(10, "mse"), (60, "mse"), (12, "cross_entropy")])
def test_noise_scales_of_an_mlp_match_dense_finite_differences(n, loss):
    model = gdsim.MLP((3, 4, 2), activation="tanh", loss=loss)  # 26 parameters: n < P and n > P
    X, Y = make_data(model, n, seed=7)
    params = model.init(3)
    Yi = Y if loss == "mse" else Y.reshape(-1)
    g = np.stack([model.grad(params, X[i:i + 1], Yi[i:i + 1]) for i in range(n)])  # one-sample losses
    H = fd_hessian(model, params, X, Y)
    got = theory.noise_scales(model, params, X, Y, batch_size=8)
    np.testing.assert_allclose(got, expected_noise_scales(g.mean(axis=0), g, H, 8), rtol=1e-5)
    assert theory.noise_scales(model, params, X, Y).lr_opt is None


# ---------------------------------------------------------------------------------------
# Sampling schemes: Lyapunov exponents and mean-square radii
# ---------------------------------------------------------------------------------------
def test_reshuffle_orders_are_batch_orders():
    rng = np.random.default_rng(np.random.SeedSequence(7).spawn(2)[0])
    np.testing.assert_array_equal(_orders("reshuffle", 9, 5, rng), batch_orders(9, 5, True, 7))


@pytest.mark.parametrize("lr, batch_size, momentum", [(0.05, 1, 0.0), (0.12, 1, 0.0), (0.1, 4, 0.0),
                                                      (0.03, 1, 0.5), (0.15, 5, 0.3)])
def test_fixed_order_exponent_is_the_log_epoch_radius(line, lr, batch_size, momentum):
    model, X, _ = line
    X = X[::5]  # 20 samples
    exact = np.log(radius(epoch_map(rows_of(X), np.arange(20), lr, batch_size, momentum)))
    assert np.log(theory.epoch_spectral_radius(model, X, lr, batch_size=batch_size,
                                               momentum=momentum)) == pytest.approx(exact, abs=1e-9)
    got = theory.lyapunov_exponent(model, X, lr, batch_size=batch_size, sampling="fixed", momentum=momentum,
                                   epochs=2000, burn_in=200)
    assert got.exponent == pytest.approx(exact, abs=1e-6)
    assert got.low <= got.exponent <= got.high
    ms = theory.mean_square_radius(model, X, lr, batch_size=batch_size, sampling="fixed", momentum=momentum,
                                   samples=20)
    assert ms.radius == pytest.approx(np.exp(2 * exact), rel=1e-9)


@pytest.mark.parametrize("momentum", [0.0, 0.4])
@pytest.mark.parametrize("lr", [0.02, 0.1, 0.3])
def test_one_sample_every_scheme_is_the_closed_form(lr, momentum):
    # weight decay 0.2 curves the direction a single sample leaves flat
    model, x, wd = gdsim.Linear(1, 1), np.array([[1.5]]), 0.2
    a = np.array([1.5, 1.0])
    H = 2 * np.outer(a, a) + wd * np.eye(2)
    exact = np.log(radius(step_map(H, lr, momentum)))
    for sampling in theory.SAMPLINGS:
        got = theory.lyapunov_exponent(model, x, lr, sampling=sampling, momentum=momentum, weight_decay=wd,
                                       epochs=4000, burn_in=500)
        assert got.exponent == pytest.approx(exact, abs=1e-3 if momentum else 1e-9), sampling
        ms = theory.mean_square_radius(model, x, lr, sampling=sampling, momentum=momentum, weight_decay=wd,
                                       samples=20)
        assert ms.radius == pytest.approx(np.exp(2 * exact), rel=1e-9), sampling


def exact_reshuffle_square(A, lr, batch_size, beta):
    """E[M (x) M] over every permutation (plain NumPy)."""
    maps = [epoch_map(A, np.array(p), lr, batch_size, beta) for p in itertools.permutations(range(len(A)))]
    return np.mean([np.kron(M, M) for M in maps], axis=0)


SMALL_X = np.array([[-1.2], [0.3], [0.9], [2.0]])


@pytest.mark.parametrize("lr, batch_size, momentum", [(0.1, 1, 0.0), (0.25, 1, 0.0), (0.2, 2, 0.0),
                                                      (0.1, 1, 0.5)])
def test_reshuffle_mean_square_radius_matches_every_permutation(lr, batch_size, momentum):
    exact = radius(exact_reshuffle_square(rows_of(SMALL_X), lr, batch_size, momentum))
    got = theory.mean_square_radius(gdsim.Linear(1, 1), SMALL_X, lr, batch_size=batch_size, sampling="reshuffle",
                                    momentum=momentum, samples=4000, seed=1)
    assert got.low <= got.radius <= got.high
    half = got.high - got.radius
    assert abs(got.radius - exact) <= 3 * half + 1e-12
    assert half < 0.1 * exact  # and the interval is informative


@pytest.mark.parametrize("lr", [0.01, 0.03])  # larger: heavy tails, the interval widens fast
def test_replacement_mean_square_radius_matches_the_exact_map(line, lr):
    model, X, _ = line
    X = X[::20]  # 5 samples, batch size 1: the epoch's map is 5 independent steps
    exact = theory.mean_square_spectral_radius(model, X, lr, batch_size=1) ** 5
    got = theory.mean_square_radius(model, X, lr, sampling="replacement", samples=4000, seed=2)
    assert abs(got.radius - exact) <= 3 * (got.high - got.radius)
    assert got.high - got.radius < 0.02 * exact


def test_lyapunov_exponent_is_below_half_the_log_mean_square_radius():
    A = rows_of(SMALL_X)
    model = gdsim.Linear(1, 1)
    seen_unstable_in_mean_square = False
    for lr, batch_size, momentum in itertools.product([0.05, 0.15, 0.3, 0.4], [1, 2], [0.0, 0.5]):
        exact = radius(exact_reshuffle_square(A, lr, batch_size, momentum))
        got = theory.lyapunov_exponent(model, SMALL_X, lr, batch_size=batch_size, sampling="reshuffle",
                                       momentum=momentum, epochs=2000, seed=3)
        assert got.low <= 0.5 * np.log(exact) + 1e-9, (lr, batch_size, momentum)
        seen_unstable_in_mean_square |= exact > 1 and got.exponent < 0
    assert seen_unstable_in_mean_square  # the gap matters: converging a.s., not in mean square


@pytest.mark.parametrize("lr, batch_size, momentum", [(0.004, 1, 0.0), (0.01, 2, 0.0), (0.003, 1, 0.5),
                                                      (0.105, 1, 0.0)])
def test_lyapunov_exponent_is_the_growth_of_training_on_the_same_shuffles(line, lr, batch_size, momentum):
    # gdsim.train with shuffle=True and seed 3 multiplies the very epoch maps the exponent is
    # estimated from; after the burn-in its error and the estimator's vector point the same
    # way, so their growth over the measured epochs agrees to rounding (not just on average).
    model, X, _ = line
    X = X[::5]
    Y = 3.0 * X - 1.0  # noise-free: the error is exactly the product of the epoch maps
    burn_in, epochs = 10, 30
    run = gdsim.train(model, X, Y, gdsim.SGD(lr=lr, momentum=momentum), epochs=burn_in + epochs,
                      batch_size=batch_size, shuffle=True, seed=3, params0=[-10.0, -20.0], record_params=True)
    error = np.linalg.norm(np.asarray(run.epoch_params) - [3.0, -1.0], axis=1)
    assert 1e-6 < error[-1] < 1e30  # away from rounding's floor and from overflow
    simulated = np.log(error[-1] / error[burn_in]) / epochs
    got = theory.lyapunov_exponent(model, X, lr, batch_size=batch_size, momentum=momentum, sampling="reshuffle",
                                   epochs=epochs, burn_in=burn_in, seed=3)
    assert got.exponent == pytest.approx(simulated, abs=1e-4)


def test_lyapunov_reshuffle_is_reproducible_and_seeded(line):
    model, X, _ = line
    X = X[::10]
    a = theory.lyapunov_exponent(model, X, 0.1, epochs=100, burn_in=10, seed=4)
    assert a == theory.lyapunov_exponent(model, X, 0.1, epochs=100, burn_in=10, seed=4)
    assert a != theory.lyapunov_exponent(model, X, 0.1, epochs=100, burn_in=10, seed=5)


# ---------------------------------------------------------------------------------------
# Linear stability at a minimum (Wu, Ma & E 2018)
# ---------------------------------------------------------------------------------------
def test_linear_stability_of_least_squares(line):
    model, X, Y = line
    A = rows_of(X)
    minimum = np.linalg.lstsq(A, Y[:, 0], rcond=None)[0]
    h = 2 * np.einsum("ni,nj->nij", A, A)  # per-sample Hessians of (w x + b - y)^2
    H = h.mean(axis=0)
    a = np.linalg.eigvalsh(H)[-1]
    s = np.sqrt(np.linalg.eigvalsh(np.einsum("nij,njk->ik", h, h) / len(X) - H @ H)[-1])
    for lr, batch_size in ((0.05, 1), (0.05, 4), (0.1, 10)):
        got = theory.linear_stability(model, minimum, X, Y, lr, batch_size)
        assert got.sharpness == pytest.approx(a, rel=1e-7) and got.non_uniformity == pytest.approx(s, rel=1e-6)
        assert got.sharpness_limit == 2 / lr and got.non_uniformity_limit == pytest.approx(np.sqrt(batch_size) / lr)
        assert got.criterion == (a <= 2 / lr and s <= np.sqrt(batch_size) / lr)
        assert got.curved_dim == 2
        assert got.mean_square_radius == pytest.approx(
            theory.mean_square_spectral_radius(model, X, lr, batch_size=batch_size), rel=1e-6)
    for batch_size in (1, 5):
        lr_c = theory.mean_square_critical_lr(model, X, batch_size=batch_size)
        assert theory.linear_stability(model, minimum, X, Y, 0.99 * lr_c, batch_size).mean_square_radius < 1
        above = theory.linear_stability(model, minimum, X, Y, 1.01 * lr_c, batch_size)
        assert above.mean_square_radius > 1
    # with momentum the radius is heavy ball's mean-square one
    got = theory.linear_stability(model, minimum, X, Y, 0.03, 2, momentum=0.5)
    assert got.criterion is None and got.sharpness_limit == 2 * 1.5 / 0.03
    assert got.mean_square_radius == pytest.approx(
        theory.mean_square_spectral_radius(model, X, 0.03, batch_size=2, momentum=0.5), rel=1e-6)


def test_linear_stability_against_the_papers_conditions(line):
    # Wu, Ma & E: lambda_max((I - lr H)^2 + lr^2 / B Sigma_H) <= 1 is sufficient for
    # mean-square stability; a > 2 / lr is sufficient for instability (already in the mean).
    model, X, Y = line
    A = rows_of(X)
    minimum = np.linalg.lstsq(A, Y[:, 0], rcond=None)[0]
    h = 2 * np.einsum("ni,nj->nij", A, A)
    H = h.mean(axis=0)
    sigma = np.einsum("nij,njk->ik", h, h) / len(X) - H @ H
    a = np.linalg.eigvalsh(H)[-1]
    seen = set()
    for lr in np.linspace(0.01, 0.15, 15):
        for batch_size in (1, 2, 8):
            got = theory.linear_stability(model, minimum, X, Y, lr, batch_size)
            step = np.eye(2) - lr * H
            if np.linalg.eigvalsh(step @ step + lr**2 / batch_size * sigma)[-1] < 1 - 1e-9:
                assert got.mean_square_radius < 1 and got.criterion, (lr, batch_size)
                seen.add("stable")
            if a > 2 / lr:
                assert got.mean_square_radius > 1 and not got.criterion, (lr, batch_size)
                seen.add("unstable")
    assert seen == {"stable", "unstable"}


def test_linear_stability_leaves_out_flat_directions():
    # Linear(3, 1) on 2 samples: 2 of the 4 directions are flat (their eigenvalue 1 keeps the
    # full map's radius at 1 or above); on the curved plane the radius is the full one where
    # that exceeds 1.
    model = gdsim.Linear(3, 1)
    X, Y = make_data(model, 2, seed=11)
    params = model.init(0)
    seen = set()
    for lr in np.geomspace(0.01, 2.0, 12):
        got = theory.linear_stability(model, params, X, Y, lr, 1)
        full = theory.mean_square_spectral_radius(model, X, lr, batch_size=1)
        assert got.curved_dim == 2
        if full > 1 + 1e-9:
            assert got.mean_square_radius == pytest.approx(full, rel=1e-6)
            seen.add("unstable")
        else:
            assert got.mean_square_radius < 1 and full == pytest.approx(1.0, abs=1e-9)
            seen.add("stable")
    assert seen == {"stable", "unstable"}


def test_linear_stability_of_an_mlp_matches_per_sample_finite_differences():
    model = gdsim.MLP((2, 3, 1), activation="tanh")
    X, Y = make_data(model, 6, seed=9)
    params = model.init(1)
    h = np.stack([fd_hessian(model, params, X[i:i + 1], Y[i:i + 1]) for i in range(6)])
    H = h.mean(axis=0)
    a = np.linalg.eigvalsh(H)[-1]
    s = np.sqrt(np.linalg.eigvalsh(np.einsum("nij,njk->ik", h, h) / 6 - H @ H)[-1])
    got = theory.linear_stability(model, params, X, Y, 0.1, 2, sampling="reshuffle")
    assert got.sharpness == pytest.approx(a, rel=1e-5) and got.non_uniformity == pytest.approx(s, rel=1e-5)
    assert got.non_uniformity_limit == pytest.approx(np.sqrt(2 * 5 / 4) / 0.1)  # sqrt(B (n-1) / (n-B)) / lr
    assert got.sharpness == pytest.approx(theory.sharpness(model, params, X, Y), rel=1e-6)


@pytest.mark.parametrize("lr_times_a", [0.5, 1.2, 1.9])
def test_linear_stability_at_an_interpolating_mlp_minimum(lr_times_a):
    # Targets the network fits exactly: params is a minimum of zero loss, where each sample's
    # Hessian is 2 j_i j_i^T (j_i the gradient of the output, here by finite differences of
    # predict). The mean-square rate on the curved subspace by iterating E[A S A^T] itself.
    model = gdsim.MLP((2, 4, 1), activation="tanh")  # 17 parameters, 5 samples: 12 flat directions
    X = np.random.default_rng(12).standard_normal((5, 2))
    params = model.init(0)
    Y = model.predict(params, X)
    J = np.empty((5, model.n_params))
    for j in range(model.n_params):
        e = np.zeros(model.n_params)
        e[j] = 1e-6
        J[:, j] = (model.predict(params + e, X) - model.predict(params - e, X))[:, 0] / 2e-6
    h = 2 * np.einsum("ni,nj->nij", J, J)
    H = h.mean(axis=0)
    lam, U = np.linalg.eigh(H)
    a = lam[-1]
    s = np.sqrt(np.linalg.eigvalsh(np.einsum("nij,njk->ik", h, h) / 5 - H @ H)[-1])
    U = U[:, lam > 1e-6 * a]
    lr = lr_times_a / a
    steps = np.eye(U.shape[1]) - lr * np.einsum("pi,npq,qj->nij", U, h, U)
    S, logs = np.eye(U.shape[1]), []
    for _ in range(4000):  # the flattest curved direction (1e-4 a) converges slowly
        S = np.einsum("nij,jk,nlk->il", steps, S, steps) / 5
        logs.append(np.log(np.trace(S)))
        S /= np.trace(S)
    expected = np.exp(np.mean(logs[3000:]))  # S is renormalised each step: logs are the growths
    got = theory.linear_stability(model, params, X, Y, lr, 1)
    assert got.curved_dim == U.shape[1] == 5
    assert got.sharpness == pytest.approx(a, rel=1e-5) and got.non_uniformity == pytest.approx(s, rel=1e-5)
    assert got.mean_square_radius == pytest.approx(expected, rel=1e-5)
