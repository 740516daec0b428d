"""Token tensors on the GPU: the twin of ``lrpnb.kernels.tokens`` (the
embedding lookup and its row sums, the rearrangement and its adjoint
gathered through the index's inverse, the addition of a constant and the
input's epsilon-rule share). Every kernel writes each output element once
(grid-stride loops over the output): no atomics, and the sums over repeated
indices run in a fixed order."""
from numba import cuda

from . import KERNEL, launch
from .rules import stabilize


@cuda.jit(**KERNEL)
def _embedding(ids, W, out):
    D = W.shape[1]
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        p = e // D
        d = e % D
        out[p, d] = W[int(ids[p]), d]


@cuda.jit(**KERNEL)
def _row_sum(R, out):
    for p in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        total = R[p, 0] - R[p, 0]
        for d in range(R.shape[1]):
            total += R[p, d]
        out[p] = total


def embedding_forward(ids, W):
    """``out[p] = W[ids[p]]`` (lrpnb.kernels.tokens)."""
    out = cuda.device_array((ids.shape[0], W.shape[1]), dtype=W.dtype)
    launch(_embedding, out.size)(ids, W, out)
    return out


def embedding_relevance(R):
    """``sum_d R[p, d]`` for R (P, D) (lrpnb.kernels.tokens)."""
    out = cuda.device_array(R.shape[0], dtype=R.dtype)
    launch(_row_sum, out.size)(R, out)
    return out


@cuda.jit(**KERNEL)
def _rearrange(X, I, index, out):
    # X: the samples' values flat, I per sample
    J = index.size
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        i = index[e % J]
        out[e] = X[(e // J) * I + i] if i >= 0 else X[0] - X[0]


@cuda.jit(**KERNEL)
def _gather_inverse(R, J, starts, sources, out):
    # R: the samples' relevance flat, J per sample
    I = starts.size - 1
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        n = e // I
        i = e % I
        total = R[0] - R[0]
        for k in range(starts[i], starts[i + 1]):
            total += R[n * J + sources[k]]
        out[e] = total


def rearrange_forward(X, index):
    """``out[n, j] = X[n, index[j]]``, 0 where index[j] == -1 (lrpnb.kernels.tokens)."""
    out = cuda.device_array((X.shape[0], index.size), dtype=X.dtype)
    launch(_rearrange, out.size)(X.reshape(X.size), X.shape[1], index, out.reshape(out.size))
    return out


def rearrange_relevance(R, starts, sources):
    """The adjoint of ``rearrange_forward`` through the index's inverse (lrpnb.kernels.tokens)."""
    out = cuda.device_array((R.shape[0], starts.size - 1), dtype=R.dtype)
    launch(_gather_inverse, out.size)(R.reshape(R.size), R.shape[1], starts, sources, out.reshape(out.size))
    return out


@cuda.jit(**KERNEL)
def _bias(X, b, out):
    M = b.size
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[e] = X[e] + b[e % M]


@cuda.jit(**KERNEL)
def _bias_share(X, Y, R, epsilon, out):
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[e] = X[e] * R[e] / stabilize(Y[e], epsilon)


def _flat(kernel, shape, dtype, *arrays):
    out = cuda.device_array(tuple(shape), dtype=dtype)
    launch(kernel, out.size)(*arrays, out.reshape(out.size))
    return out


def bias_forward(X, b):
    """``x + b``, b one constant per element of a sample (lrpnb.kernels.tokens)."""
    return _flat(_bias, X.shape, X.dtype, X.reshape(X.size), b)


def bias_relevance(X, Y, R, epsilon):
    """``x R / (y + eps sgn y)`` element by element (lrpnb.kernels.tokens)."""
    return _flat(_bias_share, X.shape, X.dtype, X.reshape(X.size), Y.reshape(Y.size), R.reshape(R.size), epsilon)


SIGNATURES = {_embedding: "A1 A2 A2", _row_sum: "A2 A1", _rearrange: "A1 I I1 A1", _gather_inverse: "A1 I I1 I1 A1",
              _bias: "A1 A1 A1", _bias_share: "A1 A1 A1 F A1"}
