"""``evaluate_dataset``: explanations of a data set compared by region
perturbation (AOPC), as ``lrpnb evaluate`` does."""
import dataclasses
import os
import sys
import time
import types

import numpy as np

from .. import provenance
from ..inputs import sample_shape
from ..targets import Target
from . import curves, options, remote
from .remote import open_data

__all__ = ["evaluate_dataset", "Evaluation", "EVALUATE_RULES", "refuse_read_outputs"]

#: what evaluate compares when neither ``rule`` nor ``relevance`` is given
EVALUATE_RULES = ("epsilon:0.01", "alphabeta:2", "flat", "gradient")


@dataclasses.dataclass
class Evaluation:
    """The curves of :func:`evaluate_dataset`.

    Attributes
    ----------
    curves : dict of str to float64 array (N, steps + 1)
        The class score as the regions are replaced, per method (the rule's
        label, the relevance file's name, and 'random', the baseline).
    target : int array (N,)
        The class followed in each sample.
    index : int array (N,)
        The row of each sample in the data (unreadable images are left out).
    origin : str
        The samples in words ('500 held-out synthetic digits (seed 1000)').
    steps : int
        Regions replaced.
    seconds : float
        Time taken by the explanations and the perturbed copies.
    """

    curves: dict
    target: np.ndarray
    index: np.ndarray
    origin: str
    steps: int
    seconds: float

    def aopc(self):
        """The AOPC of each method (the mean over the samples), as a dict."""
        from ..evaluate import aopc

        return {label: aopc(curve) for label, curve in self.curves.items()}


def evaluate_dataset(model=None, data=None, *, dataset=None, relevance=None, rule=None, target="pred",
                     region=(4, 4), steps=None, order="morf", replace="uniform", seed=0, count=None,
                     device=None, batch_size=256, input_range=(-1.0, 1.0), size=None, resize=None, crop=None,
                     mean=None, std=None, channel_order="rgb", out=None, plot=None, overwrite=False,
                     verbose=True, weights=None, scheduler=None, client=None, workers=None):
    """Compare explanations by region perturbation: ``lrpnb evaluate`` from Python.

    The regions of each input are replaced one after the other, the most
    relevant first, and the class score is followed (Samek et al., IEEE TNNLS
    2017), for each method and for a random order of the regions. The data
    are taken ``batch_size`` rows at a time, each batch explained and
    perturbed on its own (lrpnb.pipeline.curves): on a Dask cluster the
    curves are the local run's bit for bit.

    Parameters
    ----------
    model, weights : str, path-like or lrpnb.Network, optional; str or path-like, optional
        A model file, an embedded model's name or a network (default: the embedded LeNet-5); a Caffe
        model's weights (.caffemodel) for its definition ``model`` (.prototxt).
    data : str or path-like, optional
        A data file, FILE.h5:DATASET, an image folder or list (needed with
        ``model``; the embedded model defaults to held-out synthetic digits).
    dataset : str, optional
        The dataset of an HDF5 ``data`` file.
    relevance : str, optional
        Evaluate the maps (and targets) of an ``explain_dataset`` HDF5
        result for ``data`` instead of explaining.
    rule : str or list of str, optional
        Rules to explain with, NAME[:PARAM] ('epsilon:0.01', 'zb:-1,1') or
        composite names (default: EVALUATE_RULES).
    target : str or lrpnb.targets.Target
        The class followed: 'pred', 'K', 'label:FILE' (one class per sample).
    region, steps : (int, int), int, optional
        Region size in pixels (vectors: (1, W)); regions to replace (default: all).
    order : {'morf', 'lerf'}
        Most or least relevant region first.
    replace : str or float
        'uniform', 'mean', 'blur' or a number (see ``lrpnb.evaluate``).
    seed, count : int, int, optional
        Seeds the uniform values, random order and synthetic digits; evaluate
        the first ``count`` samples (default: all; 500 synthetic digits).
    device, batch_size : {'cpu', 'cuda', 'auto'}, int
        As in ``explain_dataset``; samples per batch (explained and perturbed together).
    input_range, size, resize, crop, mean, std, channel_order : optional
        How samples are scaled, brought to the model's size and normalised, as
        in ``explain_dataset``; explanations and perturbation both act on the
        normalised input.
    out, plot : str, optional
        Write the curves, per-sample AOPC and settings as HDF5 (.h5); the mean curves' plot (.png).
    overwrite : bool
        Replace existing ``out`` and ``plot`` files (never an input).
    verbose : bool
        Print the table of AOPC values and the files written, as ``lrpnb
        evaluate`` does, on stdout. Skipped samples go to stderr either way.
    scheduler, client, workers : str, distributed.Client, int, optional
        Run on Dask (lrpnb.distributed): a scheduler's address, a client or N
        local worker processes; the workers read the model and data where they lie.

    Returns
    -------
    Evaluation
    """
    s = types.SimpleNamespace(model=model, data=None if data is None else os.fspath(data), dataset=dataset,
                              relevance=relevance, rule=[rule] if isinstance(rule, str) else rule,
                              target=target, region=region, steps=steps, order=order, seed=seed, count=count,
                              device=device, batch_size=batch_size, out=out, plot=plot,
                              mean=mean, std=std, channel_order=channel_order, weights=weights)
    s.input_range = input_range = options.check_range(input_range)
    s.size, s.resize, s.crop = options.geometry(size, resize, crop)
    methods, s.replace = _check(s, input_range, replace, overwrite)
    path, name, model_id = options.open_model(options.embedded_model() if model is None else model, weights)
    net = options.load_model(model, path, device, weights)
    plan = _plan(net, s, methods)
    if scheduler is None and client is None and workers is None:
        parts, seconds = _local(net, plan)
    else:
        from .. import distributed

        parts, seconds = distributed.evaluate(model, plan, scheduler=scheduler, client=client, workers=workers)
    return _conclude(net, (path, name, model_id), plan, _result(plan, parts, seconds), verbose)


def _conclude(net, model, plan, result, verbose):
    """The table (``verbose``), the ``out`` and ``plot`` files of a run's
    Evaluation; ``model``: (file, name, what identifies it)."""
    from .. import evaluate

    s, (path, name, model_id) = plan.settings, model
    grid, region = evaluate.regions(plan.shape, plan.curve["region"])
    what = {"morf": "most relevant first", "lerf": "least relevant first"}[s.order]
    if verbose:
        _report(result, name, grid, region, what, s.replace, s.seed)
    settings = dict(plan.curve, steps=result.steps, model=model_id, data=result.origin, **_normalisation(s))
    made = _record(net, path, s, [label for label, _ in plan.methods] or [os.path.basename(s.relevance)],
                   s.input_range, settings)
    _write(result, s, plan.source, settings, made,
           f"{name}, {result.origin}: {region[0]} x {region[1]} regions, {what}", verbose)
    return result


def _plan(net, s, methods):
    """What a run (local or on a cluster) needs, every setting checked before
    any sample is explained: the source (synthetic digits without data), the
    samples counted, the target, the curves' settings."""
    if s.data is None:
        if s.model is not None:
            raise ValueError("--data is needed with --model (synthetic digits fit the embedded LeNet-5 only)")
        options.geometry_applies(None, s.size, s.resize)
        # seeds from 1000 on: the embedded model was trained on seeds 1 and 2
        source = curves.SyntheticDigits(s.count or 500, s.seed + 1000)
        shape = tuple(source.sample_shape)
    else:
        source = open_data(s.data, s.dataset, sample_shape(net, s.size), s.input_range, s.resize, s.crop)
        options.geometry_applies(source, s.size, s.resize)
        refuse_read_outputs([s.out, s.plot], source)
        shape = options.data_note("evaluate", net, source, s.input_range)
    if s.relevance is not None and s.data is None:
        raise ValueError("--relevance needs the --data it was computed from")
    count = len(source) if s.count is None else min(s.count, len(source))
    target = Target.from_option(s.target, count)
    if target.several:
        raise ValueError("--target: a perturbation curve follows one class per sample (pred, K or label:FILE)")
    curve = dict(region=tuple(s.region) if np.ndim(s.region) else s.region, steps=s.steps, replace=s.replace,
                 seed=s.seed)
    steps = curves.check_curves(net, shape, curve["region"], s.steps, s.order, s.replace, s.seed)
    return types.SimpleNamespace(source=source, count=count, target=target, methods=methods, shape=shape,
                                 curve=dict(curve, order=s.order), steps=steps, settings=s,
                                 input_range=s.input_range, synthetic=s.data is None)


def _local(net, plan):
    """The batches of a local run, in order: (kept, followed, curves) each; the seconds taken."""
    s, parts, noted = plan.settings, [], False
    began = time.perf_counter()
    for first in range(0, plan.count, s.batch_size):
        last = min(first + s.batch_size, plan.count)
        X, problems, kept = curves.read_rows(net, plan.source, first, last, plan.input_range)
        for index, message in problems:
            print(f"lrpnb evaluate: skipped sample {index}: {message}", file=sys.stderr)
        if X is None:
            continue
        if not noted and not plan.synthetic:
            noted = options.range_note("evaluate", s.data, X, plan.input_range)
        X = s.normalise(X)
        maps = None if s.relevance is None else \
            curves.read_relevance(s.relevance, plan.source, kept, X.shape[1:])
        maps = None if maps is None else ({os.path.basename(s.relevance): maps[0]}, maps[1])
        followed, found = curves.batch_curves(net, X, kept, first, last, plan.target, plan.methods, plan.curve,
                                              maps)
        parts.append((np.asarray(kept, dtype=np.int64), followed, found))
    return parts, time.perf_counter() - began


def _result(plan, parts, seconds):
    """The Evaluation of a run's batches (in order)."""
    s = plan.settings
    if not parts:
        raise ValueError(f"{s.data}: no sample could be read")
    kept = np.concatenate([part[0] for part in parts])
    labels = list(parts[0][2])
    found = {label: np.concatenate([part[2][label] for part in parts]) for label in labels}
    if plan.synthetic:
        origin = f"{len(kept)} held-out synthetic digit{'s' * (len(kept) != 1)} (seed {s.seed + 1000})"
    else:
        origin = f"{len(kept)} sample{'s' * (len(kept) != 1)} of {s.data}"
    return Evaluation(curves=found, target=np.concatenate([part[1] for part in parts]), index=kept,
                      origin=origin, steps=plan.steps, seconds=seconds)


def _record(net, path, s, methods, input_range, settings):
    """What the curves' file records of how it was made (lrpnb.provenance)."""
    model, digest = remote.model_identity(net, path)
    target = s.target if isinstance(s.target, str) else Target.from_option(s.target).describe()
    weights = getattr(s, "weights", None)
    return provenance.record("evaluate", model=model, model_sha256=digest, method=methods, target=target,
                             weights=remote.absolute(weights),
                             weights_sha256=None if weights is None else provenance.file_digest(remote.local_file(weights)),
                             data=settings["data"], dataset=s.dataset, size=s.size, input_range=input_range,
                             mean=s.mean, std=s.std, channel_order=s.channel_order, evaluation=settings)


def _write(result, s, source, settings, made, title, verbose):
    """The ``out`` and ``plot`` files asked for (``made``: lrpnb.provenance's record)."""
    if s.out is not None:
        _write_curves(s.out, result.curves, result.target, result.index, source, settings, made)
        _say(verbose, f"wrote {s.out}")
    if s.plot is not None:
        from .. import evaluate
        from .._atomic import atomic_path

        with atomic_path(s.plot, suffix=".png") as tmp:
            evaluate.plot_curves(result.curves, tmp, title=title)
        _say(verbose, f"wrote {s.plot}")


def _normalisation(s):
    """The settings of a normalisation, for the file (none without one)."""
    if s.mean is None and s.std is None and s.channel_order == "rgb":
        return {}
    def listed(values):
        return None if values is None else [float(value) for value in np.atleast_1d(values)]

    return dict(mean=listed(s.mean), std=listed(s.std), channel_order=s.channel_order)


def _say(verbose, text):
    if verbose:
        print(text)


def _check(s, input_range, replace, overwrite):
    """(methods as (label, explain() keywords), the replacement): every
    setting checked before any work, in the order the command reports them."""
    if s.relevance is not None and s.rule:
        raise ValueError("give --relevance (maps from lrpnb explain) or --rule, not both")
    if s.relevance is not None and not _follows_prediction(s.target):
        raise ValueError("--relevance brings its own targets (the file's 'target'); leave out --target")
    methods = [] if s.relevance is not None else \
        [options.rule_spec(spec, input_range, s.mean, s.std) for spec in (s.rule or EVALUATE_RULES)]
    s.normalise = options.normalisation(s.mean, s.std, s.channel_order)
    replace = options.replacement(replace)
    if s.count is not None and s.count < 1:
        raise ValueError(f"--count must be >= 1, got {s.count}")
    if s.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {s.batch_size}")
    outputs = [path for path in (s.out, s.plot) if path is not None]
    for path, extensions in ((s.out, (".h5", ".hdf5")), (s.plot, (".png",))):
        if path is not None and os.path.splitext(path)[1].lower() not in extensions:
            raise ValueError(f"{path}: write {' or '.join(extensions)}")
    model = s.model if s.model is None or isinstance(s.model, (str, os.PathLike)) else None
    labels = s.target[6:] if isinstance(s.target, str) and s.target.startswith("label:") else None
    # inputs are never outputs, with or without overwrite
    options.check_outputs(outputs, [model, s.weights, s.data, s.relevance, labels], overwrite)
    return methods, replace


def refuse_read_outputs(outputs, source):
    """Refuse an output that is a file ``source`` reads (an image of an image
    folder or list), with or without overwrite."""
    read = {os.path.realpath(path) for path in getattr(source, "paths", None) or ()}
    for path in outputs:
        if path is not None and os.path.realpath(path) in read:
            raise ValueError(f"{path} is an input of this command (an image --data reads); "
                             f"write the output elsewhere")


def _follows_prediction(target):
    """Whether ``target`` is each sample's prediction (the default); any
    other, even one that cannot be read, is not."""
    try:
        return Target.from_option(target).kind == "pred"
    except (ValueError, OSError):
        return False


def _report(result, name, grid, region, what, replace, seed):
    """The table ``lrpnb evaluate`` prints: the AOPC of each method with its
    95% interval, against the random order."""
    from .. import evaluate

    (rows, columns), (rh, rw) = grid, region
    replaced = f"{replace:g}" if isinstance(replace, float) else f"{replace} values"
    print(f"lrpnb evaluate: {name} on {result.origin}; {rh} x {rw} regions "
          f"({rows * columns}), {result.steps} steps, {what}, replaced by {replaced}, seed {seed}")
    curves = result.curves
    baseline = evaluate.aopc(curves["random"])
    width = max(12, max(len(label) for label in curves))
    rows = {label: evaluate.confidence_interval(evaluate.aopc(curve, per_sample=True))
            for label, curve in curves.items()}
    places = table_places(np.array([value for row in rows.values() for value in row]))
    print(f"  {'method':<{width}}  {'AOPC':>9}  {'95% interval':>19}  {'minus random':>12}")
    for label, (mean, low, high) in rows.items():
        interval = f"{low:.{places}f} .. {high:.{places}f}"
        versus = "" if label == "random" else f"{mean - baseline:+.{places}f}"
        print(f"  {label:<{width}}  {mean:9.{places}f}  {interval:>19}  {versus:>12}")
    copies = len(curves) * len(result.target) * (result.steps + 1)
    print(f"{copies:,} perturbed inputs scored in {result.seconds:.2f} s ({copies / result.seconds:,.0f}/s); "
          f"AOPC: the mean fall of the class score over the steps (larger: the order finds what "
          f"the score rests on)")


def table_places(values, digits=4):
    """Decimal places that show the largest of ``values`` with ``digits``
    significant digits: one precision for a whole table, so its columns
    line up and compare (at most 12 places)."""
    finite = np.abs(values[np.isfinite(values)])
    largest = finite.max() if finite.size and finite.max() > 0 else 1.0
    return int(min(12, max(0, digits - 1 - np.floor(np.log10(largest)))))


def _write_curves(path, curves, target, kept, source, settings, made):
    """The curves as HDF5: curves (M, N, L+1), aopc (M, N), target (N,),
    index (N,), source names for images; the settings and method names as
    attributes, and the run's record (lrpnb.provenance)."""
    import json

    import h5py

    from .._atomic import atomic_path
    from ..evaluate import aopc

    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.create_dataset("curves", data=np.stack(list(curves.values())))
            handle.create_dataset("aopc", data=np.stack([aopc(c, per_sample=True) for c in curves.values()]))
            handle.create_dataset("target", data=np.asarray(target, dtype=np.int64))
            handle.create_dataset("index", data=np.asarray(kept, dtype=np.int64))
            if source is not None and source.names is not None:
                handle.create_dataset("source", data=np.array([source.names[k] for k in kept], dtype=object),
                                      dtype=h5py.string_dtype())
            handle.attrs["methods"] = json.dumps(list(curves))
            handle.attrs["settings"] = json.dumps(settings, sort_keys=True)
            provenance.write_attributes(handle, made)
