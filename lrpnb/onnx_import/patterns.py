"""Multi-node patterns read as one layer (the ``Patterns`` mixin of the
importer), found before the walk: the tanh form of GELU (GPT-2's
``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``), RMSNorm
(``x / sqrt(mean(x^2) + eps) * gamma``, LLaMA's, Casts between its steps)
and a LayerNorm written out (``(x - mean) / sqrt(var + eps) * gamma +
beta``). Each pattern starts at its first node (Pow, ReduceMean) and
follows the nodes that alone read each step; the steps are skipped by the
walk, and the last node makes the layer from the pattern's input. The erf
form of GELU and SiLU are read step by step (``product_ops``)."""
import math

import numpy as np

from ..layers.elementwise import GELU
from ..layers.norm import LayerNorm, RMSNorm
from .tensors import SAME

__all__ = ["Patterns"]


def _near(value, target):
    return value is not None and abs(value - target) <= 1e-5 * abs(target)


class Patterns:
    def find_patterns(self):
        """Record every pattern of the graph: ``self.pattern_at`` (last node -> (kind, input, parameters)) and
        the nodes it covers in ``self.skip``."""
        self.producer = {out: node for node in self.graph.node for out in node.output if out}
        self.consumers = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.pattern_at = {}
        for node in self.graph.node:
            found, exponent = None, self.literal_scalar(node.input[1]) if len(node.input) > 1 else None
            if not node.output or not node.input:  # refused by the walk, naming the node
                continue
            if node.op_type == "Pow" and _near(exponent, 3.0):
                found = self.gelu_tanh(node)
            elif node.op_type == "Pow" and _near(exponent, 2.0):
                found = self.rms_norm(node)
            elif node.op_type == "ReduceMean":
                found = self.layer_norm(node)
            if found is not None:
                steps, last, made = found
                self.pattern_at[self.key(last)] = made
                self.skip.update(self.key(step) for step in steps if step is not last)

    @staticmethod
    def key(node):
        return node.output[0]

    # ------------------------------------------------------------ the graph around a node
    def literal(self, name):
        """The value of an initializer or Constant node (through Identity), or None."""
        if name in self.constants:
            return np.asarray(self.constants[name])
        node = self.producer.get(name)
        if node is None:
            return None
        if node.op_type == "Identity":
            return self.literal(node.input[0])
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            try:
                return self.numpy_helper.to_array(node.attribute[0].t)
            except Exception:  # an unreadable tensor is reported where the walk reads it
                return None
        return None

    def literal_scalar(self, name):
        value = self.literal(name)
        return float(value.ravel()[0]) if value is not None and value.size == 1 and value.dtype.kind in "fiu" \
            else None

    def root(self, name):
        """``name`` followed back through Cast and Identity nodes."""
        node = self.producer.get(name)
        while node is not None and node.op_type in ("Cast", "Identity") and self.literal(name) is None:
            name = node.input[0]
            node = self.producer.get(name)
        return name

    def only(self, name, op, steps, casts=True):
        """The one node that reads ``name`` (through Casts, added to ``steps``) if it is an ``op``, else None."""
        while True:
            readers = self.consumers.get(name, [])
            if self.readers.get(name, 0) != 1 or len(readers) != 1:
                return None
            node = readers[0]
            if casts and node.op_type == "Cast" and node.op_type != op:
                steps.append(node)
                name = node.output[0]
                continue
            if node.op_type not in (op if isinstance(op, tuple) else (op,)):
                return None
            steps.append(node)
            return node

    def other(self, node, name):
        """The input of a two-input ``node`` that is not ``name``."""
        inputs = list(node.input)
        if len(inputs) != 2 or name not in inputs:
            return None
        return inputs[1] if inputs[0] == name else inputs[0]

    def times(self, node, name, value):
        """Whether ``node`` multiplies ``name`` by the scalar ``value``."""
        return node is not None and node.op_type == "Mul" and _near(self.literal_scalar(self.other(node, name)), value)

    # ------------------------------------------------------------ GELU, tanh form
    @staticmethod
    def fed(steps):
        """The tensor the last step read from the step before it."""
        return steps[-2].output[0]

    def gelu_tanh(self, pow_node):
        x, steps = pow_node.input[0], [pow_node]
        cube = self.only(pow_node.output[0], "Mul", steps)
        if not self.times(cube, self.fed(steps), 0.044715):
            return None
        inner = self.only(cube.output[0], "Add", steps)
        if inner is None or self.root(self.other(inner, self.fed(steps)) or "") != self.root(x):
            return None
        scaled = self.only(inner.output[0], "Mul", steps)
        if not self.times(scaled, self.fed(steps), math.sqrt(2 / math.pi)):
            return None
        tanh = self.only(scaled.output[0], "Tanh", steps)
        one = tanh and self.only(tanh.output[0], "Add", steps)
        if not one or not _near(self.literal_scalar(self.other(one, self.fed(steps)) or ""), 1.0):
            return None
        product = self.only(one.output[0], "Mul", steps)
        y = product and self.other(product, self.fed(steps))
        if not y:
            return None
        half, last = self.producer.get(y), None
        if half is not None and self.root_input(half, x) and self.times(half, self.root_input(half, x), 0.5):
            last = product  # (0.5 x) (1 + tanh ...)
        elif self.root(y) == self.root(x):  # x (1 + tanh ...) 0.5
            last = self.only(product.output[0], "Mul", steps)
            last = last if self.times(last, self.fed(steps), 0.5) else None
        elif _near(self.literal_scalar(y), 0.5):  # 0.5 (1 + tanh ...) x
            last = self.only(product.output[0], "Mul", steps)
            last = last if last and self.root(self.other(last, self.fed(steps)) or "") == self.root(x) else None
        return None if last is None else (steps, last, ("gelu_tanh", x, None))

    def root_input(self, node, x):
        """The input of ``node`` that is ``x`` up to Casts, or None."""
        for name in node.input:
            if self.root(name) == self.root(x):
                return name
        return None

    # ------------------------------------------------------------ RMSNorm, LayerNorm
    def last_axis_mean(self, node):
        """Whether ``node`` is a ReduceMean over the last axis, keeping it."""
        if node is None or node.op_type != "ReduceMean":
            return False
        attrs = {a.name: self.helper.get_attribute_value(a) for a in node.attribute}
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = self.literal(node.input[1])
        return axes is not None and [int(a) for a in np.ravel(axes)] == [-1] and attrs.get("keepdims", 1) == 1

    def deviation(self, mean, steps):
        """From mean(v^2) (or the variance): Add eps, Sqrt; returns (the Sqrt node, eps) or None."""
        plus = self.only(mean.output[0], "Add", steps)
        eps = plus and self.literal_scalar(self.other(plus, self.fed(steps)) or "")
        root = plus and self.only(plus.output[0], "Sqrt", steps)
        return None if root is None or eps is None else (root, eps)

    def divided(self, root, v, steps):
        """v / sqrt: Div(v, sqrt), or Mul(v, 1 / sqrt) by Div(1, sqrt) or Reciprocal; the last node or None."""
        step = self.only(root.output[0], ("Div", "Reciprocal"), steps)
        if step is None:
            return None
        if step.op_type == "Div" and step.input[1] == self.fed(steps) and self.root(step.input[0]) == self.root(v):
            return step
        if step.op_type == "Div" and not _near(self.literal_scalar(step.input[0]), 1.0):
            return None
        product = self.only(step.output[0], "Mul", steps)
        if product is None or self.root(self.other(product, step.output[0]) or "") != self.root(v):
            return None
        return product

    def constant_after(self, last, op, steps):
        """The node ``op`` that alone reads ``last`` with a constant vector (gamma, beta): (node, vector) with
        its steps added to ``steps``, or (None, None)."""
        trial = [last]
        node = self.only(last.output[0], op, trial)
        value = node and self.literal(self.other(node, self.fed(trial)) or "")
        if value is None or value.ndim > 1 or value.dtype.kind != "f":
            return None, None
        steps.extend(trial[1:])
        return node, value

    def affine(self, last, steps, with_beta):
        """Mul by a constant vector (gamma) and Add of one (beta) after ``last``: (last node, gamma, beta)."""
        product, gamma = self.constant_after(last, "Mul", steps)
        if product is None:
            return last, None, None
        plus, beta = self.constant_after(product, "Add", steps) if with_beta else (None, None)
        return (product, gamma, None) if plus is None else (plus, gamma, beta)

    def rms_norm(self, pow_node):
        x, steps = pow_node.input[0], [pow_node]
        mean = self.only(pow_node.output[0], "ReduceMean", steps)
        if not self.last_axis_mean(mean):
            return None
        found = self.deviation(mean, steps)
        last = found and self.divided(found[0], x, steps)
        if last is None:
            return None
        last, gamma, _ = self.affine(last, steps, False)
        return steps, last, ("rms", x, (gamma, found[1]))

    def layer_norm(self, mean_node):
        x, steps = mean_node.input[0], [mean_node]
        if not self.last_axis_mean(mean_node):
            return None
        sub = self.only(mean_node.output[0], "Sub", steps)
        if sub is None or list(sub.input) != [x, mean_node.output[0]]:
            return None
        readers = self.consumers.get(sub.output[0], [])
        pows = [n for n in readers if n.op_type == "Pow" and len(n.input) > 1 and
                _near(self.literal_scalar(n.input[1]), 2.0)]
        if len(readers) != 2 or self.readers.get(sub.output[0]) != 2 or len(pows) != 1:
            return None
        steps.append(pows[0])
        variance = self.only(pows[0].output[0], "ReduceMean", steps)
        if not self.last_axis_mean(variance):
            return None
        found = self.deviation(variance, steps)
        last = found and self.divided(found[0], sub.output[0], steps)
        if last is None:
            return None
        last, gamma, beta = self.affine(last, steps, True)
        return steps, last, ("layernorm", x, (gamma, beta, found[1]))

    # ------------------------------------------------------------ the layer, at the pattern's last node
    def pattern_layer(self, node):
        kind, x, parameters = self.pattern_at[self.key(node)]
        source = self.tensor(node, x)
        if kind == "gelu_tanh":
            made = self.add(node, GELU("tanh"), [source], source.shape)
            self.tensors[node.output[0]] = source.like(made.value)
            return
        source = self.need(node, source, SAME, "channels last (the last axis normalised)")
        width = source.shape[-1] if source.shape else 0
        gamma = parameters[0] if parameters[0] is not None else np.ones(width)
        try:
            if np.size(gamma) not in (1, width):
                raise ValueError(f"the scale must have one value per feature ({width}), got {np.size(gamma)}")
            gamma = np.broadcast_to(np.ravel(gamma), (width,)).astype(np.float64)
            if kind == "rms":
                layer = RMSNorm(gamma, parameters[1])
            else:
                beta = parameters[1]
                beta = None if beta is None else np.broadcast_to(np.ravel(beta), (width,)).astype(np.float64)
                layer = LayerNorm(gamma, beta, parameters[2])
        except ValueError as error:
            raise self.error(node, str(error)) from None
        self.add(node, layer, [source], source.shape, SAME)

    def op_Pow(self, node, attrs):
        raise self.error(node, "Pow of activations is read only in the patterns of GELU's tanh form, RMSNorm and "
                               "LayerNorm (the steps of an exported torch function)")

    op_Reciprocal = op_Sqrt = op_Pow
