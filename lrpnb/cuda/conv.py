"""Convolution layer on the GPU: the twin of ``lrpnb.kernels.conv``.

Same layouts, same formulas, same function names; arrays are numba device
arrays. Forward kernels compute one output element per loop iteration.
Relevance kernels first turn each output's relevance into a ratio (for the
epsilon rule ``R_ijk / (z_ijk + eps sgn(z_ijk))``), then each input element
gathers ``sum w_abck * ratio_ijk`` over the outputs whose patch contains it:
output row i sees input row p when p = i*s0 + a for some 0 <= a < h.
"""
from numba import cuda

from . import KERNEL, launch
from .rules import negative_part, positive_part, stabilize


@cuda.jit(**KERNEL)
def _forward(X, W, B, s0, s1, Y):
    N, Ho, Wo, K = Y.shape
    h, w, D, _ = W.shape
    for e in range(cuda.grid(1), Y.size, cuda.gridsize(1)):
        k = e % K
        j = (e // K) % Wo
        i = (e // (K * Wo)) % Ho
        n = e // (K * Wo * Ho)
        acc = B[k]
        for a in range(h):
            for b in range(w):
                for c in range(D):
                    acc += X[n, i * s0 + a, j * s1 + b, c] * W[a, b, c, k]
        Y[n, i, j, k] = acc


@cuda.jit(**KERNEL)
def _epsilon_ratios(R, Y, epsilon, S):
    """S = R / (Y + eps sgn(Y)) on flat views."""
    for e in range(cuda.grid(1), S.size, cuda.gridsize(1)):
        S[e] = R[e] / stabilize(Y[e], epsilon)


@cuda.jit(**KERNEL)
def _gather(X, V, S, s0, s1, multiply, Rx):
    """``Rx[n,p,q,c] = (x_npqc if multiply else 1) * sum V[a,b,c,k] S[n,i,j,k]``
    over the outputs (i, j) whose patch holds (p, q)."""
    N, H, Wd, D = Rx.shape
    h, w, _, K = V.shape
    Ho, Wo = S.shape[1], S.shape[2]
    for e in range(cuda.grid(1), Rx.size, cuda.gridsize(1)):
        c = e % D
        q = (e // D) % Wd
        p = (e // (D * Wd)) % H
        n = e // (D * Wd * H)
        x = X[n, p, q, c]
        acc = x - x
        for a in range(h):
            if p - a >= 0 and (p - a) % s0 == 0 and (p - a) // s0 < Ho:
                i = (p - a) // s0
                for b in range(w):
                    if q - b >= 0 and (q - b) % s1 == 0 and (q - b) // s1 < Wo:
                        j = (q - b) // s1
                        for k in range(K):
                            acc += V[a, b, c, k] * S[n, i, j, k]
        Rx[n, p, q, c] = acc * x if multiply else acc


@cuda.jit(**KERNEL)
def _alphabeta_ratios(X, W, B, R, s0, s1, alpha, beta, tiny, Sp, Sn):
    """Sp = alpha R / (sum z+ + b+ + tiny), Sn = beta R / (sum z- + b- - tiny)."""
    N, Ho, Wo, K = R.shape
    h, w, D, _ = W.shape
    for e in range(cuda.grid(1), R.size, cuda.gridsize(1)):
        k = e % K
        j = (e // K) % Wo
        i = (e // (K * Wo)) % Ho
        n = e // (K * Wo * Ho)
        zp = positive_part(B[k]) + tiny
        zn = negative_part(B[k]) - tiny
        for a in range(h):
            for b in range(w):
                for c in range(D):
                    z = X[n, i * s0 + a, j * s1 + b, c] * W[a, b, c, k]
                    zp += positive_part(z)
                    zn += negative_part(z)
        Sp[n, i, j, k] = alpha * R[n, i, j, k] / zp
        Sn[n, i, j, k] = beta * R[n, i, j, k] / zn


@cuda.jit(**KERNEL)
def _alphabeta_gather(X, W, Sp, Sn, s0, s1, Rx):
    """``Rx = x * sum (w+ Sp + w- Sn)`` where x > 0, ``x * sum (w- Sp + w+ Sn)``
    where x < 0: each input keeps the contributions of its own sign."""
    N, H, Wd, D = Rx.shape
    h, w, _, K = W.shape
    Ho, Wo = Sp.shape[1], Sp.shape[2]
    for e in range(cuda.grid(1), Rx.size, cuda.gridsize(1)):
        c = e % D
        q = (e // D) % Wd
        p = (e // (D * Wd)) % H
        n = e // (D * Wd * H)
        x = X[n, p, q, c]
        acc = x - x
        for a in range(h):
            if p - a >= 0 and (p - a) % s0 == 0 and (p - a) // s0 < Ho:
                i = (p - a) // s0
                for b in range(w):
                    if q - b >= 0 and (q - b) % s1 == 0 and (q - b) // s1 < Wo:
                        j = (q - b) // s1
                        for k in range(K):
                            wp = positive_part(W[a, b, c, k])
                            wn = negative_part(W[a, b, c, k])
                            if x > 0:
                                acc += wp * Sp[n, i, j, k] + wn * Sn[n, i, j, k]
                            else:
                                acc += wn * Sp[n, i, j, k] + wp * Sn[n, i, j, k]
        Rx[n, p, q, c] = x * acc


@cuda.jit(**KERNEL)
def _ww_weights(W, V):
    """V[a,b,c,k] = W[a,b,c,k]^2 / sum_{a,b,c} W^2, one filter k per iteration."""
    h, w, D, K = W.shape
    for k in range(cuda.grid(1), K, cuda.gridsize(1)):
        norm = W[0, 0, 0, k] - W[0, 0, 0, k]
        for a in range(h):
            for b in range(w):
                for c in range(D):
                    norm += W[a, b, c, k] * W[a, b, c, k]
        for a in range(h):
            for b in range(w):
                for c in range(D):
                    V[a, b, c, k] = W[a, b, c, k] * W[a, b, c, k] / norm


@cuda.jit(**KERNEL)
def _fill(V, value):
    for e in range(cuda.grid(1), V.size, cuda.gridsize(1)):
        V[e] = value


def _output_shape(X, W, s0, s1):
    N, H, Wd, _ = X.shape
    h, w, _, K = W.shape
    return (N, (H - h) // s0 + 1, (Wd - w) // s1 + 1, K)


def conv_forward(X, W, B, s0, s1):
    """``Y[n,i,j,k] = b_k + sum_{a,b,c} X[n, i*s0+a, j*s1+b, c] W[a,b,c,k]``."""
    Y = cuda.device_array(_output_shape(X, W, s0, s1), dtype=X.dtype)
    launch(_forward, Y.size)(X, W, B, s0, s1, Y)
    return Y


def conv_relevance_epsilon(X, W, Y, R, s0, s1, epsilon):
    """Epsilon rule: ``R_pqc = x_pqc sum_{ijk} w_abck R_ijk / (z_ijk + eps sgn(z_ijk))``."""
    S = cuda.device_array(R.shape, dtype=R.dtype)
    launch(_epsilon_ratios, S.size)(R.reshape(-1), Y.reshape(-1), epsilon, S.reshape(-1))
    Rx = cuda.device_array(X.shape, dtype=X.dtype)
    launch(_gather, Rx.size)(X, W, S, s0, s1, True, Rx)
    return Rx


def conv_relevance_alphabeta(X, W, B, R, s0, s1, alpha, beta, tiny):
    """Alpha-beta rule: ``R_pqc = sum (alpha z+ / (sum z+ + b+ + tiny)
    + beta z- / (sum z- + b- - tiny)) R_ijk``."""
    Sp = cuda.device_array(R.shape, dtype=R.dtype)
    Sn = cuda.device_array(R.shape, dtype=R.dtype)
    launch(_alphabeta_ratios, R.size)(X, W, B, R, s0, s1, alpha, beta, tiny, Sp, Sn)
    Rx = cuda.device_array(X.shape, dtype=X.dtype)
    launch(_alphabeta_gather, Rx.size)(X, W, Sp, Sn, s0, s1, Rx)
    return Rx


def conv_relevance_flat(X, W, R, s0, s1):
    """Flat rule: ``R_pqc = sum_{ijk} R_ijk / (h w d)``."""
    h, w, d, K = W.shape
    V = cuda.device_array(W.shape, dtype=X.dtype)
    launch(_fill, V.size)(V.reshape(-1), X.dtype.type(1.0 / (h * w * d)))
    Rx = cuda.device_array(X.shape, dtype=X.dtype)
    launch(_gather, Rx.size)(X, V, R, s0, s1, False, Rx)
    return Rx


def conv_relevance_ww(X, W, R, s0, s1):
    """w^2 rule: ``R_pqc = sum_{ijk} w_abck^2 / (sum w_.k^2) R_ijk``."""
    V = cuda.device_array(W.shape, dtype=W.dtype)
    launch(_ww_weights, W.shape[3])(W, V)
    Rx = cuda.device_array(X.shape, dtype=X.dtype)
    launch(_gather, Rx.size)(X, V, R, s0, s1, False, Rx)
    return Rx


#: kernel -> argument kinds, for compiling every kernel to PTX in the tests:
#: 'A<n>' an n-d C-contiguous array of the float dtype, 'F' a float of that
#: dtype, 'I' an int64, 'B' a boolean
SIGNATURES = {
    _forward: "A4 A4 A1 I I A4",
    _epsilon_ratios: "A1 A1 F A1",
    _gather: "A4 A4 A4 I I B A4",
    _alphabeta_ratios: "A4 A4 A1 A4 I I F F F A4 A4",
    _alphabeta_gather: "A4 A4 A4 A4 I I A4",
    _ww_weights: "A4 A4",
    _fill: "A1 F",
}
