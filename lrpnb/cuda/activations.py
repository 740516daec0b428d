"""Element-wise activations on the GPU: the twin of ``lrpnb.kernels.activations``."""
import math

from numba import cuda

from . import KERNEL, launch


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


SIGNATURES = {_rect: "A1 A1", _tanh: "A1 A1", _softmax: "A2 A2"}
