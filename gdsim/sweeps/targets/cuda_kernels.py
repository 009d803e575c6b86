"""CUDA sweep kernel (numba-cuda): one GPU thread per run.

Each thread trains one run. For small models (:func:`size_class`) the run's parameters,
momentum buffer, gradient, activations and deltas live in ``cuda.local.array`` s of a
compile-time size (one build per size class of :data:`LOCAL_SIZES`), read from and written
back to global memory once; larger models keep them in global memory laid out ``[k, run]``
(run innermost, so that the threads of a warp, which run neighbouring runs, read
neighbouring addresses). Both builds run the same device functions, over one run's 1-D
arrays. The scalar math (activations, their slopes, the divergence test and threshold, the
SGD update, the batch slicing) is :mod:`gdsim.scalar`, the very functions the CPU kernels
compile; the loops follow :mod:`gdsim.sweeps.targets.cpu_lanes` with the run index ``c``
taken from the thread instead of an inner loop. :mod:`gdsim.sweeps.targets.cuda` launches it.

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

#: Blocks of :data:`THREADS` threads that must fit on an SM at once (the kernel's launch
#: bounds): ptxas then keeps the kernel within 65536 / (8 x 64) = 128 registers per thread,
#: spilling the rest to local memory (benchmarks/results/ptx.md: without the bound ptxas
#: takes 165-206 registers, 6 blocks or fewer). None: no bound.
MIN_BLOCKS = 8

#: Size classes of the local-array builds: a model whose parameter count (and so its
#: width, never larger) is at most ``size`` runs in the build of the smallest such
#: ``size``, with five local arrays of ``size`` elements per thread (5 x 256 x 8 B = 10 KiB
#: in float64 at most: local memory is reserved for every thread the GPU can hold, 2048
#: per SM, and cached in L1 only while it is small; benchmarks/results/ptx.md). Larger
#: models run in the global-memory build (size 0).
LOCAL_SIZES = (16, 64, 256)

#: Elements of the shared-memory array in which a block stages its samples (8 KiB in
#: float64: it leaves registers, not shared memory, the limit of blocks per SM).
STAGE = 1024

#: ``numba.cuda``, set on first use. The kernel reads it as a module global, which is
#: what the CUDA simulator looks for to substitute its own ``grid``.
numba_cuda = None


def size_class(n_params, width):
    """The build for a model of ``n_params`` parameters and ``width`` units after its
    input: the smallest of :data:`LOCAL_SIZES` that holds both, or 0 (global memory)."""
    need = max(int(n_params), int(width))
    return next((size for size in LOCAL_SIZES if need <= size), 0)


@functools.cache
def compiled(tracked=False, dtype="float64", size=0, min_blocks=MIN_BLOCKS):
    """The sweep kernel, compiled with its device functions once per process, dtype and
    size class (and once more with ``tracked``: the kernel that measures tracks; without,
    it has no code for them). The arithmetic is in ``dtype`` (the sweep's): the float
    literals of the kernel and of :mod:`gdsim.scalar` are typed ``dtype``
    (:func:`gdsim._jit.in_dtype`) and every float array holds ``dtype`` values; only the
    divergence threshold stays float64. ``size`` (one of :data:`LOCAL_SIZES`, or 0: see
    :func:`size_class`) is the length of each thread's local arrays, 0 for the build that
    keeps them in global memory. ``min_blocks``: the launch bound (:data:`MIN_BLOCKS`).
    Building it needs numba-cuda, not a GPU
    (:mod:`gdsim.sweeps.targets.cuda_variants` compiles it to PTX); launching it needs a
    GPU or the simulator.

    ``kernel[blocks, THREADS](state, model, data, runs, divergence, out, tracks)``, thread
    ``t`` running run ``slots[t]``:

    * ``state = (theta, buf, grad, acts, deltas)``: ``[n_params, runs]`` three times (initial
      then final parameters, momentum buffers (zeros), gradients) and ``[width, runs]``
      twice (scratch; ``width`` = the sum of the layer widths after the input); with
      ``size``, only ``theta`` is read and written, the others may have one column;
    * ``model``: a :class:`gdsim.models.ModelSpec` (``sizes`` on the device);
    * ``data = (X, Y, orders, batch_sizes, group, drop_last, slots)``: ``X [n * n_in]`` and
      ``Y [n * n_y]`` flattened (C order), ``group[run]`` selects the run's
      ``orders [n_groups, epochs, n]`` and ``batch_sizes [n_groups]``; ``slots``: the runs
      of the launch in thread order, those of a group together (a block whose runs share
      their group stages the samples of each batch in shared memory);
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

    # One run's arrays from here on: theta, grad [n_params], acts, deltas [width]; a sample's
    # inputs are xs[x0:x0 + n_in] and targets ys[y0:y0 + n_y] (in X and Y or in shared memory).
    def forward(theta, model, xs, x0, acts):
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
                    s += theta[row + i] * (xs[x0 + i] if layer == 0 else acts[a_in + i])
                if ntk:
                    s = s * scale
                if bias:
                    s += theta[b + o]
                acts[a_out + o] = activate(activation, s) if layer < n_layers - 1 else s
            w = b + fan_out if bias else b
            a_in = a_out
            a_out += fan_out

    def output_loss(model, acts, a_out, ys, y0, want_grad, deltas, scale):
        sizes, _, loss, reduction, _ = model
        n_out = sizes[sizes.shape[0] - 1]
        if loss == CROSS_ENTROPY:
            label = int(ys[y0])
            top = acts[a_out]
            for k in range(1, n_out):
                if acts[a_out + k] > top:
                    top = acts[a_out + k]
            total = 0.0
            for k in range(n_out):
                total += math.exp(acts[a_out + k] - top)
            log_norm = top + math.log(total)
            if want_grad:
                for k in range(n_out):
                    deltas[a_out + k] = scale * math.exp(acts[a_out + k] - log_norm)
                deltas[a_out + label] -= scale
            return log_norm - acts[a_out + label]
        factor = loss_factor(reduction)
        mean_outputs = factor / F(n_out) if averages(reduction) else factor
        total = 0.0
        for k in range(n_out):
            residual = acts[a_out + k] - ys[y0 + k]
            total += residual * residual
            if want_grad:
                deltas[a_out + k] = scale * 2.0 * mean_outputs * residual
        return mean_outputs * total

    def backward(theta, model, xs, x0, acts, deltas, grad):
        sizes, activation, _, _, layer_code = model
        bias = has_bias(layer_code)
        ntk = is_ntk(layer_code)
        n_layers = sizes.shape[0] - 1
        p = grad.shape[0]
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
                    deltas[a_in + i] = 0.0
            for o in range(fan_out):
                d = deltas[a_out + o]
                if bias:
                    grad[b + o] += d
                if ntk:
                    d = d * scale
                row = w + o * fan_in
                for i in range(fan_in):
                    if layer > 0:
                        grad[row + i] += d * acts[a_in + i]
                        deltas[a_in + i] += theta[row + i] * d
                    else:
                        grad[row + i] += d * xs[x0 + i]
            if layer > 0:
                for i in range(fan_in):
                    deltas[a_in + i] *= activation_slope(activation, acts[a_in + i])
            p = w
            a_out = a_in

    def stage_samples(samples, order, epoch, j, m):
        # The block copies samples j..j+m of the epoch's order to shared memory, inputs then targets.
        X, Y, n_in, n_y, shared, _ = samples
        numba_cuda.syncthreads()  # every thread is done with the previous samples
        first = numba_cuda.threadIdx.x
        stride = numba_cuda.blockDim.x
        for e in range(first, m * n_in, stride):
            k = e // n_in
            r = order[epoch, j + k] if epoch >= 0 else j + k
            shared[e] = X[r * n_in + e - k * n_in]
        for e in range(first, m * n_y, stride):
            k = e // n_y
            r = order[epoch, j + k] if epoch >= 0 else j + k
            shared[m * n_in + e] = Y[r * n_y + e - k * n_y]
        numba_cuda.syncthreads()

    def batch_loss(theta, model, samples, order, epoch, start, stop, want_grad, grad, work, on, staged):
        # The loss of samples start..stop of the epoch's order (epoch -1: of the data in order)
        # and, with want_grad, its gradient in grad; computed only when ``on`` (else 0.0).
        # ``staged`` (the same for every thread of the block): the block stages the samples in
        # shared memory, as many at a time as fit, every thread taking part.
        sizes, _, _, reduction, _ = model
        X, Y, n_in, n_y, shared, fit = samples
        mean = averages(reduction)
        acts, deltas = work
        n_layers = sizes.shape[0] - 1
        a_out = 0
        for layer in range(1, n_layers):
            a_out += sizes[layer]
        scale = 1.0 / F(stop - start) if mean else 1.0
        if want_grad and on:
            for k in range(grad.shape[0]):
                grad[k] = 0.0
        total = 0.0
        j = start
        while j < stop:
            m = min(stop - j, fit) if staged else stop - j
            if staged:
                stage_samples(samples, order, epoch, j, m)
            if on:
                for k in range(m):
                    if staged:
                        xs, x0, ys, y0 = shared, k * n_in, shared, m * n_in + k * n_y
                    else:
                        r = order[epoch, j + k] if epoch >= 0 else j + k
                        xs, x0, ys, y0 = X, r * n_in, Y, r * n_y
                    forward(theta, model, xs, x0, acts)
                    total += output_loss(model, acts, a_out, ys, y0, want_grad, deltas, scale)
                    if want_grad:
                        backward(theta, model, xs, x0, acts, deltas, grad)
            j += m
        if mean:
            return total / F(stop - start)
        return total

    forward = cuda_device(forward)
    output_loss = cuda_device(output_loss)
    backward = cuda_device(backward)
    stage_samples = cuda_device(stage_samples)
    batch_loss = cuda_device(batch_loss)

    def norm(grad):
        total = 0.0
        for k in range(grad.shape[0]):
            total += grad[k] * grad[k]
        return math.sqrt(total)

    def track_full(theta, c, model, samples, order, step, grad, work, tracks, on, staged):
        # gdsim.tracks.track_full: the full-data loss and gradient norm due at ``step`` (grad: scratch).
        every, rows, where, values = tracks
        want_loss = every[0] > 0 and step % every[0] == 0
        want_norm = every[1] > 0 and step % every[1] == 0
        if want_loss or want_norm:  # the same for every thread of a block: step is
            value = batch_loss(theta, model, samples, order, -1, 0, order.shape[1], want_norm, grad, work, on, staged)
            if want_loss and on:
                values[rows[0], where[step], c] = value
            if want_norm and on:
                values[rows[1], where[step], c] = norm(grad)

    def track_batch(c, step, value, grad, tracks):
        # gdsim.tracks.track_batch: the step's batch loss and the norm of its gradient.
        every, rows, where, values = tracks
        if every[2] > 0 and step % every[2] == 0:
            values[rows[2], where[step], c] = value
        if every[3] > 0 and step % every[3] == 0:
            values[rows[3], where[step], c] = norm(grad)

    norm = cuda_device(norm)
    track_full = cuda_device(track_full)
    track_batch = cuda_device(track_batch)

    def train_run(c, live, staged, state, model, samples, data, runs, divergence, out, tracks):
        # Run c, state = (theta (trained in place), buf, grad, work = (acts, deltas)).
        # Every thread of a staged block takes the same steps (a run that stopped, or none:
        # not live, computes nothing) so that all reach each stage_samples together.
        theta, buf, grad, work = state
        orders, batch_sizes, group, drop_last = data
        lr, hyper = runs
        divergence_factor, stop_diverged = divergence
        epoch_loss, diverged_step, diverged_loss = out
        order = orders[group[c]]
        batch_size = batch_sizes[group[c]]
        epochs = order.shape[0]
        n = order.shape[1]
        threshold = math.inf
        active = True
        marked = -1
        step = 0  # counts every batch: a run that stopped reads it no more
        for epoch in range(epochs + 1):
            on = live and active
            value = batch_loss(theta, model, samples, order, -1, 0, n, False, grad, work, on, staged)
            if live:
                epoch_loss[epoch, c] = value if on else F(math.nan)
            if tracked:  # a constant of the build: the untracked kernel has no such code
                track_full(theta, c, model, samples, order, step, grad, work, tracks, on, staged)
            if on:
                if epoch == 0:
                    threshold = divergence_threshold(value, divergence_factor)
                if marked < 0 and is_diverged(value, threshold):
                    marked = step
                    diverged_loss[c] = value
                    active = not stop_diverged
            if epoch == epochs:
                continue
            for start in range(0, n, batch_size):
                stop = batch_stop(start, n, batch_size, drop_last)
                if stop == start:
                    break
                on = live and active
                if tracked and start > 0:  # the epoch's first step was measured with its loss
                    track_full(theta, c, model, samples, order, step, grad, work, tracks, on, staged)
                value = batch_loss(theta, model, samples, order, epoch, start, stop, True, grad, work, on, staged)
                if on and marked < 0 and is_diverged(value, threshold):
                    marked = step
                    diverged_loss[c] = value
                    active = not stop_diverged
                if on and active:
                    if tracked:
                        track_batch(c, step, value, grad, tracks)
                    for k in range(theta.shape[0]):
                        theta[k], buf[k] = sgd_element(theta[k], grad[k], buf[k], lr[epoch, c], hyper[MOMENTUM, c],
                                                       hyper[DAMPENING, c], hyper[WEIGHT_DECAY, c],
                                                       hyper[NESTEROV, c] != 0.0, False, step == 0)
                step += 1
        if live:
            diverged_step[c] = marked

    train_run = cuda_device(train_run)

    def start_run(model, data):
        # This thread's run c (the block's first run for a thread past the last run: not
        # live), whether it is live, and whether the block stages its samples: all its
        # runs share their sample order and a sample fits in STAGE.
        X, Y, orders, _, group, _, slots = data
        t = numba_cuda.grid(1)
        first = numba_cuda.blockIdx.x * numba_cuda.blockDim.x
        live = t < slots.shape[0]
        c = slots[t] if live else slots[first]
        n_in = model[0][0]
        n_y = Y.shape[0] // orders.shape[2]
        fit = STAGE // (n_in + n_y)
        shared_order = numba_cuda.syncthreads_and(1 if group[c] == group[slots[first]] else 0) != 0
        return c, live, shared_order and fit > 0, (X, Y, n_in, n_y, fit)

    start_run = cuda_device(start_run)

    if size:
        def sweep_kernel(state, model, data, runs, divergence, out, tracks):
            c, live, staged, (X, Y, n_in, n_y, fit) = start_run(model, data)
            if not (live or staged):
                return
            samples = (X, Y, n_in, n_y, numba_cuda.shared.array(STAGE, F), fit)
            all_theta = state[0]
            n_params = all_theta.shape[0]
            width = 0
            for layer in range(1, model[0].shape[0]):
                width += model[0][layer]
            theta = numba_cuda.local.array(size, F)
            buf = numba_cuda.local.array(size, F)
            grad = numba_cuda.local.array(size, F)
            acts = numba_cuda.local.array(size, F)
            deltas = numba_cuda.local.array(size, F)
            for k in range(n_params):
                theta[k] = all_theta[k, c]
                buf[k] = 0.0
            state = (theta[:n_params], buf[:n_params], grad[:n_params], (acts[:width], deltas[:width]))
            train_run(c, live, staged, state, model, samples, data[2:6], runs, divergence, out, tracks)
            if live:
                for k in range(n_params):
                    all_theta[k, c] = theta[k]
    else:
        def sweep_kernel(state, model, data, runs, divergence, out, tracks):
            c, live, staged, (X, Y, n_in, n_y, fit) = start_run(model, data)
            if not (live or staged):
                return
            samples = (X, Y, n_in, n_y, numba_cuda.shared.array(STAGE, F), fit)
            theta, buf, grad, acts, deltas = state
            train_run(c, live, staged, (theta[:, c], buf[:, c], grad[:, c], (acts[:, c], deltas[:, c])), model,
                      samples, data[2:6], runs, divergence, out, tracks)

    return cuda_kernel(sweep_kernel, dtype, None if min_blocks is None else (THREADS, min_blocks))
