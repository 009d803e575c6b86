"""gdsim.train: the training loop, its plan (batches, orders), divergence, and its argument checks."""

import re
import warnings

import numpy as np
import pytest

import gdsim
from conftest import make_data
from gdsim.training import use_dense_kernels
import naive


def naive_run(model, X, Y, order, batch_size, theta, drop_last=False, **hyper):
    return naive.train(model.sizes, model.activation, model.loss_name, model.reduction, theta.copy(), X, Y,
                       order, batch_size, drop_last, **hyper)


@pytest.mark.parametrize("n, batch_size, drop_last", [(10, 3, False), (10, 3, True), (10, 10, False), (10, 1, False),
                                                      (10, 4, True)])
def test_matches_numpy_loop(n, batch_size, drop_last):
    model = gdsim.MLP((3, 4, 2), activation="tanh")
    X, Y = make_data(model, n)
    hyper = {"lr": 0.05, "momentum": 0.8, "weight_decay": 0.01}
    result = gdsim.train(model, X, Y, gdsim.SGD(**hyper), epochs=3, batch_size=batch_size, shuffle=True, seed=5,
                         drop_last=drop_last, record_params=True)
    order = gdsim.batches.batch_orders(n, 3, True, 5)
    epoch_loss, step_loss, history = naive_run(model, X, Y, order, batch_size, model.init(5), drop_last, **hyper)
    steps = n // batch_size if drop_last else -(-n // batch_size)
    assert result.n_steps == 3 * steps == len(step_loss)
    np.testing.assert_allclose(result.epoch_loss, epoch_loss, rtol=1e-12)
    np.testing.assert_allclose(result.step_loss, step_loss, rtol=1e-12)
    np.testing.assert_allclose(result.params_history, history, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(result.params, result.params_history[-1])
    np.testing.assert_array_equal(result.epoch_params, result.params_history[::steps])


def test_shuffle_orders():
    data_order = gdsim.batches.batch_orders(5, 2, False, 0)
    np.testing.assert_array_equal(data_order, [[0, 1, 2, 3, 4]] * 2)
    shuffled = gdsim.batches.batch_orders(50, 3, True, 7)
    for row in shuffled:
        np.testing.assert_array_equal(np.sort(row), np.arange(50))
    assert not np.array_equal(shuffled[0], shuffled[1])  # a fresh permutation each epoch
    np.testing.assert_array_equal(shuffled, gdsim.batches.batch_orders(50, 3, True, 7))  # reproducible
    assert not np.array_equal(shuffled, gdsim.batches.batch_orders(50, 3, True, 8))


def test_explicit_order_is_used():
    model = gdsim.Linear(2, 1)
    X, Y = make_data(model, 4)
    order = np.array([[3, 2, 1, 0], [1, 3, 0, 2]])
    result = gdsim.train(model, X, Y, gdsim.SGD(lr=0.1), epochs=2, batch_size=1, shuffle=order, record_params=True)
    theta = model.init(0)
    _, step_loss, _ = naive_run(model, X, Y, order, 1, theta, lr=0.1)
    np.testing.assert_allclose(result.step_loss, step_loss, rtol=1e-13)


def test_defaults_are_full_batch_from_model_init():
    model = gdsim.MLP((2, 3, 1))
    X, Y = make_data(model, 6)
    result = gdsim.train(model, X, Y, gdsim.SGD(lr=0.1), epochs=4, seed=3)
    assert result.n_steps == 4 and result.steps_per_epoch == 1 and result.params_history is None
    # Full batch: the step's batch loss is the full-data loss before it.
    np.testing.assert_array_equal(result.step_loss, result.epoch_loss[:-1])
    assert result.epoch_loss[0] == model.loss(model.init(3), X, Y)


def test_params0_is_not_modified():
    model = gdsim.Linear(1, 1)
    X, Y = gdsim.datasets.tutorial_line()
    params0 = np.array([-10.0, -20.0])
    result = gdsim.train(model, X, Y, gdsim.SGD(lr=0.1), epochs=2, params0=params0)
    np.testing.assert_array_equal(params0, [-10.0, -20.0])
    assert not np.array_equal(result.params, params0)


def test_divergence_marked_at_the_closed_form_step():
    # One sample x = 1, y = 0: s = w + b follows s <- (1 - 4 lr) s, loss s^2 grows 9x per step at lr 1.
    # The loss before step t is 9^t, above 1e6 (x the initial loss 1) first at t = 7.
    model = gdsim.Linear(1, 1)
    X, Y = np.ones((1, 1)), np.zeros((1, 1))
    opt = gdsim.SGD(lr=1.0)
    result = gdsim.train(model, X, Y, opt, epochs=20, params0=[0.5, 0.5])
    assert result.diverged and result.diverged_step == 7
    assert result.diverged_loss == pytest.approx(9.0**7, rel=1e-12)
    assert result.step_loss[19] == pytest.approx(9.0**19, rel=1e-12)  # the run went on to the end
    # divergence sets the threshold: 9^t > 100 first at t = 3.
    assert gdsim.train(model, X, Y, opt, epochs=20, params0=[0.5, 0.5], divergence=100).diverged_step == 3


def test_overflow_is_recorded_not_raised():
    # Same map: 9^t overflows float64 first at t = 324 (9^323 ~ 1.7e308 < max ~ 1.8e308).
    model = gdsim.Linear(1, 1)
    X, Y = np.ones((1, 1)), np.zeros((1, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = gdsim.train(model, X, Y, gdsim.SGD(lr=1.0), epochs=400, params0=[0.5, 0.5],
                             divergence="nonfinite")
    assert result.diverged_step == 324 and result.diverged_loss == np.inf
    assert np.isfinite(result.step_loss[323]) and not np.isfinite(result.step_loss[-1])
    assert "diverged at step 324" in repr(result)


def test_converging_run_is_not_marked():
    model, X, Y = gdsim.Linear(1, 1), *gdsim.datasets.tutorial_line()
    result = gdsim.train(model, X, Y, gdsim.SGD(lr=0.01), epochs=5)
    assert not result.diverged and result.diverged_step == -1 and np.isnan(result.diverged_loss)
    with pytest.raises(ValueError, match="record_params=True"):
        result.epoch_params


MODEL = gdsim.Linear(2, 1)
X_OK, Y_OK = make_data(MODEL, 4)
OPT = gdsim.SGD(lr=0.1)


@pytest.mark.parametrize("call, message", [
    (lambda: gdsim.train("linear", X_OK, Y_OK, OPT, epochs=1), "model must be a gdsim.Linear or gdsim.MLP, got str"),
    (lambda: gdsim.train(MODEL, X_OK, Y_OK, {"lr": 0.1}, epochs=1), "optimizer must be a gdsim.SGD, got dict"),
    (lambda: gdsim.train(MODEL, X_OK, Y_OK, OPT, epochs=0), "epochs must be an integer in [1, inf], got 0"),
    (lambda: gdsim.train(MODEL, X_OK, Y_OK, OPT, epochs=2.0), "epochs must be an integer, got 2.0"),
    (lambda: gdsim.train(MODEL, X_OK, Y_OK, OPT, epochs=1, batch_size=5), "batch_size must be an integer in [1, 4], got 5"),
    (lambda: gdsim.train(MODEL, X_OK, Y_OK, OPT, epochs=1, batch_size=0), "batch_size must be an integer in [1, 4], got 0"),
    (lambda: gdsim.train(MODEL, X_OK, Y_OK, OPT, epochs=1, seed=-1), "seed must be an integer in [0, 9223372036854775807], got -1"),
    (lambda: gdsim.train(MODEL, X_OK, Y_OK, OPT, epochs=1, drop_last=1), "drop_last must be True or False, got 1"),
    (lambda: gdsim.train(MODEL, X_OK, Y_OK, OPT, epochs=1, record_params="no"),
     "record_params must be True or False, got 'no'"),
    (lambda: gdsim.train(MODEL, X_OK, Y_OK, OPT, epochs=1, divergence_factor=0),
     "divergence_factor must be a number > 0 (or None), got 0"),
    (lambda: gdsim.train(MODEL, X_OK, Y_OK, OPT, epochs=2, shuffle=np.zeros((2, 4), dtype=int)),
     "shuffle[0] must be a permutation of range(4) (each sample exactly once)"),
    (lambda: gdsim.train(MODEL, X_OK, Y_OK, OPT, epochs=2, shuffle=[[0, 1, 2, 3]]),
     'shuffle must be False (data order), True (a permutation per epoch), "replacement" (n indices per epoch drawn '
     "with replacement) or an integer array of shape (epochs, n) = (2, 4), got a int64 array of shape (1, 4)"),
    (lambda: gdsim.train(MODEL, X_OK, Y_OK, OPT, epochs=1, shuffle="yes"),
     'shuffle must be False (data order), True (a permutation per epoch), "replacement" (n indices per epoch drawn '
     "with replacement) or an integer array of shape (epochs, n) = (1, 4), got 'yes'"),
    (lambda: gdsim.train(MODEL, X_OK, Y_OK, OPT, epochs=1, params0=[1.0, 2.0]),
     "params0 must have shape (3,) for Linear(2, 1, loss='mse', reduction='mean'), got (2,)"),
    (lambda: gdsim.train(MODEL, X_OK, Y_OK, OPT, epochs=1, params0=[1.0, np.nan, 0.0]), "params0 contains NaN or inf"),
    (lambda: gdsim.train(MODEL, X_OK[:, :1], Y_OK, OPT, epochs=1),
     "X must have shape (n, 2) with n >= 1 for Linear(2, 1, loss='mse', reduction='mean'), got (4, 1)"),
    (lambda: gdsim.train(MODEL, np.where(np.eye(4, 2) > 0, np.nan, X_OK), Y_OK, OPT, epochs=1),
     "X contains NaN or inf (first at row 0, column 0)"),
    (lambda: gdsim.train(MODEL, X_OK, Y_OK[:3], OPT, epochs=1),
     "Y must have shape (4, 1) (rows of X, n_out), got (3, 1)"),
    (lambda: gdsim.train(MODEL, X_OK, np.full((4, 1), np.inf), OPT, epochs=1), "Y contains NaN or inf (first at row 0)"),
])
def test_bad_arguments_raise_before_any_work(call, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        call()


def test_refuses_a_params_history_that_cannot_fit_in_memory():
    model = gdsim.MLP((900, 90, 12))
    X, Y = np.zeros((2, 900)), np.zeros((2, 12))
    with pytest.raises(ValueError, match=r"a run of 20000000 steps with record_params=True needs about .* TiB of memory but only .* is available; "
                                         r"train for fewer epochs or set record_params=False"):
        gdsim.train(model, X, Y, OPT, epochs=10**7, batch_size=1, record_params=True)


# -- continuing a run from its state -------------------------------------------------------
def _same_bits(a, b):
    return np.asarray(a).tobytes() == np.asarray(b).tobytes()


@pytest.mark.parametrize("hyper, batch_size, shuffle, schedule", [
    ({"lr": 0.05}, None, False, None),                                                  # full-batch GD
    ({"lr": 0.05, "momentum": 0.9}, None, False, None),                                 # heavy ball
    ({"lr": 0.03, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.01}, 3, True, ("step", 4, 0.5)),
    ({"lr": 0.03, "momentum": 0.7, "nesterov": True}, 4, True, ("cosine", 9, 0.001)),
    ({"lr": 0.2}, 1, True, ("exponential", 0.9)),                                       # no momentum buffer
    ({"lr": 0.05, "momentum": 0.5}, 3, "replacement", None),
])
def test_n_plus_m_epochs_from_the_state_are_one_run_bit_for_bit(hyper, batch_size, shuffle, schedule):
    model = gdsim.MLP((3, 5, 2), activation="tanh")
    X, Y = make_data(model, 10)
    kw = dict(batch_size=batch_size, shuffle=shuffle, seed=7, lr_schedule=schedule)
    whole = gdsim.train(model, X, Y, gdsim.SGD(**hyper), epochs=9, record_params=True, **kw)
    first = gdsim.train(model, X, Y, gdsim.SGD(**hyper), epochs=4, **kw)
    second = gdsim.train(model, X, Y, gdsim.SGD(**hyper), epochs=5, state0=first.state, record_params=True,
                         **{k: v for k, v in kw.items() if k != "seed"})
    steps = first.n_steps
    assert _same_bits(second.params, whole.params)
    assert _same_bits(np.concatenate([first.epoch_loss, second.epoch_loss[1:]]), whole.epoch_loss)
    assert _same_bits(np.concatenate([first.step_loss, second.step_loss]), whole.step_loss)
    assert _same_bits(second.params_history, whole.params_history[steps:])
    assert (second.state.step, second.state.epoch) == (whole.state.step, whole.state.epoch) == (whole.n_steps, 9)
    assert (first.state.momentum_buffer is None) == (hyper.get("momentum", 0.0) == 0.0)
    if first.state.momentum_buffer is not None:
        assert _same_bits(second.state.momentum_buffer, whole.state.momentum_buffer)
    # without the buffer (the only way before TrainState), heavy ball does not continue the run
    if first.state.momentum_buffer is not None:
        restarted = gdsim.train(model, X, Y, gdsim.SGD(**hyper), epochs=5, params0=first.params, **kw)
        assert not np.array_equal(restarted.params, whole.params)


def test_a_continued_run_keeps_its_divergence_threshold():
    # Per-sample SGD at lr 0.8 grows the loss ~30x per epoch from 10^2.7: the run crosses
    # 1e6 x its initial loss in epoch 7. Continued after 4 epochs (loss 10^5.4), it must
    # still mark that step, which its own first loss (x 1e6 = 10^11.4) would never reach.
    model, X = gdsim.Linear(1, 1), np.linspace(-1, 1, 20)[:, None]
    Y, opt = 3 * X + 1, gdsim.SGD(lr=0.8)
    whole = gdsim.train(model, X, Y, opt, epochs=10, batch_size=1, params0=[-10.0, -20.0])
    first = gdsim.train(model, X, Y, opt, epochs=4, batch_size=1, params0=[-10.0, -20.0])
    second = gdsim.train(model, X, Y, opt, epochs=6, batch_size=1, state0=first.state)
    assert whole.diverged and not first.diverged
    assert second.diverged_step + first.n_steps == whole.diverged_step
    assert second.state.initial_loss == whole.state.initial_loss == whole.epoch_loss[0]


def test_state0_is_checked():
    model = gdsim.MLP((3, 4, 2))
    X, Y = make_data(model, 6)
    state = gdsim.train(model, X, Y, gdsim.SGD(lr=0.1), epochs=1, seed=3).state
    with pytest.raises(gdsim.ParameterError, match="state0 must be a TrainState"):
        gdsim.train(model, X, Y, gdsim.SGD(lr=0.1), epochs=1, state0={"params": state.params})
    with pytest.raises(gdsim.ParameterError, match="params0 .* or state0 .*, not both"):
        gdsim.train(model, X, Y, gdsim.SGD(lr=0.1), epochs=1, state0=state, params0=state.params)
    with pytest.raises(gdsim.ParameterError, match=r"seed must be state0's seed \(3\)"):
        gdsim.train(model, X, Y, gdsim.SGD(lr=0.1), epochs=1, state0=state, seed=4)
    with pytest.raises(gdsim.ParameterError, match="state0.params"):
        gdsim.train(gdsim.MLP((3, 5, 2)), X, Y, gdsim.SGD(lr=0.1), epochs=1, state0=state)
    assert "epoch 1" in repr(state) and "no momentum buffer" in repr(state)


# -- observables tracked in the loop ---------------------------------------------------------
def test_tracks_match_a_numpy_loop():
    model = gdsim.MLP((3, 4, 2), activation="tanh")
    X, Y = make_data(model, 10)
    hyper = {"lr": 0.05, "momentum": 0.8}
    every = {"loss": 3, "grad_norm": 2, "batch_loss": 1, "batch_grad_norm": 4, "params": 5}
    result = gdsim.train(model, X, Y, gdsim.SGD(**hyper), epochs=3, batch_size=3, shuffle=True, seed=5,
                         track=every)
    order = gdsim.batches.batch_orders(10, 3, True, 5)
    _, step_loss, history = naive_run(model, X, Y, order, 3, model.init(5), **hyper)
    n_steps = len(step_loss)  # 12: every period divides it or not
    tracks = result.tracks
    for name, k in every.items():
        at = np.arange(0, n_steps + (not name.startswith("batch")), k)
        got = tracks[name].sel(step=at).values
        assert not np.isnan(got).any()
        others = tracks[name].drop_sel(step=at).values
        assert np.isnan(others).all()  # nothing where it is not due
        if name == "params":
            np.testing.assert_allclose(got, history[at], rtol=1e-12, atol=1e-15)
        elif name == "loss":
            want = [naive.loss_and_grad(model.sizes, model.activation, model.loss_name, model.reduction,
                                        history[s], X, Y)[0] for s in at]
            np.testing.assert_allclose(got, want, rtol=1e-12)
        elif name == "grad_norm":
            want = [np.linalg.norm(naive.loss_and_grad(model.sizes, model.activation, model.loss_name,
                                                       model.reduction, history[s], X, Y)[1]) for s in at]
            np.testing.assert_allclose(got, want, rtol=1e-12)
        elif name == "batch_loss":
            np.testing.assert_allclose(got, step_loss[at], rtol=1e-12)
        else:  # batch_grad_norm: the batch's own gradient, at the parameters before the step
            rows = [order[s // 4, 3 * (s % 4):3 * (s % 4) + 3] for s in at]
            want = [np.linalg.norm(naive.loss_and_grad(model.sizes, model.activation, model.loss_name,
                                                       model.reduction, history[s], X[r], Y[r])[1])
                    for s, r in zip(at, rows)]
            np.testing.assert_allclose(got, want, rtol=1e-12)
    assert tracks.loss.attrs["every"] == 3 and tracks.sizes["param"] == model.n_params
    # tracking changes nothing else
    plain = gdsim.train(model, X, Y, gdsim.SGD(**hyper), epochs=3, batch_size=3, shuffle=True, seed=5)
    assert plain.tracks is None and _same_bits(plain.params, result.params)


def test_track_is_checked():
    model = gdsim.MLP((3, 4, 2))
    X, Y = make_data(model, 6)
    opt = gdsim.SGD(lr=0.1)
    with pytest.raises(gdsim.ParameterError, match="track must be a dict"):
        gdsim.train(model, X, Y, opt, epochs=1, track=["loss"])
    with pytest.raises(gdsim.ParameterError, match="unknown observable 'los'.*did you mean 'loss'"):
        gdsim.train(model, X, Y, opt, epochs=1, track={"los": 1})
    with pytest.raises(gdsim.ParameterError, match=r"track\['loss'\] must be an integer in \[1, inf\], got 0"):
        gdsim.train(model, X, Y, opt, epochs=1, track={"loss": 0})


@pytest.mark.parametrize("reduction, options", [("mean", {}), ("half_sum", dict(bias=False, parameterization="ntk")),
                                                ("half_mean", dict(parameterization="ntk"))])
def test_tracked_sharpness_and_noise_scales_match_dense_matrices(reduction, options):
    # Dense references: the complex-step Hessian of the NumPy back-propagation (tests/naive.py)
    # and NumPy's own per-sample gradients, at the parameters the run records; torch's layers
    # and the options (no bias, NTK, half reductions).
    model = gdsim.MLP((3, 5, 2), activation="tanh", reduction=reduction, **options)
    X, Y = make_data(model, 8)
    every = {"sharpness": 3, "batch_sharpness": 2, "noise_scale": 4, "params": 1}
    result = gdsim.train(model, X, Y, gdsim.SGD(lr=0.1, momentum=0.5), epochs=3, batch_size=4, shuffle=True,
                         seed=2, track=every)
    order = gdsim.batches.batch_orders(8, 3, True, 2)
    tracks = result.tracks
    spec = (model.sizes, model.activation, model.loss_name, model.reduction)

    def hessian(theta, rows):
        return naive.hessian(*spec, theta, X[rows], Y[rows], **options)

    for s in range(0, result.n_steps + 1):
        theta = tracks.params.sel(step=s).values
        if s % 3 == 0:
            top = np.linalg.eigvalsh(hessian(theta, np.arange(8))).max()
            np.testing.assert_allclose(tracks.sharpness.sel(step=s), top, rtol=1e-9)
        if s % 2 == 0 and s < result.n_steps:
            rows = order[s // 2, 4 * (s % 2):4 * (s % 2) + 4]
            top = np.linalg.eigvalsh(hessian(theta, rows)).max()
            np.testing.assert_allclose(tracks.batch_sharpness.sel(step=s), top, rtol=1e-9)
        if s % 4 == 0:
            own = np.stack([naive.loss_and_grad(*spec, theta, X[i:i + 1], Y[i:i + 1], **options)[1]
                            for i in range(8)])
            G = own.mean(axis=0)
            S = (own - G).T @ (own - G) / 8
            H = hessian(theta, np.arange(8))
            np.testing.assert_allclose(tracks.b_simple.sel(step=s), np.trace(S) / (G @ G), rtol=1e-9)
            np.testing.assert_allclose(tracks.b_noise.sel(step=s), np.trace(H @ S) / (G @ H @ G), rtol=1e-9)
    assert tracks.b_noise.attrs["every"] == 4 and np.isnan(tracks.b_noise.sel(step=1))


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_tracked_sharpness_on_the_matrix_path_matches_dense_matrices(loss):
    # Layers wide enough for train's matrix path: the sharpness' products are dense_hvp's.
    model = gdsim.MLP((32, 32, 2), activation="tanh", loss=loss)
    assert use_dense_kernels(model, 8)
    X, Y = make_data(model, 16)
    result = gdsim.train(model, X, Y, gdsim.SGD(lr=0.1), epochs=2, batch_size=8, shuffle=True, seed=3,
                         track={"sharpness": 2, "batch_sharpness": 3, "noise_scale": 4, "params": 1})
    order = gdsim.batches.batch_orders(16, 2, True, 3)
    spec = (model.sizes, model.activation, model.loss_name, model.reduction)
    tracks = result.tracks
    for s in (0, 2, 3, 4):
        theta = tracks.params.sel(step=s).values
        if s % 2 == 0:
            H = naive.hessian(*spec, theta, X, Y)
            np.testing.assert_allclose(tracks.sharpness.sel(step=s), np.linalg.eigvalsh(H).max(), rtol=1e-9)
        if s % 4 == 0:  # the noise scales' products too
            own = np.stack([naive.loss_and_grad(*spec, theta, X[i:i + 1], Y[i:i + 1])[1] for i in range(16)])
            G = own.mean(axis=0)
            S = (own - G).T @ (own - G) / 16
            np.testing.assert_allclose(tracks.b_noise.sel(step=s), np.trace(H @ S) / (G @ H @ G), rtol=1e-9)
        if s == 3:
            rows = order[1, 8:]
            top = np.linalg.eigvalsh(naive.hessian(*spec, theta, X[rows], Y[rows])).max()
            np.testing.assert_allclose(tracks.batch_sharpness.sel(step=s), top, rtol=1e-9)
