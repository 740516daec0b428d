"""Element-wise steps of the transposed convolution's rules.

A transposed convolution is ``y = A x + b`` with ``A = C^T``, C the
convolution with the same filters; its forward pass is the convolution's
input gradient (``lrpnb.kernels.conv.conv_backward``) and its rules
redistribute through the convolution's forward product
(``conv_forward``). What the convolution kernels do inside one call —
turning the output relevance into ratios, and multiplying the
redistributed ratios by the input — happens here between those calls, on
whole arrays (see lrpnb/layers/conv_transpose.py). Each function splits its
elements into blocks that run in parallel (``parallel_map``).
"""
import numpy as np
from numba import njit

from . import JIT, blocks, parallel_map
from .rules import paired_ratios, stabilize


def _flat_blocks(size):
    return blocks(size, 1 << 15)


def epsilon_ratios(Y, R, epsilon):
    """``S = R / (y + eps sgn(y))`` element-wise, sgn(0) = +1: the ratio the
    epsilon rule redistributes (Bach et al., PLoS ONE 10(7), 2015, eq. 58)."""
    y, r = Y.reshape(-1), R.reshape(-1)
    out = np.empty_like(r)
    parallel_map(_epsilon_ratios_block, [(y, r, epsilon, out, e0, e1) for e0, e1 in _flat_blocks(out.size)])
    return out.reshape(R.shape)


@njit(**JIT)
def _epsilon_ratios_block(Y, R, epsilon, out, e0, e1):
    for e in range(e0, e1):
        out[e] = R[e] / stabilize(Y[e], epsilon)


def paired_ratio_maps(Za, Zb, R, Y, mode, p1, p2, tiny):
    """(Sa, Sb): the two ratios of a sign-paired rule for every output, from
    its sums Za and Zb, its relevance R and its forward output Y
    (``lrpnb.rule_math.paired_ratios``: alpha-beta and z+ with PAIRED_ALPHABETA,
    gamma with PAIRED_GAMMA)."""
    flats = [A.reshape(-1) for A in (Za, Zb, R, Y)]
    Sa, Sb = np.empty_like(flats[2]), np.empty_like(flats[2])
    parallel_map(_paired_ratio_maps_block, [(*flats, mode, p1, p2, tiny, Sa, Sb, e0, e1)
                                            for e0, e1 in _flat_blocks(Sa.size)])
    return Sa.reshape(R.shape), Sb.reshape(R.shape)


@njit(**JIT)
def _paired_ratio_maps_block(Za, Zb, R, Y, mode, p1, p2, tiny, Sa, Sb, e0, e1):
    for e in range(e0, e1):
        Sa[e], Sb[e] = paired_ratios(Za[e], Zb[e], R[e], Y[e], mode, p1, p2, tiny)


def signed_times(X, P, Q):
    """``x P`` where x > 0, ``x Q`` where x < 0, 0 where x = 0, element-wise:
    the input relevance of a sign-paired rule, P and Q being what the
    positive and the negative inputs receive."""
    x, p, q = X.reshape(-1), P.reshape(-1), Q.reshape(-1)
    out = np.empty_like(x)
    parallel_map(_signed_times_block, [(x, p, q, out, e0, e1) for e0, e1 in _flat_blocks(out.size)])
    return out.reshape(X.shape)


@njit(**JIT)
def _signed_times_block(X, P, Q, out, e0, e1):
    for e in range(e0, e1):
        out[e] = X[e] * P[e] if X[e] > 0 else X[e] * Q[e]
