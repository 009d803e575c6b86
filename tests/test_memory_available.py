"""Memory checks read what a new allocation can have: MemAvailable (not the free pages),
capped by the memory limit of the process's control group (a container, a Slurm job)."""

import numpy as np
import pytest

import gdsim
from gdsim import _resources

MEMINFO = """MemTotal:       24000000 kB
MemFree:         1000000 kB
MemAvailable:   20000000 kB
Buffers:          100000 kB
"""


@pytest.fixture
def proc(tmp_path, monkeypatch):
    """Fake /proc/meminfo, /proc/self/cgroup and /sys/fs/cgroup under ``tmp_path``."""
    (tmp_path / "meminfo").write_text(MEMINFO)
    monkeypatch.setattr(_resources, "MEMINFO", tmp_path / "meminfo")
    monkeypatch.setattr(_resources, "PROC_CGROUP", tmp_path / "cgroup")
    monkeypatch.setattr(_resources, "CGROUP_ROOT", tmp_path / "sys")
    return tmp_path


def group(root, folder, **files):
    folder = root / "sys" / folder
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name.replace("_", ".", 1)).write_text(text)


def test_memavailable_counts_not_the_free_pages(proc):
    assert _resources.available_memory() == 20000000 * 1024


def test_a_cgroup_v2_limit_caps_it_and_max_means_none(proc):
    (proc / "cgroup").write_text("0::/job/step\n")
    group(proc, "job/step", memory_max=f"{8 * 2**30}\n", memory_current=f"{2**30}\n")
    assert _resources.available_memory() == 7 * 2**30
    group(proc, "job/step", memory_max="max\n")
    assert _resources.available_memory() == 20000000 * 1024
    group(proc, "job", memory_max=f"{3 * 2**30}\n", memory_current=f"{2**30}\n")  # the job's, above its step
    assert _resources.available_memory() == 2 * 2**30


def test_a_cgroup_v1_limit_caps_it_and_its_huge_default_means_none(proc):
    (proc / "cgroup").write_text("12:pids:/x\n4:memory:/slurm/uid_0/job_7\n1:name=systemd:/x\n")
    group(proc, "memory/slurm/uid_0/job_7", memory_limit_in_bytes=f"{4 * 2**30}\n",
          memory_usage_in_bytes=f"{3 * 2**30}\n")
    assert _resources.available_memory() == 2**30
    group(proc, "memory/slurm/uid_0/job_7", memory_limit_in_bytes="9223372036854771712\n")
    assert _resources.available_memory() == 20000000 * 1024


def test_unreadable_files_fall_back_to_the_free_pages(proc):
    (proc / "meminfo").write_text("garbage\n")
    (proc / "cgroup").write_text("0::/gone\n")  # no such group folder
    available = _resources.available_memory()
    assert available is None or available > 0


def test_a_sweep_bigger_than_the_cgroup_room_is_refused_naming_what_is_available(proc):
    (proc / "cgroup").write_text("0::/\n")
    group(proc, "", memory_max=f"{2**20}\n", memory_current="0\n")
    X, Y = gdsim.datasets.tutorial_line()
    with pytest.raises(gdsim.ParameterError, match=r"needs about .* of memory but only 1.0 MiB is available"):
        gdsim.sweep(gdsim.Linear(1, 1), X, Y, lr=np.geomspace(1e-3, 0.1, 100), momentum=np.linspace(0, 0.9, 100),
                    epochs=20)  # 10^4 runs: their losses alone are 1.6 MiB


def test_a_sweep_reads_the_free_memory_once_and_still_refuses_what_does_not_fit(monkeypatch):
    readings = []

    def reading(room):
        def available():
            readings.append(room)
            return room
        return available

    X, Y = gdsim.datasets.tutorial_line()
    grid = {"lr": np.geomspace(1e-3, 0.1, 4), "momentum": [0.0, 0.5], "epochs": 3, "seed": [0, 1]}
    monkeypatch.setattr(_resources, "available_memory", reading(2**40))
    gdsim.sweep(gdsim.Linear(1, 1), X, Y, **grid)  # three checks: the spec's, the schedule's, the plan's
    assert len(readings) == 1
    assert _resources.check_memory(1, "x", "y") is None and len(readings) == 2  # outside a sweep: read at each check
    monkeypatch.setattr(_resources, "available_memory", reading(100))
    with pytest.raises(gdsim.ParameterError, match=r"a sweep of 16 runs of 3 epochs needs about .* but only 100 B"):
        gdsim.sweep(gdsim.Linear(1, 1), X, Y, **grid)
    with _resources.one_memory_reading():  # nested blocks share the outer reading
        with _resources.one_memory_reading():
            _resources.check_memory(50, "x", "y")
        with pytest.raises(gdsim.ParameterError, match="needs about 200 B"):
            _resources.check_memory(200, "x", "y")
    assert readings.count(100) == 2
