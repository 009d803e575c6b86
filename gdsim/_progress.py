"""Progress bars: one ``progress(runs_done, n_runs)`` callback for sweeps and studies alike,
drawn by tqdm (a text bar on a terminal, a widget in Jupyter)."""

import sys


def progress_bar(description, always=False):
    """A ``progress(runs_done, n_runs)`` callback drawing a tqdm bar on stderr.

    Parameters
    ----------
    description : str
        What the bar counts, before it ("sweep of 400 runs").
    always : bool
        Draw it where stderr is not a terminal too (a log file); by default tqdm draws it
        only on a terminal or in a notebook.

    Returns
    -------
    callable
        ``report(done, total)``: the bar is made at the first call and closed (its last
        state left on screen) when ``done`` reaches ``total``.
    """
    from tqdm.auto import tqdm

    bars = []

    def report(done, total):
        if not bars:
            bars.append(tqdm(total=total, desc=description, unit="run", unit_scale=total >= 10**5, file=sys.stderr,
                             mininterval=0.3, dynamic_ncols=True, disable=False if always else None))
        bar = bars[0]
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return report
