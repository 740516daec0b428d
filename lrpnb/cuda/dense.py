"""Dense (fully connected) layer on the GPU, the twin of ``lrpnb.kernels.dense``:
the functions of ``lrpnb.dense_via_conv`` over ``lrpnb.cuda.conv`` (a dense
layer is a 1x1 convolution of a 1x1 image)."""
from ..dense_via_conv import dense_functions
from . import conv

(dense_forward, dense_relevance_epsilon, dense_relevance_paired, dense_relevance_flat, dense_relevance_ww,
 dense_backward, dense_weight_gradient) = dense_functions(conv, __name__)
