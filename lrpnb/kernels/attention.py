"""Attention on the CPU: the product of two activations (MatMul) and the
relevance of the attention softmax.

MatMul works on stacks of matrices: A (P, T, K) @ B (P, K, S) -> (P, T, S),
P the batch and head axes flattened. The products go to BLAS (numba's
``np.dot`` on each matrix of the stack, IEEE float32 or float64), the stack
split into blocks that run in parallel (``parallel_map``) while BLAS runs
single-threaded; the per-element steps (the epsilon rule's ratios, the
product with the input) are loops of their own. The softmax's forward pass
and gradient are ``lrpnb.kernels.activations``'s on the (rows, S) view.
"""
import numpy as np
from numba import njit

from . import JIT, blocks, parallel_map
from .rules import stabilize


@njit(**JIT)
def _dot(A, B, out, p0, p1):
    for p in range(p0, p1):
        np.dot(A[p], B[p], out[p])


@njit(**JIT)
def _dot_bt(A, B, out, p0, p1):
    for p in range(p0, p1):
        np.dot(A[p], B[p].T, out[p])


@njit(**JIT)
def _dot_at(A, B, out, p0, p1):
    for p in range(p0, p1):
        np.dot(A[p].T, B[p], out[p])


@njit(**JIT)
def _times_dot_bt(A, B, Q, out, p0, p1):
    """out[p] = A[p] * (Q[p] @ B[p]^T)."""
    T, K = A.shape[1], A.shape[2]
    for p in range(p0, p1):
        np.dot(Q[p], B[p].T, out[p])
        for t in range(T):
            for k in range(K):
                out[p, t, k] *= A[p, t, k]


@njit(**JIT)
def _times_dot_at(A, B, Q, out, p0, p1):
    """out[p] = B[p] * (A[p]^T @ Q[p])."""
    K, S = B.shape[1], B.shape[2]
    for p in range(p0, p1):
        np.dot(A[p].T, Q[p], out[p])
        for k in range(K):
            for s in range(S):
                out[p, k, s] *= B[p, k, s]


@njit(**JIT)
def _ratio(Y, R, factor, epsilon, out, e0, e1):
    for e in range(e0, e1):
        out[e] = factor * R[e] / stabilize(Y[e], epsilon)


@njit(**JIT)
def _softmax_relevance(X, S, R, out, p0, p1):
    C = X.shape[1]
    for p in range(p0, p1):
        total = R[p, 0] - R[p, 0]
        for j in range(C):
            total += R[p, j]
        for j in range(C):
            x = X[p, j]
            # a masked score (-inf) and what it gives stays out of the sum
            if np.isfinite(x):
                out[p, j] = x * (R[p, j] - S[p, j] * total)
            else:
                out[p, j] = total - total


def _stack(kernel, shape, dtype, *arrays):
    """out (P, ...) of ``shape`` = kernel over blocks of the stack."""
    # one compiled layout (C) for every kernel: a strided view is copied once
    arrays = [np.ascontiguousarray(array) for array in arrays]
    out = np.empty(shape, dtype=dtype)
    parallel_map(kernel, [(*arrays, out, p0, p1) for p0, p1 in blocks(shape[0])])
    return out


def matmul_forward(A, B):
    """``A @ B`` for stacks A (P, T, K) and B (P, K, S): (P, T, S)."""
    return _stack(_dot, (A.shape[0], A.shape[1], B.shape[2]), A.dtype, A, B)


def matmul_ratio(Y, R, factor, epsilon):
    """The epsilon rule's ratios ``factor R / (y + eps sgn y)``, element by
    element (factor 1/2 under the uniform rule, 1 for one factor alone)."""
    out = np.empty_like(Y)
    flat = out.reshape(-1)
    parallel_map(_ratio, [(Y.reshape(-1), R.reshape(-1), factor, epsilon, flat, e0, e1)
                          for e0, e1 in blocks(flat.size, 1 << 15)])
    return out


def matmul_relevance_a(A, B, Q):
    """The first factor's relevance ``A * (Q @ B^T)`` for the ratios Q (P, T, S)."""
    return _stack(_times_dot_bt, A.shape, A.dtype, A, B, Q)


def matmul_relevance_b(A, B, Q):
    """The second factor's relevance ``B * (A^T @ Q)`` for the ratios Q (P, T, S)."""
    return _stack(_times_dot_at, B.shape, B.dtype, A, B, Q)


def matmul_backward_a(B, G):
    """The gradient with respect to the first factor: ``G @ B^T`` (P, T, K)."""
    return _stack(_dot_bt, (G.shape[0], G.shape[1], B.shape[1]), G.dtype, G, B)


def matmul_backward_b(A, G):
    """The gradient with respect to the second factor: ``A^T @ G`` (P, K, S)."""
    return _stack(_dot_at, (G.shape[0], A.shape[2], G.shape[2]), G.dtype, A, G)


def softmax_relevance(X, S, R):
    """AttnLRP's softmax rule on rows (P, C): ``x_j (R_j - s_j sum_k R_k)``,
    S the softmax output; 0 where x is not finite (a masked score)."""
    out = np.empty_like(R)
    parallel_map(_softmax_relevance, [(X, S, R, out, p0, p1) for p0, p1 in blocks(X.shape[0], 256)])
    return out
