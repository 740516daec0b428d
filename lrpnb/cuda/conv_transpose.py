"""Element-wise steps of the transposed convolution's rules on the GPU: the
twin of ``lrpnb.kernels.conv_transpose`` (same names, same formulas; numba
device arrays)."""
from numba import cuda

from . import KERNEL, launch
from .rules import paired_ratios, stabilize


@cuda.jit(**KERNEL)
def _epsilon_ratios(Y, R, epsilon, out):
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[e] = R[e] / stabilize(Y[e], epsilon)


@cuda.jit(**KERNEL)
def _paired_ratio_maps(Za, Zb, R, Y, mode, p1, p2, tiny, Sa, Sb):
    for e in range(cuda.grid(1), Sa.size, cuda.gridsize(1)):
        Sa[e], Sb[e] = paired_ratios(Za[e], Zb[e], R[e], Y[e], mode, p1, p2, tiny)


@cuda.jit(**KERNEL)
def _signed_times(X, P, Q, out):
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[e] = X[e] * P[e] if X[e] > 0 else X[e] * Q[e]


def _like(A):
    return cuda.device_array(tuple(A.shape), dtype=A.dtype)


def epsilon_ratios(Y, R, epsilon):
    """``S = R / (y + eps sgn(y))`` element-wise, sgn(0) = +1."""
    out = _like(R)
    launch(_epsilon_ratios, out.size)(Y.reshape(Y.size), R.reshape(R.size), epsilon, out.reshape(out.size))
    return out


def paired_ratio_maps(Za, Zb, R, Y, mode, p1, p2, tiny):
    """(Sa, Sb): the two ratios of a sign-paired rule for every output."""
    Sa, Sb = _like(R), _like(R)
    launch(_paired_ratio_maps, Sa.size)(Za.reshape(Za.size), Zb.reshape(Zb.size), R.reshape(R.size),
                                        Y.reshape(Y.size), mode, p1, p2, tiny, Sa.reshape(Sa.size),
                                        Sb.reshape(Sb.size))
    return Sa, Sb


def signed_times(X, P, Q):
    """``x P`` where x > 0, ``x Q`` where x < 0, 0 where x = 0, element-wise."""
    out = _like(X)
    launch(_signed_times, out.size)(X.reshape(X.size), P.reshape(P.size), Q.reshape(Q.size),
                                    out.reshape(out.size))
    return out


SIGNATURES = {
    _epsilon_ratios: "A1 A1 F A1",
    _paired_ratio_maps: "A1 A1 A1 A1 I F F F A1 A1",
    _signed_times: "A1 A1 A1 A1",
}
