"""The linear-regression tutorial, reproduced and varied (``gdsim tutorial``).

Two runs from the tutorial's start ``w = -10, b = -20`` on its data: batch gradient
descent (one step per epoch, data order) and SGD with the chosen batch size (default 1:
per-sample) and sample order (``shuffle``); both with the chosen momentum and Nesterov.
Each run ends with a verdict, read from its full-data loss at every epoch by
:func:`gdsim.outcomes.classify` (the trend over the last half of the epochs, the *tail*),
and a line of theory for its settings, checked against it.

Verdicts (``F`` the final loss, ``opt`` the least-squares optimum, ``g`` the growth factor
of the loss per epoch that ``classify`` fits on the tail):

* **diverging**: outcome "diverged": the loss overflowed, or it grows (``g > 1``) and ends
  its tail at its largest value, above its initial loss; or outcome "bounded orbit" where
  the theory below says the error grows (then the line adds the theory's growth factor of
  the loss per epoch, ``rho ** 2`` or ``exp(2 gamma)``): random orders are heavy-tailed,
  and their loss can swing by decades with no trend the tail's fit finds significant;
* **bounded orbit**: outcome "bounded orbit" otherwise: the whole tail lies above the
  initial loss but does not grow (a far cycle: per-sample SGD in data order at lr 0.1);
* **oscillating**: outcome "oscillating": no trend and not settled (a noise floor, a
  cycle), unless the tail falls at every epoch (then it converges, too slowly for
  ``classify``'s :data:`gdsim.outcomes.RATE_TOLERANCE`);
* **converging slowly**: outcome "converging" (or a tail falling at every epoch) while
  ``F`` is still above :data:`SLOW` ``x opt``; the line gives ``g`` and the epochs
  ``log(SLOW opt / F) / log(g)`` it needs at that rate;
* **converging**: outcome "converged" (settled) or "converging" otherwise.

Theory, for the run's scheme (:mod:`gdsim.theory`):

* data order (batch gradient descent included): the spectral radius ``rho`` of the epoch
  map at the run's lr (:func:`gdsim.theory.epoch_spectral_radius`; ``< 1``: the error
  shrinks ``x rho`` per epoch towards a cycle, ``> 1``: it grows), the lr where it first
  exceeds 1 (:func:`gdsim.theory.epoch_critical_lr`) and, without momentum, the lr above
  which single steps expand (:func:`gdsim.theory.step_critical_lr`): why a stable run
  can settle on a far orbit;
* a fresh permutation every epoch or indices drawn with replacement: the top Lyapunov
  exponent per epoch (:func:`gdsim.theory.lyapunov_exponent`; stable when its 95% interval
  is below 0, unstable when above) and the lr where it passes 0
  (:func:`gdsim.theory.almost_sure_critical_lr`); for replacement also the lr above
  which the mean square diverges (:func:`gdsim.theory.mean_square_critical_lr`).

A stable theory agrees with every verdict but diverging (an oscillation it calls stable
is damped, or, with random orders, SGD's noise floor), an unstable one with diverging
alone; where they differ the line says so (the horizon is too short to show it).
"""

import math
from typing import NamedTuple

import numpy as np

from . import datasets, theory
from ._validate import ParameterError, check_int
from .models import Linear
from .optim import SGD
from .outcomes import OUTCOMES, TAIL, classify
from .theory.sampling import ALMOST_SURE_EPOCHS, ALMOST_SURE_SEED
from .training import train

# The linear-regression tutorial's starting point (w0, b0).
TUTORIAL_START = (-10.0, -20.0)
#: A converging run whose final loss is above this many times the least-squares optimum
#: is "converging slowly".
SLOW = 2.0
#: The tutorial's verdicts.
VERDICTS = ("converging", "converging slowly", "oscillating", "bounded orbit", "diverging")
#: What ``shuffle`` means, as the run's title says it.
ORDERS = {False: "data order", True: "a fresh permutation every epoch",
          "replacement": "indices drawn with replacement"}


class TutorialRun(NamedTuple):
    """One run of the tutorial and what it printed about it.

    Attributes
    ----------
    result : gdsim.TrainResult
        The run (``record_params=True``).
    verdict : str
        One of :data:`VERDICTS`.
    reason : str
        The verdict's line: the numbers that decide it.
    stable : bool or None
        The theory's answer for these settings (None: at the threshold).
    theory : str
        The theory's line.
    """

    result: object
    verdict: str
    reason: str
    stable: object
    theory: str


def verdict(epoch_loss, optimum, stable=None, growth=None):
    """The tutorial's verdict on a run and the line that says why (module docstring).

    Parameters
    ----------
    epoch_loss : array_like (epochs + 1,)
        The run's full-data loss before each epoch and after the last.
    optimum : float
        The least-squares optimum of the data (``> 0``).
    stable : bool or None, optional
        The theory's answer (:func:`theory_line`); None: unknown or at the threshold.
    growth : float, optional
        The theory's growth factor of the loss per epoch (:func:`theory_line`).

    Returns
    -------
    (str, str)
        One of :data:`VERDICTS`, and the sentence with the numbers that decide it.
    """
    loss = np.asarray(epoch_loss, dtype=np.float64)
    code, rate = classify(loss)
    outcome, g = OUTCOMES[int(code)], float(rate)
    bad = ~np.isfinite(loss)
    n = int(np.argmax(bad)) if bad.any() else loss.size  # the losses before the first non-finite one
    size = min(n, max(2, math.ceil(TAIL * n)))  # the tail classify fits (gdsim.outcomes)
    tail = loss[n - size:n]
    span = f"epochs {n - size}-{n - 1}"
    final, initial = float(loss[-1]), float(loss[0])
    falling = size > 1 and bool(np.all(np.diff(tail) < 0))
    if outcome == "diverged":
        if not np.isfinite(final):
            return "diverging", f"the loss overflowed: not finite from epoch {n} on"
        return "diverging", (f"the loss grows x{g:#.4g} per epoch over {span}, to {final:.4g} "
                             f"({final / initial:.3g} x its initial {initial:.4g})")
    if outcome == "bounded orbit" and stable is False:
        return "diverging", (f"the loss stays above its initial {initial:.4g} over {span} ({_between(tail)}, "
                             f"final {final:.4g}) with no trend its fit finds (x{g:#.4g} per epoch), but theory "
                             f"grows it x{growth:#.4g} per epoch: not bounded")
    if outcome == "bounded orbit":
        return "bounded orbit", (f"the loss stays above its initial {initial:.4g} over {span} ({_between(tail)}) "
                                 f"and does not grow (x{g:#.4g} per epoch): final loss {final:.4g} = "
                                 f"{final / optimum:.3g} x the least-squares optimum")
    if outcome == "converging" or (outcome == "oscillating" and falling):
        if final > SLOW * optimum:
            more = (f"; at that rate it needs about {math.ceil(math.log(SLOW * optimum / final) / math.log(g))} "
                    f"more epochs to come within {SLOW:g} x" if 0 < g < 1 else "")
            return "converging slowly", (f"the loss goes x{g:#.4g} per epoch over {span} and is still "
                                         f"{final / optimum:.3g} x the least-squares optimum {optimum:.4g} "
                                         f"({final:.4g}){more}")
        return "converging", (f"the loss goes x{g:#.4g} per epoch over {span}, to {final:.4g} = "
                              f"{final / optimum:.3g} x the least-squares optimum {optimum:.4g}")
    if outcome == "oscillating":
        return "oscillating", (f"no trend over {span} (x{g:#.4g} per epoch): {_between(tail)}, "
                               f"{tail.min() / optimum:.3g}-{tail.max() / optimum:.3g} x the least-squares optimum "
                               f"{optimum:.4g}")
    return "converging", (f"the loss settled over {span} at {final:.4g} = {final / optimum:.3g} x the "
                          f"least-squares optimum {optimum:.4g}")


def _digits(value):
    """``value`` to four digits, or as ``1+2.2e-16`` where four would round it to 1 (the threshold)."""
    text = f"{value:.4g}"
    return f"1{'+' if value > 1 else '-'}{abs(value - 1):.2g}" if text == "1" and value != 1 else text


def _between(tail):
    """Where the tail's losses lie, to four digits."""
    low, high = f"{tail.min():.4g}", f"{tail.max():.4g}"
    return f"at {high}" if low == high else f"between {low} and {high}"


def theory_line(model, X, lr, *, batch_size, shuffle, momentum=0.0, nesterov=False):
    """What theory says of SGD with these settings on least squares (module docstring).

    Parameters
    ----------
    model : gdsim.Linear
        With MSE.
    X : numpy.ndarray (n, n_in)
    lr : float
    batch_size : int
        In ``[1, n]``.
    shuffle : {False, True, "replacement"}
    momentum : float, default 0
    nesterov : bool, default False

    Returns
    -------
    (bool or None, float, str)
        Stable (True), unstable (False) or at the threshold (None); the factor the loss's
        distance to its limit changes by per epoch (``rho ** 2``, or ``exp(2 gamma)`` for
        the Lyapunov exponent ``gamma``); and the sentence.
    """
    n = X.shape[0]
    settings = {"momentum": momentum, "nesterov": nesterov}
    searchable = momentum < 1  # the thresholds' searches need momentum < 1; above it nothing is stable
    if shuffle is False:
        rho = theory.epoch_spectral_radius(model, X, lr, batch_size=batch_size, **settings)
        stable = True if rho < 1 else False if rho > 1 else None
        text = (f"epoch-map radius {_digits(rho)} at lr {lr:g} ({'<' if rho < 1 else '>=' if rho == 1 else '>'} 1: "
                f"{'stable' if rho < 1 else 'unstable' if rho > 1 else 'at the threshold'})")
        if searchable:
            critical = theory.epoch_critical_lr(model, X, batch_size=batch_size, rtol=1e-6, **settings)
            text += f"; it first exceeds 1 at lr {critical:.4g}"
        if momentum == 0 and batch_size < n:
            step = theory.step_critical_lr(model, X, batch_size=batch_size)
            if lr > step:
                text += f"; single steps expand above lr {step:.4g}, so the loss swings far within an epoch"
        return stable, rho * rho, text  # a float product overflows to inf, ** raises
    sampling = "reshuffle" if shuffle is True else "replacement"
    lyapunov = theory.lyapunov_exponent(model, X, lr, batch_size=batch_size, sampling=sampling,
                                        epochs=ALMOST_SURE_EPOCHS, burn_in=ALMOST_SURE_EPOCHS // 10, seed=ALMOST_SURE_SEED,
                                        **settings)
    stable = True if lyapunov.high < 0 else False if lyapunov.low > 0 else None
    text = (f"top Lyapunov exponent {lyapunov.exponent:+.3g} per epoch at lr {lr:g} (95%: {lyapunov.low:+.3g} to "
            f"{lyapunov.high:+.3g}: {'stable' if stable else 'unstable' if stable is False else 'at the threshold'})")
    if searchable:
        L = float(np.linalg.eigvalsh(theory.hessian(model, X)).max())
        lr_max = 10 * theory.critical_lr(L, momentum, nesterov=nesterov)
        critical = theory.almost_sure_critical_lr(model, X, batch_size=batch_size, sampling=sampling, lr_max=lr_max,
                                                  **settings).lr
        text += f"; it passes 0 at lr {critical:.4g}"
        if sampling == "replacement":
            mean_square = theory.mean_square_critical_lr(model, X, batch_size=batch_size, rtol=1e-6, **settings)
            text += f"; the mean square diverges above lr {mean_square:.4g}"
    with np.errstate(over="ignore"):
        return stable, float(np.exp(2 * lyapunov.exponent)), text


def _agreement(verdict_name, stable, random_order):
    """How the theory's answer ``stable`` (bool or None) reads against the run's verdict
    (``random_order``: the samples are reshuffled or drawn)."""
    if stable is None:
        return "at the threshold: either can show"
    if stable and verdict_name == "oscillating":
        return "the run agrees: " + ("SGD's noise floor" if random_order else "a damped oscillation, dying out")
    if stable == (verdict_name != "diverging"):
        return "the run agrees"
    if stable:
        return "the run grows on this horizon nonetheless (run more epochs to see it pass)"
    return "the run does not show it yet (run more epochs)"


def _tutorial_table(title, result):
    """Print one run the way the tutorial prints it."""
    print(f"\n{title}")
    print(f"{'epoch':>5}  {'loss':>14}  {'w':>14}  {'b':>14}")
    # As in the tutorial: the loss recorded at the start of the epoch, w and b after it.
    for epoch, (loss, (w, b)) in enumerate(zip(result.epoch_loss[:-1], result.epoch_params[1:])):
        print(f"{epoch:>5}  {loss:>14.6g}  {w:>14.6g}  {b:>14.6g}")
    print(f"{'end':>5}  {result.epoch_loss[-1]:>14.6g}")


def _check_shuffle(shuffle):
    """``shuffle`` as train takes it: False, True or "replacement"."""
    if isinstance(shuffle, (bool, np.bool_)):
        return bool(shuffle)
    if isinstance(shuffle, str) and shuffle == "replacement":
        return shuffle
    raise ParameterError(f"shuffle must be False (data order), True (a fresh permutation every epoch) or "
                         f"'replacement', got {shuffle!r}", "shuffle")


def run_tutorial(seed=0, lr=0.1, epochs=20, *, momentum=0.0, nesterov=False, batch_size=1, shuffle=False,
                 quiet=False):
    """Reproduce the linear-regression tutorial, and vary it: batch GD against SGD.

    Prints both runs (loss, ``w`` and ``b`` per epoch), each with its verdict and the
    theory's line (see the module docstring). Every argument is checked before anything
    is printed.

    Parameters
    ----------
    seed : int, default 0
        Seeds the data noise and the SGD run's sample orders.
    lr : float, default 0.1
        Learning rate of both runs, ``> 0``.
    epochs : int, default 20
        ``>= 1``.
    momentum : float, default 0
        Momentum of both runs (torch's heavy ball, ``>= 0``).
    nesterov : bool, default False
        Nesterov momentum for both runs (needs ``momentum > 0``).
    batch_size : int or None, default 1
        Samples per step of the SGD run, in ``[1, 100]``; None: full batch (with
        ``shuffle=False`` that run is batch GD itself and is not repeated).
    shuffle : {False, True, "replacement"}, default False
        The SGD run's sample order, as in :func:`gdsim.train`: data order, a fresh
        permutation every epoch, or 100 indices per epoch drawn with replacement. Batch
        GD always runs in data order.
    quiet : bool, default False
        Print only each run's verdict line (no header, no tables, no theory line).

    Returns
    -------
    dict of str to TutorialRun
        ``"batch_gd"`` and (unless it is the same run) ``"sgd"``.

    Raises
    ------
    gdsim.ParameterError
        Naming the argument (``epochs``, ``batch_size``, ``shuffle``; ``lr``,
        ``momentum`` and ``nesterov`` with torch's messages), before anything is printed.
    """
    # Check everything before printing anything.
    epochs = check_int("epochs", epochs, minimum=1)
    X, Y = datasets.tutorial_line(seed)
    n = X.shape[0]
    batch_size = n if batch_size is None else check_int("batch_size", batch_size, minimum=1, maximum=n)
    shuffle = _check_shuffle(shuffle)
    optimizer = SGD(lr=lr, momentum=momentum, nesterov=nesterov)
    if optimizer.lr == 0:  # torch takes it, but nothing would move: no verdict to give
        raise ParameterError("lr must be > 0 here (at lr 0 nothing moves), got 0", "lr")
    model = Linear(1, 1)
    params0 = model.pack([[[TUTORIAL_START[0]]], [TUTORIAL_START[1]]])
    design = np.column_stack([X, np.ones(n)])
    residual = Y - design @ np.linalg.lstsq(design, Y, rcond=None)[0]
    optimum = float(np.mean(residual**2))

    sgd_text = f"SGD lr {optimizer.lr:g}" + (f", momentum {optimizer.momentum:g}" if optimizer.momentum else "") + (
        " (Nesterov)" if optimizer.nesterov else "")
    say = (lambda *lines: None) if quiet else (lambda *lines: print(*lines, sep="\n"))
    say("Linear-regression tutorial: y = w x + b, X = arange(-5, 5, 0.1), Y = -5 X + 0.4 N(0, 1) "
        f"(seed {seed})", f"start w = {TUTORIAL_START[0]:g}, b = {TUTORIAL_START[1]:g}; MSE loss; {sgd_text}; "
        f"{epochs} epochs; float64")
    order = ORDERS[shuffle]
    if batch_size == 1:
        title = f"Per-sample SGD (one step per sample, {order})"
    elif batch_size == n:
        title = f"Full-batch SGD ({order})"
    else:
        title = f"Mini-batch SGD (batch size {batch_size}, {-(-n // batch_size)} steps per epoch, {order})"
    plan = [("batch_gd", "Batch gradient descent (one step per epoch)", n, False)]
    if not (batch_size == n and shuffle is False):
        plan.append(("sgd", title, batch_size, shuffle))
    runs = {}
    for key, run_title, size, run_shuffle in plan:
        result = train(model, X, Y, optimizer, epochs=epochs, batch_size=size, shuffle=run_shuffle, seed=seed,
                       params0=params0, record_params=True)
        if not quiet:
            _tutorial_table(run_title, result)
        stable, growth, text = theory_line(model, X, optimizer.lr, batch_size=size, shuffle=run_shuffle,
                                           momentum=optimizer.momentum, nesterov=optimizer.nesterov)
        name, reason = verdict(result.epoch_loss, optimum, stable, growth)
        print(f"{run_title.split(' (')[0]}: {name}: {reason}" if quiet else f"=> {name}: {reason}")
        say(f"   theory: {text}; {_agreement(name, stable, run_shuffle is not False)}")
        runs[key] = TutorialRun(result, name, reason, stable, text)
    return runs
