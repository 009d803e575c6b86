"""gdsim.sweep: every grid point equals gdsim.train, targets agree, divergence, bad input."""

import os
import subprocess
import sys
import warnings

import numba
import numpy as np
import pytest

import gdsim
from gdsim.sweeps.targets import cpu as cpu_target

from conftest import make_data

CUDA_SIM = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def assert_same(a, b, rtol):
    """Equal within ``rtol`` where finite, and non-finite at the same places."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    np.testing.assert_array_equal(np.isfinite(a), np.isfinite(b))
    np.testing.assert_allclose(a[np.isfinite(a)], b[np.isfinite(b)], rtol=rtol, atol=1e-300)


def check_against_train(model, X, Y, ds, *, epochs, shuffle=False, lr_schedule=None, params0=None,
                        drop_last=False, rtol=1e-12):
    """Every point of ``ds`` (made with divergence=None) equals ``gdsim.train`` at its settings."""
    defaults = {name: ds.attrs[name] for name in gdsim.sweeps.AXES if name in ds.attrs}
    stacked = ds.stack(point=[d for d in ds.final_loss.dims]) if ds.final_loss.dims else ds.expand_dims("point")
    for i in range(stacked.sizes["point"]):
        point = stacked.isel(point=i)
        settings = {**defaults, **{name: point[name].item() for name in gdsim.sweeps.AXES if name in point.coords}}
        opt = gdsim.SGD(lr=settings["lr"], momentum=settings["momentum"], dampening=settings["dampening"],
                        weight_decay=settings["weight_decay"], nesterov=bool(settings["nesterov"]))
        result = gdsim.train(model, X, Y, opt, epochs=epochs, batch_size=int(settings["batch_size"]),
                             shuffle=shuffle, seed=int(settings["seed"]), params0=params0, drop_last=drop_last,
                             lr_schedule=lr_schedule)
        assert_same(point.loss.values, result.epoch_loss, rtol)
        assert_same(point.params.values, result.params, rtol)
        assert int(point.diverged_step) == result.diverged_step, settings


def test_linear_grid_equals_train(tutorial):
    model, X, Y, p0 = tutorial
    kw = dict(epochs=3, params0=p0, drop_last=True)
    ds = gdsim.sweep(model, X, Y, lr=[0.001, 0.02, 0.3], momentum=[0.0, 0.9], weight_decay=[0.0, 0.1],
                     batch_size=[1, 7, 100], divergence=None, target="cpu", **kw)
    assert ds.final_loss.dims == ("lr", "momentum", "weight_decay", "batch_size")
    assert ds.diverged.any() and not ds.diverged.all()  # the grid crosses the stability edge
    check_against_train(model, X, Y, ds, **kw)


@pytest.mark.parametrize("loss, activation", [("mse", "tanh"), ("cross_entropy", "relu")])
def test_mlp_grid_with_seeds_shuffles_and_schedule_equals_train(loss, activation):
    model = gdsim.MLP((3, 4, 3), activation=activation, loss=loss)
    X, Y = make_data(model, 20)
    kw = dict(epochs=4, shuffle=True, lr_schedule=("step", 2, 0.5))
    ds = gdsim.sweep(model, X, Y, lr=[0.05, 0.5], momentum=0.9, nesterov=[False, True], dampening=0.0,
                     batch_size=6, seed=[0, 3], divergence=None, target="parallel", **kw)
    assert ds.final_loss.dims == ("lr", "nesterov", "seed")
    check_against_train(model, X, Y, ds, **kw)


def test_sweep_of_one_point_has_no_grid_dims(tutorial):
    model, X, Y, p0 = tutorial
    ds = gdsim.sweep(model, X, Y, lr=0.01, momentum=0.5, dampening=0.5, epochs=2, batch_size=10, params0=p0,
                     lr_schedule=[1.0, 0.1], divergence=None)
    assert ds.final_loss.dims == () and ds.loss.dims == ("epoch",) and ds.params.dims == ("param",)
    assert ds.attrs["lr"] == 0.01 and ds.attrs["batch_size"] == 10 and ds.attrs["steps_per_epoch"] == 10
    check_against_train(model, X, Y, ds, epochs=2, params0=p0, lr_schedule=[1.0, 0.1])


def test_result_is_labelled(tutorial):
    model, X, Y, p0 = tutorial
    momenta = np.array([0.0, 0.5, 0.9])
    ds = gdsim.sweep(model, X, Y, lr=np.geomspace(1e-3, 1e-1, 4), momentum=momenta, epochs=2, params0=p0)
    assert dict(ds.sizes) == {"lr": 4, "momentum": 3, "epoch": 3, "param": 2}
    np.testing.assert_array_equal(ds.momentum.values, momenta)
    sub = ds.sel(momentum=0.9)
    assert sub.final_loss.dims == ("lr",)
    np.testing.assert_array_equal(sub.final_loss.values, ds.final_loss.values[:, 2])
    np.testing.assert_array_equal(ds.final_loss.values, ds.loss.values[..., -1])
    assert ds.attrs["model"] == repr(model) and ds.attrs["epochs"] == 2 and ds.attrs["target"] == "parallel"


def test_final_loss_plots(tutorial):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    model, X, Y, p0 = tutorial
    ds = gdsim.sweep(model, X, Y, lr=[1e-3, 1e-2], momentum=[0.0, 0.9], epochs=1, params0=p0)
    mesh = ds.final_loss.plot()
    assert mesh.axes.get_xlabel().startswith("momentum") and mesh.axes.get_ylabel().startswith("lr")
    matplotlib.pyplot.close("all")


# ---------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------
def grid_for_targets():
    model = gdsim.MLP((2, 3, 2), activation="sigmoid")
    X, Y = make_data(model, 9, seed=1)
    # 3 x 3 x 2 x 2 x 2 = 72 runs: four groups (batch size x seed), each a padded block.
    kw = dict(lr=[0.01, 0.5, 40.0], momentum=[0.0, 0.5, 0.9], weight_decay=[0.0, 0.01], batch_size=[2, 9],
              seed=[0, 1], epochs=3, shuffle=True)
    return model, X, Y, kw


def test_a_group_spanning_blocks_equals_train():
    # One group of BLOCK + 7 runs: a full block and a padded one.
    model = gdsim.MLP((2, 3, 1), activation="relu")
    X, Y = make_data(model, 6, seed=2)
    lrs = np.geomspace(1e-3, 2.0, cpu_target.BLOCK + 7)
    ds = gdsim.sweep(model, X, Y, lr=lrs, momentum=0.9, batch_size=2, epochs=3, target="cpu", divergence=1e6)
    assert ds.diverged.any() and not ds.diverged.all()
    for i in (0, cpu_target.BLOCK - 1, cpu_target.BLOCK, len(lrs) - 1):
        result = gdsim.train(model, X, Y, gdsim.SGD(lr=lrs[i], momentum=0.9), epochs=3, batch_size=2)
        assert int(ds.diverged_step[i]) == result.diverged_step
        if result.diverged_step < 0:
            assert_same(ds.params.values[i], result.params, 1e-13)


def test_a_batch_tail_with_overflowing_activations_equals_train_bit_for_bit():
    # A batch of 3 samples: a group of GROUP = 4 lanes' samples padded with repeats of the
    # last one, whose hidden activation overflows to inf. The padded samples must add
    # nothing: train's per-sample kernels give -inf for every parameter (a NaN would show a
    # padded sample's 0 * inf term).
    model = gdsim.MLP((1, 1, 1), activation="relu")
    X = np.array([[1.0], [2.0], [1e200]])
    Y = np.zeros((3, 1))
    params0 = [1e200, 0.0, 1.0, 0.0]
    ds = gdsim.sweep(model, X, Y, lr=0.1, epochs=1, batch_size=3, divergence=None, params0=params0)
    result = gdsim.train(model, X, Y, gdsim.SGD(lr=0.1), epochs=1, batch_size=3, divergence=None, params0=params0)
    np.testing.assert_array_equal(result.params, [-np.inf] * 4)
    np.testing.assert_array_equal(ds.params.values, result.params)
    np.testing.assert_array_equal(ds.loss.values, result.epoch_loss)


def test_a_batch_tail_after_an_output_weight_overflowed_equals_train_bit_for_bit():
    # The first step sends the output weight to -inf (its gradient overflows; the hidden
    # weight's does not); the second batch is one sample, a group padded with three. The
    # padded samples' deltas below the output layer are -inf * 0 = NaN: they must add
    # nothing. train gives -inf for the hidden weight and bias (NaN would show a padded term).
    model = gdsim.MLP((1, 1, 1), activation="relu")
    X = np.array([[1e150], [1e150], [1e150], [1.0]])
    Y = np.zeros((4, 1))
    kw = dict(epochs=1, batch_size=3, divergence=None, params0=[1e150, 0.0, 1e-150, 0.0])
    ds = gdsim.sweep(model, X, Y, lr=1e-300, **kw)
    result = gdsim.train(model, X, Y, gdsim.SGD(lr=1e-300), **kw)
    np.testing.assert_array_equal(result.params[:2], [-np.inf, -np.inf])
    np.testing.assert_array_equal(ds.params.values, result.params)
    np.testing.assert_array_equal(ds.loss.values, result.epoch_loss)


def test_cpu_and_parallel_are_bitwise_equal_for_any_thread_count():
    model, X, Y, kw = grid_for_targets()
    serial = gdsim.sweep(model, X, Y, target="cpu", **kw)
    assert serial.diverged.any()  # divergence stops runs mid-block
    threads = numba.get_num_threads()
    try:
        for n in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(n)
            parallel = gdsim.sweep(model, X, Y, target="parallel", **kw)
            for name in ("loss", "params", "diverged_step", "diverged_loss"):
                np.testing.assert_array_equal(parallel[name].values, serial[name].values, err_msg=name)
    finally:
        numba.set_num_threads(threads)


@pytest.mark.parametrize("target", ["cpu", "parallel"])
def test_progress_reports_runs_done_up_to_the_total(target, capsys):
    model = gdsim.Linear(1, 1)
    X, Y = gdsim.datasets.tutorial_line(seed=0)
    kw = dict(lr=np.geomspace(1e-3, 0.5, 40), momentum=np.linspace(0.0, 0.9, 10), epochs=2, batch_size=1,
              target=target)
    calls = []
    ds = gdsim.sweep(model, X, Y, progress=lambda done, total: calls.append((done, total)), **kw)
    done = [d for d, _ in calls]
    assert {t for _, t in calls} == {400} and done == sorted(done) and done[-1] == 400
    assert len(calls) == -(-400 // cpu_target.BLOCK)  # once per block here (fewer than 100 blocks)
    quiet = gdsim.sweep(model, X, Y, **kw)  # reporting changes nothing in the results
    np.testing.assert_array_equal(ds.params.values, quiet.params.values)
    assert capsys.readouterr().err == ""
    gdsim.sweep(model, X, Y, progress=True, **kw)
    err = capsys.readouterr().err
    last = err.split("\r")[-1]  # tqdm rewrites its line: the last state, closed with a newline
    assert err.endswith("\n") and last.startswith("sweep of 400 runs: 100%") and "400/400" in last


@pytest.mark.skipif(not CUDA_SIM and "CUDA_VISIBLE_DEVICES" not in os.environ,
                    reason="needs NUMBA_ENABLE_CUDASIM=1 (README's test command sets it) or a GPU")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cuda_matches_cpu(dtype):
    model = gdsim.MLP((2, 3, 3), activation="tanh", loss="cross_entropy")
    X, Y = make_data(model, 5, seed=2)
    # Small on purpose: the simulator runs ~0.1 ms per thread and step.
    kw = dict(lr=[0.1, 60.0], momentum=[0.0, 0.9], nesterov=[False, True][:1], batch_size=[2, 5], epochs=2,
              seed=[0, 1], shuffle=True, dtype=dtype, divergence=10.0)
    cpu = gdsim.sweep(model, X, Y, target="cpu", **kw)
    gpu = gdsim.sweep(model, X, Y, target="cuda", **kw)
    rtol = 1e-12 if dtype == "float64" else 1e-4  # float32: the simulator rounds differently
    assert cpu.diverged.any() and not cpu.diverged.all()
    for name in ("loss", "params", "diverged_loss"):
        assert_same(gpu[name].values, cpu[name].values, rtol)
    np.testing.assert_array_equal(gpu.diverged_step.values, cpu.diverged_step.values)


@pytest.mark.parametrize("numba_cuda", ["installed", "missing"])
def test_cuda_without_gpu_names_the_fix(numba_cuda):
    code = ("import sys\n"
            + ("sys.modules['numba.cuda'] = None  # numba-cuda not installed: its import fails\n"
               if numba_cuda == "missing" else "") +
            "import gdsim, numpy as np\n"
            "try:\n"
            "    gdsim.sweep(gdsim.Linear(1, 1), np.ones((2, 1)), np.ones((2, 1)), lr=0.1, epochs=1, target='cuda')\n"
            "except RuntimeError as e:\n"
            "    print(e)\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["CUDA_VISIBLE_DEVICES"] = ""  # hide any real GPU too
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "NUMBA_ENABLE_CUDASIM=1" in out.stdout and "NVIDIA GPU" in out.stdout, out.stdout + out.stderr
    # the install hint only where numba-cuda is missing, with the spelling for a checkout too
    assert ('pip install ".[cuda]"' in out.stdout) == (numba_cuda == "missing"), out.stdout


# ---------------------------------------------------------------------------------------
# Divergence, with a known answer: one sample x = 1, y = 0, prediction s = w + b, loss s^2,
# gradient 2s for w and for b, so full-batch GD maps s -> (1 - 4 lr) s and the loss before
# step k is s0^2 (1 - 4 lr)^(2k).
# ---------------------------------------------------------------------------------------
def known_divergence(**kw):
    return gdsim.sweep(gdsim.Linear(1, 1), [[1.0]], [[0.0]], lr=[0.125, 0.5, 1.0], epochs=10,
                       params0=[0.5, 0.5], target="cpu", **kw)


def test_divergence_marked_at_the_known_step_and_run_stopped():
    ds = known_divergence(divergence=1e6)  # factor (1 - 4 lr)^2 = 1/4, 1, 9 per step
    # lr 1: 9^6 = 531441 <= 1e6 < 9^7, so the loss before step 7 is the first above 1e6 x.
    np.testing.assert_array_equal(ds.diverged_step.values, [-1, -1, 7])
    np.testing.assert_array_equal(ds.diverged.values, [False, False, True])
    assert ds.diverged_loss.values[2] == 9.0 ** 7
    s7 = (-3.0) ** 7  # s0 = 1; the stopped run keeps its parameters from before step 7
    np.testing.assert_allclose(ds.params.values[2], [0.5 * s7, 0.5 * s7], rtol=1e-15)
    np.testing.assert_allclose(ds.loss.values[2, :8], 9.0 ** np.arange(8), rtol=1e-13)
    assert np.all(np.isnan(ds.loss.values[2, 8:])) and np.isnan(ds.final_loss.values[2])
    np.testing.assert_allclose(ds.loss.values[0], 0.25 ** np.arange(11), rtol=1e-13)
    np.testing.assert_array_equal(ds.loss.values[1], np.ones(11))


def test_by_default_runs_are_classified_by_growth_and_stopped_only_at_overflow():
    ds = known_divergence()  # the loss is multiplied by (1 - 4 lr)^2 = 1/4, 1, 9 per step (= epoch)
    np.testing.assert_allclose(ds.growth_rate.values, [0.25, 1.0, 9.0], rtol=1e-12)
    # lr 0.5 flips the parameters' sign every step at a constant loss: by the loss alone, settled
    assert [gdsim.outcomes.OUTCOMES[c] for c in ds.outcome.values] == ["converging", "converged", "diverged"]
    np.testing.assert_array_equal(ds.diverged.values, [False, False, True])
    assert (ds.diverged_step.values == -1).all() and np.isfinite(ds.loss.values).all()  # 9^10 is finite
    # lr 1000: the loss 3999^(2 k) before step k first overflows at k = 43 (3999^84 < 1.8e308 < 3999^86)
    far = gdsim.sweep(gdsim.Linear(1, 1), [[1.0]], [[0.0]], lr=1e3, epochs=100, params0=[0.5, 0.5], target="cpu")
    assert int(far.diverged_step) == 43 and np.isinf(far.diverged_loss) and bool(far.diverged)
    assert np.isfinite(far.loss.values[:43]).all() and np.isinf(far.loss.values[43])
    assert np.isnan(far.loss.values[44:]).all()  # stopped there


@pytest.mark.parametrize("target", ["cpu", "parallel"])
def test_divergence_within_an_epoch_stops_the_run_at_that_step(target):
    # Per-sample SGD on the tutorial diverges in the middle of an epoch (the fused kernel).
    model = gdsim.Linear(1, 1)
    X, Y = gdsim.datasets.tutorial_line(seed=0)
    lrs, p0 = [1e-3, 0.05, 0.1], [-10.0, -20.0]
    ds = gdsim.sweep(model, X, Y, lr=lrs, momentum=[0.0, 0.9], batch_size=1, epochs=3, params0=p0, target=target,
                     divergence=1e6)
    assert ds.diverged.values.sum() >= 2
    for i, lr in enumerate(lrs):
        for j, momentum in enumerate((0.0, 0.9)):
            result = gdsim.train(model, X, Y, gdsim.SGD(lr=lr, momentum=momentum), epochs=3, batch_size=1,
                                 params0=p0, record_params=True)
            step = result.diverged_step
            assert int(ds.diverged_step[i, j]) == step
            if step >= 0:
                assert step % 100 != 0  # mid-epoch
                assert float(ds.diverged_loss[i, j]) == result.diverged_loss
                # stopped: the parameters from before that step (train goes on)
                np.testing.assert_array_equal(ds.params.values[i, j], result.params_history[step])
                assert np.isnan(ds.loss.values[i, j, step // 100 + 1:]).all()
            else:
                np.testing.assert_array_equal(ds.params.values[i, j], result.params)


def test_divergence_threshold_is_configurable_and_none_runs_to_the_end():
    assert known_divergence(divergence=1e3).diverged_step.values[2] == 4  # 9^3 = 729 <= 1e3 < 9^4
    ds = known_divergence(divergence=None)
    assert ds.diverged_step.values[2] == 7  # still marked at 1e6 x
    np.testing.assert_allclose(ds.loss.values[2], 9.0 ** np.arange(11), rtol=1e-13)


def test_overflow_is_recorded_without_warnings():
    model = gdsim.MLP((2, 4, 1), activation="tanh")
    X, Y = make_data(model, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for divergence in (1e6, None):
            ds = gdsim.sweep(model, X, Y, lr=[1e-2, 1e3], momentum=0.9, epochs=30, batch_size=1,
                             divergence=divergence)
            assert ds.diverged.values.tolist() == [False, True]
    assert not np.isfinite(ds.final_loss.values[1])  # run to the end: overflowed to inf/NaN


def test_float32():
    model = gdsim.MLP((3, 4, 1), activation="tanh")
    X, Y = make_data(model, 16)
    kw = dict(lr=[0.01, 0.1], momentum=[0.0, 0.9], epochs=5, batch_size=4)
    single = gdsim.sweep(model, X, Y, dtype="float32", **kw)
    double = gdsim.sweep(model, X, Y, **kw)
    assert single.loss.dtype == np.float32 and single.params.dtype == np.float32
    assert_same(single.loss.values, double.loss.values, 1e-5)
    assert_same(single.params.values, double.params.values, 1e-4)
    assert not np.array_equal(single.params.values, double.params.values.astype(np.float32))


def test_linear_fast_path_follows_the_general_kernel():
    # sizes [1, 1] with MSE takes a fused loop in the CPU sweep kernel; it keeps the
    # roundings of train's per-sample kernels, so the parameters agree bit for bit.
    X, Y = gdsim.datasets.tutorial_line()
    model = gdsim.Linear(1, 1)
    ds = gdsim.sweep(model, X, Y, lr=[1e-3, 1e-2], momentum=[0.0, 0.9], batch_size=[1, 30], epochs=2,
                     params0=[-10.0, -20.0], divergence=None)
    for i, lr in enumerate(ds.lr.values):
        for j, momentum in enumerate(ds.momentum.values):
            for k, batch_size in enumerate(ds.batch_size.values):
                result = gdsim.train(model, X, Y, gdsim.SGD(lr=lr, momentum=momentum), epochs=2,
                                     batch_size=int(batch_size), params0=[-10.0, -20.0])
                np.testing.assert_array_equal(ds.params.values[i, j, k], result.params)
                np.testing.assert_allclose(ds.loss.values[i, j, k], result.epoch_loss, rtol=1e-15)


# ---------------------------------------------------------------------------------------
# Bad input: a clear ValueError naming the parameter, before any work
# ---------------------------------------------------------------------------------------
@pytest.fixture
def no_work(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the kernel ran before the arguments were checked")

    monkeypatch.setattr(cpu_target, "run_plan", fail)


@pytest.mark.parametrize("change, message", [
    (dict(target="gpu"), "target must be one of"),
    (dict(lr=[0.1, -0.01]), "lr must be a finite real number >= 0 (or a 1-d array of them), got -0.01 at index 1"),
    (dict(lr=[0.1, np.nan]), "lr must be a finite real number"),
    (dict(lr=[[0.1]]), "lr must be a scalar or a 1-d array"),
    (dict(lr=[]), "lr must not be an empty array"),
    (dict(momentum=-0.5), "momentum must be a finite real number >= 0"),
    (dict(weight_decay=[0.0, np.inf]), "weight_decay must be a finite real number >= 0"),
    (dict(nesterov=True), "Nesterov momentum requires a momentum and zero dampening"),
    (dict(nesterov=[True], momentum=[0.9], dampening=[0.0, 0.1]), "every dampening 0"),
    (dict(nesterov=[0, 1]), "nesterov (every value) must be True or False"),
    (dict(batch_size=[1, 0]), "batch_size (every value) must be an integer in [1, 20]"),
    (dict(batch_size=21), "batch_size must be an integer in [1, 20]"),
    (dict(seed=[0, -1]), "seed (every value) must be an integer in [0, 9223372036854775807]"),
    (dict(epochs=0), "epochs must be an integer in [1, inf]"),
    (dict(shuffle="yes"), 'shuffle must be False (data order), True (a permutation per epoch) or "replacement"'),
    (dict(dtype="float16"), "dtype must be one of"),
    (dict(divergence=0.5), "divergence must be 'growth', a number > 1"),
    (dict(progress="yes"), "progress must be True, False or a callable"),
    (dict(lr_schedule=("cosine", 0, 0.0)), "lr_schedule T_max must be an integer in [1, 9223372036854775807]"),
    (dict(lr_schedule=("linear", 0.5)), "lr_schedule[0] (the schedule's name) must be one of"),
    (dict(lr_schedule=[1.0, 0.5]), "one real factor per epoch, shape (3,)"),
    (dict(params0=[1.0, 2.0]), "params0 must have shape (11,)"),
    (dict(Y=np.zeros((19, 1))), "Y must have shape (20, 1)"),
    (dict(X=np.zeros((20, 2))), "X must have shape (n, 3)"),
])
def test_bad_arguments_raise_before_any_work(no_work, change, message):
    model = gdsim.MLP((3, 2, 1))
    X, Y = make_data(model, 20)
    kw = dict(X=X, Y=Y, lr=0.1, epochs=3)
    kw.update(change)
    with pytest.raises(ValueError) as info:
        gdsim.sweep(model, kw.pop("X"), kw.pop("Y"), **kw)
    assert message in str(info.value)


def test_nan_in_X_is_refused(no_work):
    model = gdsim.MLP((3, 2, 1))
    X, Y = make_data(model, 20)
    X[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN or inf \(first at row 4, column 1\)"):
        gdsim.sweep(model, X, Y, lr=0.1, epochs=1)


def test_epoch_lrs_closed_forms():
    lr = np.array([0.1, 1.0])
    e = np.arange(7)
    np.testing.assert_allclose(gdsim.epoch_lrs(lr, ("step", 3, 0.5), 7)[1], [1, 1, 1, .5, .5, .5, .25])
    np.testing.assert_allclose(gdsim.epoch_lrs(lr, ("exponential", 0.9), 7)[0], 0.1 * 0.9 ** e)
    cosine = gdsim.epoch_lrs(1.0, ("cosine", 4, 0.1), 7)
    np.testing.assert_allclose(cosine[[0, 2, 4, 6]], [1.0, 0.55, 0.1, 0.55], rtol=1e-15)
    np.testing.assert_array_equal(gdsim.epoch_lrs(lr, None, 3), [[0.1] * 3, [1.0] * 3])
    np.testing.assert_allclose(gdsim.epoch_lrs(2.0, [1.0, 0.5, 0.0], 3), [2.0, 1.0, 0.0])


def _parallel_sweep_losses():
    X, Y = gdsim.datasets.tutorial_line()
    ds = gdsim.sweep(gdsim.Linear(1, 1), X, Y, lr=np.geomspace(1e-3, 0.1, 40), momentum=np.linspace(0, 0.9, 64),
                     epochs=3, batch_size=1, params0=[-10.0, -20.0], target="parallel")
    return ds.loss.values


@pytest.mark.skipif(not hasattr(os, "register_at_fork"), reason="no fork on this platform")
def test_a_forked_child_runs_parallel_sweeps_on_thread_pools_of_its_own():
    import multiprocessing

    here = _parallel_sweep_losses()  # the pools of this process exist now (sweep and classify)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.apply_async(_parallel_sweep_losses).get(timeout=120)  # hung with the parent's pools
    np.testing.assert_array_equal(child, here)


# ---------------------------------------------------------------------------------------
# The Dataset: built without xarray's checks for Dask arrays (their import is a fifth of a
# new process's first sweep), the same as xarray's own conversion of the plain arrays.
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_result_is_the_dataset_xarray_makes_of_the_plain_arrays(monkeypatch, dtype):
    import xarray as xr

    from gdsim.sweeps import dataset

    model = gdsim.MLP((2, 3, 1))
    X, Y = make_data(model, 6, seed=1)
    kw = dict(lr=[0.1, 0.05], momentum=[0.5, 0.9], nesterov=[False, True], weight_decay=[0.0, 1e-3],
              batch_size=[2, 3], seed=[0, 4], epochs=3, shuffle=True, dtype=dtype, target="cpu",
              track={"loss": 2} if dtype == "float64" else None)  # tracks: float64 only
    ours = gdsim.sweep(model, X, Y, **kw)
    # xarray's conversion: every variable and coordinate handed over as the arrays themselves
    monkeypatch.setattr(dataset, "_variable", lambda dims, data, attrs=None: (dims, data, attrs))
    monkeypatch.setattr(dataset, "_coordinate", lambda name, coordinate: coordinate)
    plain = gdsim.sweep(model, X, Y, **kw)
    xr.testing.assert_identical(ours, plain)
    assert list(ours.variables) == list(plain.variables) and list(ours.dims) == list(plain.dims)
    for name, variable in plain.variables.items():
        assert ours[name].dtype == variable.dtype, name
        assert type(ours[name].variable) is type(variable), name
    assert set(ours.xindexes) == set(plain.xindexes) == set(ours.dims)
    for name, index in plain.xindexes.items():
        assert type(ours.xindexes[name]) is type(index), name
        assert ours.xindexes[name].equals(index) and ours.xindexes[name].coord_dtype == index.coord_dtype, name
        assert ours.indexes[name].dtype == plain.indexes[name].dtype, name


@pytest.mark.parametrize("gc_state", ["on", "off", "frozen"])
def test_a_first_train_and_sweep_import_no_dask_and_leave_the_gc_as_it_was(gc_state):
    code = ("import gc, sys\n"
            "marker = [[]]  # tracked by the GC\n"
            + {"on": "", "off": "gc.disable()\n", "frozen": "gc.freeze()\n"}[gc_state] +
            "import gdsim\n"
            "gdsim.train(gdsim.Linear(1, 1), [[1.0], [2.0]], [[0.0], [1.0]], gdsim.SGD(lr=0.1), epochs=2)\n"
            "ds = gdsim.sweep(gdsim.Linear(1, 1), [[1.0], [2.0]], [[0.0], [1.0]], lr=[0.1, 0.2], epochs=2)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dask'), gc.isenabled(),\n"
            "      gc.get_freeze_count() > 0, any(o is marker for o in gc.get_objects()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    # the GC as it was: on or off, and what was frozen still so (no other object frozen)
    frozen = gc_state == "frozen"
    assert out.stdout.split("\n")[0] == f"[] {gc_state != 'off'} {frozen} {not frozen}", out.stdout + out.stderr


def test_a_cold_one_thread_sweep_compiles_while_this_thread_builds_the_dataset(tmp_path):
    # A loop that compiles (an empty cache) runs on the sweep's pool even on one thread, so
    # that this thread imports xarray and builds the Dataset meanwhile (the compile's LLVM
    # passes release the GIL). Then from the cache (nothing compiled): the same numbers.
    code = """if True:
        import threading
        import numpy as np
        from numba.core import event
        import gdsim

        class Where(event.Listener):
            threads = set()

            def on_start(self, data):
                self.threads.add(threading.current_thread().name.split("_")[0])

            def on_end(self, data):
                pass

        event.register("numba:compile", Where())
        X, Y = gdsim.datasets.tutorial_line()
        result = gdsim.sweep(gdsim.Linear(1, 1), X, Y, lr=[1e-3, 1e-2], momentum=[0.0, 0.9], epochs=2, batch_size=1,
                             params0=[-10.0, -20.0], target="cpu")
        print(sorted(Where.threads), result.loss.values.tobytes().hex())
    """
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    cold, cached = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600,
                                   check=False).stdout.split(" ") for _ in range(2)]
    assert cold[0] == "['gdsim-sweep']", cold
    assert cached[0] == "[]", cached
    assert cold[1] == cached[1]
