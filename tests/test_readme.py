"""README's Python examples run and do what they say."""

import pathlib
import re

import numpy as np

README = (pathlib.Path(__file__).parents[1] / "README.md").read_text()


def python_blocks():
    """README's Python examples, but the recipes (not run here) and "Your own experiment"'s."""
    return [b for b in re.findall(r"```python\n(.*?)```", README, re.S)
            if not b.lstrip().startswith("# recipe") and "nesterov_vs_heavy_ball" not in b]


def test_python_examples_run():
    blocks = python_blocks()
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
    assert 'pip install ".[test]"' in line and "NUMBA_ENABLE_CUDASIM=1 python -m pytest" in line
    ci = (pathlib.Path(__file__).parents[1] / ".ci" / "run").read_text()
    assert "<!-- test-command" in ci and "^python3" in ci


def test_study_example_checks_and_gallery_shows_every_study(tmp_path):
    from gdsim.studies import load_study

    block = re.findall(r"```toml\n(.*?)```", README, re.S)[1]  # the first: "Your own experiment"; then [data]'s
    (tmp_path / "example.toml").write_text(block)
    study = load_study(tmp_path / "example.toml")
    assert study.swept == ("lr", "momentum", "nesterov") and study.n_runs == 100 * 99 * 2
    root = pathlib.Path(__file__).parents[1]
    gallery = README.split("## Gallery", 1)[1].split("\n## ", 1)[0]
    shown = re.findall(r"!\[[^]]*\]\(figures/(\w+)\.png\)", gallery)
    number = re.compile(r"(\d+)(.*)")  # in the gallery's order: 1, 2, ..., 5, 5b, ..., 10
    assert shown == sorted((p.stem for p in (root / "studies").glob("*.toml")),
                           key=lambda stem: (int(number.match(stem)[1]), number.match(stem)[2]))
    assert all((root / "figures" / f"{name}.png").stat().st_size > 10_000 for name in shown)


def test_your_own_experiment_is_the_example_study_and_says_what_its_result_shows(tmp_path):
    from gdsim.studies import load_study

    section = README.split("## Your own experiment", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```toml\n(.*?)```", section, re.S)
    (tmp_path / "readme.toml").write_text(block)
    root = pathlib.Path(__file__).parents[1]
    shipped, shown = load_study(root / "examples" / "nesterov_vs_heavy_ball.toml"), load_study(tmp_path / "readme.toml")
    assert shown.content_sha256 == shipped.content_sha256 and shown.figure_choice == shipped.figure_choice
    assert "(figures/nesterov_vs_heavy_ball.png)" in section
    assert (root / "figures" / "nesterov_vs_heavy_ball.png").stat().st_size > 10_000
    (python,) = re.findall(r"```python\n(.*?)```", section, re.S)
    namespace = {}
    exec(python.replace('fig.savefig("nesterov_vs_heavy_ball.png")', ""), namespace)
    ds = namespace["ds"]
    assert ds.sizes == {"lr": 24, "momentum": 12, "nesterov": 2, "batch_size": 4, "epoch": 21, "param": 193}

    def first_diverged(nesterov, batch_size, momentum):
        flags = ds.diverged.sel(nesterov=nesterov, batch_size=batch_size).sel(momentum=momentum, method="nearest")
        return round(float(ds.lr[int(np.argmax(flags.values))]), 3) if bool(flags.any()) else None

    # "heavy ball at momentum 0.95 is stable up to lr 0.90 (the grid's first diverged lr is 1.22),
    # Nesterov only up to 0.49 (diverged from 0.67)"
    assert first_diverged(False, 256, 0.95) == 1.218 and first_diverged(True, 256, 0.95) == 0.668
    assert ds.lr.values[ds.lr.values < 1.218].max().round(2) == 0.90
    assert ds.lr.values[ds.lr.values < 0.668].max().round(2) == 0.49
    # "with one sample per step ... both diverge from lr 0.018 at momentum 0.95 and from 0.27 at 0.05"
    for nesterov in (False, True):
        assert first_diverged(nesterov, 1, 0.95) == 0.018 and first_diverged(nesterov, 1, 0.05) == 0.271
    lines = [line.get_gid() for line in namespace["fig"].axes[3].get_lines() if line.get_gid()]
    assert lines == ["theory:quadratic model"]  # drawn on the full-batch panel only
    assert not any(line.get_gid() for ax in namespace["fig"].axes[:3] for line in ax.get_lines())
