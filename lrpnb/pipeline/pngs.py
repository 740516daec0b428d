"""The PNG of each sample that ``explain_dataset(png=FOLDER)`` writes: the
input beside its heatmaps, captioned with the prediction and the classes
explained."""
import os

import numpy as np

__all__ = ["png_names", "check_pngs", "captions", "class_names", "write_pngs"]


def png_names(source, count):
    """The PNG file name of every sample: the input's name with .png for
    images (with the input's extension kept where two inputs share a
    name, e.g. three_jpg.png beside three_png.png), else its row number."""
    if source.names is None:
        return [f"{index:06d}.png" for index in range(count)]
    stems = [os.path.splitext(name) for name in source.names]
    seen = {}
    for stem, _ in stems:
        seen[stem] = seen.get(stem, 0) + 1
    names = [f"{stem}.png" if seen[stem] == 1 else f"{stem}_{ext.lstrip('.').lower()}.png"
             for stem, ext in stems]
    if len(set(names)) < len(names):  # same stem and extension in two folders of a list
        names = [f"{index:06d}_{name}" for index, name in enumerate(names)]
    return names


def check_pngs(folder, source, overwrite):
    """The PNG paths of every sample, refused before any work where the
    folder holds input images (whatever ``overwrite`` says: a heatmap could
    replace one, and the next run would read the heatmaps as inputs) or a
    file exists (unless ``overwrite``)."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--png folder does not exist: {folder}")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"--png folder is not writable: {folder}")
    paths = [os.path.join(folder, name) for name in png_names(source, len(source))]
    inputs = {os.path.realpath(path) for path in getattr(source, "paths", ())}
    if os.path.realpath(folder) in {os.path.dirname(path) for path in inputs}:
        # even new files there would be read as inputs by the next run
        raise ValueError(f"--png {folder} is the folder of the input images; write the heatmaps into "
                         f"another folder")
    existing = [path for path in paths if os.path.exists(path)]
    if existing and not overwrite:
        raise ValueError(f"--png {folder}: {os.path.basename(existing[0])}"
                         f"{f' and {len(existing) - 1} more' if len(existing) > 1 else ''} exist; "
                         f"remove them or pass --overwrite")
    return paths


def captions(scores, classes, names=None):
    """Captions of a labelled picture: the prediction and its softmax
    confidence over the input, the class explained over each map; classes
    by their ``names`` where given (else by number)."""
    from ..kernels.activations import softmax_forward

    def called(k):
        return f"{k}" if names is None or not names[k] else names[k]

    confidence = softmax_forward(np.asarray(scores, dtype=np.float64))
    predicted = np.argmax(scores, axis=1)
    return [[f"predicted {called(p)} ({c[p]:.0%})"] + [f"for {'class ' * (names is None)}{called(t)}" for t in row]
            for p, c, row in zip(predicted, confidence, classes)]


def class_names(names, classes):
    """The name of each of the model's ``classes`` classes: ``names`` (a
    sequence), or read from a UTF-8 text file, one name per line (a blank
    line leaves its class to its number). None gives None."""
    import os

    from ..data_io import check_regular

    if names is None:
        return None
    where = "--class-names"
    if isinstance(names, (str, os.PathLike)):
        where = os.fspath(names)
        check_regular(where, "the class names file")
        if os.path.getsize(where) > 1 << 24:
            raise ValueError(f"{where}: {os.path.getsize(where):,} bytes is too large for a list of class names")
        try:
            with open(where, encoding="utf-8") as handle:
                names = handle.read().splitlines()
        except UnicodeDecodeError as error:
            raise ValueError(f"{where}: class names must be UTF-8 text ({error})") from None
        while names and not names[-1].strip():
            names.pop()  # a final newline or blank lines at the end name no class
    names = [str(name).strip() for name in names]
    if classes is not None and len(names) != classes:
        raise ValueError(f"{where}: {len(names)} class names for a model of {classes} classes (one name per "
                         f"line, in the order of the model's outputs)")
    return names


def write_pngs(paths, kept, X, relevance, input_range, cmap, scores, classes, names=None):
    """Write the picture of each sample ``kept`` (indices into ``paths``)."""
    from .. import render

    for row, (index, texts) in enumerate(zip(kept, captions(scores, classes, names))):
        picture = render.labelled(X[row], relevance[row], texts, cmap=cmap, input_range=input_range)
        render.save_image(picture, paths[index], border=0)
