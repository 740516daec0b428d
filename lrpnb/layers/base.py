"""The layer protocol, layers with weights, and the checks of layer arguments.

A layer computes its output with a backend's kernels (``forward``) and
passes relevance from its output to its input under a :class:`~lrpnb.rules.Rule`
(``relevance``). Semantics are the LRP Toolbox's (Lapuschkin et al., JMLR
17(114), 2016): images are (N, H, W, D), vectors (N, D). Which kernel and
which stabilizer each rule uses is written once per layer family, in the
``propagate`` method of its module (``lrpnb/layers/<family>.py``).
"""
import numbers

import numpy as np

from ..backends import CPU
from ..rules import Rule

__all__ = ["Layer", "Weighted"]


def pair(value, what, layer):
    """A (rows, columns) pair of positive ints from an int or a 2-sequence."""
    if isinstance(value, numbers.Integral):
        value = (value, value)
    try:
        values = tuple(value)
    except TypeError:
        raise ValueError(f"{layer}: {what} must be an int or a pair of ints, got {value!r}") from None
    if len(values) != 2 or not all(isinstance(v, numbers.Integral) or
                                   (isinstance(v, (float, np.floating)) and float(v).is_integer())
                                   for v in values):
        raise ValueError(f"{layer}: {what} must be an int or a pair of ints, got {value!r}")
    values = tuple(int(v) for v in values)
    if min(values) < 1:
        raise ValueError(f"{layer}: {what} must be positive, got {values}")
    return values


def parameter_array(value, ndim, what, layer):
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


def padding_sides(value, layer):
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


NO_PADDING = (0, 0, 0, 0)


def output_size(size, window, stride):
    """Output length of a valid (unpadded) window sweep."""
    return (size - window) // stride + 1


def filter_text(kind, W, stride, padding, dilation, groups, **extra):
    """A convolution-like layer's describe(): its kind, filter shape and
    strides, then what is not the default (padding, ``extra`` such as an
    output padding as name=(a, b), dilation, groups)."""
    text = f"{kind} {' '.join(map(str, W.shape))} {stride[0]} {stride[1]}"
    if padding != NO_PADDING:
        text += " pad " + ",".join(map(str, padding))
    for name, value in extra.items():
        if any(value):
            text += f" {name} " + ",".join(map(str, value))
    if dilation != (1, 1):
        text += " dilation " + ",".join(map(str, dilation))
    if groups != 1:
        text += f" groups {groups}"
    return text


def dilated_span(W, dilation):
    """(rows, columns) a filter W (h, w, ...) spans with ``dilation``."""
    h, w = W.shape[:2]
    return (h - 1) * dilation[0] + 1, (w - 1) * dilation[1] + 1


def window_text(h, w, d, padding):
    """The input shape a window of h x w fits, for the error messages."""
    top, bottom, left, right = padding
    rows = f"H>={h}" if top + bottom == 0 else f"H>={max(0, h - top - bottom)}"
    columns = f"W>={w}" if left + right == 0 else f"W>={max(0, w - left - right)}"
    return f"(N, {rows}, {columns}, {d})"


def shape_text(shape):
    """A batch shape with its sample axis written N."""
    return "(" + ", ".join(["N"] + [str(s) for s in shape[1:]]) + ")"


class Layer:
    """Base class: a layer that passes data and relevance through unchanged.

    Every layer carries an LRP rule preset (``lrp_var``, ``lrp_param``), used by
    ``Network.lrp`` when no rule is given there. A layer family defines
    ``forward`` and ``propagate``; ``relevance`` makes the Rule.
    """

    #: whether the LRP Toolbox's model formats can hold this layer
    toolbox = True
    #: how many inputs the layer takes (None: two or more, given as a list)
    arity = 1
    #: whether the preset was set on this layer itself (``set_lrp_parameters``
    #: here, or on the network naming its node), rather than never or for the
    #: whole network: a join (Add, average pool) keeps only such a preset
    lrp_explicit = False
    #: whether the layer joins values without weights of its own (Add, the
    #: average pools): under one LRP rule for the whole network it takes
    #: zennit's Norm rule (rules.NORM), as zennit's Sum and AvgPool do
    #: whatever the composite; the toolbox's SumPool is no join here
    join = False

    def __init__(self):
        self.lrp_var = None
        self.lrp_param = None

    def set_lrp_parameters(self, rule=None, param=None):
        """Preset the LRP rule of this layer (validated now, used by lrp())."""
        Rule(rule, param)
        self.lrp_var, self.lrp_param = rule, param
        self.lrp_explicit = True

    @property
    def preset(self):
        """The Rule of this layer's preset ('simple' unless set)."""
        return Rule(self.lrp_var, self.lrp_param)

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

    def relevance(self, X, Y, R, rule, param=None, backend=CPU):
        """Input relevance for output relevance ``R``, given this layer's input
        ``X`` and output ``Y``, under ``rule``: a Rule, or a canonical rule
        name with its ``param``, taken as given (the kernels' direct use).
        For a gradient method, the (modified) gradient."""
        if not isinstance(rule, Rule):
            rule = Rule.unchecked(rule, param)
        return self.propagate(X, Y, R, rule, backend)

    def propagate(self, X, Y, R, rule, backend):
        """:meth:`relevance` with a :class:`~lrpnb.rules.Rule`; this layer
        passes relevance unchanged."""
        return R

    def cached(self, key, make):
        """``make()``, computed once per ``key`` until the layer's parameters
        change (their setters empty the cache): parameters prepared for a
        dtype and a device."""
        casts = self.__dict__.setdefault("_casts", {})
        if key not in casts:
            casts[key] = make()
        return casts[key]

    def __getstate__(self):
        # device copies are made again where the layer is used
        return dict(self.__dict__, _casts={})


class Weighted(Layer):
    """A layer with weights W and bias B, kept as given (float32 or float64)
    and cast once per input dtype and device."""

    #: dimensions of W
    weight_ndim = 2

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
        self._W = parameter_array(value, self.weight_ndim, "W", type(self).__name__)
        self._casts = {}

    @property
    def B(self):
        return self._B

    @B.setter
    def B(self, value):
        # the toolbox's Matlab port stores biases as 1 x n rows
        self._B = parameter_array(np.ravel(value), 1, "B", type(self).__name__)
        self._casts = {}

    def _check_bias(self):
        if self._B.shape != (self._W.shape[-1],):
            raise ValueError(f"{type(self).__name__}: B must have {self._W.shape[-1]} values "
                             f"(one per output), got {self._B.size}")

    def weights(self, dtype, backend=CPU):
        """(W, B) in ``dtype`` on ``backend``'s device: cast and copied once, then cached."""
        return self.cached((backend.name, dtype), lambda: (backend.put(self._W.astype(dtype, copy=False)),
                                                           backend.put(self._B.astype(dtype, copy=False))))

    def parameter_gradient(self, X, G, backend=CPU):
        """(dL/dW, dL/dB) for this layer's input ``X`` and output gradient ``G``."""
        raise NotImplementedError



def bounds(param, channels, dtype, backend):
    """The z^B rule's (low, high) as one value per input channel, in dtype, on the device."""
    out = []
    for bound, what in zip(param, ("low", "high")):
        bound = np.broadcast_to(bound, (channels,)) if bound.size == 1 else bound
        if bound.shape != (channels,):
            raise ValueError(f"the 'zb' rule's {what} bound has {bound.size} values for {channels} "
                             f"input channels")
        out.append(backend.put(np.ascontiguousarray(bound, dtype=dtype)))
    return out
