"""What a new user waits for: installing gdsim, its first command, and the first sweep of
each kind of model, compiled from scratch (cold) and loaded from Numba's cache (cached).

The numbers README quotes for these come from here (``benchmarks/results/first_use.md``).

Cases (each a small sweep or training whose time is all compiling or loading kernels):

================  ========================================================================
``linear``        ``Linear(1, 1)`` on the tutorial line, per-sample SGD with momentum (the
                  line model's fused kernels)
``mlp``           ``MLP((10, 5, 1))`` on 64 random samples, batches of 16, momentum
``mlp-general``   the same with weight decay and Nesterov (the full SGD update)
``linear-f32``    ``linear`` in float32
``mlp-f32``       ``mlp`` in float32
``train``         ``gdsim.train`` of the MLP (its own compiled loop)
``train-matrix``  ``gdsim.train`` of an MLP (64, 32, 1) in batches of 8: the matrix path
                  (matrix products and their parallel halves, ``gdsim.products``)
================  ========================================================================

What is measured, each in fresh subprocesses (``--repeats`` times):

- **cold, alone**: ``linear`` and ``mlp`` each in a process of its own with a new empty
  ``NUMBA_CACHE_DIR``: the import of gdsim, then the first call (compiling everything it needs);
- **cold, in sequence**: one process, a new empty cache, every case in the order above:
  what each case adds to what the ones before it compiled (float32 after float64, say);
- **cached**: a new process on the cache the sequence filled: the import, then the first
  call of each case (loading its kernels from the cache).

Every process may write and read Python's bytecode cache (``__pycache__``), as an
installed package's modules have it (pip compiles them when it installs).

``import gdsim`` itself is quick (its modules load numba, xarray and scipy when first
used): the first case of a process includes loading them.

With ``--clone``, also README's first command from a fresh ``git clone`` of this checkout's
HEAD: ``python3 -m venv .venv && pip install .`` (pip's own cache as this machine has it)
and ``gdsim figures``, each timed once.

How to run::

    python benchmarks/first_use.py                  # the kernels: about 4 minutes on 2 cores
    python benchmarks/first_use.py --clone          # plus install and gdsim figures: about 8 minutes
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ("linear", "mlp", "mlp-general", "linear-f32", "mlp-f32", "train", "train-matrix")


def run_case(name):
    """The first call of case ``name`` (see the module docstring)."""
    import numpy as np

    import gdsim

    if name.startswith("linear"):
        X, Y = gdsim.datasets.tutorial_line()
        gdsim.sweep(gdsim.Linear(1, 1), X, Y, lr=[1e-3, 1e-2], momentum=[0.0, 0.9], epochs=2, batch_size=1,
                    params0=[-10.0, -20.0], dtype="float32" if name.endswith("f32") else "float64")
        return
    # data from NumPy: a dataset of gdsim's (teacher_mlp) would compile its own kernel first
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((64, 10)), rng.standard_normal((64, 1))
    if name == "train":
        gdsim.train(gdsim.MLP((10, 5, 1)), X, Y, gdsim.SGD(lr=0.01, momentum=0.9), epochs=2, batch_size=16)
        return
    if name == "train-matrix":
        X = rng.standard_normal((64, 64))
        gdsim.train(gdsim.MLP((64, 32, 1)), X, Y, gdsim.SGD(lr=0.01, momentum=0.9), epochs=2, batch_size=8)
        return
    options = {"weight_decay": 1e-4, "nesterov": True} if name == "mlp-general" else {}
    gdsim.sweep(gdsim.MLP((10, 5, 1)), X, Y, lr=np.array([1e-3, 1e-2]), momentum=[0.5, 0.9], epochs=2,
                batch_size=16, dtype="float32" if name.endswith("f32") else "float64", **options)


def child(cases, out):
    """Time ``import gdsim`` and the first call of each case, in this process; JSON to ``out``."""
    t0 = time.perf_counter()
    import gdsim  # noqa: F401

    times = {"import": time.perf_counter() - t0}
    for name in cases:
        t0 = time.perf_counter()
        run_case(name)
        times[name] = time.perf_counter() - t0
    Path(out).write_text(json.dumps(times))


def spawn(cases, cache, tmp, python=sys.executable):
    """``child(cases)`` in a fresh process whose Numba cache is ``cache``; its timings."""
    out = Path(tmp) / f"times-{os.urandom(4).hex()}.json"
    # Python's bytecode cache as an installed package has it (pip compiles it when it
    # installs; this machine sets PYTHONDONTWRITEBYTECODE, which recompiled gdsim's modules
    # from source in every process, ~40 ms): the first run writes gdsim's.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["NUMBA_CACHE_DIR"] = str(cache)
    subprocess.run([python, str(Path(__file__).resolve()), "--child", *cases, "--out", str(out)], env=env,
                   check=True, cwd=tmp)
    return json.loads(out.read_text())


def timed(command, cwd, env=None):
    """Seconds ``command`` (a shell line) took in ``cwd``; raises if it fails."""
    t0 = time.perf_counter()
    subprocess.run(["bash", "-c", command], cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def fresh_clone(tmp):
    """README's first command from a fresh clone: install and ``gdsim figures``, timed."""
    clone = Path(tmp) / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "NUMBA_CACHE_DIR", "PYTHONPATH")}
    install = timed("python3 -m venv .venv && . .venv/bin/activate && pip install -q .", clone, env)
    figures = timed(". .venv/bin/activate && gdsim figures -q", clone, env)
    return {"install_s": install, "figures_s": figures}


def summary(values):
    """Median and range of a list of seconds."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def measure(repeats, clone):
    """Every measurement of the module docstring."""
    report = {"machine": {"python": platform.python_version(), "processor": platform.processor(),
                          "cpus": os.cpu_count()}, "repeats": repeats}
    alone = {name: [] for name in ("linear", "mlp")}
    sequence = {name: [] for name in ("import", *CASES)}
    cached = {name: [] for name in ("import", *CASES)}
    with tempfile.TemporaryDirectory(prefix="gdsim-first-use-") as tmp:
        for _ in range(repeats):
            for name in alone:
                cache = Path(tempfile.mkdtemp(dir=tmp))
                alone[name].append(spawn([name], cache, tmp)[name])
            cache = Path(tempfile.mkdtemp(dir=tmp))
            for name, seconds in spawn(CASES, cache, tmp).items():
                sequence[name].append(seconds)
            for name, seconds in spawn(CASES, cache, tmp).items():
                cached[name].append(seconds)
            shutil.rmtree(cache)
        report["cold_alone_s"] = {name: summary(v) for name, v in alone.items()}
        report["cold_sequence_s"] = {name: summary(v) for name, v in sequence.items()}
        report["cached_s"] = {name: summary(v) for name, v in cached.items()}
        if clone:
            report["fresh_clone"] = fresh_clone(tmp)
    return report


def render(report):
    """The Markdown table of ``report``."""
    def cell(s):
        return f"{s['median']:.2f} s ({s['min']:.2f}-{s['max']:.2f})"

    lines = ["# First use: compile and load times", "",
             "Written by `benchmarks/first_use.py` (its docstring: what is measured). "
             f"{report['repeats']} repeats: median (min-max). Python {report['machine']['python']}, "
             f"{report['machine']['cpus']} CPUs.", "",
             "| case | cold, alone | cold, after the cases above | cached (new process) |", "|---|---:|---:|---:|"]
    for name in ("import", *CASES):
        alone = report["cold_alone_s"].get(name)
        lines.append(f"| {name} | {cell(alone) if alone else ''} | {cell(report['cold_sequence_s'][name])} | "
                     f"{cell(report['cached_s'][name])} |")
    if "fresh_clone" in report:
        clone = report["fresh_clone"]
        lines += ["", f"README's first command from a fresh clone: `pip install .` {clone['install_s']:.0f} s, "
                      f"`gdsim figures` {clone['figures_s']:.0f} s."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="fresh caches per measurement (default 2)")
    parser.add_argument("--clone", action="store_true", help="also time README's first command in a fresh clone")
    parser.add_argument("--json", default=str(ROOT / "benchmarks/results/first_use.json"))
    parser.add_argument("--md", default=str(ROOT / "benchmarks/results/first_use.md"))
    parser.add_argument("--child", nargs="+", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.out)
        return
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    report = measure(args.repeats, args.clone)
    Path(args.json).write_text(json.dumps(report, indent=1))
    Path(args.md).write_text(render(report))
    print(render(report))


if __name__ == "__main__":
    main()
