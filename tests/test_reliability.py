"""Studies survive interruption, give the same bits every time, and contain numerical faults."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numba
import numpy as np
import pytest

import gdsim
from gdsim import cli
from gdsim.studies import StudyError, load_dataset, load_study, regions_saved, run_studies, run_study

# An MLP sweep of 512 runs in 16 chunks of 32: about 0.15 s a chunk on 2 cores.
MLP_STUDY = """
title = "resumable"
figure = "heatmap"
target = "parallel"

[model]
type = "mlp"
sizes = [10, 32, 1]

[data]
name = "teacher_mlp"
n = 1024
sizes = [10, 32, 1]

[train]
lr = {geomspace = [0.001, 3.0, 32]}
momentum = {linspace = [0.0, 0.9, 16]}
batch_size = 16
epochs = 6
"""


def write(folder, name, text):
    path = folder / f"{name}.toml"
    path.write_text(textwrap.dedent(text))
    return path


def bits(a):
    """Floats as their bytes (so NaN == NaN and -0.0 != 0.0); integers as int64."""
    a = np.ascontiguousarray(a)
    return a.view(np.uint8) if a.dtype.kind == "f" else a.astype(np.int64) if a.dtype.kind in "iu" else a


def assert_identical(a, b):
    """Every variable and coordinate bit for bit, and the same attributes."""
    assert set(a.variables) == set(b.variables)
    for name in a.variables:
        x, y = a[name].transpose(*b[name].dims).values, b[name].values
        assert x.dtype.kind == y.dtype.kind and x.shape == y.shape, name
        assert np.array_equal(bits(x), bits(y)), name
    assert a.attrs.keys() - {"gdsim_store"} == b.attrs.keys() - {"gdsim_store"}  # the store's own bookkeeping


def saved(store):
    """How many regions of ``store`` have their record."""
    return regions_saved(store)


def gdsim_command(*args):
    return [sys.executable, "-m", "gdsim.cli", *map(str, args)]


@pytest.fixture(scope="module")
def mlp_study(tmp_path_factory):
    """The study file, and its result from one uninterrupted run in this process (which
    also fills the on-disk compile cache the subprocesses load)."""
    folder = tmp_path_factory.mktemp("study")
    path = write(folder, "resumable", MLP_STUDY)
    return path, run_study(load_study(path))


def test_a_study_killed_with_sigkill_resumes_to_the_same_dataset(mlp_study, tmp_path):
    path, clean = mlp_study
    results = tmp_path / "results"
    store = results / "resumable.zarr"
    rng = random.Random(0)
    interrupted = 0
    for attempt in range(4):
        process = subprocess.Popen(gdsim_command("run", path, "--results", results, "--figures", tmp_path / "f",
                                                 "--chunk-runs", 32), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        # Wait for a few more regions than the last attempt left, then kill at a random moment.
        target = 2 + 3 * attempt
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            if saved(store) >= target:
                time.sleep(rng.uniform(0.0, 0.15))
                break
            time.sleep(0.005)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            interrupted += 0 < saved(store) < 16
        if saved(store) == 16:
            break
    assert interrupted >= 2  # the kills did land in the middle of the run
    # The same command finishes the run from the regions in the store.
    done = subprocess.run(gdsim_command("run", path, "--results", results, "--figures", tmp_path / "f"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming from" in done.stdout or interrupted == 0
    assert_identical(load_dataset(store), clean)


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(mlp_study, tmp_path):
    path, clean = mlp_study
    results = tmp_path / "results"
    store = results / "resumable.zarr"
    process = subprocess.Popen(gdsim_command("run", path, "--results", results, "--figures", tmp_path / "f",
                                             "--chunk-runs", 32), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline and (not store.exists() or saved(store) < 3):
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("the run finished before Ctrl-C arrived")
    assert process.returncode == 130
    assert "run the same command again to resume" in err and "Traceback" not in err
    assert 3 <= saved(store) < 16
    assert cli.main(["run", str(path), "--results", str(results), "--figures", str(tmp_path / "f")]) == 0
    assert_identical(load_dataset(store), clean)


def interrupt_after(n_runs):
    """A progress callback that acts as Ctrl-C once ``n_runs`` runs are done."""
    def progress(done, total):
        if done >= n_runs:
            raise KeyboardInterrupt
    return progress


def test_a_changed_study_file_is_refused_unless_restart(mlp_study, tmp_path, capsys):
    path, clean = mlp_study
    results = tmp_path / "results"
    study = write(tmp_path, "resumable", path.read_text())
    with pytest.raises(KeyboardInterrupt):
        run_study(load_study(study), store=results / "resumable.zarr", chunk_runs=64,
                  progress=interrupt_after(200))
    study.write_text(study.read_text().replace("epochs = 6", "epochs = 7"))
    args = ["run", str(study), "--results", str(results), "--figures", str(tmp_path / "f")]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "out of date (the study's content changed); rerun with --restart to replace it" in err
    assert cli.main(args + ["--restart"]) == 0
    assert load_dataset(results / "resumable.zarr").sizes["epoch"] == 8
    # A finished result is reused while the file is unchanged, refused once it changes.
    assert cli.main(args) == 0
    assert "up to date" in capsys.readouterr().out
    study.write_text(study.read_text().replace("epochs = 7", "epochs = 6"))
    assert cli.main(args) == 2
    assert "out of date (the study's content changed)" in capsys.readouterr().err
    # A new title is not a new result: the store stays current.
    study.write_text(study.read_text().replace('title = "resumable"', 'title = "renamed"').replace(
        "epochs = 6", "epochs = 7"))
    assert cli.main(args) == 0 and "up to date" in capsys.readouterr().out


def test_a_new_gdsim_version_does_not_resume_old_chunks(mlp_study, tmp_path, monkeypatch, capsys):
    path, _ = mlp_study
    results = tmp_path / "results"
    with pytest.raises(KeyboardInterrupt):
        run_study(load_study(path), store=results / "resumable.zarr", chunk_runs=64,
                  progress=interrupt_after(100))
    monkeypatch.setattr(gdsim, "__version__", "999.0")
    assert cli.main(["run", str(path), "--results", str(results), "--figures", str(tmp_path / "f")]) == 2
    assert "out of date (it was made by gdsim" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------
def test_same_bits_across_threads_chunk_sizes_and_reruns(mlp_study, tmp_path):
    path, clean = mlp_study
    study = load_study(path)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one_thread = run_study(study, store=tmp_path / "a.zarr", chunk_runs=100)
    finally:
        numba.set_num_threads(before)
    assert_identical(one_thread, clean)
    assert_identical(run_study(study, target="cpu", store=tmp_path / "b.zarr", chunk_runs=37), clean)
    # Half the chunks interrupted, then resumed with another chunk size asked for (the
    # manifest's is kept).
    with pytest.raises(KeyboardInterrupt):
        run_study(study, store=tmp_path / "c.zarr", chunk_runs=50, progress=interrupt_after(250))
    assert_identical(run_study(study, store=tmp_path / "c.zarr", chunk_runs=9), clean)
    assert clean.attrs["data_seed"] == 0 and "model.init(seed)" in clean.attrs["random_draws"]


def test_train_and_sweep_runners_give_the_same_bits(tmp_path):
    grid = """
        [model]
        type = "linear"
        n_in = 1
        n_out = 1
        [data]
        name = "tutorial_line"
        seed = 3
        [train]
        lr = [0.01, 0.05, 0.2]
        batch_size = ["full", 7, 1]
        seed = [0, 1]
        shuffle = true
        epochs = 4
        divergence = "none"
        """
    header = 'title = "t"\nfigure = "critical_batch"\n'
    by_sweep = run_study(load_study(write(tmp_path, "s", header + textwrap.dedent(grid))), target="cpu")
    by_train = run_study(load_study(write(tmp_path, "t", header + 'runner = "train"\n' + textwrap.dedent(grid))))
    for name in ("loss", "params", "diverged_step", "diverged_loss"):
        np.testing.assert_array_equal(by_train[name].values, by_sweep[name].values, err_msg=name)
    assert by_sweep.attrs["data_seed"] == 3 and "SeedSequence(seed)" in by_sweep.attrs["random_draws"]


# ---------------------------------------------------------------------------------------
# Numerical faults
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("stop", ["1e6", '"none"'])
def test_runs_that_overflow_leave_their_neighbours_exact(tmp_path, capsys, stop):
    study = write(tmp_path, "blowup", f"""
        title = "most runs overflow"
        figure = "lr_batch"
        target = "parallel"
        [model]
        type = "linear"
        n_in = 1
        n_out = 1
        [data]
        name = "tutorial_line"
        [train]
        lr = {{geomspace = [0.001, 1e6, 40]}}
        batch_size = [1, 10]
        epochs = 30
        params0 = [-10.0, -20.0]
        divergence = {stop}
        """)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not one warning, from the runs or the figure
        assert cli.main(["run", str(study), "--results", str(tmp_path / "r"), "--figures", str(tmp_path / "f")]) == 0
    ds = load_dataset(tmp_path / "r" / "blowup.zarr")
    n_diverged = int(ds.diverged.sum())
    assert n_diverged >= 60  # of 80
    assert f"{n_diverged} of 80 runs diverged" in capsys.readouterr().out
    X, Y = gdsim.datasets.tutorial_line()
    for lr in ds.lr.values[:12]:
        for b in ds.batch_size.values:
            run = ds.sel(lr=lr, batch_size=b)
            if bool(run.diverged):
                continue
            expected = gdsim.train(gdsim.Linear(1, 1), X, Y, gdsim.SGD(lr=float(lr)), epochs=30, batch_size=int(b),
                                   params0=[-10.0, -20.0])
            np.testing.assert_array_equal(run.loss.values, expected.epoch_loss)
            np.testing.assert_array_equal(run.params.values, expected.params)


def test_bad_options_are_refused_before_any_run(mlp_study, tmp_path, capsys):
    path, _ = mlp_study
    for extra, message in ((["--chunk-runs", "0"], "--chunk-runs must be an integer in [1, inf], got 0"),
                           (["--redraw", "--restart"], "--redraw (never run) and --restart (run again) exclude")):
        assert cli.main(["run", str(path), "--results", str(tmp_path / "r"), *extra]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    with pytest.raises(StudyError, match="two study files named 'resumable'"):
        run_studies([path, path], results=tmp_path / "r", figures=tmp_path / "f")


def test_a_result_too_big_for_memory_or_disk_is_refused_up_front(mlp_study, tmp_path, monkeypatch, capsys):
    import shutil
    from collections import namedtuple

    path, _ = mlp_study
    study = load_study(path)
    # The 512 runs record 7 losses and 385 parameters each: about 1.6 MB.
    assert study.result_bytes == 512 * (8 * 7 + 8 * 385 + 8 + 8 + 8 + 1 + 1)  # + the divergence and outcome scalars
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: usage(10**9, 10**9 - 10**6, 10**6))
    assert cli.main(["run", str(path), "--results", str(tmp_path / "r"), "--figures", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert "saving the results of 1 study needs about 1.5 MiB on disk in" in err and "but only 976.6 KiB is free" in err
    assert not (tmp_path / "r").exists()
    monkeypatch.undo()
    page = os.sysconf("SC_PAGE_SIZE")
    # Room for the data (1024 x 43 values, drawn in about 1 MiB) but not for the sweep.
    pages = 2**21 // page
    monkeypatch.setattr(gdsim._resources, "available_memory", lambda: pages * page)
    with pytest.raises(StudyError, match=r"\[train\]: a sweep of 512 runs of 6 epochs needs about [0-9.]+ MiB of memory "
                                         r"but only 2.0 MiB is available; sweep fewer points or epochs at once"):
        load_study(path)
    assert page * pages < 512 * 4 * 385 * 8  # the sweep's working copies of the parameters alone
