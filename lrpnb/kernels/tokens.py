"""Token tensors: the kernels of Embedding, Rearrange and Bias.

- the embedding lookup ``out[p] = W[ids[p]]`` (token ids held as floats,
  checked integral and in range by the layer) and its relevance, the sum
  over the embedding axis;
- the rearrangement ``out[n, j] = X[n, index[j]]`` (index -1: zero) of each
  sample's flat values, and its adjoint gathered through the inverse of the
  index in compressed-row form (``starts``, ``sources``: the outputs that
  read input i are ``sources[starts[i]:starts[i + 1]]``, in increasing
  order), so repeated indices sum in a fixed order;
- the addition of a constant ``b`` (one value per element of a sample) and
  the epsilon-rule share of the input, ``x R / (y + eps sgn y)``.

Work splits into blocks of flat output elements (or rows) run in parallel
(``parallel_map``) through nogil kernels; arithmetic stays in the input's
dtype.
"""
import numpy as np
from numba import njit

from . import JIT, blocks, flat_blocks, parallel_map
from .rules import stabilize


@njit(**JIT)
def _embedding(ids, W, out, p0, p1):
    for p in range(p0, p1):
        row = int(ids[p])
        for d in range(W.shape[1]):
            out[p, d] = W[row, d]


@njit(**JIT)
def _row_sum(R, out, p0, p1):
    for p in range(p0, p1):
        total = R[p, 0] - R[p, 0]
        for d in range(R.shape[1]):
            total += R[p, d]
        out[p] = total


def embedding_forward(ids, W):
    """``out[p] = W[ids[p]]`` for token ids (P,) held as floats (integral,
    0 <= id < V: checked by the caller) and W (V, D); out (P, D)."""
    out = np.empty((ids.shape[0], W.shape[1]), dtype=W.dtype)
    parallel_map(_embedding, [(ids, W, out, p0, p1) for p0, p1 in blocks(ids.shape[0], 16)])
    return out


def embedding_relevance(R):
    """``sum_d R[p, d]`` for R (P, D): what each token receives (every LRP
    rule), and the gradient of the lookup's output summed alike."""
    out = np.empty(R.shape[0], dtype=R.dtype)
    parallel_map(_row_sum, [(R, out, p0, p1) for p0, p1 in blocks(R.shape[0], 16)])
    return out


@njit(**JIT)
def _rearrange(X, I, index, out, e0, e1):
    # X: the samples' values flat, I per sample
    J = index.size
    zero = X[0] - X[0]
    for e in range(e0, e1):
        i = index[e % J]
        out[e] = X[(e // J) * I + i] if i >= 0 else zero


@njit(**JIT)
def _gather_inverse(R, J, starts, sources, out, e0, e1):
    # R: the samples' relevance flat, J per sample
    I = starts.size - 1
    for e in range(e0, e1):
        n = e // I
        i = e % I
        total = R[0] - R[0]
        for k in range(starts[i], starts[i + 1]):
            total += R[n * J + sources[k]]
        out[e] = total


def rearrange_forward(X, index):
    """``out[n, j] = X[n, index[j]]`` for X (N, I) and int64 ``index`` (J,),
    0 where ``index[j] == -1``; out (N, J)."""
    return flat_blocks(_rearrange, (X.shape[0], index.size), X.dtype, X.reshape(-1), X.shape[1], index)


def rearrange_relevance(R, starts, sources):
    """The adjoint of ``rearrange_forward``: ``out[n, i] = sum_{j: index[j]
    = i} R[n, j]`` for R (N, J), gathered through the index's inverse
    (``starts`` (I + 1,), ``sources`` (J',): int64); out (N, I). The
    relevance under every rule and the gradient."""
    return flat_blocks(_gather_inverse, (R.shape[0], starts.size - 1), R.dtype, R.reshape(-1), R.shape[1], starts,
                        sources)


@njit(**JIT)
def _bias(X, b, out, e0, e1):
    M = b.size
    for e in range(e0, e1):
        out[e] = X[e] + b[e % M]


@njit(**JIT)
def _bias_share(X, Y, R, epsilon, out, e0, e1):
    for e in range(e0, e1):
        out[e] = X[e] * R[e] / stabilize(Y[e], epsilon)


def bias_forward(X, b):
    """``x + b`` for X (N, M) and b (M,): one constant per element of a sample."""
    return flat_blocks(_bias, X.shape, X.dtype, X.reshape(-1), b)


def bias_relevance(X, Y, R, epsilon):
    """The input's epsilon-rule share of ``y = x + b``: ``x R / (y + eps
    sgn y)`` element by element (the constant absorbs the rest)."""
    return flat_blocks(_bias_share, X.shape, X.dtype, X.reshape(-1), Y.reshape(-1), R.reshape(-1), epsilon)
