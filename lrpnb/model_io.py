"""Reading and writing the LRP Toolbox's model files.

Formats (specified in formats/README.md):

- ``.txt``: the plain-text format of the toolbox's Python and Matlab ports;
  read and written.
- ``.nn`` / ``.pickle`` / ``.pkl``: the toolbox's pickled ``Sequential``; read
  with a restricted unpickler that admits only the toolbox's module classes
  and numpy arrays, and written so that the toolbox can read it.
- ``.mat``: the Matlab port's saved ``modules.Sequential`` object (MCOS),
  decoded with the mat-io package; read only.
- ``.onnx``: models exported from PyTorch and other frameworks, read into a
  graph network by ``lrpnb.onnx_import`` (needs the onnx package); read only.

The toolbox's formats have a module each: :mod:`lrpnb.model_text`,
:mod:`lrpnb.model_pickle` and :mod:`lrpnb.model_matlab`; this module
tells the format of a file and dispatches to them.

Every reader builds the whole network before returning it: a malformed file
raises ValueError (naming the line, for text) and nothing half-loaded escapes.
"""
import os

from ._atomic import atomic_path
from .data_io import check_regular
from .model_matlab import read_mat
# PICKLE_DEPTH and PICKLE_VALUES_PER_BYTE stay importable from here
from .model_pickle import PICKLE_DEPTH, PICKLE_VALUES_PER_BYTE, read_pickle, write_pickle  # noqa: F401
from .model_text import read_txt, write_txt
from .network import Network

__all__ = ["load", "save", "model_path", "FORMATS", "EMBEDDED"]

#: models that ship with lrpnb, by the name load() and --model accept
EMBEDDED = {"lenet5_synthetic": "lenet5_synthetic.txt"}

#: file extension -> format name
FORMATS = {".txt": "txt", ".nn": "pickle", ".pickle": "pickle", ".pkl": "pickle", ".mat": "mat", ".onnx": "onnx"}
_FORMAT_NAMES = {"txt": "txt", "nn": "pickle", "pickle": "pickle", "pkl": "pickle", "mat": "mat", "onnx": "onnx"}


def _format_of(path, fmt):
    if fmt is not None:
        key = str(fmt).lower().lstrip(".")
        if key not in _FORMAT_NAMES:
            raise ValueError(f"unknown model format {fmt!r}; known: {sorted(_FORMAT_NAMES)}")
        return _FORMAT_NAMES[key]
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in FORMATS:
        raise ValueError(f"cannot tell the model format of {os.fspath(path)!r} from its extension; "
                         f"name the file with one of {', '.join(sorted(FORMATS))} (from Python: "
                         f"or pass fmt=)")
    return FORMATS[ext]


def model_path(path):
    """The file of a model: ``path`` itself, or the file of an embedded model
    named in EMBEDDED ('lenet5_synthetic', with or without .txt) where no
    file of that name exists."""
    path = os.fspath(path)
    name = path[:-4] if path.endswith(".txt") else path
    if not os.path.exists(path) and name in EMBEDDED:
        from importlib import resources

        return str(resources.files("lrpnb") / "data" / EMBEDDED[name])
    return path


def load(path, fmt=None, device="cpu"):
    """Read a model file into a :class:`~lrpnb.Network`.

    Parameters
    ----------
    path : str or path-like
        A model file, or the name of a model that ships with lrpnb
        ('lenet5_synthetic', see EMBEDDED).
    fmt : {'txt', 'nn', 'pickle', 'mat', 'onnx'}, optional
        Defaults to the file's extension.
    device : {'cpu', 'cuda', 'auto'}
        Where the network runs (see :meth:`Network.to`).
    """
    path = model_path(path)
    kind = _format_of(path, fmt)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file not found: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"model path is a folder, not a file: {path}")
    check_regular(path, "the model file")
    net = {"txt": read_txt, "pickle": read_pickle, "mat": read_mat, "onnx": _read_onnx}[kind](path)
    return net.to(device) if device != "cpu" else net


def _read_onnx(path):
    from .onnx_import import read_onnx

    return read_onnx(path)


def save(net, path, fmt=None):
    """Write ``net`` to ``path`` ('txt' or 'nn'/'pickle'), atomically."""
    kind = _format_of(path, fmt)
    if kind == "onnx":
        raise ValueError("writing .onnx models is not supported; lrpnb reads them")
    if kind == "mat":
        raise ValueError("writing .mat models is not supported; write .txt, which the toolbox's "
                         "Matlab port reads")
    if not isinstance(net, Network):
        raise TypeError(f"save() needs an lrpnb Network, got {type(net).__name__}")
    if not net.is_sequential or not all(layer.toolbox for layer in net.layers):
        other = next((layer.describe() for layer in net.layers if not layer.toolbox), "a graph of nodes")
        raise ValueError(f"the toolbox's model formats hold chains of Linear, Convolution (no padding, "
                         f"dilation or groups), SumPool, MaxPool (no padding), Rect, Tanh, SoftMax and "
                         f"Flatten only; this network has {other}. Keep it in the file it came from "
                         f"(an ONNX model loads again with lrpnb.load)")
    with atomic_path(path) as tmp:
        if kind == "txt":
            write_txt(net, tmp)
        else:
            write_pickle(net, tmp)

