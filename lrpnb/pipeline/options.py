"""Settings of the dataset runs, checked before any work: the method, the
input range and normalisation, the model, the output files.

Each check raises ValueError (or OSError) with the words the ``lrpnb``
command prints, naming the command's option (``--param``, ``--std``), which
is also the keyword of :func:`lrpnb.explain_dataset` and
:func:`lrpnb.evaluate_dataset` with dashes for underscores.
"""
import hashlib
import os
import sys

import numpy as np

from ..rules import Rule

__all__ = ["COMPOSITE_NAMES", "composite", "parameter", "method", "method_text", "check_range",
           "normalisation", "geometry", "geometry_applies", "check_outputs", "data_note", "model_samples", "range_note", "open_model",
           "embedded_model", "rule_spec", "replacement"]

#: names --composite accepts (case-insensitive); formula:N is the toolbox's type N
COMPOSITE_NAMES = ("EpsilonPlus", "EpsilonAlpha2Beta1", "EpsilonPlusFlat", "EpsilonAlpha2Beta1Flat",
                   "EpsilonGammaBox", "AttnLRP", "CPLRP")

#: the model of ``lrpnb demo`` and ``lrpnb evaluate`` without --model
EMBEDDED_MODEL = "lenet5_synthetic"


def composite(spec, input_range, mean=None, std=None):
    """The composite named ``spec``: one of COMPOSITE_NAMES, or ``formula:N``
    (the toolbox's type N). EpsilonGammaBox is bounded by ``input_range``,
    normalised as the samples are by ``mean`` and ``std`` (--mean, --std):
    (low - mean) / std and (high - mean) / std per channel."""
    from .. import composites

    if spec.lower().startswith("formula:"):
        number = spec.split(":", 1)[1]
        if not number.lstrip("-").isdigit():
            raise ValueError(f"--composite formula:N needs an integer N, got {spec!r}")
        return composites.formula_type(int(number))
    for name in COMPOSITE_NAMES:
        if spec.lower() == name.lower():
            if name == "EpsilonGammaBox":
                return composites.EpsilonGammaBox(low=float(input_range[0]), high=float(input_range[1]),
                                                  mean=mean, std=std)
            return getattr(composites, name)()
    raise ValueError(f"unknown composite {spec!r}; use one of {', '.join(COMPOSITE_NAMES)} or formula:N")


def parameter(text, option="--param"):
    """A rule parameter: a number, or LOW,HIGH (zb), from the command
    line's text; a number or pair given as such is returned as it is."""
    if text is None or not isinstance(text, str):
        return text
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{option} must be a number, or LOW,HIGH for the zb rule; got {text!r}") from None
    return values[0] if len(values) == 1 else values


def method(rule, param, composite_spec, input_range, mean=None, std=None):
    """Keyword arguments of ``Network.explain`` for a rule (with its
    parameter) or a composite (a name of :func:`composite`, or a composite
    object), checked before any data is read: the Rule is made here, once.
    Neither given: no keywords, so each layer's preset applies. ``mean``
    and ``std`` are the samples' normalisation (the box bounds')."""
    if composite_spec is not None:
        if rule is not None or param is not None:
            raise ValueError("give either --rule (with --param) or --composite, not both")
        if hasattr(composite_spec, "rules"):  # a composite object rather than its name
            return dict(composite=composite_spec)
        return dict(composite=composite(composite_spec, input_range, mean, std))
    if rule is None and param is None:
        return {}  # each layer's own preset (the toolbox's models carry theirs)
    return dict(rule=Rule(rule, parameter(param)))


def method_text(rule, param, composite_spec):
    """Words for the method: 'the epsilon 0.01 rule', 'the EpsilonPlus composite'."""
    if composite_spec is not None:
        name = composite_spec if isinstance(composite_spec, str) else type(composite_spec).__name__
        return f"the {name} composite"
    if param is None:
        text = ""
    elif isinstance(param, str):
        text = f" {param}"
    else:
        text = " " + ",".join(f"{value:g}" for value in np.atleast_1d(param))
    return f"the {rule or 'simple'}{text} rule"


def check_range(values, option="--input-range"):
    """(low, high) as floats, finite with low < high."""
    low, high = (float(v) for v in values)
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"{option} needs LOW < HIGH, got {low:g} {high:g}")
    return low, high


def geometry(size, resize=None, crop=None):
    """(the image size H, W or None, the shorter side to resize to or None,
    whether to crop): how images are brought to the model's input, from
    ``--size H W`` (squash), ``--resize S`` and ``--crop H [W]``
    (torchvision's Resize and CenterCrop; :func:`lrpnb.sources.load_image`)."""
    if size is not None and (crop is not None or resize is not None):
        raise ValueError("give --size H W (images squashed to H x W) or --resize/--crop (aspect ratio kept, "
                         "the centre cut out), not both")
    if size is not None and (len(size) != 2 or any(int(n) < 1 for n in size)):
        raise ValueError(f"--size takes two positive sizes H W, got {list(size)}")
    if crop is not None:
        crop = [int(n) for n in np.atleast_1d(crop)]
        if len(crop) not in (1, 2) or any(n < 1 for n in crop):
            raise ValueError(f"--crop takes one or two positive sizes (H [W]), got {crop}")
        size = (crop[0], crop[-1])
    if resize is not None and int(resize) < 1:
        raise ValueError(f"--resize takes a positive size, got {resize}")
    return (None if size is None else tuple(int(n) for n in size)), \
        (None if resize is None else int(resize)), crop is not None or resize is not None


def geometry_applies(source, size, resize):
    """Refuse ``--size``/``--resize``/``--crop`` for a source that is not
    images (arrays are taken as they are; the options would be ignored)."""
    if (size is not None or resize is not None) and getattr(source, "paths", None) is None:
        shape = " x ".join(map(str, source.sample_shape)) if source is not None else "synthetic digits"
        raise ValueError(f"--size, --resize and --crop resize images; {getattr(source, 'name', 'the data')} "
                         f"holds arrays ({shape}), taken as they are: leave the options out")


def normalisation(mean, std, channel_order):
    """The function that turns a batch as read (scaled to the input range)
    into what the model takes: channels reversed for ``channel_order``
    'bgr', then (x - mean) / std per channel. Checked here, before any file
    exists."""
    from ..inputs import normalise

    if channel_order not in ("rgb", "bgr"):
        raise ValueError(f"--channel-order must be rgb or bgr, got {channel_order!r}")
    mean_values = np.asarray(mean if mean is not None else [0.0], dtype=np.float64)
    std_values = np.asarray(std if std is not None else [1.0], dtype=np.float64)
    if not (np.isfinite(mean_values).all() and np.isfinite(std_values).all()) or np.any(std_values <= 0):
        raise ValueError(f"--std must be positive and --mean finite, got mean {mean_values.tolist()}, "
                         f"std {std_values.tolist()}")
    if mean is None and std is None and channel_order == "rgb":
        return lambda X: X
    return lambda X: normalise(X, mean_values, std_values, channel_order == "bgr")


def check_outputs(outputs, inputs, overwrite, also=()):
    """Refuse outputs that exist (unless ``overwrite``), that are folders,
    that are inputs (whatever ``overwrite`` says), or whose folder is
    missing, before any work is done. ``also``: files the run writes besides
    (its ``.partial``, ``.lock``, PNGs), refused where they are inputs."""
    inputs = _input_files(inputs)
    seen = set()
    for path in outputs:
        real = os.path.realpath(path)
        if real in seen:
            raise ValueError(f"{path} is named for two outputs")
        seen.add(real)
        _not_an_input(path, inputs)
        if os.path.isdir(path):
            raise ValueError(f"{path} is a folder; name the file to write")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"cannot write {path}: folder {folder} does not exist")
        if not os.access(folder, os.W_OK):
            raise PermissionError(f"cannot write {path}: folder {folder} is not writable")
        if os.path.exists(path) and not overwrite:
            raise ValueError(f"{path} exists; remove it or pass --overwrite")
    for path in also:
        _not_an_input(path, inputs)


def _input_files(inputs):
    """The real paths and the (device, inode) of the inputs that exist;
    FILE.h5:DATASET reads FILE.h5."""
    reals, identities = set(), set()
    for item in inputs:
        if not isinstance(item, (str, os.PathLike)):
            continue  # None, or a loaded network
        item = os.fspath(item)
        if not os.path.exists(item):
            item = item.rpartition(":")[0] or item
        if os.path.exists(item):
            status = os.stat(item)
            reals.add(os.path.realpath(item))
            identities.add((status.st_dev, status.st_ino))
    return reals, identities


def _not_an_input(path, inputs):
    """Refuse ``path`` where it is (or links to) one of ``inputs`` (of :func:`_input_files`)."""
    real = os.path.realpath(path)
    status = os.stat(path) if os.path.exists(path) else None
    identity = None if status is None else (status.st_dev, status.st_ino)
    reals, identities = inputs
    if real in reals or identity in identities:
        raise ValueError(f"{path} is an input of this command; write the output elsewhere")


def model_samples(net, X, input_range, name):
    """:func:`lrpnb.inputs.model_input`, which also takes the toolbox's MNIST
    digits as (N, S, S, 1) images: a stack that does not fit the model as it
    is is read as the rows of S x S values it holds."""
    from ..inputs import model_input

    try:
        return model_input(net, X, input_range, name)
    except ValueError:
        X = np.asarray(X)
        if X.ndim != 4 or X.shape[3] != 1 or X.shape[1] != X.shape[2]:
            raise
        try:
            return model_input(net, X.reshape(len(X), -1), input_range, name)
        except ValueError:
            pass
        raise


def range_note(command, name, X, input_range):
    """Warn on stderr when samples (as the model takes them, before any
    normalisation) lie far outside ``input_range``: more than its width
    beyond either end, as 0..255 floats given to a model on -1..1. True when
    it warned."""
    low, high = input_range
    if not X.size:
        return False
    seen_low, seen_high = float(np.min(X)), float(np.max(X))
    width = high - low
    if seen_low >= low - width and seen_high <= high + width:
        return False
    print(f"lrpnb {command}: {name}: warning: the samples' values span {seen_low:g}..{seen_high:g}, far "
          f"outside the model's input range {low:g}..{high:g} (--input-range); float data is used as it is "
          f"(only uint8 is scaled from 0..255), so scale it first or give its range", file=sys.stderr)
    return True


def data_note(command, net, source, input_range):
    """Check that the samples fit the model before any output exists, and
    say on stderr how they are converted (uint8 scaling, MNIST rows).
    Returns the shape of a converted sample."""
    from ..inputs import input_shape

    data = getattr(source, "data", None)
    dtype = data.dtype if data is not None else np.float32
    probe = np.zeros((1,) + tuple(source.sample_shape), dtype=dtype)
    converted = model_samples(net, probe, input_range, source.name)
    notes = []
    if dtype == np.uint8:
        notes.append(f"uint8 values are scaled from 0..255 to {input_range[0]:g}..{input_range[1]:g} "
                     f"(--input-range)")
    if converted.shape[1:] != probe.shape[1:]:
        values = int(np.prod(probe.shape[1:]))
        side = int(round(np.sqrt(values)))
        what = f"rows of {values} values become {side} x {side} images" if probe.ndim == 2 \
            else f"{side} x {side} images are"
        notes.append(f"{what} padded to {' x '.join(map(str, input_shape(net)))}")
    if notes:
        print(f"lrpnb {command}: {source.name}: {'; '.join(notes)}", file=sys.stderr)
    return tuple(converted.shape[1:])


def embedded_model():
    """The file of the embedded LeNet-5 (trained on synthetic digits)."""
    from ..model_io import model_path

    return model_path(EMBEDDED_MODEL)


def open_model(model, weights=None):
    """(model file or None, what to call the model, what identifies it in a
    run's settings) for a model file (with the ``weights`` file of a Caffe
    model), an embedded model's name or a loaded Network (identified by a
    digest of its parameters)."""
    from ..model_io import model_path

    from .remote import absolute

    if isinstance(model, (str, os.PathLike)):
        path = model_path(model)
        with_weights = "" if weights is None else f" with weights {absolute(weights)}"
        return path, os.path.basename(path), absolute(path) + with_weights
    if weights is not None:
        raise ValueError("weights go with a Caffe model file (.prototxt), not with a loaded network")
    from ..provenance import network_digest

    # sha1, as runs have always recorded it: a partial file of an earlier run still resumes
    return None, "the network", f"a Network (parameters' sha1 {network_digest(model, hashlib.sha1())})"


def load_model(model, path, device, weights=None):
    """The Network: ``model`` itself (moved to ``device`` when one is given),
    or read from ``path`` (with a Caffe model's ``weights``) onto ``device``
    (default cpu)."""
    from ..model_io import load
    from .remote import local_file

    if path is None:
        return model if device is None else model.to(device)
    return load(local_file(path), device=device or "cpu", weights=local_file(weights))


def rule_spec(spec, input_range, mean=None, std=None):
    """(label, explain() keywords) for an evaluate rule NAME[:PARAM]
    (zb:LOW,HIGH), or a composite name (box bounds normalised by ``mean``
    and ``std`` as in :func:`composite`)."""
    name, _, text = spec.partition(":")
    if name.lower() == "formula" or any(spec.lower() == c.lower() for c in COMPOSITE_NAMES):
        return spec, dict(composite=composite(spec, input_range, mean, std))
    rule = Rule(name, parameter(text or None, f"--rule {spec!r}: the parameter after ':'"))
    return spec.replace(":", " "), dict(rule=rule)


def replacement(text):
    """What replaces a region in evaluate: a name of REPLACEMENTS or a finite
    number (given as text or as a number)."""
    from ..evaluate import REPLACEMENTS

    if text in REPLACEMENTS:
        return text
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"--replace must be one of {', '.join(REPLACEMENTS)} or a number, got {text!r}") from None
    if not np.isfinite(value):
        raise ValueError(f"--replace must be finite, got {text!r}")
    return value
