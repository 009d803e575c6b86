"""Data from files: an ``.npz`` archive, a pair of ``.npy`` arrays, or a text table.

Each reader reads the file's bytes once (a study hashes them), checks everything before
converting anything, and refuses a file that does not fit with a
:class:`~gdsim._validate.ParameterError` whose message starts with the file's path and
whose ``param`` is the argument (the study file's ``[data]`` key) at fault.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._resources import check_memory
from ._validate import ParameterError, closest, short_repr

#: Text tables, and the delimiter their extension implies (None: any run of spaces or tabs).
TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t", ".txt": None, ".dat": None}
#: The keys of a table, besides ``file``.
TABLE_KEYS = ("x_columns", "y_columns", "delimiter", "header", "skip_rows", "comments")
#: What a file starts with, for a message that says what it is instead.
FILE_KINDS = ((b"\x93NUMPY", "a single .npy array"), (b"PK", "an .npz (zip) archive"),
              (b"\x89HDF", "an HDF5/netCDF4 file"), (b"CDF", "a netCDF 3 file"), (b"\x80", "a Python pickle"))
EXTENSIONS = ".npz, .npy (with y_file), " + ", ".join(TABLE_DELIMITERS)


def _refuse(param, path, message):
    raise ParameterError(f"{path}: {message}", param)


def _read_bytes(param, path, expected):
    try:
        return Path(path).read_bytes()
    except IsADirectoryError:
        _refuse(param, path, f"is a folder, not {expected}")
    except OSError as error:
        _refuse(param, path, f"cannot read it: {error.strerror or error}")


def _kind(raw):
    """What the bytes ``raw`` are, in words."""
    if not raw:
        return "an empty file"
    kind = next((k for magic, k in FILE_KINDS if raw.startswith(magic)), None)
    if kind is None:
        kind = "text (a CSV?)" if b"\x00" not in raw[:4096] else "a binary file of another format"
    return kind


def read_npz(file):
    """``(X, Y, file_bytes)`` of an .npz archive holding arrays ``X`` and ``Y``, as stored.

    The arrays keep their dtype and shape (a study checks them against its model: integer
    labels stay integers).

    Parameters
    ----------
    file : str or pathlib.Path

    Returns
    -------
    X, Y : numpy.ndarray
    file_bytes : bytes
        The file's content (a study hashes it).

    Raises
    ------
    ParameterError
        (``param="file"``) Missing, a folder, empty, another format, pickled objects, no
        ``X`` or ``Y``.
    """
    raw = _read_bytes("file", file, "an .npz file")
    if not raw.startswith(b"PK"):
        _refuse("file", file, f"is {_kind(raw)}, not an .npz archive of arrays X and Y (numpy.savez(path, X=X, Y=Y))")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
            missing = [key for key in ("X", "Y") if key not in archive.files]
            if missing:
                _refuse("file", file, f"has arrays {archive.files}; it needs X and Y")
            return archive["X"], archive["Y"], raw
    except ParameterError:
        raise
    except Exception as error:  # zipfile, numpy's format and pickle errors all mean: not usable
        reason = "it holds Python objects (pickled arrays)" if "pickle" in str(error) else str(error)
        _refuse("file", file, f"cannot read it as an .npz archive of numeric arrays X and Y: {reason}")


def _read_npy(param, file):
    """``(array, raw)``: one numeric .npy array, as a float64 column or matrix."""
    raw = _read_bytes(param, file, "an .npy file")
    if not raw.startswith(b"\x93NUMPY"):
        _refuse(param, file, f"is {_kind(raw)}, not an .npy array (numpy.save(path, array))")
    try:
        array = np.load(io.BytesIO(raw), allow_pickle=False)
    except Exception as error:  # a truncated header or data, pickled objects: not usable
        reason = "it holds Python objects (a pickled array)" if "pickle" in str(error) else str(error)
        _refuse(param, file, f"cannot read it as an .npy array of numbers: {reason}")
    if array.dtype.kind not in "iuf":
        _refuse(param, file, f"holds {array.dtype} values; it needs real numbers (integers or floats)")
    if array.ndim not in (1, 2):
        _refuse(param, file, f"holds an array of shape {array.shape}; it needs one row per sample: "
                "(n,) or (n, columns)")
    if array.shape[0] == 0:
        _refuse(param, file, "holds no rows")
    return np.asarray(array, dtype=np.float64).reshape(array.shape[0], -1), raw


def read_arrays(file, y_file):
    """``(X, Y, file_bytes)`` of :func:`load_arrays` (``file_bytes``: both files' content)."""
    for param, value in (("file", file), ("y_file", y_file)):
        if not isinstance(value, (str, Path)) or not str(value):
            raise ParameterError(f"{param} must be the path of an .npy file, got {short_repr(value)}", param)
    X, x_raw = _read_npy("file", file)
    Y, y_raw = _read_npy("y_file", y_file)
    if X.shape[0] != Y.shape[0]:
        _refuse("y_file", y_file, f"has {Y.shape[0]} rows, but {file} (X) has {X.shape[0]}: "
                "one row of targets per row of inputs")
    return X, Y, x_raw + y_raw


def load_arrays(file: str | os.PathLike, y_file: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets from a pair of ``.npy`` files (``numpy.save``), one row per sample.

    Parameters
    ----------
    file : str or pathlib.Path
        The inputs: an array ``(n,)`` (one feature) or ``(n, n_in)``.
    y_file : str or pathlib.Path
        The targets: ``(n,)`` or ``(n, n_out)``.

    Returns
    -------
    X : numpy.ndarray, float64 (n, n_in)
    Y : numpy.ndarray, float64 (n, n_out)

    Raises
    ------
    ParameterError
        Naming the file and what it expected (``param`` ``"file"`` or ``"y_file"``): missing,
        a folder, not an .npy array, pickled objects, not numbers, not 1-D or 2-D, no rows,
        different numbers of rows.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from gdsim.datasets import load_arrays
    >>> folder = tempfile.mkdtemp()
    >>> np.save(os.path.join(folder, "X.npy"), np.arange(6).reshape(3, 2))
    >>> np.save(os.path.join(folder, "Y.npy"), np.array([1.0, 2.0, 3.0]))
    >>> X, Y = load_arrays(os.path.join(folder, "X.npy"), os.path.join(folder, "Y.npy"))
    >>> X.dtype, X.shape, Y.shape
    (dtype('float64'), (3, 2), (3, 1))
    """
    return read_arrays(file, y_file)[:2]


def _check_columns(param, path, columns):
    """A non-empty list of names or of indices >= 0 (not both)."""
    if isinstance(columns, (str, int)):
        columns = [columns]
    if (not isinstance(columns, (list, tuple)) or not columns
            or not (all(isinstance(c, str) for c in columns)
                    or all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 0
                           for c in columns))):
        _refuse(param, path, f"{param} must be a non-empty list of column names (strings, from the header row) or "
                f"of 0-based column indices (integers >= 0), not both; got {short_repr(columns)}")
    return list(columns)


def _check_table_options(path, x_columns, y_columns, delimiter, header, skip_rows, comments):
    x_columns = _check_columns("x_columns", path, x_columns)
    y_columns = _check_columns("y_columns", path, y_columns)
    named = isinstance(x_columns[0], str)
    if named != isinstance(y_columns[0], str):
        _refuse("y_columns", path, "x_columns and y_columns must both be names or both be indices, got "
                f"{short_repr(x_columns)} and {short_repr(y_columns)}")
    both = sorted(set(x_columns) & set(y_columns), key=str)
    if both:
        _refuse("y_columns", path, f"columns {both} are in both x_columns and y_columns")
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\"\r\n"):
        _refuse("delimiter", path, 'delimiter must be one character ("," or "\\t" or ";"; " " for any run of '
                f"spaces or tabs), got {short_repr(delimiter)}")
    if header is None:
        header = named
    if not isinstance(header, bool):
        _refuse("header", path, f"header must be true or false, got {short_repr(header)}")
    if named and not header:
        _refuse("header", path, "columns named by their header need header = true (or name them by 0-based index)")
    if isinstance(skip_rows, bool) or not isinstance(skip_rows, (int, np.integer)) or skip_rows < 0:
        _refuse("skip_rows", path, f"skip_rows must be an integer >= 0 (lines skipped at the top), "
                f"got {short_repr(skip_rows)}")
    if not isinstance(comments, str) or len(comments) > 1 or comments in "\"\r\n" and comments:
        _refuse("comments", path, 'comments must be one character ("#"), or "" for none, '
                f"got {short_repr(comments)}")
    return x_columns, y_columns, header


def _rows(path, text, delimiter, skip_rows, comments):
    """``(line_number, cells)`` of each row: after ``skip_rows`` lines, without blank lines
    and lines that start with ``comments``."""
    if delimiter is None or delimiter == " ":
        split = (lambda line: line.split())
    else:  # the csv module: quoted cells may hold the delimiter
        split = (lambda line: [cell.strip() for cell in next(csv.reader([line], delimiter=delimiter))])
    for number, line in enumerate(text.splitlines()[skip_rows:], start=skip_rows + 1):
        stripped = line.strip()
        if not stripped or (comments and stripped.startswith(comments)):
            continue
        try:
            yield number, split(line)
        except csv.Error as error:
            _refuse("file", path, f"line {number}: cannot split it into cells: {error}")


def _column_index(param, path, column, names, width):
    if isinstance(column, str):
        matches = [i for i, name in enumerate(names) if name == column]
        if not matches:
            hint = " (one column only: is the delimiter right? set it with delimiter = ...)" if len(names) == 1 else ""
            _refuse(param, path, f"no column {column!r}{closest(column, names)} in the header; "
                    f"its columns: {', '.join(map(repr, names))}{hint}")
        if len(matches) > 1:
            _refuse(param, path, f"the header has {len(matches)} columns named {column!r} (columns {matches}); "
                    "name them by 0-based index instead")
        return matches[0]
    if column >= width:
        hint = " (is the delimiter right? set it with delimiter = ...)" if width == 1 else ""
        _refuse(param, path, f"column index {column} is out of range: the table has {width} columns "
                f"(0 to {width - 1}){hint}")
    return column


def read_table(file, x_columns, y_columns, delimiter=None, header=None, skip_rows=0, comments="#"):
    """``(X, Y, file_bytes)`` of :func:`load_table`."""
    if not isinstance(file, (str, Path)) or not str(file):
        raise ParameterError(f"file must be the path of a text table, got {short_repr(file)}", "file")
    x_columns, y_columns, header = _check_table_options(file, x_columns, y_columns, delimiter, header, skip_rows,
                                                        comments)
    suffix = Path(file).suffix.lower()
    if delimiter is None:
        delimiter = TABLE_DELIMITERS.get(suffix)
    raw = _read_bytes("file", file, "a text table")
    expected = f"a text table ({', '.join(TABLE_DELIMITERS)}) of numbers"
    if not raw or b"\x00" in raw[:4096] or any(raw.startswith(magic) for magic, _ in FILE_KINDS):
        _refuse("file", file, f"is {_kind(raw).replace('text (a CSV?)', 'binary')}, not {expected}")
    try:  # the lines, then the cells kept as Python floats (32 bytes each, a cell is >= 2 characters)
        check_memory(20 * len(raw), f"reading the table ({len(raw)} bytes)", "use a smaller table")
    except ParameterError as error:
        _refuse("file", file, str(error))
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark, as spreadsheets write, is fine
    except UnicodeDecodeError as error:
        _refuse("file", file, f"is not UTF-8 text (byte {error.start}), not {expected}")
    rows = _rows(file, text, delimiter, skip_rows, comments)
    first = next(rows, None)
    if first is None:
        _refuse("file", file, f"has no {'header row' if header else 'data rows'} (the file is blank after skip_rows "
                "and comments)")
    names = first[1] if header else []
    width = len(first[1])
    wanted = {"x_columns": x_columns, "y_columns": y_columns}
    indices = {param: [_column_index(param, file, c, names, width) for c in wanted[param]] for param in wanted}
    values = {param: [] for param in wanted}  # row after row: only the cells asked for are kept
    for number, cells in rows if header else itertools.chain([first], rows):
        if len(cells) != width:
            _refuse("file", file, f"line {number} has {len(cells)} cells, but the "
                    f"{'header' if header else 'first row'} has {width}: every row needs the same columns"
                    + ("" if delimiter not in (",", "\t") else f" (delimiter {delimiter!r})"))
        for param, columns in indices.items():
            for index in columns:
                try:
                    value = float(cells[index])
                except ValueError:
                    value = None
                if value is None or not math.isfinite(value):
                    where = f"column {names[index]!r}" if header else f"column {index}"
                    what = ("is not a finite number (NaN and inf cannot be trained on)" if value is not None else
                            "is not a number" + ("" if header else " (if the first row is a header, set header = true)"))
                    _refuse(param, file, f"line {number}, {where}: {short_repr(cells[index])} {what}")
                values[param].append(value)
    if not values["x_columns"]:
        _refuse("file", file, "has no data rows below its header")
    X, Y = (np.array(values[param], dtype=np.float64).reshape(-1, len(indices[param])) for param in wanted)
    return X, Y, raw


def load_table(file: str | os.PathLike, x_columns: Sequence[str] | Sequence[int],
               y_columns: Sequence[str] | Sequence[int], delimiter: str | None = None, header: bool | None = None,
               skip_rows: int = 0, comments: str = "#") -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets from a text table (CSV, TSV, whitespace-separated), one row per sample.

    Parameters
    ----------
    file : str or pathlib.Path
        A ``.csv`` (comma), ``.tsv`` (tab), ``.txt`` or ``.dat`` (spaces or tabs) file; any
        extension with ``delimiter``.
    x_columns, y_columns : list of str, or list of int
        The inputs' and the targets' columns, in order: names of the header row, or
        0-based indices (both lists of the same kind; a column in one list only).
    delimiter : str, optional
        One character; ``" "`` is any run of spaces or tabs. Default: from the extension.
    header : bool, optional
        Whether the first row (after ``skip_rows``) names the columns. Default: true when
        the columns are names, false when they are indices.
    skip_rows : int, default 0
        Lines skipped at the top of the file, before the header.
    comments : str, default "#"
        Lines that start with it are skipped, as are blank lines; ``""`` for none.

    Returns
    -------
    X : numpy.ndarray, float64 (n, len(x_columns))
    Y : numpy.ndarray, float64 (n, len(y_columns))
        A classifier (``loss="cross_entropy"``) takes integer labels: ``Y[:, 0].astype(int)``.

    Raises
    ------
    ParameterError
        Naming the file and, in ``param``, the argument at fault: missing, a folder, binary
        or not UTF-8, no header or no data rows, a row with another number of cells, an
        unknown column name (listing the header's), an index out of range, a cell that is
        not a number or not finite (NaN, inf), with its line and column.

    Examples
    --------
    >>> import os, tempfile
    >>> from gdsim.datasets import load_table
    >>> path = os.path.join(tempfile.mkdtemp(), "line.csv")
    >>> with open(path, "w") as handle:
    ...     _ = handle.write("x,noise,y\\n0.0,1,1.5\\n1.0,2,-3.5\\n2.0,3,-8.5\\n")
    >>> X, Y = load_table(path, x_columns=["x"], y_columns=["y"])
    >>> X.ravel(), Y.shape
    (array([0., 1., 2.]), (3, 1))
    >>> load_table(path, x_columns=[0], y_columns=[2], header=True)[1].ravel()
    array([ 1.5, -3.5, -8.5])
    """
    return read_table(file, x_columns, y_columns, delimiter, header, skip_rows, comments)[:2]


def read_data_file(file, y_file=None, **table):
    """A data file, read by its extension: what a study file's ``[data] file = ...`` reads.

    Parameters
    ----------
    file : str or pathlib.Path
        ``.npz`` (:func:`read_npz`), ``.npy`` (with ``y_file``: :func:`read_arrays`), or a
        text table ``.csv``, ``.tsv``, ``.txt``, ``.dat`` (any extension with ``delimiter``).
    y_file : str or pathlib.Path, optional
        The targets' ``.npy`` file, for an ``.npy`` ``file`` only.
    **table
        The other arguments of :func:`load_table`, for a table only.

    Returns
    -------
    X, Y : numpy.ndarray
        As stored for an ``.npz``; float64, ``Y`` 2-D, otherwise.
    file_bytes : bytes
        The content of the file (of both files of a pair), which a study hashes.

    Raises
    ------
    ParameterError
        Its message starts with the file's path; its ``param`` is the argument (the study
        file's ``[data]`` key) at fault: an unknown extension, ``y_file`` or a table's
        arguments with the wrong kind of file, and every refusal of the reader.
    """
    suffix = Path(file).suffix.lower()
    if suffix == ".npy":
        if y_file is None:
            _refuse("y_file", file, 'an .npy file holds one array: name the targets with y_file = "Y.npy" '
                    "(or use an .npz archive of X and Y)")
        if table:
            key = sorted(table)[0]
            _refuse(key, file, f"{key} is for text tables ({', '.join(TABLE_DELIMITERS)}); "
                    "an .npy pair holds X in file and Y in y_file")
        return read_arrays(file, y_file)
    if y_file is not None:
        _refuse("y_file", file, "y_file goes with file = an .npy array of the inputs (X.npy); "
                f"{Path(file).name} is not one")
    if suffix == ".npz":
        if table:
            key = sorted(table)[0]
            _refuse(key, file, f"{key} is for text tables ({', '.join(TABLE_DELIMITERS)}); an .npz archive holds "
                    "arrays X and Y")
        return read_npz(file)
    if suffix in TABLE_DELIMITERS or "delimiter" in table:
        missing = [key for key in ("x_columns", "y_columns") if key not in table]
        if missing:
            _refuse(missing[0], file, f"a table needs x_columns and y_columns (column names or 0-based indices); "
                    f"{missing[0]} is missing")
        return read_table(file, **table)
    _refuse("file", file, f"unknown extension {suffix or '(none)'!r}: a data file is one of {EXTENSIONS} "
            "(or a table with delimiter = ...)")
