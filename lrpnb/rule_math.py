"""Per-element rule arithmetic, written once for both backends.

These are plain Python functions; ``lrpnb.kernels.rules`` compiles them with
``numba.njit`` for the CPU kernels and ``lrpnb.cuda.rules`` with
``numba.cuda.jit(device=True)`` for the GPU kernels, so the stabilizer and the
sign conventions of the LRP Toolbox (Lapuschkin et al., JMLR 17(114), 2016)
exist in one place only.
"""


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

    - mode 0, alpha-beta (Bach et al. 2015): ``p1 R / (Za + tiny)`` and
      ``p2 R / (Zb - tiny)`` (p1 = alpha, p2 = beta);
    - mode 1, gamma (zennit's Gamma): ``R / stab(Za)`` where z > 0 and
      ``R / stab(Zb)`` where z < 0, the other ratio zero (both zero where
      z = 0), with stab(v) = v + tiny sgn(v), sgn(0) = +1.
    """
    if mode == 0:
        return p1 * relevance / (Za + tiny), p2 * relevance / (Zb - tiny)
    zero = relevance - relevance
    if z > 0:
        return relevance / (Za + tiny if Za >= 0 else Za - tiny), zero
    if z < 0:
        return zero, relevance / (Zb + tiny if Zb >= 0 else Zb - tiny)
    return zero, zero


def relu_backward(x, g, mode):
    """The backward signal a ReLU with input x passes on for signal g:
    mode 0 (gradient) ``g [x > 0]``; 1 (deconvnet, Zeiler & Fergus 2014)
    ``max(g, 0)``, ignoring x; 2 (guided backprop, Springenberg et al. 2015)
    ``g [x > 0] [g > 0]``."""
    if mode == 1:
        return g if g > 0 else g - g
    if mode == 2:
        return g if (g > 0 and x > 0) else g - g
    return g if x > 0 else g - g
