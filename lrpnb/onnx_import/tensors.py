"""What the importer knows of an ONNX tensor that holds activations, and how
its axes map onto the lrpnb array that holds its values.

ONNX images are (N, C, H, W) and lrpnb's (N, H, W, C). A tensor is one of:

- ``FIRST``: an ONNX image (C, H, W) (or (C, L), a 1-d signal) held by an
  lrpnb array (H, W, C) (or (1, L, C)): what convolutions and pools read;
- ``SAME``: the ONNX tensor has the lrpnb array's shape and order (features
  (D,), and channels-last tensors (H, W, C) such as ConvNeXt's permuted ones);
- ``INDEX``: anything else reached by reshapes, transposes and slices: then
  ``index`` (of the ONNX shape, without the batch axis) holds for each ONNX
  element its flat position in the lrpnb array. No data moves at run time;
  the layer that reads such a tensor gets its weights reordered (dense
  layers) or a channel gather in front (``GatherChannels``).
"""
import numpy as np

__all__ = ["Tensor", "FIRST", "SAME", "INDEX", "canonical", "settle", "channel_gather", "gather_index"]

FIRST, SAME, INDEX = "first", "same", "index"


class Tensor:
    """An ONNX tensor of activations.

    Parameters
    ----------
    value : str
        The lrpnb node holding it ('input' for the network's input).
    lshape : tuple
        That node's output shape without the batch axis.
    shape : tuple
        The ONNX shape without the batch axis.
    kind : {FIRST, SAME, INDEX}
    index : array or None
        For INDEX: the lrpnb flat position of each ONNX element.
    pads : tuple or None
        (top, bottom, left, right) zeros an ONNX Pad added around a FIRST
        image; only a convolution or an average pool may read it (into its
        own padding).
    merged : int
        How many leading per-sample axes ONNX merged into its batch axis
        (GPT-2's ``x.view(-1, D)`` before a dense layer: the ONNX tensor is
        (N T, D), ``shape`` stays (T, D)); 0 for the others. Only dense
        layers, biases and the reshape back read such a tensor.
    """

    def __init__(self, value, lshape, shape, kind, index=None, pads=None, merged=0):
        self.value, self.lshape, self.shape = value, tuple(lshape), tuple(shape)
        self.kind, self.index, self.pads, self.merged = kind, index, pads, merged

    def like(self, value, lshape=None, shape=None):
        """This tensor's layout for the output of an element-wise layer named ``value``."""
        return Tensor(value, self.lshape if lshape is None else lshape, self.shape if shape is None else shape,
                      self.kind, self.index, merged=self.merged)


def canonical(lshape, kind, shape):
    """The index of a FIRST or SAME tensor: positions of its ONNX elements in the lrpnb array."""
    positions = np.arange(int(np.prod(lshape)), dtype=np.int64)
    if kind == SAME:
        return positions.reshape(shape)
    return np.moveaxis(positions.reshape(lshape), -1, 0).reshape(shape)


def first_shape(shape):
    """The lrpnb shape of a FIRST tensor of ONNX shape (C, H, W) or (C, L)."""
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else (1, shape[1], shape[0])


def index_of(tensor):
    """The tensor's index, made for FIRST and SAME tensors."""
    return tensor.index if tensor.kind == INDEX else canonical(tensor.lshape, tensor.kind, tensor.shape)


def settle(value, lshape, shape, index):
    """A Tensor for ``index`` over the lrpnb array ``value`` of ``lshape``: FIRST or SAME where the index is
    theirs, INDEX otherwise."""
    shape, lshape = tuple(shape), tuple(lshape)
    if len(shape) in (2, 3) and first_shape(shape) == lshape and np.array_equal(
            index, canonical(lshape, FIRST, shape)):
        return Tensor(value, lshape, shape, FIRST)
    if shape == lshape and np.array_equal(index, canonical(lshape, SAME, shape)):
        return Tensor(value, lshape, shape, SAME)
    return Tensor(value, lshape, shape, INDEX, index)


def channel_gather(tensor, kind):
    """The channels ``p`` such that the tensor is the lrpnb array's channels ``p`` (last axis) laid out as a
    ``kind`` (FIRST or SAME) tensor, or None where it is not such a selection."""
    index, shape, lshape = tensor.index, tensor.shape, tensor.lshape
    if kind == FIRST:
        if len(shape) not in (2, 3) or first_shape(shape)[:-1] != lshape[:-1]:
            return None
        p = index.reshape(shape[0], -1)[:, 0]
        base = canonical(lshape[:-1] + (1,), FIRST, (1,) + shape[1:]) * lshape[-1]
    else:
        if shape[:-1] != lshape[:-1]:
            return None
        p = index.reshape(-1, shape[-1])[0]
        base = canonical(lshape[:-1] + (1,), SAME, shape[:-1] + (1,)) * lshape[-1]
    if p.min(initial=0) < 0 or p.max(initial=0) >= lshape[-1] or not np.array_equal(
            index, base + (p.reshape((-1,) + (1,) * (len(shape) - 1)) if kind == FIRST else p)):
        return None
    return p


def gather_index(tensor, kind, lshape):
    """The index of a Rearrange that lays ``tensor`` out as a ``kind`` tensor of lrpnb shape ``lshape``: for
    each lrpnb position, the position in the tensor's lrpnb array that holds the same ONNX element."""
    target = canonical(lshape, kind, tensor.shape).ravel()
    index = np.empty(target.size, dtype=np.int64)
    index[target] = index_of(tensor).ravel()
    return index
