"""Layer normalisation and RMS normalisation over the last axis: forward
passes, relevance (AttnLRP's rule: the standard deviation, or the root mean
square, held constant) and the exact gradients.

Every function works on (P, D) views, one row per normalised vector (a
pixel's channels, a token's features); rows run in parallel blocks
(``parallel_map``). Arithmetic stays in the input's dtype, as torch's
float32 LayerNorm does: mean, biased variance, ``1 / sqrt(var + eps)``;
RMSNorm as LLaMA's does: ``x / sqrt(mean(x^2) + eps)``, then times gamma.
"""
import numpy as np
from numba import njit

from . import JIT, blocks, parallel_map
from .rules import stabilize


@njit(**JIT)
def _moments(x, size, eps):
    """(mean, 1 / sqrt(var + eps)) of one row, var the biased variance."""
    total = x[0] - x[0]
    for i in range(x.size):
        total += x[i]
    mean = total / size
    square = total - total
    for i in range(x.size):
        square += (x[i] - mean) * (x[i] - mean)
    one = size / size
    return mean, one / np.sqrt(square / size + eps)


@njit(**JIT)
def _forward(X, gamma, beta, size, eps, out, p0, p1):
    for p in range(p0, p1):
        mean, rstd = _moments(X[p], size, eps)
        shift = -rstd * mean
        for i in range(X.shape[1]):
            out[p, i] = (X[p, i] * rstd + shift) * gamma[i] + beta[i]


@njit(**JIT)
def _relevance(X, Y, R, gamma, size, eps, epsilon, out, p0, p1):
    for p in range(p0, p1):
        _, rstd = _moments(X[p], size, eps)
        total = R[p, 0] - R[p, 0]
        for j in range(X.shape[1]):
            out[p, j] = gamma[j] * R[p, j] / stabilize(Y[p, j], epsilon)
            total += out[p, j]
        mean = total / size
        for i in range(X.shape[1]):
            out[p, i] = X[p, i] * (out[p, i] - mean) * rstd


@njit(**JIT)
def _backward(X, G, gamma, size, eps, out, p0, p1):
    for p in range(p0, p1):
        mean, rstd = _moments(X[p], size, eps)
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
    out = np.empty_like(X)
    parallel_map(kernel, [(*arrays, out, p0, p1) for p0, p1 in blocks(X.shape[0], 16)])
    return out


def layernorm_forward(X, gamma, beta, eps):
    """``(x - mean) / sqrt(var + eps) gamma + beta`` along each row of X
    (P, D): mean and biased variance of the row, computed as torch does
    (``x rstd - mean rstd`` with ``rstd = 1 / sqrt(var + eps)``)."""
    return _rows(_forward, X, X, gamma, beta, X.dtype.type(X.shape[1]), eps)


def layernorm_relevance(X, Y, R, gamma, eps, epsilon):
    """AttnLRP's LayerNorm rule: with the standard deviation held constant
    the layer is linear, ``y_j = sum_i x_i a_ij + beta_j`` with ``a_ij =
    gamma_j (delta_ij - 1/D) rstd``, and the epsilon rule on it gives
    ``R_i = x_i rstd (s_i - mean_j s_j)``, ``s_j = gamma_j R_j / (y_j +
    epsilon sgn y_j)``."""
    return _rows(_relevance, X, X, Y, R, gamma, X.dtype.type(X.shape[1]), eps, epsilon)


def layernorm_backward(X, G, gamma, eps):
    """The exact gradient: ``rstd (g - mean(g) - xhat mean(g xhat))`` with
    ``g = gamma G`` and ``xhat = (x - mean) rstd``."""
    return _rows(_backward, X, X, G, gamma, X.dtype.type(X.shape[1]), eps)


@njit(**JIT)
def _inverse_rms(x, size, eps):
    """``1 / sqrt(mean(x^2) + eps)`` of one row."""
    square = x[0] - x[0]
    for i in range(x.size):
        square += x[i] * x[i]
    one = size / size
    return one / np.sqrt(square / size + eps)


@njit(**JIT)
def _rms_forward(X, gamma, size, eps, out, p0, p1):
    for p in range(p0, p1):
        rrms = _inverse_rms(X[p], size, eps)
        for i in range(X.shape[1]):
            out[p, i] = gamma[i] * (X[p, i] * rrms)


@njit(**JIT)
def _rms_relevance(X, Y, R, gamma, size, eps, epsilon, out, p0, p1):
    for p in range(p0, p1):
        rrms = _inverse_rms(X[p], size, eps)
        for i in range(X.shape[1]):
            out[p, i] = X[p, i] * gamma[i] * rrms * R[p, i] / stabilize(Y[p, i], epsilon)


@njit(**JIT)
def _rms_backward(X, G, gamma, size, eps, out, p0, p1):
    for p in range(p0, p1):
        rrms = _inverse_rms(X[p], size, eps)
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
    """AttnLRP's rule: with the root mean square held constant the layer is
    the diagonal map ``y_i = x_i gamma_i / rms``, and the epsilon rule on it
    gives ``R_i = x_i gamma_i / rms R_i / (y_i + epsilon sgn y_i)``."""
    return _rows(_rms_relevance, X, X, Y, R, gamma, X.dtype.type(X.shape[1]), eps, epsilon)


def rmsnorm_backward(X, G, gamma, eps):
    """The exact gradient: ``gamma_i G_i / rms - x_i sum_j gamma_j G_j x_j
    / (D rms^3)``."""
    return _rows(_rms_backward, X, X, G, gamma, X.dtype.type(X.shape[1]), eps)
