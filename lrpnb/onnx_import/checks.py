"""The ONNX importer's checks: which operators and opsets it reads, the
advice for the others, and the checks of attributes, constants, sizes and
names every operator handler uses (the ``Checks`` mixin)."""
import os

import numpy as np

from ..data_io import check_array_size
from ..network import printable

__all__ = ["SUPPORTED_OPS", "UNSUPPORTED_HINTS", "OPSETS", "MALFORMED", "Checks", "reason", "named"]

SUPPORTED_OPS = ("Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape",
                 "Conv", "ConvTranspose", "Cos", "Div", "Dropout", "Equal", "Erf", "Expand", "Flatten", "Gather",
                 "Gelu", "Gemm", "GlobalAveragePool", "HardSigmoid", "HardSwish", "Identity", "LayerNormalization",
                 "LeakyRelu", "LRN", "MatMul", "MaxPool", "Mul", "Neg", "Pad", "Pow", "Range", "Reciprocal",
                 "ReduceMean", "Relu", "Reshape", "Shape", "Sigmoid", "Sin", "Slice", "Softmax", "Split", "Sqrt",
                 "Squeeze", "Sub", "Tanh", "Transpose", "Trilu", "Unsqueeze", "Where")

# The default domain's opsets whose operators are read here as ONNX defines them: 7 gave Add and Gemm
# numpy's broadcasting and dropped `is_test`; up to 28 these operators gained types, and attributes
# checked here (pool `dilations`, Reshape `allowzero`, `training_mode`). Capped by the onnx package.
OPSETS = (7, 28)

_NORMALISE = ("if it normalises the input ((x - mean) / std in forward()), export the model without it and give "
              "lrpnb explain --mean and --std")
UNSUPPORTED_HINTS = {  # op_type -> the change at export that avoids it
    "Sub": _NORMALISE, "Div": _NORMALISE, "Mul": _NORMALISE,
    "Pad": "give the convolution or pooling its zero padding (padding=p) instead of F.pad or nn.ZeroPad2d",
    "ReduceMean": "average with nn.AdaptiveAvgPool2d(1) and torch.flatten(x, 1) instead of x.mean((2, 3))",
    "GlobalMaxPool": "use nn.MaxPool2d(kernel_size=<the feature map's size>) instead of nn.AdaptiveMaxPool2d(1)",
    "LogSoftmax": "export the model without its final log_softmax: lrpnb explains the class scores before it"}

# the operators that read rows merged with the batch axis (GPT-2's x.view(-1, D) before a dense layer)
_READS_MERGED = ("Gemm", "MatMul", "Add", "Reshape", "Identity", "Cast", "Dropout")
# what malformed nodes and tensors raise inside onnx, numpy and the handlers
MALFORMED = (IndexError, KeyError, TypeError, AttributeError, OverflowError, MemoryError, ValueError)
# the attributes read, by kind: int, float, str, or a list of ints of these lengths (1-d or 2-d windows; the
# handler checks the length against the tensor's spatial axes)
_ATTRIBUTES = dict.fromkeys(("axis", "group", "size", "transA", "transB", "ceil_mode", "count_include_pad",
                             "allowzero", "spatial", "training_mode", "keepdims", "to", "start", "end", "fmod",
                             "noop_with_empty_axes", "stash_type"), int) | {
    "auto_pad": str, "mode": str, "approximate": str, "kernel_shape": (1, 2), "strides": (1, 2),
    "dilations": (1, 2), "pads": (2, 4), "output_padding": (1, 2)} | dict.fromkeys(
    ("alpha", "beta", "bias", "epsilon", "min", "max"), float)
# the inputs an operator needs (1 when not listed; Add and Concat need all theirs named), its required attribute
INPUTS = {"Constant": 0, "Conv": 2, "ConvTranspose": 2, "Gemm": 2, "MatMul": 2, "Reshape": 2, "Add": 2,
          "BatchNormalization": 5, "Mul": 2, "Sub": 2, "Div": 2, "Pow": 2, "Equal": 2, "Where": 3, "Expand": 2,
          "Gather": 2, "Range": 3, "Mod": 2, "LayerNormalization": 2}
# the attributes that are flags: 0 or 1
_FLAGS = ("ceil_mode", "count_include_pad", "transA", "transB", "allowzero", "training_mode", "keepdims",
          "noop_with_empty_axes")
_REQUIRED = {"MaxPool": "kernel_shape", "AveragePool": "kernel_shape", "LRN": "size", "Concat": "axis"}


def reason(error):
    """An exception as one short line: its type and message."""
    return f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"


def named(error, path):
    """``error`` if it is a ValueError that starts with ``path``, else None."""
    return error if isinstance(error, ValueError) and str(error).startswith(f"{path}: ") else None


class Checks:
    """The importer's checks; needs ``path``, ``helper``, ``numpy_helper``, ``constants`` and ``tensors``."""

    def check_size(self, node, nbytes, what):
        """Refuse an array sized from declared shapes or attributes beyond lrpnb.data_io's limit."""
        try:
            check_array_size(int(nbytes), self.path, what, os.path.getsize(self.path))
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
        except MALFORMED as error:
            message = (f"tensor {tensor.name!r} of dims {list(tensor.dims)[:8]} is unreadable ({reason(error)}); "
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
            except MALFORMED as error:
                raise self.error(node, f"attribute {attr.name!r} is unreadable ({reason(error)})") from None
            kind = _ATTRIBUTES.get(attr.name)
            if kind is str and isinstance(value, bytes):
                value = attrs[attr.name] = value.decode("utf-8", "replace")
            ok = type(value) in (int, float) and np.isfinite(value) if kind is float else type(value) is kind or (
                isinstance(kind, tuple) and isinstance(value, list) and len(value) in kind
                and all(type(v) is int for v in value))
            if kind is not None and not ok:
                want = {int: "an integer", float: "a finite number", str: "a string"}.get(
                    kind, f"{kind[-1] if isinstance(kind, tuple) else kind} integers")
                raise self.error(node, f"attribute {attr.name} must be {want}, got {value!r:.80}")
            if attr.name in _FLAGS and value not in (0, 1):
                raise self.error(node, f"attribute {attr.name} must be 0 or 1, got {value}")
        if node.op_type in _REQUIRED and _REQUIRED[node.op_type] not in attrs:
            raise self.error(node, f"needs the attribute {_REQUIRED[node.op_type]!r}")
        return attrs

    def window(self, node, attrs, rank):
        """Check that the window attributes hold ``rank`` values (``2 rank`` pads): 1-d or 2-d windows."""
        for name in ("kernel_shape", "strides", "dilations", "output_padding", "pads"):
            count = rank * (2 if name == "pads" else 1)
            if name in attrs and len(attrs[name]) != count:
                raise self.error(node, f"attribute {name} must be {count} integers, got {attrs[name]!r:.80}")

    def constant(self, node, name, what, ndim=None):
        if name not in self.constants:
            raise self.error(node, f"{what} ({name!r}) must be a constant (an initializer); lrpnb computes "
                                   f"no weights at run time")
        value = np.asarray(self.constants[name])
        finite = value.dtype.kind in "biu" or bool(np.isfinite(value).all())
        if (ndim is not None and value.ndim != ndim) or not finite:
            raise self.error(node, f"{what} ({name!r}) must be finite numbers{f' in {ndim} dimensions' * bool(ndim)}, "
                                   f"got shape {value.shape}{'' if finite else ' with NaN or inf'}")
        return value

    def tensor(self, node, name):
        if name in self.patterns:
            raise self.error(node, f"reads {name!r}, a step of the {self.patterns[name][0]} pattern, which lrpnb "
                                   f"reads only whole (the steps of an exported torch function)")
        if name in self.constants and name not in self.tensors:
            raise self.error(node, f"reads the constant {name!r} where lrpnb reads activations (computed from the "
                                   f"model's input); lrpnb folds constants through the operators of "
                                   f"onnx_import.folding only")
        if name not in self.tensors:
            raise self.error(node, f"reads {name!r}, which is neither the model's input nor the output of "
                                   f"an earlier node")
        tensor = self.tensors[name]
        if tensor.merged and node.op_type not in _READS_MERGED:
            raise self.error(node, f"reads {name!r}, whose rows ONNX merged with the batch axis (a reshape to "
                                   f"(-1, {tensor.shape[-1]})); lrpnb reads such rows only in a dense layer (Gemm, "
                                   f"MatMul), a bias and the reshape back")
        return tensor
