"""Sum and max pooling on the GPU: the twin of ``lrpnb.kernels.pool``.

Each output element is one loop iteration of the forward and ratio kernels;
each input element gathers from the windows that contain it (window (i, j)
holds input row p when p = i*s0 + a for some 0 <= a < hp).
"""
import numpy as np
from numba import cuda

from . import KERNEL, launch, unravel
from ..rule_math import AVG_ALPHABETA, AVG_EPSILON, AVG_GRADIENT
from .rules import negative_part, positive_part, stabilize


@cuda.jit(device=True, inline=True)
def _window_sum(X, n, i, j, c, hp, wp, s0, s1):
    """The sum of output (i, j)'s pooling window in channel c of sample n."""
    total = X[n, i * s0, j * s1, c] - X[n, i * s0, j * s1, c]
    for a in range(hp):
        for b in range(wp):
            total += X[n, i * s0 + a, j * s1 + b, c]
    return total


@cuda.jit(device=True, inline=True)
def _first_maximum(X, Y, n, i, j, c, hp, wp, s0, s1):
    """a * wp + b of the first input of window (i, j), in window order, that
    equals the window's maximum Y[n, i, j, c]."""
    for a in range(hp):
        for b in range(wp):
            if X[n, i * s0 + a, j * s1 + b, c] == Y[n, i, j, c]:
                return a * wp + b
    return -1


@cuda.jit(**KERNEL)
def _sumpool_forward(X, hp, wp, s0, s1, scale, Y):
    for e in range(cuda.grid(1), Y.size, cuda.gridsize(1)):
        n, i, j, c = unravel(e, Y.shape)
        Y[n, i, j, c] = _window_sum(X, n, i, j, c, hp, wp, s0, s1) * scale


@cuda.jit(**KERNEL)
def _maxpool_forward(X, hp, wp, s0, s1, Y):
    for e in range(cuda.grid(1), Y.size, cuda.gridsize(1)):
        n, i, j, c = unravel(e, Y.shape)
        top = X[n, i * s0, j * s1, c]
        for a in range(hp):
            for b in range(wp):
                top = max(top, X[n, i * s0 + a, j * s1 + b, c])
        Y[n, i, j, c] = top


@cuda.jit(**KERNEL)
def _epsilon_ratios(X, R, hp, wp, s0, s1, epsilon, S):
    """S = R / (window sum + eps sgn(window sum))."""
    for e in range(cuda.grid(1), R.size, cuda.gridsize(1)):
        n, i, j, c = unravel(e, R.shape)
        S[n, i, j, c] = R[n, i, j, c] / stabilize(_window_sum(X, n, i, j, c, hp, wp, s0, s1), epsilon)


@cuda.jit(**KERNEL)
def _alphabeta_ratios(X, R, hp, wp, s0, s1, alpha, beta, tiny, Sp, Sn):
    for e in range(cuda.grid(1), R.size, cuda.gridsize(1)):
        n, i, j, c = unravel(e, R.shape)
        zp = tiny
        zn = -tiny
        for a in range(hp):
            for b in range(wp):
                x = X[n, i * s0 + a, j * s1 + b, c]
                zp += positive_part(x)
                zn += negative_part(x)
        Sp[n, i, j, c] = alpha * R[n, i, j, c] / zp
        Sn[n, i, j, c] = beta * R[n, i, j, c] / zn


@cuda.jit(**KERNEL)
def _winner_ratios(X, Y, R, hp, wp, s0, s1, S):
    """S = R / (number of inputs equal to the window's maximum)."""
    for e in range(cuda.grid(1), R.size, cuda.gridsize(1)):
        n, i, j, c = unravel(e, R.shape)
        count = 0
        for a in range(hp):
            for b in range(wp):
                if X[n, i * s0 + a, j * s1 + b, c] == Y[n, i, j, c]:
                    count += 1
        # a window with no winner (NaN) gives nothing
        S[n, i, j, c] = R[n, i, j, c] / count if count > 0 else 0


@cuda.jit(**KERNEL)
def _gather(X, Y, Sp, Sn, hp, wp, s0, s1, mode, scale, Rx):
    """Each input sums the ratios of the windows that contain it:
    mode 0: x * sum Sp (sum pool, epsilon); 1: x * sum (Sp if x > 0 else Sn)
    (sum pool, alpha-beta); 2: scale * sum Sp (uniform); 3: sum Sp over the
    windows whose maximum (Y) it equals (max pool); 4: sum Sp over the
    windows whose first maximum it is (max pool's gradient)."""
    Ho, Wo = Sp.shape[1], Sp.shape[2]
    for e in range(cuda.grid(1), Rx.size, cuda.gridsize(1)):
        n, p, q, c = unravel(e, Rx.shape)
        x = X[n, p, q, c]
        acc = Sp[n, 0, 0, c] - Sp[n, 0, 0, c]  # not x - x: x is -inf in a max pool's padding
        for a in range(hp):
            if p - a >= 0 and (p - a) % s0 == 0 and (p - a) // s0 < Ho:
                i = (p - a) // s0
                for b in range(wp):
                    if q - b >= 0 and (q - b) % s1 == 0 and (q - b) // s1 < Wo:
                        j = (q - b) // s1
                        if mode == 1 and x < 0:
                            acc += Sn[n, i, j, c]
                        elif mode == 4:
                            if a * wp + b == _first_maximum(X, Y, n, i, j, c, hp, wp, s0, s1):
                                acc += Sp[n, i, j, c]
                        elif mode != 3 or x == Y[n, i, j, c]:
                            acc += Sp[n, i, j, c]
        if mode <= 1:
            Rx[n, p, q, c] = x * acc
        elif mode == 2:
            Rx[n, p, q, c] = scale * acc
        else:
            Rx[n, p, q, c] = acc


def _pooled(X, hp, wp, s0, s1):
    N, H, W, D = X.shape
    return cuda.device_array((N, (H - hp) // s0 + 1, (W - wp) // s1 + 1, D), dtype=X.dtype)


def _gathered(X, Y, Sp, Sn, hp, wp, s0, s1, mode, scale):
    Rx = cuda.device_array(X.shape, dtype=X.dtype)
    launch(_gather, Rx.size)(X, Y, Sp, Sn, hp, wp, s0, s1, mode, scale, Rx)
    return Rx


def sumpool_forward(X, hp, wp, s0, s1, scale):
    """``Y[n,i,j,c] = scale * sum_{a,b} X[n, i*s0+a, j*s1+b, c]``."""
    Y = _pooled(X, hp, wp, s0, s1)
    launch(_sumpool_forward, Y.size)(X, hp, wp, s0, s1, scale, Y)
    return Y


def sumpool_relevance_epsilon(X, R, hp, wp, s0, s1, epsilon):
    """``R_pqc = sum_{ij} x_pqc / (s_ijc + eps sgn(s_ijc)) R_ijc``, s the window's plain sum."""
    S = cuda.device_array(R.shape, dtype=R.dtype)
    launch(_epsilon_ratios, R.size)(X, R, hp, wp, s0, s1, epsilon, S)
    return _gathered(X, R, S, S, hp, wp, s0, s1, 0, X.dtype.type(1))


def sumpool_relevance_alphabeta(X, R, hp, wp, s0, s1, alpha, beta, tiny):
    """``R_pqc = sum_{ij} (alpha x+ / (sum x+ + tiny) + beta x- / (sum x- - tiny)) R_ijc``."""
    Sp = cuda.device_array(R.shape, dtype=R.dtype)
    Sn = cuda.device_array(R.shape, dtype=R.dtype)
    launch(_alphabeta_ratios, R.size)(X, R, hp, wp, s0, s1, alpha, beta, tiny, Sp, Sn)
    return _gathered(X, R, Sp, Sn, hp, wp, s0, s1, 1, X.dtype.type(1))


def pool_relevance_uniform(X, R, hp, wp, s0, s1):
    """Flat and w^2 rules: ``R_pqc = sum_{ij} R_ijc / (hp wp)``."""
    return _gathered(X, R, R, R, hp, wp, s0, s1, 2, X.dtype.type(1.0 / (hp * wp)))


def maxpool_forward(X, hp, wp, s0, s1):
    """``Y[n,i,j,c] = max_{a,b} X[n, i*s0+a, j*s1+b, c]``."""
    Y = _pooled(X, hp, wp, s0, s1)
    launch(_maxpool_forward, Y.size)(X, hp, wp, s0, s1, Y)
    return Y


def maxpool_relevance_winners(X, Y, R, hp, wp, s0, s1):
    """All of a window's relevance to its maxima, split evenly on ties."""
    S = cuda.device_array(R.shape, dtype=R.dtype)
    launch(_winner_ratios, R.size)(X, Y, R, hp, wp, s0, s1, S)
    return _gathered(X, Y, S, S, hp, wp, s0, s1, 3, X.dtype.type(1))


def sumpool_backward(X, G, hp, wp, s0, s1, scale):
    """Gradient of the sum pool: ``scale * sum_{ij} dL/dy_ijc`` over the windows holding (p, q)."""
    return _gathered(X, G, G, G, hp, wp, s0, s1, 2, scale)


def maxpool_backward(X, Y, G, hp, wp, s0, s1):
    """Gradient of the max pool: all of a window's G to its first maximum in
    window order (as autograd and the Caffe toolbox)."""
    return _gathered(X, Y, G, G, hp, wp, s0, s1, 4, X.dtype.type(1))


# ---------------------------------------------------------------- average pooling
#: the modes of avgpool_relevance, as in lrpnb.kernels.pool


@cuda.jit(device=True, inline=True)
def _avg_window(H, W, i, j, hp, wp, s0, s1, top, left):
    """(p0, p1, q0, q1): the rows and columns of window (i, j) inside the image."""
    p0 = i * s0 - top
    q0 = j * s1 - left
    return max(p0, 0), min(p0 + hp, H), max(q0, 0), min(q0 + wp, W)


@cuda.jit(device=True, inline=True)
def _avg_counted(H, W, i, j, hp, wp, s0, s1, top, bottom, left, right):
    """The size of window (i, j) clipped to the padded image (see lrpnb.kernels.pool)."""
    p0 = i * s0 - top
    q0 = j * s1 - left
    return (min(p0 + hp, H + bottom) - p0) * (min(q0 + wp, W + right) - q0)


@cuda.jit(**KERNEL)
def _avgpool_forward(X, hp, wp, s0, s1, top, bottom, left, right, include_pad, Y):
    H, W = X.shape[1], X.shape[2]
    for e in range(cuda.grid(1), Y.size, cuda.gridsize(1)):
        n, i, j, c = unravel(e, Y.shape)
        p0, p1, q0, q1 = _avg_window(H, W, i, j, hp, wp, s0, s1, top, left)
        total = X[n, 0, 0, c] - X[n, 0, 0, c]
        for p in range(p0, p1):
            for q in range(q0, q1):
                total += X[n, p, q, c]
        # a float32 count keeps float32 sums float32 (counts are exact in it)
        count = np.float32(_avg_counted(H, W, i, j, hp, wp, s0, s1, top, bottom, left, right)
                           if include_pad else (p1 - p0) * (q1 - q0))
        Y[n, i, j, c] = total / count


@cuda.jit(**KERNEL)
def _avgpool_ratios(X, Y, R, hp, wp, s0, s1, top, bottom, left, right, include_pad, mode, p1, p2, tiny, Sp, Sn):
    H, W = X.shape[1], X.shape[2]
    for e in range(cuda.grid(1), R.size, cuda.gridsize(1)):
        n, i, j, c = unravel(e, R.shape)
        r0, r1, q0, q1 = _avg_window(H, W, i, j, hp, wp, s0, s1, top, left)
        inside = np.float32((r1 - r0) * (q1 - q0))
        count = np.float32(_avg_counted(H, W, i, j, hp, wp, s0, s1, top, bottom, left, right)) \
            if include_pad else inside
        if mode == AVG_ALPHABETA:
            zp = tiny
            zn = -tiny
            for p in range(r0, r1):
                for q in range(q0, q1):
                    zp += positive_part(X[n, p, q, c])
                    zn += negative_part(X[n, p, q, c])
            Sp[n, i, j, c] = p1 * R[n, i, j, c] / zp
            Sn[n, i, j, c] = p2 * R[n, i, j, c] / zn
        else:
            if mode == AVG_EPSILON:
                ratio = R[n, i, j, c] / (count * stabilize(Y[n, i, j, c], p1))
            elif mode == AVG_GRADIENT:
                ratio = R[n, i, j, c] / count
            else:
                ratio = R[n, i, j, c] / inside
            Sp[n, i, j, c] = ratio
            Sn[n, i, j, c] = ratio


@cuda.jit(**KERNEL)
def _avgpool_gather(X, Sp, Sn, hp, wp, s0, s1, top, left, mode, Rx):
    """Each input sums the ratios of the windows that hold it (window (i, j)
    holds row p when 0 <= p + top - i*s0 < hp), times x for the ratio rules."""
    Ho, Wo = Sp.shape[1], Sp.shape[2]
    for e in range(cuda.grid(1), Rx.size, cuda.gridsize(1)):
        n, p, q, c = unravel(e, Rx.shape)
        x = X[n, p, q, c]
        acc = x - x
        for a in range(hp):
            if p + top - a >= 0 and (p + top - a) % s0 == 0 and (p + top - a) // s0 < Ho:
                i = (p + top - a) // s0
                for b in range(wp):
                    if q + left - b >= 0 and (q + left - b) % s1 == 0 and (q + left - b) // s1 < Wo:
                        j = (q + left - b) // s1
                        acc += Sp[n, i, j, c] if x >= 0 else Sn[n, i, j, c]
        if mode == AVG_EPSILON or mode == AVG_ALPHABETA:
            acc *= x
        Rx[n, p, q, c] = acc


def avgpool_forward(X, hp, wp, s0, s1, top, bottom, left, right, Ho, Wo, include_pad):
    """Average of each window's inputs inside the image (see lrpnb.kernels.pool)."""
    Y = cuda.device_array((X.shape[0], Ho, Wo, X.shape[3]), dtype=X.dtype)
    launch(_avgpool_forward, Y.size)(X, hp, wp, s0, s1, top, bottom, left, right, include_pad, Y)
    return Y


def avgpool_relevance(X, Y, R, hp, wp, s0, s1, top, bottom, left, right, include_pad, mode, p1, p2, tiny):
    """Relevance or gradient of an average pool's inputs (see lrpnb.kernels.pool)."""
    Sp = cuda.device_array(R.shape, dtype=R.dtype)
    Sn = cuda.device_array(R.shape, dtype=R.dtype)
    launch(_avgpool_ratios, R.size)(X, Y, R, hp, wp, s0, s1, top, bottom, left, right, include_pad, mode, p1, p2,
                                    tiny, Sp, Sn)
    Rx = cuda.device_array(X.shape, dtype=X.dtype)
    launch(_avgpool_gather, Rx.size)(X, Sp, Sn, hp, wp, s0, s1, top, left, mode, Rx)
    return Rx


SIGNATURES = {
    _sumpool_forward: "A4 I I I I F A4",
    _maxpool_forward: "A4 I I I I A4",
    _epsilon_ratios: "A4 A4 I I I I F A4",
    _alphabeta_ratios: "A4 A4 I I I I F F F A4 A4",
    _winner_ratios: "A4 A4 A4 I I I I A4",
    _gather: "A4 A4 A4 A4 I I I I I F A4",
    _avgpool_forward: "A4 I I I I I I I I B A4",
    _avgpool_ratios: "A4 A4 A4 I I I I I I I I B I F F F A4 A4",
    _avgpool_gather: "A4 A4 A4 I I I I I I I A4",
}
