"""Attention-mask paths computed with comparisons (the ``MaskPaths`` mixin of
the importer).

Hugging Face's causal language models build their 4-d mask from the
attention mask with Equal, Where and ScatterND (``causal.masked_fill(
causal + mask == 0, min)``): no layer computes these, but the mask holds 0
and 1, and each value of such a path reads one mask value at most. Such a
value is ``f(m) = f(0) + (f(1) - f(0)) m``, an affine function of that one
mask value: the importer folds the path (``folding``, with its size limit)
with the mask all zeros, with one position set at a time, and all ones, and
reads the path as a Rearrange of the mask, a Scale and a Bias. Paths of
plain arithmetic (BERT's ``(1 - mask) * min``) are read node by node as
any other. The mask input is not explained: the path gets no relevance."""
import numpy as np

from ..layers.products import Scale
from ..layers.tokens import Bias, Rearrange
from .folding import BATCH, FOLDABLE, fold
from .tensors import SAME, Tensor

__all__ = ["MaskPaths"]

# what a mask path computes node by node (ordinary layers)
_PLAIN = {"Unsqueeze", "Squeeze", "Reshape", "Cast", "Sub", "Mul", "Add", "Expand", "Slice", "Transpose", "Identity",
          "Constant", "Shape", "Gather", "Concat", "Div", "Neg", "Flatten"}


class MaskPaths:
    def find_mask_paths(self, inputs):
        """Find the nodes that compute from the integer inputs that are not token ids (masks) with operators
        no layer has; mark them skipped and record, by the node that reads them, their outputs read
        elsewhere (``self.mask_at``)."""
        self.mask_at, self.mask_paths = {}, {}
        integer = {i.name for i in inputs if self.integer_input(i)}
        depends = {}  # tensor -> the graph inputs it is computed from (shapes excluded)
        tokens = set()
        for node in self.graph.node:
            found = set() if node.op_type == "Shape" else set().union(*(
                depends.get(name, {name} & integer) for name in node.input))
            for name in node.output:
                depends[name] = found
            if node.op_type == "Gather" and len(node.input) > 1 and self.literal(node.input[0]) is not None:
                tokens |= depends.get(node.input[1], {node.input[1]} & integer)
        masks, path, inside = integer - tokens, [], set()
        for node in self.graph.node:  # computed from the masks, or a Shape of such a value
            found = depends.get(node.output[0])
            if (found and found <= masks) or (not found and any(name in inside for name in node.input)):
                path.append(node)
                inside.update(filter(None, node.output))
        if not masks or all(node.op_type in _PLAIN for node in path):
            return
        if len(masks) != 1:
            raise self.error(path[0], f"computes from several masks ({', '.join(sorted(masks))}); lrpnb reads "
                                      f"one attention mask")
        self.skip.update(node.output[0] for node in path)
        outputs = {o.name for o in self.graph.output}
        for node in self.graph.node:
            if node.output[0] in inside:
                continue
            for name in node.input:
                if name in inside:
                    self.mask_at.setdefault(node.output[0], []).append(name)
        if any(name in outputs for name in inside):
            raise self.error(path[-1], "the graph's output is computed from the attention mask alone")
        self.mask_paths = dict(path=path, mask=next(iter(masks)), inside=inside)

    def mask_layers(self, node):
        """The layers of the mask path values ``node`` reads: a Rearrange of the mask, a Scale, a Bias (made
        once for each value, however many layers read it)."""
        names = [name for name in self.mask_at.pop(node.output[0], []) if name not in self.tensors]
        affine = self.evaluate_mask_path(node, names) if names else {}
        made = self.__dict__.setdefault("mask_values", {})
        for name in names:
            index, scale, bias = affine[name]
            key = (index.shape, index.tobytes(), scale.tobytes(), bias.tobytes())
            if key not in made:
                source, shape = self.tensors[self.mask_paths["mask"]], index.shape
                read = self.add(node, Rearrange(index.ravel(), shape), [source], shape, SAME, suffix="/mask")
                scaled = self.add(node, Scale(scale), [read], shape, SAME, suffix="/mask_scale")
                out = self.add(node, Bias(bias), [scaled], shape, SAME, suffix="/mask_bias")
                made[key] = Tensor(out.value, out.lshape, shape, SAME)
            self.tensors[name] = made[key]

    def evaluate_mask_path(self, reader, boundary):
        """The values ``boundary`` of the mask path that ``reader`` reads as (index, scale, bias): ``index`` the
        mask position each value reads (-1: none), per sample. Evaluated when their reader is reached: the
        constants they read are folded by then."""
        mask, needed, wanted = self.mask_paths["mask"], set(), list(boundary)
        while wanted:
            node = self.producer.get(wanted.pop())
            if node is not None and node.output[0] in self.mask_paths["inside"] and node.output[0] not in needed:
                needed.add(node.output[0])
                wanted.extend(node.input)
        path = [node for node in self.mask_paths["path"] if node.output[0] in needed]
        T = self.tensors[mask].shape
        if len(T) != 1:
            raise self.error(reader, f"reads a mask path from {mask!r} of shape (N, {T}); lrpnb reads (N, T) masks")
        # the batch size the graph's folded constants were made for: its fixed one, else 1 (an expand to the
        # open batch size keeps one row: folding.fold)
        T, B = T[0], self.batch or 1
        zero = self.fold_mask_path(path, mask, np.zeros((B, T), np.int64), boundary, B)
        one = self.fold_mask_path(path, mask, np.ones((B, T), np.int64), boundary, B)
        single = [self.fold_mask_path(path, mask, np.eye(T, dtype=np.int64)[j][None].repeat(B, 0), boundary, B)
                  for j in range(T)]
        first = np.zeros((B, T), np.int64)
        first[0] = 1
        alone = self.fold_mask_path(path, mask, first, boundary, B)
        return {name: self.affine_mask(reader, zero[name], one[name], [s[name] for s in single], alone[name], B)
                for name in boundary}

    def fold_mask_path(self, path, mask, values, boundary, B):
        """The boundary values of the mask path for the mask ``values`` (B, T), folded node by node (the batch
        size taken to be B)."""
        known = {mask: values}

        def value(name):
            if name in known:
                return known[name]
            if name in self.constants:
                constant = np.asarray(self.constants[name])
                return np.where(constant == BATCH, B, constant) if name in self.batched else constant
            if name in self.tensors:  # an activation's shape is all a mask path may read of it (Shape)
                return np.zeros((B,) + self.tensors[name].shape, np.float32)
            raise self.error(node, f"the attention-mask path reads {name!r}, which it cannot compute")
        for node in path:
            attrs = self.attributes(node)
            if node.op_type == "Constant":
                results = [self.array(attrs["value"], node)]
            elif node.op_type == "ScatterND" and attrs.get("reduction", b"none") in (b"none", "none"):
                data, indices, updates = (np.asarray(value(name)) for name in node.input[:3])
                self.check_size(node, data.size * 8, "the scattered mask")
                results = [data.copy()]
                results[0][tuple(np.moveaxis(indices.astype(np.int64), -1, 0))] = updates
            elif node.op_type in FOLDABLE:
                results = fold(self, node, attrs, [value(name) if name else None for name in node.input], False)
            else:
                raise self.error(node, "is a step of the attention-mask path that lrpnb does not evaluate (it "
                                       "reads Equal, Where, ScatterND and the folded operators there)")
            known.update(zip(node.output, results))
        return {name: np.asarray(known[name], dtype=np.float64) for name in boundary}

    def affine_mask(self, node, zero, one, single, alone, B):
        """(index, scale, bias) of one boundary value from its evaluations, or the error that it is not such a
        function of the mask."""
        if zero.ndim < 1 or zero.shape[0] != B or one.shape != zero.shape:
            raise self.error(node, f"the attention-mask path gives a value of shape {zero.shape} without the batch "
                                   f"axis ({B})")
        changed = np.stack([np.abs(s - zero) > 0 for s in single])  # (T, B, ...)
        index = np.where(changed.any(axis=0), changed.argmax(axis=0), -1)[0]
        scale = np.where(index >= 0, one[0] - zero[0], 0.0)
        exact = (changed.sum(axis=0) <= 1).all() and np.array_equal(one[0][index < 0], zero[0][index < 0]) and \
            np.array_equal(alone[1:], zero[1:]) and (zero == zero[:1]).all() and (one == one[:1]).all()
        if not exact or not np.isfinite(zero).all() or not np.isfinite(one).all():
            raise self.error(node, "the attention-mask path is not a function of one mask value per output (or "
                                   "differs between samples); lrpnb reads masks of 0 and 1 combined with constants")
        return index, scale, zero[0]
