"""Dense (fully connected) layer: forward pass and relevance rules.

Notation (Bach et al., PLoS ONE 10(7), 2015; the LRP Toolbox, JMLR 17(114),
2016): inputs x_i, weights w_ij (W is m x n), bias b_j,
z_ij = x_i w_ij, z_j = sum_i z_ij + b_j, and every rule redistributes the
relevance R_j of output j onto the inputs: R_i = sum_j q_ij R_j.

The rules are computed without materializing z_ij (an (N, m, n) array in the
toolbox): because q_ij factorizes as x_i w_ij / d_j for the ratio rules,
R_i = x_i * sum_j w_ij (R_j / d_j), one matrix product through BLAS. These
kernels call BLAS, so they are not parallelized with prange.
"""
import numpy as np
from numba import njit

from . import JIT
from .rules import negative_part, positive_part, stabilize


@njit(**JIT)
def dense_forward(X, W, B):
    """``Y = X W + B``: (N, m) @ (m, n) + (n,) -> (N, n)."""
    Y = np.dot(X, W)
    for n in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[n, j] += B[j]
    return Y


@njit(**JIT)
def dense_relevance_epsilon(X, W, Y, R, epsilon):
    """Epsilon rule: ``R_i = sum_j z_ij / (z_j + eps sgn(z_j)) R_j``.

    ``Y`` is this layer's forward output (z_j). With a tiny epsilon (1e-16)
    this is the toolbox's 'simple' rule.
    """
    S = np.empty_like(R)
    for n in range(R.shape[0]):
        for j in range(R.shape[1]):
            S[n, j] = R[n, j] / stabilize(Y[n, j], epsilon)
    return X * np.dot(S, W.T)


@njit(**JIT)
def dense_relevance_alphabeta(X, W, B, R, alpha, beta, tiny):
    """Alpha-beta rule (the toolbox sets ``beta = 1 - alpha``):

    ``R_i = sum_j (alpha z_ij+ / (sum_i z_ij+ + b_j+ + tiny)
                 + beta z_ij- / (sum_i z_ij- + b_j- - tiny)) R_j``

    with ``tiny = 1e-16`` in the toolbox.

    Since ``(x w)+ = x+ w+ + x- w-`` and ``(x w)- = x+ w- + x- w+``, both
    sums and the redistribution are four matrix products on the sign-split
    inputs and weights.
    """
    Xp = np.empty_like(X)
    Xn = np.empty_like(X)
    for n in range(X.shape[0]):
        for i in range(X.shape[1]):
            Xp[n, i] = positive_part(X[n, i])
            Xn[n, i] = negative_part(X[n, i])
    Wp = np.empty_like(W)
    Wn = np.empty_like(W)
    for i in range(W.shape[0]):
        for j in range(W.shape[1]):
            Wp[i, j] = positive_part(W[i, j])
            Wn[i, j] = negative_part(W[i, j])
    Zp = np.dot(Xp, Wp) + np.dot(Xn, Wn)
    Zn = np.dot(Xp, Wn) + np.dot(Xn, Wp)
    Sp = np.empty_like(R)
    Sn = np.empty_like(R)
    for n in range(R.shape[0]):
        for j in range(R.shape[1]):
            Sp[n, j] = alpha * R[n, j] / (Zp[n, j] + positive_part(B[j]) + tiny)
            Sn[n, j] = beta * R[n, j] / (Zn[n, j] + negative_part(B[j]) - tiny)
    return (Xp * (np.dot(Sp, Wp.T) + np.dot(Sn, Wn.T))
            + Xn * (np.dot(Sp, Wn.T) + np.dot(Sn, Wp.T)))


@njit(**JIT)
def dense_relevance_flat(X, R):
    """Flat rule: ``R_i = sum_j R_j / m``, every input of j gets an equal share.

    ``X`` only supplies the output shape and dtype. The count m is converted
    through float32, which is exact for any layer width below 2**24 and does
    not promote float32 arithmetic.
    """
    Rx = np.empty_like(X)
    count = np.float32(X.shape[1])
    for n in range(X.shape[0]):
        total = R[n, 0] - R[n, 0]
        for j in range(R.shape[1]):
            total += R[n, j]
        share = total / count
        for i in range(X.shape[1]):
            Rx[n, i] = share
    return Rx


@njit(**JIT)
def dense_relevance_ww(W, R):
    """w^2 rule (Montavon et al., Pattern Recognition 65, 2017):
    ``R_i = sum_j w_ij^2 / (sum_i' w_i'j^2) R_j``."""
    V = W * W
    norm = V.sum(axis=0)
    for i in range(V.shape[0]):
        for j in range(V.shape[1]):
            V[i, j] /= norm[j]
    return np.dot(R, V.T)
