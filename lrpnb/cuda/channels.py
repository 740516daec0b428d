"""Gathering channels (the last axis) by an index, and its adjoint, on the
GPU: the twin of ``lrpnb.kernels.channels``. The kernel writes each output
element once (a grid-stride loop over the output): no atomics."""
from numba import cuda

from . import KERNEL, launch


@cuda.jit(**KERNEL)
def _gather(X, index, out):
    # index[k] < 0: channel k is zero
    K = index.size
    C = X.size // (out.size // K)
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        c = index[e % K]
        out[e] = X[(e // K) * C + c] if c >= 0 else X[0] - X[0]


def _gathered(X, index):
    out = cuda.device_array(tuple(X.shape)[:-1] + (index.size,), dtype=X.dtype)
    launch(_gather, out.size)(X.reshape(X.size), index, out.reshape(out.size))
    return out


def gather_channels(X, index):
    """``Y[..., k] = X[..., index[k]]`` (int64 ``index``)."""
    return _gathered(X, index)


def scatter_channels(R, inverse):
    """The adjoint of ``gather_channels`` (lrpnb.kernels.channels)."""
    return _gathered(R, inverse)


SIGNATURES = {_gather: "A1 I1 A1"}
