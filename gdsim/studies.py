"""Study files: one TOML file per experiment, run into a labelled dataset and its figure.

A study names a model, a seeded dataset of :mod:`gdsim.datasets`, a grid of SGD settings
and the figure that shows the result::

    title = "Heavy ball and Nesterov: where full-batch GD converges"
    figure = "momentum_phase"        # one of gdsim.figures.FIGURES
    runner = "sweep"                 # "sweep" (default) or "train"
    target = "parallel"              # sweep runner only: "cpu", "parallel" or "cuda"

    [model]
    type = "linear"                  # "linear": n_in, n_out; "mlp": sizes, activation
    n_in = 1
    n_out = 1

    [data]
    name = "tutorial_line"           # a function of gdsim.datasets, and its arguments,
    seed = 0                         # or file = "data.npz" (arrays X and Y, next to the study)

    [train]                          # gdsim.sweep's arguments
    lr = {geomspace = [1e-3, 0.5, 120]}
    momentum = {linspace = [0.01, 0.99, 99]}
    nesterov = [false, true]
    batch_size = "full"
    epochs = 100
    params0 = [-10.0, -20.0]

Axis values (``lr, momentum, dampening, weight_decay, nesterov, batch_size, seed``) are a
scalar, a list, or a table ``{linspace = [start, stop, num]}``, ``{geomspace = [start,
stop, num]}`` or ``{arange = [start, stop, step]}``; ``batch_size = "full"`` is the whole
data set. The other ``[train]`` keys: ``epochs, shuffle, drop_last, params0`` (a list, or
absent for ``model.init(seed)``), ``lr_schedule`` (``["step", step_size, gamma]``,
``["exponential", gamma]``, ``["cosine", T_max, eta_min]`` or ``{factors = [...]}``),
``divergence`` (a factor of the initial loss, or ``"none"``) and ``dtype``.

Runners: ``"sweep"`` runs the whole grid with :func:`gdsim.sweep`. ``"train"`` calls
:func:`gdsim.train` once per grid point and also records the parameters at every epoch
(``epoch_params``) and, for classifiers, the accuracy: for small grids whose figure
needs trajectories. Its runs always go to the end (``divergence = "none"``, the default); it keeps the
parameters of every epoch only when the figure draws them.

Data flow: :func:`load_study` reads and checks the whole file (and builds the data)
before anything runs -> :func:`run_study` runs the grid in chunks saved to
``results/NAME.partial/`` (resumable) -> :func:`save_dataset` writes ``results/NAME.nc``
(temporary file, then rename) -> :mod:`gdsim.figures` draws ``figures/NAME.png``.
:func:`run_studies` does all of it for several study files, checking every one (and what
``results/`` holds for it) before the first runs; ``gdsim run`` and ``gdsim figures`` call it.
"""

import copy
import difflib
import hashlib
import inspect
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from . import datasets
from ._validate import format_bytes
from .engine import _check_memory
from .models import MLP, Linear
from .sweeps import AXES, check_sweep

RUNNERS = ("sweep", "train")
TOP_KEYS = {"title", "description", "figure", "runner", "target", "model", "data", "train"}
MODEL_KEYS = {"linear": {"type", "n_in", "n_out", "loss", "reduction"},
              "mlp": {"type", "sizes", "activation", "loss", "reduction"}}
TRAIN_KEYS = set(AXES) | {"epochs", "shuffle", "drop_last", "params0", "lr_schedule", "divergence", "dtype"}
GRID_FUNCTIONS = {"linspace": np.linspace, "geomspace": np.geomspace, "arange": np.arange}
#: The dataset functions a study may name, and their arguments.
DATASETS = {name: getattr(datasets, name) for name in ("tutorial_line", "teacher_mlp", "random_regression", "blobs")}


class StudyError(ValueError):
    """A study file that cannot run: the message names the file, the key and what it accepts."""


@dataclass
class Study:
    """A checked study file, ready to run.

    Attributes
    ----------
    name : str
        The file's stem: results go to ``NAME.nc``, the figure to ``NAME.png``.
    path : pathlib.Path
    sha256 : str
        Hash of the file's bytes and of its data file's, if any (recorded in the dataset).
    text : str
        The file itself (recorded in the dataset, so a result says how it was made).
    title, description, figure, runner, target : str
    model : gdsim.Linear or gdsim.MLP
    data : dict
        ``{"name": ..., **arguments}`` of the dataset function, or ``{"file": ...}``.
    X, Y : numpy.ndarray
        The data it returns.
    settings : dict
        Keyword arguments of :func:`gdsim.sweep` (or of the ``train`` runner).
    swept : tuple of str
        The axes given as arrays: the dataset's dimensions, in ``gdsim.sweep``'s order.
    n_runs : int
    checked : types.SimpleNamespace
        The settings as :func:`gdsim.sweeps.check_sweep` returned them.
    result_bytes : int
        Size of the result dataset (in memory; about the same on disk).
    """

    name: str
    path: Path
    sha256: str
    text: str
    title: str
    description: str
    figure: str
    runner: str
    target: str
    model: object
    data: dict
    X: np.ndarray = field(repr=False)
    Y: np.ndarray = field(repr=False)
    settings: dict
    swept: tuple
    n_runs: int
    checked: object = field(repr=False)
    result_bytes: int = 0


def _closest(key, allowed):
    close = difflib.get_close_matches(key, sorted(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_keys(fail, where, table, allowed, required=()):
    if not isinstance(table, dict):
        fail(where, f"must be a table, got {table!r}")
    for key in table:
        if key not in allowed:
            fail(where, f"unknown key {key!r}{_closest(key, allowed)}; accepted keys: {', '.join(sorted(allowed))}")
    for key in required:
        if key not in table:
            fail(where, f"missing key {key!r}")


def _grid_value(fail, key, value, n):
    """An axis value from TOML: scalar, list, or ``{linspace|geomspace|arange = [a, b, c]}``."""
    if isinstance(value, dict):
        if len(value) != 1 or next(iter(value)) not in GRID_FUNCTIONS:
            fail(f"[train] {key}", f"a table must be one of {{linspace = [start, stop, num]}}, "
                 f"{{geomspace = [start, stop, num]}} or {{arange = [start, stop, step]}}, got {value!r}")
        (function, args), = value.items()
        if (not isinstance(args, list) or len(args) != 3
                or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)):
            fail(f"[train] {key}", f"{function} needs a list of three numbers, got {args!r}")
        if function != "arange" and (not isinstance(args[2], int) or args[2] < 1):
            fail(f"[train] {key}", f"{function}'s third number is the number of values, an integer >= 1, "
                 f"got {args[2]!r}")
        if function == "geomspace" and (args[0] <= 0 or args[1] <= 0):
            fail(f"[train] {key}", f"geomspace needs start and stop > 0, got {args!r}")
        if function == "arange" and (args[2] == 0 or not math.isfinite(args[2])):
            fail(f"[train] {key}", f"arange needs a finite step != 0, got {args[2]!r}")
        values = GRID_FUNCTIONS[function](*args)
        return values.astype(np.int64) if key in ("batch_size", "seed") and function == "arange" else values
    if key == "batch_size":
        if value == "full":
            return n
        if isinstance(value, list):
            return [n if v == "full" else v for v in value]
    if isinstance(value, list):
        return np.array(value, dtype=object) if not value else value
    return value


def _lr_schedule(fail, value):
    if isinstance(value, dict):
        if set(value) != {"factors"}:
            fail("[train] lr_schedule", f"a table must be {{factors = [...]}}, got {value!r}")
        return np.asarray(value["factors"], dtype=object)
    if isinstance(value, list) and value and isinstance(value[0], str):
        return tuple(value)
    fail("[train] lr_schedule", '["step", step_size, gamma], ["exponential", gamma], ["cosine", T_max, eta_min] '
         f"or {{factors = [...]}}, got {value!r}")


def _build_model(fail, spec):
    _check_keys(fail, "[model]", spec, MODEL_KEYS["linear"] | MODEL_KEYS["mlp"], required=("type",))
    kind = spec["type"]
    if kind not in MODEL_KEYS:
        fail("[model] type", f"must be 'linear' or 'mlp', got {kind!r}{_closest(str(kind), MODEL_KEYS)}")
    _check_keys(fail, f"[model] (type = {kind!r})", spec, MODEL_KEYS[kind],
                required=("n_in", "n_out") if kind == "linear" else ("sizes",))
    options = {k: v for k, v in spec.items() if k != "type"}
    try:
        return Linear(**options) if kind == "linear" else MLP(**options)
    except ValueError as error:
        fail("[model]", str(error))


def _build_data(fail, spec, folder):
    """``(X, Y, file_bytes)``: from a :mod:`gdsim.datasets` function, or from an ``.npz``
    file (``file``, relative to the study file; arrays ``X`` and ``Y``)."""
    if "file" in spec:
        _check_keys(fail, "[data] (file = ...)", spec, {"file"})
        path = folder / str(spec["file"])
        try:
            raw = path.read_bytes()
            with np.load(path) as f:
                missing = [key for key in ("X", "Y") if key not in f.files]
                if missing:
                    fail("[data] file", f"{path} has arrays {f.files}; it needs X and Y")
                return f["X"], f["Y"], raw
        except (OSError, ValueError) as error:
            fail("[data] file", f"cannot read {path} as an .npz file of X and Y: {error}")
    _check_keys(fail, "[data]", spec, {"name", "file"} | {p for f in DATASETS.values()
                                                          for p in inspect.signature(f).parameters})
    if "name" not in spec:
        fail("[data]", "needs name = one of " + ", ".join(DATASETS) + ", or file = \"data.npz\"")
    name = spec["name"]
    if name not in DATASETS:
        fail("[data] name", f"must be one of {', '.join(DATASETS)}, got {name!r}{_closest(str(name), DATASETS)}")
    arguments = {k: v for k, v in spec.items() if k != "name"}
    accepted = set(inspect.signature(DATASETS[name]).parameters)
    _check_keys(fail, f"[data] (name = {name!r})", arguments, accepted)
    try:
        return (*DATASETS[name](**arguments), b"")
    except (ValueError, TypeError) as error:
        fail("[data]", str(error))


def load_study(path):
    """Read and check a study file completely, and build its model and data.

    Parameters
    ----------
    path : str or pathlib.Path
        A ``.toml`` file (see the module's documentation for its keys).

    Returns
    -------
    Study

    Raises
    ------
    StudyError
        A ``ValueError`` naming the file, the key and the accepted values: unknown keys
        (with the closest valid one), wrong types, values out of range, a figure the
        grid cannot draw. Nothing has run.
    """
    from .figures import FIGURES

    path = Path(path)

    def fail(where, message):
        raise StudyError(f"{path}: {where}: {message}")

    try:
        raw = path.read_bytes()
    except OSError as error:
        raise StudyError(f"{path}: cannot read the study file: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8")
        spec = tomllib.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise StudyError(f"{path}: not a valid TOML file: {error}") from None
    _check_keys(fail, "top level", spec, TOP_KEYS, required=("title", "figure", "model", "data", "train"))
    for key in ("title", "description", "figure", "runner", "target"):
        if key in spec and not isinstance(spec[key], str):
            fail(key, f"must be a string, got {spec[key]!r}")
    runner = spec.get("runner", "sweep")
    if runner not in RUNNERS:
        fail("runner", f"must be one of {', '.join(RUNNERS)}, got {runner!r}{_closest(runner, RUNNERS)}")
    figure = spec["figure"]
    if figure not in FIGURES:
        fail("figure", f"must be one of {', '.join(sorted(FIGURES))}, got {figure!r}{_closest(figure, FIGURES)}")
    if runner == "train" and "target" in spec:
        fail("target", "the train runner runs on the CPU, one run at a time; target is for runner = 'sweep'")
    model = _build_model(fail, spec["model"])
    X, Y, data_bytes = _build_data(fail, spec["data"], path.parent)
    try:
        checked_X, checked_Y = model.check_data(X, Y)
    except ValueError as error:
        fail("[data]", f"does not fit the model: {error}")
    # float64 (n, n_in) and, for MSE, (n, n_out); a classifier keeps its integer labels.
    X, Y = checked_X, (checked_Y if model.loss_name == "mse" else np.asarray(Y))

    train = spec["train"]
    _check_keys(fail, "[train]", train, TRAIN_KEYS, required=("lr", "epochs"))
    settings = {}
    for key, value in train.items():
        if key in AXES:
            settings[key] = _grid_value(fail, key, value, X.shape[0])
        elif key == "lr_schedule":
            settings[key] = _lr_schedule(fail, value)
        elif key == "divergence":
            if value == "none":
                settings[key] = None
            elif runner == "train":
                fail("[train] divergence", "the train runner runs every epoch; divergence must be 'none' (runs "
                     f"are still marked at 1e6 x their initial loss), got {value!r}")
            else:
                settings[key] = value
        else:
            settings[key] = value
    if runner == "train":
        settings.setdefault("divergence", None)
    try:
        checked = check_sweep(model, X, Y, target=spec.get("target", "parallel"), **settings)
    except ValueError as error:
        message = str(error)
        key = next((k for k in sorted(TRAIN_KEYS | {"target"}, key=len, reverse=True)
                    if message.startswith(k)), None)
        fail(f"[train] {key}" if key and key != "target" else "target" if key else "[train]", message)
    swept = tuple(name for name in AXES if checked.swept[name])
    per_run = 8 * (checked.epochs + 1) + 8 * model.n_params + 24  # loss, params, divergence
    if runner == "train" and FIGURES[figure].params:
        per_run += 8 * (checked.epochs + 1) * (model.n_params + 1)  # epoch_params, accuracy
    try:  # the chunks, then the whole result, are in memory at once
        _check_memory(2 * per_run * checked.n_configs, f"the result of {checked.n_configs} runs",
                      "sweep fewer points or fewer epochs (loss is recorded at every epoch), or split the study")
    except ValueError as error:
        fail("[train]", str(error))
    study = Study(name=path.stem, path=path, sha256=hashlib.sha256(raw + data_bytes).hexdigest(), text=text,
                  title=spec["title"], description=spec.get("description", ""), figure=figure, runner=runner,
                  target=checked.target, model=model, data=dict(spec["data"]), X=X, Y=Y, settings=settings,
                  swept=swept, n_runs=checked.n_configs, checked=checked, result_bytes=per_run * checked.n_configs)
    problem = FIGURES[figure].check(study)
    if problem:
        fail("figure", f"{figure!r} {problem}")
    return study


def find_studies(folder):
    """The ``*.toml`` files of ``folder``, sorted by name (ValueError if there are none)."""
    folder = Path(folder)
    paths = sorted(folder.glob("*.toml"))
    if not paths:
        raise StudyError(f"{folder}: no study files (*.toml) there")
    return paths


# ---------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------
def _checked(study, target=None):
    """The study's checked sweep arguments (:func:`gdsim.sweeps.check_sweep`), on ``target``."""
    c = copy.copy(study.checked)
    if target is not None:
        if study.runner == "train" and target != "cpu":
            raise StudyError(f"{study.path}: target {target!r}: the train runner runs on the CPU only")
        c.target = target
    return c


def _train_points(study, c, runs, progress=None):
    """Run grid points ``runs`` (flat indices) with :func:`gdsim.train`, one at a time:
    the raw arrays of :func:`gdsim.sweeps.run_grid_points`, plus ``epoch_params`` and, for
    a classifier, ``accuracy`` when the figure draws them."""
    from .engine import train
    from .figures import FIGURES
    from .optim import SGD

    model, X, Y = study.model, study.X, study.Y
    fixed = {k: study.settings[k] for k in ("epochs", "shuffle", "drop_last", "params0", "lr_schedule")
             if k in study.settings}
    keep_params = FIGURES[study.figure].params  # per-epoch parameters only where the figure draws them
    keys = ["epoch_loss", "diverged_step", "diverged_loss", "params"]
    keys += ["epoch_params"] + (["accuracy"] if model.loss_name == "cross_entropy" else []) if keep_params else []
    out = {key: [] for key in keys}
    index = np.unravel_index(runs, c.shape)
    for i in range(len(runs)):
        p = {name: c.values[name][index[a][i]] for a, name in enumerate(AXES)}
        optimizer = SGD(lr=float(p["lr"]), momentum=float(p["momentum"]), dampening=float(p["dampening"]),
                        weight_decay=float(p["weight_decay"]), nesterov=bool(p["nesterov"]))
        result = train(model, X, Y, optimizer, batch_size=int(p["batch_size"]), seed=int(p["seed"]),
                       record_params=keep_params, **fixed)
        out["epoch_loss"].append(result.epoch_loss)
        out["diverged_step"].append(result.diverged_step)
        out["diverged_loss"].append(result.diverged_loss)
        out["params"].append(result.params)
        if keep_params:
            out["epoch_params"].append(result.epoch_params)
        if "accuracy" in out:
            with np.errstate(all="ignore"):  # a blown-up run predicts from NaN logits: 0 accuracy, no warning
                predicted = np.stack([model.predict(t, X).argmax(axis=1) for t in result.epoch_params])
            out["accuracy"].append((predicted == Y[None, :]).mean(axis=1))
        if progress is not None:
            progress(i + 1, len(runs))
    return {key: np.asarray(value) for key, value in out.items()}


def _run_points(study, c, runs, progress=None):
    from .sweeps import run_grid_points

    if study.runner == "sweep":
        return run_grid_points(c, runs, progress)
    return _train_points(study, c, runs, progress)


def _dataset(study, c, raw):
    """The study's labelled dataset from the raw arrays of all its grid points."""
    from .sweeps import grid_dataset

    ds = grid_dataset(c, raw)
    if study.runner == "train":
        dims = list(ds.final_loss.dims)
        shape = ds.final_loss.shape
        if "epoch_params" in raw:
            ds["epoch_params"] = (dims + ["epoch", "param"], raw["epoch_params"].reshape(shape + raw[
                "epoch_params"].shape[1:]), {"long_name": "parameters",
                                            "description": "before each epoch and after the last"})
        if "accuracy" in raw:
            ds["accuracy"] = (dims + ["epoch"], raw["accuracy"].reshape(shape + (-1,)),
                              {"long_name": "training accuracy",
                               "description": "before each epoch and after the last"})
        ds.attrs.update(target="cpu (gdsim.train, one run at a time)", stop_diverged=False)
    if "file" in study.data:
        source = f"data: the file {study.data['file']} (no random draw)"
    else:
        data_seed = study.data.get("seed",
                                   inspect.signature(DATASETS[study.data["name"]]).parameters["seed"].default)
        source = f"data: gdsim.datasets.{study.data['name']}(seed={data_seed})"
        ds.attrs["data_seed"] = data_seed
    ds.attrs.update(study=study.name, study_title=study.title, study_sha256=study.sha256, study_file=study.text,
                    runner=study.runner, figure=study.figure,
                    data=", ".join(f"{k}={v!r}" for k, v in study.data.items()),
                    random_draws=f"{source}; {ds.attrs['random_draws']}")
    return ds


def run_study(study, *, target=None, progress=None, folder=None, chunk_runs=None):
    """Run a study's grid, in chunks saved to ``folder`` if one is given.

    Parameters
    ----------
    study : Study
        From :func:`load_study`.
    target : {"cpu", "parallel", "cuda"}, optional
        Overrides the study's target (sweep runner only).
    progress : callable, optional
        Called as ``progress(runs_done, n_runs)``.
    folder : path, optional
        Work folder for a resumable run: each finished chunk of runs is written there
        atomically (``chunk_NNNNNN.npz``) next to a ``manifest.json`` (the study file's hash,
        gdsim's version, the target and the chunk size); a rerun loads the chunks found and
        runs only the others. A folder made for another study file, gdsim version or
        target is refused (:class:`StudyError`). None: run everything at once, in memory.
    chunk_runs : int, optional
        Runs per chunk; default :data:`CHUNK_RUNS` of the runner (a resumed run keeps the
        manifest's). The result does not depend on it (bit for bit).

    Returns
    -------
    xarray.Dataset
        ``gdsim.sweep``'s result (the train runner's has the same layout, plus
        ``epoch_params`` and ``accuracy`` where its figure needs them), with the study in
        its attributes: ``study``, ``study_title``, ``study_sha256``, ``study_file`` (the
        file's text), ``runner``, ``figure``, ``data``, ``data_seed`` and ``random_draws``.
    """
    c = _checked(study, target)
    n_runs = c.n_configs
    if folder is None:
        return _dataset(study, c, _run_points(study, c, np.arange(n_runs), progress))
    folder = Path(folder)
    chunk_runs = _open_work_folder(study, c, folder, chunk_runs)
    bounds = list(range(0, n_runs, chunk_runs)) + [n_runs]
    parts = []
    for k, (first, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        path = folder / f"chunk_{k:06d}.npz"
        part = _load_chunk(path, stop - first)
        if part is None:
            report = None if progress is None else (lambda done, total, first=first: progress(first + done, n_runs))
            part = _run_points(study, c, np.arange(first, stop), report)
            _save_chunk(path, part)
        elif progress is not None:
            progress(stop, n_runs)
        parts.append(part)
    raw = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    return _dataset(study, c, raw)


#: Default runs per chunk of a resumable study: sweeps run blocks of 128 runs on every
#: thread; the train runner's runs can each take seconds.
CHUNK_RUNS = {"sweep": 2048, "train": 1}


def _manifest(study, c, chunk_runs):
    from . import __version__

    return {"study": study.name, "study_sha256": study.sha256, "gdsim_version": __version__, "runner": study.runner,
            "target": _target_family(c.target), "n_runs": int(c.n_configs), "chunk_runs": int(chunk_runs)}


def _target_family(target):
    """cpu and parallel give the same bits; cuda may differ in the last places."""
    return "cuda" if target == "cuda" else "cpu"


def check_work_folder(study, c, folder):
    """The chunk size recorded in ``folder``'s manifest (None if there is no manifest);
    :class:`StudyError` if its chunks cannot be part of this run."""
    manifest_path = Path(folder) / "manifest.json"
    if not manifest_path.exists():
        return None
    try:
        found = json.loads(manifest_path.read_text())
    except ValueError:
        found = {}
    expected = _manifest(study, c, found.get("chunk_runs", 1))
    what = {"study_sha256": "the study file changed", "gdsim_version": "gdsim's version changed",
            "target": "the target differs", "runner": "the runner differs", "n_runs": "the grid differs"}
    changed = [key for key in what if found.get(key) != expected[key]]
    if changed or not isinstance(found.get("chunk_runs"), int):
        raise StudyError(f"{folder} holds part of a run of {study.path} that cannot be resumed ("
                         f"{', '.join(what[k] for k in changed) or 'its manifest is unreadable'}); "
                         "rerun with --restart to discard it")
    return found["chunk_runs"]


def _open_work_folder(study, c, folder, chunk_runs):
    """Check the manifest of ``folder``, or create the folder and its manifest; returns the
    chunk size to use (the manifest's when resuming)."""
    found = check_work_folder(study, c, folder)
    if found is not None:
        return found
    chunk_runs = CHUNK_RUNS[study.runner] if chunk_runs is None else chunk_runs
    if not isinstance(chunk_runs, int) or isinstance(chunk_runs, bool) or chunk_runs < 1:
        raise StudyError(f"chunk_runs must be an integer >= 1, got {chunk_runs!r}")
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_manifest(study, c, chunk_runs), indent=2) + "\n"
    _atomic_write(folder / "manifest.json", lambda tmp: Path(tmp).write_text(text))
    return chunk_runs


def _save_chunk(path, part):
    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **part)

    _atomic_write(path, write)


def _load_chunk(path, n):
    """A chunk's arrays if ``path`` holds a complete one of ``n`` runs, else None."""
    if not path.exists():
        return None
    try:
        with np.load(path) as f:
            part = {key: f[key] for key in f.files}
    except (OSError, ValueError, EOFError):  # unreadable: run it again
        return None
    if "epoch_loss" not in part or any(a.shape[:1] != (n,) for a in part.values()):
        return None
    return part


def chunks_saved(folder):
    """How many chunk files a work folder holds (0 if there is none)."""
    folder = Path(folder)
    return len(list(folder.glob("chunk_*.npz"))) if folder.is_dir() else 0


# ---------------------------------------------------------------------------------------
# Many studies
# ---------------------------------------------------------------------------------------
def _result_state(study, nc, target, restart):
    """"current" if ``nc`` holds this study's result, None if there is none (or ``restart``);
    :class:`StudyError` if it was made from another study file, gdsim version or target."""
    from . import __version__

    if restart or not nc.exists():
        return None
    attrs = read_attrs(nc)
    problems = []
    if attrs.get("study_sha256") != study.sha256:
        problems.append("the study file changed")
    if attrs.get("gdsim_version") != __version__:
        problems.append(f"it was made by gdsim {attrs.get('gdsim_version')}, this is {__version__}")
    if study.runner == "sweep" and _target_family(str(attrs.get("target"))) != _target_family(target):
        problems.append(f"it was run on {attrs.get('target')!r}, not {target!r}")
    if problems:
        raise StudyError(f"{nc} is a result of {study.path} that is out of date ({'; '.join(problems)}); "
                         "rerun with --restart to replace it (or --redraw to draw it as it is)")
    return "current"


def run_studies(paths, *, results, figures, target=None, redraw=False, restart=False, chunk_runs=None,
                progress=None):
    """Check every study file, run each one (resuming from saved chunks) or reuse its
    up-to-date result, and draw its figure.

    Parameters
    ----------
    paths : list of path
        Study files; all of them, and what ``results`` holds for them, are checked
        before the first one runs.
    results, figures : path
        Folders for ``NAME.nc`` (and, while it runs, the chunks in ``NAME.partial/``) and
        for ``NAME.png``.
    target : str, optional
        Overrides the studies' targets (sweep runner).
    redraw : bool
        Draw from the saved results, never run; a result made from another version of the
        study file (its hash differs) is refused.
    restart : bool
        Discard saved results and chunks of these studies and run them from scratch.
    chunk_runs : int, optional
        Runs per chunk (see :func:`run_study`).
    progress : callable, optional
        ``progress(label)`` returns a ``progress(runs_done, n_runs)`` callback (or None)
        for the study named by ``label``. Each study's start and end are printed either way.

    Returns
    -------
    list of (Study, xarray.Dataset)
    """
    from .figures import draw

    # ---- everything checked before the first run ------------------------------------------
    if redraw and restart:
        raise ValueError("--redraw (never run) and --restart (run again) exclude each other")
    if chunk_runs is not None and (isinstance(chunk_runs, bool) or not isinstance(chunk_runs, int) or chunk_runs < 1):
        raise ValueError(f"--chunk-runs must be an integer >= 1, got {chunk_runs!r}")
    studies = [load_study(p) for p in paths]
    names = [s.name for s in studies]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise StudyError(f"two study files named {twice[0]!r}: their results would overwrite each other")
    results, figures = Path(results), Path(figures)
    plans = []
    for study in studies:
        nc, partial = results / f"{study.name}.nc", results / f"{study.name}.partial"
        run_target = target or study.target
        if redraw:
            if not nc.exists():
                raise StudyError(f"{nc}: no saved result to redraw; run `gdsim run {study.path}` first")
            if read_attrs(nc).get("study_sha256") != study.sha256:
                raise StudyError(f"{nc} was made from another version of {study.path} (hash differs); run it again")
            state = "redraw"
        else:
            c = _checked(study, target)
            state = _result_state(study, nc, run_target, restart)
            if state is None and not restart:
                check_work_folder(study, c, partial)
        plans.append((study, nc, partial, run_target, state))
    to_run = [p for p in plans if p[4] is None]
    needed = 2 * sum(p[0].result_bytes for p in to_run)  # the chunks and the final file (memory: load_study)
    if needed:
        existing = next(folder for folder in (results, *results.parents) if folder.exists())
        free = shutil.disk_usage(existing).free
        if needed > free:
            raise StudyError(f"the results need about {format_bytes(needed)} on disk in {results} but only "
                             f"{format_bytes(free)} is free; run fewer points or epochs, or choose --results")

    # ---- run -------------------------------------------------------------------------------
    done = []
    start = time.perf_counter()
    for i, (study, nc, partial, run_target, state) in enumerate(plans, 1):
        prefix = f"[{i}/{len(studies)}] {study.name}"
        t0 = time.perf_counter()
        if state is not None:
            ds = load_dataset(nc)
            what = "redrawn" if state == "redraw" else f"up to date ({nc}; --restart runs it again)"
        else:
            if restart:
                nc.unlink(missing_ok=True)
                shutil.rmtree(partial, ignore_errors=True)
            resumed = chunks_saved(partial)
            runner = f"{study.n_runs} runs" + (f" on {run_target}" if study.runner == "sweep" else " with gdsim.train")
            print(f"{prefix}: {study.title} ({runner}" + (f"; resuming from {resumed} saved chunks" if resumed
                                                            else "") + ")", flush=True)
            try:
                ds = run_study(study, target=target, progress=progress(prefix) if progress else None, folder=partial,
                               chunk_runs=chunk_runs)
            except KeyboardInterrupt:
                print(f"\n{prefix}: interrupted; {chunks_saved(partial)} finished chunks are saved in {partial}; "
                      "run the same command again to resume", file=sys.stderr, flush=True)
                raise
            save_dataset(ds, nc)
            shutil.rmtree(partial, ignore_errors=True)
            n_diverged = int(ds.diverged.sum())
            what = f"{n_diverged} of {study.n_runs} runs diverged; saved {nc}"
        draw(study, ds, figures / f"{study.name}.png")
        print(f"{prefix}: {what}; drew {figures / study.name}.png ({time.perf_counter() - t0:.1f} s)", flush=True)
        done.append((study, ds))
    print(f"{len(studies)} studies done in {time.perf_counter() - start:.1f} s", flush=True)
    return done


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------
def _atomic_write(path, write):
    """Call ``write(temporary_path)``, then rename it to ``path``: a reader never sees a
    half-written file, and a crash leaves the old file (or none)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the result is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_dataset(ds, path):
    """Write a sweep's dataset to netCDF (``xarray``'s scipy engine: netCDF 3), atomically.

    netCDF 3 has no boolean attributes or 64-bit integers: boolean attributes are stored
    as the strings ``"True"``/``"False"`` and integer variables and coordinates as int32
    (they are step counts, seeds and batch sizes); boolean variables round-trip.
    """
    ds = ds.copy()
    ds.attrs = {k: str(v) if isinstance(v, (bool, np.bool_)) else v for k, v in ds.attrs.items()}
    for name, var in ds.variables.items():
        if var.dtype == np.int64:
            if var.size and (var.values.min() < np.iinfo(np.int32).min or var.values.max() > np.iinfo(np.int32).max):
                raise ValueError(f"{name} does not fit netCDF 3's int32")
            ds[name] = var.astype(np.int32)
        for k, v in var.attrs.items():
            if isinstance(v, (bool, np.bool_)):
                var.attrs[k] = str(v)
    _atomic_write(path, lambda tmp: ds.to_netcdf(tmp, engine="scipy"))


def load_dataset(path):
    """Read a dataset written by :func:`save_dataset` (fully into memory; the file is closed)."""
    import xarray as xr

    with xr.open_dataset(path, engine="scipy") as ds:
        return ds.load()


def read_attrs(path):
    """The attributes of a dataset written by :func:`save_dataset`, without reading its arrays."""
    import xarray as xr

    with xr.open_dataset(path, engine="scipy") as ds:
        return dict(ds.attrs)
