"""The graph walk: each ONNX node in turn is folded (constants), mapped onto
the layout of the tensors it reads (reshapes, transposes, slices), or made
an lrpnb layer by its operator's handler (``layer_ops``, ``shape_ops``,
``product_ops``)."""
from collections import Counter

import numpy as np

from ..layers.channels import GatherChannels
from ..layers.tokens import Rearrange, Reshape
from ..network import INPUT, Flatten, Network, Node, printable
from .checks import INPUTS, MALFORMED, SUPPORTED_OPS, UNSUPPORTED_HINTS, Checks, named, reason
from .folding import BATCH, FOLDABLE, fold
from .layer_ops import LayerOps
from .mask_paths import MaskPaths
from .product_ops import ProductOps
from .shape_ops import ShapeOps
from .patterns import Patterns
from .tensors import FIRST, INDEX, SAME, Tensor, channel_gather, first_shape, gather_index
from .transformer_ops import TransformerOps

__all__ = ["Importer"]

_VARIADIC = ("Add", "Concat", "Max", "Min")


class Importer(Checks, Patterns, MaskPaths, TransformerOps, LayerOps, ShapeOps, ProductOps):
    def __init__(self, model, path):
        from onnx import TensorProto, helper, numpy_helper

        self.path, self.graph, self.numpy_helper, self.helper = path, model.graph, numpy_helper, helper
        self.opsets = list(model.opset_import)
        self.TensorProto, self.constants, self.tensors, self.nodes, self.by_name = TensorProto, {}, {}, [], {}
        # constants computed from the batch size (folding.BATCH), and the steps of multi-node patterns
        self.batched, self.patterns = set(), {}
        # the outputs of Scale layers of one value: name -> (the scaled tensor's name, the factor)
        self.scaled = {}
        for init in self.graph.initializer:
            if init.name in self.constants:
                raise ValueError(f"{path}: two initializers are named {init.name!r}; tensor names must be unique")
            self.constants[init.name] = self.array(init)
        # tensor name -> how many nodes (and graph outputs) read it
        self.readers = Counter([i for n in self.graph.node for i in n.input] + [o.name for o in self.graph.output])
        # the graph's inputs by their lrpnb names, those explained (float data, token ids), the nodes read as steps
        # of a multi-node pattern (skipped by the walk)
        self.input_names, self.explained, self.skip = [], set(), set()
        # integer inputs read by embedding lookups -> the rows of the largest table (the token ids read the
        # vocabulary; token types and positions, smaller tables, are not explained)
        self.embedded = {}

    # ------------------------------------------------------------ lrpnb nodes
    def add(self, node, layer, inputs, shape, kind=None, index=None, suffix=""):
        """Append an lrpnb node for ONNX ``node`` reading the Tensors ``inputs``; its output, of ONNX shape
        ``shape`` (FIRST for images, SAME otherwise unless ``kind`` says), becomes ``node``'s first output
        (unless ``suffix`` names a helper node). Returns the new Tensor."""
        name = (node.name or node.output[0]) + suffix
        base, k = name, 1
        while name in self.by_name or name == INPUT or name in self.input_names:
            name, k = f"{base}_{k}", k + 1
        try:
            made = Node(name, layer, [t.value for t in inputs])
            in_shapes = [(1,) + t.lshape for t in inputs]
            lshape = layer.output_shape(in_shapes if layer.arity is None else in_shapes[0])[1:]
        except (TypeError, ValueError) as error:
            raise self.error(node, str(error)) from None
        self.nodes.append(made)
        self.by_name[name] = made
        kind = kind or (FIRST if len(shape) in (2, 3) and first_shape(tuple(shape)) == tuple(lshape) else SAME)
        tensor = Tensor(name, lshape, shape, kind, index)
        if not suffix:
            self.tensors[node.output[0]] = tensor
        return tensor

    def need(self, node, tensor, kind, what="an image (N, C, H, W)"):
        """``tensor`` laid out as ``kind`` (FIRST: an ONNX image over an lrpnb image; SAME: the lrpnb array
        itself), with a GatherChannels in front where it is a selection of channels; else an error."""
        if tensor.pads is not None:
            raise self.error(node, "reads a zero-padded tensor (ONNX Pad); lrpnb folds such padding into a "
                                   "convolution or average pool that reads it, nothing else")
        if tensor.kind == kind:
            return tensor
        if tensor.kind == INDEX:
            channels = channel_gather(tensor, kind)
            if channels is not None:
                return self.add(node, GatherChannels(channels), [tensor], tensor.shape, kind, suffix="/channels")
        if kind == FIRST:  # images are read in place or through a channel gather, never copied
            ranks = "1, 2"
            raise self.error(node, f"expects {what}, got a tensor of shape (N, {', '.join(map(str, tensor.shape))}) "
                                   f"whose values lrpnb cannot lay out so (its layout: {tensor.kind}; {ranks} "
                                   f"spatial axes, channels reordered or selected)")
        return self.rearrange(node, tensor, kind)

    def rearrange(self, node, tensor, kind=SAME):
        """``tensor``'s values copied into a ``kind`` layout: a Reshape where the lrpnb array already holds them
        in that order, else a Rearrange."""
        lshape = first_shape(tensor.shape) if kind == FIRST else tensor.shape
        self.check_size(node, int(np.prod(tensor.shape)) * 8, f"the layout of a tensor of shape {tensor.shape}")
        index = gather_index(tensor, kind, lshape)
        if index.size == int(np.prod(tensor.lshape)) and np.array_equal(index, np.arange(index.size)):
            layer = Reshape(lshape)
        else:
            layer = Rearrange(index, lshape)
        return self.add(node, layer, [tensor], tensor.shape, kind, suffix="/layout")

    def image(self, node, tensor, ranks=(3,)):
        """``tensor`` as a FIRST image of ONNX rank in ``ranks`` (per sample)."""
        if len(tensor.shape) not in ranks:
            want = " or ".join({2: "(N, C, L)", 3: "(N, C, H, W)"}[r] for r in ranks)
            raise self.error(node, f"expects an image {want}, got a tensor of shape "
                                   f"(N, {', '.join(map(str, tensor.shape))})")
        return self.need(node, tensor, FIRST)

    def vector(self, node, tensor):
        """(Tensor of an lrpnb (N, D) array, index): ``index[j]`` the lrpnb feature holding ONNX feature j, None
        where they agree; a Flatten in front where the lrpnb array is an image."""
        if len(tensor.shape) != 1:
            raise self.error(node, f"expects features (N, D), got a tensor of shape "
                                   f"(N, {', '.join(map(str, tensor.shape))})")
        if tensor.pads is not None:
            self.need(node, tensor, SAME)
        index = None if tensor.kind == SAME else tensor.index
        if index is not None and len(tensor.lshape) != 1 and index.size < int(np.prod(tensor.lshape)):
            # a few values of a larger array (BERT's first token): copied out, not read through zero weights
            return self.rearrange(node, tensor), None
        if len(tensor.lshape) != 1:
            flat = self.add(node, Flatten(), [tensor], (int(np.prod(tensor.lshape)),), SAME, suffix="/flatten")
            index = index if index is not None else np.arange(flat.shape[0])
            tensor = Tensor(flat.value, flat.lshape, tensor.shape, INDEX, index)
        if index is not None and np.array_equal(index, np.arange(tensor.lshape[0])):
            return Tensor(tensor.value, tensor.lshape, tensor.shape, SAME), None
        return tensor, index

    def alias(self, node, tensor=None):
        self.tensors[node.output[0]] = tensor or self.tensor(node, node.input[0])

    # ------------------------------------------------------------ the graph
    def run(self):
        inputs = [i for i in self.graph.input if i.name not in self.constants]
        if not inputs:
            raise ValueError(f"{self.path}: the model has no input (every graph input is an initializer)")
        integer = [self.integer_input(i) for i in inputs]
        # one image or feature input keeps the name 'input' (as every one-input network); several inputs, and
        # token ids, are named as in the graph
        single = len(inputs) == 1 and not integer[0]
        # a fixed batch size of the input: folded shapes may name it (torch folds the shapes of static inputs)
        dims = inputs[0].type.tensor_type.shape.dim
        self.batch = dims[0].dim_value if dims and dims[0].HasField("dim_value") else None
        self.input_shapes = {}
        for graph_input, whole in zip(inputs, integer):
            self.declare_input(graph_input, INPUT if single else graph_input.name, whole)
        # each tensor is defined once: a second definition would silently replace the first
        defined = dict.fromkeys(self.constants, "an initializer") | dict.fromkeys(
            [i.name for i in inputs], "the model's input")
        for node in self.graph.node:
            if not node.output or not node.output[0]:
                raise self.error(node, "has no output")
            for name in filter(None, node.output):
                if name in defined:
                    raise self.error(node, f"redefines {name!r}, already {defined[name]}; tensor names must be unique")
                defined[name] = f"an output of node {node.name or node.output[0]!r}"
        self.input_shape = self.input_shapes[INPUT] if single else None
        self.find_patterns()
        self.find_mask_paths(inputs)
        for node in self.graph.node:
            if node.output[0] in self.skip:
                continue
            try:
                if node.output[0] in self.mask_at:
                    self.mask_layers(node)
                if node.output[0] in self.pattern_at:
                    self.pattern_layer(node)
                else:
                    self.run_node(node)
            except MALFORMED as error:  # the last line of defence: a hole in the checks is still this file's error
                raise named(error, self.path) or self.error(node, f"malformed node ({reason(error)})") from None
        return self.network()

    def integer_input(self, graph_input):
        """Whether a graph input holds integers (token ids, an attention mask)."""
        elem = graph_input.type.tensor_type.elem_type
        try:
            return self.helper.tensor_dtype_to_np_dtype(elem).kind in "biu"
        except (KeyError, TypeError, ValueError):
            return False

    def declare_input(self, graph_input, name, integer):
        """The Tensor of a graph input: images (N, C, H, W) or (N, C, L) and features (N, D) as ever; integer
        inputs (N, ...) (token ids (N, T), masks) in their own layout."""
        dims = graph_input.type.tensor_type.shape.dim
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)[1:]
        if not dims:
            raise ValueError(f"{self.path}: the input {graph_input.name!r} is a scalar; lrpnb reads batches (N, ...) "
                             f"(a causal LM's logits_to_keep becomes such an input: export a module that returns "
                             f"model(input_ids=..., attention_mask=...).logits)")
        if any(s is None or s <= 0 for s in shape) or not (integer or len(shape) in (1, 2, 3)) or not shape:
            want = "(N, T) token ids or (N, ...) integers" if integer else "(N, C, H, W), (N, C, L) or (N, D)"
            raise ValueError(f"{self.path}: the input {graph_input.name!r} must be {want} with fixed sizes "
                             f"besides N, got {tuple(shape)}")
        if integer or len(shape) == 1 or (len(shape) == 2 and self.read_as_tokens(graph_input.name)):
            lshape, kind = shape, SAME
        else:
            lshape, kind = first_shape(shape), FIRST
        if not integer:
            self.explained.add(name)
        self.input_names.append(name)
        self.input_shapes[name] = lshape
        self.tensors[graph_input.name] = Tensor(name, lshape, shape, kind)

    def read_as_tokens(self, name):
        """Whether a float input (N, A, B) is a sequence of vectors (N, T, D) in ONNX's own layout (it reaches a
        dense product, a normalisation over its last axis, a softmax or a transpose first) rather than a 1-d
        signal (N, C, L) (it reaches a convolution or a pool first, or nothing decides): the first deciding
        readers after element-wise steps."""
        passing = {"Add", "Sub", "Mul", "Div", "Relu", "Identity", "Cast", "Dropout", "Clip", "Tanh", "Sigmoid",
                   "LeakyRelu", "Erf", "Neg"}
        tokens = {"MatMul", "Gemm", "LayerNormalization", "Softmax", "Transpose", "ReduceMean", "Split", "Slice",
                  "Gather", "Concat"}
        names, seen = [name], {name}
        while names:
            readers = [n for n in self.graph.node if any(i in names for i in n.input)]
            if any(n.op_type in tokens for n in readers):
                return True
            if any(n.op_type not in passing for n in readers):
                return False
            names = [o for n in readers for o in n.output if o and o not in seen]
            seen.update(names)
        return False

    def network(self):
        if len(self.graph.output) != 1:
            raise ValueError(f"{self.path}: lrpnb explains models with one output, this one has "
                             f"{len(self.graph.output)}")
        out = self.tensors.get(self.graph.output[0].name)
        if out is None:
            raise ValueError(f"{self.path}: the output {self.graph.output[0].name!r} is not computed by the graph")
        if out.value in self.input_names:
            raise ValueError(f"{self.path}: the output {self.graph.output[0].name!r} is the input itself (at most "
                             f"reshaped): no layer computes it; lrpnb explains the class scores (N, C) of a network")
        if len(out.shape) == 1 and out.kind == INDEX and out.value != INPUT:
            producer = next(node for node in self.graph.node if self.graph.output[0].name in node.output)
            flat, index = self.vector(producer, out)
            out = flat if index is None else out
        if len(out.shape) >= 2 and out.kind == INDEX and out.pads is None and not out.merged:
            producer = next(node for node in self.graph.node if self.graph.output[0].name in node.output)
            out = self.rearrange(producer, out)
        if out.kind == INDEX or out.pads is not None or out.merged:
            flattened = len(out.shape) == 1 and len(out.lshape) == 3
            raise ValueError(f"{self.path}: the output is " + (
                "an image flattened in ONNX's channel order; lrpnb explains class scores (N, C)" if flattened else
                f"a tensor (N, {', '.join(map(str, out.shape))}) whose values lrpnb's output does not hold in "
                f"ONNX's order; lrpnb explains class scores (N, C)"))
        # the network's output is the last node: drop nodes the output does not need
        last = next(k for k, n in enumerate(self.nodes) if n.name == out.value)
        needed, keep = {out.value}, []
        for node in self.nodes[last::-1]:
            if node.name in needed:
                keep.append(node)
                needed.update(node.inputs)
        if self.embedded:
            self.explained.add(max(self.embedded, key=self.embedded.get))
        options = {} if self.input_names == [INPUT] else dict(
            inputs=self.input_names, explained=[name for name in self.input_names if name in self.explained])
        try:
            return Network(keep[::-1], **options)
        except ValueError as error:
            raise ValueError(f"{self.path}: {printable(error)}") from None

    def run_node(self, node):
        handler, default = getattr(self, "op_" + node.op_type, None), node.domain in ("", "ai.onnx")
        foldable = node.op_type in FOLDABLE and all(not name or name in self.constants for name in node.input)
        if (handler is None and not foldable and node.op_type != "Shape") or not default:
            where = "" if default else f" of ONNX's default domain (this node's is {node.domain!r})"
            hint = f"; to avoid it: {UNSUPPORTED_HINTS[node.op_type]}" if node.op_type in UNSUPPORTED_HINTS else ""
            raise self.error(node, f"unsupported operator; lrpnb imports {', '.join(SUPPORTED_OPS)}{where or hint}")
        need, variadic = INPUTS.get(node.op_type, 1), node.op_type in _VARIADIC
        if len(node.input) < need or not all(node.input if variadic else node.input[:need]):
            raise self.error(node, f"needs {need} named inputs{' (or more)' * variadic}, got "
                                   f"{list(node.input)!r:.80}")
        attrs = self.attributes(node)
        if node.op_type == "Shape" and node.input[0] not in self.constants:
            return self.shape_of(node, attrs)
        if foldable and node.input and node.op_type not in ("Identity", "Dropout"):
            arrays = [self.constants[name] if name else None for name in node.input]
            batched = any(name in self.batched for name in node.input)
            results = fold(self, node, attrs, arrays, batched)
            for name, value in zip(node.output, results):
                if name:
                    self.constants[name] = value
                    if batched and (value == BATCH).any():  # moved values: marked while the marker is there
                        self.batched.add(name)
            return
        handler(node, attrs)

    def shape_of(self, node, attrs):
        """Shape of an activation tensor, folded: its sizes after the batch marker (folding.BATCH)."""
        tensor = self.tensor(node, node.input[0])
        sizes = np.array((BATCH,) + tensor.shape, dtype=np.int64)
        start, end = attrs.get("start", 0), attrs.get("end", len(sizes))
        self.constants[node.output[0]] = sizes[start:end]
        if 0 in range(len(sizes))[start:end]:
            self.batched.add(node.output[0])
