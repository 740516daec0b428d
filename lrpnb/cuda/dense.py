"""Dense layer on the GPU: the twin of ``lrpnb.kernels.dense``.

As on the CPU, a dense layer is a 1x1 convolution of a 1x1 image with m
channels; these functions reshape and call ``lrpnb.cuda.conv``.
"""
from .conv import (conv_backward, conv_forward, conv_relevance_alphabeta, conv_relevance_epsilon,
                   conv_relevance_flat, conv_relevance_gamma, conv_relevance_ww, conv_relevance_zbox)


def _image(A):
    return A.reshape(A.shape[0], 1, 1, A.shape[1])


def _filters(W):
    return W.reshape(1, 1, W.shape[0], W.shape[1])


def dense_forward(X, W, B):
    """``Y = X W + B``."""
    return conv_forward(_image(X), _filters(W), B, 1, 1).reshape(X.shape[0], W.shape[1])


def dense_relevance_epsilon(X, W, Y, R, epsilon):
    """Epsilon rule: ``R_i = sum_j z_ij / (z_j + eps sgn(z_j)) R_j``."""
    return conv_relevance_epsilon(_image(X), _filters(W), _image(Y), _image(R), 1, 1,
                                  epsilon).reshape(X.shape)


def dense_relevance_alphabeta(X, W, B, R, alpha, beta, tiny):
    """Alpha-beta rule, as ``lrpnb.kernels.dense.dense_relevance_alphabeta``."""
    return conv_relevance_alphabeta(_image(X), _filters(W), B, _image(R), 1, 1, alpha, beta,
                                    tiny).reshape(X.shape)


def dense_relevance_flat(X, W, R):
    """Flat rule: ``R_i = sum_j R_j / m``."""
    return conv_relevance_flat(_image(X), _filters(W), _image(R), 1, 1).reshape(X.shape)


def dense_relevance_ww(X, W, R):
    """w^2 rule: ``R_i = sum_j w_ij^2 / (sum_i' w_i'j^2) R_j``."""
    return conv_relevance_ww(_image(X), _filters(W), _image(R), 1, 1).reshape(X.shape)


def dense_relevance_gamma(X, W, B, Y, R, gamma, tiny):
    """Generalized gamma rule (zennit's Gamma)."""
    return conv_relevance_gamma(_image(X), _filters(W), B, _image(Y), _image(R), 1, 1, gamma,
                                tiny).reshape(X.shape)


def dense_relevance_zbox(X, W, R, low, high, tiny):
    """z^B rule (zennit's ZBox)."""
    return conv_relevance_zbox(_image(X), _filters(W), _image(R), 1, 1, low, high,
                               tiny).reshape(X.shape)


def dense_backward(X, W, G):
    """Gradient with respect to the input: ``G W^T``."""
    return conv_backward(_image(X), _filters(W), _image(G), 1, 1).reshape(X.shape)
