"""The linear-regression tutorial, reproduced: batch gradient descent converges,
per-sample SGD blows up (``gdsim tutorial``)."""

import numpy as np

from . import datasets
from ._validate import check_int
from .models import Linear
from .optim import SGD
from .training import train

# The linear-regression tutorial's starting point (w0, b0).
TUTORIAL_START = (-10.0, -20.0)


def _tutorial_table(title, result, optimum):
    """Print one run the way the tutorial prints it, then a one-line verdict."""
    print(f"\n{title}")
    print(f"{'epoch':>5}  {'loss':>14}  {'w':>14}  {'b':>14}")
    # As in the tutorial: the loss recorded at the start of the epoch, w and b after it.
    for epoch, (loss, (w, b)) in enumerate(zip(result.epoch_loss[:-1], result.epoch_params[1:])):
        print(f"{epoch:>5}  {loss:>14.6g}  {w:>14.6g}  {b:>14.6g}")
    final = result.epoch_loss[-1]
    print(f"{'end':>5}  {final:>14.6g}")
    if result.diverged:
        verdict = (f"DIVERGED: loss first exceeded 1e6 x its initial value at step {result.diverged_step} "
                   f"(loss {result.diverged_loss:.4g}); final loss {final:.4g}")
    elif final <= 1.5 * optimum:
        verdict = f"CONVERGED: final loss {final:.4g}, least-squares optimum {optimum:.4g}"
    else:
        verdict = f"NOT CONVERGED: final loss {final:.4g}, least-squares optimum {optimum:.4g}"
    print(f"=> {verdict}")
    return verdict


def run_tutorial(seed=0, lr=0.1, epochs=20):
    """Reproduce the linear-regression tutorial: batch GD converges, per-sample SGD blows up.

    Returns
    -------
    dict
        ``{"batch_gd": TrainResult, "per_sample_sgd": TrainResult}``.
    """
    # Check everything before printing anything.
    epochs = check_int("epochs", epochs, minimum=1)
    X, Y = datasets.tutorial_line(seed)
    model = Linear(1, 1)
    params0 = model.pack([[[TUTORIAL_START[0]]], [TUTORIAL_START[1]]])
    optimizer = SGD(lr=lr)
    design = np.column_stack([X, np.ones(len(X))])
    residual = Y - design @ np.linalg.lstsq(design, Y, rcond=None)[0]
    optimum = float(np.mean(residual**2))

    print("Linear-regression tutorial: y = w x + b, X = arange(-5, 5, 0.1), Y = -5 X + 0.4 N(0, 1) "
          f"(seed {seed})")
    print(f"start w = {TUTORIAL_START[0]:g}, b = {TUTORIAL_START[1]:g}; MSE loss; SGD lr {lr:g}; "
          f"{epochs} epochs; float64")
    runs = {}
    for key, title, batch_size in (("batch_gd", "Batch gradient descent (one step per epoch)", None),
                                   ("per_sample_sgd", "Per-sample SGD (one step per sample, data order)", 1)):
        runs[key] = train(model, X, Y, optimizer, epochs=epochs, batch_size=batch_size, params0=params0,
                          record_params=True)
        _tutorial_table(title, runs[key], optimum)
    return runs
