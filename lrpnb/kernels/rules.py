"""Per-element rule arithmetic shared by every layer's relevance kernels.

Kept in one place so that the stabilizer and the sign conventions of the LRP
Toolbox (Lapuschkin et al., JMLR 17(114), 2016) are written exactly once.
"""
from numba import njit

from . import JIT


@njit(inline="always", **JIT)
def stabilize(z, epsilon):
    """Return ``z + epsilon * sgn(z)`` with ``sgn(0) = +1``.

    This is the denominator of the epsilon rule (Bach et al., PLoS ONE 10(7),
    2015, eq. 58); the toolbox's 'simple' rule is the same with a tiny epsilon.
    """
    if z >= 0:
        return z + epsilon
    return z - epsilon


@njit(inline="always", **JIT)
def positive_part(v):
    """``max(v, 0)``, written so the result keeps ``v``'s type."""
    return v if v > 0 else v - v


@njit(inline="always", **JIT)
def negative_part(v):
    """``min(v, 0)``, written so the result keeps ``v``'s type."""
    return v if v < 0 else v - v
