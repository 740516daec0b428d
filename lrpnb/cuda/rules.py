"""The per-element rule arithmetic of ``lrpnb.rule_math``, compiled as CUDA
device functions."""
from numba import cuda

from .. import rule_math

stabilize = cuda.jit(device=True, inline=True)(rule_math.stabilize)
positive_part = cuda.jit(device=True, inline=True)(rule_math.positive_part)
negative_part = cuda.jit(device=True, inline=True)(rule_math.negative_part)
paired_ratios = cuda.jit(device=True, inline=True)(rule_math.paired_ratios)
relu_backward = cuda.jit(device=True, inline=True)(rule_math.relu_backward)
