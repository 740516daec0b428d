"""Transposed convolution (ONNX ConvTranspose, torch's ConvTranspose2d): the
layer and its rule block, composed of the convolution kernels.

A transposed convolution is linear, ``y = A x + b``, with ``A = C^T`` the
adjoint of the convolution C (same filters, stride, padding, dilation and
groups) that maps an image of this layer's output shape to one of its input
shape. So its forward product ``A x`` is the convolution's input gradient
(the kernels' ``conv_backward``), and the product ``A^T s`` every rule
redistributes through is the convolution's forward pass (``conv_forward``).
Each rule is the dense-layer rule with this A (docs/rules.md, section
"Transposed convolution"): the epsilon rule
``R_x = x * C(R / (z + eps sgn(z)))``, the sign-paired rules with the pairs of
W and the sign parts of x, flat and w^2 with W replaced by 1 or W^2 on an
input of ones, z^B with the bounds as inputs (Bach et al., PLoS ONE 10(7),
2015; Montavon et al., Pattern Recognition 65, 2017).

Padding, output padding and the output shape: the convolution C reads the
output image with ``pad_begin`` zero rows added before it and
``pad_end - output_padding`` after it (rows removed where negative), its
"frame" of exactly ``(H - 1) stride + (k - 1) dilation + 1`` rows; the
output rows no input reaches (output padding beyond pad_end) hold the bias.
"""
import numbers

import numpy as np

from ..backends import CPU
from ..rule_math import PAIRED_ALPHABETA
from ..rules import SIMPLE_STABILIZER, ZENNIT_STABILIZER
from .base import Weighted, bounds, dilated_span, filter_text, pair, padding_sides, shape_text
from .conv import dilate_filter, paired_arguments

__all__ = ["ConvTranspose"]


def output_padding_pair(value):
    """(rows, columns) non-negative ints from an int or a pair."""
    values = (value, value) if isinstance(value, numbers.Integral) else tuple(np.ravel(value).tolist())
    if len(values) != 2 or not all(isinstance(v, numbers.Integral) or (isinstance(v, float) and v.is_integer())
                                   for v in values) or min(values) < 0:
        raise ValueError(f"ConvTranspose: output_padding must be a non-negative int or a (rows, columns) pair, "
                         f"got {value!r}")
    return tuple(int(v) for v in values)


def reframe(A, sides, tensors):
    """A with (top, bottom, left, right) rows and columns added (zeros) where
    a side is positive and removed where it is negative."""
    shrink = tuple(max(0, -s) for s in sides)
    grow = tuple(max(0, s) for s in sides)
    if any(shrink):
        A = tensors.crop(A, *shrink)
    if any(grow):
        A = tensors.pad(A, *grow, 0)
    return A


class ConvTranspose(Weighted):
    """Transposed convolution of NHWC images.

    ``y[n, i*s0 - top + a*d0, j*s1 - left + b*d1, g*n' + k] +=
    x[n, i, j, g*c' + c] W[a, b, k, g*c' + c]`` for every input pixel (i, j)
    and tap (a, b) (the scatter of each input pixel times the filter; terms
    outside the output are dropped), plus ``B[k]``; c' = C_in / groups and
    n' = C_out / groups. Output rows: (H - 1) s0 - top - bottom + (h - 1) d0 +
    output_padding + 1 (columns alike).

    Parameters
    ----------
    W : array (h, w, C_out / groups, C_in)
        The filters of the convolution this layer is the transpose of, in
        :class:`Convolution`'s layout (that convolution maps C_out channels
        to C_in). From ONNX's or torch's (C_in, C_out / groups, h, w):
        ``W_onnx.transpose(2, 3, 1, 0)``, the same transpose as a Conv's.
    B : array (C_out,)
    stride : int or (rows, columns)
    padding : int, (rows, columns) or (top, bottom, left, right)
        Rows and columns removed from each side of the full output (ONNX's
        pads [top, left, bottom, right] are (top, bottom, left, right) here).
    output_padding : int or (rows, columns)
        Rows (columns) added at the bottom (right) of the output.
    dilation : int or (rows, columns)
        Spacing of the filter taps.
    groups : int
        Input and output channels split into this many groups.
    """

    weight_ndim = 4
    toolbox = False

    def __init__(self, W, B, stride=(1, 1), padding=0, output_padding=0, dilation=(1, 1), groups=1):
        super().__init__(W, B)
        self.stride = pair(stride, "stride", "ConvTranspose")
        self.padding = padding_sides(padding, "ConvTranspose")
        self.output_padding = output_padding_pair(output_padding)
        self.dilation = pair(dilation, "dilation", "ConvTranspose")
        if not isinstance(groups, numbers.Integral) or groups < 1 or self.W.shape[3] % groups:
            raise ValueError(f"ConvTranspose: groups must be a positive divisor of the {self.W.shape[3]} "
                             f"input channels (W's last axis), got {groups!r}")
        self.groups = int(groups)
        if self.B.shape != (self.out_channels,):
            raise ValueError(f"ConvTranspose: B must have {self.out_channels} values (one per output channel: "
                             f"W.shape[2] * groups), got {self.B.size}")

    @property
    def in_channels(self):
        return self.W.shape[3]

    @property
    def out_channels(self):
        return self.W.shape[2] * self.groups

    def describe(self):
        return filter_text("ConvTranspose", self.W, self.stride, self.padding, self.dilation, self.groups,
                           output_padding=self.output_padding)

    def _span(self):
        """(rows, columns) the dilated filter spans."""
        return dilated_span(self.W, self.dilation)

    def _frame_sides(self):
        """(top, bottom, left, right) that turn an output image into the
        frame the convolution C reads (see the module's docstring)."""
        top, bottom, left, right = self.padding
        rows, columns = self.output_padding
        return top, bottom - rows, left, right - columns

    def output_shape(self, shape):
        if len(shape) != 4 or shape[3] != self.in_channels:
            raise ValueError(f"expects input of shape (N, H, W, {self.in_channels}), got {shape_text(shape)}")
        frame = [(size - 1) * s + span for size, s, span in zip(shape[1:3], self.stride, self._span())]
        top, bottom, left, right = self._frame_sides()
        out = (frame[0] - top - bottom, frame[1] - left - right)
        inside = (frame[0] - top - max(0, bottom), frame[1] - left - max(0, right))
        if min(inside) < 1:
            raise ValueError(f"ConvTranspose: the padding {self.padding} removes every output row or column "
                             f"an input of shape {shape_text(shape)} reaches (output {out[0]} x {out[1]})")
        return (shape[0], *out, self.out_channels)

    def _groups(self, dtype, backend):
        """[(W, mask)] per group in ``dtype`` on ``backend``: each group's
        filters (h', w', C_out/g, C_in/g) dilated, and the mask of their real
        taps (the flat rule's filter); cast and copied once, then cached."""
        def make():
            n = self.W.shape[3] // self.groups
            parts = []
            for g in range(self.groups):
                W = self._W[..., g * n:(g + 1) * n]
                parts.append((backend.put(dilate_filter(W, *self.dilation).astype(dtype)),
                              backend.put(dilate_filter(np.ones_like(W), *self.dilation).astype(dtype))))
            return parts

        return self.cached((backend.name, dtype, "groups"), make)

    def _bias(self, dtype, backend):
        """(B, ones) in ``dtype`` on ``backend``: the bias and the unit scale
        it is added with."""
        return self.cached((backend.name, dtype, "bias"),
                           lambda: (backend.put(self._B.astype(dtype)),
                                    backend.put(np.ones(self.out_channels, dtype=dtype))))

    def _per_group(self, A, width, compute, backend):
        """compute(g, channels g*width .. (g+1)*width - 1 of A) for every group g,
        joined along channels."""
        if self.groups == 1:
            return compute(0, A)
        tensors = backend.tensors
        return tensors.concat_channels([compute(g, tensors.take_channels(A, g * width, (g + 1) * width))
                                        for g in range(self.groups)])

    def _apply(self, X, filters, backend):
        """``A x`` without bias (an output image) for per-group ``filters``:
        the input gradient of the convolution C, cut from its frame."""
        conv, tensors = backend.conv, backend.tensors
        N, H, W, _ = X.shape
        frame = (N, *[(size - 1) * s + span for size, s, span in zip((H, W), self.stride, self._span())],
                 self.W.shape[2])
        back = tuple(-side for side in self._frame_sides())
        return self._per_group(X, self.W.shape[3] // self.groups, lambda g, Xg: reframe(
            conv.conv_backward(conv.filled(frame, 0, X.dtype), filters[g], Xg, *self.stride), back, tensors),
            backend)

    def _adjoint(self, S, filters, backend):
        """``A^T s`` (an input image) for an output image S and per-group
        ``filters``: the convolution C's forward pass on S's frame."""
        conv, tensors = backend.conv, backend.tensors
        zero = conv.filled((self.W.shape[3] // self.groups,), 0, S.dtype)
        sides = self._frame_sides()
        return self._per_group(S, self.W.shape[2], lambda g, Sg: conv.conv_forward(
            reframe(Sg, sides, tensors), filters[g], zero, *self.stride), backend)

    def forward(self, X, backend=CPU):
        B, ones = self._bias(X.dtype, backend)
        filters = [W for W, _ in self._groups(X.dtype, backend)]
        return backend.activations.channel_affine(self._apply(X, filters, backend), ones, B)

    def parameter_gradient(self, X, G, backend=CPU):
        raise ValueError("training supports convolutions without padding, dilation or groups only, "
                         "not ConvTranspose")

    def propagate(self, X, Y, R, rule, backend):
        conv, t = backend.conv, X.dtype.type
        groups = self._groups(X.dtype, backend)
        filters = [W for W, _ in groups]
        if rule.is_gradient:
            return self._adjoint(R, filters, backend)
        match rule.name:
            case "flat" | "ww":
                shares = [mask for _, mask in groups] if rule.name == "flat" else [conv.squared(W) for W in filters]
                Z = self._apply(conv.filled(X.shape, 1, X.dtype), shares, backend)
                S = backend.conv_transpose.epsilon_ratios(Z, R, t(SIMPLE_STABILIZER))
                return self._adjoint(S, shares, backend)
            case "alphabeta" | "zplus" | "gamma":
                return self._paired(X, Y, R, rule, filters, backend)
            case "zb":
                return self._zbox(X, R, rule, filters, backend)
            case _:  # simple, epsilon
                S = backend.conv_transpose.epsilon_ratios(Y, R, t(rule.epsilon()))
                return backend.activations.times_input(X, self._adjoint(S, filters, backend))

    def _paired(self, X, Y, R, rule, filters, backend):
        """The sign-paired rules: with the filter pair (P, M) and bias pair
        (Pb, Mb) of the rule (layers.conv.paired_arguments), the sums
        ``Za = A_P x+ + A_M x- + Pb`` and ``Zb = A_M x+ + A_P x- + Mb``, their
        two ratios Sa, Sb, and ``R_x = x (A_P^T Sa + A_M^T Sb)`` where x > 0,
        ``x (A_M^T Sa + A_P^T Sb)`` where x < 0."""
        conv, tensors, t = backend.conv, backend.tensors, X.dtype.type
        B, ones = self._bias(X.dtype, backend)
        arguments = [paired_arguments(conv, W, B, Y, R, rule, t) for W in filters]
        (_, _, Ba, Bb, Yr), (mode, p1, p2, tiny) = arguments[0]
        P, M = [a[0][0] for a in arguments], [a[0][1] for a in arguments]
        Xp, Xn = conv.paired_weights(X, t(0), PAIRED_ALPHABETA)

        def total(first, second, bias):
            return backend.activations.channel_affine(
                tensors.add_forward([self._apply(Xp, first, backend), self._apply(Xn, second, backend)]), ones, bias)

        Za = total(P, M, Ba)
        if mode == PAIRED_ALPHABETA and p2 == 0:
            # z+ (beta = 0): the second ratio is zero, and so is all it would carry
            Sa, _ = backend.conv_transpose.paired_ratio_maps(Za, conv.filled(R.shape, 0, R.dtype), R, Yr, mode,
                                                             p1, p2, tiny)
            return backend.conv_transpose.signed_times(X, self._adjoint(Sa, P, backend),
                                                       self._adjoint(Sa, M, backend))
        Sa, Sb = backend.conv_transpose.paired_ratio_maps(Za, total(M, P, Bb), R, Yr, mode, p1, p2, tiny)
        positive = tensors.add_forward([self._adjoint(Sa, P, backend), self._adjoint(Sb, M, backend)])
        negative = tensors.add_forward([self._adjoint(Sa, M, backend), self._adjoint(Sb, P, backend)])
        return backend.conv_transpose.signed_times(X, positive, negative)

    def _zbox(self, X, R, rule, filters, backend):
        """z^B with per-channel bounds l <= x <= h (zennit's ZBox): with
        ``z = A x - A_+ l - A_- h`` (no bias), ``R_x = x A^T s - l A_+^T s -
        h A_-^T s``, s = R / (z + 1e-6 sgn(z)). Computed as
        ``z = A_+ (x - l) + A_- (x - h)`` and ``R_x = (x - l) A_+^T s + (x - h)
        A_-^T s`` (A = A_+ + A_-): a term that vanishes (x = l on w+, x = h
        on w-) is then exactly 0, where three terms would leave the rounding
        of s (up to R / 1e-6) behind."""
        conv, tensors, activations, t = backend.conv, backend.tensors, backend.activations, X.dtype.type
        low, high = bounds(rule.param, self.in_channels, X.dtype, backend)
        zero = conv.filled(X.shape, 0, X.dtype)
        above = tensors.difference3(X, tensors.channel_filled(X.shape, low), zero)
        below = tensors.difference3(X, tensors.channel_filled(X.shape, high), zero)
        pairs = [conv.paired_weights(W, t(0), PAIRED_ALPHABETA) for W in filters]
        positive, negative = [p for p, _ in pairs], [n for _, n in pairs]
        Z = tensors.add_forward([self._apply(above, positive, backend), self._apply(below, negative, backend)])
        S = backend.conv_transpose.epsilon_ratios(Z, R, t(ZENNIT_STABILIZER))
        return tensors.add_forward([activations.times_input(above, self._adjoint(S, positive, backend)),
                                    activations.times_input(below, self._adjoint(S, negative, backend))])
