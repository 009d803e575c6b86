"""One fastmath policy: every kernel is compiled through gdsim._jit, never with fastmath=True."""

import math
import os
import pathlib
import re
import subprocess
import sys

import numba
import numpy as np
from numba.core.compiler import Flags

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


def _shift(out, values):
    for i in range(out.shape[0]):
        out[i] = values[i] + 1.0


def _shift_plain(out, values):
    for i in range(out.shape[0]):
        out[i] = values[i] + 1.0


def test_jit_noalias_compiles_with_the_noalias_flag_and_the_same_numbers():
    # The flag (LLVM's noalias on pointer arguments) is what lets the MLP sweep's loops
    # vectorise without run-time overlap tests; _jit reaches it through a Numba hook.
    values = np.arange(5.0)
    kernels = {"noalias": _jit.jit_noalias(_shift), "plain": _jit.jit(_shift_plain)}
    for name, kernel in kernels.items():
        out = np.zeros(5)
        kernel(out, values)
        np.testing.assert_array_equal(out, values + 1.0)
        assert kernel.overloads[kernel.signatures[0]].fndesc.noalias == (name == "noalias"), name
        # Numba's disk cache does not key on the flag: ask the compiler too.
        assert kernel._compiler._customize_flags(Flags()).noalias == (name == "noalias"), name


def test_inlining_a_gdsim_function_keeps_its_scope_and_its_results():
    # gdsim's inline="always" functions are copied into their callers without a copy of
    # their scope per block (the quadratic part of Numba's inliner); other packages'
    # functions the usual way. batch_stop's values come from its definition.
    from gdsim.batches import batch_stop

    foreign = numba.njit(inline="always")(lambda a, b: a - b)

    def last_stops(n, batch_size):
        return batch_stop(0, n, batch_size, False), batch_stop(n - 1, n, batch_size, True)

    def difference(a, b):
        return foreign(a, b)

    before = _jit._InlinerCopy.shared
    assert _jit.jit(last_stops)(10, 4) == (4, 9)
    assert _jit._InlinerCopy.shared > before
    assert "__deepcopy__" not in vars(numba.core.ir.Loc)  # locations are kept during the inlining only
    before = _jit._InlinerCopy.shared
    assert _jit.jit(difference)(7, 2) == 5
    assert _jit._InlinerCopy.shared == before


def test_kernels_load_from_the_cache_without_numbas_registries(tmp_path):
    # A new process whose kernels are all in Numba's cache loads them without Numba's
    # typing and lowering registries (no numba.np.arraymath, which imports SciPy's linear
    # algebra, for the sweeps; train's loop imports it as its cached data names it), and
    # they give the numbers of the process that compiled them, bit for bit.
    code = """if True:
        import sys
        import numpy as np
        import gdsim
        X, Y = gdsim.datasets.tutorial_line()
        line = gdsim.sweep(gdsim.Linear(1, 1), X, Y, lr=[1e-3, 1e-2], momentum=[0.0, 0.9], epochs=2,
                           batch_size=1, params0=[-10.0, -20.0])
        rng = np.random.default_rng(0)
        A, B = rng.standard_normal((64, 10)), rng.standard_normal((64, 1))
        mlp = gdsim.sweep(gdsim.MLP((10, 5, 1)), A, B, lr=[1e-3, 1e-2], momentum=[0.5, 0.9], epochs=2, batch_size=16)
        registries = "numba.np.arraymath" in sys.modules
        run = gdsim.train(gdsim.MLP((10, 5, 1)), A, B, gdsim.SGD(lr=0.01, momentum=0.9), epochs=2, batch_size=16)
        numbers = [line.loss.values, line.outcome.values, mlp.loss.values, mlp.params.values, run.epoch_loss,
                   run.params]
        print(registries, [a.tobytes().hex() for a in numbers])
    """
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    outputs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600,
                              check=False) for _ in range(2)]
    (compiled, numbers), (loaded, again) = [done.stdout.split(" ", 1) for done in outputs]
    assert compiled == "True" and loaded == "False", [done.stderr for done in outputs]
    assert again == numbers


def test_compile_flags_hash_and_compare_as_numba_defines_them():
    # _jit makes them cheaper (an overloaded function's typing keys its implementations by
    # them); the answers are Numba's definitions': the hash of the sorted keys of the
    # options' values, and equal values.
    from numba.core.compiler import Flags

    def numbas_hash(flags):
        return hash(tuple(sorted(flags.values())))

    a, b, c, d = Flags(), Flags(), Flags(), Flags()
    a.nrt = b.nrt = c.nrt = True
    c.noalias = True
    d.nrt = True
    d.noalias = False  # set to its default: the same values as a's, set differently
    assert [hash(f) for f in (a, b, c, d)] == [numbas_hash(f) for f in (a, b, c, d)]
    assert a == b and a == d and a != c and not (a == Flags())  # noqa: SIM201 - __eq__ itself
    assert (a == b) == (a.values() == b.values()) and (a == c) == (a.values() == c.values())


def test_live_maps_on_bitsets_are_numbas(monkeypatch):
    # gdsim computes Numba's liveness of variables on bitsets (_jit._live_maps_on_bitsets):
    # while a kernel compiles from scratch here, every call gives Numba's own sets, block by block.
    from numba.core import analysis, ir_utils

    import gdsim
    from gdsim import kernels

    ours = analysis.compute_live_map
    if not hasattr(ours, "__wrapped__"):
        pytest.skip("another Numba: its own liveness")
    same = []

    def both(cfg, blocks, uses, defs):
        mine, numbas = ours(cfg, blocks, uses, defs), ours.__wrapped__(cfg, blocks, uses, defs)
        same.append(mine == numbas and list(mine) == list(numbas))
        return mine

    monkeypatch.setattr(analysis, "compute_live_map", both)
    monkeypatch.setattr(ir_utils, "compute_live_map", both)
    model = gdsim.MLP((3, 4, 2), activation="tanh")
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    fresh = numba.njit(kernels.batch_loss_grad.py_func)  # compiled now, its inlined helpers with it
    acts, deltas = kernels.new_workspace(model.sizes_array)
    grad = np.empty(model.n_params)
    loss = fresh(model.init(0), *model.spec[:4], X, Y, np.arange(5), grad, acts, deltas, model.layer_code)
    assert np.isfinite(loss) and len(same) > 20 and all(same)
