"""Attention: the product of two activations (MatMul: query times key,
attention weights times values) and the softmax of the attention scores
(AttentionSoftmax).

Relevance follows AttnLRP (Achtibat et al., ICML 2024) and its reference
implementation LXT: each factor of a product gets half of the relevance by
the epsilon rule (the uniform rule), and the softmax, linearised at its
input, passes ``x (R - s sum R)``. CP-LRP (Ali et al., ICML 2022) holds the
attention weights constant instead: the other factor gets all the
relevance. docs/rules.md gives every formula. Kernels: the backend's
``attention`` (the softmax's forward pass and gradient: ``activations``).
"""
import numbers

import numpy as np

from ..backends import CPU
from .base import Layer, shape_text

__all__ = ["MatMul", "AttentionSoftmax"]


class MatMul(Layer):
    """``y = a @ b``, the product of two activations over their last two
    axes, batched over the leading ones: a (N, B..., T, K) @ b (N, B..., K, S)
    -> (N, B..., T, S), the batch axes N, B... equal in both (no
    broadcasting).

    Parameters
    ----------
    gate : {None, 0, 1}
        Which factor CP-LRP holds constant (the attention weights A of
        A @ V: 0), or None when neither is a gate (query times key).

    Relevance, with ``q_ts = f R_ts / (y_ts + eps sgn y_ts)`` and eps the
    rule's stabilizer (``rule.epsilon()``): ``R_a = a * (q @ b^T)``,
    ``R_b = b * (a^T @ q)``. Under ``'uniform'``, and under every LRP rule
    when ``gate`` is None, f = 1/2 for both factors (AttnLRP's uniform rule:
    each factor half of R, each by the epsilon rule). Under every other LRP
    rule (``'constant_gate'`` among them) with a gate, f = 1 for the other
    factor and the gate gets zeros. The gradient methods get the product
    rule: ``G @ b^T`` to a, ``a^T @ G`` to b.
    """

    toolbox = False
    arity = None  # two inputs, given as a list

    def __init__(self, gate=None):
        super().__init__()
        if gate is not None and (isinstance(gate, bool) or not isinstance(gate, numbers.Integral)
                                 or gate not in (0, 1)):
            raise ValueError(f"MatMul: gate must be None, 0 or 1 (which factor CP-LRP holds constant), "
                             f"got {gate!r}")
        self.gate = None if gate is None else int(gate)

    def describe(self):
        return "MatMul" if self.gate is None else f"MatMul gate={self.gate}"

    def output_shape(self, shapes):
        if len(shapes) != 2:
            raise ValueError(f"expects two inputs (a @ b), got {len(shapes)}")
        a, b = tuple(shapes[0]), tuple(shapes[1])
        if len(a) < 3 or len(b) != len(a) or a[:-2] != b[:-2] or a[-1] != b[-2]:
            wanted = f"; b must be {shape_text(a[:-2] + (a[-1], 'S'))}" if len(a) >= 3 else ""
            raise ValueError(f"expects a (N, ..., T, K) and b (N, ..., K, S) with the same leading axes, got "
                             f"a {shape_text(a)} and b {shape_text(b)}{wanted}")
        return a[:-1] + b[-1:]

    @staticmethod
    def _stacks(X):
        """(a, b) as C-contiguous stacks (P, T, K) and (P, K, S)."""
        # tuple(shape): the simulator's device arrays take no negative indices
        a, b = X
        (*batch, T, K), (S,) = tuple(a.shape), tuple(b.shape)[-1:]
        P = int(np.prod(batch))
        return a.reshape((P, T, K)), b.reshape((P, K, S))

    def _check(self, X):
        a, b = X
        self.output_shape([tuple(a.shape), tuple(b.shape)])
        if a.dtype != b.dtype:
            raise ValueError(f"MatMul: both factors must have one dtype, got {a.dtype} and {b.dtype}")

    def forward(self, X, backend=CPU):
        self._check(X)
        a3, b3 = self._stacks(X)
        return backend.attention.matmul_forward(a3, b3).reshape(tuple(X[0].shape)[:-1] + tuple(X[1].shape)[-1:])

    def propagate(self, X, Y, R, rule, backend):
        kernels, t = backend.attention, Y.dtype.type
        a3, b3 = self._stacks(X)
        R3 = R.reshape((a3.shape[0], a3.shape[1], b3.shape[2]))
        if rule.is_gradient:
            parts = [kernels.matmul_backward_a(b3, R3), kernels.matmul_backward_b(a3, R3)]
        elif rule.name == "uniform" or self.gate is None:
            Q = kernels.matmul_ratio(Y.reshape(R3.shape), R3, t(0.5), t(rule.epsilon()))
            parts = [kernels.matmul_relevance_a(a3, b3, Q), kernels.matmul_relevance_b(a3, b3, Q)]
        else:  # the gate held constant
            Q = kernels.matmul_ratio(Y.reshape(R3.shape), R3, t(1), t(rule.epsilon()))
            if self.gate == 0:
                parts = [backend.gates.zeros(a3.shape, Y.dtype), kernels.matmul_relevance_b(a3, b3, Q)]
            else:
                parts = [kernels.matmul_relevance_a(a3, b3, Q), backend.gates.zeros(b3.shape, Y.dtype)]
        return [parts[0].reshape(X[0].shape), parts[1].reshape(X[1].shape)]


class AttentionSoftmax(Layer):
    """``s_j = exp(x_j) / sum_k exp(x_k)`` over the last axis of any
    (N, ..., S) tensor: the attention probabilities inside a network (the
    toolbox's final :class:`~lrpnb.layers.SoftMax` stays what it is).
    A score of -inf (a mask) gets probability 0.

    Relevance, under every LRP rule (AttnLRP's softmax rule, LXT's): the
    softmax linearised at its input, ``R_x = x (R - s sum_j R_j)``, 0 where
    x is not finite. The gradient methods get the exact Jacobian-vector
    product ``s (G - sum_j s_j G_j)``.
    """

    toolbox = False

    def describe(self):
        return "AttentionSoftmax"

    def output_shape(self, shape):
        if len(shape) < 2 or shape[-1] < 1:
            raise ValueError(f"expects scores (N, ..., S) with S >= 1, got {shape_text(shape)}")
        return shape

    @staticmethod
    def _rows(A):
        S = tuple(A.shape)[-1]
        return A.reshape((A.size // S, S))

    def forward(self, X, backend=CPU):
        return backend.activations.softmax_forward(self._rows(X)).reshape(X.shape)

    def propagate(self, X, Y, R, rule, backend):
        if rule.is_gradient:
            return backend.activations.softmax_backward(self._rows(Y), self._rows(R)).reshape(X.shape)
        return backend.attention.softmax_relevance(self._rows(X), self._rows(Y), self._rows(R)).reshape(X.shape)

