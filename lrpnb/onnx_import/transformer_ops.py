"""Operators of transformer graphs (the ``TransformerOps`` mixin of the
importer): embeddings (Gather of a weight matrix by token ids), dense layers
on tokens (N, ..., D), products of two activations (query-key scores,
attention-value sums), the attention softmax, constants added or multiplied
with any broadcast (position embeddings, the additive mask, rotary tables,
1/sqrt d), Where with a constant condition (GPT-2's causal mask), Neg,
Cast, Expand, and the reshape that merges tokens into the batch axis
around a dense layer (GPT-2's Conv1D: ``x.view(-1, D)``).

Token tensors stay in ONNX's own layout (SAME); the layers that need the
values in ONNX's order read a Rearrange of a transposed, sliced or expanded
tensor (``Importer.need``), everything else keeps the importer's zero-copy
layouts."""
import numpy as np

from ..layers.attention import AttentionSoftmax, MatMul
from ..layers.products import Scale
from ..layers.tokens import Bias, Embedding, Rearrange
from ..network import Add, Linear, SoftMax
from .folding import BATCH
from .tensors import FIRST, INDEX, SAME, Tensor, index_of, settle

__all__ = ["TransformerOps"]

_FLOAT_TYPES = (1, 10, 11, 16)  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


class TransformerOps:
    # ------------------------------------------------------------ constants with activations
    def sample_constant(self, node, C, source, what):
        """``C``, broadcast against the ONNX tensor ``source`` (batch axis included), as a constant that
        broadcasts to the sample's ONNX shape: a leading batch axis of length 1, or of the fixed batch size
        with equal rows, dropped."""
        shape = source.shape[source.merged:] if source.merged else source.shape
        C = self.batchless(node, C, len(shape) + 1, what)
        try:
            fits = C.ndim <= len(shape) and np.broadcast_shapes(C.shape, shape) == tuple(shape)
        except ValueError:
            fits = False
        if not fits:
            raise self.error(node, f"{what} of shape {C.shape} does not broadcast to the activations (N, "
                                   f"{', '.join(map(str, source.shape))})")
        return C

    def batchless(self, node, C, rank, what):
        """``C`` of an ONNX tensor of ``rank`` (batch axis included) without its batch axis, where it has one (of
        length 1, or the fixed batch size with equal rows)."""
        C = np.asarray(C)
        if C.ndim == rank:
            if C.shape[0] != 1 and (C.shape[0] != self.batch or not (C == C[:1]).all()):
                raise self.error(node, f"{what} of shape {C.shape} differs between the samples of a batch; lrpnb "
                                       f"reads constants that are the same for every sample")
            C = C[0]
        return C

    def constant_layer(self, node, source, C, make, what, suffix=""):
        """``make(C)`` (Bias or Scale) on the activations ``source``: a scalar keeps their layout, any other
        constant reads them in ONNX's order. Returns the output's Tensor."""
        C = self.sample_constant(node, C, source, what)
        if (make is Bias and not C.any()) or (make is Scale and (C == 1).all()):
            return source  # adding 0, multiplying by 1 (a mask with nothing masked, a Where keeping everything)
        if C.size != 1 or source.pads is not None:
            if source.kind == FIRST and source.pads is None:
                raise self.error(node, f"{what} of shape {C.shape} on an image: lrpnb reads one value, or one per "
                                       f"channel" + self.hint(source))
            source = self.need(node, source, SAME, "values in ONNX's order")
        try:
            layer = make(C.astype(np.float64) if C.size > 1 else np.float64(C.ravel()[0]))
        except ValueError as error:
            raise self.error(node, str(error)) from None
        out = self.add(node, layer, [source], source.shape, source.kind if source.kind != INDEX else SAME,
                       suffix=suffix or "/" + type(layer).__name__.lower())
        return source.like(out.value)

    # ------------------------------------------------------------ no-ops, Neg, Where
    def op_Cast(self, node, attrs):
        """A cast of activations is read as none: lrpnb computes in the network's one float dtype."""
        if attrs.get("to") not in _FLOAT_TYPES and self.tensor(node, node.input[0]).value not in self.input_names:
            raise self.error(node, "casts activations to integers; lrpnb computes in floats")
        self.alias(node)

    def op_Neg(self, node, attrs):
        source = self.tensor(node, node.input[0])
        self.tensors[node.output[0]] = self.constant_layer(node, source, np.float64(-1), Scale, "the factor -1")

    def op_Where(self, node, attrs):
        """Where(c, x, b) with a constant condition and one constant branch: x c + b (1 - c), a Scale and a
        Bias (GPT-2's causal mask)."""
        cond, first, second = node.input[:3]
        if cond not in self.constants or (first in self.constants) == (second in self.constants):
            raise self.error(node, "only a Where with a constant condition and one constant branch is supported")
        c = np.asarray(self.constants[cond]).astype(bool)
        x, other = (first, second) if second in self.constants else (second, first)
        keep = c if x == first else ~c
        b = np.asarray(self.constant(node, other, "the constant branch"), dtype=np.float64)
        shape = np.broadcast_shapes(keep.shape, b.shape)
        scaled = self.constant_layer(node, self.tensor(node, x), keep.astype(np.float64), Scale, "the condition")
        added = np.where(np.broadcast_to(keep, shape), 0.0, np.broadcast_to(b, shape))
        self.tensors[node.output[0]] = self.constant_layer(node, scaled, added, Bias, "the constant branch")

    # ------------------------------------------------------------ Expand, Gather
    def op_Expand(self, node, attrs):
        source = self.tensor(node, node.input[0])
        target = [int(s) for s in np.ravel(self.constant(node, node.input[1], "the shape"))]
        target = [1] * (len(source.shape) + 1 - len(target)) + target  # numpy's alignment of trailing axes
        full = (1,) * (len(target) - len(source.shape) - 1) + (1,) + source.shape
        if len(target) > len(full) or (target and target[0] not in (1, BATCH, self.batch, -1)):
            raise self.error(node, f"expands (N, {', '.join(map(str, source.shape))}) to {target}: lrpnb keeps the "
                                   f"batch axis first and whole")
        target = [1] + target[1:] if target else target
        try:
            shape = np.broadcast_shapes(full, tuple(target))[1:]
        except ValueError:
            raise self.error(node, f"cannot expand (N, {', '.join(map(str, source.shape))}) to {target}") from None
        lead = len(full) - len(source.shape) - 1
        self.relayout(node, source, lambda index: np.broadcast_to(
            index.reshape((1,) * lead + index.shape), shape).copy())

    def op_Gather(self, node, attrs):
        """Gather of a weight matrix by token ids: an Embedding; of activations by constant indices: a
        layout (ShapeOps)."""
        if node.input[0] not in self.constants:
            return super().op_Gather(node, attrs)
        ids = self.tensor(node, node.input[1])
        W = self.constant(node, node.input[0], "the embedding matrix", ndim=2)
        if attrs.get("axis", 0) != 0 or W.dtype.kind != "f":
            raise self.error(node, "only a lookup of rows of a float matrix (axis 0) by token ids is supported")
        ids = self.need(node, ids, SAME, "token ids")
        if ids.merged:
            raise self.error(node, "reads token ids merged with the batch axis")
        try:
            layer = Embedding(W)
        except ValueError as error:
            raise self.error(node, str(error)) from None
        if ids.value in self.input_names:  # the vocabulary's lookup (most rows) is the token ids' (network())
            self.embedded[ids.value] = max(self.embedded.get(ids.value, 0), W.shape[0])
        self.add(node, layer, [ids], ids.shape + (W.shape[1],), SAME)

    # ------------------------------------------------------------ Concat
    def op_Concat(self, node, attrs):
        """Concatenations of activations with constants (ViT's class token) or of several activations along
        any axis but the channels: each activation part laid out in the whole (zeros elsewhere), summed, and
        the constants added as a Bias; the others as before (ShapeOps)."""
        names = list(node.input)
        values = {self.tensors[n].value for n in names if n in self.tensors}
        rank = max(len(self.tensors[n].shape) for n in names if n in self.tensors) + 1 if values else 0
        axis = attrs["axis"] + rank if attrs["axis"] < 0 else attrs["axis"]
        plain = all(n in self.tensors for n in names) and (len(values) == 1 or axis == rank - 1 or (
            axis == 1 and rank in (3, 4)))
        if not values or plain:
            return super().op_Concat(node, attrs)
        parts = [self.tensors[n] if n in self.tensors else self.batchless(
            node, self.constant(node, n, "a constant part"), rank, "a constant part") for n in names]
        shapes = [p.shape for p in parts]
        if any(len(s) != rank - 1 for s in shapes) or not 0 < axis < rank or any(
                s[:axis - 1] + s[axis:] != shapes[0][:axis - 1] + shapes[0][axis:] for s in shapes):
            raise self.error(node, f"concatenates parts of shapes {shapes} along axis {attrs['axis']}: lrpnb keeps "
                                   f"the batch axis first, the parts differing along the axis only")
        cuts = np.cumsum([0] + [s[axis - 1] for s in shapes])
        shape = shapes[0][:axis - 1] + (int(cuts[-1]),) + shapes[0][axis:]
        constant, made = np.zeros(shape), []
        for part, start, end in zip(parts, cuts[:-1], cuts[1:]):
            where = (slice(None),) * (axis - 1) + (slice(start, end),)
            if isinstance(part, np.ndarray):
                constant[where] = part
                continue
            index = np.full(shape, -1, dtype=np.int64)
            index[where] = index_of(part)
            made.append(self.add(node, Rearrange(index.ravel(), shape), [part], shape, SAME,
                                 suffix=f"/part{len(made)}"))
        out = made[0] if len(made) == 1 else self.add(node, Add(), made, shape, SAME, suffix="/sum")
        if constant.any():
            out = self.add(node, Bias(constant), [out], shape, SAME, suffix="/bias")
        self.tensors[node.output[0]] = out

    # ------------------------------------------------------------ Softmax, MatMul
    def op_Softmax(self, node, attrs):
        source = self.tensor(node, node.input[0])
        if len(source.shape) == 1:
            return super().op_Softmax(node, attrs)
        rank = len(source.shape) + 1
        opset = next((o.version for o in self.opsets if o.domain in ("", "ai.onnx")), 13)
        axis = attrs.get("axis", -1 if opset >= 13 else 1)
        axis = axis + rank if axis < 0 else axis
        if axis == rank - 1 and node.output[0] in {o.name for o in self.graph.output}:
            # the model's final probabilities, as the softmax of (N, C) scores: explanations start below it
            source = self.need(node, source, SAME, "scores in ONNX's order")
            return self.add(node, SoftMax(), [source], source.shape, SAME)
        if opset < 13 and axis != rank - 1:
            raise self.error(node, f"a softmax of opset {opset} over axis {attrs.get('axis', 1)} is one over all "
                                   f"the axes from there on (flattened); export with opset_version >= 13 (17 is "
                                   f"tested) for a softmax over one axis")
        if not 0 < axis < rank:
            raise self.error(node, f"a softmax over axis {attrs.get('axis')} of a tensor of {rank} axes: lrpnb "
                                   f"normalises along one axis of each sample, not along the batch")
        # the softmax axis moved last: no data moves until the values are needed in that order
        order = [a for a in range(rank - 1) if a != axis - 1] + [axis - 1]
        moved = index_of(source).transpose(order)
        moved = self.need(node, settle(source.value, source.lshape, moved.shape, moved), SAME,
                          "scores in ONNX's order")
        out = self.add(node, AttentionSoftmax(), [moved], moved.shape, SAME)
        back = np.arange(int(np.prod(moved.shape))).reshape(moved.shape).transpose(np.argsort(order))
        self.tensors[node.output[0]] = settle(out.value, out.lshape, source.shape, back)

    def op_MatMul(self, node, attrs):
        first, second = node.input[:2]
        if second in self.constants and first not in self.constants:
            return self.token_dense(node, self.tensor(node, first), self.constant(node, second, "the weights"))
        if first in self.constants or second in self.constants:
            raise self.error(node, "a product of a constant and activations (in this order) is not supported")
        a, b = self.tensor(node, first), self.tensor(node, second)
        if len(a.shape) < 2 or len(b.shape) < 2 or a.shape[-1] != b.shape[-2]:
            raise self.error(node, f"multiplies (N, {', '.join(map(str, a.shape))}) by (N, "
                                   f"{', '.join(map(str, b.shape))}): lrpnb reads matrices (N, ..., T, K) @ "
                                   f"(N, ..., K, S)")
        try:
            batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise self.error(node, "the batch axes of the two factors do not broadcast") from None
        a, b = (self.broadcast(node, t, batch + t.shape[-2:]) for t in (a, b))
        made = self.by_name.get(a.value)
        gate = 0 if made is not None and type(made.layer) is AttentionSoftmax else None
        self.add(node, MatMul(gate), [a, b], batch + (a.shape[-2], b.shape[-1]), SAME)

    def broadcast(self, node, tensor, shape):
        """``tensor`` broadcast to the ONNX sample ``shape`` (a Rearrange with repeats where it differs), in
        ONNX's order."""
        if tensor.shape == tuple(shape):
            return self.need(node, tensor, SAME, "values in ONNX's order")
        lead = len(shape) - len(tensor.shape)
        self.check_size(node, int(np.prod(shape)) * 8, f"the broadcast to {shape}")
        index = np.broadcast_to(index_of(tensor).reshape((1,) * lead + tensor.shape), shape).copy()
        # one mask broadcast to the scores of every layer: made once
        key = (tensor.value, tuple(shape), index.tobytes())
        made = self.__dict__.setdefault("broadcasts", {})
        if key not in made:
            made[key] = self.need(node, settle(tensor.value, tensor.lshape, index.shape, index), SAME,
                                  "values in ONNX's order")
        return made[key]

    def token_dense(self, node, source, W, B=None):
        """A dense layer with W (m, n) on the last axis of (N, ..., m) tokens (or of their rows merged into the
        batch axis); images and features (N, D) as before (LayerOps.dense)."""
        if W.ndim != 2:
            raise self.error(node, f"the weights must be a matrix (m, n), got shape {W.shape}")
        B = np.zeros(W.shape[1], dtype=W.dtype) if B is None else B
        # rank 3, (N, H, W, C) channels last, stays a 1x1 convolution (LayerOps.dense)
        if source.merged or (len(source.shape) >= 2 and source.shape[-1] == W.shape[0] and len(source.shape) != 3):
            source = self.need(node, source, SAME, f"tokens (N, ..., {W.shape[0]})")
            if source.shape[-1] != W.shape[0]:
                raise self.error(node, f"expects (..., {W.shape[0]}) features, got (N, "
                                       f"{', '.join(map(str, source.shape))})")
            out = self.add(node, Linear(W, np.broadcast_to(B, (W.shape[1],))), [source],
                           source.shape[:-1] + (W.shape[1],), SAME)
            out.merged = source.merged
            return
        self.dense(node, source, W, B)

    # ------------------------------------------------------------ rows merged into the batch axis
    def merge_rows(self, node, source, target):
        """Reshape (N, T..., D) to (N T..., D) (``target`` (-1, D...)): the rows stay lrpnb's tokens, marked
        merged; None where the reshape is not such a merge."""
        rest = target[1:]
        for k in range(1, len(source.shape)):
            if list(source.shape[k:]) == rest and target[0] in (-1, (self.batch or -1) * int(
                    np.prod(source.shape[:k]))):
                tensor = self.need(node, source, SAME, "rows in ONNX's order")
                return Tensor(tensor.value, tensor.lshape, tensor.shape, SAME, merged=k)
        return None

    def unmerge_rows(self, node, source, target):
        """Reshape (N T..., D') back to (N, T..., D'): the merged tensor's rows as a token tensor."""
        rows = source.shape[:source.merged]
        if target[0] not in (BATCH, self.batch, -1) or list(target[1:]) != list(rows + source.shape[source.merged:]):
            raise self.error(node, f"reshapes rows merged with the batch axis (N x {', '.join(map(str, rows))}, "
                                   f"{', '.join(map(str, source.shape[source.merged:]))}) to {target}; lrpnb reads "
                                   f"only their reshape back to (N, {', '.join(map(str, source.shape))})")
        self.tensors[node.output[0]] = Tensor(source.value, source.lshape, source.shape, source.kind, source.index)
