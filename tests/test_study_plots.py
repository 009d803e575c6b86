"""Study files for any grid: without a figure (the plot that fits the swept axes), naming
a plot of gdsim.plot, or a [figure] table with its arguments; every mistake in the table
is a study error naming the key before anything runs."""

import functools
import textwrap

import numpy as np
import pytest

import gdsim
from gdsim import cli
from gdsim.studies import StudyError, load_study

MLP_GRID = """
title = "Nesterov vs heavy ball across batch sizes"
target = "cpu"
{figure}

[model]
type = "mlp"
sizes = [4, 8, 1]

[data]
name = "teacher_mlp"
n = 64
sizes = [4, 8, 1]

[train]
lr = {{geomspace = [0.01, 3.0, 6]}}
momentum = [0.5, 0.9]
nesterov = [false, true]
batch_size = [1, 8, 64]
epochs = 3
"""


def study(tmp_path, figure="", name="s"):
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(MLP_GRID.format(figure=textwrap.dedent(figure))))
    return path


def test_a_study_without_figure_draws_the_plot_that_fits_its_axes(tmp_path, capsys):
    loaded = load_study(study(tmp_path))
    assert loaded.figure == "auto" and loaded.figure_choice.arguments == {}
    path = study(tmp_path, name="plain")
    assert cli.main(["run", str(path), "--results", str(tmp_path / "r"), "--figures", str(tmp_path / "f")]) == 0
    png = tmp_path / "f" / "plain.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "plain" in capsys.readouterr().out


def test_a_figure_table_draws_its_plot_with_the_studys_theory(tmp_path, monkeypatch):
    figure = """
        [figure]
        plot = "heatmap"
        x = "lr"
        y = "momentum"
        col = "nesterov"
        row = "batch_size"
        value = "outcome"
        """
    loaded = load_study(study(tmp_path, "\n" + figure))
    assert loaded.figure == "heatmap"
    assert loaded.figure_choice.arguments == dict(x="lr", y="momentum", col="nesterov", row="batch_size",
                                                 value="outcome")
    calls = []
    real = gdsim.plot.PLOTS["heatmap"]

    @functools.wraps(real)
    def recording(ds, **kw):
        calls.append(kw)
        return real(ds, **kw)

    monkeypatch.setitem(gdsim.plot.PLOTS, "heatmap", recording)
    ds = gdsim.studies.run_study(loaded)
    gdsim.figures.draw(loaded, ds, tmp_path / "h.png")
    (kw,) = calls
    assert kw["model"] is loaded.model and kw["X"] is loaded.X and kw["title"] == loaded.title
    assert kw["value"] == "outcome" and kw["theory"] is True


@pytest.mark.parametrize("figure, key, message", [
    ('figure = "heatmapp"', "figure", "did you mean 'heatmap'"),
    ('[figure]\nx = "lr"', "[figure] plot", "plot = one of"),
    ('[figure]\nplot = "heatmap"\nxx = "lr"', "[figure] xx", "heatmap takes"),
    ('[figure]\nplot = "heatmap"\nx = 3', "[figure] x", "names an axis"),
    ('[figure]\nplot = "heatmap"\nx = "epochs"', "[figure] x", "swept axes"),
    ('[figure]\nplot = "heatmap"\nvalue = "accuracy"\ncol = "nesterov"\nrow = "batch_size"', "[figure] value",
     "not a variable"),
    ('[figure]\nplot = "heatmap"', "[figure] nesterov", "no place for the swept axes"),
    ('[figure]\nplot = "final"\nhue = "lr"', "[figure] hue", "already given"),
    ('[figure]\nplot = "trajectories"', "[figure] ds", "epoch_params"),
    ('[figure]\nplot = "heatmap"\ntheory = "yes"', "[figure] theory", "true or false"),
    ('figure = "momentum_phase"', "figure", "draws one value of batch_size"),
])
def test_every_mistake_in_the_figure_is_a_study_error_naming_the_key(tmp_path, figure, key, message):
    with pytest.raises(StudyError) as error:
        load_study(study(tmp_path, figure))
    assert f": {key}" in str(error.value) or f"{key}:" in str(error.value), str(error.value)
    assert message in str(error.value)


def test_a_figure_table_with_hue_takes_a_list_and_the_title_comes_from_the_study(tmp_path):
    loaded = load_study(study(tmp_path, '[figure]\nplot = "final"\nhue = ["nesterov", "momentum"]\ncol = "batch_size"'))
    ds = gdsim.studies.run_study(loaded)
    fig = gdsim.figures.draw_figure(loaded, ds)
    assert fig.get_suptitle() == loaded.title
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert "heavy ball, beta = 0.5" in labels and "Nesterov, beta = 0.9" in labels
    assert np.isfinite(ds.final_loss.values).any()


def test_a_trajectories_plot_keeps_the_parameters_of_every_epoch_with_the_train_runner(tmp_path):
    path = tmp_path / "paths.toml"
    path.write_text(textwrap.dedent("""
        title = "paths"
        runner = "train"

        [figure]
        plot = "trajectories"
        hue = "lr"

        [model]
        type = "linear"
        n_in = 1
        n_out = 1

        [data]
        name = "tutorial_line"

        [train]
        lr = [0.05, 0.1]
        batch_size = "full"
        epochs = 5
        params0 = [-10.0, -20.0]
        """))
    loaded = load_study(path)
    assert loaded.keeps_params and not loaded.figure_choice.gallery
    ds = gdsim.studies.run_study(loaded)
    fig = gdsim.figures.draw_figure(loaded, ds)
    expected = gdsim.train(loaded.model, loaded.X, loaded.Y, gdsim.SGD(lr=0.1), epochs=5, params0=[-10.0, -20.0],
                           record_params=True).epoch_params
    paths = [line for line in fig.axes[0].get_lines() if len(line.get_xdata()) == 6]
    np.testing.assert_array_equal(paths[1].get_xdata(), expected[:, 0])
