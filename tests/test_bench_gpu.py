"""benchmarks/gpu.py (``bench.py --target cuda``): its float64 peak is the datasheets', and
its comparison with the CPU runs end to end (in Numba's simulator here)."""

import os
import pathlib
import sys
import types

import numpy as np
import pytest

import gdsim

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "benchmarks"))
import bench  # noqa: E402
import gpu  # noqa: E402


@pytest.mark.parametrize("cc, sms, clock_khz, datasheet_tflops", [
    ((8, 0), 108, 1_410_000, 9.7),   # A100 SXM: 9.7 TFLOPS float64 (not the tensor cores')
    ((9, 0), 132, 1_980_000, 34.0),  # H100 SXM: 34 TFLOPS float64
])
def test_the_float64_peak_is_the_datasheets(monkeypatch, cc, sms, clock_khz, datasheet_tflops):
    from numba import cuda

    device = types.SimpleNamespace(name=b"GPU", compute_capability=cc, MULTIPROCESSOR_COUNT=sms, CLOCK_RATE=clock_khz)
    monkeypatch.setattr(cuda, "get_current_device", lambda: device)
    info = gpu.device_info()
    assert info["name"] == "GPU" and info["peak_flops"] / 1e12 == pytest.approx(datasheet_tflops, rel=0.02)


@pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") != "1", reason="needs Numba's CUDA simulator")
def test_a_tiny_sweep_on_cuda_agrees_with_the_cpu_and_prints(capsys):
    X, Y = gdsim.datasets.tutorial_line(seed=0)
    wl = bench._workload("L6", "tiny", gdsim.Linear(1, 1), X[:10], Y[:10], [-10.0, -20.0], [1e-3, 0.1],
                         [0.0, 0.9], batch_size=1, epochs=1, loop_subset=None)
    row = gpu.measure_workload(bench, wl, repeats=2)
    assert row["agreement"]["agree"] and row["agreement"]["n_common"] == 4 and row["agreement"]["n_compared"] >= 2
    assert row["cfg_updates_per_s"] == pytest.approx(4 * 10 / row["median_s"])
    assert np.isclose(row["min_s"], min(row["times_s"])) and len(row["times_s"]) == 2
    gpu.print_report({"device": gpu.device_info(), "rows": [row]})
    assert "L6 tiny" in capsys.readouterr().out
