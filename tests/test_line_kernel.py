"""The fused kernel of the line model ``y = w x + b`` (gdsim.sweeps.targets.cpu_line: two
samples per pass, divergence replayed run by run) against the general layer kernels
(cpu_lanes), which compute the same runs another way: every output bitwise equal, with
runs marked as diverged at every step parity, stopped or not; in float32 (where the
fused kernel keeps its intermediates in float64, as it always did) the same diverged steps
and close numbers."""

import numpy as np
import pytest

import gdsim
from gdsim.sweeps.targets import cpu as cpu_target
from gdsim.sweeps.targets.cpu_blocks import BLOCK_LOOPS

OUTPUTS = ("loss", "params", "diverged_step", "diverged_loss")


def line_sweep(general_kernels, monkeypatch, **kw):
    """The sweep of the line model on 25 tutorial samples (an odd number: a lone last
    sample per epoch), with the fused kernel or (``general_kernels``) the layer kernels."""
    if general_kernels:
        # the layer kernels of a plain model (line: False, plain: True), as for Linear(n, m)
        monkeypatch.setattr(cpu_target, "block_loop", lambda plan: BLOCK_LOOPS[False, plan.needs_general_update, True])
    X, Y = gdsim.datasets.tutorial_line(seed=1)
    return gdsim.sweep(gdsim.Linear(1, 1), X[:25], Y[:25], batch_size=1, params0=[-10.0, -20.0], target="cpu", **kw)


@pytest.mark.parametrize("divergence", [None, 1.5, 10.0, "growth"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fused_line_kernel_equals_the_layer_kernels(divergence, dtype, monkeypatch):
    # lr up to 0.3 with x up to ~10: many runs blow up. Factor 10 marks runs at steps of
    # both parities (either sample of a pass) and stops them; factor 1.5 marks every run
    # at step 0 (the shuffled first sample's loss is above 1.5 times the mean), which
    # stops the whole block at once.
    kw = dict(lr=np.geomspace(1e-3, 0.3, 23), momentum=[0.0, 0.9], epochs=12, shuffle=True, seed=4,
              divergence=divergence, dtype=dtype)
    fused = line_sweep(False, monkeypatch, **kw)
    layers = line_sweep(True, monkeypatch, **kw)
    steps = fused.diverged_step.values
    if divergence == 10.0:
        assert (steps < 0).any() and {0, 1} <= set(steps[steps >= 0] % 2)
    if divergence == 1.5:
        assert (steps == 0).all()
    if dtype == "float64":
        for name in OUTPUTS:
            np.testing.assert_array_equal(fused[name].values, layers[name].values, err_msg=name)
    else:  # float32: the fused kernel rounds its float64 intermediates less often
        np.testing.assert_array_equal(steps, layers.diverged_step.values)
        for name in ("loss", "params"):
            a, b = fused[name].values, layers[name].values
            np.testing.assert_array_equal(np.isfinite(a), np.isfinite(b), err_msg=name)
            np.testing.assert_allclose(a[np.isfinite(a)], b[np.isfinite(b)], rtol=1e-4, err_msg=name)


def test_fused_line_kernel_with_the_full_update_equals_the_layer_kernels(monkeypatch):
    kw = dict(lr=np.geomspace(1e-3, 0.2, 9), momentum=[0.0, 0.9], dampening=[0.0, 0.3], weight_decay=[0.0, 0.1],
              epochs=5, divergence=1e3)
    fused = line_sweep(False, monkeypatch, **kw)
    layers = line_sweep(True, monkeypatch, **kw)
    assert (fused.diverged_step.values >= 0).any()
    for name in OUTPUTS:
        np.testing.assert_array_equal(fused[name].values, layers[name].values, err_msg=name)
