"""Sweeps on a Dask cluster (a LocalCluster of worker processes): the same bits as here,
into memory or into a store, also when a worker dies in the middle."""

import os
import signal
import threading
import time

import numpy as np
import pytest

import gdsim
from conftest import assert_same_bits

distributed = pytest.importorskip("distributed")

X, Y = gdsim.datasets.teacher_mlp(n=256, sizes=(10, 8, 1))
MLP = gdsim.MLP((10, 8, 1))
GRID = dict(lr=np.geomspace(1e-3, 3.0, 24), momentum=np.linspace(0.0, 0.9, 10), batch_size=16, epochs=4,
            target="cpu")


@pytest.fixture(scope="module")
def here():
    return gdsim.sweep(MLP, X, Y, **GRID)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with distributed.Client(cluster) as c:
            yield c


def test_a_cluster_gives_the_same_bits_in_memory_and_in_a_store(here, client, tmp_path):
    assert_same_bits(gdsim.sweep(MLP, X, Y, scheduler=client, chunk_runs=17, **GRID), here)
    stored = gdsim.sweep(MLP, X, Y, scheduler=client, store=tmp_path / "a.zarr", chunk_runs=30, **GRID)
    assert_same_bits(stored.load(), here)
    address = client.scheduler.address
    assert_same_bits(gdsim.sweep(MLP, X, Y, scheduler=address, chunk_runs=64, **GRID), here)


def test_workers_write_their_regions_when_they_see_the_store_else_the_client_does(here, client, tmp_path,
                                                                                  monkeypatch):
    from gdsim.sweeps import executors, store

    seen = tmp_path / "seen"
    seen.write_text("")
    assert executors.workers_see(client, seen) and not executors.workers_see(client, tmp_path / "absent")
    written_by = []
    write = store.ResultStore.write
    monkeypatch.setattr(store.ResultStore, "write", lambda *a: written_by.append(os.getpid()) or write(*a))
    stored = gdsim.sweep(MLP, X, Y, scheduler=client, store=tmp_path / "w.zarr", chunk_runs=30, **GRID)
    assert written_by == []  # the patch lives in this process only: every region was written by a worker
    assert_same_bits(stored.load(), here)
    monkeypatch.setattr(store, "workers_see", lambda client, path: False)  # as if on another filesystem
    stored = gdsim.sweep(MLP, X, Y, scheduler=client, store=tmp_path / "c.zarr", chunk_runs=30, **GRID)
    assert written_by == [os.getpid()] * 8  # 240 runs in regions of 3 x 10
    assert_same_bits(stored.load(), here)
    assert not list((tmp_path / "w.zarr" / "gdsim_regions").glob(".*"))  # the probes are gone


def test_a_worker_killed_mid_run_changes_nothing(here, tmp_path):
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with distributed.Client(cluster) as client:
            client.wait_for_workers(2)
            pids = list(client.run(os.getpid).values())
            done = []

            def progress(runs, total):
                done.append(runs)

            def kill_one():  # once a few regions are in, one worker dies with its tasks
                deadline = time.monotonic() + 60
                while len(done) < 2 and time.monotonic() < deadline:
                    time.sleep(0.01)
                os.kill(pids[0], signal.SIGKILL)

            killer = threading.Thread(target=kill_one)
            killer.start()
            ds = gdsim.sweep(MLP, X, Y, scheduler=client, store=tmp_path / "k.zarr", chunk_runs=8, progress=progress,
                             **GRID)
            killer.join()
            assert pids[0] not in client.run(os.getpid).values()  # the worker did die (and was replaced)
    assert done[-1] == 240 and len(done) == 48  # every region once (rows of 8 + 2 momenta)
    assert_same_bits(ds.load(), here)


def test_scheduler_arguments_are_checked(tmp_path):
    with pytest.raises(gdsim.ParameterError, match="scheduler must be a distributed.Client or a scheduler's address"):
        gdsim.sweep(MLP, X, Y, scheduler=3, **GRID)
    with pytest.raises(gdsim.ParameterError, match="scheduler 'tcp://127.0.0.1:9': cannot connect"):
        gdsim.sweep(MLP, X, Y, scheduler="tcp://127.0.0.1:9", **GRID)


STUDY = """
title = "on a cluster"
figure = "heatmap"
target = "cpu"

[model]
type = "mlp"
sizes = [10, 8, 1]

[data]
name = "teacher_mlp"
n = 256
sizes = [10, 8, 1]

[train]
lr = {geomspace = [0.001, 3.0, 12]}
momentum = {linspace = [0.0, 0.9, 5]}
batch_size = 16
epochs = 4
"""


def test_gdsim_run_with_workers_gives_the_same_result(tmp_path, capsys):
    from gdsim import cli
    from gdsim.studies import load_dataset

    path = tmp_path / "c.toml"
    path.write_text(STUDY)
    args = ["run", str(path), "--figures", str(tmp_path / "f"), "--chunk-runs", "7"]
    assert cli.main(args + ["--results", str(tmp_path / "here")]) == 0
    assert cli.main(args + ["--results", str(tmp_path / "cluster"), "--workers", "2"]) == 0
    assert_same_bits(load_dataset(tmp_path / "cluster" / "c.zarr"), load_dataset(tmp_path / "here" / "c.zarr"))
    capsys.readouterr()
    assert cli.main(args + ["--results", str(tmp_path / "x"), "--workers", "0"]) == 2
    assert "--workers must be an integer in [1, inf], got 0" in capsys.readouterr().err
    assert cli.main(args + ["--results", str(tmp_path / "x"), "--workers", "1", "--scheduler", "tcp://h:1"]) == 2
    assert "not both" in capsys.readouterr().err


def test_tasks_take_consecutive_regions_fewer_as_the_sweep_ends():
    from gdsim.sweeps.executors import task_sizes

    for n_regions, threads in [(0, 2), (1, 2), (3, 2), (27, 2), (264, 2), (1000, 100)]:
        sizes = list(task_sizes(n_regions, threads))
        assert [a for a, _ in sizes] + [n_regions] == [0] + [b for _, b in sizes]  # consecutive, every region once
        lengths = [b - a for a, b in sizes]
        assert lengths == sorted(lengths, reverse=True) and (not lengths or lengths[-1] == 1)
    assert [b - a for a, b in task_sizes(264, 2)][:3] == [33, 28, 25]  # a quarter per thread of what is left
    assert len(list(task_sizes(264, 2))) == 38
    assert list(task_sizes(3)) == [(0, 1), (1, 2), (2, 3)]  # results sent back: one region a task



def test_a_new_store_on_a_cluster_gets_regions_enough_for_every_worker(client, tmp_path, monkeypatch):
    from gdsim.sweeps import run as sweep_run

    line, (x, y) = gdsim.Linear(1, 1), gdsim.datasets.tutorial_line()
    grid = dict(lr=np.geomspace(1e-3, 0.5, 40), momentum=np.linspace(0.0, 0.9, 64), epochs=2, batch_size=10,
                target="cpu")
    # Regions of at most 128 KiB of results (about 1700 runs of 74 bytes), 16 KiB at the least.
    monkeypatch.setattr(sweep_run, "REGION_BYTES", 128 * 2**10)
    local = gdsim.sweep(line, x, y, store=tmp_path / "here.zarr", **grid)
    spread = gdsim.sweep(line, x, y, scheduler=client, store=tmp_path / "cluster.zarr", **grid)
    n_regions = [len(list((tmp_path / name / "gdsim_regions").glob("[0-9]*.json")))
                 for name in ("here.zarr", "cluster.zarr")]
    assert n_regions[0] == 2 and n_regions[1] >= 2 * sweep_run.REGIONS_PER_THREAD  # 2 worker threads
    assert_same_bits(spread.load(), gdsim.sweep(line, x, y, **grid))
    assert_same_bits(local.load(), gdsim.sweep(line, x, y, **grid))
