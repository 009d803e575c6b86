"""The ``divergence`` argument: one meaning of each value in gdsim.train, gdsim.sweep and
study files, checked against closed forms; train's deprecated ``divergence_factor``.

The known answer (as in test_train and test_sweep): one sample x = 1, y = 0, prediction
s = w + b, loss s^2, gradient 2s for w and for b, so full-batch GD maps s -> (1 - 4 lr) s.
From params0 = [0.5, 0.5] (s0 = 1) at lr 1 the loss before step k is 9^k and the
parameters after k steps are 0.5 (-3)^k each; at lr 1000 the loss 3999^(2k) first
overflows at k = 43 (3999^84 < 1.8e308 < 3999^86).
"""

import math
import textwrap
import warnings

import numpy as np
import pytest

from conftest import LINE_STUDY
import gdsim
from gdsim.studies import load_study, run_study

ONE = gdsim.Linear(1, 1), np.ones((1, 1)), np.zeros((1, 1))
P0 = [0.5, 0.5]
EPOCHS = 10
POWERS = 9.0 ** np.arange(EPOCHS + 1)  # the loss before step k at lr 1


def one_train(lr=1.0, epochs=EPOCHS, **kw):
    model, X, Y = ONE
    return gdsim.train(model, X, Y, gdsim.SGD(lr=lr), epochs=epochs, params0=P0, record_params=True, **kw)


def one_sweep(lr=1.0, epochs=EPOCHS, **kw):
    model, X, Y = ONE
    return gdsim.sweep(model, X, Y, lr=lr, epochs=epochs, params0=P0, target="cpu", **kw)


def assert_train_is_the_sweep(result, ds):
    """The sweep's single run holds the same bits as the train result."""
    np.testing.assert_array_equal(ds.loss.values, result.epoch_loss)
    np.testing.assert_array_equal(ds.params.values, result.params)
    assert int(ds.diverged_step) == result.diverged_step
    assert bool(ds.diverged) == result.diverged


# ---------------------------------------------------------------------------------------
# Each value's meaning, in train and in sweep
# ---------------------------------------------------------------------------------------
def test_a_number_marks_at_that_factor_and_stops_the_run():
    # 9^3 = 729 <= 1e3 < 9^4: marked at step 4, where no update is made.
    result = one_train(divergence=1e3)
    assert result.diverged and result.diverged_step == 4 and result.diverged_loss == 9.0**4
    np.testing.assert_allclose(result.epoch_loss[:5], POWERS[:5], rtol=1e-13)
    assert np.isnan(result.epoch_loss[5:]).all()
    # full batch: the full-data loss before step 4 marked it, its batch was not evaluated
    np.testing.assert_allclose(result.step_loss[:4], POWERS[:4], rtol=1e-13)
    assert np.isnan(result.step_loss[4:]).all()
    np.testing.assert_allclose(result.params, 0.5 * (-3.0) ** 4 * np.ones(2), rtol=1e-15)  # before step 4
    np.testing.assert_allclose(result.params_history[:5, 0], 0.5 * (-3.0) ** np.arange(5), rtol=1e-15)
    assert np.isnan(result.params_history[5:]).all()
    assert result.state is None  # a stopped run is not continued
    assert "diverged at step 4" in repr(result)
    assert_train_is_the_sweep(result, one_sweep(divergence=1e3))


def test_none_marks_at_1e6_and_runs_to_the_end():
    result = one_train(divergence=None)  # 9^6 = 531441 <= 1e6 < 9^7
    assert result.diverged and result.diverged_step == 7 and result.diverged_loss == 9.0**7
    np.testing.assert_allclose(result.epoch_loss, POWERS, rtol=1e-13)
    np.testing.assert_allclose(result.params, 0.5 * (-3.0) ** EPOCHS * np.ones(2), rtol=1e-15)
    assert result.state is not None and result.state.step == EPOCHS
    assert_train_is_the_sweep(result, one_sweep(divergence=None))
    # train's default
    np.testing.assert_array_equal(one_train().epoch_loss, result.epoch_loss)
    assert one_train().diverged_step == 7


def test_nonfinite_marks_only_an_overflow_and_runs_to_the_end():
    result = one_train(divergence="nonfinite")  # 9^10 is finite
    assert not result.diverged and result.diverged_step == -1
    np.testing.assert_allclose(result.epoch_loss, POWERS, rtol=1e-13)
    assert_train_is_the_sweep(result, one_sweep(divergence="nonfinite"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        far = one_train(lr=1e3, epochs=60, divergence="nonfinite")
    assert far.diverged and far.diverged_step == 43 and far.diverged_loss == np.inf
    assert not np.isfinite(far.epoch_loss[44:]).any()  # went on: overflowed, not stopped (not NaN-filled)
    assert far.state is not None and far.state.step == 60
    # the parameters 0.5 (-3999)^60 ~ 6.5e215 stay finite while the loss, their square, overflows
    np.testing.assert_allclose(far.params, 0.5 * (-3999.0) ** 60 * np.ones(2), rtol=1e-12)
    assert_train_is_the_sweep(far, one_sweep(lr=1e3, epochs=60, divergence="nonfinite"))


def test_growth_reads_the_outcome_and_stops_only_at_an_overflow():
    # lr 1: the loss grows 9x per epoch (diverged, never marked); lr 0.5 flips the parameters
    # at a constant loss (converged, by the loss alone); lr 0.125 quarters it (converging).
    for lr, outcome in ((1.0, "diverged"), (0.5, "converged"), (0.125, "converging")):
        result = one_train(lr=lr, divergence="growth")
        assert result.outcome == outcome and result.diverged == (outcome == "diverged")
        assert result.diverged_step == -1 and np.isfinite(result.epoch_loss).all()
        assert_train_is_the_sweep(result, one_sweep(lr=lr, divergence="growth"))
    assert "its loss grows" in repr(one_train(divergence="growth"))
    far = one_train(lr=1e3, epochs=60, divergence="growth")
    assert far.diverged and far.diverged_step == 43 and far.diverged_loss == np.inf
    assert np.isinf(far.epoch_loss[43]) and np.isnan(far.epoch_loss[44:]).all()  # stopped there
    np.testing.assert_allclose(far.params, 0.5 * (-3999.0) ** 43 * np.ones(2), rtol=1e-13)
    assert_train_is_the_sweep(far, one_sweep(lr=1e3, epochs=60))  # the sweep's default


def test_a_run_stopped_mid_epoch_is_the_sweep_run_and_its_tracks_end_there():
    # Per-sample SGD on the tutorial at lr 0.1 crosses 1e6 x in the middle of an epoch.
    model = gdsim.Linear(1, 1)
    X, Y = gdsim.datasets.tutorial_line(seed=0)
    kw = dict(epochs=3, batch_size=1, params0=[-10.0, -20.0])
    track = {"loss": 1, "batch_loss": 1}
    going = gdsim.train(model, X, Y, gdsim.SGD(lr=0.1), record_params=True, track=track, divergence=None, **kw)
    stopped = gdsim.train(model, X, Y, gdsim.SGD(lr=0.1), record_params=True, track=track, divergence=1e6, **kw)
    d = going.diverged_step
    assert d % 100 != 0 and stopped.diverged_step == d and stopped.diverged_loss == going.diverged_loss
    np.testing.assert_array_equal(stopped.params, going.params_history[d])
    np.testing.assert_array_equal(stopped.step_loss[:d + 1], going.step_loss[:d + 1])
    assert np.isnan(stopped.step_loss[d + 1:]).all()
    np.testing.assert_array_equal(stopped.epoch_loss[:d // 100 + 1], going.epoch_loss[:d // 100 + 1])
    assert np.isnan(stopped.epoch_loss[d // 100 + 1:]).all()
    loss, batch = stopped.tracks.loss.values, stopped.tracks.batch_loss.values
    np.testing.assert_array_equal(loss[:d + 1], going.tracks.loss.values[:d + 1])  # up to its final parameters
    np.testing.assert_array_equal(batch[:d], going.step_loss[:d])  # the batches whose update was made
    assert np.isnan(loss[d + 1:]).all() and np.isnan(batch[d:]).all()
    ds = gdsim.sweep(model, X, Y, lr=0.1, target="cpu", divergence=1e6, track=track, **kw)
    assert_train_is_the_sweep(stopped, ds)
    np.testing.assert_array_equal(ds.track_loss.values, loss)
    np.testing.assert_array_equal(ds.track_batch_loss.values, batch)


def test_a_study_file_means_the_same_for_both_runners(tmp_path):
    grid = textwrap.dedent("""
        [train]
        lr = [0.01, 0.1, 0.2]
        batch_size = [1, 7]
        epochs = 4
        params0 = [-10.0, -20.0]
        """)
    header = 'title = "t"\nfigure = "lr_batch"\n'
    for value, marked in (("1e6", True), ('"growth"', False), ('"nonfinite"', False), ('"none"', True)):
        results = {}
        for runner in ("sweep", "train"):
            path = tmp_path / f"{runner}.toml"
            path.write_text(header + f'runner = "{runner}"\n' + LINE_STUDY + grid + f"divergence = {value}\n")
            results[runner] = run_study(load_study(path), target="cpu") if runner == "sweep" else run_study(
                load_study(path))
        for name in ("loss", "params", "diverged_step", "diverged_loss", "diverged", "outcome"):
            np.testing.assert_array_equal(results["train"][name].values, results["sweep"][name].values,
                                          err_msg=f"{name} with divergence = {value}")
        assert results["train"].attrs["stop_diverged"] == results["sweep"].attrs["stop_diverged"]
        assert bool((results["sweep"].diverged_step >= 0).any()) == marked, value


# ---------------------------------------------------------------------------------------
# Bad values
# ---------------------------------------------------------------------------------------
ACCEPTED = "divergence must be 'growth', a number > 1 (a factor of the initial loss), 'nonfinite' or None"


@pytest.mark.parametrize("bad, hint", [(1.0, ""), (0, ""), (-5, ""), (math.nan, ""), (True, ""), ([1e6], ""),
                                       ("grwoth", " (did you mean 'growth'?)"), ("Nonfinite", " (did you mean 'nonfinite'?)"),
                                       ("none", " (did you mean None?)")])
def test_bad_divergence_names_the_argument_and_the_values(bad, hint):
    model, X, Y = ONE
    for call in (lambda: one_train(divergence=bad), lambda: one_sweep(divergence=bad)):
        with pytest.raises(gdsim.ParameterError) as error:
            call()
        assert error.value.param == "divergence"
        assert str(error.value) == f"{ACCEPTED}, got {bad!r}{hint}"


def test_a_bad_study_divergence_names_the_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('title = "t"\nfigure = "lr_batch"\n' + LINE_STUDY + '[train]\nlr = [0.1, 0.2]\nepochs = 1\n'
                    'batch_size = [1, 5]\ndivergence = "nonfinte"\n')
    with pytest.raises(gdsim.studies.StudyError, match=r'\[train\] divergence: must be "growth", a number > 1 \(a '
                       r'factor of the initial loss\), "nonfinite" or "none", got \'nonfinte\' \(did you mean '
                       r"'nonfinite'\?\)"):
        load_study(path)


# ---------------------------------------------------------------------------------------
# train(divergence_factor=...): deprecated, the old results
# ---------------------------------------------------------------------------------------
def same_bits(a, b):
    for name in ("epoch_loss", "step_loss", "params", "params_history", "diverged_step", "diverged_loss"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.diverged == b.diverged and a.state.step == b.state.step
    np.testing.assert_array_equal(a.state.params, b.state.params)


@pytest.mark.parametrize("old, new, says", [(None, "nonfinite", "divergence_factor=None is divergence='nonfinite'"),
                                            (1e6, None, "divergence_factor=1000000.0 is divergence=None")])
def test_divergence_factor_warns_and_gives_the_same_run_as_the_new_name(old, new, says):
    for lr, epochs in ((1.0, EPOCHS), (1e3, 60)):
        with pytest.warns(DeprecationWarning, match="divergence_factor") as caught:
            deprecated = one_train(lr=lr, epochs=epochs, divergence_factor=old)
        assert len(caught) == 1 and caught[0].filename == __file__  # the caller's line
        assert says in str(caught[0].message)
        same_bits(deprecated, one_train(lr=lr, epochs=epochs, divergence=new))


def test_divergence_factor_number_keeps_running_to_the_end():
    with pytest.warns(DeprecationWarning, match="divergence=100, which marks the same step and also stops the run"):
        old = one_train(divergence_factor=100)
    assert old.diverged and old.diverged_step == 3  # 9^2 = 81 <= 100 < 9^3
    np.testing.assert_allclose(old.epoch_loss, POWERS, rtol=1e-13)  # not stopped, as before
    new = one_train(divergence=100)
    assert new.diverged_step == 3 and np.isnan(new.epoch_loss[4:]).all()
    with pytest.warns(DeprecationWarning):  # below 1, as before (not a divergence value)
        assert one_train(divergence_factor=0.5).diverged_step == 0  # 1 > 0.5 x 1


def test_divergence_factor_with_divergence_or_a_bad_value_is_refused_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(gdsim.ParameterError, match="give divergence or divergence_factor") as error:
            one_train(divergence=10, divergence_factor=10)
        assert "divergence=10" in str(error.value) and "divergence_factor=10" in str(error.value)
        with pytest.raises(gdsim.ParameterError, match=r"divergence_factor must be a number > 0 \(or None\), got 0"):
            one_train(divergence_factor=0)
