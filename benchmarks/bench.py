"""Benchmark gdsim's sweeps and training loop against PyTorch and JAX.

Workloads (float64, ``torch.optim.SGD`` semantics, MSE, batches in data order, no
shuffling; every run records the full-data loss at the start of each epoch and after the
last one):

W2  sweep-linear
    The linear-regression tutorial (``gdsim.datasets.tutorial_line``: 100 points),
    ``Linear(1, 1)``, MSE mean, per-sample SGD (batch 1), heavy-ball momentum, 20 epochs
    (2000 steps) from ``w, b = -10, -20``, over ``lr = geomspace(1e-4, 1, 128)`` x
    ``momentum = linspace(0, 0.99, 64)``: 8192 configurations.
W3  sweep-mlp
    ``MLP((10, 5, 1), "relu")``, MSE mean, 512 samples of ``teacher_mlp``, batch 32,
    20 epochs (320 steps), from ``init(0)``, over ``lr = geomspace(1e-3, 1, 32)`` x
    ``momentum = linspace(0, 0.95, 16)``: 512 configurations.
W4  mlp-step
    One ``MLP((900, 90, 12), "relu", reduction="sum")`` on ``random_regression`` (74 x 900
    inputs, 12 outputs), full batch, lr 1e-5, momentum 0.9, 600 steps, from ``init(0)``.

Implementations (a row of the table each):

- ``gdsim-parallel`` / ``gdsim-cpu``: ``gdsim.sweep(..., target=..., divergence=None)``
  (every run goes to the end, as the peers' do); ``gdsim`` for W4: ``gdsim.train``.
- ``torch-loop``: one ``nn.Sequential`` at a time with ``torch.optim.SGD`` and a Python
  loop over epochs and batches. For the sweeps it runs an evenly spaced subset of the
  configurations and its time is extrapolated linearly to the whole grid (marked ``*``).
- ``torch-vectorised``: all configurations at once (``W [C, out, in]``, batched matmuls,
  hand-written backward pass and SGD update with per-config lr/momentum tensors).
- ``jax-vmap`` / ``jax-jit``: ``jax.jit(jax.vmap(train_one))`` with ``jax.lax.scan``
  over epochs and batches; plain ``jax.jit`` for W4.
- ``limit`` (W2, W3): ``limits.py``'s kernels, written by hand for exactly one workload
  each (struct-of-arrays blocks, no run-time alias checks, several samples per pass over
  the state, the model written out): what the same compiler and floating-point policy
  reach when nothing is general. Its process also times ``gdsim-parallel`` again,
  alternating with it call by call (round-robin), for the ``gdsim / limit`` ratio.

See ``peers.py`` for the PyTorch and JAX code. torch and jax are optional: without them
their rows are skipped (gdsim itself never imports either).

How to run::

    python benchmarks/bench.py                      # everything: about 5-10 minutes
    python benchmarks/bench.py --quick              # small grids, a smoke check (< 1 min)
    python benchmarks/bench.py --workloads W2 --repeats 9 --json /tmp/w2.json
    python benchmarks/bench.py --no-peers           # gdsim and limit rows only
    python benchmarks/bench.py --target cuda        # on a GPU: W2, W3 and 10^6 runs vs the CPU (gpu.py)

What is measured:

- **Time.** Each (workload, implementation) runs in a fresh subprocess that imports only
  what it needs (so thread pools of different libraries never compete). There it is
  prepared (JIT compiled: a tiny gdsim call with the same types; JAX's
  ``jit(...).lower(...).compile()``; a tiny PyTorch warm-up), called once as a warm-up,
  then ``--repeats`` times; the table shows the median wall time of those calls, which
  includes building the result (gdsim's ``xarray.Dataset``, converting tensors to
  NumPy). *config-updates/s* is ``n_configs * n_steps / median``. Timings on a shared
  machine drift: compare ratios within one run.
- **Ratio** is ``median / median(gdsim-parallel)`` (``gdsim`` for W4): how many times
  longer the row takes than gdsim. Per sweep workload the report also gives
  ``gdsim / limit`` (the medians of the gdsim-parallel and limit rows, and the median of
  the per-round ratios of the round-robin pairs in the limit row's process, which drift
  does not bias) and ``gdsim / JAX`` (``median(gdsim-parallel) / median(jax-vmap)``).
- **% peak** is the row's flop rate over the machine's float64 peak. Flops are counted
  analytically (:func:`workload_flops`; a multiply or an add is 1 flop, a fused
  multiply-add 2): per sample, the forward pass ``2 in out + out`` per layer, the MSE
  loss ``3 n_out`` (residual, square, sum), the backward pass ``n_out`` (output delta)
  plus ``2 in out + out`` per layer (weight and bias gradients) plus ``2 in out + in``
  per layer above the first (deltas and the activation's slope); ``4 n_params`` per
  update (momentum buffer and parameter, one multiply-add each); the full-data loss
  before each epoch and after the last (forward and loss of every sample). W2: 48,600
  flops a run (3.98e8 in all); W3: 3,927,808 a run (2.01e9). The peak
  (:func:`peak_flops`) is ``cores x GHz x 16``: the cores this process may use, the
  ``cpu MHz`` of ``/proc/cpuinfo`` (nominal: turbo is not visible under a hypervisor),
  16 float64 flops a cycle with AVX2 and FMA (two FMA units x 4 lanes x 2). That is also
  the AVX-512 peak of client cores (one 512-bit FMA unit: the development VM reports
  itself as one, LLVM's host CPU "rocketlake"), and what Numba's code can reach: LLVM
  tunes such cores for 256-bit vectors, and gdsim's and limit's kernels use ymm registers
  only. A server core with two 512-bit FMA units has twice this peak.
- **Peak memory** (``peak MB``) is the growth of the resident set during the warm-up call,
  in that fresh process: the RSS after imports, data creation and compilation is the
  baseline, then the kernel's peak-RSS counter is reset (``echo 5 > /proc/self/clear_refs``)
  and ``VmHWM`` is read after the call. Where ``clear_refs`` is not available it is
  ``ru_maxrss`` (``resource.getrusage``) minus the baseline, which can only be larger.
  tracemalloc is not used: it does not see Numba's or XLA's allocations.
- **Compile time** (``compile s`` column): JAX's ``lower + compile``; for gdsim, the time
  of the tiny preparing call (JIT compilation, or loading it from Numba's on-disk cache).
  For W2 gdsim-parallel the script also measures the cold and cached compile time: a fresh
  subprocess with ``NUMBA_CACHE_DIR`` set to a new empty directory times its first full
  sweep call minus the median of three more (cold); a second fresh subprocess with the
  same directory does the same (cached). ``--quick`` skips the cold measurement (it takes
  as long as a full compilation) and times only a cached start, with Numba's usual cache.
- **Agreement.** Every row's final parameters and final loss are compared with
  gdsim-parallel's (``gdsim`` for W4; if ``gdsim.sweep`` is missing, with ``gdsim.train``
  on the torch-loop subset) on the configurations both ran: relative error
  ``max|a - b| / max|a|`` per configuration (parameters) and ``|a - b| / |a|`` (final
  loss), required <= 1e-9 where the reference run did not diverge (``not diverged``,
  finite; 1e-12 for ``limit``, which makes gdsim's operations in gdsim's order); and the
  set of diverged configurations (any recorded loss non-finite or above 1e6 x the initial
  loss) must be the same. The details also give the 99th percentile
  of the error and the worst configuration.

  Rounding sensitivity: in W3 the run at lr ~ 0.64, momentum ~ 0.887 amplifies rounding
  differences about a million-fold (``torch.optim.SGD`` itself ends ~1.6e-9 away from
  gdsim there, the vectorised peers 3-5e-10, whose matmuls sum in another order), so its
  agreement sits near the 1e-9 limit; every other W3 configuration agrees to < 1e-12.

Output: one table, the agreement details, PASS/FAIL lines for the issue's targets (W2
gdsim >= 5x faster than JAX, W3 >= 3x, W4 gdsim no slower than the torch loop nor JAX, W2 compile
cold < 10 s and cached < 1 s, W2 and W3 gdsim / limit <= 1.5, from the round-robin
pairs), and a JSON file (default ``benchmarks/results/bench.json``)
with every timing and the machine's description.
"""

import argparse
import dataclasses
import datetime
import gc
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import limits  # noqa: E402  (the directory of this script is put on the path above)
import peers  # noqa: E402

import gdsim  # noqa: E402
from gdsim.batches import batch_orders  # noqa: E402

RTOL = 1e-9
#: The limit kernels follow gdsim's operations: they must agree to this (they are bitwise equal).
LIMIT_RTOL = 1e-12
DIVERGENCE_FACTOR = 1e6
#: The issue's speed targets: (workload, peer, minimum ratio peer time / gdsim time).
TARGETS = (("W2", "jax-vmap", 5.0), ("W3", "jax-vmap", 3.0), ("W4", "torch-loop", 1.0), ("W4", "jax-jit", 1.0))
#: The issue's compile-time targets for W2 (seconds).
COMPILE_TARGETS = {"cold_s": 10.0, "cached_s": 1.0}
#: The issue's targets against the hand-written kernels: gdsim / limit at most this.
LIMIT_TARGETS = {"W2": 1.5, "W3": 1.5}
SWEEP_IMPLS = ("gdsim-parallel", "gdsim-cpu", "torch-loop", "torch-vectorised", "jax-vmap", "limit")
#: Implementations whose process also times another one, alternating call by call.
PAIRED = {"limit": "gdsim-parallel"}
SINGLE_IMPLS = ("gdsim", "torch-loop", "jax-jit")


# ---------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class Workload:
    """One benchmark workload.

    Attributes
    ----------
    key : str
        ``"W2"``, ``"W3"`` or ``"W4"``.
    title : str
    model : gdsim.Linear or gdsim.MLP
    params0 : numpy.ndarray
        Initial parameters of every configuration (flat, torch order).
    lr_axis, momentum_axis : numpy.ndarray
        The grid's axes; the configurations are their product, ``lr`` major.
    problem : peers.Problem
        The same workload as the peers see it (one row per configuration).
    loop_subset : int or None
        Number of configurations the torch loop runs (None: all).
    """

    key: str
    title: str
    model: object
    params0: np.ndarray
    lr_axis: np.ndarray
    momentum_axis: np.ndarray
    problem: peers.Problem
    loop_subset: int | None

    @property
    def is_sweep(self):
        """True for the grid workloads (W2, W3), run with ``gdsim.sweep``."""
        return self.problem.n_configs > 1

    @property
    def impls(self):
        """The implementations benchmarked on this workload."""
        return SWEEP_IMPLS if self.is_sweep else SINGLE_IMPLS

    @property
    def reference(self):
        """The implementation the others are compared with."""
        return "gdsim-parallel" if self.is_sweep else "gdsim"

    def loop_configs(self):
        """Evenly spaced configuration indices for the torch loop (all when no subset)."""
        C = self.problem.n_configs
        if self.loop_subset is None or self.loop_subset >= C:
            return np.arange(C)
        return np.unique(np.linspace(0, C - 1, self.loop_subset).round().astype(np.int64))

    def describe(self):
        """A JSON-ready description."""
        p = self.problem
        return {"title": self.title, "model": repr(self.model), "n_samples": int(p.X.shape[0]),
                "batch_size": p.batch_size, "epochs": p.epochs, "n_configs": p.n_configs, "n_steps": p.n_steps,
                "lr": [float(self.lr_axis.min()), float(self.lr_axis.max()), len(self.lr_axis)],
                "momentum": [float(self.momentum_axis.min()), float(self.momentum_axis.max()),
                             len(self.momentum_axis)],
                "torch_loop_configs": len(self.loop_configs())}


def _workload(key, title, model, X, Y, params0, lr_axis, momentum_axis, batch_size, epochs, loop_subset):
    lr_axis = np.atleast_1d(np.asarray(lr_axis, dtype=np.float64))
    momentum_axis = np.atleast_1d(np.asarray(momentum_axis, dtype=np.float64))
    lr, mom = np.meshgrid(lr_axis, momentum_axis, indexing="ij")
    params0 = np.asarray(params0, dtype=np.float64)
    X, Y = model.check_data(X, Y)
    problem = peers.Problem(sizes=model.sizes, activation=model.activation, reduction=model.reduction, X=X, Y=Y,
                            batch_size=batch_size, epochs=epochs, lr=lr.ravel(), momentum=mom.ravel(),
                            layers0=tuple(a.copy() for a in model.unpack(params0)))
    return Workload(key, title, model, params0, lr_axis, momentum_axis, problem, loop_subset)


def make_workload(key, quick=False):
    """Build workload ``key`` (``"W2"``, ``"W3"``, ``"W4"``), or its small ``quick`` version.

    Parameters
    ----------
    key : str
    quick : bool, default False
        Smaller grids and fewer epochs, for a smoke check.

    Returns
    -------
    Workload
    """
    if key == "W2":
        X, Y = gdsim.datasets.tutorial_line(seed=0)
        n_lr, n_m = (8, 8) if quick else (128, 64)
        return _workload("W2", "sweep-linear", gdsim.Linear(1, 1), X, Y, [-10.0, -20.0], np.geomspace(1e-4, 1, n_lr),
                         np.linspace(0, 0.99, n_m), batch_size=1, epochs=20, loop_subset=2 if quick else 16)
    if key == "W3":
        X, Y = gdsim.datasets.teacher_mlp(n=512, sizes=(10, 5, 1), seed=0)
        model = gdsim.MLP((10, 5, 1), activation="relu")
        n_lr, n_m = (4, 4) if quick else (32, 16)
        return _workload("W3", "sweep-mlp", model, X, Y, model.init(0), np.geomspace(1e-3, 1, n_lr),
                         np.linspace(0, 0.95, n_m), batch_size=32, epochs=5 if quick else 20,
                         loop_subset=2 if quick else 16)
    if key == "W4":
        X, Y = gdsim.datasets.random_regression(n=74, n_in=900, n_out=12, seed=0)
        model = gdsim.MLP((900, 90, 12), activation="relu", reduction="sum")
        return _workload("W4", "mlp-step", model, X, Y, model.init(0), [1e-5], [0.9], batch_size=74,
                         epochs=60 if quick else 600, loop_subset=None)
    raise ValueError(f"unknown workload {key!r}: choose from W2, W3, W4")


def workload_flops(wl):
    """Flops of workload ``wl``, counted analytically (see the module docstring)."""
    p = wl.problem
    layers = list(zip(p.sizes[:-1], p.sizes[1:]))
    n_out = p.sizes[-1]
    forward = sum(2 * i * o + o for i, o in layers) + 3 * n_out  # with the loss
    backward = n_out + sum(2 * i * o + o for i, o in layers) + sum(2 * i * o + i for i, o in layers[1:])
    n_params = sum(i * o + o for i, o in layers)
    n = p.X.shape[0]
    samples_trained = p.epochs * n  # every batch is a slice of one epoch's order
    per_run = samples_trained * (forward + backward) + (p.epochs + 1) * n * forward + p.n_steps * 4 * n_params
    return per_run * p.n_configs


def peak_flops(machine):
    """The float64 FMA peak (flop/s) of ``machine`` (:func:`machine_info`) and how it was
    derived: 16 flops a cycle and core with AVX2 and FMA (2 FMA units x 4 lanes x 2), 4
    without (SSE2: 2 lanes, an add and a multiply unit)."""
    per_cycle = 16 if machine.get("avx2") and machine.get("fma") else 4
    ghz = (machine.get("mhz") or 0.0) / 1000
    cores = machine.get("n_cores_available") or machine.get("n_cores") or 1
    peak = cores * ghz * 1e9 * per_cycle
    return peak, f"{cores} cores x {ghz:.2f} GHz x {per_cycle} flops/cycle = {peak / 1e9:.1f} GFLOP/s"


# ---------------------------------------------------------------------------------------
# Runners: one implementation on one workload
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class Outcome:
    """What one implementation computed on (part of) a workload.

    Attributes
    ----------
    configs : numpy.ndarray, int64 (k,)
        Indices of the configurations run (rows of the workload's grid, ``lr`` major).
    params : numpy.ndarray, float64 (k, n_params)
        Final parameters.
    loss : numpy.ndarray, float64 (k, epochs + 1)
        Full-data loss at the start of each epoch and after the last.
    diverged : numpy.ndarray of bool (k,) or None
        gdsim's own divergence flag (None for the peers).
    """

    configs: np.ndarray
    params: np.ndarray
    loss: np.ndarray
    diverged: np.ndarray | None = None


@dataclasses.dataclass
class Runner:
    """A prepared implementation: ``prepare()`` compiles or warms up cheaply, ``run()`` does the work.

    Attributes
    ----------
    library : str
        ``"gdsim"``, ``"torch"`` or ``"jax"``.
    configs : numpy.ndarray
        Configurations that ``run`` covers.
    prepare : callable
    run : callable returning Outcome
    """

    library: str
    configs: np.ndarray
    prepare: object
    run: object


def library_of(impl):
    """The library an implementation needs: ``"gdsim"``, ``"torch"`` or ``"jax"``."""
    return impl.split("-")[0]


def unavailable_reason(impl):
    """Why ``impl`` cannot run here (a short text), or None if it can."""
    library = library_of(impl)
    if library == "torch" and not peers.torch_available():
        return "torch not installed"
    if library == "jax" and not peers.jax_available():
        return "jax not installed"
    if impl in ("gdsim-parallel", "gdsim-cpu") and not hasattr(gdsim, "sweep"):
        return "gdsim.sweep missing"
    if impl in PAIRED:
        return unavailable_reason(PAIRED[impl])
    return None


def _sweep_outcome(ds, configs):
    """Flatten a ``gdsim.sweep`` Dataset (dims lr, momentum, ...) into an :class:`Outcome`."""
    C = len(configs)
    return Outcome(configs=configs,
                   params=np.asarray(ds["params"].transpose("lr", "momentum", ...).values).reshape(C, -1),
                   loss=np.asarray(ds["loss"].transpose("lr", "momentum", "epoch").values).reshape(C, -1),
                   diverged=np.asarray(ds["diverged"].transpose("lr", "momentum").values).reshape(C))


def make_runner(wl, impl):
    """Build the :class:`Runner` of implementation ``impl`` on workload ``wl``.

    Parameters
    ----------
    wl : Workload
    impl : str
        One of :attr:`Workload.impls`.

    Returns
    -------
    Runner
    """
    p = wl.problem
    all_configs = np.arange(p.n_configs)
    if impl in ("gdsim-parallel", "gdsim-cpu"):
        target = impl.split("-")[1]

        def sweep(lr, momentum, epochs):
            return gdsim.sweep(wl.model, p.X, p.Y, lr=lr, momentum=momentum, batch_size=p.batch_size, epochs=epochs,
                               params0=wl.params0, target=target, divergence=None)

        return Runner("gdsim", all_configs,
                      prepare=lambda: sweep(wl.lr_axis[:2], wl.momentum_axis[:2], 1),
                      run=lambda: _sweep_outcome(sweep(wl.lr_axis, wl.momentum_axis, p.epochs), all_configs))
    if impl == "limit":
        sweep = limits.line_sweep if wl.key == "W2" else limits.mlp_sweep
        extra = () if wl.key == "W2" else (p.batch_size,)
        orders = batch_orders(p.X.shape[0], p.epochs)  # data order, as gdsim's

        def run():
            params, loss, diverged = sweep(p.X, p.Y, p.lr, p.momentum, wl.params0, orders, *extra)
            return Outcome(all_configs, params, loss, diverged)

        return Runner("limit", all_configs, prepare=lambda: sweep(p.X, p.Y, p.lr[:2], p.momentum[:2], wl.params0,
                                                                  orders[:1], *extra), run=run)
    if impl == "gdsim":
        def train(epochs):
            return gdsim.train(wl.model, p.X, p.Y, gdsim.SGD(lr=float(p.lr[0]), momentum=float(p.momentum[0])),
                               epochs=epochs, batch_size=p.batch_size, params0=wl.params0)

        def run():
            res = train(p.epochs)
            return Outcome(all_configs, res.params[None], res.epoch_loss[None], np.array([res.diverged]))

        return Runner("gdsim", all_configs, prepare=lambda: train(1), run=run)
    if impl == "torch-loop":
        configs = wl.loop_configs()
        sub = p.subset(configs)
        tiny = dataclasses.replace(p.subset(configs[:1]), epochs=1)

        def run():
            t = peers.torch_loop(sub)
            return Outcome(configs, t.params, t.loss)

        return Runner("torch", configs, prepare=lambda: peers.torch_loop(tiny), run=run)
    if impl == "torch-vectorised":
        tiny = dataclasses.replace(p.subset(all_configs[:2]), epochs=1)

        def run():
            t = peers.torch_vectorised(p)
            return Outcome(all_configs, t.params, t.loss)

        return Runner("torch", all_configs, prepare=lambda: peers.torch_vectorised(tiny), run=run)
    if impl in ("jax-vmap", "jax-jit"):
        runner = peers.JaxRunner(p, vmap=impl == "jax-vmap")

        def run():
            t = runner()
            return Outcome(all_configs, t.params, t.loss)

        return Runner("jax", all_configs, prepare=runner.compile, run=run)
    raise ValueError(f"unknown implementation {impl!r} for {wl.key}: choose from {', '.join(wl.impls)}")


# ---------------------------------------------------------------------------------------
# Peak memory
# ---------------------------------------------------------------------------------------
def _status_kib(field):
    """A ``kB`` field of ``/proc/self/status`` (e.g. ``VmRSS``), or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _maxrss_kib():
    """``ru_maxrss`` of this process in KiB (macOS reports bytes)."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value // 1024 if sys.platform == "darwin" else value


class PeakRSS:
    """Peak resident-set growth of this process over a block of code.

    :meth:`start` takes the current RSS as the baseline and resets the kernel's peak
    counter (``/proc/self/clear_refs``); :meth:`stop` returns ``peak - baseline`` in MiB.
    Without ``clear_refs`` the peak is ``ru_maxrss``, which also holds any earlier peak
    (such as a compiler's), so the result is then an upper bound.
    """

    def start(self):
        """Record the baseline and reset the peak counter."""
        gc.collect()
        self.baseline = _status_kib("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.method = "VmHWM after clear_refs, minus the RSS before the call"
        except OSError:
            self.method = "ru_maxrss minus the RSS before the call (upper bound)"
            if self.baseline is None:
                self.baseline = _maxrss_kib()
        return self

    def stop(self):
        """Peak growth since :meth:`start`, in MiB."""
        peak = _status_kib("VmHWM") if self.method.startswith("VmHWM") else _maxrss_kib()
        return max(peak - self.baseline, 0) / 1024


# ---------------------------------------------------------------------------------------
# Subprocess children
# ---------------------------------------------------------------------------------------
def child_run(key, impl, quick, repeats, out_path):
    """Time and measure one implementation on one workload (in a fresh process).

    Prepares the runner, makes one warm-up call under :class:`PeakRSS`, then ``repeats``
    timed calls; saves the outcome and the measurements to ``out_path`` (``.npz``). An
    implementation of :data:`PAIRED` also prepares and warms up its partner, and each of
    its timed calls is followed by one of the partner's (``paired_times_s``).
    """
    wl = make_workload(key, quick)
    runner = make_runner(wl, impl)
    partner = make_runner(wl, PAIRED[impl]) if impl in PAIRED else None
    t0 = time.perf_counter()
    runner.prepare()
    prepare_s = time.perf_counter() - t0
    mem = PeakRSS().start()
    t0 = time.perf_counter()
    outcome = runner.run()
    warmup_s = time.perf_counter() - t0
    peak_mb = mem.stop()
    if partner is not None:
        partner.prepare()
        partner.run()
    times, paired = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        runner.run()
        times.append(time.perf_counter() - t0)
        if partner is not None:
            t0 = time.perf_counter()
            partner.run()
            paired.append(time.perf_counter() - t0)
    meta = {"prepare_s": prepare_s, "warmup_s": warmup_s, "times_s": times, "peak_mb": peak_mb,
            "memory_method": mem.method, "paired_impl": PAIRED.get(impl), "paired_times_s": paired}
    np.savez(out_path, configs=outcome.configs, params=outcome.params, loss=outcome.loss,
             diverged=outcome.diverged if outcome.diverged is not None else np.zeros(0, bool),
             has_diverged=outcome.diverged is not None, meta=json.dumps(meta))


def child_compile(key, quick, out_path, warm_repeats=3):
    """Time the first ``gdsim-parallel`` call of workload ``key`` in this fresh process.

    Run with ``NUMBA_CACHE_DIR`` set by the parent; writes ``{"first_s", "warm_s"}`` (the
    first call and the median of ``warm_repeats`` more) to ``out_path`` as JSON.
    """
    wl = make_workload(key, quick)
    runner = make_runner(wl, "gdsim-parallel")
    t0 = time.perf_counter()
    runner.run()
    first = time.perf_counter() - t0
    times = []
    for _ in range(warm_repeats):
        t0 = time.perf_counter()
        runner.run()
        times.append(time.perf_counter() - t0)
    Path(out_path).write_text(json.dumps({"first_s": first, "warm_s": statistics.median(times)}))


def _spawn(child_args, out_path, env=None, timeout=3600):
    """Run this script as a child; return (ok, error text)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *child_args, "--out", str(out_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        return False, lines[-1] if lines else f"exit status {proc.returncode}"
    return True, None


def _child_env(key):
    """The environment of a ``run`` child of workload ``key``: for W2 and W3, whose limit
    kernels run their blocks in a Numba ``prange``, ``OMP_WAIT_POLICY=passive`` (unless
    set), so that the OpenMP threads sleep once a call ends rather than spin, and take no
    CPU time from the gdsim call that follows it in the round-robin. (On Numba's
    ``workqueue`` layer, used before for that reason, the W2 limit took 4.1-9.5 ms from
    one process to the next, median 7.5 ms in one process against 4.2-4.3 ms on OpenMP,
    passive or not: it made gdsim / limit look 1.3 when it was 1.9-2.2.) None otherwise:
    this process's environment."""
    if key not in ("W2", "W3"):
        return None
    return dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "passive"))


def measure(wl, impl, quick, repeats, tmp):
    """Run ``impl`` on ``wl`` in a fresh subprocess and collect its measurements.

    Returns
    -------
    dict
        ``impl``, ``status`` ("ok", "skipped" or "error"), and when ok: ``median_s`` (for
        the whole grid; extrapolated for a subset), ``times_s``, ``prepare_s``,
        ``peak_mb``, ``config_updates_per_s``, ``subset`` (configs run, or None), and the
        :class:`Outcome` under ``"outcome"`` (removed before writing JSON).
    """
    row = {"impl": impl}
    reason = unavailable_reason(impl)
    if reason:
        row.update(status="skipped", reason=reason)
        return row
    out = Path(tmp) / f"{wl.key}-{impl}.npz"
    args = ["run", "--workloads", wl.key, "--impl", impl, "--repeats", str(repeats)] + (["--quick"] if quick else [])
    ok, error = _spawn(args, out, env=_child_env(wl.key))
    if not ok:
        row.update(status="error", reason=error)
        return row
    with np.load(out) as z:
        meta = json.loads(str(z["meta"]))
        outcome = Outcome(z["configs"], z["params"], z["loss"], z["diverged"] if bool(z["has_diverged"]) else None)
    C, n_run = wl.problem.n_configs, len(outcome.configs)
    median = statistics.median(meta["times_s"]) if meta["times_s"] else meta["warmup_s"]
    scale = C / n_run
    row.update(status="ok", median_s=median * scale, median_run_s=median, times_s=meta["times_s"],
               warmup_s=meta["warmup_s"], prepare_s=meta["prepare_s"], peak_mb=meta["peak_mb"],
               memory_method=meta["memory_method"], subset=None if n_run == C else n_run,
               config_updates_per_s=C * wl.problem.n_steps / (median * scale), outcome=outcome)
    if meta.get("paired_times_s"):
        ratios = [b / a for a, b in zip(meta["times_s"], meta["paired_times_s"])]
        row["paired"] = {"impl": meta["paired_impl"], "times_s": meta["paired_times_s"],
                         "median_s": statistics.median(meta["paired_times_s"]),
                         "ratios": ratios, "ratio_median": statistics.median(ratios)}
    return row


def measure_compile(key, quick, tmp, cold=True):
    """Cold and cached compile time of ``gdsim-parallel`` on workload ``key``.

    Two fresh subprocesses share a new empty ``NUMBA_CACHE_DIR``: the first compiles from
    scratch (cold), the second loads Numba's cache (cached). Each reports its first sweep
    call minus the median of three more. With ``cold=False`` (``--quick``) only the cached
    time is measured, in one fresh subprocess using Numba's usual cache (which the
    benchmark rows before it have filled).

    Returns
    -------
    dict
        ``cold_s`` (None when not measured), ``cached_s``, the raw timings and any error.
    """
    result = {"workload": key, "cold_s": None, "cached_s": None, "cache_dir": "new empty" if cold else "default"}
    if unavailable_reason("gdsim-parallel"):
        result["error"] = unavailable_reason("gdsim-parallel")
        return result
    with tempfile.TemporaryDirectory(prefix="gdsim-numba-cache-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache) if cold else None
        for name in ("cold", "cached") if cold else ("cached",):
            out = Path(tmp) / f"compile-{key}-{name}.json"
            ok, error = _spawn(["compile", "--workloads", key] + (["--quick"] if quick else []), out, env=env)
            if not ok:
                result[f"{name}_s"] = None
                result["error"] = error
                break
            raw = json.loads(out.read_text())
            result[f"{name}_first_call_s"] = raw["first_s"]
            result[f"{name}_warm_s"] = raw["warm_s"]
            result[f"{name}_s"] = raw["first_s"] - raw["warm_s"]
    if not cold:
        result["error"] = "cold compile not measured with --quick"
    return result


# ---------------------------------------------------------------------------------------
# Agreement
# ---------------------------------------------------------------------------------------
def history_diverged(loss):
    """Per run: any recorded loss non-finite or above 1e6 x the initial loss."""
    loss = np.asarray(loss)
    with np.errstate(invalid="ignore"):
        return ~np.all(np.isfinite(loss), axis=1) | np.any(loss > DIVERGENCE_FACTOR * loss[:, :1], axis=1)


def compare(ref, other, problem=None, rtol=RTOL):
    """Check ``other`` against the reference ``ref`` on the configurations both ran.

    Parameters
    ----------
    ref, other : Outcome
        ``ref.diverged`` (gdsim's flag) selects the runs whose values are compared; where
        it is None, :func:`history_diverged` does.
    problem : peers.Problem, optional
        Names the worst configuration's ``lr`` and ``momentum`` in the result.
    rtol : float

    Returns
    -------
    dict
        ``agree`` (bool), ``max_rel_err`` (params and final loss together, the larger of
        the two per configuration), ``p99_rel_err``, ``n_over_rtol``, ``worst_config``
        (index into the grid, with ``worst_lr``, ``worst_momentum``), ``n_common``,
        ``n_compared``, ``n_diverged`` (in the reference) and ``diverged_mismatch``
        (configs diverged in one and not the other).
    """
    common, i_ref, i_other = np.intersect1d(ref.configs, other.configs, return_indices=True)
    rp, op = ref.params[i_ref], other.params[i_other]
    rl, ol = ref.loss[i_ref], other.loss[i_other]
    ref_div = history_diverged(rl)
    mismatch = int(np.sum(ref_div != history_diverged(ol)))
    flag = ref.diverged[i_ref] if ref.diverged is not None else ref_div
    ok = ~flag & np.all(np.isfinite(rp), axis=1) & np.isfinite(rl[:, -1])
    result = {"max_rel_err": 0.0, "p99_rel_err": 0.0, "n_over_rtol": 0, "worst_config": None}
    if ok.any():
        tiny = np.finfo(float).tiny
        with np.errstate(invalid="ignore", divide="ignore"):
            p_err = np.abs(rp[ok] - op[ok]).max(axis=1) / np.maximum(np.abs(rp[ok]).max(axis=1), tiny)
            l_err = np.abs(rl[ok, -1] - ol[ok, -1]) / np.maximum(np.abs(rl[ok, -1]), tiny)
        errs = np.nan_to_num(np.maximum(p_err, l_err), nan=np.inf)  # NaN in other where ref is finite
        worst = int(np.argmax(errs))
        result.update(max_rel_err=float(errs[worst]), p99_rel_err=float(np.quantile(errs, 0.99)),
                      n_over_rtol=int(np.sum(errs > rtol)), worst_config=int(common[ok][worst]))
        if problem is not None:
            result.update(worst_lr=float(problem.lr[result["worst_config"]]),
                          worst_momentum=float(problem.momentum[result["worst_config"]]))
    result.update(agree=bool(mismatch == 0 and result["max_rel_err"] <= rtol and len(common) > 0),
                  n_common=int(len(common)), n_compared=int(ok.sum()), n_diverged=int(ref_div.sum()),
                  diverged_mismatch=mismatch)
    return result


def agreement_label(cmp):
    """Short text for the table: ``AGREE (2e-13)`` / ``DISAGREE (...)``."""
    if cmp is None:
        return "-"
    if cmp["agree"]:
        return f"AGREE ({cmp['max_rel_err']:.0e})"
    return f"DISAGREE ({cmp['max_rel_err']:.1e}, {cmp['diverged_mismatch']} div)"


def train_reference(wl, configs):
    """gdsim.train on ``configs`` of a sweep workload: the reference when gdsim.sweep is missing."""
    p = wl.problem
    params, loss, div = [], [], []
    for c in configs:
        res = gdsim.train(wl.model, p.X, p.Y, gdsim.SGD(lr=float(p.lr[c]), momentum=float(p.momentum[c])),
                          epochs=p.epochs, batch_size=p.batch_size, params0=wl.params0)
        params.append(res.params)
        loss.append(res.epoch_loss)
        div.append(res.diverged)
    return Outcome(np.asarray(configs), np.array(params), np.array(loss), np.array(div))


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------
def machine_info():
    """CPU model, core count, library versions and the date, for the JSON report."""
    cpu = platform.processor() or platform.machine()
    flags = ""
    mhz = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    mhz = max(mhz or 0.0, float(line.split(":", 1)[1]))
                if line.startswith("model name") and cpu in (platform.processor(), platform.machine()):
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = line
    except OSError:
        pass
    versions = {}
    for name in ("gdsim", "numpy", "numba", "llvmlite", "xarray", "torch", "jax", "jaxlib"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    try:
        n_avail = len(os.sched_getaffinity(0))
    except AttributeError:
        n_avail = os.cpu_count()
    return {"cpu": cpu, "n_cores": os.cpu_count(), "n_cores_available": n_avail,
            "avx2": " avx2" in flags, "fma": " fma" in flags, "avx512f": " avx512f" in flags, "mhz": mhz,
            "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions,
            "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def workload_ratios(by_impl):
    """``gdsim / limit`` and ``gdsim / JAX`` of a sweep workload's rows (``by_impl``: impl
    -> row): ratios of the medians, and for limit also the median of its round-robin
    pairs' ratios (``paired``). None where a row is missing."""
    def median(impl):
        row = by_impl.get(impl)
        return row["median_s"] if row is not None and row["status"] == "ok" else None

    gdsim_s, limit_s, jax_s = median("gdsim-parallel"), median("limit"), median("jax-vmap")
    limit_row = by_impl.get("limit") or {}
    return {"gdsim_over_limit": gdsim_s / limit_s if gdsim_s and limit_s else None,
            "gdsim_over_limit_paired": (limit_row.get("paired") or {}).get("ratio_median"),
            "gdsim_over_jax": gdsim_s / jax_s if gdsim_s and jax_s else None,
            "jax": None if jax_s else (by_impl.get("jax-vmap") or {}).get("reason", "not run")}


def _fmt(value, spec):
    """``format(value, spec)``, or a dash of the same width for None."""
    if value is None:
        return format("-", spec.split(".")[0])
    return format(value, spec)


def print_table(report, file=sys.stdout):
    """The results table, agreement details and target lines."""
    header = (f"{'workload':<16} {'implementation':<17} {'median s':>10} {'min-max s':>17} {'cfg-updates/s':>14} "
              f"{'peak MB':>8} {'compile s':>9} {'x gdsim':>8} {'% peak':>7}  agreement")
    print(header, file=file)
    print("-" * len(header), file=file)
    notes = []
    for key, w in report["workloads"].items():
        name = f"{key} {w['description']['title']}"
        for row in w["rows"]:
            if row["status"] != "ok":
                print(f"{name:<16} {row['impl']:<17} {row['status']}: {row['reason']}", file=file)
                continue
            star = "*" if row.get("subset") else " "
            if row.get("subset"):
                notes.append(f"* {key} {row['impl']}: ran {row['subset']} of {w['description']['n_configs']} configs "
                             f"({row['median_run_s']:.3g} s); time extrapolated linearly to the whole grid")
            compile_s = row["prepare_s"] if library_of(row["impl"]) in ("gdsim", "jax", "limit") else None
            times = row["times_s"] or [row["warmup_s"]]
            spread = f"{min(times):.4g}-{max(times):.4g}"
            print(f"{name:<16} {row['impl']:<17} {row['median_s']:>9.4g}{star} {spread:>17} "
                  f"{row['config_updates_per_s']:>14.3e} {row['peak_mb']:>8.1f} {_fmt(compile_s, '>9.3g')} "
                  f"{_fmt(row.get('ratio'), '>8.2f')} {_fmt(row.get('pct_peak'), '>7.2f')}  "
                  f"{agreement_label(row.get('agreement'))}", file=file)
            if row.get("paired"):
                pair = row["paired"]
                spread = f"{min(pair['times_s']):.4g}-{max(pair['times_s']):.4g}"
                print(f"{name:<16} {'rr:' + pair['impl']:<17} {pair['median_s']:>9.4g}  {spread:>17}  "
                      f"(timed round-robin with {row['impl']} in its process: gdsim / {row['impl']} = "
                      f"{pair['ratio_median']:.2f})", file=file)
    print("", file=file)
    print("x gdsim = median / median of gdsim-parallel (W4: gdsim.train); > 1 means gdsim is faster. "
          "compile s: JAX lower+compile; gdsim, limit: first tiny call (JIT or Numba cache load).", file=file)
    machine = report["machine"]
    if machine.get("peak_flops"):
        print(f"% peak = analytic flops / median / float64 peak ({machine['peak_formula']}).", file=file)
    for key, w in report["workloads"].items():
        ratios = w.get("ratios")
        if not ratios:
            continue
        pct = {row["impl"]: row.get("pct_peak") for row in w["rows"]}
        paired = ratios["gdsim_over_limit_paired"]
        jax = (f"{ratios['gdsim_over_jax']:.2f}" if ratios["gdsim_over_jax"] is not None
               else f"- ({ratios['jax']})")
        print(f"{key}: gdsim / limit = {_fmt(ratios['gdsim_over_limit'], '.2f')} (medians of the rows), "
              f"{_fmt(paired, '.2f')} (median of the round-robin pairs); gdsim / JAX = {jax}; "
              f"% peak: gdsim {_fmt(pct.get('gdsim-parallel'), '.2f')}, limit {_fmt(pct.get('limit'), '.2f')}, "
              f"JAX {_fmt(pct.get('jax-vmap'), '.2f')} ({w['description']['flops']:.3g} flops)", file=file)
    for note in notes:
        print(note, file=file)
    print("", file=file)
    print("Agreement (final params and final loss, rtol 1e-9 on runs the reference did not diverge; "
          "same diverged set):", file=file)
    if not any(row.get("agreement") for w in report["workloads"].values() for row in w["rows"]):
        print("  (nothing to compare)", file=file)
    for key, w in report["workloads"].items():
        for row in w["rows"]:
            cmp = row.get("agreement")
            if cmp is None:
                continue
            verdict = "AGREE" if cmp["agree"] else "DISAGREE"
            worst = ""
            if cmp.get("worst_lr") is not None and w["description"]["n_configs"] > 1 and cmp["max_rel_err"] > 0:
                worst = f" at lr={cmp['worst_lr']:.3g}, momentum={cmp['worst_momentum']:.3g}"
            print(f"  {key} {row['impl']:<17} vs {w['reference']}: {verdict} (max rel err {cmp['max_rel_err']:.2e}"
                  f"{worst}, 99th pct {cmp['p99_rel_err']:.1e}, {cmp['n_over_rtol']} over rtol; "
                  f"{cmp['n_compared']} non-diverged of {cmp['n_common']} configs compared; "
                  f"{cmp['n_diverged']} diverged, {cmp['diverged_mismatch']} diverged-set mismatches)", file=file)
    comp = report.get("compile")
    if comp:
        print("", file=file)
        parts = []
        for name in ("cold", "cached"):
            if comp.get(f"{name}_s") is not None:
                parts.append(f"{name} {comp[f'{name}_s']:.2f} s (first call {comp[f'{name}_first_call_s']:.2f} s, "
                             f"then {comp[f'{name}_warm_s']:.3g} s)")
            else:
                parts.append(f"{name} not measured")
        note = f" [{comp['error']}]" if comp.get("error") else ""
        print(f"W2 gdsim-parallel compile time, fresh process ({comp['cache_dir']} NUMBA_CACHE_DIR): "
              f"{'; '.join(parts)}{note}", file=file)
    print("", file=file)
    for line in report["targets"]:
        print(line["text"], file=file)


def evaluate_targets(report):
    """PASS/FAIL/SKIP lines for the issue's speed and compile-time targets."""
    lines = []
    for key, peer, minimum in TARGETS:
        w = report["workloads"].get(key)
        if w is None:
            continue
        row = next((r for r in w["rows"] if r["impl"] == peer), None)
        what = f"{key}: gdsim >= {minimum:g}x faster than {peer}" if minimum > 1 else \
            f"{key}: gdsim no slower than {peer}"
        if row is None or row["status"] != "ok" or row.get("ratio") is None:
            reason = row.get("reason", "no gdsim time") if row else "not run"
            lines.append({"target": what, "result": "SKIP", "text": f"SKIP  {what} ({reason})"})
            continue
        passed = row["ratio"] >= minimum
        result = "PASS" if passed else "FAIL"
        caveat = " [--quick grids: per-call overheads dominate, indicative only]" if report["settings"]["quick"] else ""
        lines.append({"target": what, "result": result, "ratio": row["ratio"],
                      "text": f"{result}  {what}: measured {row['ratio']:.2f}x{caveat}"})
    for key, maximum in LIMIT_TARGETS.items():
        w = report["workloads"].get(key)
        if w is None:
            continue
        what = f"{key}: gdsim / limit <= {maximum:g}"
        ratios = w.get("ratios") or {}
        value = ratios.get("gdsim_over_limit_paired") or ratios.get("gdsim_over_limit")
        if value is None:
            lines.append({"target": what, "result": "SKIP", "text": f"SKIP  {what} (no gdsim or limit time)"})
            continue
        result = "PASS" if value <= maximum else "FAIL"
        caveat = " [--quick grids: per-call overheads dominate, indicative only]" if report["settings"]["quick"] else ""
        lines.append({"target": what, "result": result, "ratio": value,
                      "text": f"{result}  {what}: measured {value:.2f} (round-robin pairs; medians of the rows "
                              f"{_fmt(ratios.get('gdsim_over_limit'), '.2f')}){caveat}"})
    comp = report.get("compile")
    if comp:
        for name, limit in COMPILE_TARGETS.items():
            what = f"W2: gdsim {name.split('_')[0]} compile < {limit:g} s"
            value = comp.get(name)
            if value is None:
                lines.append({"target": what, "result": "SKIP", "text": f"SKIP  {what} ({comp.get('error')})"})
            else:
                result = "PASS" if value < limit else "FAIL"
                lines.append({"target": what, "result": result, "seconds": value,
                              "text": f"{result}  {what}: measured {value:.2f} s"})
    return lines


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------
def parse_args(argv=None):
    """Command-line arguments (see the module docstring)."""
    parser = argparse.ArgumentParser(description="Benchmark gdsim against PyTorch and JAX (see the module docstring).")
    parser.add_argument("--workloads", default=None,
                        help="comma-separated subset of W2,W3,W4 (default all); with --target cuda of W2,W3,L6")
    parser.add_argument("--target", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: gdsim's CUDA target on W2, W3 and a 10^6-run linear sweep (L6) against the "
                             "CPU's result (benchmarks/gpu.py); default cpu: this table")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls after the warm-up (default 5; 1 with --quick)")
    parser.add_argument("--json", default=None,
                        help="where to write the JSON report (default results/bench.json, with --target cuda "
                             "results/gpu.json)")
    parser.add_argument("--no-peers", action="store_true", help="gdsim and limit rows only (no torch, no JAX)")
    parser.add_argument("--quick", action="store_true", help="small grids: a smoke check in under a minute")
    parser.add_argument("--no-compile", action="store_true", help="skip the cold/cached compile measurement")
    parser.add_argument("--child", choices=("run", "compile"), help=argparse.SUPPRESS)
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    known = ("W2", "W3", "L6") if args.target == "cuda" else ("W2", "W3", "W4")
    args.workloads = [w.strip().upper() for w in (args.workloads or ",".join(known)).split(",") if w.strip()]
    for w in args.workloads:
        if w not in known:
            parser.error(f"--workloads: unknown workload {w!r} (choose from {', '.join(known)})")
    if args.json is None:
        args.json = str(HERE / "results" / ("gpu.json" if args.target == "cuda" else "bench.json"))
    if args.repeats is None:
        args.repeats = 1 if args.quick else 5
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    return args


def main(argv=None):
    """Run the benchmark and print/write the report; returns the exit status."""
    args = parse_args(argv)
    if args.child == "run":
        child_run(args.workloads[0], args.impl, args.quick, args.repeats, args.out)
        return 0
    if args.child == "compile":
        child_compile(args.workloads[0], args.quick, args.out)
        return 0
    if args.target == "cuda":
        import gpu

        report = {"machine": machine_info(), **gpu.run(sys.modules[__name__], args.workloads, args.quick, args.repeats)}
        gpu.print_report(report)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"\nJSON report: {args.json}")
        return 0

    machine = machine_info()
    peak, peak_text = peak_flops(machine)
    machine.update(peak_flops=peak, peak_formula=peak_text)
    report = {"machine": machine,
              "settings": {"workloads": args.workloads, "repeats": args.repeats, "quick": args.quick,
                           "peers": not args.no_peers, "rtol": RTOL},
              "workloads": {}}
    if not hasattr(gdsim, "sweep"):
        print("note: gdsim.sweep is missing: the sweep rows are skipped and peers are checked against "
              "gdsim.train on the torch-loop subset", file=sys.stderr)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gdsim-bench-") as tmp:
        for key in args.workloads:
            wl = make_workload(key, args.quick)
            impls = [i for i in wl.impls if not (args.no_peers and library_of(i) not in ("gdsim", "limit"))]
            rows = []
            for impl in impls:
                print(f"[{time.perf_counter() - start:6.1f} s] {key} {impl} ...", file=sys.stderr, flush=True)
                rows.append(measure(wl, impl, args.quick, args.repeats, tmp))
            by_impl = {r["impl"]: r for r in rows}
            ref_row = by_impl.get(wl.reference)
            reference_name = wl.reference
            if ref_row is not None and ref_row["status"] == "ok":
                ref_outcome = ref_row["outcome"]
            elif wl.is_sweep and any(r["status"] == "ok" for r in rows):
                ref_outcome = train_reference(wl, wl.loop_configs())
                reference_name = "gdsim.train (torch-loop subset)"
            else:
                ref_outcome = None
            ref_time = ref_row["median_s"] if ref_row is not None and ref_row["status"] == "ok" else None
            for row in rows:
                if row["status"] != "ok":
                    continue
                row["ratio"] = row["median_s"] / ref_time if ref_time else None
                if ref_outcome is not None and row is not ref_row:
                    rtol = LIMIT_RTOL if row["impl"] == "limit" else RTOL
                    row["agreement"] = compare(ref_outcome, row["outcome"], wl.problem, rtol=rtol)
            flops = workload_flops(wl)
            for row in rows:
                if row["status"] == "ok" and peak:
                    row["gflops"] = flops / row["median_s"] / 1e9
                    row["pct_peak"] = 100 * flops / row["median_s"] / peak
            description = dict(wl.describe(), flops=flops)
            report["workloads"][key] = {"description": description, "reference": reference_name, "rows": rows,
                                        "ratios": workload_ratios(by_impl) if wl.is_sweep else None}
        if "W2" in args.workloads and not args.no_compile:
            print(f"[{time.perf_counter() - start:6.1f} s] W2 gdsim-parallel cold/cached compile ...",
                  file=sys.stderr, flush=True)
            report["compile"] = measure_compile("W2", args.quick, tmp, cold=not args.quick)
    report["targets"] = evaluate_targets(report)
    report["total_s"] = time.perf_counter() - start

    print(f"\ngdsim benchmark ({'quick' if args.quick else 'full'}; median of {args.repeats} after a warm-up) on "
          f"{report['machine']['cpu']}, {report['machine']['n_cores']} cores, {report['machine']['date']}\n")
    print_table(report)
    for w in report["workloads"].values():
        for row in w["rows"]:
            row.pop("outcome", None)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"\nJSON report: {path} (total {report['total_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
