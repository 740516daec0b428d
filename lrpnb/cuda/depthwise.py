"""Depthwise convolutions on the GPU: the twin of ``lrpnb.kernels.depthwise``.

Same layouts, formulas and function names (those of ``lrpnb.cuda.conv``);
filters W of shape (h, w, 1, K) on inputs X (N, H, Wd, C), K = C m, output
channel k reading input channel k // m. One thread per element: the forward
pass and the ratios walk the outputs, the relevance passes the inputs, each
input gathering what the outputs whose taps lie on it send back (taps a, b
and the m output channels in ascending order), so no atomics are needed and
results are deterministic.
"""
from numba import cuda

from . import KERNEL, launch, unravel
from ..rule_math import PAIRED_ALPHABETA
from .conv import filled, image_ones, paired_weights, squared  # noqa: F401  (the rule block's helpers)
from .rules import negative_part, paired_ratios, positive_part, stabilize

__all__ = ["conv_forward", "conv_relevance_epsilon", "conv_relevance_paired", "conv_backward",
           "paired_weights", "filled", "image_ones", "squared"]


@cuda.jit(device=True, inline=True)
def _tap(p, a, s, size):
    """The output index whose tap a lies on input index p (stride s), or -1."""
    d = p - a
    if d < 0 or d % s != 0 or d // s >= size:
        return -1
    return d // s


@cuda.jit(**KERNEL)
def _forward(X, W, B, s0, s1, m, Y):
    """``Y[n,i,j,k] = b_k + sum_{a,b} X[n, i*s0+a, j*s1+b, k // m] W[a,b,0,k]``."""
    h, w = W.shape[0], W.shape[1]
    for e in range(cuda.grid(1), Y.size, cuda.gridsize(1)):
        n, i, j, k = unravel(e, Y.shape)
        c = k // m
        acc = B[k]
        for a in range(h):
            for b in range(w):
                acc += X[n, i * s0 + a, j * s1 + b, c] * W[a, b, 0, k]
        Y[n, i, j, k] = acc


@cuda.jit(**KERNEL)
def _epsilon_ratios(R, Y, epsilon, S):
    """S = R / (Y + eps sgn(Y)) on flat views."""
    for e in range(cuda.grid(1), S.size, cuda.gridsize(1)):
        S[e] = R[e] / stabilize(Y[e], epsilon)


@cuda.jit(**KERNEL)
def _gather(X, V, S, s0, s1, m, multiply, Rx):
    """``Rx[n,p,q,c] = (x if multiply else 1) sum V[a,b,0,k] S[n,i,j,k]`` over
    the outputs (i, j, k), k = c m .. c m + m - 1, whose tap (a, b) lies on (p, q)."""
    h, w = V.shape[0], V.shape[1]
    Ho, Wo = S.shape[1], S.shape[2]
    for e in range(cuda.grid(1), Rx.size, cuda.gridsize(1)):
        n, p, q, c = unravel(e, Rx.shape)
        x = X[n, p, q, c]
        acc = x - x
        for a in range(h):
            i = _tap(p, a, s0, Ho)
            if i >= 0:
                for b in range(w):
                    j = _tap(q, b, s1, Wo)
                    if j >= 0:
                        for k in range(c * m, c * m + m):
                            acc += V[a, b, 0, k] * S[n, i, j, k]
        Rx[n, p, q, c] = acc * x if multiply else acc


@cuda.jit(**KERNEL)
def _paired_ratios(X, A, Bm, Ba, Bb, Y, R, s0, s1, m, mode, p1, p2, tiny, both, Sa, Sb):
    """The two ratios of every output (see conv_relevance_paired); Sb only with ``both``."""
    h, w = A.shape[0], A.shape[1]
    for e in range(cuda.grid(1), R.size, cuda.gridsize(1)):
        n, i, j, k = unravel(e, R.shape)
        c = k // m
        za = Ba[k]
        zb = Bb[k]
        for a in range(h):
            for b in range(w):
                x = X[n, i * s0 + a, j * s1 + b, c]
                xp, xn = positive_part(x), negative_part(x)
                za += xp * A[a, b, 0, k] + xn * Bm[a, b, 0, k]
                zb += xp * Bm[a, b, 0, k] + xn * A[a, b, 0, k]
        ra, rb = paired_ratios(za, zb, R[n, i, j, k], Y[n, i, j, k], mode, p1, p2, tiny)
        Sa[n, i, j, k] = ra
        if both:
            Sb[n, i, j, k] = rb


@cuda.jit(**KERNEL)
def _paired_gather(X, A, Bm, Sa, Sb, s0, s1, m, both, Rx):
    """``x sum (A Sa + Bm Sb)`` where x > 0, ``x sum (Bm Sa + A Sb)`` where
    x < 0 (Sb taken as zero without ``both``), zero where x = 0."""
    h, w = A.shape[0], A.shape[1]
    Ho, Wo = Sa.shape[1], Sa.shape[2]
    for e in range(cuda.grid(1), Rx.size, cuda.gridsize(1)):
        n, p, q, c = unravel(e, Rx.shape)
        x = X[n, p, q, c]
        acc = x - x
        if x != 0:
            for a in range(h):
                i = _tap(p, a, s0, Ho)
                if i >= 0:
                    for b in range(w):
                        j = _tap(q, b, s1, Wo)
                        if j >= 0:
                            for k in range(c * m, c * m + m):
                                first, second = (A[a, b, 0, k], Bm[a, b, 0, k]) if x > 0 \
                                    else (Bm[a, b, 0, k], A[a, b, 0, k])
                                acc += first * Sa[n, i, j, k]
                                if both:
                                    acc += second * Sb[n, i, j, k]
        Rx[n, p, q, c] = acc * x


def _multiplier(X, W):
    C, K = X.shape[3], W.shape[3]
    if W.shape[2] != 1 or K % C:
        raise ValueError(f"lrpnb/cuda/depthwise.py: a depthwise filter has shape (h, w, 1, m * {C}) for "
                         f"{C} input channels, got {tuple(W.shape)}")
    return K // C


def _output_shape(X, W, s0, s1):
    N, H, Wd, _ = X.shape
    h, w, _, K = W.shape
    return (N, (H - h) // s0 + 1, (Wd - w) // s1 + 1, K)


def conv_forward(X, W, B, s0, s1):
    """``Y[n,i,j,k] = b_k + sum_{a,b} X[n, i*s0+a, j*s1+b, k // m] W[a,b,0,k]``."""
    m = _multiplier(X, W)
    Y = cuda.device_array(_output_shape(X, W, s0, s1), dtype=X.dtype)
    launch(_forward, Y.size)(X, W, B, s0, s1, m, Y)
    return Y


def conv_relevance_epsilon(X, W, Y, R, s0, s1, epsilon):
    """Epsilon rule: ``R_pqc = x_pqc sum_{ijk} w_ab0k R_ijk / (z_ijk + eps sgn(z_ijk))``."""
    m = _multiplier(X, W)
    S = cuda.device_array(R.shape, dtype=R.dtype)
    launch(_epsilon_ratios, S.size)(R.reshape(R.size), Y.reshape(Y.size), epsilon, S.reshape(S.size))
    Rx = cuda.device_array(X.shape, dtype=X.dtype)
    launch(_gather, Rx.size)(X, W, S, s0, s1, m, True, Rx)
    return Rx


def conv_backward(X, W, G, s0, s1):
    """Gradient with respect to the input: ``dL/dx_pqc = sum_{ijk} w_ab0k dL/dy_ijk``."""
    m = _multiplier(X, W)
    Rx = cuda.device_array(X.shape, dtype=X.dtype)
    launch(_gather, Rx.size)(X, W, G, s0, s1, m, False, Rx)
    return Rx


def conv_relevance_paired(X, A, Bm, Ba, Bb, Y, R, s0, s1, mode, p1, p2, tiny):
    """The sign-paired rules (see lrpnb.kernels.depthwise.conv_relevance_paired)."""
    m = _multiplier(X, A)
    both = not (mode == PAIRED_ALPHABETA and p2 == 0)
    Sa = cuda.device_array(R.shape, dtype=R.dtype)
    Sb = cuda.device_array(R.shape, dtype=R.dtype) if both else Sa
    launch(_paired_ratios, R.size)(X, A, Bm, Ba, Bb, Y, R, s0, s1, m, mode, p1, p2, tiny, both, Sa, Sb)
    Rx = cuda.device_array(X.shape, dtype=X.dtype)
    launch(_paired_gather, Rx.size)(X, A, Bm, Sa, Sb, s0, s1, m, both, Rx)
    return Rx


#: kernel -> argument kinds, for compiling every kernel to PTX in the tests
#: (see lrpnb.cuda.conv)
SIGNATURES = {
    _forward: "A4 A4 A1 I I I A4",
    _epsilon_ratios: "A1 A1 F A1",
    _gather: "A4 A4 A4 I I I B A4",
    _paired_ratios: "A4 A4 A4 A1 A1 A4 A4 I I I I F F F B A4 A4",
    _paired_gather: "A4 A4 A4 A4 A4 I I I B A4",
}
