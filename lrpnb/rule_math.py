"""Per-element rule arithmetic, written once for both backends.

These are plain Python functions; ``lrpnb.kernels.rules`` compiles them with
``numba.njit`` for the CPU kernels and ``lrpnb.cuda.rules`` with
``numba.cuda.jit(device=True)`` for the GPU kernels, so the stabilizer and the
sign conventions of the LRP Toolbox (Lapuschkin et al., JMLR 17(114), 2016)
exist in one place only.
"""


def stabilize(z, epsilon):
    """Return ``z + epsilon * sgn(z)`` with ``sgn(0) = +1``.

    This is the denominator of the epsilon rule (Bach et al., PLoS ONE 10(7),
    2015, eq. 58); the toolbox's 'simple' rule is the same with a tiny epsilon.
    """
    if z >= 0:
        return z + epsilon
    return z - epsilon


def positive_part(v):
    """``max(v, 0)``, written so the result keeps ``v``'s type."""
    return v if v > 0 else v - v


def negative_part(v):
    """``min(v, 0)``, written so the result keeps ``v``'s type."""
    return v if v < 0 else v - v
