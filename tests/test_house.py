"""The house: one picklable spec, one rule table, one target registry, and the layout rules
(module size, kernel signatures, no private names across modules, no import cycles)."""

import ast
import concurrent.futures
import dataclasses
import multiprocessing
import pathlib
import pickle
import re
import textwrap

import numpy as np
import pytest

import gdsim
from gdsim import sweeps
from gdsim._validate import ParameterError
from gdsim.batches import batch_bounds, steps_per_epoch
from gdsim.optim import HYPER_PARAMETERS, NESTEROV_RULE
from gdsim.studies import StudyError, load_study, run_study
from gdsim.sweeps.targets import TARGETS
from gdsim.sweeps.targets import cpu as cpu_target

PACKAGE = pathlib.Path(gdsim.__file__).parent


def mlp_spec(target="cpu"):
    X, Y = gdsim.datasets.teacher_mlp(n=24, sizes=(3, 4, 1), seed=1)
    return sweeps.check_sweep(gdsim.MLP((3, 4, 1), activation="tanh"), X, Y, lr=[0.01, 0.1, 0.5],
                              momentum=[0.0, 0.9], batch_size=[5, 24], seed=[0, 3], epochs=4, shuffle=True,
                              target=target)


# ---------------------------------------------------------------------------------------
# One spec
# ---------------------------------------------------------------------------------------
def test_sweep_spec_is_frozen_and_holds_no_callable():
    spec = mlp_spec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.target = "cuda"
    for field in dataclasses.fields(spec):
        assert not callable(getattr(spec, field.name)) or field.name == "model", field.name


def test_sweep_spec_pickles():
    spec = mlp_spec()
    back = pickle.loads(pickle.dumps(spec))
    assert back.shape == spec.shape == (3, 2, 1, 1, 1, 2, 2)
    assert back.dims == ("lr", "momentum", "batch_size", "seed")
    for name in sweeps.AXES:
        np.testing.assert_array_equal(back.values[name], spec.values[name])
    np.testing.assert_array_equal(back.X, spec.X)
    assert repr(back.model) == repr(spec.model)


def test_a_spec_runs_in_another_process_to_the_same_bits():
    spec = mlp_spec()
    runs = np.arange(spec.n_configs)
    here = sweeps.run_points(spec, runs)
    # spawn: a fresh interpreter that receives the spec by pickle, as a cluster worker would
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        there = pool.submit(sweeps.run_points, spec, runs).result(timeout=300)
    assert set(there) == set(here)
    for key in here:
        assert there[key].dtype == here[key].dtype
        np.testing.assert_array_equal(there[key], here[key], err_msg=key)


def test_with_target_checks_the_registry():
    spec = mlp_spec()
    assert spec.with_target("parallel").target == "parallel"
    assert spec.target == "cpu"  # unchanged: a new spec
    with pytest.raises(ParameterError, match=r"^target must be one of \['cpu', 'cuda', 'parallel'\], got 'gpu'") as info:
        spec.with_target("gpu")
    assert info.value.param == "target"


def test_registry_names_are_the_cli_choices():
    from gdsim import cli

    with pytest.raises(SystemExit):
        cli.main(["run", "x.toml", "--target", "gpu"])
    assert set(TARGETS) == {"cpu", "parallel", "cuda"}
    assert TARGETS["cpu"].family == TARGETS["parallel"].family != TARGETS["cuda"].family


STUDY = """
title = "small"
figure = "heatmap"
[model]
type = "mlp"
sizes = [3, 2, 1]
[data]
name = "teacher_mlp"
n = 16
sizes = [3, 2, 1]
[train]
lr = [0.01, 0.1]
momentum = [0.0, 0.5]
epochs = 2
"""


@pytest.fixture
def small_study(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(textwrap.dedent(STUDY))
    return load_study(path)


def test_run_study_refuses_an_unknown_target_before_any_work(small_study, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the kernel ran before the target was checked")

    monkeypatch.setattr(cpu_target, "run_plan", fail)
    with pytest.raises(ParameterError, match=r"^target must be one of \['cpu', 'cuda', 'parallel'\], got 'gpu'"):
        run_study(small_study, target="gpu")


def test_run_study_records_the_target_it_ran_on(small_study):
    assert small_study.target == "parallel"
    ds = run_study(small_study, target="cpu")
    assert ds.attrs["target"] == "cpu"
    assert small_study.target == "parallel"  # the study itself is unchanged


# ---------------------------------------------------------------------------------------
# One rule table, errors that carry their parameter
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["lr", "momentum", "weight_decay", "dampening"])
@pytest.mark.parametrize("bad", [-0.5, np.nan])
def test_sgd_sweep_and_theory_refuse_the_same_values(name, bad):
    if bad < 0 and HYPER_PARAMETERS[name].minimum is None:
        pytest.skip("any finite value is accepted")
    model = gdsim.Linear(1, 1)
    X, Y = gdsim.datasets.tutorial_line()
    settings = {"lr": 0.01, name: bad}
    calls = [lambda: gdsim.SGD(**settings),
             lambda: sweeps.check_sweep(model, X, Y, epochs=1, **settings),
             lambda: gdsim.theory.epoch_spectral_radius(model, X, **settings)]
    for call in calls:
        with pytest.raises(ParameterError) as info:
            call()
        assert info.value.param == name


def test_the_nesterov_rule_is_torchs_everywhere():
    model = gdsim.Linear(1, 1)
    X, Y = gdsim.datasets.tutorial_line()
    for call in (lambda: gdsim.SGD(lr=0.1, nesterov=True),
                 lambda: sweeps.check_sweep(model, X, Y, lr=0.1, epochs=1, nesterov=[False, True]),
                 lambda: gdsim.SGD(lr=0.1, momentum=0.9, dampening=0.5, nesterov=True)):
        with pytest.raises(ParameterError, match="^" + re.escape(NESTEROV_RULE)) as info:
            call()
        assert info.value.param == "nesterov"
    # theory allows momentum 0 (plain GD, the limit of its formulas), never dampening
    assert gdsim.theory.critical_lr(4.0, 0.0, nesterov=True) == 0.5
    with pytest.raises(ParameterError, match="dampening 0"):
        gdsim.theory.critical_lr(4.0, 0.5, dampening=0.1, nesterov=True)


@pytest.mark.parametrize("line, key", [
    ("momentum = [0.0, -0.5]", "[train] momentum"),
    ("nesterov = true", "[train] nesterov"),
    ("lr_schedule = ['cosine', 0, 0.0]", "[train] lr_schedule"),
    ("dtype = 'float16'", "[train] dtype"),
])
def test_study_errors_name_the_key_from_the_parameter(tmp_path, line, key):
    text = textwrap.dedent(STUDY).replace("momentum = [0.0, 0.5]", "") + line + "\n"
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(StudyError, match=re.escape(f"{path}: {key}: ")):
        load_study(path)


# ---------------------------------------------------------------------------------------
# One model description, one batch-slicing rule
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("model, least_squares, line", [
    (gdsim.Linear(1, 1), True, True),
    (gdsim.Linear(1, 1, reduction="sum"), True, True),
    (gdsim.Linear(2, 1), True, False),
    (gdsim.Linear(1, 3), True, False),
    (gdsim.Linear(1, 2, loss="cross_entropy"), False, False),
    (gdsim.MLP((1, 1, 1), activation="identity"), False, False),
    (gdsim.Linear(1, 1, bias=False), True, False),
    (gdsim.Linear(1, 1, parameterization="ntk"), True, False),
    (gdsim.Linear(1, 1, reduction="half_mean"), True, False),
    (gdsim.Linear(1, 1, init_scale=0.5), True, True),  # the initial scale is the host's: same kernels
])
def test_model_spec_predicates(model, least_squares, line):
    assert model.spec.is_least_squares is least_squares
    assert bool(model.spec.is_line) is line
    sizes, activation, loss, reduction, layer_code = model.spec
    np.testing.assert_array_equal(sizes, model.sizes)
    assert (activation, loss, reduction) == (model.activation_code, model.loss_code, model.reduction_code)
    assert layer_code == model.layer_code and model.spec.bias is model.bias


@pytest.mark.parametrize("n, batch_size", [(10, 1), (10, 3), (10, 5), (10, 10), (7, 4), (1, 1)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_batch_bounds_follow_the_data_loader(n, batch_size, drop_last):
    # torch's DataLoader: n // B full batches, then the remainder unless drop_last
    full = [(k * batch_size, (k + 1) * batch_size) for k in range(n // batch_size)]
    rest = [] if drop_last or n % batch_size == 0 else [(n - n % batch_size, n)]
    assert batch_bounds(n, batch_size, drop_last) == full + rest
    assert steps_per_epoch(n, batch_size, drop_last) == len(full + rest)


# ---------------------------------------------------------------------------------------
# Layout rules
# ---------------------------------------------------------------------------------------
MODULES = sorted(PACKAGE.rglob("*.py"))


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(path, node):
    """The absolute names a module-level ``from ... import`` brings in."""
    base = module_name(path).split(".")
    if path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - node.level + 1] if node.level else []
    prefix = ".".join(base + ([node.module] if node.module else []))
    return prefix, [alias.name for alias in node.names]


def test_no_module_is_over_500_lines():
    long = {module_name(p): n for p in MODULES if (n := len(p.read_text().splitlines())) > 500}
    assert not long


def test_kernel_signatures_are_short():
    too_long = []
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and (
                    any(ast.unparse(d) in ("jit", "jit_inline") for d in node.decorator_list)
                    or path.name.startswith(("cpu", "cuda"))):
                n = len(node.args.args) + len(node.args.kwonlyargs)
                if n > 12:
                    too_long.append(f"{module_name(path)}.{node.name}: {n}")
    assert not too_long


def test_no_private_name_is_imported_from_another_module():
    found = []
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                found += [f"{module_name(path)}: {a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__") and a.name not in ("_jit",)]
    assert not found


def test_imports_have_no_cycle():
    # Imports inside functions count too: a circle closed at run time is still a circle.
    names = {module_name(p) for p in MODULES}
    graph = {}
    for path in MODULES:
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                prefix, imported = resolve(path, node)
                for name in imported:
                    deps.add(f"{prefix}.{name}" if f"{prefix}.{name}" in names else prefix)
        graph[module_name(path)] = {d for d in deps if d in names and d != module_name(path)}

    def package_of(name):  # importing a.b.c runs a/__init__ and a/b/__init__ first
        return {".".join(name.split(".")[:k]) for k in range(1, name.count(".") + 1)}

    state = {}

    def visit(node, stack):
        state[node] = "open"
        for dep in graph[node]:
            if dep in package_of(node):
                continue  # a module importing names from its own package's __init__ while it runs
            if state.get(dep) == "open":
                raise AssertionError(" -> ".join(stack + [node, dep]))
            if dep not in state:
                visit(dep, stack + [node])
        state[node] = "done"

    for name in graph:
        if name not in state:
            visit(name, [])
