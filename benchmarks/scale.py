"""Scaling of gdsim's streamed sweeps: local threads vs a Dask ``LocalCluster`` of 1 or 2 workers.

Workloads (float64, results streamed to a Zarr store with ``gdsim.sweep(..., store=)``,
regions of gdsim's default size unless ``--chunk-runs``: about 8 MiB of results, smaller
on a cluster where that gives each worker thread 8 regions, see
``gdsim.sweeps.run.REGIONS_PER_THREAD``):

linear
    The linear-regression tutorial (``gdsim.datasets.tutorial_line``: 100 points),
    ``Linear(1, 1)``, per-sample SGD (batch 1), 20 epochs (2000 steps) from
    ``params0 = [-10, -20]``, over ``lr = geomspace(1e-4, 0.2, runs / 1000)`` x
    ``momentum = linspace(0, 0.99, 1000)``. Sizes: ``--linear-small`` (round-robin,
    ``--repeats`` times) and ``--linear-big`` (10^7 by default, ``--big-repeats`` times).
mlp
    ``MLP((10, 5, 1))`` on ``teacher_mlp(n=256, sizes=(10, 5, 1))``, batch 16,
    ``--mlp-epochs`` epochs (5), from ``init(0)``, over ``lr = geomspace(1e-3, 1, runs / 100)``
    x ``momentum = linspace(0, 0.99, 100)``; ``--mlp-runs`` runs (10^5), round-robin.

Configurations (``--configs``; a row of the table each):

- ``local``: ``target="parallel"``, no scheduler: all of Numba's threads here (2 on this machine);
- ``local-1t``: ``target="cpu"``, no scheduler: one thread here (the equal-cores peer of ``dask-1w``);
- ``dask-1w`` / ``dask-2w``: ``target="cpu"`` with ``scheduler=client`` of the
  ``LocalCluster`` of 1 or 2 single-threaded worker processes that ``gdsim figures
  --workers N`` starts (:func:`gdsim.sweeps.executors.local_cluster`, with its allocator
  settings).

What is measured
----------------
Every (workload, size, configuration) runs in a fresh subprocess (``--child sweep``):
imports, the cluster (if any), a small warm-up sweep on the cluster and here, and one in
memory on each worker (Numba's kernels come from the on-disk cache), then the timed ``gdsim.sweep(..., store=)`` into a new
store. The round-robin rounds rotate the order of the configurations.

- **wall s**: the timed sweep call (creating the store's layout, computing and writing every
  region, opening it lazily); median over repeats (min-max). **runs/s** = runs / median.
- **client peak MB**: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the client process at
  the end (after the cluster is closed): the peak of its whole life, including imports,
  cluster start-up (a LocalCluster's scheduler lives in the client process) and warm-up;
  the max over repeats. **before** is the same counter just before the timed sweep, so
  peak - before is what the sweep itself added. A thread also samples the client's
  current RSS every 0.1 s during the sweep (``rss_samples_mb`` in the JSON).
- **worker peak MB**: each worker's ``ru_maxrss``, via ``client.run`` before closing (max
  over workers and repeats).
- **client CPU s / worker CPU s**: user + system CPU time during the timed sweep (the
  client's from ``getrusage``; the workers' from ``client.run(getrusage)`` before and after).
- **store MB**: ``du -sk`` of the store (disk usage); the JSON also has the apparent size
  and the file count.
- **identical**: each store is compared with the first store of the same workload and size
  (usually ``local``'s): where both have the same regions, every file byte for byte (the
  data chunks and the region records; the root ``zarr.json`` is compared by its attributes,
  where ``target`` may differ); where gdsim chose smaller regions for a cluster, the
  attributes but ``gdsim_store`` (which records ``chunk_runs``); in both cases the decoded variables (``np.array_equal``, NaN = NaN) of every region for stores up to
  ``--decode-all-runs`` runs, of ``--sample-regions`` regions (first, last, evenly spaced)
  for bigger ones.
- With ``--inmem-max-runs``, the ``local`` children of sizes up to it also time the same
  sweep in memory (after reading the RSS): store - in memory = what streaming costs.

The scheduler's per-task overhead (``--child overhead``, one process, one 1-worker
cluster): a linear sweep of ``--overhead-runs`` runs (20 epochs) in memory on the cluster
with ``chunk_runs`` = each of ``--overhead-chunks`` (so ``runs / chunk_runs`` tasks), plus the
same to a store here and on the cluster with ``--overhead-store-chunks``, round-robin,
``--overhead-repeats`` times; seconds per task = least-squares slope of the median wall
time against the number of tasks.

The projection (a 10^8-run linear study on 100 nodes by default) uses the measured
per-worker throughput (``dask-1w`` on the biggest linear size; the workers write their own
regions), the per-task overhead and the client's CPU time per region, and prints its arithmetic.

How to run::

    python benchmarks/scale.py                         # everything: about 11 minutes on 2 cores
    python benchmarks/scale.py --big-repeats 2         # the 10^7 sweeps twice each: about 15 minutes
    python benchmarks/scale.py --quick                 # small sizes, one repeat (~1.5 min)
    python benchmarks/scale.py --linear-big 0 --repeats 5 --configs local dask-1w dask-2w
    python benchmarks/scale.py --linear-big 1000000 --big-repeats 3 --mlp-runs 0

Output: the tables on stdout (and ``--md``, default ``benchmarks/results/scale.md``), PASS /
FAIL lines for the issue's targets, and a JSON file (default
``benchmarks/results/scale.json``) with every measurement and the machine's description.
Stores go to ``--workdir`` (a new temporary folder by default) and are deleted after
they are compared, unless ``--keep-stores``. With ``--workdir DIR``, an interrupted run
(the machine is shared) is continued by the same command plus ``--resume``: every
measurement already made there is reused, the rest is run.
"""

import argparse
import filecmp
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CONFIGS = {  # name -> (target, workers or None, cores used for compute)
    "local": ("parallel", None, None),
    "local-1t": ("cpu", None, 1),
    "dask-1w": ("cpu", 1, 1),
    "dask-2w": ("cpu", 2, 2),
}
#: The issue's targets.
RSS_LIMIT_MB = 500.0
SCALING_LIMIT = 0.6
DASK_COST_LIMIT = 1.10


# ---------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------
def sweep_args(workload, runs, mlp_epochs=5):
    """``(model, X, Y, kwargs)`` of ``gdsim.sweep`` for ``runs`` runs of ``workload``."""
    import gdsim

    if workload == "linear":
        n_m = min(1000, runs)
        X, Y = gdsim.datasets.tutorial_line()
        return gdsim.Linear(1, 1), X, Y, dict(
            lr=np.geomspace(1e-4, 0.2, runs // n_m), momentum=np.linspace(0, 0.99, n_m), batch_size=1, epochs=20,
            params0=[-10.0, -20.0])
    if workload == "mlp":
        n_m = min(100, runs)
        X, Y = gdsim.datasets.teacher_mlp(n=256, sizes=(10, 5, 1))
        return gdsim.MLP((10, 5, 1)), X, Y, dict(
            lr=np.geomspace(1e-3, 1, runs // n_m), momentum=np.linspace(0, 0.99, n_m), batch_size=16,
            epochs=mlp_epochs)
    raise ValueError(workload)


def check_runs(workload, runs):
    """Whether ``runs`` makes a whole grid (linear: a multiple of 1000 if >= 1000; mlp: of 100)."""
    step = 1000 if workload == "linear" else 100
    return runs >= 1 and (runs < step or runs % step == 0)


# ---------------------------------------------------------------------------------------
# Child processes
# ---------------------------------------------------------------------------------------
def rss_now_mb():
    """The current resident set of this process (MB)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb():
    """``ru_maxrss`` of this process (MB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s(who=resource.RUSAGE_SELF):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def worker_usage():
    """Run on a worker: its peak RSS (MB) and CPU seconds so far."""
    import resource as res

    r = res.getrusage(res.RUSAGE_SELF)
    return {"peak_mb": r.ru_maxrss / 1024, "cpu_s": r.ru_utime + r.ru_stime, "pid": os.getpid()}


class RssSampler:
    """Samples this process's current RSS every ``period`` seconds in a thread."""

    def __init__(self, period=0.1):
        self.period, self.samples, self._stop = period, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.perf_counter()

    def _run(self):
        while not self._stop.is_set():
            self.samples.append((round(time.perf_counter() - self._t0, 2), round(rss_now_mb(), 1)))
            self._stop.wait(self.period)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def start_cluster(workers):
    """The ``LocalCluster`` gdsim starts (``gdsim figures --workers``:
    :func:`gdsim.sweeps.executors.local_cluster`) of ``workers`` workers, and its Client."""
    from distributed import Client

    from gdsim.sweeps.executors import local_cluster

    cluster = local_cluster(workers)
    return cluster, Client(cluster)


def warm_up(workload, target, client, workdir, mlp_epochs):
    """One small sweep here and (with a client) one on the cluster, each to a store and in memory."""
    import gdsim

    model, X, Y, kw = sweep_args(workload, 16 if workload == "linear" else 400, mlp_epochs)
    # Each call sweeps other points: gdsim scatters the spec under a key hashed from its
    # content, and the same spec swept twice in a row on one client can lose it (see
    # child_overhead).
    lrs, kw["momentum"] = np.geomspace(1e-3, 1e-2, 16), kw["momentum"][:4]
    for i, scheduler in enumerate((None, client) if client is not None else (None,)):
        store = Path(tempfile.mkdtemp(dir=workdir, prefix="warm-")) / "w.zarr"
        gdsim.sweep(model, X, Y, target=target, store=store, scheduler=scheduler,
                    **{**kw, "lr": lrs[8 * i:8 * i + 4]}).load()
        gdsim.sweep(model, X, Y, target=target, scheduler=scheduler, **{**kw, "lr": lrs[8 * i + 4:8 * i + 8]})
        shutil.rmtree(store.parent)
    if client is not None:  # every worker, not only those the sweeps above reached, loads the kernels
        client.gather([client.submit(warm_worker, workload, target, mlp_epochs, workers=[address], pure=False)
                       for address in client.nthreads()])


def warm_worker(workload, target, mlp_epochs):
    """A small sweep in memory in this (worker) process: its kernels loaded from Numba's cache."""
    import gdsim

    model, X, Y, kw = sweep_args(workload, 16 if workload == "linear" else 400, mlp_epochs)
    gdsim.sweep(model, X, Y, target=target, **kw)


def child_sweep(args):
    """``--child sweep``: one timed sweep of one configuration into ``--store``; JSON to ``--out``."""
    t_start = time.perf_counter()
    import gdsim

    target, workers, _ = CONFIGS[args.config]
    out = {"workload": args.workload, "runs": args.runs, "config": args.config, "target": target,
           "workers": workers, "pid": os.getpid(), "numba_threads": None, "load_average": os.getloadavg()}
    import numba

    out["numba_threads"] = numba.config.NUMBA_NUM_THREADS
    cluster = client = None
    if workers:
        t = time.perf_counter()
        cluster, client = start_cluster(workers)
        client.wait_for_workers(workers)
        out["cluster_start_s"] = time.perf_counter() - t
    try:
        t = time.perf_counter()
        warm_up(args.workload, target, client, args.workdir, args.mlp_epochs)
        out["warmup_s"] = time.perf_counter() - t
        model, X, Y, kw = sweep_args(args.workload, args.runs, args.mlp_epochs)
        workers_before = client.run(worker_usage) if client else {}
        out["client_peak_before_mb"] = peak_rss_mb()
        out["client_rss_before_mb"] = rss_now_mb()
        cpu0 = cpu_s()
        with RssSampler() as sampler:
            t = time.perf_counter()
            ds = gdsim.sweep(model, X, Y, target=target, store=args.store, chunk_runs=args.chunk_runs,
                             scheduler=client, **kw)
            out["wall_s"] = time.perf_counter() - t
        out["client_cpu_s"] = cpu_s() - cpu0
        out["client_rss_after_mb"] = rss_now_mb()
        out["rss_samples_mb"] = sampler.samples[::max(1, len(sampler.samples) // 200)]
        out["client_rss_sampled_max_mb"] = max((s[1] for s in sampler.samples), default=None)
        tail = sampler.samples[len(sampler.samples) // 5:]
        n_regions = len(list((Path(args.store) / "gdsim_regions").glob("[0-9]*.json")))
        if len(tail) >= 5 and n_regions:  # MB per second over the last 80%, as MB per region
            per_s, _ = slope([t for t, _ in tail], [v for _, v in tail])
            out["client_rss_slope_mb_per_region"] = per_s * out["wall_s"] / n_regions
        out["chunk_runs"] = json.loads(ds.attrs["gdsim_store"])["chunk_runs"]
        out["n_regions"] = len(list((Path(args.store) / "gdsim_regions").glob("[0-9]*.json")))
        out["result_nbytes"] = int(ds.nbytes)
        out["diverged_fraction"] = float(ds["diverged"].mean().compute())
        ds.close()
        if client:
            after = client.run(worker_usage)
            out["workers_usage"] = {a: {**u, "cpu_s_sweep": u["cpu_s"] - workers_before[a]["cpu_s"]}
                                    for a, u in after.items()}
            out["worker_peak_mb"] = max(u["peak_mb"] for u in after.values())
            out["worker_cpu_s"] = sum(u["cpu_s_sweep"] for u in out["workers_usage"].values())
    finally:
        if client:
            client.close()
            cluster.close()
    out["client_peak_mb"] = peak_rss_mb()  # after closing the cluster: the whole life of the client
    out["children_peak_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if args.inmem:
        t = time.perf_counter()
        mem = gdsim.sweep(model, X, Y, target=target, **kw)
        out["inmem_wall_s"] = time.perf_counter() - t
        del mem
    out["child_total_s"] = time.perf_counter() - t_start
    Path(args.out).write_text(json.dumps(out))


def child_overhead(args):
    """``--child overhead``: tiny tasks on a 1-worker cluster; JSON to ``--out``."""
    import gdsim

    cluster, client = start_cluster(1)
    client.wait_for_workers(1)
    out = {"runs": args.overhead_runs, "rows": {}}
    try:
        warm_up("linear", "cpu", client, args.workdir, 5)
        model, X, Y, kw = sweep_args("linear", args.overhead_runs)
        cases = ([("dask in memory", c) for c in args.overhead_chunks]
                 + [("dask store", c) for c in args.overhead_store_chunks]
                 + [("local store", c) for c in args.overhead_store_chunks] + [("local in memory", None)])
        calls = 0
        for rep in range(args.overhead_repeats):
            shift = rep % len(cases)
            for kind, chunk in cases[shift:] + cases[:shift]:
                scheduler = client if kind.startswith("dask") else None
                store = (Path(tempfile.mkdtemp(dir=args.workdir, prefix="ovh-")) / "o.zarr"
                         if kind.endswith("store") else None)
                # A new params0 per call (the same work): gdsim.sweep scatters its spec with a
                # key hashed from the content (client.scatter(..., broadcast=True)), and the
                # same spec swept twice in a row on one client intermittently fails with
                # FutureCancelledError "lost dependencies" (the previous call's release of
                # that key races the new scatter).
                calls += 1
                params0 = [-10.0, -20.0 - 1e-9 * calls]
                t = time.perf_counter()
                gdsim.sweep(model, X, Y, target="cpu", scheduler=scheduler, store=store, chunk_runs=chunk,
                            **{**kw, "params0": params0})
                wall = time.perf_counter() - t
                if store is not None:
                    shutil.rmtree(store.parent)
                n_tasks = 1 if chunk is None else math.ceil(args.overhead_runs / chunk)
                row = out["rows"].setdefault(f"{kind} chunk_runs={chunk}",
                                             {"kind": kind, "chunk_runs": chunk, "n_tasks": n_tasks, "times_s": []})
                row["times_s"].append(wall)
                print(f"  overhead {kind} chunk_runs={chunk}: {wall:.3f} s", file=sys.stderr, flush=True)
    finally:
        client.close()
        cluster.close()
    Path(args.out).write_text(json.dumps(out))


# ---------------------------------------------------------------------------------------
# Comparing stores
# ---------------------------------------------------------------------------------------
def store_size(path):
    """Disk usage (``du -sk``), apparent size (``du -sb``) in MB and the number of files."""
    du = lambda *flags: int(subprocess.run(["du", *flags, str(path)], capture_output=True, text=True,
                                           check=True).stdout.split()[0])
    return {"du_mb": du("-sk") / 1024, "apparent_mb": du("-sb", "--apparent-size") / 2**20,
            "files": sum(len(files) for _, _, files in os.walk(path))}


def compare_stores(ref, other, decode_all, n_sample):
    """How ``other`` compares with ``ref``: files byte for byte where both have the same
    regions (the same ``chunk_runs``), then decoded regions (``ref``'s) in any case."""
    import xarray as xr

    ref, other = Path(ref), Path(other)
    a_ref = json.loads((ref / "zarr.json").read_text())["attributes"]
    a_oth = json.loads((other / "zarr.json").read_text())["attributes"]
    chunk_runs = [json.loads(a["gdsim_store"])["chunk_runs"] for a in (a_ref, a_oth)]
    out = {"same_regions": chunk_runs[0] == chunk_runs[1]}
    if out["same_regions"]:
        files = sorted(str(p.relative_to(ref)) for p in ref.rglob("*") if p.is_file())
        files_other = sorted(str(p.relative_to(other)) for p in other.rglob("*") if p.is_file())
        differ = [f for f in files if f != "zarr.json" and f in set(files_other)
                  and not filecmp.cmp(ref / f, other / f, shallow=False)]
        out.update(files=len(files), missing_or_extra=sorted(set(files) ^ set(files_other))[:10],
                   files_differing=differ[:10], n_files_differing=len(differ))
    else:  # other chunks and records: the decoded data must still be the same
        a_ref, a_oth = ({k: v for k, v in a.items() if k != "gdsim_store"} for a in (a_ref, a_oth))
        out.update(missing_or_extra=[], files_differing=[], n_files_differing=0)
    out["attrs_differing"] = {k: [a_ref.get(k), a_oth.get(k)] for k in sorted(set(a_ref) | set(a_oth))
                              if a_ref.get(k) != a_oth.get(k)}
    records = sorted((ref / "gdsim_regions").glob("[0-9]*.json"))
    if not decode_all:
        picks = np.unique(np.linspace(0, len(records) - 1, min(n_sample, len(records))).round().astype(int))
        records = [records[i] for i in picks]
    bad = []
    with xr.open_zarr(ref, consolidated=False) as dr, xr.open_zarr(other, consolidated=False) as do:
        dims = [d for d in dr["final_loss"].dims]
        for rec in records:
            slices = json.loads(rec.read_text())["slices"]
            sel = {d: slice(a, b) for d, (a, b) in zip(dims, slices)}
            pr, po = dr.isel(sel), do.isel(sel)
            for name in dr.data_vars:
                x, y = pr[name].values, po[name].values
                if not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
                    bad.append(f"{rec.name}:{name}")
        coords_equal = all(np.array_equal(dr[c].values, do[c].values) for c in dr.coords)
    out.update(regions_decoded=len(records), regions_decoded_differing=bad[:10], coords_equal=coords_equal)
    out["identical"] = (not out["missing_or_extra"] and not out["files_differing"] and not bad and coords_equal
                        and set(out["attrs_differing"]) <= {"target"})
    return out


# ---------------------------------------------------------------------------------------
# The parent: runs, tables, targets, projection
# ---------------------------------------------------------------------------------------
def spawn(child_args, timeout):
    """Run this script as a child; return its JSON (RuntimeError with the last stderr lines on failure)."""
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *map(str, child_args)],
                          capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        raise RuntimeError("\n".join(lines[-25:]) or f"exit status {proc.returncode}")
    return proc


def summarise(values):
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def fmt(s, spec=".3g", spread=True):
    if s is None or s.get("median") is None:
        return "-"
    if not spread or s["n"] == 1:
        return f"{s['median']:{spec}}"
    return f"{s['median']:{spec}} ({s['min']:{spec}}-{s['max']:{spec}})"


def slope(xs, ys):
    """Least-squares slope and intercept of ys against xs."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if len(set(xs)) < 2:
        return None, None
    A = np.vstack([xs, np.ones_like(xs)]).T
    (m, c), *_ = np.linalg.lstsq(A, ys, rcond=None)
    return float(m), float(c)


def build_summary(runs_done):
    """Group the child results by (workload, runs, config)."""
    groups = {}
    for r in runs_done:
        groups.setdefault((r["workload"], r["runs"], r["config"]), []).append(r)
    rows = []
    for (workload, runs, config), rs in groups.items():
        ok = [r for r in rs if "wall_s" in r]
        wall = summarise([r["wall_s"] for r in ok])
        rows.append({
            "workload": workload, "runs": runs, "config": config, "n_ok": len(ok),
            "errors": [r["error"] for r in rs if "error" in r],
            "wall_s": wall,
            "runs_per_s": runs / wall["median"] if wall["median"] else None,
            "client_peak_mb": summarise([r["client_peak_mb"] for r in ok]),
            "client_peak_before_mb": summarise([r["client_peak_before_mb"] for r in ok]),
            "client_rss_sampled_max_mb": summarise([r["client_rss_sampled_max_mb"] for r in ok]),
            "worker_peak_mb": summarise([r.get("worker_peak_mb") for r in ok]),
            "client_cpu_s": summarise([r["client_cpu_s"] for r in ok]),
            "worker_cpu_s": summarise([r.get("worker_cpu_s") for r in ok]),
            "client_rss_slope_mb_per_region": summarise([r.get("client_rss_slope_mb_per_region") for r in ok]),
            "client_sweep_growth_mb": summarise([r["client_rss_sampled_max_mb"] - r["client_rss_before_mb"]
                                                 for r in ok if r["client_rss_sampled_max_mb"]]),
            "busy_cores": summarise([(r["client_cpu_s"] + (r.get("worker_cpu_s") or 0)) / r["wall_s"] for r in ok]),
            "load_average_1min": summarise([r["load_average"][0] for r in ok]),
            "inmem_wall_s": summarise([r.get("inmem_wall_s") for r in ok]),
            "store": ok[0]["store_size"] if ok else None,
            "n_regions": ok[0]["n_regions"] if ok else None,
            "chunk_runs": ok[0]["chunk_runs"] if ok else None,
            "bytes_per_run": ok[0]["result_nbytes"] / runs if ok else None,
            "identical": [r["compare"]["identical"] for r in ok if "compare" in r],
            "same_regions": all(r["compare"].get("same_regions", True) for r in ok if "compare" in r),
            "compared_with": sorted({r["compared_with"] for r in ok if "compared_with" in r}),
            "is_ref": any("compare" not in r for r in ok),
        })
    return rows


def row_lookup(rows, workload, runs, config):
    return next((r for r in rows if (r["workload"], r["runs"], r["config"]) == (workload, runs, config)), None)


#: Below this much work (the local-1t wall, seconds) the time ratios are shown but are not
#: targets: a cluster's fixed costs per sweep (creating the store, the warm-up and probe
#: round trips, the last region's wait: about 0.1 s here) are then a sizeable part of it.
#: The issue's workloads (10^7 linear runs, 10^5 MLP runs) are 33 s and 2.9 s here.
TARGET_MIN_WORK_S = 1.0


def targets(rows, sizes):
    """PASS/FAIL of the issue's targets, per workload size (``pass`` None: shown, not a
    target, for sweeps of less than :data:`TARGET_MIN_WORK_S` of work)."""
    out = []
    med = lambda r: r["wall_s"]["median"] if r and r["wall_s"]["median"] else None
    big = max((n for w, n in sizes if w == "linear"), default=None)
    for r in rows:
        if r["workload"] == "linear" and r["runs"] == big and r["client_peak_mb"]["max"] is not None:
            v = r["client_peak_mb"]["max"]
            out.append({"target": f"client peak RSS, linear {big:.0e} runs, {r['config']}", "value": v,
                        "limit": f"< {RSS_LIMIT_MB:.0f} MB", "pass": v < RSS_LIMIT_MB, "unit": "MB"})
    for workload, runs in sizes:
        d1, d2 = (med(row_lookup(rows, workload, runs, c)) for c in ("dask-1w", "dask-2w"))
        loc, loc1 = (med(row_lookup(rows, workload, runs, c)) for c in ("local", "local-1t"))
        name = f"{workload} {runs:.0e}"
        work = loc1 or d1
        targeted = work is not None and work >= TARGET_MIN_WORK_S
        for label, value, limit in ((f"{name}: dask-2w / dask-1w wall", d2 / d1 if d1 and d2 else None, SCALING_LIMIT),
                                    (f"{name}: dask-2w / local (2 threads) wall", d2 / loc if d2 and loc else None,
                                     DASK_COST_LIMIT),
                                    (f"{name}: dask-1w / local-1t wall", d1 / loc1 if d1 and loc1 else None,
                                     DASK_COST_LIMIT)):
            if value is not None:
                out.append({"target": label, "value": value, "limit": f"<= {limit}",
                            "pass": value <= limit if targeted else None})
    return out


def overhead_summary(raw):
    """Median per case; seconds per task from the slopes."""
    rows = {}
    for name, r in raw["rows"].items():
        rows[name] = {**r, **{k: v for k, v in summarise(r["times_s"]).items()}}
    out = {"runs": raw["runs"], "rows": rows}
    for kind in ("dask in memory", "dask store", "local store"):
        pts = [(r["n_tasks"], r["median"]) for r in rows.values() if r["kind"] == kind]
        s, c = slope(*zip(*pts)) if len(pts) >= 2 else (None, None)
        out[f"{kind} s_per_task"] = s
        out[f"{kind} intercept_s"] = c
        pts = sorted(pts)
        if len(pts) >= 2:  # the pairwise estimate between the fewest and the most tasks
            (n0, t0), (n1, t1) = pts[0], pts[-1]
            out[f"{kind} s_per_task_pairwise"] = (t1 - t0) / (n1 - n0)
    return out


def projection(args, rows, overhead, sizes):
    """The projected wall time of ``--project-runs`` linear runs on ``--project-nodes`` nodes, with its arithmetic.

    Two sides work at once: the workers compute and write their regions (``N / (W r)``,
    ``r`` measured per worker-CPU-second with the writing in it, plus the per-task
    overhead and a last wave), and the client with the scheduler handles every region (its
    CPU time per region ``k``, serial, measured with gdsim's tasks of several regions:
    :func:`gdsim.sweeps.executors.task_sizes`). The wall time is the larger.
    """
    big = max((n for w, n in sizes if w == "linear"), default=None)
    d1 = row_lookup(rows, "linear", big, "dask-1w")
    d2 = row_lookup(rows, "linear", big, "dask-2w")
    if not d1 or not d1["runs_per_s"] or not overhead or overhead.get("dask in memory s_per_task") is None:
        return None
    N, W = args.project_runs, args.project_nodes * args.project_workers_per_node
    per_cpu = lambda r: big / r["worker_cpu_s"]["median"] if r and r["worker_cpu_s"]["median"] else None
    r1, r2 = per_cpu(d1), per_cpu(d2)
    r = min(x for x in (r1, r2) if x)  # runs per worker-CPU-second: a worker that is never idle
    o = overhead["dask in memory s_per_task"]
    k = d1["client_cpu_s"]["median"] / d1["n_regions"]
    row = 1000  # a whole momentum row of the grid
    c_w = 100 * o * r
    c = int(max(row, math.ceil(c_w / row) * row))
    n_tasks = math.ceil(N / c)
    t_compute = N / (W * r)
    t_over = n_tasks / W * o
    t_tail = c / r
    t_workers = t_compute + t_over + t_tail
    t_client = n_tasks * k
    t_total = max(t_workers, t_client)
    w_star = c / (r * k) if k else float("inf")
    store_per_run = d1["store"]["du_mb"] / big if d1["store"] else None
    rate2 = f", dask-2w {d2['runs_per_s'] / 2:,.0f} runs/s per worker" if d2 and d2["runs_per_s"] else ""
    lines = [
        (f"N = {N:.0e} runs (linear, 20 epochs), W = {args.project_nodes} nodes x {args.project_workers_per_node} "
         f"single-threaded worker(s) = {W} workers"),
        (f"per-worker throughput r = runs / worker CPU s (computing and writing), {big:.0e} runs: dask-1w "
         f"{r1 or float('nan'):,.0f}, dask-2w {r2 or float('nan'):,.0f} -> r = {r:,.0f} runs/s (the lower); observed "
         f"wall rate here: dask-1w {d1['runs_per_s']:,.0f} runs/s{rate2}"),
        f"per-task overhead (scheduler, 1-worker cluster, tiny tasks in memory) o = {o * 1e3:.2f} ms",
        (f"the client's (and LocalCluster scheduler's) CPU per region, dask-1w {big:.0e}: "
         f"{d1['client_cpu_s']['median']:.2f} s / {d1['n_regions']} regions = k = {k * 1e3:.1f} ms"),
        (f"chunk: scheduler overhead < 1% of a task's compute: c >= 100 o r = 100 * {o:.4g} * {r:,.0f} = "
         f"{c_w:,.0f} -> c = {c:,} runs, whole rows of 1000 ({c / r:.2f} s of work per task; "
         f"{c * d1['bytes_per_run'] / 2**20:.0f} MiB of results; gdsim's default here: {d1['chunk_runs']:,})"),
        (f"tasks = N / c = {N:.0e} / {c:,} = {n_tasks:,} ({n_tasks / W:.1f} per worker"
         + ("; fewer than 4 per worker: a smaller c balances better)" if n_tasks < 4 * W else ")")),
        (f"workers: compute and write N / (W r) = {N:.0e} / ({W} * {r:,.0f}) = {t_compute:.1f} s; overhead tasks / W "
         f"* o = {n_tasks:,} / {W} * {o:.4g} = {t_over:.2f} s; last wave <= c / r = {t_tail:.1f} s; "
         f"total {t_workers:.1f} s"),
        f"client: tasks k = {n_tasks:,} * {k:.4g} = {t_client:.1f} s",
        (f"projected wall ~ max(workers, client) = {t_total:.0f} s ({t_total / 60:.1f} min), bound by the "
         f"{'client' if t_client > t_workers else 'workers'}; the client saturates at W* = c / (r k) = "
         f"{w_star:,.0f} workers"),
    ]
    slope_mb = d1["client_rss_slope_mb_per_region"]["median"]
    if slope_mb is not None and d1["n_regions"] >= 20:
        lines.append(f"client memory: the dask-1w client's RSS grew {slope_mb:.2f} MB per region during the "
                     f"{big:.0e}-run sweep (slope over its last 80%; {d1['n_regions']} regions of "
                     f"{d1['chunk_runs']:,} runs); if that went on, N in regions of that size would add "
                     f"{slope_mb * N / d1['chunk_runs'] / 1024:.1f} GB")
    if store_per_run:
        lines.append(f"store: {store_per_run * 1e6:.0f} bytes per run on disk -> {store_per_run * N / 1024:.1f} GB "
                     f"for N, written by the workers at {store_per_run * N / max(t_total, 1e-9):.0f} MB/s in all")
    return {"N": N, "W": W, "r": r, "r_dask1_per_cpu": r1, "r_dask2_per_cpu": r2, "r_dask1_wall": d1["runs_per_s"],
            "o_s": o, "k_s": k, "c_min": c_w,
            "chunk_runs": c, "n_tasks": n_tasks, "t_compute_s": t_compute, "t_overhead_s": t_over,
            "t_tail_s": t_tail, "t_workers_s": t_workers, "t_client_s": t_client, "t_total_s": t_total,
            "w_star": w_star, "lines": lines}


def render(report):
    """The markdown tables."""
    s = report["settings"]
    m = report["machine"]
    g = report["gdsim"]
    edited = ", EDITED DURING THE RUN" if g["fingerprint_start"] != g["fingerprint_end"] else ""
    out = ["# gdsim scaling: local threads vs Dask LocalCluster", "",
           (f"{m['cpu']}, {m['n_cores']} cores, load {m['load_average_at_start'][0]:.2f} -> "
            f"{report['load_average_at_end'][0]:.2f}, {m['date']}; command: `{report['command']}`; gdsim "
            f"{g['commit']} ({g['modified_files']} modified gdsim files, sources {g['fingerprint_start']} -> "
            f"{g['fingerprint_end']}{edited})"), "",
           (f"Small sizes: median (min-max) of {s['repeats']} round-robin repeats; the biggest linear size: "
            f"{s['big_repeats']} per configuration. Peak MB: max over repeats."), "",
           ("| workload | runs | config | wall s | runs/s | client peak MB (before sweep) | client +MB in sweep "
            "| worker peak MB | client CPU s | worker CPU s | CPU / wall | store MB (files) | regions x chunk "
            "| in-memory s | load | identical |"),
           "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in report["summary"]:
        st = r["store"]
        n_same = sum(r["identical"])
        ident = ("-" if not r["identical"] else f"{'yes' if n_same == len(r['identical']) else 'NO'} "
                 f"({n_same}/{len(r['identical'])}{'' if r.get('same_regions', True) else ', decoded'})")
        ident = "ref" if r["is_ref"] and not r["identical"] else ident + " ref" if r["is_ref"] else ident
        out.append(
            f"| {r['workload']} | {r['runs']:.0e} | {r['config']} | {fmt(r['wall_s'])} | "
            f"{r['runs_per_s']:,.0f} | {fmt(r['client_peak_mb'], '.0f', False)} "
            f"({fmt(r['client_peak_before_mb'], '.0f', False)}) | "
            f"{r['client_sweep_growth_mb']['max']:.0f} | "
            f"{fmt(r['worker_peak_mb'], '.0f', False)} | {fmt(r['client_cpu_s'], '.3g', False)} | "
            f"{fmt(r['worker_cpu_s'], '.3g', False)} | {fmt(r['busy_cores'], '.2f', False)} | "
            f"{st['du_mb']:.0f} ({st['files']}) | {r['n_regions']} x {r['chunk_runs']} | "
            f"{fmt(r['inmem_wall_s'])} | {fmt(r['load_average_1min'], '.1f', False)} | {ident} |" if r["n_ok"] else
            f"| {r['workload']} | {r['runs']:.0e} | {r['config']} | error |" + " |" * 12)
        for e in r["errors"]:
            out.append(f"|  | | error: {e.splitlines()[-1][:150]} |" + " |" * 13)
    out += ["", ("client peak: ru_maxrss of the client process over its life (imports, LocalCluster with its "
            "scheduler, warm-up, sweep); (before sweep): the same counter just before the timed call; "
            "+MB in sweep: the sampled current RSS's max during the call minus the RSS before it (max over "
            "repeats). CPU s: user+system during the timed call (client: the whole client process, with a "
            "LocalCluster's scheduler); CPU / wall: (client + workers) / wall, the cores kept busy. "
            "load: the 1-minute load average when the child started (others share this machine). "
            "identical: every file byte for byte (root zarr.json: attributes, `target` may differ) and the "
            "decoded regions, against the `ref` row of that size (the ref row: its own repeats); "
            "\"decoded\": the store has other regions (gdsim chose smaller ones for the cluster), so "
            "only the decoded data are compared."), ""]
    out += ["## Targets", "", f"The time ratios are targets for sweeps of at least {TARGET_MIN_WORK_S:g} s of work "
            "(local-1t); for smaller ones a cluster's fixed costs per sweep (about 0.1 s here) show, and the "
            "ratios are given for information.", "",
            "| target | measured | limit | result |", "|---|---:|---|---|"]
    for t in report["targets"]:
        out.append(f"| {t['target']} | {t['value']:.3g}{' MB' if t.get('unit') == 'MB' else ''} | {t['limit']} | "
                   f"{'PASS' if t['pass'] else 'FAIL' if t['pass'] is not None else 'not a target'} |")
    ov = report.get("overhead")
    if ov:
        out += ["", f"## Per-task overhead (1-worker LocalCluster, linear sweep of {ov['runs']} runs, 20 epochs)",
                "", "| case | chunk_runs | tasks | wall s | wall per task ms |", "|---|---:|---:|---:|---:|"]
        for name, r in sorted(ov["rows"].items(), key=lambda kv: (kv[1]["kind"], -kv[1]["n_tasks"])):
            out.append(f"| {r['kind']} | {r['chunk_runs'] or 'all'} | {r['n_tasks']} | {fmt(r)} | "
                       f"{1e3 * r['median'] / r['n_tasks']:.3g} |")
        out.append("")
        for kind in ("dask in memory", "dask store", "local store"):
            if ov.get(f"{kind} s_per_task") is not None:
                out.append(f"- {kind}: **{1e3 * ov[f'{kind} s_per_task']:.2f} ms per task** (slope of the medians "
                           f"against the number of tasks; fewest vs most tasks: "
                           f"{1e3 * ov[f'{kind} s_per_task_pairwise']:.2f} ms)")
    pj = report.get("projection")
    if pj:
        out += ["", "## Projection", ""] + [f"    {ln}" for ln in pj["lines"]]
    return "\n".join(out) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Scaling of gdsim's streamed sweeps: local threads vs a Dask "
                                "LocalCluster of 1 and 2 workers, the per-task overhead, and a projection "
                                "(see the module docstring).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--linear-small", type=float, nargs="*", default=[1e5, 1e6],
                   help="linear sizes (runs; multiples of 1000) run round-robin --repeats times")
    p.add_argument("--linear-big", type=float, default=1e7,
                   help="the big linear size (runs), run --big-repeats times per configuration; 0: none")
    p.add_argument("--mlp-runs", type=float, default=1e5, help="MLP (10, 5, 1) sweep size (runs, multiple of 100); 0: none")
    p.add_argument("--mlp-epochs", type=int, default=5, help="epochs of the MLP sweep")
    p.add_argument("--repeats", type=int, default=3, help="round-robin repeats of the small sizes")
    p.add_argument("--big-repeats", type=int, default=1, help="repeats of the big linear size")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS),
                   help="configurations to run")
    p.add_argument("--chunk-runs", type=int, default=None, help="runs per region (default: gdsim's, ~8 MiB)")
    p.add_argument("--inmem-max-runs", type=float, default=1e6,
                   help="'local' children up to this size also time the sweep in memory; 0: never")
    p.add_argument("--overhead-runs", type=int, default=2000, help="runs of the per-task overhead sweep; 0: skip")
    p.add_argument("--overhead-chunks", type=int, nargs="+", default=[1, 10, 100, 2000],
                   help="chunk_runs of the in-memory tiny-task sweeps on the 1-worker cluster")
    p.add_argument("--overhead-store-chunks", type=int, nargs="*", default=[20, 2000],
                   help="chunk_runs of the tiny-task sweeps to a store (on the cluster and here)")
    p.add_argument("--overhead-repeats", type=int, default=3, help="round-robin repeats of the overhead cases")
    p.add_argument("--decode-all-runs", type=float, default=1e6,
                   help="compare every region decoded for stores up to this many runs (bigger: a sample)")
    p.add_argument("--sample-regions", type=int, default=16, help="regions decoded and compared in bigger stores")
    p.add_argument("--project-runs", type=float, default=1e8, help="runs of the projected linear study")
    p.add_argument("--project-nodes", type=int, default=100, help="nodes of the projection")
    p.add_argument("--project-workers-per-node", type=int, default=1, help="single-threaded workers per node")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: linear 1e4 and 1e5 (big), MLP 1e4, 1 repeat, overhead on 500 runs")
    p.add_argument("--workdir", type=Path, default=None, help="where the stores go (default: a new temporary folder)")
    p.add_argument("--keep-stores", action="store_true", help="keep the stores (default: deleted once compared)")
    p.add_argument("--resume", action="store_true",
                   help="with --workdir: reuse the measurements an interrupted run with the same settings left there")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per child process")
    p.add_argument("--json", type=Path, default=HERE / "results" / "scale.json", help="the JSON report")
    p.add_argument("--md", type=Path, default=HERE / "results" / "scale.md", help="the markdown tables")
    # internal: the child processes
    p.add_argument("--child", choices=["sweep", "overhead"], help=argparse.SUPPRESS)
    p.add_argument("--workload", help=argparse.SUPPRESS)
    p.add_argument("--runs", type=float, help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--inmem", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    if "--quick" in (sys.argv[1:] if argv is None else argv):  # smaller defaults; explicit options still win
        p.set_defaults(linear_small=[1e4], linear_big=1e5, mlp_runs=1e4, repeats=1, overhead_runs=500,
                       overhead_chunks=[1, 10, 500], overhead_store_chunks=[10, 500], overhead_repeats=1)
    args = p.parse_args(argv)
    if args.runs is not None:
        args.runs = int(args.runs)
    args.linear_small = [int(n) for n in args.linear_small]
    args.linear_big, args.mlp_runs = int(args.linear_big), int(args.mlp_runs)
    args.project_runs = int(args.project_runs)
    for w, n in [("linear", n) for n in args.linear_small + [args.linear_big] if n] + [("mlp", args.mlp_runs)]:
        if n and not check_runs(w, n):
            p.error(f"{w} size {n}: use a multiple of {1000 if w == 'linear' else 100}")
    if args.resume and args.workdir is None:
        p.error("--resume needs --workdir (the folder of the interrupted run)")
    if args.repeats < 1 or args.big_repeats < 1:
        p.error("--repeats and --big-repeats must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.child == "sweep":
        return child_sweep(args)
    if args.child == "overhead":
        return child_overhead(args)
    sys.path.insert(0, str(HERE))
    # Imported here so that worker processes (which import __main__) skip them: bench for
    # machine_info, ab for the source fingerprint (to notice gdsim edited during the run).
    import ab
    import bench

    start = time.perf_counter()
    machine = bench.machine_info()
    root = HERE.parent
    git = lambda *a: subprocess.run(["git", "-C", str(root), *a], capture_output=True, text=True,
                                    check=False).stdout.strip()
    gdsim_info = {"commit": git("rev-parse", "--short", "HEAD") or None,
                  "modified_files": len(git("status", "--porcelain", "--", "gdsim").splitlines()),
                  "fingerprint_start": ab.fingerprint(root)}

    def log(text):
        print(f"[{time.perf_counter() - start:6.1f} s] {text}", file=sys.stderr, flush=True)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gdsim-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    small = [("linear", n) for n in args.linear_small] + ([("mlp", args.mlp_runs)] if args.mlp_runs else [])
    big = [("linear", args.linear_big)] if args.linear_big else []
    sizes = small + big
    results, refs = [], {}

    def run_one(workload, runs, config, tag):
        store = workdir / f"{workload}-{runs}-{config}-{tag}.zarr"
        out = workdir / f"{workload}-{runs}-{config}-{tag}.json"
        done = workdir / f"{workload}-{runs}-{config}-{tag}.done.json"
        key = (workload, runs)
        if args.resume and done.is_file():  # measured and compared by an earlier, interrupted run
            r = json.loads(done.read_text())
            if r.get("is_ref") and store.is_dir():
                refs.setdefault(key, (config, store))
            if not r.get("is_ref") or store.is_dir():
                results.append(r)
                log(f"  {workload} {runs:.0e} {config} {tag}: from {done.name}")
                return
        inmem = config == "local" and runs <= args.inmem_max_runs
        child = ["--child", "sweep", "--workload", workload, "--runs", runs, "--config", config, "--store", store,
                 "--out", out, "--mlp-epochs", args.mlp_epochs, "--workdir", workdir,
                 *(["--chunk-runs", args.chunk_runs] if args.chunk_runs else []), *(["--inmem"] if inmem else [])]
        shutil.rmtree(store, ignore_errors=True)  # left by an interrupted run: gdsim would resume it
        t = time.perf_counter()
        try:
            spawn(child, args.timeout)
            r = json.loads(out.read_text())
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            log(f"  {workload} {runs:.0e} {config}: FAILED\n{exc}")
            results.append({"workload": workload, "runs": runs, "config": config, "tag": tag, "error": str(exc)})
            shutil.rmtree(store, ignore_errors=True)
            return
        r["tag"] = tag
        r["store_size"] = store_size(store)
        if key not in refs:
            refs[key] = (config, store)
            r["is_ref"] = True
        else:
            r["compared_with"] = refs[key][0]
            r["compare"] = compare_stores(refs[key][1], store, runs <= args.decode_all_runs, args.sample_regions)
            if not args.keep_stores:
                shutil.rmtree(store)
        done.write_text(json.dumps(r))
        results.append(r)
        c = r.get("compare")
        log(f"  {workload} {runs:.0e} {config}: {r['wall_s']:.2f} s ({runs / r['wall_s']:,.0f} runs/s), client "
            f"peak {r['client_peak_mb']:.0f} MB (before {r['client_peak_before_mb']:.0f}), workers "
            f"{r.get('worker_peak_mb', 0):.0f} MB, store {r['store_size']['du_mb']:.0f} MB"
            + ("" if c is None else f", identical to {r['compared_with']}: {c['identical']}")
            + f" [child {time.perf_counter() - t:.0f} s]")

    for i in range(args.repeats):
        order = args.configs[i % len(args.configs):] + args.configs[:i % len(args.configs)]
        for workload, runs in small:
            log(f"round {i + 1}/{args.repeats} {workload} {runs:.0e}: {' '.join(order)}")
            for config in order:
                run_one(workload, runs, config, f"r{i}")
    for i in range(args.big_repeats):
        order = args.configs[i % len(args.configs):] + args.configs[:i % len(args.configs)]
        for workload, runs in big:
            log(f"big {i + 1}/{args.big_repeats} {workload} {runs:.0e}: {' '.join(order)}")
            for config in order:
                run_one(workload, runs, config, f"b{i}")
    if not args.keep_stores:
        for _, store in refs.values():
            shutil.rmtree(store, ignore_errors=True)

    overhead = None
    if args.overhead_runs:
        log(f"per-task overhead: {args.overhead_runs} runs, chunk_runs {args.overhead_chunks} in memory, "
            f"{args.overhead_store_chunks} to a store, {args.overhead_repeats} repeats")
        out = workdir / "overhead.json"
        try:
            spawn(["--child", "overhead", "--overhead-runs", args.overhead_runs, "--overhead-chunks",
                   *args.overhead_chunks, "--overhead-store-chunks", *args.overhead_store_chunks,
                   "--overhead-repeats", args.overhead_repeats, "--workdir", workdir, "--out", out], args.timeout)
            overhead = overhead_summary(json.loads(out.read_text()))
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            log(f"  overhead: FAILED\n{exc}")
            overhead = {"error": str(exc)}

    summary = build_summary(results)
    gdsim_info["fingerprint_end"] = ab.fingerprint(root)
    report = {
        "gdsim": gdsim_info,
        "command": " ".join(["python", "benchmarks/scale.py", *(sys.argv[1:] if argv is None else argv)]),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                     if k not in ("child", "workload", "runs", "config", "store", "inmem", "out")},
        "machine": machine, "summary": summary, "runs": results,
        "overhead": overhead if overhead and "error" not in overhead else None,
        "overhead_error": overhead.get("error") if overhead else None,
    }
    report["targets"] = targets(summary, sizes)
    report["projection"] = projection(args, summary, report["overhead"], sizes)
    report["load_average_at_end"] = list(os.getloadavg())
    report["total_s"] = time.perf_counter() - start
    md = render(report)
    print("\n" + md)
    for path, text in ((args.json, json.dumps(report, indent=2)), (args.md, md)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if args.workdir is None and not args.keep_stores:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"JSON report: {args.json}; tables: {args.md} (total {report['total_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
