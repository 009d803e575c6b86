"""What ptxas makes of gdsim's CUDA sweep kernel: registers, spills and occupancy per variant.

What is measured
----------------
Every kernel variant gdsim can launch
(:func:`gdsim.sweeps.targets.cuda_variants.kernel_variants`: one per dtype, build and size
class) is compiled to PTX by NVVM for each compute capability of
:data:`~gdsim.sweeps.targets.cuda_variants.COMPUTE_CAPABILITIES` (sm_80, sm_90), as
``tests/test_cuda_ptx.py`` does (which compiles a covering subset), and assembled by
``ptxas -v -arch=sm_XX`` (the ``nvidia-cuda-nvcc`` wheel's, or one on PATH), whose report
gives, per kernel: registers per thread, stack frame (the local arrays and the spill
slots), spill stores and loads (bytes of local memory per thread), and shared memory per
block. Each variant is compiled twice: with gdsim's launch bounds (what it launches) and
without (``registers unbounded``: what ptxas would take). No GPU is needed.

Theoretical occupancy (the CUDA Occupancy Calculator's rule), for a block of ``T``
threads (gdsim launches ``THREADS`` = 64) and ``R`` registers per thread, on sm_80 and
sm_90 alike (65536 registers, 2048 threads = 64 warps and 32 blocks per SM; registers
allocated per warp in units of 256, a warp's registers from one of the SM's 4 partitions
of 16384)::

    warps per block  W = ceil(T / 32)
    regs per warp    r = ceil(32 R / 256) * 256
    warps by regs      = 4 * floor(16384 / r)          (= floor(65536 / r) rounded down to 4)
    blocks by smem     = floor(S_SM / (S + 1024))      (S: the block's shared memory, 1 KiB
                                                        reserved per block; S_SM = 164 KiB on
                                                        sm_80, 228 KiB on sm_90)
    blocks per SM    B = min(floor(warps by regs / W), blocks by smem, floor(2048 / T), 32)
    occupancy          = B * W / 64                    (active warps / the SM's 64)

Also counted, in the PTX: its lines, and the floating-point instructions in float64
(``.f64``) and in float32 (``.f32``), and the float32 values widened to float64: what
precision each variant computes in.

How to run::

    pip install -e ".[ptx]"         # numba-cuda[cu13] (NVVM, NVRTC) and nvidia-cuda-nvcc (ptxas)
    python benchmarks/ptx_report.py   # NUMBA_ENABLE_CUDASIM must not be set

Output: ``benchmarks/results/ptx.md`` (the table and its reading) and ``ptx.json`` (every
number, the toolchain's versions, ptxas's report, and the option settings planned to each
variant).
"""

import argparse
import importlib.metadata
import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

RESULTS = pathlib.Path(__file__).parent / "results"

#: Limits of one SM, sm_80 and sm_90 (CUDA C Programming Guide, compute capabilities table).
SM_LIMITS = {"registers": 65536, "register_partitions": 4, "threads": 2048, "warps": 64, "blocks": 32,
             "register_unit": 256, "warp_size": 32, "smem_reserved_per_block": 1024,
             "smem": {"sm_80": 167936, "sm_90": 233472}}


def occupancy(registers, threads, smem=0, arch="sm_90", limits=SM_LIMITS):
    """Theoretical occupancy of a kernel (see the module docstring for the formula).

    Parameters
    ----------
    registers : int
        Registers per thread (ptxas).
    threads : int
        Threads per block.
    smem : int
        Shared memory per block, bytes (ptxas).
    arch : str
        ``sm_80`` or ``sm_90`` (their shared memory per SM).
    limits : dict
        The SM's limits (:data:`SM_LIMITS`).

    Returns
    -------
    dict
        ``warps_per_block``, ``regs_per_warp``, ``blocks_by_registers``, ``blocks_by_threads``,
        ``blocks_by_blocks``, ``blocks_by_smem``, ``blocks_per_sm``, ``active_warps``,
        ``occupancy`` (0 to 1), ``limited_by``.
    """
    warps = math.ceil(threads / limits["warp_size"])
    unit = limits["register_unit"]
    per_warp = math.ceil(registers * limits["warp_size"] / unit) * unit
    partitions = limits["register_partitions"]
    warps_by_regs = partitions * (limits["registers"] // partitions // per_warp)
    by = {"registers": warps_by_regs // warps, "threads": limits["threads"] // threads, "blocks": limits["blocks"]}
    if smem:
        by["shared memory"] = limits["smem"][arch] // (smem + limits["smem_reserved_per_block"])
    blocks = min(by.values())
    return {"warps_per_block": warps, "regs_per_warp": per_warp, "blocks_by_registers": by["registers"],
            "blocks_by_threads": by["threads"], "blocks_by_blocks": by["blocks"],
            "blocks_by_smem": by.get("shared memory"), "blocks_per_sm": blocks,
            "active_warps": blocks * warps, "occupancy": blocks * warps / limits["warps"],
            "limited_by": min(by, key=by.get)}


def parse_ptxas(text):
    """The numbers of ``ptxas -v``'s report of one kernel.

    Returns
    -------
    dict
        ``registers``, ``stack_frame``, ``spill_stores``, ``spill_loads``, ``lmem``,
        ``smem`` (bytes per thread or per block; 0 when ptxas does not mention them).
    """
    def number(pattern):
        found = re.search(pattern, text)
        return int(found.group(1)) if found else 0

    registers = re.search(r"Used (\d+) registers", text)
    if not registers:
        raise ValueError(f"no register count in ptxas's report:\n{text}")
    return {"registers": int(registers.group(1)), "stack_frame": number(r"(\d+) bytes stack frame"),
            "spill_stores": number(r"(\d+) bytes spill stores"), "spill_loads": number(r"(\d+) bytes spill loads"),
            "lmem": number(r"(\d+) bytes lmem"), "smem": number(r"(\d+) bytes smem")}


def ptx_counts(ptx):
    """Lines and floating-point instructions of a PTX text: ``f64_instructions`` and
    ``f32_instructions`` (opcodes with ``.f64`` or ``.f32``, conversions left out) and
    ``f32_to_f64`` (``cvt.f64.f32``, each a float32 value widened to float64)."""
    body = [line.strip() for line in ptx.splitlines()]
    ops = [line.split()[0] for line in body if line and not line.startswith(("//", ".", "{", "}", "$", "@"))]
    ops += [line.split()[1] for line in body if line.startswith("@") and len(line.split()) > 1]  # predicated
    arithmetic = [op for op in ops if not op.startswith("cvt")]
    return {"lines": len(body), "f64_instructions": sum(".f64" in op for op in arithmetic),
            "f32_instructions": sum(".f32" in op for op in arithmetic),
            "f32_to_f64": sum(op.startswith("cvt.f64.f32") for op in ops)}


def find_ptxas():
    """The path of ptxas: the ``nvidia-cuda-nvcc`` wheel's, else one on PATH (None: none)."""
    try:
        from cuda.pathfinder import find_nvidia_binary_utility

        found = find_nvidia_binary_utility("ptxas")
    except Exception:  # pathfinder missing or too old: fall back to PATH
        found = None
    return found or shutil.which("ptxas")


def versions(ptxas):
    """Versions of the toolchain (packages and ptxas)."""
    found = {}
    for name in ("numba", "numba-cuda", "nvidia-nvvm", "nvidia-cuda-nvrtc", "nvidia-cuda-nvcc"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    found["ptxas"] = subprocess.run([ptxas, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return found


def measure(ptxas):
    """Compile and assemble every variant for every compute capability.

    Returns
    -------
    list of dict
        One per variant and compute capability.
    """
    from gdsim.sweeps.targets.cuda_variants import COMPUTE_CAPABILITIES, kernel_variants, variant_ptx

    def assemble(ptx, path, arch):
        path.write_text(ptx)
        done = subprocess.run([ptxas, "-v", f"-arch={arch}", "-o", os.devnull, str(path)],
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"ptxas failed on {path.name}:\n{done.stderr}")
        return done.stderr

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in kernel_variants():
            for cc in COMPUTE_CAPABILITIES:
                arch = f"sm_{cc[0]}{cc[1]}"
                start = time.perf_counter()
                ptx = variant_ptx(variant, cc)
                nvvm_s = time.perf_counter() - start
                path = pathlib.Path(tmp) / f"{variant.name}-{arch}.ptx"
                start = time.perf_counter()
                report = assemble(ptx, path, arch)
                ptxas_s = time.perf_counter() - start
                info = parse_ptxas(report)
                unbounded = parse_ptxas(assemble(variant_ptx(variant, cc, min_blocks=None), path, arch))
                rows.append({"variant": variant.name, "arch": arch, "threads": variant.threads, "size": variant.size,
                             "nvvm_s": round(nvvm_s, 2), "ptxas_s": round(ptxas_s, 2), **info, **ptx_counts(ptx),
                             **occupancy(info["registers"], variant.threads, info["smem"], arch),
                             "unbounded": {**unbounded, "occupancy": occupancy(unbounded["registers"], variant.threads,
                                                                              unbounded["smem"], arch)["occupancy"]},
                             "ptxas_report": report.strip(), "options": len(variant.options)})
                print(f"{variant.name} {arch}: {info['registers']} registers, {info['spill_stores']} B spill "
                      f"stores, occupancy {rows[-1]['occupancy']:.1%}", file=sys.stderr)
    return rows


def markdown(rows, toolchain):
    """The report as a Markdown page."""
    lines = ["# ptxas report of the CUDA sweep kernel", "",
             "Written by `benchmarks/ptx_report.py` (its docstring: what is measured, the occupancy formula).",
             "Toolchain: " + ", ".join(f"{k} {v}" for k, v in toolchain.items()) + ".", "",
             "| variant | arch | registers | stack frame (B) | spill stores (B) | spill loads (B) | smem (B) | "
             "blocks/SM (64 threads) | occupancy | limited by | registers unbounded (occupancy) | PTX lines | "
             "f64 / f32 instructions | f32 -> f64 |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['arch']} | {r['registers']} | {r['stack_frame']} | {r['spill_stores']} | "
                     f"{r['spill_loads']} | {r['smem']} | {r['blocks_per_sm']} | {r['occupancy']:.1%} "
                     f"({r['active_warps']}/64 warps) | {r['limited_by']} | {r['unbounded']['registers']} "
                     f"({r['unbounded']['occupancy']:.1%}) | {r['lines']} | {r['f64_instructions']} / "
                     f"{r['f32_instructions']} | {r['f32_to_f64']} |")
    lines += ["", "Occupancy = blocks/SM x warps per block / 64, blocks/SM = min(registers: 4 x floor(16384 / "
              "(ceil(32 R / 256) x 256)) / warps per block, shared memory: floor(S_SM / (smem + 1024)), "
              "threads: 2048 / 64, blocks: 32). Stack frame: the local arrays (5 x size class x 4 or 8 B) "
              "and the spill slots.", ""]
    lines += notes(rows)
    return "\n".join(lines) + "\n"


#: The report before the rework (benchmarks/results/ptx.md at commit 07193af, sm_90): one
#: build per dtype, each run's arrays in global memory ``[k, run]``, no staging, no launch
#: bounds: registers, occupancy, float64 / float32 instructions, float32 -> float64, PTX lines.
BEFORE = {"float32": (124, 0.25, 634, 466, 127, 5600), "float64": (129, 0.1875, 1268, 39, 4, 6174),
          "float64-tracked": (160, 0.1875, 2743, 87, 8, 14234)}


def span(values, fmt="{}"):
    """``min-max`` of ``values`` (one number if they are equal)."""
    low, high = fmt.format(min(values)), fmt.format(max(values))
    return low if low == high else f"{low}-{high}"


def notes(rows):
    """What the numbers say, against the report before the CUDA rework (:data:`BEFORE`)."""
    sm90 = [r for r in rows if r["arch"] == "sm_90"]
    by = {r["variant"]: r for r in sm90}
    builds = [name for name in BEFORE if any(v.startswith(name + "-") for v in by)]
    text = ["## Reading", "",
            "No GPU was available for this report: every number is the compiler's (NVVM, ptxas), "
            "nothing was timed, and whether the rework is faster on a GPU is not known "
            "(`benchmarks/bench.py --target cuda` is the check).", "",
            "**Before and after the rework, sm_90.** Before (commit 07193af): one build per dtype, "
            "every run's parameters, momentum buffer, gradient, activations and deltas in global "
            "memory `[k, run]`, the samples read from global memory, no launch bounds. After: "
            "builds per size class with those arrays in `cuda.local.array`s (`-local16/64/256`; "
            "`-global`: models of more than 256 parameters, as before), the batch's samples staged "
            "in shared memory, launch bounds of 64 threads x 8 blocks per SM.", "",
            "| build | before: registers (occupancy) | after: registers (occupancy), bounded | "
            "after: registers unbounded | stack frame (B) | spill loads (B) | smem (B) |",
            "|---|---|---|---|---|---|---|"]
    for name in builds:
        ordered = sorted(by, key=lambda v: (by[v]["size"] == 0, by[v]["size"]))  # local16, ..., global
        after = [by[v] for v in ordered
                 if v.startswith(name + "-") and v[len(name) + 1:].startswith(("local", "global"))]
        regs, occ = BEFORE[name][:2]
        for r in after:
            text.append(f"| {r['variant']} | {regs} ({occ:.1%}) | {r['registers']} ({r['occupancy']:.1%}) | "
                        f"{r['unbounded']['registers']} ({r['unbounded']['occupancy']:.1%}) | {r['stack_frame']} | "
                        f"{r['spill_loads']} | {r['smem']} |")
    f32 = [r for r in sm90 if r["variant"].startswith("float32-")]
    if f32:
        before = BEFORE["float32"]
        text += ["", f"* **float32 computes in float32.** Before: {before[2]} float64 instructions against "
                 f"{before[3]} float32 ones and {before[4]} float32 values widened to float64 (Numba types "
                 "a Python float literal float64, and `lr` and `hyper` were float64 arrays). Now "
                 f"{span([r['f64_instructions'] for r in f32])} float64 against "
                 f"{span([r['f32_instructions'] for r in f32])} float32 instructions and "
                 f"{span([r['f32_to_f64'] for r in f32])} widenings: the float literals of the kernel and "
                 "of `gdsim.scalar` are typed with the sweep's dtype (`gdsim._jit.in_dtype`), integers "
                 "meeting floats are converted to it and `lr`, `hyper` are passed in it. What stays "
                 "float64: the divergence threshold (a float64 factor times the initial loss, as on the "
                 "CPU) and the NTK scale `1/sqrt(fan_in)` (rounded to float32 once per layer). The "
                 "float64 builds are unchanged by this (tests compare them with the CPU at 1e-12)."]
    local = [r for r in sm90 if r["size"]]
    if local:
        big = max(local, key=lambda r: r["stack_frame"])
        small = min(local, key=lambda r: r["stack_frame"])
        resident = 8 * 64  # threads per SM at the launch bounds
        text += ["", "* **Local arrays.** Each thread's five arrays take 5 x size class x 4 or 8 bytes of "
                 f"stack frame ({span([r['stack_frame'] for r in local])} B with the spill slots): ptxas "
                 "keeps them in local memory, not registers (their indices are run-time loop counters "
                 "over the model's layer sizes), interleaved by thread so that a warp's accesses "
                 "coalesce. The 512 threads an SM holds at the launch bounds have "
                 f"{small['stack_frame'] * resident / 1024:.0f} KiB ({small['variant']}) to "
                 f"{big['stack_frame'] * resident / 2**20:.1f} MiB ({big['variant']}) of it, against at "
                 "most 192 KiB of L1 beside the staged samples on an H100 (256 KiB of L1 and shared "
                 "memory per SM): no class stays in L1, all of them in L2 (50 MB on an H100), as the "
                 "global `[k, run]` arrays did, but with per-thread addressing and no stride of "
                 "n_runs. Whether that is faster is unmeasured. The driver reserves local memory for "
                 "every thread the GPU can hold: "
                 f"{big['stack_frame']} B x 2048 x 132 SMs = "
                 f"{big['stack_frame'] * 2048 * 132 / 1e9:.1f} GB on an H100 for {big['variant']}, which "
                 "is why the classes stop at 256 parameters; larger models keep the global-memory build."]
    text += ["", f"* **Registers.** Unbounded, ptxas takes {span([r['unbounded']['registers'] for r in rows])} "
             f"registers (occupancy {span([r['unbounded']['occupancy'] for r in rows], '{:.1%}')}): more than "
             "before, from the local arrays' and the staging's address arithmetic and the loops every "
             "thread of a staged block runs in step. The launch bounds (`cuda_kernels.MIN_BLOCKS` = 8 "
             "blocks of 64) cap them at 128: occupancy "
             f"{span([r['occupancy'] for r in rows], '{:.1%}')} (before 18.8%-25.0%), at "
             f"{span([r['spill_stores'] for r in rows])} B of spill stores and "
             f"{span([r['spill_loads'] for r in rows])} B of spill loads per thread in the code (ptxas's "
             "static count, not traffic). A tighter bound, 10 blocks (96 registers, 31.2%), spilled "
             "240-468 B of stores and 468-1436 B of loads in float64-global, float64-tracked-local64 "
             "and float32-local16 on sm_90 when the bound was chosen; which pays is a question for a GPU."]
    smem = [r for r in rows if r["smem"]]
    if smem:
        text += ["", f"* **Shared memory.** {span([r['smem'] for r in smem])} B per block (`STAGE` = 1024 "
                 "elements of the dtype) for the samples of a batch, staged by the block when all its "
                 "runs share their sample order (the host orders the runs by group); an SM fits "
                 f"{span([r['blocks_by_smem'] for r in smem])} such blocks, so shared memory is not the "
                 "limit. Blocks across two groups, and samples of more than 1024 numbers, read the "
                 "data from global memory."]
    tracked = [r for r in sm90 if "-tracked-" in r["variant"]]
    untracked = {r["variant"]: r for r in sm90}
    pairs = [(r, untracked.get(r["variant"].replace("-tracked", ""))) for r in tracked]
    pairs = [(t, u) for t, u in pairs if u]
    if pairs:
        text += ["", f"* **The tracked build is {span([t['lines'] / u['lines'] for t, u in pairs], '{:.1f}')}x "
                 "the PTX** of the untracked one: NVVM inlines `batch_loss` once more for `track_full`; "
                 "the untracked build carries none of it."]
    text += ["", "* **Launches.** 64 threads per block; the runs go in launches of (SMs x 2048) runs "
             "(270,336 on an H100 SXM), whole blocks, waiting for each: progress is reported after "
             "each and Ctrl-C stops between them. A sweep of fewer than (SMs) x 64 runs (8448 on "
             "an H100) leaves SMs idle.",
             "", f"* **Compile time.** NVVM takes {span([r['nvvm_s'] for r in rows], '{:.0f}')} s per "
             f"variant here and ptxas {span([r['ptxas_s'] for r in rows], '{:.1f}')} s: the first launch "
             "of each build in a process pays both, every process again (no disk cache). A process "
             "compiles only the builds its sweeps use (dtype, tracked, size class: "
             f"{len({r['variant'] for r in rows})} in all)."]
    return text


def main(argv=None):
    """Write ``benchmarks/results/ptx.{md,json}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS, help="folder of ptx.md and ptx.json")
    args = parser.parse_args(argv)
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        sys.exit("ptx_report.py: unset NUMBA_ENABLE_CUDASIM (the simulator compiles nothing)")
    ptxas = find_ptxas()
    if ptxas is None:
        sys.exit('ptx_report.py: no ptxas: pip install -e ".[ptx]" (nvidia-cuda-nvcc)')
    toolchain = versions(ptxas)
    rows = measure(ptxas)
    args.out.mkdir(parents=True, exist_ok=True)
    from gdsim.sweeps.targets.cuda_variants import kernel_variants

    launched_by = {v.name: list(v.options) for v in kernel_variants()}  # the sweeps planned to each variant
    (args.out / "ptx.json").write_text(json.dumps({"toolchain": toolchain, "sm_limits": SM_LIMITS, "rows": rows,
                                                   "variants": launched_by}, indent=1) + "\n")
    (args.out / "ptx.md").write_text(markdown(rows, toolchain))
    print(markdown(rows, toolchain))


if __name__ == "__main__":
    main()
