"""Run outcomes from growth (gdsim.outcomes): against closed forms and the dense epoch map."""

import numpy as np
import pytest

import gdsim
from gdsim.outcomes import BOUNDED_ORBIT, CONVERGED, CONVERGING, DIVERGED, OSCILLATING, OUTCOMES, classify

P0 = [-10.0, -20.0]


@pytest.fixture(scope="module")
def line():
    X, Y = gdsim.datasets.tutorial_line()
    return gdsim.Linear(1, 1), X, Y, np.c_[X, np.ones(len(X))]


def epoch_map_radius(A, lr):
    """Spectral radius of per-sample SGD's epoch map in data order: the product of the
    steps' ``I - 2 lr a a^T`` (MSE mean of one sample), as dense matrices."""
    M = np.eye(A.shape[1])
    for a in A:
        M = (np.eye(A.shape[1]) - 2 * lr * np.outer(a, a)) @ M
    return np.max(np.abs(np.linalg.eigvals(M)))


@pytest.mark.parametrize("losses, outcome, rate", [
    (0.5 ** np.arange(12), CONVERGING, 0.5),
    (3.0 ** np.arange(12), DIVERGED, 3.0),
    (np.r_[1.0, np.full(11, 0.25)], CONVERGED, 1.0),
    (np.r_[1.0, np.full(11, 1e14)], BOUNDED_ORBIT, 1.0),
    (np.r_[1.0, np.tile([0.3, 0.2], 10)], OSCILLATING, None),
    (np.r_[1.0, np.tile([3e5, 2e5], 10)], BOUNDED_ORBIT, None),
    (np.r_[1.0, 0.2 + 0.1 * (-0.5) ** np.arange(20)], CONVERGING, None),  # damped oscillation
    (np.r_[1.0, 2.0 + (-1.5) ** np.arange(31) / 1e6], DIVERGED, None),  # growing oscillation, at a peak
    (np.r_[1.0, 0.5, 0.0, 0.0], CONVERGED, 0.0),
    ([1.0, 2.0, np.inf], DIVERGED, 2.0),
    ([1.0, np.nan, np.nan], DIVERGED, np.nan),
])
def test_closed_form_sequences(losses, outcome, rate):
    code, growth = classify(losses)
    assert OUTCOMES[int(code)] == OUTCOMES[outcome]
    if rate is not None:
        np.testing.assert_allclose(growth, rate, rtol=1e-12)


def test_runs_are_classified_independently_along_the_last_axis():
    losses = np.stack([0.5 ** np.arange(6), 2.0 ** np.arange(6)])
    codes, rates = classify(np.stack([losses, losses[::-1]]))
    assert codes.shape == rates.shape == (2, 2)
    np.testing.assert_array_equal(codes, [[CONVERGING, DIVERGED], [DIVERGED, CONVERGING]])
    with pytest.raises(gdsim.ParameterError, match="at least two epochs") as error:
        classify([1.0])
    assert error.value.param == "epoch_loss"


@pytest.mark.parametrize("threads", [1, 3])
def test_many_runs_split_over_threads_give_each_run_its_own_outcome(monkeypatch, threads):
    # Closed-form losses: the k-th run decays (k even) or grows (k odd) by its own factor.
    monkeypatch.setattr(gdsim.outcomes, "num_threads", lambda: threads)
    k = np.arange(3001)
    factor = np.where(k % 2, 1.5 + k / 3001, 0.5 - k / 12004)
    losses = factor[:, None] ** np.arange(21)
    codes, rates = classify(losses)
    np.testing.assert_array_equal(codes, np.where(k % 2, DIVERGED, CONVERGING))
    np.testing.assert_allclose(rates, factor, rtol=1e-12)


def test_per_sample_sgd_diverges_exactly_where_its_epoch_map_does(line):
    """Per-sample SGD in data order: from lr 0.062 the 1e6 x rule called its runs diverged,
    but the epoch map contracts up to lr 0.1265; past it the loss grows by the map's
    spectral radius squared per epoch."""
    model, X, Y, A = line
    lrs = np.array([0.03, 0.06, 0.1, 0.12, 0.126, 0.127, 0.13, 0.14])
    ds = gdsim.sweep(model, X, Y, lr=lrs, epochs=300, batch_size=1, params0=P0, target="cpu")
    radius = np.array([epoch_map_radius(A, lr) for lr in lrs])
    assert (radius[:5] < 1).all() and (radius[5:] > 1).all()
    np.testing.assert_array_equal(ds.diverged.values, radius > 1)
    np.testing.assert_array_equal(ds.outcome.values, [CONVERGED] + [BOUNDED_ORBIT] * 4 + [DIVERGED] * 3)
    np.testing.assert_allclose(ds.growth_rate.values[5:], radius[5:] ** 2, rtol=1e-4)
    # The bounded orbits were not stopped: their losses are finite to the end, far above the start.
    stable = ds.isel(lr=slice(1, 5))
    assert np.isfinite(stable.loss.values).all() and (stable.final_loss > 10 * stable.loss.isel(epoch=0)).all()
    assert (stable.diverged_step == -1).all()


def test_a_threshold_still_stops_and_marks_as_before(line):
    model, X, Y, _ = line
    ds = gdsim.sweep(model, X, Y, lr=[0.03, 0.1], epochs=20, batch_size=1, params0=P0, divergence=1e6, target="cpu")
    np.testing.assert_array_equal(ds.diverged.values, [False, True])
    assert np.isnan(ds.final_loss.values[1]) and ds.outcome.values[1] == DIVERGED  # stopped: its losses are NaN
    none = gdsim.sweep(model, X, Y, lr=[0.03, 0.1], epochs=20, batch_size=1, params0=P0, divergence=None,
                       target="cpu")
    np.testing.assert_array_equal(none.diverged.values, [False, True])  # marked at 1e6 x, not stopped
    assert np.isfinite(none.loss.values).all() and none.outcome.values[1] == BOUNDED_ORBIT


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_gradient_descent_grows_at_the_closed_form_rate(line, momentum):
    """Full-batch GD on a quadratic: past the edge ``lr > 2 (1 + beta) / L`` the loss
    grows per step by the square of the iteration matrix's spectral radius."""
    model, X, Y, A = line
    H = 2 * A.T @ A / len(X)
    lrs = np.array([0.01, 0.1, 0.119, 0.121, 0.13, 0.2])
    ds = gdsim.sweep(model, X, Y, lr=lrs, momentum=momentum, epochs=60, params0=P0, target="cpu")
    expected = []
    for lr in lrs:  # heavy ball on (theta, previous theta)
        T = np.block([[(1 + momentum) * np.eye(2) - lr * H, -momentum * np.eye(2)], [np.eye(2), np.zeros((2, 2))]])
        expected.append(np.max(np.abs(np.linalg.eigvals(T))) ** 2)
    expected = np.array(expected)
    outcome, rate = ds.outcome.values, ds.growth_rate.values
    edge = lrs > 2 * (1 + momentum) / np.linalg.eigvalsh(H).max()
    np.testing.assert_array_equal(outcome == DIVERGED, edge)
    assert set(outcome[~edge]) <= {CONVERGED, CONVERGING}
    np.testing.assert_allclose(rate[edge], expected[edge], rtol=1e-3)


def test_sgd_at_its_noise_floor_oscillates(line):
    model, X, Y, _ = line
    ds = gdsim.sweep(model, X, Y, lr=[0.01, 0.03], seed=np.arange(20), shuffle=True, epochs=200, batch_size=1,
                     params0=P0, target="cpu")
    assert (ds.outcome == OSCILLATING).all()
    np.testing.assert_allclose(ds.growth_rate.values, 1.0, atol=0.01)


def test_train_reports_the_same_outcome_as_sweep(line):
    model, X, Y, _ = line
    ds = gdsim.sweep(model, X, Y, lr=[0.03, 0.1, 0.13], epochs=300, batch_size=1, params0=P0, divergence=None)
    for lr in ds.lr.values:
        result = gdsim.train(model, X, Y, gdsim.SGD(lr=float(lr)), epochs=300, batch_size=1, params0=P0)
        assert result.outcome == OUTCOMES[int(ds.outcome.sel(lr=lr))]
        np.testing.assert_allclose(result.growth_rate, float(ds.growth_rate.sel(lr=lr)), rtol=1e-9)
        assert result.outcome in repr(result)


def test_outcome_attributes_follow_cf_flags(line):
    model, X, Y, _ = line
    ds = gdsim.sweep(model, X, Y, lr=[0.03], epochs=2, params0=P0)
    attrs = ds.outcome.attrs
    assert ds.outcome.dtype == np.int8
    assert list(attrs["flag_values"]) == list(range(5))
    assert attrs["flag_meanings"].split() == [name.replace(" ", "_") for name in OUTCOMES]
    assert ds.attrs["divergence_rule"] == "growth"


@pytest.mark.parametrize("bad, message", [("grwoth", "did you mean 'growth'"), (1.0, "number > 1"),
                                          ("none", "or None")])
def test_bad_divergence_is_refused(line, bad, message):
    model, X, Y, _ = line
    with pytest.raises(ValueError, match=message) as error:
        gdsim.sweep(model, X, Y, lr=[0.03], epochs=2, divergence=bad)
    assert error.value.param == "divergence"


@pytest.mark.parametrize("target", ["cpu", "parallel"])
def test_a_cpu_sweep_classifies_its_runs_as_classify_does(target, line):
    # The CPU targets classify each range of runs where they compute it: rows gathered from
    # interleaved groups (two batch sizes and two seeds: each group's runs every fourth
    # row), or consecutive rows (one group); the codes and rates are classify's of the losses.
    model, X, Y, _ = line
    for groups in ({"batch_size": [1, 7], "seed": [0, 1], "shuffle": True}, {"batch_size": 1}):
        ds = gdsim.sweep(model, X, Y, lr=np.geomspace(1e-3, 0.2, 70), momentum=[0.0, 0.9], epochs=9, params0=P0,
                         divergence=None, target=target, **groups)
        code, rate = classify(ds.loss.values)
        assert len(set(code.ravel())) >= 3
        np.testing.assert_array_equal(ds.outcome.values, code)
        np.testing.assert_array_equal(ds.growth_rate.values, rate)


def test_stored_critical_values_are_scipys():
    # The t test's thresholds classify reads without importing scipy.special, bit for bit
    # the values it computes; beyond them (more epochs) it asks scipy.
    from scipy.special import stdtrit

    from gdsim.outcomes import P_VALUE, T_CRITICAL

    df = np.arange(1, len(T_CRITICAL) + 1)
    assert np.array_equal(np.array(T_CRITICAL), stdtrit(df, 1 - P_VALUE / 2))


@pytest.mark.parametrize("epochs", [128, 129, 130, 400])
def test_long_runs_are_classified_on_both_sides_of_the_stored_values(epochs):
    # 129 epochs (130 losses) is the last length the stored thresholds cover.
    losses = np.r_[1.0, 0.9 ** np.arange(epochs)] * (1.0 + 1e-3 * np.cos(np.arange(epochs + 1)))
    outcome, rate = classify([losses, np.r_[1.0, np.tile([0.3, 0.2], epochs)][:epochs + 1]])
    assert list(outcome) == [CONVERGING, OSCILLATING]
    assert rate[0] == pytest.approx(0.9, rel=1e-3)
