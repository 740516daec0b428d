"""The input conventions of the dataset commands: what a model takes, and
how samples as read are turned into it.

- :func:`input_shape` reads the input a model expects off its layers, and
  :func:`sample_shape` the shape images are made for it;
- :func:`model_input` turns samples as read into what the model takes
  (uint8 scaling, the toolbox's MNIST rows), and :func:`normalise` applies a
  torchvision- or Caffe-style per-channel normalisation.
"""
import numpy as np

__all__ = ["input_shape", "sample_shape", "describe_input", "model_input", "normalise"]


def input_shape(net):
    """The shape of one input sample the network expects, or None.

    An ONNX model names its input's shape (``net.input_shape``). Otherwise a
    network starting with a dense layer takes vectors (m,), and one starting
    with a convolution (or pooling) takes images: the smallest square size
    for which every layer fits and the output is a vector of class scores
    (LeNet-5: 32 x 32 x 1).
    """
    from .network import Convolution, Linear

    if getattr(net, "input_shape", None) is not None:  # fixed by the model file (ONNX)
        return tuple(net.input_shape)
    first = next((layer for layer in net.layers if hasattr(layer, "W")), None)
    if first is None:
        return None
    if isinstance(first, Linear) and not any(isinstance(layer, Convolution) for layer in net.layers):
        return (first.m,)
    channels = first.W.shape[2]
    for size in range(1, 1025):
        try:
            shapes = net.output_shapes((1, size, size, channels))
        except ValueError:
            continue
        if len(shapes[-1]) == 2:
            return (size, size, channels)
    return None


def sample_shape(net, size=None):
    """The shape images are made for ``net``: :func:`input_shape`, or
    ``size`` (H, W) with the channels the model takes (1 when unknown)."""
    expected = input_shape(net)
    if size is None:
        return expected
    channels = expected[2] if expected is not None and len(expected) == 3 else 1
    return (size[0], size[1], channels)


def describe_input(shape):
    """Words for the input a model takes: '32 x 32 x 1 images', 'vectors of 784 values'."""
    if shape is None:
        return "inputs of a shape no layer fixes"
    if len(shape) == 1:
        return f"vectors of {shape[0]} values"
    return f"{' x '.join(map(str, shape))} images"


def model_input(net, X, input_range=(-1.0, 1.0), name="data"):
    """Samples ``X`` (N, ...) as ``net`` takes them: the one data convention
    of ``lrpnb explain``, ``evaluate`` and ``demo``.

    - uint8 values are pixels 0..255 and are scaled linearly to
      ``input_range``, as image files are (any other dtype is used as is);
    - rows of S x S values into a model that takes (S, S, 1) images are
      reshaped, and rows of (S - 4) x (S - 4) values also padded with 2
      pixels of the low end of ``input_range`` on every side: the toolbox's
      MNIST rows (784 values 0..255) become the 32 x 32 x 1 images of its
      LeNet-5.

    Returns float samples; raises ValueError naming ``name`` and what the
    model takes when the samples do not fit.
    """
    from .digits import mnist_images

    X = np.asarray(X)
    raw = X.dtype == np.uint8
    low, high = input_range
    if _fits(net, X.shape[1:]):
        if raw:
            return (X / np.float32(255) * np.float32(high - low) + np.float32(low)).astype(np.float32)
        return X
    shape = input_shape(net)
    if shape is not None and len(shape) == 3 and shape[0] == shape[1] and shape[2] == 1 and X.ndim == 2 \
            and X.shape[1] in (shape[0] ** 2, (shape[0] - 4) ** 2):
        try:
            return mnist_images(X, shape[0], input_range, np.float32 if raw or X.dtype != np.float64
                                else np.float64, (0, 255) if raw else input_range)
        except ValueError:
            pass  # not square rows that fit: said below
    sample = f"{X.shape[1]} values" if X.ndim == 2 else f"shape {' x '.join(map(str, X.shape[1:]))}"
    raise ValueError(f"{name}: samples of {sample} do not fit the model, which takes "
                     f"{describe_input(shape)} (lrpnb info MODEL shows its layers)")


def normalise(X, mean, std, bgr=False):
    """``(X[..., order] - mean) / std`` per channel (the last axis), in X's
    dtype: the input normalisation of a torchvision-style model (mean and
    std per RGB channel), with ``bgr`` the channels reversed first (Caffe's
    order). ``mean`` and ``std`` hold one value or one per channel."""
    X = np.asarray(X)
    channels = X.shape[-1]
    for name, values in (("mean", mean), ("std", std)):
        if np.size(values) not in (1, channels):
            raise ValueError(f"--{name} has {np.size(values)} values for samples of {channels} channels "
                             f"(last axis); give one, or one per channel")
    if bgr:
        X = X[..., ::-1]
    dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
    mean = np.asarray(mean, dtype=dtype).reshape(-1)
    std = np.asarray(std, dtype=dtype).reshape(-1)
    return np.ascontiguousarray((X - mean) / std, dtype=dtype)


def _fits(net, shape):
    try:
        shapes = net.output_shapes((1,) + tuple(shape))
    except ValueError:
        return False
    return len(shapes[-1]) == 2 if shapes else True

