"""Data files: .npz, .npy pairs and text tables read to the same arrays, run as studies,
and every file that does not fit refused naming the file, the key and what was expected."""

import pathlib
import re
import textwrap

import numpy as np
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from gdsim._validate import ParameterError
from gdsim.datasets import load_arrays, load_table
from gdsim.studies import StudyError, load_study, run_study

RNG = np.random.default_rng(3)
X = np.round(RNG.standard_normal((30, 2)), 6)  # rounded: a table's text holds them exactly
Y = np.round(X @ [[1.5], [-2.0]] + 0.1 * RNG.standard_normal((30, 1)), 6)
ROWS = np.hstack([X, Y])

HEAD = 'title = "data files"\nfigure = "final"\n[model]\ntype = "linear"\nn_in = 2\nn_out = 1\n'
TRAIN = '[train]\nlr = [0.01, 0.1]\nepochs = 2\n'


def _csv(rows, delimiter=",", header="a,b,y"):
    lines = [header] if header is not None else []
    return "\n".join(lines + [delimiter.join(repr(float(v)) for v in row) for row in rows]) + "\n"


# what to write (file name -> text, bytes or array), and the [data] table that reads X, Y
FORMATS = {
    "npz": ({"d.npz": ("npz", X, Y)}, 'file = "d.npz"'),
    "npy pair": ({"X.npy": X, "Y.npy": Y[:, 0]}, 'file = "X.npy"\ny_file = "Y.npy"'),
    "csv names": ({"d.csv": _csv(ROWS)}, 'file = "d.csv"\nx_columns = ["a", "b"]\ny_columns = ["y"]'),
    "csv names reordered": ({"d.csv": _csv(ROWS[:, [2, 1, 0]], header="y, b ,a")},
                            'file = "d.csv"\nx_columns = ["a", "b"]\ny_columns = ["y"]'),
    "csv indices": ({"d.csv": _csv(ROWS, header=None)}, 'file = "d.csv"\nx_columns = [0, 1]\ny_columns = [2]'),
    "csv indices header": ({"d.csv": _csv(ROWS)},
                           'file = "d.csv"\nx_columns = [0, 1]\ny_columns = [2]\nheader = true'),
    "tsv": ({"d.tsv": _csv(ROWS, "\t", "a\tb\ty")}, 'file = "d.tsv"\nx_columns = ["a", "b"]\ny_columns = ["y"]'),
    "txt comments skip_rows": ({"d.txt": "made by hand\n# a comment\na b  y\n\n" + _csv(ROWS, "  ", None)},
                               'file = "d.txt"\nx_columns = ["a", "b"]\ny_columns = ["y"]\nskip_rows = 1'),
    "semicolons": ({"d.data": _csv(ROWS, ";", "a;b;y")},
                   'file = "d.data"\ndelimiter = ";"\nx_columns = ["a", "b"]\ny_columns = ["y"]'),
}


def _write(folder, files):
    for name, content in files.items():
        path = folder / name
        if isinstance(content, tuple):
            with open(path, "wb") as handle:  # np.savez would add .npz to another name
                np.savez(handle, X=content[1], Y=content[2])
        elif isinstance(content, np.ndarray):
            np.save(path, content)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        elif content == "folder":
            path.mkdir()
        else:
            path.write_text(content)


def _study(folder, files, data, name="s"):
    _write(folder, files)
    path = folder / f"{name}.toml"
    path.write_text(HEAD + "[data]\n" + data + "\n" + TRAIN)
    return path


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_reads_the_arrays_written(fmt, tmp_path):
    study = load_study(_study(tmp_path, *FORMATS[fmt]))
    assert study.X.dtype == study.Y.dtype == np.float64
    np.testing.assert_array_equal(study.X, X)
    np.testing.assert_array_equal(study.Y, Y)


def test_the_helpers_return_float64_and_two_dimensional_targets(tmp_path):
    _write(tmp_path, {"X.npy": X.astype(np.float32), "Y.npy": np.arange(30), "d.csv": _csv(ROWS)})
    X1, Y1 = load_arrays(tmp_path / "X.npy", str(tmp_path / "Y.npy"))
    assert X1.dtype == Y1.dtype == np.float64 and Y1.shape == (30, 1)
    np.testing.assert_array_equal(X1, X.astype(np.float32))
    X2, Y2 = load_table(tmp_path / "d.csv", ["a"], ["y", "b"])
    np.testing.assert_array_equal(X2, X[:, :1])
    np.testing.assert_array_equal(Y2, ROWS[:, [2, 1]])


def test_studies_from_each_format_run_to_the_same_losses(tmp_path):
    losses = []
    for i, fmt in enumerate(("npz", "npy pair", "csv indices", "txt comments skip_rows")):
        folder = tmp_path / str(i)
        folder.mkdir()
        study = load_study(_study(folder, *FORMATS[fmt]))
        losses.append(run_study(study, target="cpu").loss.values)
    for loss in losses[1:]:
        np.testing.assert_array_equal(loss, losses[0])


@pytest.mark.parametrize("fmt", ["npy pair", "csv names"])
def test_the_study_hash_follows_every_data_file(fmt, tmp_path):
    files, data = FORMATS[fmt]
    path = _study(tmp_path, files, data)
    before = load_study(path)
    for name in files:
        changed = dict(files)
        changed[name] = files[name] * 2 if isinstance(files[name], np.ndarray) else files[name].replace("0.", "1.", 1)
        _write(tmp_path, changed)
        after = load_study(path)
        assert after.content_sha256 != before.content_sha256 and after.sha256 != before.sha256, name
        _write(tmp_path, files)
        assert load_study(path).content_sha256 == before.content_sha256


def test_a_classifier_reads_its_labels_from_a_table(tmp_path):
    labels = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    text = _csv(np.hstack([X, labels[:, None]]), header="a,b,label")
    path = tmp_path / "c.toml"
    (tmp_path / "c.csv").write_text(text)
    path.write_text(HEAD.replace("n_out = 1", 'n_out = 3\nloss = "cross_entropy"')
                    + '[data]\nfile = "c.csv"\nx_columns = ["a", "b"]\ny_columns = ["label"]\n' + TRAIN)
    study = load_study(path)
    np.testing.assert_array_equal(study.Y, labels)
    (tmp_path / "c.csv").write_text(text.replace(",1.0\n", ",1.5\n", 1))
    with pytest.raises(StudyError, match="needs integer class labels"):
        load_study(path)
    _write(tmp_path, {"X.npy": X, "Y.npy": labels})  # an .npy pair's labels, read as float64, too
    path.write_text(path.read_text().replace('file = "c.csv"\nx_columns = ["a", "b"]\ny_columns = ["label"]',
                                             'file = "X.npy"\ny_file = "Y.npy"'))
    np.testing.assert_array_equal(load_study(path).Y, labels)


CSV = {"d.csv": _csv(ROWS)}
NAMED = 'file = "d.csv"\nx_columns = ["a", "b"]\ny_columns = ["y"]'
BAD = {
    # files written, [data] table, what the message names besides the study file
    "missing csv": ({}, NAMED, ["[data] file", "d.csv", "No such file"]),
    "csv a folder": ({"d.csv": "folder"}, NAMED, ["[data] file", "d.csv", "is a folder, not a text table"]),
    "csv empty": ({"d.csv": ""}, NAMED, ["[data] file", "an empty file", "not a text table"]),
    "npz named csv": ({"d.csv": ("npz", X, Y)}, NAMED, ["[data] file", "d.csv", "is an .npz (zip) archive"]),
    "binary csv": ({"d.csv": b"\x01\x02\x00\xff" * 8}, NAMED, ["[data] file", "a binary file"]),
    "not utf-8": ({"d.csv": b"a,b,y\n\xff\xfe,1,2\n"}, NAMED, ["[data] file", "not UTF-8"]),
    "unknown column": (CSV, NAMED.replace('"y"]', '"Y"]'),
                       ["[data] y_columns", "d.csv", "no column 'Y'", "did you mean 'y'?", "'a', 'b', 'y'"]),
    "index out of range": ({"d.csv": _csv(ROWS, header=None)}, 'file = "d.csv"\nx_columns = [0, 3]\ny_columns = [2]',
                           ["[data] x_columns", "d.csv", "index 3 is out of range", "3 columns (0 to 2)"]),
    "header row read as numbers": (CSV, 'file = "d.csv"\nx_columns = [0, 1]\ny_columns = [2]',
                                   ["[data] x_columns", "line 1, column 0", "'a' is not a number", "header = true"]),
    "non-numeric cell": ({"d.csv": "a,b,y\n1.0,oops,2\n"}, NAMED,
                         ["[data] x_columns", "d.csv", "line 2, column 'b'", "'oops' is not a number"]),
    "empty cell": ({"d.csv": "a,b,y\n1,2,3\n4,,6\n"}, NAMED, ["[data] x_columns", "line 3, column 'b'", "'' is not"]),
    "ragged row": ({"d.csv": "a,b,y\n1,2,3\n4,5\n"}, NAMED,
                   ["[data] file", "d.csv", "line 3 has 2 cells, but the header has 3"]),
    "nan cell": ({"d.csv": "a,b,y\n1,2,3\n4,nan,6\n"}, NAMED,
                 ["[data] x_columns", "d.csv", "line 3, column 'b': 'nan' is not a finite number"]),
    "inf target": ({"d.csv": "a,b,y\n1,2,3\n4,5,-inf\n"}, NAMED,
                   ["[data] y_columns", "line 3, column 'y': '-inf' is not a finite"]),
    "csv read as txt": ({"d.txt": _csv(ROWS)}, NAMED.replace("d.csv", "d.txt"), ["[data] x_columns", "its columns: 'a,b,y'",
                                                       "is the delimiter right?"]),
    "header only": ({"d.csv": "a,b,y\n# nothing yet\n"}, NAMED, ["[data] file", "d.csv", "no data rows below its header"]),
    "blank table": ({"d.csv": "\n\n"}, NAMED, ["[data] file", "d.csv", "has no header row"]),
    "wrong x width": (CSV, NAMED.replace('["a", "b"]', '["a"]'), ["[data] file", "d.csv", "does not fit the model"]),
    "names without header": (CSV, NAMED + "\nheader = false", ["[data] header", "d.csv", "need header = true"]),
    "names and indices": (CSV, NAMED.replace('["y"]', "[2]"), ["[data] y_columns", "both be names or both"]),
    "column in x and y": (CSV, NAMED.replace('["y"]', '["b"]'), ["[data] y_columns", "['b']", "in both"]),
    "empty x_columns": (CSV, NAMED.replace('["a", "b"]', "[]"), ["[data] x_columns", "non-empty list"]),
    "negative index": (CSV, 'file = "d.csv"\nx_columns = [-1]\ny_columns = [2]', ["[data] x_columns", "integers >= 0"]),
    "no y_columns": (CSV, 'file = "d.csv"\nx_columns = ["a", "b"]', ["[data] y_columns", "needs x_columns and y_columns"]),
    "long delimiter": (CSV, NAMED + '\ndelimiter = ",,"', ["[data] delimiter", "one character"]),
    "skip_rows -1": (CSV, NAMED + "\nskip_rows = -1", ["[data] skip_rows", "integer >= 0"]),
    "header a string": (CSV, NAMED + '\nheader = "yes"', ["[data] header", "true or false"]),
    "unknown extension": ({"d.xlsx": "a"}, 'file = "d.xlsx"', ["[data] file", "d.xlsx", "unknown extension '.xlsx'",
                                                              ".npz, .npy (with y_file), .csv"]),
    "unknown key": (CSV, NAMED + "\nx_column = 1", ["[data] (file = ...)", "unknown key 'x_column'",
                                                    "did you mean 'x_columns'?"]),
    "x_columns for npz": ({"d.npz": ("npz", X, Y)}, 'file = "d.npz"\nx_columns = [0]',
                          ["[data] x_columns", "d.npz", "for text tables", "holds arrays X and Y"]),
    "y_file for csv": (CSV, NAMED + '\ny_file = "Y.npy"', ["[data] y_file", "d.csv is not one"]),
    "y_file without file": ({}, 'y_file = "Y.npy"', ["[data] y_file", "file = \"...\"", "missing"]),
    "x_columns without file": ({}, 'x_columns = [0]', ["[data] x_columns", "missing"]),
    "npy without y_file": ({"X.npy": X}, 'file = "X.npy"', ["[data] y_file", "X.npy", 'y_file = "Y.npy"']),
    "npy missing y_file": ({"X.npy": X}, 'file = "X.npy"\ny_file = "Y.npy"', ["[data] y_file", "Y.npy", "No such"]),
    "npy y_file a folder": ({"X.npy": X, "Y.npy": "folder"}, 'file = "X.npy"\ny_file = "Y.npy"',
                            ["[data] y_file", "Y.npy", "is a folder, not an .npy file"]),
    "npy y_file a csv": ({"X.npy": X, "Y.npy": "1\n2\n"}, 'file = "X.npy"\ny_file = "Y.npy"',
                         ["[data] y_file", "Y.npy", "is text (a CSV?), not an .npy array"]),
    "npy x an npz": ({"X.npy": ("npz", X, Y), "Y.npy": Y}, 'file = "X.npy"\ny_file = "Y.npy"',
                     ["[data] file", "X.npy", "is an .npz (zip) archive, not an .npy array"]),
    "npy rows differ": ({"X.npy": X, "Y.npy": Y[:10]}, 'file = "X.npy"\ny_file = "Y.npy"',
                        ["[data] y_file", "Y.npy", "has 10 rows, but", "X.npy (X) has 30"]),
    "npy strings": ({"X.npy": X, "Y.npy": np.array(["a"] * 30)}, 'file = "X.npy"\ny_file = "Y.npy"',
                    ["[data] y_file", "Y.npy", "holds <U1 values", "real numbers"]),
    "npy 3-d": ({"X.npy": X.reshape(30, 2, 1), "Y.npy": Y}, 'file = "X.npy"\ny_file = "Y.npy"',
                ["[data] file", "X.npy", "shape (30, 2, 1)", "(n,) or (n, columns)"]),
    "npy objects": ({"X.npy": np.array([{}] * 30, dtype=object), "Y.npy": Y}, 'file = "X.npy"\ny_file = "Y.npy"',
                    ["[data] file", "X.npy", "Python objects"]),
    "npy truncated": ({"X.npy": b"\x93NUMPY\x01\x00", "Y.npy": Y}, 'file = "X.npy"\ny_file = "Y.npy"',
                      ["[data] file", "X.npy", "cannot read it as an .npy array"]),
    "npy inf": ({"X.npy": np.where(X > 1, np.inf, X), "Y.npy": Y}, 'file = "X.npy"\ny_file = "Y.npy"',
                ["[data] file", "X.npy", "X contains NaN or inf"]),
    "y_file a number": ({"X.npy": X}, 'file = "X.npy"\ny_file = 3', ["[data] y_file", "must be the path"]),
}


@pytest.mark.parametrize("case", BAD)
def test_a_data_file_that_does_not_fit_is_refused(case, tmp_path):
    files, data, names = BAD[case]
    path = _study(tmp_path, files, data)
    with pytest.raises(StudyError) as info:
        load_study(path)
    message = str(info.value)
    assert message.startswith(f"{path}: [data]"), message
    for name in names:
        assert name in message, (name, message)
    assert "\n" not in message


@pytest.mark.parametrize("call, param, words", [
    (lambda d: load_table(d / "d.csv", ["a"], ["z"]), "y_columns", ["d.csv", "no column 'z'"]),
    (lambda d: load_table(d / "d.csv", [0], [5], header=True), "y_columns", ["d.csv", "out of range"]),
    (lambda d: load_table(d / "nope.csv", [0], [1]), "file", ["nope.csv", "No such file"]),
    (lambda d: load_table(3, [0], [1]), "file", ["path of a text table"]),
    (lambda d: load_arrays(d / "X.npy", d / "d.csv"), "y_file", ["d.csv", "not an .npy array"]),
    (lambda d: load_arrays(d / "X.npy", None), "y_file", ["path of an .npy file"]),
])
def test_the_helpers_name_the_argument(call, param, words, tmp_path):
    _write(tmp_path, {"d.csv": _csv(ROWS), "X.npy": X})
    with pytest.raises(ParameterError) as info:
        call(tmp_path)
    assert info.value.param == param
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_the_readme_data_examples_read_their_files(tmp_path):
    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    blocks = [textwrap.dedent(b) for b in re.findall(r"```toml\n(.*?)```", readme, re.S) if "[data]\nfile" in
              textwrap.dedent(b)]
    assert len(blocks) == 3
    for i, block in enumerate(blocks):
        folder = tmp_path / str(i)
        folder.mkdir()
        data = tomllib.loads(block)["data"]
        _write(folder, {"data.npz": ("npz", X, Y), "X.npy": X, "Y.npy": Y,
                        "table.csv": _csv(ROWS, header=",".join(data.get("x_columns", []) + data.get("y_columns", [])))})
        study = load_study(_study(folder, {}, block.split("[data]\n", 1)[1]))
        np.testing.assert_array_equal(study.X, X)
        np.testing.assert_array_equal(study.Y, Y)
