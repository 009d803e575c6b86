"""Generate PyTorch reference fixtures for gdsim's SGD trajectories.

What it makes
-------------
One compressed NumPy archive per case, ``tests/fixtures/torch/<case>.npz``,
holding the inputs of a small training run (data, initial parameters,
SGD hyper-parameters, batch orders) together with the trajectory that
``torch.optim.SGD`` produces on them (per-epoch full-data losses, per-step
batch losses, parameters after every step or only the final ones, and the
full-data gradient at the initial parameters).  gdsim's tests load these
files with plain NumPy; torch is *never* a dependency of gdsim or its tests.

How to run it
-------------
    /path/to/venv-with-torch/bin/python tests/make_torch_fixtures.py

It needs ``torch==2.13.0`` and ``numpy`` (a separate venv, outside the repo),
and (re)writes every ``tests/fixtures/torch/*.npz``, overwriting existing
files.  Options:

    --only CASE [CASE ...]   generate only these cases
    --selfcheck              after generating, re-run every fixture with an
                             independent plain-NumPy forward/backward + SGD
                             implementation and assert agreement
    --selfcheck-only         only run the NumPy self-check on the existing
                             files (does not import torch at all)
    --unfused                self-check with plain twice-rounded arithmetic
                             in the SGD update (see ``fma`` below)

The self-check asserts rtol 1e-9 on finite values and NaN/inf at the same
places.  It mirrors torch's rounding in one respect: torch evaluates
``x.add(y, alpha=s)`` (used throughout SGD's step) as a fused multiply-add.
Only the ill-conditioned ``tutorial_sgd`` notices this: with unfused updates
it agrees to only ~1e-6 relative (with fused ones it is bit-identical).

Determinism
-----------
All inputs (data, initial parameters, batch orders) are drawn with
``np.random.default_rng(<fixed seed per case>)``, never with torch's RNG, and
are stored in the file.  Torch runs in float64 on one CPU thread.

File format (keys of every .npz)
--------------------------------
sizes            int64 [L+1] layer widths, e.g. [10, 5, 1]; [n_in, n_out] is
                 a plain linear model.
activation       str: "relu" | "tanh" | "sigmoid" | "identity", applied after
                 every hidden layer (the last layer is linear).
loss             str: "mse" | "cross_entropy" (nn.MSELoss / nn.CrossEntropyLoss)
reduction        str: "mean" | "sum"
X                float64 [n, n_in]
Y                float64 [n, n_out] (mse) or int64 [n] class labels (cross_entropy)
params0          float64 [n_params], torch order: per layer weight [out, in]
                 row-major, then bias [out].
lr, momentum, dampening, weight_decay   float64 scalars
nesterov, maximize                      bool scalars
epochs, batch_size                      int scalars
drop_last        bool
order            int64 [epochs, n]: sample order of each epoch
epoch_loss       float64 [epochs+1]: full-data loss before each epoch and
                 after the last one
step_loss        float64 [n_steps]: batch loss before each update
params_history   float64 [n_steps+1, n_params] (row 0 = params0), only if
                 n_params * (n_steps+1) <= 200_000; otherwise
params_final     float64 [n_params]
grad0            float64 [n_params]: gradient of the full-data reduced loss
                 at params0 (torch autograd)
torch_version    str
description      str, one line

Cases with gdsim's model options (the ``opt_*`` cases) have two more keys; the
other cases have none of them (``bias=True``, ``"standard"``):

bias             bool: False -> every layer is nn.Linear(..., bias=False),
                 params0 holds the weights only
parameterization str: "standard" (nn.Linear) | "ntk": a layer with fan_in
                 inputs computes F.linear(a, W) * (1 / sqrt(fan_in)) + b
                 (Jacot et al.'s NTK parameterization with beta = 1), an
                 explicit torch module (NTKLinear below)

and their ``reduction`` may also be "half_mean" | "half_sum": torch has no
such reduction; the criterion is nn.MSELoss(reduction="mean" | "sum")(f, y) / 2.

Cases with a learning-rate schedule (the ``sched_*`` cases) have three more
keys; the other cases have none of them:

lr_schedule_kind str: "step" | "exponential" | "cosine" | "array"
lr_schedule_args float64 1-d: step -> [step_size, gamma] (StepLR);
                 exponential -> [gamma] (ExponentialLR); cosine -> [T_max,
                 eta_min] (CosineAnnealingLR); array -> the per-epoch factors
                 f [epochs] (LambdaLR with ``lambda e: f[e]``)
step_lr          float64 [n_steps]: the lr torch used at each step
                 (``opt.param_groups[0]["lr"]`` just before ``opt.step()``)

The trajectory semantics (the loop in ``run_torch``)::

    for e in range(epochs):
        epoch_loss.append(full_data_loss(model))
        idx = order[e]
        for start in range(0, n, batch_size):
            b = idx[start:start+batch_size]
            if drop_last and len(b) < batch_size: continue
            opt.zero_grad(); loss = criterion(model(X[b]), Y[b]); loss.backward()
            step_loss.append(loss.item())
            step_lr.append(opt.param_groups[0]["lr"])     # schedule cases
            opt.step()
            params_history.append(flat_params(model))
        scheduler.step()                                    # schedule cases
    epoch_loss.append(full_data_loss(model))

Learning-rate schedules: the scheduler is made right after the optimizer and
stepped once per epoch, at its end, as in torch's documentation, so every step
of epoch e uses the same lr_e.  Stepped this way torch's StepLR, ExponentialLR
and CosineAnnealingLR compute lr_e recursively from lr_{e-1} (LambdaLR does
not); the self-check recomputes the lrs from the closed forms (lr = the base
lr, e = 0, 1, ..., epochs-1)

    step         lr_e = lr * gamma ** (e // step_size)
    exponential  lr_e = lr * gamma ** e
    cosine       lr_e = eta_min + (lr - eta_min) * (1 + cos(pi * e / T_max)) / 2
    array        lr_e = lr * f[e]        (so epoch 0 already uses lr * f[0])

runs the trajectory with them, and asserts they match ``step_lr`` to rtol
1e-12.  (torch 2.13.0: the recursive values differ from the closed forms by a
few ulps, ~1e-15 relative over these short runs, growing to ~2e-13 over 1000
epochs; past T_max the recursive cosine keeps following the periodic closed
form, back up towards lr at e = 2 T_max.)  LambdaLR evaluates its lambda once
more, for e = epochs, at the final ``scheduler.step()``; that lr is never used,
and the fixture's lambda returns f[-1] for it.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import naive  # noqa: E402  (tests/naive.py, the plain-NumPy reference)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "fixtures", "torch")
HISTORY_LIMIT = 200_000
SELFCHECK_RTOL = 1e-9
SCHEDULE_LR_RTOL = 1e-12

# torch.optim.SGD's default lr in torch 2.13.0 (checked against the installed
# signature in generate()).
TORCH_DEFAULT_LR = 1e-3
# lr used for the torch test-suite configs that have no explicit lr (torch's
# default, 1e-3 in torch 2.13.0, barely moves the parameters in 3 epochs).
RAISED_DEFAULT_LR = 0.05

COMMON_KEYS = {
    "sizes", "activation", "loss", "reduction", "X", "Y", "params0",
    "lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize",
    "epochs", "batch_size", "drop_last", "order",
    "epoch_loss", "step_loss", "grad0", "torch_version", "description",
}
SCHEDULE_KEYS = {"lr_schedule_kind", "lr_schedule_args", "step_lr"}
OPTION_KEYS = {"bias", "parameterization"}
SCHEDULE_KINDS = ("step", "exponential", "cosine", "array")


# --------------------------------------------------------------------------
# Case definitions (numpy only)
# --------------------------------------------------------------------------

def init_params(rng, sizes, bias=True):
    """Flat params in torch order, each layer U(-1/sqrt(fan_in), +1/sqrt(fan_in))."""
    parts = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / np.sqrt(fan_in)
        parts.append(rng.uniform(-bound, bound, size=(fan_out, fan_in)).ravel())
        if bias:
            parts.append(rng.uniform(-bound, bound, size=fan_out))
    return np.concatenate(parts)


def init_ntk_params(rng, sizes, bias=True):
    """Flat params in torch order, every entry N(0, 1) (the NTK parameterization)."""
    return rng.standard_normal(n_params_of(sizes, bias))


def shuffled_order(rng, epochs, n):
    return np.stack([rng.permutation(n) for _ in range(epochs)]).astype(np.int64)


def in_order(epochs, n):
    return np.tile(np.arange(n, dtype=np.int64), (epochs, 1))


def make_case(*, sizes, activation, loss, reduction, X, Y, params0, lr,
              momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
              maximize=False, epochs, batch_size, drop_last=False, order,
              lr_schedule=None, bias=None, parameterization=None, description):
    """One case as a dict.  lr_schedule: None, ("step", step_size, gamma),
    ("exponential", gamma), ("cosine", T_max, eta_min) or ("array", factors).
    bias, parameterization: None (torch's nn.Linear; no option keys), or both
    given (an ``opt_*`` case)."""
    assert (bias is None) == (parameterization is None)
    assert reduction in ("mean", "sum") or bias is not None
    options = {} if bias is None else dict(bias=bool(bias), parameterization=parameterization)
    assert parameterization in (None, "standard", "ntk")
    sizes = np.asarray(sizes, dtype=np.int64)
    X = np.ascontiguousarray(X, dtype=np.float64)
    if loss == "mse":
        Y = np.ascontiguousarray(Y, dtype=np.float64)
        assert Y.shape == (X.shape[0], sizes[-1])
    else:
        Y = np.ascontiguousarray(Y, dtype=np.int64)
        assert Y.shape == (X.shape[0],)
        assert Y.min() >= 0 and Y.max() < sizes[-1]
    assert X.shape[1] == sizes[0]
    if len(sizes) == 2:
        assert activation == "identity"
    order = np.asarray(order, dtype=np.int64)
    assert order.shape == (epochs, X.shape[0])
    params0 = np.asarray(params0, dtype=np.float64)
    assert params0.shape == (n_params_of(sizes, options.get("bias", True)),)
    schedule = {}
    if lr_schedule is not None:
        kind, *args = lr_schedule
        if kind == "array":
            (factors,) = args
            args = np.asarray(factors, dtype=np.float64)
            assert args.shape == (epochs,) and np.all(args > 0)
        else:
            args = np.asarray(args, dtype=np.float64)
            assert args.shape == {"step": (2,), "exponential": (1,),
                                  "cosine": (2,)}[kind]
            if kind in ("step", "cosine"):
                assert args[0] == int(args[0]) >= 1
        schedule = dict(lr_schedule_kind=kind, lr_schedule_args=args)
    return dict(
        sizes=sizes, activation=activation, loss=loss, reduction=reduction,
        X=X, Y=Y, params0=params0,
        lr=float(lr), momentum=float(momentum), dampening=float(dampening),
        weight_decay=float(weight_decay), nesterov=bool(nesterov),
        maximize=bool(maximize), epochs=int(epochs),
        batch_size=int(batch_size), drop_last=bool(drop_last), order=order,
        description=description, **schedule, **options,
    )


def n_params_of(sizes, bias=True):
    return int(sum(o * i + (o if bias else 0) for i, o in zip(sizes[:-1], sizes[1:])))


# The torch test-suite SGD configs (optim_inputs_func_sgd in
# torch/testing/_internal/common_optimizers.py, torch 2.13.0) plus one extra.
# None for lr means "no explicit lr in torch's config" -> RAISED_DEFAULT_LR.
SGD_SUITE = {
    "sgd_default": (dict(), "torch default config"),
    "sgd_lr1e-2": (dict(lr=1e-2), "non-default lr"),
    "sgd_weight_decay": (dict(weight_decay=0.5), "non-zero weight_decay"),
    "sgd_momentum": (dict(momentum=0.9), "momentum"),
    "sgd_maximize": (dict(weight_decay=0.1, maximize=True), "maximize"),
    "sgd_dampening": (dict(momentum=0.9, dampening=0.5), "dampening"),
    "sgd_momentum_weight_decay": (dict(momentum=0.9, weight_decay=0.1),
                                  "weight_decay w/ momentum"),
    "sgd_nesterov": (dict(momentum=0.9, nesterov=True, weight_decay=0.1),
                     "nesterov"),
    "sgd_nesterov_dampless_lr1e-1": (dict(momentum=0.5, nesterov=True, lr=0.1),
                                     "nesterov without dampening, lr 0.1 "
                                     "(extra, not in torch's list)"),
}


def case_sgd_suite(name):
    kwargs, what = SGD_SUITE[name]
    kwargs = dict(kwargs)
    rng = np.random.default_rng(1000)  # same data/init/order for all nine
    sizes = [4, 3, 2]
    n, epochs = 12, 3
    X = rng.standard_normal((n, 4))
    Y = rng.standard_normal((n, 2))
    params0 = init_params(rng, sizes)
    order = shuffled_order(rng, epochs, n)
    if "lr" in kwargs:
        lr_note = "lr %g" % kwargs["lr"]
    else:
        kwargs["lr"] = RAISED_DEFAULT_LR
        lr_note = ("lr %g (raised from torch's default %g)"
                   % (RAISED_DEFAULT_LR, TORCH_DEFAULT_LR))
    hp = ", ".join("%s=%s" % (k, v) for k, v in kwargs.items() if k != "lr")
    desc = ("torch test-suite SGD config '%s' (%s; %s): MLP [4,3,2] tanh, "
            "mse mean, n=12, batch 5 (5,5,2), shuffled, 3 epochs"
            % (what, hp or "no other hyper-parameters", lr_note))
    return make_case(sizes=sizes, activation="tanh", loss="mse",
                     reduction="mean", X=X, Y=Y, params0=params0,
                     epochs=epochs, batch_size=5, order=order,
                     description=desc, **kwargs)


def tutorial_data():
    rng = np.random.default_rng(0)
    X = np.arange(-5, 5, 0.1).reshape(-1, 1)
    Y = -5 * X + 0.4 * rng.standard_normal(X.shape)
    return X, Y


def case_tutorial_batch_gd():
    X, Y = tutorial_data()
    return make_case(
        sizes=[1, 1], activation="identity", loss="mse", reduction="mean",
        X=X, Y=Y, params0=[-10.0, -20.0], lr=0.1, epochs=20, batch_size=100,
        order=in_order(20, 100),
        description="linear-regression tutorial, full-batch GD: Linear(1,1) "
                    "from w=-10, b=-20, mse mean, lr 0.1, 20 epochs")


def case_tutorial_sgd():
    X, Y = tutorial_data()
    return make_case(
        sizes=[1, 1], activation="identity", loss="mse", reduction="mean",
        X=X, Y=Y, params0=[-10.0, -20.0], lr=0.1, epochs=20, batch_size=1,
        order=in_order(20, 100),
        description="linear-regression tutorial, per-sample SGD in data order:"
                    " Linear(1,1) from w=-10, b=-20, mse mean, lr 0.1, 20 "
                    "epochs (2000 steps, diverges to ~1e13 but stays finite)")


def case_mlp_10_5_1():
    rng = np.random.default_rng(4)
    sizes = [10, 5, 1]
    n, epochs = 64, 5
    X = rng.standard_normal((n, 10))
    # fixed random teacher: 1-hidden-layer tanh net, plus noise
    W_t = rng.standard_normal((10, 3)) / np.sqrt(10)
    v_t = rng.standard_normal((3, 1))
    Y = np.tanh(X @ W_t) @ v_t + 0.1 * rng.standard_normal((n, 1))
    params0 = init_params(rng, sizes)
    order = shuffled_order(rng, epochs, n)
    return make_case(
        sizes=sizes, activation="relu", loss="mse", reduction="mean",
        X=X, Y=Y, params0=params0, lr=0.01, momentum=0.9, epochs=epochs,
        batch_size=16, order=order,
        description="MLP [10,5,1] relu, mse mean, n=64 teacher-net data, "
                    "batch 16 shuffled, lr 0.01 momentum 0.9, 5 epochs")


def seed_tutorial_data():
    """Data and init shared by the two [900, 90, 12] cases.

    To keep these two files small (grad0 and params_final, 82182 full-precision
    float64 each, are incompressible), X and params0 are drawn as usual and then
    put on a dyadic grid: X ~ N(0,1) rounded to multiples of 2**-8, params0 ~
    U(+-1/sqrt(fan_in)) truncated towards 0 to multiples of 2**-12.  They are
    ordinary float64 inputs; the grid only makes them compress ~4x better.
    """
    rng = np.random.default_rng(5)
    sizes = [900, 90, 12]
    n = 74
    X = np.round(rng.standard_normal((n, 900)) * 2.0**8) / 2.0**8
    Y = rng.standard_normal((n, 12))
    params0 = np.trunc(init_params(rng, sizes) * 2.0**12) / 2.0**12
    return sizes, X, Y, params0


def case_mlp_900():
    sizes, X, Y, params0 = seed_tutorial_data()
    epochs = 10
    return make_case(
        sizes=sizes, activation="relu", loss="mse", reduction="sum",
        X=X, Y=Y, params0=params0, lr=1e-5, momentum=0.9, epochs=epochs,
        batch_size=74, order=in_order(epochs, 74),
        description="seed tutorial: MLP [900,90,12] relu, mse SUM, n=74 "
                    "random data (X, params0 on a dyadic grid), full batch, "
                    "lr 1e-5 momentum 0.9, 10 steps")


def case_mlp_900_lr02():
    sizes, X, Y, params0 = seed_tutorial_data()
    epochs = 4
    return make_case(
        sizes=sizes, activation="relu", loss="mse", reduction="sum",
        X=X, Y=Y, params0=params0, lr=0.2, momentum=0.9, epochs=epochs,
        batch_size=74, order=in_order(epochs, 74),
        description="seed tutorial with lr 0.2 momentum 0.9: MLP [900,90,12] "
                    "relu, mse SUM, full batch, 4 steps; diverges "
                    "(huge/inf/nan values kept as torch gives them)")


def case_ce_blobs_mean():
    rng = np.random.default_rng(7)
    sizes = [2, 8, 3]
    epochs = 4
    centres = np.array([[0.0, 3.0], [-2.6, -1.5], [2.6, -1.5]])
    X = np.concatenate([c + 0.6 * rng.standard_normal((20, 2))
                        for c in centres])
    Y = np.repeat(np.arange(3, dtype=np.int64), 20)
    params0 = init_params(rng, sizes)
    order = shuffled_order(rng, epochs, 60)
    return make_case(
        sizes=sizes, activation="relu", loss="cross_entropy",
        reduction="mean", X=X, Y=Y, params0=params0, lr=0.1, momentum=0.5,
        epochs=epochs, batch_size=10, order=order,
        description="3 Gaussian blobs in 2-d (20 per class, sd 0.6, centres "
                    "radius 3): MLP [2,8,3] relu, cross_entropy mean, batch 10"
                    " shuffled, lr 0.1 momentum 0.5, 4 epochs")


def case_ce_sum_sigmoid():
    rng = np.random.default_rng(8)
    sizes = [3, 4, 4]
    epochs = 3
    X = rng.standard_normal((9, 3))
    Y = rng.permutation(np.arange(9) % 4).astype(np.int64)
    params0 = init_params(rng, sizes)
    return make_case(
        sizes=sizes, activation="sigmoid", loss="cross_entropy",
        reduction="sum", X=X, Y=Y, params0=params0, lr=0.05,
        weight_decay=0.01, epochs=epochs, batch_size=4,
        order=in_order(epochs, 9),
        description="MLP [3,4,4] sigmoid, cross_entropy SUM, n=9 labels 0..3,"
                    " batch 4 (4,4,1) in order, lr 0.05 weight_decay 0.01, "
                    "3 epochs")


def case_mse_sum_identity_deep():
    rng = np.random.default_rng(9)
    sizes = [3, 4, 4, 2]
    epochs = 3
    X = rng.standard_normal((10, 3))
    Y = rng.standard_normal((10, 2))
    params0 = init_params(rng, sizes)
    return make_case(
        sizes=sizes, activation="identity", loss="mse", reduction="sum",
        X=X, Y=Y, params0=params0, lr=0.01, momentum=0.9, nesterov=True,
        epochs=epochs, batch_size=3, drop_last=True, order=in_order(epochs, 10),
        description="MLP [3,4,4,2] identity (2 hidden layers), mse SUM, n=10,"
                    " batch 3 in order with drop_last (last sample dropped), "
                    "lr 0.01 momentum 0.9 nesterov, 3 epochs")


def case_linear_multi_out():
    rng = np.random.default_rng(10)
    sizes = [3, 2]
    epochs = 5
    X = rng.standard_normal((20, 3))
    A = rng.standard_normal((3, 2))
    Y = X @ A + 0.5 + 0.1 * rng.standard_normal((20, 2))
    params0 = init_params(rng, sizes)
    return make_case(
        sizes=sizes, activation="identity", loss="mse", reduction="mean",
        X=X, Y=Y, params0=params0, lr=0.1, momentum=0.8, dampening=0.3,
        epochs=epochs, batch_size=20, order=in_order(epochs, 20),
        description="plain Linear(3,2), mse mean, n=20 noisy linear data, "
                    "full batch, lr 0.1 momentum 0.8 dampening 0.3, 5 epochs")


# --------------------------------------------------------------------------
# Cases with a learning-rate schedule (sched_*)
# --------------------------------------------------------------------------

def teacher_data(rng, n, n_in, n_out):
    """X ~ N(0,1) [n, n_in]; Y = fixed random tanh teacher net + noise."""
    X = rng.standard_normal((n, n_in))
    W_t = rng.standard_normal((n_in, 3)) / np.sqrt(n_in)
    v_t = rng.standard_normal((3, n_out))
    Y = np.tanh(X @ W_t) @ v_t + 0.1 * rng.standard_normal((n, n_out))
    return X, Y


def case_sched_tutorial_step():
    X, Y = tutorial_data()
    rng = np.random.default_rng(20)
    epochs = 10
    return make_case(
        sizes=[1, 1], activation="identity", loss="mse", reduction="mean",
        X=X, Y=Y, params0=[-10.0, -20.0], lr=0.05, momentum=0.5,
        epochs=epochs, batch_size=20, order=shuffled_order(rng, epochs, 100),
        lr_schedule=("step", 3, 0.5),
        description="linear-regression tutorial data, Linear(1,1) from w=-10, "
                    "b=-20, mse mean, batch 20 shuffled, lr 0.05 momentum 0.5,"
                    " StepLR(step_size=3, gamma=0.5), 10 epochs")


def case_sched_mlp_tanh_nesterov_exp():
    rng = np.random.default_rng(21)
    sizes = [10, 5, 1]
    n, epochs = 64, 8
    X, Y = teacher_data(rng, n, 10, 1)
    params0 = init_params(rng, sizes)
    return make_case(
        sizes=sizes, activation="tanh", loss="mse", reduction="mean",
        X=X, Y=Y, params0=params0, lr=0.05, momentum=0.9, nesterov=True,
        epochs=epochs, batch_size=16, order=shuffled_order(rng, epochs, n),
        lr_schedule=("exponential", 0.9),
        description="MLP [10,5,1] tanh, mse mean, n=64 teacher-net data, "
                    "batch 16 shuffled, lr 0.05 momentum 0.9 nesterov, "
                    "ExponentialLR(gamma=0.9), 8 epochs")


def case_sched_mlp_relu_cosine_wd():
    rng = np.random.default_rng(22)
    sizes = [6, 8, 2]
    n, epochs = 40, 10
    X, Y = teacher_data(rng, n, 6, 2)
    params0 = init_params(rng, sizes)
    return make_case(
        sizes=sizes, activation="relu", loss="mse", reduction="mean",
        X=X, Y=Y, params0=params0, lr=0.1, momentum=0.9, weight_decay=0.01,
        epochs=epochs, batch_size=8, order=shuffled_order(rng, epochs, n),
        lr_schedule=("cosine", 8, 0.001),
        description="MLP [6,8,2] relu, mse mean, n=40 teacher-net data, batch"
                    " 8 shuffled, lr 0.1 momentum 0.9 weight_decay 0.01, "
                    "CosineAnnealingLR(T_max=8, eta_min=0.001), 10 epochs "
                    "(epochs 9, 10 past T_max: lr rises again)")


def case_sched_array_lambda():
    rng = np.random.default_rng(23)
    sizes = [3, 4, 2]
    n, epochs = 11, 6
    X, Y = teacher_data(rng, n, 3, 2)
    params0 = init_params(rng, sizes)
    factors = np.round(rng.uniform(0.2, 2.0, epochs), 3)
    return make_case(
        sizes=sizes, activation="sigmoid", loss="mse", reduction="sum",
        X=X, Y=Y, params0=params0, lr=0.02, momentum=0.7, dampening=0.2,
        epochs=epochs, batch_size=4, drop_last=True,
        order=shuffled_order(rng, epochs, n), lr_schedule=("array", factors),
        description="MLP [3,4,2] sigmoid, mse SUM, n=11 teacher-net data, "
                    "batch 4 shuffled with drop_last, lr 0.02 momentum 0.7 "
                    "dampening 0.2, LambdaLR with per-epoch factors [%s] "
                    "(epoch 0 already scaled), 6 epochs"
                    % ", ".join("%g" % v for v in factors))


def case_sched_ce_cosine_to_zero():
    rng = np.random.default_rng(24)
    sizes = [2, 6, 3]
    epochs = 7
    centres = np.array([[0.0, 2.0], [-1.7, -1.0], [1.7, -1.0]])
    X = np.concatenate([c + 0.8 * rng.standard_normal((10, 2))
                        for c in centres])
    Y = np.repeat(np.arange(3, dtype=np.int64), 10)
    params0 = init_params(rng, sizes)
    return make_case(
        sizes=sizes, activation="tanh", loss="cross_entropy",
        reduction="mean", X=X, Y=Y, params0=params0, lr=0.2, momentum=0.5,
        epochs=epochs, batch_size=7, order=shuffled_order(rng, epochs, 30),
        lr_schedule=("cosine", 4, 0.0),
        description="3 Gaussian blobs in 2-d (10 per class, sd 0.8): MLP "
                    "[2,6,3] tanh, cross_entropy mean, batch 7 (7,7,7,7,2) "
                    "shuffled, lr 0.2 momentum 0.5, CosineAnnealingLR(T_max=4,"
                    " eta_min=0), 7 epochs (lr exactly 0 in epoch 4: params "
                    "stay put while the momentum buffer keeps accumulating; "
                    "then the lr rises again)")


# --------------------------------------------------------------------------
# Cases with gdsim's model options (opt_*): no bias, NTK, half reductions
# --------------------------------------------------------------------------

def case_opt_nobias_relu():
    rng = np.random.default_rng(30)
    sizes = [4, 6, 2]
    n, epochs = 15, 4
    X, Y = teacher_data(rng, n, 4, 2)
    params0 = init_params(rng, sizes, bias=False)
    return make_case(
        sizes=sizes, activation="relu", loss="mse", reduction="mean",
        X=X, Y=Y, params0=params0, lr=0.1, momentum=0.9, epochs=epochs,
        batch_size=5, order=shuffled_order(rng, epochs, n),
        bias=False, parameterization="standard",
        description="MLP [4,6,2] relu WITHOUT biases (nn.Linear(bias=False)),"
                    " mse mean, n=15 teacher-net data, batch 5 shuffled, lr "
                    "0.1 momentum 0.9, 4 epochs")


def case_opt_ntk_tanh_sum():
    rng = np.random.default_rng(31)
    sizes = [3, 8, 8, 1]
    n, epochs = 12, 5
    X, Y = teacher_data(rng, n, 3, 1)
    params0 = init_ntk_params(rng, sizes)
    return make_case(
        sizes=sizes, activation="tanh", loss="mse", reduction="sum",
        X=X, Y=Y, params0=params0, lr=0.02, momentum=0.5, epochs=epochs,
        batch_size=4, order=shuffled_order(rng, epochs, n),
        bias=True, parameterization="ntk",
        description="MLP [3,8,8,1] tanh, NTK parameterization (W a / "
                    "sqrt(fan_in) + b, params N(0,1)), mse sum, n=12 "
                    "teacher-net data, batch 4 shuffled, lr 0.02 momentum "
                    "0.5, 5 epochs")


def case_opt_ntk_nobias_half_sum():
    rng = np.random.default_rng(32)
    sizes = [5, 7, 3]
    n, epochs = 10, 4
    X, Y = teacher_data(rng, n, 5, 3)
    params0 = init_ntk_params(rng, sizes, bias=False)
    return make_case(
        sizes=sizes, activation="sigmoid", loss="mse", reduction="half_sum",
        X=X, Y=Y, params0=params0, lr=0.05, weight_decay=0.01,
        epochs=epochs, batch_size=3, drop_last=True,
        order=shuffled_order(rng, epochs, n),
        bias=False, parameterization="ntk",
        description="MLP [5,7,3] sigmoid, NTK parameterization without "
                    "biases, mse half_sum (MSELoss(sum)/2), n=10, batch 3 "
                    "shuffled with drop_last, lr 0.05 weight_decay 0.01, 4 "
                    "epochs")


def case_opt_linear_half_mean():
    rng = np.random.default_rng(33)
    sizes = [3, 2]
    epochs = 6
    X = rng.standard_normal((20, 3))
    Y = X @ rng.standard_normal((3, 2)) + 0.5 + 0.1 * rng.standard_normal((20, 2))
    params0 = init_params(rng, sizes)
    return make_case(
        sizes=sizes, activation="identity", loss="mse", reduction="half_mean",
        X=X, Y=Y, params0=params0, lr=0.2, momentum=0.8, nesterov=True,
        epochs=epochs, batch_size=20, order=in_order(epochs, 20),
        bias=True, parameterization="standard",
        description="Linear(3,2), mse half_mean (MSELoss(mean)/2), n=20 noisy"
                    " linear data, full batch, lr 0.2 momentum 0.8 nesterov, "
                    "6 epochs")


def case_opt_ce_ntk_nobias():
    rng = np.random.default_rng(34)
    sizes = [2, 8, 3]
    epochs = 3
    centres = np.array([[0.0, 2.0], [-1.7, -1.0], [1.7, -1.0]])
    X = np.concatenate([c + 0.8 * rng.standard_normal((8, 2))
                        for c in centres])
    Y = np.repeat(np.arange(3, dtype=np.int64), 8)
    params0 = init_ntk_params(rng, sizes, bias=False)
    return make_case(
        sizes=sizes, activation="relu", loss="cross_entropy",
        reduction="mean", X=X, Y=Y, params0=params0, lr=0.5, momentum=0.5,
        epochs=epochs, batch_size=6, order=shuffled_order(rng, epochs, 24),
        bias=False, parameterization="ntk",
        description="3 Gaussian blobs in 2-d: MLP [2,8,3] relu, NTK "
                    "parameterization without biases, cross_entropy mean, "
                    "batch 6 shuffled, lr 0.5 momentum 0.5, 3 epochs")


def case_opt_uv_catapult():
    # Lewkowycz et al. 2020's uv model f = v . u x / sqrt(m) (x = 1, y = 0):
    # NTK lambda0 = (|u|^2 + |v|^2) / m; lr = 3 / lambda0 is in the catapult
    # phase (2 / lambda0 < lr < 4 / lambda0): the loss rises, then falls.
    rng = np.random.default_rng(35)
    sizes = [1, 16, 1]
    epochs = 40
    params0 = init_ntk_params(rng, sizes, bias=False)
    lam0 = float(params0 @ params0) / 16
    return make_case(
        sizes=sizes, activation="identity", loss="mse", reduction="half_mean",
        X=np.ones((1, 1)), Y=np.zeros((1, 1)), params0=params0,
        lr=3.0 / lam0, epochs=epochs, batch_size=1, order=in_order(epochs, 1),
        bias=False, parameterization="ntk",
        description="uv model of the catapult paper: MLP [1,16,1] identity, "
                    "NTK, no biases, mse half_mean, x=1 y=0, GD at lr = 3 / "
                    "lambda0 = %.6g (lambda0 = %.6g), %d steps" % (3.0 / lam0, lam0, epochs))


CASES = {name: (lambda name=name: case_sgd_suite(name)) for name in SGD_SUITE}
CASES.update({
    "tutorial_batch_gd": case_tutorial_batch_gd,
    "tutorial_sgd": case_tutorial_sgd,
    "mlp_10_5_1_relu_minibatch": case_mlp_10_5_1,
    "mlp_900_90_12_sum": case_mlp_900,
    "mlp_900_90_12_sum_lr0.2": case_mlp_900_lr02,
    "ce_blobs_mean": case_ce_blobs_mean,
    "ce_sum_sigmoid": case_ce_sum_sigmoid,
    "mse_sum_identity_deep": case_mse_sum_identity_deep,
    "linear_multi_out": case_linear_multi_out,
    "sched_tutorial_step": case_sched_tutorial_step,
    "sched_mlp_tanh_nesterov_exp": case_sched_mlp_tanh_nesterov_exp,
    "sched_mlp_relu_cosine_wd": case_sched_mlp_relu_cosine_wd,
    "sched_array_lambda": case_sched_array_lambda,
    "sched_ce_cosine_to_zero": case_sched_ce_cosine_to_zero,
    "opt_nobias_relu": case_opt_nobias_relu,
    "opt_ntk_tanh_sum": case_opt_ntk_tanh_sum,
    "opt_ntk_nobias_half_sum": case_opt_ntk_nobias_half_sum,
    "opt_linear_half_mean": case_opt_linear_half_mean,
    "opt_ce_ntk_nobias": case_opt_ce_ntk_nobias,
    "opt_uv_catapult": case_opt_uv_catapult,
})


# --------------------------------------------------------------------------
# Torch run
# --------------------------------------------------------------------------

def ntk_linear_class():
    """A linear layer in the NTK parameterization, written out in torch:
    ``F.linear(a, W) * (1 / sqrt(fan_in)) + b`` (parameters weight, then bias)."""
    import math

    import torch
    from torch import nn
    from torch.nn import functional as F

    class NTKLinear(nn.Module):
        def __init__(self, fan_in, fan_out, bias=True):
            super().__init__()
            self.weight = nn.Parameter(torch.empty(fan_out, fan_in))
            self.bias = nn.Parameter(torch.empty(fan_out)) if bias else None
            self.scale = 1.0 / math.sqrt(fan_in)

        def forward(self, a):
            z = F.linear(a, self.weight) * self.scale
            return z + self.bias if self.bias is not None else z

    return NTKLinear


def run_torch(case):
    import torch
    from torch import nn

    sizes = [int(s) for s in case["sizes"]]
    act = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
           "identity": nn.Identity}[case["activation"]]
    bias = case.get("bias", True)
    ntk = case.get("parameterization", "standard") == "ntk"
    NTKLinear = ntk_linear_class()
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if ntk:
            layers.append(NTKLinear(fan_in, fan_out, bias=bias))
        else:
            layers.append(nn.Linear(fan_in, fan_out, bias=bias))
        if i < len(sizes) - 2:
            layers.append(act())
    model = nn.Sequential(*layers)

    def flat_params():
        return torch.cat([p.detach().reshape(-1) for p in model.parameters()]
                         ).numpy().copy()

    params0 = torch.from_numpy(case["params0"].copy())
    with torch.no_grad():
        offset = 0
        for p in model.parameters():
            k = p.numel()
            p.copy_(params0[offset:offset + k].reshape(p.shape))
            offset += k
    assert offset == params0.numel()
    assert np.array_equal(flat_params(), case["params0"])

    if case["reduction"] in ("half_mean", "half_sum"):
        # torch has no such reduction: half of MSELoss with "mean" / "sum"
        mse = nn.MSELoss(reduction=case["reduction"][len("half_"):])

        def criterion(out, y):
            return mse(out, y) / 2
    elif case["loss"] == "mse":
        criterion = nn.MSELoss(reduction=case["reduction"])
    else:
        criterion = nn.CrossEntropyLoss(reduction=case["reduction"])

    X = torch.from_numpy(case["X"])
    Y = torch.from_numpy(case["Y"])
    n = X.shape[0]

    def full_data_loss():
        with torch.no_grad():
            return criterion(model(X), Y).item()

    # gradient of the full-data reduced loss at params0
    model.zero_grad()
    criterion(model(X), Y).backward()
    grad0 = torch.cat([p.grad.detach().reshape(-1)
                       for p in model.parameters()]).numpy().copy()
    model.zero_grad(set_to_none=True)

    opt = torch.optim.SGD(
        model.parameters(), lr=case["lr"], momentum=case["momentum"],
        dampening=case["dampening"], weight_decay=case["weight_decay"],
        nesterov=case["nesterov"], maximize=case["maximize"])

    epochs, batch_size = case["epochs"], case["batch_size"]
    drop_last, order = case["drop_last"], case["order"]
    scheduler = make_torch_scheduler(opt, case)
    epoch_loss, step_loss, params_history = [], [], [flat_params()]
    step_lr = []
    for e in range(epochs):
        epoch_loss.append(full_data_loss())
        idx = torch.from_numpy(order[e])
        for start in range(0, n, batch_size):
            b = idx[start:start + batch_size]
            if drop_last and len(b) < batch_size:
                continue
            opt.zero_grad()
            out = model(X[b])
            loss = criterion(out, Y[b])
            loss.backward()
            step_loss.append(loss.item())
            step_lr.append(opt.param_groups[0]["lr"])
            opt.step()
            params_history.append(flat_params())
        if scheduler is not None:
            scheduler.step()
    epoch_loss.append(full_data_loss())

    result = dict(epoch_loss=np.array(epoch_loss, dtype=np.float64),
                  step_loss=np.array(step_loss, dtype=np.float64),
                  grad0=grad0)
    n_steps = len(step_loss)
    n_params = params0.numel()
    if n_params * (n_steps + 1) <= HISTORY_LIMIT:
        result["params_history"] = np.stack(params_history)
    else:
        result["params_final"] = params_history[-1]
    if scheduler is not None:
        result["step_lr"] = np.array(step_lr, dtype=np.float64)
    result["torch_version"] = torch.__version__
    return result


def make_torch_scheduler(opt, case):
    """The torch lr scheduler of a case (None without a schedule)."""
    import torch

    if "lr_schedule_kind" not in case:
        return None
    sched = torch.optim.lr_scheduler
    kind, args = case["lr_schedule_kind"], case["lr_schedule_args"]
    if kind == "step":
        return sched.StepLR(opt, step_size=int(args[0]), gamma=float(args[1]))
    if kind == "exponential":
        return sched.ExponentialLR(opt, gamma=float(args[0]))
    if kind == "cosine":
        return sched.CosineAnnealingLR(opt, T_max=int(args[0]),
                                       eta_min=float(args[1]))
    if kind == "array":
        factors = [float(v) for v in args]
        # The scheduler.step() after the last epoch asks for e == epochs;
        # that lr is never used.
        return sched.LambdaLR(
            opt, lambda e: factors[min(e, len(factors) - 1)])
    raise ValueError("unknown lr schedule kind %r" % kind)


def generate(names):
    import torch
    import inspect

    default_lr = inspect.signature(torch.optim.SGD).parameters["lr"].default
    if float(default_lr) != TORCH_DEFAULT_LR:
        raise RuntimeError("torch SGD default lr is %r, script assumes %r"
                           % (default_lr, TORCH_DEFAULT_LR))
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    os.makedirs(OUT_DIR, exist_ok=True)
    for name in names:
        case = CASES[name]()
        result = run_torch(case)
        data = dict(case)
        data.update(result)
        path = os.path.join(OUT_DIR, name + ".npz")
        np.savez_compressed(
            path,
            sizes=data["sizes"], activation=np.str_(data["activation"]),
            loss=np.str_(data["loss"]), reduction=np.str_(data["reduction"]),
            X=data["X"], Y=data["Y"], params0=data["params0"],
            lr=np.float64(data["lr"]), momentum=np.float64(data["momentum"]),
            dampening=np.float64(data["dampening"]),
            weight_decay=np.float64(data["weight_decay"]),
            nesterov=np.bool_(data["nesterov"]),
            maximize=np.bool_(data["maximize"]),
            epochs=np.int64(data["epochs"]),
            batch_size=np.int64(data["batch_size"]),
            drop_last=np.bool_(data["drop_last"]), order=data["order"],
            epoch_loss=data["epoch_loss"], step_loss=data["step_loss"],
            grad0=data["grad0"],
            **({"params_history": data["params_history"]}
               if "params_history" in data
               else {"params_final": data["params_final"]}),
            torch_version=np.str_(data["torch_version"]),
            description=np.str_(data["description"]),
            **({"lr_schedule_kind": np.str_(data["lr_schedule_kind"]),
                "lr_schedule_args": data["lr_schedule_args"],
                "step_lr": data["step_lr"]}
               if "lr_schedule_kind" in data else {}),
            **({"bias": np.bool_(data["bias"]),
                "parameterization": np.str_(data["parameterization"])}
               if "bias" in data else {}),
        )
        print("wrote %-45s %8d bytes  (%d steps)"
              % (os.path.relpath(path, os.path.dirname(HERE)),
                 os.path.getsize(path), len(data["step_loss"])))


# --------------------------------------------------------------------------
# Independent plain-NumPy re-implementation (self-check; no torch)
# --------------------------------------------------------------------------

# Forward/backward: tests/naive.py (the tests' own NumPy reference).


def _two_prod(a, b):
    """p, e with p + e == a * b exactly (Dekker/Veltkamp, no FMA needed)."""
    p = a * b
    c = 134217729.0 * a
    ah = c - (c - a)
    al = a - ah
    c = 134217729.0 * b
    bh = c - (c - b)
    bl = b - bh
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def fma(a, b, c):
    """a * b + c with a single rounding (emulated, elementwise).

    torch's CPU kernels for ``x.add(y, alpha=s)`` evaluate ``x + s * y`` as a
    fused multiply-add, so SGD's ``param.add_(grad, alpha=-lr)`` etc. round
    once.  Plain NumPy rounds twice; in well-conditioned runs that is
    invisible, but an ill-conditioned trajectory (tutorial_sgd) amplifies the
    last-bit differences to ~1e-7 relative.  Exact via TwoProduct + TwoSum
    (correct up to a vanishingly rare double rounding); falls back to the
    plain expression where values are non-finite or near overflow.
    """
    a, b, c = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64)
                                    for v in (a, b, c)))
    with np.errstate(all="ignore"):
        plain = a * b + c
        p, e = _two_prod(a, b)
        s = p + c
        bb = s - p
        t = (p - (s - bb)) + (c - bb)
        fused = s + (t + e)
        safe = (np.isfinite(plain) & np.isfinite(fused)
                & (np.abs(a) < 1e290) & (np.abs(b) < 1e290)
                & (np.abs(p) < 1e300))
    return np.where(safe, fused, plain)


def _unfused(a, b, c):
    return a * b + c


def closed_form_lrs(f):
    """Per-epoch lrs [epochs] from the closed forms (module docstring)."""
    lr, epochs = float(f["lr"]), int(f["epochs"])
    e = np.arange(epochs, dtype=np.float64)
    if "lr_schedule_kind" not in f:
        return np.full(epochs, lr)
    kind, args = str(f["lr_schedule_kind"]), f["lr_schedule_args"]
    if kind == "step":
        step_size, gamma = int(args[0]), float(args[1])
        return lr * gamma ** (np.arange(epochs) // step_size)
    if kind == "exponential":
        return lr * float(args[0]) ** e
    if kind == "cosine":
        t_max, eta_min = int(args[0]), float(args[1])
        return eta_min + (lr - eta_min) * (1 + np.cos(np.pi * e / t_max)) / 2
    if kind == "array":
        assert args.shape == (epochs,)
        return lr * args
    raise ValueError("unknown lr schedule kind %r" % kind)


def np_trajectory(f, fused=True):
    sizes = [int(s) for s in f["sizes"]]
    activation, loss = str(f["activation"]), str(f["loss"])
    reduction = str(f["reduction"])
    X, Y = f["X"], f["Y"]
    lr, momentum = float(f["lr"]), float(f["momentum"])
    dampening, wd = float(f["dampening"]), float(f["weight_decay"])
    nesterov, maximize = bool(f["nesterov"]), bool(f["maximize"])
    epochs, bs = int(f["epochs"]), int(f["batch_size"])
    drop_last, order = bool(f["drop_last"]), f["order"]
    n = X.shape[0]
    options = dict(bias=bool(f["bias"]), parameterization=str(f["parameterization"])) if "bias" in f else {}

    def lg(p, xb, yb):
        with np.errstate(all="ignore"):
            return naive.loss_and_grad(sizes, activation, loss, reduction, p, xb, yb, **options)

    madd = fma if fused else _unfused
    p = f["params0"].copy()
    _, grad0 = lg(p, X, Y)
    # torch keeps one momentum buffer per parameter tensor; the update is
    # elementwise, so one flat buffer is equivalent.
    buf = None
    epoch_lr = closed_form_lrs(f)
    epoch_loss, step_loss, hist, step_lr = [], [], [p.copy()], []
    with np.errstate(all="ignore"):
        for e in range(epochs):
            lr = float(epoch_lr[e])
            epoch_loss.append(lg(p, X, Y)[0])
            idx = order[e]
            for start in range(0, n, bs):
                b = idx[start:start + bs]
                if drop_last and len(b) < bs:
                    continue
                value, g = lg(p, X[b], Y[b])
                step_loss.append(value)
                step_lr.append(lr)
                # torch.optim.SGD (_single_tensor_sgd) step, in its order;
                # madd(s, y, x) = x + s*y is torch's x.add(y, alpha=s)
                if maximize:
                    g = -g
                if wd != 0:
                    g = madd(wd, p, g)
                if momentum != 0:
                    if buf is None:
                        buf = g.copy()
                    else:
                        buf = madd(1.0 - dampening, g, momentum * buf)
                    g = madd(momentum, buf, g) if nesterov else buf
                p = madd(-lr, g, p)
                hist.append(p.copy())
        epoch_loss.append(lg(p, X, Y)[0])
    return dict(epoch_loss=np.array(epoch_loss), step_loss=np.array(step_loss),
                grad0=grad0, params_history=np.stack(hist),
                step_lr=np.array(step_lr))


def compare(a, b, rtol=SELFCHECK_RTOL):
    """Compare a fixture array with the NumPy re-run.

    Returns (max relative difference over the finite entries, list of
    problems): NaN / inf must sit at the same places (inf with the same
    sign), finite entries must agree to rtol relative.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return np.inf, ["shape %s != %s" % (a.shape, b.shape)]
    problems = []
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        problems.append("NaN pattern differs")
    inf_a, inf_b = np.isinf(a), np.isinf(b)
    if not np.array_equal(inf_a, inf_b):
        problems.append("inf pattern differs")
    elif not np.array_equal(a[inf_a], b[inf_b]):
        problems.append("inf signs differ")
    fin = np.isfinite(a) & np.isfinite(b)
    x, y = a[fin], b[fin]
    worst = 0.0
    if x.size:
        denom = np.maximum(np.abs(x), np.abs(y))
        with np.errstate(all="ignore"):
            rel = np.where(denom > 0, np.abs(x - y) / denom, 0.0)
        worst = float(rel.max())
    if worst > rtol:
        problems.append("max rel diff %.3g > rtol %.0e" % (worst, rtol))
    return worst, problems


def selfcheck(names, fused=True):
    """Re-run every fixture in plain NumPy; print and return overall OK."""
    all_ok = True
    for name in names:
        path = os.path.join(OUT_DIR, name + ".npz")
        with np.load(path, allow_pickle=False) as z:
            f = {k: z[k] for k in z.files}
        problems = []
        has_hist = "params_history" in f
        has_sched = "lr_schedule_kind" in f
        expected = COMMON_KEYS | {"params_history" if has_hist
                                  else "params_final"}
        if "bias" in f:
            expected |= OPTION_KEYS
        if has_sched:
            expected |= SCHEDULE_KEYS
            if str(f["lr_schedule_kind"]) not in SCHEDULE_KINDS:
                problems.append("unknown lr_schedule_kind %r"
                                % str(f["lr_schedule_kind"]))
        if set(f) != expected:
            problems.append("keys differ: %s" % sorted(set(f) ^ expected))
        ref = np_trajectory(f, fused=fused)
        n_steps = ref["step_loss"].size
        n_params = n_params_of(f["sizes"], bool(f["bias"]) if "bias" in f else True)
        if has_hist != (n_params * (n_steps + 1) <= HISTORY_LIMIT):
            problems.append("params_history/params_final choice is wrong")
        pairs = {k: (f[k], ref[k]) for k in ("epoch_loss", "step_loss",
                                             "grad0")}
        if has_hist:
            pairs["params_history"] = (f["params_history"],
                                       ref["params_history"])
        else:
            pairs["params_final"] = (f["params_final"],
                                     ref["params_history"][-1])
        diffs = {}
        for k, (a, b) in pairs.items():
            diffs[k], probs = compare(a, b)
            problems += ["%s: %s" % (k, p) for p in probs]
        if has_sched and "step_lr" in f:
            # torch's (recursive) lrs against the closed forms
            diffs["step_lr"], probs = compare(f["step_lr"], ref["step_lr"],
                                              rtol=SCHEDULE_LR_RTOL)
            problems += ["step_lr: %s" % p for p in probs]
        nonfinite = sum(int((~np.isfinite(f[k])).sum()) for k in pairs)
        ok = not problems
        all_ok &= ok
        print("selfcheck %-4s %-30s max rel diff %.2e  (%s)%s%s"
              % ("OK" if ok else "FAIL", name, max(diffs.values()),
                 ", ".join("%s %.1e" % kv for kv in diffs.items()),
                 "  [%d non-finite values matched]" % nonfinite
                 if nonfinite and ok else "",
                 "" if ok else "\n    " + "; ".join(problems)))
    return all_ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(CASES),
                        help="generate/check only these cases")
    parser.add_argument("--selfcheck", action="store_true",
                        help="re-run each fixture with plain NumPy and "
                             "assert agreement")
    parser.add_argument("--selfcheck-only", action="store_true",
                        help="only self-check existing files (no torch)")
    parser.add_argument("--unfused", action="store_true",
                        help="self-check with plain (twice-rounded) x + s*y "
                             "in the SGD update instead of torch's fused "
                             "multiply-add (tutorial_sgd then fails 1e-9)")
    args = parser.parse_args(argv)
    names = args.only or list(CASES)
    if not args.selfcheck_only:
        generate(names)
    if args.selfcheck or args.selfcheck_only:
        if not selfcheck(names, fused=not args.unfused):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
