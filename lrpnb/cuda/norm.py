"""Layer normalisation and RMS normalisation over the last axis on the GPU: the twin of
``lrpnb.kernels.norm``. One thread per row (grid-stride over the rows),
each writing its own row: no atomics."""
import math

from numba import cuda

from . import KERNEL, launch
from .rules import stabilize


@cuda.jit(device=True, inline=True)
def _moments(X, p, size, eps):
    """(mean, 1 / sqrt(var + eps)) of row p, var the biased variance."""
    total = X[p, 0] - X[p, 0]
    for i in range(X.shape[1]):
        total += X[p, i]
    mean = total / size
    square = total - total
    for i in range(X.shape[1]):
        square += (X[p, i] - mean) * (X[p, i] - mean)
    one = size / size
    return mean, one / math.sqrt(square / size + eps)


@cuda.jit(**KERNEL)
def _forward(X, gamma, beta, size, eps, out):
    for p in range(cuda.grid(1), X.shape[0], cuda.gridsize(1)):
        mean, rstd = _moments(X, p, size, eps)
        shift = -rstd * mean
        for i in range(X.shape[1]):
            out[p, i] = (X[p, i] * rstd + shift) * gamma[i] + beta[i]


@cuda.jit(**KERNEL)
def _relevance(X, Y, R, gamma, size, eps, epsilon, out):
    for p in range(cuda.grid(1), X.shape[0], cuda.gridsize(1)):
        mean, rstd = _moments(X, p, size, eps)
        total = R[p, 0] - R[p, 0]
        for j in range(X.shape[1]):
            out[p, j] = gamma[j] * R[p, j] / stabilize(Y[p, j], epsilon)
            total += out[p, j]
        share = total / size
        for i in range(X.shape[1]):
            out[p, i] = X[p, i] * (out[p, i] - share) * rstd


@cuda.jit(**KERNEL)
def _backward(X, G, gamma, size, eps, out):
    for p in range(cuda.grid(1), X.shape[0], cuda.gridsize(1)):
        mean, rstd = _moments(X, p, size, eps)
        total = G[p, 0] - G[p, 0]
        along = total
        for i in range(X.shape[1]):
            g = gamma[i] * G[p, i]
            total += g
            along += g * (X[p, i] - mean) * rstd
        total /= size
        along /= size
        for i in range(X.shape[1]):
            out[p, i] = rstd * (gamma[i] * G[p, i] - total - (X[p, i] - mean) * rstd * along)


def _rows(kernel, X, *arrays):
    out = cuda.device_array(tuple(X.shape), dtype=X.dtype)
    launch(kernel, X.shape[0])(*arrays, out)
    return out


def layernorm_forward(X, gamma, beta, eps):
    """``(x - mean) / sqrt(var + eps) gamma + beta`` along each row of X (P, D)."""
    return _rows(_forward, X, X, gamma, beta, X.dtype.type(X.shape[1]), eps)


def layernorm_relevance(X, Y, R, gamma, eps, epsilon):
    """AttnLRP's LayerNorm rule (lrpnb.kernels.norm)."""
    return _rows(_relevance, X, X, Y, R, gamma, X.dtype.type(X.shape[1]), eps, epsilon)


def layernorm_backward(X, G, gamma, eps):
    """The exact LayerNorm gradient (lrpnb.kernels.norm)."""
    return _rows(_backward, X, X, G, gamma, X.dtype.type(X.shape[1]), eps)


@cuda.jit(device=True, inline=True)
def _inverse_rms(X, p, size, eps):
    """``1 / sqrt(mean(x^2) + eps)`` of row p."""
    square = X[p, 0] - X[p, 0]
    for i in range(X.shape[1]):
        square += X[p, i] * X[p, i]
    one = size / size
    return one / math.sqrt(square / size + eps)


@cuda.jit(**KERNEL)
def _rms_forward(X, gamma, size, eps, out):
    for p in range(cuda.grid(1), X.shape[0], cuda.gridsize(1)):
        rrms = _inverse_rms(X, p, size, eps)
        for i in range(X.shape[1]):
            out[p, i] = gamma[i] * (X[p, i] * rrms)


@cuda.jit(**KERNEL)
def _rms_relevance(X, Y, R, gamma, size, eps, epsilon, out):
    for p in range(cuda.grid(1), X.shape[0], cuda.gridsize(1)):
        rrms = _inverse_rms(X, p, size, eps)
        for i in range(X.shape[1]):
            out[p, i] = X[p, i] * gamma[i] * rrms * R[p, i] / stabilize(Y[p, i], epsilon)


@cuda.jit(**KERNEL)
def _rms_backward(X, G, gamma, size, eps, out):
    for p in range(cuda.grid(1), X.shape[0], cuda.gridsize(1)):
        rrms = _inverse_rms(X, p, size, eps)
        along = G[p, 0] - G[p, 0]
        for j in range(X.shape[1]):
            along += gamma[j] * G[p, j] * X[p, j]
        along *= rrms * rrms * rrms / size
        for i in range(X.shape[1]):
            out[p, i] = rrms * gamma[i] * G[p, i] - X[p, i] * along


def rmsnorm_forward(X, gamma, eps):
    """``gamma x / sqrt(mean(x^2) + eps)`` along each row of X (P, D)."""
    return _rows(_rms_forward, X, X, gamma, X.dtype.type(X.shape[1]), eps)


def rmsnorm_relevance(X, Y, R, gamma, eps, epsilon):
    """AttnLRP's RMSNorm rule (lrpnb.kernels.norm)."""
    return _rows(_rms_relevance, X, X, Y, R, gamma, X.dtype.type(X.shape[1]), eps, epsilon)


def rmsnorm_backward(X, G, gamma, eps):
    """The exact RMSNorm gradient (lrpnb.kernels.norm)."""
    return _rows(_rms_backward, X, X, G, gamma, X.dtype.type(X.shape[1]), eps)


SIGNATURES = {_forward: "A2 A1 A1 F F A2", _relevance: "A2 A2 A2 A1 F F F A2", _backward: "A2 A2 A1 F F A2",
              _rms_forward: "A2 A1 F F A2", _rms_relevance: "A2 A2 A2 A1 F F F A2", _rms_backward: "A2 A2 A1 F F A2"}
