"""Layers, nodes, and the Network that chains them or joins them in a graph.

This module holds the model's structure, checks shapes and arguments, and
dispatches every forward and relevance pass to a compiled kernel in
``lrpnb.kernels`` (or its GPU twin); it does no numerics of its own. The
semantics are those of the LRP Toolbox (Lapuschkin et al., JMLR 17(114),
2016): images are (N, H, W, D), vectors (N, D), and ``Network.lrp`` is its
``Sequential.lrp``. Graphs (``Node``) add the layers of imported models
(padding, average pooling, BatchNorm, residual Add, Concat); a tensor read
by several layers receives the sum of their relevance.
"""
import numbers

import numpy as np

from .backends import CPU, backend
from .kernels import single_threaded_blas
from .targets import target_classes
from .rules import (ALPHABETA_STABILIZER, GRADIENT_METHODS, LAYER_MODE, SIMPLE_STABILIZER,
                    SUMPOOL_SIMPLE_STABILIZER, ZENNIT_STABILIZER, resolve)

#: rows (samples x targets) per relevance pass when explaining several targets
#: on the CPU (measured on LeNet-5: 256 keeps the activations in cache)
TARGET_ROWS = 256

#: rule names every layer's backward pass recognizes besides the LRP rules
_BACKWARD = ("gradient", "deconvnet", "guided_backprop")

__all__ = ["Layer", "Linear", "Convolution", "SumPool", "MaxPool", "AveragePool", "GlobalAveragePool",
           "Rect", "Tanh", "Sigmoid", "SoftMax", "Flatten", "Identity", "BatchNorm", "LRN", "Add", "Concat",
           "Node", "Network"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _pair(value, what, layer):
    """A (rows, columns) pair of positive ints from an int or a 2-sequence."""
    if isinstance(value, numbers.Integral):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        raise ValueError(f"{layer}: {what} must be an int or a pair of ints, got {value!r}") from None
    if len(pair) != 2 or not all(isinstance(v, numbers.Integral) or
                                 (isinstance(v, (float, np.floating)) and float(v).is_integer())
                                 for v in pair):
        raise ValueError(f"{layer}: {what} must be an int or a pair of ints, got {value!r}")
    pair = tuple(int(v) for v in pair)
    if min(pair) < 1:
        raise ValueError(f"{layer}: {what} must be positive, got {pair}")
    return pair


def _parameter_array(value, ndim, what, layer):
    """A finite C-contiguous copy of a weight or bias array: float32 stays
    float32 (a large float32 model is not doubled in memory), anything else
    becomes float64."""
    dtype = np.float32 if getattr(value, "dtype", None) == np.float32 else np.float64
    try:
        array = np.array(value, dtype=dtype, order="C")
    except (TypeError, ValueError):
        raise ValueError(f"{layer}: {what} must be a numeric array") from None
    if array.ndim != ndim:
        raise ValueError(f"{layer}: {what} must have {ndim} dimensions, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{layer}: {what} contains NaN or infinite values")
    return array


def _padding(value, layer):
    """(top, bottom, left, right) non-negative ints from an int, a (rows,
    columns) pair or four values."""
    values = (value,) * 4 if isinstance(value, numbers.Integral) else tuple(np.ravel(value).tolist()) \
        if np.ndim(value) else (value,)
    if len(values) == 2:
        values = (values[0], values[0], values[1], values[1])
    if len(values) != 4 or not all(isinstance(v, numbers.Integral) or
                                   (isinstance(v, float) and v.is_integer()) for v in values) \
            or min(values) < 0:
        raise ValueError(f"{layer}: padding must be a non-negative int, a (rows, columns) pair or "
                         f"(top, bottom, left, right), got {value!r}")
    return tuple(int(v) for v in values)


def _output_size(size, window, stride):
    """Output length of a valid (unpadded) window sweep."""
    return (size - window) // stride + 1


def _bounds(param, channels, dtype, backend):
    """The z^B rule's (low, high) as one value per input channel, in dtype."""
    out = []
    for bound, what in zip(param, ("low", "high")):
        bound = np.broadcast_to(bound, (channels,)) if bound.size == 1 else bound
        if bound.shape != (channels,):
            raise ValueError(f"the 'zb' rule's {what} bound has {bound.size} values for {channels} "
                             f"input channels")
        out.append(backend.put(np.ascontiguousarray(bound, dtype=dtype)))
    return out


def _window_text(h, w, d, padding):
    """The input shape a window of h x w fits, for the error messages."""
    top, bottom, left, right = padding
    rows = f"H>={h}" if top + bottom == 0 else f"H>={max(0, h - top - bottom)}"
    columns = f"W>={w}" if left + right == 0 else f"W>={max(0, w - left - right)}"
    return f"(N, {rows}, {columns}, {d})"


def _shape_text(shape):
    return "(" + ", ".join(["N"] + [str(s) for s in shape[1:]]) + ")"


class Layer:
    """Base class: a layer that passes data and relevance through unchanged.

    Every layer carries an LRP rule preset (``lrp_var``, ``lrp_param``), used by
    ``Network.lrp`` when no rule is given there.
    """

    #: whether the LRP Toolbox's model formats can hold this layer
    toolbox = True
    #: how many inputs the layer takes (None: two or more, given as a list)
    arity = 1

    def __init__(self):
        self.lrp_var = None
        self.lrp_param = None

    def set_lrp_parameters(self, rule=None, param=None):
        """Preset the LRP rule of this layer (validated now, used by lrp())."""
        resolve(rule, param)
        self.lrp_var, self.lrp_param = rule, param

    def describe(self):
        """The layer's header as in the toolbox's text format."""
        return type(self).__name__

    def __repr__(self):
        return f"<{self.describe()}>"

    def output_shape(self, shape):
        """Shape of the output for an input of ``shape`` (ValueError if it does not fit)."""
        return shape

    def forward(self, X, backend=CPU):
        """This layer's output for input ``X``, computed by ``backend``'s kernels."""
        return X

    def relevance(self, X, Y, R, rule, param, backend=CPU):
        """Input relevance for output relevance ``R``, given this layer's input
        ``X`` and output ``Y``, with a canonical ``rule`` and its ``param``."""
        return R


class _Weighted(Layer):
    """A layer with weights W and bias B, kept as given (float32 or float64)
    and cast once per input dtype."""

    def __init__(self, W, B):
        super().__init__()
        self._casts = {}
        self.W = W
        self.B = B

    @property
    def W(self):
        return self._W

    @W.setter
    def W(self, value):
        self._W = _parameter_array(value, self._weight_ndim, "W", type(self).__name__)
        self._casts = {}

    @property
    def B(self):
        return self._B

    @B.setter
    def B(self, value):
        # the toolbox's Matlab port stores biases as 1 x n rows
        self._B = _parameter_array(np.ravel(value), 1, "B", type(self).__name__)
        self._casts = {}

    def _check_bias(self):
        if self._B.shape != (self._W.shape[-1],):
            raise ValueError(f"{type(self).__name__}: B must have {self._W.shape[-1]} values "
                             f"(one per output), got {self._B.size}")

    def weights(self, dtype, backend=CPU):
        """(W, B) in ``dtype`` on ``backend``'s device: cast and copied once, then cached."""
        key = (backend.name, dtype)
        if key not in self._casts:
            self._casts[key] = (backend.put(self._W.astype(dtype, copy=False)),
                                backend.put(self._B.astype(dtype, copy=False)))
        return self._casts[key]

    def parameter_gradient(self, X, G, backend=CPU):
        """(dL/dW, dL/dB) for this layer's input ``X`` and output gradient ``G``."""
        raise NotImplementedError


class Linear(_Weighted):
    """Dense layer ``Y = X W + B`` with W of shape (m, n) and B of shape (n,)."""

    _weight_ndim = 2

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
        if len(shape) != 2 or shape[1] != self.m:
            hint = " (add a Flatten layer before it)" if len(shape) != 2 else ""
            raise ValueError(f"expects input of shape (N, {self.m}), got {_shape_text(shape)}{hint}")
        return (shape[0], self.n)

    def forward(self, X, backend=CPU):
        W, B = self.weights(X.dtype, backend)
        return backend.dense.dense_forward(X, W, B)

    def parameter_gradient(self, X, G, backend=CPU):
        return backend.dense.dense_weight_gradient(X, G)

    def relevance(self, X, Y, R, rule, param, backend=CPU):
        W, B = self.weights(X.dtype, backend)
        t = X.dtype.type
        dense = backend.dense
        if rule in _BACKWARD:
            return dense.dense_backward(X, W, R)
        if rule == "flat":
            return dense.dense_relevance_flat(X, W, R)
        if rule == "ww":
            return dense.dense_relevance_ww(X, W, R)
        if rule in ("alphabeta", "zplus"):
            alpha, tiny = (param, ALPHABETA_STABILIZER) if rule == "alphabeta" else (1.0, ZENNIT_STABILIZER)
            return dense.dense_relevance_alphabeta(X, W, B, R, t(alpha), t(1 - alpha), t(tiny))
        if rule == "gamma":
            return dense.dense_relevance_gamma(X, W, B, Y, R, t(param), t(ZENNIT_STABILIZER))
        if rule == "zb":
            low, high = _bounds(param, self.m, X.dtype, backend)
            return dense.dense_relevance_zbox(X, W, R, low, high, t(ZENNIT_STABILIZER))
        epsilon = SIMPLE_STABILIZER if rule == "simple" else param
        return dense.dense_relevance_epsilon(X, W, Y, R, t(epsilon))


class Convolution(_Weighted):
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
        convolved on its own (d = groups: depthwise).
    """

    _weight_ndim = 4

    def __init__(self, W, B, stride=(1, 1), padding=0, dilation=(1, 1), groups=1):
        super().__init__(W, B)
        self._check_bias()
        self.stride = _pair(stride, "stride", "Convolution")
        self.padding = _padding(padding, "Convolution")
        self.dilation = _pair(dilation, "dilation", "Convolution")
        if not isinstance(groups, numbers.Integral) or groups < 1 or self.W.shape[3] % groups:
            raise ValueError(f"Convolution: groups must be a positive divisor of the {self.W.shape[3]} "
                             f"output channels, got {groups!r}")
        self.groups = int(groups)

    @property
    def toolbox(self):
        """Whether the LRP Toolbox's formats can hold this layer (no padding,
        dilation or groups)."""
        return self.padding == (0, 0, 0, 0) and self.dilation == (1, 1) and self.groups == 1

    @property
    def in_channels(self):
        return self.W.shape[2] * self.groups

    def describe(self):
        h, w, d, n = self.W.shape
        text = f"Convolution {h} {w} {d} {n} {self.stride[0]} {self.stride[1]}"
        if self.padding != (0, 0, 0, 0):
            text += " pad " + ",".join(map(str, self.padding))
        if self.dilation != (1, 1):
            text += " dilation " + ",".join(map(str, self.dilation))
        if self.groups != 1:
            text += f" groups {self.groups}"
        return text

    def _span(self):
        """(rows, columns) the dilated filter spans."""
        h, w = self.W.shape[:2]
        return (h - 1) * self.dilation[0] + 1, (w - 1) * self.dilation[1] + 1

    def output_shape(self, shape):
        h, w = self._span()
        d = self.in_channels
        top, bottom, left, right = self.padding
        if len(shape) != 4 or shape[3] != d or shape[1] + top + bottom < h or shape[2] + left + right < w:
            raise ValueError(f"expects input of shape {_window_text(h, w, d, self.padding)}, "
                             f"got {_shape_text(shape)}")
        return (shape[0], _output_size(shape[1] + top + bottom, h, self.stride[0]),
                _output_size(shape[2] + left + right, w, self.stride[1]), self.W.shape[3])

    def _groups(self, dtype, backend):
        """[(W, B, mask)] per group in ``dtype`` on ``backend``: the filters
        dilated, and for a dilated layer the mask of its real taps (its
        flat rule); cast and copied once, then cached."""
        key = (backend.name, dtype, "groups")
        if key not in self._casts:
            from .kernels.conv import dilate_filter  # weight preparation, once per dtype

            n = self.W.shape[3] // self.groups
            parts = []
            for g in range(self.groups):
                W = dilate_filter(self._W[..., g * n:(g + 1) * n], *self.dilation).astype(dtype)
                mask = None
                if self.dilation != (1, 1):
                    mask = backend.put(dilate_filter(np.ones_like(self._W[..., g * n:(g + 1) * n]),
                                                     *self.dilation).astype(dtype))
                parts.append((backend.put(W), backend.put(self._B[g * n:(g + 1) * n].astype(dtype)), mask))
            self._casts[key] = parts
        return self._casts[key]

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
        if self.padding == (0, 0, 0, 0):
            return X
        return backend.tensors.pad(X, *self.padding, 0)

    def forward(self, X, backend=CPU):
        if self.toolbox:
            W, B = self.weights(X.dtype, backend)
            return backend.conv.conv_forward(X, W, B, *self.stride)
        groups = self._groups(X.dtype, backend)
        return self._per_group(self._padded(X, backend), (),
                               lambda g, Xg: backend.conv.conv_forward(Xg, *groups[g][:2], *self.stride),
                               backend)

    def parameter_gradient(self, X, G, backend=CPU):
        if not self.toolbox:
            raise ValueError("training supports convolutions without padding, dilation or groups only")
        return backend.conv.conv_weight_gradient(X, G, *self.W.shape[:2], *self.stride)

    def relevance(self, X, Y, R, rule, param, backend=CPU):
        if self.toolbox:
            W, B = self.weights(X.dtype, backend)
            return self._rule(X, W, B, None, Y, R, rule, param, self.padding, backend, 0)
        groups = self._groups(X.dtype, backend)
        d = self.W.shape[2]
        Rx = self._per_group(self._padded(X, backend), (Y, R),
                             lambda g, Xg, Yg, Rg: self._rule(Xg, *groups[g], Yg, Rg, rule, param,
                                                              self.padding, backend, g * d),
                             backend)
        if self.padding == (0, 0, 0, 0):
            return Rx
        return backend.tensors.crop(Rx, *self.padding)

    def _rule(self, X, W, B, mask, Y, R, rule, param, padding, backend, c0):
        """One group's input relevance (X padded; channels c0.. of the layer's input)."""
        t = X.dtype.type
        conv = backend.conv
        if rule in _BACKWARD:
            return conv.conv_backward(X, W, R, *self.stride)
        if rule in ("flat", "ww") and not self.toolbox:
            # a neuron's taps that fall on the image share its relevance, in
            # proportion to 1 (flat) or w^2 (ww): the epsilon rule on an input
            # of ones inside the image (zeros on the padding) with the filter
            # of ones (the real taps of a dilated one) or of w^2, as zennit's
            # Flat and WSquare compute it
            V = (mask if mask is not None else conv.filled(W.shape, 1, X.dtype)) if rule == "flat" \
                else conv.squared(W)
            ones = conv.image_ones(X.shape, padding, X.dtype)
            Z = conv.conv_forward(ones, V, conv.filled((W.shape[3],), 0, X.dtype), *self.stride)
            return conv.conv_relevance_epsilon(ones, V, Z, R, *self.stride, t(SIMPLE_STABILIZER))
        if rule == "flat":
            return conv.conv_relevance_flat(X, W, R, *self.stride)
        if rule == "ww":
            return conv.conv_relevance_ww(X, W, R, *self.stride)
        if rule in ("alphabeta", "zplus"):
            alpha, tiny = (param, ALPHABETA_STABILIZER) if rule == "alphabeta" else (1.0, ZENNIT_STABILIZER)
            return conv.conv_relevance_alphabeta(X, W, B, R, *self.stride, t(alpha), t(1 - alpha), t(tiny))
        if rule == "gamma":
            return conv.conv_relevance_gamma(X, W, B, Y, R, *self.stride, t(param), t(ZENNIT_STABILIZER))
        if rule == "zb":
            low, high = _bounds(param, self.in_channels, X.dtype, backend)
            if self.groups > 1:
                low, high = low[c0:c0 + W.shape[2]], high[c0:c0 + W.shape[2]]
            return conv.conv_relevance_zbox(X, W, R, *self.stride, low, high, t(ZENNIT_STABILIZER), padding)
        epsilon = SIMPLE_STABILIZER if rule == "simple" else param
        return conv.conv_relevance_epsilon(X, W, Y, R, *self.stride, t(epsilon))


class _Pool(Layer):
    def __init__(self, pool=(2, 2), stride=(2, 2), padding=0):
        super().__init__()
        self.pool = _pair(pool, "pool", type(self).__name__)
        self.stride = _pair(stride, "stride", type(self).__name__)
        self.padding = _padding(padding, type(self).__name__)
        top, bottom, left, right = self.padding
        if max(top, bottom) >= self.pool[0] or max(left, right) >= self.pool[1]:
            raise ValueError(f"{type(self).__name__}: padding {self.padding} must be smaller than the "
                             f"window {self.pool} on each side")

    @property
    def toolbox(self):
        return self.padding == (0, 0, 0, 0)

    def describe(self):
        text = f"{type(self).__name__} {self.pool[0]} {self.pool[1]} {self.stride[0]} {self.stride[1]}"
        return text if self.toolbox else text + " pad " + ",".join(map(str, self.padding))

    def output_shape(self, shape):
        hp, wp = self.pool
        top, bottom, left, right = self.padding
        if len(shape) != 4 or shape[1] + top + bottom < hp or shape[2] + left + right < wp:
            raise ValueError(f"expects input of shape {_window_text(hp, wp, 'D', self.padding)}, "
                             f"got {_shape_text(shape)}")
        return (shape[0], _output_size(shape[1] + top + bottom, hp, self.stride[0]),
                _output_size(shape[2] + left + right, wp, self.stride[1]), shape[3])


class SumPool(_Pool):
    """Sum pooling, scaled by 1/sqrt(hp*wp) as in the toolbox (no padding)."""

    def __init__(self, pool=(2, 2), stride=(2, 2)):
        super().__init__(pool, stride)

    def _scale(self, t):
        return t(1 / np.sqrt(self.pool[0] * self.pool[1]))

    def forward(self, X, backend=CPU):
        return backend.pool.sumpool_forward(X, *self.pool, *self.stride, self._scale(X.dtype.type))

    def relevance(self, X, Y, R, rule, param, backend=CPU):
        """As the toolbox's SumPool; zplus is alpha-beta with alpha = 1; gamma
        and zb, rules for weighted layers, share in proportion to the inputs
        (epsilon 1e-6) here."""
        t = X.dtype.type
        pool = backend.pool
        if rule in _BACKWARD:
            return pool.sumpool_backward(X, R, *self.pool, *self.stride, self._scale(t))
        if rule in ("flat", "ww"):
            return pool.pool_relevance_uniform(X, R, *self.pool, *self.stride)
        if rule in ("alphabeta", "zplus"):
            alpha, tiny = (param, ALPHABETA_STABILIZER) if rule == "alphabeta" else (1.0, ZENNIT_STABILIZER)
            return pool.sumpool_relevance_alphabeta(X, R, *self.pool, *self.stride, t(alpha),
                                                    t(1 - alpha), t(tiny))
        epsilon = {"simple": SUMPOOL_SIMPLE_STABILIZER, "epsilon": param}.get(rule, ZENNIT_STABILIZER)
        return pool.sumpool_relevance_epsilon(X, R, *self.pool, *self.stride, t(epsilon))


class MaxPool(_Pool):
    """Max pooling; relevance goes to the maxima, split evenly on ties (flat
    and ww: uniformly over the window, the padding's shares dropped); the
    gradient methods route a window's signal to its first maximum, as
    autograd does. Padding is -inf: it never wins."""

    def _padded(self, X, backend):
        return X if self.toolbox else backend.tensors.pad(X, *self.padding, -np.inf)

    def forward(self, X, backend=CPU):
        return backend.pool.maxpool_forward(self._padded(X, backend), *self.pool, *self.stride)

    def relevance(self, X, Y, R, rule, param, backend=CPU):
        Xp = self._padded(X, backend)
        if rule in _BACKWARD:
            Rx = backend.pool.maxpool_backward(Xp, Y, R, *self.pool, *self.stride)
        elif rule in ("flat", "ww"):
            Rx = backend.pool.pool_relevance_uniform(Xp, R, *self.pool, *self.stride)
        else:
            Rx = backend.pool.maxpool_relevance_winners(Xp, Y, R, *self.pool, *self.stride)
        return Rx if self.toolbox else backend.tensors.crop(Rx, *self.padding)


class AveragePool(_Pool):
    """Average pooling (ONNX AveragePool, PyTorch AvgPool2d).

    The padding adds no values: with ``count_include_pad`` each window's sum
    is divided by hp*wp, without it by the number of inputs inside the image.
    Relevance: the epsilon rule with weights 1/count (``simple`` 1e-16,
    ``epsilon`` its parameter, every other LRP rule 1e-6: zennit's Norm
    rule); alpha-beta and z+ split by the inputs' signs; flat and ww share
    equally among the inputs inside a window.
    """

    def __init__(self, pool=(2, 2), stride=(2, 2), padding=0, count_include_pad=False):
        super().__init__(pool, stride, padding)
        self.count_include_pad = bool(count_include_pad)

    @property
    def toolbox(self):
        return False

    def describe(self):
        text = f"AveragePool {self.pool[0]} {self.pool[1]} {self.stride[0]} {self.stride[1]}"
        if self.padding != (0, 0, 0, 0):
            text += " pad " + ",".join(map(str, self.padding)) + (" counted" if self.count_include_pad else "")
        return text

    def _window(self, shape):
        return self.pool

    def forward(self, X, backend=CPU):
        shape = self.output_shape(tuple(X.shape))
        hp, wp = self._window(X.shape)
        return backend.pool.avgpool_forward(X, hp, wp, *self.stride, self.padding[0], self.padding[2],
                                            shape[1], shape[2], self.count_include_pad)

    def relevance(self, X, Y, R, rule, param, backend=CPU):
        t = X.dtype.type
        pool = backend.pool
        p1, p2, tiny = param, 0.0, 0.0
        if rule in _BACKWARD:
            mode = pool.AVG_GRADIENT
        elif rule in ("flat", "ww"):
            mode = pool.AVG_UNIFORM
        elif rule in ("alphabeta", "zplus"):
            mode = pool.AVG_ALPHABETA
            p1, tiny = (param, ALPHABETA_STABILIZER) if rule == "alphabeta" else (1.0, ZENNIT_STABILIZER)
            p2 = 1 - p1
        else:
            mode = pool.AVG_EPSILON
            p1 = {"simple": SIMPLE_STABILIZER, "epsilon": param}.get(rule, ZENNIT_STABILIZER)
        hp, wp = self._window(X.shape)
        return pool.avgpool_relevance(X, Y, R, hp, wp, *self.stride, self.padding[0], self.padding[2],
                                      self.count_include_pad, mode, t(p1 or 0), t(p2), t(tiny))


class GlobalAveragePool(AveragePool):
    """The mean of each channel over the whole image: (N, H, W, D) -> (N, 1, 1, D)."""

    def __init__(self):
        Layer.__init__(self)
        self.pool, self.stride, self.padding, self.count_include_pad = (1, 1), (1, 1), (0, 0, 0, 0), True

    def describe(self):
        return "GlobalAveragePool"

    def output_shape(self, shape):
        if len(shape) != 4:
            raise ValueError(f"expects input of shape (N, H, W, D), got {_shape_text(shape)}")
        return (shape[0], 1, 1, shape[3])

    def _window(self, shape):
        return int(shape[1]), int(shape[2])


class Rect(Layer):
    """Rectified linear unit, max(x, 0)."""

    def forward(self, X, backend=CPU):
        return backend.activations.rect_forward(X)

    def relevance(self, X, Y, R, rule, param, backend=CPU):
        """Relevance passes unchanged; the backward methods get the ReLU's
        gradient (0), deconvnet's rule (1) or guided backprop's (2)."""
        if rule in _BACKWARD:
            return backend.activations.rect_backward(X, R, _BACKWARD.index(rule))
        return R


class _Smooth(Layer):
    """An element-wise activation y = f(x) whose relevance passes unchanged
    (the toolbox's rule); the gradient methods get f'(x) G, computed from y
    by the kernels ``<_kernel>_forward`` and ``<_kernel>_backward``."""

    _kernel = None

    def forward(self, X, backend=CPU):
        return getattr(backend.activations, self._kernel + "_forward")(X)

    def relevance(self, X, Y, R, rule, param, backend=CPU):
        if rule in _BACKWARD:
            return getattr(backend.activations, self._kernel + "_backward")(Y, R)
        return R


class Tanh(_Smooth):
    """Hyperbolic tangent."""

    _kernel = "tanh"


class Sigmoid(_Smooth):
    """Logistic sigmoid, 1 / (1 + exp(-x)); relevance passes unchanged."""

    _kernel = "sigmoid"
    toolbox = False


class Identity(Layer):
    """Passes data and relevance unchanged (ONNX Identity, Dropout at inference)."""

    toolbox = False

    def describe(self):
        return "Identity"


class BatchNorm(Layer):
    """Batch normalization at inference, per channel (last axis):
    ``y = (x - mean) gamma / sqrt(var + eps) + beta``.

    Where it follows a convolution or dense layer, the ONNX import folds it
    into that layer's weights (zennit's MergeBatchNorm); a BatchNorm of its
    own passes relevance unchanged, as zennit's composites do (its Pass
    rule), and the gradient methods get its gradient (scale times G).
    """

    toolbox = False

    def __init__(self, gamma, beta, mean, var, eps=1e-5):
        super().__init__()
        gamma, beta, mean, var = (_parameter_array(np.ravel(v), 1, what, "BatchNorm")
                                  for v, what in ((gamma, "gamma"), (beta, "beta"), (mean, "mean"),
                                                  (var, "var")))
        if not gamma.shape == beta.shape == mean.shape == var.shape:
            raise ValueError(f"BatchNorm: gamma, beta, mean and var must have one value per channel, got "
                             f"{gamma.size}, {beta.size}, {mean.size} and {var.size}")
        if not eps >= 0 or np.any(var + eps <= 0):
            raise ValueError("BatchNorm: var + eps must be positive")
        # parameter preparation, once: the per-channel scale and shift
        self.scale = gamma / np.sqrt(var + eps)
        self.shift = beta - mean * self.scale
        self._casts = {}

    def describe(self):
        return f"BatchNorm {self.scale.size}"

    def _params(self, dtype, backend):
        key = (backend.name, dtype)
        if key not in self._casts:
            self._casts[key] = (backend.put(self.scale.astype(dtype)), backend.put(self.shift.astype(dtype)),
                                backend.put(np.zeros(self.scale.size, dtype=dtype)))
        return self._casts[key]

    def output_shape(self, shape):
        if shape[-1] != self.scale.size:
            raise ValueError(f"expects {self.scale.size} channels (last axis), got {_shape_text(shape)}")
        return shape

    def forward(self, X, backend=CPU):
        scale, shift, _ = self._params(X.dtype, backend)
        return backend.activations.channel_affine(X, scale, shift)

    def relevance(self, X, Y, R, rule, param, backend=CPU):
        if rule in _BACKWARD:
            scale, _, zero = self._params(X.dtype, backend)
            return backend.activations.channel_affine(R, scale, zero)
        return R


class LRN(Layer):
    """Local response normalisation across channels (ONNX LRN, Caffe's LRN):
    ``y_c = x_c / (bias + alpha / size * sum_{i in win(c)} x_i^2)^beta``.

    Relevance passes unchanged, as in the LRP Toolbox's Caffe port; the
    gradient methods get its gradient.
    """

    toolbox = False

    def __init__(self, size, alpha=1e-4, beta=0.75, bias=1.0):
        super().__init__()
        if not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(f"LRN: size must be a positive int, got {size!r}")
        if not all(np.isfinite(v) for v in (alpha, beta, bias)) or bias <= 0:
            raise ValueError(f"LRN: alpha, beta and bias must be finite and bias > 0, got {alpha}, {beta}, {bias}")
        self.size, self.alpha, self.beta, self.bias = int(size), float(alpha), float(beta), float(bias)

    def describe(self):
        return f"LRN {self.size} {self.alpha:g} {self.beta:g} {self.bias:g}"

    def forward(self, X, backend=CPU):
        return backend.activations.lrn_forward(X, self.size, self.alpha, self.beta, self.bias)

    def relevance(self, X, Y, R, rule, param, backend=CPU):
        if rule in _BACKWARD:
            return backend.activations.lrn_backward(X, R, self.size, self.alpha, self.beta, self.bias)
        return R


class Add(Layer):
    """The sum of two or more inputs of one shape (a residual join).

    Relevance goes to the summands in proportion to their contributions,
    ``R_m = x_m R / (y + eps sgn y)`` (zennit's Norm rule on its Sum layer):
    ``simple`` eps = 1e-16, ``epsilon`` its parameter, every other LRP rule
    1e-6. The gradient methods pass G to every summand.
    """

    toolbox = False
    arity = None  # two or more inputs

    def describe(self):
        return "Add"

    def output_shape(self, shapes):
        if len(shapes) < 2 or any(shape[1:] != shapes[0][1:] for shape in shapes):
            raise ValueError(f"expects two or more inputs of one shape, got "
                             f"{', '.join(_shape_text(shape) for shape in shapes)}")
        return shapes[0]

    def forward(self, X, backend=CPU):
        return backend.tensors.add_forward(list(X))

    def relevance(self, X, Y, R, rule, param, backend=CPU):
        if rule in _BACKWARD:
            return [R] * len(X)
        epsilon = {"simple": SIMPLE_STABILIZER, "epsilon": param}.get(rule, ZENNIT_STABILIZER)
        return backend.tensors.add_relevance(list(X), Y, R, X[0].dtype.type(epsilon))


class Concat(Layer):
    """Inputs joined along the channel (last) axis; each gets its channels' relevance."""

    toolbox = False
    arity = None

    def describe(self):
        return "Concat"

    def output_shape(self, shapes):
        if any(len(shape) != len(shapes[0]) or shape[1:-1] != shapes[0][1:-1] for shape in shapes):
            raise ValueError(f"expects inputs that differ in channels only, got "
                             f"{', '.join(_shape_text(shape) for shape in shapes)}")
        return shapes[0][:-1] + (sum(shape[-1] for shape in shapes),)

    def forward(self, X, backend=CPU):
        return backend.tensors.concat_channels(list(X))

    def relevance(self, X, Y, R, rule, param, backend=CPU):
        parts, c0 = [], 0
        for part in X:
            parts.append(backend.tensors.take_channels(R, c0, c0 + tuple(part.shape)[-1]))
            c0 += tuple(part.shape)[-1]
        return parts


class SoftMax(Layer):
    """Softmax over the last axis of (N, C) scores."""

    def output_shape(self, shape):
        if len(shape) != 2:
            raise ValueError(f"expects input of shape (N, C), got {_shape_text(shape)}")
        return shape

    def forward(self, X, backend=CPU):
        return backend.activations.softmax_forward(X)

    def relevance(self, X, Y, R, rule, param, backend=CPU):
        if rule in _BACKWARD:
            return backend.activations.softmax_backward(Y, R)
        return R


class Flatten(Layer):
    """Reshape (N, ...) to (N, D); relevance is reshaped back."""

    def output_shape(self, shape):
        return (shape[0], int(np.prod(shape[1:], dtype=np.int64)))

    def forward(self, X, backend=CPU):
        return X.reshape(X.shape[0], int(np.prod(X.shape[1:], dtype=np.int64)))

    def relevance(self, X, Y, R, rule, param, backend=CPU):
        return R.reshape(X.shape)


def _as_input(X, what="X"):
    """``X`` as a C-contiguous float32/float64 array (other dtypes become float64)."""
    if hasattr(X, "__cuda_array_interface__"):
        raise ValueError(f"{what} is a GPU array but the network is on the CPU; "
                         f"call net.to('cuda') first, or pass a numpy array")
    if not isinstance(X, np.ndarray):
        try:
            X = np.asarray(X)
        except (TypeError, ValueError):
            raise ValueError(f"{what} must be a numeric array") from None
    if X.dtype not in _FLOATS:
        if X.dtype.kind not in "biuf":
            raise ValueError(f"{what} must be a numeric array, got dtype {X.dtype}")
        X = X.astype(np.float64)
    X = np.ascontiguousarray(X)
    if X.ndim < 2 or X.shape[0] == 0:
        raise ValueError(f"{what} must be a batch of shape (N, ...) with N >= 1, got shape {X.shape}")
    if not np.isfinite(X).all():
        bad = np.argwhere(~np.isfinite(X.reshape(X.shape[0], -1)))[0][0]
        raise ValueError(f"{what} contains NaN or infinite values (first in sample {bad})")
    return X


class Node:
    """A layer in a graph network, with its name and the names of its inputs.

    Parameters
    ----------
    name : str
        Unique in its network; not 'input', which names the network's input.
    layer : Layer
    inputs : str or sequence of str
        Names of earlier nodes, or 'input'. Add and Concat take two or
        more, every other layer one.
    """

    def __init__(self, name, layer, inputs):
        if not isinstance(name, str) or not name or name == INPUT:
            raise ValueError(f"a node's name must be a non-empty string other than {INPUT!r}, got {name!r}")
        if not isinstance(layer, Layer):
            raise TypeError(f"node {name!r}: {type(layer).__name__} is not an lrpnb layer")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        if not inputs or not all(isinstance(i, str) for i in inputs):
            raise ValueError(f"node {name!r}: inputs must be names of earlier nodes or {INPUT!r}, got {inputs!r}")
        if layer.arity == 1 and len(inputs) != 1:
            raise ValueError(f"node {name!r}: {layer.describe()} takes one input, got {len(inputs)}")
        if layer.arity is None and isinstance(layer, Add) and len(inputs) < 2:
            raise ValueError(f"node {name!r}: Add takes two or more inputs, got {len(inputs)}")
        self.name, self.layer, self.inputs = name, layer, inputs

    def __repr__(self):
        return f"<Node {self.name}: {self.layer.describe()} <- {', '.join(self.inputs)}>"


#: the name of a network's input in its graph
INPUT = "input"


class Network:
    """Layers in a chain, or nodes of a graph: forward passes and LRP explanations.

    Parameters
    ----------
    layers : sequence of Layer, or of Node
        Layers are applied in order (the toolbox's Sequential). Nodes form
        a graph in topological order: each names its inputs, the network's
        input is 'input', and the last node's output is the network's.
    device : {'cpu', 'cuda', 'auto'}
        Where the kernels run; 'auto' takes the GPU when one is usable.

    Relevance that reaches a tensor from several consumers is summed, in
    node order. Sequential networks name their layers '0', '1', ...
    """

    def __init__(self, layers, device="cpu"):
        items = list(layers)
        if any(isinstance(item, Node) for item in items):
            if not all(isinstance(item, Node) for item in items):
                raise TypeError("give a network either layers or nodes, not both")
            nodes = items
        else:
            for k, layer in enumerate(items):
                if not isinstance(layer, Layer):
                    raise TypeError(f"layer {k} is a {type(layer).__name__}, not an lrpnb layer")
                if layer.arity != 1:
                    raise ValueError(f"layer {k} ({layer.describe()}) joins several inputs: build the "
                                     f"network from Nodes that name them")
            nodes = [Node(str(k), layer, INPUT if k == 0 else str(k - 1)) for k, layer in enumerate(items)]
        self._set_nodes(nodes)
        self._activations = None
        self._backend = backend(device)
        #: the shape of one input sample, (H, W, C) or (D,), where the model
        #: file fixes it (ONNX); None where the layers imply it
        self.input_shape = None

    def _set_nodes(self, nodes):
        """Check the graph and index every node's inputs: value 0 is the
        network's input, value k + 1 node k's output."""
        index = {INPUT: 0}
        sources = []
        for k, node in enumerate(nodes):
            if node.name in index:
                raise ValueError(f"node {k}: the name {node.name!r} is used twice")
            missing = [name for name in node.inputs if name not in index]
            if missing:
                raise ValueError(f"node {node.name!r} reads {', '.join(map(repr, missing))}, which no earlier "
                                 f"node outputs (nodes must come in topological order)")
            sources.append([index[name] for name in node.inputs])
            index[node.name] = k + 1
        self.nodes = list(nodes)
        self.layers = [node.layer for node in nodes]
        self._sources = sources
        self._index = index

    @property
    def is_sequential(self):
        """Whether every layer reads the previous one's output (the toolbox's networks)."""
        return all(source == [k] for k, source in enumerate(self._sources))

    def node(self, key):
        """The Node named ``key`` (or at index ``key``)."""
        if isinstance(key, numbers.Integral) and not isinstance(key, bool):
            if not -len(self.nodes) <= key < len(self.nodes):
                raise IndexError(f"node index {key} is outside the network (0..{len(self.nodes) - 1})")
            return self.nodes[key]
        if key not in self._index or key == INPUT:
            known = ", ".join(repr(node.name) for node in self.nodes[:20])
            raise KeyError(f"no node named {key!r}; nodes: {known}{', ...' if len(self.nodes) > 20 else ''}")
        return self.nodes[self._index[key] - 1]

    @property
    def device(self):
        """'cpu' or 'cuda': where the kernels run."""
        return self._backend.name

    @property
    def backend(self):
        """The compute backend of this network's device (kernel modules, and
        moving arrays to the device and back)."""
        return self._backend

    def to_host(self, array):
        """A result of this network's backend as a numpy array."""
        return self._host(array)

    def to(self, device):
        """Run on ``device`` ('cpu', 'cuda' or 'auto') from now on (returns self).

        Weights are copied to the GPU once, on first use, and kept there.
        """
        self._backend = backend(device)
        self._activations = None
        return self

    def __repr__(self):
        if self.is_sequential:
            body = "".join(f"\n  {k}: {layer.describe()}" for k, layer in enumerate(self.layers))
        else:
            body = "".join(f"\n  {k}: {node.name} = {node.layer.describe()} <- {', '.join(node.inputs)}"
                           for k, node in enumerate(self.nodes))
        return f"Network({len(self.layers)} layers, {self.device}){body}"

    def __len__(self):
        return len(self.layers)

    # ------------------------------------------------------------ presets
    def set_lrp_parameters(self, rule=None, param=None, nodes=None):
        """Preset the same LRP rule on every layer, or on the ``nodes`` given
        by name or index."""
        resolve(rule, param)
        layers = self.layers if nodes is None else [self.node(key).layer for key in nodes]
        for layer in layers:
            layer.set_lrp_parameters(rule, param)

    def drop_softmax_output_layer(self):
        """Remove a final SoftMax layer, if there is one (returns self)."""
        if self.layers and isinstance(self.layers[-1], SoftMax):
            self._set_nodes(self.nodes[:-1])
        return self

    # ------------------------------------------------------------ shapes
    def output_shapes(self, shape, layers=None):
        """Shapes after each layer (node) for an input of ``shape``; with
        ``layers``, a leading part of ``self.layers``, after those only.

        Raises ValueError naming the first layer the input does not fit.
        """
        count = len(self.layers) if layers is None else len(layers)
        shapes = [tuple(int(s) for s in shape)]
        for k in range(count):
            layer = self.layers[k]
            inputs = [shapes[i] for i in self._sources[k]]
            try:
                out = layer.output_shape(inputs[0] if layer.arity == 1 else inputs)
                shapes.append(tuple(int(s) for s in out))
            except ValueError as error:
                where = f"layer {k}" if self.is_sequential else f"node {k} ({self.nodes[k].name!r})"
                raise ValueError(f"input does not fit {where} ({layer.describe()}): {error}") from None
        return shapes[1:]

    # ------------------------------------------------------------ passes
    def _input(self, X, what="X"):
        """(X on this network's device, the kind of array to answer with).

        On the GPU, numpy input is copied there and GPU input (numba device
        arrays, anything with ``__cuda_array_interface__``) is used in place.
        """
        if self._backend is CPU:
            return _as_input(X, what), None
        arrays = self._backend.arrays
        X, kind = arrays.to_device(X, what)
        if X.ndim < 2 or X.shape[0] == 0:
            raise ValueError(f"{what} must be a batch of shape (N, ...) with N >= 1, got shape {X.shape}")
        bad = arrays.first_nonfinite_sample(X)
        if bad is not None:
            raise ValueError(f"{what} contains NaN or infinite values (first in sample {bad})")
        return X, kind

    def _output(self, array, kind):
        return array if kind is None else self._backend.arrays.from_device(array, kind)

    def _host(self, array):
        return array if self._backend is CPU else array.copy_to_host()

    def _inputs(self, values, k):
        """Node k's input: one array, or a list for the layers that join several."""
        if self.layers[k].arity == 1:
            return values[self._sources[k][0]]
        return [values[i] for i in self._sources[k]]

    def _trace(self, X, layers):
        """Forward through ``layers`` (a leading part of self.layers), keeping
        every value: X first, then each layer's output."""
        self.output_shapes(X.shape, layers)
        values = [X]
        with single_threaded_blas():
            for k, layer in enumerate(layers):
                values.append(layer.forward(self._inputs(values, k), self._backend))
        return values

    def _plan(self, layers, rule, param, composite):
        """(rule of every layer in ``layers``, whole-network gradient method or None)."""
        if composite is not None:
            if rule is not None or param is not None:
                raise ValueError("give either a rule (with its param) or a composite, not both")
            if not hasattr(composite, "rules"):
                raise TypeError(f"composite must be an lrpnb composite, got {type(composite).__name__}")
            return composite.rules(self.layers)[:len(layers)], composite.method
        if rule is None and param is None:
            return [resolve(layer.lrp_var, layer.lrp_param) for layer in layers], None
        name, value = resolve(rule, param)
        return [(name, value)] * len(layers), (name if name in GRADIENT_METHODS else None)

    def _backward(self, activations, R, layers, rules, sums=None, keep=None):
        """Relevance at the network's input for relevance R at the output of
        ``layers[-1]``.

        With a list ``sums``, each sample's relevance summed at the output of
        every layer is appended to it, last layer first (on the host). With
        a dict ``keep`` of value indices, the relevance at those values
        (k + 1: layer k's output) is stored in it. The relevance a value
        receives from several layers is summed, in layer order from the last.
        """
        # a gradient method's layers all pass the gradient (or deconvnet's or
        # guided backprop's signal) back: LAYER_MODE names which
        received = [None] * len(activations)
        received[len(layers)] = R
        tensors = self._backend.tensors
        with single_threaded_blas():
            for k in range(len(layers) - 1, -1, -1):
                R, received[k + 1] = received[k + 1], None
                if sums is not None:
                    sums.append(self._host(self._backend.activations.sample_sums(R)) if R is not None
                                else np.zeros(activations[0].shape[0]))
                if keep is not None and k + 1 in keep:
                    keep[k + 1] = R
                if R is None:  # nothing of the output depends on this layer
                    continue
                name, value = rules[k]
                layer = self.layers[k]
                out = layer.relevance(self._inputs(activations, k), activations[k + 1], R,
                                      LAYER_MODE.get(name, name), value, self._backend)
                for source, part in zip(self._sources[k], [out] if layer.arity == 1 else out):
                    received[source] = part if received[source] is None else \
                        tensors.add_forward([received[source], part])
        R = received[0]
        if R is None:  # an output that does not depend on the input
            R = self._backend.put(np.zeros(activations[0].shape, dtype=activations[0].dtype))
        return R

    def _finish(self, method, X, G):
        """The last step of a gradient method: the norm over channels for
        sensitivity, the product with the input for gradient x input."""
        if method == "sensitivity":
            if G.ndim == 2:  # vectors have no channel axis: each value is its own norm
                return self._backend.activations.channel_norm(G.reshape(G.shape + (1,))).reshape(G.shape)
            return self._backend.activations.channel_norm(G)
        if method == "gradient_x_input":
            return self._backend.activations.times_input(X, G)
        return G

    def set_composite(self, composite):
        """Preset every layer's rule from a composite (see lrpnb.composites)."""
        for layer, (name, value) in zip(self.layers, composite.rules(self.layers)):
            layer.set_lrp_parameters(name, value)

    def forward(self, X):
        """Output of the network for a batch ``X``, in X's float dtype.

        Accepts numpy arrays, and GPU arrays on a network on the GPU; answers
        with the same kind. The activations are kept for a following
        :meth:`lrp` call.
        """
        X, kind = self._input(X)
        self._activations = self._trace(X, self.layers)
        return self._output(self._activations[-1], kind)

    def scores(self, X):
        """Class scores of a batch ``X``: the output before a final SoftMax.

        Unlike :meth:`forward`, this keeps no activations (memory holds two
        layers' outputs at a time) and no state, so several threads may call
        it at once. Answers with X's kind of array, in X's float dtype.
        """
        X, kind = self._input(X)
        return self._output(self._scores(X), kind)

    def _scoring_layers(self):
        layers = self.layers
        return layers[:-1] if layers and isinstance(layers[-1], SoftMax) else layers

    def _scores(self, X):
        """scores() of an input already on this network's device and checked."""
        layers = self._scoring_layers()
        self.output_shapes(X.shape, layers)
        # every value is dropped after its last reader
        last_use = {}
        for k in range(len(layers)):
            for source in self._sources[k]:
                last_use[source] = k
        values = {0: X}
        with single_threaded_blas():
            for k, layer in enumerate(layers):
                values[k + 1] = layer.forward(self._inputs(values, k), self._backend)
                for source in self._sources[k]:
                    if last_use[source] == k:
                        values.pop(source, None)
        return values[len(layers)]

    def lrp(self, R, rule=None, param=None):
        """Input relevance for output relevance ``R`` of the last forward().

        As the toolbox's ``Sequential.lrp``: an explicit ``rule`` (with its
        ``param``) applies to every layer; with neither given, each layer uses
        its preset (default 'simple').
        """
        if self._activations is None:
            raise RuntimeError("lrp() needs the activations of a forward() call; call forward(X) first")
        out = self._activations[-1]
        if isinstance(R, np.ndarray) and R.dtype != out.dtype and R.dtype.kind in "biuf":
            R = R.astype(out.dtype)
        R, kind = self._input(R, "R")
        if R.shape != out.shape:
            raise ValueError(f"R must have the shape of the last output {out.shape}, got {R.shape}")
        if R.dtype != out.dtype:
            if self._backend is not CPU:
                raise ValueError(f"R must have the dtype of the last output ({out.dtype}), got {R.dtype}")
            R = R.astype(out.dtype)
        rules, method = self._plan(self.layers, rule, param, None)
        relevance = self._backward(self._activations, R, self.layers, rules)
        return self._output(self._finish(method, self._activations[0], relevance), kind)

    def explain(self, X, target=None, rule=None, param=None, composite=None, return_scores=False,
                return_layer_sums=False, layers=None):
        """Relevance of every input element for the score of a target class.

        Parameters
        ----------
        X : array (N, ...)
            Input batch; float32 stays float32, other dtypes become float64.
            On a network on the GPU, a numpy array or a GPU array (answered
            with the same kind).
        target : None, int, int array of length N, 'all' or ('topk', k)
            Class to explain: None for each sample's predicted class. 'all'
            explains every class and ('topk', k) each sample's k best
            classes, from one forward pass.
        rule, param : str, float
            LRP rule or gradient method for every layer; neither given uses
            the layer presets.
        composite : lrpnb composite, optional
            A rule per layer instead of ``rule``.
        return_scores : bool
            Also return the class scores (N, C) of the forward pass (before
            a final SoftMax), as a numpy array.
        return_layer_sums : bool
            Also return the relevance summed over each sample at the input
            of every layer: a float64 numpy array (N, L + 1), or (N, T, L + 1)
            for several targets, L the number of layers explained (a final
            SoftMax is not). Column k is the sum at layer k's input (column 0
            the sum of the returned relevance), column L the explained score.
            LRP's conservation (Bach et al., PLOS ONE 10(7), 2015) says the
            columns are equal, up to what biases and stabilizers absorb.
            In a graph, column k + 1 is the sum at node k's output.
        layers : sequence of str or int, optional
            Nodes (by name or index) whose output's relevance is also
            returned, as a dict {name: array} shaped like each node's output
            (with the target axis for several targets).

        Returns
        -------
        array shaped like X, or (N, T) + X.shape[1:] for T targets per
        sample; then the scores, with ``return_scores``, the layer sums,
        with ``return_layer_sums``, and the dict of ``layers``. LRP starts from
        the score of the target class (before a final SoftMax), all other
        outputs zero; the gradient methods start from 1
        there. No state is kept on the network, so several threads may call
        this at once.
        """
        X, kind = self._input(X)
        scoring = self._scoring_layers()
        rules, method = self._plan(scoring, rule, param, composite)
        keep = self._kept_values(layers, len(scoring))
        parts = self._batch_parts(X, scoring, target)
        if len(parts) == 1:
            relevance, scores, sums, kept = self._explain(X, target, scoring, rules, method, return_layer_sums,
                                                          keep)
        else:
            # a target per sample goes with its samples; any other target applies to every part
            per_sample = target is not None and not isinstance(target, (str, tuple)) and np.ndim(target) == 1
            if per_sample and len(target) != X.shape[0]:
                raise ValueError(f"target has {len(target)} entries for {X.shape[0]} samples")
            pieces = [self._explain(X[n0:n1], np.asarray(target)[n0:n1] if per_sample else target,
                                    scoring, rules, method, return_layer_sums, keep) for n0, n1 in parts]
            concatenate = self._backend.arrays.concatenate
            relevance = concatenate([piece[0] for piece in pieces])
            scores = np.concatenate([piece[1] for piece in pieces])
            sums = np.concatenate([piece[2] for piece in pieces]) if return_layer_sums else None
            kept = {name: concatenate([piece[3][name] for piece in pieces]) for name in pieces[0][3]}
        answer = (self._output(relevance, kind),)
        answer += (scores,) if return_scores else ()
        answer += (sums,) if return_layer_sums else ()
        answer += ({name: self._output(value, kind) for name, value in kept.items()},) if layers is not None else ()
        return answer if len(answer) > 1 else answer[0]

    def _kept_values(self, keys, count):
        """{value index: node name} of the nodes explain(layers=keys) asks for."""
        if keys is None:
            return {}
        if isinstance(keys, (str, numbers.Integral)):
            raise TypeError(f"layers must be a list of node names or indices, got {keys!r}")
        keep = {}
        for key in keys:
            node = self.node(key)
            value = self._index[node.name]
            if value > count:
                raise ValueError(f"node {node.name!r} is the final SoftMax, which explain() leaves out")
            keep[value] = node.name
        return keep

    def _batch_parts(self, X, layers, target):
        """(n0, n1) parts of the batch X to explain one after the other: on the
        GPU, as many samples at a time as fit half of the free device memory
        with everything a pass keeps (activations, one copy per target for
        several targets, and the relevance of two layers at a time); on the
        CPU, all of them."""
        N = X.shape[0]
        if self._backend is CPU:
            return [(0, N)]
        shapes = [tuple(X.shape)] + self.output_shapes(X.shape, layers)
        classes = shapes[-1][1] if len(shapes[-1]) == 2 else 1
        targets = classes if isinstance(target, (str, tuple)) else 1  # ('topk', k): k <= classes
        largest = max(int(np.prod(shape[1:])) for shape in shapes)
        per_sample = (sum(int(np.prod(shape[1:])) for shape in shapes) * (1 + targets)
                      + 2 * largest * targets) * X.dtype.itemsize
        size = max(1, min(N, self._backend.arrays.free_memory() // 2 // per_sample))
        return [(n0, min(n0 + size, N)) for n0 in range(0, N, size)]

    def _explain(self, X, target, layers, rules, method, layer_sums=False, keep=None):
        """(relevance on this network's device, scores on the host, layer
        sums on the host or None, {name: relevance at that node's output})
        of explain(); ``keep`` maps value indices to node names."""
        keep = keep or {}
        activations = self._trace(X, layers)
        scores = self._host(activations[-1])
        if scores.ndim != 2:
            raise ValueError(f"explain() needs class scores of shape (N, C); "
                             f"the network outputs shape {scores.shape}")
        targets = target_classes(target, scores)
        N, T = targets.shape
        # several targets share the forward pass; their relevance passes run
        # as batches of the samples repeated once per target, up to
        # TARGET_ROWS rows on the CPU (larger batches fall out of cache and
        # cost more than they save) and all at once on the GPU
        group = T if self._backend is not CPU else max(1, min(T, TARGET_ROWS // N))
        parts, sum_parts, kept_parts = [], [], {value: [] for value in keep}
        for first in range(0, T, group):
            chosen = targets[:, first:first + group].reshape(-1)
            G = len(chosen) // N
            repeated = activations if G == 1 else [self._repeat(a, G) for a in activations]
            rows = np.arange(N * G)
            start = np.zeros((N * G, scores.shape[1]), dtype=scores.dtype)
            start[rows, chosen] = 1 if method else np.repeat(scores, G, axis=0)[rows, chosen]
            sums = [] if layer_sums else None
            kept = dict.fromkeys(keep) if keep else None
            relevance = self._backward(repeated, self._backend.put(start), layers, rules, sums, kept)
            relevance = self._finish(method, repeated[0], relevance)
            parts.append(relevance.reshape((N, G) + tuple(relevance.shape[1:])))
            for value in keep:
                kept_parts[value].append(kept[value].reshape((N, G) + tuple(kept[value].shape[1:])))
            if layer_sums:
                # the layers' outputs came last layer first; the input's sum is of the answer
                sums = [self._host(self._backend.activations.sample_sums(relevance))] + sums[::-1]
                sum_parts.append(np.stack(sums, axis=1).reshape(N, G, len(sums)))
        join = (lambda pieces: pieces[0]) if len(parts) == 1 else (lambda pieces: np.concatenate(pieces, axis=1))
        relevance = join(parts)
        kept = {keep[value]: join(pieces) for value, pieces in kept_parts.items()}
        sums = join(sum_parts) if layer_sums else None
        if target is None or not isinstance(target, (str, tuple)):
            relevance = relevance.reshape((N,) + tuple(relevance.shape[2:]))
            kept = {name: value.reshape((N,) + tuple(value.shape[2:])) for name, value in kept.items()}
            sums = None if sums is None else sums[:, 0]
        return relevance, scores, sums, kept

    # ------------------------------------------------------------ training
    def parameter_gradients(self, X, loss):
        """Gradients of a loss with respect to every weight and bias.

        Parameters
        ----------
        X : array (N, ...)
            Input batch.
        loss : callable
            ``loss(scores) -> (value, dL/dscores)`` on the host, where scores
            are the outputs before a final SoftMax layer (if there is one).

        Returns
        -------
        value, [(layer, dW, dB)] for every Linear and Convolution layer in
        order, dW and dB as numpy arrays in X's float dtype.
        """
        if not self.is_sequential:
            raise ValueError("training supports sequential networks only")
        X, _ = self._input(X)
        layers = self._scoring_layers()
        activations = self._trace(X, layers)
        value, G = loss(self._host(activations[-1]))
        G = self._backend.put(np.ascontiguousarray(G, dtype=X.dtype))
        gradients = []
        with single_threaded_blas():
            for k in range(len(layers) - 1, -1, -1):
                layer, inputs = layers[k], activations[k]
                if isinstance(layer, _Weighted):
                    dW, dB = layer.parameter_gradient(inputs, G, self._backend)
                    gradients.append((layer, self._host(dW), self._host(dB)))
                if k > 0:
                    G = layer.relevance(inputs, activations[k + 1], G, "gradient", None, self._backend)
        return value, gradients[::-1]

    def train(self, X, Y, Xval=None, Yval=None, **options):
        """Mini-batch SGD on the softmax cross-entropy, as the toolbox's
        ``Sequential.train``; see :func:`lrpnb.training.train` for the options.
        Returns the training history."""
        from .training import train

        return train(self, X, Y, Xval, Yval, **options)

    def _repeat(self, array, times):
        """Each sample ``times`` times in a row (on the GPU, on the device)."""
        if self._backend is CPU:
            return np.repeat(array, times, axis=0)
        return self._backend.arrays.repeat(array, times)
