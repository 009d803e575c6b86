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
    assert any(dense == "bool" and tracks != "none" for dense, tracks in _builds())
