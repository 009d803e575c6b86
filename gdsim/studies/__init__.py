"""Study files: one TOML file per experiment, run into a labelled dataset and its figure.

A study names a model, a seeded dataset of :mod:`gdsim.datasets`, a grid of SGD settings
and the figure that shows the result::

    title = "Heavy ball and Nesterov: where full-batch GD converges"
    description = "..."              # optional free text (not part of the result's identity)
    figure = "momentum_phase"        # a figure of the gallery (gdsim.figures.FIGURES), a plot
                                     # of gdsim.plot ("heatmap"), a [figure] table, or absent
    runner = "sweep"                 # "sweep" (default) or "train"
    target = "parallel"              # sweep runner only: "cpu", "parallel" or "cuda"

    [model]
    type = "linear"                  # "linear": n_in, n_out; "mlp": sizes, activation; both:
                                     # loss, reduction, bias, parameterization, init_scale
    n_in = 1
    n_out = 1

    [data]
    name = "tutorial_line"           # a function of gdsim.datasets, and its arguments,
    seed = 0                         # or file = "data.npz" (arrays X and Y, next to the study),
                                     # file = "X.npy" with y_file = "Y.npy", or file = "t.csv"
                                     # with x_columns, y_columns and optionally delimiter,
                                     # header, skip_rows, comments (gdsim.data_files)

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
data set. The other ``[train]`` keys: ``epochs``, ``shuffle`` (``false``, ``true`` or
``"replacement"``), ``drop_last``, ``params0`` (a list, or absent for ``model.init(seed)``), ``lr_schedule`` (``["step", step_size, gamma]``,
``["exponential", gamma]``, ``["cosine", T_max, eta_min]`` or ``{factors = [...]}``),
``divergence`` (``"growth"``, a factor of the initial loss, ``"nonfinite"`` or ``"none"``: the
``divergence`` of :func:`gdsim.train` and :func:`gdsim.sweep`, with None spelt ``"none"``;
default ``"growth"``, or ``"none"`` for the train runner, as each function's default),
``dtype`` and, with ``runner = "train"``, ``track`` (``{sharpness = 10, loss = 10}``: what
:func:`gdsim.train`'s ``track=`` measures, every how many steps).

The figure: without ``figure``, the plot of :mod:`gdsim.plot` that fits the swept axes
(:func:`gdsim.plot.auto`); ``figure = "heatmap"`` (or ``"final"``, ``"curves"``,
``"trajectories"``), that plot with its defaults; or a table with the plot's arguments::

    [figure]
    plot = "heatmap"                 # a function of gdsim.plot
    x = "lr"
    y = "momentum"
    col = "nesterov"                 # col, row: panels; hue: lines (final, curves)
    value = "outcome"                # a variable of the result

Plots get the study's model, data and title, and draw the theory's thresholds where
they apply (:mod:`gdsim.plot.overlays`); the figure is checked against the grid (by
drawing it from a small result of the same layout) before anything runs.

Runners: ``"sweep"`` runs the whole grid with :func:`gdsim.sweep`. ``"train"`` calls
:func:`gdsim.train` once per grid point and also records the parameters at every epoch
(``epoch_params``) and, for classifiers, the accuracy: for small grids whose figure
needs trajectories. Its runs go to the end with ``divergence = "none"`` (its default); it keeps the
parameters of every epoch only when the figure draws them.

Data flow, one room each: :mod:`~gdsim.studies.schema` (:func:`load_study` reads and checks
the whole file and builds the data before anything runs) -> :mod:`~gdsim.studies.runners`
(the grid's points, with ``gdsim.sweep``'s kernels or ``gdsim.train``) ->
:mod:`~gdsim.studies.store` (:func:`run_study` streams the grid region by region into the
Zarr store ``results/NAME.zarr``, resumable, keyed on the study's content) -> :mod:`gdsim.figures`
draws ``figures/NAME.png``.
:mod:`~gdsim.studies.gallery` (:func:`run_studies`) does all of it for several study files,
checking every one (and what ``results/`` holds for it) before the first runs; ``gdsim run``
and ``gdsim figures`` call it.
"""

from .._io import load_dataset, read_attrs
from .gallery import run_studies
from .schema import Study, StudyError, find_studies, load_study
from .store import CHUNK_RUNS, regions_saved, run_study

__all__ = ["Study", "StudyError", "load_study", "find_studies", "run_study", "run_studies", "load_dataset",
           "read_attrs", "regions_saved", "CHUNK_RUNS"]

