"""Hand-written single-purpose kernels for W2 and W3: the in-repo "limit" rows of ``bench.py``.

Each kernel computes exactly what ``gdsim.sweep(..., divergence=None)`` computes for one
workload, and nothing else: the final parameters, the full-data loss before each epoch
and after the last, and the ``diverged`` flag (a batch loss before its update, or a
full-data loss, non-finite or above ``factor`` times the run's initial loss).

- :func:`line_sweep`: W2, ``Linear(1, 1)``, MSE mean, batch size 1 (``y = w x + b``).
- :func:`mlp_sweep`: W3, ``MLP((10, 5, 1), "relu")``, MSE mean, any even batch size
  dividing ``n``.

SGD is ``torch.optim.SGD``'s with ``dampening=0``: ``buf = momentum * buf + g`` (the
first step ``buf = g``: the buffer starts at 0, and ``momentum * 0 + g`` is ``g``),
``p -= lr * buf``. Samples are taken in ``orders[epoch]`` (what
``gdsim.batches.batch_orders`` gives; data order for the benchmark).

Techniques, those of the hand-tuned kernels the project's issue measured:

- *Struct of arrays*: ``LINE_BLOCK`` or ``MLP_BLOCK`` runs per block, every per-run quantity a row of one flat
  scratch array ``s`` of the block, element ``s[row * block + c]`` for run ``c``, so the
  innermost loop runs over the runs with unit stride and vectorises.
- *No run-time alias checks*: all the loads and stores of the vectorised loops go to that
  one array at offsets that are compile-time multiples of the block size (the data, read-only,
  is loaded into scalars before the loop), so LLVM proves them independent; with a
  separate array per quantity it must test at run time that they do not overlap.
- *Several samples per pass over the state*: one pass over a block's runs applies
  ``LINE_SAMPLES`` samples (W2) or two samples (W3) with the state in registers between
  them, so each parameter, buffer and gradient is loaded and stored once per pass rather
  than once per sample.
- *Fixed shapes*: the model's loops are written out (no layer loops, no scratch arrays
  for activations: they stay in registers).

Floating point: the kernels use gdsim's policy (``gdsim._jit.FASTMATH``: only
``contract``, i.e. fused multiply-adds; ``error_model="numpy"``), and every sum runs in
gdsim's order (the inputs in order, the samples in order), with products rounded where
gdsim rounds them (``0.0 + a * b`` and the run-time ``mean_outputs`` factor keep LLVM
from fusing a product into a different sum). So they agree with ``gdsim.sweep`` to the
last bit or so (``tests/test_bench_limits.py``); ``fastmath=True`` would reassociate the
sums and delete the NaN checks the ``diverged`` flag needs.
"""

import numpy as np
from numba import njit, prange

#: gdsim's compile options (gdsim/_jit.py), for a like-for-like comparison.
OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy", "fastmath": {"contract"}}
#: Runs per block (multiples of the vector width), the fastest of 16, 32, 64 and 128 on
#: the 2-core development VM: W2 128 (32 took 0.96-1.04x as long), W3 32. W3 with 128 runs
#: a block took 1.94x as long (timed alternately in one process): a block's parameters,
#: buffers and gradients (183 rows, 187 KB) then no longer fit in the 48 KB L1 cache; at 32
#: runs they take 47 KB.
LINE_BLOCK = 128
MLP_BLOCK = 32
#: W2: samples per pass over a block's runs (the parameters are stored once per pass). Two
#: took 0.78-0.86x the time of four, one 0.96-1.04x (timed alternately in one process).
LINE_SAMPLES = 2
#: Divergence factor of ``gdsim.sweep(divergence=None)``.
FACTOR = 1e6
#: A threshold that only non-finite losses pass (``not (v <= BIG)``), for an initial loss <= 0.
BIG = np.finfo(np.float64).max


def _threshold(initial, factor):
    """``factor * initial`` (a loss ``v`` marks divergence when ``not v <= threshold``,
    which is also true for NaN and inf), ``BIG`` when ``initial`` is not positive."""
    return factor * initial if initial > 0.0 else BIG


_threshold = njit(inline="always", **OPTIONS)(_threshold)


# ---------------------------------------------------------------------------------------
# W2: y = w x + b, per-sample SGD
# ---------------------------------------------------------------------------------------
# Rows of a block's scratch array.
L_W, L_B, L_BW, L_BB, L_LR, L_M, L_THR, L_BAD, L_TOT = range(9)


@njit(inline="always", **OPTIONS)
def _line_step(w, b, bw, bb, lr, m, thr, bad, x, y):
    """One SGD step on the sample ``(x, y)``: gdsim's operations (cpu_line._sample_step)."""
    z = 0.0 + w * x  # the product rounded before the bias is added, as in gdsim
    r = (z + b) - y
    bad = 1.0 if not (r * r <= thr) else bad  # the step's loss, before the update
    d = 2.0 * r
    bw = m * bw + (0.0 + d * x)
    bb = m * bb + d
    return w - lr * bw, b - lr * bb, bw, bb, bad


@njit(inline="always", **OPTIONS)
def _line_residual(s, c, x, y):
    """The residual of run ``c`` on the sample ``(x, y)``."""
    return ((0.0 + s[L_W * LINE_BLOCK + c] * x) + s[L_B * LINE_BLOCK + c]) - y


@njit(parallel=True, **OPTIONS)
def _line_kernel(X, Y, orders, lr, momentum, params0, factor, params, loss, bad):
    """W2's runs, ``LINE_BLOCK`` per block, blocks in parallel (arguments: :func:`line_sweep`;
    ``lr.shape[0]`` a multiple of ``LINE_BLOCK``; outputs ``params``, ``loss``, ``bad`` filled)."""
    n = X.shape[0]
    epochs = orders.shape[0]
    # 1.0 at run time (1 / n_out), as in gdsim: it keeps each square rounded before it is
    # summed (a constant 1.0 would let LLVM fuse the square into the sum).
    own_scale = 1.0 / Y.shape[1]
    for k in prange(lr.shape[0] // LINE_BLOCK):
        first = k * LINE_BLOCK
        s = np.empty(9 * LINE_BLOCK)
        for c in range(LINE_BLOCK):
            s[L_W * LINE_BLOCK + c] = params0[0]
            s[L_B * LINE_BLOCK + c] = params0[1]
            s[L_BW * LINE_BLOCK + c] = 0.0
            s[L_BB * LINE_BLOCK + c] = 0.0
            s[L_LR * LINE_BLOCK + c] = lr[first + c]
            s[L_M * LINE_BLOCK + c] = momentum[first + c]
            s[L_BAD * LINE_BLOCK + c] = 0.0
        for e in range(epochs + 1):
            # Full-data loss, four samples per pass, summed in data order.
            for c in range(LINE_BLOCK):
                s[L_TOT * LINE_BLOCK + c] = 0.0
            for j in range(0, n, 4):
                x0, y0 = X[j, 0], Y[j, 0]
                x1, y1 = X[j + 1, 0], Y[j + 1, 0]
                x2, y2 = X[j + 2, 0], Y[j + 2, 0]
                x3, y3 = X[j + 3, 0], Y[j + 3, 0]
                for c in range(LINE_BLOCK):
                    r0 = _line_residual(s, c, x0, y0)
                    r1 = _line_residual(s, c, x1, y1)
                    r2 = _line_residual(s, c, x2, y2)
                    r3 = _line_residual(s, c, x3, y3)
                    t = s[L_TOT * LINE_BLOCK + c]
                    t += own_scale * (r0 * r0)
                    t += own_scale * (r1 * r1)
                    t += own_scale * (r2 * r2)
                    t += own_scale * (r3 * r3)
                    s[L_TOT * LINE_BLOCK + c] = t
            for c in range(LINE_BLOCK):
                value = s[L_TOT * LINE_BLOCK + c] / n
                loss[first + c, e] = value
                if e == 0:
                    s[L_THR * LINE_BLOCK + c] = _threshold(value, factor)
                if not (value <= s[L_THR * LINE_BLOCK + c]):
                    s[L_BAD * LINE_BLOCK + c] = 1.0
            if e == epochs:
                break
            order = orders[e]
            for j in range(0, n, LINE_SAMPLES):
                xs = (X[order[j], 0], X[order[j + 1], 0])
                ys = (Y[order[j], 0], Y[order[j + 1], 0])
                for c in range(LINE_BLOCK):
                    w = s[L_W * LINE_BLOCK + c]
                    b = s[L_B * LINE_BLOCK + c]
                    bw = s[L_BW * LINE_BLOCK + c]
                    bb = s[L_BB * LINE_BLOCK + c]
                    rate = s[L_LR * LINE_BLOCK + c]
                    m = s[L_M * LINE_BLOCK + c]
                    thr = s[L_THR * LINE_BLOCK + c]
                    flag = s[L_BAD * LINE_BLOCK + c]
                    w, b, bw, bb, flag = _line_step(w, b, bw, bb, rate, m, thr, flag, xs[0], ys[0])
                    w, b, bw, bb, flag = _line_step(w, b, bw, bb, rate, m, thr, flag, xs[1], ys[1])
                    s[L_W * LINE_BLOCK + c] = w
                    s[L_B * LINE_BLOCK + c] = b
                    s[L_BW * LINE_BLOCK + c] = bw
                    s[L_BB * LINE_BLOCK + c] = bb
                    s[L_BAD * LINE_BLOCK + c] = flag
        for c in range(LINE_BLOCK):
            params[first + c, 0] = s[L_W * LINE_BLOCK + c]
            params[first + c, 1] = s[L_B * LINE_BLOCK + c]
            bad[first + c] = s[L_BAD * LINE_BLOCK + c] != 0.0


# ---------------------------------------------------------------------------------------
# W3: MLP((10, 5, 1), "relu"), MSE mean, mini-batches
# ---------------------------------------------------------------------------------------
N_IN, N_HIDDEN = 10, 5
#: Rows of the parameters in torch's order: W1 [5, 10], b1 [5], W2 [1, 5], b2 [1].
M_W1, M_B1, M_W2, M_B2 = 0, 50, 55, 60
N_PARAMS = 61
#: Rows of a block's scratch array: parameters, momentum buffers, gradients, then per run
#: lr, momentum, threshold, diverged flag and the running loss sum.
M_BUF, M_GRAD = N_PARAMS, 2 * N_PARAMS
M_LR, M_M, M_THR, M_BAD, M_TOT = range(3 * N_PARAMS, 3 * N_PARAMS + 5)
M_ROWS = 3 * N_PARAMS + 5


@njit(inline="always", **OPTIONS)
def _hidden(s, o, c, x):
    """ReLU of hidden unit ``o`` of run ``c`` on inputs ``x`` (a 10-tuple): the weighted
    sum over the inputs in order, then the bias, as in gdsim."""
    w = (M_W1 + o * N_IN) * MLP_BLOCK + c
    z = 0.0 + s[w] * x[0]
    z += s[w + MLP_BLOCK] * x[1]
    z += s[w + 2 * MLP_BLOCK] * x[2]
    z += s[w + 3 * MLP_BLOCK] * x[3]
    z += s[w + 4 * MLP_BLOCK] * x[4]
    z += s[w + 5 * MLP_BLOCK] * x[5]
    z += s[w + 6 * MLP_BLOCK] * x[6]
    z += s[w + 7 * MLP_BLOCK] * x[7]
    z += s[w + 8 * MLP_BLOCK] * x[8]
    z += s[w + 9 * MLP_BLOCK] * x[9]
    z = z + s[(M_B1 + o) * MLP_BLOCK + c]
    return 0.0 if z <= 0.0 else z  # torch.relu: NaN passes through


@njit(inline="always", **OPTIONS)
def _forward(s, c, x):
    """Hidden activations and output of run ``c`` on inputs ``x``: ``(h0, ..., h4, out)``."""
    h0 = _hidden(s, 0, c, x)
    h1 = _hidden(s, 1, c, x)
    h2 = _hidden(s, 2, c, x)
    h3 = _hidden(s, 3, c, x)
    h4 = _hidden(s, 4, c, x)
    w = M_W2 * MLP_BLOCK + c
    out = 0.0 + s[w] * h0
    out += s[w + MLP_BLOCK] * h1
    out += s[w + 2 * MLP_BLOCK] * h2
    out += s[w + 3 * MLP_BLOCK] * h3
    out += s[w + 4 * MLP_BLOCK] * h4
    return h0, h1, h2, h3, h4, out + s[M_B2 * MLP_BLOCK + c]


@njit(inline="always", **OPTIONS)
def _add2(s, row, c, ta, tb):
    """Add two samples' terms to gradient ``row`` of run ``c``, in sample order: one load
    and one store for two terms."""
    i = (M_GRAD + row) * MLP_BLOCK + c
    s[i] = (s[i] + ta) + tb


@njit(inline="always", **OPTIONS)
def _add2_row(s, o, c, da, db, xa, xb):
    """Add two samples' gradients of the weights of hidden unit ``o`` (deltas ``da``,
    ``db``, inputs ``xa``, ``xb``) to run ``c``'s gradient."""
    i = (M_GRAD + M_W1 + o * N_IN) * MLP_BLOCK + c
    s[i] = (s[i] + da * xa[0]) + db * xb[0]
    s[i + MLP_BLOCK] = (s[i + MLP_BLOCK] + da * xa[1]) + db * xb[1]
    s[i + 2 * MLP_BLOCK] = (s[i + 2 * MLP_BLOCK] + da * xa[2]) + db * xb[2]
    s[i + 3 * MLP_BLOCK] = (s[i + 3 * MLP_BLOCK] + da * xa[3]) + db * xb[3]
    s[i + 4 * MLP_BLOCK] = (s[i + 4 * MLP_BLOCK] + da * xa[4]) + db * xb[4]
    s[i + 5 * MLP_BLOCK] = (s[i + 5 * MLP_BLOCK] + da * xa[5]) + db * xb[5]
    s[i + 6 * MLP_BLOCK] = (s[i + 6 * MLP_BLOCK] + da * xa[6]) + db * xb[6]
    s[i + 7 * MLP_BLOCK] = (s[i + 7 * MLP_BLOCK] + da * xa[7]) + db * xb[7]
    s[i + 8 * MLP_BLOCK] = (s[i + 8 * MLP_BLOCK] + da * xa[8]) + db * xb[8]
    s[i + 9 * MLP_BLOCK] = (s[i + 9 * MLP_BLOCK] + da * xa[9]) + db * xb[9]


@njit(inline="always", **OPTIONS)
def _delta(s, o, c, d, h):
    """Delta of hidden unit ``o`` from the output delta ``d``: ``W2[o] d`` (rounded, as
    gdsim's ``0.0 +`` sum of one term) times ReLU's slope at its output ``h``."""
    return (0.0 + s[(M_W2 + o) * MLP_BLOCK + c] * d) * (0.0 if h <= 0.0 else 1.0)


@njit(inline="always", **OPTIONS)
def _hidden_grad(s, o, c, da, db, ha, hb, xa, xb):
    """Two samples' gradients through hidden unit ``o`` (output deltas ``da``, ``db``;
    its activations ``ha``, ``hb``): its output weight, its bias and its input weights."""
    _add2(s, M_W2 + o, c, da * ha, db * hb)
    dha = _delta(s, o, c, da, ha)
    dhb = _delta(s, o, c, db, hb)
    _add2(s, M_B1 + o, c, dha, dhb)
    _add2_row(s, o, c, dha, dhb, xa, xb)


@njit(inline="always", **OPTIONS)
def _inputs(X, r):
    """Row ``r`` of ``X`` as a 10-tuple (scalars loaded before the loop over the runs)."""
    return (X[r, 0], X[r, 1], X[r, 2], X[r, 3], X[r, 4], X[r, 5], X[r, 6], X[r, 7], X[r, 8], X[r, 9])


@njit(inline="always", **OPTIONS)
def _loss_pass(s, X, Y, ra, rb, mean_outputs):
    """Add the own losses of samples ``ra``, ``rb`` to every run's running sum."""
    xa = _inputs(X, ra)
    xb = _inputs(X, rb)
    ya, yb = Y[ra, 0], Y[rb, 0]
    for c in range(MLP_BLOCK):
        ea = _forward(s, c, xa)[5] - ya
        eb = _forward(s, c, xb)[5] - yb
        t = s[M_TOT * MLP_BLOCK + c]
        t += mean_outputs * (ea * ea)
        t += mean_outputs * (eb * eb)
        s[M_TOT * MLP_BLOCK + c] = t


@njit(inline="always", **OPTIONS)
def _grad_pass(s, X, Y, ra, rb, mean_outputs, d_scale):
    """Forward and backward of samples ``ra``, ``rb`` for every run of the block: their
    losses added to the running sums, their gradients to the gradients."""
    xa = _inputs(X, ra)
    xb = _inputs(X, rb)
    ya, yb = Y[ra, 0], Y[rb, 0]
    for c in range(MLP_BLOCK):
        ha = _forward(s, c, xa)
        hb = _forward(s, c, xb)
        ea = ha[5] - ya
        eb = hb[5] - yb
        t = s[M_TOT * MLP_BLOCK + c]
        t += mean_outputs * (ea * ea)
        t += mean_outputs * (eb * eb)
        s[M_TOT * MLP_BLOCK + c] = t
        da = d_scale * ea  # gdsim: scale * 2 * mean_outputs * residual
        db = d_scale * eb
        _add2(s, M_B2, c, da, db)
        # Written out (no loop over the hidden units), so that the loop over c is innermost.
        _hidden_grad(s, 0, c, da, db, ha[0], hb[0], xa, xb)
        _hidden_grad(s, 1, c, da, db, ha[1], hb[1], xa, xb)
        _hidden_grad(s, 2, c, da, db, ha[2], hb[2], xa, xb)
        _hidden_grad(s, 3, c, da, db, ha[3], hb[3], xa, xb)
        _hidden_grad(s, 4, c, da, db, ha[4], hb[4], xa, xb)


@njit(parallel=True, **OPTIONS)
def _mlp_kernel(X, Y, orders, batch_size, lr, momentum, params0, factor, params, loss, bad):
    """W3's runs, ``MLP_BLOCK`` per block, blocks in parallel (arguments: :func:`mlp_sweep`;
    ``lr.shape[0]`` a multiple of ``MLP_BLOCK``; outputs ``params``, ``loss``, ``bad`` filled).
    Each batch: passes of two samples (losses and gradients summed in sample order), the
    batch loss checked, then one pass per parameter row for the update."""
    n = X.shape[0]
    epochs = orders.shape[0]
    mean_outputs = 1.0 / Y.shape[1]  # 1.0 at run time, as in gdsim (see _line_kernel)
    d_scale = 1.0 / batch_size * 2.0 * mean_outputs
    for k in prange(lr.shape[0] // MLP_BLOCK):
        first = k * MLP_BLOCK
        s = np.zeros(M_ROWS * MLP_BLOCK)  # buffers and gradients start at 0
        for c in range(MLP_BLOCK):
            for p in range(N_PARAMS):
                s[p * MLP_BLOCK + c] = params0[p]
            s[M_LR * MLP_BLOCK + c] = lr[first + c]
            s[M_M * MLP_BLOCK + c] = momentum[first + c]
        for e in range(epochs + 1):
            for c in range(MLP_BLOCK):
                s[M_TOT * MLP_BLOCK + c] = 0.0
            for j in range(0, n, 2):
                _loss_pass(s, X, Y, j, j + 1, mean_outputs)  # data order
            for c in range(MLP_BLOCK):
                value = s[M_TOT * MLP_BLOCK + c] / n
                loss[first + c, e] = value
                if e == 0:
                    s[M_THR * MLP_BLOCK + c] = _threshold(value, factor)
                if not (value <= s[M_THR * MLP_BLOCK + c]):
                    s[M_BAD * MLP_BLOCK + c] = 1.0
                s[M_TOT * MLP_BLOCK + c] = 0.0
            if e == epochs:
                break
            order = orders[e]
            for start in range(0, n, batch_size):
                for j in range(start, start + batch_size, 2):
                    _grad_pass(s, X, Y, order[j], order[j + 1], mean_outputs, d_scale)
                for c in range(MLP_BLOCK):  # the batch's loss, before the update
                    if not (s[M_TOT * MLP_BLOCK + c] / batch_size <= s[M_THR * MLP_BLOCK + c]):
                        s[M_BAD * MLP_BLOCK + c] = 1.0
                    s[M_TOT * MLP_BLOCK + c] = 0.0
                for p in range(N_PARAMS):
                    for c in range(MLP_BLOCK):
                        g = s[(M_GRAD + p) * MLP_BLOCK + c]
                        buf = s[M_M * MLP_BLOCK + c] * s[(M_BUF + p) * MLP_BLOCK + c] + g
                        s[(M_BUF + p) * MLP_BLOCK + c] = buf
                        s[p * MLP_BLOCK + c] = s[p * MLP_BLOCK + c] - s[M_LR * MLP_BLOCK + c] * buf
                        s[(M_GRAD + p) * MLP_BLOCK + c] = 0.0
        for c in range(MLP_BLOCK):
            for p in range(N_PARAMS):
                params[first + c, p] = s[p * MLP_BLOCK + c]
            bad[first + c] = s[M_BAD * MLP_BLOCK + c] != 0.0


# ---------------------------------------------------------------------------------------
# Python entry points
# ---------------------------------------------------------------------------------------
def _padded(values, n_runs, block):
    """``values`` (float64) padded to a multiple of ``block`` runs with copies of the last."""
    values = np.asarray(values, dtype=np.float64)
    return np.concatenate([values, np.full(-n_runs % block, values[-1])])


def _sweep(kernel, block, n_params, X, Y, orders, lr, momentum, params0, factor, *extra):
    """Pad the runs to whole blocks, call ``kernel``, return the real runs' results."""
    lr = np.asarray(lr, dtype=np.float64)
    n_runs = lr.shape[0]
    lr_p, m_p = _padded(lr, n_runs, block), _padded(momentum, n_runs, block)
    epochs = orders.shape[0]
    params = np.empty((lr_p.shape[0], n_params))
    loss = np.empty((lr_p.shape[0], epochs + 1))
    bad = np.empty(lr_p.shape[0], dtype=np.bool_)
    kernel(np.ascontiguousarray(X, dtype=np.float64), np.ascontiguousarray(Y, dtype=np.float64),
           np.ascontiguousarray(orders, dtype=np.int64), *extra, lr_p, m_p,
           np.ascontiguousarray(params0, dtype=np.float64), float(factor), params, loss, bad)
    return params[:n_runs], loss[:n_runs], bad[:n_runs]


def line_sweep(X, Y, lr, momentum, params0, orders, factor=FACTOR):
    """W2's sweep: ``Linear(1, 1)``, MSE mean, per-sample SGD (batch size 1).

    Parameters
    ----------
    X, Y : numpy.ndarray, float64 (n, 1)
        ``n`` a multiple of 4 (the loss takes four samples per pass, a step two).
    lr, momentum : numpy.ndarray, float64 (C,)
        One entry per run.
    params0 : array_like (2,)
        ``(w, b)`` of every run at the start.
    orders : numpy.ndarray, int64 (epochs, n)
        Sample order of each epoch (``gdsim.batches.batch_orders``).
    factor : float, default 1e6
        Divergence factor (``gdsim.sweep(divergence=None)``'s).

    Returns
    -------
    params : numpy.ndarray (C, 2)
    loss : numpy.ndarray (C, epochs + 1)
        Full-data loss before each epoch and after the last.
    diverged : numpy.ndarray of bool (C,)
    """
    if X.shape[1:] != (1,) or Y.shape[1:] != (1,) or X.shape[0] % 4:
        raise ValueError("line_sweep: X, Y of shape (n, 1) with n a multiple of 4")
    return _sweep(_line_kernel, LINE_BLOCK, 2, X, Y, orders, lr, momentum, params0, factor)


def mlp_sweep(X, Y, lr, momentum, params0, orders, batch_size, factor=FACTOR):
    """W3's sweep: ``MLP((10, 5, 1), "relu")``, MSE mean, mini-batch SGD.

    Parameters
    ----------
    X : numpy.ndarray, float64 (n, 10)
    Y : numpy.ndarray, float64 (n, 1)
    lr, momentum : numpy.ndarray, float64 (C,)
    params0 : array_like (61,)
        Initial parameters in torch's order.
    orders : numpy.ndarray, int64 (epochs, n)
    batch_size : int
        Even, dividing ``n`` (two samples per pass, no short last batch).
    factor : float, default 1e6

    Returns
    -------
    params : numpy.ndarray (C, 61)
    loss : numpy.ndarray (C, epochs + 1)
    diverged : numpy.ndarray of bool (C,)
    """
    if X.shape[1:] != (N_IN,) or Y.shape[1:] != (1,) or batch_size % 2 or X.shape[0] % batch_size:
        raise ValueError("mlp_sweep: X (n, 10), Y (n, 1), an even batch size dividing n")
    return _sweep(_mlp_kernel, MLP_BLOCK, N_PARAMS, X, Y, orders, lr, momentum, params0, factor, int(batch_size))
