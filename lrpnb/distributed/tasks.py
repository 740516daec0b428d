"""What a Dask worker runs: one chunk of whole batches explained exactly as
the local run explains them (the same batch boundaries, the same kernels),
with the model and the data opened once per worker process.

The model is kept in :data:`_OPENED`, keyed by its file, the file's size and
modification time, the device and the weights: a worker explains all its
chunks with the network it loaded first, and loads it again only when the
file changed. The data source is kept the same way (a ``.npy`` file is
mapped, an HDF5 file stays open), so that each chunk reads its own rows only.
"""
import os
import sys

import numpy as np

from ..inputs import sample_shape
from ..pipeline.batches import explain_rows, full_rows
from ..pipeline.options import load_model, model_samples, normalisation, range_note
from ..pipeline.remote import is_url, open_data

__all__ = ["explain_chunk", "evaluate_chunk", "chunk_rows", "worker_name"]

#: (model or data key) -> what was opened, in this worker process
_OPENED = {}


def worker_name():
    """The address of the worker running this task ('this process' outside one)."""
    try:
        from distributed import get_worker

        return f"worker {get_worker().address}"
    except (ImportError, ValueError):
        return "this process"


def _identity(path):
    """What tells a file (or folder) apart from itself changed: size and mtime."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


def _opened(key, make, files):
    """``make()``, once per worker process for ``key`` and the state of ``files``;
    an error names the worker and the first file that cannot be read."""
    full = (key, tuple(_identity(path) for path in files))
    if full not in _OPENED:
        try:
            value = make()
        except (OSError, ValueError) as error:
            missing = next((path for path in files if not os.access(path, os.R_OK)), files[0])
            raise ValueError(f"{worker_name()} cannot read {missing}: {error}") from None
        for old in [k for k in _OPENED if k[0] == key]:  # the file changed: forget the old one
            del _OPENED[old]
        _OPENED[full] = value
    return _OPENED[full]


def _network(spec):
    """The network of the run, loaded once per worker process."""
    if spec["network"] is not None:  # a loaded Network, shipped once to each worker
        return load_model(spec["network"], None, spec["device"])
    files = [spec["model_path"]] + ([spec["weights"]] if spec["weights"] else [])
    key = ("model", spec["model_path"], spec["device"], spec["weights"])
    return _opened(key, lambda: load_model(spec["model_path"], spec["model_path"], spec["device"],
                                                   spec["weights"]), files)


def _source(spec, net):
    """The data of the run, opened once per worker process."""
    data = spec["data"]
    base = data if is_url(data) or os.path.exists(data) else (data.rpartition(":")[0] or data)
    key = ("data", data, spec["dataset"], spec["size"], spec["resize"], spec["crop"])
    return _opened(key, lambda: open_data(data, spec["dataset"], sample_shape(net, spec["size"]),
                                            spec["input_range"], spec["resize"], spec["crop"]), [base])


def chunk_rows(spec, first, last):
    """Explain samples first..last-1 batch by batch; returns (rows, problems, explained).

    ``rows``: name -> array of last - first rows (relevance, prediction,
    scores, target; zeros where a sample could not be read), ``ok`` (bool)
    and ``source`` (the image names, when the data are images);
    ``problems``: (index, message) of the samples not read."""
    net = _network(spec)
    source = _source(spec, net)
    parts, problems, explained = [], [], 0
    for start in range(first, last, spec["batch_size"]):
        stop = min(start + spec["batch_size"], last)
        try:
            X, skipped, kept = source.batch(start, stop)
        except OSError as error:
            raise ValueError(f"{worker_name()} cannot read {spec['data']}: {error}") from None
        problems += skipped
        results = _explain(spec, net, source, X, kept, start, stop) if len(kept) else None
        parts.append(full_rows(results, kept, start, stop, source))
        explained += len(kept)
    rows = {name: np.concatenate([part[name] for part in parts]) for name in _names(parts)}
    return rows, problems, explained


def _names(parts):
    """The datasets of a chunk's batches (a batch of unreadable samples has ``ok`` alone)."""
    names = []
    for part in parts:
        names += [name for name in part if name not in names]
    if any(len(part) < len(names) for part in parts):
        full = next(part for part in parts if len(part) == len(names))
        for part in parts:
            for name in names:
                if name not in part:
                    shape = (len(part["ok"]),) + full[name].shape[1:]
                    part[name] = np.zeros(shape, dtype=full[name].dtype)
    return names


def _explain(spec, net, source, X, kept, first, last):
    """One batch as the local run explains it (lrpnb.pipeline.explain._Run._explain)."""
    X = model_samples(net, X, spec["input_range"], source.name)
    if not spec.get("range_noted"):
        # said once per worker, in its log
        spec["range_noted"] = range_note("explain", source.name, X, spec["input_range"])
    normalise = normalisation(spec["mean"], spec["std"], spec["channel_order"])
    return explain_rows(net, X, kept, first, last, spec["target"], normalise, spec["method"], source.name)[0]


def explain_chunk(spec, first, last):
    """The task of one chunk: its rows explained and, for a ``.zarr`` output,
    written durably by this worker (only their count comes back then).

    Returns
    -------
    dict
        ``first``, ``last``, ``problems``, ``explained``, and ``rows`` (None
        when written to zarr here)."""
    rows, problems, explained = chunk_rows(spec, first, last)
    if spec["zarr"] is not None:
        from .zarr_store import write_chunk

        if not write_chunk(spec["zarr"], first, last, rows):
            raise ValueError(f"{spec['zarr']['partial']}: another run of the same output holds this folder now; "
                             f"this run's chunk {first}..{last - 1} was not written")
        rows = None
    sys.stdout.flush()
    return dict(first=first, last=last, problems=problems, explained=explained, rows=rows)


def _evaluation_source(spec, net):
    """The samples of an evaluation: the data, or the synthetic digits of
    ``lrpnb evaluate`` without data (drawn once per worker process)."""
    if spec["synthetic"] is None:
        return _source(spec, net)
    from ..pipeline.curves import SyntheticDigits

    key = ("digits",) + tuple(spec["synthetic"])
    if key not in _OPENED:
        _OPENED[key] = SyntheticDigits(*spec["synthetic"])
    return _OPENED[key]


def evaluate_chunk(spec, first, last):
    """The task of one chunk of ``lrpnb evaluate``: samples first..last-1
    explained and perturbed batch by batch as the local run does
    (lrpnb.pipeline.curves).

    Returns
    -------
    dict
        ``first``, ``last``, ``problems`` (index, message) of the samples not
        read, and ``parts``: (rows kept, classes followed, curves by method)
        of each batch with a sample read."""
    from ..pipeline.curves import batch_curves, read_relevance, read_rows

    net = _network(spec)
    source = _evaluation_source(spec, net)
    normalise = normalisation(spec["mean"], spec["std"], spec["channel_order"])
    parts, problems = [], []
    for start in range(first, last, spec["batch_size"]):
        stop = min(start + spec["batch_size"], last)
        try:
            X, skipped, kept = read_rows(net, source, start, stop, spec["input_range"])
        except OSError as error:
            raise ValueError(f"{worker_name()} cannot read {spec['data']}: {error}") from None
        problems += skipped
        if X is None:
            continue
        X, maps = normalise(X), None
        if spec["relevance"] is not None:
            try:
                R, followed = read_relevance(spec["relevance"], source, kept, X.shape[1:])
            except OSError as error:
                raise ValueError(f"{worker_name()} cannot read {spec['relevance']}: {error}") from None
            maps = ({os.path.basename(spec["relevance"]): R}, followed)
        followed, curves = batch_curves(net, X, kept, start, stop, spec["target"], spec["methods"], spec["curve"],
                                        maps)
        parts.append((np.asarray(kept, dtype=np.int64), followed, curves))
    sys.stdout.flush()
    return dict(first=first, last=last, problems=problems, parts=parts)
