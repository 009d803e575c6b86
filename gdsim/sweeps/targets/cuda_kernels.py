"""CUDA sweep kernel (numba-cuda): one GPU thread per run.

Per-run arrays are laid out ``[k, run]`` (run innermost), so that the threads of a warp,
which run neighbouring runs, read neighbouring addresses. The scalar math (activations,
their slopes, the divergence test and threshold, the SGD update, the batch slicing) is
:mod:`gdsim.scalar`, the very functions the CPU kernels compile; the loops follow
:mod:`gdsim.sweeps.targets.cpu_lanes` with the run index ``c`` taken from the thread
instead of an inner loop. :mod:`gdsim.sweeps.targets.cuda` launches it.

Everything here is compiled on first use, so that importing gdsim never needs numba-cuda.
"""

import functools
import math

import numpy as np

from ... import scalar
from ..._jit import cuda_device as compile_device
from ..._jit import cuda_kernel, cuda_module
from ...optim import DAMPENING, MOMENTUM, NESTEROV, WEIGHT_DECAY
from ...scalar import CROSS_ENTROPY

#: Threads per block.
THREADS = 64

#: ``numba.cuda``, set on first use. The kernel reads it as a module global, which is
#: what the CUDA simulator looks for to substitute its own ``grid``.
numba_cuda = None


@functools.cache
def compiled(tracked=False, dtype="float64"):
    """The sweep kernel, compiled with its device functions once per process and dtype
    (and once more with ``tracked``: the kernel that measures tracks; without, it has no
    code for them). The arithmetic is in ``dtype`` (the sweep's): the float literals of the
    kernel and of :mod:`gdsim.scalar` are typed ``dtype`` (:func:`gdsim._jit.in_dtype`) and
    every float array holds ``dtype`` values; only the divergence threshold stays float64.
    Building it needs numba-cuda, not a GPU (:mod:`gdsim.sweeps.targets.cuda_variants`
    compiles it to PTX); launching it needs a GPU or the simulator.

    ``kernel[blocks, THREADS](state, model, data, runs, divergence, out, tracks)``, one thread per run:

    * ``state = (theta, buf, grad, acts, deltas)``: ``[n_params, runs]`` three times (initial
      then final parameters, momentum buffers, gradients) and ``[width, runs]`` twice
      (scratch; ``width`` = the sum of the layer widths after the input);
    * ``model``: a :class:`gdsim.models.ModelSpec` (``sizes`` on the device);
    * ``data = (X, Y, orders, batch_sizes, group, drop_last)``: ``group[run]`` selects the
      run's ``orders [n_groups, epochs, n]`` and ``batch_sizes [n_groups]``;
    * ``runs = (lr [epochs, runs], hyper [N_HYPER, runs])`` in ``dtype``;
    * ``divergence = (divergence_factor, stop_diverged)``;
    * ``out = (epoch_loss [epochs + 1, runs], diverged_step [runs], diverged_loss [runs])``;
    * ``tracks = (every [4], rows [4], where [max_steps + 1], values [m, steps, runs])``:
      the periods of the first four observables of :data:`gdsim.tracks.TRACKS` (``loss``,
      ``grad_norm``, ``batch_loss``, ``batch_grad_norm``; 0: not tracked), the row of
      ``values`` of each, the position of each step in the result's ``step`` coordinate,
      and the measurements (NaN on entry), as :func:`gdsim.training.train_loop` makes
      them; a run stopped at a step keeps its full-data measurements of that step, not
      its batch's. Read only with ``tracked``.
    """
    global numba_cuda
    numba_cuda = cuda_module()
    F = np.dtype(dtype).type  # converts the integers that meet floats (F(n): no float64 on the way)

    def cuda_device(function):
        return compile_device(function, dtype)
    activate = cuda_device(scalar.activate)
    activation_slope = cuda_device(scalar.activation_slope)
    is_diverged = cuda_device(scalar.is_diverged)
    divergence_threshold = cuda_device(scalar.divergence_threshold)
    batch_stop = cuda_device(scalar.batch_stop)
    sgd_element = cuda_device(scalar.sgd_element)
    averages = cuda_device(scalar.averages)
    loss_factor = cuda_device(scalar.loss_factor)
    weight_scale = cuda_device(scalar.weight_scale)
    has_bias = cuda_device(scalar.has_bias)
    is_ntk = cuda_device(scalar.is_ntk)

    def forward(theta, c, model, X, r, acts):
        sizes, activation, _, _, layer_code = model
        bias = has_bias(layer_code)
        ntk = is_ntk(layer_code)
        n_layers = sizes.shape[0] - 1
        w = 0
        a_in = 0
        a_out = 0
        for layer in range(n_layers):
            fan_in = sizes[layer]
            fan_out = sizes[layer + 1]
            b = w + fan_in * fan_out
            scale = F(weight_scale(layer_code, fan_in))
            for o in range(fan_out):
                row = w + o * fan_in
                s = 0.0
                for i in range(fan_in):
                    s += theta[row + i, c] * (X[r, i] if layer == 0 else acts[a_in + i, c])
                if ntk:
                    s = s * scale
                if bias:
                    s += theta[b + o, c]
                acts[a_out + o, c] = activate(activation, s) if layer < n_layers - 1 else s
            w = b + fan_out if bias else b
            a_in = a_out
            a_out += fan_out

    def output_loss(model, acts, a_out, c, Y, r, want_grad, deltas, scale):
        sizes, _, loss, reduction, _ = model
        n_out = sizes[sizes.shape[0] - 1]
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
        factor = loss_factor(reduction)
        mean_outputs = factor / F(n_out) if averages(reduction) else factor
        total = 0.0
        for k in range(n_out):
            residual = acts[a_out + k, c] - Y[r, k]
            total += residual * residual
            if want_grad:
                deltas[a_out + k, c] = scale * 2.0 * mean_outputs * residual
        return mean_outputs * total

    def backward(theta, c, model, X, r, acts, deltas, grad):
        sizes, activation, _, _, layer_code = model
        bias = has_bias(layer_code)
        ntk = is_ntk(layer_code)
        n_layers = sizes.shape[0] - 1
        p = theta.shape[0]
        a_out = 0
        for layer in range(1, n_layers):
            a_out += sizes[layer]
        for layer in range(n_layers - 1, -1, -1):
            fan_in = sizes[layer]
            fan_out = sizes[layer + 1]
            b = p - fan_out if bias else p
            w = b - fan_in * fan_out
            a_in = a_out - fan_in
            scale = F(weight_scale(layer_code, fan_in))
            if layer > 0:
                for i in range(fan_in):
                    deltas[a_in + i, c] = 0.0
            for o in range(fan_out):
                d = deltas[a_out + o, c]
                if bias:
                    grad[b + o, c] += d
                if ntk:
                    d = d * scale
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

    def batch_loss(theta, c, model, X, Y, order, epoch, start, stop, want_grad, grad, work):
        sizes, _, _, reduction, _ = model
        mean = averages(reduction)
        acts, deltas = work
        n_layers = sizes.shape[0] - 1
        a_out = 0
        for layer in range(1, n_layers):
            a_out += sizes[layer]
        scale = 1.0 / F(stop - start) if mean else 1.0
        if want_grad:
            for k in range(grad.shape[0]):
                grad[k, c] = 0.0
        total = 0.0
        for j in range(start, stop):
            r = order[epoch, j] if epoch >= 0 else j
            forward(theta, c, model, X, r, acts)
            total += output_loss(model, acts, a_out, c, Y, r, want_grad, deltas, scale)
            if want_grad:
                backward(theta, c, model, X, r, acts, deltas, grad)
        if mean:
            return total / F(stop - start)
        return total

    forward = cuda_device(forward)
    output_loss = cuda_device(output_loss)
    backward = cuda_device(backward)
    batch_loss = cuda_device(batch_loss)

    def norm(grad, c):
        total = 0.0
        for k in range(grad.shape[0]):
            total += grad[k, c] * grad[k, c]
        return math.sqrt(total)

    def track_full(theta, c, model, X, Y, order, step, grad, work, tracks):
        # gdsim.tracks.track_full: the full-data loss and gradient norm due at ``step`` (grad: scratch).
        every, rows, where, values = tracks
        want_loss = every[0] > 0 and step % every[0] == 0
        want_norm = every[1] > 0 and step % every[1] == 0
        if want_loss or want_norm:
            value = batch_loss(theta, c, model, X, Y, order, -1, 0, X.shape[0], want_norm, grad, work)
            if want_loss:
                values[rows[0], where[step], c] = value
            if want_norm:
                values[rows[1], where[step], c] = norm(grad, c)

    def track_batch(c, step, value, grad, tracks):
        # gdsim.tracks.track_batch: the step's batch loss and the norm of its gradient.
        every, rows, where, values = tracks
        if every[2] > 0 and step % every[2] == 0:
            values[rows[2], where[step], c] = value
        if every[3] > 0 and step % every[3] == 0:
            values[rows[3], where[step], c] = norm(grad, c)

    norm = cuda_device(norm)
    track_full = cuda_device(track_full)
    track_batch = cuda_device(track_batch)

    def sweep_kernel(state, model, data, runs, divergence, out, tracks):
        theta, buf, grad, acts, deltas = state
        X, Y, orders, batch_sizes, group, drop_last = data
        lr, hyper = runs
        divergence_factor, stop_diverged = divergence
        epoch_loss, diverged_step, diverged_loss = out
        work = (acts, deltas)
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
            value = batch_loss(theta, c, model, X, Y, order, -1, 0, n, False, grad, work)
            epoch_loss[epoch, c] = value
            if tracked:  # a constant of the build: the untracked kernel has no such code
                track_full(theta, c, model, X, Y, order, step, grad, work, tracks)
            if epoch == 0:
                threshold = divergence_threshold(value, divergence_factor)
            if marked < 0 and is_diverged(value, threshold):
                marked = step
                diverged_loss[c] = value
                active = not stop_diverged
            if epoch == epochs or not active:
                continue
            for start in range(0, n, batch_size):
                stop = batch_stop(start, n, batch_size, drop_last)
                if stop == start:
                    break
                if tracked and start > 0:  # the epoch's first step was measured with its loss
                    track_full(theta, c, model, X, Y, order, step, grad, work, tracks)
                value = batch_loss(theta, c, model, X, Y, order, epoch, start, stop, True, grad, work)
                if marked < 0 and is_diverged(value, threshold):
                    marked = step
                    diverged_loss[c] = value
                    active = not stop_diverged
                    if not active:
                        break
                if tracked:
                    track_batch(c, step, value, grad, tracks)
                for k in range(theta.shape[0]):
                    theta[k, c], buf[k, c] = sgd_element(theta[k, c], grad[k, c], buf[k, c], lr[epoch, c],
                                                         hyper[MOMENTUM, c], hyper[DAMPENING, c],
                                                         hyper[WEIGHT_DECAY, c], hyper[NESTEROV, c] != 0.0,
                                                         False, step == 0)
                step += 1
        diverged_step[c] = marked

    return cuda_kernel(sweep_kernel, dtype)
