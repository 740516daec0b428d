"""The Caffe LRP Toolbox's standalone batch mode (``lrpnb toolbox``, :func:`explain_filelist`).

    lrpnb toolbox -c CONFIG -f FILELIST -p PATHPREFIX

CONFIG holds pairs of lines, a key and then its value (the toolbox's syntax;
blank lines between pairs are allowed, lines starting with # are comments,
and so are lines between pairs that do not start with a letter or _):

    model_file                  the model (.txt, .nn, .pickle, .mat, .onnx,
                                .lrpnb; relative to the config file's folder),
                                or with param_file a Caffe model's weights
                                (.caffemodel)
    param_file                  a Caffe network definition (.prototxt)
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

The Caffe toolbox's keys, known where param_file is given: mean_file
(.binaryproto, subtracted from images of 0..255 fed as BGR, see
lrpnb.caffe_import.images), use_mean_file_asbinaryprotoblob (1: the mean
file is BGR, 2: RGB),
baseimgsize (an image's longer side before the centre is cut out),
lastlayerindex (-1 or -2: both explain the scores below the softmax),
firstlayerindex (0), numclasses (the model's) and synsetfile (not read).

FILELIST has an image path (appended to PATHPREFIX) and a target per line:
-1 the top class, -2 the five top classes (all, with fewer), k >= 0 class k.

Paths are contained, since config files and lists come from elsewhere;
containment is decided on real paths (os.path.realpath): a symbolic link
that leads inside its folder is followed, one that leads out is refused:

- list entries must lie below PATHPREFIX (absolute paths and '..' that
  leave it are refused, naming the line), resolve inside it, and be regular
  files (a FIFO or device is refused before it is opened);
- standalone_outpath must lie below the config file's folder and resolve
  inside it; every folder and file written must resolve inside
  standalone_outpath;
- no file the run reads (config, file list, model, images) is written: an
  output at one's real path is refused, whatever else the run overwrites;
- a run holds the lock ``<standalone_outpath>/.lrpnb_toolbox.lock``
  (:class:`lrpnb.writers.WriterLock`) while it writes: a second run into
  the same folder is refused until the first ends.

Existing results are overwritten (atomically), as the toolbox does.
Distinct inputs get distinct names (img.png and img.jpg side by side:
img_... and img_jpg_...).

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
from .data_io import check_regular
from .failure import Failure

__all__ = ["read_config", "read_filelist", "write_rawhm", "read_rawhm", "explain_filelist"]

_KEYS = ("model_file", "relpropformulatype", "epsstab", "alphabeta_beta",
         "auxiliaryvariable_maxlayerindexforflatdistinconv", "standalone_outpath",
         "standalone_rootpath", "input_size", "input_range", "colormap", "param_file", "mean_file", "synsetfile",
         "use_mean_file_asbinaryprotoblob", "lastlayerindex", "firstlayerindex", "numclasses", "baseimgsize")
_REQUIRED = ("model_file", "relpropformulatype", "standalone_outpath")
# the keys of the Caffe toolbox's configs, known where param_file names a Caffe model
_CAFFE_KEYS = ("mean_file", "synsetfile", "use_mean_file_asbinaryprotoblob", "lastlayerindex", "firstlayerindex",
               "numclasses", "baseimgsize")
# a run holds the lock <standalone_outpath>/.lrpnb_toolbox.lock (WriterLock's target + ".lock")
LOCK_NAME = ".lrpnb_toolbox"


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
    if not os.path.exists(path):
        raise FileNotFoundError(f"config file not found: {path}")
    check_regular(path, "the config file")
    with open(path, encoding="utf-8") as handle:
        lines = [(k, line.strip()) for k, line in enumerate(handle, 1)]
    lines = [(k, text) for k, text in lines if text and not text.startswith("#")]
    pairs, pending = [], None
    for k, text in lines:
        if pending is not None:
            pairs.append((pending, (k, text)))
            pending = None
        elif text[0].isalpha() or text[0] == "_":
            pending = (k, text)
        # else a note between pairs, as the Caffe toolbox's configs explain values ("-2 find the highest ...")
    if pending is not None:
        raise ValueError(f"{path}:{pending[0]}: key {pending[1]!r} has no value line after it")
    raw, where = {}, {}
    caffe = any(key == "param_file" for (_, key), _ in pairs)
    for (k, key), (vk, value) in pairs:
        if key not in _KEYS or key in _CAFFE_KEYS and not caffe:
            known = [name for name in _KEYS if caffe or name not in _CAFFE_KEYS]
            raise ValueError(f"{path}:{k}: unknown key {key!r}; known keys: {', '.join(known)}" +
                             ("" if caffe else " (and the Caffe toolbox's, with param_file)"))
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
    outpath = os.path.normpath(os.path.join(folder, raw["standalone_outpath"]))
    real = _outside(outpath, folder)
    if real is not None:
        raise ValueError(f"{path}:{where['standalone_outpath']}: standalone_outpath "
                         f"{raw['standalone_outpath']!r} leads to {real} through a symbolic link, outside the "
                         f"config file's folder {os.path.realpath(folder)}; results are written only inside it")
    config = dict(model_file=os.path.join(folder, raw["model_file"]),
                  standalone_outpath=outpath,
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
    _caffe_keys(path, raw, where, folder, config)
    return config


def _caffe_keys(path, raw, where, folder, config):
    """The Caffe toolbox's keys, checked, into ``config``."""
    for key in ("param_file", "mean_file"):
        config[key] = os.path.join(folder, raw[key]) if key in raw else None
    checks = dict(use_mean_file_asbinaryprotoblob=("1", (1, 2)), lastlayerindex=("-2", (-1, -2)),
                  firstlayerindex=("0", (0,)), numclasses=(None, None), baseimgsize=(None, None))
    for key, (default, allowed) in checks.items():
        value = _numbers(path, where.get(key), key, raw[key], 1, int) if key in raw else default and int(default)
        if allowed is not None and value not in allowed or value is not None and allowed is None and value < 1:
            raise ValueError(f"{path}:{where[key]}: {key} {value} is not read; lrpnb reads "
                             f"{' or '.join(map(str, allowed)) if allowed else 'a positive number'}")
        config[key] = value


def _escapes(relative):
    """Whether a path is absolute or climbs out of its base with '..'."""
    return os.path.isabs(relative) or os.path.normpath(relative).split(os.sep)[0] == os.pardir


def _outside(path, folder):
    """The real path of ``path`` where it resolves outside the real path of
    ``folder`` (a symbolic link on the way leads out), else None. Parts
    that do not exist yet are taken as written: they are no links."""
    real, base = os.path.realpath(path), os.path.realpath(folder)
    return None if os.path.commonpath([real, base]) == base else real


def read_filelist(path, prefix):
    """[(image path, target, line number)] of a file list; bad lines are
    returned as (None, message, line number). Entries are paths below
    PATHPREFIX (the current folder without one): an absolute path, or one
    that climbs out with '..', is a bad line."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"file list not found: {path}")
    check_regular(path, "the file list")
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


def _check_entry(job, image_path):
    """Refuse an image that resolves outside PATHPREFIX (a symbolic link
    leads out of it) or is not a regular file, before it is opened."""
    real = _outside(image_path, job.prefix)
    if real is not None:
        raise ValueError(f"{image_path} leads to {real} through a symbolic link, outside the path prefix "
                         f"{os.path.realpath(job.prefix)}; only files inside it are read")
    _regular_file(image_path)


def _refuse_outside(job, path):
    """Refuse a folder or file to write that resolves outside standalone_outpath."""
    real = _outside(path, job.outpath)
    if real is not None:
        raise ValueError(f"{job.config_path}: {path} leads to {real} through a symbolic link below "
                         f"standalone_outpath, outside {os.path.realpath(job.outpath)}; results are "
                         f"written only inside standalone_outpath")


def _output_folder(job, base):
    """Make the folder of ``base``, refusing one that resolves outside
    standalone_outpath: checked before it is made (making it would follow a
    link out) and again after (a link made meanwhile)."""
    folder = os.path.dirname(base)
    _refuse_outside(job, folder)
    os.makedirs(folder, exist_ok=True)
    _refuse_outside(job, folder)


def _check_outputs(job, paths):
    """Refuse outputs that resolve outside standalone_outpath or onto a
    file the run reads. Every output replaces its name atomically, so only
    an input at an output's real path could be written over: those are the
    inputs checked, which keeps the check of every image to its own files."""
    from .pipeline.options import check_outputs

    for path in paths:
        _refuse_outside(job, path)
    reached = [job.inputs[real] for real in map(os.path.realpath, paths) if real in job.inputs]
    try:
        check_outputs([], reached, True, also=paths)
    except ValueError as error:
        raise ValueError(f"{job.config_path}: standalone_outpath {job.outpath}: {error}") from None


def _lock(job):
    """Make standalone_outpath and take its lock (a WriterLock). The lock
    file is written in place, not replaced: it must be no input, no link
    and no hard link of another file."""
    import stat

    from .pipeline.options import check_outputs
    from .writers import WriterLock

    real = _outside(job.outpath, job.folder)
    if real is None:
        os.makedirs(job.outpath, exist_ok=True)
        real = _outside(job.outpath, job.folder)  # a link made meanwhile
    if real is not None:
        raise ValueError(f"{job.config_path}: standalone_outpath {job.outpath} leads to {real} through a "
                         f"symbolic link, outside the config file's folder; results are written only inside it")
    target = os.path.join(job.outpath, LOCK_NAME)
    if os.path.lexists(target + ".lock"):
        status = os.lstat(target + ".lock")
        if not stat.S_ISREG(status.st_mode) or status.st_nlink != 1:
            raise ValueError(f"{job.config_path}: {target}.lock, the lock file of standalone_outpath, is a "
                             f"link or not a file; remove it")
    try:
        check_outputs([], list(job.inputs.values()), True, also=[target + ".lock"])
        return WriterLock(target)
    except ValueError as error:
        raise ValueError(f"{job.config_path}: standalone_outpath {job.outpath}: {error}") from None


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
    ValueError
        Before any image is explained, where the config file or the model
        is wrong, standalone_outpath leads out of the config file's folder,
        or another run holds its lock.
    lrpnb.failure.Failure
        After the others are done, where entries failed (each is reported
        on stderr with its line): an entry that leads out of PATHPREFIX,
        or whose results would lead out of standalone_outpath or onto a
        file the run reads.
    """
    import types

    from .composites import formula_type
    from .inputs import sample_shape
    from .model_io import load, model_path

    config = read_config(config_path)
    caffe = config["param_file"] is not None
    net = load(config["param_file"], weights=config["model_file"]) if caffe else load(config["model_file"])
    composite = formula_type(config["relpropformulatype"], epsstab=config["epsstab"],
                             alphabeta_beta=config["alphabeta_beta"],
                             layer_index=config["auxiliaryvariable_maxlayerindexforflatdistinconv"])
    composite.rules(net.layers)  # check the layer index against this network now
    shape = sample_shape(net, config["input_size"])
    if shape is None or len(shape) != 3:
        raise ValueError(f"{config['model_file']}: the toolbox mode explains images, and this model "
                         f"does not take images (set input_size?)")
    classes = net.output_shapes((1,) + tuple(shape))[-1][-1]
    if config["numclasses"] not in (None, classes):
        raise ValueError(f"{config_path}: numclasses {config['numclasses']}, but the model has {classes} classes")
    entries = read_filelist(filelist, pathprefix)
    read = [config_path, filelist, model_path(config["model_file"])]
    read += [config[key] for key in ("param_file", "mean_file") if config[key] is not None]
    read += [image for image, _, _ in entries if image is not None]
    job = types.SimpleNamespace(
        net=net, composite=composite, config=config, shape=shape, config_path=config_path, caffe=caffe,
        mean=_mean(config) if caffe else None, classes=classes, prefix=pathprefix or os.curdir,
        outpath=config["standalone_outpath"], folder=os.path.dirname(os.path.abspath(config_path)),
        inputs={os.path.realpath(path): path for path in read}, bases={})
    lock = _lock(job)
    try:
        failures, done = _explain_entries(job, filelist, entries)
    finally:
        lock.release()
    print(f"explained {done} of {len(entries)} images with formula type "
          f"{config['relpropformulatype']}; results in {config['standalone_outpath']}")
    if failures:
        raise Failure(f"{failures} of {len(entries)} entries failed (see above)")
    return done


def _explain_entries(job, filelist, entries):
    """Explain the entries of the list in turn, reporting each that fails;
    (failures, images explained)."""
    failures, done = 0, 0
    for image_path, target, lineno in entries:
        if image_path is None:
            failures += 1
            print(f"lrpnb toolbox: {target}", file=sys.stderr)
            continue
        try:
            _explain_entry(job, image_path, target)
            done += 1
        except (ValueError, OSError) as error:
            failures += 1
            print(f"lrpnb toolbox: {filelist}:{lineno}: {error}", file=sys.stderr)
    return failures, done


def _mean(config):
    """The mean image (BGR) of a Caffe config, or None."""
    from .caffe_import.images import mean_image

    if config["mean_file"] is None:
        return None
    return mean_image(config["mean_file"], "bgr" if config["use_mean_file_asbinaryprotoblob"] == 1 else "rgb")


def _explain_entry(job, image_path, number):
    """Explain one image of the list and write its files; ``job.bases``
    maps the output paths taken so far to their images."""
    from . import render
    from .caffe_import.images import toolbox_image
    from .sources import load_image
    from .targets import Target

    config, shape, classes = job.config, job.shape, job.classes
    _check_entry(job, image_path)
    if job.caffe:
        X, shown = toolbox_image(image_path, shape, config["baseimgsize"], job.mean)
        X, shown, shown_range = X[None], shown[None], (0.0, 255.0)
    else:
        X = shown = load_image(image_path, shape[:2], shape[2], config["input_range"])[None]
        shown_range = config["input_range"]
    base = _out_base(image_path, config, job.prefix)
    real = os.path.realpath(image_path)
    if job.bases.setdefault(base, real) != real:  # img.png and img.jpg side by side
        base += "_" + os.path.splitext(image_path)[1].lstrip(".").lower()
        job.bases.setdefault(base, real)
    _output_folder(job, base)
    target = Target.from_toolbox(number, classes)
    relevance, scores = job.net.explain(X, target=target, composite=job.composite, return_scores=True)
    if target.several:  # a map per class, named by it
        maps = relevance[0]
        names = [f"{base}_class{k}" for k in target.classes(scores)[0]]
    else:
        maps, names = relevance, [base]
    _check_outputs(job, [name + suffix for name in names for suffix in ("_rawhm.txt", "_heatmap.png")]
                   + [base + "_as_inputted_into_the_dnn.png", base + "_toptenscores.txt"])
    for name, relevance_map in zip(names, maps):
        write_rawhm(relevance_map, name + "_rawhm.txt")
        render.save_image(render.heatmap(relevance_map[None], cmap=config["colormap"])[0],
                          name + "_heatmap.png", border=0)
    render.save_image(render.image(shown, input_range=shown_range)[0],
                      base + "_as_inputted_into_the_dnn.png", border=0)
    order = Target("top", min(10, classes)).classes(scores)[0]
    _write_text(base + "_toptenscores.txt", "".join(f"{k} {scores[0, k]:.9g}\n" for k in order))
