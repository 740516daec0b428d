"""Reading and writing data arrays in the formats the LRP Toolbox uses.

- ``.npy``: one array (never unpickled; Python-2-era headers are read too).
- ``.npz``: the array under the key 'data', or the only array in the file.
- ``.mat``: one matrix under the key 'data' (MATLAB v4-v7 through scipy;
  v7.3 files are HDF5 and are read through h5py).
- ``.txt``: whitespace-separated numbers, one row per line (numpy.loadtxt).
"""
import os
import warnings

import numpy as np

from ._atomic import atomic_path

__all__ = ["read_data", "write_data", "class_labels"]

_EXTENSIONS = (".npy", ".npz", ".mat", ".txt")


def _extension(path):
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in _EXTENSIONS:
        raise ValueError(f"unknown data format {ext or '(no extension)'!r} of {os.fspath(path)!r}; "
                         f"use one of {', '.join(_EXTENSIONS)}")
    return ext


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


def _read_npz(path):
    import zipfile

    with zipfile.ZipFile(path) as archive:
        members = {name[:-4]: info for info in archive.infolist()
                   for name in [info.filename] if name.endswith(".npy")}
        keys = list(members)
        key = "data" if "data" in keys else keys[0] if len(keys) == 1 else None
        if key is None:
            raise ValueError(f"{path}: holds {keys}; expected a key 'data' or a single array")
        with archive.open(members[key]) as handle:
            # the member's own size bounds what its header may declare
            _check_npy_header(handle, members[key].file_size)
    with np.load(path, allow_pickle=False) as archive:
        return archive[key]


def _read_mat(path):
    from ._matfile import read_matrices

    with open(path, "rb") as handle:
        hdf5 = handle.read(512)[-8:] == b"\x89HDF\r\n\x1a\n"
    if hdf5:
        import h5py  # MATLAB v7.3 files are HDF5 (after a 512-byte header), stored column-major

        with h5py.File(path, "r") as handle:
            if "data" not in handle:
                raise ValueError(f"{path}: no variable 'data' (found {sorted(handle)})") from None
            return np.asarray(handle["data"]).T
    # v4 and v5 through lrpnb's strict reader, not scipy's loadmat, which
    # crashed the process on malformed files (issue 13)
    contents = read_matrices(path)
    if "data" not in contents:
        raise ValueError(f"{path}: no numeric variable 'data' (found {sorted(contents)})")
    return contents["data"]


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
