"""Peer implementations of the benchmark workloads, written the way their users would.

Every peer trains fully connected MSE networks (``nn.Sequential(Linear, ReLU, ..., Linear)``,
or one ``nn.Linear``) with ``torch.optim.SGD`` semantics in float64 and returns the same
:class:`Trajectories` as the gdsim runs, so that ``bench.py`` can check that they agree
before it compares their speed:

- :func:`torch_loop`: one model at a time, ``nn.Sequential`` + ``torch.optim.SGD`` +
  ``nn.MSELoss`` and a Python loop over epochs and batches (the tutorials' code).
- :func:`torch_vectorised`: all configurations at once, parameters with a leading config
  dimension (``W [C, out, in]``), batched matmuls and the SGD update written in tensor
  ops with per-config learning-rate and momentum tensors.
- :class:`JaxRunner`: ``jax.jit(jax.vmap(train_one))`` with ``train_one`` a
  ``jax.lax.scan`` over epochs and batches (plain ``jax.jit(train_one)`` for one run).

Neither torch nor jax is a dependency of gdsim or of this module: each is imported on
first use (:func:`torch_available`, :func:`jax_available` tell whether it can be).

Semantics shared by every peer (``torch.optim.SGD`` with ``dampening=0``, no weight
decay, no Nesterov): ``buf = g`` on the first step, ``buf = m * buf + g`` after it,
``p -= lr * buf``; ``momentum=0`` uses ``g`` directly. The loss history holds the
full-data loss at the start of every epoch and after the last one.
"""

import dataclasses
import importlib.util

import numpy as np


# ---------------------------------------------------------------------------------------
# The problem every peer solves, and what it returns
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Problem:
    """A sweep of SGD runs over (learning rate, momentum) configurations.

    Attributes
    ----------
    sizes : tuple of int
        Layer widths ``(n_in, hidden..., n_out)``; ``(n_in, n_out)`` is ``nn.Linear``.
    activation : {"relu", "identity"}
        Activation after every hidden layer (the last layer is linear).
    reduction : {"mean", "sum"}
        Reduction of ``nn.MSELoss``.
    X : numpy.ndarray, float64 (n, n_in)
    Y : numpy.ndarray, float64 (n, n_out)
    batch_size : int
        Consecutive batches in data order (no shuffling); must divide ``n`` for JAX.
    epochs : int
    lr, momentum : numpy.ndarray, float64 (C,)
        One entry per configuration.
    layers0 : tuple of numpy.ndarray
        Initial ``(W0 [out, in], b0 [out], W1, b1, ...)``, shared by every configuration.
    """

    sizes: tuple
    activation: str
    reduction: str
    X: np.ndarray
    Y: np.ndarray
    batch_size: int
    epochs: int
    lr: np.ndarray
    momentum: np.ndarray
    layers0: tuple

    @property
    def n_configs(self):
        """Number of configurations ``C``."""
        return int(self.lr.shape[0])

    @property
    def n_batches(self):
        """Updates per epoch (the last batch may be smaller)."""
        return -(-self.X.shape[0] // self.batch_size)

    @property
    def n_steps(self):
        """Updates per configuration."""
        return self.epochs * self.n_batches

    def subset(self, index):
        """The same problem restricted to the configurations ``index`` (int array)."""
        index = np.asarray(index)
        return dataclasses.replace(self, lr=self.lr[index], momentum=self.momentum[index])


@dataclasses.dataclass
class Trajectories:
    """Outcome of ``C`` runs.

    Attributes
    ----------
    params : numpy.ndarray, float64 (C, n_params)
        Final parameters, flat in torch's order (per layer ``W`` row-major, then ``b``).
    loss : numpy.ndarray, float64 (C, epochs + 1)
        Full-data loss at the start of each epoch and after the last.
    """

    params: np.ndarray
    loss: np.ndarray


def flatten_layers(layers):
    """Join per-layer arrays with a leading config axis ``[C, ...]`` into ``(C, n_params)``."""
    return np.concatenate([np.asarray(a).reshape(a.shape[0], -1) for a in layers], axis=1)


def torch_available():
    """True if ``import torch`` can work (without importing it)."""
    return importlib.util.find_spec("torch") is not None


def jax_available():
    """True if ``import jax`` can work (without importing it)."""
    return importlib.util.find_spec("jax") is not None


def _torch(threads=2):
    import torch

    torch.set_num_threads(threads)
    return torch


def _jax():
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


# ---------------------------------------------------------------------------------------
# PyTorch, one model at a time
# ---------------------------------------------------------------------------------------
def _torch_module(problem):
    """``nn.Sequential`` of the problem's architecture in float64, holding ``layers0``."""
    torch = _torch()
    nn = torch.nn
    layers = []
    pairs = list(zip(problem.sizes[:-1], problem.sizes[1:]))
    for i, (fan_in, fan_out) in enumerate(pairs):
        layers.append(nn.Linear(fan_in, fan_out, dtype=torch.float64))
        if i < len(pairs) - 1 and problem.activation == "relu":
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers)
    with torch.no_grad():
        for p, value in zip(model.parameters(), problem.layers0):
            p.copy_(torch.from_numpy(value))
    return model


def torch_loop(problem):
    """Train every configuration in turn with ``torch.optim.SGD``, the tutorial way.

    Parameters
    ----------
    problem : Problem

    Returns
    -------
    Trajectories

    Notes
    -----
    Batches are ``X.split(batch_size)`` (a ``DataLoader`` without shuffling gives the
    same batches, only slower). The epoch loss is evaluated under ``torch.no_grad()``;
    when one batch is the whole data set (full-batch GD) the step's own loss *is* that
    loss, and is recorded instead of a second forward pass.
    """
    torch = _torch()
    X, Y = torch.from_numpy(problem.X), torch.from_numpy(problem.Y)
    batches = list(zip(X.split(problem.batch_size), Y.split(problem.batch_size)))
    full_batch = len(batches) == 1
    C = problem.n_configs
    params = np.empty((C, sum(a.size for a in problem.layers0)))
    loss = np.empty((C, problem.epochs + 1))
    for c in range(C):
        model = _torch_module(problem)
        opt = torch.optim.SGD(model.parameters(), lr=float(problem.lr[c]), momentum=float(problem.momentum[c]))
        loss_fn = torch.nn.MSELoss(reduction=problem.reduction)
        history = []
        for _ in range(problem.epochs):
            if not full_batch:
                with torch.no_grad():
                    history.append(loss_fn(model(X), Y).item())
            for xb, yb in batches:
                opt.zero_grad()
                batch_loss = loss_fn(model(xb), yb)
                if full_batch:
                    history.append(batch_loss.item())
                batch_loss.backward()
                opt.step()
        with torch.no_grad():
            history.append(loss_fn(model(X), Y).item())
        loss[c] = history
        params[c] = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy()
    return Trajectories(params=params, loss=loss)


# ---------------------------------------------------------------------------------------
# PyTorch, vectorised over configurations
# ---------------------------------------------------------------------------------------
def torch_vectorised(problem):
    """Train all configurations at once: a leading config axis on every parameter.

    ``W_l [C, out, in]``, ``b_l [C, out]``; the forward pass is ``x @ W^T + b`` with
    ``torch.matmul`` broadcasting over the config axis (``[B, in] @ [C, in, out]`` for the
    shared input batch, ``torch.baddbmm`` after it) and the backward pass is written out
    by hand (for these MLPs it is three batched matmuls per layer, cheaper than autograd's
    graph per step). The SGD update uses per-config ``lr`` and ``momentum`` tensors.

    Parameters
    ----------
    problem : Problem

    Returns
    -------
    Trajectories

    Notes
    -----
    First step: ``torch.optim.SGD`` sets ``buf = g`` (a copy); here ``buf`` is cloned from
    the first gradient too, so every later step is ``buf = m * buf + g`` exactly as in
    torch. (Starting from ``buf = 0`` would give the same numbers, since ``m * 0 + g == g``
    for finite ``m``, but not with ``dampening != 0``.) Configs with ``momentum == 0`` go
    through the same ``m * buf + g`` arithmetic: equal to torch's ``d = g`` bit for bit
    while the buffer is finite; only a run that already overflowed can differ (``0 * inf``
    is NaN), and such runs count as diverged either way.
    """
    torch = _torch()
    C = problem.n_configs
    X, Y = torch.from_numpy(problem.X), torch.from_numpy(problem.Y)
    batches = list(zip(X.split(problem.batch_size), Y.split(problem.batch_size)))
    n_layers = len(problem.sizes) - 1
    relu = problem.activation == "relu"
    mean = problem.reduction == "mean"
    Ws = [torch.from_numpy(problem.layers0[2 * i]).expand(C, -1, -1).clone() for i in range(n_layers)]
    bs = [torch.from_numpy(problem.layers0[2 * i + 1]).expand(C, -1).clone() for i in range(n_layers)]
    params = [p for pair in zip(Ws, bs) for p in pair]
    lr = torch.from_numpy(problem.lr)
    mom = torch.from_numpy(problem.momentum)
    # Per-parameter broadcast views: [C, 1, 1] for weights, [C, 1] for biases.
    lr_views = [lr.view(C, *([1] * (p.dim() - 1))) for p in params]
    mom_views = [mom.view(C, *([1] * (p.dim() - 1))) for p in params]

    def forward(x):
        """Pre-activations and activations of every layer, each [C, B, width]."""
        hs, zs = [x], []
        for i in range(n_layers):
            h = hs[-1]
            if i == 0:  # shared input batch: [B, in] @ [C, in, out] broadcasts to [C, B, out]
                z = torch.matmul(h, Ws[0].transpose(1, 2)).add_(bs[0].unsqueeze(1))
            else:
                z = torch.baddbmm(bs[i].unsqueeze(1), h, Ws[i].transpose(1, 2))
            zs.append(z)
            hs.append(torch.relu(z) if (relu and i < n_layers - 1) else z)
        return hs, zs

    def losses(x, y):
        out = forward(x)[0][-1]
        sq = (out - y).square_()
        return sq.mean(dim=(1, 2)) if mean else sq.sum(dim=(1, 2))

    def loss_grads(x, y):
        hs, zs = forward(x)
        delta = hs[-1] - y  # [C, B, n_out]
        delta.mul_(2.0 / delta[0].numel() if mean else 2.0)
        grads = [None] * (2 * n_layers)
        for i in reversed(range(n_layers)):
            h = hs[i]
            if i == 0:  # [C, out, B] @ [B, in]
                grads[0] = torch.matmul(delta.transpose(1, 2), h)
            else:
                grads[2 * i] = torch.bmm(delta.transpose(1, 2), h)
            grads[2 * i + 1] = delta.sum(dim=1)
            if i > 0:
                delta = torch.bmm(delta, Ws[i])
                if relu:
                    delta.mul_(zs[i - 1] > 0)
        return grads

    history = torch.empty((C, problem.epochs + 1), dtype=torch.float64)
    bufs = None
    for epoch in range(problem.epochs):
        history[:, epoch] = losses(X, Y)
        for xb, yb in batches:
            grads = loss_grads(xb, yb)
            if bufs is None:
                bufs = [g.clone() for g in grads]
            else:
                for buf, g, m in zip(bufs, grads, mom_views):
                    buf.mul_(m).add_(g)
            for p, buf, step in zip(params, bufs, lr_views):
                p.sub_(step * buf)
    history[:, problem.epochs] = losses(X, Y)
    return Trajectories(params=flatten_layers([p.numpy() for p in params]), loss=history.numpy())


# ---------------------------------------------------------------------------------------
# JAX
# ---------------------------------------------------------------------------------------
def _jax_train_one(problem):
    """``train_one(lr, momentum, layers0, X, Y) -> (layers, loss_history)`` for one config."""
    jax = _jax()
    jnp = jax.numpy
    n_layers = len(problem.sizes) - 1
    relu = problem.activation == "relu"
    mean = problem.reduction == "mean"
    n, bsz, epochs = problem.X.shape[0], problem.batch_size, problem.epochs
    if n % bsz:
        raise ValueError(f"the JAX peer needs batch_size to divide n (lax.scan over equal batches), got n={n}, "
                         f"batch_size={bsz}")
    n_batches = n // bsz

    def predict(layers, x):
        h = x
        for i in range(n_layers):
            h = h @ layers[2 * i].T + layers[2 * i + 1]
            if relu and i < n_layers - 1:
                h = jax.nn.relu(h)  # gradient 0 at 0, like torch (jnp.maximum would give 0.5)
        return h

    def loss_fn(layers, x, y):
        sq = jnp.square(predict(layers, x) - y)
        return jnp.mean(sq) if mean else jnp.sum(sq)

    value_and_grad = jax.value_and_grad(loss_fn)

    def train_one(lr, momentum, layers0, X, Y):
        Xb = X.reshape(n_batches, bsz, X.shape[1])
        Yb = Y.reshape(n_batches, bsz, Y.shape[1])

        def sgd_step(carry, batch):
            layers, buf = carry
            value, g = value_and_grad(layers, *batch)
            # torch sets buf = g on the first step; from buf = 0 (as optax's trace does),
            # m * 0 + g == g exactly, so the same rule serves every step (dampening = 0).
            buf = jax.tree.map(lambda b, gi: momentum * b + gi, buf, g)
            layers = jax.tree.map(lambda p, b: p - lr * b, layers, buf)
            return (layers, buf), value

        def epoch(carry, _):
            start_loss = loss_fn(carry[0], X, Y) if n_batches > 1 else None
            carry, step_losses = jax.lax.scan(sgd_step, carry, (Xb, Yb))
            # full batch: the step's own loss is the loss at the start of the epoch
            return carry, (step_losses[0] if n_batches == 1 else start_loss)

        zeros = jax.tree.map(jnp.zeros_like, layers0)
        (layers, _), history = jax.lax.scan(epoch, (layers0, zeros), None, length=epochs)
        history = jnp.append(history, loss_fn(layers, X, Y))
        return layers, history

    return train_one


class JaxRunner:
    """A compiled JAX training function for a :class:`Problem` and its arguments.

    ``jax.jit(jax.vmap(train_one, in_axes=(0, 0, None, None, None)))`` over the configs,
    or ``jax.jit(train_one)`` when ``vmap=False`` (one config). Calling the runner
    (:meth:`__call__`) compiles on the first call; :meth:`compile` compiles ahead of
    time without running (used to keep compilation out of memory measurements).

    Parameters
    ----------
    problem : Problem
    vmap : bool, default True
    """

    def __init__(self, problem, vmap=True):
        jax = _jax()
        jnp = jax.numpy
        self.problem = problem
        self.vmap = vmap
        train_one = _jax_train_one(problem)
        if vmap:
            self.fn = jax.jit(jax.vmap(train_one, in_axes=(0, 0, None, None, None)))
            lr, mom = jnp.asarray(problem.lr), jnp.asarray(problem.momentum)
        else:
            if problem.n_configs != 1:
                raise ValueError("vmap=False runs exactly one configuration")
            self.fn = jax.jit(train_one)
            lr, mom = jnp.asarray(problem.lr[0]), jnp.asarray(problem.momentum[0])
        layers0 = tuple(jnp.asarray(a) for a in problem.layers0)
        self.args = (lr, mom, layers0, jnp.asarray(problem.X), jnp.asarray(problem.Y))
        self._compiled = None

    def compile(self):
        """Compile ahead of time (``lower(...).compile()``) without running."""
        self._compiled = self.fn.lower(*self.args).compile()
        return self

    def __call__(self):
        """Run (compiling first if needed) and return :class:`Trajectories`."""
        fn = self._compiled if self._compiled is not None else self.fn
        layers, history = fn(*self.args)
        history = np.asarray(history.block_until_ready())
        layers = [np.asarray(a) for a in layers]
        if not self.vmap:
            layers = [a[None] for a in layers]
            history = history[None]
        return Trajectories(params=flatten_layers(layers), loss=history)
