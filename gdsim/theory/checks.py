"""Argument checks of :mod:`gdsim.theory`, and the overflow-safe arithmetic its formulas share.

Every refusal is a :class:`gdsim.ParameterError` whose ``param`` is the argument as the
user typed it (``"L"``, ``"eigenvalues"``, ``"v"``) and whose message says what is
accepted and what was given. Built on :mod:`gdsim._validate` and SGD's rule table
(:data:`gdsim.optim.HYPER_PARAMETERS`).
"""

from __future__ import annotations

import math

import numpy as np

from .._validate import (
    ParameterError,
    as_array,
    check_bool,
    check_int,
    check_real,
    check_real_array,
    is_real_scalar,
    short_repr,
)
from ..models import check_model
from ..optim import HYPER_PARAMETERS, check_nesterov


# ---------------------------------------------------------------------------------------
# Numbers and arrays
# ---------------------------------------------------------------------------------------
def check_reals(name, value, *, minimum=None, strict=False) -> np.ndarray:
    """A non-empty float64 array of finite reals (a scalar gives a 0-d array), else
    ParameterError naming ``name`` and the first bad entry."""
    try:
        scalar = np.ndim(value) == 0 and not isinstance(value, np.ndarray)
    except (ValueError, TypeError):  # ragged nested lists
        scalar = False
    if scalar:
        return np.asarray(check_real(name, value, minimum=minimum, strict=strict))
    arr = check_real_array(name, value, minimum=minimum, strict=strict)
    if arr.size == 0:
        raise ParameterError(f"{name} must not be empty, got shape {arr.shape}", name)
    return arr


def check_hyper(name, value, *, scalar=False) -> np.ndarray:
    """``lr``, ``momentum``, ``dampening`` or ``weight_decay`` by SGD's rules, as a float64
    array (non-empty); ``scalar``: one number only (a single run)."""
    rule = HYPER_PARAMETERS[name]
    arr = rule.check_values(value)
    if arr.size == 0:
        raise ParameterError(f"{name} must not be empty, got shape {arr.shape}", name)
    if scalar and not is_real_scalar(value):
        raise ParameterError(f"{name} must be a single real number here (one run), got {short_repr(value)}", name)
    return arr


def check_broadcast(**arrays):
    """The broadcast shape of the named arrays, else ParameterError naming the first
    argument whose shape does not broadcast against the ones before it."""
    shape, seen = (), []
    for name, arr in arrays.items():
        try:
            shape = np.broadcast_shapes(shape, np.shape(arr))
        except ValueError:
            before = ", ".join(f"{n} {s}" for n, s in seen)
            raise ParameterError(f"{name} has shape {np.shape(arr)}, which does not broadcast against {before}",
                                 name) from None
        seen.append((name, np.shape(arr)))
    return shape


def check_eigenvalues(name, H):
    """The eigenvalues (float64, 1-d) of ``H``: a finite symmetric matrix, a 1-d array of
    eigenvalues or one number; else ParameterError naming ``name``."""
    arr = check_reals(name, H)
    if arr.ndim <= 1:
        return np.atleast_1d(arr)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ParameterError(f"{name} must be a symmetric matrix or a 1-d array of its eigenvalues, got shape "
                             f"{arr.shape}", name)
    exponent = math.frexp(float(np.abs(arr).max()))[1]
    scaled = np.ldexp(arr, -exponent)  # exact: entries up to 1, so neither the check nor LAPACK overflows
    if not np.allclose(scaled, scaled.T, rtol=1e-12, atol=0.0):
        raise ParameterError(f"{name} must be a symmetric matrix, got one with |{name} - {name}.T| up to "
                             f"{np.ldexp(np.abs(scaled - scaled.T).max(), exponent):g}", name)
    with np.errstate(over="ignore"):
        lam = np.ldexp(np.linalg.eigvalsh(scaled), exponent)
    if not np.all(np.isfinite(lam)):
        raise ParameterError(f"{name} must have eigenvalues within float64's range, got a matrix whose largest "
                             f"eigenvalue overflows (entries up to {np.abs(arr).max():g})", name)
    return lam


def safe_product(*factors):
    """The elementwise product of finite factors without a spurious inf or NaN: 0 when
    a factor is 0 (never ``0 * inf``), and the largest magnitude times the smallest first,
    so an intermediate overflows only when the product itself does (then it is +-inf)."""
    stack = np.stack(np.broadcast_arrays(*(np.asarray(f, dtype=np.float64) for f in factors)))
    ordered = np.take_along_axis(stack, np.argsort(np.abs(stack), axis=0), axis=0)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        out = ordered[-1] * ordered[0]
        for factor in ordered[1:-1]:
            out = out * factor
    return np.where(np.any(stack == 0, axis=0), 0.0, out)


def radius_of(M):
    """Spectral radius of a square matrix with finite entries, inf if any entry
    overflowed (then the map itself is beyond float64). Scaled by a power of two first,
    so LAPACK sees entries up to 1 and the radius overflows only when it exceeds float64."""
    top = float(np.abs(M).max())
    if not math.isfinite(top):
        return math.inf
    if top == 0:
        return 0.0
    exponent = math.frexp(top)[1]
    return times_power_of_two(float(np.abs(np.linalg.eigvals(np.ldexp(M, -exponent))).max()), exponent)


def times_power_of_two(value, exponent):
    """``value * 2**exponent`` for ``value >= 0``: inf past float64 (NaN too), never a warning."""
    if value == 0:
        return 0.0
    return math.ldexp(value, exponent) if math.log2(value) + exponent < 1023 else math.inf


# ---------------------------------------------------------------------------------------
# Models, momentum, searches
# ---------------------------------------------------------------------------------------
def check_linear_mse(model, what):
    """``model`` if it is a :class:`gdsim.Linear` with MSE (a quadratic loss)."""
    model = check_model(model)
    if not model.spec.is_least_squares:
        raise ParameterError(f"model must be a gdsim.Linear with loss='mse' (a quadratic loss) for {what}, got "
                             f"{model!r}; for an MLP use gdsim.theory.sharpness", "model")
    return model


def check_momentum(momentum, dampening, weight_decay, nesterov, *, below_one=False, scalar=False):
    """Validate the momentum settings with SGD's rules (:data:`gdsim.optim.HYPER_PARAMETERS`,
    :func:`gdsim.optim.check_nesterov`; momentum 0 with Nesterov is plain GD here).

    ``below_one``: a threshold is asked for, which exists only for momentum < 1 and, for
    heavy ball with momentum, dampening < 1; ``scalar``: one run, numbers only.

    Returns
    -------
    momentum, dampening, weight_decay : numpy.ndarray (float64)
    nesterov : bool
    """
    beta, tau, wd = (check_hyper(name, value, scalar=scalar) for name, value in
                     (("momentum", momentum), ("dampening", dampening), ("weight_decay", weight_decay)))
    check_broadcast(momentum=beta, dampening=tau, weight_decay=wd)
    if below_one and np.any(beta >= 1):
        raise ParameterError(f"momentum must be < 1 (no learning rate is stable from 1 on), got "
                             f"{short_repr(momentum)}", "momentum")
    nesterov = check_bool("nesterov", nesterov)
    try:
        check_nesterov(nesterov, beta, tau, require_momentum=False)
    except ParameterError as error:  # torch's wording starts "Nesterov": say which argument
        raise ParameterError(f"nesterov=True: {error} (got dampening={short_repr(dampening)})", "nesterov") from None
    if below_one and not nesterov:
        # the buffer takes (1 - dampening) of each gradient: from 1 on no lr > 0 converges
        bad = (beta > 0) & (tau >= 1)
        if np.any(bad):
            raise ParameterError(f"dampening must be < 1 where momentum > 0 (the buffer takes 1 - dampening of "
                                 f"each gradient), got {float(np.broadcast_to(tau, bad.shape)[bad][0])!r}",
                                 "dampening")
    return beta, tau, wd, nesterov


def check_batches(batch_size, order, drop_last, n):
    """``(batch_size, order, drop_last)`` of one epoch over ``n`` samples: ``order`` a
    permutation of ``range(n)`` (None: data order)."""
    batch_size = check_int("batch_size", batch_size, minimum=1, maximum=n)
    drop_last = check_bool("drop_last", drop_last)
    if order is None:
        return batch_size, np.arange(n), drop_last
    arr = as_array("order", order)
    if arr.dtype.kind not in "iu" or arr.shape != (n,) or not np.array_equal(np.sort(arr), np.arange(n)):
        raise ParameterError(f"order must be a permutation of range({n}) ({n} distinct integers), got "
                             f"{short_repr(order)}", "order")
    return batch_size, arr, drop_last


def check_rtol(rtol):
    """The bisection's relative tolerance, in (0, 1)."""
    return check_real("rtol", rtol, minimum=0.0, maximum=1.0, strict=True)


def safe_norm(x):
    """Euclidean norm without overflow (inf only when it exceeds float64)."""
    top = float(np.abs(x).max()) if x.size else 0.0
    if top == 0:
        return 0.0
    return top * float(np.linalg.norm(x / top))  # Python floats: an overflow is inf, silently
