"""Argument checks shared by the public API: each error names the parameter and what it accepts."""

import difflib
import numbers

import numpy as np


def check_int(name, value, minimum=None, maximum=None):
    """``value`` as a Python int within ``[minimum, maximum]``, else ValueError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        low = "-inf" if minimum is None else minimum
        high = "inf" if maximum is None else maximum
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value}")
    return value


def check_bool(name, value):
    """``value`` as a Python bool (``True``/``False`` only), else ValueError naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_choice(name, value, choices):
    """``value`` if it is one of ``choices``, else ValueError listing them (and the closest)."""
    if value in choices:
        return value
    hint = ""
    if isinstance(value, str):
        close = difflib.get_close_matches(value, list(choices), n=1)
        if close:
            hint = f" (did you mean {close[0]!r}?)"
    raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}{hint}")


def is_real_scalar(value):
    """True for int/float (NumPy scalars included), False for bool, complex, strings, arrays."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def format_bytes(nbytes):
    """``nbytes`` for a message: "512 B", "1.6 MiB", "2.30 GiB"."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= size:
            return f"{nbytes / size:.{2 if unit == 'GiB' else 1}f} {unit}"
    return f"{int(nbytes)} B"
