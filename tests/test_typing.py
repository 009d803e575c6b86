"""gdsim's annotations hold: mypy over gdsim/ (settings in pyproject.toml) finds nothing,
and the package says it is typed (PEP 561's py.typed)."""

import inspect
import pathlib

import pytest

import gdsim

ROOT = pathlib.Path(__file__).parents[1]


def test_mypy_finds_no_error_in_gdsim():
    api = pytest.importorskip("mypy.api")
    out, err, status = api.run(["--config-file", str(ROOT / "pyproject.toml"), str(ROOT / "gdsim"),
                                "--cache-dir", str(ROOT / ".mypy_cache")])
    assert status == 0, out + err


def entry_points():
    """The public functions users call, whose signatures must be annotated."""
    from gdsim import batches, outcomes, studies, tracks
    from gdsim.sweeps import store

    theory = [getattr(gdsim.theory, name) for name in gdsim.theory.__all__]
    return [gdsim.sweep, gdsim.train, gdsim.SGD.__init__, gdsim.MLP.__init__, gdsim.Linear.__init__,
            gdsim.epoch_lrs, gdsim.plot.heatmap, gdsim.plot.final, gdsim.plot.curves,
            gdsim.plot.trajectories, gdsim.plot.auto, gdsim.datasets.tutorial_line,
            gdsim.datasets.teacher_mlp, gdsim.datasets.random_regression, gdsim.datasets.blobs,
            gdsim.datasets.load_table, gdsim.datasets.load_arrays,
            *[f for f in theory if inspect.isfunction(f)],
            outcomes.classify, outcomes.cf_attrs, outcomes.check_divergence, outcomes.document_divergence,
            tracks.check_track, tracks.measured_steps, tracks.tracks_dataset,
            batches.check_shuffle, batches.batch_orders, batches.batch_bounds, batches.steps_per_epoch,
            studies.load_study, studies.find_studies, studies.run_study, studies.run_studies,
            studies.load_dataset, studies.read_attrs, studies.regions_saved,
            store.chunk_shape, store.plan_regions, store.data_digest, store.fill, store.ResultStore.__init__,
            store.ResultStore.open]


def test_the_package_is_marked_typed_and_the_entry_points_are_annotated():
    assert (pathlib.Path(gdsim.__file__).parent / "py.typed").is_file()
    functions = entry_points()
    assert len([f for f in functions if f.__module__.startswith("gdsim.theory")]) >= 19  # every function of theory
    for function in functions:
        signature = inspect.signature(function)
        missing = [name for name, p in signature.parameters.items()
                   if name != "self" and p.annotation is inspect.Parameter.empty]
        assert not missing and signature.return_annotation is not inspect.Signature.empty, (function, missing)
