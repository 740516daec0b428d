"""Layer normalisation over the last axis (ConvNeXt's LayerNorm over the
channels of (N, H, W, C), a transformer's over the features of (N, T, D)),
and RMS normalisation (LLaMA's RMSNorm).

Relevance follows AttnLRP (Achtibat et al., ICML 2024) and its reference
implementation LXT: the standard deviation (the root mean square) is held
constant, which leaves a linear layer (centring, then the affine map; for
RMSNorm a diagonal map), and the epsilon rule runs on it. docs/rules.md
gives the formulas. Kernels: the backend's ``norm``.
"""
import math

import numpy as np

from ..backends import CPU
from .base import Layer, parameter_array, shape_text

__all__ = ["LayerNorm", "RMSNorm"]


def _epsilon(eps, layer):
    """A normalisation's eps: a finite float >= 0."""
    try:
        eps = float(eps)
    except (TypeError, ValueError):
        raise ValueError(f"{layer}: eps must be a number, got {eps!r}") from None
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"{layer}: eps must be finite and >= 0, got {eps!r}")
    return eps


class LayerNorm(Layer):
    """``y = (x - mean) / sqrt(var + eps) gamma + beta`` over the last axis,
    with the mean and the biased variance of that axis (torch's and ONNX's
    LayerNormalization with axis=-1).

    Parameters
    ----------
    gamma : array of shape (D,)
    beta : array of shape (D,), optional
        Zeros when not given.
    eps : float
        Added to the variance inside the square root (>= 0).

    Relevance, under every LRP rule: with sigma = sqrt(var + eps) held
    constant, ``R_i = x_i / sigma (s_i - mean_j s_j)`` with ``s_j = gamma_j
    R_j / (y_j + eps' sgn y_j)`` (the epsilon rule on the linearised layer),
    eps' the rule's stabilizer (``simple`` 1e-16, ``epsilon`` its parameter,
    every other rule 1e-6). The gradient methods get the exact gradient.
    """

    toolbox = False

    def __init__(self, gamma, beta=None, eps=1e-5):
        super().__init__()
        gamma = parameter_array(np.ravel(gamma), 1, "gamma", "LayerNorm")
        beta = np.zeros_like(gamma) if beta is None else parameter_array(np.ravel(beta), 1, "beta", "LayerNorm")
        if gamma.size == 0 or gamma.shape != beta.shape:
            raise ValueError(f"LayerNorm: gamma and beta must hold one value per feature each, got "
                             f"{gamma.size} and {beta.size}")
        self._gamma, self._beta, self.eps = gamma, beta, _epsilon(eps, "LayerNorm")
        self._casts = {}

    @property
    def gamma(self):
        return self._gamma

    @gamma.setter
    def gamma(self, value):
        self._gamma = parameter_array(np.ravel(value), 1, "gamma", "LayerNorm")
        self._casts = {}

    @property
    def beta(self):
        return self._beta

    @beta.setter
    def beta(self, value):
        self._beta = parameter_array(np.ravel(value), 1, "beta", "LayerNorm")
        self._casts = {}

    def describe(self):
        return f"LayerNorm {self.gamma.size}"

    def output_shape(self, shape):
        if len(shape) < 2 or shape[-1] != self.gamma.size:
            raise ValueError(f"expects {self.gamma.size} features (last axis), got {shape_text(shape)}")
        return shape

    def _params(self, dtype, backend):
        """(gamma, beta) in ``dtype`` on ``backend``'s device, cached."""
        return self.cached((backend.name, dtype), lambda: (backend.put(self.gamma.astype(dtype)),
                                                           backend.put(self.beta.astype(dtype))))

    def _rows(self, A):
        """A as (P, D): one row per normalised vector."""
        return A.reshape((A.size // self.gamma.size, self.gamma.size))

    def forward(self, X, backend=CPU):
        gamma, beta = self._params(X.dtype, backend)
        return backend.norm.layernorm_forward(self._rows(X), gamma, beta, X.dtype.type(self.eps)).reshape(X.shape)

    def propagate(self, X, Y, R, rule, backend):
        gamma, _ = self._params(X.dtype, backend)
        t = X.dtype.type
        if rule.is_gradient:
            return backend.norm.layernorm_backward(self._rows(X), self._rows(R), gamma, t(self.eps)).reshape(X.shape)
        return backend.norm.layernorm_relevance(self._rows(X), self._rows(Y), self._rows(R), gamma, t(self.eps),
                                                t(rule.epsilon())).reshape(X.shape)


class RMSNorm(Layer):
    """``y = x / sqrt(mean(x^2) + eps) gamma`` over the last axis (LLaMA's
    RMSNorm, ONNX's Pow/ReduceMean/Add/Sqrt/Div/Mul pattern; T5's too).

    Parameters
    ----------
    gamma : array of shape (D,)
    eps : float
        Added to the mean square inside the square root (>= 0).

    Relevance, under every LRP rule: with rms = sqrt(mean(x^2) + eps) held
    constant the layer is the diagonal map ``y_i = x_i gamma_i / rms``, and
    the epsilon rule on it gives ``R_i = x_i gamma_i / rms R_i / (y_i + eps'
    sgn y_i)`` (AttnLRP), eps' the rule's stabilizer (``simple`` 1e-16,
    ``epsilon`` its parameter, every other rule 1e-6): each feature keeps its
    relevance up to the stabilizer. The gradient methods get the exact
    gradient.
    """

    toolbox = False

    def __init__(self, gamma, eps=1e-6):
        super().__init__()
        self.gamma = gamma
        self.eps = _epsilon(eps, "RMSNorm")

    @property
    def gamma(self):
        return self._gamma

    @gamma.setter
    def gamma(self, value):
        gamma = parameter_array(np.ravel(value), 1, "gamma", "RMSNorm")
        if gamma.size == 0:
            raise ValueError("RMSNorm: gamma must hold one value per feature, got none")
        self._gamma = gamma
        self._casts = {}

    def describe(self):
        return f"RMSNorm {self.gamma.size}"

    def output_shape(self, shape):
        if len(shape) < 2 or shape[-1] != self.gamma.size:
            raise ValueError(f"expects {self.gamma.size} features (last axis), got {shape_text(shape)}")
        return shape

    def _rows(self, A):
        """A as (P, D): one row per normalised vector."""
        return A.reshape((A.size // self.gamma.size, self.gamma.size))

    def forward(self, X, backend=CPU):
        gamma = self.cached((backend.name, X.dtype), lambda: backend.put(self.gamma.astype(X.dtype)))
        return backend.norm.rmsnorm_forward(self._rows(X), gamma, X.dtype.type(self.eps)).reshape(X.shape)

    def propagate(self, X, Y, R, rule, backend):
        gamma = self.cached((backend.name, X.dtype), lambda: backend.put(self.gamma.astype(X.dtype)))
        t = X.dtype.type
        if rule.is_gradient:
            return backend.norm.rmsnorm_backward(self._rows(X), self._rows(R), gamma, t(self.eps)).reshape(X.shape)
        return backend.norm.rmsnorm_relevance(self._rows(X), self._rows(Y), self._rows(R), gamma, t(self.eps),
                                              t(rule.epsilon())).reshape(X.shape)
