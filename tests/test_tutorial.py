"""`gdsim tutorial`: every verdict reached and read against references written here (dense
matrices, the plain-NumPy loop of tests/naive.py), the options change the runs as they
should, bad options exit 2 naming the option, and README's sample output is the command's."""

import pathlib
import re

import naive
import numpy as np
import pytest

import gdsim
from gdsim import cli
from gdsim.tutorial import VERDICTS, run_tutorial, verdict

README = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
START = np.array([-10.0, -20.0])


@pytest.fixture(scope="module")
def line():
    """The tutorial's data, its design matrix ``A = (x, 1)`` and its least-squares optimum."""
    X, Y = gdsim.datasets.tutorial_line(0)
    A = np.c_[X, np.ones(len(X))]
    coef = np.linalg.lstsq(A, Y, rcond=None)[0]
    return X, Y, A, float(np.mean((Y - A @ coef) ** 2))


def tutorial(capsys, *argv):
    """The printout of ``gdsim tutorial ARGV`` (exit status 0)."""
    assert cli.main(["tutorial", *argv]) == 0
    return capsys.readouterr().out


def verdicts(out):
    """The verdict lines, one per run, and the theory lines."""
    lines = out.splitlines()
    return [l for l in lines if l.startswith("=> ")], [l for l in lines if l.startswith("   theory: ")]


def number(text, before):
    """The number printed right after ``before`` in ``text``."""
    return float(re.search(re.escape(before) + r"\s*([-+0-9.e]+[0-9])", text)[1])


def naive_losses(X, Y, lr, epochs, batch_size, order=None, **hyper):
    """Full-data loss before each epoch and after the last, by the plain-NumPy loop."""
    order = np.tile(np.arange(len(X)), (epochs, 1)) if order is None else order
    return naive.train((1, 1), "identity", "mse", "mean", START.copy(), X, Y, order, batch_size, lr=lr, **hyper)[0]


def epoch_map(A, lr, batch_size, order=None):
    """Plain SGD's epoch map on the error (dense): the product of ``I - lr H_batch``."""
    order = np.arange(len(A)) if order is None else order
    M = np.eye(A.shape[1])
    for start in range(0, len(A), batch_size):
        rows = A[order[start:start + batch_size]]
        M = (np.eye(A.shape[1]) - lr * 2.0 / len(rows) * rows.T @ rows) @ M
    return M


def radius(M):
    return float(np.max(np.abs(np.linalg.eigvals(M))))


def test_default_batch_gd_converges_and_per_sample_sgd_is_a_bounded_orbit(capsys, line):
    X, Y, A, optimum = line
    (gd, sgd), (gd_theory, sgd_theory) = verdicts(tutorial(capsys))
    # Batch GD: the loop's final loss is within 2 x the optimum, and GD's step map contracts.
    losses = naive_losses(X, Y, 0.1, 20, len(X))
    assert losses[-1] < 2 * optimum and np.all(np.diff(losses[10:]) < 0)
    assert gd.startswith("=> converging: ") and f"to {losses[-1]:.4g} = " in gd
    rho = radius(epoch_map(A, 0.1, len(X)))
    assert rho < 1 and number(gd_theory, "epoch-map radius") == pytest.approx(rho, rel=1e-3)
    assert 2 / np.linalg.eigvalsh(2 / len(X) * A.T @ A).max() == pytest.approx(
        number(gd_theory, "it first exceeds 1 at lr"), rel=1e-3)
    # Per-sample SGD in data order: the loss leaves 600 for ~1e14 and stays there, on a cycle the
    # epoch map contracts onto (radius < 1); single steps expand above 2 / max 2 a_i^T a_i.
    losses = naive_losses(X, Y, 0.1, 20, 1)
    assert np.all(losses[10:] > losses[0]) and 9.9e13 < losses[-1] < 1.0e14
    assert sgd.startswith("=> bounded orbit: ") and f"final loss {losses[-1]:.4g} = " in sgd
    rho = radius(epoch_map(A, 0.1, 1))
    changes = np.abs(np.diff(losses[10:]))  # the distance to the cycle shrinks x rho per epoch
    np.testing.assert_allclose(changes[1:] / changes[:-1], rho, rtol=0.02)
    assert rho < 1 and number(sgd_theory, "epoch-map radius") == pytest.approx(rho, rel=1e-3)
    step = 2 / np.max(2 * np.sum(A * A, axis=1))
    assert step < 0.1 and number(sgd_theory, "single steps expand above lr") == pytest.approx(step, rel=1e-3)
    assert gd_theory.endswith("the run agrees") and sgd_theory.endswith("the run agrees")


def test_above_two_over_L_batch_gd_diverges_by_its_radius_squared(capsys, line):
    X, Y, A, optimum = line
    (gd,), (gd_theory,) = verdicts(tutorial(capsys, "--lr", "0.2", "--batch-size", "full"))
    L = np.linalg.eigvalsh(2 / len(X) * A.T @ A).max()
    assert 0.2 > 2 / L
    assert gd.startswith("=> diverging: ")
    # The loss grows along the top eigenvector: x (1 - lr L)^2 per epoch.
    assert number(gd, "the loss grows x") == pytest.approx((1 - 0.2 * L) ** 2, rel=1e-3)
    losses = naive_losses(X, Y, 0.2, 20, len(X))
    assert f"to {losses[-1]:.4g} " in gd
    assert number(gd_theory, "epoch-map radius") == pytest.approx(abs(1 - 0.2 * L), rel=1e-3)
    assert gd_theory.endswith("the run agrees")


def test_a_small_lr_converges_slowly_and_says_how_many_more_epochs(capsys, line):
    X, Y, A, optimum = line
    (gd,), _ = verdicts(tutorial(capsys, "--lr", "0.01", "--batch-size", "full"))
    assert gd.startswith("=> converging slowly: ")
    more = int(number(gd, "needs about"))
    losses = naive_losses(X, Y, 0.01, 20 + 3 * more, len(X))
    assert losses[20] > 2 * optimum
    reached = int(np.argmax(losses <= 2 * optimum))  # the first epoch within 2 x the optimum
    assert reached > 20 and 0.5 * more <= reached - 20 <= 1.5 * more
    assert number(gd, "still") == pytest.approx(losses[20] / optimum, rel=1e-2)


def test_a_noise_floor_oscillates(capsys, line):
    X, Y, A, optimum = line
    out = tutorial(capsys, "--lr", "0.02", "--shuffle", "true", "--epochs", "40")
    (_, sgd), (_, sgd_theory) = verdicts(out)
    assert sgd.startswith("=> oscillating: ")
    # The same permutations (train's documented recipe), by the plain loop: the loss goes up and
    # down over the tail, near the optimum, and the epoch maps of these orders contract.
    rng = np.random.default_rng(np.random.SeedSequence(0).spawn(1)[0])
    order = np.stack([rng.permutation(len(X)) for _ in range(40)])
    losses = naive_losses(X, Y, 0.02, 40, 1, order)
    changes = np.diff(losses[20:])
    assert (changes > 0).any() and (changes < 0).any() and losses[20:].max() < 3 * optimum
    product = np.eye(2)
    for epoch_order in order:
        product = epoch_map(A, 0.02, 1, epoch_order) @ product
    assert np.linalg.norm(product, 2) < 1e-3
    assert "stable" in sgd_theory and sgd_theory.endswith("the run agrees: SGD's noise floor")


def test_heavy_ball_oscillates_damped(capsys, line):
    X, Y, A, optimum = line
    (gd,), (gd_theory,) = verdicts(tutorial(capsys, "--lr", "0.02", "--momentum", "0.9", "--batch-size", "full"))
    assert gd.startswith("=> oscillating: ") and gd_theory.endswith("the run agrees: a damped oscillation, dying out")
    # Heavy ball on the quadratic (torch's form): (e, buf) -> (e - lr (beta buf + H e), beta buf + H e).
    H, beta, lr = 2 / len(X) * A.T @ A, 0.9, 0.02
    step = np.block([[np.eye(2) - lr * H, -lr * beta * np.eye(2)], [H, beta * np.eye(2)]])
    rho = radius(step)
    assert rho < 1 and number(gd_theory, "epoch-map radius") == pytest.approx(rho, rel=1e-3)
    changes = np.diff(naive_losses(X, Y, lr, 20, len(X), momentum=beta)[10:])
    assert (changes > 0).any() and (changes < 0).any()  # up and down: the slow spiral of the heavy ball


def test_theory_that_grows_makes_a_far_orbit_a_divergence():
    X, _ = gdsim.datasets.tutorial_line(0)
    far = np.r_[1.0, np.tile([3e5, 2e5], 10)]  # above its start, no trend
    assert verdict(far, 0.1, stable=True, growth=0.5)[0] == "bounded orbit"
    assert verdict(far, 0.1)[0] == "bounded orbit"
    name, reason = verdict(far, 0.1, stable=False, growth=1.4)
    assert name == "diverging" and "theory grows it x1.400 per epoch" in reason
    # The same rule in a run: heavy ball, reshuffled, just above its almost-sure threshold.
    runs = run_tutorial(lr=0.02, momentum=0.9, shuffle=True, epochs=100)
    assert runs["sgd"].stable is False and runs["sgd"].verdict == "diverging"
    assert np.all(runs["sgd"].result.epoch_loss[50:] > runs["sgd"].result.epoch_loss[0])


def test_the_options_reach_the_runs(line):
    X, Y, _, _ = line
    runs = run_tutorial(lr=0.01, epochs=5, momentum=0.9, nesterov=True, batch_size=10, shuffle=True, seed=3)
    X3, Y3 = gdsim.datasets.tutorial_line(3)
    for key, size, shuffle in (("batch_gd", None, False), ("sgd", 10, True)):
        ref = gdsim.train(gdsim.Linear(1, 1), X3, Y3, gdsim.SGD(lr=0.01, momentum=0.9, nesterov=True), epochs=5,
                          batch_size=size, shuffle=shuffle, seed=3, params0=START, record_params=True)
        got = runs[key].result
        assert np.array_equal(got.epoch_loss, ref.epoch_loss) and np.array_equal(got.params_history,
                                                                                  ref.params_history)
        assert runs[key].verdict in VERDICTS
    # Nesterov's arithmetic itself, by the plain loop (data order), against the heavy ball's.
    nesterov = run_tutorial(lr=0.01, epochs=3, momentum=0.9, nesterov=True)["sgd"].result.epoch_loss
    heavy = run_tutorial(lr=0.01, epochs=3, momentum=0.9)["sgd"].result.epoch_loss
    np.testing.assert_allclose(nesterov, naive_losses(X, Y, 0.01, 3, 1, momentum=0.9, nesterov=True), rtol=1e-12)
    np.testing.assert_allclose(heavy, naive_losses(X, Y, 0.01, 3, 1, momentum=0.9), rtol=1e-12)
    assert not np.allclose(nesterov, heavy)
    # Replacement draws its indices: a different run from the permutations of the same seed.
    drawn = run_tutorial(lr=0.01, epochs=2, shuffle="replacement")["sgd"].result
    ref = gdsim.train(gdsim.Linear(1, 1), X, Y, gdsim.SGD(lr=0.01), epochs=2, batch_size=1, shuffle="replacement",
                      seed=0, params0=START)
    assert np.array_equal(drawn.epoch_loss, ref.epoch_loss)
    # Full batch in data order is batch GD itself: shown once.
    assert set(run_tutorial(epochs=2, batch_size=None)) == {"batch_gd"}


def test_the_printout_names_the_settings(capsys):
    out = tutorial(capsys, "--lr", "0.01", "--epochs", "2", "--momentum", "0.5", "--nesterov", "--batch-size", "25",
                   "--shuffle", "replacement")
    assert "SGD lr 0.01, momentum 0.5 (Nesterov); 2 epochs" in out
    assert "Mini-batch SGD (batch size 25, 4 steps per epoch, indices drawn with replacement)" in out
    assert "Lyapunov exponent" in out and "the mean square diverges above lr" in out


@pytest.mark.parametrize("argv, message", [
    (["--shuffle", "sometimes"], "argument --shuffle: expected false (or none), true (or reshuffle) or replacement"),
    (["--batch-size", "half"], "argument --batch-size: expected an integer in [1, 100] or 'full', got 'half'"),
    (["--momentum", "x"], "argument --momentum: invalid float value: 'x'"),
])
def test_bad_options_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["tutorial", *argv])
    captured = capsys.readouterr()
    assert stop.value.code == 2 and captured.out == "" and message in captured.err


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "0"], "batch_size must be an integer in [1, 100], got 0"),
    (["--batch-size", "101"], "batch_size must be an integer in [1, 100], got 101"),
    (["--nesterov"], "Nesterov momentum requires a momentum and zero dampening (got momentum=0.0, dampening=0.0)"),
    (["--momentum", "-0.5"], "Invalid momentum value: -0.5"),
    (["--lr", "0"], "lr must be > 0 here (at lr 0 nothing moves), got 0"),
])
def test_bad_values_exit_2_before_printing(argv, message, capsys):
    assert cli.main(["tutorial", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(f"gdsim tutorial: error: {message}")


def test_run_tutorial_refuses_other_shuffles(capsys):
    for bad in ("true", 1, None):
        with pytest.raises(gdsim.ParameterError, match="shuffle must be False"):
            run_tutorial(shuffle=bad)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("argv", [[], ["--shuffle", "true"]])
def test_readme_shows_the_commands_output(argv, capsys):
    command = " ".join(["$ gdsim tutorial", *argv])
    block = README.split(command + "\n", 1)[1].split("```", 1)[0]
    out = tutorial(capsys, *argv).splitlines()
    shown = [l for l in block.splitlines() if l.strip() and l.strip() != "..."]
    assert shown and all(l in out for l in shown), [l for l in shown if l not in out]


def test_readme_numbers_of_torchs_tutorial_run():
    # "SGD's loss rises to a bounded orbit at 9.98e13, single samples' losses up to 1.1e29"
    assert "to a bounded orbit at 9.98e13, single samples' losses up to 1.1e29" in " ".join(README.split())
    with np.load(pathlib.Path(__file__).parent / "fixtures" / "torch" / "tutorial_sgd.npz") as fx:
        epoch_loss, step_loss = fx["epoch_loss"], fx["step_loss"]
    assert f"{epoch_loss[-1]:.3g}" == "9.98e+13" and f"{step_loss.max():.2g}" == "1.1e+29"
    assert np.all(epoch_loss[10:] > epoch_loss[0]) and abs(epoch_loss[-1] / epoch_loss[-3] - 1) < 1e-5
