"""The Caffe LRP Toolbox's standalone batch mode (``lrpnb toolbox``, :func:`explain_filelist`).

    lrpnb toolbox -c CONFIG -f FILELIST -p PATHPREFIX

CONFIG holds pairs of lines, a key and then its value (the toolbox's syntax;
blank lines between pairs are allowed, lines starting with # are comments):

    model_file                  the model (.txt, .nn, .pickle, .mat; relative
                                to the config file's folder)
    relpropformulatype          the formula type (lrpnb.formula_type)
    epsstab                     epsilon of the epsilon rules (default 0.01)
    alphabeta_beta              beta of the alpha-beta rules (default 1)
    auxiliaryvariable_maxlayerindexforflatdistinconv
                                layer index k of the flat formula types
    standalone_outpath          folder the results go to (relative to the
                                config file's folder)
    standalone_rootpath         the part of each image path not repeated
                                below standalone_outpath (relative to the
                                config file's folder)
    input_size                  H W the images are resized to (default: the
                                model's input size)
    input_range                 LOW HIGH pixels 0..255 are scaled to
                                (default -1 1)
    colormap                    of the heatmap PNGs (default black-firered)

FILELIST has an image path (appended to PATHPREFIX) and a target per line:
-1 the top class, -2 the five top classes (all, with fewer), k >= 0 class k.

Paths: entries must lie below PATHPREFIX (absolute paths and '..' that
leave it are refused, naming the line) and be regular files (a FIFO or
device is refused before it is opened); results go only below
standalone_outpath, which must lie below the config file's folder, never
through a symbolic link below it; distinct inputs get distinct names
(img.png and img.jpg side by side: img_... and img_jpg_...).

For every image it writes, below standalone_outpath at the image's path
relative to standalone_rootpath: ``<name>_rawhm.txt`` (see
formats/README.md), ``<name>_heatmap.png``, ``<name>_as_inputted_into_the_dnn.png``
and ``<name>_toptenscores.txt``; for -2 one rawhm and heatmap per class,
named ``<name>_class<k>_rawhm.txt`` and ``<name>_class<k>_heatmap.png``.
"""
import os
import sys

import numpy as np

from ._atomic import atomic_path
from .failure import Failure

__all__ = ["read_config", "read_filelist", "write_rawhm", "read_rawhm", "explain_filelist"]

_KEYS = ("model_file", "relpropformulatype", "epsstab", "alphabeta_beta",
         "auxiliaryvariable_maxlayerindexforflatdistinconv", "standalone_outpath",
         "standalone_rootpath", "input_size", "input_range", "colormap")
_REQUIRED = ("model_file", "relpropformulatype", "standalone_outpath")


def _numbers(path, lineno, key, text, count, kind=float):
    parts = text.split()
    try:
        values = [kind(part) for part in parts]
    except ValueError:
        values = []
    if len(values) != count:
        raise ValueError(f"{path}:{lineno}: {key} needs {count} {kind.__name__} value(s), got {text!r}")
    return values if count > 1 else values[0]


def read_config(path):
    """The settings of a toolbox config file, checked: a dict with every
    key of the module docstring (defaults filled in)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as handle:
        lines = [(k, line.strip()) for k, line in enumerate(handle, 1)]
    lines = [(k, text) for k, text in lines if text and not text.startswith("#")]
    if len(lines) % 2:
        k, text = lines[-1]
        raise ValueError(f"{path}:{k}: key {text!r} has no value line after it")
    raw, where = {}, {}
    for (k, key), (vk, value) in zip(lines[::2], lines[1::2]):
        if key not in _KEYS:
            raise ValueError(f"{path}:{k}: unknown key {key!r}; known keys: {', '.join(_KEYS)}")
        if key in raw:
            raise ValueError(f"{path}:{k}: key {key!r} given twice (first on line {where[key]})")
        raw[key], where[key] = value, vk
    for key in _REQUIRED:
        if key not in raw:
            raise ValueError(f"{path}: missing key {key!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if _escapes(raw["standalone_outpath"]):
        raise ValueError(f"{path}:{where['standalone_outpath']}: standalone_outpath must be a folder below "
                         f"the config file's folder, got {raw['standalone_outpath']!r}")
    config = dict(model_file=os.path.join(folder, raw["model_file"]),
                  standalone_outpath=os.path.join(folder, raw["standalone_outpath"]),
                  standalone_rootpath=(os.path.join(folder, raw["standalone_rootpath"])
                                       if "standalone_rootpath" in raw else None),
                  colormap=raw.get("colormap", "black-firered"))
    config["relpropformulatype"] = _numbers(path, where["relpropformulatype"], "relpropformulatype",
                                            raw["relpropformulatype"], 1, int)
    config["epsstab"] = _numbers(path, where.get("epsstab"), "epsstab", raw.get("epsstab", "0.01"), 1)
    config["alphabeta_beta"] = _numbers(path, where.get("alphabeta_beta"), "alphabeta_beta",
                                        raw.get("alphabeta_beta", "1"), 1)
    key = "auxiliaryvariable_maxlayerindexforflatdistinconv"
    config[key] = _numbers(path, where[key], key, raw[key], 1, int) if key in raw else None
    config["input_size"] = (_numbers(path, where["input_size"], "input_size", raw["input_size"], 2, int)
                            if "input_size" in raw else None)
    config["input_range"] = tuple(_numbers(path, where.get("input_range"), "input_range",
                                           raw.get("input_range", "-1 1"), 2))
    return config


def _escapes(relative):
    """Whether a path is absolute or climbs out of its base with '..'."""
    return os.path.isabs(relative) or os.path.normpath(relative).split(os.sep)[0] == os.pardir


def read_filelist(path, prefix):
    """[(image path, target, line number)] of a file list; bad lines are
    returned as (None, message, line number). Entries are paths below
    PATHPREFIX (the current folder without one): an absolute path, or one
    that climbs out with '..', is a bad line."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"file list not found: {path}")
    entries = []
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            name, _, target = text.rpartition(" ")
            name = name.strip()
            if not name or not target.lstrip("-").isdigit() or int(target) < -2:
                entries.append((None, f"{path}:{lineno}: expected 'path target' with target -1, -2 "
                                      f"or a class >= 0, got {text!r}", lineno))
                continue
            if _escapes(name):
                entries.append((None, f"{path}:{lineno}: {name!r} is not below the path prefix "
                                      f"{prefix or os.curdir!r}; entries are relative to it", lineno))
                continue
            entries.append((os.path.join(prefix, name), int(target), lineno))
    return entries


def write_rawhm(relevance, path):
    """Write an (H, W, C) relevance map in the toolbox's rawhm text format:
    C on the first line, H W on the second, then H rows of W values for
    every channel in turn. Atomic."""
    relevance = np.asarray(relevance, dtype=np.float64)
    if relevance.ndim == 2:
        relevance = relevance[..., None]
    H, W, C = relevance.shape
    with atomic_path(path, suffix=".txt") as tmp:
        with open(tmp, "w", encoding="ascii") as handle:
            handle.write(f"{C}\n{H} {W}\n")
            for c in range(C):
                np.savetxt(handle, relevance[:, :, c], fmt="%.9g")


def read_rawhm(path):
    """Read a rawhm text file back as an (H, W, C) float64 array."""
    with open(path, encoding="ascii") as handle:
        try:
            C = int(handle.readline())
            H, W = (int(v) for v in handle.readline().split())
            values = np.loadtxt(handle, ndmin=2)
        except ValueError as error:
            raise ValueError(f"{path}: not a rawhm file ({error})") from None
    if values.shape != (C * H, W):
        raise ValueError(f"{path}: header says {C} x {H} x {W}, found {values.shape} values")
    return values.reshape(C, H, W).transpose(1, 2, 0)


def _write_text(path, text):
    with atomic_path(path, suffix=".txt") as tmp:
        with open(tmp, "w", encoding="ascii") as handle:
            handle.write(text)


def _out_base(image, config, prefix):
    """The output path (without suffixes) of an image: its path below
    standalone_rootpath, or below PATHPREFIX where it is not below that,
    repeated under standalone_outpath. Distinct inputs get distinct paths
    (every input is below PATHPREFIX)."""
    relative = None
    if config["standalone_rootpath"]:
        relative = os.path.relpath(os.path.abspath(image), os.path.abspath(config["standalone_rootpath"]))
    if relative is None or _escapes(relative):
        relative = os.path.relpath(os.path.abspath(image), os.path.abspath(prefix or os.curdir))
    return os.path.join(config["standalone_outpath"], os.path.splitext(relative)[0])


def _regular_file(path):
    """Refuse what is not a regular file before opening it: a FIFO would
    hang the run, a device read forever."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ValueError(f"{path}: image not found") from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path}: not a regular file (a folder, FIFO or device); only image files are read")


def _output_folder(base, outpath):
    """Make the folder of ``base`` below ``outpath``, refusing to go through a
    symbolic link below it (it could lead the results anywhere)."""
    folder = os.path.dirname(base)
    relative = os.path.relpath(folder, outpath)
    current = outpath
    for part in ([] if relative == os.curdir else relative.split(os.sep)):
        current = os.path.join(current, part)
        if os.path.islink(current):
            raise ValueError(f"{current}: a symbolic link below standalone_outpath; results are written "
                             f"only to real folders below it")
    os.makedirs(folder, exist_ok=True)


def explain_filelist(config_path, filelist, pathprefix=""):
    """Explain every image of a toolbox file list as its config file says:
    what ``lrpnb toolbox -c CONFIG -f FILELIST -p PATHPREFIX`` runs.

    Parameters
    ----------
    config_path : str
        The config file (see the module docstring).
    filelist : str
        The file list: an image path (below ``pathprefix``) and a target
        per line.
    pathprefix : str
        Joined to every image path of the list.

    Returns
    -------
    int
        The images explained; each writes the files of the module docstring.

    Raises
    ------
    lrpnb.failure.Failure
        After the others are done, where entries failed (each is reported
        on stderr with its line).
    """
    from .composites import formula_type
    from .inputs import sample_shape
    from .model_io import load

    config = read_config(config_path)
    net = load(config["model_file"])
    composite = formula_type(config["relpropformulatype"], epsstab=config["epsstab"],
                             alphabeta_beta=config["alphabeta_beta"],
                             layer_index=config["auxiliaryvariable_maxlayerindexforflatdistinconv"])
    composite.rules(net.layers)  # check the layer index against this network now
    shape = sample_shape(net, config["input_size"])
    if shape is None or len(shape) != 3:
        raise ValueError(f"{config['model_file']}: the toolbox mode explains images, and this model "
                         f"does not take images (set input_size?)")
    classes = net.output_shapes((1,) + tuple(shape))[-1][-1]
    entries = read_filelist(filelist, pathprefix)
    failures, done, bases = 0, 0, {}
    for image_path, target, lineno in entries:
        if image_path is None:
            failures += 1
            print(f"lrpnb toolbox: {target}", file=sys.stderr)
            continue
        try:
            _explain_entry(net, composite, config, shape, classes, image_path, target, pathprefix, bases)
            done += 1
        except (ValueError, OSError) as error:
            failures += 1
            print(f"lrpnb toolbox: {filelist}:{lineno}: {error}", file=sys.stderr)
    print(f"explained {done} of {len(entries)} images with formula type "
          f"{config['relpropformulatype']}; results in {config['standalone_outpath']}")
    if failures:
        raise Failure(f"{failures} of {len(entries)} entries failed (see above)")
    return done


def _explain_entry(net, composite, config, shape, classes, image_path, number, pathprefix, bases):
    """Explain one image of the list and write its files; ``bases`` maps the
    output paths taken so far to their images."""
    from . import render
    from .sources import load_image
    from .targets import Target

    _regular_file(image_path)
    X = load_image(image_path, shape[:2], shape[2], config["input_range"])[None]
    base = _out_base(image_path, config, pathprefix)
    real = os.path.realpath(image_path)
    if bases.setdefault(base, real) != real:  # img.png and img.jpg side by side
        base += "_" + os.path.splitext(image_path)[1].lstrip(".").lower()
        bases.setdefault(base, real)
    _output_folder(base, config["standalone_outpath"])
    target = Target.from_toolbox(number, classes)
    relevance, scores = net.explain(X, target=target, composite=composite, return_scores=True)
    if target.several:  # a map per class, named by it
        maps = relevance[0]
        names = [f"{base}_class{k}" for k in target.classes(scores)[0]]
    else:
        maps, names = relevance, [base]
    for name, relevance_map in zip(names, maps):
        write_rawhm(relevance_map, name + "_rawhm.txt")
        render.save_image(render.heatmap(relevance_map[None], cmap=config["colormap"])[0],
                          name + "_heatmap.png", border=0)
    render.save_image(render.image(X, input_range=config["input_range"])[0],
                      base + "_as_inputted_into_the_dnn.png", border=0)
    order = Target("top", min(10, classes)).classes(scores)[0]
    _write_text(base + "_toptenscores.txt", "".join(f"{k} {scores[0, k]:.9g}\n" for k in order))
