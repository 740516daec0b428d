"""Constant folding: the nodes whose inputs are all constants (initializers,
Constant nodes, the shapes of tensors known at import) are evaluated once at
load, with numpy and ONNX's operator semantics, so that the shape arithmetic
of an exported graph (``x.view(x.size(0), -1)``: Shape, Gather, Unsqueeze,
Concat, Reshape) leaves only the layers.

The batch size is left open: Shape gives it as ``BATCH``, a marker value,
and every folded value computed from it is marked too (``Folder.batched``);
such a value may be moved around (gathered, concatenated, sliced) and read as
the first entry of a Reshape's shape, nothing else. Every folded array is
checked against lrpnb.data_io's size limit before it is made.
"""
import numpy as np

__all__ = ["BATCH", "FOLDABLE", "fold"]

#: the marker of the batch size in folded shapes
BATCH = 7_340_033

# ops that move values without computing with them: a batch-marked input is allowed
_MOVES = {"Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Identity", "Reshape", "Split", "Flatten",
          "Transpose", "Shape", "Size", "Where", "Equal", "Expand"}


def _axes(node, attrs, arrays, position):
    """The ``axes`` of Squeeze/Unsqueeze/Slice/ReduceMean: an attribute before opset 13 (18), an input after."""
    if len(arrays) > position and arrays[position] is not None:
        return [int(a) for a in np.ravel(arrays[position])]
    return None if "axes" not in attrs else [int(a) for a in attrs["axes"]]


def _int_divide(a, b):
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        if (b == 0).any():
            raise ValueError("integer division by zero")
        quotient = np.abs(a) // np.abs(b)  # ONNX (as C) truncates towards zero
        return (np.sign(a) * np.sign(b) * quotient).astype(np.result_type(a, b))
    return np.divide(a, b)


def _mod(a, b, fmod):
    if a.dtype.kind in "iu" and (b == 0).any():
        raise ValueError("integer modulo by zero")
    return np.fmod(a, b) if fmod else np.mod(a, b)


def _slice(data, starts, ends, axes, steps):
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        if step == 0:
            raise ValueError("a slice step of 0")
        index[axis] = slice(int(np.clip(start, -2 ** 62, 2 ** 62)), int(np.clip(end, -2 ** 62, 2 ** 62)), int(step))
    return data[tuple(index)]


def _reshape(data, shape, allowzero):
    shape = [int(s) for s in np.ravel(shape)]
    if not allowzero:
        shape = [data.shape[k] if s == 0 else s for k, s in enumerate(shape)]
    return data.reshape(shape)


def _cast(data, to):
    from onnx import helper

    return data.astype(helper.tensor_dtype_to_np_dtype(to))


def _split(node, attrs, arrays):
    data, axis = arrays[0], attrs.get("axis", 0)
    sizes = arrays[1] if len(arrays) > 1 and arrays[1] is not None else attrs.get("split")
    if sizes is None:
        count = len(node.output)
        sizes = [-(-data.shape[axis] // count)] * (count - 1)
        sizes.append(data.shape[axis] - sum(sizes))
    return np.split(data, np.cumsum([int(s) for s in np.ravel(sizes)])[:-1], axis=axis)


# op -> f(node, attrs, arrays) -> array or list of arrays. Optional inputs absent are None.
_FOLDERS = {
    "Identity": lambda node, attrs, a: a[0],
    "Gather": lambda node, attrs, a: np.take(a[0], a[1], axis=attrs.get("axis", 0)),
    "Unsqueeze": lambda node, attrs, a: np.expand_dims(a[0], tuple(
        ax % (a[0].ndim + len(_axes(node, attrs, a, 1))) for ax in _axes(node, attrs, a, 1))),
    "Squeeze": lambda node, attrs, a: np.squeeze(a[0], None if _axes(node, attrs, a, 1) is None
                                                 else tuple(_axes(node, attrs, a, 1))),
    "Concat": lambda node, attrs, a: np.concatenate([np.atleast_1d(x) for x in a], axis=attrs["axis"]),
    "Cast": lambda node, attrs, a: _cast(a[0], attrs["to"]),
    "Range": lambda node, attrs, a: np.arange(a[0].item(), a[1].item(), a[2].item(), dtype=a[0].dtype),
    "Equal": lambda node, attrs, a: np.equal(a[0], a[1]),
    "Less": lambda node, attrs, a: np.less(a[0], a[1]),
    "Greater": lambda node, attrs, a: np.greater(a[0], a[1]),
    "Not": lambda node, attrs, a: np.logical_not(a[0]),
    "Where": lambda node, attrs, a: np.where(a[0], a[1], a[2]),
    "ConstantOfShape": lambda node, attrs, a: np.full(
        [int(s) for s in np.ravel(a[0])], *(attrs["value"].ravel() if "value" in attrs else [np.float32(0)])),
    "Expand": lambda node, attrs, a: np.broadcast_to(
        a[0], np.broadcast_shapes(a[0].shape, tuple(int(s) for s in np.ravel(a[1])))).copy(),
    "Slice": lambda node, attrs, a: _slice(a[0], *(
        [int(v) for v in np.ravel(x)] if x is not None else None for x in (a + [None] * 5)[1:5])) if len(a) > 1
    else _slice(a[0], attrs["starts"], attrs["ends"], attrs.get("axes"), None),
    "Reshape": lambda node, attrs, a: _reshape(a[0], a[1], attrs.get("allowzero", 0)),
    "Flatten": lambda node, attrs, a: a[0].reshape(int(np.prod(a[0].shape[:attrs.get("axis", 1)])), -1),
    "Transpose": lambda node, attrs, a: np.transpose(a[0], attrs.get("perm")),
    "Split": _split,
    "Shape": lambda node, attrs, a: np.array(a[0].shape, dtype=np.int64)[attrs.get("start", 0):attrs.get("end")],
    "Size": lambda node, attrs, a: np.array(a[0].size, dtype=np.int64),
    "MatMul": lambda node, attrs, a: np.matmul(a[0], a[1]),
    "Exp": lambda node, attrs, a: np.exp(a[0]),
    "Cos": lambda node, attrs, a: np.cos(a[0]),
    "Sin": lambda node, attrs, a: np.sin(a[0]),
    "Reciprocal": lambda node, attrs, a: np.reciprocal(a[0]),
    "Trilu": lambda node, attrs, a: (np.triu if attrs.get("upper", 1) else np.tril)(
        a[0], int(np.ravel(a[1])[0]) if len(a) > 1 and a[1] is not None else 0),
    "Log": lambda node, attrs, a: np.log(a[0]),
    "Relu": lambda node, attrs, a: np.maximum(a[0], 0).astype(a[0].dtype),
    "Sigmoid": lambda node, attrs, a: (1 / (1 + np.exp(-a[0]))).astype(a[0].dtype),
    "Tanh": lambda node, attrs, a: np.tanh(a[0]),
    "Sign": lambda node, attrs, a: np.sign(a[0]),
    "Mul": lambda node, attrs, a: np.multiply(a[0], a[1]),
    "Add": lambda node, attrs, a: np.add(a[0], a[1]),
    "Sub": lambda node, attrs, a: np.subtract(a[0], a[1]),
    "Div": lambda node, attrs, a: _int_divide(a[0], a[1]),
    "Mod": lambda node, attrs, a: _mod(a[0], a[1], attrs.get("fmod", 0)),
    "Pow": lambda node, attrs, a: np.power(a[0], a[1]).astype(a[0].dtype),
    "Sqrt": lambda node, attrs, a: np.sqrt(a[0]),
    "Neg": lambda node, attrs, a: np.negative(a[0]),
    "Abs": lambda node, attrs, a: np.abs(a[0]),
    "Floor": lambda node, attrs, a: np.floor(a[0]),
    "Ceil": lambda node, attrs, a: np.ceil(a[0]),
    "Min": lambda node, attrs, a: np.minimum.reduce(a),
    "Max": lambda node, attrs, a: np.maximum.reduce(a),
    "ReduceProd": lambda node, attrs, a: np.prod(a[0], axis=None if _axes(node, attrs, a, 1) is None else tuple(
        _axes(node, attrs, a, 1)), keepdims=bool(attrs.get("keepdims", 1))),
}
FOLDABLE = frozenset(_FOLDERS)


def _planned_size(op, attrs, arrays):
    """Elements of the output of the ops whose output can outgrow their inputs, before it is made."""
    if op == "Range":
        start, limit, delta = (float(np.ravel(a)[0]) for a in arrays[:3])
        return 0 if delta == 0 else max(0, int(np.ceil((limit - start) / delta)))
    if op == "ConstantOfShape":
        return int(np.prod([float(s) for s in np.ravel(arrays[0])]))
    if op == "Expand":
        return int(np.prod([max(float(s), float(d)) for s, d in zip(
            np.ravel(arrays[1])[::-1], list(arrays[0].shape[::-1]) + [1] * arrays[1].size)]))
    if op == "Gather":
        return arrays[0].size * max(1, arrays[1].size)
    if op == "MatMul":
        a, b = (np.atleast_2d(x) for x in arrays[:2])
        return int(np.prod(a.shape[:-1], dtype=np.float64) * b.shape[-1] * max(1, np.prod(b.shape[:-2])))
    return sum(a.size for a in arrays if a is not None)


def fold(importer, node, attrs, arrays, batched):
    """The outputs of ``node`` for constant ``arrays``; ``batched``: whether an input carries the batch
    marker. Raises the importer's error for what lrpnb does not fold."""
    op = node.op_type
    if batched and op not in _MOVES:
        raise importer.error(node, "computes with the batch size, which lrpnb leaves open: the batch axis stays "
                                   "first and whole (sizes computed from it, such as attention windows merged "
                                   "into the batch or a class token expanded to it, are not supported; "
                                   "x.view(x.size(0), -1) is)")
    if batched and op == "Expand":  # a constant broadcast to the batch: kept with one row, broadcast later
        shape = np.ravel(arrays[1]).copy()
        if not shape.size or (shape[1:] == BATCH).any():
            raise importer.error(node, "expands along the batch size, which lrpnb leaves open")
        arrays, batched = [arrays[0], np.where(shape == BATCH, 1, shape)], False
    if batched and op == "Equal" and not any((np.asarray(a) == -1).any() for a in arrays):
        raise importer.error(node, "compares the batch size, which lrpnb leaves open, with values other than -1")
    if op == "Range" and float(np.ravel(arrays[2])[0]) == 0:
        raise importer.error(node, "a range with step 0")
    if op == "ConstantOfShape" and "value" in attrs:
        attrs = dict(attrs, value=importer.array(attrs["value"], node))
    planned = _planned_size(op, attrs, arrays)
    importer.check_size(node, planned * 8, f"the folded output ({planned} values)")
    if op in ("Range", "ConstantOfShape") and planned < 0:
        raise importer.error(node, "a negative size")
    with np.errstate(all="ignore"):
        result = _FOLDERS[op](node, attrs, list(arrays))
    results = result if isinstance(result, list) else [np.asarray(result)]
    for value in results:
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise importer.error(node, "folds to NaN or infinite values")
        if value.dtype.kind not in "biuf":
            raise importer.error(node, f"folds to {value.dtype} values; lrpnb folds numbers")
    return results
