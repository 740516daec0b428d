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
- ``.prototxt`` with ``weights=`` a ``.caffemodel``: Caffe models, read
  into a graph network by ``lrpnb.caffe_import`` (needs the protobuf
  package); read only.
- ``.lrpnb``: lrpnb's own format for any network of its layers (graphs
  included): JSON and ``.npy`` arrays in a ZIP archive, never pickled;
  read and written by :mod:`lrpnb.model_graph`.

Other frameworks' files (``.pt``, ``.pth``, ``.ckpt``, ``.safetensors``,
``.keras``, ``.h5``, ``.pb``, ...; a PyTorch file named ``.pkl``) are refused
with how to export the model to ONNX.

The toolbox's formats have a module each: :mod:`lrpnb.model_text`,
:mod:`lrpnb.model_pickle` and :mod:`lrpnb.model_matlab`; this module
tells the format of a file and dispatches to them.

Every reader builds the whole network before returning it: a malformed file
raises ValueError (naming the line, for text) and nothing half-loaded escapes.
"""
import os

from ._atomic import atomic_path
from .data_io import check_regular
from .model_graph import read_graph, write_graph
from .model_matlab import read_mat
# PICKLE_DEPTH and PICKLE_VALUES_PER_BYTE stay importable from here
from .model_pickle import PICKLE_DEPTH, PICKLE_VALUES_PER_BYTE, read_pickle, write_pickle  # noqa: F401
from .model_text import read_txt, write_txt
from .network import Network

__all__ = ["load", "save", "model_path", "FORMATS", "EMBEDDED"]

#: models that ship with lrpnb, by the name load() and --model accept
EMBEDDED = {"lenet5_synthetic": "lenet5_synthetic.txt"}

#: file extension -> format name
FORMATS = {".txt": "txt", ".nn": "pickle", ".pickle": "pickle", ".pkl": "pickle", ".mat": "mat", ".onnx": "onnx",
           ".lrpnb": "lrpnb", ".prototxt": "caffe"}
_FORMAT_NAMES = {"txt": "txt", "nn": "pickle", "pickle": "pickle", "pkl": "pickle", "mat": "mat", "onnx": "onnx",
                 "lrpnb": "lrpnb", "caffe": "caffe", "prototxt": "caffe"}

_TORCH_EXPORT = 'torch.onnx.export(model.eval(), example_input, "model.onnx", dynamo=False)'
_KERAS_EXPORT = ('tf2onnx.convert.from_keras(keras.models.load_model(PATH), output_path="model.onnx") '
                 '(pip install tf2onnx)')
#: other frameworks' model extensions -> (framework, how to export such a model to ONNX)
FOREIGN = {
    ".pt": ("PyTorch", _TORCH_EXPORT), ".pth": ("PyTorch", _TORCH_EXPORT),
    ".ckpt": ("a PyTorch (Lightning) or TensorFlow checkpoint", f"for PyTorch, build the model, load the "
              f"checkpoint into it and run {_TORCH_EXPORT}; for TensorFlow, python -m tf2onnx.convert "
              f"--checkpoint PATH --inputs ... --outputs ... --output model.onnx"),
    ".safetensors": ("safetensors (weights without the architecture)", f"build the model in its framework, "
                     f"load the weights into it (PyTorch: model.load_state_dict(safetensors.torch.load_file"
                     f"(PATH))) and run {_TORCH_EXPORT}"),
    ".keras": ("Keras", _KERAS_EXPORT), ".h5": ("Keras", _KERAS_EXPORT), ".hdf5": ("Keras", _KERAS_EXPORT),
    ".pb": ("TensorFlow", "python -m tf2onnx.convert --saved-model FOLDER_OF_saved_model.pb --output "
            "model.onnx (a frozen graph: --graphdef PATH --inputs ... --outputs ...)"),
    ".tflite": ("TensorFlow Lite", "python -m tf2onnx.convert --tflite PATH --output model.onnx"),
}


def _export_advice(path, framework, recipe):
    return (f"{path}: a {framework} model, which lrpnb does not read; export it to ONNX first, e.g. "
            f"{recipe.replace('PATH', repr(path))}, then load model.onnx (lrpnb.load(\"model.onnx\"), "
            f"--model model.onnx)")


def _format_of(path, fmt, writing=False):
    if os.fspath(path).lower().endswith(".caffemodel") and fmt is None and not writing:
        raise ValueError(f"{os.fspath(path)}: a .caffemodel holds a Caffe model's weights; load its network "
                         f"definition with them: lrpnb.load(\"deploy.prototxt\", weights={os.fspath(path)!r}) "
                         f"(command line: --model deploy.prototxt --weights {os.fspath(path)})")
    if fmt is not None:
        key = str(fmt).lower().lstrip(".")
        if key not in _FORMAT_NAMES:
            raise ValueError(f"unknown model format {fmt!r}; known: {sorted(_FORMAT_NAMES)}")
        return _FORMAT_NAMES[key]
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext in FOREIGN and not writing:
        raise ValueError(_export_advice(os.fspath(path), *FOREIGN[ext]))
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


def load(path, fmt=None, device="cpu", weights=None):
    """Read a model file into a :class:`~lrpnb.Network`.

    Parameters
    ----------
    path : str or path-like
        A model file, or the name of a model that ships with lrpnb
        ('lenet5_synthetic', see EMBEDDED).
    fmt : {'txt', 'nn', 'pickle', 'mat', 'onnx', 'lrpnb', 'caffe'}, optional
        Defaults to the file's extension. Another framework's extension
        (.pt, .pth, .ckpt, .safetensors, .keras, .h5, .pb, ...: see
        FOREIGN) is a ValueError that says how to export the model to ONNX.
    device : {'cpu', 'cuda', 'auto'}
        Where the network runs (see :meth:`Network.to`).
    weights : str or path-like, optional
        A Caffe model's weights (``.caffemodel``) for its network
        definition ``path`` (``.prototxt``); only for Caffe models.
    """
    path = model_path(path)
    kind = _format_of(path, fmt)
    if weights is not None and kind != "caffe":
        raise ValueError(f"{os.fspath(path)}: weights= ({os.fspath(weights)}) go with a Caffe network definition "
                         f"(.prototxt); a {kind} model holds its own")
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file not found: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"model path is a folder, not a file: {path}")
    check_regular(path, "the model file")
    if weights is not None:
        weights = os.fspath(weights)
        if not os.path.exists(weights):
            raise FileNotFoundError(f"weights file not found: {weights}")
        check_regular(weights, "the weights file")
    readers = {"txt": read_txt, "pickle": _read_toolbox_pickle, "mat": read_mat, "onnx": _read_onnx,
               "lrpnb": read_graph, "caffe": lambda name: _read_caffe(name, weights)}
    net = readers[kind](path)
    return net.to(device) if device != "cpu" else net


def _read_toolbox_pickle(path):
    """read_pickle, whose refusal of a PyTorch file (torch.save's ZIP
    archive, or a legacy pickle of torch classes) says how to export it."""
    try:
        return read_pickle(path)
    except ValueError:
        with open(path, "rb") as handle:
            head = handle.read(1 << 20)
        if head.startswith(b"PK\x03\x04") or b"torch" in head:
            raise ValueError(_export_advice(path, "PyTorch (torch.save)", _TORCH_EXPORT)) from None
        raise


def _read_onnx(path):
    from .onnx_import import read_onnx

    return read_onnx(path)


def _read_caffe(path, weights):
    from .caffe_import import read_caffe

    return read_caffe(path, weights)


def save(net, path, fmt=None):
    """Write ``net`` to ``path``, atomically.

    Parameters
    ----------
    net : Network
    path : str or path-like
    fmt : {'lrpnb', 'txt', 'nn', 'pickle'}, optional
        Defaults to the file's extension. 'lrpnb' (``.lrpnb``) holds any
        network of lrpnb's layers, graphs included; the toolbox's 'txt'
        and 'nn'/'pickle' hold its chains of layers only.
    """
    kind = _format_of(path, fmt, writing=True)
    if kind == "onnx":
        raise ValueError("writing .onnx models is not supported; lrpnb reads them (save lrpnb's own "
                         ".lrpnb format to keep a network that came from one)")
    if kind == "caffe":
        raise ValueError("writing Caffe models is not supported; lrpnb reads them (save lrpnb's own .lrpnb "
                         "format to keep a network that came from one)")
    if kind == "mat":
        raise ValueError("writing .mat models is not supported; write .txt, which the toolbox's "
                         "Matlab port reads")
    if not isinstance(net, Network):
        raise TypeError(f"save() needs an lrpnb Network, got {type(net).__name__}")
    if kind != "lrpnb" and (not net.is_sequential or not all(layer.toolbox for layer in net.layers)):
        other = next((layer.describe() for layer in net.layers if not layer.toolbox), "a graph of nodes")
        raise ValueError(f"the toolbox's model formats hold chains of Linear, Convolution (no padding, "
                         f"dilation or groups), SumPool, MaxPool (no padding), Rect, Tanh, SoftMax and "
                         f"Flatten only; this network has {other}. Save it in lrpnb's own format, which "
                         f"holds any network of lrpnb's layers: lrpnb.save(net, \"model.lrpnb\")")
    with atomic_path(path) as tmp:
        {"txt": write_txt, "pickle": write_pickle, "lrpnb": write_graph}[kind](net, tmp)
