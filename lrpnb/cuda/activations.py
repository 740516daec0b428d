"""Element-wise activations on the GPU: the twin of ``lrpnb.kernels.activations``."""
import math

import numpy as np
from numba import cuda

from . import KERNEL, launch
from .. import rule_math
from ..rule_math import lrn_constants
from .rules import relu_backward

_pointwise_value = cuda.jit(device=True, inline=True)(rule_math.pointwise_value)
_pointwise_slope = cuda.jit(device=True, inline=True)(rule_math.pointwise_slope)


@cuda.jit(**KERNEL)
def _rect(X, Y):
    for e in range(cuda.grid(1), X.size, cuda.gridsize(1)):
        Y[e] = X[e] if X[e] > 0 else X[e] - X[e]


@cuda.jit(**KERNEL)
def _tanh(X, Y):
    for e in range(cuda.grid(1), X.size, cuda.gridsize(1)):
        Y[e] = math.tanh(X[e])


@cuda.jit(**KERNEL)
def _softmax(X, Y):
    N, C = X.shape
    for n in range(cuda.grid(1), N, cuda.gridsize(1)):
        top = X[n, 0]
        for j in range(C):
            top = max(top, X[n, j])
        total = top - top
        for j in range(C):
            Y[n, j] = math.exp(X[n, j] - top)
            total += Y[n, j]
        for j in range(C):
            Y[n, j] /= total


def _elementwise(kernel, X):
    Y = cuda.device_array(X.shape, dtype=X.dtype)
    launch(kernel, X.size)(X.reshape(-1), Y.reshape(-1))
    return Y


def rect_forward(X):
    """``max(x, 0)`` element-wise."""
    return _elementwise(_rect, X)


def tanh_forward(X):
    """``tanh(x)`` element-wise."""
    return _elementwise(_tanh, X)


def softmax_forward(X):
    """``exp(x_j - max x) / sum_k exp(x_k - max x)`` along the last axis of (N, C)."""
    Y = cuda.device_array(X.shape, dtype=X.dtype)
    launch(_softmax, X.shape[0])(X, Y)
    return Y


@cuda.jit(**KERNEL)
def _rect_backward(X, G, mode, out):
    for e in range(cuda.grid(1), X.size, cuda.gridsize(1)):
        out[e] = relu_backward(X[e], G[e], mode)


@cuda.jit(**KERNEL)
def _tanh_backward(Y, G, out):
    for e in range(cuda.grid(1), Y.size, cuda.gridsize(1)):
        out[e] = G[e] - G[e] * Y[e] * Y[e]


@cuda.jit(**KERNEL)
def _softmax_backward(Y, G, out):
    N, C = Y.shape
    for n in range(cuda.grid(1), N, cuda.gridsize(1)):
        total = G[n, 0] - G[n, 0]
        for k in range(C):
            total += G[n, k] * Y[n, k]
        for j in range(C):
            out[n, j] = Y[n, j] * (G[n, j] - total)


@cuda.jit(**KERNEL)
def _channel_norm(G, out):
    """out[e] = sqrt(sum_c G[e, c]^2) over rows of a (M, D) view."""
    D = G.shape[1]
    for e in range(cuda.grid(1), G.shape[0], cuda.gridsize(1)):
        total = G[e, 0] - G[e, 0]
        for c in range(D):
            total += G[e, c] * G[e, c]
        out[e] = math.sqrt(total)


@cuda.jit(**KERNEL)
def _times(X, G, out):
    for e in range(cuda.grid(1), X.size, cuda.gridsize(1)):
        out[e] = X[e] * G[e]


def _binary(kernel, A, B, *extra):
    """out = kernel(A, B, *extra) element-wise on flat views."""
    out = cuda.device_array(A.shape, dtype=B.dtype)
    launch(kernel, A.size)(A.reshape(-1), B.reshape(-1), *extra, out.reshape(-1))
    return out


def rect_backward(X, G, mode):
    """Backward through a ReLU, by mode (lrpnb.rule_math): BACKWARD_GRADIENT
    ``G [x > 0]``, BACKWARD_DECONVNET ``max(G, 0)``, BACKWARD_GUIDED
    ``G [x > 0] [G > 0]``."""
    return _binary(_rect_backward, X, G, mode)


def tanh_backward(Y, G):
    """``G (1 - y^2)`` with Y = tanh(x)."""
    return _binary(_tanh_backward, Y, G)


def softmax_backward(Y, G):
    """``y_j (g_j - sum_k g_k y_k)`` along the last axis."""
    out = cuda.device_array(Y.shape, dtype=Y.dtype)
    launch(_softmax_backward, Y.shape[0])(Y, G, out)
    return out


def channel_norm(G):
    """The L2 norm over the last (channel) axis, kept with length 1."""
    shape = tuple(G.shape)  # the simulator's shapes take no negative indices
    D = shape[-1]
    out = cuda.device_array(shape[:-1] + (1,), dtype=G.dtype)
    launch(_channel_norm, G.size // D)(G.reshape(G.size // D, D), out.reshape(-1))
    return out


def times_input(X, G):
    """Gradient times input, element-wise."""
    return _binary(_times, X, G)


@cuda.jit(**KERNEL)
def _sum_rows(A, out):
    for n in range(cuda.grid(1), A.shape[0], cuda.gridsize(1)):
        total = 0.0  # float64, as on the CPU
        for e in range(A.shape[1]):
            total += float(A[n, e])  # float(): float64 under the simulator too
        out[n] = total


def sample_sums(A):
    """``sum_i A[n, i]`` over all elements of each sample of A (N, ...), in float64."""
    rows = A.reshape(A.shape[0], A.size // A.shape[0])
    out = cuda.device_array(rows.shape[0], dtype=np.float64)
    launch(_sum_rows, rows.shape[0])(rows, out)
    return out


@cuda.jit(**KERNEL)
def _sigmoid(X, one, Y):
    # one: 1 in X's dtype, passed in (a literal would be typed float64 or, in
    # the simulator, float32, whatever X is)
    for e in range(cuda.grid(1), X.size, cuda.gridsize(1)):
        if X[e] >= 0:
            Y[e] = one / (one + math.exp(-X[e]))
        else:
            t = math.exp(X[e])
            Y[e] = t / (one + t)


@cuda.jit(**KERNEL)
def _sigmoid_backward(Y, G, one, out):
    for e in range(cuda.grid(1), Y.size, cuda.gridsize(1)):
        out[e] = G[e] * Y[e] * (one - Y[e])


@cuda.jit(**KERNEL)
def _channel_affine(X, scale, shift, out):
    D = scale.shape[0]
    for e in range(cuda.grid(1), X.size, cuda.gridsize(1)):
        out[e] = X[e] * scale[e % D] + shift[e % D]


def sigmoid_forward(X):
    """``1 / (1 + exp(-x))`` element-wise."""
    Y = cuda.device_array(tuple(X.shape), dtype=X.dtype)
    launch(_sigmoid, X.size)(X.reshape(X.size), X.dtype.type(1), Y.reshape(Y.size))
    return Y


def sigmoid_backward(Y, G):
    """``G y (1 - y)`` with Y = sigmoid(x)."""
    return _binary(_sigmoid_backward, Y, G, Y.dtype.type(1))


def channel_affine(X, scale, shift):
    """``y = x scale_c + shift_c`` along the last (channel) axis."""
    out = cuda.device_array(tuple(X.shape), dtype=X.dtype)
    launch(_channel_affine, X.size)(X.reshape(X.size), scale, shift, out.reshape(out.size))
    return out


@cuda.jit(device=True, inline=True)
def _lrn_sum(X, r, c, low, high, bias, scale):
    """bias + scale * the sum of x_i^2 over channel c's window."""
    C = X.shape[1]
    total = X[r, c] - X[r, c]
    for i in range(max(0, c - low), min(C, c + high + 1)):
        total += X[r, i] * X[r, i]
    return bias + scale * total


@cuda.jit(**KERNEL)
def _lrn(X, G, size, scale, beta, beta1, coef, bias, backward, out):
    C = X.shape[1]
    low, high = (size - 1) // 2, size - 1 - (size - 1) // 2
    for e in range(cuda.grid(1), X.size, cuda.gridsize(1)):
        r, k = e // C, e % C
        s = _lrn_sum(X, r, k, low, high, bias, scale)
        if not backward:
            out[r, k] = X[r, k] / s ** beta
        else:
            acc = X[r, k] - X[r, k]
            for c in range(max(0, k - high), min(C, k + low + 1)):
                acc += G[r, c] * X[r, c] / _lrn_sum(X, r, c, low, high, bias, scale) ** beta1
            out[r, k] = G[r, k] / s ** beta - coef * X[r, k] * acc


def _lrn_call(X, G, size, alpha, beta, bias, backward):
    shape = tuple(X.shape)
    rows = X.reshape((X.size // shape[-1], shape[-1]))
    out = cuda.device_array(rows.shape, dtype=X.dtype)
    launch(_lrn, X.size)(rows, G.reshape(rows.shape), size, *lrn_constants(X.dtype, size, alpha, beta, bias),
                         backward, out)
    return out.reshape(shape)


def lrn_forward(X, size, alpha, beta, bias):
    """Local response normalisation across channels (see lrpnb.kernels.activations)."""
    return _lrn_call(X, X, size, alpha, beta, bias, False)


def lrn_backward(X, G, size, alpha, beta, bias):
    """Gradient of lrn_forward (see lrpnb.kernels.activations)."""
    return _lrn_call(X, G, size, alpha, beta, bias, True)


@cuda.jit(**KERNEL)
def _pointwise(X, kind, one, k1, k2, k3, k4, out):
    for e in range(cuda.grid(1), X.size, cuda.gridsize(1)):
        out[e] = _pointwise_value(X[e], kind, one, k1, k2, k3, k4)


@cuda.jit(**KERNEL)
def _pointwise_backward(X, G, kind, one, k1, k2, k3, k4, out):
    for e in range(cuda.grid(1), X.size, cuda.gridsize(1)):
        out[e] = G[e] * _pointwise_slope(X[e], kind, one, k1, k2, k3, k4)


def pointwise_forward(X, kind, constants):
    """``f(x)`` element-wise for the activation ``kind`` (see lrpnb.kernels.activations)."""
    out = cuda.device_array(tuple(X.shape), dtype=X.dtype)
    launch(_pointwise, X.size)(X.reshape(X.size), kind, *constants, out.reshape(out.size))
    return out


def pointwise_backward(X, G, kind, constants):
    """``G f'(x)`` element-wise, from the forward input X (see lrpnb.kernels.activations)."""
    return _binary(_pointwise_backward, X, G, kind, *constants)


SIGNATURES = {_rect: "A1 A1", _tanh: "A1 A1", _softmax: "A2 A2", _rect_backward: "A1 A1 I A1",
              _tanh_backward: "A1 A1 A1", _softmax_backward: "A2 A2 A2", _channel_norm: "A2 A1",
              _times: "A1 A1 A1", _sum_rows: "A2 D1",
              _sigmoid: "A1 F A1", _sigmoid_backward: "A1 A1 F A1", _channel_affine: "A1 A1 A1 A1",
              _lrn: "A2 A2 I F F F F F B A2",
              _pointwise: "A1 I F F F F F A1", _pointwise_backward: "A1 A1 I F F F F F A1"}
