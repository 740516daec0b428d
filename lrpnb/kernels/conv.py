"""Convolution layer (no padding): forward pass and relevance rules.

Layouts are the LRP Toolbox's: inputs X (N, H, W, D), filters W (h, w, d, n),
bias B (n,), strides (s0, s1), output (N, (H-h)//s0+1, (W-w)//s1+1, n).
Output neuron (i, j, k) sees the input patch at rows i*s0 .. i*s0+h-1 and
columns j*s1 .. j*s1+w-1, with z_{pqc,ijk} = x_pqc w_{abck} for
p = i*s0+a, q = j*s1+b, and z_ijk = sum z + b_k.

Each relevance kernel runs one sample per thread (``prange`` over the batch);
inside a sample it visits the output positions in order and adds each
position's redistributed relevance onto its patch. Every input element of a
sample is thus written by one thread in a fixed order, so results are
deterministic, and no (N, H, W, h, w, d, n) array of contributions is ever
formed.
"""
import numpy as np
from numba import njit, prange

from . import JIT, PARALLEL
from .rules import negative_part, positive_part, stabilize


def output_size(size, window, stride):
    """Output length of a valid (unpadded) window sweep: ``(size-window)//stride+1``."""
    return (size - window) // stride + 1


@njit(**PARALLEL)
def conv_forward(X, W, B, s0, s1):
    """``Y[n,i,j,k] = b_k + sum_{a,b,c} X[n, i*s0+a, j*s1+b, c] W[a,b,c,k]``."""
    N, H, Wd, D = X.shape
    h, w, d, K = W.shape
    Ho = (H - h) // s0 + 1
    Wo = (Wd - w) // s1 + 1
    Y = np.empty((N, Ho, Wo, K), dtype=X.dtype)
    for n in prange(N):
        for i in range(Ho):
            for j in range(Wo):
                out = Y[n, i, j]
                out[:] = B
                for a in range(h):
                    for b in range(w):
                        for c in range(D):
                            x = X[n, i * s0 + a, j * s1 + b, c]
                            for k in range(K):
                                out[k] += x * W[a, b, c, k]
    return Y


@njit(inline="always", **JIT)
def _add_transposed(C, S, V, i, j, s0, s1):
    """``C[i*s0+a, j*s1+b, c] += sum_k V[a,b,c,k] S[k]`` for one sample's
    output position (i, j): the adjoint of the convolution at one patch."""
    h, w, d, K = V.shape
    for a in range(h):
        for b in range(w):
            for c in range(d):
                acc = S[0] - S[0]
                for k in range(K):
                    acc += V[a, b, c, k] * S[k]
                C[i * s0 + a, j * s1 + b, c] += acc


@njit(**PARALLEL)
def conv_relevance_epsilon(X, W, Y, R, s0, s1, epsilon):
    """Epsilon rule (Bach et al., PLoS ONE 10(7), 2015, eq. 58):

    ``R_pqc = sum_{ijk} z_{pqc,ijk} / (z_ijk + eps sgn(z_ijk)) R_ijk``
    ``      = x_pqc sum_{ijk} w_{abck} R_ijk / (z_ijk + eps sgn(z_ijk))``.

    ``Y`` is this layer's forward output (z_ijk). The toolbox's 'simple' rule
    is this rule with epsilon = 1e-16.
    """
    N, Ho, Wo, K = R.shape
    Rx = np.zeros_like(X)
    for n in prange(N):
        S = np.empty(K, dtype=R.dtype)
        for i in range(Ho):
            for j in range(Wo):
                for k in range(K):
                    S[k] = R[n, i, j, k] / stabilize(Y[n, i, j, k], epsilon)
                _add_transposed(Rx[n], S, W, i, j, s0, s1)
        Rx[n] *= X[n]
    return Rx


@njit(**PARALLEL)
def conv_relevance_alphabeta(X, W, B, R, s0, s1, alpha, beta, tiny):
    """Alpha-beta rule (Bach et al. 2015, eq. 60; the toolbox sets beta = 1-alpha):

    ``R_pqc = sum_{ijk} (alpha z+ / (sum z+ + b_k+ + tiny)
                       + beta z- / (sum z- + b_k- - tiny)) R_ijk``

    with z = z_{pqc,ijk} and the sums over the patch of (i, j). The positive
    part of x w is x w+ for x > 0 and x w- for x < 0 (and vice versa for the
    negative part), so both sums and the redistribution run on the
    sign-split filters, choosing the pair by the sign of each input.
    """
    N, Ho, Wo, K = R.shape
    h, w, d, _ = W.shape
    Wp = np.empty_like(W)
    Wn = np.empty_like(W)
    for a in range(h):
        for b in range(w):
            for c in range(d):
                for k in range(K):
                    Wp[a, b, c, k] = positive_part(W[a, b, c, k])
                    Wn[a, b, c, k] = negative_part(W[a, b, c, k])
    Rx = np.zeros_like(X)
    for n in prange(N):
        Zp = np.empty(K, dtype=X.dtype)
        Zn = np.empty(K, dtype=X.dtype)
        for i in range(Ho):
            for j in range(Wo):
                for k in range(K):
                    Zp[k] = positive_part(B[k]) + tiny
                    Zn[k] = negative_part(B[k]) - tiny
                for a in range(h):
                    for b in range(w):
                        for c in range(d):
                            x = X[n, i * s0 + a, j * s1 + b, c]
                            if x > 0:
                                for k in range(K):
                                    Zp[k] += x * Wp[a, b, c, k]
                                    Zn[k] += x * Wn[a, b, c, k]
                            elif x < 0:
                                for k in range(K):
                                    Zp[k] += x * Wn[a, b, c, k]
                                    Zn[k] += x * Wp[a, b, c, k]
                # from here on Zp, Zn hold the scaled ratios alpha R / Zp, beta R / Zn
                for k in range(K):
                    Zp[k] = alpha * R[n, i, j, k] / Zp[k]
                    Zn[k] = beta * R[n, i, j, k] / Zn[k]
                for a in range(h):
                    for b in range(w):
                        for c in range(d):
                            p = i * s0 + a
                            q = j * s1 + b
                            x = X[n, p, q, c]
                            acc = x - x
                            if x > 0:
                                for k in range(K):
                                    acc += Wp[a, b, c, k] * Zp[k] + Wn[a, b, c, k] * Zn[k]
                            elif x < 0:
                                for k in range(K):
                                    acc += Wn[a, b, c, k] * Zp[k] + Wp[a, b, c, k] * Zn[k]
                            Rx[n, p, q, c] += acc
        Rx[n] *= X[n]
    return Rx


@njit(**PARALLEL)
def conv_relevance_flat(X, W, R, s0, s1):
    """Flat rule: ``R_pqc = sum_{ijk} R_ijk / (h w d)`` over the patches that
    contain (p, q): every input of a neuron gets the same share."""
    N, Ho, Wo, K = R.shape
    h, w, d, _ = W.shape
    count = np.float32(h * w * d)
    Rx = np.zeros_like(X)
    for n in prange(N):
        for i in range(Ho):
            for j in range(Wo):
                total = R[n, i, j, 0] - R[n, i, j, 0]
                for k in range(K):
                    total += R[n, i, j, k]
                share = total / count
                for a in range(h):
                    for b in range(w):
                        for c in range(d):
                            Rx[n, i * s0 + a, j * s1 + b, c] += share
    return Rx


@njit(**PARALLEL)
def conv_relevance_ww(X, W, R, s0, s1):
    """w^2 rule (Montavon et al., Pattern Recognition 65, 2017):
    ``R_pqc = sum_{ijk} w_abck^2 / (sum_{a'b'c'} w_a'b'c'k^2) R_ijk``."""
    N, Ho, Wo, K = R.shape
    h, w, d, _ = W.shape
    V = W * W
    norm = np.zeros(K, dtype=W.dtype)
    for a in range(h):
        for b in range(w):
            for c in range(d):
                for k in range(K):
                    norm[k] += V[a, b, c, k]
    for a in range(h):
        for b in range(w):
            for c in range(d):
                for k in range(K):
                    V[a, b, c, k] /= norm[k]
    Rx = np.zeros_like(X)
    for n in prange(N):
        for i in range(Ho):
            for j in range(Wo):
                _add_transposed(Rx[n], R[n, i, j], V, i, j, s0, s1)
    return Rx
