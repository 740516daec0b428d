"""The per-element rule arithmetic of ``lrpnb.rule_math``, compiled for the CPU."""
from numba import njit

from .. import rule_math
from . import JIT

stabilize = njit(inline="always", **JIT)(rule_math.stabilize)
positive_part = njit(inline="always", **JIT)(rule_math.positive_part)
negative_part = njit(inline="always", **JIT)(rule_math.negative_part)
paired_ratios = njit(inline="always", **JIT)(rule_math.paired_ratios)
relu_backward = njit(inline="always", **JIT)(rule_math.relu_backward)
