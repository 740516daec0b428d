"""What a run does with one batch and with its finished outputs, the same
on one machine (lrpnb.pipeline.explain) and on a Dask cluster
(lrpnb.distributed): a batch's results, its rows for the HDF5 and zarr
files, and the results put under their final name."""
import sys

import numpy as np

from .. import provenance
from ..targets import Target
from .tokens import token_relevance

__all__ = ["explain_rows", "full_rows", "finish_outputs"]


def explain_rows(net, X, kept, first, last, target, normalise, method, source_name):
    """(results, chosen) of one batch of samples read (``kept``), X as the
    model takes it: ``results`` holds relevance, prediction, scores and
    target (one class per sample, or (n, T) for several targets); ``chosen``
    the (n, T) classes explained."""
    if target.per_sample:
        target = Target("label", np.asarray(target.value)[kept])
    try:
        relevance, scores = net.explain(normalise(X), target=target, return_scores=True, **method)
    except ValueError as error:
        # explain() counts samples within the batch
        raise ValueError(f"{source_name}, samples {first}..{last - 1}: {error}") from None
    chosen = target.classes(scores)
    # a network of several inputs answers a dict: the token ids' relevance is the one written
    return dict(relevance=np.asarray(token_relevance(relevance, X)), prediction=np.argmax(scores, axis=1),
                scores=scores, target=chosen if target.several else chosen[:, 0]), chosen


def full_rows(results, kept, first, last, source):
    """Rows first..last-1 for the HDF5 and zarr files: results where samples
    were read, zeros and ok=False where not."""
    count = last - first
    ok = np.zeros(count, dtype=bool)
    ok[np.asarray(kept, dtype=np.int64) - first] = True
    rows = {"ok": ok}
    if source.names is not None:
        rows["source"] = np.array(source.names[first:last], dtype=object)
    if results is None:  # nothing read: the rows stay empty and are dropped at the end
        return rows
    for name, array in results.items():
        full = np.zeros((count,) + array.shape[1:], dtype=array.dtype)
        full[ok] = array
        rows[name] = full
    return rows


def finish_outputs(plan, writer, stream, parts, row_names, explained, start, failures):
    """Put the results under their final name (and the list of images and
    the provenance record beside them); the samples left out (``failures``,
    or for HDF5 the rows of unreadable samples, from this run or an
    interrupted earlier one)."""
    if writer is not None:
        if explained == 0 and start == 0:
            writer.discard()
            raise ValueError(f"{plan.data}: no sample could be explained")
        return writer.finish()
    if explained == 0:
        if stream is not None:
            stream.close()
        raise ValueError(f"{plan.data}: no sample could be explained")
    if stream is not None:
        stream.finish()
    else:
        from ..data_io import write_data

        write_data(np.concatenate(parts), plan.out)
    provenance.write_sidecar(plan.out, plan.provenance)
    if plan.names_path is not None:
        from .._atomic import atomic_path

        with atomic_path(plan.names_path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
            handle.write("".join(f"{name}\n" for name in row_names))
        print(f"the image of each row of {plan.out}, one per line: {plan.names_path}", file=sys.stderr)
    return failures
