"""The input conventions of the dataset commands: what a model takes, and
how samples as read are turned into it.

- :func:`input_shape` reads the input a model expects off its layers, and
  :func:`sample_shape` the shape images are made for it;
- :func:`model_input` turns samples as read into what the model takes
  (uint8 scaling, the toolbox's MNIST rows), and :func:`normalise` applies a
  torchvision- or Caffe-style per-channel normalisation;
- :func:`network_inputs` is where the Python API receives a batch (one
  array, or a dict name -> array for a network of several inputs): tensors
  are detached, integer arrays (token ids) cast to the arithmetic's dtype,
  and :func:`check_input_shape` turns a batch that does not fit into an
  error that says what the network expects and how to get there.
"""
import weakref
from collections.abc import Mapping

import numpy as np

__all__ = ["input_shape", "sample_shape", "describe_input", "model_input", "normalise", "network_input",
           "network_inputs", "check_input_shape", "check_input_shapes", "weights_dtype"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

#: network -> (its layer list, the last sample shape that fitted it): a batch
#: of the shape of the one before is checked by one comparison
_FITTED = weakref.WeakKeyDictionary()


def input_shape(net):
    """The shape of one input sample the network expects, or None.

    An ONNX model names its input's shape (``net.input_shape``). Otherwise a
    network starting with a dense layer takes vectors (m,), and one starting
    with a convolution (or pooling) takes images: the smallest square size
    for which every layer fits and the output is a vector of class scores
    (LeNet-5: 32 x 32 x 1).
    """
    from .layers import Convolution, Linear

    if len(getattr(net, "inputs", ())) > 1:  # no one sample shape: see net.input_shapes
        return None
    if getattr(net, "input_shape", None) is not None:  # fixed by the model file (ONNX)
        return tuple(net.input_shape)
    first = next((layer for layer in net.layers if hasattr(layer, "W")), None)
    if first is None:
        return None
    if isinstance(first, Linear) and not any(isinstance(layer, Convolution) for layer in net.layers):
        return (first.m,)
    if first.W.ndim != 4:  # not an image filter (h, w, channels, n): an embedding's table, say
        return None
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
    if len(shape) == 2:
        return f"sequences of {shape[0]} vectors of {shape[1]} values"
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


def weights_dtype(layers):
    """The dtype of most of the parameter values of ``layers``: float32
    where more of them are float32 than not, else float64 (the arithmetic
    integer inputs get by default). Counted by value, so that a float32
    model's weight matrices decide, not a constant an importer folded in
    float64 (a scale, a mask)."""
    sizes = {}
    for layer in layers:
        for value in vars(layer).values():
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                single = value.dtype == np.float32
                sizes[single] = sizes.get(single, 0) + value.size
    return np.dtype(np.float32 if sizes.get(True, 0) > sizes.get(False, 0) else np.float64)


def network_input(net, X, what="X"):
    """(X on ``net``'s device, the kind of array to answer with) for a
    network of one input: :func:`network_inputs` of one array."""
    values, kinds, _ = network_inputs(net, X, what=what)
    return values[0], kinds[0]


def network_inputs(net, X, dtype=None, what="X"):
    """(the inputs on ``net``'s device in the order of ``net.inputs``, the
    kind of array to answer each with, whether X was a dict): what the
    Python API does with a batch before any layer runs.

    ``X`` is an array, or a dict name -> array naming every input of the
    network (ValueError naming a missing or unknown input and the shapes
    expected). Tensors (anything with ``detach`` and ``cpu``, as torch's)
    are detached and, unless they are GPU arrays the network's device takes
    in place, copied to numpy; objects only with ``__dlpack__`` go through
    ``numpy.from_dlpack``. Integer and boolean numpy arrays are cast to
    ``dtype`` (np.float32 or np.float64; default: the dtype of the float
    inputs given, else the weights', :func:`weights_dtype`), and float
    ones too where ``dtype`` is given. The shapes are then checked
    (:func:`check_input_shape`), and each input by the backend
    (:meth:`lrpnb.backends.Backend.input`).
    """
    dtype = _float_dtype(dtype, what)
    names, named = tuple(getattr(net, "inputs", ("input",))), isinstance(X, Mapping)
    if named:
        unknown = [name for name in X if name not in names]
        if unknown:
            raise ValueError(f"{what}: the network has no input named {unknown[0]!r}; its inputs: "
                             f"{_inputs_text(net)}")
        missing = [name for name in names if name not in X]
        if missing:
            raise ValueError(f"{what}: the input {missing[0]!r} is missing; the network takes {_inputs_text(net)}")
        labels = [f"{what}[{name!r}]" for name in names]
        arrays = [_host_array(net, X[name], label) for name, label in zip(names, labels)]
    else:
        if len(names) > 1:
            raise ValueError(f"{what}: the network has {len(names)} inputs; give a dict name -> array of "
                             f"them: {_inputs_text(net)}")
        labels, arrays = [what], [_host_array(net, X, what)]
    arrays = _cast(net, arrays, dtype)
    if len(arrays) == 1:
        if hasattr(arrays[0], "shape"):
            check_input_shape(net, tuple(arrays[0].shape), what)
        value, kind = net.backend.input(arrays[0], what)
        return [value], [kind], named
    moved = [net.backend.input(array, label) for array, label in zip(arrays, labels)]
    values, kinds = [value for value, _ in moved], [kind for _, kind in moved]
    sizes, dtypes = [value.shape[0] for value in values], [np.dtype(value.dtype) for value in values]
    if len(set(sizes)) > 1:
        raise ValueError(f"{what}: the inputs hold different numbers of samples ("
                         f"{', '.join(f'{name!r} {size}' for name, size in zip(names, sizes))})")
    if len(set(dtypes)) > 1:
        raise ValueError(f"{what}: the inputs have different dtypes ("
                         f"{', '.join(f'{name!r} {d}' for name, d in zip(names, dtypes))}): give them one, or "
                         f"dtype=np.float32 or np.float64")
    check_input_shapes(net, {name: tuple(value.shape) for name, value in zip(names, values)}, what)
    return values, kinds, named


def _float_dtype(dtype, what):
    if dtype is None:
        return None
    try:
        chosen = np.dtype(dtype)
    except TypeError:
        chosen = None
    if chosen not in _FLOATS:
        raise ValueError(f"{what}: dtype must be np.float32 or np.float64, got {dtype!r}")
    return chosen


def _cast(net, arrays, dtype):
    """``arrays`` with integer and boolean numpy arrays cast to ``dtype``
    (default: the float inputs' one dtype, else the weights'), and float
    numpy arrays to ``dtype`` where it is given."""
    # np.dtype(None) is float64, so None == np.float64: only dtypes are compared
    floats = {a.dtype for a in arrays if isinstance(getattr(a, "dtype", None), np.dtype) and a.dtype in _FLOATS}
    target = dtype if dtype is not None else floats.pop() if len(floats) == 1 else weights_dtype(net.layers)
    return [a.astype(target) if isinstance(a, np.ndarray) and (a.dtype.kind in "biu" or (
        dtype is not None and a.dtype.kind == "f" and a.dtype != dtype)) else a for a in arrays]


def _host_array(net, X, what):
    """``X`` as numpy, or as a GPU array the network's device takes in place."""
    arrays = net.backend.arrays
    if hasattr(X, "detach") and hasattr(X, "cpu"):
        X = X.detach()  # a tensor that requires grad has no __array__ / __cuda_array_interface__
        if not arrays.is_gpu_array(X):
            try:
                X = X.cpu().numpy()
            except (TypeError, RuntimeError) as error:
                raise ValueError(f"{what}: numpy cannot take this {type(X).__name__} ({error}); "
                                 f"convert it to float32 or float64 first") from None
    elif not hasattr(X, "__array__") and hasattr(X, "__dlpack__") and not arrays.is_gpu_array(X):
        try:
            X = np.from_dlpack(X)
        except (TypeError, ValueError, RuntimeError, BufferError) as error:
            raise ValueError(f"{what}: numpy cannot take this {type(X).__name__} through DLPack ({error}); "
                             f"pass a numpy array") from None
    if not hasattr(X, "shape") and not arrays.is_gpu_array(X):
        try:
            X = np.asarray(X)
        except (TypeError, ValueError):
            pass  # the backend says what is wrong with it
    return X


def _inputs_text(net):
    """The network's inputs and their shapes: "'input_ids' (N, 8), 'attention_mask' (N, 8)"."""
    shapes = getattr(net, "input_shapes", {})
    return ", ".join(f"{name!r} " + (_shape_text(shapes[name]) if shapes.get(name) else "(N, ...)")
                     for name in net.inputs)


def check_input_shapes(net, shapes, what="X"):
    """Nothing if batches of ``shapes`` (a dict input name -> shape) fit
    every layer of ``net``; else a ValueError naming the shapes given and
    those the network expects. The last shapes that fitted are kept per
    network, as by :func:`check_input_shape`."""
    key = tuple(tuple(int(s) for s in shape[1:]) for shape in shapes.values())
    fitted = _FITTED.get(net)
    if fitted is not None and fitted[0] is net.layers and fitted[1] == key:
        return
    try:
        net.output_shapes(shapes)
    except ValueError as error:
        given = ", ".join(f"{name!r} {tuple(shape)}" for name, shape in shapes.items())
        raise ValueError(f"{what}: inputs of shapes {given} do not fit the network, which expects "
                         f"{_inputs_text(net)} (in detail: {error})") from None
    _FITTED[net] = (net.layers, key)


def check_input_shape(net, shape, what="X"):
    """Nothing if a batch of ``shape`` fits every layer of ``net``; else a
    ValueError naming the shape the network expects, the shape given and, where
    the mismatch is a common one, what to do: one sample without the batch
    axis, channels first (NCHW) where the network takes channels last,
    images of another size (the toolbox's 28 x 28 MNIST digits into its
    32 x 32 LeNet-5), flattened images, images into a network of vectors.

    Only the shapes are computed, and the last shape that fitted is kept per
    network: a batch shaped like the one before costs one comparison.
    """
    shape = tuple(int(s) for s in shape)
    fitted = _FITTED.get(net)
    if fitted is not None and len(shape) > 0 and fitted[0] is net.layers and fitted[1] == shape[1:]:
        return
    try:
        net.output_shapes(shape)
    except ValueError as error:
        expected = input_shape(net)
        hint = None if expected is None else _hint(net, shape, expected)
        if hint is None and len(shape) < 2:
            return  # not a batch, which the backend says
        if expected is None:
            raise
        raise ValueError(f"{what} of shape {shape} does not fit the network, which expects "
                         f"{_expected_text(net, expected)}{': ' + hint if hint else ''} "
                         f"(in detail: {error})") from None
    if len(shape) > 0:
        _FITTED[net] = (net.layers, shape[1:])


def _shape_text(shape):
    return "(N, " + ", ".join(map(str, shape)) + ")"


def _free_size(net, expected):
    """Whether images larger than ``expected`` give the same output (a
    network ending in a global pooling), so their size is not fixed."""
    height, width, channels = expected
    try:
        return (net.output_shapes((1,) + expected)[-1]
                == net.output_shapes((1, 2 * height, 2 * width, channels))[-1])
    except ValueError:
        return False


def _expected_text(net, expected):
    if len(expected) == 3 and _free_size(net, expected):
        if expected[:2] == (1, 1):
            return f"(N, H, W, {expected[2]}) of any height and width"
        return f"(N, H, W, {expected[2]}) with H x W at least {expected[0]} x {expected[1]}"
    return _shape_text(expected)


def _hint(net, shape, expected):
    """What to do about a batch of ``shape`` where the network takes samples
    of ``expected``, or None where the mismatch is none of the common ones."""
    if len(shape) == len(expected) and (shape == expected or _fits(net, shape)):
        return (f"this looks like one sample without the batch axis: use X[None] "
                f"(or X.reshape(1, {', '.join(map(str, shape))}))")
    if len(expected) == 1:
        if len(shape) > 2 and int(np.prod(shape[1:])) == expected[0]:
            return f"the network takes vectors of {expected[0]} values: use X.reshape(len(X), -1)"
        return None
    height, width, channels = expected
    if len(shape) == 3 and channels == 1 and shape[2] != 1:
        hint = "the images have no channel axis: use X[..., None]"
        if _fits(net, shape[1:] + (1,)):
            return hint
        more = _size_hint(net, shape + (1,), expected)
        return hint + ("; then " + more if more else "")
    if len(shape) == 3 and _fits(net, (shape[1], shape[2], shape[0])):
        return "this looks like one sample, channels first (CHW): use X.transpose(1, 2, 0)[None]"
    if len(shape) == 2:
        return _rows_hint(shape[1], expected)
    if len(shape) != 4:
        return None
    if shape[1] == channels and shape[3] != channels:
        hint = "this looks like NCHW (channels first): use X.transpose(0, 2, 3, 1)"
        last = (shape[0], shape[2], shape[3], shape[1])
        if _fits(net, last[1:]):
            return hint
        more = _size_hint(net, last, expected)
        return hint + ("; then " + more if more else "")
    if shape[3] != channels:
        return f"the network takes images of {channels} channel{'s' if channels > 1 else ''} " \
               f"(the last axis), got {shape[3]}"
    return _size_hint(net, shape, expected)


def _size_hint(net, shape, expected):
    """The hint for channels-last images of another height and width."""
    height, width, channels = expected
    if shape[3] != channels or _free_size(net, expected):
        return None
    hint = (f"the network expects {height} x {width} images and got {shape[1]} x {shape[2]}: "
            f"pad or resize them")
    if channels == 1 and (shape[1], shape[2]) == (height - 4, width - 4):
        hint += (f"; for MNIST digits the toolbox pads by 2 on each side: "
                 f"np.pad(X, ((0, 0), (2, 2), (2, 2), (0, 0)), constant_values=low), low the low end "
                 f"of the input range (-1 for the toolbox's LeNet-5)")
    return hint


def _rows_hint(values, expected):
    """The hint for rows of ``values`` values into a network of images."""
    height, width, channels = expected
    if values == height * width * channels:
        return (f"rows of {values} values look like flattened images: use "
                f"X.reshape(-1, {height}, {width}, {channels})")
    if channels == 1 and values == (height - 4) * (width - 4):
        return (f"rows of {values} values look like flattened {height - 4} x {width - 4} images (MNIST "
                f"digits): the toolbox reshapes and pads them by 2 on each side: np.pad(X.reshape(-1, "
                f"{height - 4}, {width - 4}, 1), ((0, 0), (2, 2), (2, 2), (0, 0)), constant_values=low), "
                f"low the low end of the input range (-1 for the toolbox's LeNet-5; lrpnb explain does "
                f"this for files)")
    return f"the network takes images, not rows: reshape each row to {height} x {width} x {channels}"
