"""The client's side of a run on a Dask cluster: the chunks handed out, their
results written in order (``.h5``, ``.npy``...) or counted as workers write
them (``.zarr``), and what is said when the run ends or is interrupted."""
import collections
import os
import signal
import sys
import threading
import time

import numpy as np

from .._atomic import remove_leftovers
from ..targets import Target
from ..writers import HDF5Writer, NpyWriter, WriterLock
from ..pipeline.batches import finish_outputs
from ..pipeline.options import geometry, model_samples, open_model
from ..pipeline.remote import absolute
from . import tasks
from .zarr_store import ZarrWriter

__all__ = ["DistributedRun", "plan_chunks", "hand_out", "chunk_result"]

HDF5_EXTENSIONS = (".h5", ".hdf5")


def plan_chunks(spans, unit, workers, batches=None, largest=8):
    """The chunks of work, (first, last) in order, covering the sample ranges
    ``spans`` with whole ``unit``s (a batch's samples, the rows of a zarr
    chunk): ``batches`` units each when given, else guided: each chunk takes
    a 1/(4 x workers) share of the units left, at most ``largest`` (a chunk's
    results are held in memory until written) and at least one. The chunks
    shrink towards the end, so the workers finish together (measured: fixed
    chunks of about four per worker left one worker idle for up to a tenth
    of a LeNet-5 run), and few are handed out while the work is long."""
    left = sum(-(-(last - first) // unit) for first, last in spans)
    chunks = []
    for first, last in spans:
        while first < last:
            size = batches or max(1, min(largest, left // (4 * max(1, workers))))
            stop = min(first + int(size) * unit, last)
            chunks.append((first, stop))
            left -= -(-(stop - first) // unit)
            first = stop
    return chunks


def _spec(plan, model, zarr=None):
    """What a worker needs to explain a chunk (see lrpnb.distributed.tasks):
    files by absolute paths, read where they lie."""
    s = plan.settings
    size, resize, crop = geometry(s.size, s.resize, s.crop)
    path, _, _ = open_model(model, s.weights)
    return dict(network=None if path is not None else plan.net, model_path=absolute(path), device=s.device,
                weights=absolute(s.weights), data=absolute(plan.data),
                dataset=s.dataset, size=size, resize=resize, crop=crop, input_range=plan.input_range,
                mean=s.mean, std=s.std, channel_order=s.channel_order, method=plan.method, target=plan.target,
                batch_size=s.batch_size, zarr=zarr)


def _shapes(plan):
    """name -> (shape of one row, dtype) of the results, from one zero sample
    explained on the client (the arrays of a .zarr result are made before
    any chunk is done)."""
    data = getattr(plan.source, "data", None)
    dtype = data.dtype if data is not None else np.float32
    X = model_samples(plan.net, np.zeros((1,) + tuple(plan.source.sample_shape), dtype=dtype),
                              plan.input_range, plan.source.name)
    target = Target("label", np.zeros(1, dtype=np.int64)) if plan.target.per_sample else plan.target
    relevance, scores = plan.net.explain(plan.normalise(X), target=target, return_scores=True, **plan.method)
    relevance, chosen = np.asarray(relevance), target.classes(scores)
    chosen = chosen if target.several else chosen[:, 0]
    prediction = np.argmax(scores, axis=1)
    return dict(relevance=(relevance.shape[1:], relevance.dtype), prediction=(prediction.shape[1:], prediction.dtype),
                scores=(np.shape(scores)[1:], np.asarray(scores).dtype), target=(chosen.shape[1:], chosen.dtype),
                ok=((), np.dtype(bool)))


class DistributedRun:
    """One run of ``explain_dataset`` on a Dask client over a checked plan."""

    def __init__(self, plan, client, model, chunk=None):
        self.plan, self.client, self.model, self.N = plan, client, model, len(plan.source)
        s = plan.settings
        self.workers = workers = len(client.scheduler_info().get("workers", {}))
        # units of work: a batch, or the rows of a resumed zarr folder's chunks
        self.batches, self.unit = chunk, s.batch_size
        self.window = 2 * max(1, workers) + 2  # chunks handed out or waiting to be written
        self.writer = self.zarr = self.lock = self.stream = None
        self.parts, self.row_names, self.failures, self.explained = [], [], 0, 0
        ext = plan.out_ext
        if ext in HDF5_EXTENSIONS:
            self.writer = HDF5Writer(plan.out, self.N, plan.record, s.overwrite, s.compress,
                                     names=plan.source.names, attributes=plan.provenance)
            self.done = {self.writer.done: None} if self.writer.done else {}
            self.start = self.writer.done
            return
        self.lock = WriterLock(plan.out)
        try:
            if ext == ".zarr":
                self.zarr = ZarrWriter(os.path.abspath(plan.out), self.N, self.unit, plan.record, s.overwrite)
                self.unit, self.done = self.zarr.chunk, self.zarr.done
                if self.zarr.fresh:
                    self.zarr.create(_shapes(plan), plan.source.names)
                self.zarr.claim()
            else:
                for path in (plan.out, plan.names_path, plan.record_path):
                    if path is not None:
                        remove_leftovers(path)
                self.stream = NpyWriter(plan.out, self.N) if ext == ".npy" else None
                self.done = {}
        except BaseException:
            self.lock.release()
            raise
        self.start = 0

    def chunks(self):
        """(first, last) of every chunk not done yet, in order (plan_chunks)."""
        spans, first = [], self.start
        for done, last in sorted(self.done.items()) if self.zarr is not None else ():
            if first < done:
                spans.append((first, done))
            first = max(first, last)
        if first < self.N:
            spans.append((first, self.N))
        return plan_chunks(spans, self.unit, self.workers, self.batches)

    def samples_done(self):
        """Samples kept for a later run: in the HDF5 file, or marked done in
        the zarr folder (by workers, whether or not the client took their
        results yet)."""
        if self.writer is not None:
            return self.writer.done
        if self.zarr is None:
            return 0
        return sum(last - first for first, last in self.zarr.marked().items())

    def run(self):
        """Explain every chunk not done yet and finish the output; a dict for ExplainSummary."""
        try:
            return self._run()
        finally:
            if self.writer is not None:
                self.writer.close()
            if self.lock is not None:
                self.lock.release()

    def _run(self):
        plan, N = self.plan, self.N
        before = self.samples_done()
        if before:
            print(f"resuming {plan.out}: {before} of {N} samples were done", file=sys.stderr)
        began = time.perf_counter()
        bar = _progress(N)
        bar.update(before)
        # Ctrl-C sets a flag checked while waiting for chunks, as in the local run
        stop = []
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.append(signum)) \
            if in_main_thread else None
        running = []
        try:
            self._chunks(running, bar, stop)
        except KeyboardInterrupt as interrupt:
            interrupt.reported = True
            bar.close()
            self._cancel(running)
            self._interrupted()
            raise
        except BaseException:
            bar.close()
            self._cancel(running)
            if self.stream is not None:
                self.stream.close()
            if self.zarr is not None:
                self.zarr.discard()
            raise
        finally:
            if in_main_thread:
                signal.signal(signal.SIGINT, previous)
        bar.close()
        self._finish()
        return dict(out=plan.out, count=N, explained=self.explained, failures=self.failures,
                    seconds=time.perf_counter() - began, method=plan.method_text)

    def _cancel(self, running):
        try:
            self.client.cancel(running)
        except Exception:  # noqa: BLE001 - a client already gone has nothing left to cancel
            pass

    def _chunks(self, running, bar, stop):
        """Hand out the chunks, a window at a time, and take their results."""
        spec = _spec(self.plan, self.model, None if self.zarr is None else self.zarr.spec())
        hand_out(self.client, tasks.explain_chunk, spec, self.chunks(), self.window, running, stop,
                 lambda result: self._take(result, bar), ordered=self.zarr is None, data=self.plan.data)

    def _take(self, result, bar):
        """One chunk's results: written (in order) or counted as written by its worker."""
        for index, message in result["problems"]:
            self.failures += 1
            print(f"lrpnb explain: skipped sample {index}: {message}", file=sys.stderr)
        first, last, rows = result["first"], result["last"], result["rows"]
        if self.writer is not None:
            self.writer.write(first, rows)
        elif rows is not None and "relevance" in rows:
            ok = rows["ok"]
            if self.stream is not None:
                self.stream.write(rows["relevance"][ok])
            else:
                self.parts.append(rows["relevance"][ok])
            if self.plan.names_path is not None:
                self.row_names.extend(rows["source"][ok])
        self.done[first] = last
        self.explained += result["explained"]
        self._counted(first, last, bar)

    def _counted(self, first, last, bar):
        """A chunk is done (kept, or durable in its file)."""
        bar.update(last - first)

    def _interrupted(self):
        """Say what is kept after Ctrl-C."""
        N, done = self.N, self.samples_done()
        if self.writer is not None or self.zarr is not None:
            kept = self.plan.out + ".partial"
            if done:
                print(f"lrpnb explain: interrupted after {done} of {N} samples; they are kept in {kept}; "
                      f"run the same command again to resume", file=sys.stderr)
            else:
                print("lrpnb explain: interrupted before the first chunk was done; nothing kept",
                      file=sys.stderr)
            return
        if self.stream is not None:
            self.stream.close()
        print("lrpnb explain: interrupted; nothing written (write .h5 or .zarr to keep finished chunks)",
              file=sys.stderr)

    def _finish(self):
        """Put the results under their final name, as the local run does."""
        if self.zarr is not None:
            self.failures = self.zarr.finish(self.plan.provenance)
            return
        self.failures = finish_outputs(self.plan, self.writer, self.stream, self.parts, self.row_names,
                                       self.explained, self.start, self.failures)


def hand_out(client, task, spec, chunks, window, running, stop, take, ordered=True, data=""):
    """Run ``task(spec, first, last)`` for each (first, last) of ``chunks``
    on the cluster, at most ``window`` of them handed out or waiting, and
    ``take`` each result: in the order of ``chunks`` when ``ordered``, else
    as they come. ``running`` holds the futures handed out (for the caller to
    cancel); a non-empty ``stop`` (set by Ctrl-C) raises KeyboardInterrupt.
    ``spec`` is sent to each worker once, not with every chunk (per-sample
    labels and a loaded Network can be large); ``data`` names the data in
    the error of a chunk that failed on the cluster."""
    spec = client.scatter([spec], broadcast=True, hash=False)[0]
    waiting = collections.deque(chunks)
    ready = {}
    position = waiting[0][0] if waiting else None
    name = getattr(task, "__name__", "task").replace("_", "-")
    while waiting or running:
        if stop:
            raise KeyboardInterrupt
        while waiting and len(running) + len(ready) < window:
            first, last = waiting.popleft()
            running.append(client.submit(task, spec, first, last, pure=False,
                                         key=f"lrpnb-{name}-{first}-{last}-{os.getpid()}-{id(running)}"))
        finished = [future for future in running if future.done()]
        if not finished:
            time.sleep(0.02)
            continue
        for future in finished:
            running.remove(future)
            result = chunk_result(future, data)
            if ordered:
                ready[result["first"]] = result
            else:
                take(result)
        while ordered and position in ready:
            result = ready.pop(position)
            take(result)
            position = result["last"]


def chunk_result(future, data):
    """A chunk's result; an error of the cluster's own (a chunk that killed
    its workers, more than Dask's allowed failures) as one line naming ``data``."""
    try:
        return future.result()
    except (ValueError, OSError, TypeError, ImportError):
        raise
    except Exception as error:  # noqa: BLE001 - Dask's KilledWorker, CancelledError...
        text = str(error).splitlines()[0] if str(error) else ""
        raise RuntimeError(f"{data}: a chunk failed on the Dask cluster: {type(error).__name__}"
                           f"{': ' + text if text else ''}") from None


def _progress(total, description="explaining"):
    from tqdm import tqdm

    return tqdm(total=total, unit="samples", desc=description, disable=None, file=sys.stderr,
                dynamic_ncols=True)
