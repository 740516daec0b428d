"""Channel selection and permutation (GatherChannels): an ONNX graph's
channel shuffle (ShuffleNet's Reshape, Transpose, Reshape), channel split
or slice, read as the channels they pick. Kernels: the backend's
``channels``."""
import numpy as np

from ..backends import CPU
from .base import Layer, shape_text

__all__ = ["GatherChannels"]


class GatherChannels(Layer):
    """``y[..., k] = x[..., index[k]]``: output channel k is input channel
    ``index[k]`` (the last axis; images are (N, H, W, C)).

    Parameters
    ----------
    index : sequence of int
        Unique channels of the input, in the order of the output.

    Each output is one input, unchanged: every LRP rule passes relevance
    back to the channel it came from (``R_x[..., index[k]] = R[..., k]``,
    zero on channels no output reads), and the gradient methods the
    gradient alike. Relevance is conserved over the channels read.
    """

    toolbox = False

    def __init__(self, index):
        super().__init__()
        try:
            values = np.asarray(index)
        except (TypeError, ValueError):
            values = np.asarray([None])
        # whole numbers of any numeric dtype (the lrpnb format stores arrays as floats)
        whole = values.dtype.kind in "iu" or (values.dtype.kind == "f" and np.isfinite(values).all()
                                              and (values == np.round(values)).all())
        if values.ndim != 1 or values.size == 0 or not whole or values.min() < 0 or \
                np.unique(values).size != values.size:
            raise ValueError(f"GatherChannels: index must be unique non-negative channel numbers, got "
                             f"{index!r:.80}")
        self.index = values.astype(np.int64)
        self._casts = {}

    @property
    def index(self):
        return self._index

    @index.setter
    def index(self, value):
        self._index = np.ascontiguousarray(value, dtype=np.int64)
        self._casts = {}

    def describe(self):
        return f"GatherChannels {self.index.size}"

    def output_shape(self, shape):
        if len(shape) < 2 or shape[-1] <= self.index.max():
            raise ValueError(f"expects more than {self.index.max()} channels (last axis), got {shape_text(shape)}")
        return tuple(shape[:-1]) + (self.index.size,)

    def _arrays(self, channels, backend):
        """(index, inverse) on the device; inverse[c] is the output reading channel c, or -1."""
        def make():
            inverse = np.full(channels, -1, dtype=np.int64)
            inverse[self.index] = np.arange(self.index.size)
            return backend.put(self.index), backend.put(inverse)
        return self.cached((backend.name, channels), make)

    def forward(self, X, backend=CPU):
        return backend.channels.gather_channels(X, self._arrays(tuple(X.shape)[-1], backend)[0])

    def propagate(self, X, Y, R, rule, backend):
        return backend.channels.scatter_channels(R, self._arrays(tuple(X.shape)[-1], backend)[1])
