"""``explain_dataset``: every sample of a data file or image folder explained
batch by batch and written to a file, as ``lrpnb explain`` does."""
import concurrent.futures
import dataclasses
import os
import signal
import sys
import threading
import time
import types

import numpy as np

from .. import provenance
from ..inputs import sample_shape
from ..targets import Target
from .._atomic import remove_leftovers
from ..writers import HDF5Writer, NpyWriter, WriterLock, clear_stale_lock
from . import batches, options, pngs, records, tokens
from .remote import absolute, open_data

__all__ = ["explain_dataset", "ExplainSummary"]

#: output extensions: HDF5 holds every result, the others the relevance alone
HDF5_EXTENSIONS = (".h5", ".hdf5")
RELEVANCE_EXTENSIONS = (".npy", ".npz", ".mat", ".txt")
#: zarr v3 folders: the datasets of the HDF5 result, written by Dask workers in parallel
ZARR_EXTENSIONS = (".zarr",)
#: the formats that hold every result and the run's record
TABLE_EXTENSIONS = HDF5_EXTENSIONS + ZARR_EXTENSIONS


@dataclasses.dataclass
class ExplainSummary:
    """What :func:`explain_dataset` did.

    Attributes
    ----------
    out : str
        The file written.
    count : int
        Samples in the data.
    explained : int
        Samples explained by this run (an interrupted earlier run's are not counted).
    failures : int
        Samples left out of the file because they could not be read.
    seconds : float
        Time from the first batch to the file written.
    method : str
        The method in words ('the epsilon 0.01 rule').
    """

    out: str
    count: int
    explained: int
    failures: int
    seconds: float
    method: str

    def line(self):
        """The line ``lrpnb explain`` prints when done."""
        rate = self.explained / self.seconds if self.seconds > 0 else float("inf")
        samples = "sample" if self.explained == 1 else "samples"
        return (f"explained {self.explained} {samples} with {self.method} in {self.seconds:.2f} s "
                f"({rate:,.0f} samples/s); results written to {self.out}")


def explain_dataset(model, data, out, *, dataset=None, rule=None, param=None, composite=None, target="pred",
                    device=None, batch_size=256, png=None, cmap="bwr", input_range=(-1.0, 1.0), size=None,
                    resize=None, crop=None, mean=None, std=None, channel_order="rgb", overwrite=False,
                    compress=False, class_names=None, verbose=True, weights=None, scheduler=None, client=None,
                    workers=None, mask=None, dtype=None, position=None):
    """Explain every sample of ``data`` and write the results to ``out``: ``lrpnb explain`` from Python.

    Samples are read a batch ahead on a thread while a batch is explained;
    HDF5 results are written batch by batch into ``out + '.partial'`` (renamed
    to ``out`` when complete): called again with the same settings, an
    interrupted run resumes. A lock refuses a second writer. Unreadable
    samples are reported on stderr and left out.

    Parameters
    ----------
    model, weights : str, path-like or lrpnb.Network; str or path-like, optional
        A model file, an embedded model's name ('lenet5_synthetic'), or a network; a .prototxt's .caffemodel.
    data : str or path-like
        A data file (.npy, .npz, .mat, .txt, .h5 or FILE.h5:DATASET), a folder of images, a .lst/.list
        file of image paths, or one image.
    out : str or path-like
        .h5/.hdf5 (relevance, prediction, scores, target, and source for images; resumable) or
        .npy/.npz/.mat/.txt (the relevance alone; for images the file of each row is listed in ``out +
        '.names.txt'``).
    dataset : str, optional
        The dataset to read from an HDF5 ``data`` file.
    rule, param : str, float or (float, float), optional
        The rule and its parameter (as text, '0.01' or '-1,1', or as
        numbers); neither: each layer's own preset.
    composite : str or lrpnb.Composite, optional
        A rule per layer instead: a name of ``options.COMPOSITE_NAMES`` (box
        bounds from ``input_range``, normalised by ``mean`` and ``std`` as
        the samples are), 'formula:N', or a composite object.
    target : str or lrpnb.targets.Target
        'pred' (each sample's prediction), 'label:FILE', 'K' (class K),
        'all', 'top:K', or a Target (or any form ``Network.explain`` takes).
    device : {'cpu', 'cuda', 'auto'}, optional
        Where the kernels run (default: cpu for a model file; a Network is moved only to a device given).
    batch_size : int
        Samples per pass.
    png, cmap, class_names : str, str, str or sequence of str, optional
        A folder to write a PNG per sample into (input beside heatmaps), their
        colormap, and the classes' names for their captions (a text file,
        one name per line, or the names).
    input_range : (float, float)
        Pixels 0..255 (images, uint8 data) are scaled to this range.
    size, resize, crop : (int, int), int, int or (int, int), optional
        Images are resized to ``size`` (H, W; default: the model's input
        size) whatever their aspect ratio; or, as torchvision's
        ``Resize(resize)`` and ``CenterCrop(crop)``, their shorter side to
        ``resize`` pixels and then the centre ``crop`` is cut out.
    mean, std, channel_order : float or sequence of float, {'rgb', 'bgr'}
        Subtracted from, then dividing, the scaled samples (one or one per
        channel); the channel order the model takes (images are read as RGB).
    overwrite, compress : bool
        Replace an existing output (and an unfinished earlier run's file); gzip-compress the HDF5 datasets.
    verbose : bool
        Print the summary line ``lrpnb explain`` prints on stdout. Notes,
        skipped samples and interruptions go to stderr either way.
    scheduler, client, workers : str, distributed.Client, int, optional
        Run on Dask (lrpnb.distributed): a scheduler's address, a client or N local processes; .zarr only so.
    mask, dtype, position : str or path-like, {'float32', 'float64'}, int, optional
        Token ids (lrpnb.pipeline.tokens): the attention mask, the arithmetic, a language model's position.

    Returns
    -------
    ExplainSummary
        Its ``failures`` counts the samples left out (the command exits with 1).

    Raises
    ------
    ValueError, OSError
        Settings, data or outputs refused (before any work), or a failed write;
        KeyboardInterrupt on Ctrl-C, after the finished batches of an HDF5 output are kept.
    """
    settings = {name: value for name, value in locals().items() if name not in _NOT_SETTINGS}
    summary = _execute(model, data, out, settings)
    if verbose:
        print(summary.line())
    return summary


#: explain_dataset's parameters that are not settings of the run (the cluster is taken out by _execute)
_NOT_SETTINGS = ("model", "data", "out", "verbose")


def _execute(model, data, out, settings):
    """The run of explain_dataset: local, or on a Dask cluster (lrpnb.distributed)."""
    cluster = {name: settings.pop(name, None) for name in ("scheduler", "client", "workers")}
    on_cluster = any(value is not None for value in cluster.values())
    plan = _plan(model, data, out, **settings)
    if on_cluster and plan.tokens is not None:
        raise ValueError(f"{plan.data}: token data is explained on one machine; leave out --scheduler/--workers")
    if not on_cluster:
        if plan.out_ext in ZARR_EXTENSIONS:
            raise ValueError(f"{plan.out}: .zarr results are written by a Dask run: give --workers N (or "
                             f"--scheduler ADDRESS), or write .h5")
        return _Run(plan).run()
    from .. import distributed

    return ExplainSummary(**distributed.explain(model, plan, **cluster))


def _plan(model, data, out, **settings):
    """Every setting checked, the model loaded and the data opened, in the
    order ``lrpnb explain`` reports their errors."""
    s = types.SimpleNamespace(**settings)
    out, data = os.fspath(out), os.fspath(data)
    if s.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {s.batch_size}")
    out_ext = os.path.splitext(out)[1].lower()
    if out_ext not in TABLE_EXTENSIONS + RELEVANCE_EXTENSIONS:
        raise ValueError(f"{out}: write .h5/.hdf5/.zarr (relevance, prediction, scores, target) or "
                         f".npy/.npz/.mat/.txt (relevance only)")
    input_range = options.check_range(s.input_range)
    normalise = options.normalisation(s.mean, s.std, s.channel_order)
    method = dict(options.method(s.rule, s.param, s.composite, input_range, s.mean, s.std),
                  **tokens.keywords(s.dtype, s.position))
    if s.png is not None:
        from ..render import colormap

        colormap(s.cmap)  # an unknown name fails now, not after the first batch
    path, _, model_id = options.open_model(model, s.weights)
    # no file the run reads is ever one it writes, with or without overwrite
    labels = s.target[6:] if isinstance(s.target, str) and s.target.startswith("label:") else None
    names_file = s.class_names if isinstance(s.class_names, (str, os.PathLike)) else None
    inputs = [path, s.weights, data, labels, names_file, s.mask]
    options.check_outputs([], inputs, s.overwrite, also=[out, out + ".partial", out + ".lock"])
    clear_stale_lock(out)  # left by a run killed once its output was complete
    options.check_outputs([out] if out_ext not in ZARR_EXTENSIONS else [], inputs, s.overwrite)
    net = options.load_model(model, path, s.device, s.weights)
    size, resize, crop = options.geometry(s.size, s.resize, s.crop)
    source, shape, token_plan = _samples(net, data, s, (size, resize, crop), input_range, normalise)
    png_paths = None
    if s.png is not None:
        if len(shape) != 3:
            raise ValueError(f"--png draws images (H, W, C); {source.name} holds samples of shape "
                             f"{tuple(source.sample_shape)}")
        png_paths = pngs.check_pngs(s.png, source, s.overwrite)
    class_names = pngs.class_names(s.class_names, tokens.classes(net, token_plan, method) if token_plan
                                   else net.output_shapes((1,) + tuple(shape))[-1][-1])
    target = Target.from_option(s.target, len(source))
    if out_ext == ".txt" and (len(shape) > 1 or target.several):
        raise ValueError(f"{out}: a .txt file holds at most 2 dimensions; write .h5 or .npy")
    # .npy/.npz/.mat/.txt hold the relevance alone: for images, a list of
    # the file of each row goes beside it (an unreadable image is left out)
    names_path = out + ".names.txt" if out_ext not in TABLE_EXTENSIONS and source.names is not None else None
    # the formats without room for attributes say how they were made beside them
    record_path = provenance.sidecar_path(out) if out_ext not in TABLE_EXTENSIONS else None
    # the images a list or folder names are inputs too
    options.check_outputs([path for path in (names_path, record_path) if path is not None],
                          inputs + list(getattr(source, "paths", None) or ()), s.overwrite,
                          also=[out, out + ".partial", out + ".lock"] + list(png_paths or ()))
    text = tokens.method_words(options.method_text(s.rule, s.param, s.composite), s.dtype, s.position)
    record = dict(model=model_id, data=absolute(data), method=text,
                  target=s.target if isinstance(s.target, str) else records.target_words(target),
                  size=records.listed(size, int), input_range=input_range, dataset=s.dataset,
                  **({"images": records.image_words(size, resize)} if crop else {}),
                  mean=records.listed(s.mean, float), std=records.listed(s.std, float),
                  channel_order=s.channel_order,
                  data_fingerprint=records.fingerprint(data, source),
                  inputs_fingerprint=records.fingerprint(None, None, [path, s.weights, labels, s.mask]),
                  **tokens.record_items(token_plan, s.dtype, s.position))
    if s.compress and out_ext not in TABLE_EXTENSIONS:
        raise ValueError(f"--compress applies to HDF5 output; {out} is {out_ext}")
    made = records.provenance_record(net, path, record, source, text, s.weights)
    return types.SimpleNamespace(net=net, source=source, data=data, out=out, out_ext=out_ext, method=method,
                                 method_text=text, normalise=normalise, target=target, png_paths=png_paths,
                                 names_path=names_path, record=record, input_range=input_range, settings=s,
                                 provenance=made, record_path=record_path, class_names=class_names,
                                 tokens=token_plan)


def _samples(net, data, s, geometry, input_range, normalise):
    """(the source, a sample's shape as the model takes it, the token plan
    or None): the data opened and checked against the model."""
    size, resize, crop = geometry
    # a model that takes tokens takes no images: no image size to find for it
    images = None if tokens.takes_tokens(net) else sample_shape(net, size)
    source = open_data(data, s.dataset, images, input_range, resize, crop)
    options.geometry_applies(source, size, resize)
    token_plan = tokens.token_data(net, source, s.mask, s.mean, s.std, s.channel_order)
    if token_plan is not None:
        return token_plan.source, token_plan.shape, token_plan
    shape = options.data_note("explain", net, source, input_range)
    normalise(np.zeros((1,) + tuple(shape), dtype=np.float32))  # mean and std fit the channels
    return source, shape, None


def _progress(total, description):
    from tqdm import tqdm

    # shown on a terminal only; the summary line says the same afterwards
    return tqdm(total=total, unit="samples", desc=description, disable=None, file=sys.stderr,
                dynamic_ncols=True)


class _Run:
    """One run of :func:`explain_dataset` over a checked plan: the writers,
    the batches, and what is said when it ends or is interrupted."""

    def __init__(self, plan):
        self.plan, self.N = plan, len(plan.source)
        s = plan.settings
        self.writer = HDF5Writer(plan.out, self.N, plan.record, s.overwrite, s.compress, names=plan.source.names,
                                 attributes=plan.provenance) if plan.out_ext in HDF5_EXTENSIONS else None
        # every format is written under the output's lock (HDF5's writer holds its own)
        self.lock = WriterLock(plan.out) if self.writer is None else None
        self.stream = None
        try:
            # temporary files of a killed earlier write of the same outputs: no
            # other run writes them while this one holds the lock
            for path in (plan.out, plan.names_path, plan.record_path):
                if path is not None:
                    remove_leftovers(path)
            # .npy results stream to the disk batch by batch; .npz, .mat and .txt
            # are written whole at the end (their formats cannot grow in place)
            self.stream = NpyWriter(plan.out, self.N) if plan.out_ext == ".npy" else None
        except BaseException:
            self._release()
            raise
        self.parts, self.row_names, self.failures, self.explained = [], [], 0, 0
        self.start = self.writer.done if self.writer is not None else 0
        self.pending = None
        self.range_warned = False  # data far outside the input range is said once

    def run(self):
        """Explain every batch not done yet and finish the file; an ExplainSummary."""
        try:
            return self._run()
        finally:
            self._release()

    def _release(self):
        """Release the outputs' locks, however the run ended (an HDF5
        partial file stays, to resume; releasing twice is harmless)."""
        if self.writer is not None:
            self.writer.close()
        if self.lock is not None:
            self.lock.release()

    def _run(self):
        plan, N = self.plan, self.N
        if self.start:
            print(f"resuming {plan.out}: {self.start} of {N} samples were done", file=sys.stderr)
        began = time.perf_counter()
        bar = _progress(N, "explaining")
        bar.update(self.start)
        # Ctrl-C sets a flag that is checked between batches: a KeyboardInterrupt
        # raised at a random point can land in a callback that Python ignores
        stop = []
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.append(signum)) \
            if in_main_thread else None
        writes = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lrpnb-hdf5")
        # the next batch is read (images decoded, files read) on a thread while
        # this one is explained: measured on 4,000 PNG digits, reading took half
        # as long as explaining
        reads = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lrpnb-read")
        try:
            self._batches(reads, writes, bar, stop)
        except KeyboardInterrupt as interrupt:
            interrupt.reported = True  # said here: the command need not say it again
            bar.close()
            self._interrupted()
            raise
        except BaseException:
            bar.close()
            self._abandon()
            raise
        finally:
            writes.shutdown()
            reads.shutdown(cancel_futures=True)
            if in_main_thread:
                signal.signal(signal.SIGINT, previous)
        bar.close()
        self._finish()
        return ExplainSummary(out=plan.out, count=N, explained=self.explained, failures=self.failures,
                              seconds=time.perf_counter() - began, method=plan.method_text)

    def _batches(self, reads, writes, bar, stop):
        source, N, size = self.plan.source, self.N, self.plan.settings.batch_size
        firsts = range(self.start, N, size)
        reading = reads.submit(source.batch, self.start, min(self.start + size, N)) if len(firsts) else None
        for first in firsts:
            if stop:
                raise KeyboardInterrupt
            last = min(first + size, N)
            X, problems, kept = reading.result()
            if last < N:
                reading = reads.submit(source.batch, last, min(last + size, N))
            for index, message in problems:
                self.failures += 1
                print(f"lrpnb explain: skipped sample {index}: {message}", file=sys.stderr)
            results = self._explain(X, kept, first, last) if len(kept) else None
            self._keep(results, kept, first, last, writes)
            bar.update(last - first)
        if self.pending is not None:
            self.pending.result()

    def _explain(self, X, kept, first, last):
        """The results of one batch of samples read (``kept``)."""
        plan = self.plan
        if plan.tokens is None:  # token ids go to the model as they are
            X = options.model_samples(plan.net, X, plan.input_range, plan.source.name)
            if not self.range_warned:
                self.range_warned = options.range_note("explain", plan.source.name, X, plan.input_range)
        results, chosen = batches.explain_rows(plan.net, X, kept, first, last, plan.target, plan.normalise,
                                               plan.method, plan.source.name)
        if plan.png_paths is not None:
            pngs.write_pngs(plan.png_paths, kept, X, results["relevance"], plan.input_range, plan.settings.cmap,
                            results["scores"], chosen, plan.class_names)
        self.explained += len(kept)
        return results

    def _keep(self, results, kept, first, last, writes):
        """Hand one batch's results to the writer, the .npy stream or memory."""
        if self.writer is not None:
            # the writer thread compresses and writes this batch while
            # the next one is explained (the kernels release the GIL)
            rows = batches.full_rows(results, kept, first, last, self.plan.source)
            if self.pending is not None:
                self.pending.result()
            self.pending = writes.submit(self.writer.write, first, rows)
        elif results is not None:
            if self.stream is not None:
                self.stream.write(results["relevance"])
            else:
                self.parts.append(results["relevance"])
            if self.plan.names_path is not None:
                self.row_names.extend(self.plan.source.names[k] for k in kept)

    def _interrupted(self):
        """Close the outputs after Ctrl-C, saying what is kept."""
        N, writer = self.N, self.writer
        if writer is not None:
            _settle(self.pending)
            writer.close()
            if writer.done:
                print(f"lrpnb explain: interrupted after {writer.done} of {N} samples; they are kept in "
                      f"{writer.partial}; run the same command again to resume", file=sys.stderr)
            else:
                print("lrpnb explain: interrupted before the first batch was done; nothing written",
                      file=sys.stderr)
        else:
            if self.stream is not None:
                self.stream.close()
            print("lrpnb explain: interrupted; nothing written (write .h5 to keep finished batches)",
                  file=sys.stderr)

    def _abandon(self):
        """Close the outputs after an error (an HDF5 partial file stays, to resume)."""
        if self.writer is not None:
            _settle(self.pending)
            self.writer.close()
        if self.stream is not None:
            self.stream.close()

    def _finish(self):
        """Put the results under their final name (and the list of images beside them)."""
        self.failures = batches.finish_outputs(self.plan, self.writer, self.stream, self.parts, self.row_names,
                                               self.explained, self.start, self.failures)


def _settle(pending):
    """Wait for a batch being written; a failed write has been reported by
    the error that stopped the run, or is lost with the batch."""
    if pending is not None:
        try:
            pending.result()
        except Exception:  # noqa: BLE001 - the run is ending with another error
            pass
