"""A study's figure: one of the gallery's, each with the theory it should be read
against, or a plot of :mod:`gdsim.plot` (:mod:`gdsim.figures.choice`).

Every figure is drawn from a study (:class:`gdsim.studies.Study`, for the model and the
data) and its result dataset, with matplotlib's object API (no pyplot, no global state,
no display needed), and saved as a PNG. :data:`FIGURES` maps the name a study file gives
in ``figure = "..."`` to the gallery's drawing function and to what it needs from the study.
"""

import warnings

from .._io import atomic_write, check_file_target
from .choice import FIGURES, FigureChoice, check_figure, draw_figure, read_figure

__all__ = ["FIGURES", "FigureChoice", "check_figure", "draw", "draw_figure", "read_figure"]


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
        fig = draw_figure(study, ds)
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    return path
