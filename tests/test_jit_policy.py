"""One fastmath policy: every kernel is compiled through gdsim._jit, never with fastmath=True."""

import math
import pathlib
import re

import numpy as np

import gdsim
from gdsim import _jit

PACKAGE = pathlib.Path(gdsim.__file__).parent


def test_no_module_sets_its_own_jit_options():
    for path in PACKAGE.rglob("*.py"):
        if path.name == "_jit.py":
            continue
        text = path.read_text()
        # Kernels get numba only through gdsim._jit.jit, so no module imports numba itself.
        assert not re.search(r"^\s*(import numba|from numba)|fastmath\s*=", text, re.MULTILINE), path


def test_allowed_flags_keep_nan_and_inf_checks():
    assert _jit.FASTMATH <= {"nsz", "arcp", "contract", "afn", "reassoc"}
    assert not {"nnan", "ninf", "fast"} & _jit.FASTMATH

    @_jit.jit
    def checks(x):
        return math.isnan(x), math.isinf(x), x != x, np.isfinite(x)

    assert checks(np.nan) == (True, False, True, False)
    assert checks(np.inf) == (False, True, False, False)


def test_float_division_by_zero_does_not_raise():
    @_jit.jit
    def divide(a, b):
        return a / b

    assert divide(1.0, 0.0) == np.inf and np.isnan(divide(0.0, 0.0))
