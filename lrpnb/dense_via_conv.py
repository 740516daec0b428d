"""Dense (fully connected) layer kernels, built for either backend.

Notation (Bach et al., PLoS ONE 10(7), 2015; the LRP Toolbox, JMLR 17(114),
2016): inputs x_i, weights w_ij (W is m x n), bias b_j,
z_ij = x_i w_ij, z_j = sum_i z_ij + b_j, and every rule redistributes the
relevance R_j of output j onto the inputs: R_i = sum_j q_ij R_j.

A dense layer is a 1x1 convolution of a 1x1 image with m channels, and its
rules are exactly the convolution's: these functions reshape and call a
backend's convolution kernels, where each rule is written once. They are
plain Python (compiling them would compile the convolution kernels' code a
second time for nothing); ``lrpnb.kernels.dense`` is ``dense_functions``
over ``lrpnb.kernels.conv``, ``lrpnb.cuda.dense`` over ``lrpnb.cuda.conv``.
"""


def dense_functions(conv, module):
    """The dense-layer functions over the convolution module ``conv``,
    published as functions of ``module`` (the backend's dense module)."""

    def image(A):
        return A.reshape(A.shape[0], 1, 1, A.shape[1])

    def filters(W):
        return W.reshape(1, 1, W.shape[0], W.shape[1])

    def dense_forward(X, W, B):
        """``Y = X W + B``: (N, m) @ (m, n) + (n,) -> (N, n)."""
        return conv.conv_forward(image(X), filters(W), B, 1, 1).reshape(X.shape[0], W.shape[1])

    def dense_relevance_epsilon(X, W, Y, R, epsilon):
        """Epsilon rule: ``R_i = sum_j z_ij / (z_j + eps sgn(z_j)) R_j``.

        ``Y`` is this layer's forward output (z_j). With epsilon = 1e-16 this
        is the toolbox's 'simple' rule.
        """
        return conv.conv_relevance_epsilon(image(X), filters(W), image(Y), image(R), 1, 1,
                                           epsilon).reshape(X.shape)

    def dense_relevance_paired(X, A, Bm, Ba, Bb, Y, R, mode, p1, p2, tiny):
        """The sign-paired rules (alpha-beta, gamma) with the filter pair (A,
        Bm) and bias pair (Ba, Bb); see conv_relevance_paired."""
        return conv.conv_relevance_paired(image(X), filters(A), filters(Bm), Ba, Bb, image(Y), image(R), 1, 1,
                                          mode, p1, p2, tiny).reshape(X.shape)

    def dense_relevance_flat(X, W, R):
        """Flat rule: ``R_i = sum_j R_j / m``, every input of j gets an equal share."""
        return conv.conv_relevance_flat(image(X), filters(W), image(R), 1, 1).reshape(X.shape)

    def dense_relevance_ww(X, W, R):
        """w^2 rule (Montavon et al., Pattern Recognition 65, 2017):
        ``R_i = sum_j w_ij^2 / (sum_i' w_i'j^2) R_j``."""
        return conv.conv_relevance_ww(image(X), filters(W), image(R), 1, 1).reshape(X.shape)

    def dense_backward(X, W, G):
        """Gradient with respect to the input: ``G W^T``."""
        return conv.conv_backward(image(X), filters(W), image(G), 1, 1).reshape(X.shape)

    def dense_weight_gradient(X, G):
        """Gradients of the weights and bias: ``dW = X^T G`` (m x n), ``dB = sum_n G``."""
        dW, dB = conv.conv_weight_gradient(image(X), image(G), 1, 1, 1, 1)
        return dW.reshape(X.shape[1], G.shape[1]), dB

    functions = (dense_forward, dense_relevance_epsilon, dense_relevance_paired, dense_relevance_flat,
                 dense_relevance_ww, dense_backward, dense_weight_gradient)
    for function in functions:
        function.__module__, function.__qualname__ = module, function.__name__
    return functions
