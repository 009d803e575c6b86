"""benchmarks/limits.py: the hand-written W2 and W3 kernels compute what gdsim.sweep computes.

An independent implementation of the same runs, so each checks the other: small grids of
W2 and W3 (including runs that diverge) agree to 1e-12 with ``gdsim.sweep(...,
divergence=None)``, through ``bench.compare`` and directly on every loss.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

import gdsim
from gdsim.batches import batch_orders

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench  # noqa: E402
import limits  # noqa: E402


def _check(ds, params, loss, diverged, rtol=1e-12):
    """The limit kernel's results against gdsim's Dataset ``ds`` (dims lr, momentum)."""
    C = params.shape[0]
    ref = bench._sweep_outcome(ds, np.arange(C))
    cmp = bench.compare(ref, bench.Outcome(np.arange(C), params, loss, diverged), rtol=rtol)
    assert cmp["agree"], cmp
    assert cmp["n_compared"] > C // 2  # most runs are compared, not excused as diverged
    np.testing.assert_array_equal(diverged, ref.diverged)  # the same diverged flags, step losses included
    ok = ~ref.diverged
    np.testing.assert_allclose(loss[ok], ref.loss[ok], rtol=rtol, atol=0)  # every epoch's loss
    return cmp


@pytest.mark.parametrize("shuffle", [False, True])
def test_line_sweep_matches_gdsim(shuffle):
    X, Y = gdsim.datasets.tutorial_line(seed=0)
    lr_axis, m_axis = np.geomspace(1e-4, 1, 8), np.linspace(0, 0.99, 6)  # 48 runs: not a whole block
    epochs, params0 = 3, np.array([-10.0, -20.0])
    ds = gdsim.sweep(gdsim.Linear(1, 1), X, Y, lr=lr_axis, momentum=m_axis, batch_size=1, epochs=epochs,
                     params0=params0, shuffle=shuffle, seed=3, divergence=None)
    lr, m = (a.ravel() for a in np.meshgrid(lr_axis, m_axis, indexing="ij"))
    orders = batch_orders(X.shape[0], epochs, shuffle, 3)  # the orders gdsim draws from the seed
    params, loss, diverged = limits.line_sweep(X, Y, lr, m, params0, orders)
    cmp = _check(ds, params, loss, diverged)
    assert cmp["n_diverged"] > 0  # the grid reaches lr = 1: some runs blow up


def test_mlp_sweep_matches_gdsim():
    X, Y = gdsim.datasets.teacher_mlp(n=128, sizes=(10, 5, 1), seed=0)
    model = gdsim.MLP((10, 5, 1), activation="relu")
    lr_axis, m_axis = np.geomspace(1e-3, 1, 6), np.linspace(0, 0.95, 6)
    epochs, params0 = 3, model.init(0)
    ds = gdsim.sweep(model, X, Y, lr=lr_axis, momentum=m_axis, batch_size=16, epochs=epochs, params0=params0,
                     divergence=None)
    lr, m = (a.ravel() for a in np.meshgrid(lr_axis, m_axis, indexing="ij"))
    params, loss, diverged = limits.mlp_sweep(X, Y, lr, m, params0, batch_orders(X.shape[0], epochs), 16)
    _check(ds, params, loss, diverged)


def test_limit_runner_and_flops():
    """bench's limit row runs on a quick workload, and the flop counts are the documented ones."""
    wl = bench.make_workload("W3", quick=True)
    runner = bench.make_runner(wl, "limit")
    runner.prepare()
    assert runner.run().params.shape == (wl.problem.n_configs, 61)
    assert bench.workload_flops(bench.make_workload("W2")) == 48_600 * 8192
    assert bench.workload_flops(bench.make_workload("W3")) == 3_927_808 * 512
