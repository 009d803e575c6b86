"""The theory a plot draws over a result: where the learning rate becomes unstable.

For one panel's settings (:func:`critical_lr`):

* least squares (:class:`gdsim.Linear` with MSE), the exact thresholds of
  :mod:`gdsim.theory` for the scheme the runs used: full batch, the closed form of
  :func:`gdsim.theory.critical_lr` (heavy ball or Nesterov, dampening and weight decay);
  mini-batches in data order, the epoch map (:func:`gdsim.theory.epoch_critical_lr`);
  reshuffled every epoch, the lr where a typical run's top Lyapunov exponent passes 0
  (an estimate, :func:`gdsim.theory.almost_sure_critical_lr`); drawn with
  replacement, where the mean square diverges (:func:`gdsim.theory.mean_square_critical_lr`);
* an MLP, only with full batches: the quadratic model at initialisation,
  :func:`gdsim.theory.critical_lr` of the sharpness there, labelled as such (with
  mini-batches its noise moves the edge, and no line is drawn);
* nothing under an lr schedule (the lr changes along the run).
"""

from dataclasses import dataclass

import numpy as np

from .. import theory
from .._validate import ParameterError
from .grid import run_settings

#: The tolerance of the thresholds' bisections (a line on a plot).
RTOL = 1e-6
#: Learning rates scanned for the crossings of a radius (a vertical line each), and the
#: learning rates of a contour of the radius over a map.
COARSE, FINE = 200, 60
#: The settings a contour runs along (continuous), and at how many of their values.
CONTINUOUS, FINE_ALONG = ("momentum", "dampening", "weight_decay"), 30
#: How the line of each kind of threshold is drawn (one style per meaning).
STYLES = {"full batch": dict(color="w", ls="-", lw=2.0), "epoch map": dict(color="w", ls="--", lw=2.0),
          "almost sure": dict(color="w", ls="-.", lw=2.0), "mean square": dict(color="w", ls=":", lw=2.2),
          "quadratic model": dict(color="w", ls=(0, (5, 2, 1, 2)), lw=1.8)}
LABELS = {"full batch": "theory (full batch): spectral radius 1",
          "epoch map": "theory: the data order's epoch map has radius 1",
          "almost sure": "theory: a typical run grows (Lyapunov exponent 0, estimated)",
          "mean square": "theory: the mean square diverges",
          # One label for heavy ball and Nesterov panels alike: their formulas differ.
          "quadratic model": "quadratic model at init: critical lr from its sharpness (full batch)"}


@dataclass(frozen=True)
class Theory:
    """What the theory lines need besides the result: the model, its data and, for an
    MLP swept from given parameters, those parameters.

    Attributes
    ----------
    model : gdsim.Linear or gdsim.MLP
    X, Y : numpy.ndarray
    params0 : numpy.ndarray, optional
        The runs' initial parameters when the sweep was given ``params0`` (an MLP's line
        is the sharpness there); else ``model.init(seed)``.
    """

    model: object
    X: np.ndarray
    Y: np.ndarray
    params0: object = None


def make_theory(model, X, Y, params0):
    """A :class:`Theory`, or None without a model (no lines); checks what it is given."""
    if model is None:
        if X is not None or Y is not None or params0 is not None:
            raise ParameterError("the theory lines need model= with X= and Y= (the sweep's data)", "model")
        return None
    if X is None or Y is None:
        raise ParameterError("the theory lines need the sweep's data: give X= and Y= with model=", "X")
    X, Y = model.check_data(X, Y)
    return Theory(model, X, Y, None if params0 is None else np.asarray(params0, dtype=np.float64))


def applies(ds, theory_):
    """Whether lines are drawn at all: a model was given and the lr is constant."""
    return theory_ is not None and ds.attrs.get("lr_schedule", "none") == "none"


def edge(ds, selection, theory_, lr=True):
    """``(kind, lr, radius)``: the kind of threshold (a key of :data:`STYLES`), the
    smallest unstable lr, and for the mini-batch schemes with an exact radius ("epoch
    map", "mean square") the function ``radius(lr)`` (else None): their unstable lrs need
    not be one interval (heavy ball in data order is stable again past some resonances).
    None where no line applies. ``lr=False``: only the radius is wanted (a contour), and
    the bisection for the smallest unstable lr of those schemes is skipped (None)."""
    if not applies(ds, theory_):
        return None
    model, X, Y = theory_.model, theory_.X, theory_.Y
    s = run_settings(ds, selection)
    optimizer = {k: s[k] for k in ("momentum", "dampening", "weight_decay", "nesterov")}
    if s["nesterov"] and s["momentum"] == 0:
        optimizer["nesterov"] = False  # plain GD (torch refuses it; a grid may still hold it)
    n = X.shape[0]
    full = s["batch_size"] >= n and s["shuffle"] != "replacement"
    if not model.spec.is_least_squares:
        if not full:
            return None
        params0 = theory_.params0
        if params0 is None:
            if ds.attrs.get("params0") == "given":
                raise ParameterError("this sweep started from given parameters: pass them as params0= to draw the "
                                     "quadratic model's line (or theory=False)", "params0")
            params0 = model.init(s["seed"])
        sharp = theory.sharpness(model, params0, X, Y)
        return "quadratic model", theory.critical_lr(sharp, **optimizer), None
    if full:
        L = float(np.linalg.eigvalsh(theory.hessian(model, X)).max())
        return "full batch", theory.critical_lr(L, **optimizer), None
    B = s["batch_size"]
    if s["shuffle"] == "replacement":
        return ("mean square", theory.mean_square_critical_lr(model, X, batch_size=B, rtol=RTOL, **optimizer)
                if lr else None, lambda rate: theory.mean_square_spectral_radius(model, X, rate, batch_size=B,
                                                                                 **optimizer))
    if not s["shuffle"]:
        drop_last = s["drop_last"]
        return ("epoch map", theory.epoch_critical_lr(model, X, batch_size=B, drop_last=drop_last, rtol=RTOL,
                                                      **optimizer) if lr else None,
                lambda rate: theory.epoch_spectral_radius(model, X, rate, batch_size=B, drop_last=drop_last,
                                                          **optimizer))
    found = theory.almost_sure_critical_lr(model, X, batch_size=B, drop_last=s["drop_last"], **optimizer)
    return "almost sure", found.lr, None


def crossings(radius, lo, hi, points=COARSE):
    """The lrs in ``[lo, hi]`` where ``radius(lr)`` crosses 1: a scan of ``points``
    geometric steps, each sign change bisected to :data:`RTOL`."""
    grid = np.geomspace(lo, hi, points)
    above = np.array([radius(lr) > 1 for lr in grid])
    found = []
    for k in np.nonzero(above[1:] != above[:-1])[0]:
        a, b = grid[k], grid[k + 1]
        while b - a > RTOL * b:
            mid = 0.5 * (a + b)
            a, b = (mid, b) if (radius(mid) > 1) == above[k] else (a, mid)
        found.append(0.5 * (a + b))
    return found


def _style(kind, color):
    style = {**STYLES[kind], "label": LABELS[kind], "gid": f"theory:{kind}"}
    if color is not None:
        style["color"] = color
    else:  # white on a colour map, edged in black so that it shows on any colour and in the legend
        from matplotlib.patheffects import withStroke

        style["path_effects"] = [withStroke(linewidth=style["lw"] + 1.6, foreground="0.1")]
    return style


def draw_lr_line(ax, ds, selection, theory_, lr_axis, along=None, values=(), positions=None, color=None,
                 lr_range=None):
    """Draw the theory's edge on a panel whose ``lr_axis`` ("x" or "y") is the lr.

    With ``along`` (the panel's other axis, swept over ``values``, drawn at ``positions``,
    default the values): a line through the smallest unstable lr at each value or, for
    the exact radii of mini-batch schemes along a continuous setting (:data:`CONTINUOUS`)
    swept over 3 or more values, the contour where the radius is 1 over ``lr_range`` and
    the axis's span (every unstable region, not only the first). Without ``along``: a
    vertical (horizontal) line at each lr in ``lr_range`` where the radius crosses 1 (the
    threshold alone where there is no radius).
    ``color`` replaces the styles' white (a plot on a white ground). Each line has the gid
    ``"theory:KIND"``. Returns the kinds drawn.
    """
    values = list(values) if along else [None]
    positions = np.asarray(values if positions is None else positions, dtype=np.float64) if along else None
    # Vertical lines at the crossings of a radius need no bisection for the first one.
    found = [edge(ds, {**selection, along: v} if along else selection, theory_, lr=bool(along) or lr_range is None)
             for v in values]
    kinds = sorted({f[0] for f in found if f is not None})
    for kind in kinds:
        keep = np.array([f is not None and f[0] == kind for f in found])
        rows = [f for f in found if f is not None and f[0] == kind]
        style = _style(kind, color)
        if along is None:
            _, lr_c, radius = rows[0]
            lines = crossings(radius, *lr_range) if radius is not None and lr_range is not None else [lr_c]
            for k, lr in enumerate(lines):
                (ax.axvline if lr_axis == "x" else ax.axhline)(lr, **(style if k == 0 else {**style, "label": None}))
        elif rows[0][2] is not None and lr_range is not None and along in CONTINUOUS and keep.sum() >= 3:
            lrs = np.geomspace(*lr_range, FINE)
            where = np.linspace(positions[keep].min(), positions[keep].max(), FINE_ALONG)
            radii = [edge(ds, {**selection, along: v}, theory_, lr=False)[2] for v in where]
            # log radius: nearer linear across a cell than the radius, which soars past the edge
            with np.errstate(divide="ignore"):  # a radius of 0 (lr lambda = 1 on one sample) is -inf: stable
                grid = np.log([[radius(lr) for lr in lrs] for radius in radii])  # [along, lr]
            args = (lrs, where, grid) if lr_axis == "x" else (where, lrs, grid.T)
            contour = ax.contour(*args, levels=[0.0], colors=[style["color"]], linestyles=[style["ls"]],
                                 linewidths=[style["lw"]])
            contour.set_gid(style["gid"])
            if "path_effects" in style:
                contour.set(path_effects=style["path_effects"])
            ax.plot([], [], **style)  # the legend's entry
        else:
            lrs = np.array([lr for _, lr, _ in rows])
            ax.plot(*((lrs, positions[keep]) if lr_axis == "x" else (positions[keep], lrs)), **style)
    return kinds
