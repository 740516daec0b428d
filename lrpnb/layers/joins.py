"""Layers that join several inputs: Add (a residual join) and Concat.

Relevance goes back to each input: to the summands of an Add in proportion
to their contributions, to the parts of a Concat by their channels. The
kernels are the backend's ``tensors`` module.
"""
from ..backends import CPU
from .base import Layer, shape_text

__all__ = ["Add", "Concat"]


class Add(Layer):
    """The sum of two or more inputs of one shape (a residual join).

    Relevance goes to the summands in proportion to their contributions,
    ``R_m = x_m R / (y + eps sgn y)`` (zennit's Norm rule on its Sum layer):
    ``simple`` eps = 1e-16, ``epsilon`` its parameter, every other LRP rule
    1e-6. The gradient methods pass G to every summand.
    """

    toolbox = False
    arity = None  # two or more inputs
    join = True

    def describe(self):
        return "Add"

    def output_shape(self, shapes):
        if len(shapes) < 2 or any(shape[1:] != shapes[0][1:] for shape in shapes):
            raise ValueError(f"expects two or more inputs of one shape, got "
                             f"{', '.join(shape_text(shape) for shape in shapes)}")
        return shapes[0]

    def forward(self, X, backend=CPU):
        return backend.tensors.add_forward(list(X))

    def propagate(self, X, Y, R, rule, backend):
        if rule.is_gradient:
            return [R] * len(X)
        return backend.tensors.add_relevance(list(X), Y, R, X[0].dtype.type(rule.epsilon()))


class Concat(Layer):
    """Inputs joined along the channel (last) axis; each gets its channels' relevance."""

    toolbox = False
    arity = None

    def describe(self):
        return "Concat"

    def output_shape(self, shapes):
        if any(len(shape) != len(shapes[0]) or shape[1:-1] != shapes[0][1:-1] for shape in shapes):
            raise ValueError(f"expects inputs that differ in channels only, got "
                             f"{', '.join(shape_text(shape) for shape in shapes)}")
        return shapes[0][:-1] + (sum(shape[-1] for shape in shapes),)

    def forward(self, X, backend=CPU):
        return backend.tensors.concat_channels(list(X))

    def propagate(self, X, Y, R, rule, backend):
        parts, c0 = [], 0
        for part in X:
            parts.append(backend.tensors.take_channels(R, c0, c0 + tuple(part.shape)[-1]))
            c0 += tuple(part.shape)[-1]
        return parts
