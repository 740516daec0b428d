"""Sum and max pooling: forward passes and relevance rules.

Layouts as in the LRP Toolbox: X (N, H, W, D), window (hp, wp), strides
(s0, s1), output (N, (H-hp)//s0+1, (W-wp)//s1+1, D). Windows may overlap.
Pooling acts on each channel separately, so output neuron (i, j, c) has the
inputs (i*s0+a, j*s1+b, c) for a < hp, b < wp.

As in the convolution kernels, blocks of samples run in parallel
(``parallel_map``), each sample adding its windows' relevance in a fixed
order: deterministic, no atomics.
"""
import numpy as np
from numba import njit

from . import JIT, blocks, parallel_map
from ..rule_math import AVG_ALPHABETA, AVG_EPSILON, AVG_GRADIENT
from .rules import negative_part, positive_part, stabilize, times_input


def sumpool_forward(X, hp, wp, s0, s1, scale):
    """``Y[n,i,j,c] = scale * sum_{a,b} X[n, i*s0+a, j*s1+b, c]``.

    The toolbox uses ``scale = 1/sqrt(hp*wp)``; the caller passes it in the
    input's dtype.
    """
    N, H, W, D = X.shape
    Ho = (H - hp) // s0 + 1
    Wo = (W - wp) // s1 + 1
    Y = np.zeros((N, Ho, Wo, D), dtype=X.dtype)
    parallel_map(_sumpool_forward_block,
                 [(X, hp, wp, s0, s1, scale, Y, n0, n1) for n0, n1 in blocks(N)])
    return Y


@njit(**JIT)
def _sumpool_forward_block(X, hp, wp, s0, s1, scale, Y, n0, n1):
    N, H, W, D = X.shape
    Ho = (H - hp) // s0 + 1
    Wo = (W - wp) // s1 + 1
    for n in range(n0, n1):
        for i in range(Ho):
            for j in range(Wo):
                for a in range(hp):
                    for b in range(wp):
                        for c in range(D):
                            Y[n, i, j, c] += X[n, i * s0 + a, j * s1 + b, c]
                for c in range(D):
                    Y[n, i, j, c] *= scale


def sumpool_relevance_epsilon(X, R, hp, wp, s0, s1, epsilon):
    """Epsilon rule on a sum pool, shares proportional to the inputs:

    ``R_pqc = sum_{ij} x_pqc / (s_ijc + eps sgn(s_ijc)) R_ijc``, with
    ``s_ijc = sum_{a,b} x_{i*s0+a, j*s1+b, c}`` the window's plain sum (the
    toolbox stabilizes the unscaled sum). Its 'simple' rule uses eps = 1e-12.
    """
    N, Ho, Wo, D = R.shape
    Rx = np.zeros_like(X)
    parallel_map(_sumpool_relevance_epsilon_block,
                 [(X, R, hp, wp, s0, s1, epsilon, Rx, n0, n1) for n0, n1 in blocks(N)])
    return Rx


@njit(**JIT)
def _sumpool_relevance_epsilon_block(X, R, hp, wp, s0, s1, epsilon, Rx, n0, n1):
    N, Ho, Wo, D = R.shape
    for n in range(n0, n1):
        S = np.empty(D, dtype=X.dtype)
        for i in range(Ho):
            for j in range(Wo):
                S[:] = 0
                for a in range(hp):
                    for b in range(wp):
                        for c in range(D):
                            S[c] += X[n, i * s0 + a, j * s1 + b, c]
                for c in range(D):
                    S[c] = R[n, i, j, c] / stabilize(S[c], epsilon)
                for a in range(hp):
                    for b in range(wp):
                        for c in range(D):
                            Rx[n, i * s0 + a, j * s1 + b, c] += S[c]
        times_input(Rx, X, n)


def sumpool_relevance_alphabeta(X, R, hp, wp, s0, s1, alpha, beta, tiny):
    """Alpha-beta rule on a sum pool (the toolbox sets beta = 1 - alpha):

    ``R_pqc = sum_{ij} (alpha x+ / (sum x+ + tiny) + beta x- / (sum x- - tiny)) R_ijc``

    with the sums over the window. The released toolbox multiplies R twice
    in the general case; this is the formula, as corrected.
    """
    N, Ho, Wo, D = R.shape
    Rx = np.zeros_like(X)
    parallel_map(_sumpool_relevance_alphabeta_block,
                 [(X, R, hp, wp, s0, s1, alpha, beta, tiny, Rx, n0, n1) for n0, n1 in blocks(N)])
    return Rx


@njit(**JIT)
def _sumpool_relevance_alphabeta_block(X, R, hp, wp, s0, s1, alpha, beta, tiny, Rx, n0, n1):
    N, Ho, Wo, D = R.shape
    for n in range(n0, n1):
        Sp = np.empty(D, dtype=X.dtype)
        Sn = np.empty(D, dtype=X.dtype)
        for i in range(Ho):
            for j in range(Wo):
                for c in range(D):
                    Sp[c] = tiny
                    Sn[c] = -tiny
                for a in range(hp):
                    for b in range(wp):
                        for c in range(D):
                            x = X[n, i * s0 + a, j * s1 + b, c]
                            Sp[c] += positive_part(x)
                            Sn[c] += negative_part(x)
                for c in range(D):
                    Sp[c] = alpha * R[n, i, j, c] / Sp[c]
                    Sn[c] = beta * R[n, i, j, c] / Sn[c]
                for a in range(hp):
                    for b in range(wp):
                        for c in range(D):
                            x = X[n, i * s0 + a, j * s1 + b, c]
                            if x > 0:
                                Rx[n, i * s0 + a, j * s1 + b, c] += Sp[c]
                            elif x < 0:
                                Rx[n, i * s0 + a, j * s1 + b, c] += Sn[c]
        times_input(Rx, X, n)


def pool_relevance_uniform(X, R, hp, wp, s0, s1):
    """Flat and w^2 rules on a pooling layer: ``R_pqc = sum_{ij} R_ijc / (hp wp)``
    over the windows that contain (p, q). (A pooling window's weights are all
    equal, so w^2 and flat agree.)"""
    N, Ho, Wo, D = R.shape
    Rx = np.zeros_like(X)
    parallel_map(_pool_relevance_uniform_block,
                 [(X, R, hp, wp, s0, s1, Rx, n0, n1) for n0, n1 in blocks(N)])
    return Rx


@njit(**JIT)
def _pool_relevance_uniform_block(X, R, hp, wp, s0, s1, Rx, n0, n1):
    N, Ho, Wo, D = R.shape
    count = np.float32(hp * wp)
    for n in range(n0, n1):
        for i in range(Ho):
            for j in range(Wo):
                for a in range(hp):
                    for b in range(wp):
                        for c in range(D):
                            Rx[n, i * s0 + a, j * s1 + b, c] += R[n, i, j, c] / count


def maxpool_forward(X, hp, wp, s0, s1):
    """``Y[n,i,j,c] = max_{a,b} X[n, i*s0+a, j*s1+b, c]``."""
    N, H, W, D = X.shape
    Ho = (H - hp) // s0 + 1
    Wo = (W - wp) // s1 + 1
    Y = np.empty((N, Ho, Wo, D), dtype=X.dtype)
    parallel_map(_maxpool_forward_block,
                 [(X, hp, wp, s0, s1, Y, n0, n1) for n0, n1 in blocks(N)])
    return Y


@njit(**JIT)
def _maxpool_forward_block(X, hp, wp, s0, s1, Y, n0, n1):
    N, H, W, D = X.shape
    Ho = (H - hp) // s0 + 1
    Wo = (W - wp) // s1 + 1
    for n in range(n0, n1):
        for i in range(Ho):
            for j in range(Wo):
                for c in range(D):
                    Y[n, i, j, c] = X[n, i * s0, j * s1, c]
                for a in range(hp):
                    for b in range(wp):
                        for c in range(D):
                            Y[n, i, j, c] = max(Y[n, i, j, c], X[n, i * s0 + a, j * s1 + b, c])


def maxpool_relevance_winners(X, Y, R, hp, wp, s0, s1):
    """Winner-take-all: ``R_pqc = sum_{ij} [x_pqc = y_ijc] / #{maxima} R_ijc``.

    All of a window's relevance goes to its maximal input, split evenly when
    several inputs tie (the toolbox's rule for simple, epsilon and alpha-beta).
    ``Y`` is the forward output, so ties are exact equalities.
    """
    N, Ho, Wo, D = R.shape
    Rx = np.zeros_like(X)
    parallel_map(_maxpool_relevance_winners_block,
                 [(X, Y, R, hp, wp, s0, s1, Rx, n0, n1) for n0, n1 in blocks(N)])
    return Rx


@njit(**JIT)
def _maxpool_relevance_winners_block(X, Y, R, hp, wp, s0, s1, Rx, n0, n1):
    N, Ho, Wo, D = R.shape
    for n in range(n0, n1):
        share = np.empty(D, dtype=X.dtype)
        for i in range(Ho):
            for j in range(Wo):
                share[:] = 0
                for a in range(hp):
                    for b in range(wp):
                        for c in range(D):
                            if X[n, i * s0 + a, j * s1 + b, c] == Y[n, i, j, c]:
                                share[c] += 1
                for c in range(D):  # a window with no winner (NaN) gives nothing
                    share[c] = R[n, i, j, c] / share[c] if share[c] > 0 else 0
                for a in range(hp):
                    for b in range(wp):
                        for c in range(D):
                            if X[n, i * s0 + a, j * s1 + b, c] == Y[n, i, j, c]:
                                Rx[n, i * s0 + a, j * s1 + b, c] += share[c]


def sumpool_backward(X, G, hp, wp, s0, s1, scale):
    """Gradient of the sum pool: ``dL/dx_pqc = scale * sum_{ij} dL/dy_ijc`` over
    the windows that contain (p, q)."""
    return pool_relevance_uniform(X, G, hp, wp, s0, s1) * X.dtype.type(scale * hp * wp)


def maxpool_backward(X, Y, G, hp, wp, s0, s1):
    """Gradient of the max pool: all of a window's G goes to its first
    maximum in window order (rows, then columns), as autograd (PyTorch,
    hence zennit and Captum) and the Caffe toolbox route it. The LRP rules
    split ties evenly instead (maxpool_relevance_winners)."""
    Gx = np.zeros_like(X)
    parallel_map(_maxpool_backward_block, [(X, Y, G, hp, wp, s0, s1, Gx, n0, n1) for n0, n1 in blocks(X.shape[0])])
    return Gx


@njit(**JIT)
def _maxpool_backward_block(X, Y, G, hp, wp, s0, s1, Gx, n0, n1):
    N, Ho, Wo, D = G.shape
    for n in range(n0, n1):
        for i in range(Ho):
            for j in range(Wo):
                for c in range(D):
                    found = False
                    for a in range(hp):
                        for b in range(wp):
                            if not found and X[n, i * s0 + a, j * s1 + b, c] == Y[n, i, j, c]:
                                Gx[n, i * s0 + a, j * s1 + b, c] += G[n, i, j, c]
                                found = True


# ---------------------------------------------------------------- average pooling
# Average pools carry their padding implicitly: output (i, j) averages the
# inputs at rows i*s0-top .. i*s0-top+hp-1 and columns j*s1-left ..
# j*s1-left+wp-1 that lie inside the image, divided by the window's size
# clipped to the padded image (rows up to H+bottom, columns up to W+right)
# when the padding counts (ONNX count_include_pad=1), or by the number of
# inputs inside. The clipping matters in ceil mode only, where the last
# window may reach past the end padding (PyTorch's avg_pool2d divisor).

#: how avgpool_relevance treats the window's ratios


@njit(**JIT)
def _avg_window(H, W, i, j, hp, wp, s0, s1, top, left):
    """(p0, p1, q0, q1): the rows and columns of window (i, j) inside the image."""
    p0 = i * s0 - top
    q0 = j * s1 - left
    return max(p0, 0), min(p0 + hp, H), max(q0, 0), min(q0 + wp, W)


@njit(**JIT)
def _avg_counted(H, W, i, j, hp, wp, s0, s1, top, bottom, left, right):
    """The size of window (i, j) clipped to the padded image: hp*wp except
    for a ceil-mode window that overhangs the end padding."""
    p0 = i * s0 - top
    q0 = j * s1 - left
    return (min(p0 + hp, H + bottom) - p0) * (min(q0 + wp, W + right) - q0)


def avgpool_forward(X, hp, wp, s0, s1, top, bottom, left, right, Ho, Wo, include_pad):
    """``Y[n,i,j,c] = sum_{(p,q) in window(i,j)} X[n,p,q,c] / count(i,j)``:
    count = the window clipped to the padded image with ``include_pad``
    (hp*wp but in ceil mode's last windows), else the inputs inside the image."""
    N, H, W, D = X.shape
    Y = np.zeros((N, Ho, Wo, D), dtype=X.dtype)
    parallel_map(_avgpool_forward_block, [(X, hp, wp, s0, s1, top, bottom, left, right, include_pad, Y, n0, n1)
                                          for n0, n1 in blocks(N)])
    return Y


@njit(**JIT)
def _avgpool_forward_block(X, hp, wp, s0, s1, top, bottom, left, right, include_pad, Y, n0, n1):
    H, W, D = X.shape[1], X.shape[2], X.shape[3]
    for n in range(n0, n1):
        for i in range(Y.shape[1]):
            for j in range(Y.shape[2]):
                p0, p1, q0, q1 = _avg_window(H, W, i, j, hp, wp, s0, s1, top, left)
                # float32 keeps float32 sums float32 (the counts are exact in it)
                count = np.float32(_avg_counted(H, W, i, j, hp, wp, s0, s1, top, bottom, left, right)
                                   if include_pad else (p1 - p0) * (q1 - q0))
                for p in range(p0, p1):
                    for q in range(q0, q1):
                        for c in range(D):
                            Y[n, i, j, c] += X[n, p, q, c]
                for c in range(D):
                    Y[n, i, j, c] /= count


def avgpool_relevance(X, Y, R, hp, wp, s0, s1, top, bottom, left, right, include_pad, mode, p1, p2, tiny):
    """Relevance (or gradient) of an average pool's inputs, by ``mode``:

    - AVG_EPSILON: ``R_pqc = x_pqc sum_ij R_ijc / (count_ij (y_ijc + p1 sgn y_ijc))``,
      the epsilon rule with weights 1/count (zennit's Norm rule on AvgPool
      with p1 = 1e-6);
    - AVG_GRADIENT: ``dL/dx_pqc = sum_ij G_ijc / count_ij``;
    - AVG_UNIFORM (flat, w^2): ``R_pqc = sum_ij R_ijc / inside_ij``, every
      input inside the window an equal share;
    - AVG_ALPHABETA: ``R_pqc = sum_ij (p1 x+ / (sum x+ + tiny) + p2 x- / (sum x- - tiny)) R_ijc``
      (alpha = p1, beta = p2; the weights 1/count cancel).

    Sums over the windows (i, j) that hold (p, q).
    """
    Rx = np.zeros_like(X)
    parallel_map(_avgpool_relevance_block, [(X, Y, R, hp, wp, s0, s1, top, bottom, left, right, include_pad, mode,
                                             p1, p2, tiny, Rx, n0, n1) for n0, n1 in blocks(X.shape[0])])
    return Rx


@njit(**JIT)
def _avgpool_relevance_block(X, Y, R, hp, wp, s0, s1, top, bottom, left, right, include_pad, mode, p1, p2,
                             tiny, Rx, n0, n1):
    H, W, D = X.shape[1], X.shape[2], X.shape[3]
    Sp = np.empty(D, dtype=X.dtype)
    Sn = np.empty(D, dtype=X.dtype)
    for n in range(n0, n1):
        for i in range(R.shape[1]):
            for j in range(R.shape[2]):
                r0, r1, q0, q1 = _avg_window(H, W, i, j, hp, wp, s0, s1, top, left)
                inside = np.float32((r1 - r0) * (q1 - q0))
                count = np.float32(_avg_counted(H, W, i, j, hp, wp, s0, s1, top, bottom, left, right)) \
                    if include_pad else inside
                if mode == AVG_ALPHABETA:
                    for c in range(D):
                        Sp[c] = tiny
                        Sn[c] = -tiny
                    for p in range(r0, r1):
                        for q in range(q0, q1):
                            for c in range(D):
                                Sp[c] += positive_part(X[n, p, q, c])
                                Sn[c] += negative_part(X[n, p, q, c])
                    for c in range(D):
                        Sp[c] = p1 * R[n, i, j, c] / Sp[c]
                        Sn[c] = p2 * R[n, i, j, c] / Sn[c]
                else:
                    for c in range(D):
                        if mode == AVG_EPSILON:
                            Sp[c] = R[n, i, j, c] / (count * stabilize(Y[n, i, j, c], p1))
                        elif mode == AVG_GRADIENT:
                            Sp[c] = R[n, i, j, c] / count
                        else:
                            Sp[c] = R[n, i, j, c] / inside
                        Sn[c] = Sp[c]
                for p in range(r0, r1):
                    for q in range(q0, q1):
                        for c in range(D):
                            Rx[n, p, q, c] += Sp[c] if X[n, p, q, c] >= 0 else Sn[c]
        if mode == AVG_EPSILON or mode == AVG_ALPHABETA:
            times_input(Rx, X, n)
