"""What the plots of :mod:`gdsim.plot` share: the colours, the caps, the values drawn
(seeds reduced, diverged runs), cell edges, the one legend and the one title."""

import numpy as np

from .._validate import ParameterError
from .grid import reduce_seeds

#: Gray: the runs that diverged (``ds.diverged``) or whose value is not finite.
DIVERGED_COLOR = "0.25"
#: Values above this are drawn as crosses off the scale, like overflows: a log axis over
#: 1e300 decades is unreadable (and breaks matplotlib's tick formatter).
CAP = 1e30
#: Colours of the outcomes (:data:`gdsim.outcomes.OUTCOMES`, in order).
OUTCOME_COLORS = ("#1a9850", "#91cf60", "#fee08b", "#fc8d59", DIVERGED_COLOR)
#: Lines per panel that get a legend entry each; more, and one numeric hue axis gets a colour bar.
MAX_LEGEND = 10


def variable(ds, value, rest, dims_needed=()):
    """``ds[value]`` with the seeds left over reduced (median); checked to exist."""
    if value not in ds.data_vars:
        names = [n for n in ds.data_vars if all(d in ds[n].dims for d in dims_needed)]
        raise ParameterError(f"value={value!r} is not a variable of the result; it has {names}", "value")
    return reduce_seeds(ds[value], rest)


def diverged_runs(ds, rest):
    """Whether the runs diverged (half of the seeds or more where seeds are reduced)."""
    if "diverged" not in ds:
        return None
    flags = ds.diverged
    return flags.mean("seed") >= 0.5 if "seed" in rest and "seed" in flags.dims else flags


def positions(ds, dim):
    """Where the values of ``dim`` are drawn (booleans at 0 and 1) and their tick labels."""
    values = ds[dim].values
    if values.dtype.kind == "b":
        return values.astype(np.float64), ["heavy ball" if not v else "Nesterov" for v in values] \
            if dim == "nesterov" else [str(v) for v in values]
    return values, None


def cell_edges(values, log):
    """Cell edges around grid values, half-way (geometrically on a log axis); around a
    single value, a factor 1.25 (log) or 0.5 either side."""
    v = np.log(values) if log else np.asarray(values, dtype=np.float64)
    if len(v) == 1:
        edges = v[0] + (np.array([-0.22, 0.22]) if log else np.array([-0.5, 0.5]))
    else:
        order = np.argsort(v)
        s = v[order]
        mids = (s[1:] + s[:-1]) / 2
        edges = np.concatenate([[2 * s[0] - mids[0]], mids, [2 * s[-1] - mids[-1]]])
    return np.exp(edges) if log else edges


def set_title(fig, title, default):
    fig.suptitle(default if title is None else title, fontsize=12)


def figure_legend(fig, handles=None, extra=(), ncols=None):
    """The figure's one legend, under its panels, off the data.

    ``handles``: default those of every panel, each label once, after ``extra`` (handles
    of things that are not lines: the diverged runs' gray, the outcomes); none, no legend.
    ``ncols``: default as many columns as the figure's width holds, up to 3.
    """
    if handles is None:
        seen = {handle.get_label(): handle for handle in extra}
        for ax in fig.axes:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                seen.setdefault(label, handle)
        handles = [handle for label, handle in seen.items() if not label.startswith("_")]
        if not handles:
            return
    if ncols is None:
        ncols = max(1, min(3, int(fig.get_figwidth() // 3.4)))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(ncols, max(len(handles), 1)), fontsize=8,
               frameon=False)
