"""The gallery: one figure per study, each with the theory it should be read against.

Every figure is drawn from a study (:class:`gdsim.studies.Study`, for the model and the
data) and its result dataset, with matplotlib's object API (no pyplot, no global state,
no display needed), and saved as a PNG. :data:`FIGURES` maps the name a study file gives
in ``figure = "..."`` to the drawing function and to what it needs from the study.
"""

import warnings

from .._io import atomic_write, check_file_target
from .common import FigureKind
from .critical import critical_batch
from .dynamics import edge_of_stability
from .linear import lr_batch, momentum_phase, trajectories, tutorial
from .networks import classifier, lr_threshold, mlp_phase

#: The figures a study can name, and what each needs.
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
    "mlp_phase": FigureKind(mlp_phase, axes=("lr", "momentum"),
                            fixed=("batch_size", "seed", "nesterov")),
    "lr_threshold": FigureKind(lr_threshold, axes=("lr",),
                               fixed=("momentum", "batch_size", "seed")),
    "classifier": FigureKind(classifier, axes=("lr",),
                             fixed=("batch_size", "momentum"), classifier=True, params=True),
    "edge_of_stability": FigureKind(edge_of_stability, axes=("lr",),
                                    fixed=("batch_size", "seed", "dampening", "weight_decay", "nesterov"),
                                    tracks=("sharpness",)),
}


def draw(study, ds, path):
    """Draw ``study``'s figure from its dataset and save it as a PNG at ``path``, atomically.

    Returns
    -------
    pathlib.Path
    """
    check_file_target(path, "the figure (path)")  # before the drawing, not after
    with warnings.catch_warnings():
        # A title in a script the font lacks (CJK, emoji) is drawn with boxes: not worth a warning per glyph.
        warnings.filterwarnings("ignore", "Glyph .* missing from font", UserWarning)
        fig = FIGURES[study.figure].draw(study, ds)
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    return path
