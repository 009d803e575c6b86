"""gdsim.SGD: torch's validation messages and torch's update rule."""

import re

import numpy as np
import pytest

import gdsim
import naive


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": -1.0}, "Invalid learning rate: -1.0"),
    ({"lr": -1}, "Invalid learning rate: -1"),
    ({"lr": 0.1, "momentum": -0.5}, "Invalid momentum value: -0.5"),
    ({"lr": 0.1, "weight_decay": -0.1}, "Invalid weight_decay value: -0.1"),
    ({"lr": 0.1, "nesterov": True}, "Nesterov momentum requires a momentum and zero dampening"),
    ({"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "nesterov": True},
     "Nesterov momentum requires a momentum and zero dampening"),
])
def test_torch_error_messages(kwargs, message):
    # torch's own tests match these with assertRaisesRegex: the message starts the same way.
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        gdsim.SGD(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": float("nan")}, "Invalid learning rate: nan (lr must be a finite real number)"),
    ({"lr": float("inf")}, "Invalid learning rate: inf (lr must be a finite real number)"),
    ({"lr": "0.1"}, "Invalid learning rate: '0.1' (lr must be a finite real number)"),
    ({"lr": 0.1, "momentum": None}, "Invalid momentum value: None (momentum must be a finite real number)"),
    ({"lr": 0.1, "dampening": float("nan")}, "Invalid dampening value: nan (dampening must be a finite real number)"),
    ({"lr": 0.1, "weight_decay": True}, "Invalid weight_decay value: True (weight_decay must be a finite real number)"),
    ({"lr": 0.1, "nesterov": 1}, "nesterov must be True or False, got 1"),
    ({"lr": 0.1, "maximize": "yes"}, "maximize must be True or False, got 'yes'"),
])
def test_values_torch_lets_through_are_refused(kwargs, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        gdsim.SGD(**kwargs)


def test_defaults_are_torchs():
    opt = gdsim.SGD()
    assert opt.describe() == {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0,
                              "nesterov": False, "maximize": False}
    assert eval("gdsim." + repr(opt)).describe() == opt.describe()


CONFIGS = [
    {"lr": 1e-3}, {"lr": 1e-2}, {"lr": 1e-3, "weight_decay": 0.5}, {"lr": 1e-3, "momentum": 0.9},
    {"lr": 1e-3, "weight_decay": 0.1, "maximize": True}, {"lr": 1e-3, "momentum": 0.9, "dampening": 0.5},
    {"lr": 1e-3, "momentum": 0.9, "weight_decay": 0.1},
    {"lr": 1e-3, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
]


@pytest.mark.parametrize("config", CONFIGS)
def test_step_follows_torch_update_rule(config):
    rng = np.random.default_rng(0)
    opt = gdsim.SGD(**config)
    p = rng.standard_normal(7)
    ref, ref_buf, buf = p.copy(), None, None
    for _ in range(4):
        g = rng.standard_normal(7)
        buf = opt.step(p, g, buf)
        ref, ref_buf = naive.sgd_step(ref, g, ref_buf, **config)
        np.testing.assert_allclose(p, ref, rtol=1e-14, atol=1e-16)
    assert (buf is None) == (config.get("momentum", 0) == 0)


def test_first_step_sets_buffer_to_gradient_without_dampening():
    opt = gdsim.SGD(lr=1.0, momentum=0.9, dampening=0.5)
    p = np.zeros(2)
    buf = opt.step(p, np.array([1.0, 2.0]))
    np.testing.assert_array_equal(buf, [1.0, 2.0])  # not (1 - dampening) * g
    opt.step(p, np.array([1.0, 2.0]), buf)
    np.testing.assert_allclose(buf, [0.9 * 1 + 0.5 * 1, 0.9 * 2 + 0.5 * 2])


def test_step_rejects_arrays_it_cannot_update_in_place():
    opt = gdsim.SGD(lr=0.1)
    with pytest.raises(ValueError, match="params must be a writeable, C-contiguous float64"):
        opt.step(np.zeros(3, dtype=np.float32), np.zeros(3))
    with pytest.raises(ValueError, match=re.escape("grad must have the shape of params (3,), got (2,)")):
        opt.step(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="momentum_buffer must be the array returned by the previous step"):
        opt.step(np.zeros(3), np.zeros(3), [0.0, 0.0, 0.0])
