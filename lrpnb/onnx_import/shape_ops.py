"""Operators that move activations without computing with them: reshapes,
transposes, squeezes, slices, splits, gathers, concatenations, zero padding
(the ``ShapeOps`` mixin of the importer). They change the layout the
importer records for a tensor (``tensors.Tensor``), not the lrpnb network:
the layer that reads the result gets its weights or a channel gather to
match. The batch axis stays first and whole."""
import numpy as np

from ..network import Concat
from .folding import BATCH
from .tensors import FIRST, SAME, Tensor, index_of, settle

__all__ = ["ShapeOps"]


class ShapeOps:
    def relayout(self, node, source, move, outputs=None):
        """The output(s) of ``node``: ``move`` applied to the index of ``source`` (per sample)."""
        if source.pads is not None:
            self.need(node, source, source.kind)
        self.check_size(node, int(np.prod(source.shape)) * 8,
                        f"the feature order (layout) of a tensor of shape {source.shape}")
        moved = move(index_of(source))
        for name, index in zip(outputs or node.output[:1], moved if outputs else [moved]):
            if name:
                self.tensors[name] = settle(source.value, source.lshape, index.shape, index)

    def batch_axes(self, node, axes, rank, what):
        """``axes`` of a rank-``rank`` ONNX tensor (batch included) as per-sample axes; the batch axis refused."""
        axes = [a + rank if a < 0 else a for a in axes]
        if any(not 0 <= a < rank for a in axes) or 0 in axes:
            raise self.error(node, f"{what} axes {axes} of a tensor of rank {rank}: lrpnb keeps the batch axis "
                                   f"(0) first and whole")
        return [a - 1 for a in axes]

    def op_Constant(self, node, attrs):
        if not isinstance(attrs.get("value"), self.TensorProto):
            raise self.error(node, "only Constant nodes with a 'value' tensor are supported")
        self.constants[node.output[0]] = self.array(attrs["value"], node)

    def op_Identity(self, node, attrs):
        if node.input[0] not in self.constants:
            return self.alias(node)
        self.constants[node.output[0]] = self.constants[node.input[0]]  # exporters share weights through Identity
        if node.input[0] in self.batched:
            self.batched.add(node.output[0])

    def op_Dropout(self, node, attrs):
        if len(node.output) > 1 and self.readers.get(node.output[1]):
            raise self.error(node, "the dropout mask output is used; at inference there is none")
        if len(node.input) > 2 and node.input[2] and self.constant(node, node.input[2], "training_mode").any():
            raise self.error(node, "training_mode is true; export the model in eval mode (model.eval())")
        self.alias(node)

    def op_Flatten(self, node, attrs):
        if attrs.get("axis", 1) != 1:
            raise self.error(node, f"only axis=1 is supported, got axis={attrs['axis']}")
        self.relayout(node, self.tensor(node, node.input[0]), lambda index: index.reshape(-1))

    def op_Reshape(self, node, attrs):
        source = self.tensor(node, node.input[0])
        target = self.constant(node, node.input[1], "the shape")
        if target.dtype.kind not in "iu":
            raise self.error(node, f"the shape must be integers, got shape '{target.dtype} values'; only a "
                                   f"reshape that keeps the batch axis N first is supported")
        target, size = target.ravel().tolist(), int(np.prod(source.shape))
        if source.merged:
            return self.unmerge_rows(node, source, target)
        first = target[:1]
        zero = 0 if not attrs.get("allowzero", 0) else None
        rest = [source.shape[k] if s == 0 and zero == 0 and k < len(source.shape) else s
                for k, s in enumerate(target[1:])]
        known = int(np.prod([s for s in rest if s != -1]))
        if rest.count(-1) == 1 and known > 0 and size % known == 0:
            rest[rest.index(-1)] = size // known
        batch = first and (first[0] in (BATCH, zero, -1, self.batch) and
                           (first[0] != BATCH or node.input[1] in self.batched))
        if not batch or BATCH in rest or -1 in rest or int(np.prod(rest)) != size or min(rest, default=1) < 1:
            merged = self.merge_rows(node, source, target) if first else None
            if merged is not None:
                self.tensors[node.output[0]] = merged
                return
            raise self.error(node, f"only a reshape that keeps the batch axis N first (such as (N, features)) is "
                                   f"supported, got shape {target!r:.80} for (N, {', '.join(map(str, source.shape))})")
        self.relayout(node, source, lambda index: index.reshape(rest))

    def op_Transpose(self, node, attrs):
        source = self.tensor(node, node.input[0])
        rank = len(source.shape) + 1
        perm = attrs.get("perm", list(range(rank))[::-1])
        if sorted(perm) != list(range(rank)) or perm[0] != 0:
            raise self.error(node, f"perm {perm!r:.80} of a tensor of rank {rank}: lrpnb keeps the batch axis "
                                   f"first")
        self.relayout(node, source, lambda index: index.transpose([p - 1 for p in perm[1:]]))

    def squeeze(self, node, attrs, expand):
        source = self.tensor(node, node.input[0])
        axes = [int(a) for a in np.ravel(self.constant(node, node.input[1], "the axes"))] \
            if len(node.input) > 1 and node.input[1] else attrs.get("axes")
        if axes is None and not expand:
            axes = [k + 1 for k, s in enumerate(source.shape) if s == 1]
        rank = len(source.shape) + 1 + (len(axes) if expand else 0)
        axes = self.batch_axes(node, list(axes or []), rank, node.op_type)
        if expand:
            self.relayout(node, source, lambda index: np.expand_dims(index, tuple(axes)))
        elif any(source.shape[a] != 1 for a in axes):
            raise self.error(node, f"squeezes axes of sizes other than 1 in (N, {', '.join(map(str, source.shape))})")
        else:
            self.relayout(node, source, lambda index: np.squeeze(index, tuple(axes)))

    def op_Squeeze(self, node, attrs):
        self.squeeze(node, attrs, expand=False)

    def op_Unsqueeze(self, node, attrs):
        self.squeeze(node, attrs, expand=True)

    def op_Slice(self, node, attrs):
        source = self.tensor(node, node.input[0])
        rank = len(source.shape) + 1
        if len(node.input) > 1:
            lists = [None if len(node.input) <= k or not node.input[k] else
                     [int(v) for v in np.ravel(self.constant(node, node.input[k], what))]
                     for k, what in ((1, "starts"), (2, "ends"), (3, "axes"), (4, "steps"))]
        else:
            lists = [attrs.get("starts"), attrs.get("ends"), attrs.get("axes"), None]
        starts, ends, axes, steps = lists
        if starts is None or ends is None:
            raise self.error(node, "needs starts and ends")
        axes = list(range(len(starts))) if axes is None else axes
        steps = [1] * len(starts) if steps is None else steps
        if not len(starts) == len(ends) == len(axes) == len(steps) or 0 in steps:
            raise self.error(node, "starts, ends, axes and steps must have one value per axis, steps not 0")
        axes = self.batch_axes(node, axes, rank, "Slice")
        cut = [slice(None)] * (rank - 1)
        for start, end, axis, step in zip(starts, ends, axes, steps):
            cut[axis] = slice(max(min(start, 2 ** 62), -2 ** 62), max(min(end, 2 ** 62), -2 ** 62), step)
        if any(len(range(size)[part]) == 0 for size, part in zip(source.shape, cut)):
            raise self.error(node, "the slice is empty")
        self.relayout(node, source, lambda index: index[tuple(cut)])

    def op_Split(self, node, attrs):
        source = self.tensor(node, node.input[0])
        rank = len(source.shape) + 1
        axis = self.batch_axes(node, [attrs.get("axis", 0)], rank, "Split")[0]
        length = source.shape[axis]
        if len(node.input) > 1 and node.input[1]:
            sizes = [int(s) for s in np.ravel(self.constant(node, node.input[1], "the split"))]
        elif "split" in attrs:
            sizes = [int(s) for s in attrs["split"]]
        else:
            part = -(-length // len(node.output))
            sizes = [part] * (len(node.output) - 1) + [length - part * (len(node.output) - 1)]
        if len(sizes) != len(node.output) or sum(sizes) != length or min(sizes) < 1:
            raise self.error(node, f"splits {length} values into {sizes!r:.80} for {len(node.output)} outputs")
        cuts = np.cumsum(sizes)[:-1]
        self.relayout(node, source, lambda index: np.split(index, cuts, axis=axis), list(node.output))

    def op_Gather(self, node, attrs):
        source = self.tensor(node, node.input[0])
        indices = self.constant(node, node.input[1], "the indices")
        axis = self.batch_axes(node, [attrs.get("axis", 0)], len(source.shape) + 1, "Gather")[0]
        length = source.shape[axis]
        if indices.dtype.kind not in "iu" or (indices.size and not -length <= indices.min() <= indices.max() < length):
            raise self.error(node, f"indices must be integers in [-{length}, {length})")
        self.check_size(node, indices.size * int(np.prod(source.shape)) * 8, "the gathered layout")
        self.relayout(node, source, lambda index: np.take(index, indices, axis=axis))

    def op_Concat(self, node, attrs):
        sources = [self.tensor(node, name) for name in node.input]
        rank = len(sources[0].shape) + 1
        axis = attrs["axis"] + rank if attrs["axis"] < 0 else attrs["axis"]
        if any(len(s.shape) + 1 != rank for s in sources) or not 0 < axis < rank:
            raise self.error(node, "only a concatenation along the channels (axis 1) is supported")
        if any(s.shape[:axis - 1] + s.shape[axis:] != sources[0].shape[:axis - 1] + sources[0].shape[axis:]
               for s in sources):
            raise self.error(node, "the inputs differ in more than their channels")
        if all(s.value == sources[0].value and s.pads is None for s in sources):  # parts of one lrpnb array
            index = np.concatenate([index_of(s) for s in sources], axis=axis - 1)
            self.tensors[node.output[0]] = settle(sources[0].value, sources[0].lshape, index.shape, index)
            return
        kind = FIRST if axis == 1 and rank in (3, 4) else SAME if axis == rank - 1 else None
        if kind is None:
            raise self.error(node, "only a concatenation along the channels (axis 1) is supported")
        sources = [self.need(node, s, kind) for s in sources]
        shape = list(sources[0].shape)
        shape[axis - 1] = sum(s.shape[axis - 1] for s in sources)
        self.add(node, Concat(), sources, tuple(shape), kind)

    def op_Pad(self, node, attrs):
        source = self.tensor(node, node.input[0])
        if attrs.get("mode", "constant") != "constant":
            raise self.error(node, f"only zero padding (mode constant) is supported, got mode {attrs['mode']!r}")
        pads = [int(p) for p in np.ravel(self.constant(node, node.input[1], "the pads"))] \
            if len(node.input) > 1 and node.input[1] else list(attrs.get("pads", []))
        value = self.constant(node, node.input[2], "the value") if len(node.input) > 2 and node.input[2] else 0
        if len(node.input) > 3 and node.input[3]:
            raise self.error(node, "padding chosen axes (the axes input) is not supported")
        rank = len(source.shape) + 1
        if len(pads) == 2 * rank and not any(pads) and attrs.get("mode", "constant") == "constant":
            return self.alias(node, source)  # padding by nothing (Swin pads windows only where they do not fit)
        if np.any(value != 0) or len(pads) != 2 * rank or min(pads, default=0) < 0 or \
                any(pads[k] or pads[rank + k] for k in (0, 1)) or rank not in (3, 4) or source.kind != FIRST or \
                source.pads is not None:
            raise self.error(node, f"only zero padding of the spatial axes of an image is supported, got pads "
                                   f"{pads!r:.80}; to avoid it: give the convolution or pooling its zero padding "
                                   f"(padding=p) instead of F.pad or nn.ZeroPad2d")
        begin, end = pads[2:rank], pads[rank + 2:]
        sides = (begin[0], end[0], begin[1], end[1]) if rank == 4 else (0, 0, begin[0], end[0])
        shape = (source.shape[0],) + tuple(s + b + e for s, b, e in zip(source.shape[1:], begin, end))
        self.tensors[node.output[0]] = Tensor(source.value, source.lshape, shape, FIRST, pads=sides)
