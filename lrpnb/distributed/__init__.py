"""Explaining a data set on a Dask cluster (dask.distributed): the same
results, bit for bit, as the local run of :func:`lrpnb.explain_dataset`
with the same batch size, and the same guarantees (resumable outputs,
nothing lost when a worker dies).

The data set is cut into chunks of whole batches (:func:`run.plan_chunks`);
each worker loads the model once and explains its chunks batch by batch as
the local run does (:mod:`.tasks`); the client writes ``.h5``/``.npy``
results in order, while workers write a ``.zarr`` result's chunks
themselves (:mod:`.zarr_store`). :mod:`.cluster` makes the client.
"""
from .cluster import connect, dask_modules

__all__ = ["explain", "evaluate", "connect", "dask_modules"]


def explain(model, plan, *, scheduler=None, client=None, workers=None, chunk=None):
    """Run a checked plan of ``explain_dataset`` (lrpnb.pipeline.explain._plan)
    on a cluster; the fields of its ExplainSummary as a dict.

    Parameters
    ----------
    model : str, path-like or lrpnb.Network
        The model as given (workers load a file themselves; a Network is sent
        to each worker once).
    plan : types.SimpleNamespace
        The checked plan.
    scheduler, client, workers : str, distributed.Client, int
        One of: a running scheduler's address, a client, or a number of local
        worker processes to start for the run.
    chunk : int, optional
        Batches per chunk of work (default: shrinking towards the end, :func:`run.plan_chunks`).
    """
    if plan.png_paths is not None:
        raise ValueError("--png is written by the local run only; leave out --scheduler/--workers to draw PNGs")
    if plan.out_ext == ".zarr" and plan.settings.compress:
        raise ValueError(f"{plan.out}: the arrays of a .zarr result are always compressed (zarr's default "
                         f"codec, zstd); leave out --compress")
    dask_modules()
    from .run import DistributedRun

    with connect(scheduler, client, workers) as dask_client:
        return DistributedRun(plan, dask_client, model, chunk).run()


def evaluate(model, plan, *, scheduler=None, client=None, workers=None, chunk=None):
    """Run a checked plan of ``evaluate_dataset`` (lrpnb.pipeline.evaluate._plan)
    on a cluster: (each batch's (rows kept, classes followed, curves by
    method), in order; seconds). ``model`` and the cluster as in :func:`explain`."""
    dask_modules()
    from .evaluate_run import evaluate_chunks

    with connect(scheduler, client, workers) as dask_client:
        return evaluate_chunks(plan, dask_client, model, chunk)
