"""Dense (fully connected) layers and their rule block.

A dense layer is a 1x1 convolution of a 1x1 image with m channels
(``lrpnb.dense_via_conv``), so its rules are the convolution's: the kernels
are the backend's ``dense`` module, and the rules composed of several
kernel calls (sign-paired weights, z^B) are those of ``lrpnb.layers.conv``
on the reshaped arrays.
"""
import math

from ..backends import CPU
from ..rules import ZENNIT_STABILIZER
from .base import Weighted, bounds, shape_text
from .conv import paired_arguments, zbox_relevance

__all__ = ["Linear"]


class Linear(Weighted):
    """Dense layer ``Y = X W + B`` with W of shape (m, n) and B of shape (n,).

    The input is (N, m), or (N, ..., m) with the leading axes as rows of the
    product (a transformer's tokens (N, T, m), or the pixels of an image):
    the output is (N, ..., n), each row computed, and explained under every
    rule, as a sample of its own would be.
    """

    weight_ndim = 2

    def __init__(self, W, B):
        super().__init__(W, B)
        self._check_bias()

    @property
    def m(self):
        return self.W.shape[0]

    @property
    def n(self):
        return self.W.shape[1]

    def describe(self):
        return f"Linear {self.m} {self.n}"

    def output_shape(self, shape):
        if len(shape) < 2 or shape[-1] != self.m:
            flat = len(shape) > 2 and math.prod(shape[1:]) == self.m
            hint = " (add a Flatten layer before it)" if flat or len(shape) < 2 else ""
            expected = f"(N, {self.m})" if len(shape) <= 2 else \
                f"(N, ..., {self.m}) ({self.m} features on the last axis)"
            raise ValueError(f"expects input of shape {expected}, got {shape_text(shape)}{hint}")
        return tuple(shape[:-1]) + (self.n,)

    def _rows(self, A):
        """A (N, ..., k) as (rows, k)."""
        k = tuple(A.shape)[-1]
        return A.reshape((A.size // k, k))

    def forward(self, X, backend=CPU):
        W, B = self.weights(X.dtype, backend)
        return backend.dense.dense_forward(self._rows(X), W, B).reshape(tuple(X.shape)[:-1] + (self.n,))

    def parameter_gradient(self, X, G, backend=CPU):
        return backend.dense.dense_weight_gradient(self._rows(X), self._rows(G))

    def propagate(self, X, Y, R, rule, backend):
        return self._propagate_rows(self._rows(X), self._rows(Y), self._rows(R), rule, backend).reshape(X.shape)

    def _propagate_rows(self, X, Y, R, rule, backend):
        """The rule block on (rows, m) inputs and (rows, n) outputs."""
        W, B = self.weights(X.dtype, backend)
        dense, t = backend.dense, X.dtype.type
        if rule.is_gradient:
            return dense.dense_backward(X, W, R)
        match rule.name:
            case "flat":
                return dense.dense_relevance_flat(X, W, R)
            case "ww":
                return dense.dense_relevance_ww(X, W, R)
            case "alphabeta" | "zplus" | "gamma":
                before, after = paired_arguments(backend.conv, W, B, Y, R, rule, t)
                return dense.dense_relevance_paired(X, *before, R, *after)
            case "zb":
                low, high = bounds(rule.param, self.m, X.dtype, backend)
                image = (X.shape[0], 1, 1, self.m)
                return zbox_relevance(backend, X.reshape(image), W.reshape((1, 1) + W.shape),
                                      R.reshape((R.shape[0], 1, 1, R.shape[1])), 1, 1, low, high,
                                      t(ZENNIT_STABILIZER)).reshape(X.shape)
            case _:  # simple, epsilon
                return dense.dense_relevance_epsilon(X, W, Y, R, t(rule.epsilon()))
