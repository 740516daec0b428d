"""Region perturbation ("pixel-flipping"): region relevance and perturbed copies.

The evaluation of Samek, Binder, Montavon, Lapuschkin and Müller (Evaluating
the visualization of what a deep neural network has learned, IEEE TNNLS
28(11), 2017) replaces the regions of an input one after the other, in the
order of their relevance, and watches the class score fall. These kernels do
its two array-sized steps; ``lrpnb.evaluate`` ranks the regions and runs the
perturbed copies through the network.

Layouts: images X (N, H, W, D); regions are the tiles of a grid of
rh x rw pixels (all channels), the last row and column of tiles cut short
where rh or rw does not divide H or W. Tile (u, v) is region
``r = u * ceil(W / rw) + v`` (grid order, row by row).
"""
import numpy as np
from numba import njit

from . import JIT, blocks, parallel_map


def region_relevance(R, rh, rw):
    """Relevance summed over each region and all its channels, in float64:

    ``S[n, r] = sum_{(i, j) in region r} sum_c R[n, i, j, c]``

    Returns S of shape (N, ceil(H/rh) * ceil(W/rw)).
    """
    N, H, W, D = R.shape
    S = np.zeros((N, -(-H // rh) * -(-W // rw)), dtype=np.float64)
    parallel_map(_region_relevance_block, [(R, rh, rw, S, n0, n1) for n0, n1 in blocks(N)])
    return S


@njit(**JIT)
def _region_relevance_block(R, rh, rw, S, n0, n1):
    N, H, W, D = R.shape
    columns = -(-W // rw)
    for n in range(n0, n1):
        for i in range(H):
            row = (i // rh) * columns
            for j in range(W):
                total = 0.0  # float64: ranking sums of float32 relevance lose nothing
                for c in range(D):
                    total += R[n, i, j, c]
                S[n, row + j // rw] += total


def perturbed_copies(X, V, rank, rh, rw, steps, q0, q1):
    """Copies q0..q1-1 of the perturbation sequence of every sample.

    Copy ``q`` is step ``k = q % (steps + 1)`` of sample ``n = q // (steps + 1)``:
    X[n] with the ``k`` regions of lowest ``rank[n]`` (those perturbed first)
    replaced by V[n]::

        P[q, i, j, c] = V[n, i, j, c] if rank[n, region(i, j)] < k else X[n, i, j, c]

    so copy 0 of each sample is X[n] itself. ``rank[n, r]`` is the step at
    which region r is replaced (0 first), an int32/int64 array (N, regions).
    """
    N, H, W, D = X.shape
    P = np.empty((q1 - q0, H, W, D), dtype=X.dtype)
    parallel_map(_perturbed_copies_block,
                 [(X, V, rank, rh, rw, steps, q0, P, p0, p1) for p0, p1 in blocks(q1 - q0)])
    return P


@njit(**JIT)
def _perturbed_copies_block(X, V, rank, rh, rw, steps, q0, P, p0, p1):
    N, H, W, D = X.shape
    columns = -(-W // rw)
    for p in range(p0, p1):
        n = (q0 + p) // (steps + 1)
        k = (q0 + p) % (steps + 1)
        for i in range(H):
            row = (i // rh) * columns
            for j in range(W):
                source = V if rank[n, row + j // rw] < k else X
                for c in range(D):
                    P[p, i, j, c] = source[n, i, j, c]
