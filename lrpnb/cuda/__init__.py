"""GPU kernels (``numba.cuda.jit``), twins of ``lrpnb.kernels`` module by module.

``lrpnb.cuda.conv`` has the same functions as ``lrpnb.kernels.conv`` (and so on
for dense, pool and activations), taking and returning numba device arrays.
Every kernel walks its output with a grid-stride loop, so any launch size is
correct (the simulator runs tiny grids); the relevance passes gather (each
input sums what it receives from the outputs that see it) instead of
scattering with atomics, so results are deterministic.

Importing this package needs numba's CUDA target (``pip install
"lrpnb[cuda]"``, which brings numba-cuda); using it needs a CUDA GPU, or
``NUMBA_ENABLE_CUDASIM=1`` set before numba is first imported.
"""
import math

from numba import config, cuda

#: threads per block of every launch. The simulator runs every thread as a
#: Python thread, so it gets a tiny grid (8 threads, at most 2 blocks), which
#: also makes the tests walk the grid-stride loops several times.
THREADS = 8 if config.ENABLE_CUDASIM else 256

#: blocks per launch at most: enough to fill the device (BLOCKS_PER_SM per
#: streaming multiprocessor, read from the device at the first launch); the
#: grid-stride loops cover the rest
MAX_BLOCKS = 2 if config.ENABLE_CUDASIM else 4096
BLOCKS_PER_SM = 32

#: blocks per launch at least on a GPU. numba warns about grids of fewer
#: than 128 blocks (NumbaPerformanceWarning), which small layers and
#: per-filter kernels would print at every explain; blocks beyond the work
#: leave their grid-stride loops at once
MIN_BLOCKS = 1 if config.ENABLE_CUDASIM else 128

#: compile options of every kernel: cached on disk; fastmath stays off, so
#: divisions and square roots are IEEE-exact as on the CPU (the CPU kernels'
#: reassociation has no GPU counterpart worth its differences)
KERNEL = dict(cache=True)

_device_blocks = None


@cuda.jit(device=True, inline=True)
def unravel(e, shape):
    """(n, i, j, c) of flat index e in a C-ordered array of 4-d ``shape``."""
    D = shape[3]
    W = shape[2]
    H = shape[1]
    return e // (D * W * H), (e // (D * W)) % H, (e // D) % W, e % D


def blocks(size):
    """Blocks for ``size`` work items: at least MIN_BLOCKS, at most enough
    to fill the device."""
    global _device_blocks
    if _device_blocks is None:
        _device_blocks = MAX_BLOCKS
        if not config.ENABLE_CUDASIM:
            sms = cuda.get_current_device().MULTIPROCESSOR_COUNT
            _device_blocks = max(MIN_BLOCKS, BLOCKS_PER_SM * sms)
    return max(MIN_BLOCKS, min(_device_blocks, math.ceil(size / THREADS)))


def launch(kernel, size):
    """``kernel[blocks(size), THREADS]``."""
    return kernel[blocks(size), THREADS]


def unavailable_reason():
    """None when a CUDA device is usable, else a sentence saying what is missing."""
    try:
        if cuda.is_available():
            return None
    except Exception as error:  # a broken driver raises instead of answering
        return f"the CUDA driver failed to initialise ({error})"
    try:
        cuda.cudadrv.driver.driver.get_device_count()
    except Exception as error:
        text = str(error).strip().replace("\n", " ")
        return f"no usable CUDA GPU: {text}"
    return "no usable CUDA GPU was found (numba.cuda.is_available() is False)"
