"""Which figure a study draws, read and checked with the study file.

A study file's ``figure`` is one of three things:

* absent: the plot of :mod:`gdsim.plot` that fits the swept axes (:func:`gdsim.plot.auto`);
* a name: a figure of the gallery (:data:`FIGURES`, drawn with its own theory), or a plot
  of :mod:`gdsim.plot` with its defaults (``figure = "heatmap"``);
* a ``[figure]`` table: ``plot = "heatmap"`` and that function's arguments
  (``x = "lr"``, ``y = "momentum"``, ``col = "nesterov"``, ``value = "outcome"``, ...).

A plot gets the study's model, data and initial parameters (its theory lines) and its
title. It is checked before anything runs by drawing it from a small result of the same
layout (two values per swept axis), so that a wrong axis or value name is a study error.
"""

import inspect
from dataclasses import dataclass

import numpy as np

from .._validate import ParameterError, closest
from ..plot import PLOTS
from .common import FigureKind
from .critical import critical_batch
from .dynamics import edge_of_stability
from .linear import lr_batch, momentum_phase, trajectories, tutorial
from .networks import classifier, lr_threshold

#: The figures of the gallery a study can name, and what each needs.
FIGURES = {
    "tutorial": FigureKind(tutorial, axes=("batch_size",),
                           fixed=("lr",), linear=True, params=True),
    "lr_batch": FigureKind(lr_batch, axes=("lr", "batch_size"),
                           fixed=("momentum", "seed"), linear=True),
    "momentum_phase": FigureKind(momentum_phase, axes=("lr", "momentum"), fixed=("batch_size", "seed"), linear=True),
    "trajectories": FigureKind(trajectories, axes=("lr",),
                               fixed=("momentum", "batch_size"), linear=True, params=True),
    "critical_batch": FigureKind(critical_batch, axes=("lr", "batch_size"),
                                 fixed=("momentum", "dampening", "weight_decay", "nesterov"), linear=True),
    "lr_threshold": FigureKind(lr_threshold, axes=("lr",),
                               fixed=("momentum", "batch_size", "seed", "nesterov", "dampening", "weight_decay")),
    "classifier": FigureKind(classifier, axes=("lr",),
                             fixed=("batch_size", "momentum"), classifier=True, params=True),
    "edge_of_stability": FigureKind(edge_of_stability, axes=("lr",),
                                    fixed=("batch_size", "seed", "dampening", "weight_decay", "nesterov"),
                                    tracks=("sharpness",)),
}
#: What a plot gets from the study, not from the ``[figure]`` table.
FROM_STUDY = ("ds", "model", "X", "Y", "params0", "title")
#: The plot of a study file without ``figure``.
DEFAULT_PLOT = "auto"


@dataclass(frozen=True)
class FigureChoice:
    """The figure of a study: a gallery figure or a plot, and the plot's arguments.

    Attributes
    ----------
    name : str
        A key of :data:`FIGURES` or of :data:`gdsim.plot.PLOTS`.
    arguments : dict
        The plot's keyword arguments from the ``[figure]`` table (empty for a gallery figure).
    gallery : bool
        A figure of the gallery (a name that is both, ``"trajectories"``, is the gallery's;
        a ``[figure]`` table is always a plot).
    """

    name: str
    arguments: dict
    gallery: bool = False

    def keeps_params(self, runner):
        """Whether the runs must keep their parameters at every epoch (the train runner only)."""
        return runner == "train" and (FIGURES[self.name].params if self.gallery else self.name == "trajectories")


def read_figure(value):
    """The :class:`FigureChoice` of a study file's ``figure`` value (None when absent).

    Raises
    ------
    gdsim._validate.ParameterError
        Naming the key (``"figure"`` or ``"[figure] KEY"``) and what it accepts.
    """
    names = sorted(FIGURES) + sorted(PLOTS)
    if value is None:
        return FigureChoice(DEFAULT_PLOT, {})
    if isinstance(value, str):
        if value not in FIGURES and value not in PLOTS:
            raise ParameterError(f"must be a figure of the gallery ({', '.join(sorted(FIGURES))}), a plot of "
                                 f"gdsim.plot ({', '.join(sorted(PLOTS))}) or a [figure] table, got {value!r}"
                                 f"{closest(value, names)}", "figure")
        return FigureChoice(value, {}, gallery=value in FIGURES)
    if not isinstance(value, dict):
        raise ParameterError(f"must be a name or a [figure] table, got {value!r}", "figure")
    plot = value.get("plot")
    if not isinstance(plot, str) or plot not in PLOTS:
        raise ParameterError(f"a [figure] table needs plot = one of {', '.join(PLOTS)}, got {plot!r}"
                             f"{closest(str(plot), PLOTS)}", "[figure] plot")
    accepted = [p for p in inspect.signature(PLOTS[plot]).parameters if p not in FROM_STUDY]
    arguments = {k: v for k, v in value.items() if k != "plot"}
    for key, item in arguments.items():
        if key not in accepted:
            raise ParameterError(f"{plot} takes {', '.join(accepted)}; got {key!r}{closest(key, accepted)}",
                                 f"[figure] {key}")
        texts = item if isinstance(item, list) else [item]
        if key == "theory" and not isinstance(item, bool):
            raise ParameterError(f"must be true or false, got {item!r}", f"[figure] {key}")
        if key != "theory" and not all(isinstance(t, str) for t in texts):
            raise ParameterError(f"names an axis or a variable (a string{', or a list' * (key == 'hue')}), got "
                                 f"{item!r}", f"[figure] {key}")
    return FigureChoice(plot, arguments)


def check_figure(study):
    """None if ``study``'s figure can be drawn from its result, else what is wrong."""
    choice = study.figure_choice
    if choice.gallery:
        return FIGURES[choice.name].check(study)
    try:
        _plot(study, _sample_result(study), theory=False)
    except ParameterError as error:
        return f"[figure] {error.param}: {error}" if error.param != "figure" else str(error)
    return None


def draw_figure(study, ds):
    """The matplotlib Figure of ``study`` from its result ``ds``."""
    choice = study.figure_choice
    if choice.gallery:
        return FIGURES[choice.name].draw(study, ds)
    return _plot(study, ds)


def _plot(study, ds, theory=True):
    choice = study.figure_choice
    function = PLOTS[choice.name]
    accepted = inspect.signature(function).parameters
    given = dict(model=study.model, X=study.X, Y=study.Y, params0=study.spec.params0, title=study.title)
    if "theory" in accepted:
        given["theory"] = choice.arguments.get("theory", True) and theory
    arguments = {k: v for k, v in choice.arguments.items() if k != "theory"}
    return function(ds, **arguments, **{k: v for k, v in given.items() if k in accepted})


def _sample_result(study):
    """A result of ``study``'s layout with two values per swept axis and one epoch (ones),
    to check that its plot can be drawn before it runs."""
    import xarray as xr

    from ..sweeps.dataset import empty_raw, grid_variables
    from ..tracks import RESULTS

    values = study.spec.values
    dims = list(study.swept)
    coords = {d: values[d][:2] for d in dims}
    shape = tuple(len(coords[d]) for d in dims)
    n, n_params = int(np.prod(shape)), study.model.n_params
    tracked = [r for name in study.settings.get("track", {}) for r in RESULTS[name]]
    raw = empty_raw(n, 1, n_params, np.float64, tracks=(tracked, 2))
    for name, array in raw.items():
        array[...] = 1
    variables = grid_variables(raw, dims, shape)
    if study.figure_choice.keeps_params(study.runner):
        variables["epoch_params"] = (dims + ["epoch", "param"], np.ones(shape + (2, n_params)), {})
        if study.model.loss_name == "cross_entropy":
            variables["accuracy"] = (dims + ["epoch"], np.ones(shape + (2,)), {})
    ds = xr.Dataset({k: (d, a, attrs) for k, (d, a, attrs) in variables.items()},
                    coords={**coords, "epoch": [0, 1], "param": np.arange(n_params)}
                    | ({"step": [0, 1]} if tracked else {}))
    ds.attrs.update(n_samples=study.X.shape[0], lr_schedule="none")
    return ds
