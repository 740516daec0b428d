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

Parallelism: the kernels split their work into tasks themselves and run them
on one pool of threads (``parallel_map``); BLAS, which the tasks call for
their matrix products, runs single-threaded meanwhile
(``single_threaded_blas``), so that no two thread pools share the cores.
"""

import contextlib
import itertools
import threading

FASTMATH = frozenset({"reassoc", "contract"})

#: options for serial kernels (they may call BLAS through ``np.dot``); they
#: release the GIL, so that ``parallel_map`` runs them on several threads
JIT = dict(cache=True, fastmath=set(FASTMATH), nogil=True)


_blas_lock = threading.Lock()
_blas_users = 0
_blas_restore = None


@contextlib.contextmanager
def single_threaded_blas():
    """Run the BLAS that the kernels call on one thread inside the block.

    The convolution and dense kernels run tasks in parallel (parallel_map)
    and call BLAS (``np.dot``) inside each; a multithreaded BLAS would then
    start threads of its own on the same cores, and the two pools slow each
    other down (measured: a third of the LeNet-5 throughput lost).
    ``Network`` wraps every pass in this block.

    Only the BLAS library that numba's ``np.dot`` calls (scipy's, through
    ``scipy.linalg.cython_blas``) is limited, not numpy's own, so the
    caller's numpy products keep their threads. The limit is counted: the
    first thread to enter sets it, the last to leave restores the previous
    thread count, so passes running in several threads at once never see it
    lifted under them (which made their BLAS results differ in the last bit).
    """
    global _blas_users, _blas_restore
    with _blas_lock:
        if _blas_users == 0:
            _blas_restore = _kernel_blas().limit(limits=1)
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_restore.restore_original_limits()
                _blas_restore = None


_kernel_blas_libraries = None


def _kernel_blas():
    """threadpoolctl's handle on the BLAS that numba's np.dot calls."""
    global _kernel_blas_libraries
    if _kernel_blas_libraries is None:
        import importlib
        import os

        from threadpoolctl import ThreadpoolController

        # load the BLAS that numba's np.dot calls, so the controller finds it
        blas = importlib.import_module("scipy.linalg.cython_blas")
        controller = ThreadpoolController().select(user_api="blas")
        scipy_root = os.path.dirname(os.path.dirname(os.path.dirname(blas.__file__)))
        # scipy's wheels bundle their own OpenBLAS (scipy.libs or
        # scipy_openblas32); a scipy built against the system BLAS shares
        # numpy's, and then that one is limited
        own = controller.select(filepath=[lib.filepath for lib in controller.lib_controllers
                                          if "scipy" in os.path.basename(os.path.dirname(lib.filepath))
                                          or lib.filepath.startswith(scipy_root + os.sep + "scipy")])
        _kernel_blas_libraries = own if own.lib_controllers else controller
    return _kernel_blas_libraries


_pool = None
_pool_lock = threading.Lock()


def parallel_map(function, tasks):
    """Call ``function(*task)`` for every task, on a pool of threads, and wait.

    The kernels split their work into tasks that write disjoint outputs and
    run them this way, with nogil kernels, rather than with ``prange``:
    numba's parallel loops re-optimize all the code they call and made the
    convolutions several times slower to compile. The calling thread works
    too, and every thread takes the next task from a shared counter, so a
    call costs one hand-off per thread rather than one per task, and fast
    threads take over the tasks of slow ones. Which task runs on which
    thread never changes a result: tasks write disjoint outputs.
    """
    tasks = list(tasks)
    if len(tasks) <= 1 or workers() == 1:
        for task in tasks:
            function(*task)
        return
    counter = itertools.count()  # next() on it is atomic under the GIL
    errors = []

    def work():
        for index in iter(counter.__next__, None):
            if index >= len(tasks) or errors:
                return
            try:
                function(*tasks[index])
            except BaseException as error:  # reported by the caller below
                errors.append(error)
                return

    helpers = [_thread_pool().submit(work) for _ in range(min(workers(), len(tasks)) - 1)]
    work()
    for helper in helpers:
        helper.result()
    if errors:
        raise errors[0]


def _thread_pool():
    global _pool
    with _pool_lock:
        if _pool is None:
            import concurrent.futures

            # workers() - 1 helpers beside the calling thread, and as many
            # again for the passes that other threads run at the same time
            _pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, 2 * workers() - 1),
                                                          thread_name_prefix="lrpnb")
    return _pool


def flat_blocks(kernel, shape, dtype, *arrays):
    """A new array of ``shape`` and ``dtype``, filled by ``kernel(*arrays,
    out, e0, e1)`` over blocks of its flat elements, in parallel: the
    element-wise kernels' one loop over the threads."""
    import numpy as np

    out = np.empty(shape, dtype=dtype)
    flat = out.reshape(-1)
    parallel_map(kernel, [(*arrays, flat, e0, e1) for e0, e1 in blocks(flat.size, 1 << 15)])
    return out


def blocks(count, minimum=1):
    """(start, stop) ranges covering ``count`` items, a few per thread."""
    size = max(minimum, -(-count // (4 * workers())))
    return [(start, min(start + size, count)) for start in range(0, count, size)]


def workers():
    """How many threads parallel_map uses (numba's NUMBA_NUM_THREADS)."""
    import numba

    return numba.config.NUMBA_NUM_THREADS
