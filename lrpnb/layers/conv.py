"""Convolutions: the layer, its rule block, and the rules composed of kernels.

The kernels (``lrpnb/kernels/conv.py`` and its GPU twin) compute an unpadded,
undilated, single-group convolution and the rules that are one pass of it.
Here, once for both devices: padding, dilation and groups around them, and
the rules built from several kernel calls — z^B as three epsilon passes,
the sign-paired rules' weight pairs, and flat and w^2 on a padded input.
A depthwise layer (one input channel per group) hands the same rule block
``backend.depthwise`` (``lrpnb/kernels/depthwise.py``: the functions of the
convolution kernels, every channel at once) instead of ``backend.conv``
group by group.
Notation as in docs/rules.md: inputs x, weights w, z_ij = x_i w_ij,
z_j = sum_i z_ij + b_j (Bach et al., PLoS ONE 10(7), 2015).
"""
import numbers

import numpy as np

from ..backends import CPU
from ..rule_math import PAIRED_ALPHABETA, PAIRED_GAMMA
from ..rules import SIMPLE_STABILIZER, ZENNIT_STABILIZER
from .base import (NO_PADDING, Weighted, bounds, dilated_span, filter_text, output_size, pair, padding_sides,
                   shape_text, window_text)

__all__ = ["Convolution"]


def dilate_filter(W, rows, columns):
    """W (h, w, d, n) spread out with (rows - 1) and (columns - 1) zero taps
    between its own: a dilated convolution is the plain convolution with
    this filter. Weight preparation, done once per layer (not per call)."""
    if (rows, columns) == (1, 1):
        return W
    h, w = W.shape[:2]
    out = np.zeros(((h - 1) * rows + 1, (w - 1) * columns + 1) + W.shape[2:], dtype=W.dtype)
    out[::rows, ::columns] = W
    return out


def paired_arguments(conv, W, B, Y, R, rule, t):
    """((A, Bm, Ba, Bb, Y), (mode, p1, p2, tiny)): the sign-paired kernels'
    arguments before and after R (and the strides), for weights W and bias B.

    Both rules split every contribution by the signs of input and weight
    (see conv_relevance_paired):

    - alpha-beta (Bach et al., PLoS ONE 10(7), 2015, eq. 60; the toolbox
      sets beta = 1 - alpha, tiny = 1e-16; z+ is alpha = 1, beta = 0 with
      zennit's tiny 1e-6):
      ``R_pqc = sum_{ijk} (alpha z+ / (sum z+ + b_k+ + tiny)
      + beta z- / (sum z- + b_k- - tiny)) R_ijk``; since
      ``(x w)+ = x+ w+ + x- w-``, the pair is A = W+, Bm = W-;
    - gamma (Montavon et al. 2019; Andéol et al. 2021; zennit's Gamma):
      where z_ijk > 0, ``R_pqc = sum (x+ (w + gamma w+) + x- (w + gamma w-))
      / stab(Za) R_ijk`` with Za the same sum over the patch plus
      b + gamma b+; where z_ijk < 0 the same with w+ and w- (b+ and b-)
      swapped; nothing where z_ijk = 0. The pair is A = W + gamma W+,
      Bm = W + gamma W-; stab(z) = z + 1e-6 sgn(z).
    """
    if rule.name == "gamma":
        gamma, tiny = t(rule.param), t(ZENNIT_STABILIZER)
        return ((*conv.paired_weights(W, gamma, PAIRED_GAMMA), *conv.paired_weights(B, gamma, PAIRED_GAMMA), Y),
                (PAIRED_GAMMA, tiny, tiny, tiny))
    alpha, beta, tiny = rule.paired()
    zero = t(0)
    return ((*conv.paired_weights(W, zero, PAIRED_ALPHABETA), *conv.paired_weights(B, zero, PAIRED_ALPHABETA), R),
            (PAIRED_ALPHABETA, t(alpha), t(beta), t(tiny)))


def zbox_relevance(backend, X, W, R, s0, s1, low, high, tiny, padding=NO_PADDING, conv=None):
    """z^B rule for bounded inputs (Montavon et al., Pattern Recognition 65,
    2017), as zennit's ``ZBox``: with per-channel bounds l <= x <= h,

    ``R_pqc = sum_{ijk} (x w - l w+ - h w-) / stab(sum_{patch} (x w - l w+ - h w-)) R_ijk``

    (biases cancel in zennit's definition and do not appear); stab(z) =
    z + tiny sgn(z). Three epsilon-rule passes that share one denominator.
    X may be zero-padded by ``padding`` (top, bottom, left, right): the
    bounds of the padding are 0, as the zeros a padded convolution adds to
    the bounds in zennit. ``conv``: the kernel module (``backend.conv``
    unless given: ``backend.depthwise`` for a depthwise convolution).
    """
    conv, tensors = conv or backend.conv, backend.tensors
    top, bottom, left, right = padding
    inner = (X.shape[0], X.shape[1] - top - bottom, X.shape[2] - left - right, X.shape[3])
    L, H = tensors.channel_filled(inner, low), tensors.channel_filled(inner, high)
    if padding != NO_PADDING:
        L, H = tensors.pad(L, *padding, 0), tensors.pad(H, *padding, 0)
    Wp, Wn = conv.paired_weights(W, X.dtype.type(0), PAIRED_ALPHABETA)
    zero = conv.filled((W.shape[3],), 0, X.dtype)
    Z = tensors.difference3(conv.conv_forward(X, W, zero, s0, s1), conv.conv_forward(L, Wp, zero, s0, s1),
                            conv.conv_forward(H, Wn, zero, s0, s1))
    return tensors.difference3(conv.conv_relevance_epsilon(X, W, Z, R, s0, s1, tiny),
                               conv.conv_relevance_epsilon(L, Wp, Z, R, s0, s1, tiny),
                               conv.conv_relevance_epsilon(H, Wn, Z, R, s0, s1, tiny))


def padded_share(conv, X, W, mask, R, s0, s1, rule, padding):
    """Flat and w^2 on a padded input: a neuron's taps that fall on the image
    share its relevance in proportion to 1 (flat) or w^2 (ww), as zennit's
    Flat and WSquare compute it — the epsilon rule on an input of ones
    inside the image (zeros on the padding) with the filter of ones (the
    real taps ``mask`` of a dilated one) or of w^2; ``conv`` is the kernel
    module (``backend.conv`` or ``backend.depthwise``)."""
    t = X.dtype.type
    V = (mask if mask is not None else conv.filled(W.shape, 1, X.dtype)) if rule.name == "flat" \
        else conv.squared(W)
    ones = conv.image_ones(X.shape, padding, X.dtype)
    Z = conv.conv_forward(ones, V, conv.filled((W.shape[3],), 0, X.dtype), s0, s1)
    return conv.conv_relevance_epsilon(ones, V, Z, R, s0, s1, t(SIMPLE_STABILIZER))


class Convolution(Weighted):
    """Convolution; W of shape (h, w, d / groups, n), B of shape (n,).

    Parameters
    ----------
    W, B : arrays
        Filters (h, w, d / groups, n) and bias (n,), the toolbox's layout.
    stride : int or (rows, columns)
    padding : int, (rows, columns) or (top, bottom, left, right)
        Zeros around the input (each side separately). They contribute
        nothing, so no relevance falls on them; flat and ww share among the
        taps on the image (as zennit's Flat and WSquare).
    dilation : int or (rows, columns)
        Spacing of the filter taps: computed as a filter of (h-1)*dr+1 rows
        whose added taps are zero (the flat rule spreads over the real taps only).
    groups : int
        Input and output channels split into this many groups, each
        convolved on its own. Where every group has one input channel
        (depthwise: W of shape (h, w, 1, n), output channel k reading input
        channel k // (n / groups)), all channels are computed at once by
        ``backend.depthwise``.
    """

    weight_ndim = 4

    def __init__(self, W, B, stride=(1, 1), padding=0, dilation=(1, 1), groups=1):
        super().__init__(W, B)
        self._check_bias()
        self.stride = pair(stride, "stride", "Convolution")
        self.padding = padding_sides(padding, "Convolution")
        self.dilation = pair(dilation, "dilation", "Convolution")
        if not isinstance(groups, numbers.Integral) or groups < 1 or self.W.shape[3] % groups:
            raise ValueError(f"Convolution: groups must be a positive divisor of the {self.W.shape[3]} "
                             f"output channels, got {groups!r}")
        self.groups = int(groups)

    @property
    def toolbox(self):
        """Whether the LRP Toolbox's formats can hold this layer (no padding,
        dilation or groups)."""
        return self.padding == NO_PADDING and self.dilation == (1, 1) and self.groups == 1

    @property
    def depthwise(self):
        """Whether every group has one input channel (and there are several)."""
        return self.groups > 1 and self.W.shape[2] == 1

    @property
    def in_channels(self):
        return self.W.shape[2] * self.groups

    def describe(self):
        return filter_text("Convolution", self.W, self.stride, self.padding, self.dilation, self.groups)

    def _span(self):
        """(rows, columns) the dilated filter spans."""
        return dilated_span(self.W, self.dilation)

    def output_shape(self, shape):
        h, w = self._span()
        d = self.in_channels
        top, bottom, left, right = self.padding
        if len(shape) != 4 or shape[3] != d or shape[1] + top + bottom < h or shape[2] + left + right < w:
            raise ValueError(f"expects input of shape {window_text(h, w, d, self.padding)}, "
                             f"got {shape_text(shape)}")
        return (shape[0], output_size(shape[1] + top + bottom, h, self.stride[0]),
                output_size(shape[2] + left + right, w, self.stride[1]), self.W.shape[3])

    def _groups(self, dtype, backend):
        """[(W, B, mask)] per group in ``dtype`` on ``backend``: the filters
        dilated, and for a dilated layer the mask of its real taps (its
        flat rule); cast and copied once, then cached."""
        def make():
            n = self.W.shape[3] // self.groups
            parts = []
            for g in range(self.groups):
                W = dilate_filter(self._W[..., g * n:(g + 1) * n], *self.dilation).astype(dtype)
                mask = None
                if self.dilation != (1, 1):
                    mask = backend.put(dilate_filter(np.ones_like(self._W[..., g * n:(g + 1) * n]),
                                                     *self.dilation).astype(dtype))
                parts.append((backend.put(W), backend.put(self._B[g * n:(g + 1) * n].astype(dtype)), mask))
            return parts

        return self.cached((backend.name, dtype, "groups"), make)

    def _depthwise_weights(self, dtype, backend):
        """(W, B, mask) of the whole depthwise layer, as _groups makes them per group."""
        def make():
            W = backend.put(dilate_filter(self._W, *self.dilation).astype(dtype))
            mask = None
            if self.dilation != (1, 1):
                mask = backend.put(dilate_filter(np.ones_like(self._W), *self.dilation).astype(dtype))
            return W, backend.put(self._B.astype(dtype)), mask

        return self.cached((backend.name, dtype, "depthwise"), make)

    def _per_group(self, X, outputs, compute, backend):
        """compute(g, X_g, *outputs_g) for every group g, joined along channels."""
        if self.groups == 1:
            return compute(0, X, *outputs)
        tensors = backend.tensors
        d = self.W.shape[2]
        n = self.W.shape[3] // self.groups
        parts = [compute(g, tensors.take_channels(X, g * d, (g + 1) * d),
                         *[tensors.take_channels(out, g * n, (g + 1) * n) for out in outputs])
                 for g in range(self.groups)]
        return tensors.concat_channels(parts)

    def _padded(self, X, backend):
        if self.padding == NO_PADDING:
            return X
        return backend.tensors.pad(X, *self.padding, 0)

    def forward(self, X, backend=CPU):
        if self.toolbox:
            W, B = self.weights(X.dtype, backend)
            return backend.conv.conv_forward(X, W, B, *self.stride)
        if self.depthwise:
            W, B, _ = self._depthwise_weights(X.dtype, backend)
            return backend.depthwise.conv_forward(self._padded(X, backend), W, B, *self.stride)
        groups = self._groups(X.dtype, backend)
        return self._per_group(self._padded(X, backend), (),
                               lambda g, Xg: backend.conv.conv_forward(Xg, *groups[g][:2], *self.stride),
                               backend)

    def parameter_gradient(self, X, G, backend=CPU):
        if not self.toolbox:
            raise ValueError("training supports convolutions without padding, dilation or groups only")
        return backend.conv.conv_weight_gradient(X, G, *self.W.shape[:2], *self.stride)

    def propagate(self, X, Y, R, rule, backend):
        if self.toolbox:
            W, B = self.weights(X.dtype, backend)
            return self._rule(X, W, B, None, Y, R, rule, backend, backend.conv, 0)
        if self.depthwise:
            Rx = self._rule(self._padded(X, backend), *self._depthwise_weights(X.dtype, backend), Y, R, rule,
                            backend, backend.depthwise, None)
        else:
            groups = self._groups(X.dtype, backend)
            d = self.W.shape[2]
            Rx = self._per_group(self._padded(X, backend), (Y, R),
                                 lambda g, Xg, Yg, Rg: self._rule(Xg, *groups[g], Yg, Rg, rule, backend,
                                                                  backend.conv, g * d),
                                 backend)
        if self.padding == NO_PADDING:
            return Rx
        return backend.tensors.crop(Rx, *self.padding)

    def _rule(self, X, W, B, mask, Y, R, rule, backend, conv, c0):
        """One group's input relevance (X padded; channels c0.. of the layer's
        input, or all of them where c0 is None) by the kernel module ``conv``."""
        t, stride = X.dtype.type, self.stride
        if rule.is_gradient:
            return conv.conv_backward(X, W, R, *stride)
        match rule.name:
            case "flat" | "ww" if not self.toolbox:
                return padded_share(conv, X, W, mask, R, *stride, rule, self.padding)
            case "flat":
                return conv.conv_relevance_flat(X, W, R, *stride)
            case "ww":
                return conv.conv_relevance_ww(X, W, R, *stride)
            case "alphabeta" | "zplus" | "gamma":
                before, after = paired_arguments(conv, W, B, Y, R, rule, t)
                return conv.conv_relevance_paired(X, *before, R, *stride, *after)
            case "zb":
                low, high = bounds(rule.param, self.in_channels, X.dtype, backend)
                if c0 is not None and self.groups > 1:
                    low, high = low[c0:c0 + W.shape[2]], high[c0:c0 + W.shape[2]]
                return zbox_relevance(backend, X, W, R, *stride, low, high, t(ZENNIT_STABILIZER), self.padding,
                                      conv)
            case _:  # simple, epsilon
                return conv.conv_relevance_epsilon(X, W, Y, R, *stride, t(rule.epsilon()))
