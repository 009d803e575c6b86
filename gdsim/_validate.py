"""Argument checks shared by the public API: each error names the parameter and what it accepts.

Every check raises :class:`ParameterError`, a ``ValueError`` that also carries the name of
the parameter it refuses (``error.param``), so that callers such as study files can say
where the value came from without reading the message.
"""

import difflib
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
        super().__init__(message)
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


def check_bool(name, value):
    """``value`` as a Python bool (``True``/``False`` only), else ParameterError naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise ParameterError(f"{name} must be True or False, got {value!r}", _param(name))
    return bool(value)


def check_choice(name, value, choices):
    """``value`` if it is one of ``choices``, else ParameterError listing them (and the closest)."""
    if value in choices:
        return value
    hint = closest(value, choices) if isinstance(value, str) else ""
    raise ParameterError(f"{name} must be one of {sorted(choices)}, got {value!r}{hint}", _param(name))


def closest(value, choices):
    """`` (did you mean 'x'?)`` for the choice closest to the string ``value``, or ``""``."""
    close = difflib.get_close_matches(value, sorted(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def is_real_scalar(value):
    """True for int/float (NumPy scalars included), False for bool, complex, strings, arrays."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def format_bytes(nbytes):
    """``nbytes`` for a message: "512 B", "1.6 MiB", "2.30 GiB"."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= size:
            return f"{nbytes / size:.{2 if unit == 'GiB' else 1}f} {unit}"
    return f"{int(nbytes)} B"
