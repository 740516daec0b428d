"""Per-element rule arithmetic, the kernels' named modes and host-side
constants, written once for both backends.

These are plain Python functions; ``lrpnb.kernels.rules`` compiles them with
``numba.njit`` for the CPU kernels and ``lrpnb.cuda.rules`` with
``numba.cuda.jit(device=True)`` for the GPU kernels, so the stabilizer and the
sign conventions of the LRP Toolbox (Lapuschkin et al., JMLR 17(114), 2016)
exist in one place only.
"""
import math

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


# ------------------------------------------------ element-wise activations
#: the element-wise activations of pointwise_value and pointwise_slope
(POINTWISE_CLIP, POINTWISE_HARDSIGMOID, POINTWISE_HARDSWISH, POINTWISE_SILU, POINTWISE_LEAKY_RELU,
 POINTWISE_GELU, POINTWISE_GELU_TANH) = range(7)

#: the tanh approximation's cubic coefficient (Hendrycks & Gimpel 2016; ONNX
#: Gelu with approximate='tanh', torch's gelu(approximate='tanh'))
GELU_TANH_CUBIC = 0.044715


def _open_interval(alpha, beta):
    """The x where 0 < alpha x + beta < 1, as (low, high); every x for
    alpha = 0 (where the slope alpha is 0 anyway). Each end is one correctly
    rounded float64 division, so the kinks of torch's hardsigmoid (alpha =
    1/6, beta = 1/2) are exactly -3 and 3."""
    if alpha == 0:
        return -np.inf, np.inf
    ends = (-beta / alpha, (1.0 - beta) / alpha)
    return min(ends), max(ends)


def pointwise_constants(dtype, kind, a=0.0, b=0.0):
    """(one, k1, k2, k3, k4) of an activation for pointwise_value and
    pointwise_slope, in ``dtype``, computed on the host for either backend:

    - POINTWISE_CLIP, a = min, b = max: (1, min, max, 0, 0);
    - POINTWISE_HARDSIGMOID, a = alpha, b = beta: (1, alpha, beta, low,
      high), (low, high) the x where 0 < alpha x + beta < 1;
    - POINTWISE_HARDSWISH (alpha = 1/6, beta = 1/2): (1, 3, 1/2, -3, 3), its
      x / 6 and slope x / 3 divided as torch does, which no multiply-add
      fusion rounds otherwise;
    - POINTWISE_SILU: (1, 0, 0, 0, 0);
    - POINTWISE_LEAKY_RELU, a = alpha: (1, alpha, 0, 0, 0);
    - POINTWISE_GELU: (1, 1/sqrt(2), 1/sqrt(2 pi), 1/2, 0);
    - POINTWISE_GELU_TANH: (1, sqrt(2/pi), 0.044715, 3 * 0.044715, 1/2).

    A bound beyond float32's range is infinite in float32, which clips alike.
    """
    if kind == POINTWISE_CLIP:
        values = (a, b, 0.0, 0.0)
    elif kind == POINTWISE_HARDSIGMOID:
        values = (a, b) + _open_interval(a, b)
    elif kind == POINTWISE_HARDSWISH:
        values = (3.0, 0.5, -3.0, 3.0)
    elif kind == POINTWISE_LEAKY_RELU:
        values = (a, 0.0, 0.0, 0.0)
    elif kind == POINTWISE_GELU:
        values = (np.sqrt(0.5), 1.0 / np.sqrt(2.0 * np.pi), 0.5, 0.0)
    elif kind == POINTWISE_GELU_TANH:
        values = (np.sqrt(2.0 / np.pi), GELU_TANH_CUBIC, 3.0 * GELU_TANH_CUBIC, 0.5)
    else:
        values = (0.0, 0.0, 0.0, 0.0)
    t = np.dtype(dtype).type
    with np.errstate(over="ignore"):
        return (t(1),) + tuple(t(v) for v in values)


def pointwise_value(x, kind, one, k1, k2, k3, k4):
    """f(x) of the activation ``kind`` with its pointwise_constants:
    clip ``min(max(x, lo), hi)``; hard sigmoid ``max(0, min(1, alpha x + beta))``
    (ONNX HardSigmoid); hard swish ``x hardsigmoid(x)``; SiLU ``x sigmoid(x)``;
    leaky ReLU ``x`` for x >= 0, ``alpha x`` below; GELU
    ``x/2 (1 + erf(x / sqrt 2))``; its tanh approximation
    ``x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``."""
    zero = x - x
    if kind == POINTWISE_CLIP:
        return k1 if x < k1 else (k2 if x > k2 else x)
    if kind == POINTWISE_HARDSIGMOID or kind == POINTWISE_HARDSWISH:
        t = k1 * x + k2 if kind == POINTWISE_HARDSIGMOID else x / (k1 + k1) + k2
        if k3 < x < k4:
            t = zero if t < zero else (one if t > one else t)
        else:
            # at a kink or beyond, t is 0 or 1 but for rounding (at x = -3,
            # x / 6 + 1/2 may round to 3e-17): snap it, as torch has it there
            t = zero if t + t < one else one
        return t if kind == POINTWISE_HARDSIGMOID else x * t
    if kind == POINTWISE_SILU:
        # exp of a non-positive argument only: no overflow for large |x|
        if x >= zero:
            return x * (one / (one + math.exp(-x)))
        t = math.exp(x)
        return x * (t / (one + t))
    if kind == POINTWISE_LEAKY_RELU:
        return x if x >= zero else k1 * x
    if kind == POINTWISE_GELU:
        return k3 * x * (one + math.erf(x * k1))
    return k4 * x * (one + math.tanh(k1 * (x + k2 * x * x * x)))


def pointwise_slope(x, kind, one, k1, k2, k3, k4):
    """f'(x) of the activation ``kind`` (see pointwise_value), at the kinks
    as torch.autograd: clip (torch's hardtanh, ReLU6) 1 for lo < x < hi and
    0 at and beyond the bounds; hard sigmoid alpha strictly between its
    kinks, 0 at them; hard swish ``x / 3 + 1/2`` strictly between its
    kinks, 0 at and below the lower one, 1 at and above the upper one; leaky
    ReLU 1 for x > 0, alpha for x <= 0; SiLU ``s (1 + x (1 - s))`` with
    s = sigmoid(x); GELU ``Phi(x) + x phi(x)``; its tanh approximation
    ``(1 + t)/2 + x/2 (1 - t^2) sqrt(2/pi) (1 + 3 0.044715 x^2)``, t its tanh."""
    zero = x - x
    if kind == POINTWISE_CLIP:
        return one if k1 < x < k2 else zero
    if kind == POINTWISE_HARDSIGMOID:
        return k1 if k3 < x < k4 else zero
    if kind == POINTWISE_HARDSWISH:
        if x <= k3:
            return zero
        return one if x >= k4 else x / k1 + k2
    if kind == POINTWISE_SILU:
        if x >= zero:
            s = one / (one + math.exp(-x))
        else:
            t = math.exp(x)
            s = t / (one + t)
        return s * (one + x * (one - s))
    if kind == POINTWISE_LEAKY_RELU:
        return one if x > zero else k1
    if kind == POINTWISE_GELU:
        return k3 * (one + math.erf(x * k1)) + x * k2 * math.exp(-k3 * x * x)
    t = math.tanh(k1 * (x + k2 * x * x * x))
    sech2 = one - t * t
    slope = k4 * (one + t)
    # where tanh saturates, x^3 may overflow: skip the term that is 0 there
    if sech2 > zero:
        slope += k4 * x * sech2 * k1 * (one + k3 * x * x)
    return slope
