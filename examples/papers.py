"""Four results of the training-dynamics literature, and gdsim's divergence labels, each measured
with gdsim in a few lines.

    python examples/papers.py            # all five, about a minute on 2 cores
    python examples/papers.py eos noise  # some of them

* ``eos``: edge of stability (Cohen et al., ICLR 2021): full-batch GD drives the sharpness
  to ``2 / lr`` and holds it there; heavy ball to ``(2 + 2 beta) / lr``.
* ``catapult``: the catapult phase (Lewkowycz et al., 2020): a two-layer linear network in
  NTK parameterisation, loss ``1/2 (f - y)^2``: below ``2 / lambda0`` the loss falls
  monotonically, between ``2`` and ``4 / lambda0`` it rises, the curvature drops below
  ``2 / lr``, and the loss then converges; above ``4 / lambda0`` it diverges.
* ``stability``: linear stability of SGD at a minimum (Wu, Ma & E, NeurIPS 2018): at an
  interpolating minimum of an MLP, SGD stays when the mean-square radius of its
  linearisation is below 1 and escapes when it is above, although both lrs are below ``2 / a``.
* ``noise``: the gradient noise scale (McCandlish et al., 2018): ``B_simple`` and
  ``B_noise`` along a training run; the critical batch grows as the loss falls.
* ``labels``: divergence labels from growth (:mod:`gdsim.outcomes`): per-sample SGD on the
  tutorial in data order is a bounded orbit, not diverged, up to the lr where its epoch
  map stops contracting (``gdsim.theory.epoch_critical_lr``), and grows past it by the
  map's spectral radius squared per epoch.

Each prints the numbers it measures; ``tests/test_papers.py`` runs them and checks them
against the papers' statements.
"""

import sys

import numpy as np

import gdsim


def edge_of_stability():
    """Sharpness / threshold over the last third of full-batch runs (GD and heavy ball)."""
    X, Y = gdsim.datasets.teacher_mlp(n=128, sizes=(5, 16, 1), seed=0)
    model = gdsim.MLP((5, 32, 32, 1), activation="tanh")
    out = {}
    for lr, beta in ((0.4, 0.0), (0.4, 0.9)):
        run = gdsim.train(model, X, Y, gdsim.SGD(lr=lr, momentum=beta), epochs=2000, track={"sharpness": 10})
        ratio = run.tracks.sharpness / ((2 + 2 * beta) / lr)
        late = ratio.sel(step=slice(1000, None)).values
        out[beta] = (float(np.median(late)), float(late.min()), float(late.max()), float(ratio.max()))
        print(f"eos: lr {lr}, momentum {beta}: sharpness / threshold over steps 1000-2000: median "
              f"{out[beta][0]:.4f} (range {out[beta][1]:.3f}-{out[beta][2]:.3f}); largest {out[beta][3]:.3f}")
    return out


def catapult():
    """Loss peak and final curvature of the uv model for lrs in units of 2 / lambda0."""
    m = 64
    model = gdsim.MLP((1, m, 1), activation="identity", bias=False, parameterization="ntk", reduction="half_mean")
    X, Y = np.ones((1, 1)), np.zeros((1, 1))
    params0 = model.init(0)
    lam0 = gdsim.theory.sharpness(model, params0, X, Y)
    out = {}
    for factor in (0.75, 1.5, 2.5):  # lr x lambda0 / 2: below 1, between 1 and 2, above 2
        lr = factor * 2 / lam0
        run = gdsim.train(model, X, Y, gdsim.SGD(lr=lr), epochs=60, params0=params0, divergence="nonfinite",
                          track={"loss": 1, "sharpness": 1})
        loss, sharp = run.tracks.loss.values, run.tracks.sharpness.values
        out[factor] = (float(np.nanmax(loss) / loss[0]), float(loss[-1]), float(sharp[-1] * lr))
        print(f"catapult: lr = {factor:g} x 2/lambda0 (lambda0 = {lam0:.4f}): peak loss {out[factor][0]:.3g} x the "
              f"initial, final loss {out[factor][1]:.3g}, final lr x curvature {out[factor][2]:.3g}")
    return out


def linear_stability():
    """Does SGD stay at a minimum? Theory's mean-square radius against simulation."""
    X, Y = gdsim.datasets.teacher_mlp(n=12, sizes=(2, 3, 1), noise=0.0, seed=1)
    model = gdsim.MLP((2, 8, 1), activation="tanh")
    found = gdsim.train(model, X, Y, gdsim.SGD(lr=0.3, momentum=0.9), epochs=60000, seed=0)
    minimum, floor = found.params, found.epoch_loss[-1]  # the loss there is ~1e-6: nearly interpolating
    out = {}
    for lr in (0.2, 0.35):
        report = gdsim.theory.linear_stability(model, minimum, X, Y, lr, batch_size=1)
        # Per-sample SGD with replacement from 1e-4 off the minimum, 30 seeds: "left" when the
        # loss ends 100 times above the minimum's.
        rng = np.random.default_rng(0)
        left = 0
        for seed in range(30):
            start = minimum + 1e-4 * rng.standard_normal(minimum.size)
            run = gdsim.train(model, X, Y, gdsim.SGD(lr=lr), epochs=200, batch_size=1, shuffle="replacement",
                              seed=seed, params0=start, divergence="nonfinite")
            left += not (run.epoch_loss[-1] < 100 * floor)
        out[lr] = (report.sharpness * lr, report.mean_square_radius, left)
        print(f"stability: lr {lr}: lr x sharpness {out[lr][0]:.3f} (< 2: stable for full-batch GD), mean-square "
              f"radius of per-sample SGD {out[lr][1]:.6g}; SGD left the minimum in {left} of 30 runs")
    return out


def noise_scale():
    """B_simple and B_noise at the start and the end of a mini-batch run."""
    X, Y = gdsim.datasets.teacher_mlp(n=256, sizes=(10, 5, 1), seed=0)
    model = gdsim.MLP((10, 16, 1), activation="tanh")
    run = gdsim.train(model, X, Y, gdsim.SGD(lr=0.05), epochs=40, batch_size=16, shuffle=True,
                      track={"noise_scale": 160, "loss": 160})
    t = run.tracks
    out = (float(t.loss[0]), float(t.loss[-1]), float(t.b_simple[0]), float(t.b_simple[-1]),
           float(t.b_noise[0]), float(t.b_noise[-1]))
    print(f"noise: loss {out[0]:.4g} -> {out[1]:.4g}; B_simple {out[2]:.3g} -> {out[3]:.3g}; "
          f"B_noise {out[4]:.3g} -> {out[5]:.3g}")
    return out


def divergence_labels():
    """Where a sweep's default calls per-sample SGD diverged, against the epoch map's edge."""
    X, Y = gdsim.datasets.tutorial_line()
    model = gdsim.Linear(1, 1)
    lrs = np.linspace(0.05, 0.14, 91)
    ds = gdsim.sweep(model, X, Y, lr=lrs, epochs=300, batch_size=1, params0=[-10.0, -20.0])
    by_threshold = gdsim.sweep(model, X, Y, lr=lrs, epochs=300, batch_size=1, params0=[-10.0, -20.0], divergence=1e6)
    edge = gdsim.theory.epoch_critical_lr(model, X)
    first = float(lrs[np.argmax(ds.diverged.values)])
    out = (float(lrs[np.argmax(by_threshold.diverged.values)]), first, edge,
           float(ds.growth_rate.sel(lr=first)), float(gdsim.theory.epoch_spectral_radius(model, X, first) ** 2))
    print(f"labels: per-sample SGD, data order, 300 epochs: diverged from lr {out[0]:.3f} by the 1e6 x rule, "
          f"from lr {out[1]:.3f} by growth; the epoch map's edge is {out[2]:.4f}; at lr {first:.3f} the loss "
          f"grows {out[3]:.4g}x per epoch, the epoch map's radius squared is {out[4]:.4g}")
    return out


PAPERS = {"eos": edge_of_stability, "catapult": catapult, "stability": linear_stability, "noise": noise_scale,
          "labels": divergence_labels}

if __name__ == "__main__":
    for name in sys.argv[1:] or PAPERS:
        PAPERS[name]()
