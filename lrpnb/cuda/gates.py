"""Products with a per-channel constant (Scale) and of two activations (Mul)
on the GPU: the twin of ``lrpnb.kernels.gates``. Every kernel writes each
output element once (grid-stride loops over the output): no atomics."""
from numba import cuda

from . import KERNEL, launch
from .rules import stabilize


@cuda.jit(**KERNEL)
def _scale(X, S, out):
    D = S.size
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[e] = X[e] * S[e % D]


@cuda.jit(**KERNEL)
def _scale_epsilon(X, S, R, k, epsilon, out):
    D = S.size
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        z = k * X[e] * S[e % D]
        out[e] = z * R[e] / stabilize(z, epsilon)


@cuda.jit(**KERNEL)
def _scale_paired(X, S, R, p1, p2, tiny, out):
    D = S.size
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        z = X[e] * S[e % D]
        zero = z - z
        if z > 0:
            out[e] = p1 * z * R[e] / (z + tiny)
        elif z < 0:
            out[e] = p2 * z * R[e] / (z - tiny)
        else:
            out[e] = zero * R[e]


@cuda.jit(**KERNEL)
def _scale_zbox(X, S, L, H, R, epsilon, out):
    D = S.size
    C = L.size
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        s = S[e % D]
        zero = s - s
        c = e % C
        v = X[e] * s - L[c] * max(s, zero) - H[c] * min(s, zero)
        out[e] = v * R[e] / stabilize(v, epsilon)


def _flat(kernel, shape, dtype, *arrays):
    out = cuda.device_array(tuple(shape), dtype=dtype)
    launch(kernel, out.size)(*arrays, out.reshape(out.size))
    return out


def scale_forward(X, S):
    """``x S[c]`` for every element x of channel c (S of size 1 or C); also
    the gradient ``G S[c]``."""
    return _flat(_scale, X.shape, X.dtype, X.reshape(X.size), S)


def scale_relevance_epsilon(X, S, R, k, epsilon):
    """``z R / (z + eps sgn z)`` with ``z = k x S[c]``."""
    return _flat(_scale_epsilon, X.shape, X.dtype, X.reshape(X.size), S, R.reshape(R.size), k, epsilon)


def scale_relevance_paired(X, S, R, p1, p2, tiny):
    """The alpha-beta rule on a diagonal weight (lrpnb.kernels.gates)."""
    return _flat(_scale_paired, X.shape, X.dtype, X.reshape(X.size), S, R.reshape(R.size), p1, p2, tiny)


def scale_relevance_zbox(X, S, L, H, R, epsilon):
    """The z^B rule on a diagonal weight (lrpnb.kernels.gates)."""
    return _flat(_scale_zbox, X.shape, X.dtype, X.reshape(X.size), S, L, H, R.reshape(R.size), epsilon)


@cuda.jit(**KERNEL)
def _mul(X, G, out):
    N, M, C = X.shape
    full = G.shape[1] == M
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        n = e // (M * C)
        m = (e // C) % M
        c = e % C
        out[n, m, c] = X[n, m, c] * G[n, m if full else 0, c]


@cuda.jit(**KERNEL)
def _broadcast_sum(A, factor, out):
    N, M, C = A.shape
    rows = out.shape[1]
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        n = e // (rows * C)
        r = (e // C) % rows
        c = e % C
        if rows == M:
            out[n, r, c] = factor * A[n, r, c]
        else:
            total = A[n, 0, c] - A[n, 0, c]
            for m in range(M):
                total += A[n, m, c]
            out[n, 0, c] = factor * total


@cuda.jit(**KERNEL)
def _fill_zero(out):
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[e] = 0


def mul_forward(X, G):
    """``X G`` for X of shape (N, M, C) and G of (N, M, C) or (N, 1, C)."""
    out = cuda.device_array(tuple(X.shape), dtype=X.dtype)
    launch(_mul, out.size)(X, G, out)
    return out


def broadcast_sum(A, factor, rows):
    """``factor A`` (rows = M) or ``factor sum_m A[:, m]`` as (N, 1, C) (rows = 1)."""
    out = cuda.device_array((A.shape[0], rows, A.shape[2]), dtype=A.dtype)
    launch(_broadcast_sum, out.size)(A, factor, out)
    return out


def zeros(shape, dtype):
    """A device array of zeros (the relevance of a factor held constant)."""
    out = cuda.device_array(tuple(shape), dtype=dtype)
    launch(_fill_zero, out.size)(out.reshape(out.size))
    return out


SIGNATURES = {_scale: "A1 A1 A1", _scale_epsilon: "A1 A1 A1 F F A1", _scale_paired: "A1 A1 A1 F F F A1",
              _scale_zbox: "A1 A1 A1 A1 A1 F A1", _mul: "A3 A3 A3", _broadcast_sum: "A3 F A3", _fill_zero: "A1"}
