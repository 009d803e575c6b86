"""The CUDA target, host side: copy a plan to the GPU, launch the sweep kernel of
:mod:`gdsim.sweeps.targets.cuda_kernels` (one thread per run), copy the results back."""

import numpy as np

from ..._jit import cuda, load_compiler, numba_types
from ...models import ModelSpec
from ...tracks import TRACKS
from ..dataset import split_tracks
from .cuda_kernels import THREADS, compiled, size_class

#: Threads an SM holds at most (compute capabilities 8.0 and 9.0). One launch of the sweep
#: kernel covers (number of SMs) x this many runs (:func:`chunk_runs`): what the GPU could
#: hold at full occupancy, several waves of blocks at the kernel's (benchmarks/results/ptx.md).
THREADS_PER_SM = 2048

#: The observables the kernel measures (``every`` rows it reads): the first four of
#: :data:`gdsim.tracks.TRACKS`, ``loss, grad_norm, batch_loss, batch_grad_norm``.
KERNEL_TRACKS = tuple(TRACKS)[:4]


def chunk_runs(numba_cuda):
    """Runs per kernel launch on the current GPU: its SMs times :data:`THREADS_PER_SM`
    (one SM's worth where the device does not say, as in the simulator), a multiple of
    :data:`THREADS`."""
    sms = getattr(numba_cuda.get_current_device(), "MULTIPROCESSOR_COUNT", 1)
    return max(THREADS, int(sms) * THREADS_PER_SM // THREADS * THREADS)


def run_plan(plan, progress=None):
    """Run a sweep plan (:class:`gdsim.sweeps.plan.Plan`) on the GPU, one thread per run.

    Returns the same dict as :func:`gdsim.sweeps.targets.cpu.run_plan`. The runs are
    launched in chunks of :func:`chunk_runs` (whole blocks: the same blocks as one launch,
    and each run is computed alone, so the chunking changes no result), waiting for each:
    ``progress(runs_done, n_runs)``, if given, is called after each, and an interrupt
    (Ctrl-C) stops the sweep once the launch in flight has finished.
    """
    load_compiler()  # Numba's registries, once: as the first kernel call would, with the GC paused
    names = plan.track[0]
    numba_cuda = cuda()
    kernel = compiled(*kernel_build(plan))
    args = kernel_args(plan, lambda a: numba_cuda.to_device(np.ascontiguousarray(a)), numba_cuda.device_array)
    state, model, data, *rest = args
    per_launch = chunk_runs(numba_cuda)
    for start in range(0, plan.n_runs, per_launch):
        stop = min(start + per_launch, plan.n_runs)
        slots = data[-1][start:stop]  # the chunk's runs, in thread order
        kernel[-(-(stop - start) // THREADS), THREADS](state, model, (*data[:-1], slots), *rest)
        numba_cuda.synchronize()
        if progress is not None:
            progress(stop, plan.n_runs)
    (theta, *_), _, _, _, _, (epoch_loss, diverged_step, diverged_loss), (*_, values) = args
    out = {"epoch_loss": epoch_loss.copy_to_host().T.copy(), "params": theta.copy_to_host().T.copy(),
           "diverged_step": diverged_step.copy_to_host(), "diverged_loss": diverged_loss.copy_to_host()}
    if names:
        # [observable, step, run] -> [run, observable, step]
        out |= split_tracks(values.copy_to_host().transpose(2, 0, 1).copy(), names)
    return out


def kernel_build(plan):
    """The build of the sweep kernel that runs ``plan``: the arguments of
    :func:`gdsim.sweeps.targets.cuda_kernels.compiled`.

    Returns
    -------
    (bool, str, int)
        ``(tracked, dtype, size)``: whether the plan tracks observables, its dtype's name,
        and its size class (:func:`gdsim.sweeps.targets.cuda_kernels.size_class`).
    """
    width = int(plan.model.sizes[1:].sum())
    return bool(plan.track[0]), plan.theta0.dtype.name, size_class(plan.theta0.shape[1], width)


def kernel_args(plan, put=lambda a: np.array(a, order="C"), empty=np.empty):
    """The arguments of the sweep kernel (:func:`gdsim.sweeps.targets.cuda_kernels.compiled`)
    for ``plan``: what :func:`run_plan` launches, and whose Numba types are the kernel's
    signature (:func:`kernel_signature`).

    Parameters
    ----------
    plan : gdsim.sweeps.plan.Plan
    put : callable
        ``put(array)``: an input array where the kernel reads it (default: a writable
        C-contiguous host copy, typed as the device copy that :func:`run_plan` makes).
    empty : callable
        ``empty(shape, dtype)``: an output or scratch array (default: :func:`numpy.empty`).

    Returns
    -------
    tuple
        ``(state, model, data, runs, divergence, out, tracks)``.

    Raises
    ------
    ValueError
        If the plan tracks an observable the kernel does not measure.
    """
    names, every, steps = plan.track
    if any(name not in KERNEL_TRACKS for name in names):  # check_sweep refuses them first
        raise ValueError(f"target 'cuda' tracks only {list(KERNEL_TRACKS)}, not {list(names)}")
    n_runs, n_params = plan.theta0.shape
    dtype = plan.theta0.dtype
    width = int(plan.model.sizes[1:].sum())
    scratch = 1 if kernel_build(plan)[2] else n_runs  # the local-array builds keep theirs per thread
    state = (put(plan.theta0.T), put(np.zeros((n_params, scratch), dtype)), empty((n_params, scratch), dtype),
             empty((width, scratch), dtype), empty((width, scratch), dtype))
    model = ModelSpec(put(plan.model.sizes), *plan.model[1:])
    # The runs in thread order: by group (a stable sort), so that the threads of a block share
    # their sample order and stage their samples in shared memory.
    slots = np.argsort(plan.group, kind="stable")
    data = (put(plan.X.ravel()), put(plan.Y.ravel()), put(plan.orders), put(plan.batch_sizes), put(plan.group),
            plan.drop_last, put(slots))
    out = (empty((plan.epochs + 1, n_runs), dtype), empty(n_runs, np.int64), put(np.full(n_runs, np.nan)))
    if names:
        where = np.full(steps[-1] + 1, -1, dtype=np.int64)  # step -> its position in ``steps``
        where[steps] = np.arange(steps.size)
        rows = np.array([names.index(name) if name in names else -1 for name in KERNEL_TRACKS], dtype=np.int64)
        values = put(np.full((len(names), steps.size, n_runs), np.nan))
        tracks = (put(every[:len(KERNEL_TRACKS)]), put(rows), put(where), values)
    else:  # never read by the untracked kernel
        none = put(np.zeros(len(KERNEL_TRACKS), dtype=np.int64))
        tracks = (none, none, none, put(np.zeros((0, 0, 1))))
    runs = (put(plan.lr.T.astype(dtype)), put(plan.hyper.astype(dtype)))  # the kernel computes in dtype
    return (state, model, data, runs, (plan.divergence_factor, plan.stop_diverged),
            out, tracks)


def kernel_signature(plan):
    """The Numba types of the kernel's arguments for ``plan``: the signature its launch
    compiles (with :func:`gdsim.sweeps.targets.cuda_kernels.compiled` ``(*kernel_build(plan))``).

    Returns
    -------
    tuple of numba.core.types.Type
    """
    return numba_types(kernel_args(plan))
