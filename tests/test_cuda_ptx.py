"""The CUDA kernels on the real compiler: every variant gdsim can launch compiles to PTX
for sm_80 and sm_90 through NVVM, with no GPU (each build at least once: every dtype and
tracked build in global memory and with local arrays, every size class; the size classes
differ only in the length of their local arrays).

The rest of the suite runs the CUDA kernels in Numba's simulator (NUMBA_ENABLE_CUDASIM=1
for the whole pytest run), which neither type-checks nor compiles like numba-cuda does;
the compilation runs in a child process without that variable. It needs numba-cuda with
NVVM and NVRTC (``numba-cuda[cu13]``, in the ``test`` extra) and is skipped, naming what
is missing, without them.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import gdsim
from gdsim import sweeps
from gdsim.sweeps.plan import make_plan
from gdsim.sweeps.targets.cuda import kernel_build, kernel_signature
from gdsim.sweeps.targets.cuda_kernels import LOCAL_SIZES, MIN_BLOCKS, THREADS
from gdsim.sweeps.targets.cuda_variants import COMPUTE_CAPABILITIES, covering, kernel_variants

# The child: the libraries numba-cuda compiles with (skip if absent), then the covering
# variants for the compute capability given as its argument (one child per capability, at
# once: NVVM takes seconds per compile), one JSON line out.
CHILD = """
import json, sys
try:
    from cuda.pathfinder import load_nvidia_dynamic_lib
    for lib in ("nvvm", "nvrtc"):
        load_nvidia_dynamic_lib(lib)
except Exception as error:
    print(json.dumps({"skip": f"{type(error).__name__}: {error}".splitlines()[0]}))
    sys.exit(0)
from gdsim.sweeps.targets.cuda_variants import COMPUTE_CAPABILITIES, covering, kernel_variants, variant_ptx
sys.path.insert(0, "benchmarks")
from ptx_report import ptx_counts
found = []
cc = tuple(json.loads(sys.argv[1]))
for variant in covering(kernel_variants()):
    if cc in COMPUTE_CAPABILITIES:
        ptx = variant_ptx(variant, cc)
        lines = ptx.splitlines()
        found.append({"variant": variant.name, "cc": list(cc), "counts": ptx_counts(ptx),
                      "targets": [line.split()[1] for line in lines if line.startswith(".target")],
                      "entries": [line for line in lines if ".entry" in line],
                      "bounds": [line.split()[:2] for line in lines if line.startswith((".maxntid", ".minnctapersm"))]})
print(json.dumps({"ptx": found}))
"""


@pytest.fixture(scope="module")
def variants():
    return kernel_variants()


def test_the_variants_are_each_dtype_and_the_tracked_build_in_each_size_class(variants):
    # Tracks are float64 only (check_sweep refuses them in float32).
    builds = ["float32", "float64", "float64-tracked"]
    classes = [f"-local{size}" for size in LOCAL_SIZES] + ["-global"]
    assert sorted(v.name for v in variants) == sorted(b + c for b in builds for c in classes)
    for variant in variants:
        text = " ".join(variant.options)
        for option in ("model=Linear", "model=MLP", "loss=mse", "loss=cross_entropy"):
            # Linear(3, 2) has 8 parameters: the smallest class only.
            if option != "model=Linear" or variant.size == LOCAL_SIZES[0]:
                assert option in text, (variant.name, option)
    # Every kind of option was planned (none refused for a mistake of option_settings).
    text = " ".join(label for v in variants for label in v.options)
    for option in ("activation=tanh", "reduction=half_sum", "parameterization=ntk", "bias=False", "momentum=0.9",
                   "nesterov=[False, True]", "dampening=0.5", "weight_decay=", "lr_schedule=", "batch_size=[3, 12]",
                   "shuffle=True", "drop_last=True", "divergence=None", "track={'batch_grad_norm': 1}"):
        assert option in text, option
    assert len({(v.tracked, v.dtype, v.size, v.signature) for v in variants}) == len(variants)


def test_a_sweep_launches_a_listed_variant(variants):
    X, Y = gdsim.datasets.blobs(n=20, n_classes=3, n_features=2, seed=1)
    model = gdsim.MLP((2, 8, 8, 3), activation="sigmoid", loss="cross_entropy", reduction="sum")
    for dtype, track in (("float32", None), ("float64", {"batch_grad_norm": 3})):
        spec = sweeps.check_sweep(model, X, Y, lr=[0.1, 0.2], momentum=0.9, nesterov=True, batch_size=[4, 20],
                                  epochs=2, shuffle=True, target="cuda", dtype=dtype, track=track)
        plan = make_plan(spec, np.arange(spec.n_configs))
        launched = (kernel_build(plan), kernel_signature(plan))
        assert [v.name for v in variants if ((v.tracked, v.dtype, v.size), v.signature) == launched] == \
            [dtype + ("-tracked" if track else "") + "-local256"]  # 123 parameters


def test_every_variant_compiles_to_ptx_for_sm80_and_sm90(variants):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    root = pathlib.Path(gdsim.__file__).parent.parent  # the child imports this gdsim
    children = [subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(cc)], cwd=root, env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE) for cc in COMPUTE_CAPABILITIES]
    compiled = {}
    for child in children:
        out, err = child.communicate(timeout=900)
        assert child.returncode == 0, err[-3000:]
        report = json.loads(out.splitlines()[-1])
        if "skip" in report:
            pytest.skip(f"no CUDA compiler libraries (pip install 'numba-cuda[cu13]'): {report['skip']}")
        compiled |= {(r["variant"], tuple(r["cc"])): r for r in report["ptx"]}
    chosen = covering(variants)
    assert set(compiled) == {(v.name, cc) for v in chosen for cc in COMPUTE_CAPABILITIES}
    assert {(v.dtype, v.tracked, v.size > 0) for v in chosen} == {(v.dtype, v.tracked, v.size > 0) for v in variants}
    assert {v.size for v in chosen} == {*LOCAL_SIZES, 0}
    for (name, (major, minor)), result in compiled.items():
        assert result["targets"] == [f"sm_{major}{minor}"], name
        assert len(result["entries"]) == 1 and "sweep_kernel" in result["entries"][0], (name, result["entries"])
        # the launch bounds that cap the registers (cuda_kernels.MIN_BLOCKS blocks of THREADS)
        assert result["bounds"] == [[".maxntid", f"{THREADS},"], [".minnctapersm", str(MIN_BLOCKS)]], result["bounds"]
        counts = result["counts"]
        if name.startswith("float32"):
            # float32 computes in float32: float64 only for the divergence threshold (a
            # float64 factor) and the NTK scale's square root, not the sums and updates
            # (634 float64 instructions and 127 widenings before the literals were typed).
            assert counts["f64_instructions"] <= 32 and counts["f32_to_f64"] <= 4, (name, counts)
            assert counts["f32_instructions"] > 20 * counts["f64_instructions"], (name, counts)
        else:
            assert counts["f64_instructions"] > 20 * counts["f32_instructions"], (name, counts)
