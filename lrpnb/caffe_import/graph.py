"""The graph walk: each Caffe layer of the deploy net, in file order, becomes
lrpnb nodes (``layer_map``), reads its weights by its name, and names its
top blobs; in-place layers (top == bottom) give the blob a new version."""
from collections import Counter

import numpy as np

from ..data_io import check_array_size
from ..network import INPUT, Network, Node, printable
from .layer_map import LayerMap
from .parser import blob_array, layer_type

__all__ = ["Builder", "Blob"]

#: layers of training nets that a deploy net ignores (they have no inputs at test time, or compute losses)
IGNORED = {"Data", "ImageData", "HDF5Data", "MemoryData", "DummyData", "WindowData", "Accuracy", "Silence",
           "HDF5Output", "SoftmaxWithLoss", "EuclideanLoss", "HingeLoss", "InfogainLoss", "MultinomialLogisticLoss",
           "SigmoidCrossEntropyLoss", "ContrastiveLoss"}
_TEST = 1  # caffe.Phase.TEST: a deploy net's phase


class Blob:
    """A Caffe blob as lrpnb holds it: the node that computes it (or INPUT), its Caffe shape per sample
    ((C, H, W) or (D,)), and for features flattened from an image, ``flattened``: that image's shape
    (C, H, W) (Caffe flattens (C, H, W), lrpnb (H, W, C): the features come in another order).
    ``folds``: the node's weights may take in a following BatchNorm or Scale (nothing else reads this
    output)."""

    def __init__(self, value, shape, flattened=None, folds=False):
        self.value, self.shape, self.flattened, self.folds = value, tuple(int(s) for s in shape), flattened, folds

    @property
    def lshape(self):
        return (self.shape[1], self.shape[2], self.shape[0]) if len(self.shape) == 3 else self.shape

    @property
    def is_image(self):
        return len(self.shape) == 3


def _included(layer):
    """Whether a layer belongs to the TEST phase's net (its include and exclude rules)."""
    def matches(rule):
        return not rule.HasField("phase") or rule.phase == _TEST
    if layer.include and not any(matches(rule) for rule in layer.include):
        return False
    return not any(matches(rule) for rule in layer.exclude)


class Builder(LayerMap):
    def __init__(self, net, path, weights=None, weights_path=None):
        self.net, self.path, self.weights, self.weights_path = net, path, weights, weights_path
        self.nodes, self.by_name, self.blobs = [], {}, {}
        if net.layer and net.layers:
            raise ValueError(f"{path}: mixes layer {{}} and the old layers {{}}; a network definition uses one")
        self.layers = [layer for layer in (net.layer or net.layers)
                       if _included(layer) and layer_type(layer) not in IGNORED]

    def error(self, layer, message, weights=False):
        where = self.weights_path if weights and self.weights_path else self.path
        return ValueError(f"{where}: layer {printable(layer.name)!r} ({printable(layer_type(layer))}): "
                          f"{printable(message)}")

    # ------------------------------------------------------------ inputs
    def input_blob(self):
        """(name, Caffe shape per sample) of the network's one input."""
        net, inputs = self.net, [(layer, top) for layer in self.layers if layer_type(layer) == "Input"
                                 for top in layer.top]
        if net.input:
            if len(net.input) != 1 or inputs:
                raise ValueError(f"{self.path}: lrpnb explains models with one input, this one declares "
                                 f"{len(net.input) + len(inputs)}")
            if net.input_shape:
                dims = tuple(net.input_shape[0].dim)
            elif len(net.input_dim) == 4:
                dims = tuple(net.input_dim)
            else:
                raise ValueError(f"{self.path}: the input {net.input[0]!r} needs its shape: input_shape {{ dim: "
                                 f"... }} or four input_dim (num, channels, height, width)")
            name = net.input[0]
        elif len(inputs) == 1:
            layer, name = inputs[0]
            shapes = layer.input_param.shape
            if len(shapes) != 1:
                raise self.error(layer, "needs one input_param { shape { dim: ... } }")
            dims = tuple(shapes[0].dim)
        else:
            raise ValueError(f"{self.path}: " + ("no input declared: lrpnb reads deploy definitions, whose input is "
                                                 "declared by input: + input_shape/input_dim or an Input layer"
                                                 if not inputs else f"{len(inputs)} inputs; lrpnb explains models "
                                                 f"with one input"))
        if len(dims) not in (2, 4) or any(d <= 0 for d in dims[1:]):
            raise ValueError(f"{self.path}: the input {name!r} must be (N, C, H, W) or (N, D) with positive sizes, "
                             f"got {dims}")
        check_array_size(int(np.prod(dims[1:], dtype=object)) * 4, self.path, f"one input sample of shape {dims[1:]}")
        return name, dims[1:]

    # ------------------------------------------------------------ weights
    def params(self, layer, expected):
        """The layer's blobs as float32 arrays of the ``expected`` shapes (leading 1s aside: 2014-era blobs are
        4-d): from the weights file by the layer's name, else from the definition itself."""
        if self.weights is not None:
            arrays = self.weights.get(layer.name, (None, []))[1]
        else:
            arrays = [blob_array(blob, f"{self.path}: layer {layer.name!r}", k) for k, blob in enumerate(layer.blobs)]
        if not arrays:
            hint = "" if self.weights is not None else "; pass the .caffemodel (weights=, --weights)"
            raise self.error(layer, f"no weights for this layer{' in the weights file' * bool(self.weights)}{hint}",
                             weights=True)
        if len(arrays) != len(expected):
            raise self.error(layer, f"holds {len(arrays)} blobs, expected {len(expected)} "
                                    f"({', '.join(map(str, expected))})", weights=True)
        out = []
        for k, (array, shape) in enumerate(zip(arrays, expected)):
            if _squeezed(array.shape) != _squeezed(shape):
                raise self.error(layer, f"blob {k} has shape {array.shape}, expected {shape}", weights=True)
            out.append(array.reshape(shape))
        return out

    def no_params(self, layer):
        if self.weights is not None and self.weights.get(layer.name, (None, []))[1]:
            raise self.error(layer, f"the weights file holds {len(self.weights[layer.name][1])} blobs for this "
                                    f"layer, which has none", weights=True)

    # ------------------------------------------------------------ lrpnb nodes
    def add(self, layer, lrpnb_layer, sources, shape, flattened=None, folds=False, suffix=""):
        """A node of ``lrpnb_layer`` reading the Blobs ``sources``; returns its output Blob of Caffe shape
        ``shape``."""
        name = (layer.name or layer_type(layer)) + suffix
        base, k = name, 1
        while name in self.by_name or name == INPUT:
            name, k = f"{base}_{k}", k + 1
        try:
            node = Node(name, lrpnb_layer, [blob.value for blob in sources])
            shapes = [(1,) + blob.lshape for blob in sources]
            lrpnb_layer.output_shape(shapes if lrpnb_layer.arity is None else shapes[0])
        except (TypeError, ValueError) as error:
            raise self.error(layer, str(error)) from None
        self.nodes.append(node)
        self.by_name[name] = node
        return Blob(name, shape, flattened, folds)

    def bottoms(self, layer, count=1):
        """The Blobs a layer reads (``count`` of them; None: one or more)."""
        names = list(layer.bottom)
        if (count is None and not names) or (count is not None and len(names) != count):
            raise self.error(layer, f"reads {len(names)} blobs, expected {count or 'one or more'}")
        missing = [name for name in names if name not in self.blobs]
        if missing:
            raise self.error(layer, f"reads {missing[0]!r}, which no layer before it computes (lrpnb reads deploy "
                                    f"definitions: data layers are ignored)")
        return [self.blobs[name] for name in names]

    def tops(self, layer, blob, count=1):
        if len(layer.top) != count and count is not None:
            raise self.error(layer, f"writes {len(layer.top)} blobs, expected {count}")
        if not layer.top:
            raise self.error(layer, "writes no blob")
        for top in layer.top:
            self.blobs[top] = blob

    # ------------------------------------------------------------ the graph
    def run(self):
        name, shape = self.input_blob()
        self.blobs[name] = Blob(INPUT, shape)
        self.input_shape = self.blobs[name].lshape
        # how many layers read each version of a blob: a BatchNorm folds into the layer before it only where
        # it is that output's one reader
        self.readers, version = Counter(), Counter()
        computing = [layer for layer in self.layers if layer_type(layer) != "Input"]
        for layer in computing:
            self.readers.update((bottom, version[bottom]) for bottom in layer.bottom)
            version.update(layer.top)
        self.version, last = Counter(), None
        for layer in computing:
            kind = layer_type(layer)
            handler = getattr(self, "layer_" + kind, None)
            if handler is None:
                raise self.error(layer, f"lrpnb does not read this layer type; it reads {', '.join(self.SUPPORTED)}")
            handler(layer)
            self.version.update(layer.top)
            last = layer
        if last is None:
            raise ValueError(f"{self.path}: no layers that compute anything")
        return self.network(last)

    def read_once(self, layer, blob):
        """Whether ``layer`` is the one reader of its first bottom's current version."""
        bottom = layer.bottom[0]
        return blob.folds and self.readers[(bottom, self.version[bottom])] == 1

    def network(self, last):
        out = self.blobs[last.top[0]]
        if out.value == INPUT:
            raise ValueError(f"{self.path}: the output {last.top[0]!r} is the input itself: no layer computes it")
        if out.is_image or out.flattened is not None:
            what = f"an image of shape {out.shape}" if out.is_image else "an image flattened in Caffe's order"
            raise ValueError(f"{self.path}: the output {last.top[0]!r} (layer {last.name!r}) is {what}; lrpnb "
                             f"explains class scores (N, C)")
        end = next(k for k, node in enumerate(self.nodes) if node.name == out.value)
        needed, keep = {out.value}, []
        for node in self.nodes[end::-1]:
            if node.name in needed:
                keep.append(node)
                needed.update(node.inputs)
        try:
            net = Network(keep[::-1])
        except ValueError as error:
            raise ValueError(f"{self.path}: {printable(error)}") from None
        net.input_shape = self.input_shape
        return net


def _squeezed(shape):
    shape = tuple(shape)
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape
