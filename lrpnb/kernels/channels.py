"""Gathering channels (the last axis) by an index, and its adjoint: the
kernels of GatherChannels (channel shuffles and channel slices of an ONNX
graph). Work splits into blocks of flat output elements run in parallel
(``parallel_map``) through a nogil kernel."""
import numpy as np
from numba import njit

from . import JIT, blocks, parallel_map


@njit(**JIT)
def _gather(X, index, out, e0, e1):
    # index[k] < 0: channel k is zero
    K = index.size
    C = X.size // (out.size // K)
    zero = X[0] - X[0]
    for e in range(e0, e1):
        c = index[e % K]
        out[e] = X[(e // K) * C + c] if c >= 0 else zero


def _gathered(X, index):
    out = np.empty(X.shape[:-1] + (index.size,), dtype=X.dtype)
    flat = out.reshape(-1)
    parallel_map(_gather, [(X.reshape(-1), index, flat, e0, e1) for e0, e1 in blocks(flat.size, 1 << 15)])
    return out


def gather_channels(X, index):
    """``Y[..., k] = X[..., index[k]]`` (int64 ``index``)."""
    return _gathered(X, index)


def scatter_channels(R, inverse):
    """The adjoint of ``gather_channels`` for unique indices, given their
    inverse (``inverse[index[k]] = k``, -1 on the channels no k reads):
    ``out[..., c] = R[..., inverse[c]]``, zero where inverse[c] is -1; the
    relevance and the gradient of the gather."""
    return _gathered(R, inverse)
