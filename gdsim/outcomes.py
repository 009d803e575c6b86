"""What became of a run, read from its full-data loss at every epoch: converged,
converging, oscillating, a bounded orbit, or diverged, with its fitted growth rate per epoch.

A threshold on the loss (the old ``1e6 x`` rule) cannot tell a run that grows without
bound from one that left its start and settled on a far orbit: per-sample SGD on the
tutorial at ``lr = 0.1`` sits on a cycle at ``1e14`` whose epoch map contracts. The
growth of the loss can. :func:`classify` looks at the second half of the epochs (the
*tail*) and fits two trends per epoch, by least squares: ``g``, the slope of
``log(loss)`` (its ``exp`` is the reported growth rate), and ``d``, the slope of
``log|loss[e+1] - loss[e]|``, whether the loss's changes grow or die out. A trend counts
when it is above ``RATE_TOLERANCE`` and significant at ``P_VALUE`` (a t test):

1. **diverged**: a loss is non-finite (it overflowed, or the run was stopped and its later
   losses are NaN);
2. **converged**: the tail has settled (its largest and smallest losses within
   ``SETTLED`` relative) at or below the initial loss; **bounded orbit** if it settled
   wholly above it (a far fixed point or cycle of the epoch map);
3. **diverged**: the tail ends at its largest loss, above the initial loss, and its
   changes grow (``d > 0``: geometric growth, or a growing oscillation) or the loss grows
   (``g > 0``) while its changes do not die out (a rise short of that can be part of an
   oscillation slower than the tail);
4. **bounded orbit**: otherwise, if the tail lies wholly above the initial loss (the run
   left its start for good, and is on or settling towards a far orbit);
5. **converging**: the changes die out (``d < 0``: a geometric approach to a limit, from
   above, from below, or as heavy ball's damped oscillation), or the loss decreases
   while its changes do not grow;
6. **oscillating**: no trend and not settled: a noise floor, or a cycle such as gradient
   descent's period 2.

The outcome is that of the simulated horizon, and of the loss alone: gradient descent at
exactly ``lr = 2 / L`` flips its parameters at a constant loss, which reads as converged.

Divergence
----------
The ``divergence`` argument of :func:`gdsim.train` and :func:`gdsim.sweep` (and a study's
``[train] divergence``) says when a run is marked ``diverged`` and whether it stops there,
each value with one meaning everywhere (:data:`DIVERGENCE_DOC`, checked by
:func:`check_divergence`): ``"growth"`` (this module's outcome), a number (a threshold,
the run stops), None (a threshold at 1e6, the run goes on) or ``"nonfinite"``.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import TypeVar

import numpy as np
from numpy.typing import ArrayLike

from ._aside import compile_aside
from ._jit import is_cached, jit, num_threads, numba_types
from ._threads import thread_pool
from ._validate import ParameterError, closest, is_real_scalar, short_repr

#: The outcomes, by code (the ``outcome`` variable of a sweep holds the code).
OUTCOMES = ("converged", "converging", "oscillating", "bounded orbit", "diverged")
CONVERGED, CONVERGING, OSCILLATING, BOUNDED_ORBIT, DIVERGED = range(len(OUTCOMES))
#: :func:`classify` splits its runs over threads in parts of at least this many.
SPLIT_ROWS = 1024
#: The share of the epoch losses (the last ones) the growth rate is fitted on.
TAIL = 0.5
#: A tail whose largest loss is within this, relative, of its smallest has settled.
SETTLED = 1e-6
#: A slope per epoch smaller than this (a factor within 0.1% of 1 per epoch) is no trend.
RATE_TOLERANCE = 1e-3
#: A slope counts as a trend when noise would give one as far from 0 with this chance at
#: most (two-sided Student t test on the fit's residuals).
P_VALUE = 1e-3
#: Student t's two-sided critical values at :data:`P_VALUE` for 1 to 128 degrees of
#: freedom: ``scipy.special.stdtrit(df, 1 - P_VALUE / 2)``, stored (tests/test_outcomes.py
#: checks them bit for bit) so that classifying up to 129 epochs need not import
#: scipy.special (~50 ms of a new process's first sweep); more epochs call it.
T_CRITICAL = (
    636.6192487687897, 31.599054576445365, 12.923978636687961, 8.610301581379522, 6.868826625881276,
    5.95881617881889, 5.407882520861828, 5.041305433373456, 4.780912585931217, 4.586893858702708, 4.436979338234516,
    4.3177912836062475, 4.22083172770718, 4.140454112738259, 4.072765195903846, 4.014996327184108, 3.965126272119082,
    3.9216458250852084, 3.883405852592131, 3.8495162749308744, 3.8192771642745096, 3.792130671698437,
    3.7676268043118246, 3.745398619290096, 3.725143949728693, 3.7066117434809525, 3.6895917134592784,
    3.6739064007013176, 3.6594050194663748, 3.6459586350420627, 3.6334563497583714, 3.6218022598675352,
    3.610913007654468, 3.600715797386448, 3.5911467758108175, 3.582149701456376, 3.5736748444452444,
    3.565678071580273, 3.5581200813327714, 3.550965760863349, 3.5441836429716207, 3.537745445327468,
    3.5316256778080883, 3.5258013064872133, 3.520251464971136, 3.5149572054818425, 3.5099012834495147,
    3.5050679704702397, 3.5004428913674035, 3.496012881811176, 3.49176586353394, 3.4876907346572263,
    3.4837772730384846, 3.4800160508703124, 3.476398359033626, 3.4729161399299437, 3.4695619277048184,
    3.4663287949310466, 3.463210304951977, 3.460200469196392, 3.457293708870447, 3.454484820512057,
    3.4517689449610334, 3.4491415393564084, 3.4465983518220056, 3.4441353985440433, 3.4417489429812322,
    3.439435476979535, 3.4371917035911235, 3.4350145214208503, 3.432901010344135, 3.4308484184581607,
    3.4288541501439256, 3.426915755130393, 3.4250309184639884, 3.423197451297202, 3.42141328241934,
    3.4196764504606096, 3.417985096707893, 3.4163374584769812, 3.4147318629916166, 3.4131667217247217,
    3.4116405251616047, 3.410151837948895, 3.4086992943964676, 3.4072815943027592, 3.405897499076671,
    3.4045458281317793, 3.403225455530791, 3.401935306860244, 3.4006743563171975, 3.3994416239913705,
    3.3982361733275592, 3.3970571087545696, 3.39590357346804, 3.3947747473556347, 3.393669845054059,
    3.392588114128222, 3.391528833363685, 3.390491311164263, 3.3894748840473063, 3.388478915229759,
    3.3875027932987147, 3.3865459309605934, 3.3856077638635975, 3.384687749488481, 3.383785366103038,
    3.3829001117761073, 3.382031503447156, 3.3811790760478315, 3.38034238167213, 3.3795209887920605,
    3.3787144815159316, 3.3779224588865797, 3.377144534217049, 3.37638033446142, 3.375629499618624,
    3.374891682167254, 3.3741665465295116, 3.373453768562533, 3.372753035075503, 3.3720640433710174,
    3.3713865008093165, 3.370720124394037, 3.370064640378276, 3.3694197838898066, 3.368785298574372,
    3.368160936256036,
)

F = TypeVar("F", bound=Callable)
#: ``divergence="growth"``: ``diverged`` is the outcome "diverged"; a run stops only at a non-finite loss.
GROWTH = "growth"
#: ``divergence="nonfinite"``: only a non-finite loss marks a run; it goes on to the end.
NONFINITE = "nonfinite"
#: The threshold factor of ``divergence=None``.
DEFAULT_FACTOR = 1e6
#: The meaning of each ``divergence`` value, the one definition that the docstrings of
#: :func:`gdsim.train` and :func:`gdsim.sweep` show (:func:`document_divergence`).
DIVERGENCE_DOC = """\
        When a run is marked ``diverged`` and whether it stops there; each value means the
        same in :func:`gdsim.train`, :func:`gdsim.sweep` and a study file's ``[train]
        divergence`` (where None is spelt ``"none"``), so a sweep's grid point is the run
        ``train`` makes with the same ``divergence``:

        * ``"growth"``: ``diverged`` when the run's outcome is (:mod:`gdsim.outcomes`: a
          non-finite loss, or a loss that grows over the second half of the epochs); the
          run stops only at a non-finite loss. A run that settles on a far but bounded
          orbit is neither stopped nor diverged.
        * a number ``x > 1``: marked ``diverged`` at the first loss that is non-finite or
          above ``x`` times the run's initial full-data loss, and stopped there (in a
          sweep this saves the work of runs known to be lost).
        * None: marked at the first loss that is non-finite or above ``1e6`` times the
          initial loss; the run goes on to the end.
        * ``"nonfinite"``: marked at the first non-finite loss; the run goes on to the end.

        The losses checked are each batch's loss before its update and the full-data loss
        before each epoch and after the last; ``diverged_step`` is the step of the first
        one that marks the run (-1 if none). A stopped run keeps its parameters from
        before that step (no update is made there) and its later losses are NaN.
"""
#: The line of a docstring that :func:`document_divergence` replaces with :data:`DIVERGENCE_DOC`.
DIVERGENCE_MARK = "        See :data:`gdsim.outcomes.DIVERGENCE_DOC`.\n"


def document_divergence(func: F) -> F:
    """``func`` with the line :data:`DIVERGENCE_MARK` of its docstring replaced by
    :data:`DIVERGENCE_DOC` (the one definition of ``divergence``, shown in each docstring)."""
    if func.__doc__ is not None:  # None under python -OO
        if DIVERGENCE_MARK not in func.__doc__:
            raise AssertionError(f"{func.__name__}'s docstring has no divergence mark")
        func.__doc__ = func.__doc__.replace(DIVERGENCE_MARK, DIVERGENCE_DOC)
    return func


def check_divergence(divergence: str | float | None) -> tuple[float, bool, str]:
    """The rule of a ``divergence`` argument (see :data:`DIVERGENCE_DOC`).

    Parameters
    ----------
    divergence : "growth", "nonfinite", float > 1 or None

    Returns
    -------
    factor : float
        A loss above ``factor`` times the run's initial full-data loss marks the run
        (``inf``: only a non-finite loss does).
    stop : bool
        Whether a marked run stops.
    rule : str
        What ``diverged`` says: ``"growth"``, the run's outcome is "diverged"
        (:func:`classify`); ``"threshold"``, the run was marked.

    Raises
    ------
    gdsim.ParameterError
        Naming ``divergence`` and the values it accepts.

    Examples
    --------
    >>> check_divergence(None), check_divergence(10), check_divergence("nonfinite")
    ((1000000.0, False, 'threshold'), (10.0, True, 'threshold'), (inf, False, 'threshold'))
    """
    if isinstance(divergence, str) and divergence == GROWTH:
        return math.inf, True, "growth"
    if isinstance(divergence, str) and divergence == NONFINITE:
        return math.inf, False, "threshold"
    if divergence is None:
        return DEFAULT_FACTOR, False, "threshold"
    if isinstance(divergence, str) or not is_real_scalar(divergence) or not divergence > 1:
        hint = ""
        if isinstance(divergence, str):
            hint = " (did you mean None?)" if divergence.lower() == "none" else closest(divergence, [GROWTH, NONFINITE])
        raise ParameterError(f"divergence must be 'growth', a number > 1 (a factor of the initial loss), 'nonfinite' "
                             f"or None, got {short_repr(divergence)}{hint}", "divergence")
    return float(divergence), True, "threshold"


class NotGiven:
    """The type of :data:`NOT_GIVEN`, the default of a deprecated argument."""

    def __repr__(self):
        return "<not given>"


#: The default of a deprecated argument: not given.
NOT_GIVEN = NotGiven()


def check_train_divergence(divergence: str | float | None,
                           divergence_factor: float | None | NotGiven) -> tuple[float, bool, str]:
    """``(factor, stop, rule)`` of :func:`gdsim.train`'s ``divergence``
    (:func:`check_divergence`), or of its deprecated ``divergence_factor`` (checked and run
    as before: to the end; with a DeprecationWarning saying what replaces it)."""
    if isinstance(divergence_factor, NotGiven):
        return check_divergence(divergence)
    if divergence is not None:
        raise ParameterError(f"give divergence or divergence_factor (deprecated), not both: got "
                             f"divergence={short_repr(divergence)} and divergence_factor={short_repr(divergence_factor)}",
                             "divergence_factor")
    if divergence_factor is None:
        factor, instead = math.inf, "divergence='nonfinite' (the same run)"
    elif not is_real_scalar(divergence_factor) or not divergence_factor > 0:
        raise ParameterError(f"divergence_factor must be a number > 0 (or None), got {divergence_factor!r}",
                             "divergence_factor")
    elif divergence_factor == DEFAULT_FACTOR:
        factor, instead = float(divergence_factor), "divergence=None (the same run)"
    else:
        factor = float(divergence_factor)
        instead = (f"divergence={divergence_factor!r}, which marks the same step and also stops the run there (the "
                   "outputs after it are NaN); to run on to the end, divergence=None (marks at 1e6 x) or 'nonfinite'")
    warnings.warn(f"train(divergence_factor=...) is deprecated and will be removed in the next release: "
                  f"divergence_factor={divergence_factor!r} is {instead}", DeprecationWarning, stacklevel=3)
    return factor, False, "threshold"


def cf_attrs() -> dict[str, object]:
    """The CF attributes of an ``outcome`` variable (``flag_values`` and ``flag_meanings``)."""
    return {"long_name": "outcome of the run", "flag_values": np.arange(len(OUTCOMES), dtype=np.int8),
            "flag_meanings": " ".join(name.replace(" ", "_") for name in OUTCOMES),
            "description": "from the growth of the full-data loss over the last half of the epochs "
                           "(gdsim.outcomes)"}


def classify(epoch_loss: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The outcome and growth rate of runs from their full-data losses at every epoch.

    Parameters
    ----------
    epoch_loss : array_like (..., epochs + 1)
        Full-data loss before each epoch and after the last (``TrainResult.epoch_loss``,
        a sweep's ``loss``), one row per run; NaN after a stopped run's last update.

    Returns
    -------
    outcome : numpy.ndarray of int8 (...)
        Codes of :data:`OUTCOMES`.
    growth_rate : numpy.ndarray of float64 (...)
        ``exp`` of the least-squares slope of ``log(loss)`` per epoch over the last half
        of the finite losses: the factor the loss grows by per epoch (below 1: it
        decays). NaN where fewer than two losses are finite; 0 where the loss reached 0.

    Raises
    ------
    gdsim.ParameterError
        If ``epoch_loss`` has fewer than two entries on its last axis.

    Notes
    -----
    The rules are in the module's docstring. Each run is classified on its own, so the
    result does not depend on which runs share the call.

    Examples
    --------
    >>> import numpy as np
    >>> outcome, rate = classify([[1.0, 0.5, 0.25, 0.125], [1.0, 4.0, 16.0, 64.0]])
    >>> [OUTCOMES[c] for c in outcome], rate.round(6).tolist()
    (['converging', 'diverged'], [0.5, 4.0])
    """
    loss = np.asarray(epoch_loss, dtype=np.float64)
    if loss.ndim < 1 or loss.shape[-1] < 2:
        raise ParameterError(f"epoch_loss must have at least two epochs (the initial and a final loss) on its last "
                             f"axis, got shape {loss.shape}", "epoch_loss")
    flat = np.ascontiguousarray(loss.reshape(-1, loss.shape[-1]))
    outcome = np.empty(flat.shape[0], dtype=np.int8)
    rate = np.empty(flat.shape[0])
    # Many runs (a sweep's): parts of the rows on threads (the kernel releases the GIL;
    # each run is classified on its own, so the same bits).
    n_parts = min(num_threads(), flat.shape[0] // SPLIT_ROWS)
    if n_parts > 1:
        bounds = np.linspace(0, flat.shape[0], n_parts + 1).round().astype(np.int64)
        parts = [(flat[a:b], outcome[a:b], rate[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        others = [thread_pool(n_parts - 1, "gdsim-classify").submit(classify_into, *part) for part in parts[1:]]
        classify_into(*parts[0])  # the first part here, the others on the pool
        for done in others:
            done.result()
    else:
        classify_into(flat, outcome, rate)
    return outcome.reshape(loss.shape[:-1]), rate.reshape(loss.shape[:-1])


def classify_into(loss: np.ndarray, outcome: np.ndarray, rate: np.ndarray) -> None:
    """:func:`classify` of the rows of ``loss`` on this thread, into given arrays: for
    callers that classify parts of a result where they compute them (the CPU sweep
    targets, each range of runs as it finishes).

    Parameters
    ----------
    loss : numpy.ndarray (runs, epochs + 1)
        At least two epochs (not checked here); converted to C-contiguous float64 if it is not.
    outcome : numpy.ndarray of int8 (runs,)
    rate : numpy.ndarray of float64 (runs,)
        Filled with :func:`classify`'s results, bit for bit; contiguous (slices of
        bigger arrays are fine).
    """
    loss = np.ascontiguousarray(loss, dtype=np.float64)
    critical = _critical_values(loss.shape[1])
    if _ASIDE:
        _ASIDE[0].wait()  # then the kernel loads from Numba's cache
    _classify_runs(loss, critical, outcome, rate)


#: The process compiling :func:`_classify_runs` (:func:`compile_classify_aside`), if one was started.
_ASIDE: list = []


def compile_classify_aside():
    """Start compiling this module's kernel in another process (:func:`gdsim._aside.compile_aside`)
    if it is neither compiled here nor in Numba's cache, once per process: for a sweep
    that is about to compile its own kernels for seconds (cold), which :func:`classify_into`
    then waits for (it finishes first) and loads the kernel from the cache."""
    if _ASIDE or is_cached(_classify_runs, numba_types(_classify_example())) is not False:
        return
    aside = compile_aside(_compile_classify)
    if aside is not None:
        _ASIDE.append(aside)


def _classify_example():
    """Arguments of :func:`_classify_runs` of the types :func:`classify_into` passes."""
    return np.zeros((1, 3)), np.zeros(4), np.zeros(1, dtype=np.int8), np.zeros(1)


def _compile_classify():
    """Compile :func:`_classify_runs` (into Numba's cache): :func:`compile_classify_aside`'s process."""
    _classify_runs(*_classify_example())


@functools.cache
def _critical_values(n_columns):
    """Student t's two-sided critical value at :data:`P_VALUE` for each number of fitted
    points ``m < n_columns + 1`` (``m - 2`` degrees of freedom), computed once per length."""
    df = np.maximum(np.arange(n_columns + 1) - 2, 1)
    if df[-1] <= len(T_CRITICAL):
        return np.array(T_CRITICAL)[df - 1]
    # scipy.special, not scipy.stats: the same inverse (t.ppf calls stdtrit) without the
    # ~0.7 s import of scipy.stats in a new process's first sweep.
    from scipy.special import stdtrit

    return stdtrit(df, 1 - P_VALUE / 2)


# Loops over scalars only (no array methods such as .mean(), .min() or np.isnan(...).any()):
# the same arithmetic in the same order, compiled in a fraction of the time (a cold first
# sweep spent 1.75 s of its 7.5 s compiling the version with array methods).
@jit
def _classify_runs(loss, critical, outcome, rate):
    """Fill ``outcome`` and ``rate`` for each row of ``loss`` (runs, epochs + 1) by the
    module's rules; ``critical[m]``: the t test's threshold for a fit of ``m`` points."""
    n_epochs = loss.shape[1]
    logs = np.empty(n_epochs)  # scratch, reused run after run
    for r in range(loss.shape[0]):
        n = 0  # the losses before the first non-finite one
        while n < n_epochs and math.isfinite(loss[r, n]):
            n += 1
        # min(n, max(2, tail)), and min() and max() below, written out (the values Numba's
        # select): Numba compiles its min() and max() for each pair of argument types
        tail = int(math.ceil(TAIL * n))  # noqa: RUF046
        tail = 2 if 2 > tail else tail  # noqa: FURB136
        size = n if n < tail else tail  # noqa: FURB136
        start = n - size
        for i in range(size):
            value = loss[r, start + i]
            logs[i] = math.log(value) if value > 0.0 else math.nan
        g, g_sign = _trend(logs, size, critical)
        last = loss[r, n - 1] if size > 0 else math.nan
        rate[r] = 0.0 if last == 0.0 else math.exp(g)
        if n < n_epochs:
            outcome[r] = DIVERGED
            continue
        low = high = loss[r, start]
        for i in range(1, size):
            value = loss[r, start + i]
            low = value if value < low else low  # noqa: FURB136
            high = value if value > high else high  # noqa: FURB136
        first = loss[r, 0]
        above = low > first
        # A growing loss ends its tail at its largest value, above where it started; a rise
        # short of that can be part of an oscillation slower than the tail (heavy ball or
        # Nesterov at small lr and high momentum), or noise.
        peak = last == high and last > first
        d_sign = 0  # the changes' trend, fitted only where the rules below read it (~1/3 of the time)
        if last != 0.0 and high > low * (1.0 + SETTLED) and (peak or (not above and g_sign >= 0)):
            for i in range(size - 1):
                change = abs(loss[r, start + i + 1] - loss[r, start + i])
                logs[i] = math.log(change) if change > 0.0 else math.nan
            d_sign = _trend(logs, size - 1, critical)[1]
        if last == 0.0:  # an exact minimum (the log fit is not defined there)
            outcome[r] = CONVERGED
        elif high <= low * (1.0 + SETTLED):  # settled (rounding may still make it creep)
            outcome[r] = BOUNDED_ORBIT if above else CONVERGED
        elif peak and (d_sign > 0 or (g_sign > 0 and d_sign >= 0)):
            outcome[r] = DIVERGED
        elif above:
            outcome[r] = BOUNDED_ORBIT
        elif d_sign < 0 or g_sign < 0:
            outcome[r] = CONVERGING
        else:
            outcome[r] = OSCILLATING


@jit
def _trend(logs, m, critical):
    """(least-squares slope of ``logs[:m]`` per entry, its sign if it counts as a trend:
    above :data:`RATE_TOLERANCE` and significant at :data:`P_VALUE`, else 0); (NaN, 0) with
    fewer than two entries or a NaN (the log of a value that is not positive)."""
    if m < 2:
        return math.nan, 0
    total = 0.0
    for i in range(m):
        if math.isnan(logs[i]):
            return math.nan, 0
        total += logs[i]
    mean = total / m
    center = (m - 1) / 2
    sxx = 0.0
    sxy = 0.0
    for i in range(m):
        sxx += (i - center) ** 2
        sxy += (i - center) * (logs[i] - mean)
    slope = sxy / sxx
    sse = 0.0
    for i in range(m):
        sse += (logs[i] - mean - slope * (i - center)) ** 2
    stderr = math.sqrt(sse / (1 if 1 > m - 2 else m - 2) / sxx)  # noqa: FURB136 - max(m - 2, 1)
    counts = abs(slope) > RATE_TOLERANCE and abs(slope) > critical[m] * stderr
    return slope, (1 if slope > 0 else -1) if counts else 0
