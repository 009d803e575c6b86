"""gdsim.sweep(..., track=): every grid point's tracks are what gdsim.train(..., track=)
measures at its settings, on every target, into memory, a store or a cluster."""

import os

import numba
import numpy as np
import pytest

import gdsim
from gdsim.sweeps import check_sweep
from gdsim.sweeps.spec import CUDA_TRACKS, SWEEP_TRACKS
from gdsim.tracks import BATCH_TRACKS

from conftest import assert_same_bits, make_data

CUDA_SIM = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
needs_cuda = pytest.mark.skipif(not CUDA_SIM and "CUDA_VISIBLE_DEVICES" not in os.environ,
                                reason="needs NUMBA_ENABLE_CUDASIM=1 (README's test command sets it) or a GPU")
ALL = {"loss": 1, "grad_norm": 2, "batch_loss": 1, "batch_grad_norm": 3, "sharpness": 5, "batch_sharpness": 4}
CHEAP = {name: ALL[name] for name in CUDA_TRACKS}


def expected_tracks(result, steps, names, stopped_at=None, shift=0):
    """``result.tracks`` (a train result) laid out over a sweep's ``steps``: NaN where the
    run measures nothing; for a run the sweep stopped at ``stopped_at``, full-data
    observables up to that step and batch observables before it. ``shift`` moves train's
    steps (a wrong convention, for the tests that show the check can fail)."""
    out = {}
    for name in names:
        values = np.full(steps.size, np.nan)
        at = result.tracks.step.values + shift
        keep = np.isin(at, steps)
        values[np.searchsorted(steps, at[keep])] = result.tracks[name].values[keep]
        if stopped_at is not None:
            values[steps > stopped_at - (name in BATCH_TRACKS)] = np.nan
        out[name] = values
    return out


def divergence_of(ds):
    """The ``divergence`` argument a sweep result was made with, from its attributes."""
    if ds.attrs["divergence_rule"] == "growth":
        return "growth"
    factor = ds.attrs["divergence_factor"]
    if ds.attrs["stop_diverged"]:
        return factor
    return None if factor == 1e6 else "nonfinite"


def check_tracks_against_train(model, X, Y, ds, track, *, epochs, rtol, shuffle=False, params0=None,
                               drop_last=False, lr_schedule=None, shift=0):
    """Every point of ``ds`` holds train's tracks (within ``rtol``; 0: the same bits)."""
    names = list(track)
    defaults = {name: ds.attrs[name] for name in gdsim.sweeps.AXES if name in ds.attrs}
    dims = list(ds.final_loss.dims)
    stacked = ds.stack(point=dims) if dims else ds.expand_dims("point")
    for i in range(stacked.sizes["point"]):
        point = stacked.isel(point=i)
        s = {**defaults, **{name: point[name].item() for name in gdsim.sweeps.AXES if name in point.coords}}
        opt = gdsim.SGD(lr=s["lr"], momentum=s["momentum"], dampening=s["dampening"],
                        weight_decay=s["weight_decay"], nesterov=bool(s["nesterov"]))
        result = gdsim.train(model, X, Y, opt, epochs=epochs, batch_size=int(s["batch_size"]), shuffle=shuffle,
                             seed=int(s["seed"]), params0=params0, drop_last=drop_last, lr_schedule=lr_schedule,
                             track=track, divergence=divergence_of(ds))
        step = int(point.diverged_step)
        assert step == result.diverged_step, s
        stopped = step if ds.attrs["stop_diverged"] and step >= 0 else None
        want = expected_tracks(result, ds.step.values, names, stopped, shift)
        for name in names:
            got = point["track_" + name].values
            if rtol == 0:
                np.testing.assert_array_equal(got, want[name], err_msg=f"{name} at {s}")
            else:
                np.testing.assert_array_equal(np.isnan(got), np.isnan(want[name]), err_msg=f"{name} at {s}")
                np.testing.assert_allclose(got, want[name], rtol=rtol, atol=0, err_msg=f"{name} at {s}")


@pytest.fixture(scope="module")
def line():
    X, Y = gdsim.datasets.tutorial_line(0)
    # 3 epochs of 100 samples: 300, 42 or 3 steps; lr 0.3 diverges at batch size 1 and 7.
    kw = dict(lr=[0.001, 0.3], momentum=[0.0, 0.9], weight_decay=0.1, batch_size=[1, 7, 100], epochs=3,
              params0=[-10.0, -20.0], drop_last=True)
    return gdsim.Linear(1, 1), X, Y, kw


def test_linear_grid_tracks_are_trains_bits(line):
    model, X, Y, kw = line
    ds = gdsim.sweep(model, X, Y, divergence=None, target="cpu", track=ALL, **kw)
    assert ds.track_loss.dims == ("lr", "momentum", "batch_size", "step")
    assert ds.diverged.any() and not ds.diverged.all()
    # The step coordinate: every step some run measures (the union over batch sizes).
    assert ds.step.values.tolist() == list(range(301))
    assert ds.track_grad_norm.attrs["every"] == 2 and ds.track_loss.attrs["long_name"] == "full-data loss"
    check_tracks_against_train(model, X, Y, ds, ALL, epochs=3, rtol=0, params0=kw["params0"], drop_last=True)
    # The full-data loss at each epoch's first step is the sweep's own loss (its kernels: within 1e-12).
    full = ds.sel(batch_size=7, lr=0.001)
    np.testing.assert_allclose(full.track_loss.sel(step=[0, 14, 28, 42]), full.loss, rtol=1e-12)


def test_a_shifted_step_convention_is_caught(line):
    model, X, Y, kw = line
    kw = dict(kw, lr=0.001, momentum=0.9, batch_size=7)
    ds = gdsim.sweep(model, X, Y, divergence=None, target="cpu", track={"loss": 2, "batch_loss": 3}, **kw)
    check_tracks_against_train(model, X, Y, ds, {"loss": 2, "batch_loss": 3}, epochs=3, rtol=0,
                               params0=kw["params0"], drop_last=True)
    for shift in (1, 2):  # measurements one step later (1: NaN places differ; 2: values differ)
        with pytest.raises(AssertionError):
            check_tracks_against_train(model, X, Y, ds, {"loss": 2, "batch_loss": 3}, epochs=3, rtol=1e-12,
                                       params0=kw["params0"], drop_last=True, shift=shift)


def mlp_grid():
    model = gdsim.MLP((3, 4, 2), activation="tanh")
    X, Y = make_data(model, 12, seed=3)
    # lr 40 diverges: marked at step 2 or 3 at 1e6 x, at step 1 at 10 x (batch size 5: mid-epoch;
    # 12: every step starts an epoch).
    kw = dict(lr=[0.05, 40.0], momentum=[0.5, 0.9], nesterov=[False, True], batch_size=[5, 12], seed=[0, 1],
              epochs=3, shuffle=True, lr_schedule=("exponential", 0.7))
    return model, X, Y, kw


@pytest.mark.parametrize("divergence", [None, 10.0])
def test_mlp_grid_tracks_with_shuffles_momentum_and_stopped_runs_are_trains(divergence):
    model, X, Y, kw = mlp_grid()
    ds = gdsim.sweep(model, X, Y, divergence=divergence, target="parallel", track=ALL, **kw)
    assert ds.diverged.any() and not ds.diverged.all()
    assert (ds.diverged_step.sel(batch_size=5) % 3 != 0).any()  # some mid-epoch (3 steps per epoch)
    check_tracks_against_train(model, X, Y, ds, ALL, epochs=3, rtol=0, shuffle=True, lr_schedule=kw["lr_schedule"])


def test_tracks_change_nothing_else_and_cpu_equals_parallel_for_any_thread_count():
    model, X, Y, kw = mlp_grid()
    plain = gdsim.sweep(model, X, Y, target="cpu", **kw)
    serial = gdsim.sweep(model, X, Y, target="cpu", track=ALL, **kw)
    assert "step" not in plain.coords and not [v for v in plain.data_vars if v.startswith("track_")]
    assert_same_bits(serial[list(plain.data_vars)], plain)
    threads = numba.get_num_threads()
    try:
        for n in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(n)
            assert_same_bits(gdsim.sweep(model, X, Y, target="parallel", track=ALL, **kw), serial)
    finally:
        numba.set_num_threads(threads)


@needs_cuda
@pytest.mark.parametrize("divergence, track", [(None, CHEAP), (10.0, CHEAP), (10.0, {"grad_norm": 3, "batch_loss": 2})])
def test_cuda_tracks_are_trains(divergence, track):
    # ReLU: a diverging tanh network saturates, and the gradients through its saturated units
    # (1 - tanh^2, a cancellation) magnify roundings far beyond 1e-12 once the loss is ~1e10.
    model = gdsim.MLP((2, 3, 2), activation="relu")
    X, Y = make_data(model, 5, seed=2)
    # Small on purpose: the simulator runs ~0.1 ms per thread and step.
    kw = dict(lr=[0.1, 5.0], momentum=[0.0, 0.9], batch_size=[2, 5], epochs=2, seed=[0, 1], shuffle=True)
    ds = gdsim.sweep(model, X, Y, target="cuda", divergence=divergence, track=track, **kw)
    assert ds.diverged.any() and not ds.diverged.all()
    check_tracks_against_train(model, X, Y, ds, track, epochs=2, rtol=1e-12, shuffle=True)
    cpu = gdsim.sweep(model, X, Y, target="cpu", divergence=divergence, track=track, **kw)
    for name in track:
        np.testing.assert_array_equal(np.isnan(ds["track_" + name]), np.isnan(cpu["track_" + name]))


def test_known_divergence_tracks_end_where_the_run_stopped():
    # Full-batch GD on one sample: loss 9^k before step k at lr 1, marked at step 7 (9^7 > 1e6).
    ds = gdsim.sweep(gdsim.Linear(1, 1), [[1.0]], [[0.0]], lr=[0.125, 1.0], epochs=10, params0=[0.5, 0.5],
                     target="cpu", track={"loss": 1, "batch_loss": 1}, divergence=1e6)
    assert ds.diverged_step.values.tolist() == [-1, 7]
    np.testing.assert_allclose(ds.track_loss.values[1, :8], 9.0 ** np.arange(8), rtol=1e-13)
    assert np.isnan(ds.track_loss.values[1, 8:]).all()  # the loss before step 7 is kept, none after
    np.testing.assert_allclose(ds.track_batch_loss.values[1, :7], 9.0 ** np.arange(7), rtol=1e-13)
    assert np.isnan(ds.track_batch_loss.values[1, 7:]).all()  # step 7's batch: no update made
    np.testing.assert_allclose(ds.track_loss.values[0], 0.25 ** np.arange(11), rtol=1e-13)
    assert np.isnan(ds.track_batch_loss.values[0, 10])  # no batch after the last step


# ---------------------------------------------------------------------------------------
# Stores, clusters, memory and bad input
# ---------------------------------------------------------------------------------------
def test_a_store_and_a_cluster_hold_the_tracks(line, tmp_path):
    distributed = pytest.importorskip("distributed")
    model, X, Y, kw = line
    kw = dict(kw, track={"loss": 3, "batch_grad_norm": 1})
    here = gdsim.sweep(model, X, Y, **kw)
    stored = gdsim.sweep(model, X, Y, store=tmp_path / "t.zarr", chunk_runs=2, **kw)
    assert_same_bits(stored.load(), here)
    assert_same_bits(gdsim.sweep(model, X, Y, store=tmp_path / "t.zarr", **kw).load(), here)  # resumed: all done
    with pytest.raises(gdsim.ParameterError, match="holds another result"):  # the tracks are part of its identity
        gdsim.sweep(model, X, Y, store=tmp_path / "t.zarr", **dict(kw, track={"loss": 2}))
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as client:
        assert_same_bits(gdsim.sweep(model, X, Y, scheduler=client, chunk_runs=5, **kw), here)
        assert_same_bits(gdsim.sweep(model, X, Y, scheduler=client, store=tmp_path / "c.zarr", chunk_runs=5,
                                     **kw).load(), here)


def test_the_tracks_count_in_the_memory_check(monkeypatch):
    model = gdsim.Linear(1, 1)
    X, Y = gdsim.datasets.tutorial_line(0)
    kw = dict(lr=np.geomspace(1e-3, 0.1, 100), batch_size=1, epochs=100)  # 100 runs, 10^4 steps each
    page = os.sysconf("SC_PAGE_SIZE")
    pages = 2**21 // page  # 2 MiB: the losses fit (~200 KiB), the tracks (~16 MiB) do not
    monkeypatch.setattr(gdsim._resources, "available_memory", lambda: pages * page)
    check_sweep(model, X, Y, **kw)
    with pytest.raises(gdsim.ParameterError, match="a sweep of 100 runs .* the tracks at every measured step"):
        check_sweep(model, X, Y, track={"loss": 1}, **kw)
    check_sweep(model, X, Y, track={"loss": 100}, **kw)


def test_the_spec_keeps_its_digest_without_tracks():
    model, X, Y, kw = mlp_grid()
    plain = check_sweep(model, X, Y, **kw)
    assert plain.track == () and check_sweep(model, X, Y, track={}, **kw).digest() == plain.digest()
    tracked = check_sweep(model, X, Y, track={"batch_loss": 2, "loss": 1}, **kw)
    assert tracked.track == (("loss", 1), ("batch_loss", 2)) and tracked.digest() != plain.digest()
    assert check_sweep(model, X, Y, track={"loss": 1, "batch_loss": 2}, **kw).digest() == tracked.digest()


@pytest.mark.parametrize("change, message", [
    (dict(track={"params": 10}), r"a sweep tracks \['loss', 'grad_norm', 'batch_loss', 'batch_grad_norm', "
                                 r"'sharpness', 'batch_sharpness'\] .*not 'params'"),
    (dict(track={"noise_scale": 10}), "not 'noise_scale'; gdsim.train tracks every observable"),
    (dict(track={"los": 1}), "track: unknown observable 'los' .did you mean 'loss'"),
    (dict(track={"loss": 0}), r"track\['loss'\] must be an integer in \[1, inf\]"),
    (dict(track=["loss"]), "track must be a dict"),
    (dict(track={"loss": 1}, dtype="float32"), "track needs dtype='float64'"),
    (dict(track={"loss": 1, "sharpness": 5}, target="cuda"), r"target='cuda' measures \['loss', 'grad_norm', "
                                                               r"'batch_loss', 'batch_grad_norm'\], not 'sharpness'"),
])
def test_bad_track_is_refused_before_any_work(change, message):
    model = gdsim.MLP((3, 2, 1))
    X, Y = make_data(model, 20)
    with pytest.raises(gdsim.ParameterError, match=message) as info:
        gdsim.sweep(model, X, Y, lr=0.1, epochs=3, **change)
    assert info.value.param == "track"


def test_a_spec_moved_to_cuda_keeps_the_cuda_rule():
    from gdsim.sweeps.targets import cuda

    assert cuda.KERNEL_TRACKS == CUDA_TRACKS and set(CUDA_TRACKS) < set(SWEEP_TRACKS)
    model, X, Y, kw = mlp_grid()
    spec = check_sweep(model, X, Y, track={"batch_sharpness": 2}, target="cpu", **kw)
    with pytest.raises(gdsim.ParameterError, match="not 'batch_sharpness'"):
        spec.with_target("cuda")
    assert check_sweep(model, X, Y, track=CHEAP, **kw).with_target("cuda").target == "cuda"
