"""The part of Caffe's schema (caffe.proto) that lrpnb reads, built at run time.

Only the messages and fields lrpnb uses are declared, with Caffe's field
numbers; protobuf skips every other field of a binary file, and the text
parser is told to skip unknown fields, so real files with fields lrpnb does
not model read as they are. Two variants are built from the one table below:

- ``TEXT``: floats as floats, for prototxt files (protobuf text format);
- ``PACKED``: a blob's ``data`` and ``double_data`` as ``bytes``. Caffe
  declares them ``[packed = true]``, and a packed repeated field is one
  length-delimited run of little-endian numbers, the same bytes on the wire
  as a ``bytes`` field: numpy reads them at once (``np.frombuffer``) where a
  repeated float field would make a Python number of every weight.
"""
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = ["TEXT", "PACKED", "V1_TYPES"]

_F = descriptor_pb2.FieldDescriptorProto
_SCALAR = {"string": _F.TYPE_STRING, "bool": _F.TYPE_BOOL, "int32": _F.TYPE_INT32, "uint32": _F.TYPE_UINT32,
           "int64": _F.TYPE_INT64, "float": _F.TYPE_FLOAT, "double": _F.TYPE_DOUBLE, "bytes": _F.TYPE_BYTES}

#: V1LayerParameter.LayerType: the 2014-era layer types, by Caffe's numbers
V1_TYPES = {
    "NONE": 0, "ABSVAL": 35, "ACCURACY": 1, "ARGMAX": 30, "BNLL": 2, "CONCAT": 3, "CONTRASTIVE_LOSS": 37,
    "CONVOLUTION": 4, "DATA": 5, "DECONVOLUTION": 39, "DROPOUT": 6, "DUMMY_DATA": 32, "EUCLIDEAN_LOSS": 7,
    "ELTWISE": 25, "EXP": 38, "FLATTEN": 8, "HDF5_DATA": 9, "HDF5_OUTPUT": 10, "HINGE_LOSS": 28, "IM2COL": 11,
    "IMAGE_DATA": 12, "INFOGAIN_LOSS": 13, "INNER_PRODUCT": 14, "LRN": 15, "MEMORY_DATA": 29,
    "MULTINOMIAL_LOGISTIC_LOSS": 16, "MVN": 34, "POOLING": 17, "POWER": 26, "RELU": 18, "SIGMOID": 19,
    "SIGMOID_CROSS_ENTROPY_LOSS": 27, "SILENCE": 36, "SOFTMAX": 20, "SOFTMAX_LOSS": 21, "SPLIT": 22, "SLICE": 33,
    "TANH": 23, "WINDOW_DATA": 24, "THRESHOLD": 31,
}

_ENUMS = {
    "Phase": {"TRAIN": 0, "TEST": 1},
    "PoolMethod": {"MAX": 0, "AVE": 1, "STOCHASTIC": 2},
    "RoundMode": {"CEIL": 0, "FLOOR": 1},
    "NormRegion": {"ACROSS_CHANNELS": 0, "WITHIN_CHANNEL": 1},
    "EltwiseOp": {"PROD": 0, "SUM": 1, "MAX": 2},
    "Engine": {"DEFAULT": 0, "CAFFE": 1, "CUDNN": 2},
    "LayerType": V1_TYPES,
}

# message -> [(field name, number, label, type, default)]; label "?" optional, "*" repeated;
# a type that is not a scalar names a message or (in _ENUMS) an enum
_LAYER_PARAMS = [
    ("concat_param", "ConcatParameter"), ("convolution_param", "ConvolutionParameter"),
    ("dropout_param", "DropoutParameter"), ("eltwise_param", "EltwiseParameter"),
    ("inner_product_param", "InnerProductParameter"), ("lrn_param", "LRNParameter"),
    ("pooling_param", "PoolingParameter"), ("relu_param", "ReLUParameter"), ("softmax_param", "SoftmaxParameter"),
]
_NEW_NUMBERS = {"concat_param": 104, "convolution_param": 106, "dropout_param": 108, "eltwise_param": 110,
                "inner_product_param": 117, "lrn_param": 118, "pooling_param": 121, "relu_param": 123,
                "softmax_param": 125}
_V1_NUMBERS = {"concat_param": 9, "convolution_param": 10, "dropout_param": 12, "eltwise_param": 24,
               "inner_product_param": 17, "lrn_param": 18, "pooling_param": 19, "relu_param": 30,
               "softmax_param": 39}

_MESSAGES = {
    "BlobShape": [("dim", 1, "*", "int64", None)],
    "BlobProto": [("shape", 7, "?", "BlobShape", None), ("data", 5, "*", "float", None),
                  ("double_data", 8, "*", "double", None), ("num", 1, "?", "int32", None),
                  ("channels", 2, "?", "int32", None), ("height", 3, "?", "int32", None),
                  ("width", 4, "?", "int32", None)],
    "NetStateRule": [("phase", 1, "?", "Phase", None)],
    "NetParameter": [("name", 1, "?", "string", None), ("input", 3, "*", "string", None),
                     ("input_shape", 8, "*", "BlobShape", None), ("input_dim", 4, "*", "int32", None),
                     ("layer", 100, "*", "LayerParameter", None), ("layers", 2, "*", "V1LayerParameter", None)],
    "LayerParameter": [("name", 1, "?", "string", None), ("type", 2, "?", "string", None),
                       ("bottom", 3, "*", "string", None), ("top", 4, "*", "string", None),
                       ("phase", 10, "?", "Phase", None), ("blobs", 7, "*", "BlobProto", None),
                       ("include", 8, "*", "NetStateRule", None), ("exclude", 9, "*", "NetStateRule", None),
                       ("batch_norm_param", 139, "?", "BatchNormParameter", None),
                       ("flatten_param", 135, "?", "FlattenParameter", None),
                       ("input_param", 143, "?", "InputParameter", None),
                       ("scale_param", 142, "?", "ScaleParameter", None)]
                      + [(name, _NEW_NUMBERS[name], "?", kind, None) for name, kind in _LAYER_PARAMS],
    "V1LayerParameter": [("bottom", 2, "*", "string", None), ("top", 3, "*", "string", None),
                         ("name", 4, "?", "string", None), ("type", 5, "?", "LayerType", None),
                         ("blobs", 6, "*", "BlobProto", None), ("include", 32, "*", "NetStateRule", None),
                         ("exclude", 33, "*", "NetStateRule", None)]
                        + [(name, _V1_NUMBERS[name], "?", kind, None) for name, kind in _LAYER_PARAMS],
    "ConcatParameter": [("axis", 2, "?", "int32", 1), ("concat_dim", 1, "?", "uint32", 1)],
    "BatchNormParameter": [("use_global_stats", 1, "?", "bool", None), ("eps", 3, "?", "float", 1e-5)],
    "ConvolutionParameter": [
        ("num_output", 1, "?", "uint32", None), ("bias_term", 2, "?", "bool", True), ("pad", 3, "*", "uint32", None),
        ("kernel_size", 4, "*", "uint32", None), ("stride", 6, "*", "uint32", None),
        ("dilation", 18, "*", "uint32", None), ("pad_h", 9, "?", "uint32", 0), ("pad_w", 10, "?", "uint32", 0),
        ("kernel_h", 11, "?", "uint32", None), ("kernel_w", 12, "?", "uint32", None),
        ("stride_h", 13, "?", "uint32", None), ("stride_w", 14, "?", "uint32", None),
        ("group", 5, "?", "uint32", 1), ("engine", 15, "?", "Engine", None), ("axis", 16, "?", "int32", 1)],
    "DropoutParameter": [("dropout_ratio", 1, "?", "float", 0.5)],
    "EltwiseParameter": [("operation", 1, "?", "EltwiseOp", 1), ("coeff", 2, "*", "float", None)],
    "FlattenParameter": [("axis", 1, "?", "int32", 1), ("end_axis", 2, "?", "int32", -1)],
    "InnerProductParameter": [("num_output", 1, "?", "uint32", None), ("bias_term", 2, "?", "bool", True),
                              ("axis", 5, "?", "int32", 1), ("transpose", 6, "?", "bool", False)],
    "InputParameter": [("shape", 1, "*", "BlobShape", None)],
    "LRNParameter": [("local_size", 1, "?", "uint32", 5), ("alpha", 2, "?", "float", 1.0),
                     ("beta", 3, "?", "float", 0.75), ("norm_region", 4, "?", "NormRegion", 0),
                     ("k", 5, "?", "float", 1.0), ("engine", 6, "?", "Engine", None)],
    "PoolingParameter": [
        ("pool", 1, "?", "PoolMethod", 0), ("pad", 4, "?", "uint32", 0), ("pad_h", 9, "?", "uint32", 0),
        ("pad_w", 10, "?", "uint32", 0), ("kernel_size", 2, "?", "uint32", None), ("kernel_h", 5, "?", "uint32", None),
        ("kernel_w", 6, "?", "uint32", None), ("stride", 3, "?", "uint32", 1), ("stride_h", 7, "?", "uint32", None),
        ("stride_w", 8, "?", "uint32", None), ("engine", 11, "?", "Engine", None),
        ("global_pooling", 12, "?", "bool", False), ("round_mode", 13, "?", "RoundMode", 0)],
    "ReLUParameter": [("negative_slope", 1, "?", "float", 0.0), ("engine", 2, "?", "Engine", None)],
    "ScaleParameter": [("axis", 1, "?", "int32", 1), ("num_axes", 2, "?", "int32", 1),
                       ("bias_term", 4, "?", "bool", False)],
    "SoftmaxParameter": [("engine", 1, "?", "Engine", None), ("axis", 2, "?", "int32", 1)],
}


def _default_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _enum_default(enum, value):
    return next(name for name, number in _ENUMS[enum].items() if number == value)


def _add_enum(container, kind):
    enum = container.add(name=kind)
    for value_name, number in _ENUMS[kind].items():
        enum.value.add(name=value_name, number=number)


def _file(package, packed):
    """The FileDescriptorProto of the schema in ``package``; ``packed``: blob numbers as bytes."""
    proto = descriptor_pb2.FileDescriptorProto(name=f"{package}.proto", package=package, syntax="proto2")
    _add_enum(proto.enum_type, "Phase")
    for message_name, fields in _MESSAGES.items():
        message = proto.message_type.add(name=message_name)
        # enums nested in their message as in caffe.proto: their values share the enclosing scope
        nested = sorted({kind for _, _, _, kind, _ in fields if kind in _ENUMS and kind != "Phase"})
        for kind in nested:
            _add_enum(message.enum_type, kind)
        for name, number, label, kind, default in fields:
            field = message.field.add(name=name, number=number, label=_F.LABEL_REPEATED if label == "*" else
                                      _F.LABEL_OPTIONAL)
            if packed and message_name == "BlobProto" and name in ("data", "double_data"):
                field.label, field.type = _F.LABEL_OPTIONAL, _F.TYPE_BYTES
            elif kind in _SCALAR:
                field.type = _SCALAR[kind]
            elif kind in _ENUMS:
                owner = "" if kind == "Phase" else f"{message_name}."
                field.type, field.type_name = _F.TYPE_ENUM, f".{package}.{owner}{kind}"
            else:
                field.type, field.type_name = _F.TYPE_MESSAGE, f".{package}.{kind}"
            if default is not None:
                field.default_value = _enum_default(kind, default) if kind in _ENUMS else _default_text(default)
    return proto


def _classes(package, packed):
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file(package, packed))
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
            for name in _MESSAGES}


#: message name -> class, floats as floats (prototxt)
TEXT = _classes("lrpnb_caffe", packed=False)
#: message name -> class, a blob's numbers as their packed bytes (caffemodel)
PACKED = _classes("lrpnb_caffe_packed", packed=True)
