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
from .base import NO_PADDING, Layer, pair, padding_sides, shape_text, window_text

__all__ = ["SumPool", "MaxPool", "AveragePool", "GlobalAveragePool"]


def pooled_size(size, window, stride, begin, end, ceil_mode):
    """Output length of a window swept over ``size`` inputs padded by
    ``begin`` and ``end``: ``floor((size + begin + end - window) / stride) + 1``,
    or with ``ceil_mode`` the ceiling, less one where that last window would
    start in the end padding (as PyTorch's pooling_output_shape and ONNX's
    reference). Below 1 where no window fits."""
    span = size + begin + end - window
    if not ceil_mode:
        return span // stride + 1
    count = -(-span // stride) + 1
    return count - 1 if (count - 1) * stride >= size + begin else count


class Pool(Layer):
    """A window of ``pool`` (rows, columns) swept with ``stride`` over an
    image padded by ``padding`` (top, bottom, left, right); with
    ``ceil_mode`` the output size rounds up, and the last windows may reach
    past the end padding (see ``pooled_size``)."""

    ceil_mode = False

    def __init__(self, pool=(2, 2), stride=(2, 2), padding=0, ceil_mode=False):
        super().__init__()
        self.pool = pair(pool, "pool", type(self).__name__)
        self.stride = pair(stride, "stride", type(self).__name__)
        self.padding = padding_sides(padding, type(self).__name__)
        if not isinstance(ceil_mode, (bool, np.bool_)) and ceil_mode not in (0, 1):
            raise ValueError(f"{type(self).__name__}: ceil_mode must be True or False, got {ceil_mode!r}")
        self.ceil_mode = bool(ceil_mode)
        top, bottom, left, right = self.padding
        if max(top, bottom) >= self.pool[0] or max(left, right) >= self.pool[1]:
            raise ValueError(f"{type(self).__name__}: padding {self.padding} must be smaller than the "
                             f"window {self.pool} on each side")

    @property
    def toolbox(self):
        return self.padding == NO_PADDING and not self.ceil_mode

    def describe(self):
        text = f"{type(self).__name__} {self.pool[0]} {self.pool[1]} {self.stride[0]} {self.stride[1]}"
        if self.padding != NO_PADDING:
            text += " pad " + ",".join(map(str, self.padding))
        return text + " ceil" if self.ceil_mode else text

    def output_shape(self, shape):
        hp, wp = self.pool
        top, bottom, left, right = self.padding
        if len(shape) == 4:
            rows = pooled_size(shape[1], hp, self.stride[0], top, bottom, self.ceil_mode)
            columns = pooled_size(shape[2], wp, self.stride[1], left, right, self.ceil_mode)
        if len(shape) != 4 or min(shape[1], shape[2]) < 1 or rows < 1 or columns < 1:
            expected = window_text(hp, wp, 'D', self.padding) if not self.ceil_mode else \
                window_text(max(1, hp - self.stride[0] + 1), max(1, wp - self.stride[1] + 1), 'D', self.padding)
            raise ValueError(f"expects input of shape {expected}, got {shape_text(shape)}")
        return (shape[0], rows, columns, shape[3])

    def _overhang(self, shape):
        """(rows, columns) the last windows reach past the end padding (ceil mode)."""
        _, rows, columns, _ = self.output_shape(tuple(shape))
        top, bottom, left, right = self.padding
        return (max(0, (rows - 1) * self.stride[0] + self.pool[0] - (shape[1] + top + bottom)),
                max(0, (columns - 1) * self.stride[1] + self.pool[1] - (shape[2] + left + right)))


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
    and ww: uniformly over the window, the shares of the padding and of the
    ceil-mode overhang dropped); the gradient methods route a window's
    signal to its first maximum, as autograd does. Padding and overhang are
    -inf: they never win (every window holds an input).

    ``MaxPool(pool, stride, padding=0, ceil_mode=False)``; a 1-D pool over
    (N, 1, W, C) is ``pool=(1, k)``, ``stride=(1, s)``.
    """

    def _sides(self, shape):
        """(top, bottom, left, right) of -inf around X: the padding and the overhang."""
        top, bottom, left, right = self.padding
        rows, columns = self._overhang(shape) if self.ceil_mode else (0, 0)
        return top, bottom + rows, left, right + columns

    def forward(self, X, backend=CPU):
        sides = self._sides(X.shape)
        Xp = X if sides == NO_PADDING else backend.tensors.pad(X, *sides, -np.inf)
        return backend.pool.maxpool_forward(Xp, *self.pool, *self.stride)

    def propagate(self, X, Y, R, rule, backend):
        pool, window, sides = backend.pool, (*self.pool, *self.stride), self._sides(X.shape)
        Xp = X if sides == NO_PADDING else backend.tensors.pad(X, *sides, -np.inf)
        if rule.is_gradient:
            Rx = pool.maxpool_backward(Xp, Y, R, *window)
        elif rule.name in ("flat", "ww"):
            Rx = pool.pool_relevance_uniform(Xp, R, *window)
        else:
            Rx = pool.maxpool_relevance_winners(Xp, Y, R, *window)
        return Rx if sides == NO_PADDING else backend.tensors.crop(Rx, *sides)


class AveragePool(Pool):
    """Average pooling (ONNX AveragePool, PyTorch AvgPool2d).

    ``AveragePool(pool, stride, padding=0, count_include_pad=False,
    ceil_mode=False)``. The padding adds no values: with
    ``count_include_pad`` each window's sum is divided by the window's size
    clipped to the padded image (hp*wp, less in ceil mode's last windows,
    whose overhang past the end padding never counts: PyTorch's
    avg_pool2d), without it by the number of inputs inside the image.
    Relevance: the epsilon rule with weights 1/count (``simple`` 1e-16,
    ``epsilon`` its parameter, every other LRP rule 1e-6: zennit's Norm
    rule); alpha-beta and z+ split by the inputs' signs; flat and ww share
    equally among the inputs inside a window.
    """

    join = True

    def __init__(self, pool=(2, 2), stride=(2, 2), padding=0, count_include_pad=False, ceil_mode=False):
        super().__init__(pool, stride, padding, ceil_mode)
        self.count_include_pad = bool(count_include_pad)

    @property
    def toolbox(self):
        return False

    def describe(self):
        text = f"AveragePool {self.pool[0]} {self.pool[1]} {self.stride[0]} {self.stride[1]}"
        if self.padding != NO_PADDING:
            text += " pad " + ",".join(map(str, self.padding)) + (" counted" if self.count_include_pad else "")
        return text + " ceil" if self.ceil_mode else text

    def _window(self, shape):
        return self.pool

    def forward(self, X, backend=CPU):
        shape = self.output_shape(tuple(X.shape))
        hp, wp = self._window(X.shape)
        return backend.pool.avgpool_forward(X, hp, wp, *self.stride, *self.padding, shape[1], shape[2],
                                            self.count_include_pad)

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
        return backend.pool.avgpool_relevance(X, Y, R, hp, wp, *self.stride, *self.padding, self.count_include_pad,
                                              mode, t(p1), t(p2), t(tiny))


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
