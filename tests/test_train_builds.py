"""gdsim.train compiles only what a call runs: a call without tracks passes them to the
loop as None, and a model with the per-sample kernels passes ``dense`` as None, constants
to Numba, whose build then contains no tracks code (Lanczos, noise scales) and no
matrix-product kernels (issue 16: the cold first call of train)."""

import numpy as np

import gdsim
from gdsim.training import train_loop

DENSE, TRACKS = 10, 11  # train_loop's arguments


def _builds():
    """(dense, tracks) argument types of train_loop's compiled builds."""
    return {(str(sig[DENSE]), str(sig[TRACKS]).split("(")[0]) for sig in train_loop.signatures}


def _data(n_in):
    rng = np.random.default_rng(0)
    return rng.standard_normal((16, n_in)), rng.standard_normal((16, 1))


def test_untracked_per_sample_train_builds_neither_tracks_nor_dense_kernels():
    X, Y = _data(3)
    gdsim.train(gdsim.MLP((3, 4, 1)), X, Y, gdsim.SGD(lr=0.01), epochs=1, batch_size=4)
    assert ("none", "none") in _builds()


def test_tracked_and_dense_train_build_them():
    X, Y = _data(64)
    result = gdsim.train(gdsim.MLP((64, 32, 1)), X, Y, gdsim.SGD(lr=0.01), epochs=1, batch_size=8,
                         track={"loss": 1})
    assert result.tracks is not None
    assert any(dense == "int64" and tracks != "none" for dense, tracks in _builds())


def test_dense_train_gives_the_same_bits_whatever_blas_threads_the_process_uses():
    # OpenBLAS rounds a product's sums differently with 1 and 2 threads (W4's model: other
    # last bits after 5 steps); train's matrix path runs BLAS on one thread, so its result
    # does not depend on the machine's cores, nor on what the caller set. In a process of
    # its own: one_blas_thread restores the caller's setting when the last thread inside it
    # leaves, and in the test process other threads may be (the suite failed twice in CI
    # with BLAS at the other count after the call, never when run alone).
    import subprocess
    import sys

    code = """if True:
        import numpy as np, scipy.linalg.cython_blas, gdsim  # SciPy's BLAS loaded: the caller's limits cover it
        from threadpoolctl import threadpool_info, threadpool_limits
        X, Y = gdsim.datasets.random_regression(n=74, n_in=900, n_out=12, seed=0)
        model = gdsim.MLP((900, 90, 12), activation="relu", reduction="sum")
        results = []
        for threads in (1, 2):
            with threadpool_limits(limits=threads, user_api="blas"):
                results.append(gdsim.train(model, X, Y, gdsim.SGD(lr=1e-5, momentum=0.9), epochs=5, batch_size=74))
                # the caller's setting is back after the call
                assert {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"} == {threads}
        np.testing.assert_array_equal(results[0].epoch_loss, results[1].epoch_loss, strict=True)
        np.testing.assert_array_equal(results[0].params, results[1].params, strict=True)
        print("same bits")
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "same bits", out.stderr[-2000:]


def test_one_blas_thread_limits_scipys_blas_even_before_it_is_loaded():
    # threadpoolctl limits only the libraries already loaded; Numba loads SciPy's BLAS at
    # its first product, which may come inside the block (a new process's first train).
    import os
    import subprocess
    import sys

    code = ("import sys; from gdsim._threads import one_blas_thread; from threadpoolctl import threadpool_info\n"
            "assert 'scipy.linalg' not in sys.modules\n"
            "with one_blas_thread():\n"
            "    import scipy.linalg.cython_blas\n"
            "    print(sorted({p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas'}))\n")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[1]"
