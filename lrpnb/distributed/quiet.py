"""The worker processes of a local cluster started for a run leave Ctrl-C
to the client: a terminal's Ctrl-C reaches every process of its group, and
a Dask worker process would end with a traceback of its own while the
client stops the run, says what is kept and exits 130."""
import signal
import threading

from distributed import WorkerPlugin

__all__ = ["IgnoreInterrupts", "ignoring_interrupts"]


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
