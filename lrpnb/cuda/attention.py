"""Attention on the GPU: the twin of ``lrpnb.kernels.attention``.

The products of stacks of matrices (P, T, K) @ (P, K, S) go where the
convolution and dense layers' go (``lrpnb.cuda.products``): cuBLAS through
CuPy where it is installed (IEEE float32: lrpnb refuses CUPY_TF32), a
shared-memory tiled kernel over the whole stack without it, numpy on the
host under the simulator. The per-element steps are grid-stride loops that
write each output element once; the softmax's relevance gives each row to
one thread. No atomics: results are the same run to run.
"""
import math

import numpy as np
from numba import config, cuda

from . import KERNEL, THREADS, blocks, launch
from .products import TILE, backend_name, empty
from .rules import stabilize


@cuda.jit(**KERNEL)
def _batched_gemm(A, B, transpose_a, transpose_b, C):
    """C[p] = op(A[p]) @ op(B[p]), op a transpose where asked: each block
    computes TILE x TILE outputs of one matrix of the stack, one per
    thread, from tiles of both factors staged in shared memory."""
    P, M, N = C.shape
    depth = A.shape[1] if transpose_a else A.shape[2]
    As = cuda.shared.array((TILE, TILE), dtype=A.dtype)
    Bs = cuda.shared.array((TILE, TILE), dtype=A.dtype)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    zero = A[0, 0, 0] - A[0, 0, 0]
    columns = (N + TILE - 1) // TILE
    per_matrix = ((M + TILE - 1) // TILE) * columns
    # the loop bounds depend on the block only: every thread meets the barriers
    for tile in range(cuda.blockIdx.x, P * per_matrix, cuda.gridDim.x):
        p = tile // per_matrix
        local = tile % per_matrix
        row = (local // columns) * TILE + ty
        col = (local % columns) * TILE + tx
        acc = zero
        for k0 in range(0, depth, TILE):
            k = k0 + tx
            if row < M and k < depth:
                As[ty, tx] = A[p, k, row] if transpose_a else A[p, row, k]
            else:
                As[ty, tx] = zero
            k = k0 + ty
            if k < depth and col < N:
                Bs[ty, tx] = B[p, col, k] if transpose_b else B[p, k, col]
            else:
                Bs[ty, tx] = zero
            cuda.syncthreads()
            for kk in range(TILE):
                acc += As[ty, kk] * Bs[kk, tx]
            cuda.syncthreads()
        if row < M and col < N:
            C[p, row, col] = acc


def _batched_gemm_tiled(A, B, out, transpose_a=False, transpose_b=False):
    """``_batched_gemm`` over every tile of the stack (a grid-stride loop over tiles)."""
    P, M, N = out.shape
    tiles = P * -(-M // TILE) * -(-N // TILE)
    _batched_gemm[blocks(tiles * THREADS), (TILE, TILE)](A, B, transpose_a, transpose_b, out)
    return out


def _products(A, B, shape, transpose_a=False, transpose_b=False):
    """op(A) @ op(B) for stacks of C-contiguous device matrices, a new (P, M, N) array."""
    out = empty(shape, A.dtype)
    if config.ENABLE_CUDASIM:
        a, b = A.copy_to_host(), B.copy_to_host()
        a = a.transpose(0, 2, 1) if transpose_a else a
        b = b.transpose(0, 2, 1) if transpose_b else b
        out.copy_to_device(np.ascontiguousarray(np.matmul(a, b)))
        return out
    if backend_name() == "cublas":
        import cupy

        a, b = cupy.asarray(A), cupy.asarray(B)
        cupy.matmul(a.transpose(0, 2, 1) if transpose_a else a, b.transpose(0, 2, 1) if transpose_b else b,
                    out=cupy.asarray(out))
        return out
    return _batched_gemm_tiled(A, B, out, transpose_a, transpose_b)


@cuda.jit(**KERNEL)
def _ratio(Y, R, factor, epsilon, out):
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[e] = factor * R[e] / stabilize(Y[e], epsilon)


@cuda.jit(**KERNEL)
def _times(A, out):
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[e] *= A[e]


@cuda.jit(**KERNEL)
def _softmax_relevance(X, S, R, out):
    rows, C = X.shape
    for p in range(cuda.grid(1), rows, cuda.gridsize(1)):
        total = R[p, 0] - R[p, 0]
        for j in range(C):
            total += R[p, j]
        for j in range(C):
            x = X[p, j]
            # a masked score (-inf) and what it gives stays out of the sum
            if math.isinf(x) or math.isnan(x):
                out[p, j] = total - total
            else:
                out[p, j] = x * (R[p, j] - S[p, j] * total)


def _times_input(A, out):
    launch(_times, out.size)(A.reshape(A.size), out.reshape(out.size))
    return out


def matmul_forward(A, B):
    """``A @ B`` for stacks A (P, T, K) and B (P, K, S): (P, T, S)."""
    return _products(A, B, (A.shape[0], A.shape[1], B.shape[2]))


def matmul_ratio(Y, R, factor, epsilon):
    """The epsilon rule's ratios ``factor R / (y + eps sgn y)``, element by element."""
    out = empty(tuple(Y.shape), Y.dtype)
    launch(_ratio, out.size)(Y.reshape(Y.size), R.reshape(R.size), factor, epsilon, out.reshape(out.size))
    return out


def matmul_relevance_a(A, B, Q):
    """The first factor's relevance ``A * (Q @ B^T)`` for the ratios Q (P, T, S)."""
    return _times_input(A, _products(Q, B, tuple(A.shape), transpose_b=True))


def matmul_relevance_b(A, B, Q):
    """The second factor's relevance ``B * (A^T @ Q)`` for the ratios Q (P, T, S)."""
    return _times_input(B, _products(A, Q, tuple(B.shape), transpose_a=True))


def matmul_backward_a(B, G):
    """The gradient with respect to the first factor: ``G @ B^T`` (P, T, K)."""
    return _products(G, B, (G.shape[0], G.shape[1], B.shape[1]), transpose_b=True)


def matmul_backward_b(A, G):
    """The gradient with respect to the second factor: ``A^T @ G`` (P, K, S)."""
    return _products(A, G, (G.shape[0], A.shape[2], G.shape[2]), transpose_a=True)


def softmax_relevance(X, S, R):
    """AttnLRP's softmax rule on rows (P, C): ``x_j (R_j - s_j sum_k R_k)``,
    S the softmax output; 0 where x is not finite (a masked score)."""
    out = empty(tuple(R.shape), R.dtype)
    launch(_softmax_relevance, X.shape[0])(X, S, R, out)
    return out


SIGNATURES = {_batched_gemm: "A3 A3 B B A3", _ratio: "A1 A1 F F A1", _times: "A1 A1",
              _softmax_relevance: "A2 A2 A2 A2"}
