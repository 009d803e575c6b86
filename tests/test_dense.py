"""The whole-batch kernels (gdsim.dense) on any batch of rows, with one workspace per run:
against the NumPy back-propagation of tests/naive.py, and bit for bit between the ways a
batch's inputs are read (in place for consecutive rows, copied otherwise)."""

import os

import numpy as np
import pytest

import gdsim
from gdsim.dense import dense_loss_grad, new_dense_workspace

import naive
from conftest import make_data

CASES = [
    ((6, 5, 3), "relu", "mse", "sum", {}),
    ((6, 5, 4, 2), "tanh", "mse", "mean", {"parameterization": "ntk"}),
    ((6, 5, 3), "sigmoid", "mse", "half_mean", {"bias": False}),
    ((6, 7, 3), "relu", "cross_entropy", "mean", {"bias": False, "parameterization": "ntk"}),
]
N = 9


def _case(sizes, activation, loss, reduction, options):
    model = gdsim.MLP(sizes, activation=activation, loss=loss, reduction=reduction, **options)
    X, Y = make_data(model, n=N, seed=3)
    _, Yk = model.check_data(X, Y)
    return model, X, Y, Yk, model.init(seed=4)


def _dense(model, theta, X, Yk, rows, work, want_grad=True):
    grad = np.full(model.n_params, np.nan)
    value = dense_loss_grad(theta, *model.spec[:4], X, Yk, np.asarray(rows, dtype=np.int64), want_grad, grad, work,
                            model.layer_code)
    return value, grad


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{'-'.join(map(str, c[0]))}-{c[1]}-{c[2]}-{c[3]}")
def test_any_rows_give_naives_loss_and_gradient(case):
    model, X, Y, Yk, theta = _case(*case)
    sizes, activation, loss, reduction, options = case
    work = new_dense_workspace(model.sizes_array, N)  # one workspace for every batch below
    for rows in ([4, 5, 6, 7], [7, 0, 3, 3, 8], list(range(N)), [2]):
        value, grad = _dense(model, theta, X, Yk, rows, work)
        ref_value, ref_grad = naive.loss_and_grad(sizes, activation, loss, reduction, theta, X[rows], Y[rows],
                                                  **options)
        np.testing.assert_allclose(value, ref_value, rtol=1e-13)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-15)
        loss_only, untouched = _dense(model, theta, X, Yk, rows, work, want_grad=False)
        assert loss_only == value and np.isnan(untouched).all()


@pytest.mark.parametrize("case", CASES[:2], ids=["standard", "ntk"])
def test_consecutive_rows_read_in_place_give_the_bits_of_the_same_rows_copied(case):
    model, X, _, Yk, theta = _case(*case)
    work = new_dense_workspace(model.sizes_array, N)
    in_place = _dense(model, theta, X, Yk, [2, 3, 4, 5], work)
    # the same samples at rows that are not consecutive: the kernel copies them
    X2, Y2 = np.zeros_like(X), np.zeros_like(Yk)
    X2[[6, 1, 8, 0]], Y2[[6, 1, 8, 0]] = X[2:6], Yk[2:6]
    copied = _dense(model, theta, X2, Y2, [6, 1, 8, 0], work)
    assert in_place[0] == copied[0]
    np.testing.assert_array_equal(in_place[1], copied[1], strict=True)


def test_a_workspace_holds_nothing_from_one_batch_to_the_next():
    model, X, _, Yk, theta = _case(*CASES[1])
    fresh = [_dense(model, theta, X, Yk, rows, new_dense_workspace(model.sizes_array, len(rows)))
             for rows in ([3, 1], list(range(N)), [5, 6, 7])]
    work = new_dense_workspace(model.sizes_array, N)
    for (value, grad), rows in zip(fresh, ([3, 1], list(range(N)), [5, 6, 7])):
        again = _dense(model, theta, X, Yk, rows, work)
        assert again[0] == value
        np.testing.assert_array_equal(again[1], grad, strict=True)


def test_train_counts_the_workspace_in_its_memory_check(monkeypatch):
    # A run whose matrix-path workspace (n * (sum(sizes) + 2 * widest + 2 * n_out) floats:
    # 1.30 MB here) is most of what it allocates: refused with 0.5 MB available, run with
    # 2.5 MB.
    from gdsim import _resources

    model = gdsim.MLP((64, 32, 1))
    X, Y = make_data(model, n=1000, seed=0)
    kwargs = dict(epochs=1, batch_size=8)
    monkeypatch.setattr(_resources, "available_memory", lambda: 500_000)
    with pytest.raises(gdsim.ParameterError, match="a run of 125 steps"):
        gdsim.train(model, X, Y, gdsim.SGD(lr=0.01), **kwargs)
    monkeypatch.setattr(_resources, "available_memory", lambda: 2_500_000)
    assert gdsim.train(model, X, Y, gdsim.SGD(lr=0.01), **kwargs).n_steps == 125


# Wide enough that every product is cut in two (gdsim.products): the forward products and
# the weight gradients by rows (rows_dot), and the update by halves of each layer's rows
# (sgd_update_rows).
WIDE = ((256, 128, 128, 3), "tanh", "mse", "mean", {})
WIDE_N = 64


def test_products_cut_in_two_give_naives_loss_and_gradient():
    from gdsim.products import product_parts

    sizes = WIDE[0]
    assert all(product_parts(sizes[k + 1], WIDE_N, sizes[k]) == 2 for k in range(2))
    model = gdsim.MLP(sizes, activation="tanh", reduction="mean")
    X, Y = make_data(model, n=WIDE_N, seed=5)
    _, Yk = model.check_data(X, Y)
    theta = model.init(seed=6)
    for threads in (1, 2):  # the parts one after the other, then in a parallel loop
        work = new_dense_workspace(model.sizes_array, WIDE_N, threads)
        for rows in (list(range(WIDE_N)), list(range(WIDE_N - 1, -1, -1))):  # read in place, then copied
            value, grad = _dense(model, theta, X, Yk, rows, work)
            ref_value, ref_grad = naive.loss_and_grad(sizes, "tanh", "mse", "mean", theta, X[rows], Y[rows])
            np.testing.assert_allclose(value, ref_value, rtol=1e-13)
            np.testing.assert_allclose(grad, ref_grad, rtol=1e-11, atol=1e-15)


@pytest.mark.parametrize("bias", [True, False])
def test_train_matrix_path_gives_the_same_bits_on_one_and_two_threads(bias, monkeypatch):
    numba = pytest.importorskip("numba")
    from gdsim import _jit

    monkeypatch.setattr(_jit, "free_cpus", lambda: None)  # two threads even while other tests run
    model = gdsim.MLP(WIDE[0], activation="tanh", bias=bias)
    X, Y = make_data(model, n=WIDE_N, seed=7)
    optimizer = gdsim.SGD(lr=0.05, momentum=0.9, weight_decay=1e-3)
    threads = numba.get_num_threads()
    results = []
    try:
        for n_threads in (1, min(2, threads)):
            numba.set_num_threads(n_threads)
            results.append(gdsim.train(model, X, Y, optimizer, epochs=3, batch_size=WIDE_N, shuffle=True, seed=0,
                                       record_params=True))
    finally:
        numba.set_num_threads(threads)
    one, two = results
    assert np.isfinite(one.params).all()
    np.testing.assert_array_equal(one.params, two.params, strict=True)
    np.testing.assert_array_equal(one.step_loss, two.step_loss, strict=True)


def test_matrix_path_runs_from_two_threads_under_numbas_workqueue_layer():
    # The workqueue threading layer aborts the process when two threads run parallel loops
    # at once; train runs its products' parts on one thread there (gdsim._jit.loop_threads).
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import threading, numba, numpy as np, gdsim
        model = gdsim.MLP({WIDE[0]!r}, activation="tanh")
        X = np.random.default_rng(0).standard_normal(({WIDE_N}, {WIDE[0][0]}))
        Y = np.random.default_rng(1).standard_normal(({WIDE_N}, {WIDE[0][-1]}))
        out = {{}}
        def run(k):
            out[k] = gdsim.train(model, X, Y, gdsim.SGD(lr=0.01), epochs=5, batch_size={WIDE_N}).params
        threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert numba.threading_layer() == "workqueue"
        assert np.array_equal(out[0], out[1])
        print("ok")
    """)
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue", NUMBA_NUM_THREADS="2")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_the_matrix_path_takes_a_second_thread_only_with_a_cpu_free(monkeypatch):
    # OpenMP's threads spin while they wait: beside a busy process, two took 4x one's time.
    numba = pytest.importorskip("numba")
    from gdsim import _jit

    threads = numba.get_num_threads()
    if threads < 2:
        pytest.skip("Numba has one thread here")
    for free, expected in ((1, 1), (0, 1), (threads + 3, threads), (None, threads)):  # None: cannot tell
        monkeypatch.setattr(_jit, "free_cpus", lambda free=free: free)
        assert _jit.loop_threads() == expected
