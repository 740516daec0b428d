"""Depthwise convolutions (every group one input channel): forward pass and
relevance rules, all channels at once.

The same functions, names and parameters as ``lrpnb.kernels.conv`` (the
layer hands its rule block this module instead of that one), for filters W
of shape (h, w, 1, K) on inputs X (N, H, Wd, C) with K = C m: output
channel k reads input channel k // m (channel multiplier m). A depthwise
output is h*w multiply-adds, too little work for a patch matrix and BLAS;
here every output (and every input of a relevance pass) is computed
directly, the loops running along the contiguous channels, so that they
vectorize.

The kernels below compute m = 1. A multiplier m > 1 repeats every input
channel m times (input channel c becomes channels c m .. c m + m - 1, each
read by one output channel: a depthwise convolution with m = 1 on K
channels) and adds the m relevances of each input channel afterwards, in
channel order.

Tasks are blocks of rows (sample, row), run in parallel (``parallel_map``):
the forward pass and the ratios by output rows, the relevance gather by
input rows; every element is written by one task and every sum taken in a
fixed order (taps a, b ascending), so results do not depend on the number
of threads.
"""
import numpy as np
from numba import njit

from . import JIT, blocks, parallel_map
from ..rule_math import PAIRED_ALPHABETA
from .conv import filled, image_ones, paired_weights, squared  # noqa: F401  (the rule block's helpers)
from .rules import negative_part, paired_ratios, positive_part, stabilize

__all__ = ["conv_forward", "conv_relevance_epsilon", "conv_relevance_paired", "conv_backward",
           "paired_weights", "filled", "image_ones", "squared"]


def _multiplier(X, W):
    """m = K / C, checked."""
    C, K = X.shape[3], W.shape[3]
    if W.shape[2] != 1 or K % C:
        raise ValueError(f"lrpnb/kernels/depthwise.py: a depthwise filter has shape (h, w, 1, m * {C}) for "
                         f"{C} input channels, got {W.shape}")
    return K // C


def _repeated(X, m):
    """X with every channel repeated m times (channel c to c m .. c m + m - 1)."""
    return X if m == 1 else np.ascontiguousarray(np.repeat(X, m, axis=3))


def _summed(Rx, m):
    """The m channels of each input channel added, in order (the adjoint of _repeated)."""
    if m == 1:
        return Rx
    N, H, Wd, K = Rx.shape
    parts = Rx.reshape(N, H, Wd, K // m, m)
    out = parts[..., 0].copy()
    for t in range(1, m):
        out += parts[..., t]
    return out


def _rows(count):
    return blocks(count, 4)


def conv_forward(X, W, B, s0, s1):
    """``Y[n,i,j,k] = b_k + sum_{a,b} X[n, i*s0+a, j*s1+b, k // m] W[a,b,0,k]``."""
    m = _multiplier(X, W)
    Xr = _repeated(X, m)
    N, H, Wd, K = Xr.shape
    h, w = W.shape[:2]
    Ho, Wo = (H - h) // s0 + 1, (Wd - w) // s1 + 1
    Y = np.empty((N, Ho, Wo, K), dtype=X.dtype)
    W3 = np.ascontiguousarray(W.reshape(h, w, K))
    parallel_map(_forward_rows, [(Xr, W3, B, s0, s1, Y, r0, r1) for r0, r1 in _rows(N * Ho)])
    return Y


@njit(**JIT)
def _forward_rows(X, W, B, s0, s1, Y, r0, r1):
    """Output rows r0..r1-1 (row r: sample r // Ho, output row r % Ho)."""
    Ho, Wo, K = Y.shape[1], Y.shape[2], Y.shape[3]
    h, w = W.shape[0], W.shape[1]
    acc = np.empty(K, dtype=X.dtype)
    for r in range(r0, r1):
        n, i = r // Ho, r % Ho
        for j in range(Wo):
            for k in range(K):
                acc[k] = B[k]
            for a in range(h):
                for b in range(w):
                    for k in range(K):
                        acc[k] += X[n, i * s0 + a, j * s1 + b, k] * W[a, b, k]
            for k in range(K):
                Y[n, i, j, k] = acc[k]


@njit(**JIT)
def _epsilon_ratios_rows(Y, R, epsilon, S, r0, r1):
    Ho, Wo, K = Y.shape[1], Y.shape[2], Y.shape[3]
    for r in range(r0, r1):
        n, i = r // Ho, r % Ho
        for j in range(Wo):
            for k in range(K):
                S[n, i, j, k] = R[n, i, j, k] / stabilize(Y[n, i, j, k], epsilon)


@njit(inline="always", **JIT)
def _taps(p, a, s, size):
    """The output index whose tap a lies on input index p (stride s), or -1."""
    d = p - a
    if d < 0 or d % s != 0 or d // s >= size:
        return -1
    return d // s


@njit(**JIT)
def _gather_rows(X, V, S, s0, s1, multiply, Rx, r0, r1):
    """``Rx[n,p,q,c] = (x if multiply else 1) sum_{a,b} V[a,b,c] S[n,i,j,c]``
    over the outputs (i, j) whose tap (a, b) lies on (p, q), for input rows
    r0..r1-1 (row r: sample r // H, input row r % H)."""
    H, Wd, C = X.shape[1], X.shape[2], X.shape[3]
    Ho, Wo = S.shape[1], S.shape[2]
    h, w = V.shape[0], V.shape[1]
    acc = np.empty(C, dtype=X.dtype)
    for r in range(r0, r1):
        n, p = r // H, r % H
        for q in range(Wd):
            acc[:] = 0
            for a in range(h):
                i = _taps(p, a, s0, Ho)
                if i < 0:
                    continue
                for b in range(w):
                    j = _taps(q, b, s1, Wo)
                    if j < 0:
                        continue
                    for c in range(C):
                        acc[c] += V[a, b, c] * S[n, i, j, c]
            if multiply:
                for c in range(C):
                    Rx[n, p, q, c] = X[n, p, q, c] * acc[c]
            else:
                for c in range(C):
                    Rx[n, p, q, c] = acc[c]


def _gather(X, V, S, s0, s1, multiply):
    N, H = X.shape[:2]
    h, w = V.shape[:2]
    V3 = np.ascontiguousarray(V.reshape(h, w, V.shape[3]))
    Rx = np.empty_like(X)
    parallel_map(_gather_rows, [(X, V3, S, s0, s1, multiply, Rx, r0, r1) for r0, r1 in _rows(N * H)])
    return Rx


def conv_relevance_epsilon(X, W, Y, R, s0, s1, epsilon):
    """Epsilon rule (Bach et al., PLoS ONE 10(7), 2015, eq. 58) with the
    ratios ``S = R / (z + eps sgn(z))``:
    ``R_pqc = x_pqc sum_{ijk} w_ab0k S_ijk`` over the outputs k reading c
    whose patch holds (p, q)."""
    m = _multiplier(X, W)
    N, Ho = R.shape[:2]
    S = np.empty_like(R)
    parallel_map(_epsilon_ratios_rows, [(Y, R, epsilon, S, r0, r1) for r0, r1 in _rows(N * Ho)])
    return _summed(_gather(_repeated(X, m), W, S, s0, s1, True), m)


def conv_backward(X, W, G, s0, s1):
    """Gradient with respect to the input: ``dL/dx_pqc = sum_{ijk} w_ab0k dL/dy_ijk``
    over the outputs k reading c whose patch holds (p, q)."""
    m = _multiplier(X, W)
    return _summed(_gather(_repeated(X, m), W, G, s0, s1, False), m)


def conv_relevance_paired(X, A, Bm, Ba, Bb, Y, R, s0, s1, mode, p1, p2, tiny):
    """The sign-paired rules (alpha-beta, gamma) as
    ``lrpnb.kernels.conv.conv_relevance_paired``: per output,
    ``Za = sum x+ A + x- Bm + Ba`` and ``Zb = sum x+ Bm + x- A + Bb`` over its
    h*w taps, two ratios from ``lrpnb.rule_math.paired_ratios``, and input x
    receives ``x * sum (A ratio_a + Bm ratio_b)`` where x > 0,
    ``x * sum (Bm ratio_a + A ratio_b)`` where x < 0, nothing where x = 0.
    Alpha-beta with beta = 0 (z+) takes the first ratio alone, its second
    being zero; an input without negative values (after a ReLU) needs the
    first sum of the redistribution alone."""
    m = _multiplier(X, A)
    Xr = _repeated(X, m)
    N, Ho, Wo, K = R.shape
    h, w = A.shape[:2]
    A3, B3 = np.ascontiguousarray(A.reshape(h, w, K)), np.ascontiguousarray(Bm.reshape(h, w, K))
    both = not (mode == PAIRED_ALPHABETA and p2 == 0)
    Sa = np.empty_like(R)
    Sb = np.empty_like(R) if both else Sa[:0]
    signed = bool(X.min() < 0)
    parallel_map(_paired_ratios_rows, [(Xr, A3, B3, Ba, Bb, Y, R, s0, s1, mode, p1, p2, tiny, both, signed, Sa,
                                        Sb, r0, r1) for r0, r1 in _rows(N * Ho)])
    Rx = np.empty_like(Xr)
    parallel_map(_paired_gather_rows, [(Xr, A3, B3, Sa, Sb, s0, s1, both, signed, Rx, r0, r1)
                                       for r0, r1 in _rows(N * Xr.shape[1])])
    return _summed(Rx, m)


@njit(**JIT)
def _paired_ratios_rows(X, A, Bm, Ba, Bb, Y, R, s0, s1, mode, p1, p2, tiny, both, signed, Sa, Sb, r0, r1):
    """The two ratios of every output of output rows r0..r1-1 (Sb only with
    ``both``; without ``signed`` X has no negative values, whose terms are
    then left out)."""
    Ho, Wo, K = R.shape[1], R.shape[2], R.shape[3]
    h, w = A.shape[0], A.shape[1]
    za = np.empty(K, dtype=X.dtype)
    zb = np.empty(K, dtype=X.dtype)
    for r in range(r0, r1):
        n, i = r // Ho, r % Ho
        for j in range(Wo):
            for k in range(K):
                za[k] = Ba[k]
                zb[k] = Bb[k]
            for a in range(h):
                for b in range(w):
                    if both:
                        for k in range(K):
                            x = X[n, i * s0 + a, j * s1 + b, k]
                            xp, xn = positive_part(x), negative_part(x)
                            za[k] += xp * A[a, b, k] + xn * Bm[a, b, k]
                            zb[k] += xp * Bm[a, b, k] + xn * A[a, b, k]
                    elif signed:
                        for k in range(K):
                            x = X[n, i * s0 + a, j * s1 + b, k]
                            za[k] += positive_part(x) * A[a, b, k] + negative_part(x) * Bm[a, b, k]
                    else:
                        for k in range(K):
                            za[k] += X[n, i * s0 + a, j * s1 + b, k] * A[a, b, k]
            for k in range(K):
                if both:
                    Sa[n, i, j, k], Sb[n, i, j, k] = paired_ratios(za[k], zb[k], R[n, i, j, k], Y[n, i, j, k],
                                                                   mode, p1, p2, tiny)
                else:  # beta = 0: the second sum and ratio are not needed
                    Sa[n, i, j, k], _ = paired_ratios(za[k], za[k], R[n, i, j, k], Y[n, i, j, k], mode, p1, p2,
                                                      tiny)


@njit(**JIT)
def _paired_gather_rows(X, A, Bm, Sa, Sb, s0, s1, both, signed, Rx, r0, r1):
    """Input relevance of input rows r0..r1-1 (see conv_relevance_paired);
    the sums for negative inputs only where ``signed`` (X has some)."""
    H, Wd, C = X.shape[1], X.shape[2], X.shape[3]
    Ho, Wo = Sa.shape[1], Sa.shape[2]
    h, w = A.shape[0], A.shape[1]
    accp = np.empty(C, dtype=X.dtype)
    accn = np.empty(C, dtype=X.dtype)
    for r in range(r0, r1):
        n, p = r // H, r % H
        for q in range(Wd):
            accp[:] = 0
            accn[:] = 0
            for a in range(h):
                i = _taps(p, a, s0, Ho)
                if i < 0:
                    continue
                for b in range(w):
                    j = _taps(q, b, s1, Wo)
                    if j < 0:
                        continue
                    if both and signed:
                        for c in range(C):
                            sa, sb = Sa[n, i, j, c], Sb[n, i, j, c]
                            accp[c] += A[a, b, c] * sa + Bm[a, b, c] * sb
                            accn[c] += Bm[a, b, c] * sa + A[a, b, c] * sb
                    elif both:
                        for c in range(C):
                            accp[c] += A[a, b, c] * Sa[n, i, j, c] + Bm[a, b, c] * Sb[n, i, j, c]
                    elif not signed:
                        for c in range(C):
                            accp[c] += A[a, b, c] * Sa[n, i, j, c]
                    else:
                        for c in range(C):
                            sa = Sa[n, i, j, c]
                            accp[c] += A[a, b, c] * sa
                            accn[c] += Bm[a, b, c] * sa
            for c in range(C):
                x = X[n, p, q, c]
                Rx[n, p, q, c] = x * accp[c] if x > 0 else (x * accn[c] if x < 0 else x - x)
