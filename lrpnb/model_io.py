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

Every reader builds the whole network before returning it: a malformed file
raises ValueError (naming the line, for text) and nothing half-loaded escapes.
"""
import io
import os
import pickle
import re
import warnings

import numpy as np

from ._atomic import atomic_path
from .network import (Convolution, Flatten, Linear, MaxPool, Network, Rect, SoftMax, SumPool,
                      Tanh)

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
    net = {"txt": _read_txt, "pickle": _read_pickle, "mat": _read_mat, "onnx": _read_onnx}[kind](path)
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
            _write_txt(net, tmp)
        else:
            _write_pickle(net, tmp)


# ====================================================================== text
# numpy >= 2 prints scalars as np.float64(0.5); the toolbox's writer used repr().
# One greedy class between the parentheses and no \s* around it: the match
# takes linear time (spaces are stripped afterwards), where lazy and greedy
# runs of spaces side by side backtracked cubically on "np.float64(   ...x"
_NUMPY_SCALAR = re.compile(r"(?:np|numpy)\.float(?:16|32|64|128)?\(([^()]*)\)")


class _Lines:
    """The non-empty lines of a text model, with their 1-based line numbers."""

    def __init__(self, path, text):
        self.path = path
        self.lines = [(k + 1, line.strip()) for k, line in enumerate(text.splitlines()) if line.strip()]
        self.pos = 0

    def error(self, lineno, message):
        return ValueError(f"{self.path}, line {lineno}: {message}")

    def next(self, what):
        if self.pos >= len(self.lines):
            last = self.lines[-1][0] if self.lines else 0
            raise ValueError(f"{self.path}, line {last + 1}: file ends where {what} was expected")
        self.pos += 1
        return self.lines[self.pos - 1]

    def numbers(self, what):
        lineno, line = self.next(what)
        tokens = _NUMPY_SCALAR.sub(lambda match: f" {match.group(1).strip()} ", line).split()
        values = np.empty(len(tokens))
        for k, token in enumerate(tokens):
            try:
                values[k] = float(token)
            except ValueError:
                raise self.error(lineno, f"{what}: {token!r} is not a number") from None
        if not np.isfinite(values).all():
            raise self.error(lineno, f"{what} contains NaN or infinite values")
        return lineno, values


def _sizes(lines, lineno, tokens, names):
    if len(tokens) - 1 != len(names):
        raise lines.error(lineno, f"{tokens[0]} needs {len(names)} sizes ({' '.join(names)}), "
                                  f"got {len(tokens) - 1}")
    values = []
    for name, token in zip(names, tokens[1:]):
        try:
            value = int(token)
        except ValueError:
            raise lines.error(lineno, f"{tokens[0]}: {name} must be an integer, got {token!r}") from None
        if value < 1:
            raise lines.error(lineno, f"{tokens[0]}: {name} must be positive, got {value}")
        values.append(value)
    return values


def _expect_count(lines, lineno, values, count, what):
    if values.size != count:
        raise lines.error(lineno, f"{what}: expected {count} numbers, got {values.size}")


def _read_txt(path):
    with open(path, encoding="utf-8", errors="strict") as handle:
        try:
            text = handle.read()
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: not a text model file ({error})") from None
    lines = _Lines(path, text)
    if not lines.lines:
        raise ValueError(f"{path}: the model file is empty")
    layers = []
    while lines.pos < len(lines.lines):
        lineno, header = lines.next("a layer")
        tokens = header.split()
        name = tokens[0]
        if name == "Linear":
            m, n = _sizes(lines, lineno, tokens, ["m", "n"])
            wline, values = lines.numbers("Linear weights")
            if values.size == n and m > 1:
                # legacy variant: one line per row of W
                rows = [values]
                for _ in range(m - 1):
                    rline, row = lines.numbers("Linear weight row")
                    _expect_count(lines, rline, row, n, "Linear weight row")
                    rows.append(row)
                W = np.stack(rows)
            else:
                _expect_count(lines, wline, values, m * n, f"Linear {m} {n} weights")
                W = values.reshape(m, n)
            bline, B = lines.numbers("Linear bias")
            _expect_count(lines, bline, B, n, "Linear bias")
            layers.append(Linear(W, B))
        elif name == "Convolution":
            h, w, d, n, s0, s1 = _sizes(lines, lineno, tokens, ["h", "w", "d", "n", "s0", "s1"])
            wline, W = lines.numbers("Convolution weights")
            _expect_count(lines, wline, W, h * w * d * n, f"Convolution {h}x{w}x{d}x{n} weights")
            bline, B = lines.numbers("Convolution bias")
            _expect_count(lines, bline, B, n, "Convolution bias")
            layers.append(Convolution(W.reshape(h, w, d, n), B, stride=(s0, s1)))
        elif name in ("SumPool", "MaxPool"):
            h, w, s0, s1 = _sizes(lines, lineno, tokens, ["h", "w", "s0", "s1"])
            layers.append((SumPool if name == "SumPool" else MaxPool)((h, w), (s0, s1)))
        elif name in _PLAIN:
            if len(tokens) > 1:
                raise lines.error(lineno, f"{name} takes no sizes, got {' '.join(tokens[1:])!r}")
            layers.append(_PLAIN[name]())
        else:
            raise lines.error(lineno, f"unknown layer {name!r}; known layers: Linear, Convolution, "
                                      f"SumPool, MaxPool, {', '.join(_PLAIN)}")
    return Network(layers)


_PLAIN = {"Rect": Rect, "Tanh": Tanh, "SoftMax": SoftMax, "Flatten": Flatten}


def _number_line(values):
    # repr of a Python float is the shortest string that reads back exactly
    return " ".join(repr(v) for v in np.ravel(values).tolist()) + "\n"


def _write_txt(net, path):
    with open(path, "w", encoding="utf-8") as handle:
        for layer in net.layers:
            handle.write(layer.describe() + "\n")
            if isinstance(layer, (Linear, Convolution)):
                handle.write(_number_line(layer.W))
                handle.write(_number_line(layer.B))


# ====================================================================== pickle
_TOOLBOX_CLASSES = {
    "Sequential": "modules.sequential", "Linear": "modules.linear",
    "Convolution": "modules.convolution", "SumPool": "modules.sumpool",
    "MaxPool": "modules.maxpool", "Rect": "modules.rect", "Tanh": "modules.tanh",
    "SoftMax": "modules.softmax", "Flatten": "modules.flatten", "Module": "modules.module",
}


class _ToolboxObject:
    """Inert stand-in for one of the toolbox's module classes: holds its attributes."""

    toolbox_class = None

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"{self.toolbox_class}: unexpected state {type(state).__name__}")
        self.__dict__.update(state)


_STAND_INS = {name: type(name, (_ToolboxObject,), {"toolbox_class": name, "__module__": module})
              for name, module in _TOOLBOX_CLASSES.items()}


class _SafeDtype:
    """numpy.dtype as a pickle calls it, never handed the pickle's state: only
    plain numeric dtypes (their descriptor string), and a BUILD state that
    says what the real dtype says. A forged state (flags that claim object
    references, fields, a subarray) made numpy print "Internal error" or
    raise SystemError, and could have made it read floats as pointers."""

    def __init__(self, spec, align=False, copy=False):
        if isinstance(spec, bytes):
            spec = spec.decode("latin1")
        if not isinstance(spec, str):
            raise pickle.UnpicklingError("a dtype must be given by its descriptor string")
        try:
            self.dtype = np.dtype(spec)
        except TypeError:
            raise pickle.UnpicklingError(f"unknown dtype {spec!r}") from None
        if self.dtype.kind not in "biuf" or self.dtype.fields is not None or self.dtype.subdtype is not None:
            raise pickle.UnpicklingError(f"only numeric dtypes are admitted, got {spec!r}")

    def __setstate__(self, state):
        # (version, byte order, subarray, names, fields, item size, alignment, flags)
        if not isinstance(state, tuple) or len(state) != 8 or state[0] not in (3, 4):
            raise pickle.UnpicklingError("unexpected dtype state")
        _, order, subarray, names, fields, size, alignment, flags = state
        if isinstance(order, bytes):
            order = order.decode("latin1")
        if order not in ("<", ">", "|", "=") or subarray is not None or names is not None \
                or fields is not None or size not in (-1, self.dtype.itemsize) \
                or alignment not in (-1, self.dtype.alignment) or flags != self.dtype.flags:
            raise pickle.UnpicklingError(f"a forged dtype state {state!r}")
        if order in "<>" and self.dtype.itemsize > 1:
            self.dtype = self.dtype.newbyteorder(order)


def _real_dtype(dtype):
    if isinstance(dtype, _SafeDtype):
        return dtype.dtype
    raise pickle.UnpicklingError("an array's dtype must be a numpy dtype")


class _SafeArray:
    """numpy's array reconstruction (ndarray._reconstruct, then BUILD), made
    into a copied array only when its bytes match its shape and dtype."""

    array = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("unexpected array state")
        shape, dtype, fortran, raw = state[-4:]
        dtype = _real_dtype(dtype)
        if isinstance(raw, str):  # Python 2 pickles read with encoding='latin1'
            raw = raw.encode("latin1")
        self.array = _array_from_bytes(raw, dtype, shape, "F" if fortran else "C")


def _array_from_bytes(buffer, dtype, shape, order):
    if isinstance(buffer, pickle.PickleBuffer):
        buffer = buffer.raw()
    if not isinstance(buffer, (bytes, bytearray, memoryview)):
        raise pickle.UnpicklingError("an array's data must be bytes")
    if not isinstance(shape, tuple) or len(shape) > 32 or \
            not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise pickle.UnpicklingError(f"an array's shape must be a tuple of sizes, got {shape!r}"[:200])
    if order not in ("C", "F"):
        raise pickle.UnpicklingError(f"an array's order must be 'C' or 'F', got {order!r}"[:200])
    count = 1
    for n in shape:
        count *= n
    length = len(memoryview(buffer).cast("B"))
    if count * dtype.itemsize != length:
        raise pickle.UnpicklingError(f"an array of shape {shape} and dtype {dtype} needs "
                                     f"{count * dtype.itemsize} bytes, the pickle holds {length}")
    return np.frombuffer(buffer, dtype=dtype, count=count).reshape(shape, order=order).copy(order="K")


def _safe_reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError("only plain numpy arrays may be reconstructed")
    return _SafeArray()


def _safe_frombuffer(buffer, dtype, shape, order):
    """numpy's protocol-5 array reconstruction (numpy._core.numeric._frombuffer,
    as pickle.HIGHEST_PROTOCOL writes arrays under Python 3): only numeric
    dtypes, a shape of non-negative ints whose size matches the bytes
    exactly, C or Fortran order; the array is a copy (never a view of the
    pickle's buffer)."""
    return _array_from_bytes(buffer, _real_dtype(dtype), shape, order)


def _safe_scalar(dtype, data=None):
    dtype = _real_dtype(dtype)
    if isinstance(data, str):
        data = data.encode("latin1")
    if data is not None and (not isinstance(data, bytes) or len(data) != dtype.itemsize):
        raise pickle.UnpicklingError("a numpy scalar needs exactly its item's bytes")
    return np.frombuffer(data, dtype=dtype, count=1)[0] if data is not None else dtype.type()


def _safe_encode(text, encoding="utf-8"):
    # protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, 'latin1')
    if not isinstance(text, str) or str(encoding).lower().replace("-", "") != "latin1":
        raise pickle.UnpicklingError("only latin1 byte strings may be decoded")
    return text.encode("latin1")


def _safe_reconstructor(cls, base, state=None):
    # protocol 0/1 pickles of new-style classes (copyreg._reconstructor)
    if cls not in _STAND_INS.values() or base is not object or state is not None:
        raise pickle.UnpicklingError("refusing a reconstructor call on a non-toolbox class")
    return cls.__new__(cls)


def _safe_newobj(cls, *args):
    if cls not in _STAND_INS.values() or args:
        raise pickle.UnpicklingError("refusing to construct a non-toolbox class")
    return cls.__new__(cls)


_NUMPY_GLOBALS = {
    "_reconstruct": _safe_reconstruct, "ndarray": np.ndarray, "dtype": _SafeDtype,
    "scalar": _safe_scalar, "_frombuffer": _safe_frombuffer,
}
_ADMITTED_NUMPY_MODULES = {"numpy", "numpy.core.multiarray", "numpy._core.multiarray",
                           "numpy.core.numeric", "numpy._core.numeric"}


class _RefusedPickle(ValueError):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits only the toolbox's module classes (as inert stand-ins) and the
    few numpy callables that rebuild arrays; refuses every other global
    before anything is called."""

    def find_class(self, module, name):
        if module in ("modules." + name.lower(), name.lower()) and name in _STAND_INS:
            return _STAND_INS[name]
        if module in _ADMITTED_NUMPY_MODULES and name in _NUMPY_GLOBALS:
            return _NUMPY_GLOBALS[name]
        if module in ("copy_reg", "copyreg") and name == "_reconstructor":
            return _safe_reconstructor
        if module in ("copy_reg", "copyreg") and name == "__newobj__":
            return _safe_newobj
        if module == "_codecs" and name == "encode":
            return _safe_encode
        if module in ("__builtin__", "builtins") and name == "object":
            return object
        raise _RefusedPickle(f"refusing to load {module}.{name}: a toolbox model pickle may only hold "
                             f"the toolbox's module classes and numpy arrays")


def _attr(obj, name, index):
    if name not in obj.__dict__:
        raise ValueError(f"module {index} ({obj.toolbox_class}) has no attribute {name!r}")
    return obj.__dict__[name]


def _layer_from_toolbox(obj, index):
    kind = getattr(obj, "toolbox_class", None)
    if kind == "Linear":
        layer = Linear(np.asarray(_attr(obj, "W", index)), np.asarray(_attr(obj, "B", index)))
    elif kind == "Convolution":
        layer = Convolution(np.asarray(_attr(obj, "W", index)), np.asarray(_attr(obj, "B", index)),
                            stride=tuple(_attr(obj, "stride", index)))
    elif kind in ("SumPool", "MaxPool"):
        cls = SumPool if kind == "SumPool" else MaxPool
        layer = cls(tuple(_attr(obj, "pool", index)), tuple(_attr(obj, "stride", index)))
    elif kind in _PLAIN:
        layer = _PLAIN[kind]()
    else:
        raise ValueError(f"module {index} is a {kind or type(obj).__name__}, not a layer lrpnb knows")
    rule = obj.__dict__.get("lrp_var")
    if rule is not None:
        # the toolbox gives every layer lrp_param = 1.0 and ignores it where
        # the rule takes none; lrpnb refuses such a parameter, so it is dropped
        from .rules import takes_parameter

        layer.set_lrp_parameters(rule, obj.__dict__.get("lrp_param") if takes_parameter(rule) else None)
    return layer


#: what a pickle may expand to, in values counted as a tree (a value reached
#: twice counts twice), per byte of the file: shared references let 400
#: bytes describe a structure of billions of values (a "reference bomb")
PICKLE_VALUES_PER_BYTE = 16
#: how deeply a pickle's values may nest (the toolbox's models: 4 levels)
PICKLE_DEPTH = 64


def _bounded(root, budget):
    """Walk what the unpickler built, as the tree the model code would walk,
    and refuse it when it has more than ``budget`` values, nests deeper than
    PICKLE_DEPTH or holds an integer beyond 64 bits; the walk stops there,
    so its cost is bounded by the budget."""
    stack, seen = [(root, 0)], 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > budget:
            raise ValueError(f"the pickle expands to more than {budget:,} values ({PICKLE_VALUES_PER_BYTE} per "
                             f"byte of the file): shared references that multiply, not a toolbox model")
        if depth > PICKLE_DEPTH:
            raise ValueError(f"the pickle nests values more than {PICKLE_DEPTH} levels deep")
        if isinstance(value, (list, tuple)):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, dict):
            stack.extend((item, depth + 1) for pair in value.items() for item in pair)
        elif isinstance(value, _ToolboxObject):
            stack.extend((item, depth + 1) for item in value.__dict__.values())
        elif isinstance(value, int) and not isinstance(value, bool) and not -2 ** 63 <= value < 2 ** 63:
            raise ValueError("the pickle holds an integer beyond 64 bits")
        elif isinstance(value, _SafeArray) and value.array is None:
            raise ValueError("the pickle holds an array without its data")


def _plain(value):
    """The unpickled values with the arrays' stand-ins replaced by the arrays
    (called after _bounded: the depth and size are known to be small)."""
    if isinstance(value, _SafeArray):
        return value.array
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_plain(item) for item in value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, _ToolboxObject):
        value.__dict__.update({key: _plain(item) for key, item in value.__dict__.items()})
    return value


def _read_pickle(path):
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        # latin1: Python 2 pickles store numpy's raw bytes as str
        root = _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
        _bounded(root, PICKLE_VALUES_PER_BYTE * len(data) + 4096)
        root = _plain(root)
    except _RefusedPickle as error:
        raise ValueError(f"{path}: {error}") from None
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    except Exception as error:  # any decoding failure of untrusted bytes
        raise ValueError(f"{path}: not a readable toolbox model pickle ({type(error).__name__}: "
                         f"{str(error)[:300]})") from None
    if getattr(root, "toolbox_class", None) != "Sequential" or not isinstance(root.__dict__.get("modules"), list):
        raise ValueError(f"{path}: the pickle does not hold a toolbox Sequential with a list of modules")
    try:
        return Network([_layer_from_toolbox(obj, k) for k, obj in enumerate(root.modules)])
    except (ValueError, TypeError, OverflowError) as error:
        raise ValueError(f"{path}: {str(error)[:300]}") from None


class _ToolboxPickler(pickle._Pickler):
    """Writes our stand-ins under the toolbox's class names, and numpy's
    array reconstructor under the name that numpy 1.x and 2.x both import."""

    def save_global(self, obj, name=None):
        if isinstance(obj, type) and issubclass(obj, _ToolboxObject):
            self.write(pickle.GLOBAL + f"{obj.__module__}\n{obj.toolbox_class}\n".encode("ascii"))
            self.memoize(obj)
            return
        module = getattr(obj, "__module__", "")
        if module == "numpy._core.multiarray":
            self.write(pickle.GLOBAL + f"numpy.core.multiarray\n{obj.__name__}\n".encode("ascii"))
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _toolbox_state(layer):
    state = {"lrp_var": layer.lrp_var, "lrp_param": layer.lrp_param}
    if isinstance(layer, Linear):
        state.update(W=layer.W, B=layer.B, m=layer.m, n=layer.n)
    elif isinstance(layer, Convolution):
        h, w, d, n = layer.W.shape
        state.update(W=layer.W, B=layer.B, fh=h, fw=w, fd=d, n=n, stride=layer.stride)
    elif isinstance(layer, (SumPool, MaxPool)):
        state.update(pool=layer.pool, stride=layer.stride)
    return state


def _write_pickle(net, path):
    modules = []
    for layer in net.layers:
        obj = _STAND_INS[type(layer).__name__].__new__(_STAND_INS[type(layer).__name__])
        obj.__dict__.update(_toolbox_state(layer))
        modules.append(obj)
    root = _STAND_INS["Sequential"].__new__(_STAND_INS["Sequential"])
    root.__dict__.update(modules=modules, lrp_var=None, lrp_param=None)
    with open(path, "wb") as handle:
        _ToolboxPickler(handle, protocol=2).dump(root)


# ====================================================================== Matlab
def _read_mat(path):
    # mat-io sets a pandas option at import that newer pandas deprecates
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import matio
        except ImportError:  # pragma: no cover - mat-io is a dependency
            raise ImportError("reading .mat models needs the mat-io package (pip install mat-io)") from None
        try:
            contents = matio.load_from_mat(path)
        except Exception as error:
            raise ValueError(f"{path}: not a readable MAT-file ({type(error).__name__}: {error})") from None
    models = [v for v in contents.values() if getattr(v, "classname", None) == "modules.Sequential"]
    if len(models) != 1:
        found = sorted(contents)
        raise ValueError(f"{path}: expected one modules.Sequential object, found "
                         f"{len(models)} among the variables {found}")
    modules = np.ravel(models[0].properties.get("modules", np.empty(0, dtype=object)))
    layers = []
    try:
        for index, module in enumerate(modules):
            layers.append(_layer_from_matlab(module, index))
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{path}: {error}") from None
    if not layers:
        raise ValueError(f"{path}: the model has no modules")
    return Network(layers)


def _matlab_ints(props, name, index, kind):
    if name not in props:
        raise ValueError(f"module {index} ({kind}) has no property {name!r}")
    return tuple(int(v) for v in np.ravel(props[name]))


def _layer_from_matlab(module, index):
    kind = str(getattr(module, "classname", "")).removeprefix("modules.")
    props = getattr(module, "properties", None) or {}
    if kind == "Linear":
        return Linear(np.asarray(props["W"], dtype=np.float64).reshape(np.shape(props["W"])[0], -1),
                      np.ravel(props["B"]))
    if kind == "Convolution":
        # Matlab drops trailing singleton dimensions; filtersize keeps h w d n
        size = _matlab_ints(props, "filtersize", index, kind)
        W = np.asarray(props["W"], dtype=np.float64)
        if W.size != int(np.prod(size)):
            raise ValueError(f"module {index} (Convolution): W has {W.size} values for filter size {size}")
        W = W.reshape(size)
        return Convolution(W, np.ravel(props["B"]), stride=_matlab_ints(props, "stride", index, kind))
    if kind in ("SumPool", "MaxPool"):
        cls = SumPool if kind == "SumPool" else MaxPool
        return cls(_matlab_ints(props, "pool", index, kind), _matlab_ints(props, "stride", index, kind))
    if kind in _PLAIN:
        return _PLAIN[kind]()
    raise ValueError(f"module {index} is a {kind or type(module).__name__}, not a layer lrpnb knows")
