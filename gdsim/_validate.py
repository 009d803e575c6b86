"""Argument checks shared by the public API: each error names the parameter and what it accepts.

Every check raises :class:`ParameterError`, a ``ValueError`` that also carries the name of
the parameter it refuses (``error.param``), so that callers such as study files can say
where the value came from without reading the message.
"""

import difflib
import math
import numbers

import numpy as np


class ParameterError(ValueError):
    """An argument that cannot be used: the message names it and what is accepted.

    Parameters
    ----------
    message : str
    param : str or None
        The argument refused (``"lr"``, ``"batch_size"``, ...), None when the problem is not
        one argument's (the size of a whole grid, say).
    """

    def __init__(self, message, param=None):
        super().__init__(" ".join(message.split()))  # one line, however a value's repr wraps
        self.param = param


def _param(name):
    """The argument a check's ``name`` refers to: ``"sizes[0]"`` -> ``"sizes"``,
    ``"lr_schedule T_max"`` -> ``"lr_schedule"``, ``"seed (every value)"`` -> ``"seed"``."""
    return name.replace("[", " ").split(" ")[0]


def check_int(name, value, minimum=None, maximum=None):
    """``value`` as a Python int within ``[minimum, maximum]``, else ParameterError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ParameterError(f"{name} must be an integer, got {value!r}", _param(name))
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        low = "-inf" if minimum is None else minimum
        high = "inf" if maximum is None else maximum
        raise ParameterError(f"{name} must be an integer in [{low}, {high}], got {value}", _param(name))
    return value


#: Seeds are stored as int64 (a sweep's seed axis, result files): the largest one.
SEED_MAX = 2**63 - 1


def check_seed(name, value):
    """``value`` as a seed of ``numpy.random.default_rng``: an integer in ``[0, 2**63 - 1]``."""
    return check_int(name, value, minimum=0, maximum=SEED_MAX)


def check_bool(name, value):
    """``value`` as a Python bool (``True``/``False`` only), else ParameterError naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise ParameterError(f"{name} must be True or False, got {value!r}", _param(name))
    return bool(value)


def check_choice(name, value, choices):
    """``value`` if it is one of ``choices``, else ParameterError listing them (and the closest)."""
    try:
        if value in choices:
            return value
    except TypeError:  # unhashable (a list, a set): not a choice
        pass
    hint = closest(value, choices) if isinstance(value, str) else ""
    raise ParameterError(f"{name} must be one of {sorted(choices)}, got {short_repr(value)}{hint}", _param(name))


#: What users type for a choice, from torch, numpy and habit, and the name gdsim uses.
ALIASES = {
    "gpu": "cuda", "nvidia": "cuda", "cuda:0": "cuda", "threads": "parallel", "multicore": "parallel",
    "serial": "cpu", "mseloss": "mse", "l2": "mse", "l2loss": "mse", "squared_error": "mse",
    "crossentropyloss": "cross_entropy", "crossentropy": "cross_entropy", "ce": "cross_entropy",
    "xent": "cross_entropy", "softmax": "cross_entropy", "linear": "identity", "none": "identity",
    "logistic": "sigmoid", "double": "float64", "f8": "float64", "single": "float32", "f4": "float32",
    "average": "mean", "avg": "mean", "total": "sum",
}


def closest(value, choices):
    """`` (did you mean 'x'?)`` for the choice ``value`` most likely meant, or ``""``.

    Knows the spellings users bring along: any case, torch's class names with or without
    ``nn.``/``torch.nn.`` (``"nn.ReLU"`` -> ``"relu"``, ``"MSELoss"`` -> ``"mse"``) and the
    aliases of :data:`ALIASES` (``"gpu"`` -> ``"cuda"``); else the closest spelling.
    """
    value = str(value)
    key = value.strip().lower()
    for prefix in ("torch.nn.", "nn.", "torch.", "np.", "numpy."):
        key = key.removeprefix(prefix)
    key = key.removesuffix("()")
    by_key = {str(c).lower(): c for c in choices}
    for candidate in (key, ALIASES.get(key), key.replace("-", "_")):
        if candidate in by_key and by_key[candidate] != value:
            return f" (did you mean {by_key[candidate]!r}?)"
    # The fewest edits first ("sead" -> "seed", not "spread"), then difflib's similarity.
    names = sorted(map(str, choices))
    distance = {c: _edits(key, c.lower()) for c in names}
    best = min(names, key=lambda c: distance[c], default=None)
    if best is not None and distance[best] <= max(1, len(key) // 3):
        return f" (did you mean {best!r}?)"
    close = difflib.get_close_matches(value, names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _edits(a, b):
    """Levenshtein distance between two strings (insertions, deletions, substitutions)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def check_real(name, value, *, minimum=None, maximum=None, strict=False, finite=True):
    """``value`` as a Python float, else ParameterError naming ``name``.

    Parameters
    ----------
    name : str
    value : object
        Must be a real scalar (not bool); NaN is always refused, inf unless ``finite`` is False.
    minimum, maximum : float, optional
        Bounds; ``strict`` makes them exclusive (``> minimum``, ``< maximum``).
    """
    if not is_real_scalar(value):
        raise ParameterError(f"{name} must be a real number, got {short_repr(value)}", _param(name))
    try:
        value = float(value)
    except OverflowError:  # an int beyond float's range
        value = math.inf if value > 0 else -math.inf
    low_ok = minimum is None or (value > minimum if strict else value >= minimum)
    high_ok = maximum is None or (value < maximum if strict else value <= maximum)
    if math.isnan(value) or (finite and math.isinf(value)) or not (low_ok and high_ok):
        raise ParameterError(f"{name} must be {_range_text(minimum, maximum, strict, finite)}, got {value!r}",
                             _param(name))
    return value


def as_array(name, value, dtype=None):
    """``numpy.asarray(value, dtype)``, or ParameterError naming ``name`` for what numpy
    cannot make an array of (ragged nested lists, strings into numbers)."""
    try:
        return np.asarray(value, dtype=dtype)
    except (ValueError, TypeError, OverflowError):
        raise ParameterError(f"{name} must be a rectangular array of numbers (not a ragged list), got "
                             f"{short_repr(value)}", _param(name)) from None


def check_real_array(name, value, *, minimum=None, strict=False, finite=True, ndim=None, allow_nan=False):
    """``value`` as a float64 array of real numbers, else ParameterError naming ``name``
    and the first bad entry (bounds as in :func:`check_real`; ``ndim``: required dimensions;
    ``allow_nan``: accept any float, NaN and inf included, and no bounds)."""
    arr = as_array(name, value)
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise ParameterError(f"{name} must be an array of real numbers, got {short_repr(value)} (dtype {arr.dtype})",
                             _param(name))
    if ndim is not None and arr.ndim not in np.atleast_1d(ndim):
        raise ParameterError(f"{name} must be a {ndim}-d array, got shape {arr.shape}", _param(name))
    arr = arr.astype(np.float64)
    if allow_nan:
        return arr
    with np.errstate(invalid="ignore"):
        bad = np.isnan(arr) | (np.isinf(arr) if finite else False)
        if minimum is not None:
            bad |= ~(arr > minimum) if strict else ~(arr >= minimum)
    if np.any(bad):
        k = int(np.argmax(np.ravel(bad)))
        index = tuple(int(i) for i in np.unravel_index(k, arr.shape))
        where = f" at index {index[0] if len(index) == 1 else index}" if arr.ndim else ""
        raise ParameterError(f"{name} must hold {_range_text(minimum, None, strict, finite, plural=True)}, got "
                             f"{float(arr.ravel()[k])!r}{where}", _param(name))
    return arr


def _range_text(minimum, maximum, strict, finite, plural=False):
    """``"a finite real number > 0"`` and the like, for messages."""
    text = ("finite real numbers" if plural else "a finite real number") if finite else (
        "real numbers (not NaN)" if plural else "a real number (not NaN)")
    bounds = [f"{'>' if strict else '>='} {minimum:g}" if minimum is not None else "",
              f"{'<' if strict else '<='} {maximum:g}" if maximum is not None else ""]
    bounds = " and ".join(b for b in bounds if b)
    return f"{text} {bounds}".strip()


def short_repr(value, limit=80):
    """``repr(value)`` cut to ``limit`` characters, for messages (an array can be huge)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def is_real_scalar(value):
    """True for int/float (NumPy scalars included), False for bool, complex, strings, arrays."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def format_bytes(nbytes):
    """``nbytes`` for a message: "512 B", "1.6 MiB", "2.30 GiB"."""
    for unit, size in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= size:
            return f"{nbytes / size:.{2 if unit == 'GiB' else 1}f} {unit}"
    return f"{int(nbytes)} B"
