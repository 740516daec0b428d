"""Composites: one rule per layer, chosen by the kind and position of each layer.

A composite is a per-layer preset: explaining with one gives exactly what the
equivalent ``layer.set_lrp_parameters`` calls give. Two families:

- the LRP Toolbox's Caffe "formula types" (``formula_type``), with its
  parameters epsstab (epsilon), alphabeta_beta (beta >= 0, alpha = 1 + beta)
  and the layer index k of auxiliaryvariable_maxlayerindexforflatdistinconv;
- the named composites of zennit and iNNvestigate;
- the transformer composites: AttnLRP (Achtibat et al., ICML 2024) and
  CP-LRP (Ali et al., ICML 2022).

Layer indices count ``net.layers`` from 0, every layer included (Rect and
pooling too); "at and below k" means layers 0..k.
"""
import numpy as np

from .layers import ConvTranspose, MatMul, Mul
from .network import Convolution, Linear

#: the layers composites treat as convolutions (zennit's types.Convolution: ConvNd and ConvTransposeNd)
CONVOLUTIONS = (Convolution, ConvTranspose)
from .rules import NORM, Rule

__all__ = ["Composite", "formula_type", "EpsilonPlus", "EpsilonAlpha2Beta1", "EpsilonPlusFlat",
           "EpsilonAlpha2Beta1Flat", "EpsilonGammaBox", "AttnLRP", "CPLRP", "FORMULA_TYPES"]


class Composite:
    """A rule for every layer of a network.

    Parameters
    ----------
    name : str
    choose : callable (index, layer, layers) -> (rule, param)
        The rule of each layer.
    method : str, optional
        A gradient method applied to the whole network ('gradient',
        'sensitivity', 'deconvnet', 'guided_backprop'), which then decides
        how the explanation starts and ends.
    layer_index : int, optional
        The layer index the composite refers to, checked against the network.
    """

    def __init__(self, name, choose, method=None, layer_index=None):
        self.name = name
        self._choose = choose
        self.method = method
        self.layer_index = layer_index

    def __repr__(self):
        return f"<Composite {self.name}>"

    def rules(self, layers):
        """The :class:`~lrpnb.rules.Rule` of each of ``layers`` (validated here, once)."""
        if self.layer_index is not None and not 0 <= self.layer_index < len(layers):
            raise ValueError(f"{self.name}: layer index {self.layer_index} is outside the network "
                             f"(layers 0..{len(layers) - 1})")
        return [Rule(*self._choose(k, layer, layers)) for k, layer in enumerate(layers)]


def _weighted(layer):
    return isinstance(layer, CONVOLUTIONS + (Linear,))


def _first_weighted(layers):
    return next((k for k, layer in enumerate(layers) if _weighted(layer)), None)


def _check_index(number, layer_index):
    if layer_index is None:
        raise ValueError(f"formula type {number} needs layer_index (the toolbox's "
                         f"auxiliaryvariable_maxlayerindexforflatdistinconv)")
    if int(layer_index) != layer_index or layer_index < 0:
        raise ValueError(f"layer_index must be a non-negative integer, got {layer_index!r}")
    return int(layer_index)


#: formula type number -> what it means
FORMULA_TYPES = {
    0: "epsilon everywhere",
    2: "alpha-beta everywhere",
    54: "epsilon above layer k, flat at and below",
    56: "epsilon above layer k, w^2 at and below",
    58: "alpha-beta above layer k, flat at and below",
    60: "alpha-beta above layer k, w^2 at and below",
    100: "alpha-beta for convolutions, epsilon for every other layer",
    102: "type 100 above layer k, flat at and below",
    104: "type 100 above layer k, w^2 at and below",
    11: "gradient",
    26: "deconvnet",
    99: "sensitivity",
    166: "guided backprop",
}
_METHODS = {11: "gradient", 26: "deconvnet", 99: "sensitivity", 166: "guided_backprop"}


def formula_type(number, epsstab=0.01, alphabeta_beta=1.0, layer_index=None):
    """The Caffe toolbox's composite of formula type ``number`` (FORMULA_TYPES).

    epsilon = epsstab; alpha = 1 + alphabeta_beta (alphabeta_beta >= 0);
    layer_index k for the types that switch to flat or w^2 at and below k.
    """
    if number not in FORMULA_TYPES:
        known = ", ".join(f"{k} ({v})" for k, v in FORMULA_TYPES.items())
        raise ValueError(f"unknown formula type {number!r}; known: {known}")
    if number in _METHODS:
        method = _METHODS[number]
        return Composite(f"formula type {number}", _Everywhere(method), method=method)
    epsilon = Rule("epsilon", epsstab).param
    if float(alphabeta_beta) < 0:
        raise ValueError(f"alphabeta_beta must be >= 0, got {alphabeta_beta!r}")
    alpha = Rule("alphabeta", 1.0 + float(alphabeta_beta)).param
    low = {54: "flat", 56: "ww", 58: "flat", 60: "ww", 102: "flat", 104: "ww"}.get(number)
    k_max = _check_index(number, layer_index) if low else None

    return Composite(f"formula type {number}", _Formula(number, epsilon, alpha, low, k_max), layer_index=k_max)


# The choices are classes rather than closures so that a composite pickles
# (to the workers of multiprocessing, joblib or Dask).
class _Everywhere:
    """One rule (a gradient method) on every layer."""

    def __init__(self, method):
        self.method = method

    def __call__(self, k, layer, layers):
        return self.method, None


class _Formula:
    """The choice of a toolbox formula type."""

    def __init__(self, number, epsilon, alpha, low, k_max):
        self.number, self.epsilon, self.alpha, self.low, self.k_max = number, epsilon, alpha, low, k_max

    def __call__(self, k, layer, layers):
        if self.low is not None and k <= self.k_max:
            return self.low, None
        if self.number in (0, 54, 56):
            return "epsilon", self.epsilon
        if self.number in (2, 58, 60):
            return "alphabeta", self.alpha
        return ("alphabeta", self.alpha) if isinstance(layer, CONVOLUTIONS) else ("epsilon", self.epsilon)


class _epsilon_and:
    """epsilon for dense and every other layer, conv_rule for convolutions;
    ``first`` (rule, param) for the first convolution or dense layer."""

    def __init__(self, conv_rule, conv_param, epsilon, first=None):
        self.conv_rule, self.conv_param, self.epsilon, self.first = conv_rule, conv_param, epsilon, first

    def __call__(self, k, layer, layers):
        if self.first is not None and k == _first_weighted(layers):
            return self.first
        if isinstance(layer, CONVOLUTIONS):
            return self.conv_rule, self.conv_param
        if layer.join:
            # zennit's Norm rule on its Sum and AvgPool layers: a fixed stabilizer
            return NORM
        return "epsilon", self.epsilon


def EpsilonPlus(epsilon=1e-6):
    """zennit's EpsilonPlus: z+ on convolutions, epsilon on dense (and pooling) layers.

    In these zennit composites, average pools and additions (Add) take the
    epsilon rule with zennit's fixed stabilizer 1e-6 (its Norm rule),
    whatever ``epsilon`` is."""
    return Composite("EpsilonPlus", _epsilon_and("zplus", None, epsilon))


def EpsilonAlpha2Beta1(epsilon=1e-6):
    """zennit's EpsilonAlpha2Beta1: alpha=2, beta=1 on convolutions, epsilon elsewhere."""
    return Composite("EpsilonAlpha2Beta1", _epsilon_and("alphabeta", 2.0, epsilon))


def EpsilonPlusFlat(epsilon=1e-6):
    """EpsilonPlus with the flat rule on the first convolution or dense layer."""
    return Composite("EpsilonPlusFlat", _epsilon_and("zplus", None, epsilon, first=("flat", None)))


def EpsilonAlpha2Beta1Flat(epsilon=1e-6):
    """EpsilonAlpha2Beta1 with the flat rule on the first convolution or dense layer."""
    return Composite("EpsilonAlpha2Beta1Flat",
                     _epsilon_and("alphabeta", 2.0, epsilon, first=("flat", None)))


def EpsilonGammaBox(low, high, gamma=0.25, epsilon=1e-6, mean=None, std=None):
    """zennit's EpsilonGammaBox: z^B with bounds (low, high) on the first
    convolution or dense layer, gamma on the other convolutions, epsilon
    on dense (and pooling) layers.

    The bounds are those of the values the first layer reads. For a model
    that takes normalised inputs ``(x - mean) / std``, give ``low`` and
    ``high`` in the input's units (the data range, e.g. 0 and 1) with the
    ``mean`` and ``std`` (one value or one per channel, in the model's
    channel order): the bounds become ``(low - mean) / std`` and
    ``(high - mean) / std`` per channel.
    """
    bounds = Rule("zb", normalised_bounds(low, high, mean, std)).param
    return Composite("EpsilonGammaBox", _epsilon_and("gamma", gamma, epsilon, first=("zb", bounds)))


class _Products:
    """The transformer composites' choice: ``matmul`` on MatMul, ``mul`` on
    Mul (the products of two activations), epsilon on every other layer."""

    def __init__(self, matmul, mul, epsilon):
        self.matmul, self.mul, self.epsilon = matmul, mul, epsilon

    def __call__(self, k, layer, layers):
        if isinstance(layer, MatMul):
            return self.matmul
        if isinstance(layer, Mul):
            return self.mul
        return "epsilon", self.epsilon


def AttnLRP(epsilon=1e-10):
    """AttnLRP (Achtibat et al., "AttnLRP: Attention-Aware Layer-Wise
    Relevance Propagation for Transformers", ICML 2024), as LXT computes it.

    The uniform rule on the products of two activations (MatMul: query x
    key and attention x value; Mul: gates): each factor gets half, by the
    epsilon rule with ``epsilon`` on its share. The epsilon rule with the
    same tiny ``epsilon`` on every other layer: dense layers and
    convolutions, Add, Bias, Scale, LayerNorm and RMSNorm (the standard
    deviation held constant); element-wise activations pass relevance
    unchanged and AttentionSoftmax takes its softmax rule under it, as
    under every LRP rule. LXT's Gradient x Input carries no stabilizer
    on these layers, so the default is tiny (1e-10, LXT's own in its
    identity rule); ``epsilon`` must be > 0 (and > 0 in the data's dtype).
    """
    epsilon = Rule("epsilon", epsilon).param
    return Composite("AttnLRP", _Products(("uniform", epsilon), ("uniform", epsilon), epsilon))


def CPLRP(epsilon=1e-10):
    """CP-LRP (Ali et al., "XAI for Transformers: Better Explanations through
    Conservative Propagation", ICML 2022): the attention weights and the
    gates held constant.

    A MatMul with a gate (attention x value: the attention weights) gives
    the other factor the whole relevance by the epsilon rule with
    ``epsilon`` (the layer's rule under every LRP rule but 'uniform'), the
    attention weights none, so no relevance passes through the attention
    softmax; a MatMul without one (query x key) splits evenly. Mul takes
    'constant_gate'. Every other layer the epsilon rule with ``epsilon``,
    as in :func:`AttnLRP`.
    """
    epsilon = Rule("epsilon", epsilon).param
    return Composite("CPLRP", _Products(("epsilon", epsilon), ("constant_gate", None), epsilon))


def normalised_bounds(low, high, mean=None, std=None):
    """(low, high) of the z^B rule for inputs normalised as ``(x - mean) /
    std``: ``low`` and ``high`` as given without a normalisation, else
    ``(low - mean) / std`` and ``(high - mean) / std`` (one per channel
    where mean, std or the bounds hold one per channel)."""
    if mean is None and std is None:
        return low, high
    mean = np.ravel(np.asarray(0.0 if mean is None else mean, dtype=np.float64))
    std = np.ravel(np.asarray(1.0 if std is None else std, dtype=np.float64))
    if mean.size == 0 or std.size == 0 or not (np.isfinite(mean).all() and np.isfinite(std).all()) \
            or np.any(std <= 0):
        raise ValueError(f"EpsilonGammaBox: std must be positive and mean finite, got mean {mean.tolist()}, "
                         f"std {std.tolist()}")
    try:
        low, high, mean, std = np.broadcast_arrays(np.ravel(np.asarray(low, dtype=np.float64)),
                                                   np.ravel(np.asarray(high, dtype=np.float64)), mean, std)
    except ValueError:
        raise ValueError(f"EpsilonGammaBox: low, high, mean and std must hold one value or one per channel "
                         f"each, got {np.size(low)}, {np.size(high)}, {mean.size}, {std.size}") from None
    return (low - mean) / std, (high - mean) / std
