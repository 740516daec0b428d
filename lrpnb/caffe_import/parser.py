"""Reading Caffe's files: the network definition (``.prototxt``, protobuf text
format), the weights (``.caffemodel``, protobuf binary) and mean images
(``.binaryproto``), through the schema of :mod:`lrpnb.caffe_import.schema`.

A caffemodel is walked one layer at a time: its top level is a sequence of
fields, of which the layers (``layer``, 100; V1 ``layers``, 2) are decoded
each on its own. So a damaged or truncated file names the layer it breaks
in, and the time is linear in the file's size (a blob's numbers are read
from their packed bytes by numpy).
"""
import os

import numpy as np
from google.protobuf import text_format
from google.protobuf.message import DecodeError

from ..data_io import check_array_size
from .schema import PACKED, TEXT

__all__ = ["read_prototxt", "read_caffemodel", "read_binaryproto", "blob_array", "layer_type", "V1_NAMES"]

_LAYER_FIELDS = {100: "LayerParameter", 2: "V1LayerParameter"}
_NAME_FIELD = {"LayerParameter": 1, "V1LayerParameter": 4}
#: V1 enum type -> the type string of today's ``layer {}``
V1_NAMES = {"CONVOLUTION": "Convolution", "POOLING": "Pooling", "INNER_PRODUCT": "InnerProduct", "RELU": "ReLU",
            "LRN": "LRN", "CONCAT": "Concat", "ELTWISE": "Eltwise", "DROPOUT": "Dropout", "SOFTMAX": "Softmax",
            "FLATTEN": "Flatten", "SPLIT": "Split", "SIGMOID": "Sigmoid", "TANH": "TanH", "DATA": "Data",
            "IMAGE_DATA": "ImageData", "HDF5_DATA": "HDF5Data", "MEMORY_DATA": "MemoryData",
            "DUMMY_DATA": "DummyData", "WINDOW_DATA": "WindowData", "ACCURACY": "Accuracy",
            "SOFTMAX_LOSS": "SoftmaxWithLoss", "EUCLIDEAN_LOSS": "EuclideanLoss", "HINGE_LOSS": "HingeLoss",
            "INFOGAIN_LOSS": "InfogainLoss", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
            "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "CONTRASTIVE_LOSS": "ContrastiveLoss",
            "SILENCE": "Silence", "HDF5_OUTPUT": "HDF5Output", "ARGMAX": "ArgMax", "ABSVAL": "AbsVal",
            "BNLL": "BNLL", "DECONVOLUTION": "Deconvolution", "EXP": "Exp", "IM2COL": "Im2col", "MVN": "MVN",
            "POWER": "Power", "SLICE": "Slice", "THRESHOLD": "Threshold", "NONE": "NONE"}


def layer_type(layer):
    """A layer's type as today's string, for ``layer {}`` and V1 ``layers {}`` alike."""
    if layer.DESCRIPTOR.name == "V1LayerParameter":
        name = layer.DESCRIPTOR.fields_by_name["type"].enum_type.values_by_number[layer.type].name
        return V1_NAMES.get(name, name)
    return layer.type


def read_prototxt(path):
    """The NetParameter of a prototxt; ValueError naming the file and line where it is not protobuf text."""
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not a prototxt (not UTF-8 text at byte {error.start})") from None
    net = TEXT["NetParameter"]()
    try:
        # real prototxts carry fields lrpnb does not model (learning rates, fillers, transforms)
        text_format.Parse(text, net, allow_unknown_field=True, allow_unknown_extension=True)
    except text_format.ParseError as error:
        raise ValueError(f"{path}: not a Caffe network definition (protobuf text format): {error}") from None
    except RecursionError:  # the text parser recurses into nested (unknown) fields
        raise ValueError(f"{path}: fields nested too deeply for a Caffe network definition") from None
    return net


def _varint(buffer, pos, end):
    value, shift = 0, 0
    while True:
        if pos >= end or shift > 63:
            raise DecodeError("truncated varint")
        byte = buffer[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def _fields(buffer, pos, end, clip=False):
    """(field number, wire type, start of value, end of value, bytes missing) of each field in
    buffer[pos:end]; a value that runs past ``end`` is an error, or with ``clip`` the last field, cut at
    ``end`` with the number of bytes it lacks."""
    while pos < end:
        key, pos = _varint(buffer, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, after = _varint(buffer, pos, end)
        elif wire == 1:
            after = pos + 8
        elif wire == 2:
            length, pos = _varint(buffer, pos, end)
            after = pos + length
        elif wire == 5:
            after = pos + 4
        else:
            raise DecodeError(f"wire type {wire} of field {number}")
        if number == 0:
            raise DecodeError("field number 0")
        if after > end and not (clip and wire == 2):
            raise DecodeError(f"field {number} needs {after - pos:,} bytes, {end - pos:,} remain (truncated)")
        yield number, wire, pos, min(after, end), after - min(after, end)
        pos = after


def _guess_name(buffer, start, end, kind):
    """The name of a layer that does not decode, read from its first fields, or None."""
    try:
        for number, wire, begin, after, _ in _fields(buffer, start, end, clip=True):
            if number == _NAME_FIELD[kind] and wire == 2:
                return bytes(buffer[begin:after]).decode("utf-8", "replace")
    except DecodeError:
        pass
    return None


def read_caffemodel(path):
    """The caffemodel's layers that hold blobs: {layer name: (type, [blob arrays])}.

    Raises ValueError naming the file (and the layer, where one breaks) for anything that is not a
    well-formed NetParameter, two layers of one name, and blobs whose numbers disagree with their shape."""
    with open(path, "rb") as handle:
        buffer = handle.read()
    file_size, weights, count = len(buffer), {}, 0
    view = memoryview(buffer)
    try:
        for number, wire, start, end, missing in _fields(buffer, 0, len(buffer), clip=True):
            kind = _LAYER_FIELDS.get(number)
            if kind is None or wire != 2:
                if missing:
                    raise DecodeError(f"field {number} lacks {missing:,} bytes (truncated)")
                continue
            count += 1
            if missing:
                name = _guess_name(buffer, start, end, kind)
                where = f"layer {name!r} (layer {count})" if name else f"layer {count}"
                raise ValueError(f"{path}: {where} lacks {missing:,} of its {end - start + missing:,} bytes; the "
                                 f"file is truncated")
            try:
                layer = PACKED[kind].FromString(view[start:end])
            except DecodeError as error:
                name = _guess_name(buffer, start, end, kind)
                where = f"layer {name!r} (layer {count})" if name else f"layer {count}"
                raise ValueError(f"{path}: {where} does not decode ({error or 'damaged'}); the file is damaged "
                                 f"or truncated") from None
            if not layer.blobs:
                continue
            where = f"{path}: layer {layer.name!r}"
            if layer.name in weights:
                raise ValueError(f"{where}: two layers of this name hold weights; names must be unique")
            blobs = [blob_array(blob, where, k, file_size, _unpacked(view[start:end], kind, k))
                     for k, blob in enumerate(layer.blobs)]
            weights[layer.name] = (layer_type(layer), blobs)
    except DecodeError as error:
        after = f" after layer {count}" if count else ""
        raise ValueError(f"{path}: not a Caffe model (protobuf binary NetParameter): {error}{after}; the file "
                         f"is damaged or truncated") from None
    if not count:
        raise ValueError(f"{path}: holds no layers; not a Caffe model (.caffemodel)")
    return weights


def _unpacked(layer_bytes, kind, k):
    """How to decode blob ``k`` of a layer again with repeated numbers (written unpacked, not by Caffe)."""
    return lambda: TEXT[kind].FromString(bytes(layer_bytes)).blobs[k]


def blob_shape(blob):
    """A BlobProto's shape: its ``shape`` field, else the legacy num, channels, height, width."""
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim)
    if any(blob.HasField(name) for name in ("num", "channels", "height", "width")):
        return (blob.num, blob.channels, blob.height, blob.width)
    return None


def blob_array(blob, where, k, file_size=None, unpacked=None):
    """The float32 array of a BlobProto (of either schema), shaped as it declares; ``unpacked`` returns the
    blob decoded with repeated numbers, for a PACKED blob whose numbers were not written packed."""
    shape = blob_shape(blob)
    if shape is not None and any(d < 0 for d in shape):
        raise ValueError(f"{where}: blob {k} has a negative size in its shape {shape}")
    count = None if shape is None else int(np.prod(shape, dtype=object))
    if count is not None:
        check_array_size(count * 4, where, f"blob {k} of shape {shape} (float32)", file_size)
    if isinstance(blob.data, bytes):
        data, double = blob.data, blob.double_data
        if len(data) % 4 or len(double) % 8:
            raise ValueError(f"{where}: blob {k} holds {len(data) or len(double)} bytes of numbers, not a whole "
                             f"number of {'floats' if data else 'doubles'}; the file is damaged")
        if data or double:
            values = np.frombuffer(data, "<f4") if data else np.frombuffer(double, "<f8")
        elif count and unpacked is not None:
            slow = unpacked()
            values = np.asarray(slow.data if len(slow.data) else slow.double_data, dtype=np.float64)
        else:
            values = np.zeros(0, np.float32)
    else:
        values = np.asarray(blob.data if len(blob.data) else blob.double_data, dtype=np.float64)
    if count is None:
        shape, count = (values.size,), values.size
    if values.size != count:
        raise ValueError(f"{where}: blob {k} declares shape {shape} ({count:,} numbers) but holds {values.size:,}; "
                         f"the file is damaged or truncated")
    return values.astype(np.float32, copy=False).reshape(shape)


def read_binaryproto(path):
    """A Caffe mean file (a BlobProto, usually (1, 3, H, W) in BGR) as a float32 array (H, W, C)."""
    from ..data_io import check_regular

    check_regular(path, "the mean file")
    with open(path, "rb") as handle:
        buffer = handle.read()
    try:
        blob = PACKED["BlobProto"].FromString(buffer)
    except DecodeError as error:
        raise ValueError(f"{path}: not a Caffe mean file (BlobProto, .binaryproto): {error or 'damaged'}") from None
    array = blob_array(blob, path, 0, len(buffer), lambda: TEXT["BlobProto"].FromString(buffer))
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3:
        raise ValueError(f"{path}: a mean image must be (1, C, H, W) or (C, H, W), got {array.shape}")
    return np.ascontiguousarray(array.transpose(1, 2, 0))
