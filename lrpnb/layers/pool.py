"""Pooling layers (sum, max, average, global average) and their rule blocks.

A pooling window's weights are equal, so flat and w^2 agree on it; the
rules for weighted layers (gamma, z^B) have no weights to act on and share
in proportion to the inputs. The kernels are the backend's ``pool`` module
(``lrpnb/kernels/pool.py`` and its GPU twin).
"""
import numpy as np

from ..backends import CPU
from ..rule_math import AVG_ALPHABETA, AVG_EPSILON, AVG_GRADIENT, AVG_UNIFORM
from ..rules import SUMPOOL_SIMPLE_STABILIZER
from .base import NO_PADDING, Layer, output_size, pair, padding_sides, shape_text, window_text

__all__ = ["SumPool", "MaxPool", "AveragePool", "GlobalAveragePool"]


class Pool(Layer):
    """A window of ``pool`` (rows, columns) swept with ``stride`` over an
    image padded by ``padding`` (top, bottom, left, right)."""

    def __init__(self, pool=(2, 2), stride=(2, 2), padding=0):
        super().__init__()
        self.pool = pair(pool, "pool", type(self).__name__)
        self.stride = pair(stride, "stride", type(self).__name__)
        self.padding = padding_sides(padding, type(self).__name__)
        top, bottom, left, right = self.padding
        if max(top, bottom) >= self.pool[0] or max(left, right) >= self.pool[1]:
            raise ValueError(f"{type(self).__name__}: padding {self.padding} must be smaller than the "
                             f"window {self.pool} on each side")

    @property
    def toolbox(self):
        return self.padding == NO_PADDING

    def describe(self):
        text = f"{type(self).__name__} {self.pool[0]} {self.pool[1]} {self.stride[0]} {self.stride[1]}"
        return text if self.toolbox else text + " pad " + ",".join(map(str, self.padding))

    def output_shape(self, shape):
        hp, wp = self.pool
        top, bottom, left, right = self.padding
        if len(shape) != 4 or shape[1] + top + bottom < hp or shape[2] + left + right < wp:
            raise ValueError(f"expects input of shape {window_text(hp, wp, 'D', self.padding)}, "
                             f"got {shape_text(shape)}")
        return (shape[0], output_size(shape[1] + top + bottom, hp, self.stride[0]),
                output_size(shape[2] + left + right, wp, self.stride[1]), shape[3])


class SumPool(Pool):
    """Sum pooling, scaled by 1/sqrt(hp*wp) as in the toolbox (no padding)."""

    def __init__(self, pool=(2, 2), stride=(2, 2)):
        super().__init__(pool, stride)

    def _scale(self, t):
        return t(1 / np.sqrt(self.pool[0] * self.pool[1]))

    def forward(self, X, backend=CPU):
        return backend.pool.sumpool_forward(X, *self.pool, *self.stride, self._scale(X.dtype.type))

    def propagate(self, X, Y, R, rule, backend):
        """As the toolbox's SumPool; zplus is alpha-beta with alpha = 1; gamma
        and zb, rules for weighted layers, share in proportion to the inputs
        (epsilon 1e-6) here."""
        pool, t, window = backend.pool, X.dtype.type, (*self.pool, *self.stride)
        if rule.is_gradient:
            return pool.sumpool_backward(X, R, *window, self._scale(t))
        match rule.name:
            case "flat" | "ww":
                return pool.pool_relevance_uniform(X, R, *window)
            case "alphabeta" | "zplus":
                return pool.sumpool_relevance_alphabeta(X, R, *window, *map(t, rule.paired()))
            case _:
                return pool.sumpool_relevance_epsilon(X, R, *window, t(rule.epsilon(SUMPOOL_SIMPLE_STABILIZER)))


class MaxPool(Pool):
    """Max pooling; relevance goes to the maxima, split evenly on ties (flat
    and ww: uniformly over the window, the padding's shares dropped); the
    gradient methods route a window's signal to its first maximum, as
    autograd does. Padding is -inf: it never wins."""

    def _padded(self, X, backend):
        return X if self.toolbox else backend.tensors.pad(X, *self.padding, -np.inf)

    def forward(self, X, backend=CPU):
        return backend.pool.maxpool_forward(self._padded(X, backend), *self.pool, *self.stride)

    def propagate(self, X, Y, R, rule, backend):
        pool, window, Xp = backend.pool, (*self.pool, *self.stride), self._padded(X, backend)
        if rule.is_gradient:
            Rx = pool.maxpool_backward(Xp, Y, R, *window)
        elif rule.name in ("flat", "ww"):
            Rx = pool.pool_relevance_uniform(Xp, R, *window)
        else:
            Rx = pool.maxpool_relevance_winners(Xp, Y, R, *window)
        return Rx if self.toolbox else backend.tensors.crop(Rx, *self.padding)


class AveragePool(Pool):
    """Average pooling (ONNX AveragePool, PyTorch AvgPool2d).

    The padding adds no values: with ``count_include_pad`` each window's sum
    is divided by hp*wp, without it by the number of inputs inside the image.
    Relevance: the epsilon rule with weights 1/count (``simple`` 1e-16,
    ``epsilon`` its parameter, every other LRP rule 1e-6: zennit's Norm
    rule); alpha-beta and z+ split by the inputs' signs; flat and ww share
    equally among the inputs inside a window.
    """

    join = True

    def __init__(self, pool=(2, 2), stride=(2, 2), padding=0, count_include_pad=False):
        super().__init__(pool, stride, padding)
        self.count_include_pad = bool(count_include_pad)

    @property
    def toolbox(self):
        return False

    def describe(self):
        text = f"AveragePool {self.pool[0]} {self.pool[1]} {self.stride[0]} {self.stride[1]}"
        if self.padding != NO_PADDING:
            text += " pad " + ",".join(map(str, self.padding)) + (" counted" if self.count_include_pad else "")
        return text

    def _window(self, shape):
        return self.pool

    def forward(self, X, backend=CPU):
        shape = self.output_shape(tuple(X.shape))
        hp, wp = self._window(X.shape)
        return backend.pool.avgpool_forward(X, hp, wp, *self.stride, self.padding[0], self.padding[2],
                                            shape[1], shape[2], self.count_include_pad)

    def propagate(self, X, Y, R, rule, backend):
        t = X.dtype.type
        p1, p2, tiny = 0.0, 0.0, 0.0
        if rule.is_gradient:
            mode = AVG_GRADIENT
        else:
            match rule.name:
                case "flat" | "ww":
                    mode = AVG_UNIFORM
                case "alphabeta" | "zplus":
                    mode, (p1, p2, tiny) = AVG_ALPHABETA, rule.paired()
                case _:
                    mode, p1 = AVG_EPSILON, rule.epsilon()
        hp, wp = self._window(X.shape)
        return backend.pool.avgpool_relevance(X, Y, R, hp, wp, *self.stride, self.padding[0], self.padding[2],
                                              self.count_include_pad, mode, t(p1), t(p2), t(tiny))


class GlobalAveragePool(AveragePool):
    """The mean of each channel over the whole image: (N, H, W, D) -> (N, 1, 1, D)."""

    def __init__(self):
        Layer.__init__(self)
        self.pool, self.stride, self.padding, self.count_include_pad = (1, 1), (1, 1), NO_PADDING, True

    def describe(self):
        return "GlobalAveragePool"

    def output_shape(self, shape):
        if len(shape) != 4:
            raise ValueError(f"expects input of shape (N, H, W, D), got {shape_text(shape)}")
        return (shape[0], 1, 1, shape[3])

    def _window(self, shape):
        return int(shape[1]), int(shape[2])
