"""Element-wise activation layers: forward passes and gradients (Rect, Tanh
and SoftMax pass relevance through unchanged, as in the LRP Toolbox; so do
the activations of ``pointwise_forward``).

Each function splits its elements (or rows) into blocks that run in
parallel (``parallel_map``) through a nogil kernel.
"""
import numpy as np
from numba import njit

from . import JIT, blocks, parallel_map
from .. import rule_math
from ..rule_math import lrn_constants
from .rules import relu_backward

_pointwise_value = njit(inline="always", **JIT)(rule_math.pointwise_value)
_pointwise_slope = njit(inline="always", **JIT)(rule_math.pointwise_slope)

#: how rect_backward treats the ReLU
GRADIENT, DECONVNET, GUIDED = 0, 1, 2


def _elementwise(kernel, out_shape, *arrays, extra=()):
    """out = kernel over the flat views of ``arrays``, in parallel blocks."""
    flats = [a.reshape(-1) for a in arrays]
    out = np.empty(flats[0].size, dtype=arrays[-1].dtype)
    parallel_map(kernel, [(*flats, *extra, out, e0, e1) for e0, e1 in blocks(out.size, 1 << 15)])
    return out.reshape(out_shape)


@njit(**JIT)
def _rect(X, out, e0, e1):
    for e in range(e0, e1):
        out[e] = X[e] if X[e] > 0 else X[e] - X[e]


@njit(**JIT)
def _tanh(X, out, e0, e1):
    for e in range(e0, e1):
        out[e] = np.tanh(X[e])


@njit(**JIT)
def _rect_backward(X, G, mode, out, e0, e1):
    for e in range(e0, e1):
        out[e] = relu_backward(X[e], G[e], mode)


@njit(**JIT)
def _tanh_backward(Y, G, out, e0, e1):
    for e in range(e0, e1):
        out[e] = G[e] - G[e] * Y[e] * Y[e]


@njit(**JIT)
def _times(X, G, out, e0, e1):
    for e in range(e0, e1):
        out[e] = X[e] * G[e]


def rect_forward(X):
    """``max(x, 0)`` element-wise."""
    return _elementwise(_rect, X.shape, X)


def tanh_forward(X):
    """``tanh(x)`` element-wise."""
    return _elementwise(_tanh, X.shape, X)


def rect_backward(X, G, mode):
    """Backward signal through a ReLU with forward input X.

    mode (lrpnb.rule_math) BACKWARD_GRADIENT: ``G [x > 0]``;
    BACKWARD_DECONVNET (Zeiler & Fergus 2014): ``max(G, 0)``, ignoring the
    forward mask; BACKWARD_GUIDED (guided backprop, Springenberg et al.
    2015): ``G [x > 0] [G > 0]``.
    """
    flat_x, flat_g = X.reshape(-1), G.reshape(-1)
    out = np.empty_like(flat_g)
    parallel_map(_rect_backward, [(flat_x, flat_g, mode, out, e0, e1)
                                  for e0, e1 in blocks(out.size, 1 << 15)])
    return out.reshape(X.shape)


def tanh_backward(Y, G):
    """``G (1 - y^2)`` with Y = tanh(x)."""
    return _elementwise(_tanh_backward, Y.shape, Y, G)


def times_input(X, G):
    """Gradient times input, ``x * dy/dx`` element-wise."""
    return _elementwise(_times, X.shape, X, G)


@njit(**JIT)
def _softmax_rows(X, Y, n0, n1):
    C = X.shape[1]
    for n in range(n0, n1):
        top = X[n, 0]
        for j in range(C):
            top = max(top, X[n, j])
        total = X[n, 0] - X[n, 0]
        for j in range(C):
            Y[n, j] = np.exp(X[n, j] - top)
            total += Y[n, j]
        for j in range(C):
            Y[n, j] /= total


@njit(**JIT)
def _softmax_backward_rows(Y, G, out, n0, n1):
    C = Y.shape[1]
    for n in range(n0, n1):
        total = G[n, 0] - G[n, 0]
        for k in range(C):
            total += G[n, k] * Y[n, k]
        for j in range(C):
            out[n, j] = Y[n, j] * (G[n, j] - total)


@njit(**JIT)
def _norm_rows(G, out, n0, n1):
    D = G.shape[1]
    for e in range(n0, n1):
        total = G[e, 0] - G[e, 0]
        for c in range(D):
            total += G[e, c] * G[e, c]
        out[e] = np.sqrt(total)


def softmax_forward(X):
    """``exp(x_j - max x) / sum_k exp(x_k - max x)`` along the last axis of (N, C)."""
    Y = np.empty_like(X)
    parallel_map(_softmax_rows, [(X, Y, n0, n1) for n0, n1 in blocks(X.shape[0], 256)])
    return Y


def softmax_backward(Y, G):
    """``y_j (g_j - sum_k g_k y_k)`` along the last axis, Y the softmax output."""
    out = np.empty_like(G)
    parallel_map(_softmax_backward_rows, [(Y, G, out, n0, n1) for n0, n1 in blocks(Y.shape[0], 256)])
    return out


def channel_norm(G):
    """Sensitivity (Simonyan et al. 2014): the L2 norm of the gradient over the
    last (channel) axis, kept as an axis of length 1: (N, ..., D) -> (N, ..., 1)."""
    rows = G.reshape(-1, G.shape[-1])
    out = np.empty(rows.shape[0], dtype=G.dtype)
    parallel_map(_norm_rows, [(rows, out, n0, n1) for n0, n1 in blocks(rows.shape[0], 1 << 12)])
    return out.reshape(G.shape[:-1] + (1,))


@njit(**JIT)
def _sum_rows(A, out, n0, n1):
    for n in range(n0, n1):
        total = 0.0  # float64, whatever A's dtype: a check of conservation needs every digit
        for e in range(A.shape[1]):
            total += A[n, e]
        out[n] = total


def sample_sums(A):
    """``sum_i A[n, i]`` over all elements of each sample of A (N, ...), in float64.

    The conservation check of LRP (Bach et al., PLOS ONE 10(7), 2015): the
    relevance summed at every layer equals the explained score, up to what
    biases and stabilizers absorb.
    """
    rows = A.reshape(A.shape[0], -1)
    out = np.empty(rows.shape[0], dtype=np.float64)
    parallel_map(_sum_rows, [(rows, out, n0, n1) for n0, n1 in blocks(rows.shape[0], 64)])
    return out


@njit(**JIT)
def _sigmoid(X, out, e0, e1):
    one = np.float32(1)  # float32 stays float32
    for e in range(e0, e1):
        # exp of a non-positive argument only: no overflow for large |x|
        if X[e] >= 0:
            out[e] = one / (one + np.exp(-X[e]))
        else:
            t = np.exp(X[e])
            out[e] = t / (one + t)


@njit(**JIT)
def _sigmoid_backward(Y, G, out, e0, e1):
    for e in range(e0, e1):
        out[e] = G[e] * Y[e] * (np.float32(1) - Y[e])


@njit(**JIT)
def _channel_affine(X, scale, shift, out, e0, e1):
    D = scale.shape[0]
    for e in range(e0, e1):
        out[e] = X[e] * scale[e % D] + shift[e % D]


def sigmoid_forward(X):
    """``1 / (1 + exp(-x))`` element-wise."""
    return _elementwise(_sigmoid, X.shape, X)


def sigmoid_backward(Y, G):
    """``G y (1 - y)`` with Y = sigmoid(x)."""
    return _elementwise(_sigmoid_backward, Y.shape, Y, G)


def channel_affine(X, scale, shift):
    """``y = x scale_c + shift_c`` along the last (channel) axis: BatchNorm at
    inference (scale = gamma / sqrt(var + eps), shift = beta - mean scale);
    its gradient is ``channel_affine(G, scale, 0)``."""
    return _elementwise(_channel_affine, X.shape, X, extra=(scale, shift))


def lrn_forward(X, size, alpha, beta, bias):
    """Local response normalisation across channels (ONNX LRN, Caffe's LRN):
    ``y_c = x_c / (bias + alpha / size * sum_{i in win(c)} x_i^2)^beta`` with
    win(c) = c - floor((size-1)/2) .. c + ceil((size-1)/2), cut to the
    channels there are."""
    rows = X.reshape(-1, X.shape[-1])
    out = np.empty_like(rows)
    constants = lrn_constants(X.dtype, size, alpha, beta, bias)
    parallel_map(_lrn_rows, [(rows, size, *constants, rows, out, False, r0, r1)
                             for r0, r1 in blocks(rows.shape[0], 64)])
    return out.reshape(X.shape)


def lrn_backward(X, G, size, alpha, beta, bias):
    """Gradient of lrn_forward: with s_c = bias + alpha/size sum_{win(c)} x_i^2,
    ``G_x_k = G_k s_k^-beta - 2 alpha beta / size x_k sum_{c: k in win(c)} G_c x_c s_c^(-beta-1)``."""
    rows, grads = X.reshape(-1, X.shape[-1]), G.reshape(-1, G.shape[-1])
    out = np.empty_like(grads)
    constants = lrn_constants(X.dtype, size, alpha, beta, bias)
    parallel_map(_lrn_rows, [(rows, size, *constants, grads, out, True, r0, r1)
                             for r0, r1 in blocks(rows.shape[0], 64)])
    return out.reshape(X.shape)


@njit(**JIT)
def _lrn_rows(X, size, scale, beta, beta1, coef, bias, G, out, backward, r0, r1):
    C = X.shape[1]
    low, high = (size - 1) // 2, size - 1 - (size - 1) // 2
    s = np.empty(C, dtype=X.dtype)
    for r in range(r0, r1):
        for c in range(C):
            total = X[r, c] - X[r, c]
            for i in range(max(0, c - low), min(C, c + high + 1)):
                total += X[r, i] * X[r, i]
            s[c] = bias + scale * total
        for k in range(C):
            if not backward:
                out[r, k] = X[r, k] / s[k] ** beta
                continue
            acc = X[r, k] - X[r, k]
            for c in range(max(0, k - high), min(C, k + low + 1)):
                acc += G[r, c] * X[r, c] / s[c] ** beta1
            out[r, k] = G[r, k] / s[k] ** beta - coef * X[r, k] * acc


@njit(**JIT)
def _pointwise(X, kind, one, k1, k2, k3, k4, out, e0, e1):
    for e in range(e0, e1):
        out[e] = _pointwise_value(X[e], kind, one, k1, k2, k3, k4)


@njit(**JIT)
def _pointwise_backward(X, G, kind, one, k1, k2, k3, k4, out, e0, e1):
    for e in range(e0, e1):
        out[e] = G[e] * _pointwise_slope(X[e], kind, one, k1, k2, k3, k4)


def pointwise_forward(X, kind, constants):
    """``f(x)`` element-wise for the activation ``kind`` (a
    ``lrpnb.rule_math.POINTWISE_*`` mode: clip, hard sigmoid, hard swish,
    SiLU, leaky ReLU, GELU and its tanh approximation) with its
    ``rule_math.pointwise_constants`` in X's dtype."""
    return _elementwise(_pointwise, X.shape, X, extra=(kind, *constants))


def pointwise_backward(X, G, kind, constants):
    """``G f'(x)`` element-wise, from the forward input X (these activations
    are not invertible from their output); f' at the kinks as torch.autograd
    (``rule_math.pointwise_slope``)."""
    return _elementwise(_pointwise_backward, X.shape, X, G, extra=(kind, *constants))
