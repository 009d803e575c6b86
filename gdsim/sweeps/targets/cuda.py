"""The CUDA target, host side: copy a plan to the GPU, launch the sweep kernel of
:mod:`gdsim.sweeps.targets.cuda_kernels` (one thread per run), copy the results back."""

import numpy as np

from ..._jit import cuda
from ...models import ModelSpec
from ...tracks import TRACKS
from ..dataset import split_tracks
from .cuda_kernels import THREADS, compiled

#: The observables the kernel measures (``every`` rows it reads): the first four of
#: :data:`gdsim.tracks.TRACKS`, ``loss, grad_norm, batch_loss, batch_grad_norm``.
KERNEL_TRACKS = tuple(TRACKS)[:4]


def run_plan(plan, progress=None):
    """Run a sweep plan (:class:`gdsim.sweeps.plan.Plan`) on the GPU, one thread per run.

    Returns the same dict as :func:`gdsim.sweeps.targets.cpu.run_plan`. The runs are one
    kernel launch, so ``progress`` is called once, at the end.
    """
    names, every, steps = plan.track
    if any(name not in KERNEL_TRACKS for name in names):  # check_sweep refuses them first
        raise ValueError(f"target 'cuda' tracks only {list(KERNEL_TRACKS)}, not {list(names)}")
    kernel = compiled(bool(names))
    numba_cuda = cuda()
    n_runs, n_params = plan.theta0.shape
    dtype = plan.theta0.dtype
    width = int(plan.model.sizes[1:].sum())

    def to_device(a):
        return numba_cuda.to_device(np.ascontiguousarray(a))

    def scratch(rows):
        return numba_cuda.device_array((rows, n_runs), dtype)

    theta = to_device(plan.theta0.T)
    epoch_loss = numba_cuda.device_array((plan.epochs + 1, n_runs), dtype=dtype)
    diverged_step = numba_cuda.device_array(n_runs, dtype=np.int64)
    diverged_loss = to_device(np.full(n_runs, np.nan))
    model = ModelSpec(to_device(plan.model.sizes), *plan.model[1:])
    if names:
        where = np.full(steps[-1] + 1, -1, dtype=np.int64)  # step -> its position in ``steps``
        where[steps] = np.arange(steps.size)
        rows = np.array([names.index(name) if name in names else -1 for name in KERNEL_TRACKS], dtype=np.int64)
        values = to_device(np.full((len(names), steps.size, n_runs), np.nan))
        tracks = (to_device(every[:len(KERNEL_TRACKS)]), to_device(rows), to_device(where), values)
    else:  # never read by the untracked kernel
        none = to_device(np.zeros(len(KERNEL_TRACKS), dtype=np.int64))
        tracks = (none, none, none, to_device(np.zeros((0, 0, 1))))
    kernel[-(-n_runs // THREADS), THREADS](
        (theta, to_device(np.zeros((n_params, n_runs), dtype)), scratch(n_params), scratch(width), scratch(width)),
        model, (to_device(plan.X), to_device(plan.Y), to_device(plan.orders), to_device(plan.batch_sizes),
                to_device(plan.group), plan.drop_last),
        (to_device(plan.lr.T), to_device(plan.hyper)), (plan.divergence_factor, plan.stop_diverged),
        (epoch_loss, diverged_step, diverged_loss), tracks)
    out = {"epoch_loss": epoch_loss.copy_to_host().T.copy(), "params": theta.copy_to_host().T.copy(),
           "diverged_step": diverged_step.copy_to_host(), "diverged_loss": diverged_loss.copy_to_host()}
    if names:
        # [observable, step, run] -> [run, observable, step]
        out |= split_tracks(values.copy_to_host().transpose(2, 0, 1).copy(), names)
    if progress is not None:
        progress(n_runs, n_runs)
    return out
