"""Compare two source trees of gdsim side by side (A/B), round-robin, with bench.py's workloads.

What is measured
----------------
For each round and each workload, the gdsim row of ``bench.py`` (``gdsim-parallel`` for W2
and W3, ``gdsim`` for W4; see bench.py's docstring for the workloads) runs once for each
tree, in a fresh subprocess (bench.py's own ``--child run``: prepare, one warm-up call,
then ``--repeats`` timed calls) whose ``PYTHONPATH`` starts with the tree's root, so that
``import gdsim`` finds that tree. The order of the two trees alternates from one round to
the next. Each run gives the median of its timed calls.

The machine is shared and noisy, so compare ratios, not absolute times: the table shows,
per workload, the median over rounds of each tree's medians (min-max over rounds), the
ratio after/before of those medians, and the ratio within each round (the two runs of a
round are close in time). ``max rel diff`` compares the two trees' final parameters and
losses (``identical``: bit for bit).

``--compile`` adds, in every round and for each tree, bench.py's ``--child compile`` on W2
and on W3 (the MLP sweep: ``MLP((10, 5, 1))``, ``teacher_mlp`` n=512, batch 32, 20 epochs,
32 lr x 16 momentum): a fresh process with a new empty ``NUMBA_CACHE_DIR`` times its first
full sweep call minus the median of three more (cold), then a second fresh process with
the same cache directory does the same (cached). ``W3 first sweep cold`` is that first
call itself, compilation and the sweep together: the wait for a user's first MLP sweep.

Both trees are timed by the same harness, the ``bench.py`` next to this script, so they
must share the public API it uses. The trees' gdsim sources are fingerprinted at the
start and at the end; a tree edited during the run is reported.

How to run::

    git worktree add /tmp/gdsim_before 3604b4a      # the "before" tree, once
    python benchmarks/ab.py --before /tmp/gdsim_before --after . --rounds 3
    python benchmarks/ab.py --before /tmp/gdsim_before --after . --rounds 5 --workloads W2 W3 \
        --repeats 9 --compile --json benchmarks/results/ab.json

Output: the table on stdout, progress on stderr, and a JSON file (default
``benchmarks/results/ab.json``) with every timing, the trees (commit, modified files,
fingerprints) and the machine's description.
"""

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BENCH = HERE / "bench.py"
IMPL = {"W2": "gdsim-parallel", "W3": "gdsim-parallel", "W4": "gdsim"}
SIDES = ("before", "after")
COMPILE_ROWS = ("W2 compile cold", "W2 compile cached", "W3 compile cold", "W3 compile cached",
                "W3 first sweep cold")
PROBE = ("import json, sys; sys.path.insert(0, sys.argv[1]); import bench, gdsim; "
         "print(json.dumps({'gdsim_file': gdsim.__file__, 'machine': bench.machine_info()}))")


def spawn(tree, args, cwd, env=None, timeout=3600):
    """Run ``python *args`` with ``tree`` first on PYTHONPATH; return stdout, raise RuntimeError on failure."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tree), env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, *map(str, args)], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        raise RuntimeError(lines[-1] if lines else f"exit status {proc.returncode}")
    return proc.stdout


def fingerprint(tree):
    """SHA-1 of the tree's ``gdsim/**/*.py`` (paths and contents), to notice edits during the run."""
    h = hashlib.sha1()
    for path in sorted((tree / "gdsim").rglob("*.py")):
        h.update(str(path.relative_to(tree)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def describe_tree(tree, cwd):
    """Commit, modified gdsim files, fingerprint, and what ``import gdsim`` resolves to (raises if it fails)."""
    git = lambda *a: subprocess.run(["git", "-C", str(tree), *a], capture_output=True, text=True).stdout.strip()
    probe = json.loads(spawn(tree, ["-c", PROBE, HERE], cwd).splitlines()[-1])
    if not Path(probe["gdsim_file"]).resolve().is_relative_to(tree):
        raise RuntimeError(f"import gdsim found {probe['gdsim_file']}, not the tree {tree}")
    return {"path": str(tree), "commit": git("rev-parse", "--short", "HEAD") or None,
            "modified_files": len(git("status", "--porcelain", "--", "gdsim").splitlines()),
            "gdsim_file": probe["gdsim_file"], "fingerprint_start": fingerprint(tree), "machine": probe["machine"]}


def time_run(tree, key, args, tmp):
    """One fresh-process bench.py run of workload ``key``: timings and the final (params, loss)."""
    out = Path(tempfile.mkdtemp(dir=tmp)) / "run.npz"
    spawn(tree, [BENCH, "--child", "run", "--workloads", key, "--impl", IMPL[key], "--repeats", args.repeats,
                 "--out", out, *(["--quick"] if args.quick else [])], tmp)
    with np.load(out) as z:
        meta = json.loads(str(z["meta"]))
        result = (z["params"], z["loss"])
    return {"value": statistics.median(meta["times_s"]), "times_s": meta["times_s"],
            "prepare_s": meta["prepare_s"], "warmup_s": meta["warmup_s"]}, result


def time_compile(tree, key, args, tmp):
    """Cold and cached compile time of workload ``key`` (two fresh processes, one new NUMBA_CACHE_DIR)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=tempfile.mkdtemp(dir=tmp, prefix="numba-cache-"))
    raw = {}
    for name in ("cold", "cached"):
        out = Path(tempfile.mkdtemp(dir=tmp)) / "compile.json"
        spawn(tree, [BENCH, "--child", "compile", "--workloads", key, "--out", out,
                     *(["--quick"] if args.quick else [])], tmp, env)
        raw[name] = json.loads(out.read_text())
    rows = {f"{key} compile {n}": {"value": r["first_s"] - r["warm_s"], **r} for n, r in raw.items()}
    if key == "W3":
        rows["W3 first sweep cold"] = {"value": raw["cold"]["first_s"]}
    return rows


def max_rel_diff(a, b):
    """0.0 when bitwise equal; else ``max|a - b| / max|a|`` over finite entries (inf if non-finite ones differ)."""
    if a.shape != b.shape or not np.array_equal(np.isfinite(a), np.isfinite(b)):
        return float("inf")
    if np.array_equal(a, b, equal_nan=True):
        return 0.0
    fin = np.isfinite(a)
    return float(np.abs(a[fin] - b[fin]).max() / max(np.abs(a[fin]).max(), np.finfo(float).tiny))


def summarise(rounds, row):
    """Median, min, max per tree and the ratios after/before for one row of the table."""
    values = {s: [r[row][s]["value"] for r in rounds if "value" in r.get(row, {}).get(s, {})] for s in SIDES}
    out = {f"{s}_{f.__name__}_s": f(values[s]) if values[s] else None
           for s in SIDES for f in (statistics.median, min, max)}
    out["ratio"] = out["after_median_s"] / out["before_median_s"] if values["before"] and values["after"] else None
    out["round_ratios"] = [r[row]["after"]["value"] / r[row]["before"]["value"] if all(
        "value" in r.get(row, {}).get(s, {}) for s in SIDES) else None for r in rounds]
    out["errors"] = [f"round {i + 1} {s}: {r[row][s]['error']}" for i, r in enumerate(rounds) for s in SIDES
                     if "error" in r.get(row, {}).get(s, {})]
    return out


def print_table(report):
    """The results table (stdout)."""
    def cell(s, m):
        return "error" if s[f"{m}_median_s"] is None else \
            f"{s[f'{m}_median_s']:.4g} ({s[f'{m}_min_s']:.3g}-{s[f'{m}_max_s']:.3g})"

    fmt = "{:<22} {:>28} {:>28} {:>8}  {:<24} {}"
    header = fmt.format("workload", "before s (min-max)", "after s (min-max)", "after/b", "per round", "max rel diff")
    print(header)
    print("-" * len(header))
    for row, s in report["summary"].items():
        name = f"{row} {IMPL[row]}" if row in IMPL else row
        rounds = " ".join("-" if r is None else f"{r:.3f}" for r in s["round_ratios"])
        diff = s.get("max_rel_diff")
        diff = "" if row not in IMPL else "-" if diff is None else "identical" if diff == 0 else f"{diff:.1e}"
        ratio = "-" if s["ratio"] is None else f"{s['ratio']:.3f}"
        print(fmt.format(name, cell(s, "before"), cell(s, "after"), ratio, rounds, diff))
        for error in s["errors"]:
            print(f"    {error}")
    print("\nafter/b: median(after) / median(before) over rounds; < 1 means the after tree is faster. "
          "per round: after / before within each round.")
    if report["settings"]["compile"]:
        print("compile cold / cached: first sweep call minus a warm call, fresh process, new empty / same "
              "NUMBA_CACHE_DIR; W3 first sweep cold: the first call itself.")
    for side, tree in report["trees"].items():
        edited = "" if tree["fingerprint_start"] == tree["fingerprint_end"] else "  EDITED DURING THE RUN"
        print(f"{side}: {tree['path']} (commit {tree['commit']}, {tree['modified_files']} modified gdsim files, "
              f"fingerprint {tree['fingerprint_start']} -> {tree['fingerprint_end']}){edited}")


def parse_args(argv=None):
    """Command-line arguments (see the module docstring)."""
    parser = argparse.ArgumentParser(description="A/B-compare two gdsim source trees (see the module docstring).")
    parser.add_argument("--before", required=True, type=Path, help="root of the 'before' tree (holds gdsim/)")
    parser.add_argument("--after", required=True, type=Path, help="root of the 'after' tree (holds gdsim/)")
    parser.add_argument("--rounds", type=int, default=3, help="round-robin rounds (default 3)")
    parser.add_argument("--workloads", nargs="+", default=["W2", "W3", "W4"], help="W2 W3 W4 (or W2,W3)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per run after a warm-up (default 5)")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "ab.json", help="where to write the JSON")
    parser.add_argument("--compile", action="store_true", help="also measure cold/cached compile times (W2, W3)")
    parser.add_argument("--quick", action="store_true", help="bench.py's small grids: a smoke check")
    args = parser.parse_args(argv)
    args.workloads = [w.upper() for arg in args.workloads for w in arg.split(",") if w]
    if not args.workloads or any(w not in IMPL for w in args.workloads):
        parser.error(f"--workloads: choose from {', '.join(IMPL)}")
    if args.rounds < 1 or args.repeats < 1:
        parser.error("--rounds and --repeats must be >= 1")
    for side in SIDES:
        setattr(args, side, getattr(args, side).resolve())
        if not (getattr(args, side) / "gdsim" / "__init__.py").is_file():
            parser.error(f"--{side}: {getattr(args, side)} has no gdsim/__init__.py")
    return args


def main(argv=None):
    """Run the rounds, print the table, write the JSON; returns the exit status."""
    args = parse_args(argv)
    trees = {s: getattr(args, s) for s in SIDES}
    start = time.perf_counter()

    def log(text):
        print(f"[{time.perf_counter() - start:6.1f} s] {text}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="gdsim-ab-") as tmp:
        info = {}
        for side, tree in trees.items():
            try:
                info[side] = describe_tree(tree, tmp)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                print(f"error: --{side} {tree}: import gdsim / bench.py failed: {exc}", file=sys.stderr)
                return 2
        machine = info["before"].pop("machine")
        info["after"].pop("machine")
        rounds, max_diff = [], {}
        for i in range(args.rounds):
            order = SIDES if i % 2 == 0 else SIDES[::-1]
            rnd = {}
            for key in args.workloads:
                results = {}
                for side in order:
                    log(f"round {i + 1}/{args.rounds} {key} {side}")
                    try:
                        rnd.setdefault(key, {})[side], results[side] = time_run(trees[side], key, args, tmp)
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        rnd.setdefault(key, {})[side] = {"error": str(exc)}
                if len(results) == 2:
                    diff = max(max_rel_diff(b, a) for b, a in zip(results["before"], results["after"]))
                    max_diff[key] = max(diff, max_diff.get(key, 0.0))
            for key in ("W2", "W3") if args.compile else ():
                for side in order:
                    log(f"round {i + 1}/{args.rounds} {key} compile {side}")
                    try:
                        for row, value in time_compile(trees[side], key, args, tmp).items():
                            rnd.setdefault(row, {})[side] = value
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        for row in (r for r in COMPILE_ROWS if r.startswith(key)):
                            rnd.setdefault(row, {})[side] = {"error": str(exc)}
            rounds.append(rnd)
    for side, tree in trees.items():
        info[side]["fingerprint_end"] = fingerprint(tree)
    rows = list(args.workloads) + (list(COMPILE_ROWS) if args.compile else [])
    summary = {row: summarise(rounds, row) for row in rows}
    for key in args.workloads:
        summary[key]["max_rel_diff"] = max_diff.get(key)
    machine["load_average_at_end"] = list(os.getloadavg())
    report = {"settings": {"rounds": args.rounds, "repeats": args.repeats, "workloads": args.workloads,
                           "compile": args.compile, "quick": args.quick, "impl": IMPL},
              "trees": info, "machine": machine, "summary": summary, "rounds": rounds,
              "total_s": time.perf_counter() - start}

    print(f"\ngdsim A/B: {args.rounds} round(s), median of {args.repeats} per run, on {machine['cpu']}, "
          f"{machine['n_cores']} cores, load {machine['load_average_at_start'][0]:.2f} -> "
          f"{machine['load_average_at_end'][0]:.2f}, {machine['date']}\n")
    print_table(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"\nJSON report: {args.json} (total {report['total_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
