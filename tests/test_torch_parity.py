"""gdsim against PyTorch trajectories stored as fixtures (made by make_torch_fixtures.py).

Each fixture holds its own inputs (data, initial parameters, batch orders) and the
trajectory ``torch.optim.SGD`` produced from them in float64; torch itself is not needed.
"""

import pathlib

import numpy as np
import pytest

import gdsim

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "torch"
CASES = sorted(p.stem for p in FIXTURES.glob("*.npz"))
RTOL = 1e-10


def load(case):
    with np.load(FIXTURES / f"{case}.npz") as f:
        return {k: f[k] for k in f.files}


def lr_schedule_of(fx):
    """The fixture's lr schedule as gdsim takes it (None without one)."""
    if "lr_schedule_kind" not in fx:
        return None
    kind, args = str(fx["lr_schedule_kind"]), fx["lr_schedule_args"]
    if kind == "array":
        return np.array(args, dtype=np.float64)
    if kind in ("step", "cosine"):  # (step_size, gamma) / (T_max, eta_min)
        return (kind, int(args[0]), float(args[1]))
    if kind == "exponential":
        return (kind, float(args[0]))
    raise ValueError(f"unknown lr_schedule_kind {kind!r}")


def model_options(fx):
    """The fixture's model options (the opt_* cases; torch's nn.Linear without them)."""
    if "bias" not in fx:
        return {}
    return {"bias": bool(fx["bias"]), "parameterization": str(fx["parameterization"])}


def run(fx):
    sizes = tuple(int(s) for s in fx["sizes"])
    model = gdsim.MLP(sizes, activation=str(fx["activation"]), loss=str(fx["loss"]),
                      reduction=str(fx["reduction"]), **model_options(fx))
    opt = gdsim.SGD(lr=float(fx["lr"]), momentum=float(fx["momentum"]), dampening=float(fx["dampening"]),
                    weight_decay=float(fx["weight_decay"]), nesterov=bool(fx["nesterov"]),
                    maximize=bool(fx["maximize"]))
    schedule = {} if "lr_schedule_kind" not in fx else {"lr_schedule": lr_schedule_of(fx)}
    result = gdsim.train(model, fx["X"], fx["Y"], opt, epochs=int(fx["epochs"]), batch_size=int(fx["batch_size"]),
                         shuffle=fx["order"], drop_last=bool(fx["drop_last"]), params0=fx["params0"],
                         record_params="params_history" in fx, **schedule)
    return model, result


def test_fixtures_are_present():
    # The nine torch.optim.SGD test configurations, the tutorial, the MLPs, the classifiers and
    # the five lr-schedule cases (StepLR, ExponentialLR, CosineAnnealingLR twice, LambdaLR).
    assert len(CASES) >= 23, CASES
    kinds = {str(load(c)["lr_schedule_kind"]) for c in CASES if c.startswith("sched_")}
    assert kinds == {"step", "exponential", "cosine", "array"}, kinds
    # The model options (opt_*): no bias, NTK (an explicit torch module), MSELoss / 2.
    options = [(model_options(fx), str(fx["reduction"])) for fx in map(load, CASES) if "bias" in fx]
    assert {o["bias"] for o, _ in options} == {True, False}
    assert {o["parameterization"] for o, _ in options} == {"standard", "ntk"}
    assert {r for _, r in options} >= {"half_mean", "half_sum"}


@pytest.mark.parametrize("case", CASES)
def test_trajectory_matches_torch(case):
    fx = load(case)
    model, result = run(fx)
    np.testing.assert_allclose(model.grad(fx["params0"], fx["X"], fx["Y"]), fx["grad0"], rtol=RTOL, atol=1e-14)
    np.testing.assert_allclose(result.epoch_loss, fx["epoch_loss"], rtol=RTOL)
    np.testing.assert_allclose(result.step_loss, fx["step_loss"], rtol=RTOL)
    if "params_history" in fx:
        np.testing.assert_allclose(result.params_history, fx["params_history"], rtol=RTOL, atol=1e-14)
    else:
        np.testing.assert_allclose(result.params, fx["params_final"], rtol=RTOL, atol=1e-14)


def test_tutorial_data_follows_its_recipe():
    # The fixture script draws the tutorial data from the recipe in the docs, independently.
    fx = load("tutorial_batch_gd")
    X, Y = gdsim.datasets.tutorial_line(seed=0)
    np.testing.assert_array_equal(X, fx["X"])
    np.testing.assert_array_equal(Y, fx["Y"])


def test_tutorial_outcomes():
    # The tutorial's story: batch GD converges, per-sample SGD blows up to ~1e13 but stays finite.
    _, gd = run(load("tutorial_batch_gd"))
    _, sgd = run(load("tutorial_sgd"))
    assert not gd.diverged and gd.epoch_loss[-1] < 1e-3 * gd.epoch_loss[0]
    assert sgd.diverged and np.all(np.isfinite(sgd.step_loss)) and sgd.epoch_loss[-1] > 1e12
