"""Moving arrays between the host and the GPU, and checking them there."""
import numpy as np
from numba import cuda

from . import KERNEL, launch

#: what a caller passed in, so the result goes back as the same kind
NUMPY, NUMBA, CUPY, TORCH, OTHER = "numpy", "numba", "cupy", "torch", "other"


def is_gpu_array(array):
    """True for numba device arrays and anything with ``__cuda_array_interface__``."""
    if hasattr(cuda, "is_cuda_array"):
        return cuda.is_cuda_array(array)
    # numba's simulator: its device arrays have no interface of their own
    return hasattr(array, "__cuda_array_interface__") or isinstance(
        array, cuda.devicearray.FakeCUDAArray)


def kind_of(array):
    """The kind of array a caller passed (NUMPY, NUMBA, CUPY, TORCH or OTHER)."""
    if isinstance(array, np.ndarray):
        return NUMPY
    if is_gpu_array(array):
        module = type(array).__module__.split(".")[0]
        if module in ("numba", "numba_cuda"):
            return NUMBA
        if module == "cupy":
            return CUPY
        if module == "torch":
            return TORCH
        return OTHER
    return NUMPY


def to_device(array, what):
    """(device array, kind): numpy input is copied to the GPU (non-float dtypes
    as float64), GPU input (``__cuda_array_interface__``) is used in place."""
    kind = kind_of(array)
    if kind == NUMPY:
        host = np.asarray(array)
        if host.dtype.kind not in "biuf":
            raise ValueError(f"{what} must be a numeric array, got dtype {host.dtype}")
        if host.dtype not in (np.float32, np.float64):
            host = host.astype(np.float64)
        return cuda.to_device(np.ascontiguousarray(host)), kind
    device = array if kind == NUMBA else cuda.as_cuda_array(array)
    if device.dtype not in (np.float32, np.float64):
        raise ValueError(f"{what} on the GPU must be float32 or float64, got {device.dtype}")
    if not device.is_c_contiguous():
        raise ValueError(f"{what} on the GPU must be C-contiguous")
    return device, kind


def put(array):
    """A host (numpy) array copied to the GPU."""
    return cuda.to_device(array)


def to_host(array):
    """A device array copied to the host."""
    return array.copy_to_host()


def from_device(device, kind):
    """The result as the kind of array the caller passed in."""
    if kind == NUMPY:
        return device.copy_to_host()
    if kind == CUPY:
        import cupy

        return cupy.asarray(device)
    if kind == TORCH:
        import torch

        return torch.as_tensor(device, device="cuda")
    return device


@cuda.jit(**KERNEL)
def _first_nonfinite(X, row, first):
    """first[0] = the smallest sample index holding NaN or infinity."""
    for e in range(cuda.grid(1), X.size, cuda.gridsize(1)):
        x = X[e]
        if x != x or x - x != x - x:
            cuda.atomic.min(first, 0, e // row)


def first_nonfinite_sample(X):
    """Index of the first sample with NaN or infinite values, or None."""
    first = cuda.to_device(np.array([X.shape[0]], dtype=np.int64))
    launch(_first_nonfinite, X.size)(X.reshape(-1), X.size // X.shape[0], first)
    index = int(first.copy_to_host()[0])
    return None if index == X.shape[0] else index


def free_memory():
    """Bytes of free device memory (under the simulator: the host's, as
    numba's simulated arrays live there; 16 GiB if unknown)."""
    try:
        return int(cuda.current_context().get_memory_info()[0])
    except Exception:  # the simulator has no memory info
        return 16 << 30


def concatenate(parts):
    """The device arrays ``parts`` joined along the first axis, on the device."""
    out = cuda.device_array((sum(part.shape[0] for part in parts),) + tuple(parts[0].shape[1:]),
                            dtype=parts[0].dtype)
    start = 0
    for part in parts:
        out[start:start + part.shape[0]].copy_to_device(part)
        start += part.shape[0]
    return out


@cuda.jit(**KERNEL)
def _repeat_rows(A, row, times, out):
    """out = every row (sample) of A ``times`` times in a row (flat views)."""
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[e] = A[(e // (row * times)) * row + e % row]


def repeat(array, times):
    """Each sample of a device array ``times`` times in a row, on the device
    (numpy.repeat along axis 0)."""
    out = cuda.device_array((array.shape[0] * times,) + tuple(array.shape[1:]), dtype=array.dtype)
    launch(_repeat_rows, out.size)(array.reshape(-1), array.size // array.shape[0], times, out.reshape(-1))
    return out


SIGNATURES = {_first_nonfinite: "A1 I I1", _repeat_rows: "A1 I I A1"}
