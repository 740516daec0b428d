"""Reading ONNX models (``lrpnb.load("model.onnx")``) into graph networks.

The ONNX graph is read with the ``onnx`` package (``pip install "lrpnb[onnx]"``)
and every node becomes an lrpnb layer; initializers become weights. Layouts
are converted once, here, so that no transpose runs per call:

- ONNX images are NCHW, lrpnb's are NHWC: convolution filters (K, C/g, kh,
  kw) become (kh, kw, C/g, K), and the network takes (N, H, W, C) input.
- A Flatten (or Reshape to (N, -1)) of an image orders its features (c, h, w)
  in ONNX and (h, w, c) in lrpnb; the dense layer that reads them gets its
  weight rows permuted to match, so its outputs are ONNX's.
- A BatchNormalization right after a convolution or dense layer (whose
  output nothing else reads) is folded into that layer's weights, as zennit's
  MergeBatchNorm canonizer does; anywhere else it is a BatchNorm layer.
- Identity and Dropout are dropped (no-ops at inference); a MatMul followed
  by the addition of a constant is one dense layer.

formats/README.md lists the operators, attributes and opsets accepted.
Anything else, a malformed graph included, is a ValueError that starts with
the file's path and names the node, its operator and what is wrong.
"""
import os
from collections import Counter

import numpy as np

from .data_io import check_array_size
from .network import (INPUT, printable, Add, AveragePool, BatchNorm, Concat, Convolution, Flatten, GlobalAveragePool,
                      Linear, LRN, MaxPool, Network, Node, Rect, Sigmoid, SoftMax, Tanh)

__all__ = ["read_onnx", "SUPPORTED_OPS", "UNSUPPORTED_HINTS", "OPSETS"]

SUPPORTED_OPS = ("Add", "AveragePool", "BatchNormalization", "Concat", "Constant", "Conv", "Dropout", "Flatten",
                 "Gemm", "GlobalAveragePool", "Identity", "LRN", "MatMul", "MaxPool", "Relu", "Reshape", "Sigmoid",
                 "Softmax", "Tanh")

# The default domain's opsets whose operators are read here as ONNX defines them: 7 gave Add and Gemm
# numpy's broadcasting and dropped `is_test`; up to 28 these operators gained types, and attributes
# checked here (pool `dilations`, Reshape `allowzero`, `training_mode`). Capped by the onnx package.
OPSETS = (7, 28)

_FLATTEN = "export the flattening as torch.flatten(x, 1) (or x.flatten(1)) instead of x.view(x.size(0), -1)"
_NORMALISE = ("if it normalises the input ((x - mean) / std in forward()), export the model without it and give "
              "lrpnb explain --mean and --std")
UNSUPPORTED_HINTS = {  # op_type -> the change at export that avoids it
    "Shape": _FLATTEN, "Gather": _FLATTEN, "Unsqueeze": _FLATTEN, "Squeeze": _FLATTEN,
    "Sub": _NORMALISE, "Div": _NORMALISE, "Mul": _NORMALISE,
    "Pad": "give the convolution or pooling its zero padding (padding=p) instead of F.pad or nn.ZeroPad2d",
    "ReduceMean": "average with nn.AdaptiveAvgPool2d(1) and torch.flatten(x, 1) instead of x.mean((2, 3))",
    "GlobalMaxPool": "use nn.MaxPool2d(kernel_size=<the feature map's size>) instead of nn.AdaptiveMaxPool2d(1)",
    "LogSoftmax": "export the model without its final log_softmax: lrpnb explains the class scores before it"}

# what malformed nodes and tensors raise inside onnx, numpy and the handlers
_MALFORMED = (IndexError, KeyError, TypeError, AttributeError, OverflowError, MemoryError, ValueError)
# the attributes read, by kind: int, float, str, or that many ints (2-d)
_ATTRIBUTES = dict.fromkeys(("axis", "group", "size", "transA", "transB", "ceil_mode", "count_include_pad",
                             "allowzero", "spatial", "training_mode"), int) | {"auto_pad": str, "kernel_shape": 2,
              "strides": 2, "dilations": 2, "pads": 4} | dict.fromkeys(("alpha", "beta", "bias", "epsilon"), float)
# the inputs an operator needs (1 when not listed; Add and Concat need all theirs named), its required attribute
_INPUTS = {"Constant": 0, "Conv": 2, "Gemm": 2, "MatMul": 2, "Reshape": 2, "Add": 2, "BatchNormalization": 5}
_REQUIRED = {"MaxPool": "kernel_shape", "AveragePool": "kernel_shape", "LRN": "size", "Concat": "axis"}


def _reason(error):
    return f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"


def _named(error, path):
    """``error`` if it is a ValueError that starts with ``path``, else None."""
    return error if isinstance(error, ValueError) and str(error).startswith(f"{path}: ") else None


class _Tensor:
    """What the importer knows of an ONNX tensor: the lrpnb value holding it (a node name or 'input'), its
    ONNX shape without the batch axis, and for features flattened from an image, ``order[i]``: ONNX's
    feature at lrpnb's position i (None where the orders agree)."""

    def __init__(self, value, shape, order=None):
        self.value, self.shape, self.order = value, tuple(shape), order


class _Importer:
    def __init__(self, model, path):
        from onnx import TensorProto, helper, numpy_helper

        self.path, self.graph, self.numpy_helper, self.helper = path, model.graph, numpy_helper, helper
        self.TensorProto, self.constants, self.tensors, self.nodes, self.by_name = TensorProto, {}, {}, [], {}
        for init in self.graph.initializer:
            if init.name in self.constants:
                raise ValueError(f"{path}: two initializers are named {init.name!r}; tensor names must be unique")
            self.constants[init.name] = self.array(init)
        # tensor name -> how many nodes (and graph outputs) read it
        self.readers = Counter([i for n in self.graph.node for i in n.input] + [o.name for o in self.graph.output])

    # ------------------------------------------------------------ helpers
    def check_size(self, node, nbytes, what):
        """Refuse an array sized from declared shapes or attributes beyond lrpnb.data_io's limit."""
        try:
            check_array_size(nbytes, self.path, what, os.path.getsize(self.path))
        except ValueError as error:
            raise self.error(node, str(error).removeprefix(f"{self.path}: ")) from None

    def error(self, node, message):
        name = node.name or (node.output[0] if node.output else "?")
        return ValueError(f"{self.path}: node {name!r} ({printable(node.op_type)}): {printable(message)}")

    def array(self, tensor, node=None):
        """The numbers of an initializer (or of Constant ``node``'s tensor)."""
        try:
            value = self.numpy_helper.to_array(tensor)
            if value.dtype.kind not in "biuf":
                raise TypeError(f"{value.dtype} values")
        except _MALFORMED as error:
            message = (f"tensor {tensor.name!r} of dims {list(tensor.dims)[:8]} is unreadable ({_reason(error)}); "
                       f"lrpnb reads numeric tensors whose data matches their dims")
            if node is None:
                raise ValueError(f"{self.path}: initializer {message}") from None
            raise self.error(node, message) from None
        return value

    def attributes(self, node):
        """The node's attributes; those lrpnb reads checked against their kind (_ATTRIBUTES, _REQUIRED)."""
        attrs = {}
        for attr in node.attribute:
            if attr.name in attrs:
                raise self.error(node, f"has two attributes named {attr.name!r}")
            try:
                value = attrs[attr.name] = self.helper.get_attribute_value(attr)
            except _MALFORMED as error:
                raise self.error(node, f"attribute {attr.name!r} is unreadable ({_reason(error)})") from None
            kind = _ATTRIBUTES.get(attr.name)
            if kind is str and isinstance(value, bytes):
                value = attrs[attr.name] = value.decode("utf-8", "replace")
            ok = type(value) in (int, float) and np.isfinite(value) if kind is float else type(value) is kind or (
                isinstance(value, list) and len(value) == kind and all(type(v) is int for v in value))
            if kind is not None and not ok:
                want = {int: "an integer", float: "a finite number", str: "a string"}.get(kind, f"{kind} integers")
                raise self.error(node, f"attribute {attr.name} must be {want}, got {value!r:.80}")
        if node.op_type in _REQUIRED and _REQUIRED[node.op_type] not in attrs:
            raise self.error(node, f"needs the attribute {_REQUIRED[node.op_type]!r}")
        return attrs

    def constant(self, node, name, what, ndim=None):
        if name not in self.constants:
            raise self.error(node, f"{what} ({name!r}) must be a constant (an initializer); lrpnb computes "
                                   f"no weights at run time")
        value = np.asarray(self.constants[name])
        if (ndim is not None and value.ndim != ndim) or not np.isfinite(value).all():
            raise self.error(node, f"{what} ({name!r}) must be finite numbers{f' in {ndim} dimensions' * bool(ndim)}, "
                                   f"got shape {value.shape}{'' if np.isfinite(value).all() else ' with NaN or inf'}")
        return value

    def tensor(self, node, name):
        if name not in self.tensors:
            raise self.error(node, f"reads {name!r}, which is neither the model's input nor the output of "
                                   f"an earlier node")
        return self.tensors[name]

    def add(self, node, layer, inputs, shape, order=None):
        """Append an lrpnb node for ONNX ``node`` (its first output)."""
        name = node.name or node.output[0]
        base, k = name, 1
        while name in self.by_name or name == INPUT:
            name, k = f"{base}_{k}", k + 1
        try:
            self.nodes.append(Node(name, layer, [t.value for t in inputs]))
        except (TypeError, ValueError) as error:
            raise self.error(node, str(error)) from None
        self.by_name[name] = self.nodes[-1]
        self.tensors[node.output[0]] = _Tensor(name, shape, order)
        return self.nodes[-1]

    def image_check(self, node, tensor):
        if len(tensor.shape) != 3:
            raise self.error(node, f"expects an image (N, C, H, W), got a tensor of shape "
                                   f"(N, {', '.join(map(str, tensor.shape))})")

    # ------------------------------------------------------------ the graph
    def run(self):
        inputs = [i for i in self.graph.input if i.name not in self.constants]
        if len(inputs) != 1:
            raise ValueError(f"{self.path}: lrpnb explains models with one input, this one has "
                             f"{len(inputs)}: {', '.join(repr(i.name) for i in inputs[:10])}")
        dims = inputs[0].type.tensor_type.shape.dim
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)[1:]
        if len(shape) not in (1, 3) or any(s is None or s <= 0 for s in shape):
            raise ValueError(f"{self.path}: the input {inputs[0].name!r} must be (N, C, H, W) or (N, D) with "
                             f"fixed sizes besides N, got {tuple(shape)}")
        # each tensor is defined once: a second definition would silently replace the first
        defined = dict.fromkeys(self.constants, "an initializer") | {inputs[0].name: "the model's input"}
        for node in self.graph.node:
            if not node.output or not node.output[0]:
                raise self.error(node, "has no output")
            for name in filter(None, node.output):
                if name in defined:
                    raise self.error(node, f"redefines {name!r}, already {defined[name]}; tensor names must be unique")
                defined[name] = f"an output of node {node.name or node.output[0]!r}"
        self.input_shape, self.tensors[inputs[0].name] = shape, _Tensor(INPUT, shape)
        for node in self.graph.node:
            try:
                self.run_node(node)
            except _MALFORMED as error:  # the last line of defence: a hole in the checks is still this file's error
                raise _named(error, self.path) or self.error(node, f"malformed node ({_reason(error)})") from None
        if len(self.graph.output) != 1:
            raise ValueError(f"{self.path}: lrpnb explains models with one output, this one has "
                             f"{len(self.graph.output)}")
        out = self.tensors.get(self.graph.output[0].name)
        if out is None or out.value == INPUT:
            raise ValueError(f"{self.path}: the output {self.graph.output[0].name!r} is not computed by the graph")
        if out.order is not None:
            raise ValueError(f"{self.path}: the output is an image flattened in ONNX's channel order; lrpnb "
                             f"explains class scores (N, C)")
        # the network's output is the last node: drop nodes the output does not need
        last = next(k for k, n in enumerate(self.nodes) if n.name == out.value)
        needed, keep = {out.value}, []
        for node in self.nodes[last::-1]:
            if node.name in needed:
                keep.append(node)
                needed.update(node.inputs)
        try:
            return Network(keep[::-1])
        except ValueError as error:
            raise ValueError(f"{self.path}: {printable(error)}") from None

    def run_node(self, node):
        handler, default = getattr(self, "op_" + node.op_type, None), node.domain in ("", "ai.onnx")
        if handler is None or not default:
            where = "" if default else f" of ONNX's default domain (this node's is {node.domain!r})"
            hint = f"; to avoid it: {UNSUPPORTED_HINTS[node.op_type]}" if node.op_type in UNSUPPORTED_HINTS else ""
            raise self.error(node, f"unsupported operator; lrpnb imports {', '.join(SUPPORTED_OPS)}{where or hint}")
        need, variadic = _INPUTS.get(node.op_type, 1), node.op_type in ("Add", "Concat")
        if len(node.input) < need or not all(node.input if variadic else node.input[:need]):
            raise self.error(node, f"needs {need} named inputs{' (or more)' * variadic}, got "
                                   f"{list(node.input)!r:.80}")
        handler(node, self.attributes(node))

    # ------------------------------------------------------------ operators
    def op_Constant(self, node, attrs):
        if not isinstance(attrs.get("value"), self.TensorProto):
            raise self.error(node, "only Constant nodes with a 'value' tensor are supported")
        self.constants[node.output[0]] = self.array(attrs["value"], node)

    def alias(self, node):
        self.tensors[node.output[0]] = self.tensor(node, node.input[0])

    def op_Identity(self, node, attrs):
        if node.input[0] not in self.constants:
            return self.alias(node)
        self.constants[node.output[0]] = self.constants[node.input[0]]  # exporters share weights through Identity

    def op_Dropout(self, node, attrs):
        if len(node.output) > 1 and self.readers.get(node.output[1]):
            raise self.error(node, "the dropout mask output is used; at inference there is none")
        if len(node.input) > 2 and node.input[2] and self.constant(node, node.input[2], "training_mode").any():
            raise self.error(node, "training_mode is true; export the model in eval mode (model.eval())")
        self.alias(node)

    def op_Relu(self, node, attrs):  # and Tanh, Sigmoid
        source, layer = self.tensor(node, node.input[0]), dict(Relu=Rect, Tanh=Tanh, Sigmoid=Sigmoid)[node.op_type]()
        self.add(node, layer, [source], source.shape, source.order)

    op_Tanh = op_Sigmoid = op_Relu

    def op_LRN(self, node, attrs):
        source = self.tensor(node, node.input[0])
        self.image_check(node, source)
        try:
            layer = LRN(attrs["size"], attrs.get("alpha", 1e-4), attrs.get("beta", 0.75), attrs.get("bias", 1.0))
        except ValueError as error:
            raise self.error(node, f"needs a positive size and finite alpha, beta, bias > 0 ({error})") from None
        self.add(node, layer, [source], source.shape)

    def op_Softmax(self, node, attrs):
        source = self.tensor(node, node.input[0])
        if len(source.shape) != 1 or attrs.get("axis", -1) not in (-1, 1) or source.order is not None:
            raise self.error(node, "only a softmax over the classes of (N, C) scores is supported")
        self.add(node, SoftMax(), [source], source.shape)

    def op_Conv(self, node, attrs):
        source = self.tensor(node, node.input[0])
        self.image_check(node, source)
        W = self.constant(node, node.input[1], "the filters", ndim=4)  # 2-d convolutions
        B = self.constant(node, node.input[2], "the bias") if len(node.input) > 2 and node.input[2] else \
            np.zeros(W.shape[0], dtype=W.dtype)
        if "kernel_shape" in attrs and tuple(attrs["kernel_shape"]) != W.shape[2:]:
            raise self.error(node, f"kernel_shape {attrs['kernel_shape']} differs from the filters {W.shape}")
        padding = self.padding(node, attrs)
        try:
            layer = Convolution(W.transpose(2, 3, 1, 0), B, stride=attrs.get("strides", (1, 1)), padding=padding,
                                dilation=attrs.get("dilations", (1, 1)), groups=attrs.get("group", 1))
            out = layer.output_shape((1,) + source.shape[1:] + source.shape[:1])
        except ValueError as error:
            raise self.error(node, str(error)) from None
        (rows, columns), (h, w) = layer.dilation, W.shape[2:]
        self.check_size(node, ((h - 1) * rows + 1) * ((w - 1) * columns + 1) * W.shape[0] * W.shape[1] * 8,
                        f"the dilated filters (dilations {rows}, {columns})")
        self.add(node, layer, [source], (out[3], out[1], out[2]))

    def padding(self, node, attrs):
        """(top, bottom, left, right) from ONNX's 2-d pads (top, left, bottom, right) and auto_pad."""
        if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise self.error(node, f"auto_pad {attrs['auto_pad']!r}: only NOTSET and VALID are read (auto_pad "
                                   f"SAME_UPPER/SAME_LOWER is not supported; export with explicit pads)")
        top, left, bottom, right = attrs.get("pads", (0,) * 4) if attrs.get("auto_pad") != "VALID" else (0,) * 4
        return top, bottom, left, right

    def pool_options(self, node, attrs):
        if attrs.get("ceil_mode", 0):
            raise self.error(node, "ceil_mode=1 is not supported")
        if any(d != 1 for d in attrs.get("dilations", (1, 1))):
            raise self.error(node, "dilated pooling is not supported")
        return tuple(attrs["kernel_shape"]), tuple(attrs.get("strides", (1, 1))), self.padding(node, attrs)

    def pool(self, node, make):
        source = self.tensor(node, node.input[0])
        self.image_check(node, source)
        try:
            layer = make()
            out = layer.output_shape((1,) + source.shape[1:] + source.shape[:1])
        except ValueError as error:
            raise self.error(node, str(error)) from None
        self.add(node, layer, [source], (out[3], out[1], out[2]))

    def op_MaxPool(self, node, attrs):
        if len(node.output) > 1 and self.readers.get(node.output[1]):
            raise self.error(node, "the Indices output is not supported")
        kernel, stride, padding = self.pool_options(node, attrs)
        self.pool(node, lambda: MaxPool(kernel, stride, padding))

    def op_AveragePool(self, node, attrs):
        kernel, stride, padding = self.pool_options(node, attrs)
        self.pool(node, lambda: AveragePool(kernel, stride, padding, bool(attrs.get("count_include_pad", 0))))

    def op_GlobalAveragePool(self, node, attrs):
        self.pool(node, GlobalAveragePool)

    def flatten(self, node, source):
        if len(source.shape) == 1:
            return self.alias(node)
        C, H, W = source.shape
        self.check_size(node, C * H * W * 8, f"the feature order of a flattened ({C}, {H}, {W}) image")
        # lrpnb's position (h, w, c) holds ONNX's feature c*H*W + h*W + w
        order = np.arange(C * H * W).reshape(C, H, W).transpose(1, 2, 0).ravel()
        self.add(node, Flatten(), [source], (C * H * W,), None if H * W == 1 else order)

    def op_Flatten(self, node, attrs):
        if attrs.get("axis", 1) != 1:
            raise self.error(node, f"only axis=1 is supported, got axis={attrs['axis']}")
        self.flatten(node, self.tensor(node, node.input[0]))

    def op_Reshape(self, node, attrs):
        source = self.tensor(node, node.input[0])
        target = self.constant(node, node.input[1], "the shape")
        target = target.ravel().tolist() if target.dtype.kind in "iu" else f"{target.dtype} values"
        size = int(np.prod(source.shape))
        first = (-1, 1) if attrs.get("allowzero", 0) else (0, -1, 1)  # with allowzero, 0 is a size
        if len(target) != 2 or target[0] not in first or target[1] not in (-1, size) or target == [-1, -1]:
            raise self.error(node, f"only a reshape to (N, features) is supported, got shape {target!r:.80}")
        self.flatten(node, source)

    def dense(self, node, source, W, B):
        """A dense layer with W (m, n) in ONNX's feature order."""
        if len(source.shape) != 1 or source.shape[0] != W.shape[0]:
            raise self.error(node, f"expects (N, {W.shape[0]}) features, got (N, "
                                   f"{', '.join(map(str, source.shape))})")
        if source.order is not None:
            W = W[source.order]
        self.add(node, Linear(W, np.broadcast_to(B, (W.shape[1],))), [source], (W.shape[1],))

    def op_Gemm(self, node, attrs):
        source = self.tensor(node, node.input[0])
        if attrs.get("transA", 0):
            raise self.error(node, "transA=1 is not supported")
        W = self.constant(node, node.input[1], "the weights", ndim=2)
        W = W.T if attrs.get("transB", 0) else W
        W = attrs.get("alpha", 1.0) * W.astype(np.float64 if W.dtype != np.float32 else np.float32)
        B = np.zeros(W.shape[1], dtype=W.dtype)
        if len(node.input) > 2 and node.input[2]:
            C = self.constant(node, node.input[2], "the bias")
            if C.size not in (1, W.shape[1]):
                raise self.error(node, f"the bias must have 1 or {W.shape[1]} values, got shape {C.shape}")
            B = attrs.get("beta", 1.0) * np.broadcast_to(C.ravel(), (W.shape[1],))
        self.dense(node, source, W, B.astype(W.dtype))

    def op_MatMul(self, node, attrs):
        source = self.tensor(node, node.input[0])
        W = self.constant(node, node.input[1], "the second factor", ndim=2)
        self.dense(node, source, W, np.zeros(W.shape[1], dtype=W.dtype))

    def folds_into(self, tensor_name, tensor):
        """The Linear or Convolution node whose output ``tensor`` nothing
        but the current node reads, or None."""
        layer_node = self.by_name.get(tensor.value)  # None for the input
        if layer_node is None or self.readers.get(tensor_name, 0) != 1:
            return None
        return layer_node if isinstance(layer_node.layer, (Linear, Convolution)) else None

    def op_Add(self, node, attrs):
        names = list(node.input)
        constants = [name for name in names if name in self.constants]
        if constants:
            # a bias: the constant added to a dense or convolution layer's output
            other = [name for name in names if name not in self.constants]
            if len(other) != 1:
                raise self.error(node, "adds two constants")
            source = self.tensor(node, other[0])
            target = self.folds_into(other[0], source)
            C = np.asarray(self.constants[constants[0]])
            channels = target.layer.W.shape[-1] if target is not None else 0
            # one value per output channel, on the channel axis: last for features, C of (C, H, W) for images
            axis = -1 if target is None or isinstance(target.layer, Linear) else -3
            per_channel = C.size == 1 or (C.ndim >= -axis and C.shape[axis] == channels and C.size == channels)
            if target is None or not per_channel:
                raise self.error(node, "adding a constant is supported only as the bias of the dense or "
                                       "convolution layer before it (one value per output channel)")
            target.layer.B = target.layer.B + np.broadcast_to(C.ravel(), (channels,))
            self.tensors[node.output[0]] = source
            return
        sources = [self.tensor(node, name) for name in names]
        if any(s.shape != sources[0].shape for s in sources) or any(s.order is not None for s in sources):
            raise self.error(node, "adds tensors of different shapes (lrpnb adds equal shapes, no broadcasting)")
        self.add(node, Add(), sources, sources[0].shape)

    def op_Concat(self, node, attrs):
        sources = [self.tensor(node, name) for name in node.input]
        if attrs["axis"] not in (1, -1 - len(sources[0].shape)) or any(s.order is not None for s in sources):
            raise self.error(node, "only a concatenation along the channels (axis 1) is supported")
        if any(s.shape[1:] != sources[0].shape[1:] for s in sources):
            raise self.error(node, "the inputs differ in more than their channels")
        self.add(node, Concat(), sources, (sum(s.shape[0] for s in sources),) + sources[0].shape[1:])

    def op_BatchNormalization(self, node, attrs):
        if len(node.output) > 1 and any(self.readers.get(name) for name in node.output[1:]):
            raise self.error(node, "training-mode outputs (running mean and variance) are not supported")
        if attrs.get("training_mode", 0) or not attrs.get("spatial", 1):
            raise self.error(node, "only the inference form (training_mode 0, spatial 1) is supported")
        source = self.tensor(node, node.input[0])
        gamma, beta, mean, var = (self.constant(node, name, what).astype(np.float64) for name, what in
                                  zip(node.input[1:5], ("scale", "bias", "mean", "var")))
        try:
            norm = BatchNorm(gamma, beta, mean, var, attrs.get("epsilon", 1e-5))
        except ValueError as error:
            raise self.error(node, str(error)) from None
        if norm.scale.size != source.shape[0]:
            raise self.error(node, f"has {norm.scale.size} channels for an input of {source.shape[0]}")
        target = self.folds_into(node.input[0], source)
        if target is not None:
            # y = (x W + b) scale + shift = x (W scale) + (b scale + shift), per output channel
            layer, dtype = target.layer, target.layer.W.dtype
            layer.W = (layer.W * norm.scale).astype(dtype)
            layer.B = (layer.B * norm.scale + norm.shift).astype(dtype)
            self.tensors[node.output[0]] = source
            return
        if source.order is not None:
            norm.scale, norm.shift = norm.scale[source.order], norm.shift[source.order]
        self.add(node, norm, [source], source.shape, source.order)


def _check_model(model, path):
    """Refuse tensors stored in other files (external data: lrpnb reads the file given, nothing it names), and
    a model without one opset of the default domain or with one lrpnb (OPSETS) or the onnx package does not read."""
    from onnx.defs import onnx_opset_version

    for tensor in [*model.graph.initializer, *(t for node in model.graph.node for attribute in node.attribute
                                                for t in [attribute.t, *attribute.tensors])]:
        if tensor.data_location == tensor.EXTERNAL or tensor.external_data:
            raise ValueError(f"{path}: tensor {tensor.name!r} is stored in another file (external "
                             f"data); lrpnb reads models held in one file")
    versions = sorted({entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")})
    newest = min(OPSETS[1], onnx_opset_version())
    reads = f"lrpnb reads opsets {OPSETS[0]} to {newest} of ONNX's default domain"
    if len(versions) != 1:
        raise ValueError(f"{path}: the model declares {f'opsets {versions}' if versions else 'no opset'} of the "
                         f"default domain (opset_import); {reads}")
    if not OPSETS[0] <= versions[0] <= newest:
        raise ValueError(f"{path}: opset {versions[0]} is too {'old' if versions[0] < OPSETS[0] else 'new'}; {reads}"
                         + ("; upgrade the onnx package" if newest < versions[0] <= OPSETS[1] else "; export with one "
                            "(torch.onnx.export(..., opset_version=17)) or convert (onnx.version_converter)"))


def read_onnx(path):
    """An ONNX model file as a graph :class:`~lrpnb.Network` (see the module's docstring)."""
    try:
        import onnx
    except ImportError:
        raise ImportError("reading .onnx models needs the onnx package: pip install \"lrpnb[onnx]\"") from None
    path = os.fspath(path)
    try:
        # external data would read other files (any path the model names)
        model = onnx.load(path, load_external_data=False)
    except Exception as error:  # protobuf's DecodeError and friends
        raise ValueError(f"{path}: not a readable ONNX model ({_reason(error)})") from None
    try:
        _check_model(model, path)
        importer = _Importer(model, path)
        net, shape = importer.run(), importer.input_shape
    except _MALFORMED as error:  # outside the nodes: names that are not text (bad UTF-8), other holes
        raise _named(error, path) or ValueError(f"{path}: malformed model ({_reason(error)})") from None
    net.input_shape = shape if len(shape) == 1 else (shape[1], shape[2], shape[0])
    return net
