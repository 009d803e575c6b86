"""A sweep's result streamed to a Zarr store, one rectangular region of runs at a time,
each region with the record of what it holds, so that a resumed run can never mix in
wrong numbers.

Layout of ``NAME.zarr/`` (Zarr v3, as xarray reads and writes it):

* the result's variables, coordinates and typed attributes (bools stay bools, seeds
  int64); the layout is created first through xarray (metadata only, consolidated, in a
  temporary folder renamed into place), the data then arrives region by region (each
  region's chunks, whole, through Zarr), so the whole result is never in memory and
  ``xr.open_zarr`` reads it while it runs;
* the attribute ``gdsim_store``: the identity of what the store holds (JSON: the hash of
  the settings that decide the numbers, gdsim's version, the target family, the chunk size);
* ``gdsim_regions/NNNNNN.json``: one record per written region, written (atomically)
  after its data: the identity, the runs ``[first, stop)``, the region's slices and the
  SHA-256 of the region's data as written.

A region counts as done only when its record parses, matches the identity and the region,
and the data read back from the store hashes to the record's SHA-256; any other region
(missing, unreadable, truncated, garbled, from another chunk size) is computed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:  # for the annotations only: importing them costs time
    import xarray

from .._io import atomic_write
from .._validate import ParameterError
from .executors import RegionWork, dask_results, local_results, workers_see

#: The records' folder inside the store: an empty Zarr group (so that Zarr, which lists
#: the store's children, sees a node it knows) holding one JSON file per region.
RECORDS = "gdsim_regions"
RECORDS_GROUP = '{"zarr_format": 3, "node_type": "group", "attributes": {}}'
#: The names of the records in it (``NNNNNN.json``; the folder also has the group's ``zarr.json``).
RECORD_NAMES = "[0-9]*.json"



@dataclass(frozen=True)
class Region:
    """A rectangular block of the grid whose runs are contiguous in flat (C) order.

    Attributes
    ----------
    index : int
    first, stop : int
        The flat indices of its runs, ``[first, stop)``.
    slices : tuple of (int, int)
        ``(start, stop)`` along each of the grid's dimensions.
    """

    index: int
    first: int
    stop: int
    slices: tuple

    def selection(self, dims: Sequence[str]) -> dict[str, slice]:
        """``{dim: slice}`` over the grid's ``dims`` (for ``isel`` and ``to_zarr(region=)``)."""
        return {dim: slice(a, b) for dim, (a, b) in zip(dims, self.slices)}

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(b - a for a, b in self.slices)


def chunk_shape(shape: Sequence[int], chunk_runs: int) -> tuple[int, ...]:
    """The block of at most ``chunk_runs`` runs (at least one) that tiles a grid of
    ``shape`` in C order: whole trailing axes, a part of one axis, single leading indices."""
    chunk, inner = [1] * len(shape), 1
    for axis in reversed(range(len(shape))):
        if inner * shape[axis] <= chunk_runs:
            chunk[axis], inner = shape[axis], inner * shape[axis]
        else:
            chunk[axis] = max(1, chunk_runs // inner)
            break
    return tuple(chunk)


def plan_regions(shape: Sequence[int], chunk_runs: int) -> list[Region]:
    """The regions of :func:`chunk_shape` that cover a grid of ``shape``, in run order."""
    chunk = chunk_shape(shape, chunk_runs)
    counts = [math.ceil(n / c) for n, c in zip(shape, chunk)]
    regions = []
    for index, corner in enumerate(np.ndindex(*counts)):
        starts = [i * c for i, c in zip(corner, chunk)]
        stops = [min(a + c, n) for a, c, n in zip(starts, chunk, shape)]
        first = int(np.ravel_multi_index(starts, shape)) if shape else 0
        size = math.prod(b - a for a, b in zip(starts, stops))
        regions.append(Region(index, first, first + size, tuple(zip(starts, stops))))
    return regions


def data_digest(arrays: Mapping[Any, ArrayLike]) -> str:
    """SHA-256 of named arrays (name, dtype, shape and bytes, by name): what a record keeps."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


class ResultStore:
    """A result being written to (or read from) a Zarr store, region by region.

    Parameters
    ----------
    path : path
        The store, ``NAME.zarr``.
    dims : sequence of str
        The grid's dimensions (the result's swept axes).
    identity : dict
        What the store holds (JSON-able): a store whose identity differs is refused.
    """

    def __init__(self, path: str | os.PathLike, dims: Sequence[str], identity: Mapping[str, object]) -> None:
        self.path = Path(path)
        self.dims = list(dims)
        self.identity = dict(identity)
        self._opened: dict[str, object] = {}  # name -> zarr AsyncArray, opened by the first write in this process

    def __getstate__(self):  # sent to a worker: the opened arrays stay here
        return {**self.__dict__, "_opened": {}}

    # -- creation and identity ---------------------------------------------------------
    def stored_identity(self) -> dict | None:
        """The identity the store records, or None if there is no store; ParameterError
        naming the store if it cannot be read."""
        import xarray as xr

        if not self.path.exists():
            return None
        try:
            with xr.open_zarr(self.path, consolidated=False) as ds:
                return json.loads(ds.attrs["gdsim_store"])
        except Exception as error:  # missing or damaged metadata: zarr, xarray and json raise many kinds
            raise ParameterError(f"{self.path}: not a result store gdsim can read ({type(error).__name__}: "
                                 f"{' '.join(str(error).split())[:80]})", "store") from None

    def create(self, template: xarray.Dataset, chunk_runs: int) -> None:
        """Write the layout of ``template`` (a Dask-backed dataset of the whole result)
        with Zarr chunks of :func:`chunk_shape`; atomically: a temporary folder renamed
        into place."""
        shape = tuple(template.sizes[d] for d in self.dims)
        chunks = dict(zip(self.dims, chunk_shape(shape, chunk_runs)))
        template = template.chunk({**chunks, **{d: -1 for d in template.dims if d not in chunks}})
        template.attrs["gdsim_store"] = json.dumps({**self.identity, "chunk_runs": int(chunk_runs)}, sort_keys=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent))
        try:
            with warnings.catch_warnings():
                # Consolidated metadata (so that a plain xr.open_zarr reads the store without a
                # warning) is not in the Zarr v3 spec yet; zarr-python writes it and says so.
                warnings.filterwarnings("ignore", "Consolidated metadata is currently not part")
                template.to_zarr(tmp, compute=False, mode="w", zarr_format=3, consolidated=True)
            (tmp / RECORDS).mkdir()
            (tmp / RECORDS / "zarr.json").write_text(RECORDS_GROUP)
            os.replace(tmp, self.path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def clean_temporary(self) -> None:
        """Remove what an interrupted write left: temporary stores and records."""
        for tmp in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            shutil.rmtree(tmp, ignore_errors=True)
        for tmp in (self.path / RECORDS).glob(".*.tmp"):
            tmp.unlink(missing_ok=True)

    # -- regions -----------------------------------------------------------------------
    def _record_path(self, region):
        return self.path / RECORDS / f"{region.index:06d}.json"

    def _expected_record(self, region):
        return {**self.identity, "first": region.first, "stop": region.stop,
                "slices": [list(s) for s in region.slices]}

    def _digest(self, region):
        """The SHA-256 the record of ``region`` gives, if the record matches it; else None."""
        try:
            record = json.loads(self._record_path(region).read_text())
            digest = record.pop("sha256")
        except (OSError, ValueError, KeyError, AttributeError, TypeError):
            return None
        return digest if record == self._expected_record(region) else None

    def has_record(self, region: Region) -> bool:
        """Whether ``region`` has a matching record (its data not read)."""
        return self._digest(region) is not None

    def is_done(self, region: Region, ds: xarray.Dataset) -> bool:
        """Whether ``region`` holds what its record says (``ds``: the store, opened lazily)."""
        digest = self._digest(region)
        if digest is None:
            return False
        try:
            part = ds.isel(region.selection(self.dims))
            arrays = {name: part[name].values for name in part.data_vars}
        except Exception:  # a truncated or garbled chunk: codecs and zarr raise many kinds
            return False
        return data_digest(arrays) == digest

    def write(self, region: Region, variables: Mapping[str, tuple]) -> str:
        """Write one region's variables (name -> (dims, array, attrs), the region's shape)
        into the store, then its record; return the SHA-256 the record gives."""
        arrays = {name: np.asarray(array) for name, (_, array, _) in variables.items()}
        where = region.selection(self.dims)
        self._write_arrays({name: (tuple(where.get(d, slice(None)) for d in dims), arrays[name])
                            for name, (dims, _, _) in variables.items()})
        record = {**self._expected_record(region), "sha256": data_digest(arrays)}
        text = json.dumps(record, sort_keys=True)
        atomic_write(self._record_path(region), lambda tmp: Path(tmp).write_text(text))
        return record["sha256"]

    def _write_arrays(self, parts):
        """Write ``parts`` (name -> (index, array)) into the store's arrays, all at once on
        Zarr's event loop.

        The variables need no encoding (numbers and bools, NaN fill values), so the chunks
        are the bytes ``xarray.Dataset.to_zarr(region=...)`` writes. Going around xarray
        (which reads the whole store's metadata at each call), with the arrays opened once
        and written concurrently, took a region of 8 arrays from 48 ms to 13-15 ms here.
        """
        import asyncio

        import zarr.api.asynchronous as zarr_async
        from zarr.core.sync import sync

        async def write_all():
            missing = [name for name in parts if name not in self._opened]
            opened = await asyncio.gather(*(zarr_async.open_array(store=os.fspath(self.path), path=name, mode="r+")
                                            for name in missing))
            self._opened.update(zip(missing, opened))
            await asyncio.gather(*(self._opened[name].setitem(index, array) for name, (index, array) in parts.items()))

        sync(write_all())

    def is_recorded(self, region: Region, digest: str) -> bool:
        """Whether ``region``'s record is here and gives ``digest`` (a region written elsewhere)."""
        return self._digest(region) == digest

    @contextlib.contextmanager
    def probe(self) -> Iterator[Path]:
        """A new file in the store, removed on exit (or by :meth:`clean_temporary`): its
        path, to ask whether other processes see this store."""
        path = self.path / RECORDS / f".probe-{os.urandom(8).hex()}.tmp"
        path.write_text("")
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def open(self) -> xarray.Dataset:
        """The result, opened lazily (Dask arrays)."""
        import xarray as xr

        return xr.open_zarr(self.path, consolidated=False)


def fill(store: ResultStore, shape: tuple[int, ...], chunk_runs: int, task: tuple[Callable, tuple],
         variables: Callable, template: Callable[[], xarray.Dataset],
         progress: Callable[[int, int], object] | None = None, client: object = None,
         threads: int = 1) -> xarray.Dataset:
    """Create or resume ``store`` and compute every region that is not done.

    Parameters
    ----------
    store : ResultStore
    shape : tuple of int
        The grid's shape over ``store.dims``.
    chunk_runs : int
        Runs per region of a new store (a resumed store keeps its own).
    task : (callable, tuple)
        ``(function, args)``: ``function(*args, runs)`` -> the raw arrays of those flat run
        indices (picklable, to run on a cluster).
    variables : callable
        ``variables(raw, dims, shape)`` -> the variables to store
        (:func:`gdsim.sweeps.dataset.grid_variables` or a study's).
    template : callable
        ``template()`` -> the whole result as a Dask-backed dataset (the layout).
    progress : callable, optional
        ``progress(runs_done, n_runs)``.
    client : distributed.Client, optional
        Compute the regions as tasks on its cluster (:func:`gdsim.sweeps.executors.dask_results`),
        each worker writing its regions into the store when every worker sees it (a
        filesystem shared with the client), else sending them to the client to write;
        None: here, one after another.
    threads : int, default 1
        Without ``client``, compute that many regions at a time here on threads, and write
        each in this thread as it finishes (for tasks that run on one core and release the
        GIL: a study's :func:`gdsim.train` runs, a region each).

    Returns
    -------
    xarray.Dataset
        The result, opened lazily from the store.

    Raises
    ------
    gdsim._validate.ParameterError
        If the store holds another result (its identity differs) or cannot be read.
    """
    store.clean_temporary()
    found = store.stored_identity()
    if found is None:
        store.create(template(), chunk_runs)
    else:
        changed = sorted(k for k in store.identity if found.get(k) != store.identity[k])
        if changed or not isinstance(found.get("chunk_runs"), int) or found["chunk_runs"] < 1:
            raise ParameterError(f"{store.path} holds another result (its {', '.join(changed) or 'chunk_runs'} "
                                 "differs); remove it or choose another store", "store")
        chunk_runs = found["chunk_runs"]
    n_runs, done = math.prod(shape), 0
    missing = plan_regions(shape, chunk_runs)
    if found is not None:  # a store made just now holds no region yet: nothing to open and check
        ds = store.open()
        missing = [region for region in missing if not store.is_done(region, ds)]
        done = n_runs - sum(region.stop - region.first for region in missing)
    if progress is not None and done:
        progress(done, n_runs)
    function, args = task
    work = RegionWork(function, store, variables)
    if client is None:
        results = local_results(work.unwritten() if threads > 1 else work, args, missing, threads)
    else:
        if missing:
            with store.probe() as probe:
                if not workers_see(client, probe):  # no shared filesystem: the client writes
                    work = work.unwritten()
        results = dask_results(client, work, args, missing)
    for region, result in results:
        if isinstance(result, dict):  # the region's raw arrays, computed by workers that cannot see the store
            store.write(region, variables(result, store.dims, region.shape))
        elif not store.is_recorded(region, result):
            raise ParameterError(f"{store.path}: region {region.index} was written by a worker but its record is "
                                 "not there: the store must be on a filesystem the client and the workers share",
                                 "store")
        done += region.stop - region.first
        if progress is not None:
            progress(done, n_runs)
    return store.open()
