"""Reading ONNX models (``lrpnb.load("model.onnx")``) into graph networks.

The ONNX graph is read with the ``onnx`` package (``pip install "lrpnb[onnx]"``)
and every node becomes an lrpnb layer, a constant, or a change of layout;
initializers become weights. Layouts are converted once, here, so that no
transpose runs per call:

- ONNX images are NCHW, lrpnb's are NHWC: convolution filters (K, C/g, kh,
  kw) become (kh, kw, C/g, K), and the network takes (N, H, W, C) input
  ((N, 1, L, C) for a 1-d signal (N, C, L): 1-d convolutions and pools are
  their 2-d forms with one row).
- Reshapes, transposes, squeezes, slices and splits of activations move no
  data: the importer records where each ONNX value sits in lrpnb's array
  (``tensors``), and the layer that reads it gets its weights reordered
  (the dense layer after a flattened image), a channel gather in front
  (a channel shuffle, a channel split), or nothing at all (ConvNeXt's
  permutes to channels last and back: lrpnb's NHWC is ONNX's channels last).
- Nodes whose inputs are all constants or shapes are folded at load
  (``folding``): ``x.view(x.size(0), -1)`` is a flattening like any other.
- A BatchNormalization right after a convolution or dense layer (whose
  output nothing else reads) is folded into that layer's weights, as zennit's
  MergeBatchNorm canonizer does; anywhere else it is a BatchNorm layer. A
  constant added after a dense layer or convolution is its bias.
- Identity and Dropout are dropped (no-ops at inference); x * Sigmoid(x) is
  one SiLU, the erf form of GELU one GELU, a ReduceMean over the spatial axes
  a GlobalAveragePool, a zero Pad the padding of the convolution or average
  pool that reads it.

Transformer graphs (Hugging Face's BERT, ViT, GPT-2, LLaMA exported with
``torch.onnx.export(..., dynamo=False, opset_version=17)``) take several
inputs (token ids, an attention mask: integers) and keep their token
tensors in ONNX's own layout; a layer that needs the values in ONNX's order
reads a Rearrange of a transposed, sliced or expanded tensor.

The modules: ``checks`` (operators, opsets, attribute and size checks),
``folding``, ``tensors`` (layouts), ``importer`` (the graph walk), the
operator handlers ``layer_ops``, ``shape_ops``, ``product_ops`` and
``transformer_ops`` (embeddings, products of activations, the attention
softmax, broadcast constants), ``patterns`` (GELU's tanh form, RMSNorm and
LayerNorm written out, found before the walk) and ``mask_paths`` (attention
masks built with comparisons, read as affine functions of the mask).
formats/README.md lists the operators, attributes and opsets accepted.
Anything else, a malformed graph included, is a ValueError that starts with
the file's path and names the node, its operator and what is wrong.
"""
import os

from .checks import MALFORMED, OPSETS, SUPPORTED_OPS, UNSUPPORTED_HINTS, named, reason
from .importer import Importer

__all__ = ["read_onnx", "SUPPORTED_OPS", "UNSUPPORTED_HINTS", "OPSETS"]


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
        raise ValueError(f"{path}: not a readable ONNX model ({reason(error)})") from None
    try:
        _check_model(model, path)
        importer = Importer(model, path)
        net, shape, shapes = importer.run(), importer.input_shape, importer.input_shapes
    except MALFORMED as error:  # outside the nodes: names that are not text (bad UTF-8), other holes
        raise named(error, path) or ValueError(f"{path}: malformed model ({reason(error)})") from None
    if shape is not None:
        net.input_shape = shape
    else:
        net.input_shapes = shapes
    return net
