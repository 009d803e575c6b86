"""Reading a result's grid for a plot: which axes are swept, how each is scaled and
labelled, the facets (columns and rows of panels) and the settings of one facet."""

import numpy as np

from .._validate import ParameterError

#: How an axis is called on a plot.
LABELS = {"lr": "learning rate", "momentum": "momentum", "dampening": "dampening",
          "weight_decay": "weight decay", "nesterov": "Nesterov", "batch_size": "batch size",
          "seed": "seed", "epoch": "epoch", "step": "step"}
#: The shortest form of an axis in a legend or a panel title.
SHORT = {"lr": "lr", "momentum": "beta", "dampening": "dampening", "weight_decay": "wd",
         "nesterov": "Nesterov", "batch_size": "B", "seed": "seed"}
#: Dots per inch of every figure, the gallery's and the plots'.
DPI = 110
#: Values of a swept axis that ticks list one by one (more: matplotlib's own ticks).
MAX_LISTED_TICKS = 12


def swept(ds):
    """The swept axes of a result (its dimensions that are sweep axes), in its order."""
    return [d for d in ds.dims if d in SHORT]


def check_dims(ds, roles, what):
    """Check that every axis given in ``roles`` (role -> dim, a list of dims, or None) is
    a swept axis of ``ds`` and used once; raise a ParameterError naming the role."""
    axes, seen = swept(ds), {}
    for role, dims in roles.items():
        for dim in as_list(dims):
            if dim not in axes:
                raise ParameterError(f"{role}={dim!r}: {what} draws over the swept axes of the result, "
                                     f"which are {axes or 'none (a single run)'}", role)
            if dim in seen:
                raise ParameterError(f"{role}={dim!r}: axis already given as {seen[dim]}", role)
            seen[dim] = role


def leftover(ds, used, what):
    """The swept axes not in ``used``; "seed" is allowed (the panels show the median over
    seeds), any other raises a ParameterError saying how to place it."""
    rest = [d for d in swept(ds) if d not in used]
    others = [d for d in rest if d != "seed"]
    if others:
        raise ParameterError(f"{what} has no place for the swept axes {others}: give them as hue, col or row "
                             f"(or select one value with ds.sel({others[0]}=...))", others[0])
    return rest


def as_list(dims):
    return [] if dims is None else ([dims] if isinstance(dims, str) else list(dims))


def is_geometric(values):
    """Whether a numeric axis is better read on a log scale: positive, at least 3 values
    spanning a factor of 10 or more, more evenly spaced in log than linearly."""
    v = np.asarray(values)
    if v.dtype.kind not in "iuf" or v.size < 3 or not np.all(v > 0) or v.max() < 10 * v.min():
        return False
    v = np.sort(v.astype(np.float64))
    step_log, step = np.diff(np.log(v)), np.diff(v)
    return np.std(step_log) / np.mean(step_log) < np.std(step) / np.mean(step)


def scale_axis(ax, which, values):
    """Log scale for a geometric axis; ticks at the values used when they are few integers
    (batch sizes, seeds: 1, 2, 5, 10 rather than 10^0, 10^1)."""
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    values = np.asarray(values)
    axis = ax.xaxis if which == "x" else ax.yaxis
    if is_geometric(values):
        (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    if values.dtype.kind in "iub" and np.unique(values).size <= MAX_LISTED_TICKS:
        axis.set_major_locator(FixedLocator(np.unique(values).astype(np.float64)))
        axis.set_minor_locator(NullLocator())
        axis.set_major_formatter(ScalarFormatter())


def value_text(dim, value):
    """``"beta = 0.9"``, ``"B = 20"``, ``"Nesterov"``/``"heavy ball"`` for a facet or a line."""
    value = value.item() if hasattr(value, "item") else value
    if dim == "nesterov":
        return "Nesterov" if value else "heavy ball"
    return f"{SHORT[dim]} = {value:g}" if isinstance(value, (int, float)) else f"{SHORT[dim]} = {value}"


def facets(ds, col, row):
    """``(i_row, i_col, selection)`` of each panel: ``selection`` maps the ``col`` and
    ``row`` axes (each optional) to one of their values."""
    rows = [None] if row is None else list(ds[row].values)
    cols = [None] if col is None else list(ds[col].values)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            selection = {}
            if row is not None:
                selection[row] = r
            if col is not None:
                selection[col] = c
            yield i, j, selection


def combinations(ds, dims):
    """Each combination of the values of ``dims`` (a selection dict), in grid order."""
    selections = [{}]
    for dim in dims:
        selections = [{**s, dim: v} for s in selections for v in ds[dim].values]
    return selections


def selection_text(selection):
    return ", ".join(value_text(d, v) for d, v in selection.items())


def setting(ds, selection, name, default=None):
    """The value of the setting ``name`` for the runs of ``selection``: from the selection,
    else from the result's attributes (an axis that was not swept), else ``default``."""
    if name in selection:
        value = selection[name]
    elif name in ds.coords and ds[name].ndim == 0:
        value = ds[name].values
    else:
        value = ds.attrs.get(name, default)
    return value.item() if hasattr(value, "item") else value


def stored_flag(value):
    """A bool setting as a result stores it: a bool, or the string ``"True"``/``"False"``
    that netCDF (and stores made from it) keep."""
    return value == "True" if isinstance(value, str) else bool(value)


def run_settings(ds, selection=None):
    """The optimizer and batch settings of the runs of ``selection`` (default: the
    result's fixed settings), as the theory takes them: ``momentum``, ``dampening``,
    ``weight_decay``, ``nesterov``, ``batch_size`` (default the whole data), ``drop_last``,
    ``shuffle`` (False, True or "replacement") and ``seed``."""
    selection = {} if selection is None else selection
    shuffle = setting(ds, selection, "shuffle", False)
    return {"momentum": float(setting(ds, selection, "momentum", 0.0)),
            "dampening": float(setting(ds, selection, "dampening", 0.0)),
            "weight_decay": float(setting(ds, selection, "weight_decay", 0.0)),
            "nesterov": stored_flag(setting(ds, selection, "nesterov", False)),
            "batch_size": int(setting(ds, selection, "batch_size", ds.attrs.get("n_samples", 1))),
            "drop_last": stored_flag(setting(ds, selection, "drop_last", False)),
            "shuffle": shuffle if shuffle == "replacement" else stored_flag(shuffle),
            "seed": int(setting(ds, selection, "seed", 0))}


def new_grid(ds, col, row, width=5.0, height=4.0):
    """A constrained-layout Figure with a panel per value of ``row`` x ``col`` (either
    None: one), and its axes as a 2-d array."""
    from matplotlib.figure import Figure

    n_rows, n_cols = (1 if row is None else ds.sizes[row]), (1 if col is None else ds.sizes[col])
    fig = Figure(figsize=(width * n_cols, height * n_rows), dpi=DPI, layout="constrained")
    return fig, fig.subplots(n_rows, n_cols, squeeze=False)


def reduce_seeds(da, rest):
    """The median over the seed axis when it is left over (``rest``), else ``da``."""
    return da.median("seed") if "seed" in rest and "seed" in da.dims else da
