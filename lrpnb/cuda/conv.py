"""Convolution layer on the GPU: the twin of ``lrpnb.kernels.conv``.

Same layouts, same formulas, same function names; arrays are numba device
arrays. Forward kernels compute one output element per loop iteration.
Relevance kernels first turn each output's relevance into a ratio (for the
epsilon rule ``R_ijk / (z_ijk + eps sgn(z_ijk))``), then each input element
gathers ``sum w_abck * ratio_ijk`` over the outputs whose patch contains it:
output row i sees input row p when p = i*s0 + a for some 0 <= a < h.
"""
from numba import cuda

from . import KERNEL, launch, unravel
from .rules import negative_part, paired_ratios, positive_part, stabilize


@cuda.jit(**KERNEL)
def _forward(X, W, B, s0, s1, Y):
    N, Ho, Wo, K = Y.shape
    h, w, D, _ = W.shape
    for e in range(cuda.grid(1), Y.size, cuda.gridsize(1)):
        n, i, j, k = unravel(e, Y.shape)
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
        n, p, q, c = unravel(e, Rx.shape)
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
def _paired_ratios(X, A, Bm, Ba, Bb, Y, R, s0, s1, mode, p1, p2, tiny, Sa, Sb):
    """The sign-paired rules' ratios (see ``_paired`` in lrpnb/kernels/conv.py):
    sums ``Za = sum x+ A + x- Bm + Ba``, ``Zb = sum x+ Bm + x- A + Bb`` per
    output, turned into ratios by ``lrpnb.rule_math.paired_ratios``."""
    N, Ho, Wo, K = R.shape
    h, w, D, _ = A.shape
    for e in range(cuda.grid(1), R.size, cuda.gridsize(1)):
        n, i, j, k = unravel(e, R.shape)
        za = Ba[k]
        zb = Bb[k]
        for a in range(h):
            for b in range(w):
                for c in range(D):
                    x = X[n, i * s0 + a, j * s1 + b, c]
                    if x > 0:
                        za += x * A[a, b, c, k]
                        zb += x * Bm[a, b, c, k]
                    elif x < 0:
                        za += x * Bm[a, b, c, k]
                        zb += x * A[a, b, c, k]
        Sa[n, i, j, k], Sb[n, i, j, k] = paired_ratios(za, zb, R[n, i, j, k], Y[n, i, j, k],
                                                        mode, p1, p2, tiny)


@cuda.jit(**KERNEL)
def _paired_gather(X, A, Bm, Sa, Sb, s0, s1, Rx):
    """``Rx = x * sum (A Sa + Bm Sb)`` where x > 0, ``x * sum (Bm Sa + A Sb)``
    where x < 0: each input keeps the contributions of its own sign."""
    N, H, Wd, D = Rx.shape
    h, w, _, K = A.shape
    Ho, Wo = Sa.shape[1], Sa.shape[2]
    for e in range(cuda.grid(1), Rx.size, cuda.gridsize(1)):
        n, p, q, c = unravel(e, Rx.shape)
        x = X[n, p, q, c]
        acc = x - x
        for a in range(h):
            if p - a >= 0 and (p - a) % s0 == 0 and (p - a) // s0 < Ho:
                i = (p - a) // s0
                for b in range(w):
                    if q - b >= 0 and (q - b) % s1 == 0 and (q - b) // s1 < Wo:
                        j = (q - b) // s1
                        for k in range(K):
                            if x > 0:
                                acc += A[a, b, c, k] * Sa[n, i, j, k] + Bm[a, b, c, k] * Sb[n, i, j, k]
                            else:
                                acc += Bm[a, b, c, k] * Sa[n, i, j, k] + A[a, b, c, k] * Sb[n, i, j, k]
        Rx[n, p, q, c] = x * acc


@cuda.jit(**KERNEL)
def _pair_weights(W, gamma, mode, A, Bm):
    """mode 0: A = W+, Bm = W-; mode 1: A = W + gamma W+, Bm = W + gamma W- (flat views)."""
    for e in range(cuda.grid(1), W.size, cuda.gridsize(1)):
        if mode == 0:
            A[e] = positive_part(W[e])
            Bm[e] = negative_part(W[e])
        else:
            A[e] = W[e] + gamma * positive_part(W[e])
            Bm[e] = W[e] + gamma * negative_part(W[e])


@cuda.jit(**KERNEL)
def _fill_channels(L, low):
    """L[..., c] = low[c] (flat view of L)."""
    D = low.size
    for e in range(cuda.grid(1), L.size, cuda.gridsize(1)):
        L[e] = low[e % D]


@cuda.jit(**KERNEL)
def _subtract3(A, B, C, out):
    """out = A - B - C (flat views)."""
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[e] = A[e] - B[e] - C[e]


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


def _pairs(W, gamma, mode):
    A = cuda.device_array(W.shape, dtype=W.dtype)
    Bm = cuda.device_array(W.shape, dtype=W.dtype)
    launch(_pair_weights, W.size)(W.reshape(-1), gamma, mode, A.reshape(-1), Bm.reshape(-1))
    return A, Bm


def _paired(X, A, Bm, Ba, Bb, Y, R, s0, s1, mode, p1, p2, tiny):
    Sa = cuda.device_array(R.shape, dtype=R.dtype)
    Sb = cuda.device_array(R.shape, dtype=R.dtype)
    launch(_paired_ratios, R.size)(X, A, Bm, Ba, Bb, Y, R, s0, s1, mode, p1, p2, tiny, Sa, Sb)
    Rx = cuda.device_array(X.shape, dtype=X.dtype)
    launch(_paired_gather, Rx.size)(X, A, Bm, Sa, Sb, s0, s1, Rx)
    return Rx


def conv_relevance_alphabeta(X, W, B, R, s0, s1, alpha, beta, tiny):
    """Alpha-beta rule: ``R_pqc = sum (alpha z+ / (sum z+ + b+ + tiny)
    + beta z- / (sum z- + b- - tiny)) R_ijk``."""
    A, Bm = _pairs(W, alpha, 0)
    Ba, Bb = _pairs(B, alpha, 0)
    return _paired(X, A, Bm, Ba, Bb, R, R, s0, s1, 0, alpha, beta, tiny)


def conv_relevance_gamma(X, W, B, Y, R, s0, s1, gamma, tiny):
    """Generalized gamma rule (zennit's Gamma); see lrpnb.kernels.conv."""
    A, Bm = _pairs(W, gamma, 1)
    Ba, Bb = _pairs(B, gamma, 1)
    return _paired(X, A, Bm, Ba, Bb, Y, R, s0, s1, 1, tiny, tiny, tiny)


def conv_relevance_zbox(X, W, R, s0, s1, low, high, tiny):
    """z^B rule (zennit's ZBox); see lrpnb.kernels.conv."""
    L = cuda.device_array(X.shape, dtype=X.dtype)
    H = cuda.device_array(X.shape, dtype=X.dtype)
    launch(_fill_channels, L.size)(L.reshape(-1), low)
    launch(_fill_channels, H.size)(H.reshape(-1), high)
    Wp, Wn = _pairs(W, X.dtype.type(0), 0)
    zero = cuda.device_array(W.shape[3], dtype=W.dtype)
    launch(_fill, zero.size)(zero, X.dtype.type(0))

    def combined(a, b, c):
        out = cuda.device_array(a.shape, dtype=a.dtype)
        launch(_subtract3, out.size)(a.reshape(-1), b.reshape(-1), c.reshape(-1), out.reshape(-1))
        return out

    Z = combined(conv_forward(X, W, zero, s0, s1), conv_forward(L, Wp, zero, s0, s1),
                 conv_forward(H, Wn, zero, s0, s1))
    return combined(conv_relevance_epsilon(X, W, Z, R, s0, s1, tiny),
                    conv_relevance_epsilon(L, Wp, Z, R, s0, s1, tiny),
                    conv_relevance_epsilon(H, Wn, Z, R, s0, s1, tiny))


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


def conv_backward(X, W, G, s0, s1):
    """Gradient with respect to the input: ``dL/dx_pqc = sum_{ijk} w_abck dL/dy_ijk``."""
    Rx = cuda.device_array(X.shape, dtype=X.dtype)
    launch(_gather, Rx.size)(X, W, G, s0, s1, False, Rx)
    return Rx


@cuda.jit(**KERNEL)
def _weight_gradient(X, G, s0, s1, dW):
    """dW[a,b,c,k] = sum over n, i, j of X[n, i*s0+a, j*s1+b, c] G[n,i,j,k]:
    one weight per loop iteration, summed in a fixed order."""
    N, Ho, Wo, K = G.shape
    for e in range(cuda.grid(1), dW.size, cuda.gridsize(1)):
        a, b, c, k = unravel(e, dW.shape)
        # a zero of the arrays' dtype (dW is uninitialised memory)
        acc = G[0, 0, 0, k] - G[0, 0, 0, k]
        for n in range(N):
            for i in range(Ho):
                for j in range(Wo):
                    acc += X[n, i * s0 + a, j * s1 + b, c] * G[n, i, j, k]
        dW[a, b, c, k] = acc


@cuda.jit(**KERNEL)
def _bias_gradient(G2, dB):
    """dB[k] = sum of column k of G2 (rows: every output position)."""
    for k in range(cuda.grid(1), dB.size, cuda.gridsize(1)):
        acc = G2[0, k] - G2[0, k]
        for row in range(G2.shape[0]):
            acc += G2[row, k]
        dB[k] = acc


def conv_weight_gradient(X, G, h, w, s0, s1):
    """Gradients of the weights and bias for output gradient ``G``:
    ``dW[a,b,c,k] = sum_{n,i,j} X[n, i*s0+a, j*s1+b, c] G[n,i,j,k]``,
    ``dB[k] = sum_{n,i,j} G[n,i,j,k]``."""
    N, Ho, Wo, K = G.shape
    dW = cuda.device_array((h, w, X.shape[3], K), dtype=X.dtype)
    dB = cuda.device_array(K, dtype=X.dtype)
    launch(_weight_gradient, dW.size)(X, G, s0, s1, dW)
    launch(_bias_gradient, K)(G.reshape(N * Ho * Wo, K), dB)
    return dW, dB


#: kernel -> argument kinds, for compiling every kernel to PTX in the tests:
#: 'A<n>' an n-d C-contiguous array of the float dtype, 'F' a float of that
#: dtype, 'I' an int64, 'B' a boolean
SIGNATURES = {
    _forward: "A4 A4 A1 I I A4",
    _epsilon_ratios: "A1 A1 F A1",
    _gather: "A4 A4 A4 I I B A4",
    _paired_ratios: "A4 A4 A4 A1 A1 A4 A4 I I I F F F A4 A4",
    _paired_gather: "A4 A4 A4 A4 A4 I I A4",
    _pair_weights: "A1 F I A1 A1",
    _fill_channels: "A1 A1",
    _subtract3: "A1 A1 A1 A1",
    _ww_weights: "A4 A4",
    _fill: "A1 F",
    _weight_gradient: "A4 A4 I I A4",
    _bias_gradient: "A2 A1",
}
