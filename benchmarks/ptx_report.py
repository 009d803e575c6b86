"""What ptxas makes of gdsim's CUDA sweep kernel: registers, spills and occupancy per variant.

What is measured
----------------
Every kernel variant gdsim can launch
(:func:`gdsim.sweeps.targets.cuda_variants.kernel_variants`: one per dtype and build) is
compiled to PTX by NVVM for each compute capability of
:data:`~gdsim.sweeps.targets.cuda_variants.COMPUTE_CAPABILITIES` (sm_80, sm_90), exactly as
``tests/test_cuda_ptx.py`` does, and assembled by ``ptxas -v -arch=sm_XX`` (the
``nvidia-cuda-nvcc`` wheel's, or one on PATH), whose report gives, per kernel: registers
per thread, stack frame, spill stores and loads (bytes of local memory per thread), and
shared memory. No GPU is needed.

Theoretical occupancy (the CUDA Occupancy Calculator's rule), for a block of ``T``
threads (gdsim launches ``THREADS`` = 64) and ``R`` registers per thread, on sm_80 and
sm_90 alike (65536 registers, 2048 threads = 64 warps and 32 blocks per SM; registers
allocated per warp in units of 256, a warp's registers from one of the SM's 4 partitions
of 16384)::

    warps per block  W = ceil(T / 32)
    regs per warp    r = ceil(32 R / 256) * 256
    warps by regs      = 4 * floor(16384 / r)          (= floor(65536 / r) rounded down to 4)
    blocks per SM    B = min(floor(warps by regs / W), floor(2048 / T), 32)
    occupancy          = B * W / 64                    (active warps / the SM's 64)

The kernel uses no shared memory, so shared memory sets no limit.

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
             "register_unit": 256, "warp_size": 32}


def occupancy(registers, threads, limits=SM_LIMITS):
    """Theoretical occupancy of a kernel (see the module docstring for the formula).

    Parameters
    ----------
    registers : int
        Registers per thread (ptxas).
    threads : int
        Threads per block.
    limits : dict
        The SM's limits (:data:`SM_LIMITS`).

    Returns
    -------
    dict
        ``warps_per_block``, ``regs_per_warp``, ``blocks_by_registers``, ``blocks_by_threads``,
        ``blocks_by_blocks``, ``blocks_per_sm``, ``active_warps``, ``occupancy`` (0 to 1),
        ``limited_by``.
    """
    warps = math.ceil(threads / limits["warp_size"])
    unit = limits["register_unit"]
    per_warp = math.ceil(registers * limits["warp_size"] / unit) * unit
    partitions = limits["register_partitions"]
    warps_by_regs = partitions * (limits["registers"] // partitions // per_warp)
    by = {"registers": warps_by_regs // warps, "threads": limits["threads"] // threads, "blocks": limits["blocks"]}
    blocks = min(by.values())
    return {"warps_per_block": warps, "regs_per_warp": per_warp, "blocks_by_registers": by["registers"],
            "blocks_by_threads": by["threads"], "blocks_by_blocks": by["blocks"], "blocks_per_sm": blocks,
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

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in kernel_variants():
            for cc in COMPUTE_CAPABILITIES:
                arch = f"sm_{cc[0]}{cc[1]}"
                start = time.perf_counter()
                ptx = variant_ptx(variant, cc)
                nvvm_s = time.perf_counter() - start
                path = pathlib.Path(tmp) / f"{variant.name}-{arch}.ptx"
                path.write_text(ptx)
                start = time.perf_counter()
                done = subprocess.run([ptxas, "-v", f"-arch={arch}", "-o", os.devnull, str(path)],
                                      capture_output=True, text=True)
                if done.returncode:
                    raise RuntimeError(f"ptxas failed on {variant.name} {arch}:\n{done.stderr}")
                info = parse_ptxas(done.stderr)
                rows.append({"variant": variant.name, "arch": arch, "threads": variant.threads,
                             "nvvm_s": round(nvvm_s, 2), "ptxas_s": round(time.perf_counter() - start, 2),
                             **info, **ptx_counts(ptx), **occupancy(info["registers"], variant.threads),
                             "ptxas_report": done.stderr.strip(), "options": len(variant.options)})
                print(f"{variant.name} {arch}: {info['registers']} registers, {info['spill_stores']} B spill "
                      f"stores, occupancy {rows[-1]['occupancy']:.1%}", file=sys.stderr)
    return rows


def markdown(rows, toolchain):
    """The report as a Markdown page."""
    lines = ["# ptxas report of the CUDA sweep kernel", "",
             "Written by `benchmarks/ptx_report.py` (its docstring: what is measured, the occupancy formula).",
             "Toolchain: " + ", ".join(f"{k} {v}" for k, v in toolchain.items()) + ".", "",
             "| variant | arch | registers | stack frame (B) | spill stores (B) | spill loads (B) | "
             "blocks/SM (64 threads) | occupancy | limited by | PTX lines | f64 / f32 instructions | "
             "f32 -> f64 |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['arch']} | {r['registers']} | {r['stack_frame']} | {r['spill_stores']} | "
                     f"{r['spill_loads']} | {r['blocks_per_sm']} | {r['occupancy']:.1%} ({r['active_warps']}/64 "
                     f"warps) | {r['limited_by']} | {r['lines']} | {r['f64_instructions']} / "
                     f"{r['f32_instructions']} | {r['f32_to_f64']} |")
    lines += ["", "Occupancy = blocks/SM x warps per block / 64, blocks/SM = min(registers: 4 x floor(16384 / "
              "(ceil(32 R / 256) x 256)) / warps per block, threads: 2048 / 64, blocks: 32).", ""]
    lines += notes(rows)
    return "\n".join(lines) + "\n"


def notes(rows):
    """What the numbers say, and what a rework of the kernel for a real GPU would change
    (none of it done: the report only measures)."""
    regs = [r["registers"] for r in rows]
    occ = [r["occupancy"] for r in rows]
    spills = max(r["spill_stores"] + r["spill_loads"] + r["stack_frame"] for r in rows)
    by = {r["variant"]: r for r in rows if r["arch"] == "sm_90"}
    f32, f64, tracked = by.get("float32"), by.get("float64"), by.get("float64-tracked")
    text = ["## Reading", "",
            f"* **Registers, not spills, are the limit.** {min(regs)}-{max(regs)} registers per thread, "
            f"{'no' if not spills else spills} bytes of stack frame or spills: every variant's scratch "
            "(activations, deltas, gradient, momentum buffer) lives in global memory laid out "
            "`[k, run]`, so nothing spills, but the registers allow "
            f"{min(r['active_warps'] for r in rows)}-{max(r['active_warps'] for r in rows)} warps of 64 per SM "
            f"(occupancy {min(occ):.1%}-{max(occ):.1%}) for a kernel that waits on global memory at every "
            "step. A rework would try `max_registers` (numba-cuda's `cuda.jit(max_registers=...)`) or "
            f"launch bounds at 64 or 96 registers (occupancy {occupancy(64, rows[0]['threads'])['occupancy']:.0%}"
            f" or {occupancy(96, rows[0]['threads'])['occupancy']:.0%}), checking ptxas's spills and timing "
            "it on a GPU."]
    if f32 and f64:
        text += ["", f"* **The float32 kernel computes in float64.** Its PTX has {f32['f64_instructions']} "
                 f"float64 instructions against {f32['f32_instructions']} float32 ones and widens "
                 f"{f32['f32_to_f64']} float32 values to float64: the kernel's float literals (`s = 0.0`, "
                 "`2.0 *`, `1.0 / ...`) and the float64 `lr` and `hyper` arrays make Numba type the "
                 "sums and updates float64, then round to float32 on each store. Numba's simulator "
                 "follows NumPy's rules instead (a float32 plus a Python float stays float32) and the "
                 "CPU lane kernels accumulate in arrays of the sweep's dtype, so a GPU's float32 "
                 "numbers would differ from both (tests/test_sweep.py compares the simulator's float32 "
                 "to the CPU's at 1e-4). FP64 runs at half the FP32 rate on A100/H100 (1/32-1/64 on "
                 "consumer GPUs). A rework would type the accumulators (`s = 0.0`) and the "
                 "hyper-parameters with the sweep's dtype, and check the result on a GPU."]
    if tracked and f64:
        text += ["", f"* **The tracked build is {tracked['lines'] / f64['lines']:.1f}x the PTX** "
                 f"({tracked['lines']} lines against {f64['lines']}): NVVM inlines `batch_loss` (forward "
                 "and backward over the data) once more for `track_full`. It costs "
                 f"{tracked['registers'] - f64['registers']:+d} registers on sm_90 and no occupancy; "
                 "the untracked build carries none of it."]
    text += ["", "* **Block size.** gdsim launches 64 threads per block; registers cap an SM at "
             f"{min(r['blocks_per_sm'] for r in rows)}-{max(r['blocks_per_sm'] for r in rows)} such blocks. "
             "A sweep of fewer than (number of SMs) x 64 runs (8448 on an H100 SXM's 132 SMs) "
             "leaves SMs idle; 32-thread blocks would spread small sweeps over twice the SMs.",
             "", f"* **Compile time.** NVVM takes {min(r['nvvm_s'] for r in rows):.0f}-"
             f"{max(r['nvvm_s'] for r in rows):.0f} s per variant here and ptxas "
             f"{min(r['ptxas_s'] for r in rows):.1f}-{max(r['ptxas_s'] for r in rows):.1f} s: the first "
             "launch in a process pays both (the driver assembles the PTX), every process again, since "
             "the kernel is not cached on disk."]
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
