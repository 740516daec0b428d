"""Per-element rule arithmetic, the kernels' named modes and host-side
constants, written once for both backends.

These are plain Python functions; ``lrpnb.kernels.rules`` compiles them with
``numba.njit`` for the CPU kernels and ``lrpnb.cuda.rules`` with
``numba.cuda.jit(device=True)`` for the GPU kernels, so the stabilizer and the
sign conventions of the LRP Toolbox (Lapuschkin et al., JMLR 17(114), 2016)
exist in one place only.
"""
import numpy as np

#: the backward signal of the gradient methods (relu_backward's modes)
BACKWARD_GRADIENT, BACKWARD_DECONVNET, BACKWARD_GUIDED = 0, 1, 2

#: the sign-paired rules' modes (paired_ratios)
PAIRED_ALPHABETA, PAIRED_GAMMA = 0, 1

#: the average pools' relevance modes (avgpool_relevance)
AVG_EPSILON, AVG_GRADIENT, AVG_UNIFORM, AVG_ALPHABETA = 0, 1, 2, 3


def stabilize(z, epsilon):
    """Return ``z + epsilon * sgn(z)`` with ``sgn(0) = +1``.

    This is the denominator of the epsilon rule (Bach et al., PLoS ONE 10(7),
    2015, eq. 58); the toolbox's 'simple' rule is the same with a tiny epsilon.
    """
    if z >= 0:
        return z + epsilon
    return z - epsilon


def positive_part(v):
    """``max(v, 0)``, written so the result keeps ``v``'s type."""
    return v if v > 0 else v - v


def negative_part(v):
    """``min(v, 0)``, written so the result keeps ``v``'s type."""
    return v if v < 0 else v - v


def paired_ratios(Za, Zb, relevance, z, mode, p1, p2, tiny):
    """The two ratios of a sign-paired rule for one output neuron.

    ``Za`` and ``Zb`` are the output's two sums (see ``_paired`` in
    lrpnb/kernels/conv.py), ``relevance`` its relevance and ``z`` its forward
    output.

    - PAIRED_ALPHABETA, alpha-beta (Bach et al. 2015): ``p1 R / (Za + tiny)`` and
      ``p2 R / (Zb - tiny)`` (p1 = alpha, p2 = beta);
    - PAIRED_GAMMA, gamma (zennit's Gamma): ``R / stab(Za)`` where z > 0 and
      ``R / stab(Zb)`` where z < 0, the other ratio zero (both zero where
      z = 0), with stab(v) = v + tiny sgn(v), sgn(0) = +1.
    """
    if mode == PAIRED_ALPHABETA:
        return p1 * relevance / (Za + tiny), p2 * relevance / (Zb - tiny)
    zero = relevance - relevance
    if z > 0:
        return relevance / (Za + tiny if Za >= 0 else Za - tiny), zero
    if z < 0:
        return zero, relevance / (Zb + tiny if Zb >= 0 else Zb - tiny)
    return zero, zero


def relu_backward(x, g, mode):
    """The backward signal a ReLU with input x passes on for signal g:
    BACKWARD_GRADIENT ``g [x > 0]``; BACKWARD_DECONVNET (Zeiler & Fergus
    2014) ``max(g, 0)``, ignoring x; BACKWARD_GUIDED (guided backprop,
    Springenberg et al. 2015) ``g [x > 0] [g > 0]``."""
    if mode == BACKWARD_DECONVNET:
        return g if g > 0 else g - g
    if mode == BACKWARD_GUIDED:
        return g if (g > 0 and x > 0) else g - g
    return g if x > 0 else g - g


def lrn_constants(dtype, size, alpha, beta, bias):
    """(scale, beta, beta + 1, 2 scale beta, bias) of local response
    normalisation (scale = alpha / size) in ``dtype``, computed on the host
    for either backend: a Python number in a kernel would make float32 code
    float64."""
    t = np.dtype(dtype).type
    scale = alpha / size
    return t(scale), t(beta), t(beta + 1), t(2 * scale * beta), t(bias)
