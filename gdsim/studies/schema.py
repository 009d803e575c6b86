"""Study files -> :class:`Study`: the TOML schema, read and checked before anything runs.

Every problem is a :class:`StudyError` naming the file, the key and what it accepts; the
sweep settings of ``[train]`` are checked by :func:`gdsim.sweeps.check_sweep`, whose
:class:`~gdsim._validate.ParameterError` says which argument (so which key) it refuses.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from .. import datasets
from .._resources import check_memory
from .._validate import ParameterError, closest
from ..batches import steps_per_epoch
from ..data_files import EXTENSIONS, TABLE_KEYS, read_data_file
from ..models import MLP, Linear
from ..sweeps import AXES, SweepSpec, check_sweep
from ..tracks import RESULTS, check_track, measured_steps

RUNNERS = ("sweep", "train")
TOP_KEYS = {"title", "description", "figure", "runner", "target", "model", "data", "train"}
MODEL_OPTIONS = {"bias", "parameterization", "init_scale"}  # keyword arguments of both models
MODEL_KEYS = {"linear": {"type", "n_in", "n_out", "loss", "reduction"} | MODEL_OPTIONS,
              "mlp": {"type", "sizes", "activation", "loss", "reduction"} | MODEL_OPTIONS}
TRAIN_KEYS = set(AXES) | {"epochs", "shuffle", "drop_last", "params0", "lr_schedule", "divergence", "dtype",
                          "track"}
FILE_KEYS = {"file", "y_file", *TABLE_KEYS}  # [data] keys of a data file
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
        The file's stem: results go to ``NAME.zarr``, the figure to ``NAME.png``.
    path : pathlib.Path
    sha256 : str
        Hash of the file's bytes and of its data file's, if any (recorded in the dataset).
    content_sha256 : str
        Hash of what decides the numbers: the parsed ``runner``, ``[model]``, ``[data]``
        (and the data file's bytes) and ``[train]``, and whether the figure keeps the
        parameters of every epoch. A result is current while it is unchanged: editing the
        title, the description or comments does not make it stale.
    text : str
        The file itself (recorded in the dataset, so a result says how it was made).
    title, description, runner : str
    figure : str
        The figure's name: of the gallery (:data:`gdsim.figures.FIGURES`) or a plot of
        :mod:`gdsim.plot` (``"auto"`` when the file names none).
    figure_choice : gdsim.figures.FigureChoice
        The same, with the plot's arguments from a ``[figure]`` table.
    model : gdsim.Linear or gdsim.MLP
    data : dict
        ``{"name": ..., **arguments}`` of the dataset function, or ``{"file": ..., ...}``
        (and ``y_file``, or a table's ``x_columns``, ``y_columns``, ...).
    X, Y : numpy.ndarray
        The data it returns.
    settings : dict
        Keyword arguments of :func:`gdsim.sweep` (or of the ``train`` runner).
    spec : gdsim.sweeps.SweepSpec
        The settings as :func:`gdsim.sweeps.check_sweep` returned them (its ``target`` is
        the study's).
    result_bytes : int
        Size of the result dataset (in memory; about the same on disk).
    """

    name: str
    path: Path
    sha256: str
    content_sha256: str
    text: str
    title: str
    description: str
    figure_choice: object
    runner: str
    model: MLP
    data: dict
    X: np.ndarray = field(repr=False)
    Y: np.ndarray = field(repr=False)
    settings: dict
    spec: SweepSpec = field(repr=False)
    result_bytes: int = 0

    @property
    def figure(self):
        """The figure's name (:attr:`figure_choice`'s)."""
        return self.figure_choice.name

    @property
    def keeps_params(self):
        """Whether the runs keep their parameters at every epoch (``epoch_params``): the
        train runner, for a figure that draws them."""
        return self.figure_choice.keeps_params(self.runner)

    @property
    def target(self):
        """The study's target (``target = ...``, default ``"parallel"``)."""
        return self.spec.target

    @property
    def swept(self):
        """The axes given as arrays: the dataset's dimensions, in ``gdsim.sweep``'s order."""
        return self.spec.dims

    @property
    def n_runs(self):
        """Number of grid points."""
        return self.spec.n_configs


def _check_keys(fail, where, table, allowed, required=()):
    if not isinstance(table, dict):
        fail(where, f"must be a table, got {table!r}")
    for key in table:
        if key not in allowed:
            fail(where, f"unknown key {key!r}{closest(key, allowed)}; accepted keys: {', '.join(sorted(allowed))}")
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
        if not all(math.isfinite(a) for a in args):
            fail(f"[train] {key}", f"{function} needs finite numbers, got {args!r}")
        count = args[2] if function != "arange" else max(0, math.ceil((args[1] - args[0]) / args[2]))
        try:
            check_memory(8 * 64 * count, f"{function} of {count} values", "sweep fewer values")
        except ParameterError as error:
            fail(f"[train] {key}", str(error))
        if key in ("batch_size", "seed") and not all(isinstance(a, int) for a in args):
            fail(f"[train] {key}", f"{key} takes integers: {function} needs integer numbers here, got {args!r}")
        values = GRID_FUNCTIONS[function](*args)
        return values.astype(np.int64) if key in ("batch_size", "seed") and function == "arange" else values
    if key == "batch_size":
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and v != "full":
                fail("[train] batch_size", f'a batch size is an integer or "full" (the whole data set), got {v!r}'
                     f"{closest(v, ['full'])}")
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
        factors = value["factors"]
        if not isinstance(factors, list) or not all(isinstance(f, (int, float)) and not isinstance(f, bool)
                                                    for f in factors):
            fail("[train] lr_schedule", f"factors must be a list of numbers, got {factors!r}")
        return np.asarray(factors, dtype=np.float64)
    if isinstance(value, list) and value and isinstance(value[0], str):
        return tuple(value)
    fail("[train] lr_schedule", '["step", step_size, gamma], ["exponential", gamma], ["cosine", T_max, eta_min] '
         f"or {{factors = [...]}}, got {value!r}")


def _build_model(fail, spec):
    _check_keys(fail, "[model]", spec, MODEL_KEYS["linear"] | MODEL_KEYS["mlp"], required=("type",))
    kind = spec["type"]
    if not isinstance(kind, str) or kind not in MODEL_KEYS:
        fail("[model] type", f"must be 'linear' or 'mlp', got {kind!r}{closest(str(kind), MODEL_KEYS)}")
    _check_keys(fail, f"[model] (type = {kind!r})", spec, MODEL_KEYS[kind],
                required=("n_in", "n_out") if kind == "linear" else ("sizes",))
    options = {k: v for k, v in spec.items() if k != "type"}
    try:
        return Linear(**options) if kind == "linear" else MLP(**options)
    except ValueError as error:
        fail("[model]", str(error))


def _build_data(fail, spec, folder):
    """``(X, Y, file_bytes)``: from a :mod:`gdsim.datasets` function, or from a data file
    (``file``, relative to the study file; see :func:`gdsim.data_files.read_data_file`)."""
    if isinstance(spec, dict) and FILE_KEYS & set(spec):
        _check_keys(fail, "[data] (file = ...)", spec, FILE_KEYS)
        if "file" not in spec:
            key = sorted(FILE_KEYS & set(spec))[0]
            fail(f"[data] {key}", f'{key} goes with file = "..." (the data file), which is missing')
        paths = {}
        for key in ("file", "y_file"):
            if key in spec:
                if not isinstance(spec[key], str) or not spec[key]:
                    kinds = EXTENSIONS if key == "file" else ".npy, the targets"
                    fail(f"[data] {key}", f"must be the path of a data file ({kinds}; a string), got {spec[key]!r}")
                paths[key] = folder / spec[key]
        options = {k: v for k, v in spec.items() if k not in paths}
        try:
            return read_data_file(**paths, **options)
        except ParameterError as error:
            fail(f"[data] {error.param}", str(error))
    _check_keys(fail, "[data]", spec, {"name"} | FILE_KEYS | {p for f in DATASETS.values()
                                                              for p in inspect.signature(f).parameters})
    if "name" not in spec:
        fail("[data]", "needs name = one of " + ", ".join(DATASETS) + ", or file = \"data.npz\" (or .npy, .csv)")
    name = spec["name"]
    if not isinstance(name, str) or name not in DATASETS:
        fail("[data] name", f"must be one of {', '.join(DATASETS)}, got {name!r}{closest(str(name), DATASETS)}")
    arguments = {k: v for k, v in spec.items() if k != "name"}
    accepted = set(inspect.signature(DATASETS[name]).parameters)
    _check_keys(fail, f"[data] (name = {name!r})", arguments, accepted)
    try:
        return (*DATASETS[name](**arguments), b"")
    except (ValueError, TypeError) as error:
        fail("[data]", str(error))


def _labels(Y):
    """Class labels from a file read as float64 (a table's or an .npy's single column of
    whole numbers), for a classifier; anything else as it is, for its check to refuse."""
    Y = np.asarray(Y)
    if Y.dtype.kind == "f" and Y.ndim == 2 and Y.shape[1] == 1 and np.all(np.isfinite(Y)) \
            and np.all(Y == np.round(Y)) and np.all(np.abs(Y) < 2**53):
        return Y[:, 0].astype(np.int64)
    return Y


def _data_key(data, folder):
    """Where the data comes from, for messages: ``"[data] file: PATH"`` or ``"[data]"``."""
    return f"[data] file: {folder / data['file']}" if "file" in data else "[data]"


def _key_of(param):
    """Where a study file sets the argument ``param`` of :func:`gdsim.sweeps.check_sweep`."""
    if param == "target":
        return "target"
    return f"[train] {param}" if param in TRAIN_KEYS else "[train]"


def _check_storable(fail, runner, spec):
    """Refuse settings the runner cannot honour: the train runner computes in float64 only."""
    if runner == "train" and spec.dtype != "float64":
        fail("[train] dtype", f"the train runner runs gdsim.train, which computes in float64; got {spec.dtype!r} "
             "(use runner = 'sweep' for float32)")


def load_study(path: str | os.PathLike) -> Study:
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
    from ..figures import check_figure, read_figure  # figures read studies: imported when a study is loaded

    if not isinstance(path, (str, os.PathLike)):
        raise ParameterError(f"path must be the path of a study file (str or pathlib.Path), got {path!r}", "path")
    path = Path(path)

    def fail(where, message):
        raise StudyError(f"{path}: {where}: {message}")

    try:
        raw = path.read_bytes()
    except OSError as error:
        raise StudyError(f"{path}: cannot read the study file: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark, as some Windows editors write, is fine
        spec = tomllib.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise StudyError(f"{path}: not a valid TOML file: {error}") from None
    _check_keys(fail, "top level", spec, TOP_KEYS, required=("title", "model", "data", "train"))
    for key in ("title", "description", "runner", "target"):
        if key in spec and not isinstance(spec[key], str):
            fail(key, f"must be a string, got {spec[key]!r}")
    runner = spec.get("runner", "sweep")
    if runner not in RUNNERS:
        fail("runner", f"must be one of {', '.join(RUNNERS)}, got {runner!r}{closest(runner, RUNNERS)}")
    try:
        figure = read_figure(spec.get("figure"))
    except ParameterError as error:
        fail(error.param, str(error))
    keeps_params = figure.keeps_params(runner)
    if runner == "train" and "target" in spec:
        fail("target", "the train runner runs gdsim.train on the CPU, one call per run; target is for runner = 'sweep'")
    model = _build_model(fail, spec["model"])
    X, Y, data_bytes = _build_data(fail, spec["data"], path.parent)
    if model.loss_name != "mse" and "file" in spec["data"] and not spec["data"]["file"].lower().endswith(".npz"):
        Y = _labels(Y)  # tables and .npy pairs are read as float64; an .npz keeps its dtype
    data_key = _data_key(spec["data"], path.parent)
    try:
        checked_X, checked_Y = model.check_data(X, Y)
    except ValueError as error:
        fail(data_key, f"does not fit the model: {error}")
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
        elif key == "track":
            if runner != "train":
                fail("[train] track", "observables are tracked by gdsim.train: needs runner = 'train'")
            try:
                check_track(value)
            except ParameterError as error:
                fail("[train] track", str(error))
            settings[key] = dict(value)
        elif key == "divergence":
            if isinstance(value, str) and value not in ("none", "growth", "nonfinite"):
                fail("[train] divergence", f'must be "growth", a number > 1 (a factor of the initial loss), '
                     f'"nonfinite" or "none", got {value!r}{closest(value, ["growth", "nonfinite", "none"])}')
            settings[key] = None if value == "none" else value
        else:
            settings[key] = value
    if runner == "train":
        settings.setdefault("divergence", None)
    try:
        sweep_spec = check_sweep(model, X, Y, target=spec.get("target", "parallel"),
                                 **{k: v for k, v in settings.items() if k != "track"})
    except ParameterError as error:
        fail(data_key if error.param in ("X", "Y") else _key_of(error.param), str(error))
    _check_storable(fail, runner, sweep_spec)
    per_run = 8 * (sweep_spec.epochs + 1) + 8 * model.n_params + 8 + 8 + 8 + 1 + 1  # loss, params, diverged_step, _loss, growth_rate, outcome, diverged
    if keeps_params:
        per_run += 8 * (sweep_spec.epochs + 1) * (model.n_params + 1)  # epoch_params, accuracy
    if settings.get("track"):  # each tracked observable on the longest run's measured steps
        longest = sweep_spec.epochs * steps_per_epoch(X.shape[0], int(min(sweep_spec.values["batch_size"])),
                                                      settings.get("drop_last", False))
        rows = len(measured_steps(check_track(settings["track"]), longest)[1])
        per_run += 8 * rows * sum(model.n_params if name == "params" else len(RESULTS[name])
                                  for name in settings["track"])
    n_runs = sweep_spec.n_configs
    try:  # the chunks, then the whole result, are in memory at once
        check_memory(2 * per_run * n_runs, f"the result of {n_runs} runs",
                     "sweep fewer points or fewer epochs (loss is recorded at every epoch), or split the study")
    except ParameterError as error:
        fail("[train]", str(error))
    content = {"runner": runner, "model": spec["model"], "data": spec["data"], "train": spec["train"],
               "keeps_params": keeps_params}
    content_sha256 = hashlib.sha256(json.dumps(content, sort_keys=True, default=repr).encode() + data_bytes).hexdigest()
    study = Study(name=path.stem, path=path, sha256=hashlib.sha256(raw + data_bytes).hexdigest(),
                  content_sha256=content_sha256, text=text,
                  title=spec["title"], description=spec.get("description", ""), figure_choice=figure,
                  runner=runner,
                  model=model, data=dict(spec["data"]), X=X, Y=Y, settings=settings, spec=sweep_spec,
                  result_bytes=per_run * n_runs)
    problem = check_figure(study)
    if problem:
        fail("figure", f"{figure.name!r} {problem}")
    return study


def find_studies(folder: str | os.PathLike) -> list[Path]:
    """The ``*.toml`` files of ``folder``, sorted by name (ValueError if there are none)."""
    folder = Path(folder)
    if folder.is_file():
        raise StudyError(f"{folder}: is a file; --studies takes a folder of study files (`gdsim run` takes files)")
    if not folder.is_dir():
        raise StudyError(f"{folder}: no such folder, so no study files (*.toml) there")
    paths = sorted(folder.glob("*.toml"))
    if not paths:
        raise StudyError(f"{folder}: no study files (*.toml) there")
    return paths
