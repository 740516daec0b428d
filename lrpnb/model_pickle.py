"""The LRP Toolbox's pickled model format (``.nn`` / ``.pickle`` / ``.pkl``).

The toolbox's ``model_io.write`` pickles its ``modules.Sequential`` object
(specified in formats/README.md). :func:`read_pickle` reads one with a
restricted unpickler that admits only the toolbox's module classes (as inert
stand-ins) and the few numpy callables that rebuild plain numeric arrays,
bounds what the pickle may expand to (:data:`PICKLE_VALUES_PER_BYTE`,
:data:`PICKLE_DEPTH`), and builds the whole network before returning it.
:func:`write_pickle` writes a network so that the toolbox (Python 2 or 3,
numpy 1.x or 2.x) can read it.
"""
import io
import pickle

import numpy as np

from .model_text import PLAIN_LAYERS
from .network import Convolution, Linear, MaxPool, Network, SumPool

__all__ = ["read_pickle", "write_pickle", "PICKLE_VALUES_PER_BYTE", "PICKLE_DEPTH"]

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


class _NdarrayName:
    """numpy.ndarray as a pickle names it: admitted only as the subtype that
    numpy's array reconstruction is handed. Calling it is refused: with its
    own arguments, numpy.ndarray(shape) makes an array of any size from
    uninitialised memory (a 244-byte file asked for 1.5 GiB); arrays are
    built only from their bytes."""

    def __new__(cls, *args, **kwargs):
        raise pickle.UnpicklingError("refusing to call numpy.ndarray: arrays are built only from "
                                     "their bytes (numpy's array reconstruction)")


def _safe_reconstruct(subtype, shape, dtype):
    if subtype is not _NdarrayName:
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
    "_reconstruct": _safe_reconstruct, "ndarray": _NdarrayName, "dtype": _SafeDtype,
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
    elif kind in PLAIN_LAYERS:
        layer = PLAIN_LAYERS[kind]()
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


def read_pickle(path):
    """Read a toolbox model pickle, admitting only what a model holds.

    Parameters
    ----------
    path : str
        The file.

    Returns
    -------
    Network
        The network, on the CPU.

    Raises
    ------
    ValueError
        The pickle names anything but the toolbox's module classes and numpy
        arrays, expands beyond its bounds, is not a toolbox ``Sequential``,
        or holds a layer lrpnb does not know.
    """
    from ._matfile import read_regular

    data = read_regular(path)
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


def write_pickle(net, path):
    """Write ``net`` (a chain of the toolbox's layers) to ``path`` as the
    toolbox's pickled ``Sequential`` (protocol 2)."""
    modules = []
    for layer in net.layers:
        obj = _STAND_INS[type(layer).__name__].__new__(_STAND_INS[type(layer).__name__])
        obj.__dict__.update(_toolbox_state(layer))
        modules.append(obj)
    root = _STAND_INS["Sequential"].__new__(_STAND_INS["Sequential"])
    root.__dict__.update(modules=modules, lrp_var=None, lrp_param=None)
    with open(path, "wb") as handle:
        _ToolboxPickler(handle, protocol=2).dump(root)

