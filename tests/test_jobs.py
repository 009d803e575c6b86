"""Several studies at once in job slots (``gdsim figures --jobs``): the same bits as one
after another, a clean stop on Ctrl-C or SIGTERM, a failure's message, bad values refused."""

import signal
import subprocess
import time

import pytest
from conftest import LINE_STUDY
from test_reliability import MLP_STUDY, assert_identical, gdsim_command, write

from gdsim import cli
from gdsim.studies import jobs, load_dataset, load_study, regions_saved, run_studies, run_study

LINE_SWEEP = 'title = "line"\nfigure = "heatmap"\n' + LINE_STUDY + """
[train]
lr = {geomspace = [0.01, 0.5, 12]}
momentum = [0.0, 0.5, 0.9]
batch_size = 10
epochs = 4
params0 = [-10.0, -20.0]
"""

TRAIN_RUNS = 'title = "train"\nfigure = "trajectories"\nrunner = "train"\n' + LINE_STUDY + """
[train]
lr = [0.04, 0.123]
batch_size = "full"
epochs = 8
params0 = [-10.0, -20.0]
"""

MLP_SWEEP = """
title = "mlp"
figure = "heatmap"
[model]
type = "mlp"
sizes = [3, 4, 1]
[data]
name = "teacher_mlp"
n = 64
sizes = [3, 4, 1]
[train]
lr = {geomspace = [0.001, 1.0, 8]}
momentum = [0.0, 0.9]
batch_size = 16
epochs = 3
"""


@pytest.fixture(scope="module")
def three_studies(tmp_path_factory):
    folder = tmp_path_factory.mktemp("studies")
    return [write(folder, name, text) for name, text in
            (("a_line", LINE_SWEEP), ("b_train", TRAIN_RUNS), ("c_mlp", MLP_SWEEP))]


def test_studies_in_job_slots_give_the_same_bits_and_figures_as_one_after_another(three_studies, tmp_path, capsys):
    one = run_studies(three_studies, results=tmp_path / "r1", figures=tmp_path / "f1", jobs=1)
    capsys.readouterr()
    two = run_studies(three_studies, results=tmp_path / "r2", figures=tmp_path / "f2", jobs=2)
    out = capsys.readouterr().out
    assert [study.name for study, _ in two] == ["a_line", "b_train", "c_mlp"]
    for (_, a), (study, b) in zip(one, two):
        assert_identical(a, b)
        assert_identical(load_dataset(tmp_path / "r2" / f"{study.name}.zarr"), load_dataset(
            tmp_path / "r1" / f"{study.name}.zarr"))
        assert (tmp_path / "f2" / f"{study.name}.png").stat().st_size > 1000
    for i, name in enumerate(["a_line", "b_train", "c_mlp"], 1):
        assert f"[{i}/3] {name}: " in out and f"drew {tmp_path / 'f2' / name}.png" in out
    assert "3 studies done" in out
    # A complete result is checked (not run again) and redrawn.
    assert cli.main(["run", *map(str, three_studies), "--results", str(tmp_path / "r2"), "--figures",
                     str(tmp_path / "f3"), "--jobs", "3"]) == 0
    assert capsys.readouterr().out.count("up to date") == 3
    assert sorted(p.name for p in (tmp_path / "f3").iterdir()) == ["a_line.png", "b_train.png", "c_mlp.png"]


def test_a_slot_runs_one_kernel_family_after_another():
    a, b, c, d = "a", "b", "c", "d"
    families = {("sweep", "Linear"): [a, b, c], ("train", "MLP"): [d]}
    # A slot goes on with its family; a new slot takes the largest family no slot runs.
    assert jobs.next_study(families, set(), None) == (("sweep", "Linear"), a)
    assert jobs.next_study(families, {("sweep", "Linear")}, None) == (("train", "MLP"), d)
    # Its family done, a slot helps with the family that has the most left.
    assert jobs.next_study(families, {("sweep", "Linear")}, ("train", "MLP")) == (("sweep", "Linear"), b)
    assert jobs.next_study(families, set(), ("sweep", "Linear")) == (("sweep", "Linear"), c)
    assert families == {("sweep", "Linear"): [], ("train", "MLP"): []}


@pytest.mark.parametrize("how, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_stops_every_slot_cleanly_and_the_run_resumes(tmp_path, how, status):
    studies = [write(tmp_path, name, MLP_STUDY) for name in ("one", "two")]
    clean = run_study(load_study(studies[0]))
    results = tmp_path / "results"
    stores = [results / "one.zarr", results / "two.zarr"]
    process = subprocess.Popen(gdsim_command("run", *studies, "--results", results, "--figures", tmp_path / "f",
                                             "--chunk-runs", 32, "--jobs", 2),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline and not any(
            s.exists() and 2 <= regions_saved(s) < 16 for s in stores):
        time.sleep(0.005)
    process.send_signal(how)
    out, err = process.communicate(timeout=60)
    unfinished = [s for s in stores if regions_saved(s) < 16]
    if process.returncode == 0 or not unfinished:
        pytest.skip("the run finished before the signal arrived")
    assert process.returncode == status, err
    assert "Traceback" not in err and "the same command resumes" in err, err
    for store in unfinished:  # (one whose regions were all saved may have been drawing its figure)
        assert f"finished regions are saved in {store};" in err, err
    assert cli.main(["run", *map(str, studies), "--results", str(results), "--figures", str(tmp_path / "f"),
                     "--jobs", "2"]) == 0
    for store in stores:
        assert_identical(load_dataset(store), clean)


def test_a_study_that_fails_in_its_slot_stops_the_run_with_its_message(three_studies, tmp_path, monkeypatch,
                                                                        capsys):
    def failing(study, *args):  # a command whose study cannot be read, as a failure of the run
        return ["run", str(tmp_path / "missing.toml"), "-q"]

    monkeypatch.setattr(jobs, "study_argv", failing)
    assert cli.main(["run", *map(str, three_studies), "--results", str(tmp_path / "r"), "--figures",
                     str(tmp_path / "f"), "--jobs", "2"]) == 1
    err = capsys.readouterr().err
    assert "failed: error: " in err and "missing.toml" in err and "Traceback" not in err


@pytest.mark.parametrize("extra, message", [(["--jobs", "0"], "--jobs must be"),
                                            (["--jobs", "2", "--workers", "1"], "leave --jobs out")])
def test_bad_jobs_are_refused_before_anything_runs(three_studies, tmp_path, capsys, extra, message):
    assert cli.main(["run", *map(str, three_studies), "--results", str(tmp_path / "r"), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("policy", [None, "ACTIVE"])
def test_a_slot_takes_its_share_of_blas_threads_unless_the_environment_says(monkeypatch, policy):
    seen = {}

    class Recorded:  # stands for the slot's process: what it would be started with
        def __init__(self, argv, **options):
            seen.update(options["env"])

    monkeypatch.setattr(jobs.subprocess, "Popen", Recorded)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    if policy is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", policy)
    jobs.JobSlot(3).log.close()
    assert seen["OPENBLAS_NUM_THREADS"] == seen["MKL_NUM_THREADS"] == "3"
    assert seen["OMP_NUM_THREADS"] == "7"
    assert seen["OMP_WAIT_POLICY"] == (policy or "PASSIVE")  # OpenMP's threads sleep while they wait
