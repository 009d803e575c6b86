"""The ``gdsim`` command.

Exit codes: 0 success; 1 a run failed (or a file could not be written); 2 bad command-line
arguments or a study file that does not check (nothing was run); 130 interrupted (Ctrl-C,
SIGINT); 143 terminated (SIGTERM, what ``timeout`` and cluster schedulers send). An
interrupted or terminated run keeps its finished chunks: the same command resumes it.
"""

import argparse
import contextlib
import os
import signal
import sys
import time

import numpy as np

from . import __version__, datasets
from ._validate import check_int
from .training import train
from .models import Linear
from .optim import SGD
from .sweeps.targets import TARGETS

# The linear-regression tutorial's starting point (w0, b0).
TUTORIAL_START = (-10.0, -20.0)


def _tutorial_table(title, result, optimum):
    """Print one run the way the tutorial prints it, then a one-line verdict."""
    print(f"\n{title}")
    print(f"{'epoch':>5}  {'loss':>14}  {'w':>14}  {'b':>14}")
    # As in the tutorial: the loss recorded at the start of the epoch, w and b after it.
    for epoch, (loss, (w, b)) in enumerate(zip(result.epoch_loss[:-1], result.epoch_params[1:])):
        print(f"{epoch:>5}  {loss:>14.6g}  {w:>14.6g}  {b:>14.6g}")
    final = result.epoch_loss[-1]
    print(f"{'end':>5}  {final:>14.6g}")
    if result.diverged:
        verdict = (f"DIVERGED: loss first exceeded 1e6 x its initial value at step {result.diverged_step} "
                   f"(loss {result.diverged_loss:.4g}); final loss {final:.4g}")
    elif final <= 1.5 * optimum:
        verdict = f"CONVERGED: final loss {final:.4g}, least-squares optimum {optimum:.4g}"
    else:
        verdict = f"NOT CONVERGED: final loss {final:.4g}, least-squares optimum {optimum:.4g}"
    print(f"=> {verdict}")
    return verdict


def run_tutorial(seed=0, lr=0.1, epochs=20):
    """Reproduce the linear-regression tutorial: batch GD converges, per-sample SGD blows up.

    Returns
    -------
    dict
        ``{"batch_gd": TrainResult, "per_sample_sgd": TrainResult}``.
    """
    # Check everything before printing anything.
    epochs = check_int("epochs", epochs, minimum=1)
    X, Y = datasets.tutorial_line(seed)
    model = Linear(1, 1)
    params0 = model.pack([[[TUTORIAL_START[0]]], [TUTORIAL_START[1]]])
    optimizer = SGD(lr=lr)
    design = np.column_stack([X, np.ones(len(X))])
    residual = Y - design @ np.linalg.lstsq(design, Y, rcond=None)[0]
    optimum = float(np.mean(residual**2))

    print("Linear-regression tutorial: y = w x + b, X = arange(-5, 5, 0.1), Y = -5 X + 0.4 N(0, 1) "
          f"(seed {seed})")
    print(f"start w = {TUTORIAL_START[0]:g}, b = {TUTORIAL_START[1]:g}; MSE loss; SGD lr {lr:g}; "
          f"{epochs} epochs; float64")
    runs = {}
    for key, title, batch_size in (("batch_gd", "Batch gradient descent (one step per epoch)", None),
                                   ("per_sample_sgd", "Per-sample SGD (one step per sample, data order)", 1)):
        runs[key] = train(model, X, Y, optimizer, epochs=epochs, batch_size=batch_size, params0=params0,
                          record_params=True)
        _tutorial_table(title, runs[key], optimum)
    return runs


def _study_progress(prefix):
    """A ``progress(done, total)`` callback rewriting one stderr line (only on a terminal)."""
    if not sys.stderr.isatty():
        return None
    last = [0.0]

    def report(done, total):
        now = time.perf_counter()
        if done < total and now - last[0] < 0.3:
            return
        last[0] = now
        width = 24
        filled = int(width * done / total)
        print(f"\r{prefix} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} runs", end="",
              file=sys.stderr, flush=True)
        if done >= total:
            print("\r\033[K", end="", file=sys.stderr, flush=True)

    return report


def print_info():
    """Print versions, the CPU, the threads sweeps use and whether CUDA is available."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from ._jit import runtime_info

    print(f"gdsim {__version__}")
    print(f"python {platform.python_version()} ({platform.system()} {platform.machine()})")
    for package in ("numpy", "scipy", "xarray", "matplotlib", "numba-cuda"):
        try:
            print(f"{package} {version(package)}")
        except PackageNotFoundError:
            print(f"{package} not installed")
    info = runtime_info()
    for key, value in info.items():
        print(f"{key}: {value}" if key != "numba" else f"numba {value}")
    cuda = info["cuda"].startswith(("available", "simulator"))
    usable = [name for name, target in TARGETS.items() if cuda or not target.needs_cuda]
    print("targets: " + ", ".join(usable) + ("" if cuda else " (cuda: see above)"))


RESUME = ("Runs are saved in chunks as they finish: after a crash or Ctrl-C the same command resumes. A result "
          "that is up to date (same study file, gdsim version and target) is reused and only redrawn.")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt: the same clean
    stop (finished chunks kept, resume hint), another exit code."""


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Turn SIGTERM into :class:`Terminated` while the command runs (main thread only)."""
    def terminate(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _oserror_message(error):
    """One line for an OSError: what failed, on which file (no traceback)."""
    where = f" {error.filename}" if error.filename else ""
    if error.filename2:
        where += f" -> {error.filename2}"
    return f"cannot write or read{where}: {error.strerror or error}"


def main(argv=None):
    """Entry point of the ``gdsim`` console script; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="gdsim", description="Simulate gradient-descent training.",
        epilog="Exit status: 0 success, 1 a run failed, 2 bad arguments or study file (nothing run), "
               "130 interrupted (Ctrl-C), 143 terminated (SIGTERM); an interrupted run resumes.")
    parser.add_argument("--version", action="version", version=f"gdsim {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    tutorial = commands.add_parser(
        "tutorial", help="reproduce the linear-regression tutorial (batch GD vs per-sample SGD)",
        description="Train y = w x + b from w = -10, b = -20 with batch gradient descent and with "
                    "per-sample SGD, print loss, w and b per epoch, and say which converged.")
    tutorial.add_argument("--seed", type=int, default=0, help="seed of the data noise (default 0)")
    tutorial.add_argument("--lr", type=float, default=0.1, help="learning rate (default 0.1)")
    tutorial.add_argument("--epochs", type=int, default=20, help="number of epochs (default 20)")
    run = commands.add_parser(
        "run", help="run study files: save results/NAME.nc and draw figures/NAME.png",
        description="Check the study files (TOML, see gdsim.studies), then run each one's grid, save the "
                    "dataset to RESULTS/NAME.nc (netCDF) and draw its figure to FIGURES/NAME.png. " + RESUME)
    run.add_argument("studies", nargs="+", metavar="STUDY.toml", help="study files")
    figures = commands.add_parser(
        "figures", help="run every study of a folder and rewrite the gallery",
        description="Run every study file of STUDIES (default: studies/) and rewrite FIGURES/ "
                    "(default: figures/), saving the datasets to RESULTS/ (default: results/). " + RESUME)
    figures.add_argument("--studies", default="studies", help="folder of study files (default: studies)")
    for sub in (run, figures):
        sub.add_argument("--results", default="results", help="folder for the datasets (default: results)")
        sub.add_argument("--figures", default="figures", help="folder for the figures (default: figures)")
        sub.add_argument("--target", choices=tuple(TARGETS),
                         help="run sweeps on this target instead of the study's: " + "; ".join(
                             f"{name}: {target.description}" for name, target in TARGETS.items()))
        sub.add_argument("--redraw", action="store_true",
                         help="only redraw the figures from the saved results (no run)")
        sub.add_argument("--restart", action="store_true",
                         help="discard saved results and partial runs of these studies and run them again")
        sub.add_argument("--chunk-runs", type=int, metavar="N",
                         help="runs per saved chunk of a new run (default: 2048 for sweeps, 1 for the train "
                              "runner); a resumed run keeps its own")
    commands.add_parser("info", help="versions, CPU, threads and whether the CUDA target is available",
                        description="Print gdsim's and its dependencies' versions, the CPU, the number "
                                    "of threads target='parallel' uses and the CUDA target's state.")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from .studies import StudyError, find_studies, run_studies

    with _sigterm_as_interrupt():
        try:
            if args.command == "info":
                print_info()
            elif args.command == "tutorial":
                run_tutorial(seed=args.seed, lr=args.lr, epochs=args.epochs)
            else:
                paths = args.studies if args.command == "run" else find_studies(args.studies)
                run_studies(paths, results=args.results, figures=args.figures, target=args.target,
                            redraw=args.redraw, restart=args.restart, chunk_runs=args.chunk_runs,
                            progress=_study_progress)
        except (StudyError, ValueError) as error:
            print(f"gdsim {args.command}: error: {error}", file=sys.stderr)
            return 2
        except RuntimeError as error:  # e.g. target "cuda" without a GPU
            print(f"gdsim {args.command}: error: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt as stop:
            terminated = isinstance(stop, Terminated)
            print(f"gdsim {args.command}: {'terminated (SIGTERM)' if terminated else 'interrupted'}; what was "
                  "saved is kept and the same command resumes", file=sys.stderr)
            return 143 if terminated else 130
        except BrokenPipeError:  # output piped into `head` and the like
            sys.stderr.close()
        except OSError as error:  # disk full, permission lost mid-run: the writes are atomic, nothing half-written
            print(f"gdsim {args.command}: error: {_oserror_message(error)}", file=sys.stderr)
            return 1
        except MemoryError:
            print(f"gdsim {args.command}: error: out of memory; run fewer points or epochs at once", file=sys.stderr)
            return 1
        except Exception as error:  # a bug: one line, the traceback on request
            if os.environ.get("GDSIM_DEBUG"):
                raise
            print(f"gdsim {args.command}: internal error: {type(error).__name__}: {error} (please report it; "
                  "GDSIM_DEBUG=1 shows the traceback)", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
