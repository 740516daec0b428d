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
from ..sources import open_source
from ..targets import Target
from . import options

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
        Time taken by the perturbed copies.
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
                     verbose=True, weights=None):
    """Compare explanations by region perturbation: ``lrpnb evaluate`` from Python.

    The regions of each input are replaced one after the other, the most
    relevant first, and the class score is followed (Samek et al., IEEE TNNLS
    2017), for each method and for a random order of the regions.

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
        As in ``explain_dataset``; samples per explain pass.
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

    Returns
    -------
    Evaluation
    """
    s = types.SimpleNamespace(model=model, data=None if data is None else os.fspath(data), dataset=dataset,
                              relevance=relevance, rule=[rule] if isinstance(rule, str) else rule,
                              target=target, region=region, steps=steps, order=order, seed=seed, count=count,
                              device=device, batch_size=batch_size, out=out, plot=plot,
                              mean=mean, std=std, channel_order=channel_order, weights=weights)
    input_range = options.check_range(input_range)
    s.size, s.resize, s.crop = options.geometry(size, resize, crop)
    methods, s.replace = _check(s, input_range, replace, overwrite)
    path, name, model_id = options.open_model(options.embedded_model() if model is None else model, weights)
    net = options.load_model(model, path, device, weights)
    X, kept, asked, source, origin = _samples(net, s, input_range)
    maps, followed = _maps(net, s, X, kept, source, _followed(net, s, X, kept, asked), methods)
    result, settings, grid, region = _curves(net, X, maps, followed, kept, origin, s)
    what = {"morf": "most relevant first", "lerf": "least relevant first"}[order]
    if verbose:
        _report(result, name, grid, region, what, s.replace, seed)
    settings = dict(settings, order=order, model=model_id, data=origin, **_normalisation(s))
    made = _record(net, path, s, list(maps), input_range, settings)
    _write(result, s, source, settings, made, f"{name}, {origin}: {region[0]} x {region[1]} regions, {what}",
           verbose)
    return result


def _record(net, path, s, methods, input_range, settings):
    """What the curves' file records of how it was made (lrpnb.provenance)."""
    model, digest = provenance.model_identity(net, path)
    target = s.target if isinstance(s.target, str) else Target.from_option(s.target).describe()
    weights = getattr(s, "weights", None)
    return provenance.record("evaluate", model=model, model_sha256=digest, method=methods, target=target,
                             weights=None if weights is None else os.path.abspath(weights),
                             weights_sha256=None if weights is None else provenance.file_digest(weights),
                             data=settings["data"], dataset=s.dataset, size=s.size, input_range=input_range,
                             mean=s.mean, std=s.std, channel_order=s.channel_order, evaluation=settings)


def _maps(net, s, X, kept, source, followed, methods):
    """(relevance maps by label, the classes followed): from ``relevance``
    (with its targets), or explained by each method."""
    if s.relevance is None:
        return {label: _explain(net, X, followed, keywords, s.batch_size) for label, keywords in methods}, \
            followed
    if source is None:
        raise ValueError("--relevance needs the --data it was computed from")
    R, followed = _read_relevance(s.relevance, source, kept, X.shape[1:])
    return {os.path.basename(s.relevance): R}, followed


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


def _curves(net, X, maps, followed, kept, origin, s):
    """(Evaluation, the settings of the curves, the grid of regions, the
    region's size): the curves of every map, and of a random order of the
    regions."""
    from .. import evaluate

    settings = dict(region=tuple(s.region) if np.ndim(s.region) else s.region, steps=s.steps, replace=s.replace, seed=s.seed)
    grid, region = evaluate.regions(X.shape[1:], settings["region"])
    steps = s.steps if s.steps is not None else grid[0] * grid[1]
    began = time.perf_counter()
    curves = {label: evaluate.perturbation_curve(net, X, R, followed, order=s.order, **settings)
              for label, R in maps.items()}
    curves["random"] = evaluate.perturbation_curve(net, X, None, followed, order="random", **settings)
    result = Evaluation(curves=curves, target=np.asarray(followed, dtype=np.int64),
                        index=np.asarray(kept, dtype=np.int64), origin=origin, steps=steps,
                        seconds=time.perf_counter() - began)
    return result, dict(settings, steps=steps), grid, region


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


def _samples(net, s, input_range):
    """(X as the model takes it, the rows read, the samples asked for, the
    source or None, the samples in words): synthetic digits without data, else the first
    ``count`` samples of the data."""
    if s.data is None:
        if s.model is not None:
            raise ValueError("--data is needed with --model (synthetic digits fit the embedded LeNet-5 only)")
        from ..digits import synthetic_digits

        options.geometry_applies(None, s.size, s.resize)
        count = s.count or 500
        X = synthetic_digits(count, seed=s.seed + 1000).images
        # seeds from 1000 on: the embedded model was trained on seeds 1 and 2
        return s.normalise(X), list(range(count)), count, None, f"{count} held-out synthetic digit{'s' * (count != 1)} (seed {s.seed + 1000})"
    source = open_source(s.data, s.dataset, sample_shape(net, s.size), input_range, s.resize, s.crop)
    options.geometry_applies(source, s.size, s.resize)
    refuse_read_outputs([s.out, s.plot], source)
    options.data_note("evaluate", net, source, input_range)
    count = len(source) if s.count is None else min(s.count, len(source))
    X, problems, kept = source.batch(0, count)
    for index, message in problems:
        print(f"lrpnb evaluate: skipped sample {index}: {message}", file=sys.stderr)
    if not len(kept):
        raise ValueError(f"{s.data}: no sample could be read")
    X = options.model_samples(net, X, input_range, s.data)
    options.range_note("evaluate", s.data, X, input_range)
    return s.normalise(X), kept, count, source, f"{len(kept)} sample{'s' * (len(kept) != 1)} of {s.data}"


def _followed(net, s, X, kept, count):
    """The class followed in each sample (N,), decided once for the
    explanations, the curves and the file."""
    target = Target.from_option(s.target, count)
    if target.several:
        raise ValueError("--target: a perturbation curve follows one class per sample (pred, K or label:FILE)")
    if target.per_sample:
        return np.asarray(target.value)[kept]
    return target.classes(np.asarray(net.scores(X)))[:, 0]


def _explain(net, X, target, keywords, batch_size):
    """The relevance of every sample, ``batch_size`` samples at a time."""
    parts = [np.asarray(net.explain(X[first:first + batch_size], target=target[first:first + batch_size],
                                    **keywords))
             for first in range(0, len(X), batch_size)]
    return np.concatenate(parts)


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


def _read_relevance(path, source, kept, shape):
    """(relevance, target) rows of an explain result for the samples ``kept``;
    a damaged file is a ValueError naming it, whatever h5py raises."""
    from ..data_io import HDF5_ERRORS

    try:
        return _relevance_of(path, source, kept, shape)
    except tuple(kind for kind in HDF5_ERRORS if kind is not ValueError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ValueError(f"--relevance {path}: not a readable HDF5 file ({type(error).__name__}: "
                         f"{error})") from None


def _relevance_of(path, source, kept, shape):
    import h5py

    with h5py.File(path, "r") as handle:
        if "relevance" not in handle or "target" not in handle:
            raise ValueError(f"--relevance {path}: holds no 'relevance' and 'target' datasets "
                             f"(write it with lrpnb explain --out FILE.h5)")
        relevance, target = handle["relevance"], handle["target"]
        if target.ndim != 1:
            raise ValueError(f"--relevance {path}: explains {target.shape[1]} targets per sample; "
                             f"a perturbation curve follows one (explain with --target pred, K or label:FILE)")
        index = _relevance_rows(handle, path, source, kept, len(relevance))
        if tuple(relevance.shape[1:]) != tuple(shape):
            raise ValueError(f"--relevance {path}: maps of shape {tuple(relevance.shape[1:])} for "
                             f"samples of shape {tuple(shape)}")
        # h5py reads a slice fast, and a list of rows only if they increase
        rows, inverse = np.unique(index, return_inverse=True)
        if rows[-1] - rows[0] + 1 == len(rows):
            R = relevance[int(rows[0]):int(rows[-1]) + 1]
        else:
            R = relevance[rows]
        return R[inverse], target[...][index].astype(np.int64)


def _relevance_rows(handle, path, source, kept, length):
    """The row of an explain result that holds each sample ``kept``: found
    by the image's name where the result names them, else the same row."""
    if "source" in handle and source.names is not None:
        rows = {os.path.basename(name.decode() if isinstance(name, bytes) else name): k
                for k, name in enumerate(handle["source"][...])}
        names = [os.path.basename(source.names[k]) for k in kept]
        missing = [name for name in names if name not in rows]
        if missing:
            raise ValueError(f"--relevance {path}: holds no row for {missing[0]}"
                             f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''}")
        return np.array([rows[name] for name in names])
    if length != len(source):
        raise ValueError(f"--relevance {path}: holds {length} rows for the "
                         f"{len(source)} samples of {source.name}")
    return np.asarray(kept)


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
