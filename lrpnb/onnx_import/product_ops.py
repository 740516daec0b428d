"""Arithmetic on activations (the ``ProductOps`` mixin of the importer):
biases (Add, Sub of a constant after a dense layer or convolution), scales
(Mul, Div by a constant: Scale), residual sums (Add), gates (Mul of two
activations: squeeze-and-excitation), SiLU (x * Sigmoid(x)), the erf form
of GELU (x * 0.5 * (1 + Erf(x / sqrt 2)), in any order of its products)
read as one GELU layer, and the spatial mean (ReduceMean)."""
import math

import numpy as np

from ..layers.elementwise import GELU, HardSigmoid, SiLU
from ..layers.products import Mul, Scale
from ..layers.tokens import Bias
from ..network import INPUT, Add, GlobalAveragePool, Sigmoid, Tanh
from .checks import UNSUPPORTED_HINTS
from .tensors import FIRST, INDEX, SAME, settle

__all__ = ["ProductOps"]


def _close(a, b):
    return abs(a - b) <= 1e-6 * abs(b)


class ProductOps:
    # ------------------------------------------------------------ GELU's steps
    def gelu_step(self, node, names):
        """Handle ``node`` as a step of GELU's erf form if it is one (True), else False."""
        marked = [k for k, name in enumerate(names) if name in self.patterns]
        if not marked:
            return False
        k = marked[0]
        _, x, stage, factor = self.patterns[names[k]]
        other = names[1 - k] if len(names) == 2 else None
        scalar = float(np.ravel(self.constants[other])[0]) if other in self.constants and \
            np.size(self.constants[other]) == 1 else None
        op = node.op_type
        if op == "Add" and stage == "erf" and scalar == 1.0:
            self.patterns[node.output[0]] = ("GELU", x, "1+erf", 1.0)
        elif op == "Mul" and stage == "1+erf" and (other == x or self.scaled.get(other, (None,))[0] == x):
            self.gelu_done(node, x, 1.0 if other == x else self.scaled[other][1])
        elif op in ("Mul", "Div") and stage == "x(1+erf)" and scalar and (k == 0 or op == "Mul"):
            self.gelu_done(node, x, factor * (scalar if op == "Mul" else 1 / scalar))
        else:
            raise self.error(node, f"reads {names[k]!r}, a step of the GELU pattern x * 0.5 * (1 + Erf(x / "
                                   f"sqrt 2)) that this node does not continue; lrpnb reads the pattern whole")
        return True

    def gelu_done(self, node, x, factor):
        if _close(factor, 0.5):
            source = self.tensor(node, x)
            self.add(node, GELU(), [source], source.shape)
            self.tensors[node.output[0]] = source.like(self.tensors[node.output[0]].value)
        else:
            self.patterns[node.output[0]] = ("GELU", x, "x(1+erf)", factor)

    def op_Erf(self, node, attrs):
        x, k = self.scaled.get(node.input[0], (None, None))
        if x is None or not _close(k, 1 / math.sqrt(2)):
            raise self.error(node, "Erf is read only in GELU's erf form, x * 0.5 * (1 + Erf(x / sqrt 2))")
        self.patterns[node.output[0]] = ("GELU", x, "erf", 1.0)

    # ------------------------------------------------------------ Add, Sub
    def op_Add(self, node, attrs, negate=False):
        names = list(node.input)
        if self.gelu_step(node, names):
            return
        constants = [name for name in names if name in self.constants]
        if constants:
            other = [name for name in names if name not in self.constants]
            if len(other) != 1:
                raise self.error(node, "adds two constants")
            C = np.asarray(self.constant(node, constants[0], "the constant"), dtype=np.float64)
            if negate and names[1] != constants[0]:  # C - x: the activations negated, then C added
                source = self.tensor(node, other[0])
                negated = self.constant_layer(node, source, np.float64(-1), Scale, "the factor -1")
                self.tensors[node.output[0]] = self.constant_layer(node, negated, C, Bias, "the constant")
                return
            return self.bias(node, other[0], C * (-1 if negate else 1))
        if negate:
            raise self.error(node, "subtracts activations; lrpnb adds them (a residual sum) only")
        sources = [self.tensor(node, name) for name in names]
        if any(s.merged for s in sources):
            raise self.error(node, "adds rows merged with the batch axis; lrpnb reads them in a dense layer only")
        if any(s.shape != sources[0].shape for s in sources):
            try:
                shape = np.broadcast_shapes(*(s.shape for s in sources))
            except ValueError:
                raise self.error(node, "adds tensors whose shapes do not broadcast") from None
            sources = [self.broadcast(node, s, shape) for s in sources]
        kind = sources[0].kind
        if any(s.kind != kind or s.kind == INDEX or s.lshape != sources[0].lshape for s in sources):
            kind = FIRST if len(sources[0].shape) in (2, 3) and FIRST in [s.kind for s in sources] else SAME
            sources = [self.need(node, s, kind, "equal layouts") for s in sources]
        sources = [self.need(node, s, s.kind) for s in sources]
        self.add(node, Add(), sources, sources[0].shape, kind)

    def op_Sub(self, node, attrs):
        self.op_Add(node, attrs, negate=True)

    def per_channel(self, source, C):
        """C (broadcast against the ONNX tensor) as one value per lrpnb channel (last axis), or None."""
        shape = source.shape
        if C.ndim > len(shape) + 1 or (C.ndim == len(shape) + 1 and C.shape[0] != 1):
            return None
        C = C.reshape(C.shape[-len(shape):] if C.ndim > len(shape) else C.shape)
        C = C.reshape((1,) * (len(shape) - C.ndim) + C.shape)
        if C.size == 1:
            return C.ravel()
        axis = 0 if source.kind == FIRST or len(shape) == 1 else len(shape) - 1 if source.kind == SAME else None
        if axis is None or C.shape[axis] != shape[axis] or C.size != shape[axis]:
            return None
        return C.ravel()

    def bias(self, node, name, C):
        """A constant added to the dense or convolution layer before it (one value per output channel)."""
        source = self.tensor(node, name)
        target = self.folds_into(name, source)
        values = self.per_channel(source, C) if target is not None else None
        channels = target.layer.W.shape[-1] if target is not None else 0
        if values is None or values.size not in (1, channels) or not np.isfinite(values).all():
            self.tensors[node.output[0]] = self.constant_layer(node, source, C, Bias, "the constant added")
            return
        target.layer.B = target.layer.B + np.broadcast_to(values, (channels,))
        self.alias(node, source)

    def hint(self, source):
        """The advice for arithmetic on the model's input (a normalisation), else nothing."""
        return f"; to avoid it: {UNSUPPORTED_HINTS['Sub']}" if source.value == INPUT else ""

    # ------------------------------------------------------------ Mul, Div
    def op_Mul(self, node, attrs, divide=False):
        names = list(node.input)
        if self.gelu_step(node, names):
            return
        constants = [name for name in names if name in self.constants]
        if constants:
            other = [name for name in names if name not in self.constants]
            if len(other) != 1 or (divide and names[1] != constants[0]):
                raise self.error(node, "multiplies two constants" if len(other) != 1 else "divides a constant by "
                                 "an activation")
            C = np.asarray(self.constant(node, constants[0], "the factor"), dtype=np.float64)
            if divide and (C == 0).any():
                raise self.error(node, "divides by zero")
            return self.scale(node, other[0], 1 / C if divide else C)
        if divide:
            raise self.error(node, "divides activations; lrpnb reads products of activations (gates) only")
        x, g = (self.tensor(node, name) for name in names)
        if self.silu(node, x, g) or self.silu(node, g, x):
            return
        if x.shape == g.shape and len(x.shape) >= 2 and FIRST not in (x.kind, g.kind) and not (x.merged or g.merged):
            return self.token_gate(node, x, g)
        self.gate(node, x, g)

    def token_gate(self, node, a, b):
        """Mul of two token tensors of one shape (SwiGLU's silu(x W) (x V)): a Mul layer whose gate is the
        factor an activation function made."""
        def activated(t):
            made = self.by_name.get(t.value)
            return made is not None and type(made.layer) in (SiLU, GELU, Sigmoid, HardSigmoid, Tanh)
        gate = 0 if activated(a) else 1 if activated(b) else None
        if gate is None:
            raise self.error(node, f"multiplies two activations of shape (N, {', '.join(map(str, a.shape))}) of "
                                   f"which neither is an activation function's output (a gate); lrpnb reads gated "
                                   f"products (SwiGLU) and the patterns of GELU, SiLU and RMSNorm")
        sources = [self.need(node, t, SAME, "values in ONNX's order") for t in (a, b)]
        self.add(node, Mul(gate), sources, sources[0].shape, SAME)

    def op_Div(self, node, attrs):
        self.op_Mul(node, attrs, divide=True)

    def scale(self, node, name, C):
        source = self.tensor(node, name)
        values = self.per_channel(source, C) if not source.merged else None
        if values is None:
            self.tensors[node.output[0]] = out = self.constant_layer(node, source, C, Scale, "the factor")
            return out
        if source.kind == INDEX and values.size > 1:
            if len(source.shape) != 1:
                source = self.need(node, source, FIRST if len(source.shape) in (2, 3) else SAME)
            else:
                source, index = self.vector(node, source)
                if index is not None:
                    spread = np.ones(source.lshape[0])
                    spread[index] = values
                    values = spread
        elif source.pads is not None:
            source = self.need(node, source, source.kind)
        try:
            layer = Scale(values)
        except ValueError as error:
            raise self.error(node, str(error)) from None
        self.add(node, layer, [source], source.shape)
        self.tensors[node.output[0]] = out = source.like(self.tensors[node.output[0]].value)
        if values.size == 1:
            self.scaled[node.output[0]] = (name, float(values[0]))
        return out

    def silu(self, node, x, s):
        """x * Sigmoid(x) as one SiLU layer (True), when ``s`` is the Sigmoid of ``x``."""
        made = self.by_name.get(s.value)
        if made is None or type(made.layer) is not Sigmoid or made.inputs != [x.value] or s.kind != x.kind or \
                s.shape != x.shape or not np.array_equal(s.index, x.index) or x.pads is not None:
            return False
        self.add(node, SiLU(), [x], x.shape)
        self.tensors[node.output[0]] = x.like(self.tensors[node.output[0]].value)
        return True

    def gate(self, node, a, b):
        """Mul of a feature map and a gate (N, C, 1, 1) or of its shape: a Mul layer, the gate held constant."""
        def is_gate(t, other):
            made = self.by_name.get(t.value)
            spread = len(t.shape) == len(other.shape) and t.shape[0] == other.shape[0] and \
                all(s == 1 for s in t.shape[1:]) and t.shape != other.shape
            return spread or (t.shape == other.shape and made is not None and
                              type(made.layer) in (Sigmoid, HardSigmoid))
        gate = 1 if is_gate(b, a) else 0 if is_gate(a, b) else None
        if gate is None:
            raise self.error(node, f"multiplies activations of shapes (N, {', '.join(map(str, a.shape))}) and "
                                   f"(N, {', '.join(map(str, b.shape))}): lrpnb reads a gate (N, C, 1, 1) or a "
                                   f"Sigmoid/HardSigmoid of the feature map's shape")
        kind = FIRST if len(a.shape) in (2, 3) else SAME
        sources = [self.need(node, t, kind) for t in (a, b)]
        self.add(node, Mul(gate), sources, sources[1 - gate].shape, kind)

    # ------------------------------------------------------------ ReduceMean
    def op_ReduceMean(self, node, attrs):
        source = self.tensor(node, node.input[0])
        axes = [int(a) for a in np.ravel(self.constant(node, node.input[1], "the axes"))] \
            if len(node.input) > 1 and node.input[1] else attrs.get("axes")
        rank = len(source.shape) + 1
        axes = sorted(a + rank if a < 0 else a for a in axes or [])
        if rank not in (3, 4) or axes != list(range(2, rank)):
            raise self.error(node, f"only a mean over the spatial axes of an image is supported, got axes "
                                   f"{axes or 'all'}; to avoid it: average with nn.AdaptiveAvgPool2d(1) and "
                                   f"torch.flatten(x, 1) instead of x.mean((2, 3))")
        source = self.image(node, source, (2, 3))
        pooled = self.add(node, GlobalAveragePool(), [source], (source.shape[0],) + (1,) * (rank - 2), FIRST)
        if not attrs.get("keepdims", 1):
            index = np.arange(source.shape[0])
            self.tensors[node.output[0]] = settle(pooled.value, pooled.lshape, index.shape, index)
