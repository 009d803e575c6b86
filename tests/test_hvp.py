"""Exact Hessian-vector products and warm-started Lanczos (gdsim.hvp) against independent dense
Hessians: complex-step differentiation of the plain-NumPy back-propagation, and Linear's closed form
(tests/naive.py), for torch's layers and for every model option (no bias, NTK, half reductions)."""

import itertools

import numba
import numpy as np
import pytest

import gdsim
from gdsim import dense, hvp, theory
from conftest import ACTIVATIONS, make_data
import naive

LOSSES = ["mse", "cross_entropy"]
REDUCTIONS = ["mean", "sum"]
# every activation on a one- and a two-hidden-layer MLP, plus Linear
ARCHS = [((3, 4, 3), a) for a in ACTIVATIONS] + [((2, 3, 4, 3), a) for a in ACTIVATIONS] + [((3, 3), "identity")]
CASES = [(s, a, loss, red) for (s, a), loss, red in itertools.product(ARCHS, LOSSES, REDUCTIONS)]
#: The layer options (layer codes STANDARD, NTK, STANDARD_NO_BIAS, NTK_NO_BIAS) and every
#: (loss, reduction) pair the models accept: the half reductions are MSE's only.
OPTIONS = [dict(bias=b, parameterization=p) for b, p in itertools.product([True, False], ["standard", "ntk"])]
LOSS_REDUCTIONS = [("mse", r) for r in ("mean", "sum", "half_mean", "half_sum")] + [
    ("cross_entropy", r) for r in ("mean", "sum")]
OPTION_CASES = [(s, a, loss, red, o) for (s, a), (loss, red), o in itertools.product(
    [((3, 4, 2), a) for a in ACTIVATIONS] + [((2, 3, 3, 2), a) for a in ACTIVATIONS] + [((3, 2), "identity")],
    LOSS_REDUCTIONS, OPTIONS)]


def option_id(case):
    sizes, activation, loss, reduction, options = case
    return (f"{'-'.join(map(str, sizes))}-{activation}-{loss}-{reduction}-"
            f"{'bias' if options['bias'] else 'nobias'}-{options['parameterization']}")


def build(sizes, activation, loss, reduction, **options):
    if len(sizes) == 2:
        return gdsim.Linear(*sizes, loss=loss, reduction=reduction, **options)
    return gdsim.MLP(sizes, activation=activation, loss=loss, reduction=reduction, **options)


def setup(sizes, activation, loss, reduction, n=7, seed=0, **options):
    """Model, data (as given and in the kernels' layout) and a point, scaled up so that
    tanh/sigmoid units leave their linear range and ReLU units are both on and off."""
    model = build(sizes, activation, loss, reduction, **options)
    X, Y = make_data(model, n=n, seed=seed)
    _, Yk = model.check_data(X, Y)
    theta = 2.0 * model.init(seed=seed + 1)
    return model, X, Y, Yk, theta


def reference_hessian(model, theta, X, Y):
    return naive.hessian(model.sizes, model.activation, model.loss_name, model.reduction, theta, X, Y,
                         bias=model.bias, parameterization=model.parameterization)


def kernel_product(model, theta, X, Yk, v, rows=None, matrices=False):
    """batch_hvp's product, or dense_hvp's (``matrices``)."""
    rows = np.arange(X.shape[0]) if rows is None else rows
    hv = np.full(model.n_params, np.nan)  # overwritten
    if matrices:
        dense.dense_hvp(theta, *model.spec[:4], X, Yk, rows, v, hv,
                        dense.new_dense_hvp_workspace(model.sizes_array, rows.shape[0]), model.layer_code)
    else:
        hvp.batch_hvp(theta, *model.spec[:4], X, Yk, rows, v, hv, hvp.new_workspace(model.sizes_array),
                      model.layer_code)
    return hv


def kernel_hessian(model, theta, X, Yk):
    return np.column_stack([kernel_product(model, theta, X, Yk, e) for e in np.eye(model.n_params)])


def relative_error(got, ref):
    return np.abs(got - ref).max() / np.abs(ref).max()


# ---------------------------------------------------------------------------------------
# Products
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("sizes, activation, loss, reduction", CASES)
def test_hvp_is_the_dense_hessian_times_v(sizes, activation, loss, reduction):
    model, X, Y, Yk, theta = setup(sizes, activation, loss, reduction)
    H = reference_hessian(model, theta, X, Y)
    assert np.abs(H).max() > 1e-3  # a Hessian worth comparing
    for seed in range(3):
        v = np.random.default_rng(seed).standard_normal(model.n_params)
        assert relative_error(kernel_product(model, theta, X, Yk, v), H @ v) < 1e-8
    assert relative_error(kernel_hessian(model, theta, X, Yk), H) < 1e-8
    # the public wrapper is the same product (scaled by max|v| and back)
    v = np.linspace(-3.0, 2.0, model.n_params)
    assert relative_error(theory.hessian_vector_product(model, theta, X, Y, v), H @ v) < 1e-8


#: The largest relative error of the option cases' products against the dense Hessian
#: (rounding: the products and the complex-step Hessian agree to ~1e-15).
OPTION_RTOL = 1e-12


@pytest.mark.parametrize("case", OPTION_CASES, ids=option_id)
def test_hvp_with_model_options_is_the_dense_hessian(case):
    # Every layer code x (loss, reduction) x activation: the NTK factor, the missing biases and
    # the half of the half reductions must all be in H, against naive.py's complex-step Hessian.
    sizes, activation, loss, reduction, options = case
    model, X, Y, Yk, theta = setup(sizes, activation, loss, reduction, **options)
    H = reference_hessian(model, theta, X, Y)
    assert np.abs(H).max() > 1e-3  # a Hessian worth comparing
    assert relative_error(kernel_hessian(model, theta, X, Yk), H) < OPTION_RTOL
    v = np.random.default_rng(0).standard_normal(model.n_params)
    assert relative_error(kernel_product(model, theta, X, Yk, v), H @ v) < OPTION_RTOL
    # the matrix products' (dense_hvp), on all rows and on rows out of order, repeated
    assert relative_error(kernel_product(model, theta, X, Yk, v, matrices=True), H @ v) < OPTION_RTOL
    rows = np.array([5, 0, 3, 3, 6])
    H_rows = naive.hessian(model.sizes, model.activation, model.loss_name, model.reduction, theta, X[rows],
                           Y[rows], bias=model.bias, parameterization=model.parameterization)
    assert relative_error(kernel_product(model, theta, X, Yk, v, rows, matrices=True), H_rows @ v) < OPTION_RTOL
    # theory's product is the same exact product (no longer finite differences for these models)
    assert relative_error(theory.hessian_vector_product(model, theta, X, Y, v), H @ v) < OPTION_RTOL


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: f"{o['bias']}-{o['parameterization']}")
@pytest.mark.parametrize("loss, reduction", LOSS_REDUCTIONS)
def test_linear_hessian_with_options_is_the_closed_form(loss, reduction, options):
    model, X, Y, Yk, theta = setup((3, 3), "identity", loss, reduction, n=9, seed=5, **options)
    H = naive.linear_hessian(loss, reduction, theta, X, Y, **options)
    assert relative_error(kernel_hessian(model, theta, X, Yk), H) < 1e-12
    assert relative_error(reference_hessian(model, theta, X, Y), H) < 1e-12  # the references agree


def test_sample_hvp_takes_the_layer_code_last():
    model, X, Y, Yk, theta = setup((2, 3, 4, 3), "tanh", "mse", "half_sum", n=4, seed=4, bias=False,
                                   parameterization="ntk")
    v = np.random.default_rng(1).standard_normal(model.n_params)
    work = hvp.new_workspace(model.sizes_array)
    hv = np.zeros(model.n_params)
    for r in range(4):
        hvp.sample_hvp(theta, *model.spec[:4], X[r], Yk[r], 0.5, v, hv, work, model.layer_code)
    assert relative_error(hv, 0.5 * reference_hessian(model, theta, X, Y) @ v) < 1e-12


@pytest.mark.parametrize("sizes, activation, loss, reduction", CASES)
def test_hessian_from_unit_products_is_symmetric(sizes, activation, loss, reduction):
    model, X, _, Yk, theta = setup(sizes, activation, loss, reduction, seed=3)
    H = kernel_hessian(model, theta, X, Yk)
    assert np.abs(H - H.T).max() <= 1e-12 * np.abs(H).max()


@pytest.mark.parametrize("loss, reduction", list(itertools.product(LOSSES, REDUCTIONS)))
def test_linear_hessian_is_the_closed_form(loss, reduction):
    model, X, Y, Yk, theta = setup((3, 3), "identity", loss, reduction, n=9, seed=5)
    H = naive.linear_hessian(loss, reduction, theta, X, Y)
    assert relative_error(kernel_hessian(model, theta, X, Yk), H) < 1e-12
    # the two references agree with each other too
    assert relative_error(reference_hessian(model, theta, X, Y), H) < 1e-12
    if loss == "mse":  # and with gdsim.theory's least-squares Hessian, block by block
        np.testing.assert_allclose(H[np.ix_([0, 1, 2, 9], [0, 1, 2, 9])], theory.hessian(model, X), rtol=1e-12)


def test_batch_hvp_is_the_hessian_of_its_rows_and_returns_their_loss():
    model, X, Y, Yk, theta = setup((3, 4, 3), "tanh", "cross_entropy", "mean", n=9, seed=2)
    rows = np.array([7, 2, 4])
    v = np.random.default_rng(0).standard_normal(model.n_params)
    H_rows = reference_hessian(model, theta, X[rows], Y[rows])
    hv = np.empty(model.n_params)
    value = hvp.batch_hvp(theta, *model.spec[:4], X, Yk, rows, v, hv, hvp.new_workspace(model.sizes_array))
    assert relative_error(hv, H_rows @ v) < 1e-8
    assert value == pytest.approx(model.loss(theta, X[rows], Y[rows]), rel=1e-14)


def test_sample_hvp_accumulates_scaled_terms():
    model, X, Y, Yk, theta = setup((2, 3, 4, 3), "sigmoid", "mse", "sum", n=4, seed=4)
    v = np.random.default_rng(1).standard_normal(model.n_params)
    work = hvp.new_workspace(model.sizes_array)
    hv = np.zeros(model.n_params)
    for r in range(4):
        hvp.sample_hvp(theta, *model.spec[:4], X[r], Yk[r], 0.5, v, hv, work)  # += 0.5 H_r v
    assert relative_error(hv, 0.5 * reference_hessian(model, theta, X, Y) @ v) < 1e-8


def test_relu_has_no_curvature_of_its_own():
    # Units on for every sample: the ReLU network is the linear one there, Hessian included.
    relu, linear = gdsim.MLP((2, 3, 1), activation="relu"), gdsim.MLP((2, 3, 1), activation="identity")
    theta = relu.pack([np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]), np.array([1.0, -5.0, 1.0]),
                       np.array([[1.0, 2.0, 3.0]]), np.array([0.5])])
    X = np.array([[1.0, 1.0], [2.0, 0.5], [0.5, 2.0]])  # unit 1 (-x0 - 5) is off for every sample
    Y = np.array([[0.3], [-0.2], [1.0]])
    on = theta.copy()
    on[7] = 5.0  # b0[1]: unit 1 on too
    np.testing.assert_allclose(kernel_hessian(relu, on, X, Y), kernel_hessian(linear, on, X, Y),
                               rtol=1e-14, atol=1e-14)
    # Moving only unit 1's incoming weights while it stays off changes nothing: H v = 0 exactly.
    v = np.zeros(relu.n_params)
    v[[2, 3, 7]] = [1.0, -2.0, 0.7]  # W0[1, :] and b0[1]
    assert np.all(kernel_product(relu, theta, X, Y, v) == 0.0)
    assert np.any(kernel_product(relu, on, X, Y, v) != 0.0)


def test_exact_and_finite_difference_products_agree():
    model, X, Y, _, theta = setup((3, 4, 3), "tanh", "mse", "mean")
    v = np.random.default_rng(2).standard_normal(model.n_params)
    exact = theory.hessian_vector_product(model, theta, X, Y, v)
    fd = theory.hessian_vector_product(model, theta, X, Y, v, eps=1e-5)
    assert 1e-13 < relative_error(fd, exact) < 1e-7  # close, and not the same computation


def test_sharpness_is_the_dense_top_eigenvalues():
    model, X, Y, _, theta = setup((3, 6, 2), "tanh", "cross_entropy", "mean", n=20, seed=6)
    assert model.n_params > 20  # the eigsh path
    top = np.linalg.eigvalsh(reference_hessian(model, theta, X, Y))[::-1]
    np.testing.assert_allclose(theory.sharpness(model, theta, X, Y, k=2, tol=0), top[:2], rtol=1e-10)


# ---------------------------------------------------------------------------------------
# Lanczos
# ---------------------------------------------------------------------------------------
def lanczos(model, theta, X, Yk, v, tol=1e-10, max_iter=500, k=20, rows=None, matrices=False):
    rows = np.arange(X.shape[0]) if rows is None else rows
    scratch = hvp.new_lanczos_workspace(model.sizes_array, model.n_params, k)
    if matrices:  # dense_hvp's products
        products = dense.new_dense_hvp_workspace(model.sizes_array, rows.shape[0])
        return hvp.lanczos_top(theta, model.spec, X, Yk, rows, v, tol, max_iter, scratch, products)
    return hvp.lanczos_top(theta, model.spec, X, Yk, rows, v, tol, max_iter, scratch)


NTK_NO_BIAS = dict(bias=False, parameterization="ntk")
LANCZOS_CASES = [((3, 4, 3), "tanh", "mse", "mean", {}), ((2, 6, 6, 3), "relu", "cross_entropy", "sum", {}),
                 ((3, 6, 2), "sigmoid", "mse", "sum", {}), ((4, 8, 3), "tanh", "cross_entropy", "mean", {}),
                 ((3, 3), "identity", "cross_entropy", "mean", {}),
                 ((3, 6, 2), "tanh", "mse", "half_mean", NTK_NO_BIAS),
                 ((2, 6, 6, 3), "relu", "cross_entropy", "sum", NTK_NO_BIAS),
                 ((4, 8, 3), "sigmoid", "mse", "half_sum", NTK_NO_BIAS)]


@pytest.mark.parametrize("matrices", [False, True], ids=["batch_hvp", "dense_hvp"])
@pytest.mark.parametrize("sizes, activation, loss, reduction, options", LANCZOS_CASES)
def test_lanczos_top_is_the_dense_top_eigenvalue(sizes, activation, loss, reduction, options, matrices):
    model, X, Y, Yk, theta = setup(sizes, activation, loss, reduction, n=12, seed=7, **options)
    values, vectors = np.linalg.eigh(reference_hessian(model, theta, X, Y))
    top, u = values[-1], vectors[:, -1]
    # cold: the default start (zeros), restarted every 20 products on the larger models
    v = np.zeros(model.n_params)
    value, cold = lanczos(model, theta, X, Yk, v, matrices=matrices)
    assert value == pytest.approx(top, rel=1e-8)
    assert abs(v @ u) == pytest.approx(1.0, abs=1e-8)  # the eigenvector written back, unit
    # warm from the exact eigenvector: converged at once
    v = u.copy()
    value, warm = lanczos(model, theta, X, Yk, v, matrices=matrices)
    assert value == pytest.approx(top, rel=1e-8) and warm <= 3
    # warm from a perturbed eigenvector: fewer products than cold
    v = u + 1e-3 * np.random.default_rng(0).standard_normal(model.n_params)
    value, nearby = lanczos(model, theta, X, Yk, v, matrices=matrices)
    assert value == pytest.approx(top, rel=1e-8) and nearby < cold


def test_lanczos_without_restart_room_is_still_exact_on_small_spaces():
    # Krylov dimension 3 on 38 parameters: restarts only, and the same answer
    model, X, Y, Yk, theta = setup((3, 6, 2), "tanh", "mse", "mean", n=12, seed=8)
    top = np.linalg.eigvalsh(reference_hessian(model, theta, X, Y)).max()
    value, used = lanczos(model, theta, X, Yk, np.ones(model.n_params), k=3, max_iter=3000)
    assert value == pytest.approx(top, rel=1e-8) and used > 20


def test_lanczos_gives_nan_for_non_finite_parameters_without_raising():
    model, X, _, Yk, theta = setup((3, 4, 3), "tanh", "mse", "mean")
    theta[0] = np.nan
    value, used = lanczos(model, theta, X, Yk, np.zeros(model.n_params))
    assert np.isnan(value) and used == 1


@pytest.mark.parametrize("reduction, options", [("mean", {}), ("half_mean", NTK_NO_BIAS)])
def test_tracked_sharpness_from_user_njit_code(reduction, options):
    """The tracked-sharpness pattern of gdsim.hvp's docstring: workspace made once, warm starts."""
    model, X, Y, Yk, theta0 = setup((3, 5, 2), "tanh", "mse", reduction, n=16, seed=9, **options)

    @numba.njit
    def gd_with_sharpness(theta, spec, X, Y, lr, steps, k):
        sizes, act, loss, red, layer_code = spec
        n_params = theta.shape[0]
        acts, deltas = gdsim.kernels.new_workspace(sizes)
        scratch = hvp.new_lanczos_workspace(sizes, n_params, k)
        v = np.zeros(n_params)
        grad = np.empty(n_params)
        rows = np.arange(X.shape[0])
        sharp = np.empty(steps)
        used = np.empty(steps, dtype=np.int64)
        for step in range(steps):
            sharp[step], used[step] = hvp.lanczos_top(theta, spec, X, Y, rows, v, 1e-8, 200, scratch)
            gdsim.kernels.batch_loss_grad(theta, sizes, act, loss, red, X, Y, rows, grad, acts, deltas, layer_code)
            theta -= lr * grad
        return sharp, used

    theta = theta0.copy()
    sharp, used = gd_with_sharpness(theta, model.spec, X, Yk, 0.05, 6, 20)
    # replay the steps with NumPy and compare every tracked value with the dense Hessian's
    ref = theta0.copy()
    for step in range(6):
        top = np.linalg.eigvalsh(reference_hessian(model, ref, X, Y)).max()
        assert sharp[step] == pytest.approx(top, rel=1e-8), step
        ref = ref - 0.05 * naive.loss_and_grad(model.sizes, "tanh", "mse", reduction, ref, X, Y, **options)[1]
    assert np.all(used[1:] < used[0])  # warm starts pay off
