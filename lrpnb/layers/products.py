"""Products: by a constant (Scale) and of two activations (Mul).

Scale (ConvNeXt's layer scale, a Mul by a constant) is linear with one input
per output, a dense layer with a diagonal weight: every LRP rule gives back
the output's relevance up to what its stabilizer absorbs. Mul of two
activations (a squeeze-and-excitation gate, a gated MLP) gives its relevance
to the feature map with the gate held constant (CP-LRP, Ali et al., ICML
2022), or, under the rule ``'uniform'``, half to each factor (AttnLRP,
Achtibat et al., ICML 2024). docs/rules.md gives every formula. Kernels:
the backend's ``gates``.
"""
import numbers

import numpy as np

from ..backends import CPU
from ..rules import ZENNIT_STABILIZER
from .base import Layer, bounds, parameter_array, shape_text
from .tokens import broadcast_constant, constant_array, sample_broadcast

__all__ = ["Scale", "Mul"]


class Scale(Layer):
    """``y = x s``: every value times one constant, channel c (last axis)
    times ``s[c]``, or, for an array s of two axes or more, every value times
    its entry of s broadcast to the sample shape (numpy's rules, trailing
    axes aligned: rotary cos/sin tables (T, d) over (N, h, T, d), a Where's
    0/1 condition).

    Parameters
    ----------
    scale : float or array
        One scale for all values, one per channel (C,), or an array that
        broadcasts to the sample shape (leading axes of length 1 dropped).

    Relevance, with z = x s (the rules of docs/rules.md on a diagonal
    weight, no bias): ``simple``/``epsilon`` z R / (z + eps sgn z);
    ``alphabeta`` alpha z R / (z + 1e-16) where z > 0, beta z R / (z - 1e-16)
    where z < 0; ``zplus`` the same with alpha = 1, beta = 0, 1e-6 (0 where
    z < 0); ``gamma`` z' R / (z' + 1e-6 sgn z') with z' = (1 + gamma) z;
    ``zb`` v R / (v + 1e-6 sgn v) with v = x s - l s+ - h s-; ``flat`` and
    ``ww`` R. The gradient methods get s G.
    """

    toolbox = False

    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    @property
    def scale(self):
        return self._scale

    @scale.setter
    def scale(self, value):
        if np.ndim(value) <= 1:
            scale = parameter_array(np.ravel(value), 1, "scale", "Scale")
            if scale.size == 0:
                raise ValueError("Scale: scale must hold one value or one per channel, got none")
        else:
            scale = constant_array(value, "scale", "Scale")
        self._scale = scale
        self._casts = {}

    def describe(self):
        if self.scale.ndim == 1:
            return f"Scale {self.scale.size}"
        return f"Scale {'x'.join(map(str, self.scale.shape))}"

    def output_shape(self, shape):
        if self.scale.ndim > 1:
            sample_broadcast(self.scale, shape, "the scale")
        elif self.scale.size > 1 and (len(shape) < 2 or shape[-1] != self.scale.size):
            raise ValueError(f"expects {self.scale.size} channels (last axis), got {shape_text(shape)}")
        return shape

    def _scale_on(self, X, backend):
        """The scale in X's dtype on the device, flat: entry ``e % size``
        meets element e of X."""
        if self.scale.ndim == 1:
            return self.cached((backend.name, X.dtype), lambda: backend.put(self.scale.astype(X.dtype)))
        return broadcast_constant(self, self.scale, tuple(X.shape), X.dtype, backend, "the scale")

    def forward(self, X, backend=CPU):
        return backend.gates.scale_forward(X, self._scale_on(X, backend))

    def propagate(self, X, Y, R, rule, backend):
        gates, t = backend.gates, X.dtype.type
        S = self._scale_on(X, backend)
        if rule.is_gradient:
            return gates.scale_forward(R, S)
        match rule.name:
            case "flat" | "ww":
                return R
            case "alphabeta" | "zplus":
                p1, p2, tiny = rule.paired()
                return gates.scale_relevance_paired(X, S, R, t(p1), t(p2), t(tiny))
            case "gamma":
                return gates.scale_relevance_epsilon(X, S, R, t(1 + rule.param), t(ZENNIT_STABILIZER))
            case "zb":
                low, high = bounds(rule.param, tuple(X.shape)[-1], X.dtype, backend)
                return gates.scale_relevance_zbox(X, S, low, high, R, t(ZENNIT_STABILIZER))
            case _:  # simple, epsilon
                return gates.scale_relevance_epsilon(X, S, R, t(1), t(rule.epsilon()))


class Mul(Layer):
    """``y = x g``, the product of two activations: a feature map x and a
    gate g of x's shape or broadcast over every axis but the batch and the
    channels (an SE gate (N, 1, 1, C) on (N, H, W, C)).

    Parameters
    ----------
    gate : {0, 1}
        Which of the two inputs is the gate (the branch an importer knows
        ends in the sigmoid); the other is the feature map.

    Relevance: under every LRP rule but ``'uniform'`` (and ``'constant_gate'``
    to ask for it by name) the gate is held constant: x gets R, the gate
    nothing (CP-LRP's rule for gates and attention weights; the layer is
    then linear in x, with one input per output). Under ``'uniform'`` each
    factor gets R/2, the gate's half summed over the axes it was broadcast
    along (AttnLRP's uniform rule). The gradient methods get the product
    rule: G g to x, G x (summed over the broadcast axes) to the gate.
    """

    toolbox = False
    arity = None  # two inputs, given as a list

    def __init__(self, gate=1):
        super().__init__()
        if isinstance(gate, bool) or not isinstance(gate, numbers.Integral) or gate not in (0, 1):
            raise ValueError(f"Mul: gate must be 0 or 1 (which of the two inputs is the gate), got {gate!r}")
        self.gate = int(gate)

    def describe(self):
        return f"Mul gate={self.gate}"

    def output_shape(self, shapes):
        if len(shapes) != 2:
            raise ValueError(f"expects two inputs (a feature map and a gate), got {len(shapes)}")
        x, g = tuple(shapes[1 - self.gate]), tuple(shapes[self.gate])
        broadcast = x[:1] + (1,) * (len(x) - 2) + x[-1:]
        if len(x) < 2 or (g != x and g != broadcast):
            raise ValueError(f"expects a gate (input {self.gate}) of the feature map's shape {shape_text(x)} "
                             f"or {shape_text(broadcast)}, got {shape_text(g)}")
        return x

    def _views(self, X):
        """(x, g) as (N, M, C) and (N, 1 or M, C) views, in that order."""
        x, g = X[1 - self.gate], X[self.gate]
        N, C = tuple(x.shape)[0], tuple(x.shape)[-1]
        return x.reshape((N, x.size // (N * C), C)), g.reshape((N, g.size // (N * C), C))

    def forward(self, X, backend=CPU):
        x3, g3 = self._views(X)
        return backend.gates.mul_forward(x3, g3).reshape(X[1 - self.gate].shape)

    def propagate(self, X, Y, R, rule, backend):
        gates, t = backend.gates, Y.dtype.type
        x3, g3 = self._views(X)
        R3 = R.reshape(x3.shape)
        if rule.is_gradient:
            to_x = gates.mul_forward(R3, g3)
            to_gate = gates.broadcast_sum(gates.mul_forward(R3, x3), t(1), g3.shape[1])
        elif rule.name == "uniform":
            to_x = gates.broadcast_sum(R3, t(0.5), x3.shape[1])
            to_gate = gates.broadcast_sum(R3, t(0.5), g3.shape[1])
        else:  # the gate held constant
            to_x, to_gate = R3, gates.zeros(g3.shape, Y.dtype)
        parts = [to_x.reshape(X[1 - self.gate].shape), to_gate.reshape(X[self.gate].shape)]
        return parts if self.gate == 1 else parts[::-1]
