"""README's Python examples run and do what they say."""

import pathlib
import re

import numpy as np

README = (pathlib.Path(__file__).parents[1] / "README.md").read_text()


def test_python_examples_run():
    blocks = [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if not b.lstrip().startswith("# recipe")]
    assert len(blocks) == 5
    namespace = {}
    exec(blocks[0], namespace)
    result = namespace["result"]
    assert result.params_history.shape == (result.n_steps + 1, 2) and result.n_steps == 200
    exec(blocks[1], namespace)
    ds = namespace["ds"]
    assert ds.final_loss.dims == ("lr", "momentum") and ds.final_loss.shape == (128, 64)
    # Per-sample SGD on the tutorial: small learning rates converge, lr 1 blows up at every momentum;
    # at lr 1e-4, momentum 0.99 grows its loss by 1.54x per epoch (the 1e6 x rule missed it in 20 epochs).
    assert not ds.diverged.sel(lr=1e-4, momentum=slice(0, 0.9)).any() and ds.diverged.sel(lr=1.0).all()
    assert bool(ds.diverged.sel(lr=1e-4, momentum=0.99))
    curves, gdsim = namespace["curves"], namespace["gdsim"]
    assert curves.track_loss.dims == ("lr", "momentum", "step") and curves.track_loss.shape == (2, 2, 51)
    run = gdsim.train(gdsim.Linear(1, 1), namespace["X"], namespace["Y"], gdsim.SGD(lr=1e-2, momentum=0.9),
                      epochs=5, batch_size=10, params0=[-10.0, -20.0], track={"loss": 1})
    assert np.array_equal(curves.track_loss.sel(lr=1e-2, momentum=0.9).values, run.tracks.loss.values)
    on_cluster = {}
    exec(blocks[2], on_cluster)  # on a LocalCluster: the same result as here
    here = on_cluster["gdsim"].sweep(on_cluster["gdsim"].MLP((10, 5, 1)), on_cluster["X"], on_cluster["Y"],
                                     lr=np.geomspace(1e-3, 1, 40), momentum=np.linspace(0, 0.9, 10), batch_size=16,
                                     epochs=5, target="cpu")
    assert on_cluster["ds"].final_loss.shape == (40, 10)
    assert np.array_equal(on_cluster["ds"].loss.values, here.loss.values, equal_nan=True)
    exec(blocks[3], namespace)
    # the values the comments quote
    gd, theory = namespace["gd"], namespace["theory"]
    assert round(gd.critical_lr, 4) == 0.1200 and round(theory.critical_lr(gd.L, 0.9), 4) == 0.2279
    assert round(theory.critical_lr(gd.L, 0.9, nesterov=True), 4) == 0.0814 and round(namespace["rate"], 3) == 0.486
    assert round(theory.epoch_critical_lr(namespace["model"], namespace["X"], batch_size=1), 4) == 0.1265
    assert round(theory.mean_square_critical_lr(namespace["model"], namespace["X"], batch_size=1), 4) == 0.0642
    exec(blocks[4], namespace)
    model, X, Yk = namespace["model"], namespace["X"], namespace["Yk"]
    assert model.loss(namespace["theta"], X, Yk) < 0.5 * model.loss(model.init(0), X, Yk)


def test_test_command_is_found_by_ci_script():
    command = README.split("<!-- test-command", 1)[1]
    line = next(l for l in command.splitlines() if l.startswith("python3"))
    assert 'pip install ".[test]"' in line and line.endswith("NUMBA_ENABLE_CUDASIM=1 python -m pytest")
    ci = (pathlib.Path(__file__).parents[1] / ".ci" / "run").read_text()
    assert "<!-- test-command" in ci and "^python3" in ci


def test_study_example_checks_and_gallery_shows_every_study(tmp_path):
    from gdsim.studies import load_study

    (block,) = re.findall(r"```toml\n(.*?)```", README, re.S)
    (tmp_path / "example.toml").write_text(block)
    study = load_study(tmp_path / "example.toml")
    assert study.swept == ("lr", "momentum", "nesterov") and study.n_runs == 100 * 99 * 2
    root = pathlib.Path(__file__).parents[1]
    shown = re.findall(r"!\[[^]]*\]\(figures/(\w+)\.png\)", README)
    number = re.compile(r"(\d+)(.*)")  # in the gallery's order: 1, 2, ..., 5, 5b, ..., 10
    assert shown == sorted((p.stem for p in (root / "studies").glob("*.toml")),
                           key=lambda stem: (int(number.match(stem)[1]), number.match(stem)[2]))
    assert all((root / "figures" / f"{name}.png").stat().st_size > 10_000 for name in shown)
