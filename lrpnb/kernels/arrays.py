"""Arrays on the CPU: the twin of ``lrpnb.cuda.arrays``.

On the CPU the "device" is the host: arrays are numpy arrays, checked and
made C-contiguous on the way in and returned as they are.
"""
import os

import numpy as np

#: what a caller passed in, so the result goes back as the same kind
NUMPY = "numpy"

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def is_gpu_array(array):
    """True for anything with ``__cuda_array_interface__`` (which the CPU cannot use)."""
    return hasattr(array, "__cuda_array_interface__")


def kind_of(array):
    """The kind of array a caller passed: NUMPY (the only kind the CPU answers with)."""
    return NUMPY


def to_device(array, what):
    """(C-contiguous numpy array, kind): float32 and float64 stay as they are,
    other numeric dtypes become float64."""
    if is_gpu_array(array):
        raise ValueError(f"{what} is a GPU array but the network is on the CPU; "
                         f"call net.to('cuda') first, or pass a numpy array")
    if not isinstance(array, np.ndarray):
        try:
            array = np.asarray(array)
        except (TypeError, ValueError):
            raise ValueError(f"{what} must be a numeric array") from None
    if array.dtype not in _FLOATS:
        if array.dtype.kind not in "biuf":
            raise ValueError(f"{what} must be a numeric array, got dtype {array.dtype}")
        array = array.astype(np.float64)
    return np.ascontiguousarray(array), NUMPY


def from_device(device, kind):
    """The result as the kind of array the caller passed in (numpy)."""
    return device


def put(array):
    """A host array on the device: the array itself."""
    return array


def to_host(array):
    """A device array on the host: the array itself."""
    return array


def first_nonfinite_sample(X):
    """Index of the first sample with NaN or infinite values, or None."""
    if np.isfinite(X).all():
        return None
    return int(np.argwhere(~np.isfinite(X.reshape(X.shape[0], -1)))[0][0])


def free_memory():
    """Bytes of memory available to new arrays (the host's physical memory
    not in use; 16 GiB where the system does not tell)."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 16 << 30


def concatenate(parts):
    """``parts`` joined along the first axis."""
    return np.concatenate(parts)


def repeat(array, times):
    """Each sample ``times`` times in a row (numpy.repeat along axis 0)."""
    return np.repeat(array, times, axis=0)
