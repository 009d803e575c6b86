"""The one place for Numba compilation options and the guarded CUDA import.

Every kernel in gdsim is compiled through :func:`jit`, :func:`jit_inline` or, for GPUs,
:func:`cuda_device` / :func:`cuda_kernel`, so the fastmath policy, the on-disk cache and
the floating-point error model are decided here and nowhere else
(``tests/test_jit_policy.py`` checks that no other module imports numba itself).
"""

import contextlib
import copy
import functools
import os
import types

import numba
import numpy as np
from numba.core import ir as _numba_ir

from ._gc import gc_paused
from ._resources import free_cpus

#: LLVM fast-math flags allowed in gdsim kernels. Only ``contract`` (fused multiply-add):
#: it is what torch's CPU kernels do for ``add(x, alpha=...)``. The other flags are left
#: out on purpose: ``nnan``/``ninf`` (and so ``fastmath=True``) delete the NaN/inf checks
#: that divergence detection relies on; ``reassoc``, ``arcp`` and ``afn`` change results
#: against the PyTorch reference and would let the serial and parallel builds of one
#: loop round differently.
FASTMATH = frozenset({"contract"})

#: Options shared by every CPU kernel. ``error_model="numpy"``: a float division by zero
#: gives inf/NaN (recorded as divergence) instead of raising ZeroDivisionError.
JIT_OPTIONS = {
    "cache": True,
    "nogil": True,
    "error_model": "numpy",
    "fastmath": set(FASTMATH),
}


class _InlinerCopy:
    """Numba's inliner's ``copy`` module (:func:`_copy_inlined_blocks_cheaply`): ``copy.deepcopy``
    of a block of a gdsim function being inlined keeps the block's scope instead of copying it
    (and, through :func:`_same_loc`, its source locations)."""

    copy = staticmethod(copy.copy)
    sharing = 0  # > 0 while a gdsim function is inlined (compiles hold Numba's lock: one thread)
    shared = 0  # blocks copied with their scope kept, in this process

    @classmethod
    def deepcopy(cls, value, memo=None):
        memo = {} if memo is None else memo
        if cls.sharing and isinstance(getattr(value, "scope", None), _numba_ir.Scope):
            memo[id(value.scope)] = value.scope
            cls.shared += 1
        return copy.deepcopy(value, memo)


def _same_loc(loc, memo):
    """``ir.Loc.__deepcopy__`` while a gdsim function is inlined: the location itself (Numba
    never changes a location's fields once made; a copy was a third of the inliner's copy)."""
    return loc


def _copy_inlined_blocks_cheaply():
    """Make Numba's inlining of gdsim's ``inline="always"`` functions (:func:`jit_inline`)
    copy each block of the callee without a copy of the callee's whole scope.

    Numba 0.68's ``InlineWorker.inline_ir`` deep-copies the callee's IR block by block, and
    each block's copy copies the scope, every variable of the function: blocks times
    variables, quadratic in the callee's size. It was a sixth of a cold MLP sweep's compile
    (1.1-1.3 s of 7.5 s: ``forward_group``, ``backward``, ``_run_block``). The callee's IR is
    made afresh for each inlining (``InlineWorker.inline_function`` runs the untyped passes
    on it) and dropped after it (its variables are renamed into the caller's scope), so its
    blocks can share its scope: the caller's IR, and so the compiled code, is the same.
    Their source locations (``ir.Loc``, one per statement and expression, copied field by
    field by ``copy.deepcopy``: 0.13 of 0.21 s of the copies in a cold MLP sweep) are kept
    too. Only gdsim's functions are inlined this way; Numba's own inlining (typed overloads,
    whose callee IR is cached) and other packages' functions keep Numba's copy. With
    another Numba whose inliner lacks these names, nothing changes.
    """
    from numba.core import inline_closurecall

    worker = getattr(inline_closurecall, "InlineWorker", None)
    if getattr(inline_closurecall, "copy", None) is not copy or not hasattr(worker, "inline_function"):
        return
    inline_function = worker.inline_function

    @functools.wraps(inline_function)
    def inline_gdsim_function(self, caller_ir, block, i, function, *args, **kwargs):
        if not getattr(function, "__module__", "").startswith("gdsim."):
            return inline_function(self, caller_ir, block, i, function, *args, **kwargs)
        keep_locs = _InlinerCopy.sharing == 0 and "__deepcopy__" not in vars(_numba_ir.Loc)
        if keep_locs:
            _numba_ir.Loc.__deepcopy__ = _same_loc
        _InlinerCopy.sharing += 1
        try:
            return inline_function(self, caller_ir, block, i, function, *args, **kwargs)
        finally:
            _InlinerCopy.sharing -= 1
            if keep_locs:
                del _numba_ir.Loc.__deepcopy__

    inline_closurecall.copy = _InlinerCopy
    worker.inline_function = inline_gdsim_function


_copy_inlined_blocks_cheaply()


def _load_cached_kernels_without_registries():
    """Let gdsim's kernels load from Numba's cache without Numba's compiler registries.

    Numba 0.68's ``Cache.load_overload`` first refreshes the target context: it loads the
    typing and lowering of Python and NumPy (importing SciPy's linear algebra for its BLAS
    check), 0.17-0.24 s of a new process's first sweep whose kernels are all in the cache,
    and a third of it. Loading compiled code needs none of it but Numba's runtime (NRT:
    memory allocation), which the refresh initialises (Numba's C helpers are registered
    when the context is made). Here a gdsim function loads after initialising the NRT
    only: the same code, loaded the same way. A compile refreshes the context itself
    (``compile_extra``; :func:`load_compiler` before it, with the GC paused); other
    packages' functions keep Numba's load. With another Numba, nothing changes.
    """
    from numba.core import caching
    from numba.core.runtime import rtsys

    load = caching.Cache.load_overload
    if not numba.__version__.startswith("0.68.") or not hasattr(caching.Cache, "_guard_against_spurious_io_errors"):
        return

    @functools.wraps(load)
    def load_overload(self, sig, target_context):
        if not getattr(getattr(self, "_py_func", None), "__module__", "").startswith("gdsim."):
            return load(self, sig, target_context)
        rtsys.initialize(target_context)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)
        return None  # the guard swallowed an error reading the cache: compile instead

    caching.Cache.load_overload = load_overload


_load_cached_kernels_without_registries()


def _compare_compile_flags_cheaply():
    """Make Numba's compile flags (``TargetConfig``) hash and compare without building a
    dict of all their options.

    Typing an overloaded function looks up its implementations by a key that holds the
    compile flags (``_OverloadFunctionTemplate._get_impl``), and every array item read or
    write tries half a dozen such templates: 12,000 lookups in a cold linear sweep, 20,000
    in an MLP one, each hashing the flags and, on a hit, comparing two (4 and 7 us: a dict
    of the 22 options read through their properties, 0.1-0.2 s of the compile). The same
    answers, cheaper: Numba 0.68 hashes the sorted keys of that dict (its option names),
    and two flags of one class with the same options set are equal (else Numba's
    comparison decides). With another Numba, nothing changes.
    """
    from numba.core import targetconfig

    config = targetconfig.TargetConfig
    if not numba.__version__.startswith("0.68.") or not hasattr(config, "__slots__"):
        return
    equal = config.__eq__
    hashes = {}

    def __hash__(self):
        kind = type(self)
        if kind not in hashes:
            hashes[kind] = hash(tuple(sorted(self.options)))
        return hashes[kind]

    def __eq__(self, other):
        if type(other) is type(self) and other._values == self._values:
            return True
        return equal(self, other)

    config.__hash__ = __hash__
    config.__eq__ = __eq__


_compare_compile_flags_cheaply()


def _live_maps_on_bitsets():
    """Compute Numba's liveness of variables (``analysis.compute_live_map``, run after every
    inlining and rewrite) on Python ints as sets of bits: the same least fixed point of the
    same equations, without unions of large sets of names (the variables defined upstream
    of each block: 0.6 s of a cold MLP sweep). With another Numba, nothing changes."""
    from numba.core import analysis, ir_utils

    if not numba.__version__.startswith("0.68."):
        return

    @functools.wraps(analysis.compute_live_map)  # __wrapped__: Numba's, for the test
    def compute_live_map(cfg, blocks, var_use_map, var_def_map):
        index = {}

        def bits(variables):
            b = 0
            for name in variables:
                b |= 1 << index.setdefault(name, len(index))
            return b

        use = {k: bits(v) for k, v in var_use_map.items()}
        defined = {k: bits(v) for k, v in var_def_map.items()}
        order, reach, changed = cfg.topo_order(), {}, True
        while changed:  # what is defined or used on some path to each block (its own too)
            changed = False
            for offset in order:
                reach[offset] = here = reach.get(offset, 0) | defined[offset] | use[offset]
                for b, _ in cfg.successors(offset):
                    changed |= reach.get(b, 0) | here != reach.get(b, 0)
                    reach[b] = reach.get(b, 0) | here
        live, changed = {offset: bits(var_use_map[offset]) for offset in blocks}, True
        while changed:  # used later, reached, and not defined in the block
            changed = False
            for offset in reversed(order):
                for b, _ in cfg.predecessors(offset):
                    value = live[b] | (live[offset] & reach.get(b, 0) & ~defined[b])
                    changed |= value != live[b]
                    live[b] = value
        names = sorted(index, key=index.get)
        return {offset: {names[b.bit_length() - 1] for b in _low_bits(value)} for offset, value in live.items()}

    analysis.compute_live_map = ir_utils.compute_live_map = compute_live_map


def _low_bits(value):
    """The set bits of the int ``value``, each alone, lowest first."""
    while value:
        low = value & -value
        yield low
        value ^= low


_live_maps_on_bitsets()


def jit(function):
    """Compile ``function`` for the CPU with gdsim's options (see :data:`JIT_OPTIONS`)."""
    return numba.njit(**JIT_OPTIONS)(function)


def jit_parallel(function):
    """Like :func:`jit`, with parallel loops (:data:`prange`) on Numba's threads, started
    now: a caller loaded from the cache would run its loops without starting them first
    and crash the process (a segmentation fault)."""
    numba.get_num_threads()
    return numba.njit(parallel=True, **JIT_OPTIONS)(function)


prange = numba.prange  #: Numba's ``prange``, for :func:`jit_parallel` functions.


def jit_inline(function):
    """Like :func:`jit`, and inlined (by Numba, ``inline="always"``) into compiled callers.

    For small helpers called once per step or sample from a hot loop: a call between
    compiled functions increments and decrements the reference count of every array
    argument (atomic operations costing more than a pass of arithmetic over a block), and
    inlining lets a constant flag argument fold away a branch of the helper.
    """
    return numba.njit(inline="always", **JIT_OPTIONS)(function)


@functools.cache
def load_compiler():
    """Load Numba's compiler registries (its typing and lowering of Python and NumPy) once,
    with the garbage collector paused (:mod:`gdsim._gc`): the first call of any kernel in a
    process loads them (compiled or from the cache), paying the collector's passes. Under
    Numba's compiler lock, as there (threads may call this at once)."""
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.registry import cpu_target

    with global_compiler_lock, gc_paused():  # the lock first: another thread may compile for long
        cpu_target.target_context.refresh()


def jit_noalias(function):
    """Like :func:`jit`, and LLVM may assume that the arrays passed to ``function`` do not
    overlap (the ``noalias`` attribute on its pointer arguments: Numba's ``noalias`` flag,
    which its parallel loops set for their bodies and ``njit`` does not expose).

    Without it, a loop that stores to one array and loads from another is vectorised
    behind run-time overlap tests on every entry (on the MLP sweep's short loops over a
    block's runs, about a tenth of the time). Only for functions that no caller passes
    two views of one array where either is written. Falls back to :func:`jit` on a Numba
    without the hook (slower code, the same numbers: the attribute only removes tests
    that always pass). The flag is not part of Numba's cache key: a function compiled
    with it must always be.
    """
    dispatcher = jit(function)
    compiler = getattr(dispatcher, "_compiler", None)
    customize = getattr(compiler, "_customize_flags", None)
    if customize is not None:
        def with_noalias(flags):
            flags = customize(flags)
            flags.noalias = True
            return flags

        compiler._customize_flags = with_noalias
    return dispatcher


def load_compiler_unless_cached(dispatcher, args):
    """:func:`load_compiler` before the call of ``dispatcher`` with ``args`` unless that
    call loads its kernel from Numba's cache (:func:`is_cached`), which needs no
    registries (:func:`_load_cached_kernels_without_registries`). Returns what
    :func:`is_cached` says; True, without a look (the types of ``args``: 0.15 ms a sweep),
    once ``dispatcher`` has been called in this process (a call with new types that
    compiles then loads the registries itself, without the GC paused)."""
    if dispatcher.overloads:
        return True
    cached = is_cached(dispatcher, numba_types(args))
    if cached is not True:
        load_compiler()
    return cached


def num_threads():
    """The threads CPU kernels may use: Numba's setting (:func:`numba.set_num_threads`)."""
    return numba.get_num_threads()


@contextlib.contextmanager
def kernel_threads(n_threads):
    """Run the block's parallel loops (:func:`jit_parallel`) on ``n_threads`` of Numba's
    threads, in the calling thread only (e.g. 1 in the workers of a busy pool)."""
    previous = numba.get_num_threads()
    numba.set_num_threads(n_threads)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def loop_threads():
    """On how many of Numba's threads the calling thread's parallel loops should run: its
    setting (:func:`kernel_threads`), at most the CPUs free now (at least 1; OpenMP's
    threads spin while they wait: W4 took 4x beside a busy process); 1 under Numba's
    ``workqueue`` layer (where neither OpenMP nor TBB loads), which aborts the process when
    two threads enter parallel loops at once and wakes its threads slowly."""
    if numba.threading_layer() == "workqueue":
        return 1
    threads = numba.get_num_threads()
    free = free_cpus() if threads > 1 else None
    return threads if free is None else max(1, min(threads, free))


def numba_types(values):
    """The Numba types of ``values`` (``numba.typeof`` of each): the signature a call or
    launch with them compiles."""
    return tuple(numba.typeof(value) for value in values)


def is_cached(dispatcher, signature):
    """Whether ``dispatcher`` (of :func:`jit`) has its compiled version for the argument
    types ``signature`` (:func:`numba_types`) in this process or in Numba's cache on disk:
    True or False, None where that cannot be told (no cache, another Numba). Reads the
    cache's index only (a few ms), loads nothing."""
    if tuple(signature) in getattr(dispatcher, "overloads", {}):
        return True
    try:
        cache = dispatcher._cache
        key = cache._index_key(tuple(signature), dispatcher.targetctx.codegen())
        return key in cache._cache_file._load_index()
    except Exception:  # noqa: BLE001 - Numba's cache internals: without them, "cannot tell"
        return None


def runtime_info():
    """What the kernels run with: Numba's version, CPU, threads and the CUDA target's state
    (for ``gdsim info``)."""
    from llvmlite import binding

    info = {"numba": numba.__version__, "cpu": binding.get_host_cpu_name(),
            "threads": f"{num_threads()} (NUMBA_NUM_THREADS; used by target='parallel')"}
    if cuda_simulator():
        info["cuda"] = "simulator (NUMBA_ENABLE_CUDASIM=1)"
    else:
        try:
            name = cuda().get_current_device().name
            info["cuda"] = "available: " + (name.decode() if isinstance(name, bytes) else name)
        except RuntimeError as error:  # cuda() names what is missing and the fix
            info["cuda"] = f"not available: {error}"
    return info


# ---------------------------------------------------------------------------------------
# CUDA (numba-cuda), imported only when a CUDA target is asked for.
# ---------------------------------------------------------------------------------------
#: How to get numba-cuda: the cuda extra (from PyPI, or from a checkout of gdsim) or the package itself.
CUDA_INSTALL = 'pip install "gdsim[cuda]", or pip install ".[cuda]" in a checkout of gdsim, or pip install numba-cuda'
#: What a machine needs to launch kernels, or the simulator instead.
CUDA_FIX = ('run on a machine with an NVIDIA GPU and driver, or set NUMBA_ENABLE_CUDASIM=1 before numba is imported '
            'to use the simulator')


def cuda_simulator():
    """True when Numba's CUDA simulator is enabled (``NUMBA_ENABLE_CUDASIM=1``)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


@functools.cache
def cuda_module():
    """The ``numba.cuda`` module (the simulator's with ``NUMBA_ENABLE_CUDASIM=1``), without
    looking for a GPU: enough to build kernels and compile them to PTX
    (``numba.cuda.compile_ptx``), not to launch them (see :func:`cuda`).

    Raises
    ------
    RuntimeError
        If numba-cuda is missing, naming the fix.
    """
    try:
        from numba import cuda as numba_cuda
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise RuntimeError(f"target='cuda' needs numba-cuda ({error}): {CUDA_INSTALL}; then {CUDA_FIX}") from None
    return numba_cuda


@functools.cache
def cuda():
    """The ``numba.cuda`` module, after checking that kernels can run.

    Raises
    ------
    RuntimeError
        If numba-cuda is missing or no GPU (nor the simulator) is available, naming the fix.
    """
    numba_cuda = cuda_module()
    try:
        available = numba_cuda.is_available()
    except Exception as error:  # pragma: no cover - depends on the driver
        raise RuntimeError(f"target='cuda' cannot reach a GPU ({error}); {CUDA_FIX}") from None
    if not available:
        raise RuntimeError(f"target='cuda' found no usable CUDA GPU; {CUDA_FIX}")
    return numba_cuda


def in_dtype(function, dtype):
    """``function`` with its float literals (``0.0``, ``1.0``, ...) of type ``dtype``
    (a NumPy float type) instead of Python floats.

    Numba types a Python float literal as float64, and float32 combined with float64 gives
    float64: ``s = 0.0; s += x * y`` would sum float32 values in float64 and round on each
    store. With the literals in ``dtype``, the same source computes in ``dtype``. For
    float64 (or None) the function itself is returned: nothing changes.
    """
    if dtype is None or np.dtype(dtype) == np.float64:
        return function
    kind = np.dtype(dtype).type
    code = function.__code__
    consts = tuple(kind(c) if type(c) is float else c for c in code.co_consts)
    typed = types.FunctionType(code.replace(co_consts=consts), function.__globals__, function.__name__,
                               function.__defaults__, function.__closure__)
    typed.__doc__ = function.__doc__
    return typed


def cuda_device(function, dtype=None):
    """Compile the plain scalar ``function`` as a CUDA device function (same source as the
    CPU build), its float literals in ``dtype`` (:func:`in_dtype`)."""
    return cuda_module().jit(device=True)(in_dtype(function, dtype))


def cuda_ptx(kernel, signature, cc):
    """The PTX of ``kernel`` (made by :func:`cuda_kernel`) for argument types ``signature``
    and compute capability ``cc`` (``(major, minor)``), compiled by NVVM with no GPU.

    numba-cuda compiles a kernel's device functions for the current device's compute
    capability, which needs a GPU; here they see a device of capability ``cc`` instead. A
    dispatcher keeps what it compiled, so give each ``cc`` a fresh build of the kernel.

    Raises
    ------
    RuntimeError
        If the CUDA simulator is on (it does not compile) or numba-cuda is missing.
    """
    if cuda_simulator():
        raise RuntimeError("PTX needs the real compiler: unset NUMBA_ENABLE_CUDASIM before numba is imported")
    from unittest import mock  # imported here: only the PTX report and its test compile without a GPU

    numba_cuda = cuda_module()
    from numba.cuda import dispatcher

    device = types.SimpleNamespace(compute_capability=tuple(cc))
    with mock.patch.object(dispatcher, "get_current_device", lambda: device):
        ptx, _ = numba_cuda.compile_ptx(kernel.py_func, signature, cc=tuple(cc),
                                        launch_bounds=kernel.targetoptions.get("launch_bounds"))
    return ptx


def cuda_kernel(function, dtype=None, launch_bounds=None):
    """Compile ``function`` as a CUDA kernel, its float literals in ``dtype``
    (:func:`in_dtype`). ``fastmath`` stays off, as on the CPU. ``launch_bounds``
    (``(max threads per block, min blocks per SM)``, numba-cuda's option; the simulator
    takes none) lets ptxas cap the registers so that that many blocks fit on an SM."""
    options = {} if launch_bounds is None or cuda_simulator() else {"launch_bounds": launch_bounds}
    return cuda_module().jit(**options)(in_dtype(function, dtype))
