"""The graph network's data movement and joins: padding, cropping, channel
slices and concatenation, residual additions, and the sum of the relevance
that several consumers send back to one tensor.

Images are (N, H, W, D) as everywhere in lrpnb; "channels" is the last axis.
Padding is a copy of the input into a larger array whose border holds a
constant (0 for convolutions, -inf for max pooling, so that padding never
wins), and cropping is the adjoint: the relevance of the border is dropped,
as autograd drops it in a padded convolution.
"""
import numpy as np
from numba import njit

from . import JIT, blocks, parallel_map
from .rules import stabilize


def pad(X, top, bottom, left, right, value):
    """X inside a border of ``value``: shape (N, H+top+bottom, W+left+right, D)."""
    N, H, W, D = X.shape
    out = np.empty((N, H + top + bottom, W + left + right, D), dtype=X.dtype)
    parallel_map(_pad_block, [(X, top, left, X.dtype.type(value), out, n0, n1) for n0, n1 in blocks(N)])
    return out


@njit(**JIT)
def _pad_block(X, top, left, value, out, n0, n1):
    H, W = X.shape[1], X.shape[2]
    for n in range(n0, n1):
        for p in range(out.shape[1]):
            for q in range(out.shape[2]):
                inside = top <= p < top + H and left <= q < left + W
                for c in range(out.shape[3]):
                    out[n, p, q, c] = X[n, p - top, q - left, c] if inside else value


def crop(R, top, bottom, left, right):
    """The inner (N, H-top-bottom, W-left-right, D) part of R, contiguous."""
    return np.ascontiguousarray(R[:, top:R.shape[1] - bottom, left:R.shape[2] - right])


def take_channels(X, c0, c1):
    """Channels c0..c1-1 of X (last axis), contiguous."""
    return np.ascontiguousarray(X[..., c0:c1])


def concat_channels(parts):
    """The arrays joined along their last (channel) axis."""
    return np.concatenate(parts, axis=-1)


def add_forward(parts):
    """``y = x_1 + x_2 + ...``, added in the order given."""
    out = parts[0].copy()
    for part in parts[1:]:
        accumulate(out, part)
    return out


def accumulate(A, B):
    """``A += B`` in place (the relevance of a tensor that feeds several
    layers is the sum of what each sends back, added in node order)."""
    flat_a, flat_b = A.reshape(-1), B.reshape(-1)
    parallel_map(_accumulate_block, [(flat_a, flat_b, e0, e1) for e0, e1 in blocks(flat_a.size, 1 << 15)])
    return A


@njit(**JIT)
def _accumulate_block(A, B, e0, e1):
    for e in range(e0, e1):
        A[e] += B[e]


def add_relevance(X, Y, R, epsilon):
    """Relevance of the summands of ``y = sum_m x_m``, shared in proportion to
    their contributions (zennit's Norm rule on its Sum layer; the epsilon rule
    with unit weights, Bach et al., PLoS ONE 10(7), 2015):

    ``R_m = x_m R / (y + eps sgn(y))`` element by element, sgn(0) = +1.
    """
    flat_y, flat_r = Y.reshape(-1), R.reshape(-1)
    out = []
    for part in X:
        flat_x = part.reshape(-1)
        share = np.empty_like(flat_x)
        parallel_map(_share_block, [(flat_x, flat_y, flat_r, epsilon, share, e0, e1)
                                    for e0, e1 in blocks(share.size, 1 << 15)])
        out.append(share.reshape(part.shape))
    return out


@njit(**JIT)
def _share_block(X, Y, R, epsilon, out, e0, e1):
    for e in range(e0, e1):
        out[e] = X[e] * R[e] / stabilize(Y[e], epsilon)


def channel_filled(shape, values):
    """An array of ``shape`` (..., D) whose channel c holds ``values[c]``, in
    values' dtype (the z^B rule's bounds as an image)."""
    out = np.empty(shape, dtype=values.dtype)
    out[...] = values
    return out


def difference3(A, B, C):
    """``A - B - C`` element-wise (the z^B rule's three passes joined)."""
    return A - B - C
