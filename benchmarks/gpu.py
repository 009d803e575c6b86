"""GPU benchmark (``python benchmarks/bench.py --target cuda``): gdsim's CUDA target on W2,
W3 and a 10^6-run linear sweep, each checked against the CPU's result.

Workloads (``bench.make_workload``; float64, ``divergence=None`` so that every run goes to
the end):

- **W2** sweep-linear (8192 per-sample runs x 2000 steps) and **W3** sweep-mlp (512 MLP
  (10, 5, 1) runs x 320 steps), as in ``bench.py``;
- **L6**: W2's model, data and settings over ``lr = geomspace(1e-4, 1, 1000)`` x
  ``momentum = linspace(0, 0.99, 1000)``: 10^6 runs x 2000 steps.

With ``--quick`` every grid is small (a smoke check, also in Numba's CUDA simulator).

Per workload: one sweep on ``target="cuda"`` compiles the kernel (timed as *first call*),
then ``--repeats`` timed sweeps (median, min-max; each includes copying the data in and
the result out and building the ``xarray.Dataset``); one sweep on ``target="parallel"``
is the reference. Reported: config-updates per second (``n_configs * n_steps / median``),
the share of the device's float64 peak (``bench.workload_flops`` over the median, against
SMs x clock x float64 FMA units per SM x 2, the units from the compute capability), and
the agreement with the CPU (``bench.compare``, relative ``1e-12`` on the runs the CPU did
not mark as diverged; the same diverged runs).
"""

import statistics
import time

import numpy as np

import gdsim

#: float64 FMA units per streaming multiprocessor, by compute capability: the data-centre
#: parts (P100, V100, A100, H100/H200) have 32 or 64; the others run float64 at 1/32-1/64
#: of float32 (2 per SM).
FP64_UNITS_PER_SM = {(6, 0): 32, (7, 0): 32, (8, 0): 32, (9, 0): 64}
#: The tolerance against the CPU, float64.
GPU_RTOL = 1e-12


def device_info():
    """Name, compute capability, SMs, clock and float64 peak (flop/s, None if unknown) of
    the current CUDA device."""
    from numba import cuda

    device = cuda.get_current_device()
    info = {"name": getattr(device, "name", "?"), "compute_capability": None, "sms": None, "clock_ghz": None,
            "peak_flops": None}
    if isinstance(info["name"], bytes):
        info["name"] = info["name"].decode()
    try:
        cc = tuple(device.compute_capability)
        sms = int(device.MULTIPROCESSOR_COUNT)
        ghz = int(device.CLOCK_RATE) / 1e6  # kHz
    except (AttributeError, TypeError, ValueError):  # the simulator's device has none of these
        return info
    units = FP64_UNITS_PER_SM.get(cc, 2)
    info.update(compute_capability=list(cc), sms=sms, clock_ghz=ghz, fp64_units_per_sm=units,
                peak_flops=sms * ghz * 1e9 * units * 2,
                peak_formula=f"{sms} SMs x {ghz:.2f} GHz x {units} FP64 FMA units x 2 = "
                             f"{sms * ghz * units * 2:.0f} GFLOP/s")
    return info


def line_sweep_workload(bench, quick):
    """L6: W2's settings over a 1000 x 1000 grid (4 x 4, 2 epochs with ``quick``)."""
    X, Y = gdsim.datasets.tutorial_line(seed=0)
    n = 4 if quick else 1000
    return bench._workload("L6", "sweep-linear-1e6", gdsim.Linear(1, 1), X, Y, [-10.0, -20.0], np.geomspace(1e-4, 1, n),
                           np.linspace(0, 0.99, n), batch_size=1, epochs=2 if quick else 20, loop_subset=None)


def _sweep(wl, target):
    p = wl.problem
    return gdsim.sweep(wl.model, p.X, p.Y, lr=wl.lr_axis, momentum=wl.momentum_axis, batch_size=p.batch_size,
                       epochs=p.epochs, params0=wl.params0, target=target, divergence=None)


def measure_workload(bench, wl, repeats):
    """Time ``wl`` on the CUDA target, compare it with the CPU; a row of the report."""
    all_configs = np.arange(wl.problem.n_configs)
    t = time.perf_counter()
    _sweep(wl, "cuda")
    first = time.perf_counter() - t
    times, ds = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        ds = _sweep(wl, "cuda")
        times.append(time.perf_counter() - t)
    gpu = bench._sweep_outcome(ds, all_configs)
    t = time.perf_counter()
    cpu = bench._sweep_outcome(_sweep(wl, "parallel"), all_configs)
    cpu_s = time.perf_counter() - t
    median = statistics.median(times)
    p = wl.problem
    return {"workload": wl.key, "title": wl.title, "n_configs": int(p.n_configs), "n_steps": int(p.n_steps),
            "first_call_s": first, "median_s": median, "min_s": min(times), "max_s": max(times),
            "times_s": times, "cfg_updates_per_s": p.n_configs * p.n_steps / median,
            "flops": bench.workload_flops(wl), "cpu_parallel_s": cpu_s,
            "agreement": bench.compare(cpu, gpu, p, rtol=GPU_RTOL)}


def run(bench, workloads, quick, repeats):
    """The report: the device and one row per workload (``workloads``: W2, W3, L6)."""
    from gdsim.sweeps.targets import get_target

    get_target("cuda").check_available()  # the clear error without a GPU or numba-cuda
    device = device_info()
    rows = []
    for key in workloads:
        wl = line_sweep_workload(bench, quick) if key == "L6" else bench.make_workload(key, quick)
        row = measure_workload(bench, wl, repeats)
        if device["peak_flops"]:
            row["pct_peak"] = 100 * row["flops"] / row["median_s"] / device["peak_flops"]
        rows.append(row)
    return {"device": device, "rows": rows, "rtol": GPU_RTOL, "quick": quick, "repeats": repeats}


def print_report(report):
    """The report as a table."""
    d = report["device"]
    print(f"gdsim on CUDA: {d['name']} (cc {d['compute_capability']}, {d.get('peak_formula', 'peak unknown')})\n")
    print(f"{'workload':<20} {'configs':>9} {'steps':>6} {'first s':>8} {'median s':>9} {'min-max s':>17} "
          f"{'cfg-updates/s':>14} {'% peak':>7} {'CPU s':>7}  agreement with the CPU")
    for r in report["rows"]:
        a = r["agreement"]
        agree = (f"AGREE ({a['max_rel_err']:.0e})" if a["agree"]
                 else f"DISAGREE ({a['max_rel_err']:.1e}, {a['diverged_mismatch']} diverged differ)")
        pct = f"{r['pct_peak']:.2f}" if "pct_peak" in r else "-"
        print(f"{r['workload'] + ' ' + r['title']:<20} {r['n_configs']:>9} {r['n_steps']:>6} "
              f"{r['first_call_s']:>8.2f} {r['median_s']:>9.4f} {r['min_s']:>8.4f}-{r['max_s']:<8.4f} "
              f"{r['cfg_updates_per_s']:>14.3e} {pct:>7} {r['cpu_parallel_s']:>7.2f}  {agree}")
