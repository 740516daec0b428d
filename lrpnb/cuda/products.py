"""Matrix products and workspace on the GPU, for the convolution and dense kernels.

The heavy work of a convolution or dense layer is a matrix product, in the
forward pass (patches @ W) and in every relevance pass (ratios @ W^T), as on
the CPU, where numpy's BLAS does them. On the GPU:

- with CuPy installed (``pip install "lrpnb[cuda]"``), cuBLAS does them,
  on zero-copy views of numba's device arrays (``__cuda_array_interface__``).
  cuBLAS computes float32 products in IEEE float32 unless CuPy is told
  otherwise (``CUPY_TF32=1``, which lrpnb refuses: results would drift from
  the CPU's by about 1e-3);
- without CuPy, ``_gemm_tiled``, a shared-memory tiled kernel, does them;
- under numba's CUDA simulator (the tests), numpy does them on the host, so
  that the simulator runs every other kernel at a usable speed.

Every product is deterministic run to run: cuBLAS's default GEMM algorithms
and the tiled kernel split no sums across blocks.
"""
import os

import numpy as np
from numba import config, cuda

from . import KERNEL, THREADS, blocks

#: side of the square tiles of ``_gemm_tiled`` (threads per block: TILE^2)
TILE = 16

_cupy = None


def _cupy_module():
    """CuPy, or False when it is not installed (looked up once)."""
    global _cupy
    if _cupy is None:
        try:
            import cupy
        except ImportError:
            _cupy = False
        else:
            if os.environ.get("CUPY_TF32", "0") not in ("", "0"):
                raise RuntimeError("CUPY_TF32 is set: cuBLAS would compute float32 products with TF32, "
                                   "whose results differ from lrpnb's CPU results by about 1e-3; "
                                   "unset CUPY_TF32 to use lrpnb on the GPU")
            _cupy = cupy
    return _cupy


def backend_name():
    """Which library does the products: 'cublas', 'tiled' or 'host (simulator)'."""
    if config.ENABLE_CUDASIM:
        return "host (simulator)"
    return "cublas" if _cupy_module() else "tiled"


def empty(shape, dtype):
    """An uninitialised device array; from CuPy's memory pool where CuPy is
    installed (the workspaces of every layer then cost no cudaMalloc)."""
    cupy = None if config.ENABLE_CUDASIM else _cupy_module()
    if cupy:
        return cuda.as_cuda_array(cupy.empty(shape, dtype=dtype))
    return cuda.device_array(shape, dtype=dtype)


def matmul(A, B, out, transpose_b=False):
    """``out = A @ B`` (``A @ B.T`` with ``transpose_b``) for 2-d C-contiguous
    device arrays of one float dtype; returns ``out``."""
    if config.ENABLE_CUDASIM:
        a, b = A.copy_to_host(), B.copy_to_host()
        out.copy_to_device(np.ascontiguousarray(np.dot(a, b.T if transpose_b else b)))
        return out
    cupy = _cupy_module()
    if cupy:
        b = cupy.asarray(B)
        cupy.matmul(cupy.asarray(A), b.T if transpose_b else b, out=cupy.asarray(out))
        return out
    gemm_tiled(A, B, out, transpose_b)
    return out


def gemm_tiled(A, B, out, transpose_b=False):
    """``_gemm_tiled`` over all output tiles (a grid-stride loop over tiles)."""
    tiles = -(-out.shape[0] // TILE) * -(-out.shape[1] // TILE)
    # a block per tile, as many as blocks() allows for that many threads
    _gemm_tiled[blocks(tiles * THREADS), (TILE, TILE)](A, B, transpose_b, out)


@cuda.jit(**KERNEL)
def _gemm_tiled(A, B, transpose_b, C):
    """C = A @ B (or A @ B^T): each block computes TILE x TILE outputs, one
    per thread, from TILE x TILE tiles of A and B staged in shared memory,
    so that every element read from global memory serves TILE products."""
    M, depth = A.shape
    N = C.shape[1]
    As = cuda.shared.array((TILE, TILE), dtype=A.dtype)
    Bs = cuda.shared.array((TILE, TILE), dtype=A.dtype)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    zero = A[0, 0] - A[0, 0]
    columns = (N + TILE - 1) // TILE
    for tile in range(cuda.blockIdx.x, ((M + TILE - 1) // TILE) * columns, cuda.gridDim.x):
        row = (tile // columns) * TILE + ty
        col = (tile % columns) * TILE + tx
        acc = zero
        for k0 in range(0, depth, TILE):
            As[ty, tx] = A[row, k0 + tx] if row < M and k0 + tx < depth else zero
            # Bs[kk, x] = (A's right factor)[k0 + kk, column x of the tile]
            bcol = (tile % columns) * TILE + tx
            if k0 + ty < depth and bcol < N:
                Bs[ty, tx] = B[bcol, k0 + ty] if transpose_b else B[k0 + ty, bcol]
            else:
                Bs[ty, tx] = zero
            cuda.syncthreads()
            for kk in range(TILE):
                acc += As[ty, kk] * Bs[kk, tx]
            cuda.syncthreads()
        if row < M and col < N:
            C[row, col] = acc


SIGNATURES = {_gemm_tiled: "A2 A2 B A2"}
