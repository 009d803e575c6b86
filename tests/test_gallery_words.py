"""The README gallery's words, computed: every number in the paragraphs of figures 1-5 and
7-9c comes from the study's result (run here from its file in studies/, once, or on the part
of its grid that decides the number) and from theory: dense NumPy matrices where that is
short, else gdsim.theory (checked against dense matrices in test_theory*.py). Each test
formats its numbers as the paragraph prints them and asserts that the paragraph says so: a
changed study, kernel or theory that moves a number fails here until the words follow.
Figure 6's paragraph is checked elsewhere."""

import pathlib

import numpy as np
import pytest

import gdsim
from gdsim import theory
from gdsim.figures.critical import GROWTH, simulated_critical, unstable_runs
from gdsim.outcomes import OUTCOMES
from gdsim.studies import load_study, run_study

ROOT = pathlib.Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
GALLERY = " ".join(README.split("\n## Gallery\n", 1)[1].split("\n## ", 1)[0].split())


def says(fragment):
    """Assert that the gallery says ``fragment`` (line breaks and runs of spaces as one space)."""
    fragment = " ".join(fragment.split())
    assert fragment in GALLERY, f"README's gallery does not say: {fragment!r}"


def sci(x, digits=3):
    """``x`` in the gallery's scientific notation: ``9.98e13``, ``2.28e-3``, ``1e78``."""
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def outcome(run):
    """The outcome's name of one run of a result."""
    return OUTCOMES[int(run.outcome)]


@pytest.fixture(scope="session")
def study(tmp_path_factory):
    """``study(name, *edits)``: the study ``studies/NAME.toml`` with each ``(old, new)`` of
    ``edits`` replaced in its text (a part of its grid), loaded and run in memory, once per
    session: ``(Study, Dataset)``."""
    folder = tmp_path_factory.mktemp("studies")
    done = {}

    def run(name, *edits):
        if (name, edits) not in done:
            text = (ROOT / "studies" / f"{name}.toml").read_text()
            for old, new in edits:
                assert text.count(old) == 1, f"{name}.toml no longer has {old!r}"
                text = text.replace(old, new)
            path = folder / f"{name}_{len(done)}.toml"
            path.write_text(text)
            loaded = load_study(path)
            done[name, edits] = loaded, run_study(loaded)
        return done[name, edits]

    return run


def least_squares(X, Y):
    """The tutorial's regression, densely: the rows ``a = (x, 1)``, the Hessian of the mean
    squared error, its least-squares ``(w, b)`` and the optimum loss."""
    A = np.column_stack([X[:, 0], np.ones(len(X))])
    coef = np.linalg.lstsq(A, Y[:, 0], rcond=None)[0]
    return A, 2 * A.T @ A / len(X), coef, float(np.mean((A @ coef - Y[:, 0]) ** 2))


def epoch_map(A, lr, batch_size):
    """The error map of one epoch of plain SGD in data order, a product of dense steps."""
    M = np.eye(A.shape[1])
    for start in range(0, len(A), batch_size):
        rows = A[start:start + batch_size]
        M = (np.eye(A.shape[1]) - lr * 2 * rows.T @ rows / len(rows)) @ M
    return M


def step_threshold(A, batch_size):
    """``2 /`` the largest curvature of any batch of the data order (each step on its own)."""
    batches = [A[start:start + batch_size] for start in range(0, len(A), batch_size)]
    return 2 / max(np.linalg.eigvalsh(2 * rows.T @ rows / len(rows))[-1] for rows in batches)


def radius(M):
    """The spectral radius of a dense matrix."""
    return float(np.abs(np.linalg.eigvals(M)).max())


def test_the_tutorial_data_and_its_curvatures():
    X, Y = gdsim.datasets.tutorial_line(0)
    _, H, _, _ = least_squares(X, Y)
    mu, L = np.linalg.eigvalsh(H)
    says(f"whose loss has curvatures `L = {L:.2f}`, `mu = {mu:.1f}`")


def test_gallery_1_per_sample_sgd_settles_on_a_bounded_orbit(study):
    tutorial, ds = study("1_tutorial")
    A, _, (w, _), optimum = least_squares(tutorial.X, tutorial.Y)
    n, lr = len(A), float(ds.attrs["lr"])
    gd, sgd = ds.sel(batch_size=n), ds.sel(batch_size=1)
    assert outcome(gd) in ("converged", "converging") and abs(float(gd.params[0]) - w) < 0.01
    says(f"With lr {lr:g}, batch gradient descent converges towards the least-squares line (a loss of "
         f"{float(gd.final_loss):.3f} after {ds.sizes['epoch'] - 1} epochs; the optimum is {optimum:.3f})")
    initial = float(sgd.loss.isel(epoch=0))
    assert float(sgd.diverged_loss) > 1e6 * initial  # train's mark: the first full-data loss above 1e6 x
    assert outcome(sgd) == "bounded orbit" and np.isfinite(sgd.loss).all()
    says(f"Per-sample SGD does not blow up: its loss passes 1e6 x the initial one at step {int(sgd.diverged_step)}, "
         f"then it settles on a bounded orbit (its `outcome`): a cycle that repeats every epoch, at a loss of "
         f"{sci(float(sgd.final_loss))}.")
    assert abs(float(sgd.loss.isel(epoch=1) / sgd.final_loss) - 1) < 0.1  # already there after one epoch
    step, rho = step_threshold(A, 1), radius(epoch_map(A, lr, 1))
    edge = theory.epoch_critical_lr(tutorial.model, tutorial.X, batch_size=1)
    assert step == pytest.approx(1 / (1 + 5 ** 2)) and lr > step  # the sample at x = -5
    assert rho < 1 and all(radius(epoch_map(A, x, 1)) < 1 for x in np.linspace(lr, 0.999 * edge, 20))
    assert radius(epoch_map(A, 1.001 * edge, 1)) > 1
    says(f"(lr {lr:g} is above their single-step threshold {step:.3f}), yet the epoch as a whole still contracts: its "
         f"map's spectral radius is {rho:.3f} at lr {lr:g} and stays below 1 up to `epoch_critical_lr` = {edge:.4f}.")


def test_gallery_2_where_each_batch_size_leaves_the_optimum(study):
    lr_batch, ds = study("2_lr_batch")
    model, X = lr_batch.model, lr_batch.X
    A, H, _, optimum = least_squares(X, lr_batch.Y)
    n, lrs = len(A), ds.lr.values
    L = np.linalg.eigvalsh(H)[-1]
    leaves, step, edge = {}, {}, {}
    for b in ds.batch_size.values:
        final = ds.final_loss.sel(batch_size=b).values
        near = final <= 2 * optimum
        k = np.nonzero(near)[0].max() + 1  # from here on every lr ends above 2 x the optimum
        assert not near[k:].any() and near[k - 1]
        leaves[b], step[b] = lrs[k], step_threshold(A, int(b))
        edge[b] = theory.epoch_critical_lr(model, X, batch_size=int(b))
    says(f"(`step_critical_lr`; `1 / (1 + 5^2) = {step[1]:.4f}` for one sample); dashed: above which the epoch as a "
         f"whole stops contracting (`epoch_critical_lr`; {edge[1]:.4f} for one sample)")
    assert step[1] < leaves[1] < 1.2 * step[1] and step[5] < leaves[5] < 1.4 * step[5] and leaves[5] < 0.5 * edge[5]
    says(f"per-sample SGD leaves at lr {leaves[1]:.4f} and B = 5 at {leaves[5]:.4f}, a little past their dotted lines "
         f"(B = 5's: {step[5]:.4f}) and far below `2/L = {2 / L:.4f}`")
    assert leaves[20] > 2 * step[20] and abs(leaves[20] / edge[20] - 1) < 0.03  # within the grid's step (2.9%)
    says(f"B = 20 stays until {leaves[20]:.4f}, next to its dashed line ({edge[20]:.4f}), although its single steps "
         f"are unstable from {step[20]:.4f}")
    gd = ds.sel(batch_size=n, lr=leaves[n])
    assert leaves[n] < 2 / L and outcome(gd) == "converging"
    says(f"Full batch leaves at {leaves[n]:.4f}, just below `2/L`, where {ds.sizes['epoch'] - 1} epochs are too few")
    sgd = ds.sel(batch_size=1)
    between = sgd.isel(lr=(lrs > step[1]) & (lrs < edge[1]))
    past = sgd.isel(lr=lrs > edge[1])
    assert np.isfinite(between.final_loss).all() and {OUTCOMES[c] for c in past.outcome.values} == {"diverged"}
    assert not (past.final_loss <= 1e30).any()  # above, or NaN past float64
    says(f"periodic orbit whose loss is huge but finite (up to {sci(float(between.final_loss.max()))}); past the "
         f"dashed line its loss ends above 1e30 at every lr.")


def test_gallery_3_momentum_against_the_companion_matrices(study):
    phase, ds = study("3_momentum_phase")
    _, old = study("3_momentum_phase", ("params0 = [-10.0, -20.0]", "params0 = [-10.0, -20.0]\ndivergence = 1e6"))
    _, H, _, _ = least_squares(phase.X, phase.Y)
    mu, L = np.linalg.eigvalsh(H)
    # The error map on (p - p*, buf) of torch's heavy ball and Nesterov, densely, every run at once.
    lr = ds.lr.values[:, None, None, None]
    beta = ds.momentum.values[None, :, None, None]
    I = np.eye(2)
    radii = {}
    for nesterov in (False, True):
        T = np.zeros((ds.sizes["lr"], ds.sizes["momentum"], 4, 4))
        T[..., :2, :2] = I - lr * (1 + beta * nesterov) * H
        T[..., :2, 2:] = -lr * beta ** (1 + nesterov) * I
        T[..., 2:, :2] = H
        T[..., 2:, 2:] = beta * I
        radii[nesterov] = np.abs(np.linalg.eigvals(T)).max(axis=-1)
    unstable = np.stack([radii[bool(v)] for v in ds.nesterov.values], axis=-1)  # lr, momentum, nesterov
    wrong = ds.diverged.transpose("lr", "momentum", "nesterov").values != (unstable > 1)
    wrong_old = old.diverged.transpose("lr", "momentum", "nesterov").values != (unstable > 1)
    assert (unstable[wrong] > 1).all()  # the growth rule calls none of the stable runs diverged
    says(f"{wrong.sum()} of the {wrong.size:,} runs fall on the other side of the theory's boundary than their color "
         f"says, all just past it (spectral radius at most {unstable[wrong].max():.3f}: growth too slow to show in "
         f"{ds.sizes['epoch'] - 1} steps); the old rule, 1e6 x the initial loss, put {wrong_old.sum()} on the wrong "
         f"side.")
    # Polyak's heavy ball for a quadratic with curvatures mu..L, and the grid's best heavy-ball run next to it.
    kappa = (np.sqrt(L) - np.sqrt(mu)) / (np.sqrt(L) + np.sqrt(mu))
    lr_star, beta_star = 4 / (np.sqrt(L) + np.sqrt(mu)) ** 2, kappa ** 2
    says(f"Polyak's optimum (lr {lr_star:.3f}, beta {beta_star:.3f}, the error shrinking by {kappa:.3f} per step)")
    heavy = ds.sel(nesterov=False)
    final = heavy.final_loss.where(~heavy.diverged).transpose("lr", "momentum").values
    i, j = np.unravel_index(np.nanargmin(final), final.shape)
    assert abs(np.log(ds.lr.values[i] / lr_star)) < 0.03 and abs(ds.momentum.values[j] - beta_star) < 0.02


def test_gallery_4_trajectories_below_between_and_above(study):
    paths, ds = study("4_trajectories")
    _, H, coef, _ = least_squares(paths.X, paths.Y)
    curvatures, vectors = np.linalg.eigh(H)
    L = curvatures[-1]
    for lr in ds.lr.values:
        along = (ds.epoch_params.sel(lr=lr).values - coef) @ vectors[:, -1]  # the steep direction
        flips = np.sign(along[1:]) != np.sign(along[:-1])
        shrinks = abs(along[-1]) < abs(along[0])
        if lr < 1 / L:  # monotone: never crosses the valley, the loss falls every epoch
            assert not flips.any() and shrinks and (np.diff(ds.loss.sel(lr=lr).values) < 0).all()
        elif lr < 2 / L:  # zig-zag, converging
            assert flips.all() and shrinks
        else:  # zig-zag, growing
            assert flips.all() and not shrinks and outcome(ds.sel(lr=lr)) == "diverged"
    above = ds.lr.values[ds.lr.values > 2 / L]
    assert len(above) == 1
    says(f"just above `2/L` (lr {above[0]:g} = {above[0] * L / 2:.2f} x) the zig-zag grows")


# Figure 5's studies run the batch sizes that its words quote (the theory's bisections are most
# of their time; a run's orders do not depend on the other batch sizes of the grid).
ALL_BATCHES = "batch_size = [1, 2, 4, 5, 10, 20, 25, 50, 100]"


def test_gallery_5_reshuffled_against_the_almost_sure_threshold(study):
    reshuffled, ds = study("5_critical_batch", (ALL_BATCHES, "batch_size = [1, 5, 100]"))
    n, sizes = reshuffled.X.shape[0], load_study(ROOT / "studies" / "5_critical_batch.toml").spec.values["batch_size"]
    assert all(n % int(b) == 0 for b in sizes)
    says(f"{ds.attrs['epochs']} epochs, {ds.sizes['lr']} lrs, the {len(sizes)} batch sizes that divide the {n} samples, "
         f"{ds.sizes['seed']} seeds for the random schemes")
    says(f"above the initial loss and {GROWTH:g} x the loss at epoch {ds.attrs['epochs'] // 2}")
    _, H, _, _ = least_squares(reshuffled.X, reshuffled.Y)
    two_over_L = 2 / np.linalg.eigvalsh(H)[-1]
    lo, hi = simulated_critical(ds)
    found = [theory.almost_sure_critical_lr(reshuffled.model, reshuffled.X, batch_size=b, lr_max=10 * two_over_L)
             for b in (1, 5, 100)]
    (as1, low1, high1), (as5, _, _), (as100, _, _) = found
    assert as1 < as5 and as5 > two_over_L
    says(f"Reshuffled, it is {as1:.4f} (95% band {low1:.4f}-{high1:.4f}) for B = 1, where the simulation turns between "
         f"{lo[0]:.4f} and {hi[0]:.4f}, rises to {as5:.4f} at B = 5 (simulated {lo[1]:.4f}-{hi[1]:.4f}), above `2/L = "
         f"{two_over_L:.4f}`, and comes back to {as100:.4f} at full batch.")


def test_gallery_5b_with_replacement_the_mean_square_diverges_first(study):
    drawn, ds = study("5b_critical_batch_replacement", (ALL_BATCHES, "batch_size = [1, 10]"))
    _, H, _, _ = least_squares(drawn.X, drawn.Y)
    lo, hi = simulated_critical(ds)
    almost_sure = [theory.almost_sure_critical_lr(drawn.model, drawn.X, batch_size=b, sampling="replacement",
                                                  lr_max=20 / np.linalg.eigvalsh(H)[-1]).lr for b in (1, 10)]
    mean_square = [theory.mean_square_critical_lr(drawn.model, drawn.X, batch_size=b, rtol=1e-6) for b in (1, 10)]
    assert all(m < 0.9 * a for m, a in zip(mean_square, almost_sure))
    says(f"({almost_sure[0]:.4f} at B = 1, {almost_sure[1]:.4f} at B = 10; simulated {lo[0]:.4f}-{hi[0]:.4f} and "
         f"{lo[1]:.4f}-{hi[1]:.4f}), but the mean square `E|e|^2` (`mean_square_critical_lr`, exact) diverges much "
         f"earlier, at {mean_square[0]:.4f} and {mean_square[1]:.4f}")


def test_gallery_5c_data_order_against_the_epoch_map(study):
    fixed, ds = study("5c_critical_batch_fixed")
    model, X = fixed.model, fixed.X
    A = least_squares(X, fixed.Y)[0]
    sizes = [int(b) for b in ds.batch_size.values]
    lo, hi = simulated_critical(ds)
    edge = np.array([theory.epoch_critical_lr(model, X, batch_size=b, rtol=1e-6) for b in sizes])
    for b, e in zip(sizes, edge):  # the threshold is where the dense epoch map's radius passes 1
        assert radius(epoch_map(A, 0.999 * e, b)) < 1 < radius(epoch_map(A, 1.001 * e, b))
    inside = (lo < edge) & (edge <= hi)
    (outside,) = np.nonzero(~inside)
    assert [sizes[j] for j in outside] == [50] and edge[outside[0]] < lo[outside[0]]
    one, quarter, half = sizes.index(1), sizes.index(25), sizes.index(50)
    last = ds.sel(batch_size=50, lr=lo[half])
    growth = float(last.final_loss / last.loss.isel(epoch=ds.attrs["epochs"] // 2))
    says(f"falls within the simulation's step at {inside.sum()} of the {len(sizes)} batch sizes ({edge[one]:.4f} at "
         f"B = 1, simulated {lo[one]:.4f}-{hi[one]:.4f}; {edge[quarter]:.4f} at B = 25, simulated {lo[quarter]:.4f}-"
         f"{hi[quarter]:.4f}) and just below it at B = 50 ({edge[half]:.4f}, last stable {lo[half]:.4f}: an epoch "
         f"radius of {radius(epoch_map(A, lo[half], 50)):.4f} there, the loss grows only {growth:.1f} x in the last "
         f"{ds.attrs['epochs'] // 2} epochs)")
    assert growth < GROWTH
    # Per-sample SGD below its threshold: a stable orbit whose loss passes the initial one from some lr on.
    sgd = ds.sel(batch_size=1)
    stable = sgd.isel(lr=ds.lr.values < edge[one])
    assert not unstable_runs(stable).any()
    above = (stable.final_loss > stable.loss.isel(epoch=0)).values
    k = np.argmax(above)
    assert above[k:].all() and not above[:k].any()
    says(f"whose loss passes the initial one from the sweep's lr {float(stable.lr[k]):.4f} on")


def test_gallery_7_the_seed_mlp_and_its_sharpness(study):
    lrs = ("lr = [1e-7, 1e-6, 3e-6, 1e-5, 2e-5, 3e-5, 5e-5, 7e-5, 1e-4, 1.5e-4, 2e-4, 3e-4, 4e-4, 5e-4, 7e-4, 1e-3, "
           "2e-3, 1e-2, 0.2]")
    mlp, ds = study("7_seed_mlp", (lrs, "lr = [7e-4, 1e-3, 2e-3, 0.2]"))
    beta = float(ds.attrs["momentum"])
    # The 1e-3 run again, its sharpness tracked at every step (Lanczos on exact Hessian-vector products).
    tracked = gdsim.train(mlp.model, mlp.X, mlp.Y, gdsim.SGD(lr=1e-3, momentum=beta), epochs=4,
                          batch_size=mlp.X.shape[0], track={"sharpness": 1})
    np.testing.assert_allclose(tracked.epoch_loss, ds.loss.sel(lr=1e-3).values[:5], rtol=1e-12)  # the study's run
    sharp = tracked.tracks.sharpness.values
    threshold = theory.critical_lr(sharp[0], beta)
    assert threshold == pytest.approx(2 * (1 + beta) / sharp[0], rel=1e-12)
    ratio = {float(lr): float(lr) / threshold for lr in ds.lr.values}
    runs = {float(lr): ds.sel(lr=lr) for lr in ds.lr.values}
    says(f"Its sharpness at initialisation is {sharp[0]:.0f} (Lanczos on exact Hessian-vector products), a threshold "
         f"of `2({1 + beta:g})/{sharp[0]:.0f} = {sci(threshold)}`; the tutorial's lr 0.2 is {ratio[0.2]:.0f} times "
         f"above it and is marked diverged at step {int(runs[0.2].diverged_step)}.")
    assert outcome(runs[7e-4]) == "converging" and all(outcome(runs[lr]) == "diverged" for lr in (1e-3, 2e-3, 0.2))
    says(f"lr 7e-4 ({ratio[7e-4]:.2f}x) converges, while 1e-3 ({ratio[1e-3]:.2f}x) blows up at step "
         f"{int(runs[1e-3].diverged_step)} and 2e-3 at step {int(runs[2e-3].diverged_step)}.")
    limit = 2 * (1 + beta) / 1e-3
    passes = int(np.argmax(sharp > limit))
    assert sharp[passes] > limit and not (sharp[:passes] > limit).any()
    says(f"the sharpness rises from {sharp[0]:.0f} to {sharp[3]:.0f} in 3 steps and passes that lr's "
         f"`2({1 + beta:g})/lr = {limit:.0f}` at step {passes}.")


def test_gallery_8_the_classifier(study):
    _, ds = study("8_classifier")
    passed = {float(lr): int(np.argmax(ds.accuracy.sel(lr=lr).values > 0.9)) for lr in ds.lr.values}
    assert all(ds.accuracy.sel(lr=lr).values[e] > 0.9 for lr, e in passed.items())
    assert passed[0.1] == passed[1.0]
    wild = ds.sel(lr=10.0)
    peak = float(wild.loss.max())
    assert float(wild.loss.isel(epoch=1)) == peak and outcome(wild) == "oscillating"
    says(f"lr 0.001 needs {passed[0.001]} epochs to pass 90% accuracy, 0.01 needs {passed[0.01]}, 0.1 and 1 pass it "
         f"after {passed[0.1]} epoch, and lr 10 throws the loss up to {sci(peak, 1)} in the first epoch and never "
         f"settles (its `outcome`: {outcome(wild)}).")


def edge_ratios(ds, nesterov):
    """Per (momentum, lr): the tracked sharpness over the quadratic threshold of that lr,
    ``2 (1 + beta) / ((1 + 2 beta) lr)`` for Nesterov, else ``2 (1 + beta) / lr``, from
    gdsim.theory's critical lr at curvature 1."""
    momenta = ds.momentum.values if "momentum" in ds.dims else [float(ds.attrs["momentum"])]
    out = {}
    for beta in momenta:
        for lr in ds.lr.values:
            run = ds.sel(lr=lr, momentum=beta) if "momentum" in ds.dims else ds.sel(lr=lr)
            limit = theory.critical_lr(1.0, float(beta), nesterov=nesterov and beta > 0) / float(lr)
            out[float(beta), float(lr)] = run.track_sharpness / limit
    return out


def test_gallery_9_edge_of_stability(study):
    _, ds = study("9_edge_of_stability")
    ratios = edge_ratios(ds, nesterov=False)
    steps = ds.sizes["epoch"] - 1
    medians = [float(r.where(r.step >= steps - 1000).median()) for (beta, _), r in ratios.items() if beta == 0]
    says(f"over the last 1000 of {steps} steps its median is {medians[0]:.3f}, {medians[1]:.3f} and {medians[2]:.3f} x "
         f"`2 / lr` for lr {', '.join(f'{lr:g}' for lr in ds.lr.values)}")
    peaks = [float(r.max()) for (beta, _), r in ratios.items() if beta == 0.9]
    says(f"Heavy ball (momentum 0.9) sharpens up to `(2 + 2 beta) / lr` (peaks of {min(peaks):.2f}-{max(peaks):.2f} x "
         f"it)")


def test_gallery_9b_nesterov_edge_of_stability(study):
    _, ds = study("9b_edge_of_stability_nesterov")
    beta = float(ds.attrs["momentum"])
    lower = theory.critical_lr(1.0, beta) / theory.critical_lr(1.0, beta, nesterov=True)
    assert lower == pytest.approx(1 + 2 * beta, rel=1e-12)
    peaks = [float(r.max()) for r in edge_ratios(ds, nesterov=True).values()]
    says(f"Nesterov's quadratic threshold is `(2 + 2 beta) / ((1 + 2 beta) lr)`, {lower:.1f} times lower than heavy "
         f"ball's at beta {beta:g}; the sharpness rises to about it (peaks of {min(peaks):.2f}-{max(peaks):.2f} x it)")


def test_gallery_9c_the_catapult(study):
    catapult, ds = study("9c_catapult")
    model, X, Y = catapult.model, catapult.X, catapult.Y
    lam0 = theory.sharpness(model, model.init(int(ds.attrs.get("seed", 0))), X, Y)
    assert float(ds.track_sharpness.isel(step=0)[0]) == pytest.approx(lam0, rel=1e-6)  # where every run starts
    w = np.linalg.lstsq(X, Y[:, 0], rcond=None)[0]  # a linear network without biases: least squares through 0
    best = 0.5 * np.mean((X @ w - Y[:, 0]) ** 2)
    times = {float(lr): float(lr) * lam0 / 2 for lr in ds.lr.values}
    grows = {}
    for lr, x in times.items():
        run = ds.sel(lr=lr)
        loss, sharp = run.track_loss.values, run.track_sharpness.values
        assert outcome(run) in ("converged", "converging") and float(run.final_loss) == pytest.approx(best, rel=1e-5)
        if x < 1:  # monotone, and the curvature stays put
            assert (np.diff(loss) <= 0).all() and abs(sharp[-1] / sharp[0] - 1) < 0.02
        else:  # catapulted: up first, then down where the sharpness is below 2 / lr
            assert 1 < x < 2 and sharp[-1] < 2 / lr
            grows[lr] = loss.max() / loss[0]
    low, (mid, high) = min(times.values()), sorted(times.values())[1:]
    says(f"Its curvature at initialisation is `lambda0 = {lam0:.4f}`. At lr {low:.1f} x `2 / lambda0` the loss falls "
         f"monotonically and the curvature stays put; at {mid:.1f} and {high:.1f} x, between `2 / lambda0` and `4 / "
         f"lambda0`, the loss first grows {' and '.join(f'{g:.0f}' for g in grows.values())} times")


def test_the_mean_square_threshold_reaches_2_over_l_only_for_infinite_batches():
    X, Y = gdsim.datasets.tutorial_line(0)
    model = gdsim.Linear(1, 1)
    two_over_L = 2 / np.linalg.eigvalsh(least_squares(X, Y)[1])[-1]
    at_n = theory.mean_square_critical_lr(model, X, batch_size=len(X), rtol=1e-8)
    huge = theory.mean_square_critical_lr(model, X, batch_size=10**8, rtol=1e-8)
    assert at_n < two_over_L * (1 - 5e-3) and huge == pytest.approx(two_over_L, rel=1e-6)
    doc = " ".join(theory.mean_square_critical_lr.__doc__.split())
    assert f"{at_n:.5f} at ``batch_size = n = {len(X)}``, against ``2 / L = {two_over_L:.5f}``" in doc
