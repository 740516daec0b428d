"""Reading and writing data arrays in the formats the LRP Toolbox uses.

- ``.npy``: one array (never unpickled; Python-2-era headers are read too).
- ``.npz``: the array under the key 'data', or the only array in the file.
- ``.mat``: one matrix under the key 'data' (MATLAB v4-v7 through scipy;
  v7.3 files are HDF5 and are read through h5py).
- ``.txt``: whitespace-separated numbers, one row per line (numpy.loadtxt).
"""
import contextlib
import os
import stat
import warnings

import numpy as np

from ._atomic import atomic_path

__all__ = ["read_data", "write_data", "class_labels", "check_regular", "check_hdf5_dataset",
           "reading_hdf5", "HDF5_ERRORS", "array_limit", "check_array_size", "MAX_ARRAY_BYTES",
           "MAX_ARRAY_RATIO", "MAX_ARRAY_FLOOR"]

#: The size policy of every array a reader makes from a file (decompression
#: and allocation bombs never pass): at most MAX_ARRAY_RATIO bytes per byte
#: of the file (deflate reaches about 1000; real data compresses far less),
#: any array up to MAX_ARRAY_FLOOR whatever the file's size, and never more
#: than MAX_ARRAY_BYTES for an array held whole in memory. The environment
#: variable LRPNB_MAX_ARRAY_BYTES (bytes) replaces all three with its value.
MAX_ARRAY_RATIO = 100
MAX_ARRAY_FLOOR = 64 << 20
MAX_ARRAY_BYTES = 4 << 30
LIMIT_VARIABLE = "LRPNB_MAX_ARRAY_BYTES"

_EXTENSIONS = (".npy", ".npz", ".mat", ".txt")


def _extension(path):
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in _EXTENSIONS:
        raise ValueError(f"unknown data format {ext or '(no extension)'!r} of {os.fspath(path)!r}; "
                         f"use one of {', '.join(_EXTENSIONS)}")
    return ext


def check_regular(path, what="file"):
    """Refuse ``path`` unless it is a regular file (after links), checked
    before it is opened: a FIFO would block the read, a device such as
    /dev/zero never end it. ``what`` names the file in the message."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "a folder" if stat.S_ISDIR(mode) else "not a file")
        raise ValueError(f"{os.fspath(path)}: {what} is {kind}, not a regular file")


def array_limit(file_size=None, whole=True):
    """The most bytes an array read from a file of ``file_size`` bytes may
    take (None: not made from a file's bytes, as a resized image), held
    ``whole`` in memory or read in batches; see :data:`MAX_ARRAY_RATIO`."""
    value = os.environ.get(LIMIT_VARIABLE, "").strip()
    if value:
        try:
            limit = int(float(value))
        except ValueError:
            raise ValueError(f"{LIMIT_VARIABLE} must be a number of bytes, got {value!r}") from None
        if limit <= 0:
            raise ValueError(f"{LIMIT_VARIABLE} must be a positive number of bytes, got {value!r}")
        return limit
    limit = MAX_ARRAY_BYTES if whole else float("inf")
    if file_size is not None:
        limit = min(limit, max(MAX_ARRAY_FLOOR, MAX_ARRAY_RATIO * file_size))
    return limit


def check_array_size(nbytes, where, what, file_size=None, whole=True):
    """ValueError naming ``where`` unless an array of ``nbytes`` (``what``:
    its shape and dtype) fits :func:`array_limit`."""
    limit = array_limit(file_size, whole)
    if nbytes > limit:
        source = f" ({MAX_ARRAY_RATIO} x the file's {file_size:,} bytes)" \
            if file_size is not None and limit == MAX_ARRAY_RATIO * file_size else ""
        raise ValueError(f"{where}: {what} would take {nbytes:,} bytes, more than the {int(limit):,} allowed"
                         f"{source}; set {LIMIT_VARIABLE} to a larger number of bytes to accept it")


#: what h5py raises when the HDF5 library meets damaged bytes (it maps the
#: library's error classes onto these, SystemError where a callback fails)
HDF5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, SystemError)


@contextlib.contextmanager
def reading_hdf5(path, what, hint="the file is damaged"):
    """Turn what h5py raises in the block into a ValueError that starts with
    ``path``, says that ``what`` (the file, a dataset, rows of it) cannot
    be read, and ends with ``hint``. Only h5py's calls belong in the block:
    a ValueError of lrpnb's own checks would be reworded. A file that is
    missing or not readable keeps its FileNotFoundError or PermissionError."""
    try:
        yield
    except HDF5_ERRORS as error:
        if isinstance(error, (FileNotFoundError, PermissionError)) and not os.access(path, os.R_OK):
            raise
        raise ValueError(f"{path}: cannot read {what} ({type(error).__name__}: {error}); {hint}") from None


def check_hdf5_dataset(dataset, where):
    """Refuse an h5py dataset whose values lie outside its file: external
    storage (raw files named in the dataset) or a virtual layout (other
    HDF5 files' datasets); either reads files that were not named.
    ``where`` ("FILE:DATASET") starts the message; a layout that cannot
    be read is refused too."""
    try:
        virtual = dataset.is_virtual
        external = dataset.id.get_create_plist().get_external_count() > 0
    except HDF5_ERRORS as error:
        raise ValueError(f"{where}: cannot read the dataset's layout ({type(error).__name__}: {error}); "
                         f"the file is damaged") from None
    if virtual:
        raise ValueError(f"{where}: a virtual dataset (its values are in other files); refused")
    if external:
        raise ValueError(f"{where}: a dataset with external storage (its values are in other files); refused")


def read_data(path, mmap=False):
    """Read the array stored in ``path`` (format from the extension).

    Files are untrusted input: a malformed one is a ValueError naming it
    (never a crash, another exception type or a huge allocation: a size
    declared beyond the file's bytes is refused before anything is
    allocated). ``mmap=True`` maps a ``.npy`` file read-only instead of
    reading it, so that a batch reads only its rows.
    """
    ext = _extension(path)
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file not found: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"data path is a folder, not a file: {path}")
    check_regular(path, "the data file")
    try:
        with warnings.catch_warnings():
            # files written by Python 2 need extra header parsing; harmless
            warnings.simplefilter("ignore", UserWarning)
            if ext == ".npy":
                with open(path, "rb") as handle:
                    _check_npy_header(handle, os.path.getsize(path))
                return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
            if ext == ".npz":
                return _read_npz(path)
        if ext == ".mat":
            return _read_mat(path)
        return np.loadtxt(path, ndmin=2)
    except (FileNotFoundError, PermissionError):
        raise
    except ValueError as error:
        if str(error).startswith(path):
            raise
        raise ValueError(f"{path}: cannot read {ext} data ({error})") from None
    except Exception as error:  # noqa: BLE001 - any failure on untrusted bytes is a bad file
        raise ValueError(f"{path}: cannot read {ext} data ({type(error).__name__}: {error})") from None


def _check_npy_header(handle, available):
    """Read a .npy header from ``handle`` and refuse object arrays and a
    shape larger than the ``available`` bytes can hold."""
    from numpy.lib import format as npy

    version = npy.read_magic(handle)
    if version == (1, 0):
        shape, _, dtype = npy.read_array_header_1_0(handle)
    elif version == (2, 0):
        shape, _, dtype = npy.read_array_header_2_0(handle)
    else:  # (3, 0): a UTF-8 header, read by numpy's own (private) reader
        reader = getattr(npy, "_read_array_header", None)  # numpy 1
        if reader is None:
            from numpy.lib import _format_impl  # numpy 2

            reader = _format_impl._read_array_header
        shape, _, dtype = reader(handle, version)
    if dtype.hasobject:
        raise ValueError("object arrays are refused (they would be unpickled)")
    count = 1
    for n in shape:
        count *= n
    needed, left = count * dtype.itemsize, available - handle.tell()
    if needed > left:
        raise ValueError(f"the header declares shape {shape} of {dtype} ({needed:,} bytes), "
                         f"{left:,} bytes follow")
    return shape, dtype, needed


def _read_npz(path):
    import zipfile

    with zipfile.ZipFile(path) as archive:
        names = [info.filename for info in archive.infolist()]
        # a member that is not .npy is returned raw by numpy, and "data" beside
        # "data.npy" shadows it: both bypass the header's checks
        others = [name for name in names if not name.endswith(".npy")]
        if others:
            raise ValueError(f"{path}: holds members that are not .npy arrays: {others[:5]}")
        if len(set(names)) != len(names):
            raise ValueError(f"{path}: holds two members of one name")
        members = {info.filename[:-4]: info for info in archive.infolist()}
        keys = list(members)
        key = "data" if "data" in keys else keys[0] if len(keys) == 1 else None
        if key is None:
            raise ValueError(f"{path}: holds {keys}; expected a key 'data' or a single array")
        with archive.open(members[key]) as handle:
            # the member's own size bounds what its header may declare, and
            # the archive's size what it may decompress to
            shape, dtype, needed = _check_npy_header(handle, members[key].file_size)
        check_array_size(needed, path, f"member {key!r} of shape {shape} and {dtype}",
                         os.path.getsize(path))
        from numpy.lib import format as npy

        with archive.open(members[key]) as handle:
            return npy.read_array(handle, allow_pickle=False)


def _read_mat(path):
    from ._matfile import read_matrices

    with open(path, "rb") as handle:
        # MATLAB v7.3: a 512-byte header, then an HDF5 file (its signature at byte 512)
        hdf5 = handle.read(520)[512:] == b"\x89HDF\r\n\x1a\n"
    if hdf5:
        return _read_v73(path)
    # v4 and v5 through lrpnb's strict reader, not scipy's loadmat, which
    # crashed the process on malformed files (issue 13)
    contents = read_matrices(path, lambda nbytes, what, file_size: check_array_size(nbytes, path, what, file_size))
    if "data" not in contents:
        raise ValueError(f"{path}: no numeric variable 'data' (found {sorted(contents)})")
    return contents["data"]


def _read_v73(path):
    """The variable 'data' of a MATLAB v7.3 file (HDF5, stored column-major)."""
    import h5py

    with reading_hdf5(path, "the file as MATLAB v7.3 (HDF5)", "the file is damaged or not a MAT-file"):
        handle = h5py.File(path, "r")
    with handle:
        with reading_hdf5(path, "the variable 'data'"):
            found = "data" in handle
            names = sorted(handle) if not found else None
            hard = found and isinstance(handle.get("data", getlink=True), h5py.HardLink)
            data = handle["data"] if hard else None
            dataset = isinstance(data, h5py.Dataset)
        if not found:
            raise ValueError(f"{path}: no variable 'data' (found {names})")
        if not dataset:
            raise ValueError(f"{path}: 'data' is not a dataset of the file")
        check_hdf5_dataset(data, f"{path}:data")
        with reading_hdf5(path, "the variable 'data'"):
            shape, dtype = data.shape, data.dtype
        check_array_size(int(np.prod(shape, dtype=object)) * dtype.itemsize, f"{path}:data",
                         f"the dataset of shape {shape} and {dtype}", os.path.getsize(path))
        with reading_hdf5(path, f"the values of the variable 'data' (shape {shape}, {dtype})"):
            return np.asarray(data).T


def class_labels(Y, what, count=None, classes=None):
    """Integer class labels (int64, (N,)) from labels as the toolbox stores
    them, one-hot rows (N, C), or from class indices (N,) or (N, 1) of any
    numeric dtype. ``what`` names them in errors; ``count`` and ``classes``,
    when given, are the number of labels and of classes they must fit."""
    Y = np.asarray(Y)
    if Y.dtype.kind not in "biuf":
        raise ValueError(f"{what} must be numeric class labels, got dtype {Y.dtype}")
    if Y.ndim == 2 and Y.shape[1] > 1:
        if classes is not None and Y.shape[1] != classes:
            raise ValueError(f"{what} has {Y.shape[1]} columns but the network has {classes} outputs")
        labels = np.argmax(Y, axis=1)
    else:
        if Y.dtype.kind == "f" and not np.all(np.mod(Y, 1) == 0):
            raise ValueError(f"{what} must hold class indices or one-hot rows")
        labels = Y.reshape(-1).astype(np.int64)
    if count is not None and len(labels) != count:
        raise ValueError(f"{what} has {len(labels)} labels for {count} samples")
    if classes is not None and labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"{what}: labels must lie in 0..{classes - 1}, got {labels.min()}..{labels.max()}")
    return labels


def write_data(array, path):
    """Write ``array`` to ``path`` (format from the extension), atomically."""
    ext = _extension(path)
    array = np.asarray(array)
    if ext == ".txt" and array.ndim > 2:
        raise ValueError(f"a .txt data file holds at most 2 dimensions, got shape {array.shape}; "
                         f"reshape to (N, -1) first")
    with atomic_path(path, suffix=ext) as tmp:
        if ext == ".npy":
            np.save(tmp, array, allow_pickle=False)
        elif ext == ".npz":
            np.savez_compressed(tmp, data=array)
        elif ext == ".mat":
            import scipy.io

            scipy.io.savemat(tmp, {"data": array})
        else:
            np.savetxt(tmp, np.atleast_2d(array) if array.ndim < 2 else array, fmt="%.17g")
