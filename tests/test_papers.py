"""examples/papers.py: four results of the literature, measured through track=, against the
papers' statements (the thresholds are closed forms, the rest the papers' qualitative laws)."""

import importlib.util
import pathlib

import numpy as np

spec = importlib.util.spec_from_file_location("papers", pathlib.Path(__file__).parent.parent / "examples" / "papers.py")
papers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(papers)


def test_edge_of_stability_holds_the_sharpness_at_2_over_lr():
    out = papers.edge_of_stability()
    median, low, high, _ = out[0.0]
    assert abs(median - 1) < 0.01 and 0.95 < low and high < 1.05  # GD: at 2 / lr, within a few percent
    assert 1.0 < out[0.9][3] < 1.2  # heavy ball reaches (2 + 2 beta) / lr, overshoots a little, falls back


def test_catapult_regimes_of_the_uv_model():
    out = papers.catapult()
    assert out[0.75][0] <= 1.0 + 1e-12  # below 2 / lambda0: the loss never rises
    peak, final, curvature = out[1.5]
    assert peak > 2 and final < 1e-10 and curvature < 1  # catapulted into a flatter region, then converged
    assert not np.isfinite(out[2.5][1]) or out[2.5][1] > 1e10  # above 4 / lambda0: diverged


def test_linear_stability_decides_whether_sgd_stays_at_a_minimum():
    out = papers.linear_stability()
    (a_low, radius_low, left_low), (a_high, radius_high, left_high) = out[0.2], out[0.35]
    assert a_low < 2 and a_high < 2  # both lrs are stable for full-batch GD
    assert radius_low <= 1 and left_low == 0
    assert radius_high > 1 and left_high >= 20


def test_the_noise_scale_grows_as_the_loss_falls():
    loss0, loss1, simple0, simple1, noise0, noise1 = papers.noise_scale()
    assert loss1 < loss0 / 5
    assert simple1 > 10 * simple0 and noise1 > 10 * noise0
    assert 0 < noise0 <= 2 * simple0  # B_noise and B_simple agree in order of magnitude


def test_divergence_labels_follow_the_epoch_map():
    by_threshold, by_growth, edge, growth, radius_squared = papers.divergence_labels()
    assert by_threshold < 0.07  # the 1e6 x rule: from about 0.062, far below the edge
    assert edge - 0.001 <= by_growth <= edge + 0.001  # the grid's spacing
    np.testing.assert_allclose(growth, radius_squared, rtol=1e-3)
