"""gdsim.plot: every function draws every combination of swept axes (1 to 4) and results
whose runs all diverged; the theory lines sit where an independent computation puts the
edge (dense Hessians in NumPy, and gdsim.theory for the schemes it alone computes)."""

import itertools

import matplotlib
import numpy as np
import pytest
import xarray as xr

import gdsim
from gdsim import theory

matplotlib.use("Agg")

X, Y = gdsim.datasets.tutorial_line()
N = X.shape[0]
LINEAR = gdsim.Linear(1, 1)
START = [-10.0, -20.0]
AXES4 = dict(lr=np.geomspace(0.02, 0.3, 6), momentum=[0.1, 0.5, 0.9], nesterov=[False, True], batch_size=[N, 5])


@pytest.fixture(scope="module")
def grid4():
    return gdsim.sweep(LINEAR, X, Y, epochs=4, params0=START, **AXES4)


def top_curvature():
    """L of the tutorial's MSE: the top eigenvalue of 2/n sum a a^T, a = (x, 1) (plain NumPy)."""
    A = np.column_stack([X[:, 0], np.ones(N)])
    return np.linalg.eigvalsh(2 / N * A.T @ A).max()


def theory_lines(fig):
    return [line for ax in fig.axes for line in ax.get_lines() if str(line.get_gid()).startswith("theory:")]


def subsets():
    for k in range(1, 5):
        yield from itertools.combinations(AXES4, k)


@pytest.mark.parametrize("kept", list(subsets()), ids="-".join)
def test_every_plot_draws_every_combination_of_swept_axes(grid4, kept):
    ds = grid4.isel({d: 0 for d in AXES4 if d not in kept})
    roles = list(kept)
    fig = gdsim.plot.heatmap(ds, roles[0], roles[1] if len(roles) > 1 else None,
                             col=roles[2] if len(roles) > 2 else None, row=roles[3] if len(roles) > 3 else None)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == int(np.prod([ds.sizes[d] for d in roles[2:]])) and all(ax.collections for ax in panels)
    fig = gdsim.plot.final(ds, roles[0])  # the theory's lines: the tests below
    assert fig.axes[0].get_lines()
    fig = gdsim.plot.curves(ds, col=roles[1] if len(roles) > 1 else None)
    assert len(fig.axes[0].get_lines()) >= ds.sizes[roles[0]]
    gdsim.plot.auto(ds)


def test_every_plot_draws_a_result_whose_runs_all_diverged():
    ds = gdsim.sweep(LINEAR, X, Y, lr=[5.0, 50.0], momentum=[0.0, 0.9], batch_size=[1, N], epochs=6, params0=START)
    assert bool(ds.diverged.all())
    for fig in (gdsim.plot.heatmap(ds, "lr", "momentum", col="batch_size", model=LINEAR, X=X, Y=Y),
                gdsim.plot.final(ds, "lr", hue="momentum", col="batch_size"),
                gdsim.plot.curves(ds, hue="lr", col="momentum", row="batch_size")):
        labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
        assert any("diverged" in label for label in labels), labels


def test_heatmap_line_is_the_full_batch_edge_of_heavy_ball_and_nesterov_with_dampening_and_weight_decay():
    ds = gdsim.sweep(LINEAR, X, Y, lr=np.geomspace(0.01, 1, 8), momentum=np.linspace(0.1, 0.9, 7), nesterov=[False, True],
                     weight_decay=0.3, batch_size=N, epochs=3, params0=START)
    fig = gdsim.plot.heatmap(ds, "lr", "momentum", col="nesterov", model=LINEAR, X=X, Y=Y)
    heavy, nesterov = theory_lines(fig)
    beta, L = ds.momentum.values, top_curvature() + 0.3
    np.testing.assert_allclose(heavy.get_xdata(), 2 * (1 + beta) / L, rtol=1e-9)
    np.testing.assert_allclose(nesterov.get_xdata(), 2 * (1 + beta) / ((1 + 2 * beta) * L), rtol=1e-9)
    np.testing.assert_array_equal(heavy.get_ydata(), beta)
    ds = gdsim.sweep(LINEAR, X, Y, lr=np.geomspace(0.01, 1, 8), momentum=np.linspace(0.1, 0.9, 5), dampening=0.5,
                     batch_size=N, epochs=3, params0=START)
    (damped,) = theory_lines(gdsim.plot.heatmap(ds, "momentum", "lr", model=LINEAR, X=X, Y=Y))
    np.testing.assert_allclose(damped.get_ydata(), 2 * (1 + ds.momentum.values) / (0.5 * top_curvature()), rtol=1e-9)


def epoch_radius(lr, beta, batch_size):
    """Spectral radius of one epoch of heavy ball in data order (dense 4x4 products, NumPy)."""
    A = np.column_stack([X[:, 0], np.ones(N)])
    M = np.eye(4)
    for start in range(0, N, batch_size):
        rows = A[start:start + batch_size]
        H = 2 / len(rows) * rows.T @ rows
        step = np.block([[np.eye(2) - lr * H, beta * np.eye(2) * -lr], [H, beta * np.eye(2)]])
        M = step @ M
    return np.abs(np.linalg.eigvals(M)).max()


def test_heatmap_line_respects_the_batch_size_and_the_sampling_scheme():
    lr = np.geomspace(0.02, 0.3, 5)
    ds = gdsim.sweep(LINEAR, X, Y, lr=lr, momentum=[0.0, 0.6], batch_size=[N, 20, 5], epochs=3, params0=START)
    fig = gdsim.plot.heatmap(ds, "lr", "momentum", col="batch_size", model=LINEAR, X=X, Y=Y)
    lines = theory_lines(fig)
    assert [line.get_gid() for line in lines] == ["theory:full batch"] + ["theory:epoch map"] * 2
    for b, line in zip([N, 20, 5], lines):
        for beta, lr_c in zip([0.0, 0.6], line.get_xdata()):
            if b == N:
                assert lr_c == pytest.approx(2 * (1 + beta) / top_curvature(), rel=1e-9)
            else:  # the smallest lr where the radius of the epoch's map passes 1
                assert epoch_radius(lr_c * 0.999, beta, b) < 1 < epoch_radius(lr_c * 1.001, beta, b)
                assert all(epoch_radius(x, beta, b) < 1 for x in np.geomspace(1e-3, lr_c * 0.999, 50))
    ds = gdsim.sweep(LINEAR, X, Y, lr=lr, momentum=[0.0, 0.5], batch_size=10, shuffle="replacement", epochs=3,
                     params0=START)
    (line,) = theory_lines(gdsim.plot.heatmap(ds, "lr", "momentum", model=LINEAR, X=X, Y=Y))
    assert line.get_gid() == "theory:mean square"
    np.testing.assert_allclose(line.get_xdata(), [theory.mean_square_critical_lr(LINEAR, X, batch_size=10, momentum=m)
                                                  for m in (0.0, 0.5)], rtol=1e-5)


def test_reshuffled_runs_get_the_almost_sure_edge_of_their_batch_size():
    ds = gdsim.sweep(LINEAR, X, Y, lr=np.geomspace(0.02, 0.3, 4), momentum=[0.0, 0.5], batch_size=20, shuffle=True,
                     epochs=2, params0=START)
    (line,) = theory_lines(gdsim.plot.heatmap(ds, "lr", "momentum", model=LINEAR, X=X, Y=Y))
    assert line.get_gid() == "theory:almost sure"
    np.testing.assert_array_equal(line.get_xdata(), [theory.almost_sure_critical_lr(LINEAR, X, batch_size=20,
                                                                                   momentum=m).lr for m in (0.0, 0.5)])


def test_over_three_or_more_momenta_the_edge_is_the_contour_of_radius_one_with_every_unstable_region():
    # Heavy ball in data order with batches of 5 is stable again past resonances: at
    # momentum 0.9 unstable from lr 0.0015 but stable at 0.01 (the map's radius 0.86).
    ds = gdsim.sweep(LINEAR, X, Y, lr=np.geomspace(0.005, 0.2, 6), momentum=np.linspace(0.5, 0.95, 6), batch_size=5,
                     epochs=2, params0=START)
    fig = gdsim.plot.heatmap(ds, "lr", "momentum", model=LINEAR, X=X, Y=Y)
    (contour,) = [c for c in fig.axes[0].collections if c.get_gid() == "theory:epoch map"]
    vertices = np.concatenate([segment for segment in contour.allsegs[0]])
    assert len(vertices) > 20
    # Each vertex lies on an edge of the contour's grid (60 lrs x 30 momenta over the axes)
    # whose ends are on both sides of radius 1 (the map has narrow resonances, so the
    # radius at the vertex itself can be far from 1).
    lrs, betas = np.geomspace(0.005, 0.2, 60), np.linspace(0.5, 0.95, 30)
    for lr, beta in vertices:
        i = np.interp(np.log(lr), np.log(lrs), np.arange(60))
        j = np.interp(beta, betas, np.arange(30))
        corners = [epoch_radius(lrs[a], betas[b], 5) for a in {int(np.floor(i)), int(np.ceil(i))}
                   for b in {int(np.floor(j)), int(np.ceil(j))}]
        assert min(corners) < 1 < max(corners), (lr, beta, corners)
    assert len(contour.allsegs[0]) >= 2  # more than one boundary: the regions of resonance


def test_final_draws_each_lines_edge_in_its_colour_and_no_line_under_a_schedule():
    ds = gdsim.sweep(LINEAR, X, Y, lr=np.geomspace(0.02, 0.3, 9), momentum=[0.0, 0.5], batch_size=N, epochs=5,
                     params0=START)
    fig = gdsim.plot.final(ds, "lr", hue="momentum", model=LINEAR, X=X, Y=Y)
    lines = theory_lines(fig)
    data = [line for line in fig.axes[0].get_lines() if line.get_gid() is None and len(line.get_xdata()) == 9]
    assert [line.get_xdata()[0] for line in lines] == pytest.approx(
        [2 * (1 + b) / top_curvature() for b in (0.0, 0.5)], rel=1e-9)
    assert [line.get_color() for line in lines] == [line.get_color() for line in data]
    ds = gdsim.sweep(LINEAR, X, Y, lr=np.geomspace(0.02, 0.3, 4), batch_size=N, epochs=5, params0=START,
                     lr_schedule=("exponential", 0.9))
    assert not theory_lines(gdsim.plot.final(ds, "lr", model=LINEAR, X=X, Y=Y))


def test_an_mlp_gets_the_quadratic_model_line_only_with_full_batches():
    Xm, Ym = gdsim.datasets.teacher_mlp(n=64, sizes=(3, 4, 1))
    mlp = gdsim.MLP((3, 4, 1))
    ds = gdsim.sweep(mlp, Xm, Ym, lr=np.geomspace(0.05, 5, 6), momentum=[0.3, 0.9], nesterov=[False, True],
                     batch_size=[64, 8], epochs=3)
    fig = gdsim.plot.heatmap(ds, "lr", "momentum", col="nesterov", row="batch_size", model=mlp, X=Xm, Y=Ym)
    lines = theory_lines(fig)
    assert [line.get_gid() for line in lines] == ["theory:quadratic model"] * 2  # the full-batch row only
    sharp = theory.sharpness(mlp, mlp.init(0), Xm, Ym)
    beta = np.array([0.3, 0.9])
    np.testing.assert_allclose(lines[0].get_xdata(), 2 * (1 + beta) / sharp, rtol=1e-9)
    np.testing.assert_allclose(lines[1].get_xdata(), 2 * (1 + beta) / ((1 + 2 * beta) * sharp), rtol=1e-9)
    assert "full batch" in lines[0].get_label()


def test_geometric_axes_are_logarithmic_and_batch_sizes_are_ticked_at_their_values(grid4):
    ax = gdsim.plot.heatmap(grid4.isel(momentum=0, nesterov=0), "lr", "batch_size").axes[0]
    assert ax.get_xscale() == "log"
    ds = gdsim.sweep(LINEAR, X, Y, lr=[0.01, 0.02], batch_size=[1, 2, 5, 10, 20, 50, 100], epochs=2, params0=START)
    ax = gdsim.plot.final(ds, "batch_size", hue="lr").axes[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "5", "10", "20", "50", "100"]
    assert gdsim.plot.heatmap(grid4.isel(nesterov=0, batch_size=0), "lr", "momentum").axes[0].get_yscale() == "linear"


def test_more_lines_than_a_legend_holds_get_a_colour_bar_of_their_axis():
    ds = gdsim.sweep(LINEAR, X, Y, lr=np.geomspace(0.01, 0.1, 12), batch_size=N, epochs=3, params0=START)
    fig = gdsim.plot.curves(ds, hue="lr")
    (bar,) = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert "learning rate" in bar.get_ylabel() and not fig.legends
    assert len(fig.axes[0].get_lines()) == 12


def test_trajectories_draw_the_paths_over_the_loss_and_its_minimum():
    runs = [gdsim.train(LINEAR, X, Y, gdsim.SGD(lr=lr), epochs=6, params0=START, record_params=True)
            for lr in (0.05, 0.1)]
    ds = xr.Dataset({"epoch_params": (("lr", "epoch", "param"), np.stack([r.epoch_params for r in runs]))},
                    coords={"lr": [0.05, 0.1]})
    fig = gdsim.plot.trajectories(ds, hue="lr", model=LINEAR, X=X, Y=Y)
    paths = [line for line in fig.axes[0].get_lines() if len(line.get_xdata()) == 7]
    np.testing.assert_array_equal(paths[1].get_xdata(), runs[1].epoch_params[:, 0])
    (star,) = [line for line in fig.axes[0].get_lines() if line.get_label() == "minimum of the loss"]
    A = np.column_stack([X[:, 0], np.ones(N)])
    np.testing.assert_allclose([star.get_xdata()[0], star.get_ydata()[0]],
                               np.linalg.lstsq(A, Y[:, 0], rcond=None)[0], rtol=1e-9)


@pytest.mark.parametrize("call, param", [
    (lambda ds: gdsim.plot.heatmap(ds, "lr", "epochs"), "y"),
    (lambda ds: gdsim.plot.heatmap(ds, "lr", "momentum", "accuracy", "nesterov", "batch_size"), "value"),
    (lambda ds: gdsim.plot.final(ds, "lr", hue="lr"), "hue"),
    (lambda ds: gdsim.plot.final(ds, "epochs"), "x"),
    (lambda ds: gdsim.plot.heatmap(ds, "lr", "momentum"), "nesterov"),
    (lambda ds: gdsim.plot.curves(ds, x="step"), "value"),
    (lambda ds: gdsim.plot.trajectories(ds), "ds"),
    (lambda ds: gdsim.plot.heatmap(ds, "lr", "momentum", col="nesterov", row="batch_size", model=LINEAR), "X"),
])
def test_bad_arguments_name_the_parameter(grid4, call, param):
    with pytest.raises(gdsim.ParameterError) as error:
        call(grid4)
    assert error.value.param == param
