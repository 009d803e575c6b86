"""The documentation builds with warnings as errors, and what it says holds.

``docs/`` is built by Sphinx (autodoc + numpydoc over the docstrings) into a temporary
folder; the first-hour page's code runs, with the numbers its comments quote checked
against plain NumPy; the study-file schema page names every key a study file accepts.
"""

import pathlib
import re
import subprocess
import sys
import textwrap

import numpy as np

ROOT = pathlib.Path(__file__).parents[1]
DOCS = ROOT / "docs"


def test_docs_build_without_warnings(tmp_path):
    out = tmp_path / "html"
    before = sorted(DOCS.rglob("*"))
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           "-d", str(tmp_path / "doctrees"), str(DOCS), str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, f"sphinx failed ({done.returncode}); pip install '.[docs]'?\n{done.stdout}\n{done.stderr}"
    assert sorted(DOCS.rglob("*")) == before  # nothing written into the checkout
    api = (out / "api" / "gdsim.html").read_text()
    for name in ("gdsim.sweep", "gdsim.train", "gdsim.SGD", "gdsim.Linear", "gdsim.MLP", "gdsim.epoch_lrs"):
        assert f'id="{name}"' in api, name
    # the gallery is README's, every figure of it shown
    readme = (ROOT / "README.md").read_text().split("\n## Gallery\n", 1)[1].split("\n## ", 1)[0]
    gallery = (out / "gallery.html").read_text()
    figures = re.findall(r"\(figures/(\w+\.png)\)", readme)
    assert len(figures) >= 13 and all(f'src="_images/{name}"' in gallery for name in figures)
    assert "Polyak" in gallery and "<code" in gallery and "`" not in re.sub(r"<[^>]+>", "", gallery.split("<body", 1)[1])
    # a function citing its module's references shows them
    theory = (out / "api" / "theory.html").read_text()
    polyak = theory.split('id="gdsim.theory.polyak"', 1)[1].split('<dt class="sig', 1)[0]
    assert "Some methods of speeding up the convergence" in polyak


def test_schema_page_names_every_key_a_study_file_accepts():
    from gdsim.studies import schema

    page = (DOCS / "study_files.rst").read_text()
    assert ".. automodule:: gdsim.studies" in page
    import gdsim.studies

    documented = gdsim.studies.__doc__
    keys = (schema.TOP_KEYS | schema.MODEL_KEYS["linear"] | schema.MODEL_KEYS["mlp"] | schema.TRAIN_KEYS
            | schema.FILE_KEYS | {"name"} | set(schema.GRID_FUNCTIONS) | set(schema.RUNNERS))
    missing = sorted(key for key in keys if not re.search(rf"\b{key}\b", documented))
    assert not missing, f"gdsim.studies' docstring (the schema page) does not name {missing}"


def code_blocks(path):
    """``[(language, code), ...]`` of an .rst page's code-block directives, in order."""
    found = re.findall(r"^\.\. code-block:: (\w+)\n\n((?:(?:   .*)?\n)+)", path.read_text(), re.M)
    return [(language, textwrap.dedent(code)) for language, code in found]


def epoch_radius(X, lr, batch_size):
    """Spectral radius of one epoch of SGD on least squares (MSE mean, data order), in NumPy."""
    A = np.column_stack([X[:, 0], np.ones(len(X))])
    M = np.eye(2)
    for start in range(0, len(A), batch_size):
        a = A[start:start + batch_size]
        M = (np.eye(2) - lr * 2 / len(a) * a.T @ a) @ M
    return np.abs(np.linalg.eigvals(M)).max()


def test_first_hour_code_runs_and_says_true_things(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from gdsim import cli

    blocks = code_blocks(DOCS / "first_hour.rst")
    python = [code for language, code in blocks if language == "python"]
    (toml,) = [code for language, code in blocks if language == "toml"]
    assert [language for language, _ in blocks] == ["bash", "bash", "python", "python", "python", "toml", "bash",
                                                    "python", "bash", "python"]
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for code in python[:3]:
        exec(code, namespace)
    ds, X, model = namespace["ds"], namespace["X"], namespace["model"]
    assert ds.sizes == {"lr": 40, "batch_size": 3, "epoch": 31, "param": 2}
    # every run diverged exactly where its epoch map expands (NumPy, independently of gdsim)
    radius = np.array([[epoch_radius(X, lr, int(b)) for b in ds.batch_size] for lr in ds.lr.values])
    assert np.array_equal(ds.diverged.values, radius > 1)
    # the numbers the comments quote: "per batch size: 0.1369, 0.1369, 0.1254" and "# 0.1265, 0.1277, 0.1200: where
    # one epoch's map stops contracting, between the last stable lr of the grid and the first diverged one"
    quoted = [[float(x) for x in re.findall(r"\d\.\d{4}", line)] for line in python[1].splitlines()[:3]]
    assert namespace["first_diverged"].round(4).values.tolist() == quoted[0] == [0.1369, 0.1369, 0.1254]
    edge = namespace["edge"]
    assert np.round(edge, 4).tolist() == quoted[2] == [0.1265, 0.1277, 0.1200]
    for lr, b in zip(edge, ds.batch_size.values):
        assert abs(epoch_radius(X, lr, int(b)) - 1) < 1e-4  # the bisection's tolerance
        stable = ds.lr.values[radius[:, list(ds.batch_size.values).index(b)] < 1]
        assert stable[stable < lr].max() < lr < ds.lr.values[ds.lr.values > lr].min()
    assert namespace["fig"].axes and (tmp_path / "final_loss.png").stat().st_size > 10_000

    (tmp_path / "batch_sizes.toml").write_text(toml)
    assert cli.main(["run", "batch_sizes.toml", "-q"]) == 0
    assert (tmp_path / "figures" / "batch_sizes.png").stat().st_size > 10_000
    exec(python[3], namespace)
    study = namespace["study"]
    assert np.array_equal(study.loss.values, ds.loss.values, equal_nan=True)  # the study is the sweep

    exec(python[4], namespace)  # on a LocalCluster: the same bits
    assert np.array_equal(namespace["on_cluster"].loss.values, ds.loss.values, equal_nan=True)
    import matplotlib.pyplot as plt

    plt.close("all")  # xarray's plot went through pyplot
