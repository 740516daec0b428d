"""The perturbation curves of one batch of a data set, as ``lrpnb evaluate``
computes them, the same on one machine (lrpnb.pipeline.evaluate) and on a
Dask worker (lrpnb.distributed): a run is cut into batches of ``batch_size``
rows of the data, and each batch is explained and perturbed on its own.

The results of a batch depend on the batch alone: its samples' classes,
explanations and perturbed copies are computed in passes that start at the
batch's first sample, and the random values (uniform replacements, random
orders) are those of the whole data set's stream, taken at the batch's rows
(a numpy generator advanced to them). A cluster that gives each worker whole
batches therefore computes the local run's curves bit for bit.
"""
import os

import numpy as np

from .. import evaluate
from ..backends import as_input
from . import options

__all__ = ["SyntheticDigits", "check_curves", "read_rows", "batch_curves", "read_relevance"]


class SyntheticDigits:
    """``count`` held-out synthetic digits (lrpnb.digits) drawn with ``seed``,
    read as a data file is: the samples of ``lrpnb evaluate`` without data."""

    names = None

    def __init__(self, count, seed):
        from ..digits import synthetic_digits

        self.count, self.seed = count, seed
        self.images = synthetic_digits(count, seed=seed).images
        self.sample_shape = self.images.shape[1:]
        self.name = f"synthetic digits (seed {seed})"

    def __len__(self):
        return self.count

    def batch(self, start, stop):
        """(samples, problems, kept) of rows start..stop-1, as a source's."""
        return self.images[start:stop], [], list(range(start, stop))


def check_curves(net, sample_shape, region, steps, order, replace, seed):
    """Check the curves' settings on one zero sample before any work (the
    errors of :func:`lrpnb.evaluate.perturbation_curve`); the steps of a curve."""
    zero = np.zeros((1,) + tuple(sample_shape), dtype=np.float32)
    return evaluate._prepare(net, zero, zero, region, steps, order, replace, seed, None, None)[4]


def read_rows(net, source, first, last, input_range):
    """(X as the model takes it, before any normalisation, or None; problems; kept) of rows first..last-1."""
    X, problems, kept = source.batch(first, last)
    if not len(kept):
        return None, problems, kept
    return options.model_samples(net, X, input_range, source.name), problems, kept


def batch_curves(net, X, kept, first, last, target, methods, settings, maps=None):
    """(the class followed in each sample, curves by method and 'random') of
    one batch: ``X`` the normalised inputs of the samples ``kept`` of rows
    first..last-1 of the data.

    Parameters
    ----------
    target : lrpnb.targets.Target
        The class followed: each sample's prediction, one class, or a label per row of the data.
    methods : list of (label, dict)
        ``Network.explain`` keywords of each method; not used with ``maps``.
    settings : dict
        ``region``, ``steps``, ``order``, ``replace``, ``seed`` of the curves.
    maps : (dict, array), optional
        Relevance maps by label for these samples, and their classes (an explain result's).
    """
    if maps is not None:
        maps, followed = maps
    elif target.per_sample:
        followed = np.asarray(target.value)[kept]
    else:
        followed = target.classes(np.asarray(net.scores(X)))[:, 0]
    if maps is None:
        maps = {label: np.asarray(net.explain(X, target=followed, **keywords)) for label, keywords in methods}
    rows = (first, last, np.asarray(kept, dtype=np.int64))
    curves = {label: _curve(net, X, R, followed, settings, settings["order"], rows) for label, R in maps.items()}
    curves["random"] = _curve(net, X, None, followed, settings, "random", rows)
    return np.asarray(followed, dtype=np.int64), curves


class _Rows:
    """The draws a numpy generator seeded with ``seed`` makes for the rows
    ``kept`` of a whole data set's stream, where ``first..last-1`` are this
    batch's rows: ``random(shape)`` as ``_replacement`` calls it."""

    def __init__(self, seed, rows):
        self.seed, (self.first, self.last, self.kept) = seed, rows

    def random(self, shape):
        generator = np.random.default_rng(self.seed)
        # a PCG64 draw of a float64 is one step of its stream
        generator.bit_generator.advance(self.first * int(np.prod(shape[1:])))
        drawn = generator.random((self.last - self.first,) + tuple(shape[1:]))
        return drawn[self.kept - self.first]


def _curve(net, X, R, classes, settings, order, rows):
    """The curves of one batch (n, steps + 1): lrpnb.evaluate.perturbation_curve
    with the random values of these rows of the data set."""
    X = as_input(X, "X")
    images = X.reshape(X.shape[0], 1, X.shape[1], 1) if X.ndim == 2 else X
    (grid_rows, columns), (rh, rw) = evaluate.regions(X.shape[1:], settings["region"])
    count = grid_rows * columns
    steps = count if settings["steps"] is None else int(settings["steps"])
    values_seed, order_seed = np.random.SeedSequence(int(settings["seed"])).spawn(2)
    backend = net.backend
    if order == "random":
        keys = _Rows(order_seed, rows).random((len(X), count))
        ranking = np.argsort(keys, axis=1, kind="stable")
    else:
        R = as_input(R, "R").reshape(images.shape)
        sums = np.asarray(net.to_host(backend.perturb.region_relevance(backend.put(R), rh, rw)))
        ranking = np.argsort(-sums if order == "morf" else sums, axis=1, kind="stable")
    rank = np.empty_like(ranking)
    np.put_along_axis(rank, ranking, np.arange(count)[None, :], axis=1)
    with np.errstate(over="ignore", invalid="ignore"):
        V = evaluate._replacement(images, settings["replace"], _Rows(values_seed, rows), None, None, (rh, rw))
    per_copy = int(np.prod(images.shape[1:]))
    batch = max(1, evaluate.COPY_ELEMENTS[backend.name] // per_copy)
    curve = evaluate._scored_copies(net, backend.put(images), backend.put(V), backend.put(rank.astype(np.int64)),
                                    (rh, rw), steps, np.asarray(classes), X.shape[1:], batch)
    return curve.reshape(len(X), steps + 1)


def read_relevance(path, source, kept, shape):
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
