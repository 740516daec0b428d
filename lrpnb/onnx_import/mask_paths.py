"""Attention-mask paths computed with comparisons (the ``MaskPaths`` mixin of
the importer).

Hugging Face's causal language models build their 4-d mask from the
attention mask with Equal, Where and ScatterND (``causal.masked_fill(
causal + mask == 0, min)``): no layer computes these, but the mask holds 0
and 1, and each value of such a path reads one mask value at most. Such a
value is ``f(m) = f(0) + (f(1) - f(0)) m``, an affine function of that one
mask value: the importer evaluates the path (onnx's reference evaluator)
with the mask all zeros, with one position set at a time, and all ones, and
reads the path as a Rearrange of the mask, a Scale and a Bias. Paths of
plain arithmetic (BERT's ``(1 - mask) * min``) are read node by node as
any other. The mask input is not explained: the path gets no relevance."""
import numpy as np

from ..layers.products import Scale
from ..layers.tokens import Bias, Rearrange
from .tensors import SAME, Tensor

__all__ = ["MaskPaths"]

# what a mask path computes node by node (ordinary layers)
_PLAIN = {"Unsqueeze", "Squeeze", "Reshape", "Cast", "Sub", "Mul", "Add", "Expand", "Slice", "Transpose", "Identity",
          "Constant", "Shape", "Gather", "Concat", "Div", "Neg", "Flatten"}


class MaskPaths:
    def find_mask_paths(self, inputs):
        """Find the nodes that compute from the integer inputs that are not token ids (masks) with operators
        no layer has; mark them skipped and record their outputs read elsewhere (``self.mask_at``)."""
        self.mask_at = {}
        integer = {i.name for i in inputs if self.integer_input(i)}
        depends = {}  # tensor -> the graph inputs it is computed from (shapes excluded)
        tokens = set()
        for node in self.graph.node:
            found = set() if node.op_type == "Shape" else set().union(*(
                depends.get(name, {name} if name in integer else set()) for name in node.input))
            for name in node.output:
                depends[name] = found
            if node.op_type == "Gather" and self.literal(node.input[0]) is not None:
                tokens |= depends.get(node.input[1], {node.input[1]} & integer)
        masks = integer - tokens
        path = [node for node in self.graph.node if depends.get(node.output[0]) and depends[node.output[0]] <= masks]
        if not masks or all(node.op_type in _PLAIN for node in path):
            return
        inside = {node.output[0] for node in path}
        boundary = [name for node in path for name in node.output if name and (
            any(name in n.input and n.output[0] not in inside for n in self.graph.node)
            or name in [o.name for o in self.graph.output])]
        affine = self.evaluate_mask_path(inputs, masks, boundary, path)
        self.skip.update(node.output[0] for node in path)
        readers = {name: next(n for n in self.graph.node if name in n.input and n.output[0] not in inside)
                   for name in boundary if name not in [o.name for o in self.graph.output]}
        for name in readers:
            self.mask_at[readers[name].output[0]] = self.mask_at.get(readers[name].output[0], []) + [
                (name, affine[name])]

    def evaluate_mask_path(self, inputs, masks, boundary, path):
        """Each boundary value of the mask path as (mask input, index, scale, bias): ``index`` the mask
        position each value reads (-1: none), per sample."""
        from onnx import helper
        from onnx.reference import ReferenceEvaluator

        if len(masks) != 1:
            raise self.error(path[0], f"computes from several masks ({', '.join(sorted(masks))}); lrpnb reads "
                                      f"one attention mask")
        mask = next(i for i in inputs if i.name in masks)
        T = [d.dim_value for d in mask.type.tensor_type.shape.dim][1:]
        if len(T) != 1 or T[0] <= 0:
            raise self.error(path[0], f"reads the mask {mask.name!r} of shape (N, {T}); lrpnb reads (N, T) masks")
        T, B = T[0], self.batch or 2
        needed, wanted = set(), list(boundary)
        while wanted:  # the nodes the boundary values are computed from
            node = self.producer.get(wanted.pop())
            if node is not None and node.output[0] not in needed:
                needed.add(node.output[0])
                wanted.extend(node.input)
        graph = helper.make_graph([n for n in self.graph.node if n.output[0] in needed], "mask", list(
            self.graph.input), [
            helper.make_tensor_value_info(name, 0, None) for name in boundary], list(self.graph.initializer))
        model = helper.make_model(graph, opset_imports=list(self.opsets))
        try:
            run = ReferenceEvaluator(model)
        except Exception as error:  # the evaluator's own exceptions
            raise self.error(path[0], f"the attention-mask path cannot be evaluated ({type(error).__name__}: "
                                      f"{str(error)[:200]})") from None
        feeds = {i.name: np.zeros([B] + [d.dim_value or 1 for d in i.type.tensor_type.shape.dim][1:],
                                  dtype=self.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type))
                 for i in inputs}

        def values(m):
            try:
                return [np.asarray(v, dtype=np.float64) for v in run.run(boundary, dict(feeds, **{mask.name: m}))]
            except Exception as error:  # noqa: BLE001  (the evaluator's own exceptions)
                raise self.error(path[0], f"the attention-mask path cannot be evaluated ({type(error).__name__}: "
                                          f"{str(error)[:200]})") from None
        dtype = feeds[mask.name].dtype
        zero, one = values(np.zeros((B, T), dtype)), values(np.ones((B, T), dtype))
        single = [values(np.eye(T, dtype=dtype)[j][None].repeat(B, 0)) for j in range(T)]
        first = np.zeros((B, T), dtype)
        first[0] = 1
        alone = values(first)
        found = {}
        for k, name in enumerate(boundary):
            found[name] = self.affine_mask(path[0], mask.name, zero[k], one[k], [s[k] for s in single], alone[k], B)
        return found

    def affine_mask(self, node, mask, zero, one, single, alone, B):
        """(mask, index, scale, bias) of one boundary value from its evaluations, or the error that it is not
        such a function of the mask."""
        if zero.ndim < 1 or zero.shape[0] != B:
            raise self.error(node, f"the attention-mask path gives a value of shape {zero.shape} without the batch "
                                   f"axis ({B})")
        changed = np.stack([np.abs(s - zero) > 0 for s in single])  # (T, B, ...)
        index = np.where(changed.any(axis=0), changed.argmax(axis=0), -1)[0]
        scale = np.where(index >= 0, one[0] - zero[0], 0.0)
        rebuilt = zero + scale[None] * (index >= 0)[None]
        exact = (changed.sum(axis=0) <= 1).all() and np.array_equal(
            np.where(np.isfinite(one), one, 0), np.where(np.isfinite(rebuilt), rebuilt, 0)) and \
            np.array_equal(alone[1:], zero[1:]) and (zero == zero[:1]).all()
        if not exact or not np.isfinite(zero).all() or not np.isfinite(one).all():
            raise self.error(node, "the attention-mask path is not a function of one mask value per output (or "
                                   "differs between samples); lrpnb reads masks of 0 and 1 combined with constants")
        return mask, index, scale, zero[0]

    def mask_layers(self, node):
        """The layers of the mask path values ``node`` reads: a Rearrange of the mask, a Scale, a Bias."""
        made = self.__dict__.setdefault("mask_values", {})
        for name, (mask, index, scale, bias) in self.mask_at.pop(node.output[0], []):
            key = (mask, index.shape, index.tobytes(), scale.tobytes(), bias.tobytes())
            if key in made:  # one mask read by every layer: made once
                self.tensors[name] = made[key]
                continue
            source = self.tensors[mask]
            shape = index.shape
            read = self.add(node, Rearrange(np.where(index >= 0, index, -1).ravel(), shape), [source], shape, SAME,
                            suffix="/mask")
            scaled = self.add(node, Scale(scale), [read], shape, SAME, suffix="/mask_scale")
            out = self.add(node, Bias(bias), [scaled], shape, SAME, suffix="/mask_bias")
            self.tensors[name] = made[key] = Tensor(out.value, out.lshape, shape, SAME)
