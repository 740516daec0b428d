"""lrpnb's own model format (``.lrpnb``): any network of lrpnb's layers.

The toolbox's formats hold chains of its few layers; this one holds every
graph :class:`~lrpnb.Network` (residual joins, concatenations, BatchNorm,
padded, dilated and grouped convolutions, ...) with its rule presets. A file
is a ZIP archive that ``numpy.load`` opens (specified in formats/README.md):

- ``model.json``: the description, UTF-8 JSON: the format's name and
  version, the lrpnb version that wrote it, the network's input shape, and
  the nodes in order (name, layer type, parameters, inputs, rule preset,
  the members holding its arrays with their shapes and dtypes);
- one ``.npy`` member per weight array, float32 or float64, never pickled.

Nothing in a file is executed: the JSON is data, the arrays are read with
``allow_pickle=False`` after their headers are checked against the JSON and
the size limits of :mod:`lrpnb.data_io`. Every malformed file is a
ValueError naming the file (and the node) before a network is returned.
"""
import json
import math
import numbers
import os
import zipfile

import numpy as np

from .data_io import _check_npy_header, check_array_size
from .network import (INPUT, LRN, Add, AveragePool, BatchNorm, Concat, Convolution, Flatten, GlobalAveragePool,
                      Identity, Linear, MaxPool, Network, Node, Rect, Sigmoid, SoftMax, SumPool, Tanh)
from .layers import LayerNorm, Mul, Scale
from .layers import ConvTranspose
from .layers import GatherChannels
from .layers import AttentionSoftmax, MatMul
from .layers import GELU, Clip, HardSigmoid, HardSwish, LeakyReLU, SiLU
from .layers import Bias, Embedding, Rearrange, Reshape, RMSNorm
from .rules import Rule

__all__ = ["read_graph", "write_graph", "FORMAT_NAME", "FORMAT_VERSION", "DESCRIPTION_MEMBER"]

#: the value of the description's "format" field
FORMAT_NAME = "lrpnb-graph"
#: the newest version read and written: 2 adds ``inputs``, ``explained``, ``input_shapes`` (several
#: inputs); a network of one input named 'input' is still written as version 1
FORMAT_VERSION = 2
#: the archive member holding the JSON description
DESCRIPTION_MEMBER = "model.json"
#: the most bytes the JSON description may take once decompressed
DESCRIPTION_BYTES = 64 << 20

# layer type -> (class, {parameter: kind}, names of its arrays). The kinds:
# "pair" two positive ints, "sides" four non-negative ints, "sizes" two
# non-negative ints, "int", "float",
# "bool". Parameters and arrays are the layers' public attributes.
LAYERS = {
    "Linear": (Linear, {}, ("W", "B")),
    "Convolution": (Convolution, {"stride": "pair", "padding": "sides", "dilation": "pair", "groups": "int"},
                    ("W", "B")),
    "SumPool": (SumPool, {"pool": "pair", "stride": "pair"}, ()),
    "MaxPool": (MaxPool, {"pool": "pair", "stride": "pair", "padding": "sides"}, ()),
    "AveragePool": (AveragePool, {"pool": "pair", "stride": "pair", "padding": "sides",
                                  "count_include_pad": "bool"}, ()),
    "GlobalAveragePool": (GlobalAveragePool, {}, ()),
    # BatchNorm keeps only its per-channel scale and shift, which is all it computes with
    "BatchNorm": (BatchNorm, {}, ("scale", "shift")),
    "LRN": (LRN, {"size": "int", "alpha": "float", "beta": "float", "bias": "float"}, ()),
    "Rect": (Rect, {}, ()),
    "Tanh": (Tanh, {}, ()),
    "Sigmoid": (Sigmoid, {}, ()),
    "SoftMax": (SoftMax, {}, ()),
    "Flatten": (Flatten, {}, ()),
    "Identity": (Identity, {}, ()),
    "Add": (Add, {}, ()),
    "Concat": (Concat, {}, ()),
}
# the model zoo's element-wise activations (GELU's approximate: true for the tanh approximation)
LAYERS.update({
    "Clip": (Clip, {"min": "float", "max": "float"}, ()),
    "HardSigmoid": (HardSigmoid, {"alpha": "float", "beta": "float"}, ()),
    "HardSwish": (HardSwish, {}, ()),
    "SiLU": (SiLU, {}, ()),
    "LeakyReLU": (LeakyReLU, {"alpha": "float"}, ()),
    "GELU": (GELU, {"approximate": "bool"}, ()),
})
# the transposed convolution's output padding: two non-negative ints ("sizes")
LAYERS["ConvTranspose"] = (ConvTranspose, {"stride": "pair", "padding": "sides", "output_padding": "sizes",
                                           "dilation": "pair", "groups": "int"}, ("W", "B"))

# products and LayerNorm (Mul's gate: which input is the gate, 0 or 1)
LAYERS.update({
    "Scale": (Scale, {}, ("scale",)),
    "Mul": (Mul, {"gate": "index"}, ()),
    "LayerNorm": (LayerNorm, {"eps": "float"}, ("gamma", "beta")),
})
# channel gathers (ONNX channel shuffles and splits): the channel numbers stored as a float array
LAYERS["GatherChannels"] = (GatherChannels, {}, ("index",))
# attention (MatMul's gate, the factor CP-LRP holds constant, is optional: absent means None)
LAYERS.update({
    "MatMul": (MatMul, {}, ()),
    "AttentionSoftmax": (AttentionSoftmax, {}, ()),
})
# token tensors and RMSNorm (Rearrange's index and the sample shapes stored as float arrays of whole
# numbers; Scale's and Bias's constants in their own shapes)
LAYERS.update({
    "Embedding": (Embedding, {}, ("W",)),
    "Rearrange": (Rearrange, {}, ("index", "shape")),
    "Reshape": (Reshape, {}, ("shape",)),
    "Bias": (Bias, {}, ("b",)),
    "RMSNorm": (RMSNorm, {"eps": "float"}, ("gamma",)),
})

# layer type -> {parameter: (kind, default)}: parameters a node may leave
# out, written only when they differ from their default, so that files
# without them read as before and readers that predate them read those files
OPTIONAL = {
    "MaxPool": {"ceil_mode": ("bool", False)},
    "AveragePool": {"ceil_mode": ("bool", False)},
    "MatMul": {"gate": ("index", None)},
}

_DTYPES = {"float32": np.dtype("<f4"), "float64": np.dtype("<f8")}
_NODE_KEYS = {"name", "layer", "inputs", "params", "arrays", "rule"}
_TOP_KEYS = {"format", "version", "lrpnb_version", "input_shape", "nodes"}
#: the fields version 2 adds: the inputs' names, those explained, and their sample shapes
_INPUT_KEYS = {"inputs", "explained", "input_shapes"}


def _lrpnb_version():
    from importlib import metadata

    try:
        return metadata.version("lrpnb")
    except metadata.PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------- writing
def _layer_entry(layer, k, where):
    """(the node's JSON fields for ``layer``, {member: array})."""
    kind = type(layer).__name__
    if kind not in LAYERS or LAYERS[kind][0] is not type(layer):
        raise ValueError(f"{where}: {type(layer).__name__} is not one of lrpnb's layers "
                         f"({', '.join(LAYERS)}); the lrpnb format holds those only")
    _, kinds, array_names = LAYERS[kind]
    params = {}
    for name, what in kinds.items():
        value = getattr(layer, name)
        params[name] = [int(v) for v in value] if what in ("pair", "sides", "sizes") else \
            {"int": int, "index": int, "float": float, "bool": bool}[what](value)
    for name, (what, default) in OPTIONAL.get(kind, {}).items():
        value = getattr(layer, name)
        if value is not None:
            value = {"int": int, "index": int, "float": float, "bool": bool}[what](value)
        if value != default:
            params[name] = value
    arrays, members = {}, {}
    for name in array_names:
        array = np.asarray(getattr(layer, name))
        dtype = "float32" if array.dtype == np.float32 else "float64"
        member = f"{k}.{name}.npy"
        members[member] = np.ascontiguousarray(array, dtype=_DTYPES[dtype])
        arrays[name] = {"member": member, "shape": list(array.shape), "dtype": dtype}
    return {"layer": kind, "params": params, "arrays": arrays}, members


def _rule_entry(layer, where):
    """The node's "rule" field: its preset, or None where it has none."""
    if layer.lrp_var is None and layer.lrp_param is None and not layer.lrp_explicit:
        return None
    try:
        name, param = layer.preset
    except ValueError as error:
        raise ValueError(f"{where}: its rule preset cannot be saved ({error})") from None
    if name == "zb":
        param = [np.asarray(bound, dtype=np.float64).tolist() for bound in param]
    return {"name": name, "param": param, "explicit": bool(layer.lrp_explicit)}


def write_graph(net, path):
    """Write ``net`` (any network of lrpnb's layers) to ``path`` in lrpnb's
    format: a ZIP archive of ``model.json`` and one ``.npy`` per array
    (stored, not compressed, so that reading it back never meets the size
    limit of compressed files)."""
    nodes, members = [], {}
    for k, node in enumerate(net.nodes):
        where = f"node {k} ({node.name!r})"
        entry, arrays = _layer_entry(node.layer, k, where)
        nodes.append({"name": node.name, "inputs": list(node.inputs), **entry,
                      "rule": _rule_entry(node.layer, where)})
        members.update(arrays)
    shape = getattr(net, "input_shape", None)
    description = {"format": FORMAT_NAME, "version": 1, "lrpnb_version": _lrpnb_version(),
                   "input_shape": None if shape is None else [int(s) for s in shape], "nodes": nodes}
    if tuple(net.inputs) != (INPUT,) or tuple(net.explained) != tuple(net.inputs):
        description.update(version=2, input_shape=None, inputs=list(net.inputs), explained=list(net.explained),
                           input_shapes={name: None if value is None else [int(s) for s in value]
                                         for name, value in net.input_shapes.items()})
    text = json.dumps(description, indent=1, ensure_ascii=False, allow_nan=False)
    from numpy.lib import format as npy

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        archive.writestr(DESCRIPTION_MEMBER, text.encode("utf-8"))
        for member, array in members.items():
            with archive.open(member, "w", force_zip64=array.nbytes > (1 << 30)) as handle:
                npy.write_array(handle, array, allow_pickle=False)


# ---------------------------------------------------------------- reading
def read_graph(path):
    """Read a network written by :func:`write_graph`.

    Every field is checked before it is used: a malformed file (not a ZIP
    archive, bad JSON, another format or a newer version, an unknown layer
    type or parameter, a missing, unnamed or mis-shaped array, a dtype other
    than float32/float64, a duplicate node name, an input that names no
    earlier node: a cycle) is a ValueError naming the file and the node.
    """
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as archive:
            return _read_archive(archive, path, os.path.getsize(path))
    except ValueError as error:
        if str(error).startswith(path):
            raise
        raise ValueError(f"{path}: cannot read the lrpnb model ({error})") from None
    except (FileNotFoundError, PermissionError):
        raise
    except Exception as error:  # noqa: BLE001 - any failure on untrusted bytes is a bad file
        raise ValueError(f"{path}: cannot read the lrpnb model ({type(error).__name__}: {error}); "
                         f"is it a file lrpnb.save wrote?") from None


def _read_archive(archive, path, file_size):
    """The network of an open archive, every member checked (read_graph)."""
    infos = archive.infolist()
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: holds two members of one name")
    members = {info.filename: info for info in infos}
    description = _read_description(archive, members, path)
    shape = description["input_shape"]
    _check_shape(shape, path, "input_shape")
    inputs, explained, shapes = _read_inputs(description, path)
    entries = description["nodes"]
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: 'nodes' must be a non-empty list of nodes")
    # the members read so far, and their bytes together (one size limit for all)
    nodes, used, budget = [], {DESCRIPTION_MEMBER}, [0]
    all_names = {entry["name"] for entry in entries if isinstance(entry, dict) and isinstance(entry.get("name"), str)}
    seen = set(inputs)
    for k, entry in enumerate(entries):
        where = f"{path}: node {k}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: must be a JSON object, got {type(entry).__name__}")
        name = entry.get("name")
        if not isinstance(name, str) or not name or name == INPUT or name in inputs:
            raise ValueError(f"{where}: its name must be a non-empty string other than the inputs' "
                             f"({', '.join(map(repr, dict.fromkeys((INPUT,) + inputs)))}), got {name!r}")
        where = f"{path}: node {k} ({name!r})"
        if name in seen:
            raise ValueError(f"{where}: the name is used twice; node names must be unique")
        _check_inputs(entry, where, seen, all_names)
        layer = _read_layer(archive, members, entry, where, file_size, used, budget)
        try:
            nodes.append(Node(name, layer, entry["inputs"]))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where}: {error}") from None
        seen.add(name)
    unused = sorted(set(members) - used)
    if unused:
        raise ValueError(f"{path}: holds members that no node names: {unused[:5]}")
    try:
        net = Network(nodes, inputs=inputs, explained=explained)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None
    if shape is not None:
        try:
            net.output_shapes((1,) + tuple(shape))
        except ValueError as error:
            raise ValueError(f"{path}: input_shape {shape}: {error}") from None
        net.input_shape = tuple(shape)
    if shapes is not None:
        if None not in shapes.values():
            try:
                net.output_shapes({name: (1,) + value for name, value in shapes.items()})
            except ValueError as error:
                raise ValueError(f"{path}: input_shapes {shapes}: {error}") from None
        net.input_shapes = shapes
    return net


def _check_shape(shape, path, what):
    """ValueError unless ``shape`` is null or a list of positive ints."""
    if shape is not None and (not isinstance(shape, list) or not shape
                              or not all(_is_int(s) and s > 0 for s in shape)):
        raise ValueError(f"{path}: {what} must be null or a list of positive ints, got {shape!r}")


def _read_inputs(description, path):
    """(input names, explained names, {name: sample shape} or None) of a
    description: version 1 has the one input 'input'."""
    if description["version"] < 2:
        return (INPUT,), (INPUT,), None
    inputs, explained, shapes = (description[key] for key in ("inputs", "explained", "input_shapes"))
    for key, names in (("inputs", inputs), ("explained", explained)):
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names) \
                or len(set(names)) != len(names):
            raise ValueError(f"{path}: {key!r} must be a non-empty list of distinct names, got {names!r:.200}")
    if not set(explained) <= set(inputs):
        raise ValueError(f"{path}: 'explained' names inputs the model does not have: "
                         f"{sorted(set(explained) - set(inputs))[:5]}")
    if not isinstance(shapes, dict) or set(shapes) != set(inputs) or description["input_shape"] is not None:
        raise ValueError(f"{path}: 'input_shapes' must map every input to its sample shape (or null), and "
                         f"'input_shape' be null; got {shapes!r:.200}")
    for name, value in shapes.items():
        _check_shape(value, path, f"the input_shapes of {name!r}")
    return tuple(inputs), tuple(explained), {name: None if v is None else tuple(v) for name, v in shapes.items()}


def _reject_constant(name):
    raise ValueError(f"{name} is not a number JSON holds")


def _read_description(archive, members, path):
    where = f"{path}: {DESCRIPTION_MEMBER}"
    if DESCRIPTION_MEMBER not in members:
        raise ValueError(f"{path}: no {DESCRIPTION_MEMBER} member; not a model lrpnb.save wrote "
                         f"(members: {sorted(members)[:5]})")
    info = members[DESCRIPTION_MEMBER]
    check_array_size(info.file_size, where, "the description", os.path.getsize(path))
    if info.file_size > DESCRIPTION_BYTES:
        raise ValueError(f"{where}: {info.file_size:,} bytes, more than the {DESCRIPTION_BYTES:,} a "
                         f"description may take")
    data = archive.read(info)
    try:
        description = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ValueError(f"{where}: not valid JSON ({error})") from None
    if not isinstance(description, dict):
        raise ValueError(f"{where}: must be a JSON object, got {type(description).__name__}")
    if description.get("format") != FORMAT_NAME:
        raise ValueError(f"{where}: format is {description.get('format')!r}, not {FORMAT_NAME!r}")
    version = description.get("version")
    if not _is_int(version) or version < 1:
        raise ValueError(f"{where}: version must be a positive int, got {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"{where}: format version {version}, written by lrpnb "
                         f"{description.get('lrpnb_version')!r}; this lrpnb reads versions up to "
                         f"{FORMAT_VERSION}: upgrade lrpnb to read it")
    keys = _TOP_KEYS | (_INPUT_KEYS if version >= 2 else set())
    missing, unknown = keys - {"lrpnb_version"} - set(description), set(description) - keys
    if missing or unknown:
        raise ValueError(f"{where}: fields missing {sorted(missing)} or unknown {sorted(unknown)}")
    return description


def _check_inputs(entry, where, seen, all_names):
    """ValueError unless the node's inputs are earlier nodes (or 'input')."""
    inputs = entry.get("inputs")
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
        raise ValueError(f"{where}: 'inputs' must be a non-empty list of node names, got {inputs!r}")
    for name in inputs:
        if name in seen:
            continue
        if name in all_names:
            raise ValueError(f"{where}: reads {name!r}, a later node (or itself): the graph has a cycle or "
                             f"its nodes are out of order; nodes must come in topological order")
        raise ValueError(f"{where}: reads {name!r}, which no node outputs")
    unknown = set(entry) - _NODE_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown fields {sorted(unknown)}")


def _read_layer(archive, members, entry, where, file_size, used, budget):
    """The node's layer, with its parameters, arrays and rule preset checked."""
    kind = entry.get("layer")
    if not isinstance(kind, str) or kind not in LAYERS:
        raise ValueError(f"{where}: unknown layer type {kind!r}; known: {', '.join(LAYERS)}")
    cls, kinds, array_names = LAYERS[kind]
    optional = {name: what for name, (what, _) in OPTIONAL.get(kind, {}).items()}
    params = entry.get("params", {})
    if not isinstance(params, dict) or not set(kinds) <= set(params) <= set(kinds) | set(optional):
        got = sorted(params) if isinstance(params, dict) else params
        also = f" (and optionally {sorted(optional)})" if optional else ""
        raise ValueError(f"{where}: {kind} takes the parameters {sorted(kinds)}{also}, got {got!r}")
    kinds = {**kinds, **optional}
    for name, value in params.items():
        _check_param(value, kinds[name], f"{where}: {kind} parameter {name!r}")
    specs = entry.get("arrays", {})
    if not isinstance(specs, dict) or set(specs) != set(array_names):
        got = sorted(specs) if isinstance(specs, dict) else specs
        raise ValueError(f"{where}: {kind} has the arrays {sorted(array_names)}, got {got!r}")
    if kind in ("Convolution", "ConvTranspose"):
        _check_dilated_filter(specs["W"], params["dilation"], where, file_size)
    arrays = {name: _read_array(archive, members, specs[name], f"{where}: array {name!r}", file_size, used,
                                budget) for name in array_names}
    try:
        if kind == "BatchNorm":
            scale, shift = arrays["scale"], arrays["shift"]
            if scale.shape != shift.shape or scale.ndim != 1:
                raise ValueError(f"scale and shift must be two vectors of one length, got shapes "
                                 f"{scale.shape} and {shift.shape}")
            layer = BatchNorm(scale, shift, np.zeros_like(scale), np.ones_like(scale), eps=0.0)
            # the values as saved, bit for bit (the constructor's shift may turn -0.0 into 0.0)
            layer.scale, layer.shift = scale, shift
        else:
            layer = cls(*(arrays[name] for name in array_names), **params)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from None
    _set_rule(layer, entry.get("rule"), where)
    return layer


def _check_dilated_filter(spec, dilation, where, file_size):
    """Refuse a dilation whose filter, spread out once per layer, would be
    larger than the size limits allow."""
    shape = spec.get("shape") if isinstance(spec, dict) else None
    if isinstance(shape, list) and len(shape) == 4 and all(_is_int(s) and s >= 1 for s in shape):
        h, w, d, n = shape
        nbytes = ((h - 1) * dilation[0] + 1) * ((w - 1) * dilation[1] + 1) * d * n * 8
        check_array_size(nbytes, where, f"the filter dilated by {tuple(dilation)}", file_size)


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_param(value, kind, where):
    if kind in ("pair", "sides", "sizes"):
        count, low = {"pair": (2, 1), "sides": (4, 0), "sizes": (2, 0)}[kind]
        if not isinstance(value, list) or len(value) != count or not all(_is_int(v) and v >= low for v in value):
            raise ValueError(f"{where} must be a list of {count} ints >= {low}, got {value!r}")
    elif kind == "index":  # an input's position: 0, 1, ...
        if not _is_int(value) or value < 0:
            raise ValueError(f"{where} must be a non-negative int, got {value!r}")
    elif kind == "int":
        if not _is_int(value) or value < 1:
            raise ValueError(f"{where} must be a positive int, got {value!r}")
    elif kind == "float":
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number, got {value!r}")
    elif not isinstance(value, bool):
        raise ValueError(f"{where} must be true or false, got {value!r}")


def _read_array(archive, members, spec, where, file_size, used, budget):
    """One weight array: its member exists, is named once, and its header
    holds the declared shape and dtype within the size limits."""
    if not isinstance(spec, dict) or set(spec) != {"member", "shape", "dtype"}:
        raise ValueError(f"{where}: must be an object of 'member', 'shape' and 'dtype', got {spec!r}")
    member, shape, dtype = spec["member"], spec["shape"], spec["dtype"]
    if not isinstance(member, str) or not member.endswith(".npy") or member == DESCRIPTION_MEMBER:
        raise ValueError(f"{where}: 'member' must name a .npy member, got {member!r}")
    if member not in members:
        raise ValueError(f"{where}: the member {member!r} is missing from the archive")
    if member in used:
        raise ValueError(f"{where}: the member {member!r} is named twice")
    used.add(member)
    if not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape):
        raise ValueError(f"{where}: 'shape' must be a list of non-negative ints, got {shape!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"{where}: 'dtype' must be one of {sorted(_DTYPES)}, got {dtype!r}")
    info = members[member]
    with archive.open(info) as handle:
        try:
            found_shape, found_dtype, needed = _check_npy_header(handle, info.file_size)
        except ValueError as error:
            raise ValueError(f"{where} ({member}): {error}") from None
    if tuple(found_shape) != tuple(shape) or found_dtype != _DTYPES[dtype]:
        raise ValueError(f"{where} ({member}): holds shape {tuple(found_shape)} of {found_dtype}, the "
                         f"description says {tuple(shape)} of {dtype}")
    budget[0] += needed
    check_array_size(needed, where, f"member {member!r} of shape {tuple(shape)} and {dtype}", file_size)
    check_array_size(budget[0], where, "the arrays read so far", file_size)
    from numpy.lib import format as npy

    with archive.open(info) as handle:
        array = npy.read_array(handle, allow_pickle=False)
    if array.shape != tuple(shape):
        raise ValueError(f"{where} ({member}): the member ends early")
    return array.astype(array.dtype.newbyteorder("="), copy=False)


def _set_rule(layer, entry, where):
    """Set the layer's rule preset from the node's "rule" field."""
    if entry is None:
        return
    if not isinstance(entry, dict) or set(entry) != {"name", "param", "explicit"} \
            or not isinstance(entry["explicit"], bool):
        raise ValueError(f"{where}: 'rule' must be null or an object of 'name', 'param' and 'explicit' "
                         f"(true or false), got {entry!r}")
    name, param = entry["name"], entry["param"]
    if not isinstance(name, str):
        raise ValueError(f"{where}: the rule's name must be a string, got {name!r}")
    try:
        rule = Rule(name, tuple(param) if name in ("zb", "zbox") and isinstance(param, list) else param)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: its rule preset: {error}") from None
    layer.lrp_var, layer.lrp_param = rule
    layer.lrp_explicit = entry["explicit"]
