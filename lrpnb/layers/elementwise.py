"""Layers that act on each value (or each sample's channels) on its own:
activations, BatchNorm, LRN, SoftMax, Identity, Flatten.

None of them mixes values of different positions, so LRP passes their
relevance through unchanged (the LRP Toolbox's rule for activations, zennit's
Pass rule for BatchNorm, the Caffe toolbox's for LRN); the gradient methods
get their (modified) gradient. Kernels: the backend's ``activations``.
"""
import numbers

import numpy as np

from ..backends import CPU
from .base import Layer, parameter_array, shape_text

__all__ = ["Rect", "Tanh", "Sigmoid", "Identity", "BatchNorm", "LRN", "SoftMax", "Flatten"]


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
    """Softmax over the last axis of (N, C) scores."""

    def output_shape(self, shape):
        if len(shape) != 2:
            raise ValueError(f"expects input of shape (N, C), got {shape_text(shape)}")
        return shape

    def forward(self, X, backend=CPU):
        return backend.activations.softmax_forward(X)

    def propagate(self, X, Y, R, rule, backend):
        if rule.is_gradient:
            return backend.activations.softmax_backward(Y, R)
        return R


class Flatten(Layer):
    """Reshape (N, ...) to (N, D); relevance is reshaped back."""

    def output_shape(self, shape):
        return (shape[0], int(np.prod(shape[1:], dtype=np.int64)))

    def forward(self, X, backend=CPU):
        return X.reshape(X.shape[0], int(np.prod(X.shape[1:], dtype=np.int64)))

    def propagate(self, X, Y, R, rule, backend):
        return R.reshape(X.shape)
