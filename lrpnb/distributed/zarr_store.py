"""Results written to a zarr (v3) folder by many workers at once, resumably.

The folder is built as ``path + '.partial'`` and renamed to ``path`` when
every chunk is in: a folder under the final name is complete. Its arrays are
those of the HDF5 result (``relevance``, ``prediction``, ``scores``,
``target``, and ``source`` for images), created at their full size by the
client before any work, chunked along the samples like the work: each worker
writes whole zarr chunks of its own, so no two workers touch one file.

A chunk of work counts as done when its rows are durable: the worker writes
them into a folder of its own attempt (``_attempts/``), syncs them, moves
each chunk file into place by a rename (a reader sees a whole file, never a
torn one), and only then writes its marker ``_done/FIRST-LAST`` (synced,
then its folder synced). A worker killed between the two has its chunk
redone.

Each run claims the folder with a token of its own (``_done/_run``); a
worker writes a chunk only while the folder holds its run's token. A task
that Dask could not stop when its run was interrupted (a running task is
cancelled only when it ends) thus leaves alone the folder a later run has
taken over, resumed or started afresh with other settings: it checks the
token before its renames and again before its marker, moments apart, where
the chunk took seconds to compute. ``ok`` marks the rows that hold
results; the settings of the run (root attributes ``settings``, ``count``,
``chunk``) are compared when a run resumes, as the HDF5 writer compares them.
Finishing removes the bookkeeping, writes the run's record as the root
attributes (as in the HDF5 result), drops the rows of unreadable samples by
a copy when there are any, and renames the folder into place.
"""
import contextlib
import json
import os
import shutil
import uuid
import warnings

import numpy as np

from .._atomic import sync_file, sync_folder

__all__ = ["ZarrWriter", "write_chunk"]

DONE = "_done"
#: the folders a worker writes its chunk into before moving the files in place
ATTEMPTS = "_attempts"
#: the token of the run that holds the folder (in DONE)
RUN = "_run"


def _members(group, what="arrays"):
    """``group.arrays()`` (or ``array_keys()``) as a list: the markers' folder
    is the run's own bookkeeping inside the partial folder, removed when it
    is finished, and zarr need not warn that it is not one of its arrays."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f"Object at ({DONE}|{ATTEMPTS}) is not recognized")
        return list(getattr(group, what)())


def _zarr():
    try:
        import zarr
    except ImportError:
        raise ImportError("writing .zarr needs zarr v3: pip install 'lrpnb[distributed]'") from None
    return zarr


class ZarrWriter:
    """The client's side of a ``.zarr`` result (see the module's docstring).

    Parameters
    ----------
    path : str
        The ``.zarr`` folder to write.
    count, chunk : int
        Samples, and samples per zarr chunk (a batch: a chunk of work
        writes one or more whole zarr chunks).
    settings : dict
        What identifies the run, compared when resuming.
    overwrite : bool
        Start over whatever an earlier run left, and replace ``path``.
    """

    def __init__(self, path, count, chunk, settings, overwrite=False):
        self.path, self.count, self.chunk = path, count, chunk
        self.partial = path + ".partial"
        self.settings = json.dumps(settings, sort_keys=True)
        if os.path.exists(path) and not overwrite:
            raise ValueError(f"{path} exists; remove it or pass --overwrite")
        self.done = {}
        if os.path.exists(self.partial) and not overwrite:
            self.done = self._resumable()
        self.fresh = not self.done
        self.token = uuid.uuid4().hex

    def spec(self):
        """What a worker needs to write its chunks (see :func:`write_chunk`)."""
        return dict(partial=self.partial, chunk=self.chunk, token=self.token)

    def claim(self):
        """Make the partial folder this run's: tasks of an earlier run still
        running write nothing more into it."""
        path = os.path.join(self.partial, DONE, RUN)
        with open(path + ".tmp", "w") as handle:
            handle.write(self.token)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(path + ".tmp", path)
        sync_folder(os.path.dirname(path))

    def _resumable(self):
        """first -> last of the chunks an earlier run finished (its chunk size is kept)."""
        zarr = _zarr()
        try:
            done = self.marked()
            if not done:
                return {}  # nothing finished in it: it blocks nothing
            attrs = dict(zarr.open_group(self.partial, mode="r").attrs)
        except (OSError, ValueError, TypeError, KeyError) as error:
            raise ValueError(f"{self.partial}: an unfinished earlier run left this folder and it cannot be "
                             f"read ({error}); remove it or pass --overwrite") from None
        if attrs.get("settings") != self.settings or attrs.get("count") != self.count:
            raise ValueError(f"{self.partial}: an unfinished earlier run with other settings left this folder, "
                             f"with {sum(b - a for a, b in done.items())} of {attrs.get('count')} samples done; "
                             f"run that command again to finish it, or pass --overwrite to start over")
        self.chunk = int(attrs["chunk"])
        return done

    def marked(self):
        """first -> last of the chunks marked done in the partial folder."""
        done = {}
        folder = os.path.join(self.partial, DONE)
        for name in os.listdir(folder) if os.path.isdir(folder) else ():
            first, _, last = name.partition("-")
            if last.isdigit():  # not a marker being written (.tmp)
                done[int(first)] = int(last)
        return done

    def create(self, shapes, names=None):
        """The partial folder with every array at its full size; ``shapes``:
        name -> (shape of one row, dtype)."""
        zarr = _zarr()
        if os.path.exists(self.partial):
            shutil.rmtree(self.partial)
        group = zarr.open_group(self.partial, mode="w", zarr_format=3)
        group.attrs.update(settings=self.settings, count=self.count, chunk=self.chunk)
        for name, (row, dtype) in shapes.items():
            group.create_array(name, shape=(self.count,) + tuple(row), chunks=(self.chunk,) + tuple(row),
                               dtype=dtype, fill_value=np.zeros((), dtype=dtype).item())
        if names is not None:
            source = group.create_array("source", shape=(self.count,), chunks=(self.count,), dtype=str)
            source[:] = np.array(names, dtype=object)
        os.makedirs(os.path.join(self.partial, DONE))
        os.makedirs(os.path.join(self.partial, ATTEMPTS))
        _sync_tree(self.partial)
        self.fresh = False

    def discard(self):
        """Remove the partial folder if no chunk is done in it (a run that failed)."""
        if not self.marked():
            shutil.rmtree(self.partial, ignore_errors=True)

    def finish(self, attributes):
        """Rename the complete folder into place (without the rows not read);
        returns how many rows were left out."""
        zarr = _zarr()
        group = zarr.open_group(self.partial, mode="r+")
        ok = group["ok"][...]
        if not ok.any():
            raise ValueError(f"{self.path}: no sample could be explained")
        dropped = int(np.sum(~ok))
        if dropped:
            target = self.path + ".new"
            _copy_rows(group, target, ok)
            folder = target
        else:
            del group["ok"]
            folder = self.partial
        final = zarr.open_group(folder, mode="r+")
        # the record replaces the run's bookkeeping (settings, count, chunk)
        final.attrs.put(_json_attributes(attributes))
        for bookkeeping in (DONE, ATTEMPTS):
            shutil.rmtree(os.path.join(self.partial, bookkeeping), ignore_errors=True)
        _sync_tree(folder)
        if os.path.exists(self.path):  # only with overwrite (refused at the start otherwise)
            shutil.rmtree(self.path)
        os.replace(folder, self.path)
        sync_folder(os.path.dirname(os.path.abspath(self.path)))
        if dropped:
            shutil.rmtree(self.partial)
        return dropped


def _json_attributes(made):
    """The record of the run as zarr attributes, as HDF5's: text, numbers and
    lists as themselves, anything else as JSON text."""
    out = {}
    for key, value in made.items():
        plain = isinstance(value, (int, float, str)) or (
            isinstance(value, list) and value and all(isinstance(v, (int, float, str)) for v in value))
        out[key] = value if plain else json.dumps(value)
    return out


def _copy_rows(group, target, ok):
    """``group``'s arrays without the rows not ``ok`` into a new group at ``target``."""
    zarr = _zarr()
    if os.path.exists(target):
        shutil.rmtree(target)
    new = zarr.open_group(target, mode="w", zarr_format=3)
    kept = int(ok.sum())
    for name, array in _members(group):
        if name == "ok":
            continue
        chunks = (max(1, min(array.chunks[0], kept)),) + array.shape[1:]
        copy = new.create_array(name, shape=(kept,) + array.shape[1:], chunks=chunks, dtype=array.dtype)
        written = 0
        for first in range(0, array.shape[0], array.chunks[0]):
            rows = array[first:first + array.chunks[0]][ok[first:first + array.chunks[0]]]
            copy[written:written + len(rows)] = rows
            written += len(rows)


def _holds(spec):
    """Whether the partial folder is still held by the run of ``spec`` (its token)."""
    try:
        with open(os.path.join(spec["partial"], DONE, RUN)) as handle:
            return handle.read() == spec["token"]
    except OSError:  # the folder is gone: finished, or removed by a run started afresh
        return False


def write_chunk(spec, first, last, rows):
    """On a worker: the rows of samples first..last-1 into the partial folder,
    synced, then marked done; False (nothing written) when another run holds
    the folder now."""
    if not _holds(spec):
        return False
    zarr = _zarr()
    indices = range(first // spec["chunk"], -(-last // spec["chunk"]))
    attempt = os.path.join(spec["partial"], ATTEMPTS, f"{first}-{uuid.uuid4().hex}")
    try:
        os.mkdir(attempt)  # not makedirs: a partial folder already removed stays removed
    except FileNotFoundError:
        return False
    try:
        moves = _written(zarr, spec["partial"], attempt, first, indices, rows)
        if not _holds(spec):
            return False
        for source, target in moves:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(source, target)
        for folder in sorted({os.path.dirname(target) for _, target in moves}):
            sync_folder(folder)
        if not _holds(spec):
            return False
        marker = os.path.join(spec["partial"], DONE, f"{first}-{last}")
        with open(marker + ".tmp", "w") as handle:
            handle.write(f"{first} {last} {spec['token']}\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(marker + ".tmp", marker)
        sync_folder(os.path.dirname(marker))
        return True
    finally:
        shutil.rmtree(attempt, ignore_errors=True)


def _written(zarr, partial, attempt, first, indices, rows):
    """Write ``rows`` (from sample ``first`` on) into arrays of the same
    metadata under ``attempt`` (the same encoded bytes as in place), each
    chunk file synced; the (written, final) paths of the chunk files of the
    zarr chunks ``indices``."""
    moves = []
    for name, values in rows.items():
        if name == "source":
            continue  # written whole at the start
        os.mkdir(os.path.join(attempt, name))
        shutil.copyfile(os.path.join(partial, name, "zarr.json"), os.path.join(attempt, name, "zarr.json"))
        staged = zarr.open_array(os.path.join(attempt, name), mode="r+")
        staged[first:first + len(values)] = values
        found = []
        for index in indices:
            chunk_folder = os.path.join(attempt, name, "c", str(index))
            found += [chunk_folder] if os.path.isfile(chunk_folder) else \
                [os.path.join(root, file) for root, _, files in os.walk(chunk_folder) for file in files]
        for path in found:
            sync_file(path)
            moves.append((path, os.path.join(partial, name, os.path.relpath(path, os.path.join(attempt, name)))))
    return moves


def _sync_tree(folder):
    """Every file and folder under ``folder`` synced to the disk."""
    for root, folders, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                sync_file(os.path.join(root, name))
        sync_folder(root)
    if os.path.isfile(folder):
        sync_file(folder)
