"""Dense layer on the GPU: the twin of ``lrpnb.kernels.dense``.

As on the CPU, a dense layer is a 1x1 convolution of a 1x1 image with m
channels; the functions are the CPU module's, built over ``lrpnb.cuda.conv``.
"""
from ..kernels.dense import dense_functions
from . import conv

(dense_forward, dense_relevance_epsilon, dense_relevance_alphabeta, dense_relevance_flat,
 dense_relevance_ww, dense_relevance_gamma, dense_relevance_zbox, dense_backward,
 dense_weight_gradient) = dense_functions(conv)
