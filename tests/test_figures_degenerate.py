"""Every figure draws from any result its study can produce: every run diverged (stopped
or overflowed), every loss NaN or inf, and some runs diverged; without a warning, and
saying on the figure when there is nothing finite to show."""

import dataclasses
import textwrap
import warnings

import matplotlib.text
import numpy as np
import pytest

import gdsim
from gdsim.figures import FIGURES
from gdsim.studies import load_study, run_study

LINE = """
    [model]
    type = "linear"
    n_in = 1
    n_out = 1
    [data]
    name = "tutorial_line"
    seed = 0
    """

# figure -> (the study without its [train] lr, lrs of which some diverge, huge lrs
# that make every run diverge): tiny versions of the gallery's studies.
STUDIES = {
    "tutorial": ('runner = "train"\n' + LINE + """
        [train]
        batch_size = ["full", 1]
        epochs = 4
        params0 = [-10.0, -20.0]
        """, "0.1", "1e4"),
    "lr_batch": (LINE + """
        [train]
        batch_size = ["full", 10, 1]
        epochs = 3
        params0 = [-10.0, -20.0]
        """, "{geomspace = [0.02, 0.3, 4]}", "{geomspace = [1e3, 1e6, 3]}"),
    "momentum_phase": (LINE + """
        [train]
        momentum = [0.1, 0.9]
        nesterov = [false, true]
        batch_size = "full"
        epochs = 30  # for the losses of lr >= 1e3 to overflow
        params0 = [-10.0, -20.0]
        """, "{geomspace = [0.01, 0.3, 3]}", "{geomspace = [1e3, 1e6, 3]}"),
    "trajectories": ('runner = "train"\n' + LINE + """
        [train]
        batch_size = "full"
        epochs = 4
        params0 = [-10.0, -20.0]
        """, "[0.04, 0.123, 1.0]", "[1e3, 1e5]"),
    "critical_batch": (LINE + """
        [train]
        batch_size = [1, 10, 100]
        seed = [0, 1]
        shuffle = true
        epochs = 3
        params0 = [-10.0, -20.0]
        """, "{geomspace = [0.05, 0.2, 4]}", "{geomspace = [1e3, 1e6, 3]}"),
    "lr_threshold": ("""
        runner = "train"
        [model]
        type = "mlp"
        sizes = [6, 5, 2]
        reduction = "sum"
        [data]
        name = "random_regression"
        n = 10
        n_in = 6
        n_out = 2
        [train]
        momentum = 0.9
        batch_size = "full"
        epochs = 5
        """, "[0.001, 0.01, 0.2, 1.0]", "[1e3, 1e4, 1e6]"),
    "classifier": ("""
        runner = "train"
        [model]
        type = "mlp"
        sizes = [2, 6, 3]
        loss = "cross_entropy"
        [data]
        name = "blobs"
        n = 60
        [train]
        batch_size = 10
        shuffle = true
        epochs = 3
        """, "[0.01, 0.5, 50.0]", "[1e4, 1e200]"),
}
SWEEP = sorted(f for f, (text, _, _) in STUDIES.items() if 'runner = "train"' not in text)
# The sweep runner stops a diverged run (its later losses are NaN) unless divergence =
# "none"; the train runner always runs to the end (losses overflow to inf, then NaN).
KINDS = ["mixed", "diverged", "overflowed", "nan", "inf"]
CASES = [(f, k) for f in sorted(STUDIES) for k in KINDS if k != "overflowed" or f in SWEEP]
ALL_DIVERGED = "every run diverged"  # the notes the figures write on their panels
NOTHING = "to draw"  # as in "no finite loss to draw"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """``results(figure, kind) -> (study, dataset)``, each study run once per module."""
    folder = tmp_path_factory.mktemp("studies")
    cache = {}

    def get(figure, kind):
        if (figure, kind) not in cache:
            cache[figure, kind] = make(folder, figure, kind, get)
        return cache[figure, kind]
    return get


def make(folder, figure, kind, get):
    """The study of ``figure`` and its result of ``kind`` (see :data:`KINDS`); ``get`` gives
    the others (the NaN and inf results are the mixed one's, filled)."""
    if kind in ("nan", "inf"):  # a real result with every number made NaN or inf
        study, ds = get(figure, "mixed")
        fill = np.nan if kind == "nan" else np.inf
        ds = ds.copy(deep=True)
        for name in ("loss", "final_loss", "params", "epoch_params", "accuracy", "diverged_loss"):
            if name in ds:
                ds[name][...] = fill
        ds["diverged"][...] = True
        ds["diverged_step"] = ds.diverged_step.where(ds.diverged_step >= 0, 0)
        return study, ds
    text, mixed_lr, huge_lr = STUDIES[figure]
    text = textwrap.dedent(text).replace("[train]\n", f"[train]\nlr = {mixed_lr if kind == 'mixed' else huge_lr}\n")
    if kind == "overflowed":
        text += 'divergence = "none"\n'
    path = folder / f"{figure}_{kind}.toml"
    path.write_text(f'title = "{kind} {figure}"\nfigure = "{figure}"\n' + text)
    study = load_study(path)
    ds = run_study(study, target="cpu" if study.runner == "sweep" else None)
    if kind in ("diverged", "overflowed"):
        assert ds.diverged.all(), "a run of the all-diverged study did not diverge: make its lrs larger"
    if kind == "overflowed":
        assert not np.isfinite(ds.final_loss).all()
    return study, ds


@pytest.mark.parametrize("figure, kind", CASES)
def test_every_figure_draws_any_result(figure, kind, results, tmp_path, monkeypatch):
    study, ds = results(figure, kind)
    if kind == "mixed":  # some runs diverged, some not
        assert ds.diverged.any() and not ds.diverged.all()
    drawn = []  # the figure drawn, for its texts

    def recording(study, ds, draw=FIGURES[figure].draw):
        drawn.append(draw(study, ds))
        return drawn[-1]

    monkeypatch.setitem(FIGURES, figure, dataclasses.replace(FIGURES[figure], draw=recording))
    path = tmp_path / f"{figure}_{kind}.png"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert gdsim.figures.draw(study, ds, path) == path
    assert [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught] == []
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    texts = " ".join(t.get_text() for t in drawn[0].findobj(matplotlib.text.Text))
    if kind == "mixed":
        assert ALL_DIVERGED not in texts and NOTHING not in texts
    else:
        assert ALL_DIVERGED in texts, texts
    if kind in ("nan", "inf"):
        assert NOTHING in texts, texts


CLASSIFIER = """
    [model]
    type = "mlp"
    sizes = [2, 8, 3]
    loss = "cross_entropy"
    [data]
    name = "blobs"
    n = 60
    """

# Grids the figures' checks accept but the gallery never makes: one value per swept axis,
# a classifier where the figure was drawn for regression.
ODD_GRIDS = {
    "momentum_phase, one lr and one momentum": ("momentum_phase", LINE + """
        [train]
        lr = [0.05]
        momentum = [0.5]
        batch_size = "full"
        epochs = 5
        """),
    "lr_threshold, a classifier with reduction sum": ("lr_threshold", CLASSIFIER.replace(
        'loss = "cross_entropy"', 'loss = "cross_entropy"\nreduction = "sum"') + """
        [train]
        lr = [0.001, 0.1]
        batch_size = "full"
        epochs = 3
        """),
}


@pytest.mark.parametrize("case", ODD_GRIDS)
def test_odd_grids_draw_without_warning(case, tmp_path):
    figure, text = ODD_GRIDS[case]
    path = tmp_path / "odd.toml"
    path.write_text(f'title = "odd"\nfigure = "{figure}"\n' + textwrap.dedent(text))
    study = load_study(path)
    ds = run_study(study)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gdsim.figures.draw(study, ds, tmp_path / "odd.png")
    assert [str(w.message) for w in caught] == []
    assert (tmp_path / "odd.png").stat().st_size > 10_000
