"""One exact Hessian-vector product against one gradient, and Lanczos products cold and warm.

What is measured
----------------
On ``MLP(--sizes)`` (default ``(10, 32, 32, 1)``, tanh, MSE mean) with ``--n`` samples of
``teacher_mlp``: the median over ``--repeats`` timed calls (after one warm-up call, so
compilation is excluded) of ``kernels.batch_loss_grad`` (one full-batch gradient, sample by
sample) and of ``hvp.batch_hvp`` (one full-batch ``H v``), and their ratio. Then the number
of products ``hvp.lanczos_top`` needs (Krylov dimension 20, ``tol`` 1e-6) from the default
start, and warm-started from the previous eigenvector after one gradient step of lr 0.05.

How to run::

    python benchmarks/hvp.py --repeats 51
"""

import argparse
import time

import numpy as np

import gdsim
from gdsim import hvp, kernels


def median_time(call, repeats):
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 32, 32, 1])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=51)
    args = parser.parse_args()
    model = gdsim.MLP(tuple(args.sizes), activation="tanh")
    X, Y = gdsim.datasets.teacher_mlp(n=args.n, sizes=(model.n_in, 5, model.n_out), seed=0)
    X, Yk = model.check_data(X, Y)
    theta = model.init(0)
    rows = np.arange(args.n)
    grad, hv = np.empty(model.n_params), np.empty(model.n_params)
    acts, deltas = model.workspace()
    work = hvp.new_workspace(model.sizes_array)
    v = np.random.default_rng(0).standard_normal(model.n_params)

    t_grad = median_time(lambda: kernels.batch_loss_grad(theta, *model.spec[:4], X, Yk, rows, grad, acts, deltas,
                                                         model.layer_code),
                         args.repeats)
    t_hvp = median_time(lambda: hvp.batch_hvp(theta, *model.spec[:4], X, Yk, rows, v, hv, work, model.layer_code),
                        args.repeats)
    print(f"{model!r}, n={args.n}, {model.n_params} parameters, median of {args.repeats}")
    print(f"  gradient (batch_loss_grad): {1e6 * t_grad:9.1f} us")
    print(f"  H v      (batch_hvp):       {1e6 * t_hvp:9.1f} us   ratio {t_hvp / t_grad:.2f}")

    scratch = hvp.new_lanczos_workspace(model.sizes_array, model.n_params, 20)
    u = np.zeros(model.n_params)
    t0 = time.perf_counter()
    cold_value, cold = hvp.lanczos_top(theta, model.spec, X, Yk, rows, u, 1e-6, 500, scratch)
    t_cold = time.perf_counter() - t0
    kernels.batch_loss_grad(theta, *model.spec[:4], X, Yk, rows, grad, acts, deltas, model.layer_code)
    moved = theta - 0.05 * grad
    t0 = time.perf_counter()
    warm_value, warm = hvp.lanczos_top(moved, model.spec, X, Yk, rows, u, 1e-6, 500, scratch)
    t_warm = time.perf_counter() - t0
    print(f"  lanczos_top cold: {cold:3d} products ({1e3 * t_cold:.1f} ms, includes a first call), "
          f"sharpness {cold_value:.10g}")
    print(f"  lanczos_top warm after one step: {warm:3d} products ({1e3 * t_warm:.1f} ms), "
          f"sharpness {warm_value:.10g}")


if __name__ == "__main__":
    main()
