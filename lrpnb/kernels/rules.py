"""The per-element rule arithmetic of ``lrpnb.rule_math``, compiled for the CPU."""
from numba import njit

from .. import rule_math
from . import JIT

stabilize = njit(inline="always", **JIT)(rule_math.stabilize)
positive_part = njit(inline="always", **JIT)(rule_math.positive_part)
negative_part = njit(inline="always", **JIT)(rule_math.negative_part)
paired_ratios = njit(inline="always", **JIT)(rule_math.paired_ratios)
relu_backward = njit(inline="always", **JIT)(rule_math.relu_backward)


@njit(inline="always", **JIT)
def times_input(Rx, X, n):
    """``Rx[n] *= X[n]`` element by element: the whole-array operation would
    compile numba's broadcasting and its shape-error formatting into every
    kernel that used it (seconds at the first use of a rule)."""
    for p in range(X.shape[1]):
        for q in range(X.shape[2]):
            for c in range(X.shape[3]):
                Rx[n, p, q, c] *= X[n, p, q, c]

