"""The Dask client of a run: a running scheduler's (``scheduler=ADDRESS``),
the caller's own (``client=``), or a local cluster of worker processes
started for the run (``workers=N``)."""
import contextlib
import logging
import os
import sys

__all__ = ["dask_modules", "connect"]

#: what Dask's nannies set in the environment of the process that starts them
#: (distributed.nanny.pre-spawn-environ)
_SPAWN_ENVIRONMENT = ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def dask_modules():
    """The ``distributed`` module; an ImportError saying what to install."""
    try:
        import distributed
    except ImportError:
        raise ImportError("running on a Dask cluster (scheduler, client, workers) needs dask.distributed "
                          "and zarr: pip install 'lrpnb[distributed]'") from None
    return distributed


@contextlib.contextmanager
def connect(scheduler=None, client=None, workers=None):
    """A Client for the run, closed afterwards unless it is the caller's.

    Raises
    ------
    ValueError
        More than one of the three given, or ``workers`` < 1.
    OSError
        The scheduler cannot be reached (one line naming its address, after
        Dask's connect timeout, 30 s by default).
    """
    given = [name for name, value in (("scheduler", scheduler), ("client", client), ("workers", workers))
             if value is not None]
    if len(given) > 1:
        raise ValueError(f"give one of scheduler, client and workers, not {' and '.join(given)}")
    if client is not None:
        _prepare(client)
        yield client
        return
    distributed = dask_modules()
    import dask

    if workers is not None:
        if int(workers) < 1:
            raise ValueError(f"--workers must be >= 1, got {workers}")
        from .quiet import IgnoreInterrupts, ignoring_interrupts

        # Dask's nannies write their workers' malloc settings into this
        # process's environment; put it back as it was after the run, so
        # that processes started later do not inherit them
        environment = {name: os.environ.get(name) for name in _SPAWN_ENVIRONMENT}
        with ignoring_interrupts():
            # the cores shared out: each worker's kernels run on its own share of them
            threads = str(max(1, (os.cpu_count() or 1) // int(workers)))
            cluster = distributed.LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                                               dashboard_address=":0", silence_logs=logging.CRITICAL,
                                               env={"NUMBA_NUM_THREADS": threads})
        try:
            with distributed.Client(cluster) as made:
                made.register_plugin(IgnoreInterrupts())
                _prepare(made)
                _say_dashboard(made)
                yield made
        finally:
            with contextlib.suppress(Exception):
                cluster.close()
            for name, value in environment.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        return
    timeout = dask.config.get("distributed.comm.timeouts.connect")
    try:
        made = distributed.Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise OSError(f"cannot reach the Dask scheduler at {scheduler} ({reason}); start it (dask scheduler) "
                      f"or give its address") from None
    try:
        _prepare(made)
        _say_dashboard(made)
        yield made
    finally:
        with contextlib.suppress(Exception):
            made.close()


def _prepare(client):
    """Each worker's allocation set for the run's arrays (heap_allocation),
    those that join later too."""
    from .quiet import HeapAllocation

    client.register_plugin(HeapAllocation())


def _say_dashboard(client):
    """The scheduler's dashboard address on stderr, when it has one."""
    try:
        link = client.dashboard_link if "dashboard" in client.scheduler_info().get("services", {}) else None
    except Exception:  # noqa: BLE001 - the dashboard is a convenience
        link = None
    if link:
        print(f"lrpnb: the Dask dashboard of this run: {link}", file=sys.stderr)
