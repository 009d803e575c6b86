"""Model options of the literature: no bias, the NTK parameterization, half reductions, the
initial scale; and the uv model's catapult (Lewkowycz et al. 2020).

References are independent of the kernels: central finite differences, ``tests/naive.py``
(matrix back-propagation), the closed-form NTK of the uv model. The torch trajectories of
these options are the ``opt_*`` fixtures of ``tests/test_torch_parity.py``.
"""

import itertools
import math
import os
import re
import textwrap

import numpy as np
import pytest

import gdsim
from gdsim import kernels
from gdsim.dense import dense_batch_loss_grad
from gdsim.studies import StudyError, load_study

import naive
from conftest import make_data

CUDA_SIM = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")

OPTIONS = [dict(bias=b, parameterization=p) for b, p in itertools.product([True, False], ["standard", "ntk"])]
MSE_REDUCTIONS = ["mean", "sum", "half_mean", "half_sum"]
# (sizes, activation, loss, reduction, options): a one- and a two-hidden-layer MLP and Linear, every
# option pair, every MSE reduction; cross-entropy with its two reductions.
CASES = ([(s, a, "mse", r, o) for (s, a), r, o in itertools.product(
             [((3, 4, 2), "tanh"), ((2, 3, 3, 2), "sigmoid"), ((3, 2), "identity")], MSE_REDUCTIONS, OPTIONS)]
         + [((2, 4, 3), "relu", "cross_entropy", r, o) for r, o in itertools.product(["mean", "sum"], OPTIONS)])


def build(sizes, activation, loss, reduction, options, init_scale=1.0):
    if len(sizes) == 2:
        return gdsim.Linear(*sizes, loss=loss, reduction=reduction, init_scale=init_scale, **options)
    return gdsim.MLP(sizes, activation=activation, loss=loss, reduction=reduction, init_scale=init_scale,
                     **options)


def case_id(case):
    sizes, activation, loss, reduction, options = case
    return (f"{'-'.join(map(str, sizes))}-{activation}-{loss}-{reduction}-"
            f"{'bias' if options['bias'] else 'nobias'}-{options['parameterization']}")


def central_differences(f, theta, h=1e-6):
    out = np.empty_like(theta)
    for j in range(theta.size):
        e = np.zeros_like(theta)
        e[j] = h
        out[j] = (f(theta + e) - f(theta - e)) / (2 * h)
    return out


# ---------------------------------------------------------------------------------------
# Layout, init, repr, refusals
# ---------------------------------------------------------------------------------------
def test_no_bias_layout_is_torchs():
    # nn.Sequential(nn.Linear(10, 5, bias=False), act, nn.Linear(5, 1, bias=False)).parameters():
    # the weights only, [out, in] row-major.
    model = gdsim.MLP((10, 5, 1), bias=False)
    assert model.shapes == [(5, 10), (1, 5)]
    assert model.n_params == 55
    theta = np.arange(55, dtype=float)
    W0, W1 = model.unpack(theta)
    assert W0[1, 0] == 10.0 and W1[0, 0] == 50.0
    np.testing.assert_array_equal(model.pack([W0, W1]), theta)
    assert gdsim.Linear(3, 2, bias=False).n_params == 6


def test_no_bias_forward_is_w_x():
    model = gdsim.MLP((2, 3, 1), activation="tanh", bias=False, parameterization="ntk")
    theta = model.init(0)
    W0, W1 = model.unpack(theta)
    X = np.array([[0.3, -1.2], [2.0, 0.5]])
    expected = np.tanh(X @ W0.T / np.sqrt(2)) @ W1.T / np.sqrt(3)
    np.testing.assert_allclose(model.predict(theta, X), expected, rtol=1e-14)


def test_init_scales():
    standard = gdsim.MLP((400, 25, 3))
    scaled = gdsim.MLP((400, 25, 3), init_scale=0.25)
    # standard: torch's default times init_scale, the same draws (default: unchanged bits)
    np.testing.assert_array_equal(scaled.init(3), 0.25 * standard.init(3))
    assert np.array_equal(gdsim.MLP((400, 25, 3), init_scale=1.0).init(3), standard.init(3))
    # ntk: every parameter N(0, init_scale^2)
    for scale in (1.0, 2.0):
        theta = gdsim.MLP((400, 25, 3), parameterization="ntk", init_scale=scale).init(1)
        assert theta.size == 400 * 25 + 25 + 25 * 3 + 3
        assert abs(theta.mean()) < 0.05 * scale and theta.std() == pytest.approx(scale, rel=0.03)
    no_bias = gdsim.MLP((400, 25, 3), parameterization="ntk", bias=False).init(1)
    assert no_bias.size == 400 * 25 + 25 * 3
    assert not np.any(gdsim.MLP((3, 2), init_scale=0.0).init(0))


def test_repr_names_the_options_that_are_not_torchs():
    assert repr(gdsim.MLP((3, 2, 1))) == "MLP((3, 2, 1), activation='relu', loss='mse', reduction='mean')"
    assert repr(gdsim.Linear(3, 1)) == "Linear(3, 1, loss='mse', reduction='mean')"
    model = gdsim.MLP((3, 2, 1), activation="identity", reduction="half_mean", bias=False, parameterization="ntk",
                      init_scale=0.5)
    assert repr(model) == ("MLP((3, 2, 1), activation='identity', loss='mse', reduction='half_mean', bias=False, "
                           "parameterization='ntk', init_scale=0.5)")
    assert repr(gdsim.Linear(3, 1, bias=False)) == "Linear(3, 1, loss='mse', reduction='mean', bias=False)"


@pytest.mark.parametrize("call, param, message", [
    (lambda: gdsim.MLP((2, 1), bias="no"), "bias", "bias must be True or False, got 'no'"),
    (lambda: gdsim.MLP((2, 1), parameterization="mup"), "parameterization",
     "parameterization must be one of ['ntk', 'standard'], got 'mup'"),
    (lambda: gdsim.Linear(2, 1, parameterization="NTK"), "parameterization",
     "parameterization must be one of ['ntk', 'standard'], got 'NTK' (did you mean 'ntk'?)"),
    (lambda: gdsim.MLP((2, 1), reduction="half"), "reduction",
     "reduction must be one of ['half_mean', 'half_sum', 'mean', 'sum'], got 'half' (did you mean 'half_sum'?)"),
    (lambda: gdsim.MLP((2, 2), loss="cross_entropy", reduction="half_mean"), "reduction",
     ("reduction='half_mean' halves a squared error: it needs loss='mse'; cross-entropy takes reduction 'mean' "
      "or 'sum'")),
    (lambda: gdsim.MLP((2, 1), init_scale=-1.0), "init_scale",
     "init_scale must be a finite real number >= 0, got -1.0"),
    (lambda: gdsim.MLP((2, 1), init_scale="big"), "init_scale", "init_scale must be a real number, got 'big'"),
    (lambda: gdsim.MLP((2, 1), init_scale=math.nan), "init_scale", None),
    (lambda: gdsim.MLP((2, 1), bias=False).pack([np.zeros((1, 2)), np.zeros(1)]), "arrays",
     "pack needs 1 arrays (one weight per layer, no biases), got 2"),
])
def test_bad_options_are_refused(call, param, message):
    with pytest.raises(gdsim.ParameterError) as info:
        call()
    assert info.value.param == param
    if message is not None:
        assert str(info.value) == message


# ---------------------------------------------------------------------------------------
# Gradients and losses against independent references
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_grad_matches_finite_differences_and_numpy_backprop(case):
    sizes, activation, loss, reduction, options = case
    model = build(*case)
    X, Y = make_data(model, n=5, seed=1)
    theta = model.init(seed=2)
    value, g = model.loss_and_grad(theta, X, Y)
    ref_value, ref_g = naive.loss_and_grad(sizes, activation, loss, reduction, theta, X, Y, **options)
    np.testing.assert_allclose(value, ref_value, rtol=1e-13)
    np.testing.assert_allclose(g, ref_g, rtol=1e-12, atol=1e-15)
    fd = central_differences(lambda t: model.loss(t, X, Y), theta)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)
    # per-sample gradients reduce to it
    rows = model.per_sample_grads(theta, X, Y)
    reduced = rows.mean(axis=0) if reduction in ("mean", "half_mean") else rows.sum(axis=0)
    np.testing.assert_allclose(reduced, g, rtol=1e-12, atol=1e-15)
    # the whole-batch (BLAS) kernel computes the same
    _, Yk = model.check_data(X, Y)
    dense = np.empty(model.n_params)
    dense_value = dense_batch_loss_grad(theta, *model.spec[:4], X, Yk, np.arange(5), True, dense, model.layer_code)
    np.testing.assert_allclose(dense_value, value, rtol=1e-13)
    np.testing.assert_allclose(dense, g, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_half_reductions_are_half_of_torchs(reduction):
    # The definition, checked on gdsim against gdsim: half_* = MSELoss(*) / 2, gradients too.
    half = gdsim.MLP((3, 4, 2), activation="tanh", reduction="half_" + reduction)
    full = gdsim.MLP((3, 4, 2), activation="tanh", reduction=reduction)
    X, Y = make_data(full, n=6, seed=4)
    theta = full.init(5)
    value, g = half.loss_and_grad(theta, X, Y)
    full_value, full_g = full.loss_and_grad(theta, X, Y)
    assert value == 0.5 * full_value  # a power of two: exact
    np.testing.assert_array_equal(g, 0.5 * full_g)


def test_ntk_changes_only_the_weights_scale():
    # An NTK model with weights W equals a standard model with weights W / sqrt(fan_in); the
    # bias gradient is the same, the weight gradient carries 1 / sqrt(fan_in) once more.
    ntk = gdsim.MLP((4, 9, 2), activation="relu", parameterization="ntk")
    std = gdsim.MLP((4, 9, 2), activation="relu")
    X, Y = make_data(ntk, n=5, seed=6)
    theta = ntk.init(7)
    W0, b0, W1, b1 = ntk.unpack(theta)
    converted = std.pack([W0 / 2.0, b0, W1 / 3.0, b1])
    np.testing.assert_allclose(ntk.loss(theta, X, Y), std.loss(converted, X, Y), rtol=1e-14)
    gW0, gb0, gW1, gb1 = ntk.unpack(ntk.grad(theta, X, Y))
    sW0, sb0, sW1, sb1 = std.unpack(std.grad(converted, X, Y))
    np.testing.assert_allclose(gW0, sW0 / 2.0, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gW1, sW1 / 3.0, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gb0, sb0, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gb1, sb1, rtol=1e-12, atol=1e-15)


def test_public_kernels_take_the_layer_code_last():
    model = gdsim.MLP((3, 4, 2), activation="sigmoid", reduction="half_sum", bias=False, parameterization="ntk")
    X, Y = make_data(model, n=4, seed=8)
    X, Yk = model.check_data(X, Y)
    theta = model.init(0)
    acts, deltas = model.workspace()
    grad = np.empty(model.n_params)
    value = kernels.batch_loss_grad(theta, model.sizes_array, model.activation_code, model.loss_code,
                                    model.reduction_code, X, Yk, np.arange(4), grad, acts, deltas, model.layer_code)
    ref_value, ref_g = naive.loss_and_grad(model.sizes, "sigmoid", "mse", "half_sum", theta, X, Y, bias=False,
                                           parameterization="ntk")
    assert value == pytest.approx(ref_value, rel=1e-13)
    np.testing.assert_allclose(grad, ref_g, rtol=1e-12)


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: f"{o['bias']}-{o['parameterization']}")
def test_train_follows_numpy_sgd(options):
    model = gdsim.MLP((3, 5, 2), activation="tanh", reduction="half_mean", **options)
    X, Y = make_data(model, n=9, seed=9)
    theta = model.init(1)
    result = gdsim.train(model, X, Y, gdsim.SGD(lr=0.1, momentum=0.9, nesterov=True), epochs=3, batch_size=4,
                         params0=theta, record_params=True)
    order = np.tile(np.arange(9), (3, 1))
    epoch_loss, step_loss, history = naive.train(model.sizes, "tanh", "mse", "half_mean", theta, X, Y, order, 4,
                                                 momentum=0.9, nesterov=True, lr=0.1, **options)
    np.testing.assert_allclose(result.epoch_loss, epoch_loss, rtol=1e-12)
    np.testing.assert_allclose(result.step_loss, step_loss, rtol=1e-12)
    np.testing.assert_allclose(result.params_history, history, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------------------
# Sweeps: every target equals train
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["cpu", "parallel", "cuda"])
@pytest.mark.parametrize("sizes, activation", [((2, 3, 2), "tanh"), ((1, 1), "identity")])
def test_sweep_of_no_bias_ntk_half_sum_model_equals_train(target, sizes, activation):
    if target == "cuda" and not CUDA_SIM and "CUDA_VISIBLE_DEVICES" not in os.environ:
        pytest.skip("needs NUMBA_ENABLE_CUDASIM=1 (README's test command sets it) or a GPU")
    model = gdsim.MLP(sizes, activation=activation, reduction="half_sum", bias=False, parameterization="ntk",
                      init_scale=0.7)
    X, Y = make_data(model, 5, seed=3)
    # Small on purpose (the CUDA simulator): 2 x 2 x 2 runs, some diverge.
    kw = dict(lr=[0.05, 30.0], momentum=[0.0, 0.9], seed=[0, 1], batch_size=2, epochs=3, shuffle=True,
              divergence=None)
    ds = gdsim.sweep(model, X, Y, target=target, **kw)
    assert ds.diverged.values.any() and not ds.diverged.values.all()
    for i, lr in enumerate(kw["lr"]):
        for j, momentum in enumerate(kw["momentum"]):
            for k, seed in enumerate(kw["seed"]):
                result = gdsim.train(model, X, Y, gdsim.SGD(lr=lr, momentum=momentum), epochs=3, batch_size=2,
                                     shuffle=True, seed=seed)
                assert int(ds.diverged_step.values[i, j, k]) == result.diverged_step
                # A diverging run amplifies the last bits (fused multiply-adds on the CPU, none in
                # the simulator) by its growth: 1e-12 only where the run stays bounded.
                rtol = 1e-12 if result.diverged_step < 0 else 1e-6
                loss = ds.loss.values[i, j, k]
                np.testing.assert_array_equal(np.isfinite(loss), np.isfinite(result.epoch_loss))
                finite = np.isfinite(result.epoch_loss)
                np.testing.assert_allclose(loss[finite], result.epoch_loss[finite], rtol=rtol)
                if np.all(np.isfinite(result.params)):
                    np.testing.assert_allclose(ds.params.values[i, j, k], result.params, rtol=rtol, atol=1e-300)
    assert ds.attrs["model"] == repr(model)


# ---------------------------------------------------------------------------------------
# Theory of linear models with the options
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", MSE_REDUCTIONS)
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: f"{o['bias']}-{o['parameterization']}")
def test_linear_hessian_with_options_matches_finite_differences(options, reduction):
    model = gdsim.Linear(3, 1, reduction=reduction, **options)
    X, Y = make_data(model, n=7, seed=10)
    theta = model.init(0)
    H = gdsim.theory.hessian(model, X)
    assert H.shape == ((4, 4) if options["bias"] else (3, 3))
    numeric = np.stack([central_differences(lambda t, j=j: model.grad(t, X, Y)[j], theta) for j in range(theta.size)])
    np.testing.assert_allclose(H, numeric, rtol=1e-6, atol=1e-9)
    # the critical lr 2 / L separates converging from diverging full-batch GD
    critical = gdsim.theory.gradient_descent(H).critical_lr
    ds = gdsim.sweep(model, X, Y, lr=[0.97 * critical, 1.03 * critical], epochs=400, params0=theta, target="cpu")
    assert ds.diverged.values.tolist() == [False, True]


# ---------------------------------------------------------------------------------------
# Study files
# ---------------------------------------------------------------------------------------
STUDY = """
title = "t"
figure = "heatmap"
target = "cpu"

[model]
type = "mlp"
sizes = [1, 8, 1]
activation = "identity"
reduction = "half_mean"
bias = false
parameterization = "ntk"
init_scale = 0.5

[data]
name = "random_regression"
n = 10
n_in = 1
n_out = 1

[train]
lr = [0.1, 0.2]
momentum = [0.0, 0.5]
epochs = 2
"""


def test_a_study_model_takes_the_options(tmp_path):
    path = tmp_path / "opts.toml"
    path.write_text(textwrap.dedent(STUDY))
    model = load_study(path).model
    assert (model.bias, model.parameterization, model.reduction, model.init_scale) == (False, "ntk", "half_mean", 0.5)
    path.write_text(textwrap.dedent(STUDY).replace('"ntk"', '"mup"'))
    with pytest.raises(StudyError, match=re.escape("[model]") + ".*parameterization must be one of "
                       + re.escape("['ntk', 'standard'], got 'mup'")):
        load_study(path)
    path.write_text(textwrap.dedent(STUDY).replace("bias = false", "bias = 0"))
    with pytest.raises(StudyError, match=re.escape("[model]") + ".*bias must be True or False, got 0"):
        load_study(path)


# ---------------------------------------------------------------------------------------
# The catapult of the uv model (Lewkowycz, Bahri, Dyer, Sohl-Dickstein, Gur-Ari 2020)
# ---------------------------------------------------------------------------------------
# f(x) = v . u x / sqrt(m): MLP((1, m, 1), identity, no bias, NTK), one sample x = 1, y = 0,
# loss f^2 / 2 (half_mean). GD maps f -> f (1 - lr lam + lr^2 f^2 / m) and the NTK
# lam = (|u|^2 + |v|^2) / m -> lam + lr f^2 (lr lam - 4) / m: below 2 / lam0 the loss falls
# at once; between 2 / lam0 and 4 / lam0 |f| grows until lam has dropped below 2 / lr, then
# falls (the catapult); above 4 / lam0 lam grows with |f| and the run diverges.
CATAPULT_M = 20
CATAPULT_SEED = 0


def uv_ntk(model, theta):
    """The closed form (|u|^2 + |v|^2) / m of the uv model's NTK at x = 1."""
    u, v = model.unpack(theta)  # [m, 1] and [1, m]
    return float(np.sum(u**2) + np.sum(v**2)) / model.sizes[1]


def uv_run(lr_times_lam0, epochs=300):
    model = gdsim.MLP((1, CATAPULT_M, 1), activation="identity", bias=False, parameterization="ntk",
                      reduction="half_mean")
    theta0 = model.init(CATAPULT_SEED)
    lam0 = uv_ntk(model, theta0)
    lr = lr_times_lam0 / lam0
    result = gdsim.train(model, [[1.0]], [[0.0]], gdsim.SGD(lr=lr), epochs=epochs, params0=theta0,
                         divergence="nonfinite")
    return model, theta0, lam0, lr, result


def test_uv_model_ntk_closed_form():
    model, theta0, lam0, _, _ = uv_run(1.0, epochs=1)
    # The NTK from gdsim's gradient: grad = (f - y) df/dtheta, lam = |df/dtheta|^2.
    f = model.predict(theta0, [[1.0]]).item()
    g = model.grad(theta0, [[1.0]], [[0.0]])
    assert np.dot(g, g) / f**2 == pytest.approx(lam0, rel=1e-13)
    assert 1.0 < lam0 < 3.0  # ~2 for N(0, 1) entries


def converged_part(loss):
    """The losses down to 1e-12 of the first (below that, f = v . u / sqrt(m) is the rounding
    noise of a dot product that cancels, ~1e-17, and its square wanders)."""
    assert np.any(loss < 1e-12 * loss[0])
    return loss[:np.argmax(loss < 1e-12 * loss[0]) + 1]


def test_uv_model_converges_below_2_over_lam0():
    model, _, lam0, _, result = uv_run(1.5)
    loss = result.epoch_loss
    assert not result.diverged
    assert np.all(np.diff(converged_part(loss)) < 0)  # monotone, to the minimum
    assert uv_ntk(model, result.params) == pytest.approx(lam0, rel=0.05)  # lazy: the kernel barely moves


@pytest.mark.parametrize("lr_times_lam0", [2.5, 3.0, 3.5])
def test_uv_model_catapults_between_2_and_4_over_lam0(lr_times_lam0):
    model, _, lam0, lr, result = uv_run(lr_times_lam0)
    loss = result.epoch_loss
    peak = int(np.argmax(loss))
    assert not result.diverged
    assert 0 < peak < len(loss) - 1 and loss[peak] > 100 * loss[0]  # rises far above the start...
    assert np.all(np.diff(loss[:peak + 1]) > 0)  # ...growing every step up to the peak
    assert np.all(np.isfinite(loss)) and loss[-1] < 1e-12 * loss[0]  # ...then falls to the minimum
    lam_final = uv_ntk(model, result.params)
    assert lam_final < 2.0 / lr < lam0  # it lands where GD at this lr is stable: a flatter place
    # At a minimum (f = 0) the Hessian is J^T J: its top eigenvalue, the sharpness, is the NTK.
    sharpness = gdsim.theory.sharpness(model, result.params, [[1.0]], [[0.0]], tol=0.0)
    assert sharpness == pytest.approx(lam_final, rel=1e-8)


def test_uv_model_diverges_above_4_over_lam0():
    *_, result = uv_run(4.5, epochs=100)
    loss = result.epoch_loss
    assert result.diverged and result.diverged_step < 20
    assert not np.isfinite(loss[-1])  # overflowed: the kernel grows with |f|, nothing stops it
    assert np.max(loss[np.isfinite(loss)]) > 1e100 * loss[0]


def uv_hessian(model, theta):
    """The closed-form Hessian of the uv model's loss f^2 / 2 at x = 1, y = 0: ``J J^T + f K``
    with ``J = (v, u) / sqrt(m)`` the gradient of ``f = v . u / sqrt(m)`` (u first, torch's
    order) and ``K = [[0, I], [I, 0]] / sqrt(m)`` its Hessian."""
    m = model.sizes[1]
    u, v = (w.ravel() for w in model.unpack(theta))
    f = u @ v / math.sqrt(m)
    J = np.concatenate([v, u]) / math.sqrt(m)
    K = np.block([[np.zeros((m, m)), np.eye(m)], [np.eye(m), np.zeros((m, m))]]) / math.sqrt(m)
    return np.outer(J, J) + f * K


def test_tracked_sharpness_of_the_uv_model_is_its_hessian_top_eigenvalue():
    # train(track={"sharpness": 1}) through the catapult (lr = 3 / lam0), step by step against
    # the closed-form Hessian, itself checked against naive.py's complex-step Hessian.
    model = gdsim.MLP((1, CATAPULT_M, 1), activation="identity", bias=False, parameterization="ntk",
                      reduction="half_mean")
    theta0 = model.init(CATAPULT_SEED)
    lam0 = uv_ntk(model, theta0)
    lr = 3.0 / lam0
    X, Y = np.array([[1.0]]), np.array([[0.0]])
    result = gdsim.train(model, X, Y, gdsim.SGD(lr=lr), epochs=300, params0=theta0, divergence=1e12,
                         track={"sharpness": 1, "params": 1})
    assert not result.diverged
    sharp, params = result.tracks.sharpness.values, result.tracks.params.values
    assert sharp.shape == (result.n_steps + 1,) and np.all(np.isfinite(sharp))
    for s in range(result.n_steps + 1):
        H = uv_hessian(model, params[s])
        assert sharp[s] == pytest.approx(np.linalg.eigvalsh(H)[-1], rel=1e-9), s
        if s % 25 == 0:
            dense = naive.hessian(model.sizes, "identity", "mse", "half_mean", params[s], X, Y, bias=False,
                                  parameterization="ntk")
            np.testing.assert_allclose(dense, H, rtol=1e-12, atol=1e-14 * np.abs(H).max())
    # The catapult seen in the sharpness: above 2 / lr at the start (>= lam0, the Rayleigh
    # quotient along J), below it at the minimum, where H = J J^T and the top eigenvalue is the NTK.
    assert sharp[0] >= lam0 > 2.0 / lr > sharp[-1]
    assert sharp[-1] == pytest.approx(uv_ntk(model, params[-1]), rel=1e-9)


# ---------------------------------------------------------------------------------------
# Gradient noise theory with the options
# ---------------------------------------------------------------------------------------
NTK_NO_BIAS = dict(bias=False, parameterization="ntk")


@pytest.mark.parametrize("n", [6, 40])  # fewer and more samples than the 20 parameters
def test_noise_scales_of_a_half_mean_ntk_model_match_dense_references(n):
    model = gdsim.MLP((3, 4, 2), activation="tanh", reduction="half_mean", **NTK_NO_BIAS)
    X, Y = make_data(model, n, seed=7)
    params = model.init(3)
    spec = (model.sizes, "tanh", "mse", "half_mean")
    g = np.stack([naive.loss_and_grad(*spec, params, X[i:i + 1], Y[i:i + 1], **NTK_NO_BIAS)[1] for i in range(n)])
    H = naive.hessian(*spec, params, X, Y, **NTK_NO_BIAS)
    G = g.mean(axis=0)
    sigma = (g - G).T @ (g - G) / n
    b_noise, lr_max = np.trace(H @ sigma) / (G @ H @ G), (G @ G) / (G @ H @ G)
    got = gdsim.theory.noise_scales(model, params, X, Y, batch_size=8)
    np.testing.assert_allclose(got, (np.trace(sigma) / (G @ G), b_noise, lr_max, lr_max / (1 + b_noise / 8)),
                               rtol=1e-10)
    # half of "mean"'s loss: the same noise scales (ratios), twice the learning rates
    full = gdsim.theory.noise_scales(gdsim.MLP((3, 4, 2), activation="tanh", **NTK_NO_BIAS), params, X, Y,
                                     batch_size=8)
    np.testing.assert_allclose([got.b_simple, got.b_noise, got.lr_max, got.lr_opt],
                               [full.b_simple, full.b_noise, 2 * full.lr_max, 2 * full.lr_opt], rtol=1e-12)


def test_linear_stability_of_a_half_mean_ntk_model():
    # At an interpolating minimum of a no-bias NTK MLP: the sharpness is eigvalsh of the
    # complex-step Hessian; the half loss at 2 lr is the mean loss at lr.
    model = gdsim.MLP((2, 3, 1), activation="tanh", reduction="half_mean", **NTK_NO_BIAS)
    X = np.array([[1.0, 0.5], [-0.3, 1.2], [0.7, -0.8]])
    params = model.init(4)
    Y = model.predict(params, X)  # every sample's loss is 0
    H = naive.hessian(model.sizes, "tanh", "mse", "half_mean", params, X, Y, **NTK_NO_BIAS)
    full = gdsim.MLP((2, 3, 1), activation="tanh", **NTK_NO_BIAS)
    for lr, batch_size in ((0.5, 1), (4.0, 2)):
        got = gdsim.theory.linear_stability(model, params, X, Y, 2 * lr, batch_size)
        ref = gdsim.theory.linear_stability(full, params, X, Y, lr, batch_size)
        assert got.sharpness == pytest.approx(np.linalg.eigvalsh(H)[-1], rel=1e-12)
        assert got.sharpness == pytest.approx(0.5 * ref.sharpness, rel=1e-12)
        assert got.non_uniformity == pytest.approx(0.5 * ref.non_uniformity, rel=1e-9)
        assert got.mean_square_radius == pytest.approx(ref.mean_square_radius, rel=1e-9)
        assert (got.criterion, got.curved_dim) == (ref.criterion, ref.curved_dim)


@pytest.mark.parametrize("reduction", ["sum", "half_sum"])
def test_noise_theory_refuses_sum_reductions(reduction):
    model = gdsim.MLP((2, 3, 1), activation="tanh", reduction=reduction, **NTK_NO_BIAS)
    X, Y = make_data(model, 4, seed=1)
    params = model.init(0)
    for call in (lambda: gdsim.theory.noise_scales(model, params, X, Y),
                 lambda: gdsim.theory.linear_stability(model, params, X, Y, 0.1, 2)):
        with pytest.raises(gdsim.ParameterError, match="must have reduction='mean' or 'half_mean'") as info:
            call()
        assert info.value.param == "model"
