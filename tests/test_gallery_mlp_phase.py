"""Figure 6 (the MLP's phase diagram): README's paragraph says what the figure shows, with
numbers computed here again from a sweep of the study's settings and from gdsim.theory.
(The figure is gdsim.plot.heatmap: tests/test_plot.py checks its line, heavy ball and
Nesterov, over full-batch panels only.)"""

import pathlib
import re

import numpy as np
import pytest

import gdsim
from gdsim import theory
from gdsim.studies import load_study

ROOT = pathlib.Path(__file__).parents[1]
# One line: a sentence may be wrapped anywhere.
PARAGRAPH = " ".join(re.search(r"\*\*6\. .*?(?=\n\*\*7\. )", (ROOT / "README.md").read_text(), re.DOTALL)[0].split())
MOMENTA = (0.0, 0.9, 0.95)  # the rows the paragraph quotes


def first_diverged(ds, **point):
    """The smallest lr of the sweep whose run diverged at ``point`` (the gray region's edge)."""
    diverged = ds.diverged.sel(**point).values
    assert diverged.any(), point
    return float(ds.lr.values[np.argmax(diverged)])


@pytest.fixture(scope="module")
def measured():
    """What the paragraph quotes, from sweeps of the study's model, data, lrs and epochs:
    ``sharpness``, ``n``, ``batch``, ``ratios`` ({(batch size, momentum): first diverged lr
    / the line}), ``full`` (that ratio at every momentum of the grid, full batch) and
    ``long`` (full batch, 10 x the epochs, at the quoted momenta)."""
    study = load_study(ROOT / "studies" / "6_mlp_phase.toml")
    spec = study.spec
    assert not spec.values["nesterov"][0] and {"lr", "momentum", "batch_size"} <= set(study.swept)
    momenta = spec.values["momentum"]
    assert all(np.isclose(momenta, m).any() for m in MOMENTA)  # rows of the figure
    n = study.X.shape[0]
    batch_sizes = sorted(int(b) for b in spec.values["batch_size"])
    assert len(batch_sizes) == 2 and batch_sizes[1] == n
    sharp = theory.sharpness(study.model, study.model.init(0), study.X, study.Y)

    def sweep(momentum, batch_size, epochs):
        return gdsim.sweep(study.model, study.X, study.Y, lr=spec.values["lr"], momentum=momentum,
                           batch_size=batch_size, epochs=epochs, seed=0)

    def ratios(ds, momentum_values, **point):
        return [first_diverged(ds, momentum=m, **point) / theory.critical_lr(sharp, m) for m in momentum_values]

    quoted = sweep(list(MOMENTA), batch_sizes, spec.epochs)
    return {"sharpness": sharp, "n": n, "lrs": spec.values["lr"], "batch": batch_sizes[0], "epochs": spec.epochs,
            "ratios": {(b, m): r for b in batch_sizes for m, r in zip(MOMENTA, ratios(quoted, MOMENTA, batch_size=b))},
            "full": ratios(sweep(momenta, n, spec.epochs), momenta),
            "long": ratios(sweep(list(MOMENTA), n, 10 * spec.epochs), MOMENTA)}


def test_readme_quotes_the_sharpness_and_the_edges(measured):
    n, batch, ratios = measured["n"], measured["batch"], measured["ratios"]
    assert f"sharpness {measured['sharpness']:.3g}" in PARAGRAPH
    assert f"{measured['epochs']} epochs, full batch and batches of {batch}" in PARAGRAPH
    assert f"the full batch is B = {n} in the figure" in PARAGRAPH
    lrs = measured["lrs"]
    step = np.exp(np.diff(np.log(lrs)))
    assert np.allclose(step, step[0]) and f"its lrs are {round(100 * (step[0] - 1))}% apart" in PARAGRAPH
    full = ", ".join(f"{ratios[n, m]:.2f}x" for m in MOMENTA)
    mini = ", ".join(f"{ratios[batch, m]:.2f}x" for m in MOMENTA)
    assert f"with full batches at {full} the line" in PARAGRAPH, full
    assert f"with batches of {batch} at {mini}" in PARAGRAPH, mini
    # What the sentences say of them: full batches are stable past the line at every
    # momentum of the grid, the same after 10 x the epochs; batch noise at high momentum.
    assert min(measured["full"]) > 1 and "past the line at every momentum of the grid" in PARAGRAPH
    assert measured["long"] == [ratios[n, m] for m in MOMENTA] and f"the same after {10 * measured['epochs']} epochs" in PARAGRAPH
    assert ratios[batch, 0.0] > 1 > ratios[batch, 0.9] > ratios[batch, 0.95]
