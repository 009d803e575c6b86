"""The ``gdsim`` command.

Exit codes: 0 success; 1 a run failed (or a file could not be written); 2 bad command-line
arguments or a study file that does not check (nothing was run); 130 interrupted (Ctrl-C,
SIGINT); 143 terminated (SIGTERM, what ``timeout`` and cluster schedulers send). An
interrupted or terminated run keeps its finished regions: the same command resumes it.
"""

import argparse
import contextlib
import json
import os
import signal
import sys
from functools import partial

# Only the standard library up here: the signal handlers are installed before gdsim's
# dependencies (numpy, numba, xarray) are imported, so that Ctrl-C or SIGTERM during
# that second of imports is a clean stop too.
from . import __version__

def print_info():
    """Print versions, the CPU, the threads sweeps use and whether CUDA is available."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from ._jit import runtime_info
    from .sweeps.targets import TARGETS

    print(f"gdsim {__version__}")
    print(f"python {platform.python_version()} ({platform.system()} {platform.machine()})")
    info = runtime_info()
    for package in ("numpy", "scipy", "xarray", "matplotlib", "numba", "numba-cuda"):
        try:
            print(f"{package} {info['numba'] if package == 'numba' else version(package)}")
        except PackageNotFoundError:
            print(f"{package} not installed (needed by target='cuda' only)")
    for key, value in info.items():
        if key != "numba":
            print(f"{key}: {value}")
    cuda = info["cuda"].startswith(("available", "simulator"))
    usable = [name for name, target in TARGETS.items() if cuda or not target.needs_cuda]
    print("targets: " + ", ".join(usable) + ("" if cuda else " (cuda: see above)"))


RESUME = ("Runs are saved region by region as they finish: after a crash, Ctrl-C or SIGTERM the same command "
          "resumes, computing only the regions not found intact. A complete result of the same study content, gdsim "
          "version and target family is checked and redrawn, not run again.")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt: the same clean
    stop (finished regions kept, resume hint), another exit code."""


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


@contextlib.contextmanager
def _signals_after_imports():
    """Hold Ctrl-C and SIGTERM back while the command's libraries are imported, and act on
    them (KeyboardInterrupt, :class:`Terminated`) once the imports are done: interrupted in
    the middle, an import can leave a library half made (Python 3.11 turns the interrupt
    inside a class's creation into a RuntimeError; Numba's threads then crash the exit).
    The wait is the import's, about a second. Outside the main thread, nothing is changed."""
    held = []
    try:
        previous = {signum: signal.signal(signum, lambda number, frame: held.append(number))
                    for signum in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if held:
        raise Terminated() if signal.SIGTERM in held else KeyboardInterrupt()


def _import_libraries():
    """Import what running studies uses besides Numba (which :mod:`gdsim.studies` imports):
    xarray, Zarr, Matplotlib's figures, so that later imports are quick and cannot be
    interrupted halfway (:func:`_signals_after_imports`)."""
    import matplotlib.figure  # noqa: F401
    import xarray  # noqa: F401
    import zarr  # noqa: F401


def _oserror_message(error):
    """One line for an OSError: what failed, on which file (no traceback)."""
    where = f" {error.filename}" if error.filename else ""
    if error.filename2:
        where += f" -> {error.filename2}"
    return f"cannot write or read{where}: {error.strerror or error}"


def _batch_size(text):
    """``--batch-size``: an integer (its range is checked with the rest) or ``full`` (None)."""
    if text.strip().lower() == "full":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in [1, 100] or 'full', got {text!r}") from None


#: ``--shuffle``'s words, and train's ``shuffle`` for each.
SHUFFLES = {"false": False, "none": False, "true": True, "reshuffle": True, "replacement": "replacement"}


def _shuffle(text):
    """``--shuffle``: train's ``shuffle`` (False, True or "replacement") from its word."""
    try:
        return SHUFFLES[text.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"expected false (or none), true (or reshuffle) or replacement, "
                                         f"got {text!r}") from None


def _parser(targets):
    """The command line: ``gdsim tutorial|run|figures|info`` (``targets``: the registry)."""
    parser = argparse.ArgumentParser(
        prog="gdsim", description="Simulate gradient-descent training.",
        epilog="Exit status: 0 success, 1 a run failed, 2 bad arguments or study file (nothing run), "
               "130 interrupted (Ctrl-C), 143 terminated (SIGTERM); an interrupted run resumes.")
    parser.add_argument("--version", action="version", version=f"gdsim {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    talk = argparse.ArgumentParser(add_help=False)  # -q / -v, taken by every command
    loudness = talk.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true",
                          help="print only errors (tutorial: only the verdicts; no progress bars)")
    loudness.add_argument("-v", "--verbose", action="store_true",
                          help="progress bars also where stderr is not a terminal (a log), and the traceback "
                               "of an internal error")
    tutorial = commands.add_parser(
        "tutorial", parents=[talk], help="the linear-regression tutorial: batch GD vs SGD, with verdicts and theory",
        description="Train y = w x + b from w = -10, b = -20 with batch gradient descent and with SGD "
                    "(per-sample by default), print loss, w and b per epoch, and give each run a verdict: "
                    "converging, converging slowly, oscillating, bounded orbit or diverging, with the "
                    "numbers that decide it and what theory says of its settings.")
    tutorial.add_argument("--seed", type=int, default=0,
                          help="seed of the data noise and of the SGD run's shuffles (default 0)")
    tutorial.add_argument("--lr", type=float, default=0.1, help="learning rate of both runs, > 0 (default 0.1)")
    tutorial.add_argument("--epochs", type=int, default=20, help="number of epochs (default 20)")
    tutorial.add_argument("--momentum", type=float, default=0.0,
                          help="momentum of both runs, torch's heavy ball (default 0)")
    tutorial.add_argument("--nesterov", action="store_true",
                          help="Nesterov momentum for both runs (needs --momentum > 0)")
    tutorial.add_argument("--batch-size", type=_batch_size, default=1, metavar="{1..100,full}",
                          help="samples per step of the SGD run (default 1: per-sample); 'full': the whole data "
                               "set (with --shuffle false that is batch GD, shown once); batch GD always takes it all")
    tutorial.add_argument("--shuffle", type=_shuffle, default=False, metavar="{false,true,replacement}",
                          help="sample order of the SGD run, as train's shuffle: false (or none) data order "
                               "(default), true (or reshuffle) a fresh permutation every epoch, replacement "
                               "100 indices drawn with replacement every epoch; batch GD keeps data order")
    run = commands.add_parser(
        "run", parents=[talk], help="run study files: save results/NAME.zarr and draw figures/NAME.png",
        description="Check the study files (TOML, see gdsim.studies), then run each one's grid, save the "
                    "dataset to RESULTS/NAME.zarr (a Zarr store) and draw its figure to FIGURES/NAME.png. " + RESUME)
    run.add_argument("studies", nargs="+", metavar="STUDY.toml", help="study files")
    figures = commands.add_parser(
        "figures", parents=[talk], help="run every study of a folder and rewrite the gallery",
        description="Run every study file of STUDIES (default: studies/) and rewrite FIGURES/ "
                    "(default: figures/), saving the datasets to RESULTS/ (default: results/). " + RESUME)
    figures.add_argument("--studies", default="studies", help="folder of study files (default: studies)")
    for sub in (run, figures):
        sub.add_argument("--results", default="results", help="folder for the datasets (default: results)")
        sub.add_argument("--figures", default="figures", help="folder for the figures (default: figures)")
        sub.add_argument("--target", choices=tuple(targets),
                         help="run sweeps on this target instead of the study's: " + "; ".join(
                             f"{name}: {target.description}" for name, target in targets.items()))
        sub.add_argument("--redraw", action="store_true",
                         help="only redraw the figures from the saved results (no run)")
        sub.add_argument("--restart", action="store_true",
                         help="discard the saved results (complete or partial) of these studies and run them again")
        sub.add_argument("--scheduler", metavar="ADDRESS",
                         help="run the regions as tasks on this Dask scheduler (tcp://host:8786; needs gdsim[dask])")
        sub.add_argument("--workers", type=int, metavar="N",
                         help="run the regions on a new Dask LocalCluster of N single-threaded worker processes")
        sub.add_argument("-j", "--jobs", type=int, metavar="N",
                         help="run N studies at once, each in a process of its own, without progress bars "
                              "(default: one per CPU; 1: one after another in this process, with progress bars)")
        sub.add_argument("--chunk-runs", type=int, metavar="N",
                         help="runs per saved region of a new store (default: 2048 for sweeps, 1 for the train "
                              "runner); a resumed run keeps its own")
    commands.add_parser("info", parents=[talk], help="versions, CPU, threads and whether the CUDA target is available",
                        description="Print gdsim's and its dependencies' versions, the CPU, the number "
                                    "of threads target='parallel' uses and the CUDA target's state.")
    return parser


def main(argv=None):
    """Entry point of the ``gdsim`` console script; returns the exit code."""
    name = "gdsim"  # "gdsim COMMAND" once the command line is read
    args = None
    for stream in (sys.stdout, sys.stderr):  # a title the terminal cannot show is escaped, not an error
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    with _sigterm_as_interrupt():
        try:
            # Imported here, where Ctrl-C and SIGTERM stop cleanly once the imports are done.
            with _signals_after_imports():
                from ._progress import progress_bar
                from .studies import find_studies, run_studies
                from .sweeps.targets import TARGETS
                from .tutorial import run_tutorial

                parser = _parser(TARGETS)
                args = parser.parse_args(argv)
                if args.command in ("run", "figures"):
                    _import_libraries()
            if args.command is None:
                parser.print_help()
                return 2
            name = f"gdsim {args.command}"
            if args.command == "info":
                print_info()
            elif args.command == "tutorial":
                run_tutorial(seed=args.seed, lr=args.lr, epochs=args.epochs, momentum=args.momentum,
                             nesterov=args.nesterov, batch_size=args.batch_size, shuffle=args.shuffle,
                             quiet=args.quiet)
            else:
                paths = args.studies if args.command == "run" else find_studies(args.studies)
                progress = None if args.quiet else partial(progress_bar, always=args.verbose)
                run_studies(paths, results=args.results, figures=args.figures, target=args.target,
                            redraw=args.redraw, restart=args.restart, chunk_runs=args.chunk_runs,
                            progress=progress, scheduler=args.scheduler, workers=args.workers, quiet=args.quiet,
                            jobs=args.jobs)
        except ValueError as error:  # a bad argument or study file (StudyError, ParameterError), nothing run
            print(f"{name}: error: {error}", file=sys.stderr)
            return 2
        except RuntimeError as error:  # e.g. target "cuda" without a GPU
            print(f"{name}: error: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt as stop:
            # CPython (3.11 at least) marks a KeyboardInterrupt that leaves code run by exec() or eval()
            # of a string (as dataclasses and Numba do when they make functions) as unhandled, even once
            # caught, and at exit kills the process with SIGINT instead of returning this status; an
            # exec of a string that raises nothing clears the mark.
            exec("pass")  # noqa: S102
            terminated = isinstance(stop, Terminated)
            print(f"{name}: {'terminated (SIGTERM)' if terminated else 'interrupted'}; what was "
                  "saved is kept and the same command resumes", file=sys.stderr)
            return 143 if terminated else 130
        except BrokenPipeError:  # output piped into `head` and the like
            sys.stderr.close()
        except OSError as error:  # disk full, permission lost mid-run: the writes are atomic, nothing half-written
            print(f"{name}: error: {_oserror_message(error)}", file=sys.stderr)
            return 1
        except MemoryError:
            print(f"{name}: error: out of memory; run fewer points or epochs at once", file=sys.stderr)
            return 1
        except Exception as error:  # a bug: one line, the traceback on request
            if os.environ.get("GDSIM_DEBUG") or getattr(args, "verbose", False):
                raise
            print(f"{name}: internal error: {type(error).__name__}: {error} (please report it; "
                  "GDSIM_DEBUG=1 shows the traceback)", file=sys.stderr)
            return 1
    return 0


def serve_jobs():
    """A job slot of ``gdsim run`` / ``gdsim figures --jobs`` (:class:`gdsim.studies.jobs.JobSlot`):
    run each command line read from stdin (a JSON list a line) with :func:`main`, in this
    process, and write its exit status as a line to stdout (what the command prints goes
    to stderr); exit with the status of one that was interrupted, and at the end of stdin."""
    protocol = sys.stdout
    try:
        for line in sys.stdin:
            with contextlib.redirect_stdout(sys.stderr):
                status = main(json.loads(line))
            print(status, file=protocol, flush=True)
            if status in (130, 143):
                sys.exit(status)
    except KeyboardInterrupt:  # between two commands
        sys.exit(130)


if __name__ == "__main__":
    sys.exit(main())
