"""Compiled CPU kernels (``numba.njit``), one module per layer family.

Every kernel is generic in the floating dtype: float32 inputs stay float32,
float64 inputs stay float64. Scalar parameters are passed in already cast to
the input's dtype, so no Python float literal promotes float32 code.

The compile options are chosen once, here, and used by every kernel:

``FASTMATH = {"reassoc", "contract"}``
    ``reassoc`` lets LLVM reorder sums so that the reductions over channels
    vectorize; ``contract`` lets it fuse multiply-adds. Both change results in
    the last bits only (the parity tests hold float64 to 1e-10). We do *not*
    allow ``nnan``/``ninf``: the stabilized divisions must keep IEEE semantics,
    and inputs are checked for NaN before any kernel runs.
"""

FASTMATH = frozenset({"reassoc", "contract"})

#: options for serial kernels (they may call BLAS through ``np.dot``)
JIT = dict(cache=True, fastmath=set(FASTMATH))
#: options for kernels that parallelize over the batch with ``prange``;
#: these never call BLAS, which would oversubscribe the cores
PARALLEL = dict(JIT, parallel=True)
