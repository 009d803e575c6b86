"""Files: output locations checked up front, atomic writes, reading result stores."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for the annotations only: importing xarray costs time
    import xarray

from ._validate import ParameterError


def check_folder(folder, what):
    """Refuse a folder that cannot be written, before any work: ``folder`` must be a
    writable folder, or not exist yet below a writable one (it is not created here).

    Parameters
    ----------
    folder : str or pathlib.Path
    what : str
        What the folder is for, for the message (``"the results folder (--results)"``).

    Raises
    ------
    gdsim._validate.ParameterError
        Naming ``folder``, ``what`` and the problem (a file is in the way, no permission,
        a read-only file system).
    """
    folder = Path(folder)
    existing = folder
    while not _exists(existing):
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == folder else f"cannot be made: {existing} is a file"
        raise ParameterError(f"{folder}: {what} {where}; choose another folder", _what_param(what))
    longest = os.pathconf(existing, "PC_NAME_MAX") if existing.exists() else 255
    for part in folder.relative_to(existing).parts if existing in (folder, *folder.parents) else ():
        if len(os.fsencode(part)) > longest:
            raise ParameterError(f"{folder}: {what} cannot be made: the name {part[:20]}... is longer than the "
                                 f"{longest} bytes a file name may have here", _what_param(what))
    try:  # the only reliable test of writability (permissions, ACLs, read-only mounts, root)
        fd, probe = tempfile.mkstemp(prefix=".gdsim-write-test.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise ParameterError(f"{folder}: {what} cannot be written ({error.strerror or error} in {existing}); "
                             "choose another folder", _what_param(what)) from None


def _exists(path):
    """``path.exists()`` (a dangling link counts), False where the OS refuses to look
    (a name too long, a loop of links)."""
    try:
        return path.exists() or path.is_symlink()
    except OSError:
        return False


def check_file_target(path, what):
    """Refuse an output file path that is a folder, or whose folder cannot be written
    (:func:`check_folder`), before the work that produces the file."""
    path = Path(path)
    if _exists(path) and path.is_dir():
        raise ParameterError(f"{path}: {what} is a folder, not a file; remove it or choose another path",
                             _what_param(what))
    check_folder(path.parent, f"the folder of {what}")


def _what_param(what):
    """The argument named in ``what`` (``"the results folder (--results)"`` -> ``"results"``)."""
    return what.rsplit("(", 1)[-1].strip("-)") if "(" in what else None


def atomic_write(path, write):
    """Call ``write(temporary_path)``, then rename it to ``path``: a reader never sees a
    half-written file, and a crash leaves the old file (or none).

    Parameters
    ----------
    path : str or pathlib.Path
        The file to write; its folder is created if needed.
    write : callable
        ``write(tmp)`` writes the whole file at the path ``tmp`` (same folder as ``path``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the result is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_dataset(path: str | os.PathLike) -> xarray.Dataset:
    """A result store (``NAME.zarr``, see :mod:`gdsim.sweeps.store`) read wholly into memory.

    Raises
    ------
    gdsim._validate.ParameterError
        Naming the store, if it is missing or not a result store.
    """
    return _open(path, lambda ds: ds.load())


def read_attrs(path: str | os.PathLike) -> dict:
    """The attributes of a result store, without reading its arrays
    (:class:`~gdsim._validate.ParameterError` naming the store if it cannot be read)."""
    return _open(path, lambda ds: dict(ds.attrs))


def _open(path, read):
    import xarray as xr

    if not Path(path).is_dir():
        raise ParameterError(f"{path}: no such result store" + (" (a file)" if Path(path).is_file() else ""), "path")
    try:
        with xr.open_zarr(path, consolidated=False) as ds:
            return read(ds)
    except Exception as error:  # zarr, xarray and the codecs raise many kinds for a damaged store
        reason = " ".join(str(error).split())
        reason = reason if len(reason) <= 80 else reason[:80] + "..."
        raise ParameterError(f"{path}: not a result store gdsim can read (Zarr, as gdsim writes it): "
                             f"{type(error).__name__}: {reason}", "path") from None
