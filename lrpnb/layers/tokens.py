"""Token tensors: the embedding lookup, the plumbing of multi-head attention
and additive constants.

- ``Embedding``: token ids (N, T) to vectors (N, T, D) (ONNX's Gather on a
  weight matrix);
- ``Rearrange``: each output value is one input value or zero, by a constant
  index (Transpose, Slice, Split, Expand, Unsqueeze, Gather with constant
  indices, zero padding, all folded to one index at load);
- ``Reshape``: the same values in another sample shape;
- ``Bias``: a constant added (position and token-type embeddings, an
  additive attention mask, the constant branch of a Where).

Rearrange and Reshape move values, so every rule and every gradient method
passes relevance back to where each value came from (summing over repeats).
Embedding gives each token the sum of the relevance of its vector (what LXT's
examples compute). Bias gives the input its epsilon-rule share, the constant
absorbs the rest. docs/rules.md gives every formula. Kernels: the backend's
``tokens``.
"""
import math
import numbers

import numpy as np

from ..backends import CPU
from .base import Layer, parameter_array, shape_text

__all__ = ["Embedding", "Rearrange", "Reshape", "Bias"]


def constant_array(value, what, layer):
    """A finite C-contiguous copy of a constant of any shape (float32 stays
    float32, anything else becomes float64), its leading axes of length 1
    dropped down to one axis: (1, T, d) is (T, d), (1, 1, C) is (C,) (such
    axes broadcast over the batch and change nothing else)."""
    dtype = np.float32 if getattr(value, "dtype", None) == np.float32 else np.float64
    try:
        array = np.array(value, dtype=dtype, order="C")
    except (TypeError, ValueError):
        raise ValueError(f"{layer}: {what} must be a numeric array") from None
    if array.size == 0:
        raise ValueError(f"{layer}: {what} must hold at least one value, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{layer}: {what} contains NaN or infinite values")
    while array.ndim > 1 and array.shape[0] == 1:
        array = array[0]
    return np.ascontiguousarray(array)


def sample_broadcast(constant, shape, what):
    """ValueError unless ``constant`` broadcasts to the samples of a batch
    of ``shape`` (N, ...) without changing their shape (numpy's rules, the
    trailing axes aligned)."""
    sample = tuple(shape[1:])
    fits = len(shape) >= 2 and constant.ndim <= len(sample) and all(
        c in (1, s) for c, s in zip(constant.shape[::-1], sample[::-1]))
    if not fits:
        expected = "(N, ..., " + ", ".join(map(str, constant.shape)) + ")"
        raise ValueError(f"expects input whose samples {what} of shape {constant.shape} broadcasts to, such as "
                         f"{expected}, got {shape_text(shape)}")


def broadcast_constant(layer, constant, shape, dtype, backend, what):
    """``constant`` spread over the trailing axes of a sample of a batch of
    ``shape`` that it covers, flat, in ``dtype`` on ``backend``'s device,
    cached per shape: element e of a C-ordered batch meets entry ``e % size``.
    ValueError (``sample_broadcast``) where it does not broadcast."""
    covered = tuple(shape[len(shape) - constant.ndim:]) if constant.ndim else ()

    def make():
        sample_broadcast(constant, shape, what)
        return backend.put(np.ascontiguousarray(np.broadcast_to(constant, covered), dtype=dtype).reshape(-1))
    return layer.cached((backend.name, dtype, covered), make)


def sizes_text(shape):
    """A shape as 'a,b,c' for describe()."""
    return ",".join(map(str, shape))


def whole_numbers(value, what, layer):
    """An int64 array of whole numbers from ints or integral floats (the
    lrpnb format stores arrays as floats); ValueError naming ``layer``."""
    try:
        values = np.asarray(value)
    except (TypeError, ValueError):
        values = np.asarray([None])
    whole = values.dtype.kind in "iu" or (values.dtype.kind == "f" and np.isfinite(values).all()
                                          and (values == np.round(values)).all())
    if not whole or values.dtype.kind == "b":
        raise ValueError(f"{layer}: {what} must hold whole numbers, got {value!r:.80}")
    return values.astype(np.int64)


def sample_shape_of(value, layer):
    """A sample shape: a tuple of positive ints (one at least)."""
    if isinstance(value, numbers.Integral):
        value = (value,)
    values = whole_numbers(value, "shape", layer)
    if values.ndim != 1 or values.size == 0 or values.min() < 1:
        raise ValueError(f"{layer}: shape must be one positive int or more (a sample's shape, without the "
                         f"batch axis), got {value!r:.80}")
    return tuple(int(v) for v in values)


class Embedding(Layer):
    """``y[n, t] = W[x[n, t]]``: token ids to their vectors.

    Parameters
    ----------
    W : array of shape (V, D)
        One vector per token of the vocabulary.

    The input holds token ids as floats (whole numbers 0 <= id < V, checked
    at every forward pass: a ValueError names the first bad id); any sample
    shape (T,) or more, the output has one more axis, D. Relevance under
    every LRP rule: the sum of the output's relevance over that axis, what
    reaches each token; the gradient methods get the gradient of the output
    summed alike (the ids themselves have none).
    """

    toolbox = False

    def __init__(self, W):
        super().__init__()
        self.W = W

    @property
    def W(self):
        return self._W

    @W.setter
    def W(self, value):
        W = parameter_array(value, 2, "W", "Embedding")
        if W.size == 0:
            raise ValueError(f"Embedding: W must hold one vector per token, got shape {W.shape}")
        self._W = W
        self._casts = {}

    def describe(self):
        return f"Embedding {self.W.shape[0]} {self.W.shape[1]}"

    def output_shape(self, shape):
        if len(shape) < 2:
            raise ValueError(f"expects token ids of shape (N, T), got {shape_text(shape)}")
        return tuple(shape) + (self.W.shape[1],)

    def check_ids(self, X, backend=CPU):
        """ValueError naming the first value of X that is not a token id
        (a whole number 0 <= id < V)."""
        ids = np.asarray(backend.to_host(X))
        V = self.W.shape[0]
        with np.errstate(invalid="ignore"):
            bad = ~((ids == np.floor(ids)) & (ids >= 0) & (ids < V))
        if bad.any():
            where = np.unravel_index(int(np.argmax(bad)), ids.shape)
            value = float(ids[where])
            text = f"{value:.0f}" if value.is_integer() else repr(value)
            raise ValueError(f"Embedding: token id {text} (sample {where[0]}, position "
                             f"{', '.join(map(str, where[1:]))}) is not a whole number in [0, {V}): the "
                             f"vocabulary has {V} tokens")

    def forward(self, X, backend=CPU):
        self.check_ids(X, backend)
        W = self.cached((backend.name, X.dtype), lambda: backend.put(self.W.astype(X.dtype)))
        out = backend.tokens.embedding_forward(X.reshape(X.size), W)
        return out.reshape(tuple(X.shape) + (self.W.shape[1],))

    def propagate(self, X, Y, R, rule, backend):
        return backend.tokens.embedding_relevance(R.reshape((X.size, self.W.shape[1]))).reshape(X.shape)


class Rearrange(Layer):
    """``y[n].flat[j] = x[n].flat[index[j]]``, 0 where ``index[j] == -1``:
    every output value is one input value (or zero), the output of sample
    shape ``shape``.

    Parameters
    ----------
    index : array of ints
        prod(shape) entries (any array shape: read flat), each -1 or an
        index into the input's sample read flat (C order). Repeats are
        allowed (Expand, a broadcast).
    shape : tuple of int
        The output's sample shape (without the batch axis).

    Relevance, under every rule and gradient method alike: ``R_x[n].flat[i]
    = sum_{j: index[j] = i} R[n].flat[j]`` (gathered through the index's
    inverse, summed in increasing j: deterministic); inputs no output reads
    get 0. Conserves over the values read.
    """

    toolbox = False

    def __init__(self, index, shape):
        super().__init__()
        self.shape = sample_shape_of(shape, "Rearrange")
        index = whole_numbers(index, "index", "Rearrange").reshape(-1)
        if index.size != math.prod(self.shape):
            raise ValueError(f"Rearrange: index must hold one entry per output value, {math.prod(self.shape)} for "
                             f"shape {self.shape}, got {index.size}")
        if index.min() < -1:
            raise ValueError(f"Rearrange: index must hold -1 (zero) or indices into the input's values, got "
                             f"{index.min()}")
        self._index = np.ascontiguousarray(index)
        self._casts = {}

    @classmethod
    def of(cls, sample_shape, operation):
        """The Rearrange that applies ``operation`` (numpy steps that move
        values: transpose, slice, take, broadcast_to, pad with -1 ...) to
        samples of ``sample_shape``: its index is ``operation`` applied to
        the values' own positions, ``np.arange(size).reshape(sample_shape)``
        (-1 entries, as padding makes them, give zeros)."""
        sample_shape = sample_shape_of(sample_shape, "Rearrange")
        moved = np.asarray(operation(np.arange(math.prod(sample_shape), dtype=np.int64).reshape(sample_shape)))
        if moved.ndim == 0:
            raise ValueError("Rearrange.of: the operation must return an array of one axis or more, got a scalar")
        return cls(moved, moved.shape)

    @property
    def index(self):
        return self._index

    def describe(self):
        return f"Rearrange {sizes_text(self.shape)}"

    def output_shape(self, shape):
        largest = int(self.index.max())
        if len(shape) < 2 or math.prod(shape[1:]) <= largest:
            raise ValueError(f"expects samples of more than {largest} values (the index reads value {largest}), "
                             f"got {shape_text(shape)}")
        return (shape[0],) + self.shape

    def _arrays(self, size, backend):
        """(index, starts, sources) on the device for inputs of ``size``
        values per sample: the outputs reading input i are
        ``sources[starts[i]:starts[i + 1]]``, in increasing order."""
        def make():
            self.output_shape((1, size))
            read = np.flatnonzero(self.index >= 0)
            sources = read[np.argsort(self.index[read], kind="stable")]
            starts = np.zeros(size + 1, dtype=np.int64)
            np.cumsum(np.bincount(self.index[read], minlength=size), out=starts[1:])
            return backend.put(self.index), backend.put(starts), backend.put(sources.astype(np.int64))
        return self.cached((backend.name, "inverse", size), make)

    def forward(self, X, backend=CPU):
        N = X.shape[0]
        index, _, _ = self._arrays(X.size // N, backend)
        return backend.tokens.rearrange_forward(X.reshape((N, X.size // N)), index).reshape((N,) + self.shape)

    def propagate(self, X, Y, R, rule, backend):
        N = X.shape[0]
        _, starts, sources = self._arrays(X.size // N, backend)
        return backend.tokens.rearrange_relevance(R.reshape((N, R.size // N)), starts, sources).reshape(X.shape)


class Reshape(Layer):
    """The same values (C order) in the sample shape ``shape``; relevance
    and gradients are reshaped back. Flatten is ``Reshape((D,))``.

    Parameters
    ----------
    shape : tuple of int
        The output's sample shape (without the batch axis).
    """

    toolbox = False

    def __init__(self, shape):
        super().__init__()
        self.shape = sample_shape_of(shape, "Reshape")

    def describe(self):
        return f"Reshape {sizes_text(self.shape)}"

    def output_shape(self, shape):
        size = math.prod(self.shape)
        if len(shape) < 2 or math.prod(shape[1:]) != size:
            raise ValueError(f"expects samples of {size} values (to reshape to {shape_text((0,) + self.shape)}), "
                             f"got {shape_text(shape)}")
        return (shape[0],) + self.shape

    def forward(self, X, backend=CPU):
        return X.reshape((X.shape[0],) + self.shape)

    def propagate(self, X, Y, R, rule, backend):
        return R.reshape(X.shape)


class Bias(Layer):
    """``y = x + b``, b a constant that broadcasts to the sample shape
    (numpy's rules, trailing axes aligned: (T, D) position embeddings over
    (N, T, D), one value, or (1, 1, T, S) of a mask over (N, h, T, S)).

    Parameters
    ----------
    b : array
        The constant; leading axes of length 1 are dropped.

    Relevance: the input's epsilon-rule share ``R_x = x R / (y + eps sgn
    y)`` under every LRP rule but ``flat`` and ``ww`` (eps the rule's
    stabilizer: ``simple`` 1e-16, ``epsilon`` its parameter, every other
    rule 1e-6); the constant absorbs ``b R / (y + eps sgn y)``. ``flat``
    and ``ww`` (one input per output) pass R unchanged. The gradient
    methods get G.
    """

    toolbox = False

    def __init__(self, b):
        super().__init__()
        self.b = b

    @property
    def b(self):
        return self._b

    @b.setter
    def b(self, value):
        self._b = constant_array(value, "b", "Bias")
        self._casts = {}

    def describe(self):
        return f"Bias {'x'.join(map(str, self.b.shape)) or 1}"

    def output_shape(self, shape):
        sample_broadcast(self.b, shape, "the bias b")
        return shape

    def forward(self, X, backend=CPU):
        b = broadcast_constant(self, self.b, tuple(X.shape), X.dtype, backend, "the bias b")
        return backend.tokens.bias_forward(X, b)

    def propagate(self, X, Y, R, rule, backend):
        if rule.is_gradient or rule.name in ("flat", "ww"):
            return R
        return backend.tokens.bias_relevance(X, Y, R, X.dtype.type(rule.epsilon()))
