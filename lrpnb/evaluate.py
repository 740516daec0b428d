"""How good is an explanation? Region perturbation and its AOPC.

The evaluation of the LRP authors (Samek, Binder, Montavon, Lapuschkin and
Müller: Evaluating the visualization of what a deep neural network has
learned, IEEE TNNLS 28(11), 2017): cut the input into regions, replace them
one after the other, the most relevant first (MoRF), and watch the class
score fall. A good explanation makes it fall fast; the area over the
perturbation curve (AOPC) measures how fast, against a random order of the
regions as the baseline.

This module ranks the regions and orchestrates; the perturbed copies are
made by the kernels of ``lrpnb.kernels.perturb`` (or their GPU twins) and go
through the network's forward kernels in large batches. No Python loop runs
per sample or per step.
"""
import numbers

import numpy as np

#: orders of the regions: most relevant first, least relevant first, random
ORDERS = ("morf", "lerf", "random")

#: replacements by name (a number replaces with that value)
REPLACEMENTS = ("uniform", "mean", "blur")

#: input elements (samples x values) of the perturbed copies that go through
#: the network in one forward pass: large batches keep the kernels busy, and
#: a pass keeps two layers' outputs at a time, so memory stays bounded
COPY_ELEMENTS = {"cpu": 1 << 22, "cuda": 1 << 26}

__all__ = ["perturbation_curve", "aopc", "confidence_interval", "plot_curves", "regions", "ORDERS",
           "REPLACEMENTS"]


def regions(shape, region):
    """The grid of regions of an input of ``shape`` (H, W, D) or (D,).

    Returns ((rows, columns) of the grid, (rh, rw) of a region). Vectors
    (D,) are one row of D values, so their regions are runs of ``rw``
    values (``region`` an int, or (1, rw)).
    """
    H, W = (shape[0], shape[1]) if len(shape) == 3 else (1, shape[0])
    if isinstance(region, numbers.Integral):
        region = (1, region) if len(shape) == 1 else (region, region)
    try:
        rh, rw = (int(v) for v in region)
        if any(not float(v).is_integer() for v in region):
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"region must be an int or a pair of ints (h, w), got {region!r}") from None
    if rh < 1 or rw < 1 or rh > H or rw > W:
        raise ValueError(f"region {rh} x {rw} must be at least 1 x 1 and fit the input's "
                         f"{H} x {W} {'values' if len(shape) == 1 else 'pixels'}")
    return (-(-H // rh), -(-W // rw)), (rh, rw)


def perturbation_curve(net, X, R, target=None, region=(4, 4), steps=None, order="morf",
                       replace="uniform", seed=0, value_range=None, blur_sigma=None, batch_size=None):
    """Class scores while the regions of each input are replaced, one per step.

    The region perturbation of Samek et al. (IEEE TNNLS 28(11), 2017): the
    input is cut into a grid of non-overlapping ``region`` tiles; each
    tile's relevance is summed over its pixels and channels,
    ``s_r = sum_{p in r} sum_c R_pc``; step k replaces the k-th region of
    the order, so that after k steps the first k regions are replaced:

        x^(0) = x,   x^(k) = g(x^(k-1), r_k),   curve[:, k] = f_target(x^(k))

    Parameters
    ----------
    net : lrpnb.Network
        Its forward kernels compute the scores (on its device).
    X : array (N, H, W, D) or (N, D)
        The inputs; float32 stays float32.
    R : array of X's shape
        The relevance of each input element (any explanation). Not used by
        ``order='random'`` (pass None there).
    target : None, int or int array (N,)
        The class whose score is followed: None for each sample's predicted
        class (as ``explain`` chooses it).
    region : int or (h, w)
        Region size in pixels. Where h or w does not divide the input, the
        last row or column of regions is smaller. For vectors (N, D),
        regions are runs of w values.
    steps : int, optional
        How many regions to replace (default: all of them).
    order : {'morf', 'lerf', 'random'}
        Most relevant first (descending ``s_r``), least relevant first, or
        a random permutation per sample. Ties keep grid order (row by row).
    replace : {'uniform', 'mean', 'blur'} or float
        What a replaced region becomes: values drawn uniformly from
        ``value_range`` for each element (the paper's choice), the sample's
        mean per channel, the sample blurred by a Gaussian of
        ``blur_sigma`` pixels (default: the region's larger side), or one
        constant value.
    seed : int
        Seeds the uniform values and the random order: the same seed gives
        the same curves.
    value_range : (low, high), optional
        The range of the uniform values (default: each sample's own
        minimum and maximum).
    blur_sigma : float, optional
        The Gaussian's standard deviation in pixels for ``replace='blur'``
        (default: the region's larger side).
    batch_size : int, optional
        Perturbed copies per forward pass (default: as many as
        COPY_ELEMENTS input elements).

    Returns
    -------
    curve : float64 array (N, steps + 1)
        ``curve[:, 0]`` is the unperturbed score, ``curve[:, k]`` the score
        with k regions replaced. Scores are before a final SoftMax, as
        ``explain`` explains them.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    X, V, images, rank, steps, rh, rw = _prepare(net, X, R, region, steps, order, replace, seed,
                                                 value_range, blur_sigma)
    N = X.shape[0]
    backend = net.backend
    images = backend.put(images)  # on the network's device once, for every pass below
    scores = np.asarray(net.to_host(net.scores(images.reshape(X.shape))))
    _check_scores(scores)
    classes = _target(target, scores)
    per_copy = int(np.prod(images.shape[1:]))
    if batch_size is None:
        batch_size = max(1, COPY_ELEMENTS[backend.name] // per_copy)
    elif not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    curve = _scored_copies(net, images, backend.put(V), backend.put(rank), (rh, rw), steps, classes,
                           X.shape[1:], batch_size)
    return curve.reshape(N, steps + 1)


def _scored_copies(net, images, V, rank, region, steps, classes, shape, batch_size):
    """The class score of every perturbed copy, sample by sample and step by
    step (N * (steps + 1),), ``batch_size`` copies per forward pass; every
    array is on the network's device already."""
    total = len(classes) * (steps + 1)
    curve = np.empty(total, dtype=np.float64)
    rows = np.repeat(classes, steps + 1)
    for q0 in range(0, total, batch_size):
        q1 = min(q0 + batch_size, total)
        copies = net.backend.perturb.perturbed_copies(images, V, rank, region[0], region[1], steps, q0, q1)
        copies = copies.reshape((q1 - q0,) + tuple(shape))
        copy_scores = np.asarray(net.to_host(net.scores(copies)))
        curve[q0:q1] = copy_scores[np.arange(q1 - q0), rows[q0:q1]]
    return curve


def aopc(curves, per_sample=False):
    """Area over the perturbation curve (Samek et al., IEEE TNNLS 2017):

    ``AOPC = < 1/(L+1) sum_{k=0}^{L} (f(x^(0)) - f(x^(k))) >``

    averaged over the samples, L the number of steps. Larger is a faster
    fall of the score: for MoRF, a better explanation.

    Parameters
    ----------
    curves : array (N, L + 1)
        From :func:`perturbation_curve`.
    per_sample : bool
        Return each sample's value (N,) instead of the mean.
    """
    curves = np.asarray(curves, dtype=np.float64)
    if curves.ndim != 2 or curves.shape[1] < 1 or curves.shape[0] < 1:
        raise ValueError(f"curves must have shape (N, steps + 1), got {curves.shape}")
    values = np.mean(curves[:, :1] - curves, axis=1)
    return values if per_sample else float(np.mean(values))


def confidence_interval(values, level=0.95):
    """(mean, low, high): the mean of per-sample ``values`` and its normal
    confidence interval at ``level`` (mean +- z * standard error)."""
    from scipy.stats import norm

    values = np.asarray(values, dtype=np.float64)
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, mean, mean
    half = float(norm.ppf(0.5 + level / 2) * np.std(values, ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half


def plot_curves(curves, path, title=None):
    """Write a PNG of the mean perturbation curve of each method.

    Parameters
    ----------
    curves : dict name -> array (N, L + 1)
        Curves from :func:`perturbation_curve`, the same L for all.
    path : str
        The PNG to write (replaced if it exists).
    title : str, optional
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), dpi=120, layout="constrained")
    axes = figure.add_subplot()
    for name, curve in curves.items():
        curve = np.asarray(curve, dtype=np.float64)
        style = dict(linestyle="--", color="0.4") if name == "random" else {}
        axes.plot(np.arange(curve.shape[1]), curve.mean(axis=0), label=f"{name} (AOPC {aopc(curve):.3g})",
                  **style)
    axes.set_xlabel("regions replaced")
    axes.set_ylabel("mean class score")
    axes.grid(alpha=0.3)
    axes.legend()
    if title:
        axes.set_title(title, fontsize=10)
    figure.savefig(path, format="png")


# ---------------------------------------------------------------- helpers
def _prepare(net, X, R, region, steps, order, replace, seed, value_range, blur_sigma):
    """Checked inputs, as images (N, H, W, D) on the host: (X, replacement
    values V, X as images, rank of every region, steps, rh, rw)."""
    from .backends import as_input

    X = as_input(_host_array(X), "X")
    if X.ndim not in (2, 4):
        raise ValueError(f"X must be images (N, H, W, D) or vectors (N, D), got shape {X.shape}")
    (rows, columns), (rh, rw) = regions(X.shape[1:], region)
    count = rows * columns
    if steps is None:
        steps = count
    if not isinstance(steps, numbers.Integral) or not 1 <= steps <= count:
        raise ValueError(f"steps must be an int from 1 to the {count} regions of "
                         f"{rh} x {rw}, got {steps!r}")
    images = X.reshape(X.shape[0], 1, X.shape[1], 1) if X.ndim == 2 else X
    if not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an int, got {seed!r}")
    values_seed, order_seed = np.random.SeedSequence(int(seed)).spawn(2)
    if order == "random":
        keys = np.random.default_rng(order_seed).random((X.shape[0], count))
        ranking = np.argsort(keys, axis=1, kind="stable")
    else:
        if R is None:
            raise ValueError(f"order {order!r} ranks the regions by R; give the relevance R")
        R = as_input(_host_array(R), "R")
        if R.shape != X.shape:
            raise ValueError(f"R must have X's shape {X.shape}, got {R.shape}")
        R = R.reshape(images.shape)
        sums = net.backend.perturb.region_relevance(net.backend.put(R), rh, rw)
        sums = np.asarray(net.to_host(sums))
        # stable sorts: ties keep grid order, for MoRF as for LeRF
        ranking = np.argsort(-sums if order == "morf" else sums, axis=1, kind="stable")
    rank = np.empty_like(ranking)
    np.put_along_axis(rank, ranking, np.arange(count)[None, :], axis=1)
    with np.errstate(over="ignore", invalid="ignore"):
        V = _replacement(images, replace, np.random.default_rng(values_seed), value_range, blur_sigma,
                         (rh, rw))
    if not np.isfinite(V).all():  # a value_range beyond the dtype's range
        raise ValueError(f"the replacement values are not finite in the data's dtype ({X.dtype}); "
                         f"give a value_range within +-{np.finfo(X.dtype).max:.3g}")
    return X, V, images, rank.astype(np.int64), int(steps), rh, rw


def _replacement(images, replace, rng, value_range, blur_sigma, region):
    """The values a replaced region takes, for every element: (N, H, W, D)."""
    dtype = images.dtype
    if isinstance(replace, numbers.Real) and not isinstance(replace, bool):
        with np.errstate(over="ignore"):
            if not np.isfinite(dtype.type(replace)):
                raise ValueError(f"replace must be finite in the data's dtype ({dtype}, largest "
                                 f"{np.finfo(dtype).max:.3g}), got {replace!r}")
        return np.full(images.shape, replace, dtype=dtype)
    if replace == "uniform":
        if value_range is None:
            low = images.min(axis=(1, 2, 3), keepdims=True)
            high = images.max(axis=(1, 2, 3), keepdims=True)
        else:
            low, high = _range(value_range)
        draws = rng.random(images.shape)
        return np.ascontiguousarray(low + (high - low) * draws, dtype=dtype)
    if replace == "mean":
        means = images.mean(axis=(1, 2), keepdims=True, dtype=np.float64)
        return np.ascontiguousarray(np.broadcast_to(means, images.shape), dtype=dtype)
    if replace == "blur":
        from scipy.ndimage import gaussian_filter

        sigma = max(region) if blur_sigma is None else blur_sigma
        if not isinstance(sigma, numbers.Real) or not sigma > 0:
            raise ValueError(f"blur_sigma must be a positive number, got {blur_sigma!r}")
        # blur along the rows and columns of each sample, never across samples or channels
        return np.ascontiguousarray(gaussian_filter(images.astype(np.float64), (0, sigma, sigma, 0),
                                                    mode="nearest"), dtype=dtype)
    raise ValueError(f"replace must be one of {REPLACEMENTS} or a number, got {replace!r}")


def _range(value_range):
    try:
        low, high = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(f"value_range must be (low, high), got {value_range!r}") from None
    if not (np.isfinite(low) and np.isfinite(high) and low <= high):
        raise ValueError(f"value_range must be finite with low <= high, got {value_range!r}")
    return low, high


def _host_array(A):
    """GPU arrays (numba, CuPy, PyTorch) as numpy: the ranking and the
    replacement values are made on the host, once per call."""
    if hasattr(A, "copy_to_host"):
        return A.copy_to_host()
    if hasattr(A, "__cuda_array_interface__"):
        from numba import cuda

        return cuda.as_cuda_array(A).copy_to_host()
    return A


def _check_scores(scores):
    if scores.ndim != 2:
        raise ValueError(f"a perturbation curve follows class scores of shape (N, C); "
                         f"the network outputs shape {scores.shape}")


def _target(target, scores):
    """The class followed for each sample (N,)."""
    from .targets import Target, target_classes

    try:
        several = Target.parse(target).several
    except ValueError:
        several = True  # not a target at all: said as for several
    if several:
        raise ValueError(f"a perturbation curve follows one class per sample: target must be None, "
                         f"an int or an int array, got {target!r}")
    return target_classes(target, scores)[:, 0]
