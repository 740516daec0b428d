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

formats/README.md lists the operators and attributes accepted. Anything
else is a ValueError naming the node, its operator and the supported ones.
"""
import os

import numpy as np

from .data_io import check_array_size
from .network import (INPUT, Add, AveragePool, BatchNorm, Concat, Convolution, Flatten, GlobalAveragePool,
                      Linear, LRN, MaxPool, Network, Node, Rect, Sigmoid, SoftMax, Tanh)

__all__ = ["read_onnx", "SUPPORTED_OPS"]

SUPPORTED_OPS = ("Add", "AveragePool", "BatchNormalization", "Concat", "Constant", "Conv", "Dropout", "Flatten",
                 "Gemm", "GlobalAveragePool", "Identity", "LRN", "MatMul", "MaxPool", "Relu", "Reshape", "Sigmoid",
                 "Softmax", "Tanh")


class _Tensor:
    """What the importer knows of an ONNX tensor: the lrpnb value that holds
    it (a node name or 'input'), its ONNX shape without the batch axis, and
    for features flattened from an image, ``order[i]``: the ONNX feature at
    lrpnb's position i (None where the orders agree)."""

    def __init__(self, value, shape, order=None):
        self.value, self.shape, self.order = value, tuple(shape), order


class _Importer:
    def __init__(self, model, path):
        from onnx import numpy_helper

        self.path = path
        self.graph = model.graph
        self.constants = {init.name: numpy_helper.to_array(init) for init in self.graph.initializer}
        self.numpy_helper = numpy_helper
        self.tensors = {}
        self.nodes = []
        self.by_name = {}  # lrpnb node name -> Node
        self.readers = {}  # tensor name -> how many nodes read it
        for node in self.graph.node:
            for name in node.input:
                self.readers[name] = self.readers.get(name, 0) + 1
        for output in self.graph.output:
            self.readers[output.name] = self.readers.get(output.name, 0) + 1

    # ------------------------------------------------------------ helpers
    def check_size(self, node, nbytes, what):
        """Refuse an array sized from declared shapes or attributes alone
        beyond lrpnb.data_io's size limit for a file of this model's size."""
        try:
            check_array_size(nbytes, self.path, what, os.path.getsize(self.path))
        except ValueError as error:
            raise self.error(node, str(error).removeprefix(f"{self.path}: ")) from None

    def error(self, node, message):
        name = node.name or (node.output[0] if node.output else "?")
        return ValueError(f"{self.path}: node {name!r} ({node.op_type}): {message}")

    def attributes(self, node):
        from onnx import helper

        return {attr.name: helper.get_attribute_value(attr) for attr in node.attribute}

    def constant(self, node, name, what):
        if name not in self.constants:
            raise self.error(node, f"{what} ({name!r}) must be a constant (an initializer); lrpnb computes "
                                   f"no weights at run time")
        return np.asarray(self.constants[name])

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

    def producer(self, tensor):
        """The lrpnb node that outputs ``tensor``, or None for the input."""
        return self.by_name.get(tensor.value)

    def image_check(self, node, tensor):
        if len(tensor.shape) != 3:
            raise self.error(node, f"expects an image (N, C, H, W), got a tensor of shape "
                                   f"(N, {', '.join(map(str, tensor.shape))})")

    # ------------------------------------------------------------ the graph
    def run(self):
        inputs = [i for i in self.graph.input if i.name not in self.constants]
        if len(inputs) != 1:
            raise ValueError(f"{self.path}: lrpnb explains models with one input, this one has "
                             f"{len(inputs)}: {', '.join(i.name for i in inputs)}")
        dims = inputs[0].type.tensor_type.shape.dim
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)[1:]
        if len(shape) not in (1, 3) or any(s is None or s <= 0 for s in shape):
            raise ValueError(f"{self.path}: the input {inputs[0].name!r} must be (N, C, H, W) or (N, D) with "
                             f"fixed sizes besides N, got {tuple(shape)}")
        self.input_shape = shape
        self.tensors[inputs[0].name] = _Tensor(INPUT, shape)
        for node in self.graph.node:
            handler = getattr(self, "op_" + node.op_type, None)
            if handler is None or node.domain not in ("", "ai.onnx"):
                raise self.error(node, f"unsupported operator; lrpnb imports {', '.join(SUPPORTED_OPS)}")
            handler(node, self.attributes(node))
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
        return Network(keep[::-1])

    # ------------------------------------------------------------ operators
    def op_Constant(self, node, attrs):
        if "value" not in attrs:
            raise self.error(node, "only Constant nodes with a 'value' tensor are supported")
        self.constants[node.output[0]] = self.numpy_helper.to_array(attrs["value"])

    def alias(self, node):
        self.tensors[node.output[0]] = self.tensor(node, node.input[0])

    def op_Identity(self, node, attrs):
        if node.input[0] in self.constants:  # exporters share equal weights through Identity
            self.constants[node.output[0]] = self.constants[node.input[0]]
            return
        self.alias(node)

    def op_Dropout(self, node, attrs):
        if len(node.output) > 1 and self.readers.get(node.output[1]):
            raise self.error(node, "the dropout mask output is used; at inference there is none")
        self.alias(node)

    def elementwise(self, node, layer):
        source = self.tensor(node, node.input[0])
        self.add(node, layer, [source], source.shape, source.order)

    def op_Relu(self, node, attrs):
        self.elementwise(node, Rect())

    def op_Tanh(self, node, attrs):
        self.elementwise(node, Tanh())

    def op_Sigmoid(self, node, attrs):
        self.elementwise(node, Sigmoid())

    def op_LRN(self, node, attrs):
        source = self.tensor(node, node.input[0])
        self.image_check(node, source)
        try:
            layer = LRN(int(attrs["size"]), attrs.get("alpha", 1e-4), attrs.get("beta", 0.75), attrs.get("bias", 1.0))
        except (KeyError, ValueError) as error:
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
        W = self.constant(node, node.input[1], "the filters")
        if W.ndim != 4:
            raise self.error(node, f"only 2-d convolutions are supported, the filters have shape {W.shape}")
        K = W.shape[0]
        B = self.constant(node, node.input[2], "the bias") if len(node.input) > 2 and node.input[2] else \
            np.zeros(K, dtype=W.dtype)
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
            raise self.error(node, "auto_pad SAME_UPPER/SAME_LOWER is not supported; export with explicit pads")
        if "kernel_shape" in attrs and tuple(attrs["kernel_shape"]) != W.shape[2:]:
            raise self.error(node, f"kernel_shape {attrs['kernel_shape']} differs from the filters {W.shape}")
        top, left, bottom, right = attrs.get("pads", (0, 0, 0, 0))
        try:
            layer = Convolution(W.transpose(2, 3, 1, 0), B, stride=tuple(attrs.get("strides", (1, 1))),
                                padding=(top, bottom, left, right), dilation=tuple(attrs.get("dilations", (1, 1))),
                                groups=int(attrs.get("group", 1)))
            out = layer.output_shape((1,) + source.shape[1:] + source.shape[:1])
        except ValueError as error:
            raise self.error(node, str(error)) from None
        (rows, columns), (h, w) = layer.dilation, W.shape[2:]
        self.check_size(node, ((h - 1) * rows + 1) * ((w - 1) * columns + 1) * W.shape[0] * W.shape[1] * 8,
                        f"the dilated filters (dilations {rows}, {columns})")
        self.add(node, layer, [source], (out[3], out[1], out[2]))

    def pool_options(self, node, attrs):
        if attrs.get("ceil_mode", 0):
            raise self.error(node, "ceil_mode=1 is not supported")
        if any(d != 1 for d in attrs.get("dilations", (1, 1))):
            raise self.error(node, "dilated pooling is not supported")
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
            raise self.error(node, "auto_pad SAME_UPPER/SAME_LOWER is not supported; export with explicit pads")
        kernel = tuple(attrs["kernel_shape"])
        if len(kernel) != 2:
            raise self.error(node, f"only 2-d pooling is supported, got kernel_shape {kernel}")
        top, left, bottom, right = attrs.get("pads", (0, 0, 0, 0))
        return kernel, tuple(attrs.get("strides", (1, 1))), (top, bottom, left, right)

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
            self.alias(node)
            return
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
        target = [int(v) for v in self.constant(node, node.input[1], "the shape").ravel()]
        size = int(np.prod(source.shape))
        if len(target) != 2 or target[0] not in (0, -1, 1) or target[1] not in (-1, size) \
                or (target[0] == -1 and target[1] == -1):
            raise self.error(node, f"only a reshape to (N, features) is supported, got shape {target}")
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
        W = self.constant(node, node.input[1], "the weights")
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
        W = self.constant(node, node.input[1], "the second factor")
        if W.ndim != 2:
            raise self.error(node, f"the second factor must be a matrix, got shape {W.shape}")
        self.dense(node, source, W, np.zeros(W.shape[1], dtype=W.dtype))

    def folds_into(self, tensor_name, tensor):
        """The Linear or Convolution node whose output ``tensor`` nothing
        but the current node reads, or None."""
        layer_node = self.producer(tensor)
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
            # one value per output channel, on the channel axis: last for features,
            # the third from last (C of C, H, W) for images
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
        if attrs.get("axis") not in (1, -len(sources[0].shape) - 1) or any(s.order is not None for s in sources):
            raise self.error(node, "only a concatenation along the channels (axis 1) is supported")
        if any(s.shape[1:] != sources[0].shape[1:] for s in sources):
            raise self.error(node, "the inputs differ in more than their channels")
        shape = (sum(s.shape[0] for s in sources),) + sources[0].shape[1:]
        self.add(node, Concat(), sources, shape)

    def op_BatchNormalization(self, node, attrs):
        if len(node.output) > 1 and any(self.readers.get(name) for name in node.output[1:]):
            raise self.error(node, "training-mode outputs (running mean and variance) are not supported")
        source = self.tensor(node, node.input[0])
        gamma, beta, mean, var = (self.constant(node, name, what).astype(np.float64) for name, what in
                                  zip(node.input[1:5], ("scale", "bias", "mean", "var")))
        eps = float(attrs.get("epsilon", 1e-5))
        try:
            norm = BatchNorm(gamma, beta, mean, var, eps)
        except ValueError as error:
            raise self.error(node, str(error)) from None
        if norm.scale.size != source.shape[0]:
            raise self.error(node, f"has {norm.scale.size} channels for an input of {source.shape[0]}")
        target = self.folds_into(node.input[0], source)
        if target is not None:
            # y = (x W + b) scale + shift = x (W scale) + (b scale + shift), per output channel
            layer = target.layer
            dtype = layer.W.dtype
            layer.W = (layer.W * norm.scale).astype(dtype)
            layer.B = (layer.B * norm.scale + norm.shift).astype(dtype)
            self.tensors[node.output[0]] = source
            return
        if source.order is not None:
            norm.scale, norm.shift = norm.scale[source.order], norm.shift[source.order]
        self.add(node, norm, [source], source.shape, source.order)


def _refuse_external_data(model, path):
    """Refuse tensors stored outside the model file (external data): lrpnb
    reads the file it was given, nothing the file names."""
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        for attribute in node.attribute:
            tensors += ([attribute.t] if attribute.HasField("t") else []) + list(attribute.tensors)
    for tensor in tensors:
        if tensor.data_location == tensor.EXTERNAL or tensor.external_data:
            raise ValueError(f"{path}: tensor {tensor.name!r} is stored in another file (external "
                             f"data); lrpnb reads models held in one file")


def read_onnx(path):
    """An ONNX model file as a graph :class:`~lrpnb.Network` (see the module's docstring)."""
    try:
        import onnx
    except ImportError:
        raise ImportError("reading .onnx models needs the onnx package: pip install \"lrpnb[onnx]\"") from None
    try:
        # external data would read other files (any path the model names)
        model = onnx.load(os.fspath(path), load_external_data=False)
    except Exception as error:  # protobuf's DecodeError and friends
        raise ValueError(f"{os.fspath(path)}: not a readable ONNX model ({type(error).__name__}: "
                         f"{str(error)[:200]})") from None
    _refuse_external_data(model, os.fspath(path))
    importer = _Importer(model, os.fspath(path))
    net = importer.run()
    shape = importer.input_shape
    net.input_shape = shape if len(shape) == 1 else (shape[1], shape[2], shape[0])
    return net
