"""Where W2's time goes: ``gdsim.sweep``'s stages against ``limits.py``'s kernel, in one process.

W2 (``bench.py``: 8192 per-sample linear runs x 2000 steps) is the workload whose
``gdsim / limit`` ratio is furthest from the issue's 1.5. This script splits gdsim's call
into its stages, timed inside real ``gdsim.sweep`` calls by wrapping the functions that
run them (the wrappers add a few microseconds each):

- ``check``: :func:`gdsim.sweeps.spec.check_sweep` (validation, the memory check);
- ``plan``: :func:`gdsim.sweeps.plan.make_plan` (the runs' settings and sample orders);
- ``kernel``: the compiled loop over blocks of runs (:mod:`gdsim.sweeps.targets.cpu_blocks`),
  summed over its calls;
- ``classify``: the outcome and growth rate of each run
  (:func:`gdsim.sweeps.dataset.classify_runs`), summed over its calls;
- ``dataset``: :func:`gdsim.sweeps.dataset.grid_dataset` (the ``xarray.Dataset``);
- ``other``: the rest of the call (packing runs into blocks, threads, outcomes' labels).

One thread (``target="cpu"`` and the limit's ``prange`` on one of Numba's threads): the
stages add up to the call. Two threads (``target="parallel"``, the limit on two): only the
totals. Each round times the gdsim call, then the limit's, alternately (round-robin);
the table shows medians over rounds (min-max) and the median of the per-round ratios.

How to run::

    OMP_WAIT_POLICY=passive python benchmarks/w2_parts.py --rounds 15 --json benchmarks/results/w2_parts.json

(``OMP_WAIT_POLICY=passive``, as ``bench.py`` sets for its W2 child: the limit's OpenMP
threads then sleep after each call instead of spinning beside gdsim's.)
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numba

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench  # noqa: E402
import limits  # noqa: E402

import gdsim  # noqa: E402
import gdsim.sweeps.run as sweep_run  # noqa: E402
from gdsim.batches import batch_orders  # noqa: E402
from gdsim.sweeps.targets import cpu as cpu_target  # noqa: E402

STAGES = ("check", "plan", "kernel", "classify", "dataset")


class StageClock:
    """Wraps the stage functions (see the module docstring) and sums their times per call."""

    def __init__(self):
        self.spent = dict.fromkeys(STAGES, 0.0)
        wrap = self._wrap
        sweep_run.check_sweep = wrap("check", sweep_run.check_sweep)
        sweep_run.make_plan = wrap("plan", sweep_run.make_plan)
        sweep_run.grid_dataset = wrap("dataset", sweep_run.grid_dataset)
        cpu_target.classify_runs = wrap("classify", cpu_target.classify_runs)
        block_loop = cpu_target.block_loop

        def timed_block_loop(plan):
            loop = block_loop(plan)
            timed = wrap("kernel", loop)
            timed.overloads = loop.overloads  # what gdsim._jit reads of the dispatcher
            return timed

        cpu_target.block_loop = timed_block_loop

    def _wrap(self, stage, function):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.spent[stage] += time.perf_counter() - t0
        return timed

    def reset(self):
        """Zero the sums (before a call)."""
        self.spent = dict.fromkeys(STAGES, 0.0)


def _summary(values):
    """Median and min-max of ``values`` (seconds), in ms."""
    return {"median_ms": 1e3 * statistics.median(values), "min_ms": 1e3 * min(values), "max_ms": 1e3 * max(values)}


def measure(rounds):
    """Time the stages on one thread and the totals on two; returns the report (a dict)."""
    wl = bench.make_workload("W2")
    p = wl.problem
    orders = batch_orders(p.X.shape[0], p.epochs)

    def sweep(target):
        return gdsim.sweep(wl.model, p.X, p.Y, lr=wl.lr_axis, momentum=wl.momentum_axis, batch_size=1,
                           epochs=p.epochs, params0=wl.params0, target=target, divergence=None)

    def limit():
        return limits.line_sweep(p.X, p.Y, p.lr, p.momentum, wl.params0, orders)

    clock = StageClock()
    report = {"workload": "W2", "rounds": rounds}
    for threads, target in ((1, "cpu"), (2, "parallel")):
        numba.set_num_threads(threads)
        sweep(target), limit()  # compile or load, and warm up
        totals, limit_times, stages = [], [], {stage: [] for stage in STAGES}
        for _ in range(rounds):
            clock.reset()
            t0 = time.perf_counter()
            sweep(target)
            totals.append(time.perf_counter() - t0)
            for stage in STAGES:
                stages[stage].append(clock.spent[stage])
            t0 = time.perf_counter()
            limit()
            limit_times.append(time.perf_counter() - t0)
        row = {"sweep": _summary(totals), "limit": _summary(limit_times),
               "sweep_over_limit": statistics.median(a / b for a, b in zip(totals, limit_times))}
        if threads == 1:
            other = [t - sum(stages[s][i] for s in STAGES) for i, t in enumerate(totals)]
            row["stages"] = {stage: _summary(stages[stage]) for stage in STAGES} | {"other": _summary(other)}
            row["kernel_over_limit"] = statistics.median(a / b for a, b in zip(stages["kernel"], limit_times))
        report[f"{threads}_thread{'s' if threads > 1 else ''}"] = row
    return report


def print_report(report):
    """The report as a table on stdout."""
    one = report["1_thread"]
    print(f"W2, {report['rounds']} rounds, round-robin with the limit kernel; medians (min-max), ms\n")
    print("one thread (target='cpu'; the limit on one thread)")
    for stage, s in one["stages"].items():
        share = s["median_ms"] / one["sweep"]["median_ms"]
        print(f"  {stage:<9} {s['median_ms']:7.2f}  ({s['min_ms']:.2f}-{s['max_ms']:.2f})  {share:5.1%} of the sweep")
    for name in ("sweep", "limit"):
        s = one[name]
        print(f"  {name:<9} {s['median_ms']:7.2f}  ({s['min_ms']:.2f}-{s['max_ms']:.2f})")
    print(f"  kernel / limit = {one['kernel_over_limit']:.2f}, sweep / limit = {one['sweep_over_limit']:.2f}")
    two = report["2_threads"]
    print("two threads (target='parallel'; the limit on two)")
    for name in ("sweep", "limit"):
        s = two[name]
        print(f"  {name:<9} {s['median_ms']:7.2f}  ({s['min_ms']:.2f}-{s['max_ms']:.2f})")
    print(f"  sweep / limit = {two['sweep_over_limit']:.2f}")


def main(argv=None):
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds (default 15)")
    parser.add_argument("--json", type=Path, help="also write the report to this JSON file")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    report = measure(args.rounds)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
        print(f"\nJSON report: {args.json}")


if __name__ == "__main__":
    main()
