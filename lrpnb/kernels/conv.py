"""Convolution layer (no padding): forward pass and relevance rules.

Layouts are the LRP Toolbox's: inputs X (N, H, W, D), filters W (h, w, d, n),
bias B (n,), strides (s0, s1), output (N, (H-h)//s0+1, (W-w)//s1+1, n).
Output neuron (i, j, k) sees the input patch at rows i*s0 .. i*s0+h-1 and
columns j*s1 .. j*s1+w-1, with z_{pqc,ijk} = x_pqc w_{abck} for
p = i*s0+a, q = j*s1+b, and z_ijk = sum z + b_k.

The heavy work is matrix products through BLAS: the output rows are taken in
chunks small enough to stay in cache; each chunk's input patches are copied
into the rows of a patch matrix P (one row per output position, h*w*d
columns, "im2col"), so that the forward pass is P @ W and the
redistribution of a rule is (ratios) @ W^T, whose rows are then added back
onto the patches they came from ("col2im"). No (N, H, W, h, w, d, n) array of
contributions is ever formed.

Chunks of output rows run in parallel on a pool of threads
(``parallel_map``; the chunk kernels release the GIL), each calling BLAS on
its own small matrices; BLAS itself then runs single-threaded, or the two
thread pools would oversubscribe the cores: ``Network`` limits it (see
``lrpnb.kernels.single_threaded_blas``). A chunk holds as many output rows as
fit a patch matrix of CHUNK_ELEMENTS (fewer rows make BLAS re-pack the
weights too often for too little work: measured 30-40% slower at 64 rows of
a 1000 x 1000 layer). Where a layer has fewer chunks than TASKS, the
products are split along their other side too: the forward pass by output
channels, the redistribution by input channels, in pieces of at least
MIN_SPLIT_COLUMNS columns (a dense layer with fewer samples than inputs
splits its forward product along the inner dimension instead, adding the
partial products in a fixed order). Everything is sized from the layer's shape alone,
never from the number of threads, so every sum is taken in the same order
on 2 threads as on 64.

Forward chunks write disjoint outputs. A relevance pass first turns the
output relevance into ratios (one per output, or two for the sign-paired
rules), then redistributes them (``_redistribute``): each chunk adds its
rows of (ratios @ W^T) onto input rows that neighbouring chunks also touch,
so overlapping windows run in two phases, even chunks and then odd chunks; a
chunk spans at least h/s0 output rows, so chunks of one phase never touch
the same input. Split by input channels, the tasks of one chunk write
disjoint inputs.
Every input thus receives its sums in a fixed order, whatever the number of
threads: results are deterministic.
"""
import numpy as np
from numba import njit

from . import JIT, blocks, parallel_map
from ..rule_math import PAIRED_ALPHABETA
from .rules import negative_part, paired_ratios, positive_part, stabilize, times_input

#: inputs with at most this many channels (images: 1 to 3) take direct loops
#: along an output row in the forward pass and the sign-paired rules;
#: matrix products with so few columns per patch leave BLAS far from its
#: peak (LeNet-5's first layer: forward 35 ms through BLAS, 27 ms direct;
#: alpha-beta 147 ms and 92 ms; the epsilon rule gained too little, 28 ms
#: and 26 ms, to pay for compiling a second version of it)
DIRECT_MAX_CHANNELS = 4

#: elements of one chunk's patch matrix at most (about 1 MiB of float32):
#: small enough for the products of a chunk to run from cache
CHUNK_ELEMENTS = 1 << 18

#: tasks a pass is split into, at least, where the layer is large enough:
#: four for each of 16 threads. A constant, not the thread count, so that the
#: split, and with it the order of every sum, is the same on any machine
TASKS = 64

#: columns of one product's right-hand side at least when a product is split
#: along it (narrower slices leave BLAS's kernels short of work)
MIN_SPLIT_COLUMNS = 128


def _rows_per_chunk(Wo, columns, minimum=1):
    """Output rows (n, i) per chunk: a patch matrix of about CHUNK_ELEMENTS
    elements (``Wo`` positions per row, ``columns`` per patch), and at least
    ``minimum`` rows (see the two phases above)."""
    return max(minimum, CHUNK_ELEMENTS // max(1, Wo * columns))


def _row_chunks(rows, step):
    return [(r0, min(r0 + step, rows)) for r0 in range(0, rows, step)]


def _column_groups(count, per_item, chunks):
    """Ranges (c0, c1) of ``count`` items (output or input channels) of
    ``per_item`` product columns each, so that ``chunks`` chunks times the
    groups make about TASKS tasks, each group at least MIN_SPLIT_COLUMNS
    columns wide."""
    widest = max(1, count * per_item // MIN_SPLIT_COLUMNS)
    groups = max(1, min(count, widest, -(-TASKS // max(1, chunks))))
    size = -(-count // groups)
    return [(c0, min(c0 + size, count)) for c0 in range(0, count, size)]


@njit(**JIT)
def _im2col(X, r0, r1, Ho, Wo, h, w, s0, s1, P, split):
    """Copy the patches of output rows r0..r1-1 (row r is sample r // Ho,
    output row r % Ho) into P, one patch per row, in (a, b, c) order.

    With ``split`` the positive parts go to the first h*w*d columns and the
    negative parts to the next h*w*d.
    """
    D = X.shape[3]
    size = h * w * D
    for local in range(r1 - r0):
        n = (r0 + local) // Ho
        i = (r0 + local) % Ho
        for j in range(Wo):
            row = local * Wo + j
            for a in range(h):
                for b in range(w):
                    base = (a * w + b) * D
                    for c in range(D):
                        x = X[n, i * s0 + a, j * s1 + b, c]
                        if split:
                            P[row, base + c] = positive_part(x)
                            P[row, size + base + c] = negative_part(x)
                        else:
                            P[row, base + c] = x


@njit(**JIT)
def _col2im_add(Col, r0, r1, Ho, Wo, h, w, s0, s1, c0, c1, Rx, X, signed):
    """Add each row of Col back onto the channels c0..c1-1 of the patch it
    belongs to (the adjoint of _im2col; Col's columns are in (a, b, c - c0)
    order). With ``signed``, Col has two halves and each input takes the
    first where it is positive, the second where it is negative."""
    D = c1 - c0
    size = h * w * D
    for local in range(r1 - r0):
        n = (r0 + local) // Ho
        i = (r0 + local) % Ho
        for j in range(Wo):
            row = local * Wo + j
            for a in range(h):
                for b in range(w):
                    base = (a * w + b) * D
                    p = i * s0 + a
                    q = j * s1 + b
                    if signed:
                        for c in range(D):
                            x = X[n, p, q, c0 + c]
                            if x > 0:
                                Rx[n, p, q, c0 + c] += Col[row, base + c]
                            elif x < 0:
                                Rx[n, p, q, c0 + c] += Col[row, size + base + c]
                    else:
                        for c in range(D):
                            Rx[n, p, q, c0 + c] += Col[row, base + c]


@njit(**JIT)
def _input_row(X, n, p, b, c, s1, out):
    """``out[j] = X[n, p, j*s1 + b, c]``: one strided input row, made contiguous."""
    for j in range(out.shape[0]):
        out[j] = X[n, p, j * s1 + b, c]


def _multiply(Rx, X):
    """``Rx *= X`` (the x factor of the ratio rules), in parallel blocks."""
    flat, source = Rx.reshape(-1), X.reshape(-1)
    parallel_map(_multiply_block, [(flat, source, e0, e1) for e0, e1 in blocks(flat.size, 1 << 16)])


@njit(**JIT)
def _multiply_block(flat, source, e0, e1):
    for e in range(e0, e1):
        flat[e] *= source[e]


def _forward_direct(X, W, B, s0, s1):
    """conv_forward for few input channels: blocks of samples in parallel,
    each output row computed as (n, Wo) rows of multiply-adds that
    vectorize along the row."""
    N, H, Wd, D = X.shape
    h, w, d, K = W.shape
    Y = np.empty((N, (H - h) // s0 + 1, (Wd - w) // s1 + 1, K), dtype=X.dtype)
    parallel_map(_forward_direct_block, [(X, W, B, s0, s1, Y, n0, n1) for n0, n1 in blocks(N)])
    return Y


# The direct kernels loop over their block's samples themselves: a kernel
# called from another is compiled again into its caller, which cost seconds
# at the first use of a rule (measured: 2.7 s of alpha-beta's 6.9 s)
@njit(**JIT)
def _forward_direct_block(X, W, B, s0, s1, Y, n0, n1):
    D = X.shape[3]
    h, w, d, K = W.shape
    Ho, Wo = Y.shape[1], Y.shape[2]
    T = np.empty((K, Wo), dtype=X.dtype)
    x = np.empty(Wo, dtype=X.dtype)
    for n in range(n0, n1):
        for i in range(Ho):
            for k in range(K):
                T[k, :] = B[k]
            for a in range(h):
                for b in range(w):
                    for c in range(D):
                        _input_row(X, n, i * s0 + a, b, c, s1, x)
                        for k in range(K):
                            weight = W[a, b, c, k]
                            for j in range(Wo):
                                T[k, j] += weight * x[j]
            for j in range(Wo):
                for k in range(K):
                    Y[n, i, j, k] = T[k, j]


def _paired_direct(X, A, Bm, Ba, Bb, Y, R, s0, s1, mode, p1, p2, tiny):
    """conv_relevance_paired for few input channels (see _forward_direct)."""
    Rx = np.zeros_like(X)
    parallel_map(_paired_direct_block, [(X, A, Bm, Ba, Bb, Y, R, s0, s1, mode, p1, p2, tiny, Rx, n0, n1)
                                        for n0, n1 in blocks(X.shape[0])])
    return Rx


@njit(**JIT)
def _paired_direct_block(X, A, Bm, Ba, Bb, Y, R, s0, s1, mode, p1, p2, tiny, Rx, n0, n1):
    N, Ho, Wo, K = R.shape
    h, w, D, _ = A.shape
    Sa = np.empty((K, Wo), dtype=X.dtype)
    Sb = np.empty((K, Wo), dtype=X.dtype)
    x = np.empty(Wo, dtype=X.dtype)
    xp = np.empty(Wo, dtype=X.dtype)
    xn = np.empty(Wo, dtype=X.dtype)
    accp = np.empty(Wo, dtype=X.dtype)
    accn = np.empty(Wo, dtype=X.dtype)
    for n in range(n0, n1):
        for i in range(Ho):
            for k in range(K):
                Sa[k, :] = Ba[k]
                Sb[k, :] = Bb[k]
            for a in range(h):
                for b in range(w):
                    for c in range(D):
                        _input_row(X, n, i * s0 + a, b, c, s1, x)
                        for j in range(Wo):
                            xp[j] = positive_part(x[j])
                            xn[j] = negative_part(x[j])
                        for k in range(K):
                            wa = A[a, b, c, k]
                            wb = Bm[a, b, c, k]
                            for j in range(Wo):
                                Sa[k, j] += wa * xp[j] + wb * xn[j]
                                Sb[k, j] += wb * xp[j] + wa * xn[j]
            # the sums become the ratios
            for j in range(Wo):
                for k in range(K):
                    Sa[k, j], Sb[k, j] = paired_ratios(Sa[k, j], Sb[k, j], R[n, i, j, k], Y[n, i, j, k],
                                                        mode, p1, p2, tiny)
            for a in range(h):
                for b in range(w):
                    for c in range(D):
                        accp[:] = 0
                        accn[:] = 0
                        for k in range(K):
                            wa = A[a, b, c, k]
                            wb = Bm[a, b, c, k]
                            for j in range(Wo):
                                accp[j] += wa * Sa[k, j] + wb * Sb[k, j]
                                accn[j] += wb * Sa[k, j] + wa * Sb[k, j]
                        _input_row(X, n, i * s0 + a, b, c, s1, x)
                        for j in range(Wo):
                            if x[j] > 0:
                                Rx[n, i * s0 + a, j * s1 + b, c] += accp[j]
                            elif x[j] < 0:
                                Rx[n, i * s0 + a, j * s1 + b, c] += accn[j]
        times_input(Rx, X, n)


def _redistribute(X, W2, S2, Ho, Wo, h, w, s0, s1, signed):
    """``out[n,p,q,c] = sum_{ijk} W2[(a,b,c), k] S2[(n,i,j), k]`` over the
    outputs (i, j) whose patch holds (p, q): the rows of S2 @ W2^T added back
    onto their patches (col2im), shaped like X.

    ``W2`` (rows, Kc) is C-contiguous, its rows in (a, b, c) order; with
    ``signed`` it has two halves of h*w*d rows and each input takes the
    first where it is positive, the second where it is negative (the
    sign-paired rules). Chunks of output rows run in two phases where
    windows overlap, each chunk split by input channels when a phase has
    too few chunks (see the module's docstring). Each group's part of W2^T
    is gathered in one tiled copy; a 1 x 1 filter's unsigned part is a row
    block of W2, whose transpose BLAS reads in place (no copy at all: a
    dense layer's weights, 411 MB for VGG-16's first, were copied twice per
    explanation before).
    """
    D = X.shape[3]
    rows = S2.shape[0] // Wo
    chunks = _row_chunks(rows, _rows_per_chunk(Wo, W2.shape[0], -(-h // s0)))
    phases = [chunks[0::2], chunks[1::2]] if h > s0 else [chunks]
    groups = _column_groups(D, W2.shape[0] // D, 2 * len(phases[0]))
    if h * w == 1 and not signed:
        parts = [W2[c0:c1].T for c0, c1 in groups]
    else:
        halves = 2 if signed else 1
        index = np.arange(W2.shape[0]).reshape(halves, h, w, D)
        parts = [_transposed(W2, np.ascontiguousarray(index[..., c0:c1]).reshape(-1)) for c0, c1 in groups]
    out = np.zeros_like(X)
    for phase in phases:
        parallel_map(_redistribute_chunk, [(X, part, S2, r0, r1, Ho, Wo, h, w, s0, s1, c0, c1, out, signed)
                                           for r0, r1 in phase for part, (c0, c1) in zip(parts, groups)])
    return out


@njit(**JIT)
def _redistribute_chunk(X, VT, S2, r0, r1, Ho, Wo, h, w, s0, s1, c0, c1, out, signed):
    _col2im_add(np.dot(S2[r0 * Wo:r1 * Wo], VT), r0, r1, Ho, Wo, h, w, s0, s1, c0, c1, out, X, signed)


def _transposed(W2, rows):
    """W2[rows].T as a C-contiguous array, copied in tiles by blocks of
    columns in parallel: numpy's strided copy of a transpose ran at about a
    tenth of that speed."""
    columns = W2.shape[1]
    out = np.empty((columns, rows.size), dtype=W2.dtype)
    parallel_map(_transpose_block, [(W2, rows, out, c0, c1) for c0, c1 in blocks(columns, 64)])
    return out


@njit(**JIT)
def _transpose_block(W2, rows, out, c0, c1):
    """out[c, j] = W2[rows[j], c] for columns c0..c1-1, in tiles of 64 rows."""
    count = rows.shape[0]
    for j0 in range(0, count, 64):
        j1 = min(j0 + 64, count)
        for c in range(c0, c1):
            for j in range(j0, j1):
                out[c, j] = W2[rows[j], c]


#: rows of one task of a dense layer's products, at least, when its rows
#: are split (a transformer's tokens): fewer leave BLAS's kernels short of
#: work, and every task reads the whole weight matrix
DENSE_TASK_ROWS = 128


def _dense_row_blocks(X, W):
    """Blocks of rows of a dense layer (1 x 1 images through a 1 x 1 filter)
    with enough rows to split them, else None. The split depends on the
    sizes only (at most TASKS blocks), never on the threads."""
    N, H, Wd, _ = X.shape
    if H * Wd != 1 or W.shape[0] * W.shape[1] != 1 or N < 2 * DENSE_TASK_ROWS:
        return None
    return _row_chunks(N, max(DENSE_TASK_ROWS, -(-N // TASKS)))


@njit(**JIT)
def _dense_forward_rows(X2, W2, B, r0, r1, Y2):
    """Y2[r0:r1] = X2[r0:r1] @ W2 + B: one block of rows, in place."""
    out = Y2[r0:r1]
    np.dot(X2[r0:r1], W2, out)
    for row in range(r1 - r0):
        for k in range(B.shape[0]):
            out[row, k] += B[k]


@njit(**JIT)
def _dense_epsilon_rows(X2, W2, Y2, R2, epsilon, r0, r1, Rx2):
    """The epsilon rule on rows r0..r1-1 of a dense layer, fused:
    Rx2[r] = X2[r] * ((R2[r] / (Y2[r] + eps sgn Y2[r])) @ W2^T)."""
    S = np.empty((r1 - r0, R2.shape[1]), dtype=R2.dtype)
    for row in range(r1 - r0):
        for k in range(R2.shape[1]):
            S[row, k] = R2[r0 + row, k] / stabilize(Y2[r0 + row, k], epsilon)
    out = Rx2[r0:r1]
    np.dot(S, W2.T, out)
    for row in range(r1 - r0):
        for c in range(X2.shape[1]):
            out[row, c] *= X2[r0 + row, c]


def conv_forward(X, W, B, s0, s1):
    """``Y[n,i,j,k] = b_k + sum_{a,b,c} X[n, i*s0+a, j*s1+b, c] W[a,b,c,k]``."""
    if X.shape[3] <= DIRECT_MAX_CHANNELS:
        return _forward_direct(X, W, B, s0, s1)
    N, H, Wd, D = X.shape
    h, w, d, K = W.shape
    rows = _dense_row_blocks(X, W)
    if rows is not None:  # a dense layer on many rows: blocks of rows read in place
        Y = np.empty((N, 1, 1, K), dtype=X.dtype)
        parallel_map(_dense_forward_rows, [(X.reshape(N, D), W.reshape(d, K), B, r0, r1, Y.reshape(N, K))
                                           for r0, r1 in rows])
        return Y
    Ho = (H - h) // s0 + 1
    Wo = (Wd - w) // s1 + 1
    Y = np.empty((N, Ho, Wo, K), dtype=X.dtype)
    W2, Y2 = W.reshape(h * w * d, K), Y.reshape(N * Ho * Wo, K)
    chunks = _row_chunks(N * Ho, _rows_per_chunk(Wo, h * w * d))
    groups = _column_groups(K, 1, len(chunks))
    if len(groups) > 1 and H * Wd == 1 and N < d:
        # a dense layer with fewer samples than inputs: its product reads
        # the weights once; split along their rows (contiguous blocks, no
        # copy) into as many tasks as the column split would make, and add
        # the partial products in block order (a column split copied the
        # weights first: 411 MB for VGG-16's first dense layer). With more
        # samples, copying the weights' columns costs less than the partial
        # products would (the MLP at batch 4096: 15% slower split this way)
        inner = _row_chunks(d, -(-d // len(groups)))
        partial = np.empty((len(inner), N, K), dtype=X.dtype)
        parallel_map(_inner_product_block, [(X.reshape(N, d), W2, i0, i1, partial[t])
                                            for t, (i0, i1) in enumerate(inner)])
        Y2[:] = partial.sum(axis=0) + B
        return Y
    parts = [np.ascontiguousarray(W2[:, k0:k1]) for k0, k1 in groups]
    parallel_map(_forward_chunk, [(X, part, B, r0, r1, Ho, Wo, h, w, s0, s1, k0, Y2)
                                  for r0, r1 in chunks for part, (k0, _) in zip(parts, groups)])
    return Y


@njit(**JIT)
def _inner_product_block(X2, W2, i0, i1, out):
    """out = X2[:, i0:i1] @ W2[i0:i1]: one block of the inner dimension."""
    np.dot(np.ascontiguousarray(X2[:, i0:i1]), W2[i0:i1], out)


@njit(**JIT)
def _forward_chunk(X, W2, B, r0, r1, Ho, Wo, h, w, s0, s1, k0, Y2):
    """Output channels k0 .. k0 + W2.shape[1] - 1 of the output rows r0..r1-1."""
    P = np.empty(((r1 - r0) * Wo, W2.shape[0]), dtype=X.dtype)
    _im2col(X, r0, r1, Ho, Wo, h, w, s0, s1, P, False)
    Z = np.dot(P, W2)
    for row in range(Z.shape[0]):
        for k in range(Z.shape[1]):
            Y2[r0 * Wo + row, k0 + k] = Z[row, k] + B[k0 + k]


def conv_relevance_epsilon(X, W, Y, R, s0, s1, epsilon):
    """Epsilon rule (Bach et al., PLoS ONE 10(7), 2015, eq. 58):

    ``R_pqc = sum_{ijk} z_{pqc,ijk} / (z_ijk + eps sgn(z_ijk)) R_ijk``
    ``      = x_pqc sum_{ijk} w_abck R_ijk / (z_ijk + eps sgn(z_ijk))``.

    ``Y`` is this layer's forward output (z_ijk). The toolbox's 'simple' rule
    is this rule with epsilon = 1e-16.
    """
    N, Ho, Wo, K = R.shape
    h, w, d, _ = W.shape
    rows = _dense_row_blocks(X, W)
    if rows is not None:  # a dense layer on many rows: ratios, product and input factor per block
        Rx = np.empty_like(X)
        parallel_map(_dense_epsilon_rows, [(X.reshape(N, d), W.reshape(d, K), Y.reshape(N, K), R.reshape(N, K),
                                            epsilon, r0, r1, Rx.reshape(N, d)) for r0, r1 in rows])
        return Rx
    S2 = _epsilon_ratios(Y.reshape(N * Ho * Wo, K), R.reshape(N * Ho * Wo, K), epsilon)
    Rx = _redistribute(X, W.reshape(h * w * d, K), S2, Ho, Wo, h, w, s0, s1, False)
    _multiply(Rx, X)
    return Rx


def _epsilon_ratios(Y2, R2, epsilon):
    """``S = R / (Y + eps sgn(Y))``, in parallel blocks of rows."""
    S2 = np.empty_like(R2)
    parallel_map(_epsilon_ratios_block, [(Y2, R2, epsilon, S2, r0, r1)
                                         for r0, r1 in blocks(R2.shape[0], max(1, (1 << 15) // R2.shape[1]))])
    return S2


@njit(**JIT)
def _epsilon_ratios_block(Y2, R2, epsilon, S2, r0, r1):
    for row in range(r0, r1):
        for k in range(R2.shape[1]):
            S2[row, k] = R2[row, k] / stabilize(Y2[row, k], epsilon)


def conv_relevance_paired(X, A, Bm, Ba, Bb, Y, R, s0, s1, mode, p1, p2, tiny):
    """The sign-paired rules (alpha-beta, gamma) of a convolution.

    Both split every contribution by the signs of input and weight: with
    filter pair (A, Bm) and bias pair (Ba, Bb), the sums of output (i, j, k)
    are ``Za = sum x+ A + x- Bm + Ba`` and ``Zb = sum x+ Bm + x- A + Bb``; a
    mode turns them into two ratios (lrpnb.rule_math.paired_ratios), and input x receives
    ``x * sum (A ratio_a + Bm ratio_b)`` where x > 0 and
    ``x * sum (Bm ratio_a + A ratio_b)`` where x < 0. Alpha-beta is
    A = W+, Bm = W- (so Za sums the positive contributions, Zb the negative
    ones); gamma is A = W + gamma W+, Bm = W + gamma W-.

    Through BLAS, the sums are one product of the sign-split patches
    [P+ | P-] with [[A, Bm], [Bm, A]], the redistribution the product of the
    ratios with its transpose, each input taking the half of its sign. When
    the input has no negative values (after a ReLU) the P- halves vanish and
    the products shrink to P [A, Bm].

    Alpha-beta with beta = 0 (z+, alpha = 1) needs Za alone, since its
    second ratio is zero: the products then use [A; Bm] (P [A] after a ReLU)
    and cost half as much.
    """
    if X.shape[3] <= DIRECT_MAX_CHANNELS:
        return _paired_direct(X, A, Bm, Ba, Bb, Y, R, s0, s1, mode, p1, p2, tiny)
    N, Ho, Wo, K = R.shape
    h, w, d, _ = A.shape
    size = h * w * d
    signed = bool(X.min() < 0)
    sums = 1 if mode == PAIRED_ALPHABETA and p2 == 0 else 2
    A2, B2 = A.reshape(size, K), Bm.reshape(size, K)
    if sums == 1:
        Wq = np.concatenate([A2, B2], axis=0) if signed else A2
    else:
        Wq = np.block([[A2, B2], [B2, A2]]) if signed else np.concatenate([A2, B2], axis=1)
    Wq = np.ascontiguousarray(Wq)
    Y2, R2 = Y.reshape(N * Ho * Wo, K), R.reshape(N * Ho * Wo, K)
    # the ratios of every output first (tasks write disjoint outputs), then
    # their redistribution; a group of outputs k0..k1-1 needs the columns
    # k0..k1-1 (and K+k0..K+k1-1 for two sums) of Wq
    S2 = np.empty((N * Ho * Wo, sums * K), dtype=X.dtype)
    chunks = _row_chunks(N * Ho, _rows_per_chunk(Wo, Wq.shape[0]))
    groups = _column_groups(K, sums, len(chunks))
    if len(groups) == 1:
        parts = [Wq]
    else:
        parts = [np.ascontiguousarray(np.concatenate([Wq[:, j * K + k0:j * K + k1] for j in range(sums)], axis=1))
                 for k0, k1 in groups]
    parallel_map(_paired_ratios_chunk, [(X, part, Ba, Bb, Y2, R2, r0, r1, Ho, Wo, h, w, s0, s1, k0, mode, p1,
                                         p2, tiny, signed, sums, S2)
                                        for r0, r1 in chunks for part, (k0, _) in zip(parts, groups)])
    Rx = _redistribute(X, Wq, S2, Ho, Wo, h, w, s0, s1, signed)
    _multiply(Rx, X)
    return Rx


@njit(**JIT)
def _paired_ratios_chunk(X, Wq, Ba, Bb, Y2, R2, r0, r1, Ho, Wo, h, w, s0, s1, k0, mode, p1, p2, tiny, signed,
                         sums, S2):
    """The ratios of outputs k0 .. k0 + Wq.shape[1] / sums - 1 of the output
    rows r0..r1-1 (Wq holds their columns of both sums, or of Za alone)."""
    m = (r1 - r0) * Wo
    K = R2.shape[1]
    G = Wq.shape[1] // sums
    P = np.empty((m, Wq.shape[0]), dtype=X.dtype)
    _im2col(X, r0, r1, Ho, Wo, h, w, s0, s1, P, signed)
    Z = np.dot(P, Wq)
    for row in range(m):
        at = r0 * Wo + row
        for g in range(G):
            k = k0 + g
            za = Z[row, g] + Ba[k]
            if sums == 1:  # beta = 0: the second ratio is zero
                S2[at, k], _ = paired_ratios(za, za, R2[at, k], Y2[at, k], mode, p1, p2, tiny)
            else:
                S2[at, k], S2[at, K + k] = paired_ratios(za, Z[row, G + g] + Bb[k], R2[at, k], Y2[at, k],
                                                         mode, p1, p2, tiny)


def paired_weights(W, gamma, mode):
    """The filter pair (A, Bm) of a sign-paired rule, for weights or biases:
    PAIRED_ALPHABETA (W+, W-) (``gamma`` unused), PAIRED_GAMMA
    (W + gamma W+, W + gamma W-), in W's dtype."""
    zero = W.dtype.type(0)
    Wp, Wn = np.maximum(W, zero), np.minimum(W, zero)
    if mode == PAIRED_ALPHABETA:
        return Wp, Wn
    return W + gamma * Wp, W + gamma * Wn


def conv_relevance_flat(X, W, R, s0, s1):
    """Flat rule: ``R_pqc = sum_{ijk} R_ijk / (h w d)`` over the patches that
    contain (p, q): every input of a neuron gets the same share.

    Blocks of samples run in parallel, each sample's patches added in a fixed order.
    """
    N, Ho, Wo, K = R.shape
    h, w, d, _ = W.shape
    Rx = np.zeros_like(X)
    parallel_map(_conv_relevance_flat_block,
                 [(X, W, R, s0, s1, Rx, n0, n1) for n0, n1 in blocks(N)])
    return Rx


@njit(**JIT)
def _conv_relevance_flat_block(X, W, R, s0, s1, Rx, n0, n1):
    N, Ho, Wo, K = R.shape
    h, w, d, _ = W.shape
    count = np.float32(h * w * d)
    for n in range(n0, n1):
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


def _transpose(X, V, G, s0, s1):
    """``out[n,p,q,c] = sum_{ijk} V[a,b,c,k] G[n,i,j,k]`` over the outputs
    whose patch holds (p, q): the adjoint of the convolution (shaped like X)."""
    N, Ho, Wo, K = G.shape
    h, w, d, _ = V.shape
    return _redistribute(X, V.reshape(h * w * d, K), G.reshape(N * Ho * Wo, K), Ho, Wo,
                         h, w, s0, s1, False)


def conv_relevance_ww(X, W, R, s0, s1):
    """w^2 rule (Montavon et al., Pattern Recognition 65, 2017):
    ``R_pqc = sum_{ijk} w_abck^2 / (sum_{a'b'c'} w_a'b'c'k^2) R_ijk``."""
    V = W * W
    V /= V.sum(axis=(0, 1, 2))
    return _transpose(X, V, R, s0, s1)


def conv_backward(X, W, G, s0, s1):
    """Gradient with respect to the input: ``dL/dx_pqc = sum_{ijk} w_abck dL/dy_ijk``."""
    return _transpose(X, W, G, s0, s1)


def conv_weight_gradient(X, G, h, w, s0, s1):
    """Gradients of the weights and bias for output gradient ``G``:

    ``dW[a,b,c,k] = sum_{n,i,j} X[n, i*s0+a, j*s1+b, c] G[n,i,j,k]``,
    ``dB[k] = sum_{n,i,j} G[n,i,j,k]``

    (the backward pass of the toolbox's ``Convolution``, used by training).
    Each chunk of output rows adds up its own partial sums (patch matrix^T @
    G rows); the partials are added in chunk order, so the result does not
    depend on the number of threads.
    """
    N, Ho, Wo, K = G.shape
    d = X.shape[3]
    G2 = G.reshape(N * Ho * Wo, K)
    # chunks of at most CHUNK_ELEMENTS: each has a partial dW of its own
    chunks = _row_chunks(N * Ho, max(1, CHUNK_ELEMENTS // (Wo * h * w * d)))
    dW = np.zeros((len(chunks), h * w * d, K), dtype=X.dtype)
    dB = np.zeros((len(chunks), K), dtype=X.dtype)
    parallel_map(_weight_gradient_chunk, [(X, G2, r0, r1, Ho, Wo, h, w, s0, s1, dW[c], dB[c])
                                          for c, (r0, r1) in enumerate(chunks)])
    return dW.sum(axis=0).reshape(h, w, d, K), dB.sum(axis=0)


@njit(**JIT)
def _weight_gradient_chunk(X, G2, r0, r1, Ho, Wo, h, w, s0, s1, dW, dB):
    P = np.empty(((r1 - r0) * Wo, dW.shape[0]), dtype=X.dtype)
    _im2col(X, r0, r1, Ho, Wo, h, w, s0, s1, P, False)
    rows = G2[r0 * Wo:r1 * Wo]
    np.dot(P.T, rows, dW)
    for row in range(rows.shape[0]):
        for k in range(rows.shape[1]):
            dB[k] += rows[row, k]


def filled(shape, value, dtype):
    """An array of ``shape`` holding ``value`` (the flat rule's filter of ones, a zero bias)."""
    return np.full(shape, value, dtype=dtype)


def squared(W):
    """``W * W`` element-wise (the w^2 rule's filter)."""
    return W * W


def image_ones(shape, padding, dtype):
    """Ones of ``shape`` (N, H, W, D) inside a border of zeros (top, bottom,
    left, right): the input the flat and w^2 rules of a padded convolution
    count its taps on the image with."""
    top, bottom, left, right = padding
    out = np.zeros(shape, dtype=dtype)
    out[:, top:shape[1] - bottom, left:shape[2] - right] = 1
    return out
