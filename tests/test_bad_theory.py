"""gdsim.theory refuses every bad argument with a ParameterError naming it, and answers valid
but extreme ones (1e308, 1e-300, 5e-324) with a finite value or inf, never NaN and never a
warning. Expected values come from closed forms, not from gdsim."""

import math
import warnings

import numpy as np
import pytest

import gdsim
from gdsim import theory
from gdsim._validate import ParameterError

X, Y = gdsim.datasets.tutorial_line()
LINE = gdsim.Linear(1, 1)
P0 = np.array([-10.0, -20.0])
MLP = gdsim.MLP((2, 3, 1))
XM = np.random.default_rng(0).normal(size=(6, 2))
YM = np.random.default_rng(1).normal(size=(6, 1))
PM = MLP.init(0)
ONES = np.ones(MLP.n_params)
BIG = 1e308


def line_hessian(x):
    """``2/n sum_i (x_i, 1)(x_i, 1)^T``, the MSE Hessian of ``w x + b``, written out."""
    x = np.ravel(x)
    return 2.0 / x.size * np.array([[np.sum(x * x), np.sum(x)], [np.sum(x), x.size]])


L_LINE = float(np.linalg.eigvalsh(line_hessian(X)).max())


def quietly(call):
    """``call()`` and the warnings it emitted (all of them, every time)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return call(), caught
        except Exception as error:  # noqa: BLE001 - handed back for the caller to check
            return error, caught


# ---------------------------------------------------------------------------------------
# Bad arguments: ParameterError naming the argument, no warning
# ---------------------------------------------------------------------------------------
BAD = {
    # critical_lr
    "critical_lr-L-negative": (lambda: theory.critical_lr(-4, 0.5), "L"),
    "critical_lr-L-nan": (lambda: theory.critical_lr(np.nan, 0.5), "L"),
    "critical_lr-L-inf": (lambda: theory.critical_lr(np.inf), "L"),
    "critical_lr-L-zero": (lambda: theory.critical_lr(0.0), "L"),
    "critical_lr-L-bool": (lambda: theory.critical_lr(True), "L"),
    "critical_lr-L-string": (lambda: theory.critical_lr("4"), "L"),
    "critical_lr-L-None": (lambda: theory.critical_lr(None), "L"),
    "critical_lr-L-complex": (lambda: theory.critical_lr(4 + 0j), "L"),
    "critical_lr-L-empty": (lambda: theory.critical_lr([]), "L"),
    "critical_lr-L-array-entry": (lambda: theory.critical_lr([1.0, -2.0]), "L"),
    "critical_lr-L-huge-int": (lambda: theory.critical_lr(2**1024), "L"),
    "critical_lr-momentum-one": (lambda: theory.critical_lr(4.0, 1.0), "momentum"),
    "critical_lr-momentum-negative": (lambda: theory.critical_lr(4.0, -0.1), "momentum"),
    "critical_lr-momentum-nan": (lambda: theory.critical_lr(4.0, np.nan), "momentum"),
    "critical_lr-momentum-bool": (lambda: theory.critical_lr(4.0, True), "momentum"),
    "critical_lr-momentum-huge-int": (lambda: theory.critical_lr(4.0, 2**1024), "momentum"),
    "critical_lr-dampening-two": (lambda: theory.critical_lr(4.0, 0.5, dampening=2.0), "dampening"),
    "critical_lr-dampening-one": (lambda: theory.critical_lr(4.0, 0.5, dampening=1.0), "dampening"),
    "critical_lr-dampening-inf": (lambda: theory.critical_lr(4.0, 0.5, dampening=np.inf), "dampening"),
    "critical_lr-dampening-underflow": (lambda: theory.critical_lr(BIG, 0.5, dampening=-BIG), "dampening"),
    "critical_lr-weight_decay-negative": (lambda: theory.critical_lr(4.0, weight_decay=-1.0), "weight_decay"),
    "critical_lr-weight_decay-nan": (lambda: theory.critical_lr(4.0, weight_decay=np.nan), "weight_decay"),
    "critical_lr-nesterov-string": (lambda: theory.critical_lr(4.0, 0.5, nesterov="yes"), "nesterov"),
    "critical_lr-nesterov-int": (lambda: theory.critical_lr(4.0, 0.5, nesterov=1), "nesterov"),
    "critical_lr-nesterov-dampening": (lambda: theory.critical_lr(4.0, 0.5, dampening=0.1, nesterov=True),
                                       "nesterov"),
    "critical_lr-shapes": (lambda: theory.critical_lr([1.0, 2.0], [0.1, 0.2, 0.3]), "momentum"),
    # polyak
    "polyak-L-inf": (lambda: theory.polyak(np.inf, 1.0), "L"),
    "polyak-L-nan": (lambda: theory.polyak(np.nan, 1.0), "L"),
    "polyak-L-zero": (lambda: theory.polyak(0.0, 1e-3), "L"),
    "polyak-L-string": (lambda: theory.polyak("4", 1.0), "L"),
    "polyak-L-bool": (lambda: theory.polyak(True, 0.5), "L"),
    "polyak-L-array": (lambda: theory.polyak([4.0], 1.0), "L"),
    "polyak-mu-zero": (lambda: theory.polyak(4.0, 0.0), "mu"),
    "polyak-mu-nan": (lambda: theory.polyak(4.0, np.nan), "mu"),
    "polyak-mu-None": (lambda: theory.polyak(4.0, None), "mu"),
    "polyak-mu-complex": (lambda: theory.polyak(4.0, 1j), "mu"),
    "polyak-mu-above-L": (lambda: theory.polyak(1.0, 2.0), "mu"),
    # gradient_descent
    "gradient_descent-inf": (lambda: theory.gradient_descent([np.inf, 1.0]), "H"),
    "gradient_descent-nan": (lambda: theory.gradient_descent([[np.nan, 0.0], [0.0, 1.0]]), "H"),
    "gradient_descent-empty": (lambda: theory.gradient_descent([]), "H"),
    "gradient_descent-asymmetric": (lambda: theory.gradient_descent([[1.0, 2.0], [0.0, 1.0]]), "H"),
    "gradient_descent-not-square": (lambda: theory.gradient_descent(np.zeros((2, 3))), "H"),
    "gradient_descent-3d": (lambda: theory.gradient_descent(np.ones((2, 2, 2))), "H"),
    "gradient_descent-complex": (lambda: theory.gradient_descent(np.eye(2, dtype=complex)), "H"),
    "gradient_descent-string": (lambda: theory.gradient_descent("abc"), "H"),
    "gradient_descent-None": (lambda: theory.gradient_descent(None), "H"),
    "gradient_descent-bools": (lambda: theory.gradient_descent([True, False]), "H"),
    "gradient_descent-ragged": (lambda: theory.gradient_descent([[1.0], [1.0, 2.0]]), "H"),
    "gradient_descent-no-positive": (lambda: theory.gradient_descent([0.0, -1.0]), "H"),
    "gradient_descent-eigenvalue-overflow": (lambda: theory.gradient_descent([[BIG, BIG], [BIG, BIG]]), "H"),
    # spectral_radius
    "spectral_radius-lr-negative": (lambda: theory.spectral_radius(-0.1, [4.0]), "lr"),
    "spectral_radius-lr-nan": (lambda: theory.spectral_radius(np.nan, [4.0]), "lr"),
    "spectral_radius-lr-inf": (lambda: theory.spectral_radius(np.inf, [4.0]), "lr"),
    "spectral_radius-lr-string": (lambda: theory.spectral_radius("0.1", [4.0]), "lr"),
    "spectral_radius-eigenvalues-nan": (lambda: theory.spectral_radius(0.1, [np.nan]), "eigenvalues"),
    "spectral_radius-eigenvalues-inf": (lambda: theory.spectral_radius(0.1, [np.inf]), "eigenvalues"),
    "spectral_radius-eigenvalues-empty": (lambda: theory.spectral_radius(0.1, []), "eigenvalues"),
    "spectral_radius-eigenvalues-string": (lambda: theory.spectral_radius(0.1, "abc"), "eigenvalues"),
    "spectral_radius-eigenvalues-asymmetric": (lambda: theory.spectral_radius(0.1, [[1.0, 2.0], [0.0, 1.0]]),
                                               "eigenvalues"),
    "spectral_radius-momentum-negative": (lambda: theory.spectral_radius(0.1, [4.0], -0.5), "momentum"),
    "spectral_radius-dampening-nan": (lambda: theory.spectral_radius(0.1, [4.0], 0.5, dampening=np.nan),
                                      "dampening"),
    "spectral_radius-weight_decay-negative": (lambda: theory.spectral_radius(0.1, [4.0], weight_decay=-1.0),
                                              "weight_decay"),
    "spectral_radius-nesterov-None": (lambda: theory.spectral_radius(0.1, [4.0], 0.5, nesterov=None), "nesterov"),
    "spectral_radius-shapes": (lambda: theory.spectral_radius([0.1, 0.2], [4.0], [0.1, 0.2, 0.3]), "momentum"),
    # companion
    "companion-lr-string": (lambda: theory.companion("a", 4.0), "lr"),
    "companion-lr-negative": (lambda: theory.companion(-1.0, 4.0), "lr"),
    "companion-lam-nan": (lambda: theory.companion(0.1, np.nan), "lam"),
    "companion-lam-complex": (lambda: theory.companion(0.1, 1j), "lam"),
    "companion-momentum-negative": (lambda: theory.companion(0.1, 4.0, momentum=-1.0), "momentum"),
    "companion-dampening-inf": (lambda: theory.companion(0.1, 4.0, 0.5, dampening=np.inf), "dampening"),
    "companion-nesterov-string": (lambda: theory.companion(0.1, 4.0, nesterov="yes"), "nesterov"),
    "companion-shapes": (lambda: theory.companion([0.1, 0.2], [1.0, 2.0, 3.0]), "lam"),
    # hessian
    "hessian-model-mlp": (lambda: theory.hessian(gdsim.MLP((1, 3, 1)), X), "model"),
    "hessian-model-None": (lambda: theory.hessian(None, X), "model"),
    "hessian-X-complex": (lambda: theory.hessian(LINE, X + 0j), "X"),
    "hessian-X-inf": (lambda: theory.hessian(LINE, [[np.inf]]), "X"),
    "hessian-X-overflow": (lambda: theory.hessian(LINE, np.full((3, 1), 1e200)), "X"),
    "hessian-X-empty": (lambda: theory.hessian(LINE, np.zeros((0, 1))), "X"),
    # epoch_spectral_radius
    "epoch_spectral_radius-lr-negative": (lambda: theory.epoch_spectral_radius(LINE, X, -0.1), "lr"),
    "epoch_spectral_radius-lr-None": (lambda: theory.epoch_spectral_radius(LINE, X, None), "lr"),
    "epoch_spectral_radius-lr-array": (lambda: theory.epoch_spectral_radius(LINE, X, [0.1, 0.2]), "lr"),
    "epoch_spectral_radius-momentum-nan": (lambda: theory.epoch_spectral_radius(LINE, X, 0.1, momentum=np.nan),
                                           "momentum"),
    "epoch_spectral_radius-dampening-string": (
        lambda: theory.epoch_spectral_radius(LINE, X, 0.1, momentum=0.5, dampening="a"), "dampening"),
    "epoch_spectral_radius-weight_decay-inf": (
        lambda: theory.epoch_spectral_radius(LINE, X, 0.1, weight_decay=np.inf), "weight_decay"),
    "epoch_spectral_radius-batch_size-zero": (lambda: theory.epoch_spectral_radius(LINE, X, 0.1, batch_size=0),
                                              "batch_size"),
    "epoch_spectral_radius-batch_size-above-n": (
        lambda: theory.epoch_spectral_radius(LINE, X, 0.1, batch_size=101), "batch_size"),
    "epoch_spectral_radius-batch_size-float": (lambda: theory.epoch_spectral_radius(LINE, X, 0.1, batch_size=2.0),
                                               "batch_size"),
    "epoch_spectral_radius-batch_size-bool": (lambda: theory.epoch_spectral_radius(LINE, X, 0.1, batch_size=True),
                                              "batch_size"),
    "epoch_spectral_radius-order-repeats": (
        lambda: theory.epoch_spectral_radius(LINE, X, 0.1, order=np.zeros(100, int)), "order"),
    "epoch_spectral_radius-order-ragged": (
        lambda: theory.epoch_spectral_radius(LINE, X[:3], 0.1, order=[[0], [1, 2]]), "order"),
    "epoch_spectral_radius-order-floats": (
        lambda: theory.epoch_spectral_radius(LINE, X[:3], 0.1, order=[0.0, 1.0, 2.0]), "order"),
    "epoch_spectral_radius-drop_last-string": (
        lambda: theory.epoch_spectral_radius(LINE, X, 0.1, drop_last="yes"), "drop_last"),
    "epoch_spectral_radius-nesterov-string": (
        lambda: theory.epoch_spectral_radius(LINE, X, 0.1, momentum=0.5, nesterov="no"), "nesterov"),
    "epoch_spectral_radius-X-nan": (lambda: theory.epoch_spectral_radius(LINE, [[1.0], [np.nan]], 0.1), "X"),
    "epoch_spectral_radius-X-shape": (lambda: theory.epoch_spectral_radius(LINE, np.ones((3, 2)), 0.1), "X"),
    "epoch_spectral_radius-model-mlp": (lambda: theory.epoch_spectral_radius(MLP, XM, 0.1), "model"),
    # mean_square_spectral_radius
    "mean_square_spectral_radius-lr-inf": (lambda: theory.mean_square_spectral_radius(LINE, X, np.inf), "lr"),
    "mean_square_spectral_radius-batch_size-huge": (
        lambda: theory.mean_square_spectral_radius(LINE, X, 0.1, batch_size=10**400), "batch_size"),
    "mean_square_spectral_radius-momentum-list": (
        lambda: theory.mean_square_spectral_radius(LINE, X, 0.1, momentum=[0.1]), "momentum"),
    "mean_square_spectral_radius-model-wide": (
        lambda: theory.mean_square_spectral_radius(gdsim.Linear(40, 1), np.ones((3, 40)), 0.1), "model"),
    # epoch_critical_lr, mean_square_critical_lr, step_critical_lr
    "epoch_critical_lr-rtol-zero": (lambda: theory.epoch_critical_lr(LINE, X, rtol=0.0), "rtol"),
    "epoch_critical_lr-rtol-negative": (lambda: theory.epoch_critical_lr(LINE, X, rtol=-1.0), "rtol"),
    "epoch_critical_lr-rtol-nan": (lambda: theory.epoch_critical_lr(LINE, X, rtol=np.nan), "rtol"),
    "epoch_critical_lr-rtol-complex": (lambda: theory.epoch_critical_lr(LINE, X, rtol=1j), "rtol"),
    "epoch_critical_lr-rtol-string": (lambda: theory.epoch_critical_lr(LINE, X, rtol="a"), "rtol"),
    "epoch_critical_lr-rtol-one": (lambda: theory.epoch_critical_lr(LINE, X, rtol=1.0), "rtol"),
    "epoch_critical_lr-momentum-one": (lambda: theory.epoch_critical_lr(LINE, X, momentum=1.0), "momentum"),
    "epoch_critical_lr-momentum-array": (lambda: theory.epoch_critical_lr(LINE, X, momentum=[0.1, 0.2]),
                                         "momentum"),
    "epoch_critical_lr-dampening-one": (lambda: theory.epoch_critical_lr(LINE, X, momentum=0.5, dampening=1.0),
                                        "dampening"),
    "mean_square_critical_lr-rtol-zero": (lambda: theory.mean_square_critical_lr(LINE, X, rtol=0.0), "rtol"),
    "mean_square_critical_lr-batch_size-zero": (lambda: theory.mean_square_critical_lr(LINE, X, batch_size=0),
                                                "batch_size"),
    "mean_square_critical_lr-dampening-above-one": (
        lambda: theory.mean_square_critical_lr(LINE, X, momentum=0.5, dampening=1.5), "dampening"),
    "step_critical_lr-batch_size-zero": (lambda: theory.step_critical_lr(LINE, X, batch_size=0), "batch_size"),
    "step_critical_lr-order-short": (lambda: theory.step_critical_lr(LINE, X, order=[0, 1]), "order"),
    "step_critical_lr-drop_last-None": (lambda: theory.step_critical_lr(LINE, X, drop_last=None), "drop_last"),
    "step_critical_lr-X-None": (lambda: theory.step_critical_lr(LINE, None), "X"),
    # hessian_vector_product
    "hessian_vector_product-v-one-entry": (lambda: theory.hessian_vector_product(LINE, P0, X, Y, [1.0]), "v"),
    "hessian_vector_product-v-three-entries": (
        lambda: theory.hessian_vector_product(LINE, P0, X, Y, [1.0, 0.0, 0.0]), "v"),
    "hessian_vector_product-v-scalar": (lambda: theory.hessian_vector_product(LINE, P0, X, Y, 0.0), "v"),
    "hessian_vector_product-v-nan": (lambda: theory.hessian_vector_product(LINE, P0, X, Y, [np.nan, 0.0]), "v"),
    "hessian_vector_product-v-complex": (lambda: theory.hessian_vector_product(LINE, P0, X, Y, [1j, 0.0]), "v"),
    "hessian_vector_product-v-string": (lambda: theory.hessian_vector_product(LINE, P0, X, Y, "ab"), "v"),
    "hessian_vector_product-eps-zero": (lambda: theory.hessian_vector_product(LINE, P0, X, Y, [1.0, 0.0], eps=0),
                                        "eps"),
    "hessian_vector_product-eps-nan": (
        lambda: theory.hessian_vector_product(LINE, P0, X, Y, [1.0, 0.0], eps=np.nan), "eps"),
    "hessian_vector_product-eps-negative": (
        lambda: theory.hessian_vector_product(LINE, P0, X, Y, [1.0, 0.0], eps=-1e-5), "eps"),
    "hessian_vector_product-eps-string": (
        lambda: theory.hessian_vector_product(LINE, P0, X, Y, [1.0, 0.0], eps="a"), "eps"),
    "hessian_vector_product-eps-lost": (
        lambda: theory.hessian_vector_product(MLP, PM, XM, YM, ONES, eps=1e-300), "eps"),
    "hessian_vector_product-eps-overflow": (
        lambda: theory.hessian_vector_product(MLP, PM, XM, YM, ONES, eps=1e200), "eps"),
    "hessian_vector_product-params-shape": (lambda: theory.hessian_vector_product(LINE, [0.0], X, Y, [1.0]),
                                            "params"),
    "hessian_vector_product-params-nan": (
        lambda: theory.hessian_vector_product(LINE, [np.nan, 0.0], X, Y, [1.0, 0.0]), "params"),
    "hessian_vector_product-params-overflow": (
        lambda: theory.hessian_vector_product(MLP, np.full(MLP.n_params, 1e300), XM, YM, ONES), "params"),
    "hessian_vector_product-X-overflow": (lambda: theory.hessian_vector_product(MLP, PM, 1e300 * XM, YM, ONES), "X"),
    "hessian_vector_product-Y-shape": (lambda: theory.hessian_vector_product(LINE, P0, X, Y[:5], [1.0, 0.0]), "Y"),
    "hessian_vector_product-model-string": (lambda: theory.hessian_vector_product("mlp", P0, X, Y, [1.0, 0.0]),
                                            "model"),
    # sharpness
    "sharpness-k-zero": (lambda: theory.sharpness(MLP, PM, XM, YM, k=0), "k"),
    "sharpness-k-bool": (lambda: theory.sharpness(MLP, PM, XM, YM, k=True), "k"),
    "sharpness-k-above-n_params": (lambda: theory.sharpness(MLP, PM, XM, YM, k=MLP.n_params + 1), "k"),
    "sharpness-tol-negative": (lambda: theory.sharpness(MLP, PM, XM, YM, tol=-1.0), "tol"),
    "sharpness-tol-nan": (lambda: theory.sharpness(MLP, PM, XM, YM, tol=np.nan), "tol"),
    "sharpness-tol-string": (lambda: theory.sharpness(MLP, PM, XM, YM, tol="a"), "tol"),
    "sharpness-params-overflow": (lambda: theory.sharpness(MLP, np.full(MLP.n_params, 1e300), XM, YM), "params"),
    "sharpness-X-overflow": (lambda: theory.sharpness(MLP, PM, 1e300 * XM, YM), "X"),
    "sharpness-model-None": (lambda: theory.sharpness(None, PM, XM, YM), "model"),
    # nesterov_optimal
    "nesterov_optimal-L-inf": (lambda: theory.nesterov_optimal(np.inf, 1.0), "L"),
    "nesterov_optimal-L-zero": (lambda: theory.nesterov_optimal(0.0, 1e-3), "L"),
    "nesterov_optimal-L-array": (lambda: theory.nesterov_optimal([4.0], 1.0), "L"),
    "nesterov_optimal-mu-nan": (lambda: theory.nesterov_optimal(4.0, np.nan), "mu"),
    "nesterov_optimal-mu-negative": (lambda: theory.nesterov_optimal(4.0, -1.0), "mu"),
    "nesterov_optimal-mu-above-L": (lambda: theory.nesterov_optimal(1.0, 2.0), "mu"),
    # momentum_region
    "momentum_region-lr-negative": (lambda: theory.momentum_region(-0.1, 0.5, 4.0, 1.0), "lr"),
    "momentum_region-lr-string": (lambda: theory.momentum_region("a", 0.5, 4.0, 1.0), "lr"),
    "momentum_region-momentum-negative": (lambda: theory.momentum_region(0.1, -0.5, 4.0, 1.0), "momentum"),
    "momentum_region-momentum-nan": (lambda: theory.momentum_region(0.1, np.nan, 4.0, 1.0), "momentum"),
    "momentum_region-L-zero": (lambda: theory.momentum_region(0.1, 0.5, 0.0, 1.0), "L"),
    "momentum_region-mu-inf": (lambda: theory.momentum_region(0.1, 0.5, 4.0, np.inf), "mu"),
    "momentum_region-mu-above-L": (lambda: theory.momentum_region(0.1, 0.5, [4.0, 1.0], 2.0), "mu"),
    "momentum_region-shapes": (lambda: theory.momentum_region([0.1, 0.2], [0.1, 0.2, 0.3], 4.0, 1.0), "momentum"),
    # noise_scales
    "noise_scales-model-sum": (lambda: theory.noise_scales(gdsim.Linear(1, 1, reduction="sum"), P0, X, Y), "model"),
    "noise_scales-model-None": (lambda: theory.noise_scales(None, P0, X, Y), "model"),
    "noise_scales-params-shape": (lambda: theory.noise_scales(LINE, [0.0], X, Y), "params"),
    "noise_scales-params-zero-gradient": (
        lambda: theory.noise_scales(LINE, [1.0, 0.0], [[1.0], [2.0]], [[1.0], [2.0]]), "params"),
    "noise_scales-batch_size-zero": (lambda: theory.noise_scales(LINE, P0, X, Y, batch_size=0), "batch_size"),
    "noise_scales-batch_size-float": (lambda: theory.noise_scales(LINE, P0, X, Y, batch_size=2.0), "batch_size"),
    "noise_scales-X-overflow": (lambda: theory.noise_scales(MLP, PM, 1e300 * XM, YM), "X"),
    # lyapunov_exponent
    "lyapunov_exponent-sampling-typo": (lambda: theory.lyapunov_exponent(LINE, X, 0.1, sampling="shuffle"),
                                        "sampling"),
    "lyapunov_exponent-sampling-None": (lambda: theory.lyapunov_exponent(LINE, X, 0.1, sampling=None), "sampling"),
    "lyapunov_exponent-epochs-below-blocks": (lambda: theory.lyapunov_exponent(LINE, X, 0.1, epochs=5), "epochs"),
    "lyapunov_exponent-blocks-one": (lambda: theory.lyapunov_exponent(LINE, X, 0.1, blocks=1), "blocks"),
    "lyapunov_exponent-burn_in-negative": (lambda: theory.lyapunov_exponent(LINE, X, 0.1, burn_in=-1), "burn_in"),
    "lyapunov_exponent-seed-negative": (lambda: theory.lyapunov_exponent(LINE, X, 0.1, seed=-1), "seed"),
    "lyapunov_exponent-lr-nan": (lambda: theory.lyapunov_exponent(LINE, X, np.nan), "lr"),
    "lyapunov_exponent-batch_size-above-n": (lambda: theory.lyapunov_exponent(LINE, X, 0.1, batch_size=101),
                                             "batch_size"),
    "lyapunov_exponent-momentum-list": (lambda: theory.lyapunov_exponent(LINE, X, 0.1, momentum=[0.1]), "momentum"),
    "lyapunov_exponent-model-mlp": (lambda: theory.lyapunov_exponent(MLP, XM, 0.1), "model"),
    "lyapunov_exponent-drop_last-int": (lambda: theory.lyapunov_exponent(LINE, X, 0.1, drop_last=1), "drop_last"),
    # mean_square_radius
    "mean_square_radius-samples-zero": (lambda: theory.mean_square_radius(LINE, X, 0.1, samples=0), "samples"),
    "mean_square_radius-sampling-list": (lambda: theory.mean_square_radius(LINE, X, 0.1, sampling=["fixed"]),
                                         "sampling"),
    "mean_square_radius-dampening-nan": (
        lambda: theory.mean_square_radius(LINE, X, 0.1, momentum=0.5, dampening=np.nan), "dampening"),
    "mean_square_radius-model-wide": (
        lambda: theory.mean_square_radius(gdsim.Linear(40, 1), np.ones((3, 40)), 0.1), "model"),
    # linear_stability
    "linear_stability-model-too-large": (
        lambda: theory.linear_stability(gdsim.MLP((50, 50, 1)), np.zeros(2601), np.ones((2, 50)), np.ones((2, 1)),
                                        0.1, 1), "model"),
    "linear_stability-model-sum": (
        lambda: theory.linear_stability(gdsim.Linear(1, 1, reduction="sum"), P0, X, Y, 0.1, 1), "model"),
    "linear_stability-X-too-many-samples": (
        lambda: theory.linear_stability(MLP, PM, np.ones((300_000, 2)), np.ones((300_000, 1)), 0.1, 1), "X"),
    "linear_stability-lr-negative": (lambda: theory.linear_stability(LINE, P0, X, Y, -0.1, 1), "lr"),
    "linear_stability-momentum-negative": (lambda: theory.linear_stability(LINE, P0, X, Y, 0.1, 1, momentum=-0.1),
                                           "momentum"),
    "linear_stability-sampling-fixed": (
        lambda: theory.linear_stability(LINE, P0, X, Y, 0.1, 1, sampling="fixed"), "sampling"),
    "linear_stability-batch_size-above-n": (
        lambda: theory.linear_stability(LINE, P0, X, Y, 0.1, 101, sampling="reshuffle"), "batch_size"),
    "linear_stability-batch_size-zero": (lambda: theory.linear_stability(LINE, P0, X, Y, 0.1, 0), "batch_size"),
    "linear_stability-Y-shape": (lambda: theory.linear_stability(LINE, P0, X, Y[:5], 0.1, 1), "Y"),
}


@pytest.mark.parametrize("call, param", BAD.values(), ids=BAD.keys())
def test_bad_argument_is_refused_by_name(call, param):
    error, caught = quietly(call)
    assert isinstance(error, ParameterError), f"{type(error).__name__}: {error}"
    assert isinstance(error, gdsim.ParameterError) and isinstance(error, ValueError)
    assert error.param == param
    assert param in str(error)
    assert not caught, [str(w.message) for w in caught]


# ---------------------------------------------------------------------------------------
# Valid but extreme: no warning, a value from the closed form (inf where unstable)
# ---------------------------------------------------------------------------------------
def polyak_closed_form(L, mu):
    sL, smu = math.sqrt(L), math.sqrt(mu)
    rate = (sL - smu) / (sL + smu)
    lr = 4.0 / (sL + smu) ** 2 if (sL + smu) > 1e-150 else math.inf
    return lr, rate * rate, rate


EXTREME = {
    "critical_lr-L-1e-300": (lambda: theory.critical_lr(1e-300), 2e300),
    "critical_lr-L-5e-324": (lambda: theory.critical_lr(5e-324), math.inf),
    "critical_lr-L-5e-324-momentum": (lambda: theory.critical_lr(5e-324, 0.9, dampening=0.9), math.inf),
    "critical_lr-L-1e308-momentum": (lambda: theory.critical_lr(BIG, 0.5), 2 * 1.5 / BIG),
    "critical_lr-L-and-weight_decay-1e308": (lambda: theory.critical_lr(BIG, 0.5, weight_decay=BIG), 1.5e-308),
    "critical_lr-dampening-minus-1e300": (lambda: theory.critical_lr(4.0, 0.5, dampening=-1e300),
                                          2 * 1.5 / (1e300 * 4.0)),
    "critical_lr-momentum-near-one": (lambda: theory.critical_lr(4.0, 1 - 1e-12), 2 * (2 - 1e-12) / 4.0),
    "critical_lr-nesterov-momentum-near-one": (lambda: theory.critical_lr(4.0, 1 - 1e-12, nesterov=True),
                                               2 * (2 - 1e-12) / ((3 - 2e-12) * 4.0)),
    "polyak-1e308-1e-308": (lambda: theory.polyak(BIG, 1e-308), polyak_closed_form(BIG, 1e-308)),
    "polyak-5e-324-5e-324": (lambda: theory.polyak(5e-324, 5e-324), (math.inf, 0.0, 0.0)),
    "polyak-max-max": (lambda: theory.polyak(1.7976931348623157e308, 1.7976931348623157e308),
                       (1 / 1.7976931348623157e308, 0.0, 0.0)),
    "polyak-1e-300-1e-300": (lambda: theory.polyak(1e-300, 1e-300), (1e300, 0.0, 0.0)),
    "gradient_descent-L-plus-mu-overflows": (
        lambda: tuple(vars(theory.gradient_descent([1.5e308, 1e308])).values()),
        (1.5e308, 1e308, 2 / 1.5e308, 1 / 1.5e308, 0.8e-308, 0.5 / 2.5)),  # 2 / (L + mu), L + mu > max
    "gradient_descent-subnormal": (lambda: theory.gradient_descent([5e-324]).critical_lr, math.inf),
    "gradient_descent-huge-matrix": (lambda: theory.gradient_descent([[1e307, 0.0], [0.0, 1e306]]).critical_lr,
                                     2e-307),
    "spectral_radius-lr-1e300": (lambda: theory.spectral_radius(1e300, [4.0]), 4e300),
    "spectral_radius-lr-1e300-momentum": (
        lambda: theory.spectral_radius(1e300, [4.0], 0.5),
        # roots of z^2 - (1 + b - k) z + b with k = lr lam: (|T| + sqrt(T^2 - 4b)) / 2, here ~ k
        4e300),
    "spectral_radius-overflow": (lambda: theory.spectral_radius(BIG, [BIG], 0.5, weight_decay=BIG), math.inf),
    "spectral_radius-tiny-lr-huge-curvature": (
        lambda: theory.spectral_radius(5e-324, [BIG], weight_decay=BIG), 1 - 2 * (5e-324 * BIG)),
    "spectral_radius-lr-zero": (lambda: theory.spectral_radius(0.0, [4.0], 0.5), 1.0),
    "spectral_radius-nesterov-momentum-1e200": (
        lambda: theory.spectral_radius(0.1, [4.0], 1e200, nesterov=True), 0.6 * (1 + 1e200)),
    "spectral_radius-grid-with-overflow": (
        lambda: theory.spectral_radius(np.array([1e-3, BIG])[:, None], [BIG], np.array([0.0, 0.5])).tolist(),
        [[abs(1 - 1e305)] * 2, [math.inf] * 2]),
    "epoch_spectral_radius-lr-1e300": (lambda: theory.epoch_spectral_radius(LINE, X, 1e300), math.inf),
    "epoch_spectral_radius-lr-1e300-momentum": (
        lambda: theory.epoch_spectral_radius(LINE, X, 1e300, momentum=0.9, nesterov=True), math.inf),
    "epoch_spectral_radius-full-batch-lr-1e100": (
        lambda: theory.epoch_spectral_radius(LINE, X, 1e100, batch_size=100), 1e100 * L_LINE - 1),
    "epoch_spectral_radius-lr-zero": (lambda: theory.epoch_spectral_radius(LINE, X, 0.0, momentum=0.5), 1.0),
    "epoch_spectral_radius-lr-zero-dampening-huge": (
        lambda: theory.epoch_spectral_radius(LINE, X, 0.0, momentum=0.5, dampening=-BIG), 1.0),
    "epoch_spectral_radius-tiny-lr-huge-weight_decay": (
        lambda: theory.epoch_spectral_radius(LINE, X, 1e-300, batch_size=100, weight_decay=BIG),
        1e-300 * BIG - 1),  # |1 - lr (lam + wd)|, lr lam negligible
    "mean_square_spectral_radius-lr-1e300": (lambda: theory.mean_square_spectral_radius(LINE, X, 1e300), math.inf),
    "mean_square_spectral_radius-lr-zero": (lambda: theory.mean_square_spectral_radius(LINE, X, 0.0), 1.0),
    "mean_square_spectral_radius-batch-2**53": (
        lambda: theory.mean_square_spectral_radius(LINE, X, 0.05, batch_size=2**53),
        # without gradient noise the second moment contracts like the GD radius squared
        max(abs(1 - 0.05 * lam) for lam in np.linalg.eigvalsh(line_hessian(X))) ** 2),
    "epoch_critical_lr-constant-X": (lambda: theory.epoch_critical_lr(LINE, np.ones((5, 1))), 2 / 4.0),
    "epoch_critical_lr-constant-X-momentum": (lambda: theory.epoch_critical_lr(LINE, np.ones((5, 1)), momentum=0.5),
                                              2 * 1.5 / 4.0),
    "epoch_critical_lr-one-sample": (lambda: theory.epoch_critical_lr(LINE, [[3.0]]), 2 / (2 * 10.0)),
    "mean_square_critical_lr-constant-X": (lambda: theory.mean_square_critical_lr(LINE, np.ones((5, 1))), 0.5),
    "epoch_critical_lr-full-batch-rtol-1e-300": (
        lambda: theory.epoch_critical_lr(LINE, X, batch_size=100, rtol=1e-300), 2 / L_LINE),
    "epoch_critical_lr-dampening-minus-1e300": (
        lambda: theory.epoch_critical_lr(LINE, X, batch_size=100, momentum=0.5, dampening=-1e300),
        2 * 1.5 / (1e300 * L_LINE)),
    "epoch_critical_lr-X-5e150": (
        lambda: theory.epoch_critical_lr(LINE, np.full((4, 1), 5e150), batch_size=4), 2 / (2 * (5e150**2 + 1))),
    "step_critical_lr-X-5e150": (lambda: theory.step_critical_lr(LINE, np.full((4, 1), 5e150)),
                                 2 / (2 * (5e150**2 + 1))),
    "mean_square_critical_lr-weight_decay-1e308": (
        lambda: theory.mean_square_critical_lr(LINE, X, batch_size=10**9, weight_decay=BIG), 2 / BIG),
    "hessian-X-1e150": (lambda: theory.hessian(LINE, np.full((3, 1), 1e150)).tolist(),
                        [[2e300, 2e150], [2e150, 2.0]]),
    "hessian_vector_product-v-1e300": (
        lambda: theory.hessian_vector_product(LINE, P0, X, Y, [1e300, -1e300]).tolist(),
        (line_hessian(X) @ [1e300, -1e300]).tolist()),
    "hessian_vector_product-v-1e-300": (
        lambda: theory.hessian_vector_product(LINE, P0, X, Y, [1e-300, 0.0]).tolist(),
        (line_hessian(X) @ [1e-300, 0.0]).tolist()),
    "hessian_vector_product-v-max": (
        lambda: theory.hessian_vector_product(LINE, P0, X, Y, [1.7e308, 1.7e308]).tolist(), [math.inf, math.inf]),
    "sharpness-X-1e100": (lambda: theory.sharpness(LINE, P0, 1e100 * X, Y),
                          float(np.linalg.eigvalsh(line_hessian(1e100 * X)).max())),
    "nesterov_optimal-1e308-1e-308": (lambda: theory.nesterov_optimal(BIG, 1e-308), (1 / (0.75 * BIG), 1.0, 1.0)),
    "nesterov_optimal-5e-324-5e-324": (lambda: theory.nesterov_optimal(5e-324, 5e-324), (math.inf, 0.0, 0.0)),
    "nesterov_optimal-max-max": (lambda: theory.nesterov_optimal(1.7976931348623157e308, 1.7976931348623157e308),
                                 (1 / 1.7976931348623157e308, 0.0, 0.0)),
    "lyapunov_exponent-lr-max": (lambda: theory.lyapunov_exponent(LINE, X, BIG, epochs=10, burn_in=0).exponent,
                                 math.inf),  # lr x curvature overflows
    "mean_square_radius-lr-max": (lambda: theory.mean_square_radius(LINE, X, BIG, samples=10).radius, math.inf),
    "lyapunov_exponent-full-batch-lr-1e300": (  # finite in log space: log |1 - lr L|
        lambda: theory.lyapunov_exponent(LINE, X, 1e300, batch_size=100, epochs=10, burn_in=10).exponent,
        math.log(1e300 * L_LINE - 1)),
    "mean_square_radius-lr-1e300": (lambda: theory.mean_square_radius(LINE, X, 1e300, samples=10).radius,
                                    math.inf),
    # a = (1, 1) and (-1, 1) are orthogonal and lr 2 |a|^2 = 1: each step projects out one, an epoch maps to 0
    "lyapunov_exponent-annihilated": (
        lambda: theory.lyapunov_exponent(LINE, [[1.0], [-1.0]], 0.25, epochs=10, burn_in=0).exponent, -math.inf),
    "mean_square_radius-annihilated": (lambda: theory.mean_square_radius(LINE, [[1.0], [-1.0]], 0.25, samples=10),
                                       (0.0, 0.0, 0.0)),
}


@pytest.mark.parametrize("call, expected", EXTREME.values(), ids=EXTREME.keys())
def test_valid_extreme_input_gives_the_closed_form_quietly(call, expected):
    got, caught = quietly(call)
    assert not isinstance(got, Exception), f"{type(got).__name__}: {got}"
    assert not caught, [str(w.message) for w in caught]
    got, expected = np.asarray(got, dtype=float), np.asarray(expected, dtype=float)
    assert not np.any(np.isnan(got))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=0.0)


@pytest.mark.parametrize("call", [
    lambda: theory.critical_lr(np.geomspace(5e-324, BIG, 50), np.linspace(0, 0.999, 50), dampening=-1.0),
    lambda: theory.critical_lr(np.geomspace(5e-324, BIG, 50), np.linspace(0, 0.999, 50), nesterov=True),
], ids=["heavy-ball", "nesterov"])
def test_critical_lr_is_positive_over_the_whole_float_range(call):
    got, caught = quietly(call)
    assert not caught and np.all(got > 0) and not np.any(np.isnan(got))


@pytest.mark.parametrize("lr, momentum, dampening", [(1e300, 0.5, 0.0), (0.0, 0.5, -BIG), (BIG, 1e200, 0.0),
                                                     (5e-324, 0.0, 0.0)], ids=["huge-lr", "lr-zero-huge-dampening",
                                                                               "huge-lr-and-momentum", "subnormal-lr"])
def test_companion_has_no_nan(lr, momentum, dampening):
    got, caught = quietly(lambda: theory.companion(lr, [BIG, 1.0, 0.0, -BIG], momentum, dampening=dampening))
    assert not caught and not np.any(np.isnan(got))
    # lr = 0 leaves p alone: the top-left entry is exactly 1 whatever the curvature
    if lr == 0:
        np.testing.assert_array_equal(got[..., 0, 0], 1.0)
