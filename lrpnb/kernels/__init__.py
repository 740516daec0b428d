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

import contextlib

FASTMATH = frozenset({"reassoc", "contract"})

#: options for serial kernels (they may call BLAS through ``np.dot``); they
#: release the GIL, so that ``parallel_map`` runs them on several threads
JIT = dict(cache=True, fastmath=set(FASTMATH), nogil=True)


_blas_controller = None


@contextlib.contextmanager
def single_threaded_blas():
    """Run BLAS on one thread inside the block.

    The convolution and dense kernels run chunks in parallel (parallel_map)
    and call BLAS (``np.dot``) inside each chunk; a multithreaded BLAS would
    then start threads of its own on the same cores, and the two pools
    slow each other down (measured: a third of the LeNet-5 throughput lost).
    ``Network`` wraps every pass in this block; the previous BLAS thread
    counts are restored on exit.
    """
    global _blas_controller
    if _blas_controller is None:
        import importlib

        from threadpoolctl import ThreadpoolController

        # load the BLAS that numba's np.dot calls, so the controller finds it
        importlib.import_module("scipy.linalg.cython_blas")

        _blas_controller = ThreadpoolController()
    with _blas_controller.limit(limits=1, user_api="blas"):
        yield


_pool = None


def parallel_map(function, tasks):
    """Call ``function(*task)`` for every task on a pool of threads and wait.

    The convolution kernels split their work into chunks that write disjoint
    outputs and run them this way, with nogil kernels, rather than with
    ``prange``: numba's parallel loops re-optimize all the code they call
    and made the convolutions several times slower to compile.
    """
    global _pool
    tasks = list(tasks)
    if len(tasks) <= 1:
        for task in tasks:
            function(*task)
        return
    if _pool is None:
        import concurrent.futures

        import numba

        _pool = concurrent.futures.ThreadPoolExecutor(max_workers=numba.config.NUMBA_NUM_THREADS,
                                                      thread_name_prefix="lrpnb")
    for future in [_pool.submit(function, *task) for task in tasks]:
        future.result()


def blocks(count, minimum=1):
    """(start, stop) ranges covering ``count`` items, a few per thread."""
    size = max(minimum, -(-count // (4 * workers())))
    return [(start, min(start + size, count)) for start in range(0, count, size)]


def workers():
    """How many threads parallel_map uses."""
    import numba

    return numba.config.NUMBA_NUM_THREADS
