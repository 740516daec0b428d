"""Result writers of ``lrpnb explain``: HDF5 written batch by batch, resumably
and crash-safely (:class:`HDF5Writer`), and ``.npy`` streamed to the disk
in bounded memory (:class:`NpyWriter`).
"""
import contextlib
import errno
import json
import os

import numpy as np

from ._atomic import _umask, atomic_path, replace_durably
from .locks import WriterLock, clear_stale_lock  # noqa: F401  (lrpnb.writers.WriterLock)
from .provenance import write_attributes

__all__ = ["HDF5Writer", "NpyWriter", "WriterLock", "clear_stale_lock", "COMPRESSION"]

#: HDF5 compression of the results when asked for (``lrpnb explain
#: --compress``): gzip (readable by every HDF5 tool) at level 1 after byte
#: shuffling. Off by default: float32 relevance maps shrink by a sixth only
#: (LeNet-5: 33 MiB against 40 MiB for 10,000 maps), and compressing on one
#: writer thread held ``lrpnb explain`` to 61% of the in-memory rate on 2
#: cores, against 86% uncompressed (bench/pipeline.py)
COMPRESSION = dict(compression="gzip", compression_opts=1, shuffle=True)


class HDF5Writer:
    """Results written batch by batch into ``path``, resumably and crash-safely.

    The file is built as ``path + '.partial'`` and appears under ``path``
    only when the last batch is in: a file under the final name is complete.

    What makes it safe against kills, full disks and a second writer:

    - The partial file is made whole at the first write: every dataset is
      created at its full size with its space allocated (``ALLOC_TIME_EARLY``)
      and reserved on the disk (``posix_fallocate``), the first batch is
      written, and only then is the file renamed to ``.partial``. Later
      batches overwrite space that exists, so HDF5's structure never changes
      while a run goes on, and a full disk shows at the start as a clear
      error, not as a half-written file.
    - A batch counts as done after its rows are flushed: the count of
      samples done (the one-value dataset ``_done``) is written and flushed
      after them. A kill between the two redoes that batch.
    - Finishing removes the run's attributes, ``_done`` and ``ok`` from the
      partial file and then renames it to its final name; a run killed before
      that leaves a partial with every batch done, which the same command
      finishes (or, killed in the moment between the two, a partial without
      its record, which the same command redoes from the start). Compression (``compress=True``, COMPRESSION) and
      dropping the rows of unreadable samples copy the data into a new file
      that is renamed into place.
    - A lock (``path + '.lock'``, :class:`WriterLock`) refuses a second
      writer of the same file, naming it.

    Datasets: ``relevance`` (N, ...) or (N, T, ...), ``prediction`` (N,),
    ``scores`` (N, C), ``target`` (N,) or (N, T), and for images ``source``
    (the file names, ``names``, written at the start); chunked by batch.
    While running, ``ok`` (N,) marks the rows that hold results.
    ``attributes`` (lrpnb.provenance's record of the run) are the finished
    file's root attributes.
    """

    def __init__(self, path, count, settings, overwrite=False, compress=False, names=None, attributes=None):
        self.path = os.fspath(path)
        self.attributes = attributes or {}
        self.compression = COMPRESSION if compress else {}
        self.partial = self.path + ".partial"
        self.count, self.settings = count, json.dumps(settings, sort_keys=True)
        self.names = names
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"cannot write {self.path}: folder {folder} does not exist")
        if not os.access(folder, os.W_OK):
            raise PermissionError(f"cannot write {self.path}: folder {folder} is not writable")
        self._lock = WriterLock(self.path)
        with contextlib.suppress(OSError):  # left by a run killed while making it
            os.remove(self.partial + ".new")
        try:
            if os.path.exists(self.path) and not overwrite:
                raise ValueError(f"{self.path} exists; remove it or pass --overwrite")
            # the partial file is made (or replaced) at the first write, so a run
            # that fails before its first batch is done leaves nothing behind
            self.done, self.file, self._fresh = 0, None, True
            if os.path.exists(self.partial) and not overwrite:
                self.done = self._resumable()
                self._fresh = self.done == 0
        except BaseException:
            self._lock.release()
            raise

    def _resumable(self):
        """Samples done by the earlier run that left the partial file (0:
        none, and the file may be replaced)."""
        import h5py

        try:
            with h5py.File(self.partial, "r") as handle:
                settings, count = handle.attrs.get("settings"), int(handle.attrs.get("count", -1))
                done = int(handle["_done"][0]) if "_done" in handle else int(handle.attrs.get("done", 0))
        except (OSError, ValueError, TypeError, KeyError, RuntimeError, SystemError) as error:
            raise ValueError(f"{self.partial}: an unfinished earlier run left this file and it cannot "
                             f"be read ({error}); remove it or pass --overwrite") from None
        if done == 0:
            return 0  # nothing finished in it: it blocks nothing
        if settings != self.settings or count != self.count:
            differing = _differing(settings, self.settings)
            changed = "the data changed since " if "data_fingerprint" in differing else ""
            raise ValueError(f"{self.partial}: {changed}an unfinished earlier run with other settings "
                             f"({', '.join(differing) or 'count'}) left this file, with {done} of {count} "
                             f"samples done; resuming would mix its rows with this run's: run that command "
                             f"again on the same data to finish it, or pass --overwrite to start over")
        return done

    # ------------------------------------------------------------ writing
    def _create(self, start, results):
        """The whole partial file, with the first batch in it, made under a
        temporary name and renamed to ``.partial`` when it is complete."""
        import h5py

        fresh = self.partial + ".new"
        try:
            with h5py.File(fresh, "w") as handle:
                handle.attrs["settings"] = self.settings
                handle.attrs["count"] = self.count
                handle.create_dataset("_done", data=np.zeros(1, dtype=np.int64))
                for name, rows in results.items():
                    if name != "source":
                        self._allocate(handle, name, np.asarray(rows))
                if self.names is not None:
                    handle.create_dataset("source", data=np.array(self.names, dtype=object),
                                          dtype=h5py.string_dtype())
                # reserve the disk before HDF5 writes anything: a full disk
                # then shows as the system's own words
                _reserve(fresh, handle.id.get_filesize())
                handle.flush()
                self._rows(handle, start, results)
            replace_durably(fresh, self.partial)
        except BaseException:
            if os.path.exists(fresh):
                os.remove(fresh)
            raise

    def _allocate(self, handle, name, rows):
        import h5py

        plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        plist.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        chunks = (max(1, min(len(rows), self.count)),) + rows.shape[1:]
        return handle.create_dataset(name, shape=(self.count,) + rows.shape[1:], dtype=rows.dtype,
                                     chunks=chunks, dcpl=plist, fill_time="never")

    def _rows(self, handle, start, results):
        """Write the rows of one batch, flush them, then count them as done."""
        stop = start
        for name, rows in results.items():
            if name == "source":
                continue  # written whole at the start
            rows = np.asarray(rows)
            if name not in handle:  # a first batch without any readable sample lacked it
                self._allocate(handle, name, rows)
                handle.flush()
                _reserve(handle.filename, handle.id.get_filesize())
            handle[name][start:start + len(rows)] = rows
            stop = start + len(rows)
        handle.flush()
        # the rows are on the disk before the count that says they are done
        _sync(handle)
        handle["_done"][0] = stop
        handle.flush()
        return stop

    def write(self, start, results):
        """Store ``results`` (name -> rows) as samples start.. and mark them done.

        A write that fails (a full disk) raises OSError saying so; the
        samples done before it stay in the partial file."""
        import h5py

        try:
            if self.file is None and (self._fresh or not os.path.exists(self.partial)):
                self._create(start, results)
                self.file = h5py.File(self.partial, "r+")
                self._fresh = False
                self.done = start + len(next(iter(results.values())))
                return
            if self.file is None:
                self.file = h5py.File(self.partial, "r+")
                if "_done" not in self.file:  # a partial file of an earlier lrpnb: counted in an attribute
                    self.file.create_dataset("_done", data=np.array([self.done], dtype=np.int64))
            self.done = self._rows(self.file, start, results)
        except (OSError, RuntimeError) as error:
            self._abandon()
            kept = (f"the {self.done} samples done before are kept in it: make room and run the same "
                    f"command again to resume") if self.done else "nothing was written"
            raise OSError(f"cannot write {self.partial}: {_os_reason(error)}; {kept}") from None

    def _abandon(self):
        """Close after a failed write, whatever the HDF5 library says."""
        if self.file is not None:
            try:
                self.file.close()
            except Exception:  # noqa: BLE001 - the file is left as the last flush made it
                pass
            self.file = None

    def finish(self):
        """Move the file to its final name, keeping only the rows marked
        ``ok`` (samples that could not be read are left out), compressed if
        asked. Returns how many rows were left out."""
        import h5py

        try:
            if self.file is None:
                self.file = h5py.File(self.partial, "r+")
            ok = self.file["ok"][...] if "ok" in self.file else None
            if ok is not None and not ok.any():
                self._abandon()
                raise ValueError(f"{self.path}: no sample could be explained")
            dropped = 0 if ok is None else int(np.sum(~ok))
            if dropped == 0 and not self.compression:
                # the run's bookkeeping goes before the rename: a file under
                # the final name is complete even after a kill at any point
                for name in ("ok", "_done"):
                    if name in self.file:
                        del self.file[name]
                for key in ("done", "count", "settings"):
                    if key in self.file.attrs:
                        del self.file.attrs[key]
                write_attributes(self.file, self.attributes)
                self.file.flush()
                self._abandon()
                replace_durably(self.partial, self.path)
                return 0
            self._abandon()
            try:
                with atomic_path(self.path, suffix=".h5") as tmp:
                    self._copy(tmp, ok)
            except (OSError, RuntimeError) as error:
                raise OSError(f"cannot write {self.path}: {_os_reason(error)}; every sample is done and "
                              f"kept in {self.partial}: make room and run the same command again to "
                              f"finish") from None
            os.remove(self.partial)
            return dropped
        finally:
            self._lock.release()

    #: bytes of a dataset copied at a time when finishing by a copy
    COPY_BYTES = 1 << 26

    def _copy(self, tmp, ok):
        """The partial file's results into ``tmp``, without the rows not
        ``ok``, compressed as asked, a slice of rows at a time (memory stays
        bounded however large the results are)."""
        import h5py

        with h5py.File(self.partial, "r") as source, h5py.File(tmp, "w") as target:
            keep = np.ones(self.count, dtype=bool) if ok is None else ok
            kept = int(keep.sum())
            write_attributes(target, self.attributes)
            for name in source:
                if name in ("ok", "_done"):
                    continue
                data = source[name]
                if name == "source":
                    names = data[...][keep].astype(object)
                    target.create_dataset(name, data=names, dtype=h5py.string_dtype())
                    continue
                row_bytes = max(1, data.dtype.itemsize * int(np.prod(data.shape[1:], dtype=np.int64)))
                step = max(1, self.COPY_BYTES // row_bytes)
                chunks = (max(1, min(step, kept)),) + data.shape[1:]
                out = target.create_dataset(name, shape=(kept,) + data.shape[1:], dtype=data.dtype,
                                            chunks=chunks, **self.compression)
                written = 0
                for first in range(0, self.count, step):
                    rows = data[first:first + step][keep[first:first + step]]
                    out[written:written + len(rows)] = rows
                    written += len(rows)

    def close(self):
        """Close without finishing (an interrupted run: the partial file stays)."""
        self._abandon()
        self._lock.release()

    def discard(self):
        """Close and remove the partial file (a run that explained nothing),
        before the lock is released: once it is, the partial file may be
        another run's."""
        try:
            self._abandon()
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.partial)
        finally:
            self._lock.release()


def _differing(before, now):
    """The names of the settings (JSON objects) that differ."""
    try:
        before, now = json.loads(before), json.loads(now)
    except (TypeError, ValueError):
        return ["all"]
    if not isinstance(before, dict):
        return ["all"]
    return sorted(key for key in set(before) | set(now) if before.get(key) != now.get(key))


def _sync(handle):
    """Put an open HDF5 file's flushed contents on the disk."""
    try:
        os.fsync(handle.id.get_vfd_handle())
    except (OSError, TypeError, ValueError):  # a driver without a file descriptor
        pass


def _reserve(path, size):
    """Reserve ``size`` bytes of disk for the file at ``path`` (Linux), so that
    a full disk shows now rather than in the middle of a later batch."""
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as error:
        if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # filesystems without it
            raise
    finally:
        os.close(fd)


def _os_reason(error):
    """The operating system's words for a failed write (h5py wraps them)."""
    text = str(error)
    for code in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        if getattr(error, "errno", None) == code or f"errno = {code}," in text:
            return os.strerror(code).lower()
    return text.splitlines()[0] if text else type(error).__name__


class NpyWriter:
    """Relevance written batch by batch into a ``.npy`` file, in bounded memory.

    The file is written under a temporary name in the target's folder: a
    header sized for every sample, then the rows of each batch as they come
    (plain writes: the rows go to the disk, not into this process's
    memory). :meth:`finish` renames it into place, first copying the rows
    under a header of their count, in chunks, when some samples could not be
    read; :meth:`close` without finishing removes it. Not resumable: an
    interrupted run writes nothing.
    """

    #: bytes copied at a time when the file is cut to the samples read
    COPY_BYTES = 1 << 24

    def __init__(self, path, count):
        self.path, self.count = os.fspath(path), count
        self.rows, self.tmp, self.handle, self.dtype, self.shape = 0, None, None, None, None

    @staticmethod
    def _header(handle, dtype, shape):
        from numpy.lib import format as npy

        header = {"descr": npy.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
        npy.write_array_header_2_0(handle, header) if len(repr(header)) > 60000 else \
            npy.write_array_header_1_0(handle, header)
        return handle.tell()

    def write(self, relevance):
        """Append the rows of one batch."""
        relevance = np.ascontiguousarray(relevance)
        if self.handle is None:
            import tempfile

            folder = os.path.dirname(os.path.abspath(self.path))
            fd, self.tmp = tempfile.mkstemp(prefix="." + os.path.basename(self.path) + ".", suffix=".tmp.npy",
                                            dir=folder)
            self.handle = os.fdopen(fd, "wb")
            self.dtype, self.shape = relevance.dtype, relevance.shape[1:]
            self.offset = self._header(self.handle, self.dtype, (self.count,) + self.shape)
        self.handle.write(relevance.astype(self.dtype, copy=False).tobytes())
        self.rows += len(relevance)

    def finish(self):
        if self.handle is None:
            raise ValueError(f"{self.path}: nothing to write")
        try:
            self.handle.close()
            self.handle = None
            final = self.tmp
            if self.rows < self.count:
                final = self.tmp + ".cut.npy"
                remaining = self.rows * self.dtype.itemsize * int(np.prod(self.shape, dtype=np.int64))
                with open(self.tmp, "rb") as source, open(final, "wb") as target:
                    self._header(target, self.dtype, (self.rows,) + self.shape)
                    source.seek(self.offset)
                    while remaining:
                        chunk = source.read(min(self.COPY_BYTES, remaining))
                        target.write(chunk)
                        remaining -= len(chunk)
            os.chmod(final, 0o666 & ~_umask())
            replace_durably(final, self.path)
        finally:
            self.close()

    def close(self):
        """Remove what was written (an unfinished run)."""
        if self.handle is not None:
            self.handle.close()
            self.handle = None
        for path in (self.tmp, None if self.tmp is None else self.tmp + ".cut.npy"):
            if path is not None and os.path.exists(path):
                os.remove(path)
