"""Convolution layer on the GPU: the twin of ``lrpnb.kernels.conv``.

Same layouts, same formulas, same function names; arrays are numba device
arrays. As on the CPU, the heavy work is matrix products
(``lrpnb.cuda.products``: cuBLAS through CuPy, or a tiled kernel): for a
chunk of whole samples, ``_im2col`` copies every output's input patch into
a row of a patch matrix P, the forward pass is P @ W, and a relevance pass
turns the output relevance into ratios (for the epsilon rule
``R_ijk / (z_ijk + eps sgn(z_ijk))``), multiplies them by W^T and hands each
row back to its patch: ``_col2im`` lets every input element gather the
entries of the windows that hold it (output row i sees input row p when
p = i*s0 + a for some 0 <= a < h), multiplied by the input where the rule
has that factor. Gathering, not scattering with atomics, keeps results
deterministic. Chunks hold whole samples, at most WORKSPACE elements of
patch matrix, so the workspace stays bounded at any batch size.
"""
import numpy as np
from numba import cuda

from . import KERNEL, launch, unravel
from .products import empty, matmul
from ..rule_math import PAIRED_ALPHABETA
from .rules import negative_part, paired_ratios, positive_part, stabilize

#: elements of one chunk's patch (or redistribution) matrix at most:
#: 64 Mi (256 MiB of float32), a chunk being at least one sample
WORKSPACE = 1 << 26


def _sample_chunks(N, per_sample):
    """(n0, n1) ranges of whole samples, each at most WORKSPACE elements of
    a matrix with ``per_sample`` elements per sample (at least one sample)."""
    size = max(1, WORKSPACE // max(1, per_sample))
    return [(n0, min(n0 + size, N)) for n0 in range(0, N, size)]


@cuda.jit(**KERNEL)
def _im2col(X, n0, count, h, w, s0, s1, Ho, Wo, split, P):
    """Rows of P: the patches of the outputs of samples n0 .. n0+count-1, in
    (n, i, j) order, columns in (a, b, c) order. With ``split`` the positive
    parts go to the first h*w*d columns and the negative parts to the next."""
    D = X.shape[3]
    size = h * w * D
    for e in range(cuda.grid(1), count * Ho * Wo * size, cuda.gridsize(1)):
        row = e // size
        col = e % size
        n = row // (Ho * Wo)
        i = (row // Wo) % Ho
        j = row % Wo
        a = col // (w * D)
        b = (col // D) % w
        c = col % D
        x = X[n0 + n, i * s0 + a, j * s1 + b, c]
        if split:
            P[row, col] = positive_part(x)
            P[row, size + col] = negative_part(x)
        else:
            P[row, col] = x


@cuda.jit(**KERNEL)
def _col2im(Col, X, n0, h, w, s0, s1, Ho, Wo, multiply, signed, Rx):
    """``Rx[n0+n, p, q, c] = (x if multiply else 1) * sum Col[(n, i, j), (a, b, c)]``
    over the outputs (i, j) whose patch holds (p, q), for the samples that
    Col's rows cover: the adjoint of _im2col, gathered. With ``signed``, Col
    has two halves and each input takes the first where it is positive, the
    second where it is negative, nothing where it is zero."""
    H, Wd, D = Rx.shape[1], Rx.shape[2], Rx.shape[3]
    size = h * w * D
    count = Col.shape[0] // (Ho * Wo)
    for e in range(cuda.grid(1), count * H * Wd * D, cuda.gridsize(1)):
        n = e // (H * Wd * D)
        p = (e // (Wd * D)) % H
        q = (e // D) % Wd
        c = e % D
        x = X[n0 + n, p, q, c]
        acc = x - x
        half = size if signed and x < 0 else 0
        if not signed or x != 0:
            for a in range(h):
                if p - a >= 0 and (p - a) % s0 == 0 and (p - a) // s0 < Ho:
                    i = (p - a) // s0
                    for b in range(w):
                        if q - b >= 0 and (q - b) % s1 == 0 and (q - b) // s1 < Wo:
                            j = (q - b) // s1
                            acc += Col[(n * Ho + i) * Wo + j, half + (a * w + b) * D + c]
        Rx[n0 + n, p, q, c] = acc * x if multiply else acc


@cuda.jit(**KERNEL)
def _add_bias(Y, B):
    """Y[..., k] += B[k] on the flat view of Y."""
    K = B.size
    for e in range(cuda.grid(1), Y.size, cuda.gridsize(1)):
        Y[e] += B[e % K]


@cuda.jit(**KERNEL)
def _epsilon_ratios(R, Y, epsilon, S):
    """S = R / (Y + eps sgn(Y)) on flat views."""
    for e in range(cuda.grid(1), S.size, cuda.gridsize(1)):
        S[e] = R[e] / stabilize(Y[e], epsilon)


@cuda.jit(**KERNEL)
def _paired_ratios(Z, Ba, Bb, R2, Y2, r0, mode, p1, p2, tiny):
    """The sign-paired rules' ratios, in place (see ``conv_relevance_paired`` in
    lrpnb/kernels/conv.py): Z's rows hold the sums ``Za - Ba`` (first K
    columns) and ``Zb - Bb`` (next K) of the outputs r0, r0+1, ..., which
    ``lrpnb.rule_math.paired_ratios`` turns into the two ratios."""
    K = Ba.size
    for e in range(cuda.grid(1), Z.shape[0] * K, cuda.gridsize(1)):
        row = e // K
        k = e % K
        Z[row, k], Z[row, K + k] = paired_ratios(Z[row, k] + Ba[k], Z[row, K + k] + Bb[k], R2[r0 + row, k],
                                                 Y2[r0 + row, k], mode, p1, p2, tiny)


@cuda.jit(**KERNEL)
def _pair_matrix(A2, B2, signed, Wq):
    """Wq = [[A2, B2], [B2, A2]] with ``signed``, else [A2, B2]: the filters of
    both sums of a sign-paired rule, one product for both."""
    size, K = A2.shape
    for e in range(cuda.grid(1), Wq.size, cuda.gridsize(1)):
        r = e // (2 * K)
        col = e % (2 * K)
        swap = (col >= K) != (r >= size)
        source = B2 if swap else A2
        Wq[r, col] = source[r % size, col % K]


@cuda.jit(**KERNEL)
def _any_negative(X, flag):
    """flag[0] = 1 if any X < 0 (every writer writes the same value)."""
    for e in range(cuda.grid(1), X.size, cuda.gridsize(1)):
        if X[e] < 0:
            flag[0] = 1


@cuda.jit(**KERNEL)
def _pair_weights(W, gamma, mode, A, Bm):
    """PAIRED_ALPHABETA: A = W+, Bm = W-; PAIRED_GAMMA: A = W + gamma W+,
    Bm = W + gamma W- (flat views)."""
    for e in range(cuda.grid(1), W.size, cuda.gridsize(1)):
        if mode == PAIRED_ALPHABETA:
            A[e] = positive_part(W[e])
            Bm[e] = negative_part(W[e])
        else:
            A[e] = W[e] + gamma * positive_part(W[e])
            Bm[e] = W[e] + gamma * negative_part(W[e])


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
    N, Ho, Wo, K = _output_shape(X, W, s0, s1)
    h, w, d, _ = W.shape
    Y = cuda.device_array((N, Ho, Wo, K), dtype=X.dtype)
    Y2, W2 = Y.reshape(N * Ho * Wo, K), W.reshape(h * w * d, K)
    chunks = _sample_chunks(N, Ho * Wo * h * w * d)
    P = empty(((chunks[0][1] - chunks[0][0]) * Ho * Wo, h * w * d), X.dtype)
    for n0, n1 in chunks:
        rows = (n1 - n0) * Ho * Wo
        launch(_im2col, rows * h * w * d)(X, n0, n1 - n0, h, w, s0, s1, Ho, Wo, False, P[:rows])
        matmul(P[:rows], W2, Y2[n0 * Ho * Wo:n1 * Ho * Wo])
    launch(_add_bias, Y.size)(Y.reshape(-1), B)
    return Y


def _redistribute(X, V2, S2, Ho, Wo, h, w, s0, s1, multiply):
    """``Rx[n,p,q,c] = (x if multiply else 1) * sum_{ijk} V2[(a,b,c), k] S2[(n,i,j), k]``
    over the outputs whose patch holds (p, q): chunks of samples, each one
    product S2 @ V2^T gathered back onto the inputs by _col2im."""
    N = X.shape[0]
    Rx = cuda.device_array(X.shape, dtype=X.dtype)
    per_sample = Ho * Wo
    chunks = _sample_chunks(N, per_sample * V2.shape[0])
    Col = empty(((chunks[0][1] - chunks[0][0]) * per_sample, V2.shape[0]), X.dtype)
    for n0, n1 in chunks:
        rows = (n1 - n0) * per_sample
        matmul(S2[n0 * per_sample:n1 * per_sample], V2, Col[:rows], transpose_b=True)
        launch(_col2im, (n1 - n0) * X.size // N)(Col[:rows], X, n0, h, w, s0, s1, Ho, Wo, multiply, False, Rx)
    return Rx


def _matrices(W, R):
    """(W as (h*w*d, K), R as (N*Ho*Wo, K), Ho, Wo)."""
    h, w, d, K = W.shape
    N, Ho, Wo, _ = R.shape
    return W.reshape(h * w * d, K), R.reshape(N * Ho * Wo, K), Ho, Wo


def conv_relevance_epsilon(X, W, Y, R, s0, s1, epsilon):
    """Epsilon rule: ``R_pqc = x_pqc sum_{ijk} w_abck R_ijk / (z_ijk + eps sgn(z_ijk))``."""
    S = cuda.device_array(R.shape, dtype=R.dtype)
    launch(_epsilon_ratios, S.size)(R.reshape(-1), Y.reshape(-1), epsilon, S.reshape(-1))
    W2, S2, Ho, Wo = _matrices(W, S)
    return _redistribute(X, W2, S2, Ho, Wo, W.shape[0], W.shape[1], s0, s1, True)


def paired_weights(W, gamma, mode):
    """The filter pair (A, Bm) of a sign-paired rule, for weights or biases
    (see lrpnb.kernels.conv)."""
    A = cuda.device_array(W.shape, dtype=W.dtype)
    Bm = cuda.device_array(W.shape, dtype=W.dtype)
    launch(_pair_weights, W.size)(W.reshape(-1), gamma, mode, A.reshape(-1), Bm.reshape(-1))
    return A, Bm


def conv_relevance_paired(X, A, Bm, Ba, Bb, Y, R, s0, s1, mode, p1, p2, tiny):
    """The sign-paired rules (see lrpnb.kernels.conv): per
    chunk of samples, the sums of both signs are one product of the
    sign-split patches [P+ | P-] with [[A, Bm], [Bm, A]] (just P [A, Bm]
    when no input is negative), turned into ratios in place, and the
    redistribution the product of the ratios with its transpose."""
    N, Ho, Wo, K = R.shape
    h, w, d, _ = A.shape
    size = h * w * d
    flag = cuda.to_device(np.zeros(1, dtype=np.int64))
    launch(_any_negative, X.size)(X.reshape(-1), flag)
    signed = bool(flag.copy_to_host()[0])
    halves = 2 if signed else 1
    Wq = cuda.device_array((halves * size, 2 * K), dtype=X.dtype)
    launch(_pair_matrix, Wq.size)(A.reshape(size, K), Bm.reshape(size, K), signed, Wq)
    R2, Y2 = R.reshape(N * Ho * Wo, K), Y.reshape(N * Ho * Wo, K)
    Rx = cuda.device_array(X.shape, dtype=X.dtype)
    chunks = _sample_chunks(N, Ho * Wo * halves * size)
    first = (chunks[0][1] - chunks[0][0]) * Ho * Wo
    P = empty((first, halves * size), X.dtype)
    Z = empty((first, 2 * K), X.dtype)
    for n0, n1 in chunks:
        rows, r0 = (n1 - n0) * Ho * Wo, n0 * Ho * Wo
        launch(_im2col, rows * size)(X, n0, n1 - n0, h, w, s0, s1, Ho, Wo, signed, P[:rows])
        matmul(P[:rows], Wq, Z[:rows])
        launch(_paired_ratios, rows * K)(Z[:rows], Ba, Bb, R2, Y2, r0, mode, p1, p2, tiny)
        # the patch matrix is free again: it takes the redistribution
        matmul(Z[:rows], Wq, P[:rows], transpose_b=True)
        launch(_col2im, (n1 - n0) * X.size // N)(P[:rows], X, n0, h, w, s0, s1, Ho, Wo, True, signed, Rx)
    return Rx


def conv_relevance_flat(X, W, R, s0, s1):
    """Flat rule: ``R_pqc = sum_{ijk} R_ijk / (h w d)``."""
    h, w, d, K = W.shape
    V = cuda.device_array(W.shape, dtype=X.dtype)
    launch(_fill, V.size)(V.reshape(-1), X.dtype.type(1.0 / (h * w * d)))
    V2, R2, Ho, Wo = _matrices(V, R)
    return _redistribute(X, V2, R2, Ho, Wo, h, w, s0, s1, False)


def conv_relevance_ww(X, W, R, s0, s1):
    """w^2 rule: ``R_pqc = sum_{ijk} w_abck^2 / (sum w_.k^2) R_ijk``."""
    V = cuda.device_array(W.shape, dtype=W.dtype)
    launch(_ww_weights, W.shape[3])(W, V)
    V2, R2, Ho, Wo = _matrices(V, R)
    return _redistribute(X, V2, R2, Ho, Wo, W.shape[0], W.shape[1], s0, s1, False)


def conv_backward(X, W, G, s0, s1):
    """Gradient with respect to the input: ``dL/dx_pqc = sum_{ijk} w_abck dL/dy_ijk``."""
    W2, G2, Ho, Wo = _matrices(W, G)
    return _redistribute(X, W2, G2, Ho, Wo, W.shape[0], W.shape[1], s0, s1, False)


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
@cuda.jit(**KERNEL)
def _square(W, out):
    for e in range(cuda.grid(1), W.size, cuda.gridsize(1)):
        out[e] = W[e] * W[e]


@cuda.jit(**KERNEL)
def _image_ones(top, left, inner_h, inner_w, out):
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        n, p, q, c = unravel(e, out.shape)
        inside = top <= p < top + inner_h and left <= q < left + inner_w
        out[n, p, q, c] = 1 if inside else 0


def filled(shape, value, dtype):
    """A device array of ``shape`` holding ``value``."""
    out = cuda.device_array(tuple(shape), dtype=dtype)
    launch(_fill, out.size)(out.reshape(out.size), np.dtype(dtype).type(value))
    return out


def squared(W):
    """``W * W`` element-wise."""
    out = cuda.device_array(tuple(W.shape), dtype=W.dtype)
    launch(_square, W.size)(W.reshape(W.size), out.reshape(out.size))
    return out


def image_ones(shape, padding, dtype):
    """Ones of ``shape`` inside a border of zeros (top, bottom, left, right)."""
    top, bottom, left, right = padding
    out = cuda.device_array(tuple(shape), dtype=dtype)
    launch(_image_ones, out.size)(top, left, shape[1] - top - bottom, shape[2] - left - right, out)
    return out


SIGNATURES = {
    _im2col: "A4 I I I I I I I I B A2",
    _col2im: "A2 A4 I I I I I I I B B A4",
    _add_bias: "A1 A1",
    _epsilon_ratios: "A1 A1 F A1",
    _paired_ratios: "A2 A1 A1 A2 A2 I I F F F",
    _pair_matrix: "A2 A2 B A2",
    _any_negative: "A1 I1",
    _pair_weights: "A1 F I A1 A1",
    _ww_weights: "A4 A4",
    _fill: "A1 F",
    _square: "A1 A1",
    _image_ones: "I I I I A4",
    _weight_gradient: "A4 A4 I I A4",
    _bias_gradient: "A2 A1",
}
