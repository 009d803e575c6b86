"""Models: a multi-layer perceptron and its one-layer case, linear regression.

A model object holds no parameters: it describes the architecture and the loss, and
maps a flat float64 parameter vector ``theta`` (torch's order, see
:mod:`gdsim.kernels`) to losses and gradients through the Numba kernels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from . import kernels
from ._resources import check_memory
from ._validate import (
    ParameterError,
    as_array,
    check_bool,
    check_choice,
    check_int,
    check_real,
    check_real_array,
    check_seed,
    short_repr,
)
from .scalar import (
    ACTIVATIONS,
    CROSS_ENTROPY,
    LAYERS,
    LOSSES,
    MEAN,
    MSE,
    PARAMETERIZATIONS,
    REDUCTIONS,
    STANDARD,
    SUM,
    has_bias,
)

#: The widest layer a model may have: the kernels index with int64 and a weight matrix
#: of two such layers already needs more memory than any machine has.
MAX_WIDTH = 2**31 - 1


class ModelSpec(NamedTuple):
    """What the internal kernels know of a model: the arguments of :mod:`gdsim.kernels`
    in one (a named tuple, so Numba passes it as one value and unpacks it for free).

    The initial scale (``MLP.init_scale``) is not here: parameters are drawn on the host
    (:meth:`MLP.init`), the kernels never see it.

    Attributes
    ----------
    sizes : numpy.ndarray, int64 [n_layers + 1]
        Layer widths.
    activation, loss, reduction, layer_code : int
        Codes of :mod:`gdsim.scalar` (hidden-layer activation, loss, reduction, and the
        layers': parameterization and bias).
    """

    sizes: np.ndarray
    activation: int
    loss: int
    reduction: int
    layer_code: int = STANDARD

    @property
    def bias(self):
        """Whether every layer has a bias."""
        return has_bias(self.layer_code)

    @property
    def is_least_squares(self):
        """True for one linear layer with MSE: a quadratic loss (closed-form theory)."""
        return self.sizes.shape[0] == 2 and self.loss == MSE

    @property
    def is_torch_default(self):
        """True for torch's own layers and losses: biases, the standard parameterization,
        reduction ``mean`` or ``sum`` (the tutorials' figures assume them)."""
        return self.layer_code == STANDARD and self.reduction in (MEAN, SUM)

    @property
    def is_line(self):
        """True for ``y = w x + b`` with MSE (``sizes == [1, 1]``) and torch's defaults
        (:attr:`is_torch_default`): the tutorials' model, which the CPU sweep runs with
        fused kernels."""
        return self.is_least_squares and self.sizes[0] == 1 and self.sizes[1] == 1 and self.is_torch_default


class MLP:
    """A fully connected network ``nn.Sequential(Linear, act, Linear, act, ..., Linear)``.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths ``(n_in, hidden..., n_out)``, at least two entries, e.g.
        ``(10, 5, 1)``.
    activation : {"relu", "tanh", "sigmoid", "identity"}
        Activation after every hidden layer; the last layer is linear.
    loss : {"mse", "cross_entropy"}
        ``"mse"`` compares outputs with float targets ``[n, n_out]`` like ``nn.MSELoss``;
        ``"cross_entropy"`` treats outputs as logits and takes integer labels ``[n]`` in
        ``[0, n_out)``, like ``nn.CrossEntropyLoss``.
    reduction : {"mean", "sum", "half_mean", "half_sum"}
        As in torch: ``mean`` averages over every element (MSE) or sample
        (cross-entropy); ``sum`` adds them. ``half_mean`` and ``half_sum`` (MSE only) are
        ``1/2 mean((f - y)^2)`` and ``1/2 sum((f - y)^2)``, the convention of much of the
        theory literature; torch has no such reduction: they equal
        ``nn.MSELoss(reduction="mean")(f, y) / 2`` and ``nn.MSELoss(reduction="sum")(f, y) / 2``.
    bias : bool
        Whether every layer has a bias (``nn.Linear(..., bias=bias)``). Without biases
        the parameter vector holds the weights only.
    parameterization : {"standard", "ntk"}
        ``"standard"``: torch's ``nn.Linear``, ``z = W a + b``. ``"ntk"``: the neural
        tangent kernel parameterization of Jacot et al. [1]_ with their bias factor
        ``beta = 1``, ``z = W a / sqrt(fan_in) + b``, where ``fan_in`` is the layer's
        number of inputs (as in Lee et al. [2]_ with ``sigma_w = sigma_b = 1``); the
        gradient with respect to ``W`` carries the factor ``1 / sqrt(fan_in)`` too.
    init_scale : float
        Factor of the initial parameters (>= 0), see :meth:`init`: torch's default
        initialisation times ``init_scale`` ("standard"), or ``N(0, init_scale^2)``
        entries ("ntk").

    Notes
    -----
    Parameters are one flat float64 vector in torch's order: for each layer the weight
    ``[out, in]`` (row-major), then the bias ``[out]`` (absent with ``bias=False``).

    References
    ----------
    .. [1] A. Jacot, F. Gabriel, C. Hongler, "Neural Tangent Kernel: Convergence and
       Generalization in Neural Networks", NeurIPS 2018 (every parameter
       ``N(0, 1)``, layers ``W a / sqrt(fan_in) + beta b``).
    .. [2] J. Lee, L. Xiao, S. Schoenholz, Y. Bahri, R. Novak, J. Sohl-Dickstein,
       J. Pennington, "Wide Neural Networks of Any Depth Evolve as Linear Models Under
       Gradient Descent", NeurIPS 2019 (the NTK parameterization with ``sigma_w``,
       ``sigma_b``).

    Examples
    --------
    >>> import gdsim
    >>> model = gdsim.MLP((10, 5, 1))
    >>> model.n_params
    61
    >>> theta = model.init(seed=0)
    >>> [a.shape for a in model.unpack(theta)]
    [(5, 10), (5,), (1, 5), (1,)]
    >>> gdsim.MLP((10, 5, 1), bias=False, parameterization="ntk").n_params
    55
    """

    def __init__(self, sizes: Sequence[int], activation: str = "relu", loss: str = "mse", reduction: str = "mean", *,
                 bias: bool = True, parameterization: str = "standard", init_scale: float = 1.0) -> None:
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__"):
            raise ParameterError(f"sizes must be a sequence of layer widths like (10, 5, 1), got {sizes!r}", "sizes")
        if len(sizes) < 2:
            raise ParameterError(f"sizes needs at least two widths (n_in, n_out), got {tuple(sizes)!r}", "sizes")
        self.sizes = tuple(check_int(f"sizes[{i}]", s, minimum=1, maximum=MAX_WIDTH) for i, s in enumerate(sizes))
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.loss_name = check_choice("loss", loss, LOSSES)
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)
        self.bias = check_bool("bias", bias)
        self.parameterization = check_choice("parameterization", parameterization, PARAMETERIZATIONS)
        self.init_scale = check_real("init_scale", init_scale, minimum=0.0)
        if self.loss_name == "cross_entropy" and self.sizes[-1] < 2:
            raise ParameterError(f"loss='cross_entropy' needs at least 2 outputs (classes), got "
                                 f"n_out={self.sizes[-1]}", "loss")
        if self.loss_name == "cross_entropy" and self.reduction.startswith("half_"):
            raise ParameterError(f"reduction={self.reduction!r} halves a squared error: it needs loss='mse'; "
                                 f"cross-entropy takes reduction 'mean' or 'sum'", "reduction")
        #: The kernels' view of the model (see :class:`ModelSpec` and :mod:`gdsim.kernels`).
        self.spec = ModelSpec(np.array(self.sizes, dtype=np.int64), ACTIVATIONS[self.activation],
                              LOSSES[self.loss_name], REDUCTIONS[self.reduction],
                              LAYERS[self.parameterization, self.bias])
        self.sizes_array, self.activation_code, self.loss_code, self.reduction_code, self.layer_code = self.spec

    # -- description -----------------------------------------------------------------
    @property
    def n_in(self):
        """Number of input features."""
        return self.sizes[0]

    @property
    def n_out(self):
        """Number of outputs (targets for MSE, classes for cross-entropy)."""
        return self.sizes[-1]

    @property
    def shapes(self):
        """Shapes of the parameter arrays in order: ``[(out, in), (out,), ...]`` (weights
        only, ``[(out, in), ...]``, without biases)."""
        shapes = []
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:]):
            shapes += [(fan_out, fan_in), (fan_out,)] if self.bias else [(fan_out, fan_in)]
        return shapes

    def _options_repr(self):
        """The options that differ from their defaults, as ``", key=value"`` (so that the
        repr of a model with torch's defaults, on which sweep stores are keyed, is as
        before these options existed)."""
        options = [("bias", self.bias, True), ("parameterization", self.parameterization, "standard"),
                   ("init_scale", self.init_scale, 1.0)]
        return "".join(f", {name}={value!r}" for name, value, default in options if value != default)

    @property
    def n_params(self):
        """Length of the flat parameter vector."""
        return sum(math.prod(s) for s in self.shapes)  # Python ints: no overflow for absurd widths

    def __repr__(self):
        return (f"MLP({self.sizes}, activation={self.activation!r}, loss={self.loss_name!r}, "
                f"reduction={self.reduction!r}{self._options_repr()})")

    # -- parameters ------------------------------------------------------------------
    def unpack(self, theta):
        """Split a flat parameter vector into ``[W0, b0, W1, b1, ...]`` (``[W0, W1, ...]``
        without biases).

        Parameters
        ----------
        theta : array_like, shape (n_params,)

        Returns
        -------
        list of numpy.ndarray
            Views into ``theta`` (when it is a contiguous float64 array) with the shapes
            of :attr:`shapes`: weights ``[out, in]`` then biases ``[out]``.
        """
        theta = self.check_params(theta, "theta", finite=False)
        arrays, start = [], 0
        for shape in self.shapes:
            size = int(np.prod(shape))
            arrays.append(theta[start:start + size].reshape(shape))
            start += size
        return arrays

    def pack(self, arrays):
        """Join ``[W0, b0, W1, b1, ...]`` (``[W0, W1, ...]`` without biases; shapes as
        :attr:`shapes`) into a flat vector."""
        layout = "[W0, b0, W1, b1, ...]" if self.bias else "[W0, W1, ...] (no biases)"
        if isinstance(arrays, (str, bytes, dict)) or not hasattr(arrays, "__len__"):
            raise ParameterError(f"arrays must be a list {layout}, got {short_repr(arrays)}", "arrays")
        arrays = [check_real_array(f"arrays[{i}]", a, allow_nan=True) for i, a in enumerate(arrays)]
        if len(arrays) != len(self.shapes):
            per_layer = "weight and bias per layer" if self.bias else "one weight per layer, no biases"
            raise ParameterError(f"pack needs {len(self.shapes)} arrays ({per_layer}), got "
                                 f"{len(arrays)}", "arrays")
        for i, (a, shape) in enumerate(zip(arrays, self.shapes)):
            if a.shape != shape:
                raise ParameterError(f"arrays[{i}] has shape {a.shape}, expected {shape}", "arrays")
        return np.concatenate([a.ravel() for a in arrays])

    def init(self, seed=0):
        """Initial parameters: ``nn.Linear``'s default initialisation ("standard") or
        standard normal ones ("ntk"), times :attr:`init_scale`.

        "standard": every weight and bias of a layer with ``fan_in`` inputs is uniform in
        ``[-1/sqrt(fan_in), 1/sqrt(fan_in))`` (torch's Kaiming-uniform with ``a=sqrt(5)``
        reduces to that bound), then multiplied by ``init_scale``. "ntk": every weight and
        bias is ``N(0, init_scale^2)`` (Jacot et al.: all parameters ``N(0, 1)``; the layer
        divides by ``sqrt(fan_in)`` in its forward pass instead). Drawn layer by layer,
        weight then bias, row-major.

        Parameters
        ----------
        seed : int or numpy.random.Generator
            Seed of ``numpy.random.default_rng``, or a generator to draw from.

        Returns
        -------
        numpy.ndarray, float64 (n_params,)
        """
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(check_seed("seed", seed))
        check_memory(8 * self.n_params, f"drawing the {self.n_params} parameters of {self!r}", "use narrower layers")
        parts = []
        for shape, fan_in in zip(self.shapes, np.repeat(self.sizes[:-1], 2 if self.bias else 1)):
            size = int(np.prod(shape))
            if self.parameterization == "ntk":
                parts.append(rng.standard_normal(size))
            else:
                bound = 1.0 / np.sqrt(fan_in)
                parts.append(rng.uniform(-bound, bound, size=size))
        theta = np.concatenate(parts)
        if self.init_scale != 1.0:
            theta *= self.init_scale
        return theta

    def workspace(self):
        """Scratch buffers ``(acts, deltas)`` for the kernels (see :mod:`gdsim.kernels`)."""
        return kernels.new_workspace(self.sizes_array)

    # -- input checks ----------------------------------------------------------------
    def check_params(self, theta, name="theta", finite=True):
        """``theta`` as a contiguous float64 vector of length :attr:`n_params`, or ValueError."""
        arr = as_array(name, theta)
        if arr.dtype.kind not in "fiu":
            raise ParameterError(f"{name} must be a real array, got dtype {arr.dtype}", name)
        if arr.shape != (self.n_params,):
            raise ParameterError(f"{name} must have shape ({self.n_params},) for {self!r}, got {arr.shape}", name)
        arr = np.ascontiguousarray(arr, dtype=np.float64)
        if finite and not np.all(np.isfinite(arr)):
            raise ParameterError(f"{name} contains NaN or inf", name)
        return arr

    def check_inputs(self, X):
        """``X`` as a C-contiguous float64 ``(n, n_in)`` array of finite values, or ValueError."""
        X = as_array("X", X)
        if X.dtype.kind not in "fiu":
            raise ParameterError(f"X must be a real array, got dtype {X.dtype}", "X")
        if X.ndim != 2 or X.shape[1] != self.n_in or X.shape[0] < 1:
            raise ParameterError(f"X must have shape (n, {self.n_in}) with n >= 1 for {self!r}, got {X.shape}", "X")
        X = np.ascontiguousarray(X, dtype=np.float64)
        if not np.all(np.isfinite(X)):
            row, col = np.argwhere(~np.isfinite(X))[0]
            raise ParameterError(f"X contains NaN or inf (first at row {row}, column {col})", "X")
        return X

    def check_data(self, X, Y) -> tuple[np.ndarray, np.ndarray]:
        """Validate data and convert it to the kernels' layout.

        Parameters
        ----------
        X : array_like, shape (n, n_in)
            Finite real inputs.
        Y : array_like
            MSE: finite real targets ``(n, n_out)`` (or ``(n,)`` when ``n_out == 1``).
            Cross-entropy: integer labels ``(n,)`` in ``[0, n_out)``.

        Returns
        -------
        X : float64 (n, n_in), C-contiguous
        Y : float64 (n, n_out) for MSE, float64 (n, 1) holding the class index for
            cross-entropy (the kernels' target layout).
        """
        X = self.check_inputs(X)
        n = X.shape[0]
        Y = as_array("Y", Y)
        if self.loss_code == CROSS_ENTROPY:
            if Y.dtype.kind not in "iu":
                raise ParameterError(f"loss='cross_entropy' needs integer class labels Y, got dtype {Y.dtype}", "Y")
            if Y.shape != (n,):
                raise ParameterError(f"Y must have shape ({n},) (one class label per row of X), got {Y.shape}", "Y")
            if Y.min() < 0 or Y.max() >= self.n_out:
                raise ParameterError(f"Y labels must lie in [0, {self.n_out - 1}] (n_out={self.n_out} classes), "
                                     f"got values from {Y.min()} to {Y.max()}", "Y")
            return X, Y.astype(np.float64).reshape(n, 1)
        if Y.dtype.kind not in "fiu":
            raise ParameterError(f"Y must be a real array, got dtype {Y.dtype}", "Y")
        if Y.ndim == 1 and self.n_out == 1:
            Y = Y.reshape(-1, 1)
        if Y.shape != (n, self.n_out):
            raise ParameterError(f"Y must have shape ({n}, {self.n_out}) (rows of X, n_out), got {Y.shape}", "Y")
        Y = np.ascontiguousarray(Y, dtype=np.float64)
        if not np.all(np.isfinite(Y)):
            row = np.argwhere(~np.isfinite(Y))[0][0]
            raise ParameterError(f"Y contains NaN or inf (first at row {row})", "Y")
        return X, Y

    # -- evaluation ------------------------------------------------------------------
    def loss(self, theta, X, Y):
        """Reduced loss on ``(X, Y)`` (float).

        Parameters
        ----------
        theta : array_like (n_params,)
        X, Y : array_like
            See :meth:`check_data`.
        """
        theta = self.check_params(theta, finite=False)
        X, Y = self.check_data(X, Y)
        acts, _ = self.workspace()
        return kernels.batch_loss(theta, *self.spec[:4], X, Y, np.arange(X.shape[0]), acts, self.layer_code)

    def grad(self, theta, X, Y):
        """Gradient of the reduced loss, float64 ``(n_params,)`` in parameter order."""
        return self.loss_and_grad(theta, X, Y)[1]

    def loss_and_grad(self, theta, X, Y):
        """Reduced loss and its gradient, ``(float, float64 (n_params,))``."""
        theta = self.check_params(theta, finite=False)
        X, Y = self.check_data(X, Y)
        grad = np.empty(self.n_params)
        value = kernels.batch_loss_grad(theta, *self.spec[:4], X, Y, np.arange(X.shape[0]), grad,
                                        *self.workspace(), self.layer_code)
        return value, grad

    def per_sample_grads(self, theta, X, Y):
        """Gradient of each sample's own loss, float64 ``(n, n_params)``.

        Row ``i`` is the gradient of the loss of the one-sample batch ``(X[i], Y[i])``,
        so the rows' mean (reductions ``mean``, ``half_mean``) or sum (``sum``,
        ``half_sum``) equals :meth:`grad`.
        """
        theta = self.check_params(theta, finite=False)
        X, Y = self.check_data(X, Y)
        out = np.empty((X.shape[0], self.n_params))
        kernels.per_sample_grads(theta, *self.spec[:4], X, Y, out, *self.workspace(), self.layer_code)
        return out

    def predict(self, theta, X):
        """Outputs of the last layer (predictions, or logits for cross-entropy), ``(n, n_out)``."""
        theta = self.check_params(theta, finite=False)
        X = self.check_inputs(X)
        out = np.empty((X.shape[0], self.n_out))
        acts, _ = self.workspace()
        kernels.predict(theta, self.sizes_array, self.activation_code, X, out, acts, self.layer_code)
        return out


class Linear(MLP):
    """Linear model ``y = W x + b`` (``nn.Linear(n_in, n_out)``), the one-layer :class:`MLP`.

    Parameters
    ----------
    n_in, n_out : int
        Input and output widths.
    loss, reduction : str
        As in :class:`MLP`.
    bias, parameterization, init_scale
        As in :class:`MLP` (keyword only): ``bias=False`` is ``y = W x``;
        ``parameterization="ntk"`` is ``y = W x / sqrt(n_in) + b``.

    Examples
    --------
    >>> import gdsim
    >>> model = gdsim.Linear(1, 1)
    >>> model.pack([[[-10.0]], [-20.0]])     # w, b of the linear-regression tutorial
    array([-10., -20.])
    """

    def __init__(self, n_in: int, n_out: int, loss: str = "mse", reduction: str = "mean", *, bias: bool = True,
                 parameterization: str = "standard", init_scale: float = 1.0) -> None:
        # Checked here so that a message names n_in or n_out, not MLP's sizes[0].
        n_in = check_int("n_in", n_in, minimum=1, maximum=MAX_WIDTH)
        n_out = check_int("n_out", n_out, minimum=1, maximum=MAX_WIDTH)
        super().__init__((n_in, n_out), activation="identity", loss=loss, reduction=reduction, bias=bias,
                         parameterization=parameterization, init_scale=init_scale)

    def __repr__(self):
        return (f"Linear({self.n_in}, {self.n_out}, loss={self.loss_name!r}, reduction={self.reduction!r}"
                f"{self._options_repr()})")


def check_model(model):
    """Raise a clear error unless ``model`` is a gdsim model."""
    if not isinstance(model, MLP):
        raise ParameterError(f"model must be a gdsim.Linear or gdsim.MLP, got {type(model).__name__}", "model")
    return model

