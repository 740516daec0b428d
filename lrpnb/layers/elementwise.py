"""Layers that act on each value (or each sample's channels) on its own:
activations, BatchNorm, LRN, SoftMax, Identity, Flatten.

None of them mixes values of different positions, so LRP passes their
relevance through unchanged (the LRP Toolbox's rule for activations, zennit's
Pass rule for BatchNorm and every activation, the Caffe toolbox's for LRN);
the gradient methods get their (modified) gradient. Kernels: the backend's
``activations``.
"""
import math
import numbers

import numpy as np

from .. import rule_math
from ..backends import CPU
from .base import Layer, parameter_array, shape_text

__all__ = ["Rect", "Tanh", "Sigmoid", "Identity", "BatchNorm", "LRN", "SoftMax", "Flatten",
           "Clip", "HardSigmoid", "HardSwish", "SiLU", "LeakyReLU", "GELU"]


class Rect(Layer):
    """Rectified linear unit, max(x, 0)."""

    def forward(self, X, backend=CPU):
        return backend.activations.rect_forward(X)

    def propagate(self, X, Y, R, rule, backend):
        """Relevance passes unchanged; the gradient methods get the ReLU's
        gradient, deconvnet's signal or guided backprop's (``rule.backward_mode``)."""
        if rule.is_gradient:
            return backend.activations.rect_backward(X, R, rule.backward_mode)
        return R


class Smooth(Layer):
    """An element-wise activation y = f(x) whose relevance passes unchanged
    (the toolbox's rule); the gradient methods get f'(x) G, computed from y
    by the kernels ``<kernel>_forward`` and ``<kernel>_backward``."""

    #: the name of the activation's kernels
    kernel = None

    def forward(self, X, backend=CPU):
        return getattr(backend.activations, self.kernel + "_forward")(X)

    def propagate(self, X, Y, R, rule, backend):
        if rule.is_gradient:
            return getattr(backend.activations, self.kernel + "_backward")(Y, R)
        return R


class Tanh(Smooth):
    """Hyperbolic tangent."""

    kernel = "tanh"


class Sigmoid(Smooth):
    """Logistic sigmoid, 1 / (1 + exp(-x)); relevance passes unchanged."""

    kernel = "sigmoid"
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
        gamma, beta, mean, var = (parameter_array(np.ravel(v), 1, what, "BatchNorm")
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

    def describe(self):
        return f"BatchNorm {self.scale.size}"

    def _params(self, dtype, backend):
        """(scale, shift, zeros) in ``dtype`` on ``backend``'s device, cached."""
        return self.cached((backend.name, dtype), lambda: (
            backend.put(self.scale.astype(dtype)), backend.put(self.shift.astype(dtype)),
            backend.put(np.zeros(self.scale.size, dtype=dtype))))

    def output_shape(self, shape):
        if shape[-1] != self.scale.size:
            raise ValueError(f"expects {self.scale.size} channels (last axis), got {shape_text(shape)}")
        return shape

    def forward(self, X, backend=CPU):
        scale, shift, _ = self._params(X.dtype, backend)
        return backend.activations.channel_affine(X, scale, shift)

    def propagate(self, X, Y, R, rule, backend):
        if rule.is_gradient:
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

    def propagate(self, X, Y, R, rule, backend):
        if rule.is_gradient:
            return backend.activations.lrn_backward(X, R, self.size, self.alpha, self.beta, self.bias)
        return R


class SoftMax(Layer):
    """Softmax over the last axis of (N, C) scores, or of (N, ..., C) (a
    language model's (N, T, V)): the network's final probabilities, which
    explanations leave out (they start from the scores before it)."""

    def output_shape(self, shape):
        if len(shape) < 2:
            raise ValueError(f"expects input of shape (N, C), got {shape_text(shape)}")
        return shape

    def forward(self, X, backend=CPU):
        rows = X.reshape((-1, tuple(X.shape)[-1]))
        return backend.activations.softmax_forward(rows).reshape(X.shape)

    def propagate(self, X, Y, R, rule, backend):
        if rule.is_gradient:
            C = tuple(Y.shape)[-1]
            return backend.activations.softmax_backward(Y.reshape((-1, C)), R.reshape((-1, C))).reshape(Y.shape)
        return R


class Flatten(Layer):
    """Reshape (N, ...) to (N, D); relevance is reshaped back."""

    def output_shape(self, shape):
        return (shape[0], int(np.prod(shape[1:], dtype=np.int64)))

    def forward(self, X, backend=CPU):
        return X.reshape(X.shape[0], int(np.prod(X.shape[1:], dtype=np.int64)))

    def propagate(self, X, Y, R, rule, backend):
        return R.reshape(X.shape)


def _finite_number(value, what, layer):
    """A finite float from a real number (or a one-element real array, as
    ONNX attributes and initializers come); ValueError naming ``layer`` else."""
    array = None if isinstance(value, (str, bytes)) else np.asarray(value)
    if array is None or array.dtype.kind not in "iuf" or array.size != 1:
        raise ValueError(f"{layer}: {what} must be a finite number, got {value!r}")
    number = float(array.reshape(-1)[0])
    if not math.isfinite(number):
        raise ValueError(f"{layer}: {what} must be a finite number, got {value!r}")
    return number


class Pointwise(Layer):
    """An element-wise activation y = f(x) of the kernels' ``pointwise_forward``
    (the kind ``kind``, a ``rule_math.POINTWISE_*`` mode, with the constants
    of ``arguments``).

    Under every LRP rule relevance passes unchanged: zennit's Pass rule for
    activations, AttnLRP's identity rule for element-wise non-linearities
    (Achtibat et al., ICML 2024). Every gradient method (gradient,
    sensitivity, gradient x input, and deconvnet and guided backprop too,
    which zennit modifies on ReLU layers only) gets the exact derivative
    ``f'(x) G``, computed from the forward input X, with torch.autograd's
    values at the kinks (``rule_math.pointwise_slope``).
    """

    toolbox = False
    #: the activation's rule_math.POINTWISE_* mode
    kind = None

    def arguments(self):
        """The (a, b) of ``rule_math.pointwise_constants`` for this layer."""
        return ()

    def _constants(self, dtype):
        return rule_math.pointwise_constants(dtype, self.kind, *self.arguments())

    def forward(self, X, backend=CPU):
        return backend.activations.pointwise_forward(X, self.kind, self._constants(X.dtype))

    def propagate(self, X, Y, R, rule, backend):
        if rule.is_gradient:
            return backend.activations.pointwise_backward(X, R, self.kind, self._constants(X.dtype))
        return R


class Clip(Pointwise):
    """``y = min(max(x, min), max)`` (ONNX Clip; torch's hardtanh; ReLU6 is
    ``Clip(0, 6)``). Its derivative is torch's hardtanh's: 1 strictly
    between the bounds, 0 at and beyond them (torch.clamp's would be 1 at
    the bounds; ReLU6 is hardtanh in torch, and Rect's derivative at 0 is 0
    too). The defaults are ONNX's for float tensors, float32's lowest and
    largest values."""

    kind = rule_math.POINTWISE_CLIP

    def __init__(self, min=-float(np.finfo(np.float32).max), max=float(np.finfo(np.float32).max)):
        super().__init__()
        self.min, self.max = _finite_number(min, "min", "Clip"), _finite_number(max, "max", "Clip")
        if self.min > self.max:
            raise ValueError(f"Clip: min must be <= max, got min={self.min:g} and max={self.max:g}")

    def arguments(self):
        return self.min, self.max

    def describe(self):
        return f"Clip {self.min:g} {self.max:g}"


class HardSigmoid(Pointwise):
    """``y = max(0, min(1, alpha x + beta))`` (ONNX HardSigmoid, whose defaults
    these are; torch's hardsigmoid is alpha = 1/6, beta = 0.5). Derivative:
    alpha where 0 < alpha x + beta < 1, 0 at the kinks and beyond."""

    kind = rule_math.POINTWISE_HARDSIGMOID

    def __init__(self, alpha=0.2, beta=0.5):
        super().__init__()
        self.alpha = _finite_number(alpha, "alpha", "HardSigmoid")
        self.beta = _finite_number(beta, "beta", "HardSigmoid")

    def arguments(self):
        return self.alpha, self.beta

    def describe(self):
        return f"HardSigmoid {self.alpha:g} {self.beta:g}"


class HardSwish(Pointwise):
    """``y = x max(0, min(1, x / 6 + 1/2))`` (ONNX HardSwish: alpha = 1/6,
    beta = 0.5; torch's hardswish). Derivative as torch's: 0 for x <= -3,
    ``x / 3 + 1/2`` for -3 < x < 3, 1 for x >= 3."""

    kind = rule_math.POINTWISE_HARDSWISH

    def describe(self):
        return "HardSwish"


class SiLU(Pointwise):
    """``y = x sigmoid(x)`` (SiLU, Swish with beta = 1; ONNX exports it as
    Sigmoid and Mul, which the importer joins into this layer). Derivative
    ``s (1 + x (1 - s))``, s = sigmoid(x)."""

    kind = rule_math.POINTWISE_SILU

    def describe(self):
        return "SiLU"


class LeakyReLU(Pointwise):
    """``y = x`` for x >= 0, ``alpha x`` below (ONNX LeakyRelu and torch's
    leaky_relu, default alpha 0.01; any finite alpha). Derivative 1 for x > 0,
    alpha for x <= 0, as torch's."""

    kind = rule_math.POINTWISE_LEAKY_RELU

    def __init__(self, alpha=0.01):
        super().__init__()
        self.alpha = _finite_number(alpha, "alpha", "LeakyReLU")

    def arguments(self):
        return (self.alpha,)

    def describe(self):
        return f"LeakyReLU {self.alpha:g}"


class GELU(Pointwise):
    """Gaussian error linear unit (Hendrycks & Gimpel 2016; ONNX Gelu,
    torch's gelu): ``y = x/2 (1 + erf(x / sqrt 2))``, or with
    ``approximate='tanh'`` ``y = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.

    ``approximate`` takes ONNX's and torch's spellings, 'none' and 'tanh',
    or a bool; the attribute is the bool (True: the tanh approximation).
    """

    def __init__(self, approximate="none"):
        super().__init__()
        if isinstance(approximate, (bool, np.bool_)):
            self.approximate = bool(approximate)
        elif isinstance(approximate, str) and approximate in ("none", "tanh"):
            self.approximate = approximate == "tanh"
        else:
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh' (ONNX Gelu's attribute) or a bool, "
                             f"got {approximate!r}")

    @property
    def kind(self):
        return rule_math.POINTWISE_GELU_TANH if self.approximate else rule_math.POINTWISE_GELU

    def describe(self):
        return "GELU tanh" if self.approximate else "GELU"
