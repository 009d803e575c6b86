"""Study files: checked before anything runs, run end to end into results/ and figures/."""

import hashlib
import pathlib
import textwrap
import threading

import numpy as np
import pytest

import naive
from conftest import LINE_STUDY
import gdsim
from gdsim import cli
from gdsim.figures import FIGURES
from gdsim.figures.critical import run_settings, sampling_scheme, scheme_theory, simulated_critical
from gdsim.studies import StudyError, load_dataset, load_study, run_study

STUDIES = pathlib.Path(__file__).parent.parent / "studies"

LINE = LINE_STUDY


def write(folder, name, text):
    path = folder / f"{name}.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_shipped_studies_check_and_cover_every_gallery_figure():
    paths = sorted(STUDIES.glob("*.toml"))
    studies = [load_study(p) for p in paths]
    # Every gallery figure is drawn by some shipped study; the others use gdsim.plot's plots.
    assert {s.figure for s in studies} - set(FIGURES) <= set(gdsim.plot.PLOTS)
    assert set(FIGURES) <= {s.figure for s in studies}
    assert all(s.title and s.n_runs >= 1 for s in studies)


def test_a_study_runs_end_to_end(tmp_path, capsys):
    study = write(tmp_path, "phase", 'title = "t"\nfigure = "momentum_phase"\ntarget = "cpu"\n' + LINE + """
        [train]
        lr = {geomspace = [0.01, 0.2, 5]}
        momentum = [0.0, 0.5, 0.9]
        batch_size = "full"
        epochs = 12
        params0 = [-10.0, -20.0]
        """)
    results, figures = tmp_path / "results", tmp_path / "figures"
    assert cli.main(["run", str(study), "--results", str(results), "--figures", str(figures)]) == 0
    out = capsys.readouterr().out
    assert "phase" in out and "1 studies done" in out
    store, png = results / "phase.zarr", figures / "phase.png"
    assert (store / "zarr.json").is_file()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert sorted(p.name for p in results.iterdir()) == ["phase.zarr"]  # no temporary files left
    ds = load_dataset(store)
    assert ds.final_loss.dims == ("lr", "momentum")
    np.testing.assert_allclose(ds.lr.values, np.geomspace(0.01, 0.2, 5))
    assert ds.attrs["study_sha256"] == hashlib.sha256(study.read_bytes()).hexdigest()
    assert ds.attrs["study_file"] == study.read_text()
    # Each grid point is the plain NumPy loop with those settings.
    X, Y = gdsim.datasets.tutorial_line(0)
    for i, j in [(0, 0), (3, 1), (4, 2)]:
        lr, momentum = float(ds.lr[i]), float(ds.momentum[j])
        losses, _, history = naive.train((1, 1), "relu", "mse", "mean", np.array([-10.0, -20.0]), X, Y,
                                         np.tile(np.arange(100), (12, 1)), 100, lr=lr, momentum=momentum)
        np.testing.assert_allclose(ds.loss.values[i, j], losses, rtol=1e-12)
        np.testing.assert_allclose(ds.params.values[i, j], history[-1], rtol=1e-12)


def test_figures_runs_a_folder_and_redraw_reuses_the_results(tmp_path, capsys):
    folder = tmp_path / "studies"
    folder.mkdir()
    write(folder, "a_tutorial", 'title = "t"\nfigure = "tutorial"\nrunner = "train"\n' + LINE + """
        [train]
        lr = 0.1
        batch_size = ["full", 1]
        epochs = 5
        params0 = [-10.0, -20.0]
        """)
    write(folder, "b_paths", 'title = "t"\nfigure = "trajectories"\nrunner = "train"\n' + LINE + """
        [train]
        lr = [0.04, 0.123]
        batch_size = "full"
        epochs = 8
        params0 = [-10.0, -20.0]
        """)
    args = ["--studies", str(folder), "--results", str(tmp_path / "r"), "--figures", str(tmp_path / "f")]
    assert cli.main(["figures", *args]) == 0
    assert "2 studies done" in capsys.readouterr().out
    pngs = sorted((tmp_path / "f").iterdir())
    assert [p.name for p in pngs] == ["a_tutorial.png", "b_paths.png"]
    for p in pngs:
        p.unlink()
    assert cli.main(["figures", *args, "--redraw"]) == 0
    assert "redrawn" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["a_tutorial.png", "b_paths.png"]
    # A study edited after its run is redrawn from its result as it is, and says so.
    path = folder / "b_paths.toml"
    path.write_text(path.read_text().replace("epochs = 8", "epochs = 9"))
    assert cli.main(["figures", *args, "--redraw"]) == 0
    assert "redrawn from an out-of-date result" in capsys.readouterr().out


# Tiny versions of each figure's study, to draw every kind of the gallery.
TINY = {
    "lr_batch": LINE + """
        [train]
        lr = {geomspace = [0.02, 0.3, 6]}
        batch_size = ["full", 10, 1]
        epochs = 4
        params0 = [-10.0, -20.0]
        divergence = "none"
        """,
    "critical_batch": LINE + """
        [train]
        lr = {geomspace = [0.05, 0.2, 6]}
        batch_size = [1, 10, 100]
        seed = [0, 1]
        shuffle = true
        epochs = 10
        params0 = [-10.0, -20.0]
        divergence = "none"
        """,
    "lr_threshold": """
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
        lr = [0.001, 0.01, 0.1, 0.2, 1.0]
        momentum = 0.9
        batch_size = "full"
        epochs = 10
        """,
    "edge_of_stability": """
        runner = "train"
        [model]
        type = "mlp"
        sizes = [3, 6, 1]
        activation = "tanh"
        [data]
        name = "teacher_mlp"
        n = 20
        sizes = [3, 4, 1]
        [train]
        lr = [0.05, 0.5, 100.0]
        momentum = [0.0, 0.9]
        batch_size = "full"
        epochs = 30
        track = {sharpness = 3, loss = 1}
        """,
    "classifier": """
        runner = "train"
        [model]
        type = "mlp"
        sizes = [2, 6, 3]
        loss = "cross_entropy"
        [data]
        name = "blobs"
        n = 60
        [train]
        lr = [0.01, 0.5, 50.0]
        batch_size = 10
        shuffle = true
        epochs = 4
        """,
}


@pytest.mark.parametrize("figure", sorted(TINY))
def test_every_figure_draws(figure, tmp_path):
    header = f'title = "tiny {figure}"\nfigure = "{figure}"\n'
    study = load_study(write(tmp_path, figure, header + textwrap.dedent(TINY[figure])))
    ds = run_study(study, target="cpu" if study.runner == "sweep" else None)
    path = gdsim.figures.draw(study, ds, tmp_path / f"{figure}.png")
    assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 10_000


@pytest.mark.parametrize("shuffle", ["false", "true", '"replacement"'])
def test_the_critical_batch_figure_reads_each_scheme_against_its_own_theory(shuffle, tmp_path):
    text = TINY["critical_batch"]
    for old, new in (("shuffle = true", f"shuffle = {shuffle}"), ("seed = [0, 1]", "seed = {arange = [0, 8, 1]}"),
                     ("[0.05, 0.2, 6]", "[0.08, 0.16, 12]"), ("epochs = 10", "epochs = 100")):
        text = text.replace(old, new)
    study = load_study(write(tmp_path, "c", 'title = "t"\nfigure = "critical_batch"\n' + textwrap.dedent(text)))
    ds = run_study(study, target="cpu")
    path = gdsim.figures.draw(study, ds, tmp_path / "c.png")
    assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 10_000
    scheme = sampling_scheme(ds)
    assert scheme == {"false": "fixed", "true": "reshuffle"}.get(shuffle, "replacement")
    lo, hi = simulated_critical(ds)
    found = scheme_theory(study, ds.batch_size.values, scheme)
    theory_lr = found["epoch" if scheme == "fixed" else "as"]
    # Per-sample SGD: the simulated threshold is the theory's, to the sweep's step (6%) and a margin.
    assert lo[0] / 1.07 < theory_lr[0] < hi[0] * 1.07, (lo, hi, theory_lr)
    if scheme != "fixed":
        assert np.all(found["as_low"] <= found["as"]) and np.all(found["as"] <= found["as_high"])
    if scheme == "replacement":  # the mean square diverges first
        assert np.all(found["mean_square"] < found["as"])


def test_the_critical_batch_theory_has_the_runs_momentum(tmp_path):
    text = TINY["critical_batch"]
    for old, new in (("seed = [0, 1]", "seed = {arange = [0, 8, 1]}\nmomentum = 0.5"), ("batch_size = [1, 10, 100]",
                     "batch_size = [1, 10]"), ("[0.05, 0.2, 6]", "[0.05, 0.1, 12]"), ("epochs = 10", "epochs = 100")):
        text = text.replace(old, new)
    study = load_study(write(tmp_path, "m", 'title = "t"\nfigure = "critical_batch"\n' + textwrap.dedent(text)))
    ds = run_study(study, target="cpu")
    settings = run_settings(ds)
    assert settings["momentum"] == 0.5 and settings["nesterov"] is False and settings["drop_last"] is False
    found = scheme_theory(study, ds.batch_size.values, "reshuffle", settings)
    lo, hi = simulated_critical(ds)
    assert lo[0] / 1.07 < found["as"][0] < hi[0] * 1.07, (lo, hi, found)
    assert found["as"][0] < 0.9 * scheme_theory(study, [1], "reshuffle")["as"][0]  # momentum lowers it here


def test_the_train_runner_records_what_the_sweep_does(tmp_path):
    grid = LINE + """
        [train]
        lr = [0.01, 0.1]
        batch_size = ["full", 1]
        epochs = 3
        params0 = [-10.0, -20.0]
        divergence = "none"
        """
    by_train = run_study(load_study(write(tmp_path, "a", 'title = "t"\nfigure = "tutorial"\nrunner = "train"\n'
                                          + grid.replace("lr = [0.01, 0.1]", "lr = 0.1"))))
    by_sweep = run_study(load_study(write(tmp_path, "b", 'title = "t"\nfigure = "lr_batch"\n' + grid)), target="cpu")
    for name in ("loss", "params", "diverged_step"):
        np.testing.assert_allclose(by_train[name].values, by_sweep[name].sel(lr=0.1).values, rtol=1e-13)
    # The parameters at each epoch end where the run does.
    np.testing.assert_array_equal(by_train.epoch_params.isel(epoch=-1).values, by_train.params.values)


def test_the_train_runner_tracks_what_train_does_in_memory_and_in_a_store(tmp_path):
    study = load_study(write(tmp_path, "t", 'title = "t"\nfigure = "lr_batch"\nrunner = "train"\n' + LINE + """
        [train]
        lr = [0.04, 0.1]
        batch_size = [10, 100]
        epochs = 3
        params0 = [-10.0, -20.0]
        track = {loss = 2, batch_grad_norm = 3, params = 5, noise_scale = 10}
        """))
    in_memory = run_study(study)
    stored = run_study(study, store=tmp_path / "t.zarr").load()
    assert list(in_memory.step.values) == [0, 2, 3, 4, 5, 6, 8, 9, 10, 12, 14, 15, 16, 18, 20, 21, 22, 24, 25, 26,
                                           27, 28, 30]  # the 30-step runs' measured steps
    for lr in (0.04, 0.1):
        for b in (10, 100):
            run = gdsim.train(study.model, study.X, study.Y, gdsim.SGD(lr=lr), epochs=3, batch_size=b,
                              params0=[-10.0, -20.0], track={"loss": 2, "batch_grad_norm": 3, "params": 5,
                                                             "noise_scale": 10})
            for ds in (in_memory, stored):
                point = ds.sel(lr=lr, batch_size=b)
                for name in ("loss", "batch_grad_norm", "params", "b_simple", "b_noise"):
                    want = run.tracks[name].reindex(step=ds.step.values).values
                    np.testing.assert_array_equal(point[f"track_{name}"].values, want)
    assert np.isnan(in_memory.track_loss.sel(batch_size=100, step=30).values).all()  # a 3-step run stops at 3


def test_a_store_keeps_values_types_and_attributes(tmp_path):
    X, Y = gdsim.datasets.tutorial_line(0)
    grid = dict(lr=[0.01, 0.2], momentum=[0.5, 0.9], nesterov=[False, True], batch_size=[100, 7], epochs=3,
                params0=[-10.0, -20.0], target="cpu", seed=2**40)
    ds = gdsim.sweep(gdsim.Linear(1, 1), X, Y, **grid)
    back = load_dataset(gdsim.sweep(gdsim.Linear(1, 1), X, Y, store=tmp_path / "x.zarr", **grid).encoding.get(
        "source", tmp_path / "x.zarr"))
    for name in ds.variables:
        np.testing.assert_array_equal(back[name].values, ds[name].values)
        assert back[name].dtype == ds[name].dtype, name
    assert back.diverged.dtype == bool and back.nesterov.dtype == bool
    assert back.attrs["shuffle"] is False and back.attrs["epochs"] == 3 and back.attrs["seed"] == 2**40
    assert back.sel(nesterov=True, batch_size=7).final_loss.shape == (2, 2)


BAD = [
    ('title = "t"\nfigures = "tutorial"\n', "top level: unknown key 'figures' (did you mean 'figure'?)"),
    ('title = "t"\nfigure = "momentum_phas"\n' + LINE + '[train]\nlr = 0.1\nepochs = 1\n',
     "figure: must be a figure of the gallery (classifier, critical_batch, edge_of_stability, lr_batch, "
     "lr_threshold, momentum_phase, trajectories, tutorial), a plot of gdsim.plot (auto, curves, final, "
     "heatmap, trajectories) or a [figure] table, got 'momentum_phas' (did you mean 'momentum_phase'?)"),
    ('title = "t"\nfigure = "lr_batch"\n' + LINE + '[train]\nlrr = 0.1\nepochs = 1\n',
     "[train]: unknown key 'lrr' (did you mean 'lr'?)"),
    ('title = "t"\nfigure = "lr_batch"\n' + LINE + '[train]\nlr = [0.1, -0.1]\nbatch_size = [1, 2]\nepochs = 1\n',
     "[train] lr: lr must be a finite real number >= 0 (or a 1-d array of them), got -0.1 at index 1"),
    ('title = "t"\nfigure = "lr_batch"\n' + LINE + '[train]\nlr = [0.1]\nbatch_size = [1, 101]\nepochs = 1\n',
     "[train] batch_size: batch_size (every value) must be an integer in [1, 100], got 101"),
    ('title = "t"\nfigure = "lr_batch"\n' + LINE + '[train]\nlr = {geomspace = [0, 1, 5]}\nepochs = 1\n',
     "[train] lr: geomspace needs start and stop > 0, got [0, 1, 5]"),
    ('title = "t"\nfigure = "lr_batch"\n' + LINE + '[train]\nlr = 0.1\nepochs = 0\n',
     "[train] epochs: epochs must be an integer in [1, inf], got 0"),
    ('title = "t"\nfigure = "lr_batch"\n' + LINE + '[train]\nlr = [0.1, 0.2]\nepochs = 2\n',
     "figure: 'lr_batch' needs [train] batch_size given as lists or ranges (swept), not single values"),
    ('title = "t"\nfigure = "trajectories"\n' + LINE + '[train]\nlr = [0.1, 0.2]\nepochs = 2\n',
     "figure: 'trajectories' needs runner = 'train' (it draws the parameters at every epoch)"),
    ('title = "t"\nfigure = "lr_batch"\n' + LINE + '[train]\nlr = []\nbatch_size = [1, 2]\nepochs = 2\n',
     "[train] lr: lr must not be an empty array"),
    ('title = "t"\nfigure = "tutorial"\nrunner = "train"\ntarget = "cpu"\n' + LINE + '[train]\nlr = 0.1\nepochs = 1\n',
     "target: the train runner runs gdsim.train on the CPU, one call per run; target is for runner = 'sweep'"),
    ('title = "t"\nfigure = "lr_batch"\ntarget = "gpu"\n' + LINE + '[train]\nlr = 0.1\nepochs = 1\n',
     "target: target must be one of ['cpu', 'cuda', 'parallel'], got 'gpu'"),
    ('title = "t"\nfigure = "lr_batch"\n[model]\ntype = "mlp"\nsizes = [1, 0]\n[data]\nname = "tutorial_line"\n'
     '[train]\nlr = 0.1\nepochs = 1\n', "[model]: sizes[1] must be an integer in [1, 2147483647], got 0"),
    ('title = "t"\nfigure = "lr_batch"\n[model]\ntype = "linear"\nn_in = 1\nn_out = 1\n[data]\nname = "tutorial"\n'
     '[train]\nlr = 0.1\nepochs = 1\n', "[data] name: must be one of tutorial_line, teacher_mlp, random_regression, "
     "blobs, got 'tutorial' (did you mean 'tutorial_line'?)"),
    ('title = "t"\nfigure = "lr_batch"\n[model]\ntype = "linear"\nn_in = 1\nn_out = 1\n[data]\nname = "blobs"\n'
     'sed = 1\n[train]\nlr = 0.1\nepochs = 1\n', "[data]: unknown key 'sed' (did you mean 'seed'?)"),
    ('title = "t"\nfigure = "lr_batch"\n' + LINE + '[train]\nlr = 0.1\nepochs = 1\ndivergence = 0.5\n',
     "[train] divergence: divergence must be 'growth', a number > 1 (a factor of the initial loss), 'nonfinite' or None, "
     "got 0.5"),
    ('title = "t"\nfigure = "lr_batch"\n' + LINE + '[train]\nlr = 0.1\nepochs = 1\nnesterov = true\n',
     "Nesterov momentum requires a momentum and zero dampening"),
    ('title = "t"\nfigure = "lr_batch"\n' + LINE + '[train]\nlr = 0.1\nepochs = 1\nlr_schedule = ["stp", 1, 0.5]\n',
     "[train] lr_schedule: lr_schedule[0] (the schedule's name) must be one of ['cosine', 'exponential', 'step'], "
     "got 'stp' (did you mean 'step'?)"),
    ('title = "t"\nfigure = "lr_batch"\n' + LINE + '[train]\nlr = 0.1\nepochs = 1\ntrack = {loss = 1}\n',
     "[train] track: observables are tracked by gdsim.train: needs runner = 'train'"),
    ('title = "t"\nfigure = "tutorial"\nrunner = "train"\n' + LINE + '[train]\nlr = 0.1\nepochs = 1\n'
     'track = {los = 1}\n', "[train] track: track: unknown observable 'los' (did you mean 'loss'?)"),
    ('title = "t"\nfigure = "edge_of_stability"\nrunner = "train"\n' + LINE + '[train]\nlr = [0.1, 0.2]\nepochs = 1\n'
     'track = {loss = 1}\n', "figure: 'edge_of_stability' draws the tracked sharpness: needs runner = 'train' and "
     "[train] track = {sharpness = 10} (every how many steps)"),
    ('title = "t"\nfigure = [1]\n' + LINE + '[train]\nlr = 0.1\nepochs = 1\n', "figure: must be a name or a [figure] table, got [1]"),
    ('title = "t"\nfigure = "lr_batch"\n' + LINE, "top level: missing key 'train'"),
    ('title = "t\n', "not a valid TOML file"),
]


@pytest.mark.parametrize("text, message", BAD)
def test_a_bad_study_file_is_refused_before_anything_runs(text, message, tmp_path, capsys):
    path = write(tmp_path, "bad", text)
    with pytest.raises(StudyError) as error:
        load_study(path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)
    results = tmp_path / "results"
    assert cli.main(["run", str(path), "--results", str(results), "--figures", str(tmp_path / "f")]) == 2
    assert message in capsys.readouterr().err
    assert not results.exists()


def test_one_bad_study_stops_the_whole_folder_before_any_run(tmp_path, capsys):
    folder = tmp_path / "s"
    folder.mkdir()
    write(folder, "a_good", 'title = "t"\nfigure = "tutorial"\nrunner = "train"\n' + LINE
          + '[train]\nlr = 0.1\nbatch_size = ["full", 1]\nepochs = 2\n')
    write(folder, "b_bad", BAD[2][0])
    assert cli.main(["figures", "--studies", str(folder), "--results", str(tmp_path / "r")]) == 2
    assert "b_bad.toml: [train]: unknown key 'lrr'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    assert cli.main(["figures", "--studies", str(tmp_path / "nothing")]) == 2
    assert "no study files" in capsys.readouterr().err


def test_data_from_a_file_is_checked_and_hashed(tmp_path, capsys):
    X, Y = gdsim.datasets.tutorial_line(0)
    header = 'title = "t"\nfigure = "lr_batch"\n[model]\ntype = "linear"\nn_in = 1\nn_out = 1\n'
    train = '[train]\nlr = [0.01, 0.1]\nbatch_size = [1, 100]\nepochs = 3\n'
    path = write(tmp_path, "mine", header + '[data]\nfile = "mine.npz"\n' + train)
    np.savez(tmp_path / "mine.npz", X=X, Y=Y[:, 0])  # 1-d targets are fine for one output
    study = load_study(path)
    np.testing.assert_array_equal(study.Y, Y)
    from_function = load_study(write(tmp_path, "same", header + '[data]\nname = "tutorial_line"\n' + train))
    np.testing.assert_array_equal(run_study(study, target="cpu").loss.values,
                                  run_study(from_function, target="cpu").loss.values)
    # The data file is part of the study's hash.
    np.savez(tmp_path / "mine.npz", X=X, Y=Y[:, 0] + 1.0)
    assert load_study(path).sha256 != study.sha256
    for arrays, message in (({"X": np.where(X > 4, np.nan, X), "Y": Y}, "mine.npz: does not fit the model: X contains NaN or inf (first at row 91, column 0)"),
                            ({"X": X, "Y": Y[:50]}, "must have"),
                            ({"X": X}, "it needs X and Y")):
        np.savez(tmp_path / "mine.npz", **arrays)
        with pytest.raises(StudyError, match=f"{path}: \\[data\\]"):
            load_study(path)
        assert cli.main(["run", str(path), "--results", str(tmp_path / "r")]) == 2
        assert message in capsys.readouterr().err
    (tmp_path / "mine.npz").unlink()
    with pytest.raises(StudyError, match="mine.npz: cannot read it: No such file"):
        load_study(path)


def test_a_seed_of_2_to_the_40_saves_with_its_type(tmp_path):
    path = write(tmp_path, "big_seed", 'title = "t"\nfigure = "lr_batch"\n' + LINE + """
        [train]
        lr = [0.01, 0.1]
        batch_size = [100, 10]
        epochs = 2
        seed = 1099511627776
        """)
    ds = run_study(load_study(path), store=tmp_path / "big_seed.zarr")
    back = load_dataset(tmp_path / "big_seed.zarr")
    assert back.attrs["seed"] == 2**40 and isinstance(back.attrs["seed"], int)
    assert back.attrs["shuffle"] is False and back.attrs["stop_diverged"] is True
    assert np.array_equal(back.final_loss.values, ds.final_loss.values)


def test_the_train_runner_gives_the_same_bits_on_threads_as_one_run_after_another(tmp_path, monkeypatch):
    from gdsim.studies import runners

    study = load_study(write(tmp_path, "c", """
        title = "t"
        figure = "classifier"
        runner = "train"
        [model]
        type = "mlp"
        sizes = [2, 4, 3]
        loss = "cross_entropy"
        [data]
        name = "blobs"
        n = 40
        n_classes = 3
        [train]
        lr = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0]
        momentum = 0.9
        batch_size = 8
        shuffle = true
        epochs = 5
        track = {loss = 3}
        """))
    assert study.keeps_params  # the classifier figure draws the accuracy at each epoch
    spec = study.spec
    names = []
    train = runners.train

    def recording_train(*args, **kwargs):  # which thread ran each run
        names.append(threading.current_thread().name)
        return train(*args, **kwargs)

    monkeypatch.setattr(runners, "train", recording_train)
    results, progress = {}, {}
    for n_threads in (1, 3):
        monkeypatch.setattr(runners, "num_threads", lambda: n_threads)
        progress[n_threads] = []
        results[n_threads] = runners.run_study_points(study, spec, np.arange(spec.n_configs),
                                                      lambda done, n: progress[n_threads].append((done, n)))
    assert names[:8] == ["MainThread"] * 8 and all(name.startswith("gdsim-train") for name in names[8:])
    assert progress[1] == progress[3] == [(i, 8) for i in range(1, 9)]
    serial, threaded = results[1], results[3]
    assert list(serial) == list(threaded) and {"accuracy", "epoch_params", "track_loss"} <= set(serial)
    assert serial["diverged"].any() and not serial["diverged"].all()
    for key in serial:
        assert serial[key].dtype == threaded[key].dtype, key
        np.testing.assert_array_equal(serial[key], threaded[key], err_msg=key)
    # run by run, what gdsim.train gives (the last run: lr 100)
    alone = gdsim.train(study.model, study.X, study.Y, gdsim.SGD(lr=100.0, momentum=0.9), epochs=5, batch_size=8,
                        shuffle=True, record_params=True)
    np.testing.assert_array_equal(threaded["epoch_loss"][-1], alone.epoch_loss)
    np.testing.assert_array_equal(threaded["epoch_params"][-1], alone.epoch_params)
