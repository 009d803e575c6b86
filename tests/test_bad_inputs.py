"""The adversarial corpus: bad input, refused up front.

Every case asserts four things: the exception type (or the CLI's exit status and one line
on stderr, never a traceback), that the message names what the user typed (the argument,
the study file and its key, the data file, the folder), that no warning was emitted, and
that nothing was written (the case runs in an empty folder that must stay empty, apart
from the inputs the case itself made). Theory's arguments have their own corpus in
``test_bad_theory.py``; figures drawn from degenerate results in
``test_figures_degenerate.py``.
"""

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import gdsim
from gdsim import cli, datasets
from gdsim.studies import StudyError, load_study, regions_saved
from test_reliability import MLP_STUDY

X1, Y1 = datasets.tutorial_line()
LINE = gdsim.Linear(1, 1)
CLASSIFIER = gdsim.MLP((2, 4, 3), loss="cross_entropy")
XB, YB = datasets.blobs(n=30)
SGD = gdsim.SGD(lr=0.01)
HUGE = 10**13  # far beyond any machine's memory, as a count of samples, epochs or values


def tree(folder):
    """Every path under ``folder`` (files and folders), relative."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


@contextlib.contextmanager
def nothing_written_and_no_warning(folder):
    """Run the block with ``folder`` as the working directory; afterwards nothing new may
    exist under it and no warning may have been emitted."""
    before = tree(folder)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        os.chdir(cwd)
    assert [str(w.message) for w in caught] == []
    assert tree(folder) == before


def refused(tmp_path, call, names, error=ValueError):
    """``call()`` raises ``error`` naming every string of ``names``, writes nothing and warns nothing."""
    with nothing_written_and_no_warning(tmp_path):
        with pytest.raises(error) as info:
            call()
    message = str(info.value)
    for name in names:
        assert name in message, (name, message)
    assert "\n" not in message.strip()
    return info.value


def cli_refused(tmp_path, capsys, argv, names, status=2):
    """``gdsim ARGV`` exits with ``status`` and one error line naming ``names``; no traceback,
    nothing written, no warning."""
    with nothing_written_and_no_warning(tmp_path):
        assert cli.main([str(a) for a in argv]) == status
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith(f"gdsim {argv[0]}: error: "), err
    for name in names:
        assert name in err, (name, err)
    return err


# =======================================================================================
# The API
# =======================================================================================
def train(**kwargs):
    arguments = dict(model=LINE, X=X1, Y=Y1, optimizer=SGD, epochs=2)
    arguments.update(kwargs)
    return lambda: gdsim.train(arguments.pop("model"), arguments.pop("X"), arguments.pop("Y"),
                               arguments.pop("optimizer"), **arguments)


def sweep(**kwargs):
    arguments = dict(model=LINE, X=X1, Y=Y1, lr=[0.01, 0.1], epochs=2)
    arguments.update(kwargs)
    return lambda: gdsim.sweep(arguments.pop("model"), arguments.pop("X"), arguments.pop("Y"), **arguments)


API = {
    # models
    "Linear n_in 0": (lambda: gdsim.Linear(0, 1), ["n_in", "got 0"]),
    "Linear n_out 0": (lambda: gdsim.Linear(1, 0), ["n_out"]),
    "Linear n_in 2**63": (lambda: gdsim.Linear(2**63, 1), ["n_in", "2147483647"]),
    "Linear n_in float": (lambda: gdsim.Linear(1.5, 1), ["n_in", "integer"]),
    "Linear n_in str": (lambda: gdsim.Linear("3", 1), ["n_in", "integer"]),
    "Linear n_in bool": (lambda: gdsim.Linear(True, 1), ["n_in"]),
    "MLP sizes str": (lambda: gdsim.MLP("10,5,1"), ["sizes"]),
    "MLP one width": (lambda: gdsim.MLP((3,)), ["sizes", "two"]),
    "MLP width 0": (lambda: gdsim.MLP((3, 0, 1)), ["sizes[1]"]),
    "MLP width 2**40": (lambda: gdsim.MLP((3, 2**40, 1)), ["sizes[1]", "2147483647"]),
    "MLP activation ReLU": (lambda: gdsim.MLP((2, 2, 1), activation="ReLU"), ["activation", "did you mean 'relu'"]),
    "MLP activation nn.Tanh": (lambda: gdsim.MLP((2, 2, 1), activation="nn.Tanh"), ["did you mean 'tanh'"]),
    "MLP activation torch.nn.Sigmoid": (lambda: gdsim.MLP((2, 2, 1), activation="torch.nn.Sigmoid"),
                                        ["did you mean 'sigmoid'"]),
    "MLP activation None": (lambda: gdsim.MLP((2, 2, 1), activation=None), ["activation"]),
    "MLP loss MSELoss": (lambda: gdsim.MLP((2, 1), loss="MSELoss"), ["loss", "did you mean 'mse'"]),
    "MLP loss nn.CrossEntropyLoss": (lambda: gdsim.MLP((2, 3), loss="nn.CrossEntropyLoss"),
                                     ["did you mean 'cross_entropy'"]),
    "MLP reduction none": (lambda: gdsim.MLP((2, 1), reduction="none"), ["reduction", "'mean'"]),
    "MLP cross-entropy one class": (lambda: gdsim.MLP((2, 1), loss="cross_entropy"), ["n_out=1"]),
    "init of 10**12 parameters": (lambda: gdsim.MLP((10**6, 10**6, 1)).init(), ["needs about", "TiB of memory",
                                                                                "narrower layers"]),
    "init seed -1": (lambda: LINE.init(-1), ["seed"]),
    "pack wrong count": (lambda: LINE.pack([[1.0]]), ["arrays", "2 arrays"]),
    "pack strings": (lambda: LINE.pack([[["a"]], ["b"]]), ["arrays[0]", "real numbers"]),
    "pack None": (lambda: LINE.pack([[[None]], [None]]), ["arrays[0]", "real numbers"]),
    "pack complex": (lambda: LINE.pack([[[1j]], [0.0]]), ["arrays[0]", "real numbers"]),
    "pack bias shape": (lambda: LINE.pack([[[1.0]], [2.0, 3.0]]), ["arrays[1]", "(1,)"]),
    "loss X ragged": (lambda: LINE.loss([1.0, 2.0], [[1.0], [2.0, 3.0]], [[1.0], [2.0]]), ["X", "ragged"]),
    "Linear loss list": (lambda: gdsim.Linear(1, 1, loss=["mse"]), ["loss", "'mse'"]),
    "Linear reduction set": (lambda: gdsim.Linear(1, 1, reduction={"mean"}), ["reduction"]),
    "MLP activation list": (lambda: gdsim.MLP((2, 2, 1), activation=["relu"]), ["activation"]),
    "loss theta wrong length": (lambda: LINE.loss([1.0, 2.0, 3.0], X1, Y1), ["theta", "(2,)"]),
    "loss theta complex": (lambda: LINE.loss([1j, 2.0], X1, Y1), ["theta", "real"]),
    "predict X wrong width": (lambda: LINE.predict([1.0, 2.0], np.ones((3, 2))), ["X", "(n, 1)"]),
    # SGD
    "SGD lr nan": (lambda: gdsim.SGD(lr=float("nan")), ["learning rate", "lr"]),
    "SGD lr str": (lambda: gdsim.SGD(lr="0.1"), ["lr"]),
    "SGD momentum -1": (lambda: gdsim.SGD(lr=0.1, momentum=-1), ["momentum"]),
    "SGD nesterov without momentum": (lambda: gdsim.SGD(lr=0.1, nesterov=True), ["momentum", "Nesterov"]),
    "SGD weight_decay inf": (lambda: gdsim.SGD(lr=0.1, weight_decay=float("inf")), ["weight_decay"]),
    "SGD lr 2**1024": (lambda: gdsim.SGD(lr=2**1024), ["learning rate", "finite"]),
    "SGD step complex grad": (lambda: gdsim.SGD(lr=0.1).step(np.ones(2), np.ones(2) + 1j), ["grad", "real"]),
    "SGD step string grad": (lambda: gdsim.SGD(lr=0.1).step(np.ones(2), ["a", "b"]), ["grad", "real"]),
    # train
    "train epochs 10**11": (train(epochs=10**11), ["a run of", "needs about", "of memory", "fewer epochs"]),
    "train epochs 0": (train(epochs=0), ["epochs"]),
    "train epochs float": (train(epochs=2.0), ["epochs", "integer"]),
    "train batch_size too big": (train(batch_size=101), ["batch_size", "[1, 100]"]),
    "train seed 2**64": (train(seed=2**64), ["seed", "9223372036854775807"]),
    "train X with nan": (train(X=np.where(X1 > 4, np.nan, X1)), ["X", "NaN"]),
    "train Y wrong rows": (train(Y=Y1[:50]), ["Y", "shape"]),
    "train X str": (train(X="data.csv"), ["X", "real array"]),
    "train X ragged": (train(X=[[1.0], [2.0, 3.0]]), ["X", "ragged"]),
    "train params0 ragged": (train(params0=[[1.0], [2.0, 3.0]]), ["params0", "ragged"]),
    "train schedule ragged": (train(lr_schedule=[[1.0], [2.0, 3.0]]), ["lr_schedule", "ragged"]),
    "train optimizer dict": (train(optimizer={"lr": 0.1}), ["optimizer"]),
    "train model str": (train(model="linear"), ["model"]),
    "train labels out of range": (train(model=CLASSIFIER, X=XB, Y=YB + 5), ["Y", "labels"]),
    "train labels float": (train(model=CLASSIFIER, X=XB, Y=YB.astype(float)), ["Y", "integer"]),
    "train schedule overflow": (train(epochs=400, lr_schedule=("exponential", 10.0)), ["lr_schedule", "overflow"]),
    "train schedule unknown": (train(lr_schedule=("Cosine", 3, 0.0)), ["lr_schedule", "did you mean 'cosine'"]),
    "train divergence_factor -1": (train(divergence_factor=-1), ["divergence_factor"]),
    "train divergence 1": (train(divergence=1), ["divergence", "> 1", "nonfinite"]),
    "train params0 inf": (train(params0=[np.inf, 0.0]), ["params0"]),
    "train shuffle not a permutation": (train(shuffle=np.zeros((2, 100), dtype=int)), ["shuffle", "permutation"]),
    "train record_params 1": (train(record_params=1), ["record_params"]),
    # sweep
    "sweep dtype 123": (sweep(dtype=123), ["dtype", "'float32', 'float64'"]),
    "sweep dtype float16": (sweep(dtype="float16"), ["dtype"]),
    "sweep dtype Float32": (sweep(dtype="Float32"), ["dtype", "did you mean 'float32'"]),
    "sweep seed 2**64": (sweep(seed=2**64), ["seed", "9223372036854775807"]),
    "sweep seeds with 2**63": (sweep(seed=[0, 2**63]), ["seed"]),
    "sweep float32 overflow X": (sweep(X=X1 * 1e300, dtype="float32"), ["X", "float32", "inf"]),
    "sweep float32 overflow params0": (sweep(params0=[1e39, 0.0], dtype="float32"), ["params0", "float32"]),
    "sweep target gpu": (sweep(target="gpu"), ["target", "did you mean 'cuda'"]),
    "sweep target CPU": (sweep(target="CPU"), ["target", "did you mean 'cpu'"]),
    "sweep target None": (sweep(target=None), ["target"]),
    "sweep 10**12 runs": (sweep(lr=np.linspace(0.001, 0.1, 10**6), momentum=np.linspace(0, 0.9, 10**6)),
                          ["a sweep of", "needs about", "of memory", "fewer points"]),
    "sweep epochs 10**13": (sweep(epochs=HUGE), ["needs about", "of memory"]),
    "sweep lr 2-d": (sweep(lr=[[0.1, 0.2]]), ["lr", "1-d"]),
    "sweep lr empty": (sweep(lr=[]), ["lr", "empty"]),
    "sweep momentum 2**1024": (sweep(momentum=[0.0, 2**1024]), ["momentum", "index 1"]),
    "run_points out of range": (lambda: gdsim.sweeps.run_points(gdsim.sweeps.check_sweep(
        LINE, X1, Y1, lr=[0.1, 0.2], epochs=2), [10]), ["runs", "0 to 1"]),
    "run_points not increasing": (lambda: gdsim.sweeps.run_points(gdsim.sweeps.check_sweep(
        LINE, X1, Y1, lr=[0.1, 0.2], epochs=2), [1, 0]), ["runs", "increasing"]),
    "run_points float index": (lambda: gdsim.sweeps.run_points(gdsim.sweeps.check_sweep(
        LINE, X1, Y1, lr=[0.1, 0.2], epochs=2), [0.5]), ["runs", "integer"]),
    "sweep lr ragged": (sweep(lr=[[0.1], [0.2, 0.3]]), ["lr", "ragged"]),
    "sweep seed ragged": (sweep(seed=[[0], [1, 2]]), ["seed", "must be an integer, got [0]"]),
    "sweep lr negative at index": (sweep(lr=[0.1, -0.1]), ["lr", "index 1"]),
    "sweep momentum str": (sweep(momentum="0.9"), ["momentum"]),
    "sweep batch_size 0": (sweep(batch_size=[0, 10]), ["batch_size"]),
    "sweep batch_size float": (sweep(batch_size=10.0), ["batch_size", "integer"]),
    "sweep nesterov 1": (sweep(nesterov=1), ["nesterov"]),
    "sweep nesterov without momentum": (sweep(nesterov=True), ["nesterov", "momentum"]),
    "sweep shuffle array": (sweep(shuffle=np.zeros((2, 100), dtype=int)), ["shuffle"]),
    "sweep divergence 1": (sweep(divergence=1), ["divergence", "> 1"]),
    "sweep progress str": (sweep(progress="yes"), ["progress"]),
    "sweep schedule overflow": (sweep(epochs=400, lr_schedule=("exponential", 10.0)), ["lr_schedule", "overflow"]),
    "sweep factors wrong length": (sweep(lr_schedule=[1.0, 0.5, 0.1]), ["lr_schedule", "(2,)"]),
    # epoch_lrs and datasets
    "epoch_lrs lr nan": (lambda: gdsim.epoch_lrs(float("nan"), None, 3), ["lr"]),
    "epoch_lrs epochs 10**13": (lambda: gdsim.epoch_lrs(0.1, None, HUGE), ["needs about", "fewer epochs"]),
    "epoch_lrs epochs 0": (lambda: gdsim.epoch_lrs(0.1, None, 0), ["epochs"]),
    "epoch_lrs step_size 2**64": (lambda: gdsim.epoch_lrs(0.1, ("step", 2**64, 0.5), 5), ["step_size"]),
    "teacher_mlp n 10**13": (lambda: datasets.teacher_mlp(n=HUGE), ["teacher_mlp(n=", "needs about", "fewer samples"]),
    "random_regression n 10**13": (lambda: datasets.random_regression(n=HUGE), ["random_regression", "needs about"]),
    "blobs n 10**13": (lambda: datasets.blobs(n=HUGE), ["blobs", "needs about"]),
    "blobs n_classes 10**13": (lambda: datasets.blobs(n_classes=HUGE), ["n_classes", "needs about"]),
    "blobs spread nan": (lambda: datasets.blobs(spread=float("nan")), ["spread"]),
    "blobs box 1e308": (lambda: datasets.blobs(box=1e308), ["box", "1e+300"]),
    "teacher_mlp noise 1e308": (lambda: datasets.teacher_mlp(noise=1e308), ["noise", "1e+300"]),
    "random_regression n_out 2**64": (lambda: datasets.random_regression(n_out=2**64), ["n_out=", "needs about"]),
    "load_dataset of a file": (lambda: gdsim.studies.load_dataset(Path(__file__)), ["test_bad_inputs.py",
                                                                                     "no such result store"]),
    "load_dataset of a folder": (lambda: gdsim.studies.load_dataset(Path(__file__).parent / "fixtures"),
                                 ["fixtures", "not a result store gdsim can read"]),
    "read_attrs missing": (lambda: gdsim.studies.read_attrs("nowhere.zarr"), ["nowhere.zarr", "no such result store"]),
    "blobs n_classes 1": (lambda: datasets.blobs(n_classes=1), ["n_classes"]),
    "teacher_mlp activation ReLU": (lambda: datasets.teacher_mlp(activation="ReLU"), ["did you mean 'relu'"]),
    "tutorial_line seed -1": (lambda: datasets.tutorial_line(-1), ["seed"]),
    "tutorial_line seed 2**64": (lambda: datasets.tutorial_line(2**64), ["seed"]),
}


@pytest.mark.parametrize("call, names", API.values(), ids=API.keys())
def test_api(call, names, tmp_path):
    error = refused(tmp_path, call, names)
    if isinstance(error, gdsim.ParameterError) and error.param not in (None, "path"):  # a path: the file is named
        assert error.param.lower() in str(error).lower()  # the argument named is the one refused


# =======================================================================================
# Study files
# =======================================================================================
STUDY = """\
title = "small"
figure = "lr_batch"

[model]
type = "linear"
n_in = 1
n_out = 1

[data]
name = "tutorial_line"

[train]
lr = [0.001, 0.01]
batch_size = [100, 10]
epochs = 3
"""

STUDIES = {
    # (replace this, with that) in STUDY; what the message must name besides the file
    "unknown top key": (("title", "titel"), ["titel", "did you mean 'title'"]),
    "figure misspelt": (('"lr_batch"', '"lr-batch"'), ["figure", "did you mean 'lr_batch'"]),
    "runner unknown": (('figure', 'runner = "jax"\nfigure'), ["runner"]),
    "target gpu": (('figure', 'target = "gpu"\nfigure'), ["target", "did you mean 'cuda'"]),
    "target a number": (('figure', 'target = 3\nfigure'), ["target", "string"]),
    "model type a list": (('"linear"', '["linear"]'), ["[model] type"]),
    "data name a list": (('"tutorial_line"', '["tutorial_line"]'), ["[data] name"]),
    "data key misspelt": (('"tutorial_line"', '"tutorial_line"\nsead = 1'), ["sead", "did you mean 'seed'"]),
    "batch_size Full": (("batch_size = [100, 10]", 'batch_size = ["Full", 10]'), ["[train] batch_size",
                                                                                  "did you mean 'full'"]),
    "batch_size arange float step": (("batch_size = [100, 10]", "batch_size = {arange = [1, 5, 1.5]}"),
                                     ["[train] batch_size", "integer"]),
    "divergence None": (("epochs = 3", 'epochs = 3\ndivergence = "None"'), ["[train] divergence",
                                                                              "did you mean 'none'"]),
    "factors not numbers": (("epochs = 3", 'epochs = 3\nlr_schedule = {factors = [1, "a", 1]}'),
                            ["[train] lr_schedule", "numbers"]),
    "model type MLP": (('"linear"', '"MLP"'), ["[model] type", "did you mean 'mlp'"]),
    "model n_in 0": (("n_in = 1", "n_in = 0"), ["[model]", "n_in"]),
    "model n_in 2**63": (("n_in = 1", "n_in = 9223372036854775807"), ["[model]", "n_in"]),
    "model activation on linear": (("n_out = 1", 'n_out = 1\nactivation = "relu"'), ["[model]", "activation"]),
    "data unknown name": (('"tutorial_line"', '"tutorial"'), ["[data] name", "did you mean 'tutorial_line'"]),
    "data seed -1": (('"tutorial_line"', '"tutorial_line"\nseed = -1'), ["[data]", "seed"]),
    "data n 10**13": (('name = "tutorial_line"', 'name = "random_regression"\nn = 10000000000000\nn_in = 1\nn_out = 1'),
                      ["[data]", "needs about", "fewer samples"]),
    "train lr negative": (("lr = [0.001, 0.01]", "lr = [0.001, -0.01]"), ["[train] lr", "index 1"]),
    "train lr string": (("lr = [0.001, 0.01]", 'lr = "0.01"'), ["[train] lr"]),
    "train lr linspace 1e13 points": (("lr = [0.001, 0.01]", "lr = {linspace = [0.001, 0.1, 10000000000000]}"),
                                      ["[train] lr", "needs about", "fewer values"]),
    "train lr arange 1e13 points": (("lr = [0.001, 0.01]", "lr = {arange = [0.0, 1.0, 1e-13]}"),
                                    ["[train] lr", "needs about"]),
    "train lr logspace": (("lr = [0.001, 0.01]", "lr = {logspace = [-3, -1, 5]}"), ["[train] lr", "linspace"]),
    "train lr geomspace from 0": (("lr = [0.001, 0.01]", "lr = {geomspace = [0, 1, 5]}"), ["[train] lr", "> 0"]),
    "train lr linspace num float": (("lr = [0.001, 0.01]", "lr = {linspace = [0.1, 1, 2.5]}"), ["[train] lr"]),
    "train lr empty": (("lr = [0.001, 0.01]", "lr = []"), ["[train] lr"]),
    "train lr nan": (("lr = [0.001, 0.01]", "lr = nan"), ["[train] lr"]),
    "train epochs 0": (("epochs = 3", "epochs = 0"), ["[train] epochs"]),
    "train epochs float": (("epochs = 3", "epochs = 3.5"), ["[train] epochs", "integer"]),
    "train epochs 10**8": (("epochs = 3", "epochs = 100000000"), ["[train]", "of 100000000 epochs needs about",
                                                                   "fewer points or epochs"]),
    "train batch_size 0": (("batch_size = [100, 10]", "batch_size = [0, 10]"), ["[train] batch_size"]),
    "train batch_size word": (("batch_size = [100, 10]", 'batch_size = ["full", "half"]'), ["[train] batch_size"]),
    "train unknown key": (("epochs = 3", "epochs = 3\nmomentun = 0.9"), ["momentun", "did you mean 'momentum'"]),
    "train dtype 123": (("epochs = 3", "epochs = 3\ndtype = 123"), ["[train] dtype"]),
    "train dtype half": (("epochs = 3", 'epochs = 3\ndtype = "float16"'), ["[train] dtype"]),
    "train schedule unknown": (("epochs = 3", 'epochs = 3\nlr_schedule = ["linear", 2]'), ["[train] lr_schedule"]),
    "train divergence 0.5": (("epochs = 3", "epochs = 3\ndivergence = 0.5"), ["[train] divergence"]),
    "train params0 short": (("epochs = 3", "epochs = 3\nparams0 = [1.0]"), ["[train] params0"]),
    "figure needs a swept axis": (("batch_size = [100, 10]", "batch_size = 10"), ["figure", "batch_size"]),
    "figure needs linear": (('type = "linear"\nn_in = 1\nn_out = 1', 'type = "mlp"\nsizes = [1, 3, 1]'),
                            ["figure", "linear model"]),
    "result too big for memory": (("lr = [0.001, 0.01]", "lr = {geomspace = [0.001, 0.1, 100000000]}"),
                                  ["[train]", "needs about", "of memory"]),
    "train runner float32": (('figure = "lr_batch"', 'figure = "trajectories"\nrunner = "train"'),
                             ["[train] dtype", "float64"]),
    "not TOML": (("[train]", "[train"), ["not a valid TOML file"]),
    "missing train": (("[train]\n", "[training]\n"), ["training"]),
}


def _study_text(case):
    (old, new), _ = STUDIES[case]
    assert old in STUDY
    text = STUDY.replace(old, new, 1)
    if case == "train runner float32":  # trajectories: lr swept only, float32 asked for
        text = text.replace("batch_size = [100, 10]", "batch_size = 100").replace("epochs = 3", 'epochs = 3\ndtype = "float32"')
    return text


@pytest.mark.parametrize("case", STUDIES)
def test_study_file(case, tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(_study_text(case))
    names = STUDIES[case][1]
    refused(tmp_path, lambda: load_study(path), [str(path), *names], error=StudyError)
    cli_refused(tmp_path, capsys, ["run", path, "--results", tmp_path / "r", "--figures", tmp_path / "f"],
                [str(path), *names])


def test_valid_spellings_run(tmp_path):
    """What the refusals above must not catch: a schedule as a list, factors for every epoch."""
    assert np.array_equal(gdsim.epoch_lrs(0.1, ["step", 2, 0.5], 5), [0.1, 0.1, 0.05, 0.05, 0.025])
    path = tmp_path / "ok.toml"
    path.write_text(STUDY.replace("epochs = 3", "epochs = 3\nlr_schedule = {factors = [1, 0.5, 0.25]}"))
    assert np.array_equal(load_study(path).spec.schedule, [1.0, 0.5, 0.25])


def _edit_identity(store, edit):
    """Rewrite the store's root metadata: ``edit(attributes)``."""
    meta = json.loads((store / "zarr.json").read_text())
    edit(meta["attributes"])
    (store / "zarr.json").write_text(json.dumps(meta))


def _set_identity(key, value):
    def edit(attributes):
        identity = json.loads(attributes["gdsim_store"])
        identity[key] = value
        attributes["gdsim_store"] = json.dumps(identity)
    return edit


DAMAGED_STORES = {
    "metadata garbage": (lambda store: (store / "zarr.json").write_text("{not json"),
                         ["not a result store gdsim can read", "--restart"]),
    "identity removed": (lambda store: _edit_identity(store, lambda a: a.pop("gdsim_store")),
                         ["not a result store gdsim can read", "--restart"]),
    "identity of another study": (lambda store: _edit_identity(store, _set_identity("study_sha256", "0" * 64)),
                                  ["out of date (the study's content changed)", "--restart"]),
    "chunk_runs 0": (lambda store: _edit_identity(store, _set_identity("chunk_runs", 0)), ["chunk_runs", "--restart"]),
    "chunk_runs a string": (lambda store: _edit_identity(store, _set_identity("chunk_runs", "x")),
                            ["chunk_runs", "--restart"]),
}


@pytest.mark.parametrize("damage", DAMAGED_STORES)
def test_damaged_store_identity_is_refused_before_running(study, tmp_path, capsys, damage):
    """A store whose metadata or identity cannot be trusted: refused before anything runs, with --restart."""
    from gdsim.studies import run_study

    store = tmp_path / "r" / "small.zarr"
    run_study(load_study(study), store=store)
    do, names = DAMAGED_STORES[damage]
    do(store)
    cli_refused(tmp_path, capsys, ["run", study, "--results", tmp_path / "r", "--figures", tmp_path / "f"],
                ["small.zarr", *names])


def test_study_file_not_utf8(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_bytes(STUDY.encode("utf-16"))
    cli_refused(tmp_path, capsys, ["run", path, "--results", tmp_path / "r"], [str(path), "not a valid TOML"])


def test_study_file_with_a_byte_order_mark_runs(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + STUDY.encode())
    assert load_study(path).title == "small"


def test_study_file_is_a_folder(tmp_path, capsys):
    (tmp_path / "bad.toml").mkdir()
    cli_refused(tmp_path, capsys, ["run", tmp_path / "bad.toml"], ["bad.toml", "cannot read"])


def test_study_file_missing(tmp_path, capsys):
    cli_refused(tmp_path, capsys, ["run", tmp_path / "nope.toml"], ["nope.toml", "cannot read"])


# =======================================================================================
# Data files
# =======================================================================================
def _data_study(tmp_path, filename="mine.npz"):
    path = tmp_path / "data.toml"
    path.write_text(STUDY.replace('name = "tutorial_line"', f'file = "{filename}"'))
    return path


DATA_FILES = {
    # what the data file holds: a writer of it; what the message must say
    "npy named npz": (lambda p: np.save(open(p, "wb"), X1), ["single .npy array", "numpy.savez"]),
    "csv named npz": (lambda p: p.write_text("x,y\n1,2\n3,4\n"), ["text (a CSV?)"]),
    "empty": (lambda p: p.write_bytes(b""), ["an empty file"]),
    "pickled objects": (lambda p: np.savez(p, X=np.array([{"a": 1}] * 3, dtype=object), Y=Y1[:3]),
                        ["Python objects"]),
    "no Y": (lambda p: np.savez(p, X=X1), ["it needs X and Y"]),
    "x lower case": (lambda p: np.savez(p, x=X1, y=Y1), ["['x', 'y']", "it needs X and Y"]),
    "Y wrong rows": (lambda p: np.savez(p, X=X1, Y=Y1[:10]), ["[data]", "Y must have shape"]),
    "X with inf": (lambda p: np.savez(p, X=np.where(X1 > 0, np.inf, X1), Y=Y1), ["[data]", "X contains NaN or inf"]),
    "X strings": (lambda p: np.savez(p, X=np.array(["a"] * 100).reshape(100, 1), Y=Y1), ["[data]", "X must be a real"]),
    "truncated zip": (lambda p: p.write_bytes(b"PK\x03\x04" + b"\x00" * 20), ["cannot read it as an .npz"]),
    "a folder": (lambda p: p.mkdir(), ["is a folder"]),
    "missing": (lambda p: None, ["No such file"]),
}


@pytest.mark.parametrize("case", DATA_FILES)
def test_data_file(case, tmp_path, capsys):
    write, names = DATA_FILES[case]
    write(tmp_path / "mine.npz")
    path = _data_study(tmp_path)
    names = [str(path), "mine.npz", *names]
    refused(tmp_path, lambda: load_study(path), names, error=StudyError)
    cli_refused(tmp_path, capsys, ["run", path, "--results", tmp_path / "r", "--figures", tmp_path / "f"], names)


def test_data_file_float32_overflow(tmp_path, capsys):
    np.savez(tmp_path / "mine.npz", X=X1 * 1e300, Y=Y1)
    path = _data_study(tmp_path)
    path.write_text(path.read_text().replace("epochs = 3", 'epochs = 3\ndtype = "float32"'))
    cli_refused(tmp_path, capsys, ["run", path, "--results", tmp_path / "r"],
                [str(path), "[data] file", "mine.npz", "X has values beyond float32's range"])


def test_data_file_name_not_a_string(tmp_path, capsys):
    path = _data_study(tmp_path)
    path.write_text(path.read_text().replace('file = "mine.npz"', "file = 3"))
    cli_refused(tmp_path, capsys, ["run", path, "--results", tmp_path / "r"], [str(path), "[data] file"])


# =======================================================================================
# Output locations
# =======================================================================================
@pytest.fixture
def study(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(STUDY)
    return path


def test_figures_folder_is_a_file(study, tmp_path, capsys):
    (tmp_path / "f").write_text("")
    cli_refused(tmp_path, capsys, ["run", study, "--results", tmp_path / "r", "--figures", tmp_path / "f"],
                ["--figures", "is a file"])


def test_results_folder_is_a_file(study, tmp_path, capsys):
    (tmp_path / "r").write_text("")
    cli_refused(tmp_path, capsys, ["run", study, "--results", tmp_path / "r", "--figures", tmp_path / "f"],
                ["--results", "is a file"])


def test_results_folder_below_a_file(study, tmp_path, capsys):
    (tmp_path / "r").write_text("")
    cli_refused(tmp_path, capsys, ["run", study, "--results", tmp_path / "r" / "deeper"],
                ["--results", "cannot be made", "is a file"])


@pytest.mark.parametrize("flag", ["--results", "--figures"])
def test_output_folder_not_writable(study, tmp_path, capsys, flag):
    # /proc refuses new files even to root, unlike a chmod-ed folder.
    argv = ["run", study, "--results", tmp_path / "r", "--figures", tmp_path / "f", flag, "/proc/gdsim-out"]
    cli_refused(tmp_path, capsys, argv, [flag, "/proc/gdsim-out", "cannot be written"])


def test_results_folder_name_too_long(study, tmp_path, capsys):
    cli_refused(tmp_path, capsys, ["run", study, "--results", "a" * 300, "--figures", tmp_path / "f"],
                ["--results", "longer than the"])


def test_results_folder_in_a_loop_of_links(study, tmp_path, capsys):
    (tmp_path / "one").symlink_to(tmp_path / "two")
    (tmp_path / "two").symlink_to(tmp_path / "one")
    cli_refused(tmp_path, capsys, ["run", study, "--results", tmp_path / "one" / "r", "--figures", tmp_path / "f"],
                ["--results", "cannot be written", "symbolic links"])


def test_damaged_regions_are_run_again(study, tmp_path, capsys):
    """Regions damaged outside gdsim (a record deleted, data truncated) are run again, to the clean result."""
    from gdsim.studies import load_dataset, run_study

    loaded = load_study(study)
    clean = run_study(loaded)
    store = tmp_path / "r" / "small.zarr"
    run_study(loaded, store=store, chunk_runs=1)
    (store / "gdsim_regions" / "000000.json").unlink()
    chunk = next(p for p in sorted((store / "params").rglob("*")) if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(chunk.read_bytes()[:5])
    assert cli.main(["run", str(study), "--results", str(tmp_path / "r"), "--figures", str(tmp_path / "f")]) == 0
    assert "resuming from 3 saved regions" in capsys.readouterr().out
    back = load_dataset(store)
    for name in clean.data_vars:
        assert np.array_equal(back[name].values, clean[name].values, equal_nan=back[name].dtype.kind == "f"), name


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_results_folder_read_only(study, tmp_path, capsys):
    (tmp_path / "r").mkdir(mode=0o555)
    cli_refused(tmp_path, capsys, ["run", study, "--results", tmp_path / "r", "--figures", tmp_path / "f"],
                ["--results", "cannot be written"])


def test_figure_path_is_a_folder(study, tmp_path, capsys):
    (tmp_path / "f" / "small.png").mkdir(parents=True)
    cli_refused(tmp_path, capsys, ["run", study, "--results", tmp_path / "r", "--figures", tmp_path / "f"],
                ["small.png", "is a folder"])


def test_draw_into_a_folder_is_refused_before_drawing(study, tmp_path, monkeypatch):
    from gdsim import figures
    from gdsim.studies import run_study

    loaded = load_study(study)
    ds = run_study(loaded)
    (tmp_path / "out.png").mkdir()
    drawn = []
    monkeypatch.setitem(figures.FIGURES, "lr_batch", figures.FIGURES["lr_batch"].__class__(
        lambda *a: drawn.append(a), axes=("lr", "batch_size")))
    refused(tmp_path, lambda: figures.draw(loaded, ds, tmp_path / "out.png"), ["out.png", "is a folder"])
    assert drawn == []


def test_result_store_path_is_a_file(study, tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "small.zarr").write_text("")
    cli_refused(tmp_path, capsys, ["run", study, "--results", tmp_path / "r", "--figures", tmp_path / "f"],
                ["small.zarr", "a file is where the study's result store goes"])


def test_result_store_corrupt(study, tmp_path, capsys):
    (tmp_path / "r" / "small.zarr").mkdir(parents=True)
    (tmp_path / "r" / "small.zarr" / "zarr.json").write_bytes(b"garbage")
    cli_refused(tmp_path, capsys, ["run", study, "--results", tmp_path / "r", "--figures", tmp_path / "f"],
                ["small.zarr", "not a result store gdsim can read", "--restart"])


def test_redraw_without_result(study, tmp_path, capsys):
    cli_refused(tmp_path, capsys, ["run", study, "--redraw", "--results", tmp_path / "r", "--figures", tmp_path / "f"],
                ["small.zarr", "no saved result"])


def test_cuda_study_without_gpu_runs_nothing_of_the_others(study, tmp_path, capsys, monkeypatch):
    """The cuda study is the second: the first must not run, print or write either."""
    from gdsim.sweeps import targets

    monkeypatch.setattr(targets, "_unavailable", lambda name: "no GPU here (test)" if name == "cuda" else None)
    second = tmp_path / "second.toml"
    second.write_text(STUDY.replace('figure = "lr_batch"', 'figure = "lr_batch"\ntarget = "cuda"'))
    cli_refused(tmp_path, capsys, ["run", study, second, "--results", tmp_path / "r", "--figures", tmp_path / "f"],
                [str(second), "target", "'cuda' cannot run on this machine", "no GPU here", "nothing was run"])
    assert capsys.readouterr().out == ""


def test_cuda_target_flag_without_gpu(study, tmp_path, capsys, monkeypatch):
    from gdsim.sweeps import targets

    monkeypatch.setattr(targets, "_unavailable", lambda name: "no GPU here (test)" if name == "cuda" else None)
    cli_refused(tmp_path, capsys, ["run", study, "--target", "cuda", "--results", tmp_path / "r"],
                ["--target", "'cuda' cannot run"])


def test_run_study_api_refuses_cuda_before_making_its_folder(study, tmp_path, monkeypatch):
    from gdsim.studies import run_study
    from gdsim.sweeps import targets

    monkeypatch.setattr(targets, "_unavailable", lambda name: "no GPU here (test)" if name == "cuda" else None)
    loaded = load_study(study)
    refused(tmp_path, lambda: run_study(loaded, target="cuda", store=tmp_path / "w.zarr"), ["no GPU here"],
            error=RuntimeError)


def test_disk_full_while_saving_leaves_nothing_half_written(study, tmp_path, capsys, monkeypatch):
    """ENOSPC from the writer of a region: one line, exit 1, no temporary file left, and a
    rerun with room resumes."""
    from gdsim.sweeps.store import ResultStore

    real = ResultStore.write

    def full(self, region, variables):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))

    monkeypatch.setattr(ResultStore, "write", full)
    args = ["run", str(study), "--results", str(tmp_path / "r"), "--figures", str(tmp_path / "f")]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and "No space left on device" in err
    assert not list((tmp_path / "r").rglob("*.tmp")) and not (tmp_path / "f").exists()
    monkeypatch.setattr(ResultStore, "write", real)
    assert cli.main(args) == 0


def test_disk_too_small_for_the_results(study, tmp_path, capsys, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: usage(10**9, 10**9 - 100, 100))
    cli_refused(tmp_path, capsys, ["run", study, "--results", tmp_path / "r", "--figures", tmp_path / "f"],
                ["needs about", "on disk in", "is free", "--results"])


# =======================================================================================
# The command line
# =======================================================================================
CLI = {
    "tutorial epochs 10**11": (["tutorial", "--epochs", "100000000000"], ["needs about", "fewer epochs"]),
    "tutorial epochs 0": (["tutorial", "--epochs", "0"], ["epochs"]),
    "tutorial lr nan": (["tutorial", "--lr", "nan"], ["lr"]),
    "tutorial lr inf": (["tutorial", "--lr", "inf"], ["lr"]),
    "tutorial seed -1": (["tutorial", "--seed", "-1"], ["seed"]),
    "tutorial seed 2**64": (["tutorial", "--seed", str(2**64)], ["seed"]),
    "run chunk-runs 0": (["run", "x.toml", "--chunk-runs", "0"], ["--chunk-runs"]),
    "run redraw and restart": (["run", "x.toml", "--redraw", "--restart"], ["--redraw", "--restart"]),
    "figures folder without studies": (["figures", "--studies", "."], ["no study files"]),
    "figures studies folder missing": (["figures", "--studies", "nowhere"], ["nowhere", "no such folder", "no study files"]),
}


@pytest.mark.parametrize("argv, names", CLI.values(), ids=CLI.keys())
def test_cli(argv, names, tmp_path, capsys):
    cli_refused(tmp_path, capsys, argv, names)


def test_figures_studies_is_a_file(study, tmp_path, capsys):
    cli_refused(tmp_path, capsys, ["figures", "--studies", study], [str(study), "is a file", "gdsim run"])


def test_run_studies_without_studies(tmp_path):
    from gdsim.studies import run_studies

    refused(tmp_path, lambda: run_studies([], results="r", figures="f"), ["paths", "non-empty"])
    refused(tmp_path, lambda: run_studies("a.toml", results="r", figures="f"), ["paths", "list"])


def test_study_api_arguments(study, tmp_path):
    from gdsim.studies import run_studies, run_study

    refused(tmp_path, lambda: run_studies([study], results=3, figures="f"), ["results", "folder"])
    refused(tmp_path, lambda: run_studies([study], results="r", figures="f", progress=3), ["progress"])
    refused(tmp_path, lambda: run_study(str(study)), ["study", "load_study"])
    refused(tmp_path, lambda: run_study(load_study(study), progress="yes"), ["progress"])
    refused(tmp_path, lambda: run_study(load_study(study), chunk_runs=0, store=tmp_path / "w.zarr"), ["chunk_runs"])
    refused(tmp_path, lambda: load_study(3), ["path", "study file"])


@pytest.mark.parametrize("argv", [["run"], ["tutorial", "--epochs", "x"], ["run", "a.toml", "--target", "gpu"],
                                  ["figures", "--chunk-runs", "1.5"], ["bogus"], ["tutorial", "--lr"]])
def test_cli_usage_errors(argv, tmp_path, capsys):
    """argparse's own refusals: exit 2, a usage line, no traceback, nothing written."""
    with nothing_written_and_no_warning(tmp_path), pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "usage: gdsim" in err and "Traceback" not in err


# =======================================================================================
# Signals
# =======================================================================================
# The resumable MLP study of the reliability tests (16 chunks of 32 runs), on one thread.
SLOW_STUDY = MLP_STUDY.replace('title = "resumable"', 'title = "slow"').replace('"parallel"', '"cpu"')


def _stop_mid_run(tmp_path, signum):
    """Start ``gdsim run`` on a study of 16 regions, send ``signum`` after 2 are saved."""
    path = tmp_path / "slow.toml"
    path.write_text(SLOW_STUDY)
    store = tmp_path / "r" / "slow.zarr"
    command = [sys.executable, "-m", "gdsim.cli", "run", str(path), "--results", str(tmp_path / "r"),
               "--figures", str(tmp_path / "f"), "--chunk-runs", "32"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline and regions_saved(store) < 2:
        time.sleep(0.005)
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    return process.returncode, err, store, command


def test_sigterm_stops_cleanly_says_how_to_resume_and_resumes(tmp_path):
    status, err, store, command = _stop_mid_run(tmp_path, signal.SIGTERM)
    assert status == 143, err
    assert "terminated (SIGTERM)" in err and "run the same command again to resume" in err
    assert "Traceback" not in err
    saved = regions_saved(store)
    assert 2 <= saved < 16
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and f"resuming from {saved} saved regions" in done.stdout
    assert not list(store.parent.rglob("*.tmp"))


def test_sigterm_during_the_tutorial_exits_143(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "gdsim.cli", "tutorial", "--epochs", "3000000"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    time.sleep(3)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("the tutorial finished before the signal arrived")
    assert process.returncode == 143 and "Traceback" not in err and "terminated" in err
    assert tree(tmp_path) == []


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_gdsim_imports_is_a_clean_stop(study, tmp_path, signum, status):
    """The handlers are in place before numpy, numba and xarray load (a second or so)."""
    process = subprocess.Popen([sys.executable, "-m", "gdsim.cli", "run", str(study), "--results", "r"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    time.sleep(0.3)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert process.returncode == status and "Traceback" not in err, err
    assert tree(tmp_path) == ["small.toml"]


def test_an_interrupt_inside_exec_code_still_exits_with_130(tmp_path):
    """CPython marks a KeyboardInterrupt leaving exec() of a string (dataclasses and Numba make
    functions so) as unhandled even once caught, and then dies by SIGINT (-2 here) at exit."""
    (tmp_path / "probe.py").write_text(
        "import sys\nfrom gdsim import cli\n"
        "cli.print_info = lambda: exec('raise KeyboardInterrupt')\n"
        "sys.exit(cli.main(['info']))\n")
    done = subprocess.run([sys.executable, "-m", "probe"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 130 and "gdsim info: interrupted" in done.stderr, (done.returncode, done.stderr)


def test_a_signal_during_the_imports_acts_once_they_are_done(monkeypatch, capsys):
    """Ctrl-C during the command's imports is held until they are done (an import stopped
    halfway can leave a library half made), then stops the command cleanly."""
    import builtins

    real_import = builtins.__import__
    finished = []

    def signal_amid_import(name, *args, **kwargs):
        if name == "xarray":  # among the command's libraries (cli._import_libraries)
            monkeypatch.setattr(builtins, "__import__", real_import)
            signal.raise_signal(signal.SIGINT)  # its handler runs at once
            module = real_import(name, *args, **kwargs)
            finished.append(name)  # not reached if the handler raised
            return module
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", signal_amid_import)
    assert cli.main(["run", "nothing.toml"]) == 130
    assert finished == ["xarray"] and "interrupted" in capsys.readouterr().err


def test_a_terminal_that_cannot_show_the_title_still_runs(tmp_path):
    """Characters the output encoding lacks are escaped, not a refusal (PYTHONIOENCODING=ascii)."""
    path = tmp_path / "étude.toml"
    path.write_text(STUDY.replace('title = "small"', 'title = "學習 🚀"'))
    done = subprocess.run([sys.executable, "-m", "gdsim.cli", "run", str(path), "--results", "r", "--figures", "f"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert done.returncode == 0, done.stderr
    assert "\\u" in done.stdout and (tmp_path / "f" / "étude.png").exists()


def test_the_cli_restores_the_sigterm_handler():
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["info"]) == 0
    assert signal.getsignal(signal.SIGTERM) is before


def test_an_internal_error_is_one_line(tmp_path, capsys, monkeypatch):
    """A bug is reported in one line with the way to see its traceback, exit 1."""
    monkeypatch.setattr(cli, "print_info", lambda: [][1])
    assert cli.main(["info"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gdsim info: internal error: IndexError") and "GDSIM_DEBUG=1" in err
    assert err.count("\n") == 1
