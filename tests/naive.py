"""Plain-NumPy reference implementations, written independently of gdsim's kernels.

Whole-batch matrix algebra (``A @ W.T + b``), the way a textbook writes an MLP, as the
reference answers for the Numba kernels (the stumpy ``naive.py`` pattern).

Model options: ``bias=False`` (no bias vectors in ``theta``), ``parameterization="ntk"``
(``(A @ W.T) / sqrt(fan_in) + b``), reductions ``half_mean`` / ``half_sum`` (half of
``mean`` / ``sum``).
"""

import numpy as np

ACT = {
    "identity": (lambda z: z, lambda a: np.ones_like(a)),
    "relu": (lambda z: np.maximum(z, 0.0), lambda a: (a > 0).astype(float)),
    "tanh": (np.tanh, lambda a: 1.0 - a**2),
    "sigmoid": (lambda z: 1.0 / (1.0 + np.exp(-z)), lambda a: a * (1.0 - a)),
}


def unpack(sizes, theta, bias=True):
    """``[(W, b), ...]`` per layer; ``b`` is zeros when there is no bias."""
    layers, k = [], 0
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        W = theta[k:k + fan_in * fan_out].reshape(fan_out, fan_in)
        k += fan_in * fan_out
        if bias:
            b = theta[k:k + fan_out]
            k += fan_out
        else:
            b = np.zeros(fan_out)
        layers.append((W, b))
    assert k == len(theta)
    return layers


def weight_factor(parameterization, fan_in):
    return 1.0 / np.sqrt(fan_in) if parameterization == "ntk" else 1.0


def forward(sizes, activation, theta, X, bias=True, parameterization="standard"):
    """Activations of every layer, input first, outputs last."""
    act, _ = ACT[activation]
    layers = unpack(sizes, theta, bias)
    acts = [X]
    for i, (W, b) in enumerate(layers):
        z = (acts[-1] @ W.T) * weight_factor(parameterization, W.shape[1]) + b
        acts.append(act(z) if i < len(layers) - 1 else z)
    return acts


def loss_and_output_grad(loss, reduction, out, Y):
    """Reduced loss and d(loss)/d(out) for a batch."""
    n = out.shape[0]
    if loss == "mse":
        r = out - Y
        norm = r.size if reduction in ("mean", "half_mean") else 1.0
        half = 0.5 if reduction.startswith("half_") else 1.0
        return half * np.sum(r**2) / norm, half * 2.0 * r / norm
    m = out.max(axis=1, keepdims=True)
    logp = out - m - np.log(np.exp(out - m).sum(axis=1, keepdims=True))
    onehot = np.zeros_like(out)
    onehot[np.arange(n), Y] = 1.0
    norm = n if reduction == "mean" else 1.0
    return -np.sum(logp[np.arange(n), Y]) / norm, (np.exp(logp) - onehot) / norm


def loss_and_grad(sizes, activation, loss, reduction, theta, X, Y, bias=True, parameterization="standard"):
    """Reduced loss and its gradient by matrix back-propagation."""
    _, slope = ACT[activation]
    acts = forward(sizes, activation, theta, X, bias, parameterization)
    value, delta = loss_and_output_grad(loss, reduction, acts[-1], Y)
    return value, _backward(unpack(sizes, theta, bias), acts, delta, slope, bias, parameterization)


def _backward(layers, acts, delta, slope, bias, parameterization):
    """The flat gradient from the output delta, back through ``layers`` (real or complex)."""
    grads = []
    for i in range(len(layers) - 1, -1, -1):
        W, _ = layers[i]
        bias_grad = [delta.sum(axis=0)] if bias else []
        delta = delta * weight_factor(parameterization, W.shape[1])  # d z / d (A @ W.T)
        grads = [delta.T @ acts[i]] + bias_grad + grads
        if i > 0:
            delta = (delta @ W) * slope(acts[i])
    return np.concatenate([g.ravel() for g in grads])


def sgd_step(p, g, buf, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False):
    """torch.optim.SGD's single-tensor update, as in its documentation's pseudo-code."""
    g = -g if maximize else g
    if weight_decay:
        g = g + weight_decay * p
    if momentum:
        buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf
    return p - lr * g, buf


def train(sizes, activation, loss, reduction, theta, X, Y, order, batch_size, drop_last=False, bias=True,
          parameterization="standard", **hyper):
    """The training loop of the tutorials; returns (epoch_loss, step_loss, params_history)."""
    n = X.shape[0]
    epoch_loss, step_loss, history = [], [], [theta.copy()]
    buf = None
    options = dict(bias=bias, parameterization=parameterization)
    for idx in order:
        epoch_loss.append(loss_and_grad(sizes, activation, loss, reduction, theta, X, Y, **options)[0])
        for start in range(0, n, batch_size):
            rows = idx[start:start + batch_size]
            if drop_last and len(rows) < batch_size:
                break
            value, g = loss_and_grad(sizes, activation, loss, reduction, theta, X[rows], Y[rows], **options)
            step_loss.append(value)
            theta, buf = sgd_step(theta, g, buf, **hyper)
            history.append(theta.copy())
    epoch_loss.append(loss_and_grad(sizes, activation, loss, reduction, theta, X, Y, **options)[0])
    return np.array(epoch_loss), np.array(step_loss), np.array(history)


# ---------------------------------------------------------------------------------------
# Hessians: complex-step differentiation of the back-propagation above, and Linear's closed form
# ---------------------------------------------------------------------------------------
#: The activations written so that they also take complex arguments: each is analytic
#: where it is smooth, ReLU's pieces chosen by the real part (second derivative 0).
COMPLEX_ACT = {
    "identity": (lambda z: z, lambda a: np.ones_like(a)),
    "relu": (lambda z: np.where(z.real > 0, z, 0.0), lambda a: (a.real > 0).astype(float)),
    "tanh": (np.tanh, lambda a: 1.0 - a**2),
    "sigmoid": (lambda z: 1.0 / (1.0 + np.exp(-z)), lambda a: a * (1.0 - a)),
}


def _complex_grad(sizes, activation, loss, reduction, theta, X, Y, bias=True, parameterization="standard"):
    """The gradient of :func:`loss_and_grad`, in arithmetic that works on complex ``theta``."""
    act, slope = COMPLEX_ACT[activation]
    layers = unpack(sizes, theta, bias)  # b = 0 (real) without bias: adds nothing
    acts = [X.astype(theta.dtype)]
    for i, (W, b) in enumerate(layers):
        z = (acts[-1] @ W.T) * weight_factor(parameterization, W.shape[1]) + b
        acts.append(act(z) if i < len(layers) - 1 else z)
    out, n = acts[-1], X.shape[0]
    if loss == "mse":
        half = 0.5 if reduction in ("half_mean", "half_sum") else 1.0
        delta = half * 2.0 * (out - Y) / (out.size if reduction in ("mean", "half_mean") else 1.0)
    else:  # softmax minus one-hot; the shift by the real max cancels exactly
        e = np.exp(out - out.real.max(axis=1, keepdims=True))
        onehot = np.zeros(out.shape)
        onehot[np.arange(n), Y] = 1.0
        delta = (e / e.sum(axis=1, keepdims=True) - onehot) / (n if reduction == "mean" else 1.0)
    return _backward(layers, acts, delta, slope, bias, parameterization)


def hessian(sizes, activation, loss, reduction, theta, X, Y, h=1e-30, bias=True, parameterization="standard"):
    """Dense Hessian of the reduced loss, column ``j`` = ``Im grad(theta + i h e_j) / h``.

    Complex-step differentiation has no subtraction, so no cancellation: with ``h`` this
    small it is exact to rounding (the ``O(h^2)`` truncation is far below 1e-16).
    """
    P = theta.size
    H = np.empty((P, P))
    for j in range(P):
        t = theta.astype(complex)
        t[j] += 1j * h
        H[:, j] = _complex_grad(sizes, activation, loss, reduction, t, X, Y, bias, parameterization).imag / h
    return H


def linear_hessian(loss, reduction, theta, X, Y, bias=True, parameterization="standard"):
    """Closed-form Hessian of ``Linear(n_in, n_out)`` in torch's order (``W`` row-major, then ``b``).

    With ``a = (c x, 1)`` (``a = c x`` without bias; ``c = 1/sqrt(n_in)`` under NTK, else 1),
    output ``k`` owns ``W[k, :]`` and ``b[k]``; the block of outputs ``k, l`` is
    ``sum_i C_kl(i) a_i a_i^T`` with ``C = 2 f I / norm`` (MSE, ``f = 1/2`` for the half
    reductions) or ``(diag p_i - p_i p_i^T) / norm`` (cross-entropy, softmax ``p_i``).
    """
    n, n_in = X.shape
    n_out = theta.size // (n_in + 1 if bias else n_in)
    W = theta[:n_in * n_out].reshape(n_out, n_in)
    b = theta[n_in * n_out:] if bias else np.zeros(n_out)
    cX = X * weight_factor(parameterization, n_in)
    A = np.hstack([cX, np.ones((n, 1))]) if bias else cX
    mean = reduction in ("mean", "half_mean")
    if loss == "mse":
        half = 0.5 if reduction in ("half_mean", "half_sum") else 1.0
        C = np.broadcast_to(2.0 * half * np.eye(n_out), (n, n_out, n_out)) / (n * n_out if mean else 1.0)
    else:
        z = cX @ W.T + b
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        C = (np.einsum("ik,kl->ikl", p, np.eye(n_out)) - np.einsum("ik,il->ikl", p, p)) / (n if mean else 1.0)
    blocks = np.einsum("ikl,ia,ib->kalb", C, A, A)  # [out k, a-index, out l, b-index]
    # torch's order: index (k, a) -> k * n_in + a for a < n_in (weights), n_in * n_out + k for the bias
    width = A.shape[1]
    order = np.empty((n_out, width), dtype=int)
    order[:, :n_in] = np.arange(n_out * n_in).reshape(n_out, n_in)
    if bias:
        order[:, n_in] = n_in * n_out + np.arange(n_out)
    P = n_out * width
    H = np.empty((P, P))
    H[np.ix_(order.ravel(), order.ravel())] = blocks.reshape(P, P)
    return H
