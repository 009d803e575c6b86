"""CUDA sweep kernel (numba-cuda): one GPU thread per run.

Per-run arrays are laid out ``[k, run]`` (run innermost), so that the threads of a warp,
which run neighbouring runs, read neighbouring addresses. The scalar math (activations,
their slopes, the divergence test, the SGD update) is :mod:`gdsim.scalar`, the very
functions the CPU kernels compile; the loops follow :mod:`gdsim.targets.cpu` with the
run index ``c`` taken from the thread instead of an inner loop.

Everything here is compiled on first use, so that importing gdsim never needs numba-cuda.
"""

import functools
import math

import numpy as np

from .. import scalar
from .._jit import cuda, cuda_device, cuda_kernel
from ..scalar import CROSS_ENTROPY, MEAN

#: Threads per block.
THREADS = 64

#: ``numba.cuda``, set on first use. The kernel reads it as a module global, which is
#: what the CUDA simulator looks for to substitute its own ``grid``.
numba_cuda = None


@functools.cache
def _compiled():
    """Compile the device functions and the kernel (once per process)."""
    global numba_cuda
    numba_cuda = cuda()
    activate = cuda_device(scalar.activate)
    activation_slope = cuda_device(scalar.activation_slope)
    is_diverged = cuda_device(scalar.is_diverged)
    sgd_element = cuda_device(scalar.sgd_element)

    def forward(theta, c, sizes, activation, X, r, acts):
        n_layers = sizes.shape[0] - 1
        w = 0
        a_in = 0
        a_out = 0
        for layer in range(n_layers):
            fan_in = sizes[layer]
            fan_out = sizes[layer + 1]
            b = w + fan_in * fan_out
            for o in range(fan_out):
                row = w + o * fan_in
                s = 0.0
                for i in range(fan_in):
                    s += theta[row + i, c] * (X[r, i] if layer == 0 else acts[a_in + i, c])
                s += theta[b + o, c]
                acts[a_out + o, c] = activate(activation, s) if layer < n_layers - 1 else s
            w = b + fan_out
            a_in = a_out
            a_out += fan_out

    def output_loss(loss, reduction, n_out, acts, a_out, c, Y, r, want_grad, deltas, scale):
        if loss == CROSS_ENTROPY:
            label = int(Y[r, 0])
            top = acts[a_out, c]
            for k in range(1, n_out):
                if acts[a_out + k, c] > top:
                    top = acts[a_out + k, c]
            total = 0.0
            for k in range(n_out):
                total += math.exp(acts[a_out + k, c] - top)
            log_norm = top + math.log(total)
            if want_grad:
                for k in range(n_out):
                    deltas[a_out + k, c] = scale * math.exp(acts[a_out + k, c] - log_norm)
                deltas[a_out + label, c] -= scale
            return log_norm - acts[a_out + label, c]
        mean_outputs = 1.0 / n_out if reduction == MEAN else 1.0
        total = 0.0
        for k in range(n_out):
            residual = acts[a_out + k, c] - Y[r, k]
            total += residual * residual
            if want_grad:
                deltas[a_out + k, c] = scale * 2.0 * mean_outputs * residual
        return mean_outputs * total

    def backward(theta, c, sizes, activation, X, r, acts, deltas, grad):
        n_layers = sizes.shape[0] - 1
        p = theta.shape[0]
        a_out = 0
        for layer in range(1, n_layers):
            a_out += sizes[layer]
        for layer in range(n_layers - 1, -1, -1):
            fan_in = sizes[layer]
            fan_out = sizes[layer + 1]
            b = p - fan_out
            w = b - fan_in * fan_out
            a_in = a_out - fan_in
            if layer > 0:
                for i in range(fan_in):
                    deltas[a_in + i, c] = 0.0
            for o in range(fan_out):
                d = deltas[a_out + o, c]
                grad[b + o, c] += d
                row = w + o * fan_in
                for i in range(fan_in):
                    if layer > 0:
                        grad[row + i, c] += d * acts[a_in + i, c]
                        deltas[a_in + i, c] += theta[row + i, c] * d
                    else:
                        grad[row + i, c] += d * X[r, i]
            if layer > 0:
                for i in range(fan_in):
                    deltas[a_in + i, c] *= activation_slope(activation, acts[a_in + i, c])
            p = w
            a_out = a_in

    def batch_loss(theta, c, sizes, activation, loss, reduction, X, Y, order, epoch, start, stop, want_grad,
                   grad, acts, deltas):
        n_layers = sizes.shape[0] - 1
        a_out = 0
        for layer in range(1, n_layers):
            a_out += sizes[layer]
        scale = 1.0 / (stop - start) if reduction == MEAN else 1.0
        if want_grad:
            for k in range(grad.shape[0]):
                grad[k, c] = 0.0
        total = 0.0
        for j in range(start, stop):
            r = order[epoch, j] if epoch >= 0 else j
            forward(theta, c, sizes, activation, X, r, acts)
            total += output_loss(loss, reduction, sizes[n_layers], acts, a_out, c, Y, r, want_grad, deltas, scale)
            if want_grad:
                backward(theta, c, sizes, activation, X, r, acts, deltas, grad)
        if reduction == MEAN:
            return total / (stop - start)
        return total

    forward = cuda_device(forward)
    output_loss = cuda_device(output_loss)
    backward = cuda_device(backward)
    batch_loss = cuda_device(batch_loss)

    def sweep_kernel(theta, buf, grad, acts, deltas, group, sizes, activation, loss, reduction, X, Y, orders,
                     batch_sizes, drop_last, lr, momentum, dampening, weight_decay, nesterov, divergence_factor,
                     stop_diverged, epoch_loss, diverged_step, diverged_loss):
        c = numba_cuda.grid(1)
        if c >= theta.shape[1]:
            return
        n = X.shape[0]
        order = orders[group[c]]
        batch_size = batch_sizes[group[c]]
        epochs = order.shape[0]
        threshold = math.inf
        active = True
        marked = -1
        step = 0
        for epoch in range(epochs + 1):
            if not active:
                epoch_loss[epoch, c] = math.nan
                continue
            value = batch_loss(theta, c, sizes, activation, loss, reduction, X, Y, order, -1, 0, n, False, grad,
                               acts, deltas)
            epoch_loss[epoch, c] = value
            if epoch == 0 and value > 0.0:
                threshold = divergence_factor * value
            if marked < 0 and is_diverged(value, threshold):
                marked = step
                diverged_loss[c] = value
                active = not stop_diverged
            if epoch == epochs or not active:
                continue
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                if drop_last and stop - start < batch_size:
                    break
                value = batch_loss(theta, c, sizes, activation, loss, reduction, X, Y, order, epoch, start, stop,
                                   True, grad, acts, deltas)
                if marked < 0 and is_diverged(value, threshold):
                    marked = step
                    diverged_loss[c] = value
                    active = not stop_diverged
                    if not active:
                        break
                for k in range(theta.shape[0]):
                    theta[k, c], buf[k, c] = sgd_element(theta[k, c], grad[k, c], buf[k, c], lr[epoch, c],
                                                         momentum[c], dampening[c], weight_decay[c], nesterov[c],
                                                         False, step == 0)
                step += 1
        diverged_step[c] = marked

    return cuda_kernel(sweep_kernel)


def run_plan(model, X, Y, plan, *, drop_last, divergence_factor, stop_diverged, parallel=True, progress=None):
    """Run a sweep plan (see :func:`gdsim.sweeps.sweep`) on the GPU, one thread per run.

    Returns the same dict as :func:`gdsim.targets.cpu.run_plan`. The runs are one kernel
    launch, so ``progress`` is called once, at the end.
    """
    kernel = _compiled()
    n_runs, n_params = plan["theta0"].shape
    dtype = plan["theta0"].dtype
    width = int(model.sizes_array[1:].sum())
    epochs = plan["lr"].shape[1]

    def to_device(a):
        return numba_cuda.to_device(np.ascontiguousarray(a))

    theta = to_device(plan["theta0"].T)
    epoch_loss = numba_cuda.device_array((epochs + 1, n_runs), dtype=dtype)
    diverged_step = numba_cuda.device_array(n_runs, dtype=np.int64)
    diverged_loss = to_device(np.full(n_runs, np.nan))
    blocks = -(-n_runs // THREADS)
    kernel[blocks, THREADS](
        theta, to_device(np.zeros((n_params, n_runs), dtype)), numba_cuda.device_array((n_params, n_runs), dtype),
        numba_cuda.device_array((width, n_runs), dtype), numba_cuda.device_array((width, n_runs), dtype),
        to_device(plan["group"]), to_device(model.sizes_array), model.activation_code, model.loss_code,
        model.reduction_code, to_device(X), to_device(Y), to_device(plan["orders"]), to_device(plan["batch_sizes"]),
        drop_last, to_device(plan["lr"].T), to_device(plan["momentum"]), to_device(plan["dampening"]),
        to_device(plan["weight_decay"]), to_device(plan["nesterov"]), divergence_factor, stop_diverged,
        epoch_loss, diverged_step, diverged_loss)
    out = {"epoch_loss": epoch_loss.copy_to_host().T.copy(), "params": theta.copy_to_host().T.copy(),
           "diverged_step": diverged_step.copy_to_host(), "diverged_loss": diverged_loss.copy_to_host()}
    if progress is not None:
        progress(n_runs, n_runs)
    return out
