"""Products with a per-channel constant (Scale) and of two activations (Mul):
forward passes, relevance and gradients.

Scale multiplies by a scale ``S`` of one value or one per channel (last
axis): element e of a C-ordered array has channel ``e % S.size``. Mul works
on (N, M, C) views: the first factor (N, M, C), the second (N, M, C) or
(N, 1, C), broadcast over M (a squeeze-and-excitation gate over H x W).
Each function splits its elements (or samples) into blocks that run in
parallel (``parallel_map``) through a nogil kernel.
"""
import numpy as np
from numba import njit

from . import JIT, blocks, flat_blocks, parallel_map
from .rules import stabilize


@njit(**JIT)
def _scale(X, S, out, e0, e1):
    D = S.size
    for e in range(e0, e1):
        out[e] = X[e] * S[e % D]


@njit(**JIT)
def _scale_epsilon(X, S, R, k, epsilon, out, e0, e1):
    D = S.size
    for e in range(e0, e1):
        z = k * X[e] * S[e % D]
        out[e] = z * R[e] / stabilize(z, epsilon)


@njit(**JIT)
def _scale_paired(X, S, R, p1, p2, tiny, out, e0, e1):
    D = S.size
    for e in range(e0, e1):
        z = X[e] * S[e % D]
        zero = z - z
        if z > 0:
            out[e] = p1 * z * R[e] / (z + tiny)
        elif z < 0:
            out[e] = p2 * z * R[e] / (z - tiny)
        else:
            out[e] = zero * R[e]


@njit(**JIT)
def _scale_zbox(X, S, L, H, R, epsilon, out, e0, e1):
    D = S.size
    C = L.size
    for e in range(e0, e1):
        s = S[e % D]
        zero = s - s
        c = e % C
        v = X[e] * s - L[c] * max(s, zero) - H[c] * min(s, zero)
        out[e] = v * R[e] / stabilize(v, epsilon)


def scale_forward(X, S):
    """``x S[c]`` for every element x of channel c (S of size 1 or C); also
    the gradient ``G S[c]``."""
    return flat_blocks(_scale, X.shape, X.dtype, X.reshape(-1), S)


def scale_relevance_epsilon(X, S, R, k, epsilon):
    """``z R / (z + eps sgn z)`` with ``z = k x S[c]`` (the epsilon rule on
    a diagonal weight; k = 1 + gamma gives the gamma rule)."""
    return flat_blocks(_scale_epsilon, X.shape, X.dtype, X.reshape(-1), S, R.reshape(-1), k, epsilon)


def scale_relevance_paired(X, S, R, p1, p2, tiny):
    """The alpha-beta rule on a diagonal weight, ``z = x S[c]``:
    ``p1 z R / (z + tiny)`` where z > 0, ``p2 z R / (z - tiny)`` where
    z < 0, 0 where z = 0."""
    return flat_blocks(_scale_paired, X.shape, X.dtype, X.reshape(-1), S, R.reshape(-1), p1, p2, tiny)


def scale_relevance_zbox(X, S, L, H, R, epsilon):
    """The z^B rule on a diagonal weight: ``v R / (v + eps sgn v)`` with
    ``v = x s - l s+ - h s-``, s = S[c], l = L[c], h = H[c] (L and H one
    per channel)."""
    return flat_blocks(_scale_zbox, X.shape, X.dtype, X.reshape(-1), S, L, H, R.reshape(-1), epsilon)


@njit(**JIT)
def _mul(X, G, out, n0, n1):
    M, C = X.shape[1], X.shape[2]
    full = G.shape[1] == M
    for n in range(n0, n1):
        for m in range(M):
            mg = m if full else 0
            for c in range(C):
                out[n, m, c] = X[n, m, c] * G[n, mg, c]


@njit(**JIT)
def _broadcast_sum(A, factor, out, n0, n1):
    M, C = A.shape[1], A.shape[2]
    rows = out.shape[1]
    for n in range(n0, n1):
        if rows == M:
            for m in range(M):
                for c in range(C):
                    out[n, m, c] = factor * A[n, m, c]
        else:
            for c in range(C):
                out[n, 0, c] = A[n, 0, c] - A[n, 0, c]
            for m in range(M):
                for c in range(C):
                    out[n, 0, c] += A[n, m, c]
            for c in range(C):
                out[n, 0, c] *= factor


def mul_forward(X, G):
    """``X G`` for X of shape (N, M, C) and G of (N, M, C) or (N, 1, C)
    (broadcast over M)."""
    out = np.empty_like(X)
    parallel_map(_mul, [(X, G, out, n0, n1) for n0, n1 in blocks(X.shape[0])])
    return out


def broadcast_sum(A, factor, rows):
    """``factor A`` for A of shape (N, M, C) with rows = M, or ``factor
    sum_m A[:, m]`` of shape (N, 1, C) with rows = 1 (what a factor that
    was broadcast over M receives)."""
    out = np.empty((A.shape[0], rows, A.shape[2]), dtype=A.dtype)
    parallel_map(_broadcast_sum, [(A, factor, out, n0, n1) for n0, n1 in blocks(A.shape[0])])
    return out


def zeros(shape, dtype):
    """An array of zeros (the relevance of a factor held constant)."""
    return np.zeros(shape, dtype=dtype)
