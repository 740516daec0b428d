"""What a run sets up in its worker processes (Dask worker plugins, which
also reach workers started again after a death): the workers of a local
cluster started for a run leave Ctrl-C to the client (a terminal's Ctrl-C
reaches every process of its group, and a Dask worker process would end
with a traceback of its own while the client stops the run, says what is
kept and exits 130); and every worker keeps its arrays on the heap
(:func:`heap_allocation`)."""
import signal
import threading

from distributed import WorkerPlugin

__all__ = ["IgnoreInterrupts", "HeapAllocation", "heap_allocation", "ignoring_interrupts"]

#: glibc's mallopt parameters: the trim threshold, the mmap threshold
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def heap_allocation():
    """Keep a worker's arrays of up to 64 MiB on glibc's heap, reused from
    batch to batch. Dask starts its workers with MALLOC_TRIM_THRESHOLD_=65536,
    which returns memory to the system early but also fixes glibc's mmap
    threshold at 128 KiB: every batch's arrays were then fresh pages, faulted
    in and zeroed, and a LeNet-5 worker explained at half its speed
    (bench/README, "Dask"). Run on each worker (a no-op without glibc)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 64 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 256 << 20)
    except (OSError, AttributeError):
        pass


class HeapAllocation(WorkerPlugin):
    """heap_allocation on each worker, those started again after a death too."""

    name = "lrpnb-heap-allocation"

    def setup(self, worker):
        heap_allocation()


class IgnoreInterrupts(WorkerPlugin):
    """Ignore SIGINT in each worker process, those started again after a death too."""

    name = "lrpnb-ignore-interrupts"

    def setup(self, worker):
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)


class ignoring_interrupts:
    """While worker processes are started: SIGINT ignored in this process,
    which they inherit (Python keeps an ignored SIGINT ignored)."""

    def __enter__(self):
        main = threading.current_thread() is threading.main_thread()
        self.previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
