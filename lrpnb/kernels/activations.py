"""Element-wise activation layers (forward only: Rect, Tanh and SoftMax pass
relevance through unchanged, as in the LRP Toolbox)."""
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
