"""The graph network's data movement and joins on the GPU: the twin of
``lrpnb.kernels.tensors``. Every kernel writes each output element once
(grid-stride loops over the output): no atomics."""
from numba import cuda

from . import KERNEL, launch, unravel
from .rules import stabilize


@cuda.jit(**KERNEL)
def _pad(X, top, left, value, out):
    H, W = X.shape[1], X.shape[2]
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        n, p, q, c = unravel(e, out.shape)
        if top <= p < top + H and left <= q < left + W:
            out[n, p, q, c] = X[n, p - top, q - left, c]
        else:
            out[n, p, q, c] = value


@cuda.jit(**KERNEL)
def _window(X, top, left, c0, out):
    """out = X[:, top:top+H', left:left+W', c0:c0+D'] for out's shape."""
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        n, p, q, c = unravel(e, out.shape)
        out[n, p, q, c] = X[n, p + top, q + left, c + c0]


@cuda.jit(**KERNEL)
def _put_channels(part, c0, out):
    for e in range(cuda.grid(1), part.size, cuda.gridsize(1)):
        n, p, q, c = unravel(e, part.shape)
        out[n, p, q, c + c0] = part[n, p, q, c]


@cuda.jit(**KERNEL)
def _accumulate(A, B):
    for e in range(cuda.grid(1), A.size, cuda.gridsize(1)):
        A[e] += B[e]


@cuda.jit(**KERNEL)
def _share(X, Y, R, epsilon, out):
    for e in range(cuda.grid(1), X.size, cuda.gridsize(1)):
        out[e] = X[e] * R[e] / stabilize(Y[e], epsilon)


def _four(A):
    """A as (N, H, W, D): vectors (N, D) become (N, 1, 1, D)."""
    shape = tuple(A.shape)
    return A if len(shape) == 4 else A.reshape((shape[0], 1, 1, shape[-1]))


def pad(X, top, bottom, left, right, value):
    """X inside a border of ``value``: shape (N, H+top+bottom, W+left+right, D)."""
    N, H, W, D = X.shape
    out = cuda.device_array((N, H + top + bottom, W + left + right, D), dtype=X.dtype)
    launch(_pad, out.size)(X, top, left, X.dtype.type(value), out)
    return out


def crop(R, top, bottom, left, right):
    """The inner (N, H-top-bottom, W-left-right, D) part of R."""
    N, H, W, D = R.shape
    out = cuda.device_array((N, H - top - bottom, W - left - right, D), dtype=R.dtype)
    launch(_window, out.size)(R, top, left, 0, out)
    return out


def take_channels(X, c0, c1):
    """Channels c0..c1-1 of X (last axis)."""
    shape = tuple(X.shape)
    out = cuda.device_array(shape[:-1] + (c1 - c0,), dtype=X.dtype)
    launch(_window, out.size)(_four(X), 0, 0, c0, _four(out))
    return out


def concat_channels(parts):
    """The arrays joined along their last (channel) axis."""
    shape = tuple(parts[0].shape)
    out = cuda.device_array(shape[:-1] + (sum(tuple(part.shape)[-1] for part in parts),), dtype=parts[0].dtype)
    c0 = 0
    for part in parts:
        launch(_put_channels, part.size)(_four(part), c0, _four(out))
        c0 += tuple(part.shape)[-1]
    return out


def accumulate(A, B):
    """``A += B`` in place."""
    launch(_accumulate, A.size)(A.reshape(A.size), B.reshape(B.size))
    return A


def add_forward(parts):
    """``y = x_1 + x_2 + ...``, added in the order given."""
    out = cuda.device_array(tuple(parts[0].shape), dtype=parts[0].dtype)
    out.copy_to_device(parts[0])
    for part in parts[1:]:
        accumulate(out, part)
    return out


def add_relevance(X, Y, R, epsilon):
    """``R_m = x_m R / (y + eps sgn(y))`` for every summand x_m of y."""
    out = []
    for part in X:
        share = cuda.device_array(tuple(part.shape), dtype=part.dtype)
        launch(_share, part.size)(part.reshape(part.size), Y.reshape(Y.size), R.reshape(R.size), epsilon,
                                  share.reshape(share.size))
        out.append(share)
    return out


@cuda.jit(**KERNEL)
def _fill_channels(L, values):
    """L[..., c] = values[c] (flat view of L)."""
    D = values.size
    for e in range(cuda.grid(1), L.size, cuda.gridsize(1)):
        L[e] = values[e % D]


@cuda.jit(**KERNEL)
def _subtract3(A, B, C, out):
    """out = A - B - C (flat views)."""
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[e] = A[e] - B[e] - C[e]


def channel_filled(shape, values):
    """A device array of ``shape`` (..., D) whose channel c holds ``values[c]``."""
    out = cuda.device_array(tuple(shape), dtype=values.dtype)
    launch(_fill_channels, out.size)(out.reshape(out.size), values)
    return out


def difference3(A, B, C):
    """``A - B - C`` element-wise, on the device."""
    out = cuda.device_array(tuple(A.shape), dtype=A.dtype)
    launch(_subtract3, out.size)(A.reshape(A.size), B.reshape(B.size), C.reshape(C.size), out.reshape(out.size))
    return out


SIGNATURES = {_pad: "A4 I I F A4", _window: "A4 I I I A4", _put_channels: "A4 I A4", _accumulate: "A1 A1",
              _share: "A1 A1 A1 F A1", _fill_channels: "A1 A1", _subtract3: "A1 A1 A1 A1"}
