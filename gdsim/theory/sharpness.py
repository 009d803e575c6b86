"""Sharpness of any model: exact Hessian-vector products (forward-over-reverse, the kernels
of :mod:`gdsim.hvp`; finite differences of the gradient kernel on request), and the top
Hessian eigenvalues by Lanczos (see :mod:`gdsim.theory`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:  # for the annotations only
    from ..models import MLP

from .. import hvp
from .._validate import ParameterError, check_int, check_real
from ..models import check_model
from .checks import check_reals


# ---------------------------------------------------------------------------------------
# MLPs: sharpness
# ---------------------------------------------------------------------------------------
def hessian_vector_product(model: MLP, params: ArrayLike, X: ArrayLike, Y: ArrayLike, v: ArrayLike, *,
                           eps: float | None = None) -> np.ndarray:
    """``H v`` for the full-batch loss at ``params``.

    By default exact up to rounding: forward-over-reverse differentiation
    (:func:`gdsim.hvp.batch_hvp`, Pearlmutter's R-operator), at about the cost of two
    gradients; ReLU's second derivative is 0, as in torch's double backward.

    With ``eps``, by central differences of the gradient kernel instead (for comparison):
    ``(grad(p + h v) - grad(p - h v)) / (2 h)`` with ``h = eps``, whose error is
    ``O(h^2)`` from the third derivative plus ``O(1e-16 / h)`` from rounding; a ReLU kink
    within ``h`` of a sample's pre-activation adds its own error.

    Parameters
    ----------
    model : gdsim.MLP or gdsim.Linear
    params : array_like (n_params,)
        Finite.
    X, Y : array_like
        The data (as in :meth:`gdsim.MLP.loss`).
    v : array_like (n_params,)
        Finite.
    eps : float, optional
        Use finite differences with this step ``h``, finite and > 0.

    Returns
    -------
    numpy.ndarray (n_params,)
        Entries beyond float64 are +-inf (``v`` near float64's largest numbers).

    Raises
    ------
    gdsim.ParameterError
        Naming the argument: ``model``, ``params``, ``X``, ``Y``, ``v`` (wrong shape, not
        finite) or ``eps`` (not finite and > 0, or so small or large that the difference
        quotient is lost or overflows); ``params``, ``X`` or ``Y`` (the largest) when the
        gradient or the product along a unit direction overflows float64.
    """
    model, params, X, Y = check_point(model, params, X, Y)
    v = check_reals("v", v)
    if v.shape != (model.n_params,):
        raise ParameterError(f"v must have shape ({model.n_params},) (one entry per parameter of {model!r}), got "
                             f"{v.shape}", "v")
    if eps is not None:
        eps = check_real("eps", eps, minimum=0.0, strict=True)
        return _difference_quotient(model, params, X, Y, v, eps, "eps")
    return ExactProduct(model, params, X, Y)(v)


class ExactProduct:
    """``v -> H v`` by :func:`gdsim.hvp.batch_hvp` on the full batch, with the data in the
    kernels' layout and one workspace for every product.

    A product is computed along ``v / max|v|`` (entries up to 1, so that no tangent
    overflows for huge ``v`` nor underflows for tiny ones) and scaled back by ``max|v|``:
    an entry beyond float64 is then +-inf, while a product along a unit direction that is
    not finite refuses the largest of ``params``, ``X`` and ``Y``.
    """

    def __init__(self, model, params, X, Y):
        self.model, self.params, self.X, self.Y = model, params, X, Y
        _, self.kernel_Y = model.check_data(X, Y)
        self.rows = np.arange(X.shape[0])
        self.work = hvp.new_workspace(model.sizes_array)

    def __call__(self, v):
        top = float(np.abs(v).max())
        out = np.zeros(self.model.n_params)
        if top == 0:
            return out
        hvp.batch_hvp(self.params, *self.model.spec[:4], self.X, self.kernel_Y, self.rows,
                      np.ascontiguousarray(v / top), out, self.work, self.model.layer_code)
        if not np.all(np.isfinite(out)):
            gradient_overflow(self.params, self.X, self.Y, "the Hessian-vector product")
        with np.errstate(over="ignore"):
            return out * top


def check_point(model, params, X, Y) -> tuple[MLP, np.ndarray, np.ndarray, np.ndarray]:
    """The checked arguments; ``Y`` as given for a classifier (the model's methods, which
    the products call, take integer labels, not the kernels' float layout)."""
    model = check_model(model)
    X, checked_Y = model.check_data(X, Y)
    return model, model.check_params(params, "params"), X, (checked_Y if model.loss_name == "mse" else np.asarray(Y))


def _difference_quotient(model, params, X, Y, v, h, step_name):
    """``(grad(p + h v) - grad(p - h v)) / (2 h)`` with every overflow refused or inf:
    the shifted points must be finite and distinct from ``params``, the gradients there
    finite; ``step_name`` is the argument blamed for a lost or overflowing quotient."""
    if not np.any(v):
        return np.zeros(model.n_params)
    with np.errstate(over="ignore"):
        shift = h * v
        plus, minus = params + shift, params - shift
    if not (np.all(np.isfinite(plus)) and np.all(np.isfinite(minus))):
        name = "params" if step_name == "v" else "eps"
        raise ParameterError(f"{name}: params +- h v leave float64's range (max |params| = "
                             f"{np.abs(params).max():g}, h max|v| = {np.abs(shift).max():g})", name)
    if np.array_equal(plus, params) and np.array_equal(minus, params):
        raise ParameterError(f"{step_name} is too small: params +- h v round to params (h max|v| = "
                             f"{np.abs(shift).max():g} next to max |params| = {np.abs(params).max():g})", step_name)
    g_plus, g_minus = model.grad(plus, X, Y), model.grad(minus, X, Y)
    if not (np.all(np.isfinite(g_plus)) and np.all(np.isfinite(g_minus))):
        if step_name == "eps" and np.all(np.isfinite(model.grad(params, X, Y))):  # the step went too far
            raise ParameterError(f"eps is too large: the gradient at params +- eps v is not finite in float64 "
                                 f"(eps = {h!r}, max |eps v| = {np.abs(shift).max():g})", "eps")
        gradient_overflow(params, X, Y)
    with np.errstate(over="ignore"):
        out = (g_plus - g_minus) / (2.0 * h)
    if step_name == "eps" and not np.all(np.isfinite(out)):
        raise ParameterError(f"eps is too small: the difference quotient overflows float64 (eps = {h!r})", "eps")
    return out


def gradient_overflow(params, X, Y, what="the gradient"):
    """Refuse the largest of ``params``, ``X`` and ``Y``: ``what`` overflowed."""
    sizes = {"params": float(np.abs(params).max()), "X": float(np.abs(X).max()), "Y": float(np.abs(Y).max())}
    name = max(sizes, key=sizes.get)
    text = ", ".join(f"max |{k}| = {value:g}" for k, value in sizes.items())
    raise ParameterError(f"{name} is too large: {what} near params is not finite in float64 ({text})", name)


def sharpness(model: MLP, params: ArrayLike, X: ArrayLike, Y: ArrayLike, *, k: int = 1, tol: float = 1e-8) -> float | np.ndarray:
    """The top Hessian eigenvalue(s) of the full-batch loss at ``params`` [5]_.

    Lanczos (:func:`scipy.sparse.linalg.eigsh`, largest algebraic) on the exact
    :func:`hessian_vector_product`, so the Hessian is never formed. Gradient descent is
    stable near ``params`` only if ``sharpness < 2 / lr`` (for a quadratic, exactly
    :func:`critical_lr`).

    Parameters
    ----------
    model : gdsim.MLP or gdsim.Linear
    params : array_like (n_params,)
    X, Y : array_like
        The data (as in :meth:`gdsim.MLP.loss`).
    k : int, default 1
        How many of the largest eigenvalues, in ``[1, n_params]``.
    tol : float
        eigsh's relative tolerance, finite and >= 0 (0: machine precision); models of up
        to 20 parameters use the dense Hessian and need none.

    Returns
    -------
    float (k == 1) or numpy.ndarray (k,), largest first

    Raises
    ------
    gdsim.ParameterError
        Naming ``model``, ``params``, ``X``, ``Y``, ``k`` or ``tol``; ``params``, ``X`` or
        ``Y`` (the largest) when the gradient or the Hessian overflows float64.
    """
    from scipy.sparse.linalg import LinearOperator, eigsh

    model, params, X, Y = check_point(model, params, X, Y)
    k = check_int("k", k, minimum=1, maximum=model.n_params)
    tol = check_real("tol", tol, minimum=0.0)
    P = model.n_params
    product = ExactProduct(model, params, X, Y)  # refuses a product that is not finite
    if P <= 2 * k + 1 or P <= 20:  # tiny problems: the dense Hessian from P products
        H = np.column_stack([product(e) for e in np.eye(P)])
        with np.errstate(over="ignore"):
            symmetric = 0.5 * H + 0.5 * H.T  # halves first: H + H.T may overflow
        values = np.linalg.eigvalsh(symmetric)[::-1][:k]
    else:
        op = LinearOperator((P, P), matvec=lambda v: product(v.ravel()), dtype=np.float64)
        values = np.sort(eigsh(op, k=k, which="LA", tol=tol, v0=np.ones(P), return_eigenvectors=False))[::-1]
    if not np.all(np.isfinite(values)):
        gradient_overflow(params, X, Y, "the Hessian")
    return float(values[0]) if k == 1 else values


