"""The CUDA target's builds and launches in Numba's simulator: the local-array and the
global-memory builds give the same numbers, and so do the CPU (tests/test_sweep.py checks
the CPU against the local-array build on more options)."""

import os

import numpy as np
import pytest

import gdsim
from conftest import make_data
from gdsim.sweeps.targets import cuda_kernels

pytestmark = pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM", "0") in ("", "0")
                                and "CUDA_VISIBLE_DEVICES" not in os.environ,
                                reason="needs NUMBA_ENABLE_CUDASIM=1 (README's test command sets it) or a GPU")

MODEL = gdsim.MLP((2, 3, 2), activation="tanh")  # 17 parameters: size class 64
# Small on purpose: the simulator runs ~0.1 ms per thread and step. Some runs diverge.
SWEEP = dict(lr=[0.1, 40.0], momentum=[0.0, 0.9], weight_decay=[0.0, 0.01], batch_size=[2, 5], epochs=2, seed=[0, 1],
             shuffle=True, divergence=10.0)
VARIABLES = ("loss", "params", "diverged_step", "diverged_loss")


def launched_sizes(monkeypatch):
    """Record the size class of every kernel build the sweeps compile from now on."""
    sizes = []
    build = cuda_kernels.compiled

    def spy(tracked, dtype, size):
        sizes.append(size)
        return build(tracked, dtype, size)

    monkeypatch.setattr("gdsim.sweeps.targets.cuda.compiled", spy)
    return sizes


@pytest.mark.parametrize("track", [None, {"loss": 1, "batch_grad_norm": 1}])
def test_local_and_global_builds_agree_bitwise_and_with_the_cpu(monkeypatch, track):
    X, Y = make_data(MODEL, 5, seed=2)
    kw = SWEEP | {"track": track}
    sizes = launched_sizes(monkeypatch)
    local = gdsim.sweep(MODEL, X, Y, target="cuda", **kw)
    monkeypatch.setattr(cuda_kernels, "LOCAL_SIZES", ())  # every model in global memory
    in_global = gdsim.sweep(MODEL, X, Y, target="cuda", **kw)
    assert sizes == [64, 0]
    cpu = gdsim.sweep(MODEL, X, Y, target="cpu", **kw)
    assert cpu.diverged.values.any() and not cpu.diverged.values.all()
    names = VARIABLES + (("track_loss", "track_batch_grad_norm") if track else ())
    for name in names:
        np.testing.assert_array_equal(local[name].values, in_global[name].values, err_msg=name)
        finite = np.isfinite(cpu[name].values)
        np.testing.assert_array_equal(np.isfinite(local[name].values), finite, err_msg=name)
        np.testing.assert_allclose(local[name].values[finite], cpu[name].values[finite], rtol=1e-12, err_msg=name)


def test_each_model_size_takes_the_smallest_class_that_holds_it():
    assert [cuda_kernels.size_class(n, 1) for n in (1, 16, 17, 64, 65, 256, 257)] == [16, 16, 64, 64, 256, 256, 0]
    assert cuda_kernels.size_class(3, 20) == 64  # the width counts too


@pytest.mark.parametrize("threads, stage", [
    (8, None),  # a block per group (8 runs each): every block stages its batches whole
    (8, 7),  # room for one sample (2 inputs + 2 targets) at a time
    (6, None),  # blocks across two groups read the samples from global memory, the others stage them
    (8, 3),  # no room for a sample (4 numbers): nothing staged
])
def test_staging_the_samples_in_shared_memory_changes_no_bit(monkeypatch, threads, stage):
    X, Y = make_data(MODEL, 5, seed=2)
    kw = SWEEP | {"track": {"loss": 1, "grad_norm": 2, "batch_loss": 1}}
    reference = gdsim.sweep(MODEL, X, Y, target="cuda", **kw)  # 64 threads: one block of 4 groups, not staged
    monkeypatch.setattr("gdsim.sweeps.targets.cuda.THREADS", threads)
    if stage is not None:
        monkeypatch.setattr(cuda_kernels, "STAGE", stage)
    cuda_kernels.compiled.cache_clear()  # STAGE is a constant of the build
    try:
        staged = gdsim.sweep(MODEL, X, Y, target="cuda", **kw)
    finally:
        cuda_kernels.compiled.cache_clear()
    assert reference.diverged.values.any() and not reference.diverged.values.all()
    for name in VARIABLES + ("track_loss", "track_grad_norm", "track_batch_loss"):
        np.testing.assert_array_equal(staged[name].values, reference[name].values, err_msg=name)


def test_chunked_launches_report_progress_and_change_no_bit(monkeypatch):
    X, Y = make_data(MODEL, 5, seed=2)
    whole = gdsim.sweep(MODEL, X, Y, target="cuda", **SWEEP)  # the simulator's "SM": 2048 runs, one launch
    monkeypatch.setattr("gdsim.sweeps.targets.cuda.THREADS", 4)
    monkeypatch.setattr("gdsim.sweeps.targets.cuda.THREADS_PER_SM", 12)  # 3 blocks of 4 runs per launch
    calls = []
    chunked = gdsim.sweep(MODEL, X, Y, target="cuda", progress=lambda done, total: calls.append((done, total)),
                          **SWEEP)
    assert calls == [(12, 32), (24, 32), (32, 32)]
    for name in VARIABLES:
        np.testing.assert_array_equal(chunked[name].values, whole[name].values, err_msg=name)


def test_an_interrupt_stops_the_sweep_between_launches(monkeypatch):
    X, Y = make_data(MODEL, 5, seed=2)
    monkeypatch.setattr("gdsim.sweeps.targets.cuda.THREADS", 4)
    monkeypatch.setattr("gdsim.sweeps.targets.cuda.THREADS_PER_SM", 8)  # 2 blocks of 4 runs per launch
    launches = []
    build = cuda_kernels.compiled

    class Counted:  # the kernel, its launches counted
        def __init__(self, kernel):
            self.kernel = kernel

        def __getitem__(self, config):
            launches.append(config)
            return self.kernel[config]

    monkeypatch.setattr("gdsim.sweeps.targets.cuda.compiled", lambda *build_args: Counted(build(*build_args)))

    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        gdsim.sweep(MODEL, X, Y, target="cuda", progress=interrupt, **SWEEP)
    assert len(launches) == 1  # of 4
