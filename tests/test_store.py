"""Sweeps streamed to a Zarr store: the same bits as in memory, typed attributes, and a
resume that recomputes whatever is not intact and never mixes in wrong numbers."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest

import gdsim
from conftest import LINE_STUDY, assert_same_bits
from gdsim.sweeps import run as sweep_run
from gdsim.studies import store as study_store_module
from gdsim.sweeps import store as store_module
from gdsim.sweeps.executors import local_results
from gdsim.sweeps.store import chunk_shape, plan_regions

X, Y = gdsim.datasets.tutorial_line()
LINE = gdsim.Linear(1, 1)
GRID = dict(lr=np.geomspace(1e-3, 0.5, 7), momentum=[0.0, 0.5, 0.9], epochs=5, batch_size=[100, 10],
            seed=2**40, params0=[-10.0, -20.0], target="cpu")


@pytest.fixture(scope="module")
def in_memory():
    return gdsim.sweep(LINE, X, Y, **GRID)


@pytest.fixture
def counted(monkeypatch):
    """The runs computed, as the store asks for them."""
    asked = []
    real = sweep_run.run_points

    def run_points(spec, runs, progress=None):
        asked.append(len(runs))
        return real(spec, runs, progress)

    monkeypatch.setattr(sweep_run, "run_points", run_points)
    return asked


def test_regions_tile_the_grid_in_run_order():
    for shape, chunk_runs in [((7, 3, 2), 5), ((7, 3, 2), 6), ((7, 3, 2), 100), ((4,), 3), ((), 10), ((2, 5), 1)]:
        regions = plan_regions(shape, chunk_runs)
        covered = np.zeros(shape, dtype=int)
        for r, nxt in zip(regions, regions[1:] + [None]):
            covered[tuple(slice(a, b) for a, b in r.slices)] += 1
            flat = np.arange(int(np.prod(shape))).reshape(shape)[tuple(slice(a, b) for a, b in r.slices)]
            assert np.array_equal(flat.ravel(), np.arange(r.first, r.stop))  # contiguous runs
            assert r.stop - r.first <= max(chunk_runs, 1) or chunk_shape(shape, chunk_runs)[-1] == 1
            assert nxt is None or nxt.first == r.stop
        assert np.all(covered == 1)


def test_the_store_holds_the_in_memory_result_with_typed_attributes(in_memory, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = gdsim.sweep(LINE, X, Y, store=tmp_path / "a.zarr", chunk_runs=5, **GRID)
    assert [str(w.message) for w in caught] == []
    assert ds.loss.chunks is not None  # opened lazily
    assert_same_bits(ds.load(), in_memory)
    assert ds.attrs["shuffle"] is False and ds.attrs["seed"] == 2**40 and isinstance(ds.attrs["seed"], int)
    assert {k: v for k, v in ds.attrs.items() if k != "gdsim_store"} == in_memory.attrs


def _damage(store, how):
    """Damage the store's first region as ``how`` says; returns how many runs it holds."""
    record = store / "gdsim_regions" / "000000.json"
    if how == "record deleted":
        record.unlink()
    elif how == "record garbage":
        record.write_text("{not json")
    elif how == "record edited":
        data = json.loads(record.read_text())
        data["stop"] += 1
        record.write_text(json.dumps(data))
    elif how == "record of other data":
        data = json.loads(record.read_text())
        data["sha256"] = "0" * 64
        record.write_text(json.dumps(data))
    else:
        chunk = next(p for p in sorted((store / "loss").rglob("*")) if p.is_file() and p.name != "zarr.json")
        if how == "chunk truncated":
            chunk.write_bytes(chunk.read_bytes()[:7])
        elif how == "chunk garbage":
            chunk.write_bytes(b"\x00garbage" * 5)
        elif how == "chunk deleted":
            chunk.unlink()


@pytest.mark.parametrize("how", ["record deleted", "record garbage", "record edited", "record of other data",
                                 "chunk truncated", "chunk garbage", "chunk deleted"])
def test_a_damaged_region_is_computed_again(in_memory, tmp_path, counted, how):
    store = tmp_path / "a.zarr"
    gdsim.sweep(LINE, X, Y, store=store, chunk_runs=5, **GRID)
    _damage(store, how)
    counted.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = gdsim.sweep(LINE, X, Y, store=store, chunk_runs=7, **GRID)  # another chunk size: the store's is kept
    assert [str(w.message) for w in caught] == []
    first = plan_regions((7, 3, 2), 5)[0]
    assert counted == [first.stop - first.first] == [4]  # the damaged region only
    assert_same_bits(ds.load(), in_memory)


def test_an_intact_store_computes_nothing(tmp_path, counted):
    gdsim.sweep(LINE, X, Y, store=tmp_path / "a.zarr", **GRID)
    counted.clear()
    gdsim.sweep(LINE, X, Y, store=tmp_path / "a.zarr", **GRID)
    assert counted == []


def test_regions_on_threads_run_at_once_and_each_is_yielded_once():
    # Two regions can only pass the barrier together: computed one after another, the
    # first would wait for the second until the timeout and fail.
    barrier = threading.Barrier(2, timeout=20)
    regions = plan_regions((6,), 1)

    def work(region, offset):
        if region.first < 2:
            barrier.wait()
        return region.first + offset

    got = dict(local_results(work, (100,), regions, threads=2))
    assert {region.first: value for region, value in got.items()} == {i: 100 + i for i in range(6)}


def test_an_error_in_a_region_on_threads_stops_the_regions_not_started():
    started, finished = [], []

    def work(region):
        started.append(region.first)
        if region.first == 0:
            raise ValueError("region 0 failed")
        time.sleep(0.2)
        finished.append(region.first)
        return region.first

    with pytest.raises(ValueError, match="region 0 failed"):
        list(local_results(work, (), plan_regions((40,), 1), threads=2))
    # The regions already running have finished when the error comes out (none goes on
    # behind the caller's back); no other started.
    assert len(started) <= 5 and sorted(finished) == sorted(started[1:]) == sorted(set(started) - {0})


def test_a_train_study_runs_its_regions_on_threads_and_stores_the_same_bits(tmp_path, monkeypatch):
    from gdsim.studies import load_study, run_study

    study_file = tmp_path / "t.toml"
    study_file.write_text('title = "t"\nfigure = "trajectories"\nrunner = "train"\n' + textwrap.dedent(LINE_STUDY) + """
[train]
lr = [0.01, 0.02, 0.04, 0.08]
batch_size = "full"
epochs = 30
params0 = [-10.0, -20.0]
""")
    study = load_study(study_file)
    threads = set()
    real = store_module.local_results

    def spied(work, args, regions, threads_wanted=1):
        threads.add(threads_wanted)
        return real(work, args, regions, threads_wanted)

    monkeypatch.setattr(store_module, "local_results", spied)
    monkeypatch.setattr(study_store_module, "num_threads", lambda: 2)
    stored = run_study(study, store=tmp_path / "t.zarr").load()
    assert threads == {2}
    assert_same_bits(stored, run_study(study))


@pytest.mark.parametrize("change", [dict(epochs=6), dict(lr=[0.1, 0.2]), dict(params0=[-10.0, -21.0])])
def test_a_store_of_another_sweep_is_refused(tmp_path, change):
    gdsim.sweep(LINE, X, Y, store=tmp_path / "a.zarr", **GRID)
    before = sorted(p.name for p in (tmp_path / "a.zarr" / "gdsim_regions").iterdir())
    with pytest.raises(gdsim.ParameterError, match="a.zarr holds another result .*sweep_sha256"):
        gdsim.sweep(LINE, X, Y, store=tmp_path / "a.zarr", **{**GRID, **change})
    assert sorted(p.name for p in (tmp_path / "a.zarr" / "gdsim_regions").iterdir()) == before


def test_store_arguments_are_checked(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(gdsim.ParameterError, match="store"):
        gdsim.sweep(LINE, X, Y, store=tmp_path / "file", **GRID)
    with pytest.raises(gdsim.ParameterError, match="store must be the path"):
        gdsim.sweep(LINE, X, Y, store=3, **GRID)
    with pytest.raises(gdsim.ParameterError, match="chunk_runs"):
        gdsim.sweep(LINE, X, Y, store=tmp_path / "a.zarr", chunk_runs=0, **GRID)
    with pytest.raises(gdsim.ParameterError, match="chunk_runs is for a store"):
        gdsim.sweep(LINE, X, Y, chunk_runs=5, **GRID)
    (tmp_path / "junk.zarr").mkdir()
    with pytest.raises(gdsim.ParameterError, match="junk.zarr: not a result store"):
        gdsim.sweep(LINE, X, Y, store=tmp_path / "junk.zarr", **GRID)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "junk.zarr"]


def test_leftovers_of_an_interrupted_creation_are_removed(tmp_path):
    (tmp_path / ".a.zarr.x1y2.tmp").mkdir()
    gdsim.sweep(LINE, X, Y, store=tmp_path / "a.zarr", **GRID)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zarr"]


SCRIPT = """
import sys, numpy as np, gdsim
model = gdsim.MLP((10, 32, 1))
X, Y = gdsim.datasets.teacher_mlp(n=1024, sizes=(10, 32, 1))
gdsim.sweep(model, X, Y, lr=np.geomspace(1e-3, 3.0, 32), momentum=np.linspace(0, 0.9, 16), batch_size=16, epochs=6,
            target="cpu", store=sys.argv[1], chunk_runs=32)
"""


def test_kill_9_at_random_points_then_rerun_gives_the_same_bits(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    clean = tmp_path / "clean.zarr"
    subprocess.run([sys.executable, str(script), str(clean)], check=True, timeout=300)
    store = tmp_path / "killed.zarr"
    rng = np.random.default_rng(0)
    records = store / "gdsim_regions"
    interrupted = 0
    for _ in range(3):  # each kill lands after some regions are written, at a random moment
        process = subprocess.Popen([sys.executable, str(script), str(store)])
        deadline = time.monotonic() + 120
        before = len(list(records.glob("[0-9]*.json"))) if records.exists() else 0
        while process.poll() is None and time.monotonic() < deadline and (
                not records.exists() or len(list(records.glob("[0-9]*.json"))) <= before):
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.5))
        process.send_signal(signal.SIGKILL)
        process.wait()
        interrupted += 0 < len(list(records.glob("[0-9]*.json"))) < 16
    assert interrupted >= 2
    subprocess.run([sys.executable, str(script), str(store)], check=True, timeout=300)
    import xarray as xr

    assert_same_bits(xr.open_zarr(store, consolidated=False).load(), xr.open_zarr(clean, consolidated=False).load())
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert not list((store / "gdsim_regions").glob(".*.tmp"))
    assert os.path.isdir(store)


def test_a_grid_bigger_than_memory_streams_to_a_store(tmp_path, monkeypatch):
    """Free memory (pretended) for a few regions, not for the whole result: refused in
    memory, with the store as the way out, and streamed to the store."""
    grid = dict(GRID, lr=np.geomspace(1e-3, 0.5, 400))  # 2400 runs
    page = os.sysconf("SC_PAGE_SIZE")
    pages = 2**18 // page  # 256 KiB: the whole grid needs about 600 KiB
    monkeypatch.setattr(gdsim._resources, "available_memory", lambda: pages * page)
    with pytest.raises(gdsim.ParameterError, match="a sweep of 2400 runs .* stream the result to a store"):
        gdsim.sweep(LINE, X, Y, **grid)
    ds = gdsim.sweep(LINE, X, Y, store=tmp_path / "big.zarr", chunk_runs=120, **grid)
    monkeypatch.undo()
    assert_same_bits(ds.load(), gdsim.sweep(LINE, X, Y, **grid))


def test_a_plain_xr_open_zarr_reads_the_store_without_a_warning(in_memory, tmp_path):
    import xarray as xr

    gdsim.sweep(LINE, X, Y, store=tmp_path / "p.zarr", chunk_runs=10, **GRID)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # xarray warns when a Zarr store has no consolidated metadata
        with xr.open_zarr(tmp_path / "p.zarr") as opened:
            assert_same_bits(opened.load(), in_memory)


def test_each_region_is_written_with_the_bytes_xarray_writes(in_memory, tmp_path):
    """gdsim writes the regions' chunks through Zarr, not xarray's to_zarr(region=): the
    chunk files must be those xarray writes for the same dataset and chunks."""
    from pathlib import Path

    ours = gdsim.sweep(LINE, X, Y, store=tmp_path / "ours.zarr", chunk_runs=7, **GRID)
    chunks = {d: ours.chunks[d][0] for d in ours.dims}
    in_memory.chunk(chunks).to_zarr(tmp_path / "xarray.zarr", zarr_format=3, consolidated=False)

    def chunk_files(root):
        root = Path(root)
        return {str(p.relative_to(root)): p.read_bytes() for name in in_memory.data_vars
                for p in (root / name / "c").rglob("*") if p.is_file()}

    ours_files, theirs = chunk_files(tmp_path / "ours.zarr"), chunk_files(tmp_path / "xarray.zarr")
    assert len(theirs) > len(in_memory.data_vars)  # several regions of each variable
    assert ours_files.keys() == theirs.keys()
    assert [name for name in theirs if ours_files[name] != theirs[name]] == []
