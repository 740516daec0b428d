"""Region perturbation on the GPU: the twin of ``lrpnb.kernels.perturb``.

One loop iteration per sample and region sums that region's relevance (a
fixed order, so the sums equal the CPU's); one per element of the perturbed
copies picks the input or its replacement.
"""
import numpy as np
from numba import cuda

from . import KERNEL, launch, unravel


@cuda.jit(**KERNEL)
def _region_relevance(R, rh, rw, S):
    N, H, W, D = R.shape
    columns = (W + rw - 1) // rw
    for e in range(cuda.grid(1), S.size, cuda.gridsize(1)):
        n = e // S.shape[1]
        r = e % S.shape[1]
        u = r // columns
        v = r % columns
        total = 0.0  # float64, as on the CPU
        for i in range(u * rh, min(u * rh + rh, H)):
            for j in range(v * rw, min(v * rw + rw, W)):
                pixel = 0.0
                for c in range(D):
                    pixel += float(R[n, i, j, c])  # float(): float64 under the simulator too
                total += pixel
        S[n, r] = total


def region_relevance(R, rh, rw):
    """Relevance summed over each region and all its channels, in float64:

    ``S[n, r] = sum_{(i, j) in region r} sum_c R[n, i, j, c]``

    Returns S (N, ceil(H/rh) * ceil(W/rw)) on the device.
    """
    N, H, W, D = R.shape
    S = cuda.device_array((N, -(-H // rh) * -(-W // rw)), dtype=np.float64)
    launch(_region_relevance, S.size)(R, rh, rw, S)
    return S


@cuda.jit(**KERNEL)
def _perturbed_copies(X, V, rank, rh, rw, steps, q0, P):
    columns = (X.shape[2] + rw - 1) // rw
    for e in range(cuda.grid(1), P.size, cuda.gridsize(1)):
        p, i, j, c = unravel(e, P.shape)
        n = (q0 + p) // (steps + 1)
        k = (q0 + p) % (steps + 1)
        if rank[n, (i // rh) * columns + j // rw] < k:
            P[p, i, j, c] = V[n, i, j, c]
        else:
            P[p, i, j, c] = X[n, i, j, c]


def perturbed_copies(X, V, rank, rh, rw, steps, q0, q1):
    """Copies q0..q1-1 of the perturbation sequence of every sample, on the device:

    ``P[q, i, j, c] = V[n, i, j, c] if rank[n, region(i, j)] < k else X[n, i, j, c]``

    with ``n = q // (steps + 1)`` and ``k = q % (steps + 1)``.
    """
    N, H, W, D = X.shape
    P = cuda.device_array((q1 - q0, H, W, D), dtype=X.dtype)
    launch(_perturbed_copies, P.size)(X, V, rank, rh, rw, steps, q0, P)
    return P


SIGNATURES = {_region_relevance: "A4 I I D2", _perturbed_copies: "A4 A4 I2 I I I I A4"}
