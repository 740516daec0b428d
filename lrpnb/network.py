"""Layers and the Network that chains them.

This module holds the model's structure, checks shapes and arguments, and
dispatches every forward and relevance pass to a compiled kernel in
``lrpnb.kernels``; it does no numerics of its own. The semantics are those of
the LRP Toolbox (Lapuschkin et al., JMLR 17(114), 2016): images are
(N, H, W, D), vectors (N, D), and ``Network.lrp`` is its ``Sequential.lrp``.
"""
import numbers

import numpy as np

from .backends import CPU, backend
from .kernels import single_threaded_blas
from .rules import (ALPHABETA_STABILIZER, GRADIENT_METHODS, LAYER_MODE, SIMPLE_STABILIZER,
                    SUMPOOL_SIMPLE_STABILIZER, ZENNIT_STABILIZER, resolve)

#: rows (samples x targets) per relevance pass when explaining several targets
#: on the CPU (measured on LeNet-5: 256 keeps the activations in cache)
TARGET_ROWS = 256

#: rule names every layer's backward pass recognizes besides the LRP rules
_BACKWARD = ("gradient", "deconvnet", "guided_backprop")

__all__ = ["Layer", "Linear", "Convolution", "SumPool", "MaxPool", "Rect", "Tanh",
           "SoftMax", "Flatten", "Network"]

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


def _shape_text(shape):
    return "(" + ", ".join(["N"] + [str(s) for s in shape[1:]]) + ")"


class Layer:
    """Base class: a layer that passes data and relevance through unchanged.

    Every layer carries an LRP rule preset (``lrp_var``, ``lrp_param``), used by
    ``Network.lrp`` when no rule is given there.
    """

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
    """Convolution without padding; W of shape (h, w, d, n), B of shape (n,)."""

    _weight_ndim = 4

    def __init__(self, W, B, stride=(1, 1)):
        super().__init__(W, B)
        self._check_bias()
        self.stride = _pair(stride, "stride", "Convolution")

    def describe(self):
        h, w, d, n = self.W.shape
        return f"Convolution {h} {w} {d} {n} {self.stride[0]} {self.stride[1]}"

    def output_shape(self, shape):
        h, w, d, n = self.W.shape
        if len(shape) != 4 or shape[3] != d or shape[1] < h or shape[2] < w:
            raise ValueError(f"expects input of shape (N, H>={h}, W>={w}, {d}), "
                             f"got {_shape_text(shape)}")
        return (shape[0], _output_size(shape[1], h, self.stride[0]),
                _output_size(shape[2], w, self.stride[1]), n)

    def forward(self, X, backend=CPU):
        W, B = self.weights(X.dtype, backend)
        return backend.conv.conv_forward(X, W, B, *self.stride)

    def parameter_gradient(self, X, G, backend=CPU):
        return backend.conv.conv_weight_gradient(X, G, *self.W.shape[:2], *self.stride)

    def relevance(self, X, Y, R, rule, param, backend=CPU):
        W, B = self.weights(X.dtype, backend)
        t = X.dtype.type
        conv = backend.conv
        if rule in _BACKWARD:
            return conv.conv_backward(X, W, R, *self.stride)
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
            low, high = _bounds(param, self.W.shape[2], X.dtype, backend)
            return conv.conv_relevance_zbox(X, W, R, *self.stride, low, high, t(ZENNIT_STABILIZER))
        epsilon = SIMPLE_STABILIZER if rule == "simple" else param
        return conv.conv_relevance_epsilon(X, W, Y, R, *self.stride, t(epsilon))


class _Pool(Layer):
    def __init__(self, pool=(2, 2), stride=(2, 2)):
        super().__init__()
        self.pool = _pair(pool, "pool", type(self).__name__)
        self.stride = _pair(stride, "stride", type(self).__name__)

    def describe(self):
        return f"{type(self).__name__} {self.pool[0]} {self.pool[1]} {self.stride[0]} {self.stride[1]}"

    def output_shape(self, shape):
        hp, wp = self.pool
        if len(shape) != 4 or shape[1] < hp or shape[2] < wp:
            raise ValueError(f"expects input of shape (N, H>={hp}, W>={wp}, D), "
                             f"got {_shape_text(shape)}")
        return (shape[0], _output_size(shape[1], hp, self.stride[0]),
                _output_size(shape[2], wp, self.stride[1]), shape[3])


class SumPool(_Pool):
    """Sum pooling, scaled by 1/sqrt(hp*wp) as in the toolbox."""

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
    """Max pooling; relevance goes to the maxima (flat and ww: uniformly)."""

    def forward(self, X, backend=CPU):
        return backend.pool.maxpool_forward(X, *self.pool, *self.stride)

    def relevance(self, X, Y, R, rule, param, backend=CPU):
        if rule in _BACKWARD:
            return backend.pool.maxpool_backward(X, Y, R, *self.pool, *self.stride)
        if rule in ("flat", "ww"):
            return backend.pool.pool_relevance_uniform(X, R, *self.pool, *self.stride)
        return backend.pool.maxpool_relevance_winners(X, Y, R, *self.pool, *self.stride)


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


class Tanh(Layer):
    """Hyperbolic tangent."""

    def forward(self, X, backend=CPU):
        return backend.activations.tanh_forward(X)

    def relevance(self, X, Y, R, rule, param, backend=CPU):
        if rule in _BACKWARD:
            return backend.activations.tanh_backward(Y, R)
        return R


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


class Network:
    """A sequence of layers: forward passes and LRP explanations.

    Parameters
    ----------
    layers : sequence of Layer
        Applied in order.
    device : {'cpu', 'cuda', 'auto'}
        Where the kernels run; 'auto' takes the GPU when one is usable.
    """

    def __init__(self, layers, device="cpu"):
        layers = list(layers)
        for k, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {k} is a {type(layer).__name__}, not an lrpnb layer")
        self.layers = layers
        self._activations = None
        self._backend = backend(device)

    @property
    def device(self):
        """'cpu' or 'cuda': where the kernels run."""
        return self._backend.name

    def to(self, device):
        """Run on ``device`` ('cpu', 'cuda' or 'auto') from now on (returns self).

        Weights are copied to the GPU once, on first use, and kept there.
        """
        self._backend = backend(device)
        self._activations = None
        return self

    def __repr__(self):
        body = "".join(f"\n  {k}: {layer.describe()}" for k, layer in enumerate(self.layers))
        return f"Network({len(self.layers)} layers, {self.device}){body}"

    def __len__(self):
        return len(self.layers)

    # ------------------------------------------------------------ presets
    def set_lrp_parameters(self, rule=None, param=None):
        """Preset the same LRP rule on every layer."""
        resolve(rule, param)
        for layer in self.layers:
            layer.set_lrp_parameters(rule, param)

    def drop_softmax_output_layer(self):
        """Remove a final SoftMax layer, if there is one (returns self)."""
        if self.layers and isinstance(self.layers[-1], SoftMax):
            self.layers.pop()
        return self

    # ------------------------------------------------------------ shapes
    def output_shapes(self, shape, layers=None):
        """Shapes after each layer for an input of ``shape``.

        Raises ValueError naming the first layer the input does not fit.
        """
        shapes = []
        for k, layer in enumerate(self.layers if layers is None else layers):
            try:
                shape = tuple(int(s) for s in layer.output_shape(tuple(shape)))
            except ValueError as error:
                raise ValueError(f"input does not fit layer {k} ({layer.describe()}): {error}") from None
            shapes.append(shape)
        return shapes

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

    def _trace(self, X, layers):
        """Forward through ``layers``, keeping every activation (X first)."""
        self.output_shapes(X.shape, layers)
        activations = [X]
        with single_threaded_blas():
            for layer in layers:
                activations.append(layer.forward(activations[-1], self._backend))
        return activations

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

    def _backward(self, activations, R, layers, rules, sums=None):
        """Relevance at the input of ``layers[0]``; with a list ``sums``, each
        sample's relevance summed at the output of every layer is added to it,
        last layer first (on the host)."""
        # a gradient method's layers all pass the gradient (or deconvnet's or
        # guided backprop's signal) back: LAYER_MODE names which
        with single_threaded_blas():
            for layer, (name, value), X, Y in zip(layers[::-1], rules[::-1],
                                                  activations[-2::-1], activations[::-1]):
                if sums is not None:
                    sums.append(self._host(self._backend.activations.sample_sums(R)))
                R = layer.relevance(X, Y, R, LAYER_MODE.get(name, name), value, self._backend)
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
        with single_threaded_blas():
            for layer in layers:
                X = layer.forward(X, self._backend)
        return X

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
                return_layer_sums=False):
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

        Returns
        -------
        array shaped like X, or (N, T) + X.shape[1:] for T targets per
        sample; then the scores, with ``return_scores``, and the layer sums,
        with ``return_layer_sums``. LRP starts from
        the score of the target class (before a final SoftMax), all other
        outputs zero; the gradient methods start from 1
        there. No state is kept on the network, so several threads may call
        this at once.
        """
        X, kind = self._input(X)
        layers = self._scoring_layers()
        rules, method = self._plan(layers, rule, param, composite)
        parts = self._batch_parts(X, layers, target)
        if len(parts) == 1:
            relevance, scores, sums = self._explain(X, target, layers, rules, method, return_layer_sums)
        else:
            # a target per sample goes with its samples; any other target applies to every part
            per_sample = target is not None and not isinstance(target, (str, tuple)) and np.ndim(target) == 1
            if per_sample and len(target) != X.shape[0]:
                raise ValueError(f"target has {len(target)} entries for {X.shape[0]} samples")
            pieces = [self._explain(X[n0:n1], np.asarray(target)[n0:n1] if per_sample else target,
                                    layers, rules, method, return_layer_sums) for n0, n1 in parts]
            relevance = self._backend.arrays.concatenate([piece[0] for piece in pieces])
            scores = np.concatenate([piece[1] for piece in pieces])
            sums = np.concatenate([piece[2] for piece in pieces]) if return_layer_sums else None
        answer = (self._output(relevance, kind),)
        answer += (scores,) if return_scores else ()
        answer += (sums,) if return_layer_sums else ()
        return answer if len(answer) > 1 else answer[0]

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

    def _explain(self, X, target, layers, rules, method, layer_sums=False):
        """(relevance on this network's device, scores on the host, layer
        sums on the host or None) of explain()."""
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
        parts, sum_parts = [], []
        for first in range(0, T, group):
            chosen = targets[:, first:first + group].reshape(-1)
            G = len(chosen) // N
            repeated = activations if G == 1 else [self._repeat(a, G) for a in activations]
            rows = np.arange(N * G)
            start = np.zeros((N * G, scores.shape[1]), dtype=scores.dtype)
            start[rows, chosen] = 1 if method else np.repeat(scores, G, axis=0)[rows, chosen]
            sums = [] if layer_sums else None
            relevance = self._backward(repeated, self._backend.put(start), layers, rules, sums)
            relevance = self._finish(method, repeated[0], relevance)
            parts.append(relevance.reshape((N, G) + tuple(relevance.shape[1:])))
            if layer_sums:
                # the layers' outputs came last layer first; the input's sum is of the answer
                sums = [self._host(self._backend.activations.sample_sums(relevance))] + sums[::-1]
                sum_parts.append(np.stack(sums, axis=1).reshape(N, G, len(sums)))
        relevance = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        sums = None
        if layer_sums:
            sums = sum_parts[0] if len(sum_parts) == 1 else np.concatenate(sum_parts, axis=1)
        if target is None or not isinstance(target, (str, tuple)):
            relevance = relevance.reshape((N,) + tuple(relevance.shape[2:]))
            sums = None if sums is None else sums[:, 0]
        return relevance, scores, sums

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


def target_classes(target, scores):
    """The (N, T) classes ``explain(X, target)`` explains, given the class
    ``scores`` (N, C) of X: the same rules for the command line and files."""
    N, C = scores.shape
    if isinstance(target, str):
        if target != "all":
            raise ValueError(f"target must be None, an int, an int array, 'all' or ('topk', k); got {target!r}")
        return np.tile(np.arange(C), (N, 1))
    if isinstance(target, tuple):
        if len(target) != 2 or target[0] != "topk" or not isinstance(target[1], numbers.Integral) \
                or not 1 <= target[1] <= C:
            raise ValueError(f"target ('topk', k) needs 1 <= k <= {C}, got {target!r}")
        return np.argsort(-scores, axis=1, kind="stable")[:, :target[1]]
    if target is None:
        return np.argmax(scores, axis=1)[:, None]
    target = np.asarray(target)
    if target.dtype.kind not in "iu" or target.ndim > 1:
        raise ValueError(f"target must be None, an int or an int array of length {N}, got {target!r}")
    target = np.broadcast_to(target, (N,)) if target.ndim == 0 else target
    if target.shape != (N,):
        raise ValueError(f"target has {target.shape[0]} entries for {N} samples")
    if target.min() < 0 or target.max() >= C:
        raise ValueError(f"target classes must lie in 0..{C - 1}, got {target.min()}..{target.max()}")
    return target[:, None]
