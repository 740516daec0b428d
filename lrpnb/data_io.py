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


def read_data(path):
    """Read the array stored in ``path`` (format from the extension)."""
    ext = _extension(path)
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file not found: {path}")
    try:
        if ext == ".npy":
            with warnings.catch_warnings():
                # files written by Python 2 need extra header parsing; harmless
                warnings.simplefilter("ignore", UserWarning)
                return np.load(path, allow_pickle=False)
        if ext == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.keys())
                if "data" in keys:
                    return archive["data"]
                if len(keys) == 1:
                    return archive[keys[0]]
                raise ValueError(f"{path}: holds {keys}; expected a key 'data' or a single array")
        if ext == ".mat":
            return _read_mat(path)
        return np.loadtxt(path, ndmin=2)
    except ValueError as error:
        if str(error).startswith(path):
            raise
        raise ValueError(f"{path}: cannot read {ext} data ({error})") from None
    except (OSError, EOFError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ValueError(f"{path}: cannot read {ext} data ({error})") from None


def _read_mat(path):
    import scipy.io

    try:
        contents = scipy.io.loadmat(path)
    except NotImplementedError:
        import h5py  # MATLAB v7.3 files are HDF5, stored column-major

        with h5py.File(path, "r") as handle:
            if "data" not in handle:
                raise ValueError(f"{path}: no variable 'data' (found {sorted(handle)})") from None
            return np.asarray(handle["data"]).T
    if "data" not in contents:
        names = sorted(k for k in contents if not k.startswith("__"))
        raise ValueError(f"{path}: no variable 'data' (found {names})")
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
