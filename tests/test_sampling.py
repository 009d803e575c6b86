"""shuffle="replacement": each epoch's n sample indices drawn i.i.d. uniformly with
replacement on the host, in gdsim.train, gdsim.sweep (every target) and study files."""

import os
import textwrap

import numpy as np
import pytest

import gdsim
import naive
from conftest import make_data
from gdsim.studies import StudyError, load_dataset, load_study, run_study
from test_studies import LINE, write
from test_sweep import CUDA_SIM, check_against_train


def numpy_draws(n, epochs, seed):
    """The documented draw, written out with NumPy alone: one call of ``integers`` on the
    child stream ``SeedSequence(seed).spawn(1)[0]``, row ``e`` is epoch ``e``."""
    child = np.random.SeedSequence(seed).spawn(1)[0]
    return np.random.default_rng(child).integers(0, n, size=(epochs, n))


# ---------------------------------------------------------------------------------------
# The draws
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("n, epochs, seed", [(1, 3, 0), (7, 5, 3), (100, 4, 2**40)])
def test_orders_are_the_documented_numpy_draws(n, epochs, seed):
    orders = gdsim.batches.batch_orders(n, epochs, "replacement", seed)
    assert orders.dtype == np.int64 and orders.shape == (epochs, n)
    np.testing.assert_array_equal(orders, numpy_draws(n, epochs, seed))


def test_orders_repeat_samples_and_do_not_reuse_the_init_stream():
    orders = gdsim.batches.batch_orders(100, 4, "replacement", 5)
    assert orders.min() >= 0 and orders.max() < 100
    # Drawn with replacement: each epoch repeats samples (about 37% are missed).
    assert all(len(np.unique(row)) < 100 for row in orders)
    assert not np.array_equal(orders[0], orders[1])
    # Not the stream of model.init(seed), nor shuffle=True's permutations of the same stream.
    assert not np.array_equal(orders, np.random.default_rng(5).integers(0, 100, size=(4, 100)))
    assert not np.array_equal(orders, gdsim.batches.batch_orders(100, 4, True, 5))
    np.testing.assert_array_equal(orders, gdsim.batches.batch_orders(100, 4, "replacement", 5))  # reproducible
    assert not np.array_equal(orders, gdsim.batches.batch_orders(100, 4, "replacement", 6))


# ---------------------------------------------------------------------------------------
# gdsim.train
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("model, n, batch_size, drop_last", [
    (gdsim.Linear(2, 1), 10, 3, False),
    (gdsim.Linear(1, 1), 8, 1, False),
    (gdsim.MLP((3, 4, 2), activation="tanh"), 10, 4, True),
    (gdsim.MLP((2, 5, 3), activation="relu", loss="cross_entropy"), 9, 2, False),
])
def test_train_is_the_numpy_loop_over_the_drawn_orders(model, n, batch_size, drop_last):
    X, Y = make_data(model, n, seed=1)
    hyper = {"lr": 0.05, "momentum": 0.8, "weight_decay": 0.01}
    epochs, seed = 3, 4
    result = gdsim.train(model, X, Y, gdsim.SGD(**hyper), epochs=epochs, batch_size=batch_size,
                         shuffle="replacement", seed=seed, drop_last=drop_last, record_params=True)
    order = numpy_draws(n, epochs, seed)
    assert any(len(np.unique(row)) < n for row in order)  # the loop does see repeated samples
    epoch_loss, step_loss, history = naive.train(model.sizes, model.activation, model.loss_name, model.reduction,
                                                 model.init(seed), X, Y, order, batch_size, drop_last, **hyper)
    assert result.n_steps == len(step_loss)
    np.testing.assert_allclose(result.epoch_loss, epoch_loss, rtol=1e-12)
    np.testing.assert_allclose(result.step_loss, step_loss, rtol=1e-12)
    np.testing.assert_allclose(result.params_history, history, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------------------
# gdsim.sweep, every target
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["cpu", "parallel"])
def test_sweep_equals_train_on_the_cpu_targets(target, tutorial):
    # Linear (1, 1) with batch size 1 takes the CPU kernel's fused per-sample loop.
    model, X, Y, p0 = tutorial
    kw = dict(epochs=3, shuffle="replacement", params0=p0)
    ds = gdsim.sweep(model, X, Y, lr=[0.001, 0.03, 0.2], momentum=[0.0, 0.9], batch_size=[1, 7], seed=[0, 9],
                     divergence=None, target=target, **kw)
    assert ds.attrs["shuffle"] == "replacement" and "drawn with replacement" in ds.attrs["random_draws"]
    check_against_train(model, X, Y, ds, **kw)
    mlp = gdsim.MLP((3, 4, 2), activation="sigmoid")
    X, Y = make_data(mlp, 11, seed=3)
    kw = dict(epochs=3, shuffle="replacement", drop_last=True)
    ds = gdsim.sweep(mlp, X, Y, lr=[0.05, 0.5], momentum=0.9, nesterov=[False, True], batch_size=[2, 4],
                     seed=[1, 2], divergence=None, target=target, **kw)
    check_against_train(mlp, X, Y, ds, **kw)


@pytest.mark.skipif(not CUDA_SIM and "CUDA_VISIBLE_DEVICES" not in os.environ,
                    reason="needs NUMBA_ENABLE_CUDASIM=1 (README's test command sets it) or a GPU")
def test_sweep_equals_train_on_cuda():
    # Tiny: the simulator runs ~0.1 ms per thread and step.
    model = gdsim.MLP((2, 3, 1), activation="tanh")
    X, Y = make_data(model, 5, seed=2)
    kw = dict(epochs=2, shuffle="replacement")
    ds = gdsim.sweep(model, X, Y, lr=[0.1, 0.5], momentum=[0.0, 0.9], batch_size=[1, 3], seed=[0, 1],
                     divergence=None, target="cuda", **kw)
    check_against_train(model, X, Y, ds, **kw)


def test_replacement_is_a_different_sweep_from_the_permutations(tutorial):
    model, X, Y, p0 = tutorial
    kw = dict(lr=0.01, batch_size=10, epochs=2, seed=[0, 1], params0=p0, target="cpu")
    specs = {s: gdsim.sweeps.check_sweep(model, X, Y, shuffle=s, **kw) for s in (False, True, "replacement")}
    assert len({spec.digest() for spec in specs.values()}) == 3  # a store of one is refused for another
    by_scheme = {s: gdsim.sweep(model, X, Y, shuffle=s, **kw) for s in specs}
    assert not np.array_equal(by_scheme[True].params.values, by_scheme["replacement"].params.values)


# ---------------------------------------------------------------------------------------
# Bad values: ParameterError naming shuffle and what it accepts
# ---------------------------------------------------------------------------------------
ACCEPTED = 'False (data order), True (a permutation per epoch)'


@pytest.mark.parametrize("value", ["replace", "yes", "Replacement", None, 2, 0.5, [0, 1]])
def test_bad_values_name_shuffle_and_the_accepted_values(value, tutorial):
    model, X, Y, p0 = tutorial
    with pytest.raises(gdsim.ParameterError) as info:
        gdsim.sweep(model, X, Y, lr=0.1, epochs=1, shuffle=value)
    assert info.value.param == "shuffle"
    assert str(info.value).startswith(f'shuffle must be {ACCEPTED} or "replacement" (n indices per epoch drawn '
                                      "with replacement) in a sweep, got ")
    with pytest.raises(gdsim.ParameterError) as info:
        gdsim.train(model, X, Y, gdsim.SGD(lr=0.1), epochs=1, shuffle=value)
    assert info.value.param == "shuffle"
    assert str(info.value).startswith(f'shuffle must be {ACCEPTED}, "replacement" (n indices per epoch drawn with '
                                      "replacement) or an integer array of shape (epochs, n) = (1, 100), got ")
    if isinstance(value, str) and value.lower().startswith("repl"):
        assert str(info.value).endswith("(did you mean 'replacement'?)")


# ---------------------------------------------------------------------------------------
# Mean-square stability of SGD with replacement, batch size 1, on the tutorial's data
# ---------------------------------------------------------------------------------------
def test_simulation_reproduces_the_mean_square_critical_lr():
    # The reference: theory.mean_square_critical_lr(Linear(1, 1), tutorial X, batch_size=1) = 0.064183.
    # Simulated with shuffle="replacement" from the tutorial's start (-10, -20), 4000 seeds: the mean over
    # seeds of |theta_k - theta*|^2 after k = 10 steps shrinks at 0.9x the critical lr and grows at 1.1x.
    #
    # Why steps, not epochs: the second-moment map's radius per step is 0.876 at 0.9x and 1.200 at 1.1x, so
    # above the threshold the *expected* squared distance grows ~1e8-fold per epoch (100 steps), but that
    # growth is carried by exponentially rare sample sequences: the typical run still converges (the median
    # below; the almost-sure threshold is higher). A finite set of seeds sees the growth of the mean only over
    # a short horizon; over whole epochs the sample mean shrinks at both learning rates (4000 seeds, 6 epochs:
    # ratios 3e-4 and 0.04). Exact expected ratios after 10 steps from this start (the affine second-moment
    # recursion of (theta - theta*, 1), in plain NumPy): 0.281 at 0.9x and 2.91 at 1.1x. The estimates over
    # ten disjoint sets of 4000 seeds (0..39999) ranged over 0.256..0.317 and 1.85..2.77 (heavy-tailed:
    # below its mean), so the bounds 0.5 and 1.25 hold with a wide margin for any seed set, not just this one.
    X, Y = gdsim.datasets.tutorial_line(0)
    model = gdsim.Linear(1, 1)
    critical = gdsim.theory.mean_square_critical_lr(model, X, batch_size=1)
    assert abs(critical - 0.064183) < 1e-6
    design = np.column_stack([X, np.ones(len(X))])
    optimum = np.linalg.lstsq(design, Y.ravel(), rcond=None)[0]  # (w*, b*), the order of Linear's parameters
    p0, steps = np.array([-10.0, -20.0]), 10
    ratios, medians = {}, {}
    for factor in (0.9, 1.1):
        distances = np.array([
            np.sum((gdsim.train(model, X, Y, gdsim.SGD(lr=factor * critical), epochs=1, batch_size=1,
                                shuffle="replacement", seed=seed, params0=p0, record_params=True).params_history
                    - optimum) ** 2, axis=1) for seed in range(4000)])  # [seed, step 0..100]
        ratios[factor] = distances[:, steps].mean() / distances[:, 0].mean()
        medians[factor] = np.median(distances[:, -1]) / distances[0, 0]
    print(f"mean squared distance after {steps} steps / initial: {ratios}; median after one epoch: {medians}")
    assert ratios[0.9] < 0.5 and ratios[1.1] > 1.25
    assert medians[0.9] < 1e-2 and medians[1.1] < 1e-2  # the typical run converges at both


# ---------------------------------------------------------------------------------------
# Study files
# ---------------------------------------------------------------------------------------
def test_a_study_with_replacement_runs_and_draws(tmp_path):
    text = 'title = "t"\nfigure = "critical_batch"\ntarget = "cpu"\n' + textwrap.dedent(LINE) + textwrap.dedent("""
        [train]
        lr = {geomspace = [0.02, 0.2, 4]}
        batch_size = [1, 10]
        seed = [0, 1]
        shuffle = "replacement"
        epochs = 5
        params0 = [-10.0, -20.0]
        divergence = "none"
        """)
    study = load_study(write(tmp_path, "drawn", text))
    assert study.spec.shuffle == "replacement"
    run_study(study, store=tmp_path / "drawn.zarr")
    ds = load_dataset(tmp_path / "drawn.zarr")
    assert ds.attrs["shuffle"] == "replacement" and "drawn with replacement" in ds.attrs["random_draws"]
    X, Y = gdsim.datasets.tutorial_line(0)
    direct = gdsim.sweep(gdsim.Linear(1, 1), X, Y, lr=np.geomspace(0.02, 0.2, 4), batch_size=[1, 10], seed=[0, 1],
                         shuffle="replacement", epochs=5, params0=[-10.0, -20.0], divergence=None, target="cpu")
    for name in ("loss", "params", "diverged_step"):
        np.testing.assert_array_equal(ds[name].values, direct[name].values)
    path = gdsim.figures.draw(study, ds, tmp_path / "drawn.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    # The train runner draws the same orders.
    by_train = run_study(load_study(write(tmp_path, "one", text.replace('figure = "critical_batch"\ntarget = "cpu"',
                                                                        'figure = "lr_batch"\nrunner = "train"')
                                          .replace("seed = [0, 1]", "seed = 1"))))
    np.testing.assert_allclose(by_train.loss.values, direct.loss.sel(seed=1).values, rtol=1e-13)


def test_a_bad_shuffle_in_a_study_names_the_key_and_the_accepted_values(tmp_path):
    path = write(tmp_path, "bad", 'title = "t"\nfigure = "lr_batch"\n' + textwrap.dedent(LINE) + textwrap.dedent("""
        [train]
        lr = [0.1, 0.2]
        batch_size = [1, 2]
        shuffle = "with_replacement"
        epochs = 1
        """))
    with pytest.raises(StudyError) as info:
        load_study(path)
    assert str(info.value) == (f'{path}: [train] shuffle: shuffle must be {ACCEPTED} or "replacement" (n indices '
                               "per epoch drawn with replacement) in a sweep, got 'with_replacement' (did you mean "
                               "'replacement'?)")
