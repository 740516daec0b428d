"""Operators that are one lrpnb layer each: convolutions, pools, dense
layers, normalisations and activations (the ``LayerOps`` mixin of the
importer)."""
import numpy as np

from ..layers.conv_transpose import ConvTranspose
from ..layers.elementwise import GELU, Clip, HardSigmoid, HardSwish, LeakyReLU
from ..layers.norm import LayerNorm
from ..network import (LRN, AveragePool, BatchNorm, Convolution, GlobalAveragePool, Linear, MaxPool, Rect, Sigmoid,
                       SoftMax, Tanh)
from .tensors import FIRST, SAME

__all__ = ["LayerOps"]

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _window(attrs, name, rank, default, row=1):
    """A 1-d or 2-d window attribute as lrpnb's (rows, columns): a 1-d one gets
    ``row`` for its one row (1 for sizes, strides and dilations; 0 for an
    output padding)."""
    value = tuple(attrs.get(name, (default,) * rank))
    return value if rank == 2 else (row,) + value


class LayerOps:
    def padding(self, node, attrs, rank=2, extra=None):
        """(top, bottom, left, right) from ONNX's pads (begins, then ends; 1-d: (left, right)), auto_pad, and
        the zeros of an ONNX Pad before the node (``extra``)."""
        if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise self.error(node, f"auto_pad {attrs['auto_pad']!r}: only NOTSET and VALID are read (auto_pad "
                                   f"SAME_UPPER/SAME_LOWER is not supported; export with explicit pads)")
        pads = attrs.get("pads", (0,) * 2 * rank) if attrs.get("auto_pad") != "VALID" else (0,) * 2 * rank
        top, left, bottom, right = pads if rank == 2 else (0, pads[0], 0, pads[1])
        if extra is not None:
            top, bottom, left, right = (a + b for a, b in zip((top, bottom, left, right), extra))
        return top, bottom, left, right

    def spatial(self, node, attrs):
        """(the input as a FIRST image, its spatial rank, the zeros of a Pad before it)."""
        source = self.tensor(node, node.input[0])
        extra, source.pads = source.pads, None
        try:
            image = self.image(node, source, (2, 3))
        finally:
            source.pads = extra
        rank = len(image.shape) - 1
        self.window(node, attrs, rank)
        return image, rank, extra

    def op_Conv(self, node, attrs, transpose=False):
        source, rank, extra = self.spatial(node, attrs)
        W = self.constant(node, node.input[1], "the filters", ndim=rank + 2)
        if rank == 1:
            W = W[:, :, None, :]
        channels = W.shape[1] * attrs.get("group", 1) if transpose else W.shape[0]
        B = self.constant(node, node.input[2], "the bias") if len(node.input) > 2 and node.input[2] else \
            np.zeros(channels, dtype=W.dtype)
        if "kernel_shape" in attrs and _window(attrs, "kernel_shape", rank, 1) != W.shape[2:]:
            raise self.error(node, f"kernel_shape {attrs['kernel_shape']} differs from the filters {W.shape}")
        if transpose and extra is not None:
            raise self.error(node, "a transposed convolution of a zero-padded tensor (ONNX Pad) is not supported")
        padding = self.padding(node, attrs, rank, extra)
        options = dict(stride=_window(attrs, "strides", rank, 1), padding=padding,
                       dilation=_window(attrs, "dilations", rank, 1), groups=attrs.get("group", 1))
        try:
            if transpose:
                if "output_shape" in attrs:
                    raise ValueError("the attribute output_shape is not supported; export with output_padding")
                layer = ConvTranspose(W.transpose(2, 3, 1, 0), B, output_padding=_window(
                    attrs, "output_padding", rank, 0, row=0), **options)
            else:
                layer = Convolution(W.transpose(2, 3, 1, 0), B, **options)
        except ValueError as error:
            raise self.error(node, str(error)) from None
        (rows, columns), (h, w) = layer.dilation, W.shape[2:]
        self.check_size(node, ((h - 1) * rows + 1) * ((w - 1) * columns + 1) * W.shape[0] * W.shape[1] * 8,
                        f"the dilated filters (dilations {rows}, {columns})")
        self.layer(node, layer, source, rank)

    def op_ConvTranspose(self, node, attrs):
        self.op_Conv(node, attrs, transpose=True)

    def layer(self, node, layer, source, rank):
        """Add an image layer reading ``source``; its output an ONNX image of the same rank."""
        try:
            out = layer.output_shape((1,) + source.lshape)
        except ValueError as error:
            raise self.error(node, str(error)) from None
        shape = (out[3], out[1], out[2]) if rank == 2 else (out[3], out[2])
        self.add(node, layer, [source], shape, FIRST)

    def pool(self, node, attrs, make):
        if any(d != 1 for d in attrs.get("dilations", (1, 1))):
            raise self.error(node, "dilated pooling is not supported")
        source, rank, extra = self.spatial(node, attrs)
        if extra is not None and node.op_type == "MaxPool":
            raise self.error(node, "a max pool of a zero-padded tensor (ONNX Pad): lrpnb's max pools pad with -inf")
        kernel, stride = _window(attrs, "kernel_shape", rank, 1), _window(attrs, "strides", rank, 1)
        try:
            layer = make(kernel, stride, self.padding(node, attrs, rank, extra), bool(attrs.get("ceil_mode", 0)))
        except (TypeError, ValueError) as error:
            raise self.error(node, str(error)) from None
        self.layer(node, layer, source, rank)

    def op_MaxPool(self, node, attrs):
        if len(node.output) > 1 and self.readers.get(node.output[1]):
            raise self.error(node, "the Indices output is not supported")
        self.pool(node, attrs, lambda kernel, stride, padding, ceil: MaxPool(kernel, stride, padding, ceil_mode=ceil))

    def op_AveragePool(self, node, attrs):
        # zeros of an ONNX Pad are inputs of the average: counted
        counted = bool(attrs.get("count_include_pad", 0))
        source = self.tensor(node, node.input[0])
        if source.pads is not None and any(attrs.get("pads", ())) and not counted:
            raise self.error(node, "an average pool with pads of its own, not counted, after an ONNX Pad")
        counted = counted or source.pads is not None
        self.pool(node, attrs, lambda kernel, stride, padding, ceil: AveragePool(kernel, stride, padding, counted,
                                                                                 ceil_mode=ceil))

    def op_GlobalAveragePool(self, node, attrs):
        source = self.image(node, self.tensor(node, node.input[0]), (2, 3))
        self.layer(node, GlobalAveragePool(), source, len(source.shape) - 1)

    def op_LRN(self, node, attrs):
        source = self.image(node, self.tensor(node, node.input[0]))
        try:
            layer = LRN(attrs["size"], attrs.get("alpha", 1e-4), attrs.get("beta", 0.75), attrs.get("bias", 1.0))
        except ValueError as error:
            raise self.error(node, f"needs a positive size and finite alpha, beta, bias > 0 ({error})") from None
        self.add(node, layer, [source], source.shape, FIRST)

    def op_Softmax(self, node, attrs):
        source = self.tensor(node, node.input[0])
        if len(source.shape) != 1 or attrs.get("axis", -1) not in (-1, 1) or source.kind != SAME:
            raise self.error(node, "only a softmax over the classes of (N, C) scores is supported")
        self.add(node, SoftMax(), [source], source.shape)

    def pointwise(self, node, layer):
        """An element-wise layer: the output keeps the input's layout."""
        source = self.tensor(node, node.input[0])
        if source.pads is not None:
            self.need(node, source, source.kind)
        self.add(node, layer, [source], source.shape)
        self.tensors[node.output[0]] = source.like(self.tensors[node.output[0]].value)

    def op_Relu(self, node, attrs):  # and Tanh, Sigmoid, HardSwish
        self.pointwise(node, dict(Relu=Rect, Tanh=Tanh, Sigmoid=Sigmoid, HardSwish=HardSwish)[node.op_type]())

    op_Tanh = op_Sigmoid = op_HardSwish = op_Relu

    def activation(self, node, make, *arguments):
        try:
            layer = make(*arguments)
        except ValueError as error:
            raise self.error(node, str(error)) from None
        self.pointwise(node, layer)

    def op_Clip(self, node, attrs):
        bounds = [attrs.get("min", -_FLOAT32_MAX), attrs.get("max", _FLOAT32_MAX)]  # before opset 11: attributes
        for k, name in enumerate(node.input[1:3]):
            if name:
                bounds[k] = self.constant(node, name, ("min", "max")[k])
        self.activation(node, Clip, *bounds)

    def op_HardSigmoid(self, node, attrs):
        self.activation(node, HardSigmoid, attrs.get("alpha", 0.2), attrs.get("beta", 0.5))

    def op_LeakyRelu(self, node, attrs):
        self.activation(node, LeakyReLU, attrs.get("alpha", 0.01))

    def op_Gelu(self, node, attrs):
        self.activation(node, GELU, attrs.get("approximate", "none"))

    def op_LayerNormalization(self, node, attrs):
        if len(node.output) > 1 and any(self.readers.get(name) for name in node.output[1:]):
            raise self.error(node, "the mean and inverse deviation outputs are not supported")
        source = self.tensor(node, node.input[0])
        if attrs.get("axis", -1) not in (-1, len(source.shape)):
            raise self.error(node, f"only a normalisation over the last axis is supported, got axis "
                                   f"{attrs['axis']}")
        source = self.need(node, source, SAME, "channels last (the last axis normalised)")
        gamma = self.constant(node, node.input[1], "the scale")
        beta = self.constant(node, node.input[2], "the bias") if len(node.input) > 2 and node.input[2] else None
        width = source.shape[-1] if source.shape else 0
        if gamma.size != width or (beta is not None and beta.size != width):
            raise self.error(node, f"the scale and bias must have one value per feature ({width})")
        self.activation(node, LayerNorm, gamma, beta, attrs.get("epsilon", 1e-5))

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
        if not source.shape or norm.scale.size != source.shape[0]:
            raise self.error(node, f"has {norm.scale.size} channels for an input of "
                                   f"{source.shape[0] if source.shape else 0}")
        target = self.folds_into(node.input[0], source)
        if target is not None:
            # y = (x W + b) scale + shift = x (W scale) + (b scale + shift), per output channel
            layer, dtype = target.layer, target.layer.W.dtype
            layer.W = (layer.W * norm.scale).astype(dtype)
            layer.B = (layer.B * norm.scale + norm.shift).astype(dtype)
            self.alias(node, source)
            return
        if len(source.shape) == 1:
            source, index = self.vector(node, source)
            if index is not None:
                scale, shift = np.ones(source.lshape[0]), np.zeros(source.lshape[0])
                scale[index], shift[index] = norm.scale, norm.shift
                norm.scale, norm.shift = scale, shift
            self.add(node, norm, [source], source.shape)
            self.tensors[node.output[0]] = source.like(self.tensors[node.output[0]].value)
            return
        source = self.image(node, source, (2, 3))
        self.add(node, norm, [source], source.shape, FIRST)

    def folds_into(self, tensor_name, tensor):
        """The Linear or Convolution node whose output ``tensor`` nothing but the current node reads, or None."""
        layer_node = self.by_name.get(tensor.value)  # None for the input
        if layer_node is None or self.readers.get(tensor_name, 0) != 1 or tensor.pads is not None or \
                tensor.kind not in (FIRST, SAME):
            return None
        return layer_node if type(layer_node.layer) in (Linear, Convolution) else None

    def dense(self, node, source, W, B):
        """A dense layer with W (m, n) in ONNX's feature order; on channels-last tensors (..., m) a 1x1
        convolution."""
        if len(source.shape) >= 2 and source.shape[-1] == W.shape[0]:
            source = self.need(node, source, SAME, f"channels last (..., {W.shape[0]})")
            if len(source.shape) != 3:
                raise self.error(node, f"a product over the last axis of a tensor of shape (N, "
                                       f"{', '.join(map(str, source.shape))}): lrpnb reads (N, H, W, C) or (N, D)")
            layer = Convolution(W[None, None], np.broadcast_to(B, (W.shape[1],)))
            self.add(node, layer, [source], source.shape[:-1] + (W.shape[1],), SAME)
            return
        if len(source.shape) != 1 or source.shape[0] != W.shape[0]:
            raise self.error(node, f"expects (N, {W.shape[0]}) features, got (N, "
                                   f"{', '.join(map(str, source.shape))})")
        source, index = self.vector(node, source)
        if index is not None:
            rows = np.zeros((source.lshape[0], W.shape[1]), dtype=W.dtype)
            rows[index] = W
            W = rows
        self.add(node, Linear(W, np.broadcast_to(B, (W.shape[1],))), [source], (W.shape[1],), SAME)

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
        self.token_dense(node, source, W, B.astype(W.dtype))
