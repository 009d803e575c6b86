"""Sharpness of any model: Hessian-vector products by finite differences of the gradient
kernel, and the top Hessian eigenvalues by Lanczos (see :mod:`gdsim.theory`)."""

import numpy as np

from .._validate import check_int
from ..models import check_model


# ---------------------------------------------------------------------------------------
# MLPs: sharpness
# ---------------------------------------------------------------------------------------
def hessian_vector_product(model, params, X, Y, v, *, eps=None):
    """``H v`` for the full-batch loss at ``params``, by central differences of the
    gradient kernel: ``(grad(p + h v) - grad(p - h v)) / (2 h)``.

    ``h`` defaults to ``1e-5 * max(1, |params|) / |v|``: the error is ``O(h^2)`` from the
    third derivative plus ``O(1e-16 / h)`` from rounding (about 1e-9 relative for smooth
    losses); a ReLU kink within ``h`` of a sample's pre-activation adds its own error.
    """
    model = check_model(model)
    params = model.check_params(params, "params")
    X, Y = model.check_data(X, Y)
    v = np.asarray(v, dtype=np.float64)
    norm = np.linalg.norm(v)
    if norm == 0:
        return np.zeros_like(v)
    h = 1e-5 * max(1.0, float(np.linalg.norm(params))) / norm if eps is None else float(eps)
    return (model.grad(params + h * v, X, Y) - model.grad(params - h * v, X, Y)) / (2.0 * h)


def sharpness(model, params, X, Y, *, k=1, tol=1e-8):
    """The top Hessian eigenvalue(s) of the full-batch loss at ``params`` [5]_.

    Lanczos (:func:`scipy.sparse.linalg.eigsh`, largest algebraic) on
    :func:`hessian_vector_product`, so only gradients are computed. Gradient descent is
    stable near ``params`` only if ``sharpness < 2 / lr`` (for a quadratic, exactly
    :func:`critical_lr`).

    Parameters
    ----------
    model : gdsim.MLP or gdsim.Linear
    params : array_like (n_params,)
    X, Y : array_like
        The data (as in :meth:`gdsim.MLP.loss`).
    k : int, default 1
        How many of the largest eigenvalues.
    tol : float
        eigsh's relative tolerance.

    Returns
    -------
    float (k == 1) or numpy.ndarray (k,), largest first
    """
    from scipy.sparse.linalg import LinearOperator, eigsh

    model = check_model(model)
    params = model.check_params(params, "params")
    X, Y = model.check_data(X, Y)
    k = check_int("k", k, minimum=1, maximum=model.n_params)
    P = model.n_params
    if P <= 2 * k + 1 or P <= 20:  # tiny problems: the dense Hessian from P products
        H = np.column_stack([hessian_vector_product(model, params, X, Y, e) for e in np.eye(P)])
        values = np.linalg.eigvalsh(0.5 * (H + H.T))[::-1][:k]
    else:
        op = LinearOperator((P, P), matvec=lambda v: hessian_vector_product(model, params, X, Y, v.ravel()),
                            dtype=np.float64)
        values = np.sort(eigsh(op, k=k, which="LA", tol=tol, v0=np.ones(P), return_eigenvectors=False))[::-1]
    return float(values[0]) if k == 1 else values
