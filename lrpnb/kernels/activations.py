"""Element-wise activation layers: forward passes and gradients (Rect, Tanh
and SoftMax pass relevance through unchanged, as in the LRP Toolbox)."""
import numpy as np
from numba import njit, prange

from . import PARALLEL


@njit(**PARALLEL)
def rect_forward(X):
    """``max(x, 0)`` element-wise."""
    flat = X.reshape(-1)
    Y = np.empty_like(flat)
    for i in prange(flat.size):
        Y[i] = flat[i] if flat[i] > 0 else flat[i] - flat[i]
    return Y.reshape(X.shape)


@njit(**PARALLEL)
def tanh_forward(X):
    """``tanh(x)`` element-wise."""
    flat = X.reshape(-1)
    Y = np.empty_like(flat)
    for i in prange(flat.size):
        Y[i] = np.tanh(flat[i])
    return Y.reshape(X.shape)


@njit(**PARALLEL)
def softmax_forward(X):
    """``exp(x_j - max x) / sum_k exp(x_k - max x)`` along the last axis of (N, C)."""
    N, C = X.shape
    Y = np.empty_like(X)
    for n in prange(N):
        top = X[n, 0]
        for j in range(C):
            top = max(top, X[n, j])
        total = X[n, 0] - X[n, 0]
        for j in range(C):
            Y[n, j] = np.exp(X[n, j] - top)
            total += Y[n, j]
        for j in range(C):
            Y[n, j] /= total
    return Y


#: how rect_backward treats the ReLU
GRADIENT, DECONVNET, GUIDED = 0, 1, 2


@njit(**PARALLEL)
def rect_backward(X, G, mode):
    """Backward signal through a ReLU with forward input X.

    mode GRADIENT: ``G [x > 0]``; DECONVNET (Zeiler & Fergus 2014): ``max(G, 0)``,
    ignoring the forward mask; GUIDED (guided backprop, Springenberg et al.
    2015): ``G [x > 0] [G > 0]``.
    """
    flat = X.reshape(-1)
    grad = G.reshape(-1)
    out = np.empty_like(grad)
    for e in prange(flat.size):
        g = grad[e]
        zero = g - g
        if mode == 1:
            out[e] = g if g > 0 else zero
        elif mode == 2:
            out[e] = g if (g > 0 and flat[e] > 0) else zero
        else:
            out[e] = g if flat[e] > 0 else zero
    return out.reshape(X.shape)


@njit(**PARALLEL)
def tanh_backward(Y, G):
    """``G (1 - y^2)`` with Y = tanh(x)."""
    flat = Y.reshape(-1)
    grad = G.reshape(-1)
    out = np.empty_like(grad)
    for e in prange(flat.size):
        out[e] = grad[e] - grad[e] * flat[e] * flat[e]
    return out.reshape(Y.shape)


@njit(**PARALLEL)
def softmax_backward(Y, G):
    """``y_j (g_j - sum_k g_k y_k)`` along the last axis, Y the softmax output."""
    N, C = Y.shape
    out = np.empty_like(G)
    for n in prange(N):
        total = G[n, 0] - G[n, 0]
        for k in range(C):
            total += G[n, k] * Y[n, k]
        for j in range(C):
            out[n, j] = Y[n, j] * (G[n, j] - total)
    return out


@njit(**PARALLEL)
def channel_norm(G):
    """Sensitivity (Simonyan et al. 2014): the L2 norm of the gradient over the
    last (channel) axis, kept as an axis of length 1: (N, ..., D) -> (N, ..., 1)."""
    D = G.shape[-1]
    flat = G.reshape(-1, D)
    out = np.empty((flat.shape[0], 1), dtype=G.dtype)
    for e in prange(flat.shape[0]):
        total = flat[e, 0] - flat[e, 0]
        for c in range(D):
            total += flat[e, c] * flat[e, c]
        out[e, 0] = np.sqrt(total)
    return out.reshape(G.shape[:-1] + (1,))


@njit(**PARALLEL)
def times_input(X, G):
    """Gradient times input, ``x * dy/dx`` element-wise."""
    flat = X.reshape(-1)
    grad = G.reshape(-1)
    out = np.empty_like(grad)
    for e in prange(flat.size):
        out[e] = flat[e] * grad[e]
    return out.reshape(X.shape)
